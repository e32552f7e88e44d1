"""Knowledge distillation on the synthetic cardio cohort: the bundled demo checkpoint (one teacher model) against
its distilled student (configs/cardio_student.yaml, neurofusion.distill) and the same student trained without
the teacher (the same config and tokenizer, alpha 0: the task loss alone), several seeds each, trained on
build/cardio_trainval and tested on the bundled test split: parameters, accuracy and macro-F1 (mean ± sd over
seeds, each run's bootstrap 95 % interval), latency at batch 1 and batch 32 (teacher and students timed in the
same run, interleaved, median and IQR over repeats) and training minutes. The paper's numbers beside them.

    python benchmarks/distillation.py [--seeds 0 1 2] [--max-epochs 3] [--models distilled no_teacher] [--threads 1]

Runs are resumable: finished (model, seed) pairs are read back from benchmarks/results/distillation.json and an
interrupted one continues from its last epoch (``<checkpoint>/last.pt``). Several processes may fill the file at
once (``--models distilled`` in one, ``--models no_teacher`` in another), each run added under a lock; the one
that finishes last measures latency, once every model and seed is done (``--latency-only``: just that).
Student checkpoints go to build/distillation/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.table2 import _locked  # noqa: E402
from neurofusion.checkpoint import load_checkpoint, parameter_counts  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.distill import load_student_config, main as distill_main, weights_sha256  # noqa: E402
from neurofusion.evaluate import evaluate  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.train import STATE_FILE  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
STORE, MARKDOWN = RESULTS / "distillation.json", RESULTS / "distillation.md"
CHECKPOINTS = ROOT / "build" / "distillation"
TEACHER = "sample_data/checkpoints/cardio_demo"
CONFIG = "configs/cardio_student.yaml"
MODELS = ("distilled", "no_teacher")  # the student with the teacher's soft targets, and without them (alpha 0)
N_BOOTSTRAP = 1000  # resamples of the test cases: neurofusion.metrics' default (the students' metrics.json)
SUMMARY_NAMES = {"distilled": "student", "no_teacher": "student_no_teacher"}
# The paper's section on distillation: the student 60 % smaller, 1.2 points less accurate, 95 ms vs 180 ms median.
PAPER = {"parameter_reduction": 0.60, "accuracy_drop_points": 1.2, "teacher_latency_ms": 180.0,
         "student_latency_ms": 95.0}


def student_config(model: str, config: str) -> str:
    """The YAML a run trains with: the student config itself (distilled), or a copy with ``distill.alpha`` 0
    (no_teacher: the same model, training settings and tokenizer, the task loss alone)."""
    if model == "distilled":
        return config
    data = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
    data["distill"]["alpha"] = 0.0
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    path = CHECKPOINTS / f"{Path(config).stem}_no_teacher.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def read_metrics(result: dict) -> dict:
    """accuracy and macro-F1 of an evaluation result (neurofusion.evaluate), each with its 95 % interval."""
    values = {}
    for key in ("accuracy", "macro_f1"):
        estimate = result[key]
        values.update({key: estimate["value"], f"{key}_ci_low": estimate["ci_low"],
                       f"{key}_ci_high": estimate["ci_high"]})
    return values


def summarise(values: list[dict], key: str) -> dict:
    """{mean, sd, ci_low, ci_high} of ``key`` over runs: mean and sd (ddof 1; 0 for one run) of the values, and
    the mean of the runs' bootstrap interval bounds (the test-set uncertainty of one run)."""
    if not values:
        raise ValueError(f"no runs to summarise {key!r} over")
    measured = np.array([v[key] for v in values], dtype=float)
    return {"mean": float(measured.mean()), "sd": float(measured.std(ddof=1)) if len(measured) > 1 else 0.0,
            "ci_low": float(np.mean([v[f"{key}_ci_low"] for v in values])),
            "ci_high": float(np.mean([v[f"{key}_ci_high"] for v in values]))}


def quartiles(samples: list[float]) -> dict:
    """{median, q1, q3, samples} of timings in ms."""
    q1, median, q3 = np.percentile(np.asarray(samples, dtype=float), [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3), "samples": [float(s) for s in samples]}


@torch.no_grad()
def measure_latency(models: dict[str, tuple], cases: list, repeats_b1: int, repeats_b32: int) -> dict:
    """Forward-pass times (ms) of each named (model, tokenizer) at batch 1 and batch 32 of complete cases,
    interleaved (one repeat of every model, then the next) so that the machine's load falls on all alike;
    one warm-up pass each first. -> {name: {"latency_b1_ms": [...], "latency_b32_ms": [...]}}"""
    if len(cases) < 32:
        raise ValueError(f"latency at batch 32 needs 32 complete cases, got {len(cases)}")
    batches = {}
    for name, (model, tokenizer) in models.items():
        model.eval()
        predictor = Predictor(model, tokenizer, "cpu")
        batches[name] = (predictor.batch(cases[:1]), predictor.batch(cases[:32]))
    times = {name: {"latency_b1_ms": [], "latency_b32_ms": []} for name in models}
    for key, index, repeats in (("latency_b1_ms", 0, repeats_b1), ("latency_b32_ms", 1, repeats_b32)):
        for name, (model, _) in models.items():
            model(batches[name][index])  # warm-up
        for _ in range(repeats):
            for name, (model, _) in models.items():
                start = time.perf_counter()
                model(batches[name][index])
                times[name][key].append((time.perf_counter() - start) * 1000)
    return times


def summary(results: dict) -> dict:
    """The summary block for teacher, student and student_no_teacher from the runs, teacher and latency."""
    teacher = results["teacher"]
    latency = results.get("latency", {})
    out = {"teacher": {"parameters": teacher["parameters"], "runs": 1,
                       "accuracy": summarise([teacher], "accuracy"), "macro_f1": summarise([teacher], "macro_f1"),
                       "latency_b1_ms": _latency(latency, "teacher", "latency_b1_ms"),
                       "latency_b32_ms": _latency(latency, "teacher", "latency_b32_ms"),
                       "train_minutes": teacher["train_minutes"]}}
    for model, name in SUMMARY_NAMES.items():
        runs = [r for r in results["runs"] if r["model"] == model]
        if not runs:
            continue
        out[name] = {"parameters": runs[0]["parameters"], "runs": len(runs),
                     "accuracy": summarise(runs, "accuracy"), "macro_f1": summarise(runs, "macro_f1"),
                     "latency_b1_ms": _latency(latency, model, "latency_b1_ms"),
                     "latency_b32_ms": _latency(latency, model, "latency_b32_ms"),
                     "train_minutes": float(np.mean([r["train_minutes"] for r in runs]))}
        agreeing = [r["teacher_agreement"] for r in runs if r.get("teacher_agreement") is not None]
        if agreeing:
            out[name]["teacher_agreement"] = {"mean": float(np.mean(agreeing)), "runs": len(agreeing),
                                              "sd": float(np.std(agreeing, ddof=1)) if len(agreeing) > 1 else 0.0}
    return out


def teacher_agreement(teacher: str | Path, students: list[Path], test_data: str) -> dict[Path, float]:
    """The share of test cases on which each student predicts the teacher's class (argmax): how closely it
    follows its teacher, right or wrong."""
    cohort = CohortReader(test_data)
    cases = [cohort[i] for i in cohort.ids("test")]

    def predicted(path) -> np.ndarray:
        ckpt = load_checkpoint(path, device="cpu")
        return Predictor(ckpt.model, ckpt.tokenizer, ckpt.device).predict(cases)[1].argmax(1)

    reference = predicted(teacher)
    return {Path(path): float((predicted(path) == reference).mean()) for path in students}


def _latency(latency: dict, model: str, key: str) -> dict | None:
    samples = latency.get("samples", {}).get(model, {}).get(key)
    return quartiles(samples) if samples else None


def markdown(results: dict) -> str:
    """The table: one row per model (mean ± sd over seeds, the mean bootstrap interval), each run's intervals,
    the latency ratios and the paper's numbers beside."""
    settings, s = results["settings"], results["summary"]
    teacher = s["teacher"]
    lines = [
        "# Knowledge distillation on the synthetic cardiovascular cohort", "",
        f"Teacher: `{settings['teacher']}` (one model, trained once: {settings['teacher_training']}). Students: "
        f"`{settings['config']}` "
        f"(temperature {settings['temperature']:g}, alpha {settings['alpha']:g}), trained with the teacher "
        "(`python -m neurofusion.distill`) and without it (the same config, tokenizer and seeds with alpha 0: the "
        f"cross-entropy on the labels alone), seeds {', '.join(map(str, settings['seeds']))}, at most "
        f"{settings['max_epochs']} epochs (early stopping on validation macro-F1, patience "
        f"{settings['patience']}), on the {settings['trainval_cases']:,} train/val cases of {settings['data']}; tested "
        f"on the "
        f"{settings['test_cases']} bundled test cases of {settings['test_data']}. Accuracy and macro-F1: mean ± sd "
        "over seeds; in brackets the mean over runs of each run's bootstrap 95 % interval over test cases "
        f"({settings['n_bootstrap']} resamples; the teacher's is its own). Synthetic data: the numbers compare the "
        "models on this cohort, not on patients.", "",
        f"Machine: {settings['machine']}; {settings['torch_threads']} torch thread(s); CPU only (no GPU figures "
        f"were measured). Produced by `{settings['command']}` on {settings['date']}.", "",
        "| model | seeds | parameters | accuracy (%) | macro F1 | batch-1 latency (ms), median [IQR] | "
        "batch-32 latency (ms), median [IQR] | train minutes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("teacher", "student", "student_no_teacher"):
        if name not in s:
            continue
        row = s[name]
        minutes = "–" if row["train_minutes"] is None else f"{row['train_minutes']:.1f}"
        lines.append(f"| {name} | {row['runs']} | {row['parameters']:,} "
                     f"({row['parameters'] / teacher['parameters']:.0%}) | {_estimate(row['accuracy'], 100, 1)} | "
                     f"{_estimate(row['macro_f1'], 1, 3)} | {_timing(row['latency_b1_ms'])} | "
                     f"{_timing(row['latency_b32_ms'])} | {minutes} |")
    lines += ["", f"Teacher train minutes: {settings['teacher_training']} (not the students' budget). Students' "
              "train minutes: mean over seeds, with the teacher's forward pass included for the distilled one.", ""]
    lines += _comparison(s)
    lines += ["", "Each run:", "", "| model | seed | accuracy (%) [95 % CI] | macro F1 [95 % CI] | agrees with the "
              "teacher (%) | epochs (best) | train minutes |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for run in sorted(results["runs"], key=lambda r: (MODELS.index(r["model"]), r["seed"])):
        lines.append(f"| {SUMMARY_NAMES[run['model']]} | {run['seed']} | {100 * run['accuracy']:.1f} "
                     f"[{100 * run['accuracy_ci_low']:.1f}, {100 * run['accuracy_ci_high']:.1f}] | "
                     f"{run['macro_f1']:.3f} [{run['macro_f1_ci_low']:.3f}, {run['macro_f1_ci_high']:.3f}] | "
                     f"{_percent(run.get('teacher_agreement'))} | {run['epochs']} ({run['best_epoch']}) | "
                     f"{run['train_minutes']} |")
    return "\n".join(lines) + "\n"


def _comparison(s: dict) -> list[str]:
    """Measured vs the paper: size reduction, accuracy change, latency ratio."""
    teacher = s["teacher"]
    lines = ["| | measured here | paper |", "| --- | --- | --- |"]
    student = s.get("student")
    if student is None:
        return []
    lines.append(f"| student size vs teacher | {1 - student['parameters'] / teacher['parameters']:.0%} smaller | "
                 f"{PAPER['parameter_reduction']:.0%} smaller |")
    drop = 100 * (student["accuracy"]["mean"] - teacher["accuracy"]["mean"])
    lines.append(f"| student accuracy − teacher's | {drop:+.1f} points | −{PAPER['accuracy_drop_points']} points |")
    if "student_no_teacher" in s:
        gain = 100 * (student["accuracy"]["mean"] - s["student_no_teacher"]["accuracy"]["mean"])
        lines.append(f"| student accuracy − student without teacher | {gain:+.1f} points | – |")
    if "teacher_agreement" in student and "teacher_agreement" in s.get("student_no_teacher", {}):
        ours, alone = student["teacher_agreement"], s["student_no_teacher"]["teacher_agreement"]
        lines.append(f"| test cases where the student predicts the teacher's class | {100 * ours['mean']:.1f} ± "
                     f"{100 * ours['sd']:.1f} % (without teacher: {100 * alone['mean']:.1f} ± {100 * alone['sd']:.1f} "
                     "%) | – |")
    if student["latency_b1_ms"] and teacher["latency_b1_ms"]:
        t, st = teacher["latency_b1_ms"]["median"], student["latency_b1_ms"]["median"]
        lines.append(f"| batch-1 median latency, teacher → student | {t:.1f} → {st:.1f} ms (×{st / t:.2f}) | "
                     f"{PAPER['teacher_latency_ms']:.0f} → {PAPER['student_latency_ms']:.0f} ms "
                     f"(×{PAPER['student_latency_ms'] / PAPER['teacher_latency_ms']:.2f}; the paper's hardware) |")
    if student["latency_b32_ms"] and teacher["latency_b32_ms"]:
        t, st = teacher["latency_b32_ms"]["median"], student["latency_b32_ms"]["median"]
        lines.append(f"| batch-32 median latency, teacher → student | {t:.1f} → {st:.1f} ms (×{st / t:.2f}) "
                     "| – |")
    return lines


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _estimate(value: dict, scale: float, digits: int) -> str:
    return (f"{scale * value['mean']:.{digits}f} ± {scale * value['sd']:.{digits}f} "
            f"[{scale * value['ci_low']:.{digits}f}, {scale * value['ci_high']:.{digits}f}]")


def _timing(value: dict | None) -> str:
    return "not measured" if value is None else f"{value['median']:.1f} [{value['q1']:.1f}, {value['q3']:.1f}]"


def _read_store() -> dict:
    return json.loads(STORE.read_text()) if STORE.is_file() else {"runs": []}


def _write(results: dict) -> None:
    RESULTS.mkdir(exist_ok=True)
    results["summary"] = summary(results)
    STORE.write_text(json.dumps(results, indent=2) + "\n")
    MARKDOWN.write_text(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default=TEACHER)
    parser.add_argument("--config", default=CONFIG, help="student config with a distill section")
    parser.add_argument("--data", default="build/cardio_trainval")
    parser.add_argument("--test-data", default="sample_data/cardio")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--max-epochs", type=int, default=3, help="3: what fitted the time budget on 2 busy shared "
                        "cores, where an epoch took 6-8 minutes (Table 2 uses 12)")
    parser.add_argument("--max-minutes", type=float, default=60.0)
    parser.add_argument("--repeats-b1", type=int, default=60)
    parser.add_argument("--repeats-b32", type=int, default=15)
    parser.add_argument("--latency-only", action="store_true", help="only (re)measure latency of finished runs")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 on shared, busy cores)")
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    os.chdir(ROOT)  # the default paths, and the ones recorded, are relative to the repository
    _, distill = load_student_config(args.config)

    with _locked(STORE):
        results = _read_store()
        budgets = {r.get("max_epochs", results["settings"]["max_epochs"]) for r in results["runs"]}
        if budgets - {args.max_epochs}:
            parser.error(f"{STORE} holds runs of at most {', '.join(map(str, sorted(budgets)))} epochs; resuming with "
                         f"--max-epochs {args.max_epochs} would mix budgets (move that file away to start over)")
        if "teacher" not in results:
            results["teacher"] = _teacher(args.teacher, args.test_data)
            results["settings"] = _settings(args, distill, results)
            _write(results)
    for seed in [] if args.latency_only else args.seeds:
        for model in args.models:
            with _locked(STORE):
                if (model, seed) in {(r["model"], r["seed"]) for r in _read_store()["runs"]}:
                    continue
            _run(model, seed, args)
    with _locked(STORE):
        results = _read_store()
    done = {(r["model"], r["seed"]) for r in results["runs"]}
    # the last process to finish times every model; --latency-only times the lowest seed's students as they are
    if args.latency_only or all((m, s) in done for m in MODELS for s in args.seeds):
        latency = _latency_run(args, results)
        agreement = teacher_agreement(args.teacher, [ROOT / r["checkpoint"] for r in results["runs"]], args.test_data)
        with _locked(STORE):
            results = _read_store()
            results["latency"] = latency
            for run in results["runs"]:
                run["teacher_agreement"] = agreement.get(ROOT / run["checkpoint"], run.get("teacher_agreement"))
            results["settings"] = _settings(args, distill, results)
            _write(results)
    else:
        print(f"latency not measured yet: it waits for every model and seed ({', '.join(MODELS)}; seeds "
              f"{' '.join(map(str, args.seeds))}) to finish", flush=True)
    print(MARKDOWN.read_text(), end="")


def _teacher(teacher: str, test_data: str) -> dict:
    ckpt = load_checkpoint(teacher, device="cpu")
    return {"path": teacher, "weights_sha256": weights_sha256(teacher),
            "parameters": parameter_counts(ckpt.model)["total"],
            **read_metrics(evaluate(teacher, test_data, device="cpu", n_bootstrap=N_BOOTSTRAP)),
            "train_minutes": ckpt.training.get("minutes"), "train_epochs": ckpt.training.get("epochs"),
            "train_command": ckpt.training.get("command")}


def _run(model: str, seed: int, args: argparse.Namespace) -> None:
    out = CHECKPOINTS / f"{model}_s{seed}"
    start = time.perf_counter()
    resume = ["--resume"] if (out / STATE_FILE).is_file() else []  # an interrupted run continues where it stopped
    code = distill_main([*resume, "--teacher", args.teacher, "--student-config", student_config(model, args.config),
                         "--data", args.data, "--eval-data", args.test_data, "--out", str(out), "--seed", str(seed),
                         "--max-epochs", str(args.max_epochs), "--max-minutes", str(args.max_minutes),
                         "--device", "cpu", "--quiet"])
    if code != 0:
        raise SystemExit(f"training {model} seed {seed} failed")
    training = json.loads((out / "training.json").read_text())
    ckpt = load_checkpoint(out, device="cpu")
    run = {"model": model, "seed": seed, "checkpoint": _shown(out),
           "parameters": parameter_counts(ckpt.model)["total"],
           **read_metrics(json.loads((out / "metrics.json").read_text())["test"]),  # --eval-data's test split
           "alpha": training["distillation"]["alpha"], "temperature": training["distillation"]["temperature"],
           "max_epochs": args.max_epochs, "epochs": training["epochs"], "best_epoch": training["best_epoch"],
           "train_minutes": training["minutes"],
           "wall_minutes": round((time.perf_counter() - start) / 60, 2)}
    with _locked(STORE):
        results = _read_store()
        results["runs"].append(run)
        results["settings"] = _settings(args, load_student_config(args.config)[1], results)
        _write(results)
    print(f"{model} seed {seed}: accuracy {run['accuracy']:.3f}, macro F1 {run['macro_f1']:.3f}, "
          f"{run['train_minutes']} min", flush=True)


def _latency_run(args: argparse.Namespace, results: dict) -> dict:
    """Teacher and the lowest seed's student of each kind timed in one interleaved run."""
    seed = min(args.seeds)
    models = {"teacher": args.teacher}
    for model in MODELS:
        models[model] = str(CHECKPOINTS / f"{model}_s{seed}")
    loaded = {}
    for name, path in models.items():
        ckpt = load_checkpoint(path, device="cpu")
        loaded[name] = (ckpt.model, ckpt.tokenizer)
    complete = [c for c in CohortReader(args.test_data) if all(c.available.values())]  # inputs only: any split
    samples = measure_latency(loaded, complete, args.repeats_b1, args.repeats_b32)
    return {"samples": samples, "checkpoints": models, "repeats_b1": args.repeats_b1,
            "repeats_b32": args.repeats_b32,
            "cases": f"the first complete cases (all four modalities) of {args.test_data}",
            "torch_threads": torch.get_num_threads(), "date": _now()}


def _settings(args: argparse.Namespace, distill, results: dict) -> dict:
    teacher = results["teacher"]
    cohort, training = CohortReader(args.test_data), CohortReader(args.data)
    minutes = "?" if teacher["train_minutes"] is None else f"{teacher['train_minutes']:.1f}"
    return {
        "teacher": args.teacher, "teacher_weights_sha256": teacher["weights_sha256"],
        "teacher_training": f"{teacher['train_epochs']} epochs, {minutes} minutes, `{teacher['train_command']}`",
        "config": args.config, "temperature": distill.temperature, "alpha": distill.alpha,
        "no_teacher": "the same config with distill.alpha 0 (task loss only), the teacher's tokenizer",
        "data": args.data, "test_data": args.test_data, "test_cases": len(cohort.ids("test")),
        "trainval_cases": len(training.ids("train")) + len(training.ids("val")),
        "seeds": sorted({r["seed"] for r in results["runs"]} or set(args.seeds)),
        "max_epochs": args.max_epochs, "max_minutes": args.max_minutes,
        "patience": load_student_config(args.config)[0].train.patience, "n_bootstrap": N_BOOTSTRAP,
        "summary_ci": "mean over runs of each run's bootstrap 95 % interval over test cases (teacher: its own)",
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other work",
        "command": (f"python benchmarks/distillation.py --max-epochs {args.max_epochs} --threads "
                    f"{torch.get_num_threads()}"),
        "date": _now(), "paper": PAPER,
    }


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    main()
