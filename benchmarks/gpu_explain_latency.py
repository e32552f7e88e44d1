"""A paper-size case explanation on a GPU, with the dashboard's default settings (issue 16's last target: the
paper config's full explanation within 0.1 s on a GPU): configs/cardio_paper.yaml with random weights (enough for
timing), the first view and the whole explanation of a few complete test cases, each timed after a warm-up with
the device synchronised, plus every map's completeness.

    python benchmarks/gpu_explain_latency.py            # needs CUDA; writes benchmarks/results/gpu_explain_latency.*
    python benchmarks/gpu_explain_latency.py --device cpu --cases 1 --out /tmp/dry   # a dry run of the script

The settings are the dashboard's defaults (app/main.py): steps doubled from 8 until each map adds up to within
5 % (Gauss-Legendre at 8 steps, then nested trapezoid grids, at most 128), the note attributed where "auto" puts
it for the model's BERT (the last layer's input for BERT-base), float32.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.state import DASHBOARD_SETTINGS, auto_note_layer  # noqa: E402
from benchmarks.paper_explain_latency import COHORT, build_checkpoint  # noqa: E402
from explain.case import CaseExplainer, ExplainSettings  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET_S = 0.1  # the full explanation on a GPU


def synchronised(device: torch.device):
    """A clock that waits for the device's queued work before reading."""
    def now() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()
    return now


def explain_timed(predictor: Predictor, case, settings: ExplainSettings, now) -> dict:
    start = now()
    explainer = CaseExplainer(predictor, case, settings)
    explainer.first_view()
    first = now() - start
    explanation = explainer.explanation()
    full = now() - start
    return {"case_id": case.case_id, "first_view_s": first, "full_s": full,
            "completeness": {m: {"n_steps": c.n_steps, "relative_error": c.relative_error, "converged": c.converged}
                             for m, c in explanation.completeness.items()}}


def report(result: dict) -> str:
    runs = result["runs"]
    first = float(np.median([r["first_view_s"] for r in runs]))
    full = float(np.median([r["full_s"] for r in runs]))
    lines = [f"# A paper-size case explanation on {result['device_name']}", "",
             f"Date {result['date']}. Command: `{result['command']}`. Model: configs/cardio_paper.yaml with random "
             f"weights ({result['parameters'] / 1e6:.0f} M parameters); {len(runs)} complete test cases of the bundled "
             f"cohort, each after {result['warmup']} warm-up explanation(s); the device synchronised before every "
             "clock reading.", "",
             f"Settings (the dashboard's defaults): {result['settings']}.", "",
             "| | median seconds | the issue's target |", "| --- | --- | --- |",
             f"| first view (prediction, attention, exact Shapley, Grad-CAM) | {first:.3f} | |",
             f"| full explanation, every map within tolerance | {full:.3f} | <= {TARGET_S} s on a GPU |", "",
             "| case | first view s | full s | steps per map (relative error) |", "| --- | --- | --- | --- |"]
    for r in runs:
        maps = ", ".join(f"{m} {c['n_steps']} ({c['relative_error']:.3f})" for m, c in r["completeness"].items())
        lines.append(f"| {r['case_id']} | {r['first_view_s']:.3f} | {r['full_s']:.3f} | {maps} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (a dry run of the script)")
    parser.add_argument("--cases", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for gpu_explain_latency.{json,md}")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu_explain_latency: torch sees no CUDA GPU; run it on a GPU machine (or --device cpu for a dry run)")
    device = torch.device(args.device)
    cohort = CohortReader(COHORT)
    complete = [cohort[i] for i in cohort.ids("test") if cohort.availability().loc[i].all()][:args.cases + args.warmup]
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = load_checkpoint(build_checkpoint(Path(scratch)), device=str(device))
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device)
    settings = dataclasses.replace(DASHBOARD_SETTINGS, note_layer=auto_note_layer(checkpoint.config.text.num_layers))
    now = synchronised(device)
    for case in complete[:args.warmup]:
        explain_timed(predictor, case, settings, now)
    runs = [explain_timed(predictor, case, settings, now) for case in complete[args.warmup:]]
    result = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "command": "python benchmarks/gpu_explain_latency.py " + " ".join(sys.argv[1:]),
              "device": str(device), "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                                                     else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} "
                                                          "torch threads)"),
              "parameters": sum(p.numel() for p in checkpoint.model.parameters()), "warmup": args.warmup,
              "settings": {"tolerance": settings.tolerance, "steps_method": settings.steps_method,
                           "max_steps": settings.max_steps, "note_layer": settings.note_layer},
              "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_explain_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu_explain_latency.md").write_text(report(result))
    print(report(result))


if __name__ == "__main__":
    main()
