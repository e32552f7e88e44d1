"""Federated training across a cohort's sites in Flower's simulation engine, written as an ordinary checkpoint.

    python -m neurofusion.federated --config configs/cardio_federated.yaml --data DIR --out DIR [--eval-data DIR]
        [--strategy fedavg|fedprox] [--seed N] [--rounds N] [--partition site|iid] [--parallel-sites N] [--quiet]

One client per value of cohort.csv's ``site`` column, each reading only its own site's cases; the server holds the
global weights and the numbers the sites report. The kept weights are those of the round with the best validation
macro-F1 pooled from the sites' reports. The checkpoint's training.json says the strategy, the rounds, the per-round
history and what left each site; metrics.json holds the test split of --eval-data (default: --data) evaluated
here, as neurofusion.train does, and the pooled validation numbers of the kept round.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from neurofusion.federated.simulation import run_federated  # first: switches telemetry off before flwr loads

import flwr  # noqa: E402

from neurofusion.checkpoint import save_checkpoint  # noqa: E402
from neurofusion.data.errors import CohortError  # noqa: E402
from neurofusion.data.timed import open_cohort  # noqa: E402
from neurofusion.federated.config import (  # noqa: E402
    PARTITIONS,
    STRATEGIES,
    load_federated_experiment,
    with_overrides,
)
from neurofusion.federated.server import FederatedError, FederatedResult  # noqa: E402
from neurofusion.train import TrainResult, final_metrics, library_versions, mixed_precision  # noqa: E402
from neurofusion.train import training_record as train_record  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofusion.federated", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="federated experiment YAML (configs/cardio_federated.yaml)")
    parser.add_argument("--data", required=True, help="cohort folder with train and val splits and a site column")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("--eval-data", help="cohort whose test split is evaluated after training (default: --data)")
    parser.add_argument("--strategy", choices=STRATEGIES, help="override federated.strategy")
    parser.add_argument("--seed", type=int, help="override train.seed")
    parser.add_argument("--rounds", type=int, help="override federated.rounds")
    parser.add_argument("--partition", choices=PARTITIONS, help="override federated.partition (iid: random parts)")
    parser.add_argument("--parallel-sites", type=int, default=1, help="clients run at once (one CPU each)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        spec = with_overrides(load_federated_experiment(args.config), strategy=args.strategy, rounds=args.rounds,
                              seed=args.seed, partition=args.partition)
        evaluation = open_cohort(args.eval_data) if args.eval_data else open_cohort(args.data)
        result = run_federated(spec, args.data, parallel_sites=args.parallel_sites, quiet=args.quiet)
        command = "python -m neurofusion.federated " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
        metrics = write_checkpoint(args.out, result, spec, evaluation, command=command, data=args.data,
                                   started=started)
    except (CohortError, ValueError, FederatedError) as err:  # FederatedConfigError is a ValueError
        print(f"error: {err}", file=sys.stderr)
        return 2
    test = metrics.get("test")
    summary = f"test accuracy {test['accuracy']['value']:.3f}" if test else "no test split evaluated"
    print(f"saved {args.out} ({spec.federated.strategy}, best round {result.best_round} of "
          f"{len(result.history)}, {result.minutes:.1f} min, {summary})")
    return 0


def _as_trained(result: FederatedResult) -> TrainResult:
    """The federated run as neurofusion.train's TrainResult: the rounds as its epochs, no out-of-distribution
    reference."""
    device = next(result.model.parameters()).device
    return TrainResult(result.model, result.tokenizer, [{**r, "epoch": r["round"]} for r in result.history],
                       result.best_round, result.minutes, None,
                       "not fitted: the reference needs the training cases' embeddings, which stay at the sites",
                       mixed_precision(device))


def write_checkpoint(out: str, result: FederatedResult, spec, evaluation, *, command: str, data: str,
                     started: float) -> dict:
    """Save a federated run as an ordinary checkpoint at ``out`` (what this command and a deployed ServerApp
    write): metrics.json from :func:`_metrics` (``evaluation``: a cohort whose test split is evaluated here, or
    None), training.json from :func:`training_record`, ``started`` being the run's time.perf_counter() start.
    Returns the metrics."""
    metrics = _metrics(result, evaluation)
    training = training_record(result, spec, command, data, time.perf_counter() - started)
    save_checkpoint(out, result.model, result.tokenizer, metrics=metrics, training=training, ood=None)
    return metrics


def _metrics(result: FederatedResult, evaluation) -> dict:
    """The kept round's pooled validation numbers (from the sites' reports) and the evaluation cohort's test
    split, evaluated by neurofusion.train's final_metrics (streamed); no test numbers without an evaluation
    cohort."""
    best = next(r for r in result.history if r["round"] == result.best_round)
    metrics: dict = {"val": {"accuracy": {"value": best["val_accuracy"]}, "macro_f1": {"value": best["val_macro_f1"]},
                             "source": "pooled from the sites' val confusion matrices (no case left a site)"}}
    if evaluation is None:
        return metrics
    return {**metrics, **final_metrics(_as_trained(result), evaluation, evaluation, splits=("test",))}


def training_record(result: FederatedResult, spec, command: str, data: str, seconds: float) -> dict:
    """training.json of a federated checkpoint, written by neurofusion.train's training_record (the rounds as its
    epochs) plus the strategy, the rounds and what left each site."""
    return train_record(
        _as_trained(result), command=command, data=data, train=spec.experiment.train,
        data_hash="not computed: no one holds every site's files (each site's case counts: federated.sites)",
        selected_by="val_macro_f1",  # pooled from the sites' confusion matrices, whatever the number of classes
        federated={**spec.federated.to_dict(), "sites": result.sites, "vocabulary_site": result.vocabulary_site,
                   "server_held": "the global weights, the tokenizer and the numbers the sites sent; no case"},
        wall_seconds=round(seconds, 1), versions={**library_versions(), "flwr": flwr.__version__})


if __name__ == "__main__":
    sys.exit(main())
