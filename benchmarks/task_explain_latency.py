"""Explanation time of one case, cardio against cancer, in the same run (issue 11's performance report).

Each bundled demo checkpoint explains the first complete test cases of its bundled cohort with
``explain.case.explain_case`` at the dashboard's default settings (Integrated Gradients, 50 steps; the cancer
model explains 5-year survival): prediction, attention, exact Shapley over the 2^M subsets and every
modality's attributions. One warm-up case per task, then the median over ``--cases`` cases, repeated
``--repeats`` times interleaving the tasks so both see the same machine load; reported per case and as the
cancer / cardio ratio, never as a pass/fail threshold.

    python benchmarks/task_explain_latency.py [--cases 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.case import ExplainSettings, explain_case  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

TASKS = {"cardio": ("sample_data/checkpoints/cardio_demo", "sample_data/cardio"),
         "cancer": ("sample_data/checkpoints/cancer_demo", "sample_data/cancer")}
RESULTS = ROOT / "benchmarks" / "results"


def _complete_cases(cohort: CohortReader, n: int) -> list:
    availability = cohort.availability()
    ids = [i for i in cohort.ids("test") if availability.loc[i].all()][:n + 1]
    return [cohort[i] for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    loaded = {}
    for task, (checkpoint, cohort) in TASKS.items():
        ckpt = load_checkpoint(ROOT / checkpoint, device="cpu")
        cases = _complete_cases(CohortReader(ROOT / cohort), args.cases)
        predictor = Predictor(ckpt.model, ckpt.tokenizer)
        explain_case(predictor, cases[0], ExplainSettings(), ood=ckpt.ood)  # warm-up
        loaded[task] = (ckpt, predictor, cases[1:])
    runs: dict[str, list[float]] = {task: [] for task in TASKS}
    for _ in range(args.repeats):
        for task, (ckpt, predictor, cases) in loaded.items():
            per_case = []
            for case in cases:
                start = time.perf_counter()
                explain_case(predictor, case, ExplainSettings(), ood=ckpt.ood)
                per_case.append(time.perf_counter() - start)
            runs[task].append(statistics.median(per_case))
    result = {
        "per_case_s": {task: statistics.median(values) for task, values in runs.items()},
        "runs_s": runs,
        "modalities": {task: list(loaded[task][0].config.modality_names) for task in TASKS},
        "cases": args.cases, "repeats": args.repeats, "settings": "Integrated Gradients, 50 steps, context 'case'",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg(),
                    "torch": torch.__version__},
    }
    result["cancer_over_cardio"] = result["per_case_s"]["cancer"] / result["per_case_s"]["cardio"]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "task_explain_latency.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    rows = [f"| {task} ({', '.join(result['modalities'][task])}) | {1000 * result['per_case_s'][task]:.0f} ms "
            f"({', '.join(f'{1000 * v:.0f}' for v in runs[task])}) |" for task in TASKS]
    lines = ["# One case's explanation: cardio against cancer", "",
             f"Produced by `python benchmarks/task_explain_latency.py` on {os.cpu_count()} shared CPU cores (load "
             f"average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}). Each demo checkpoint explains "
             f"{args.cases} complete test cases of its bundled cohort with the dashboard's defaults "
             "(Integrated Gradients, 50 steps; cancer: 5-year survival); median per case, the medians of each of "
             f"{args.repeats} interleaved repeats in brackets.", "",
             "| task (declared modalities) | per case |", "| --- | --- |", *rows, "",
             f"Cancer / cardio: {result['cancer_over_cardio']:.2f}x."]
    (RESULTS / "task_explain_latency.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
