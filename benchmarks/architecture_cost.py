"""Figure 3's measurements: size, inference latency and training cost of every Table 2 architecture (built from
configs/cardio_demo.yaml), of the distilled student (configs/cardio_student.yaml, when it exists) and, for
latency only, of the paper-sized config (random weights).

    python benchmarks/architecture_cost.py [--steps 20] [--batch1-rounds 150] [--batch32-rounds 30] [--no-paper]

- **Parameters**: every model's count, as built for the bundled cardio cohort with the demo checkpoint's vocabulary.
- **Latency**: one forward pass of one complete case (batch 1) and of 32 complete cases (batch 32) of
  sample_data/cardio, in eval mode without gradients. Every architecture is timed once per round, in a shuffled
  order, round after round, with a 2048x2048 float32 matrix product as reference in every round, so the load on
  the shared machine affects them alike; the samples are kept for box plots. Weights are random (a forward pass
  costs the same whatever the weights).
- **Training cost**: each architecture trains in a fresh process (so memory peaks do not mix) through
  ``neurofusion.train.fit`` on build/cardio_trainval (read only) for ``--steps`` optimiser steps at batch 32;
  seconds per step are the times between successive steps (data reading, augmentation, forward, backward, Adam),
  the first ``--warmup`` left out; the peak is the process's resident high-water mark (VmHWM: everything from the
  imports to the last step, including the pass that fits the tabular normalisers). A process that only imports the
  same modules is measured as the baseline. Finished training measurements are read back from the results file
  (``--fresh`` measures them again); latency is measured anew in every run, for every model together.

One torch thread everywhere. Writes benchmarks/results/architecture_cost.{json,md}.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from neurofusion.config import ExperimentConfig, ModelConfig, read_config_mapping  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.data.tokenizer import load_tokenizer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
OUT_JSON, OUT_MD = RESULTS / "architecture_cost.json", RESULTS / "architecture_cost.md"
DEMO_CONFIG = ROOT / "configs" / "cardio_demo.yaml"
STUDENT_CONFIG = ROOT / "configs" / "cardio_student.yaml"
PAPER_CONFIG = ROOT / "configs" / "cardio_paper.yaml"
DEMO_TOKENIZER = ROOT / "sample_data" / "checkpoints" / "cardio_demo" / "tokenizer"
TEST_COHORT = ROOT / "sample_data" / "cardio"
TRAIN_DATA = ROOT / "build" / "cardio_trainval"
# Table 2's rows (benchmarks/table2.py) and its variant, in its order
ARCHITECTURES = ("image_only", "text_only", "signal_only", "tabular_only", "early_fusion", "late_fusion",
                 "mlp_fusion", "neurofusion", "neurofusion_gated")
STUDENT, PAPER, REFERENCE = "distilled_student", "cardio_paper", "reference_matmul"
# the paper's reported figures (section 7.4 and Figure 3's text), written beside ours, never mixed with them
PAPER_REPORTED = {
    "neurofusion": {"parameters_m": 87, "accuracy_pct": 94.2, "latency_median_ms": 180, "latency_iqr_ms": (165, 198),
                    "gpu_memory_gb": 32, "training_hours": 72},
    "distilled": {"parameters_m": 35, "accuracy_pct": 93.0, "latency_median_ms": 95, "latency_iqr_ms": (88, 104),
                  "gpu_memory_gb": 18, "training_hours": 45},
}


class _Enough(Exception):
    """Raised by the step clock once the measured number of steps is done."""


def experiment_config(path: Path) -> ExperimentConfig:
    """An experiment YAML as ExperimentConfig; a student config's ``distill:`` section (read by
    neurofusion.distill, not by the model) is set aside."""
    try:
        data = read_config_mapping(path, "'model' and 'train' sections")
        data.pop("distill", None)
        return ExperimentConfig.from_dict(data)
    except (OSError, ValueError) as err:
        raise SystemExit(str(err) if str(path) in str(err) else f"{path}: {err}") from None


def model_configs(include_student: bool) -> dict[str, ExperimentConfig]:
    """{name: experiment} of every measured model except the paper-sized one."""
    demo = experiment_config(DEMO_CONFIG)
    configs = {}
    for architecture in ARCHITECTURES:
        model = ModelConfig.from_dict({**demo.model.to_dict(), "architecture": architecture})
        configs[architecture] = dataclasses.replace(demo, model=model)
    if include_student and STUDENT_CONFIG.is_file():
        configs[STUDENT] = experiment_config(STUDENT_CONFIG)
    return configs


def build_for_cohort(config: ModelConfig, cohort: CohortReader, vocab_size: int) -> torch.nn.Module:
    """The model as training builds it for ``cohort`` (its classes, features), in eval mode."""
    from neurofusion.models import build_model
    from neurofusion.train import configure_model

    config = configure_model(config, cohort)
    config.text.vocab_size = vocab_size
    return build_model(config).eval()


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------------------- latency
def _sample(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


@torch.no_grad()
def measure_latency(include_student: bool, include_paper: bool, rounds1: int, rounds32: int,
                    paper_every: int) -> dict:
    """Parameters and interleaved batch-1 / batch-32 latency samples (ms) of every model and the reference."""
    from neurofusion.inference import Predictor

    cohort = CohortReader(TEST_COHORT)
    tokenizer = load_tokenizer(DEMO_TOKENIZER)
    complete = [c for c in cohort if all(c.available.values())][:32]
    if len(complete) < 32:
        raise SystemExit(f"{TEST_COHORT} has {len(complete)} complete cases; batch 32 needs 32")
    models, inputs = {}, {}
    for name, experiment in model_configs(include_student).items():
        models[name] = build_for_cohort(experiment.model, cohort, len(tokenizer))
        predictor = Predictor(models[name], tokenizer, torch.device("cpu"))
        inputs[name] = (predictor.batch(complete[:1]), predictor.batch(complete))
    if include_paper:
        from benchmarks.latency import paper_model

        models[PAPER], paper_tokenizer = paper_model(cohort, torch.device("cpu"))
        predictor = Predictor(models[PAPER], paper_tokenizer, torch.device("cpu"))
        inputs[PAPER] = (predictor.batch(complete[:1]), None)  # batch 32 of the paper model: minutes, not run
    matrix = torch.randn(2048, 2048)
    calls = {name: ((lambda m=models[name], b=inputs[name][0]: m(b)),
                    None if inputs[name][1] is None else (lambda m=models[name], b=inputs[name][1]: m(b)))
             for name in models}
    calls[REFERENCE] = (lambda: matrix @ matrix, lambda: matrix @ matrix)
    for one, many in calls.values():  # warm-up
        one()
        if many is not None:
            many()
    order = random.Random(0)
    samples = {name: {"batch1": [], "batch32": []} for name in calls}
    for batch, rounds in (("batch1", rounds1), ("batch32", rounds32)):
        for index in range(rounds):
            names = [n for n in calls if (n != PAPER or index % paper_every == 0)
                     and calls[n][batch == "batch32"] is not None]
            order.shuffle(names)
            for name in names:
                samples[name][batch].append(_sample(calls[name][batch == "batch32"]))
            if index % 25 == 0:
                print(f"{batch} round {index + 1}/{rounds}", flush=True)
    return {"parameters": {name: parameter_count(model) for name, model in models.items()}, "samples_ms": samples}


def summary(values: list[float]) -> dict | None:
    """Median and quartiles of latency samples (None when there are none)."""
    if not values:
        return None
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"median": median, "q1": q1, "q3": q3, "n": len(values)}


# ---------------------------------------------------------------------------------------------- training
class StepClock:
    """A training objective that leaves the task loss unchanged and notes when each step's loss is ready; after
    ``steps + 1`` notes (``steps`` whole intervals) it stops training by raising :class:`_Enough`."""

    def __init__(self, steps: int) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps, self.times = steps, []

    def __call__(self, batch, kept, output, task_loss: torch.Tensor) -> torch.Tensor:
        self.times.append(time.perf_counter())
        if len(self.times) > self.steps:
            raise _Enough
        return task_loss

    def step_seconds(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


def peak_rss_mib() -> float:
    """This process's peak resident memory, MiB: VmHWM of /proc/self/status, the high-water mark of the process
    image since its exec. (``ru_maxrss`` would not do: Linux carries the parent's RSS at the fork into a child's
    ``ru_maxrss``, so a child of a large parent would report the parent's size.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # kB -> MiB
    raise SystemExit("/proc/self/status has no VmHWM line: peak memory needs Linux")


def train_child(name: str, steps: int, warmup: int) -> dict:
    """In this (fresh) process: ``steps`` optimiser steps of ``name`` on build/cardio_trainval; its costs."""
    from neurofusion.data.timed import open_cohort
    from neurofusion.train import fit

    torch.set_num_threads(1)
    if name == "imports_only":
        return {"peak_rss_mib": peak_rss_mib()}
    experiment = model_configs(include_student=True)[name]
    train = dataclasses.replace(experiment.train, device="cpu", num_workers=0, max_minutes=None, batch_size=32)
    clock = StepClock(steps + warmup)
    start = time.perf_counter()
    try:
        fit(open_cohort(TRAIN_DATA), experiment.model, train, progress=False,
            tokenizer=load_tokenizer(DEMO_TOKENIZER), objective=clock)
    except _Enough:
        pass
    if len(clock.times) <= steps + warmup:
        raise SystemExit(f"{name}: training stopped after {len(clock.times)} steps, fewer than {steps + warmup}")
    per_step = clock.step_seconds()[warmup:]
    return {"steps": len(per_step), "warmup_steps": warmup, "batch_size": train.batch_size,
            "step_seconds": per_step, "step_seconds_median": statistics.median(per_step),
            "setup_seconds": round(clock.times[0] - start, 2),
            "peak_rss_mib": peak_rss_mib()}


def _run_child(name: str, steps: int, warmup: int) -> dict:
    command = [sys.executable, __file__, "--child", name, "--steps", str(steps), "--warmup", str(warmup)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"training {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------- output
def markdown(result: dict) -> str:
    """The results as the markdown file (settings, one table, the paper's figures beside)."""
    s = result["settings"]
    reference = result["latency"][REFERENCE]
    lines = [
        "# Figure 3 measurements: size, latency and training cost per architecture (this machine)",
        "",
        f"Machine: {s['machine']}; CPU only, {s['torch_threads']} torch thread, `nice`, shared with other jobs. "
        f"Date: {s['date']}. Produced by `{s['command']}`.",
        "",
        "Models: the Table 2 architectures built from `configs/cardio_demo.yaml`"
        + (", the distilled student (`configs/cardio_student.yaml`)" if STUDENT in result["parameters"] else
           " (the distilled student's `configs/cardio_student.yaml` did not exist at this run)")
        + (" and, for batch-1 latency only, the paper-sized config (`configs/cardio_paper.yaml`, random weights)"
           if PAPER in result["parameters"] else "") + ". Parameters as built for the bundled cardio cohort with "
        "the demo checkpoint's vocabulary.",
        "",
        f"Latency: one forward pass (eval, no gradients) of 1 and of 32 complete synthetic cases of "
        f"`sample_data/cardio`, every model once per round in a shuffled order ({s['batch1_rounds']} rounds at batch "
        f"1, {s['batch32_rounds']} at batch 32; the paper-sized model every {s['paper_every']}th batch-1 round, and "
        f"not at batch 32, which takes minutes), median [IQR]. Reference in every round: a 2048x2048 float32 matrix "
        f"product, median {reference['batch1']['median']:.1f} ms in the batch-1 rounds and "
        f"{reference['batch32']['median']:.1f} ms in the batch-32 rounds; the x ref column is the batch-1 median "
        "over the reference's.",
        "",
        f"Training: {s['steps']} optimiser steps at batch 32 after {s['warmup']} warm-up steps, each architecture in "
        f"a fresh process through `neurofusion.train.fit` on `{s['train_data']}` (generated synthetic cases, "
        "streamed, no data workers); s/step is the median time between successive steps (reading and augmenting "
        "cases, forward, backward, Adam); peak RSS is the process's high-water mark (VmHWM), imports and the tabular "
        f"normalisers' pass over the train split included. A process that only imports the same modules peaks at "
        f"{result['training'].get('imports_only', {}).get('peak_rss_mib', float('nan')):.0f} MiB.",
        "",
        "| model | parameters | batch-1 latency, ms | x ref | batch-32 latency, ms | training s/step | "
        "peak RSS, MiB |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in result["parameters"]:
        latency = result["latency"][name]
        one, many = latency["batch1"], latency["batch32"]
        train = result["training"].get(name)
        ratio = one["median"] / reference["batch1"]["median"]
        lines.append(
            f"| {name} | {result['parameters'][name] / 1e6:.3f} M | {one['median']:.1f} [{one['q1']:.1f}–"
            f"{one['q3']:.1f}] | {ratio:.2f} | "
            + (f"{many['median']:.0f} [{many['q1']:.0f}–{many['q3']:.0f}]" if many else "not measured") + " | "
            + (f"{train['step_seconds_median']:.2f} | {train['peak_rss_mib']:.0f}" if train else
               "not measured | not measured") + " |")
    full, distilled = PAPER_REPORTED["neurofusion"], PAPER_REPORTED["distilled"]
    lines += [
        "",
        "The paper's figures (its section 7.4 and Figure 3, reported on A100 GPUs and real data; not measured "
        f"here): NeuroFusion-Full {full['parameters_m']} M parameters, {full['accuracy_pct']} % accuracy, median "
        f"latency {full['latency_median_ms']} ms (IQR {full['latency_iqr_ms'][0]}–{full['latency_iqr_ms'][1]} ms), "
        f"{full['gpu_memory_gb']} GB GPU memory and {full['training_hours']} h training; distilled "
        f"{distilled['parameters_m']} M, {distilled['accuracy_pct']} %, {distilled['latency_median_ms']} ms "
        f"({distilled['latency_iqr_ms'][0]}–{distilled['latency_iqr_ms'][1]} ms), {distilled['gpu_memory_gb']} GB, "
        f"{distilled['training_hours']} h; early fusion 18 M / 90.8 %, MLP fusion 42 M / 91.4 %; simple fusion "
        "45–75 ms and single-modality models 15–30 ms. Our models are CPU-sized (about 1 M parameters); times are "
        "comparable only within this run, as ratios. GPU time and memory were not measured (no GPU here). The "
        "paper's Panel D (5-year deployment cost in dollars) rests on cost assumptions it does not give and is not "
        "reproduced.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=20, help="measured optimiser steps per architecture")
    parser.add_argument("--warmup", type=int, default=3, help="optimiser steps left out before the measured ones")
    parser.add_argument("--batch1-rounds", type=int, default=150)
    parser.add_argument("--batch32-rounds", type=int, default=30)
    parser.add_argument("--paper-every", type=int, default=5, help="time the paper-sized model every N batch-1 rounds")
    parser.add_argument("--no-paper", action="store_true", help="leave out the paper-sized model")
    parser.add_argument("--no-student", action="store_true", help="leave out the distilled student")
    parser.add_argument("--fresh", action="store_true", help="measure training anew even where the file has it")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for flag in ("steps", "batch1_rounds", "batch32_rounds", "paper_every"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.child:
        print(json.dumps(train_child(args.child, args.steps, args.warmup)))
        return 0
    torch.set_num_threads(1)
    if not (TRAIN_DATA / "cohort.csv").is_file():
        raise SystemExit(f"{TRAIN_DATA} is missing: generate it first (make demo-checkpoint)")
    include_student = not args.no_student
    previous = json.loads(OUT_JSON.read_text()) if OUT_JSON.is_file() and not args.fresh else {}
    kept = previous.get("settings", {})
    same_budget = kept.get("steps") == args.steps and kept.get("warmup") == args.warmup
    training = dict(previous.get("training", {})) if same_budget else {}
    # training first, from a parent that has built no model yet
    for name in ["imports_only", *model_configs(include_student)]:
        if name in training:
            print(f"training {name}: read back from {OUT_JSON.name}", flush=True)
            continue
        training[name] = _run_child(name, args.steps, args.warmup)
        print(f"training {name}: {training[name].get('step_seconds_median', 0):.2f} s/step, peak "
              f"{training[name]['peak_rss_mib']:.0f} MiB", flush=True)
    measured = measure_latency(include_student, not args.no_paper, args.batch1_rounds, args.batch32_rounds,
                               args.paper_every)
    command = "python benchmarks/architecture_cost.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    result = {
        "settings": {"machine": f"{platform.machine()}, {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
                     "device": "cpu", "torch_threads": 1, "date": datetime.date.today().isoformat(),
                     "command": command, "steps": args.steps, "warmup": args.warmup,
                     "batch1_rounds": args.batch1_rounds, "batch32_rounds": args.batch32_rounds,
                     "paper_every": args.paper_every, "train_data": str(TRAIN_DATA.relative_to(ROOT)),
                     "test_data": str(TEST_COHORT.relative_to(ROOT)), "weights": "random (latency)",
                     "synthetic": True, "student_config_sha256": (
                         hashlib.sha256(STUDENT_CONFIG.read_bytes()).hexdigest()
                         if STUDENT in measured["parameters"] else None)},
        "parameters": measured["parameters"],
        "latency": {name: {batch: summary(values) for batch, values in by_batch.items()}
                    for name, by_batch in measured["samples_ms"].items()},
        "latency_samples_ms": measured["samples_ms"],
        "training": {name: training[name] for name in ["imports_only", *measured["parameters"]] if name in training},
        "paper_reported": PAPER_REPORTED,
    }
    RESULTS.mkdir(exist_ok=True)
    OUT_JSON.write_text(json.dumps(result, indent=1) + "\n")
    OUT_MD.write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
