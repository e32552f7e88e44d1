"""The federated experiment config: an ordinary experiment config (``model``, ``train``) plus a ``federated:``
section that says how the sites train together (strategy, rounds, local epochs, clients per round, FedProx's mu).

    federated:
      strategy: fedavg          # fedavg | fedprox
      rounds: 10                # server rounds (each: local training at the sampled sites, then validation)
      local_epochs: 1           # passes over its own train split a site makes per round
      clients_per_round: 1.0    # a fraction (0, 1] of the connected sites, or a count (an integer >= 1)
      proximal_mu: 0.0          # FedProx's mu (> 0 with fedprox; must be 0 with fedavg)
      min_clients: 3            # the run waits for and needs at least this many sites
      vocabulary_site: null     # the site that fits the note vocabulary (null: the one with most train cases)
      partition: site           # site: one client per value of cohort.csv's site column; iid: random equal parts
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any


from neurofusion.config import ExperimentConfig, read_config_mapping

STRATEGIES = ("fedavg", "fedprox")
PARTITIONS = ("site", "iid")


class FederatedConfigError(ValueError):
    """A federated config that cannot be used; the message names the file, the field and what is expected."""


@dataclasses.dataclass(frozen=True)
class FederatedConfig:
    """How the sites train together (see the module docstring for each field)."""

    strategy: str = "fedavg"
    rounds: int = 10
    local_epochs: int = 1
    clients_per_round: float | int = 1.0
    proximal_mu: float = 0.0
    min_clients: int = 2
    vocabulary_site: str | None = None
    partition: str = "site"

    def sampled(self, connected: int) -> int:
        """How many of ``connected`` sites train in a round (never fewer than ``min_clients``)."""
        share = (math.ceil(self.clients_per_round * connected) if isinstance(self.clients_per_round, float)
                 else self.clients_per_round)
        return max(share, self.min_clients)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class FederatedExperiment:
    """A configs/*_federated.yaml file: the experiment every site trains and the federation's settings."""

    experiment: ExperimentConfig
    federated: FederatedConfig


def parse_federated(data: Any, where: str = "config") -> FederatedConfig:
    """The ``federated:`` section as a FederatedConfig; a wrong field is a FederatedConfigError naming it."""
    if not isinstance(data, dict):
        raise FederatedConfigError(f"{where}: 'federated' must be a mapping of settings, got {type(data).__name__}")
    fields = {f.name for f in dataclasses.fields(FederatedConfig)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise FederatedConfigError(f"{where}: unknown key(s) in 'federated': {', '.join(unknown)}; expected "
                                   f"{', '.join(sorted(fields))}")
    values = {**FederatedConfig().to_dict(), **data}

    def bad(name: str, expected: str) -> FederatedConfigError:
        return FederatedConfigError(f"{where}: federated.{name} must be {expected}, got {values[name]!r}")

    if values["strategy"] not in STRATEGIES:
        raise bad("strategy", f"one of {', '.join(STRATEGIES)}")
    for name in ("rounds", "local_epochs", "min_clients"):
        if not _is_int(values[name]) or values[name] < 1:
            raise bad(name, "an integer >= 1")
    share = values["clients_per_round"]
    if _is_int(share):
        if share < 1:
            raise bad("clients_per_round", "a fraction in (0, 1] or a count >= 1")
    elif not isinstance(share, float) or not 0.0 < share <= 1.0:
        raise bad("clients_per_round", "a fraction in (0, 1] or a count >= 1")
    mu = values["proximal_mu"]
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or not math.isfinite(mu) or mu < 0:
        raise bad("proximal_mu", "a number >= 0")
    if values["strategy"] == "fedprox" and mu == 0:
        raise bad("proximal_mu", "> 0 with strategy fedprox (mu 0 is FedAvg)")
    if values["strategy"] == "fedavg" and mu != 0:
        raise bad("proximal_mu", "0 with strategy fedavg (set strategy: fedprox to use a proximal term)")
    if values["vocabulary_site"] is not None and not (isinstance(values["vocabulary_site"], str)
                                                      and values["vocabulary_site"].strip()):
        raise bad("vocabulary_site", "a site name or null")
    if values["partition"] not in PARTITIONS:
        raise bad("partition", f"one of {', '.join(PARTITIONS)}")
    values["proximal_mu"] = float(mu)
    return FederatedConfig(**values)


def load_federated_experiment(path: str | Path) -> FederatedExperiment:
    """Read a federated experiment YAML: ``model`` and ``train`` as any experiment config, plus ``federated``.
    Every problem is a FederatedConfigError naming the file and the field."""
    path = Path(path)
    data = read_config_mapping(path, "'model', 'train' and 'federated' sections", error=FederatedConfigError)
    if "federated" not in data:
        raise FederatedConfigError(f"{path}: no 'federated' section (strategy, rounds, local_epochs, "
                                   f"clients_per_round, proximal_mu, min_clients); see configs/cardio_federated.yaml")
    federated = parse_federated(data.pop("federated"), str(path))
    try:
        experiment = ExperimentConfig.from_dict(data)
    except ValueError as err:
        raise FederatedConfigError(f"{path}: {err}") from None
    if experiment.model.heads and experiment.model.heads[0].kind != "classification":
        raise FederatedConfigError(f"{path}: model.heads[0] is a {experiment.model.heads[0].kind} head; federated "
                                   f"training supports classification heads only")
    train = experiment.train
    if train.lr_schedule != "constant" or train.warmup_steps:
        raise FederatedConfigError(f"{path}: train.lr_schedule must be 'constant' with train.warmup_steps 0 for "
                                   f"federated training (each site starts a fresh Adam every round), got "
                                   f"{train.lr_schedule!r} with {train.warmup_steps} warm-up steps")
    return FederatedExperiment(experiment, federated)


def with_overrides(spec: FederatedExperiment, *, strategy: str | None = None, rounds: int | None = None,
                   seed: int | None = None, proximal_mu: float | None = None,
                   partition: str | None = None) -> FederatedExperiment:
    """The spec with command-line overrides, validated as the file is. Switching to FedAvg drops the proximal term;
    switching to FedProx without a mu keeps the file's (0.01 when it has none)."""
    data = spec.federated.to_dict()
    if strategy is not None:
        data["strategy"] = strategy
        if strategy == "fedavg":
            data["proximal_mu"] = 0.0
        elif not data["proximal_mu"]:
            data["proximal_mu"] = 0.01
    for name, value in (("rounds", rounds), ("proximal_mu", proximal_mu), ("partition", partition)):
        if value is not None:
            data[name] = value
    experiment = spec.experiment
    if seed is not None:
        experiment = dataclasses.replace(experiment, train=dataclasses.replace(experiment.train, seed=seed))
    return FederatedExperiment(experiment, parse_federated(data, "command line"))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
