"""The paper's Table 2 on the synthetic cohorts: every architecture trained on the same train/val split with the
same budget, several seeds, evaluated on the bundled test split. ``--task cardio`` (the default) gives the
cardiovascular columns (accuracy, macro F1); ``--task cancer`` the cancer columns (Harrell's C-index and the
5-year time-dependent AUC, plus the integrated Brier score); ``--task icu`` the ICU columns (AUROC and AUPRC of
death within 48 h over every test sample, a stay as of an hour, plus the Brier score and the AUROC at hours 0,
24 and 48, with 95 % intervals that resample stays: neurofusion.risk_metrics).

    python benchmarks/table2.py [--task cardio|cancer|icu] [--seeds 0 1 2] [--max-minutes M] [--max-epochs E]

``--architectures`` also accepts variants that are not the paper's rows (``neurofusion_gated``: NeuroFusion plus
multiplicative context gating); they run only when named, and their table rows say they are not in the paper.

Needs the training data of the sample cohort's seed (``make demo-checkpoint`` generates build/cardio_trainval,
``make cancer-demo-checkpoint`` build/cancer_trainval). The ICU table trains on a cohort of another seed than
the bundled test stays, since stay ids repeat across seeds:
``python -m neurofusion.data generate --task icu --n 800 --seed 2027 --splits train,val --out build/icu_table2``.
Runs are resumable: finished (architecture, seed) pairs are read back from benchmarks/results/table2.json
(others: table2_<task>.json). Several processes may fill one table at once (e.g. one per set of
``--architectures``, each with ``--threads 1`` on a 2-core machine): each run is added to the file under a lock,
re-read just before, and a pair another process has finished is skipped. Checkpoints go to build/table2/
(others: build/table2_<task>/), where benchmarks/missing_modalities.py reads cardio's.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.data.timed import TimedCohortReader  # noqa: E402
from neurofusion.evaluate import censoring_reference, evaluate, survival_report  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.risk_metrics import risk_metrics  # noqa: E402
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
    optional: bool = False  # may be undefined on the test split (one class at an hour): None, not an error
    column: bool = True  # a column of the mean ± sd table (False: kept in the run records only)


@dataclass(frozen=True)
class Row:
    """One architecture of the table and the paper's numbers it is compared with (one per paper metric)."""

    architecture: str
    paper: tuple[float, ...]  # empty for a variant the paper does not have
    paper_row: str = ""  # the paper's row name, where it differs from the architecture's
    label: str = ""  # shown in the model column instead of the architecture's name

    @property
    def shown(self) -> str:
        return self.label or self.architecture


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
    details: Callable[[dict], list[str]] | None = None  # results -> lines after the table (e.g. per-run intervals)
    evaluates_in_training: bool = True  # training also evaluates --eval-data (ICU: measured here, once)
    fixed_budget: bool = False  # every run has the same epoch budget: resuming under another one is refused
    variants: tuple[Row, ...] = ()  # rows run only when --architectures names them (not the paper's)

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
    share = settings.get("interaction_share")
    cohort = ("" if share is None else
              f" (interaction share {share:g}: that share of cases is decided by a cross-modal interaction rule, "
              "a pair of cues that means the label only in proportion to each other; see "
              "neurofusion/data/synthetic/interactions.py)" if share else " (interaction share 0: additive)")
    budget = (f"at most {settings.get('max_epochs')} epochs, keeping the epoch of best validation macro-F1; the "
              f"{settings.get('max_minutes')}-minute cap bound no run (longest: "
              f"{settings.get('longest_train_minutes')} minutes of training, {settings.get('torch_threads')} torch "
              "thread(s) per run on 2 shared CPU cores)" if "longest_train_minutes" in settings else
              f"at most {settings.get('max_epochs')} epochs or {settings.get('max_minutes')} minutes, early "
              "stopping on validation macro-F1")
    return [
        "# Table 2 on the synthetic cardiovascular cohort",
        "",
        f"Same encoders and training budget for every model (config `{settings.get('config')}`, {budget}), "
        f"trained on the 1,800 train/val cases of seed 2026{cohort}, tested on the "
        f"{settings.get('test_cases')} bundled test cases. Mean ± sd over seeds. Produced by "
        f"`{settings.get('command', 'python benchmarks/table2.py')}`. Synthetic data: the numbers say how the "
        "architectures compare on this cohort, not how they would do on patients.",
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


def _icu_intro(settings: dict) -> list[str]:
    return [
        "# Table 2 on the synthetic ICU cohort",
        "",
        f"Same encoders and training budget for every model (config `{settings.get('config')}`: a two-class risk "
        f"head for death within 48 h, keeping the epoch with the best validation AUROC, early stopping after "
        f"{settings.get('patience')} epochs without a better one). The budget is counted in epochs so that the "
        f"load on the machine cannot change a result: at most {settings.get('max_epochs')} epochs; the "
        f"{settings.get('max_minutes')}-minute cap sits far above every run and bound none (longest: "
        f"{settings.get('longest_train_minutes')} minutes of training, {settings.get('torch_threads')} torch "
        "thread(s) on 2 CPU cores shared with other work). Trained on the "
        f"{settings.get('train_stays')} train stays ({settings.get('train_samples')} samples, "
        f"{_percent(settings.get('train_prevalence'))} dying within 48 h) and selected on the "
        f"{settings.get('val_stays')} val stays ({settings.get('val_samples')} samples) of {settings.get('data')} "
        f"(seed {settings.get('data_seed')}); tested on the {settings.get('test_samples')} samples of the "
        f"{settings.get('test_stays')} bundled test stays of {settings.get('test_data')} (seed "
        f"{settings.get('test_seed')}; stay ids repeat across seeds, so no test stay is trained on), "
        f"{_percent(settings.get('test_prevalence'))} of them dying within 48 h.",
        "",
        "A sample is a stay as of a prediction hour (0, 6, 12, 24, 36, 48 h, those inside the stay); the model sees "
        "only what was recorded by then, and at hour 0 nothing but demographics has been recorded (so a "
        "vitals-, labs- or notes-only model gives every hour-0 sample the same risk: AUROC 0.5). AUROC, AUPRC "
        "(average precision) and the Brier score are over all test samples; AUROC at 0 / 24 / 48 h over the "
        "samples of that hour. Mean ± sd over the training seeds each row has (same data). Each run's 95 % "
        f"intervals ({settings.get('n_bootstrap')} bootstrap resamples of stays, each with all its samples: "
        f"neurofusion.risk_metrics) follow the table. Produced by `{settings.get('command')}`.",
        "",
        "The ICU cohort declares vitals (signal), labs (tabular), notes (text) and demographics (tabular); each "
        "`<modality>_only` model is its encoder alone. The paper's Signal Only row is compared with vitals_only, "
        "Text Only with notes_only and Structured Only with both tabular baselines (labs_only and "
        "demographics_only); its Image Only row (0.782 / 0.691) has no counterpart: the ICU cohort has no image. "
        "Synthetic data: the numbers say how the architectures compare on this cohort, not how they would do on "
        "patients (the paper's are on MIMIC-IV).",
    ]


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{100 * value:.1f} %"


# Fusion variants tried beside the paper's rows (issue 13): accepted by --architectures, never run by default.
VARIANTS = (Row("neurofusion_gated", (), label="neurofusion_gated (NeuroFusion + context gating; not in the paper)"),)


def _icu_details(results: dict) -> list[str]:
    """Each run's AUROC and AUPRC with its stay-bootstrap 95 % interval, its Brier score and its epochs."""
    headers = ["model", "seed", "AUROC [95 % CI]", "AUPRC [95 % CI]", "Brier", "epochs (best)", "train minutes"]
    lines = ["Each run, with its stay-bootstrap 95 % intervals:", "", "| " + " | ".join(headers) + " |",
             "| " + " | ".join("---" for _ in headers) + " |"]
    order = {row.architecture: i for i, row in enumerate(TASKS["icu"].rows + TASKS["icu"].variants)}
    for run in sorted(results["runs"], key=lambda r: (order.get(r["architecture"], len(order)), r["seed"])):
        lines.append(f"| {run['architecture']} | {run['seed']} | {_interval(run, 'auroc')} | "
                     f"{_interval(run, 'auprc')} | {run['brier']:.3f} | {run['epochs']} ({run['best_epoch']}) | "
                     f"{run['train_minutes']} |")
    return lines


def _interval(run: dict, key: str) -> str:
    low, high = run.get(f"{key}_ci_low"), run.get(f"{key}_ci_high")
    defined = low is not None and high is not None
    return f"{run[key]:.3f} " + (f"[{low:.3f}, {high:.3f}]" if defined else "[not defined]")


TASKS = {
    "cardio": Task(
        name="cardio", config="configs/cardio_demo.yaml", data="build/cardio_trainval",
        test_data="sample_data/cardio", max_minutes=60.0, max_epochs=12,
        metrics=(Metric("accuracy", "accuracy (%)", ("accuracy", "value"), scale=100, digits=1),
                 Metric("macro_f1", "macro F1", ("macro_f1", "value"))),
        paper_headers=("paper accuracy (%)", "paper F1"),
        rows=(Row("image_only", (86.3, 0.847)), Row("text_only", (82.7, 0.809)),
              Row("signal_only", (88.1, 0.869)), Row("tabular_only", (79.4, 0.776)),
              Row("early_fusion", (90.8, 0.897)), Row("late_fusion", (89.3, 0.881)),
              Row("mlp_fusion", (91.4, 0.904)), Row("neurofusion", (94.2, 0.931))),
        intro=_cardio_intro, variants=VARIANTS, fixed_budget=True),
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
        intro=_cancer_intro, cap_notes=True, variants=VARIANTS),
    "icu": Task(
        name="icu", config="configs/icu_demo.yaml", data="build/icu_table2",
        test_data="sample_data/icu", max_minutes=120.0, max_epochs=8,
        metrics=(Metric("auroc", "AUROC", ("auroc", "value")),
                 Metric("auprc", "AUPRC", ("auprc", "value")),
                 Metric("brier", "Brier", ("brier", "value")),
                 *(Metric(f"auroc_{h}h", f"AUROC at {h} h", ("by_hour", h, "auroc", "value"), optional=True)
                   for h in ("0", "24", "48")),
                 *(Metric(f"{key}_{end}", f"{key} {end}", (key, end), optional=True, column=False)
                   for key in ("auroc", "auprc") for end in ("ci_low", "ci_high"))),
        paper_headers=("paper AUROC", "paper AUPRC"),
        rows=(Row("vitals_only", (0.856, 0.774), "Signal Only"),
              Row("notes_only", (0.823, 0.742), "Text Only"),
              Row("labs_only", (0.834, 0.751), "Structured Only"),
              Row("demographics_only", (0.834, 0.751), "Structured Only"),
              Row("early_fusion", (0.887, 0.812), "Early Fusion"),
              Row("late_fusion", (0.879, 0.798), "Late Fusion"),
              Row("mlp_fusion", (0.894, 0.823), "MLP Fusion"), Row("neurofusion", (0.913, 0.849), "NeuroFusion")),
        intro=_icu_intro, cap_notes=True, details=_icu_details, evaluates_in_training=False, fixed_budget=True,
        variants=VARIANTS),
}


def read_metrics(task: Task, result: dict) -> dict[str, float | None]:
    """The task's metric values out of an evaluation result (``evaluate`` / ``survival_report`` /
    ``risk_metrics`` JSON). A metric the result leaves undefined (null) is a ValueError giving the reason the
    result states beside it, unless the metric is optional: then its value is None."""
    values = {}
    for metric in task.metrics:
        node = parent = result
        for step, key in enumerate(metric.path):
            if not isinstance(node, dict) or key not in node:
                raise KeyError(f"{task.name} result has no {'.'.join(metric.path[:step + 1])} (for {metric.key}); "
                               f"expected an evaluation result with {'.'.join(metric.path)}")
            parent, node = node, node[key]
        if node is None and not metric.optional:
            reason = parent.get("reason") or "no reason given"
            raise ValueError(f"{task.name} metric {'.'.join(metric.path)} is not defined on the test split: {reason}")
        values[metric.key] = None if node is None else float(node)
    return values


def _shown(path: str) -> str:
    """``path`` relative to the repository when it is inside it (results name no machine's folders)."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(path)


@dataclass(frozen=True)
class RiskSamples:
    """The test samples of a time-stamped cohort, read once for every run: the cases (a stay as of an hour),
    the stay (N,) and hour (N,) of each, and the sizes and prevalences of the test and training cohorts."""

    cases: list
    stays: np.ndarray
    hours: np.ndarray
    settings: dict


def risk_samples(test_data: str, train_data: str) -> RiskSamples:
    """The test split of ``test_data`` as samples, with both cohorts' stays, samples and prevalence."""
    test, training = TimedCohortReader(test_data), TimedCohortReader(train_data)
    table = test.table[test.table["split"] == "test"]
    if table.empty:
        raise ValueError(f"{test_data} has no test samples to evaluate on")
    event = test.classes[1]
    data_seed, test_seed = (reader.info.get("generator", {}).get("seed") for reader in (training, test))
    if data_seed is not None and data_seed == test_seed:
        raise ValueError(f"{train_data} and {test_data} were generated with the same seed ({data_seed}): stay ids "
                         "repeat across seeds, so the training stays would include the test stays; generate the "
                         "training cohort with another seed")
    settings = {"data": _shown(train_data), "test_data": _shown(test_data), "data_seed": data_seed,
                "test_seed": test_seed}
    for name, rows in (("train", training.table[training.table["split"] == "train"]),
                       ("val", training.table[training.table["split"] == "val"]), ("test", table)):
        settings.update({f"{name}_stays": int(rows["stay_id"].nunique()), f"{name}_samples": len(rows),
                         f"{name}_prevalence": round(float((rows["label"] == event).mean()), 4) if len(rows) else None})
    cases = [test[i] for i in table["case_id"]]
    return RiskSamples(cases, table["stay_id"].to_numpy(), table["hour"].to_numpy(float), settings)


def risk_result(labels: np.ndarray, probabilities: np.ndarray, classes: tuple[str, ...], samples: RiskSamples,
                *, n_bootstrap: int = 1000) -> dict:
    """``risk_metrics`` (overall and by hour) of the event's probability: ``labels`` (N,) class indices and
    ``probabilities`` (N, 2) over ``classes``, the second of which is the event ("dies_within_48h")."""
    if len(classes) != 2 or np.shape(probabilities) != (len(samples.cases), 2):
        raise ValueError(f"the risk table needs a two-class model's probabilities (N, 2) = ({len(samples.cases)}, 2); "
                         f"got classes {tuple(classes)} and probabilities of shape {np.shape(probabilities)}")
    if (np.asarray(labels) < 0).any():
        raise ValueError(f"{int((np.asarray(labels) < 0).sum())} test samples have no label; every sample of a "
                         "time-stamped cohort has one (check the test cohort)")
    return {**risk_metrics(labels, probabilities[:, 1], samples.stays, samples.hours, n_bootstrap=n_bootstrap),
            "n": len(labels), "event": classes[1]}


def measure(task: Task, checkpoint: Path, test_data: str, train_data: str,
            samples: RiskSamples | None = None) -> dict:
    """Evaluate ``checkpoint`` on the test split -> the evaluation result (200 bootstrap resamples; the ICU
    risk metrics 1000, cheap as stay resampling is vectorised). A survival model's AUC and Brier score weight
    censoring by the train split outcomes of ``train_data`` (the bundled test cohort has no train split), as
    benchmarks/missing_modalities_cancer.py does. The ICU table reads its test ``samples`` once for all runs."""
    if task.name == "cardio":
        return evaluate(checkpoint, test_data, n_bootstrap=200)
    ckpt = load_checkpoint(checkpoint, device="cpu")
    if task.name == "icu":
        samples = samples or risk_samples(test_data, train_data)
        labels, probabilities = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device).predict(samples.cases)
        return risk_result(labels, probabilities, tuple(ckpt.model.classes), samples)
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
    parser.add_argument("--max-minutes", type=float, help="default: cardio 60 (not binding), cancer 4, icu 120 "
                        "(not binding)")
    parser.add_argument("--max-epochs", type=int, help="default: cardio 12, cancer 40, icu 8")
    parser.add_argument("--architectures", nargs="+", help="default: the task's table rows")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's); 1 on shared, busy cores, "
                        "where threads waiting for each other cost far more than they gain")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    task = TASKS[args.task]
    data = args.data or str(ROOT / task.data)
    test_data = args.test_data or str(ROOT / task.test_data)
    config = args.config or str(ROOT / task.config)
    max_minutes = task.max_minutes if args.max_minutes is None else args.max_minutes
    max_epochs = task.max_epochs if args.max_epochs is None else args.max_epochs
    order = [row.architecture for row in task.rows]
    accepted = order + [row.architecture for row in task.variants]
    unknown = sorted(set(args.architectures or ()) - set(accepted))
    if unknown:
        parser.error(f"--architectures {unknown} are not rows of the {task.name} table; choose from {accepted}")

    with _locked(task.store):
        results = _read_store(task)
    stored = results.get("settings", {}).get("max_epochs")
    if task.fixed_budget and results["runs"] and stored != max_epochs:
        parser.error(f"{_shown(str(task.store))} holds runs of at most {stored} epochs; resuming with --max-epochs "
                     f"{max_epochs} would mix budgets in one table (move that file away to start over)")
    samples = risk_samples(test_data, data) if task.name == "icu" else None
    for seed in args.seeds:
        for architecture in args.architectures or order:
            with _locked(task.store):  # another process may have finished this pair meanwhile
                if (architecture, seed) in {(r["architecture"], r["seed"]) for r in _read_store(task)["runs"]}:
                    continue
            out = task.checkpoints / f"{architecture}_s{seed}"
            start = time.perf_counter()
            evaluation = ["--eval-data", test_data] if task.evaluates_in_training else []
            code = train_main(["--config", config, "--data", data, *evaluation, "--out", str(out),
                               "--architecture", architecture, "--seed", str(seed),
                               "--max-minutes", str(max_minutes), "--max-epochs", str(max_epochs), "--quiet"])
            if code != 0:
                raise SystemExit(f"training {architecture} seed {seed} failed")
            result = measure(task, out, test_data, data, samples)
            values = read_metrics(task, result)
            training = json.loads((out / "training.json").read_text())
            run = {
                "architecture": architecture, "seed": seed, **values, "epochs": training["epochs"],
                "best_epoch": training["best_epoch"], "train_minutes": training["minutes"],
                "wall_minutes": round((time.perf_counter() - start) / 60, 2),
            }
            with _locked(task.store):
                results = _read_store(task)
                results["runs"].append(run)
                results["settings"] = _settings(task, results, result, training, config, data, test_data,
                                                 max_minutes, max_epochs, samples)
                RESULTS.mkdir(exist_ok=True)
                task.store.write_text(json.dumps(results, indent=2) + "\n")
                task.markdown.write_text(markdown(task, results))  # a stopped run leaves a table of what is done
            shown = ", ".join(f"{key} {value:.3f}" for key, value in values.items() if value is not None)
            print(f"{architecture} seed {seed}: {shown}", flush=True)
    with _locked(task.store):
        results = _read_store(task)
    text = markdown(task, results)
    task.markdown.write_text(text)
    print(text, end="")


@contextmanager
def _locked(store: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``store``'s lock file (beside it) while reading or updating it."""
    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.with_suffix(".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_store(task: Task) -> dict:
    return json.loads(task.store.read_text()) if task.store.is_file() else {"runs": []}


def _settings(task: Task, results: dict, result: dict, training: dict, config: str, data: str, test_data: str,
              max_minutes: float, max_epochs: int, samples: RiskSamples | None) -> dict:
    """The table's settings after a run: the budget and config, plus what each task's intro reports."""
    settings = {"max_minutes": max_minutes, "max_epochs": max_epochs, "config": Path(config).name,
                "test_cases": result["n"]}
    threads = torch.get_num_threads()
    if task.name == "icu":
        settings.update(
            samples.settings, patience=training["train_config"]["patience"], n_bootstrap=result["n_bootstrap"],
            longest_train_minutes=max(r["train_minutes"] for r in results["runs"]), torch_threads=threads,
            command=(f"python benchmarks/table2.py --task icu --max-epochs {max_epochs} "
                     f"--max-minutes {max_minutes:g} --threads {threads}"))
    elif task.name == "cardio":
        cohort = json.loads((Path(test_data) / "cohort.json").read_text())
        settings.update(
            interaction_share=float(cohort.get("generator", {}).get("interaction_share", 0.0)), torch_threads=threads,
            longest_train_minutes=max(r["train_minutes"] for r in results["runs"]),
            command=(f"python benchmarks/table2.py --max-epochs {max_epochs} --max-minutes {max_minutes:g} "
                     f"--threads {threads}"))
    else:
        training_cohort = CohortReader(data)
        settings.update(train_cases=len(training_cohort.ids("train")), val_cases=len(training_cohort.ids("val")),
                        data=_shown(data), test_data=_shown(test_data),
                        patience=training["train_config"]["patience"],
                        censoring_reference=result["censoring_source"])
    return settings


def markdown(task: Task, results: dict) -> str:
    """The table as markdown: the task's intro, then one line per row with runs (mean ± sd over seeds, sd 0
    for a single seed) beside the paper's numbers; then any variant with runs, its paper cells "–"."""
    paper_row = any(row.paper_row for row in task.rows)
    columns = [m for m in task.metrics if m.column]
    headers = ["model", "seeds", *(m.header for m in columns), *(["paper row"] if paper_row else []),
               *task.paper_headers]
    lines = [*task.intro(results.get("settings", {})), "",
             "| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    for row in task.rows + task.variants:
        runs = [r for r in results["runs"] if r["architecture"] == row.architecture]
        if not runs:
            continue
        cells = [row.shown, str(len(runs))]
        for metric in columns:
            cells.append(_mean_sd([r.get(metric.key) for r in runs], metric))
        cells += [row.paper_row or "–"] if paper_row else []
        cells += [str(value) for value in row.paper] or ["–"] * len(task.paper_headers)
        lines.append("| " + " | ".join(cells) + " |")
    notes = _budget_notes(results) if task.cap_notes else []
    details = task.details(results) if task.details and results["runs"] else []
    return "\n".join(lines + ([""] + notes if notes else []) + ([""] + details if details else [])) + "\n"


def _mean_sd(values: list[float | None], metric: Metric) -> str:
    """``mean ± sd`` (sd 0 for one value) of the runs that define the metric, the count of those that do not
    named beside it ("not defined" when none does)."""
    defined = np.array([v for v in values if v is not None], dtype=float) * metric.scale
    if not len(defined):
        return "not defined"
    sd = defined.std(ddof=1) if len(defined) > 1 else 0
    shown = f"{defined.mean():.{metric.digits}f} ± {sd:.{metric.digits}f}"
    undefined = len(values) - len(defined)
    return shown + (f" ({undefined} run{'s' if undefined > 1 else ''} not defined)" if undefined else "")


def _budget_notes(results: dict) -> list[str]:
    """One line per budget cap that stopped runs before early stopping did, naming the runs (architecture,
    seed: epochs run, best epoch); none when every run stopped early. A run that reached the epoch cap just as
    its patience ran out (``patience`` epochs without a better one) was stopped by early stopping."""
    settings = results.get("settings", {})
    patience = settings.get("patience")
    capped: dict[str, list[str]] = {}
    for run in results["runs"]:
        patient = patience is None or run["epochs"] - run["best_epoch"] < patience
        if "max_epochs" in settings and run["epochs"] >= settings["max_epochs"] and patient:
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
