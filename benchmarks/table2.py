"""The paper's Table 2 on the synthetic cohorts: every architecture trained on the same train/val split with the
same budget, several seeds, evaluated on the bundled test split. ``--task cardio`` (the default) gives the
cardiovascular columns (accuracy, macro F1); ``--task cancer`` the cancer columns (Harrell's C-index and the
5-year time-dependent AUC, plus the integrated Brier score).

    python benchmarks/table2.py [--task cardio|cancer] [--seeds 0 1 2] [--max-minutes M] [--max-epochs E]

Needs the training data of the sample cohort's seed (``make demo-checkpoint`` generates build/cardio_trainval,
``make cancer-demo-checkpoint`` build/cancer_trainval). Runs are resumable: finished (architecture, seed) pairs
are read back from benchmarks/results/table2.json (cancer: table2_cancer.json). Checkpoints go to build/table2/
(cancer: build/table2_cancer/), where benchmarks/missing_modalities.py reads cardio's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.evaluate import censoring_reference, evaluate, survival_report  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.train import main as train_main  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


@dataclass(frozen=True)
class Metric:
    """One column of the table: ``key`` of a run record, read from an evaluation result at ``path``."""

    key: str
    header: str
    path: tuple[str, ...]
    scale: float = 1.0  # shown as value * scale
    digits: int = 3


@dataclass(frozen=True)
class Row:
    """One architecture of the table and the paper's numbers it is compared with (one per paper metric)."""

    architecture: str
    paper: tuple[float, ...]
    paper_row: str = ""  # the paper's row name, where it differs from the architecture's


@dataclass(frozen=True)
class Task:
    """What differs between the cardio and cancer tables; the training loop and the writer are shared."""

    name: str
    config: str
    data: str
    test_data: str
    max_minutes: float
    max_epochs: int
    metrics: tuple[Metric, ...]  # measured columns, the first len(paper_headers) are the paper's metrics
    paper_headers: tuple[str, ...]
    rows: tuple[Row, ...]
    intro: Callable[[dict], list[str]]  # settings -> the markdown's title and paragraphs
    cap_notes: bool = False  # name the runs a budget cap stopped (cardio's table predates this)

    @property
    def store(self) -> Path:
        return RESULTS / ("table2.json" if self.name == "cardio" else f"table2_{self.name}.json")

    @property
    def markdown(self) -> Path:
        return self.store.with_suffix(".md")

    @property
    def checkpoints(self) -> Path:
        return ROOT / "build" / ("table2" if self.name == "cardio" else f"table2_{self.name}")


def _cardio_intro(settings: dict) -> list[str]:
    return [
        "# Table 2 on the synthetic cardiovascular cohort",
        "",
        f"Same encoders and training budget for every model (config `{settings.get('config')}`, at most "
        f"{settings.get('max_epochs')} epochs or {settings.get('max_minutes')} minutes, early stopping on "
        f"validation macro-F1), trained on the 1,800 train/val cases of seed 2026, tested on the "
        f"{settings.get('test_cases')} bundled test cases. Mean ± sd over seeds. Produced by "
        "`python benchmarks/table2.py`. Synthetic data: the numbers say how the architectures compare on "
        "this cohort, not how they would do on patients.",
    ]


def _cancer_intro(settings: dict) -> list[str]:
    return [
        "# Table 2 on the synthetic cancer cohort",
        "",
        f"Same encoders and training budget for every model (config `{settings.get('config')}`: a discrete-time "
        f"survival head over 12-month bins; at most {settings.get('max_epochs')} epochs or "
        f"{settings.get('max_minutes')} minutes, early stopping on validation C-index after "
        f"{settings.get('patience')} epochs without a better one), trained on the {settings.get('train_cases')} "
        f"train cases and selected on the {settings.get('val_cases')} val cases of {settings.get('data')} (the "
        f"cancer sample's seed, 2026), tested on the {settings.get('test_cases')} bundled test cases of "
        f"{settings.get('test_data')}. Harrell's C-index and the cumulative/dynamic AUC at 5 years of the risk "
        "score 1 - S(60 months), and the integrated Brier score (lower is better; the paper gives none); AUC and "
        f"Brier weight censoring by the Kaplan-Meier of {settings.get('censoring_reference')}. Mean ± sd over "
        "the seeds each row has. Produced by `python benchmarks/table2.py --task cancer`. Synthetic data: the "
        "numbers say how the architectures compare on this cohort, not how they would do on patients.",
        "",
        "The cancer cohort declares histopathology (image), genomics (tabular), treatment_notes (text) and "
        "clinical (tabular); each `<modality>_only` model is its encoder alone. The paper's Structured Only row "
        "is compared with both tabular baselines (genomics_only and clinical_only). The paper's Signal Only row "
        "is N/A for cancer there, and has no counterpart here: the cancer cohort has no signal modality.",
    ]


TASKS = {
    "cardio": Task(
        name="cardio", config="configs/cardio_demo.yaml", data="build/cardio_trainval",
        test_data="sample_data/cardio", max_minutes=6.0, max_epochs=20,
        metrics=(Metric("accuracy", "accuracy (%)", ("accuracy", "value"), scale=100, digits=1),
                 Metric("macro_f1", "macro F1", ("macro_f1", "value"))),
        paper_headers=("paper accuracy (%)", "paper F1"),
        rows=(Row("image_only", (86.3, 0.847)), Row("text_only", (82.7, 0.809)),
              Row("signal_only", (88.1, 0.869)), Row("tabular_only", (79.4, 0.776)),
              Row("early_fusion", (90.8, 0.897)), Row("late_fusion", (89.3, 0.881)),
              Row("mlp_fusion", (91.4, 0.904)), Row("neurofusion", (94.2, 0.931))),
        intro=_cardio_intro),
    "cancer": Task(
        name="cancer", config="configs/cancer_demo.yaml", data="build/cancer_trainval",
        test_data="sample_data/cancer", max_minutes=4.0, max_epochs=40,
        metrics=(Metric("c_index", "C-index", ("c_index", "value")),
                 Metric("auc_5y", "5-yr AUC", ("auc_at_horizon", "value")),
                 Metric("integrated_brier", "integrated Brier", ("integrated_brier", "value"))),
        paper_headers=("paper C-index", "paper 5-yr AUC"),
        rows=(Row("histopathology_only", (0.834, 0.808), "Image Only"),
              Row("treatment_notes_only", (0.798, 0.776), "Text Only"),
              Row("genomics_only", (0.812, 0.789), "Structured Only"),
              Row("clinical_only", (0.812, 0.789), "Structured Only"),
              Row("early_fusion", (0.863, 0.841), "Early Fusion"),
              Row("late_fusion", (0.851, 0.829), "Late Fusion"),
              Row("mlp_fusion", (0.871, 0.854), "MLP Fusion"), Row("neurofusion", (0.897, 0.878), "NeuroFusion")),
        intro=_cancer_intro, cap_notes=True),
}


def read_metrics(task: Task, result: dict) -> dict[str, float]:
    """The task's metric values out of an evaluation result (``evaluate`` / ``survival_report`` JSON)."""
    values = {}
    for metric in task.metrics:
        node = result
        for step, key in enumerate(metric.path):
            if not isinstance(node, dict) or key not in node:
                raise KeyError(f"{task.name} result has no {'.'.join(metric.path[:step + 1])} (for {metric.key}); "
                               f"expected an evaluation result with {'.'.join(metric.path)}")
            node = node[key]
        if node is None:
            reason = result[metric.path[0]].get("reason", "no reason given")
            raise ValueError(f"{task.name} metric {'.'.join(metric.path)} is not defined on the test split: {reason}")
        values[metric.key] = float(node)
    return values


def _shown(path: str) -> str:
    """``path`` relative to the repository when it is inside it (results name no machine's folders)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


def measure(task: Task, checkpoint: Path, test_data: str, train_data: str) -> dict:
    """Evaluate ``checkpoint`` on the test split -> the evaluation result (200 bootstrap resamples). A survival
    model's AUC and Brier score weight censoring by the train split outcomes of ``train_data`` (the bundled
    test cohort has no train split), as benchmarks/missing_modalities_cancer.py does."""
    if task.name == "cardio":
        return evaluate(checkpoint, test_data, n_bootstrap=200)
    ckpt = load_checkpoint(checkpoint, device="cpu")
    cohort, training = CohortReader(test_data), CohortReader(train_data)
    reference = censoring_reference(training, training.ids("train"), f"the train split of {_shown(train_data)}")
    if reference is None:
        raise ValueError(f"{train_data} has no train cases with an outcome to weight censoring by")
    cases = [cohort[i] for i in cohort.ids("test")]
    prediction = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device).predict_survival(cases)
    return {**survival_report(prediction, reference, n_bootstrap=200), "censoring_source": reference["source"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), default="cardio")
    parser.add_argument("--data", help="train/val cohort (default: the task's build/<task>_trainval)")
    parser.add_argument("--test-data", help="test cohort (default: sample_data/<task>)")
    parser.add_argument("--config", help="experiment YAML (default: configs/<task>_demo.yaml)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-minutes", type=float, help="default: cardio 6, cancer 4")
    parser.add_argument("--max-epochs", type=int, help="default: cardio 20, cancer 40")
    parser.add_argument("--architectures", nargs="+", help="default: the task's table rows")
    args = parser.parse_args()
    task = TASKS[args.task]
    data = args.data or str(ROOT / task.data)
    test_data = args.test_data or str(ROOT / task.test_data)
    config = args.config or str(ROOT / task.config)
    max_minutes = task.max_minutes if args.max_minutes is None else args.max_minutes
    max_epochs = task.max_epochs if args.max_epochs is None else args.max_epochs
    order = [row.architecture for row in task.rows]
    unknown = sorted(set(args.architectures or ()) - set(order))
    if unknown:
        parser.error(f"--architectures {unknown} are not rows of the {task.name} table; choose from {order}")

    results = json.loads(task.store.read_text()) if task.store.is_file() else {"runs": []}
    done = {(r["architecture"], r["seed"]) for r in results["runs"]}
    for seed in args.seeds:
        for architecture in args.architectures or order:
            if (architecture, seed) in done:
                continue
            out = task.checkpoints / f"{architecture}_s{seed}"
            start = time.perf_counter()
            code = train_main(["--config", config, "--data", data, "--eval-data", test_data,
                               "--out", str(out), "--architecture", architecture, "--seed", str(seed),
                               "--max-minutes", str(max_minutes), "--max-epochs", str(max_epochs), "--quiet"])
            if code != 0:
                raise SystemExit(f"training {architecture} seed {seed} failed")
            result = measure(task, out, test_data, data)
            values = read_metrics(task, result)
            training = json.loads((out / "training.json").read_text())
            results["runs"].append({
                "architecture": architecture, "seed": seed, **values, "epochs": training["epochs"],
                "best_epoch": training["best_epoch"], "train_minutes": training["minutes"],
                "wall_minutes": round((time.perf_counter() - start) / 60, 2),
            })
            results["settings"] = {"max_minutes": max_minutes, "max_epochs": max_epochs,
                                   "config": Path(config).name, "test_cases": result["n"]}
            if task.name != "cardio":
                training_cohort = CohortReader(data)
                results["settings"].update(train_cases=len(training_cohort.ids("train")),
                                           val_cases=len(training_cohort.ids("val")), data=_shown(data),
                                           test_data=_shown(test_data),
                                           patience=training["train_config"]["patience"],
                                           censoring_reference=result["censoring_source"])
            RESULTS.mkdir(exist_ok=True)
            task.store.write_text(json.dumps(results, indent=2) + "\n")
            shown = ", ".join(f"{key} {value:.3f}" for key, value in values.items())
            print(f"{architecture} seed {seed}: {shown}", flush=True)
    text = markdown(task, results)
    task.markdown.write_text(text)
    print(text, end="")


def markdown(task: Task, results: dict) -> str:
    """The table as markdown: the task's intro, then one line per row with runs (mean ± sd over seeds, sd 0
    for a single seed) beside the paper's numbers."""
    paper_row = any(row.paper_row for row in task.rows)
    headers = ["model", "seeds", *(m.header for m in task.metrics), *(["paper row"] if paper_row else []),
               *task.paper_headers]
    lines = [*task.intro(results.get("settings", {})), "",
             "| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for row in task.rows:
        runs = [r for r in results["runs"] if r["architecture"] == row.architecture]
        if not runs:
            continue
        cells = [row.architecture, str(len(runs))]
        for metric in task.metrics:
            values = np.array([r[metric.key] for r in runs], dtype=float) * metric.scale
            sd = values.std(ddof=1) if len(runs) > 1 else 0
            cells.append(f"{values.mean():.{metric.digits}f} ± {sd:.{metric.digits}f}")
        cells += [row.paper_row] if paper_row else []
        cells += [str(value) for value in row.paper]
        lines.append("| " + " | ".join(cells) + " |")
    notes = _budget_notes(results) if task.cap_notes else []
    return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _budget_notes(results: dict) -> list[str]:
    """One line per budget cap that stopped runs before early stopping did, naming the runs (architecture,
    seed: epochs run, best epoch); none when every run stopped early."""
    settings = results.get("settings", {})
    capped: dict[str, list[str]] = {}
    for run in results["runs"]:
        if "max_epochs" in settings and run["epochs"] >= settings["max_epochs"]:
            cap = f"the {settings['max_epochs']}-epoch cap"
        elif "max_minutes" in settings and run["train_minutes"] >= settings["max_minutes"]:
            cap = f"the {settings['max_minutes']}-minute cap"
        else:
            continue
        capped.setdefault(cap, []).append(f"{run['architecture']} seed {run['seed']} ({run['epochs']} epochs, best "
                                          f"{run['best_epoch']})")
    notes = [f"Stopped by {cap}, not by early stopping: {', '.join(runs)}." for cap, runs in capped.items()]
    if any("minute" in cap for cap in capped):
        notes.append("How many epochs fit in the minute cap depends on the machine's load (these runs shared 2 CPU "
                     "cores with other work): a run with few epochs is under-trained, which says nothing about its "
                     "architecture.")
    return notes


if __name__ == "__main__":
    main()
