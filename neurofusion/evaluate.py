"""Evaluate a checkpoint on a cohort split, optionally with modalities withheld (the paper's section 7.3).

    python -m neurofusion.evaluate --checkpoint DIR --data DIR [--split test] [--drop image,text] [--num-workers N]
        [--json]

The split's cases stream through a DataLoader (``--num-workers`` processes read and prepare them; 0: this one):
the split is never in memory whole.

A classifier: accuracy, macro F1, per-class F1, one-vs-rest AUROC, confusion matrix and calibration error,
each with a bootstrap 95 % confidence interval (scikit-learn metrics). A metric the split cannot define (the
F1 of a class with no cases in it) is printed as not defined with the reason (JSON: null and a "reason"), and
the macro averages name the classes they are taken over.

A survival model: Harrell's C-index and the cumulative/dynamic AUC of the risk score 1 - S(horizon), the
integrated Brier score and calibration at the horizon (neurofusion.survival, scikit-survival), with bootstrap
intervals, on the split's cases that have an outcome. The AUC and Brier score weight censoring by the
Kaplan-Meier of the cohort's train split outcomes when it has any, else by the evaluated cases' own; the
result names which (``censoring_reference``). ``--drop`` withholds modalities for either kind (section 7.3).

A time-stamped cohort (ICU: one sample per stay and prediction hour) adds ``risk``: AUROC, AUPRC, Brier score,
calibration error and calibration bins of the probability of death within 48 h, overall and per prediction
hour, with bootstrap intervals that resample stays (a stay's samples are correlated; neurofusion.risk_metrics).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from neurofusion.checkpoint import CheckpointError, load_checkpoint
from neurofusion.data.cohort import COHORT_CSV, CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import SPLITS
from neurofusion.inference import Predictor, SurvivalPrediction, parse_modalities
from neurofusion.loader import SplitCases
from neurofusion.data.timed import open_cohort
from neurofusion.metrics import classification_metrics
from neurofusion.risk_metrics import risk_metrics
from neurofusion.survival import survival_metrics


def evaluate(checkpoint: str | Path, data: str | Path, *, split: str = "test", drop: tuple[str, ...] = (),
             device: str = "auto", n_bootstrap: int = 1000, seed: int = 0, num_workers: int = 0) -> dict:
    """The metrics of ``checkpoint`` on ``split`` of the cohort at ``data`` (see the module docstring), the cases
    read through ``num_workers`` DataLoader worker processes."""
    ckpt = load_checkpoint(checkpoint, device=device)
    drop = parse_modalities(drop, ckpt.config.modality_names)
    cohort = open_cohort(data)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    ids = cohort.ids(split)
    if not ids:
        raise CohortError(f"the cohort has no cases in split '{split}'", path=cohort.root / COHORT_CSV)
    if cohort.outcome != ckpt.config.outcome:
        raise CohortError(f"the checkpoint predicts {ckpt.config.outcome} but the cohort records "
                          f"{cohort.outcome} outcomes", path=cohort.root / COHORT_CSV)
    predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
    header = {"checkpoint": str(checkpoint), "data": str(data), "split": split, "dropped": list(drop),
              "architecture": ckpt.config.architecture}
    if ckpt.config.outcome == "survival":
        prediction = predictor.predict_survival_streamed(SplitCases(cohort, ids), drop=drop, num_workers=num_workers)
        reference = censoring_reference(cohort, cohort.ids("train"), "the cohort's train split")
        if reference is None:
            reference = censoring_reference(cohort, ids, f"the evaluated cases' own ({split} split): the cohort "
                                                         f"has no train split with outcomes")
        return {**header, "outcome": "survival", **survival_report(prediction, reference, n_bootstrap=n_bootstrap,
                                                                   seed=seed)}
    unknown = sorted(set(cohort.classes) - set(ckpt.config.classes))
    if unknown:
        raise CohortError(f"labels {unknown} are not classes of this checkpoint ({ckpt.config.classes})",
                          path=cohort.root / COHORT_CSV)
    labels, probabilities = predictor.predict_streamed(SplitCases(cohort, ids), drop=drop, num_workers=num_workers)
    metrics = classification_metrics(labels, probabilities, ckpt.config.classes, n_bootstrap=n_bootstrap, seed=seed,
                                     split=split)
    if getattr(cohort, "timed", False):
        metrics["risk"] = timed_risk_report(cohort, ids, labels, probabilities, n_bootstrap=n_bootstrap, seed=seed)
    return {**header, **metrics}


def timed_risk_report(cohort, ids: list[str], labels: np.ndarray, probabilities: np.ndarray, *,
                      n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """The binary risk metrics of a time-stamped cohort's samples ``ids``: the probability of the second class
    (death within the horizon) against the labels, bootstrapped by stay, overall and per prediction hour."""
    rows = cohort.table.set_index("case_id").loc[ids]
    return risk_metrics(np.asarray(labels) == 1, np.asarray(probabilities)[:, 1], rows["stay_id"].to_numpy(),
                        rows["hour"].to_numpy(dtype=float), n_bootstrap=n_bootstrap, seed=seed)


def censoring_reference(cohort: CohortReader, ids: list[str], source: str) -> dict | None:
    """The outcomes (time, event) of the ``ids`` that have one, as the censoring reference of the survival
    metrics, with ``source`` saying whose they are; None when none of them has an outcome."""
    rows = cohort.table.set_index("case_id").loc[ids] if ids else None
    if rows is None:
        return None
    time, event = rows["time"].to_numpy(dtype=float), rows["event"].to_numpy(dtype=float)
    known = ~np.isnan(time)
    if not known.any():
        return None
    return {"time": time[known], "event": event[known].astype(bool), "source": source}


def survival_report(prediction: SurvivalPrediction, reference: dict, *, n_bootstrap: int = 200,
                    seed: int = 0) -> dict:
    """``survival_metrics`` of the predicted curves on the cases with a recorded outcome (JSON-ready), with
    ``censoring_reference`` (whose outcomes weight censoring, and how many) and ``n_without_outcome``."""
    known = prediction.known
    if not known.any():
        raise ValueError(f"none of the {len(known)} evaluated cases has a recorded outcome (time, event)")
    metrics = survival_metrics(prediction.time[known], prediction.event[known], prediction.curves[known],
                               prediction.bins, train_time=reference["time"], train_event=reference["event"],
                               horizon=prediction.horizon, n_boot=n_bootstrap, seed=seed)
    return {**metrics, "n_without_outcome": int((~known).sum()),
            "censoring_reference": {"source": reference["source"], "n": int(len(reference["time"])),
                                    "n_events": int(reference["event"].sum())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofusion.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--drop", default="", help="modalities to withhold, e.g. image,text")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the CIs")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="DataLoader worker processes that read and prepare the cases (0: this process)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = parser.parse_args(argv)
    try:
        drop = tuple(n.strip() for n in args.drop.split(",") if n.strip())  # checked against the checkpoint's
        result = evaluate(args.checkpoint, args.data, split=args.split, drop=drop,
                          device=args.device, n_bootstrap=args.bootstrap, num_workers=args.num_workers)
    except (CheckpointError, CohortError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(report_text(result))
    return 0


def report_text(result: dict) -> str:
    """The evaluation as lines of text; a metric the data cannot define says so and why."""
    dropped = ", ".join(result["dropped"]) or "none"
    lines = [f"{result['architecture']} on {result['data']} ({result['split']}, n={result['n']}, withheld: {dropped})"]
    if result.get("outcome") == "survival":
        return "\n".join(lines + _survival_lines(result))
    for key in ("accuracy", "macro_f1", "macro_auroc", "ece"):
        lines.append(f"  {key:<12} {_estimate_text(result[key])}{_over(result[key])}")
    for name, row in result["per_class"].items():
        lines.append(f"  {name:<26} F1 {_estimate_text(row['f1'])}; AUROC {_estimate_text(row['auroc'])} "
                     f"(n={row['support']})")
    return "\n".join(lines)


def _survival_lines(result: dict) -> list[str]:
    horizon = f"{result['horizon']:g} {result['unit']}"
    calibration = result["calibration_at_horizon"]
    brier = result["integrated_brier"]
    reference = result["censoring_reference"]
    return [
        f"  events       {result['n_events']} of {result['n']} with an outcome ({result['n_without_outcome']} without)",
        f"  C-index      {_estimate_text(result['c_index'])}  (risk score {result['risk_score']})",
        f"  {'AUC at ' + horizon:<12} {_estimate_text(result['auc_at_horizon'])}",
        f"  integrated Brier {_estimate_text(brier)} over {brier['range'][0]:g}-{brier['range'][1]:g} {result['unit']}",
        f"  calibration at {horizon}: mean |predicted - observed| {_estimate_text(calibration['mean_abs_gap'])}, "
        f"slope {_estimate_text(calibration['slope'])}",
        f"  censoring weights from {reference['source']} (n={reference['n']}, {reference['n_events']} events)",
    ]


def _estimate_text(estimate: dict) -> str:
    if estimate["value"] is None:
        return estimate["reason"]
    if estimate["ci_low"] is None:
        return f"{estimate['value']:.3f} ({estimate['reason']})"
    return f"{estimate['value']:.3f} [{estimate['ci_low']:.3f}, {estimate['ci_high']:.3f}]"


def _over(macro: dict) -> str:
    """A macro average that leaves classes out names the classes it is taken over."""
    if not macro.get("excluded"):
        return ""
    return f"  over {', '.join(macro['classes'])} (not {', '.join(macro['excluded'])})"


if __name__ == "__main__":
    sys.exit(main())
