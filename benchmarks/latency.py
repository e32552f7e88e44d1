"""Inference latency (batch 1) and throughput (batch 32) of the demo and paper configs, and parameter
counts per encoder. Times are also given as ratios to a reference measured in the same run (a 2048x2048
float32 matrix product), since these machines are shared and noisy.

    python benchmarks/latency.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import dataclasses
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

from neurofusion.checkpoint import load_checkpoint, parameter_counts  # noqa: E402
from neurofusion.config import load_experiment  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.data.tokenizer import train_wordpiece  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.models import build_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _timed(fn, repeats: int, sync) -> float:
    fn()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def paper_model(cohort: CohortReader, device: torch.device):
    """The paper-sized model with random weights and a vocabulary trained on the sample notes."""
    experiment = load_experiment(ROOT / "configs" / "cardio_paper.yaml")
    config = dataclasses.replace(
        experiment.model, classes=list(cohort.classes),
        features=[dataclasses.asdict(f) for f in cohort.features.values()],
    )
    tokenizer = train_wordpiece([c.note for c in cohort if c.note], config.text.vocab_size)
    return build_model(config).to(device).eval(), tokenizer


@torch.no_grad()
def measure(model, tokenizer, cohort: CohortReader, device: torch.device, repeats: int) -> dict:
    predictor = Predictor(model, tokenizer, device)
    complete = [c for c in cohort if all(c.available.values())]
    one, many = predictor.batch(complete[:1]), predictor.batch(complete[:32])
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch1 = _timed(lambda: model(one), repeats, sync)
    batch32 = _timed(lambda: model(many), max(1, repeats // 10), sync)
    return {"parameters": parameter_counts(model), "latency_batch1_ms": batch1 * 1000,
            "throughput_batch32_cases_per_s": 32 / batch32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    cohort = CohortReader(ROOT / "sample_data" / "cardio")
    a = torch.randn(2048, 2048, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    reference = _timed(lambda: a @ a, 10, sync)
    result = {"device": str(device), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"{torch.get_num_threads()} torch threads", "reference_matmul_ms": reference * 1000}
    demo = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "cardio_demo", device=device)
    for name, (model, tokenizer), repeats in (("cardio_demo", (demo.model, demo.tokenizer), args.repeats),
                                              ("cardio_paper", paper_model(cohort, device), 5)):
        m = measure(model, tokenizer, cohort, device, repeats)
        m["latency_batch1_vs_reference"] = m["latency_batch1_ms"] / (reference * 1000)
        result[name] = m
        print(name, json.dumps(m), flush=True)
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    (RESULTS / f"latency{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Inference latency and size ({result['device']}: {result['machine']})", "",
             "The demo row is the bundled checkpoint; the paper row has random weights at the published "
             "widths. One complete case (batch 1, median) and 32 cases (batch 32). Reference: a "
             f"2048x2048 float32 matrix product took {reference * 1000:.1f} ms in the same run. Produced by "
             "`python benchmarks/latency.py`.", "",
             "| config | image | text | signal | tabular | fusion + heads | total parameters | batch-1 latency | "
             "x reference | batch-32 throughput |", "| --- |" + " --- |" * 9]
    for name in ("cardio_demo", "cardio_paper"):
        m = result[name]
        p = m["parameters"]
        lines.append(f"| {name} | " + " | ".join(f"{p[k] / 1e6:.2f} M" for k in
                     ("image", "text", "signal", "tabular", "fusion_and_heads", "total"))
                     + f" | {m['latency_batch1_ms']:.1f} ms | {m['latency_batch1_vs_reference']:.1f} | "
                     f"{m['throughput_batch32_cases_per_s']:.1f} cases/s |")
    lines += ["", "The paper reports 87 M parameters in total; its own encoders (ResNet-50 about 23.5 M, "
              "BERT-base about 109 M) cannot fit that, and the paper config here, built to the published "
              "widths, has the total above."]
    (RESULTS / f"latency{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
