"""The deployed Flower App: module-level ``serverapp`` and ``clientapp`` for a SuperLink and one SuperNode per
hospital, reusing neurofusion.federated (the same ServerApp logic and ClientApp as the simulation).

- ``clientapp``: neurofusion.federated.client_app; each SuperNode names its own cohort folder and site with
  ``--node-config "data='/path/to/cohort' site='site_a'"`` and reads only that site's cases.
- ``serverapp``: reads the run config (pyproject.toml's [tool.flwr.app.config], overridden by
  ``flwr run --run-config``), runs neurofusion.federated.server's rounds on the connected SuperNodes and writes
  the checkpoint at the SuperLink as ``python -m neurofusion.federated`` does (metrics.json, training.json).
"""

from __future__ import annotations

import dataclasses
import os
import time
from logging import ERROR, INFO
from pathlib import Path

from flwr.app import Context
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp

from neurofusion.data.errors import CohortError
from neurofusion.data.timed import open_cohort
from neurofusion.federated import FederatedError, FederatedExperiment, FederatedResult, client_app
from neurofusion.federated.__main__ import write_checkpoint
from neurofusion.federated.config import STRATEGIES, load_federated_experiment, with_overrides
from neurofusion.federated.server import run_server

__all__ = ["DeploymentSettings", "clientapp", "deployment_settings", "serverapp"]

RUN_CONFIG_KEYS = ("config", "out", "eval-data", "strategy", "rounds", "seed")


@dataclasses.dataclass(frozen=True)
class DeploymentSettings:
    """The run config of a deployed run, checked: what the ServerApp reads, writes and overrides."""

    config: Path
    out: Path
    eval_data: Path | None = None
    strategy: str | None = None
    rounds: int | None = None
    seed: int | None = None

    def spec(self) -> FederatedExperiment:
        """The federated experiment of ``config`` with the overrides (validated as the file is)."""
        return with_overrides(load_federated_experiment(self.config), strategy=self.strategy, rounds=self.rounds,
                              seed=self.seed)

    def command(self) -> str:
        """The run as the command that submits it (recorded in training.json)."""
        pairs = [f"config='{self.config}'", f"out='{self.out}'"]
        pairs += [f"eval-data='{self.eval_data}'"] if self.eval_data else []
        pairs += [f"strategy='{self.strategy}'"] if self.strategy else []
        pairs += [f"{k}={v}" for k, v in (("rounds", self.rounds), ("seed", self.seed)) if v is not None]
        joined = " ".join(pairs)
        return f'flwr run deploy/flower --run-config "{joined}"'


def deployment_settings(run_config: dict, cwd: str | Path | None = None) -> DeploymentSettings:
    """The run config as DeploymentSettings; a missing or wrong value is a ValueError naming the key and what is
    expected. Relative paths are resolved against ``cwd`` (default: this process's working directory)."""
    base = Path(cwd) if cwd is not None else Path(os.getcwd())
    missing = [k for k in RUN_CONFIG_KEYS if k not in run_config]
    if missing:
        raise ValueError(f"run config lacks {', '.join(missing)}; deploy/flower/pyproject.toml's "
                         f"[tool.flwr.app.config] defines {', '.join(RUN_CONFIG_KEYS)}")

    def text(key: str) -> str:
        value = run_config[key]
        if not isinstance(value, str):
            raise ValueError(f"run config {key} must be a string, got {value!r}")
        return value.strip()

    def integer(key: str, unset: int, floor: int) -> int | None:
        value = run_config[key]
        if isinstance(value, bool) or not isinstance(value, int) or (value != unset and value < floor):
            raise ValueError(f"run config {key} must be an integer >= {floor} ({unset}: the config's), got {value!r}")
        return None if value == unset else value

    def path(key: str) -> Path | None:
        value = text(key)
        return None if not value else (Path(value) if Path(value).is_absolute() else base / value)

    config, out, eval_data = path("config"), path("out"), path("eval-data")
    if config is None or out is None:
        raise ValueError(f"run config {'config' if config is None else 'out'} must name a path, got ''")
    if not config.is_file():
        raise ValueError(f"run config config: no federated experiment YAML at {config} (paths are on the "
                         f"SuperLink's machine; relative ones start at {base})")
    if eval_data is not None and not eval_data.is_dir():
        raise ValueError(f"run config eval-data: no cohort folder at {eval_data}")
    strategy = text("strategy") or None
    if strategy is not None and strategy not in STRATEGIES:
        raise ValueError(f"run config strategy must be one of {', '.join(STRATEGIES)} or '' (the config's), "
                         f"got {strategy!r}")
    return DeploymentSettings(config, out, eval_data, strategy, integer("rounds", 0, 1), integer("seed", -1, 0))


# every SuperNode names its cohort folder and site in its node config; a deployed site opens its own folder
clientapp = client_app("", [], "site")
serverapp = ServerApp()


@serverapp.main()
def main(grid: Grid, context: Context) -> None:
    """Read the run config, train across the connected SuperNodes and write the checkpoint here."""
    started = time.perf_counter()
    try:
        settings = deployment_settings(dict(context.run_config))
        spec = settings.spec()
        evaluation = open_cohort(settings.eval_data) if settings.eval_data else None
        log(INFO, "neurofusion: %s, %d rounds, waiting for %d site(s)", spec.federated.strategy,
            spec.federated.rounds, spec.federated.min_clients)
        result = FederatedResult()
        run_server(grid, spec, result)
        if result.model is None:
            raise FederatedError("the run ended without a trained model")
        write_checkpoint(str(settings.out), result, spec, evaluation, command=settings.command(),
                         data="each site's own cohort folder (its SuperNode's --node-config data)", started=started)
    except (CohortError, ValueError, FederatedError) as err:  # FederatedConfigError is a ValueError
        log(ERROR, "neurofusion: %s", err)  # the reason, first; Flower then marks the run failed with it
        raise
    log(INFO, "neurofusion: saved %s (best round %d of %d, %.1f min)", settings.out, result.best_round,
        len(result.history), result.minutes)
