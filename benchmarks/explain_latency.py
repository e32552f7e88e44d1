"""Explanation latency on the demo checkpoint: the full case explanation (prediction, attention, exact
Shapley, image + note + ECG + lab attributions) against the naive path measured in the same run (a separate
Captum Integrated Gradients per modality through the whole model, one path step per forward pass, and the
16 Shapley subsets as separate forward passes), at the same n_steps, checking the attributions agree; and
the 100-case cohort agreement.

    python benchmarks/explain_latency.py [--cases 5] [--n-steps 50]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.case import ExplainSettings, explain_case  # noqa: E402
from explain.cohort import clinician_agreement, cohort_importance  # noqa: E402
from explain.importance import SUBSETS  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.models.model import tabular_normaliser  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def naive_case(model, batch, target: int, n_steps: int, pad_id: int) -> dict[str, np.ndarray]:
    """The straightforward way: every attribution through the whole model, one path step at a time."""

    def with_field(name, value):
        n = value.shape[0]
        fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
        repeated = {k: (v.repeat(n, *([1] * (v.dim() - 1))) if isinstance(v, torch.Tensor) else v)
                    for k, v in fields.items() if k not in ("tokens", "case_ids", "notes")}
        tokens = {k: v.repeat(n, 1) for k, v in batch.tokens.items()}
        if name == "input_ids":
            tokens["input_ids"] = value
        else:
            repeated[name] = value
        return type(batch)(case_ids=batch.case_ids * n, notes=batch.notes * n, tokens=tokens, **repeated)

    out = {}
    with torch.no_grad():
        for mask in SUBSETS:  # Shapley: 16 separate forward passes
            model(batch, present=mask[None] & batch.present)
    ig = lambda name: IntegratedGradients(lambda x: model(with_field(name, x)).logits)  # noqa: E731
    out["image"] = ig("image").attribute(batch.image, baselines=torch.zeros_like(batch.image), target=target,
                                         n_steps=n_steps, internal_batch_size=1)[0, 0].detach().numpy()
    out["signal"] = ig("signal").attribute(batch.signal, baselines=torch.zeros_like(batch.signal), target=target,
                                           n_steps=n_steps, internal_batch_size=1)[0].detach().numpy()
    normaliser = tabular_normaliser(model)
    mean = torch.where(normaliser.log_scale, torch.expm1(normaliser.mean), normaliser.mean)[None]
    out["tabular"] = ig("numeric").attribute(
        batch.numeric, baselines=torch.where(batch.numeric_mask, mean, batch.numeric), target=target,
        n_steps=n_steps, internal_batch_size=1)[0].detach().numpy()
    ids = batch.tokens["input_ids"]
    special = (ids == ids[0, 0]) | (ids == ids[0, -1])
    layer = model.encoders["text"].bert.embeddings.word_embeddings
    out["text"] = LayerIntegratedGradients(lambda x: model(with_field("input_ids", x)).logits, layer).attribute(
        ids, baselines=torch.where(special, ids, torch.full_like(ids, pad_id)), target=target, n_steps=n_steps,
        internal_batch_size=1)[0].sum(-1).detach().numpy()
    return out


def _median_time(fn) -> tuple[float, object]:
    times, result = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--n-steps", type=int, default=50)
    args = parser.parse_args()
    ckpt = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "cardio_demo", device="cpu")
    cohort = CohortReader(ROOT / "sample_data" / "cardio")
    predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
    complete = [c for c in (cohort[i] for i in cohort.ids("test")) if all(c.available.values())][:args.cases]
    settings = ExplainSettings(n_steps=args.n_steps)
    explain_case(predictor, complete[0], settings)  # warm-up

    rows = []
    for case in complete:
        fast_s, fast = _median_time(lambda: explain_case(predictor, case, settings))
        batch = predictor.batch([case])
        start = time.perf_counter()
        naive = naive_case(ckpt.model, batch, fast.target, args.n_steps, ckpt.tokenizer.pad_token_id)
        naive_s = time.perf_counter() - start
        pairs = {"image": (fast.image.model_map, naive["image"]), "signal": (fast.signal.attributions, naive["signal"]),
                 "text": (fast.note.token_scores, naive["text"]),
                 "tabular": (fast.tabular[(fast.tabular["kind"] == "numeric")]["score"].fillna(0).to_numpy(),
                             naive["tabular"] * batch.numeric_mask[0].numpy())}
        agreement = {m: float(np.abs(a - b).max() / max(1e-12, np.abs(b).max())) for m, (a, b) in pairs.items()}
        rows.append({"case_id": case.case_id, "fast_s": fast_s, "naive_s": naive_s, "speedup": naive_s / fast_s,
                     "max_relative_difference": agreement})
        print(json.dumps(rows[-1]), flush=True)

    cases100 = [cohort[i] for i in cohort.ids("test")[:100]]
    start = time.perf_counter()
    importance = cohort_importance(predictor, cases100)
    agreement = clinician_agreement(importance, cohort.rankings())
    cohort_s = time.perf_counter() - start

    result = {"n_steps": args.n_steps, "cases": rows, "median_fast_s": statistics.median(r["fast_s"] for r in rows),
              "median_naive_s": statistics.median(r["naive_s"] for r in rows),
              "median_speedup": statistics.median(r["speedup"] for r in rows),
              "cohort_agreement_100_cases_s": cohort_s,
              "cohort_tau_mean": agreement["summary"].loc["all", "mean"], "torch_threads": torch.get_num_threads()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "explain_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    worst = {m: max(r["max_relative_difference"][m] for r in rows) for m in rows[0]["max_relative_difference"]}
    lines = ["# Explanation latency (demo checkpoint, CPU)", "",
             f"{len(rows)} complete test cases, n_steps = {args.n_steps}, {torch.get_num_threads()} torch threads. "
             "Produced by `python benchmarks/explain_latency.py`.", "",
             "| path | median seconds per case |", "| --- | --- |",
             f"| full explanation (prediction, attention, exact Shapley, image IG, note LIG, ECG IG, lab IG) | "
             f"{result['median_fast_s']:.2f} |",
             f"| naive: separate Captum IG per modality through the whole model, 1 step per pass, 16 Shapley passes | "
             f"{result['median_naive_s']:.2f} |",
             f"| speed-up (same run) | {result['median_speedup']:.1f}x |", "",
             "Largest difference between the two paths' attributions, relative to the naive path's largest "
             "magnitude: " + ", ".join(f"{m} {v:.1e}" for m, v in worst.items()) + ".", "",
             f"Cohort agreement (Shapley importance of 100 test cases + Kendall tau against 3 raters): "
             f"{cohort_s:.1f} s."]
    (RESULTS / "explain_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
