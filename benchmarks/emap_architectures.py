"""Does each architecture use cross-modal interactions the task rewards? EMAP per architecture (issue 13).

For every checkpoint (a folder as benchmarks/table2.py writes them, build/table2/<architecture>_s<seed>/), the
test accuracy and macro F1 of the model and of its EMAP projection (explain.emap: Hessel and Lee 2020, the best
additive approximation of the model's logits over modalities), the gap model - EMAP with a 95 % interval from
resampling test cases (the same resamples for both, so the interval is of the paired difference), and the mean
+- sd of each over the seeds of an architecture.

    python benchmarks/emap_architectures.py --checkpoints 'build/table2/*_s*' [--test-data sample_data/cardio]
        [--split test] [--max-cases 200] [--rows-per-pass 4096] [--n-bootstrap 1000] [--out benchmarks/results/emap]

EMAP fuses M x N^2 combinations of the N test cases' encoder outputs (the encoders run once), ``--rows-per-pass``
at a time; ``--max-cases`` keeps a seeded random subset of the split when it is larger. Single-modality
checkpoints (``<modality>_only``) are skipped with a note: a model of one modality is additive by construction.
Survival checkpoints are skipped too: accuracy and F1 are not defined for them.
"""

from __future__ import annotations

import argparse
import glob
import json
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.table2 import TASKS, Row  # noqa: E402
from explain.emap import ROWS_PER_PASS, emap  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data.dataset import Batch  # noqa: E402
from neurofusion.data.timed import open_cohort  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
METRICS = ("accuracy", "macro_f1")
EMAP_MEANING = (
    "EMAP (Hessel and Lee, EMNLP 2020) replaces a model by the best additive approximation of its logits over "
    "modalities on the test cases, sum_m A_m(x^m) - (M - 1) f0, where A_m(i) averages the model over case i's "
    "modality m combined with every other case's remaining modalities (explain.emap). A gap near 0 between the "
    "model and its projection means the model uses no cross-modal interaction that the task rewards on these "
    "cases; a positive gap is the performance its interactions earn.")


@dataclass(frozen=True)
class Scores:
    """Accuracy and macro F1 of a model and of its EMAP projection on the same N cases, with their paired gap."""

    values: dict[str, float]  # model_<metric>, emap_<metric>, gap_<metric> for each metric
    intervals: dict[str, tuple[float, float]]  # gap_<metric> -> (low, high) 95 % percentile interval
    agreement: float  # share of cases where the projection predicts the model's class
    logit_residual: float  # mean |logit - projected logit| over cases and classes


def macro_f1(labels: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> float:
    """scikit-learn's macro F1 over ``classes`` (those with a case among the evaluated ones; zero_division 0)."""
    return float(f1_score(labels, predicted, labels=classes, average="macro", zero_division=0))


def _resampled_metrics(counts: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                       classes: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy and macro F1 (over ``classes``, as :func:`macro_f1`) of each resample given as case counts
    (R, N) -> {metric: (R,)}; equal to scikit-learn on the materialised resamples (the tests check)."""
    n = counts.shape[1]
    correct = (labels == predicted).astype(float)
    f1 = []
    for c in classes:
        tp = counts @ ((labels == c) & (predicted == c))
        true_plus_predicted = counts @ (labels == c).astype(float) + counts @ (predicted == c).astype(float)
        f1.append(np.divide(2 * tp, true_plus_predicted, out=np.zeros_like(tp, dtype=float),
                            where=true_plus_predicted > 0))
    return {"accuracy": counts @ correct / n, "macro_f1": np.mean(f1, axis=0)}


def emap_scores(labels: np.ndarray, logits: np.ndarray, projected: np.ndarray, *, n_bootstrap: int = 1000,
                seed: int = 0, ci: float = 0.95) -> Scores:
    """``labels`` (N,) class indices, ``logits`` and ``projected`` (N, C) the model's and EMAP's -> Scores.
    Predictions are the row-wise argmax. The gap intervals resample the N cases with replacement
    ``n_bootstrap`` times (seeded), each resample scoring both predictions, so they are of the paired gap."""
    labels = np.asarray(labels)
    if logits.shape != projected.shape or logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"labels must be (N,) and logits and projected both (N, C); got {labels.shape}, "
                         f"{logits.shape} and {projected.shape}")
    if (labels < 0).any() or (labels >= logits.shape[1]).any():
        raise ValueError(f"labels must be class indices in 0..{logits.shape[1] - 1} (no unlabelled case, -1); "
                         f"got {sorted(set(labels.tolist()) - set(range(logits.shape[1])))}")
    if n_bootstrap < 1 or not 0 < ci < 1:
        raise ValueError(f"n_bootstrap must be >= 1 and ci in (0, 1); got {n_bootstrap} and {ci}")
    model, additive = logits.argmax(1), projected.argmax(1)
    classes = np.unique(labels)
    values, resampled = {}, {}
    rng = np.random.default_rng(seed)
    n = len(labels)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(n_bootstrap)]).astype(float)
    for name, predicted in (("model", model), ("emap", additive)):
        values[f"{name}_accuracy"] = float(accuracy_score(labels, predicted))
        values[f"{name}_macro_f1"] = macro_f1(labels, predicted, classes)
        resampled[name] = _resampled_metrics(counts, labels, predicted, classes)
    intervals = {}
    for metric in METRICS:
        values[f"gap_{metric}"] = values[f"model_{metric}"] - values[f"emap_{metric}"]
        gaps = resampled["model"][metric] - resampled["emap"][metric]
        low, high = np.quantile(gaps, [(1 - ci) / 2, (1 + ci) / 2])
        intervals[f"gap_{metric}"] = (float(low), float(high))
    return Scores(values, intervals, float((model == additive).mean()), float(np.abs(logits - projected).mean()))


def checkpoint_seed(path: Path) -> int | None:
    """The training seed of a checkpoint folder: training.json's train_config.seed, else the folder name's
    ``_s<k>`` / ``_seed<k>`` suffix (benchmarks/table2.py names them <architecture>_s<seed>), else None."""
    training = path / "training.json"
    if training.is_file():
        seed = json.loads(training.read_text()).get("train_config", {}).get("seed")
        if seed is not None:
            return int(seed)
    match = re.search(r"_s(?:eed)?(\d+)$", path.name)
    return int(match.group(1)) if match else None


def skip_reason(architecture: str, outcome: str) -> str | None:
    """Why a checkpoint gets no EMAP here, or None."""
    if architecture.endswith("_only"):
        return "single-modality model: additive over modalities by construction (its EMAP gap is 0)"
    if outcome != "classification":
        return f"{outcome} model: test accuracy and macro F1 are not defined for it"
    return None


def measure_model(model, batch: Batch, *, rows_per_pass: int = ROWS_PER_PASS, n_bootstrap: int = 1000,
                  seed: int = 0) -> dict:
    """EMAP of ``model`` (anything with encode / fuse) on ``batch`` (its labels the truth) -> one run's record:
    the Scores fields, the number of cases and fusions, and the seconds EMAP took."""
    labels = batch.labels.cpu().numpy()
    if (labels < 0).any():
        raise ValueError(f"{int((labels < 0).sum())} of the {len(labels)} cases have no label; EMAP is scored "
                         "against the labels, so use a labelled split")
    start = time.perf_counter()
    result = emap(model, batch, rows_per_pass=rows_per_pass)
    seconds = time.perf_counter() - start
    scores = emap_scores(labels, result.logits, result.projected, n_bootstrap=n_bootstrap, seed=seed)
    n = len(labels)
    return {**scores.values, **{f"{key}_ci": list(value) for key, value in scores.intervals.items()},
            "agreement": scores.agreement, "logit_residual": scores.logit_residual, "cases": n,
            "fusions": len(result.names) * n * n, "emap_seconds": round(seconds, 3)}


def aggregate(runs: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """{architecture: {key: {"mean", "sd", "n"}}} over its runs (seeds) for every score key; sd is the sample
    standard deviation (ddof 1), 0 for a single run."""
    keys = [f"{who}_{metric}" for who in ("model", "emap", "gap") for metric in METRICS] + ["agreement",
                                                                                           "logit_residual"]
    table: dict[str, dict[str, dict[str, float]]] = {}
    for architecture in dict.fromkeys(r["architecture"] for r in runs):
        mine = [r for r in runs if r["architecture"] == architecture]
        table[architecture] = {}
        for key in keys:
            values = np.array([r[key] for r in mine], dtype=float)
            table[architecture][key] = {"mean": float(values.mean()),
                                        "sd": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                                        "n": len(values)}
    return table


def _label(architecture: str) -> str:
    rows: tuple[Row, ...] = tuple(r for task in TASKS.values() for r in task.rows + task.variants)
    return next((r.shown for r in rows if r.architecture == architecture), architecture)


def markdown(results: dict) -> str:
    """The results as markdown: what EMAP means, the settings, mean +- sd per architecture, each run with
    its gap intervals, and the skipped checkpoints."""
    settings = results["settings"]
    share = settings.get("interaction_share")
    cohort = ("" if share is None else f" The test cohort was generated with interaction share {share:g}"
              f"{' (the additive cohort: no finding needs two modalities)' if share == 0 else ''}.")
    lines = ["# EMAP per architecture: do the models use cross-modal interactions?", "", EMAP_MEANING, "",
             f"Test data `{settings['test_data']}` ({settings['split']} split, {settings['cases']} cases"
             f"{' (a seeded random subset)' if settings['subset'] else ''}); checkpoints "
             f"`{settings['checkpoints']}`.{cohort} "
             f"Gaps are model - EMAP in accuracy points and macro F1, with 95 % intervals from "
             f"{settings['n_bootstrap']} paired resamples of cases; mean ± sd over seeds. Agreement: the share of "
             f"cases whose projection predicts the model's class. Produced by `{settings['command']}`."
             " Synthetic data: the numbers describe the models on this cohort, not on patients.", ""]
    headers = ["model", "seeds", "accuracy (%)", "EMAP accuracy (%)", "gap (points)", "macro F1", "EMAP macro F1",
               "gap F1", "agreement"]
    lines += ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for architecture, cells in results["architectures"].items():
        shown = lambda key, scale=1.0, digits=3: (f"{cells[key]['mean'] * scale:.{digits}f} ± "  # noqa: E731
                                                  f"{cells[key]['sd'] * scale:.{digits}f}")
        lines.append(f"| {_label(architecture)} | {cells['gap_accuracy']['n']} | {shown('model_accuracy', 100, 1)} "
                     f"| {shown('emap_accuracy', 100, 1)} | {shown('gap_accuracy', 100, 1)} | "
                     f"{shown('model_macro_f1')} | {shown('emap_macro_f1')} | {shown('gap_macro_f1')} | "
                     f"{shown('agreement')} |")
    lines += ["", "Each run:", "", "| checkpoint | model | seed | gap (points) [95 % CI] | gap F1 [95 % CI] | "
              "mean abs logit residual | EMAP fusions | EMAP seconds |", "| " + " | ".join(["---"] * 8) + " |"]
    for run in results["runs"]:
        low, high = run["gap_accuracy_ci"]
        f1_low, f1_high = run["gap_macro_f1_ci"]
        lines.append(f"| `{run['checkpoint']}` | {run['architecture']} | {run['seed']} | "
                     f"{100 * run['gap_accuracy']:.1f} [{100 * low:.1f}, {100 * high:.1f}] | "
                     f"{run['gap_macro_f1']:.3f} [{f1_low:.3f}, {f1_high:.3f}] | {run['logit_residual']:.4f} | "
                     f"{run['fusions']:,} | {run['emap_seconds']:.1f} |")
    if results["skipped"]:
        lines += ["", "Skipped:", ""] + [f"- `{s['checkpoint']}` ({s['architecture']}): {s['reason']}"
                                         for s in results["skipped"]]
    return "\n".join(lines) + "\n"


def _shown(path: Path) -> str:
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", required=True,
                        help="checkpoint folders or glob patterns, e.g. 'build/table2/*_s*'")
    parser.add_argument("--test-data", default=str(ROOT / "sample_data" / "cardio"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--max-cases", type=int, default=200, help="a seeded random subset of the split above this")
    parser.add_argument("--rows-per-pass", type=int, default=ROWS_PER_PASS, help="fusion rows per EMAP pass")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the case subset and the resamples")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 on shared, busy cores)")
    parser.add_argument("--out", default=str(RESULTS / "emap"), help="writes <out>.json and <out>.md")
    args = parser.parse_args(argv)
    for name in ("max_cases", "rows_per_pass", "n_bootstrap"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    unmatched = [p for p in args.checkpoints if not any((Path(f) / "config.json").is_file() for f in glob.glob(p))]
    if unmatched:
        parser.error(f"no checkpoint folder (one with a config.json) matches {unmatched}")
    folders = sorted({Path(f) for p in args.checkpoints for f in glob.glob(p) if (Path(f) / "config.json").is_file()})
    cohort = open_cohort(args.test_data)
    ids = cohort.ids(args.split)
    if len(ids) < 2:
        parser.error(f"{args.test_data} has {len(ids)} cases in split {args.split!r}; EMAP needs at least 2")
    subset = len(ids) > args.max_cases
    if subset:
        ids = [ids[k] for k in sorted(np.random.default_rng(args.seed).choice(len(ids), args.max_cases, replace=False))]
    cases = [cohort[i] for i in ids]
    runs, skipped = [], []
    for folder in folders:
        ckpt = load_checkpoint(folder, device="cpu")
        architecture = ckpt.config.architecture
        reason = skip_reason(architecture, ckpt.config.outcome)
        if reason:
            skipped.append({"checkpoint": _shown(folder), "architecture": architecture, "reason": reason})
            print(f"{folder}: skipped, {reason}", flush=True)
            continue
        batch = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device).batch(cases)
        record = measure_model(ckpt.model, batch, rows_per_pass=args.rows_per_pass, n_bootstrap=args.n_bootstrap,
                               seed=args.seed)
        runs.append({"checkpoint": _shown(folder), "architecture": architecture, "seed": checkpoint_seed(folder),
                     **record})
        print(f"{folder}: accuracy {record['model_accuracy']:.3f}, EMAP {record['emap_accuracy']:.3f}, gap "
              f"{record['gap_accuracy']:+.3f} {record['gap_accuracy_ci']} ({record['emap_seconds']:.1f} s)", flush=True)
    generator = getattr(cohort, "info", {}).get("generator", {})
    # a cardio cohort generated before --interaction-share existed is the additive one
    share = generator.get("interaction_share", 0.0 if generator.get("task") == "cardio" else None)
    command = " ".join(["python benchmarks/emap_architectures.py",
                        *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    results = {"settings": {"test_data": _shown(Path(args.test_data)), "split": args.split, "cases": len(cases),
                            "interaction_share": share, "command": command,
                            "subset": subset, "checkpoints": " ".join(args.checkpoints),
                            "rows_per_pass": args.rows_per_pass, "n_bootstrap": args.n_bootstrap, "seed": args.seed},
               "architectures": aggregate(runs), "runs": runs, "skipped": skipped}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    out.with_suffix(".md").write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
