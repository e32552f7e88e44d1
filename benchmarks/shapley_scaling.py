"""Cost of exact modality Shapley values as the number of declared modalities M grows (M = 3..8).

For each M, a tiny NeuroFusion model is built on M declared modalities (a colour image, a 12-lead signal
and M - 2 tabular panels of two features each: tabular-heavy so it runs on a CPU), and the Shapley values of
a batch of 32 cases are computed exactly over all 2^M subsets (``explain.importance.modality_importance``:
the encoders once, then every subset of every case fused in one pass, chunked at 4096 case x subset rows).
Two timings per M, each the median of 3 runs: the whole call (encoders included) and the fusion part alone
(encoder outputs given). Reported as time per case and as a ratio to M = 4 (cardio's size), never as a
pass/fail threshold: absolute times depend on the machine and its load, which is recorded.

    python benchmarks/shapley_scaling.py [--cases 32] [--repeats 3]
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.importance import MAX_FUSION_ROWS, cases_per_pass, modality_importance  # noqa: E402
from neurofusion.config import (  # noqa: E402
    FusionConfig,
    HeadConfig,
    ImageEncoderConfig,
    ModelConfig,
    SignalEncoderConfig,
    TabularEncoderConfig,
)
from neurofusion.data import STANDARD_LEADS, Case, FeatureSpec, Signal  # noqa: E402
from neurofusion.data.modalities import ModalitySpec, modalities_to_dicts  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.models import build_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SIZES = range(3, 9)
REFERENCE_M = 4


def declaration(m: int) -> tuple[tuple[ModalitySpec, ...], list[FeatureSpec]]:
    """M declared modalities: colour image, signal, then M - 2 tabular panels (one numeric and one
    categorical feature each)."""
    panels = [f"panel_{j}" for j in range(m - 2)]
    specs = (ModalitySpec("slide", "image", colour=True), ModalitySpec("wave", "signal"),
             *(ModalitySpec(p, "tabular") for p in panels))
    features = [f for j, p in enumerate(panels) for f in (
        FeatureSpec(f"x{j}", modality=p), FeatureSpec(f"c{j}", kind="categorical", categories=("a", "b"), modality=p))]
    return specs, features


def build(m: int, n_cases: int, seed: int = 0) -> tuple[torch.nn.Module, list[Case]]:
    specs, features = declaration(m)
    config = ModelConfig(
        task="scaling", architecture="neurofusion", classes=["low", "high"],
        features=[dataclasses.asdict(f) for f in features], modalities=modalities_to_dicts(specs),
        image=ImageEncoderConfig(image_size=32, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1],
                                 layer_type="basic"),
        signal=SignalEncoderConfig(fs=50.0, seconds=4.0, conv_channels=[8, 8], kernel_size=5, lstm_hidden=8,
                                   out_dim=16),
        tabular=TabularEncoderConfig(hidden_sizes=[16], category_dim=2, out_dim=8),
        fusion=FusionConfig(token_dim=16, num_heads=2, fused_dim=24, dropout=0.0),
        heads=[HeadConfig(num_outputs=2)],
    )
    torch.manual_seed(seed)
    model = build_model(config).eval()
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n_cases):
        values = {"slide": rng.random((3, 48, 48)).astype(np.float32),
                  "wave": Signal(rng.normal(0, 0.3, (12, 200)).astype(np.float32), 50.0, STANDARD_LEADS)}
        values.update({s.name: {f"x{j}": float(rng.normal()), f"c{j}": ("a", "b")[int(rng.integers(2))]}
                       for j, s in enumerate(specs[2:])})
        if i % 4 == 3:  # a quarter of the cases lack one modality, as cohorts do
            values.pop(specs[i % m].name)
        cases.append(Case.from_values(f"S{i:03d}", ("low", "high")[i % 2], "test", values, specs))
    return model, cases


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    rows = []
    for m in SIZES:
        model, cases = build(m, args.cases)
        batch = Predictor(model, None).batch(cases)
        with torch.no_grad():
            encoded = model.encode(batch)
        for _ in range(2):  # warm-up of both paths (allocations, kernel selection for these shapes)
            modality_importance(model, batch)
            modality_importance(model, batch, encoded=encoded)
        whole = median_seconds(lambda: modality_importance(model, batch), args.repeats)
        fusion = median_seconds(lambda: modality_importance(model, batch, encoded=encoded), args.repeats)
        result = modality_importance(model, batch, encoded=encoded)
        efficiency = float(np.abs(result.shapley.sum(1) - (result.probability_full - result.probability_none)).max())
        per_pass = cases_per_pass(m)
        rows.append({"M": m, "subsets": 2**m, "cases": args.cases, "rows_fused": args.cases * 2**m,
                     "fusion_passes": -(-args.cases // per_pass), "cases_per_pass": per_pass,
                     "ms_per_case_whole": 1000 * whole / args.cases, "ms_per_case_fusion": 1000 * fusion / args.cases,
                     "max_efficiency_error": efficiency})
        print(f"M={m}: {rows[-1]['ms_per_case_whole']:.2f} ms/case whole, {rows[-1]['ms_per_case_fusion']:.2f} "
              f"ms/case fusion only, {rows[-1]['fusion_passes']} pass(es)", file=sys.stderr)
    reference = next(r for r in rows if r["M"] == REFERENCE_M)
    for r in rows:
        r["ratio_whole_to_m4"] = r["ms_per_case_whole"] / reference["ms_per_case_whole"]
        r["ratio_fusion_to_m4"] = r["ms_per_case_fusion"] / reference["ms_per_case_fusion"]
    load_end = os.getloadavg()
    meta = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "torch": torch.__version__, "load_average_1min_start": load_start[0], "load_average_1min_end": load_end[0],
            "repeats": args.repeats, "max_fusion_rows": MAX_FUSION_ROWS}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shapley_scaling.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    (RESULTS / "shapley_scaling.md").write_text(report(meta, rows))
    print(report(meta, rows))
    return 0


def report(meta: dict, rows: list[dict]) -> str:
    lines = [
        "# Exact modality Shapley values: cost as the number of declared modalities grows (CPU)",
        "",
        f"Produced by `python benchmarks/shapley_scaling.py`: a tiny NeuroFusion model (token width 16, 2 heads) "
        f"on M declared modalities (colour image, 12-lead signal, M - 2 two-feature tabular panels), a batch of "
        f"{rows[0]['cases']} cases (a quarter missing one modality), exact Shapley over all 2^M subsets. Each time "
        f"is the median of {meta['repeats']} runs, after two warm-up runs of each path; {meta['torch_threads']} torch threads on "
        f"{meta['cpu_count']} CPU cores ({meta['machine']}, torch {meta['torch']}).",
        "",
        f"Machine load: 1-minute load average {meta['load_average_1min_start']:.1f} at the start and "
        f"{meta['load_average_1min_end']:.1f} at the end of the run. The cores are shared with other processes, "
        "so the absolute times are inflated and noisy; the ratios compare sizes measured in the same run. "
        "There is no pass/fail threshold.",
        "",
        "| M | subsets 2^M | case x subset rows | fusion passes | ms per case (whole call) | ratio to M = 4 "
        "| ms per case (fusion only) | ratio to M = 4 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['M']} | {r['subsets']} | {r['rows_fused']} | {r['fusion_passes']} "
                     f"| {r['ms_per_case_whole']:.2f} | {r['ratio_whole_to_m4']:.2f}x "
                     f"| {r['ms_per_case_fusion']:.2f} | {r['ratio_fusion_to_m4']:.2f}x |")
    worst = max(r["max_efficiency_error"] for r in rows)
    lines += [
        "",
        f"\"Whole call\" includes the encoders (run once per case whatever M is); \"fusion only\" is the part that "
        f"grows with 2^M (the encoder outputs given). Cases are fused {MAX_FUSION_ROWS} case x subset rows per pass "
        "at most (`explain.importance.MAX_FUSION_ROWS`: 256 cases per pass at M = 4, 16 at M = 8). Shapley "
        f"efficiency (values sum to v(full) - v(empty)) held to {worst:.1e} at every M. Beyond M = 8 "
        "(`MAX_MODALITIES`) the declaration is refused: exact values would need 512+ subsets per case.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
