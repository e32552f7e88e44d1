"""Explanation latency on the demo checkpoint: the full case explanation (prediction, attention, exact
Shapley, image + note + ECG + lab attributions) against the straightforward path measured in the same run:
a separate Captum Integrated Gradients per modality through the whole model, used as Captum's documentation
shows (default ``internal_batch_size``: all path steps in one forward pass), and the 16 Shapley subsets as
separate forward passes, at the same n_steps, checking the attributions agree. The same path with one step
per forward pass (``internal_batch_size=1``) is a second, labelled row, not the baseline. Also the
100-case cohort agreement.

The full explanation runs on the engine (explain.integrated: every modality's path steps through one fusion
pass, no per-modality Captum overhead) with today's defaults (exactly n_steps Gauss-Legendre steps, the
note at its word embeddings, float32): the same attributions as the baseline. Measured beside it in the
same run: the explain/ package of the code before (``--before``, in a subprocess on the same cases), and
the engine's faster options, each with its largest map difference from the default and its completeness
errors: bfloat16 encoders, the note at BERT's last layer input (hidden_states[1] of the demo's 2), and
adaptive steps at a tolerance. At equal error (the .md's second comparison): the dashboard's default
(app.state.DASHBOARD_SETTINGS, steps chosen until every map adds up to within its tolerance) against Captum
with, per map, the fewest steps at which its map is within the same tolerance (an oracle count, favouring
the baseline).

The profile (the .md's "Where the time goes"): the default explanation step by step (first view, then each
path) beside the baseline's parts, inside each path the encoder's and the fusion's forward alone, the image
path with and without its lift (its first convolution and batch norm at the path's ends only) and the ECG
path with and without its pair max, their map differences from the encoders run as they are, processor
times (what waiting for the shared cores does not inflate) and what bounds the ratio at equal steps.

    python benchmarks/explain_latency.py [--cases 5] [--n-steps 50] [--before 282be60] [--tolerance 0.05]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.state import DASHBOARD_SETTINGS  # noqa: E402
from explain._forward import ModalityForward  # noqa: E402
from explain.case import CaseExplainer, ExplainSettings, explain_case  # noqa: E402
from explain.cohort import clinician_agreement, cohort_importance  # noqa: E402
from explain.image import image_path  # noqa: E402
from explain.importance import SUBSETS, modality_importance  # noqa: E402
from explain.integrated import Integration, IntegrationPath, integrate, nodes  # noqa: E402
from explain.signal import signal_path  # noqa: E402
from explain.tabular import tabular_path  # noqa: E402
from explain.text import note_path  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.models.model import tabular_normaliser  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
COHORT = ROOT / "sample_data" / "cardio"

BEFORE_SCRIPT = """
import json, statistics, sys, time
from explain.case import ExplainSettings, explain_case
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
checkpoint, cohort, n_steps, ids = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
ckpt = load_checkpoint(checkpoint, device="cpu")
predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
reader = CohortReader(cohort)
settings = ExplainSettings(n_steps=n_steps)
explain_case(predictor, reader[ids[0]], settings)
out = {}
for case_id in ids:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        explain_case(predictor, reader[case_id], settings)
        times.append(time.perf_counter() - start)
    out[case_id] = statistics.median(times)
print(json.dumps(out))
"""

MAPS = ("image", "signal", "tabular", "text")  # the baseline's Integrated Gradients maps
# Captum's step counts tried for the equal-error comparison (Gauss-Legendre, its default; 50 is its default count)
EQUAL_ERROR_LADDER = (8, 16, 32, 50, 64, 96, 128, 192, 256)

# the engine's faster options, each measured beside the default (same cases, same run)
VARIANTS = {
    "bfloat16 note encoder": {"reduced_precision": ("text",)},
    "bfloat16 encoders (image, note, ECG)": {"reduced_precision": ("image", "text", "signal")},
    "note at hidden_states[1]": {"note_layer": 1},
    "note at hidden_states[1] + bfloat16 image and ECG": {"note_layer": 1, "reduced_precision": ("image", "signal")},
    "one fusion pass for every path": {"joint": True},
}


def before_times(commit: str, case_ids: list[str], n_steps: int) -> dict[str, float]:
    """Median seconds per case of the explain/ package of ``commit`` (a subprocess, same checkpoint)."""
    with tempfile.TemporaryDirectory() as scratch:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "explain"], check=True,
                                 capture_output=True)
        subprocess.run(["tar", "-x", "-C", scratch], input=archive.stdout, check=True)
        out = subprocess.run([sys.executable, "-c", BEFORE_SCRIPT, str(CHECKPOINT), str(COHORT), str(n_steps),
                              *case_ids], cwd=scratch, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                             capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def map_difference(a, b) -> dict[str, float]:
    """Largest difference of each IG map of explanation a from b's, relative to b's largest magnitude."""
    pairs = {"image": (a.image.model_map, b.image.model_map), "signal": (a.signal.attributions, b.signal.attributions),
             "text": (a.note.token_scores, b.note.token_scores),
             "tabular": (a.tabular["score"].fillna(0).to_numpy(), b.tabular["score"].fillna(0).to_numpy())}
    return {m: float(np.abs(x - y).max() / max(1e-12, np.abs(y).max())) for m, (x, y) in pairs.items()}


def errors(explanation) -> dict[str, dict]:
    return {m: {"n_steps": c.n_steps, "relative_error": c.relative_error, "converged": c.converged}
            for m, c in explanation.completeness.items()}


def naive_case(model, batch, target: int, n_steps: int | dict[str, int], pad_id: int,
               internal_batch_size: int | None = None, maps: tuple[str, ...] = MAPS) -> dict[str, np.ndarray]:
    """The straightforward way: every attribution through the whole model. internal_batch_size=None is
    Captum's default (all n_steps in one forward pass, as its documentation uses it); 1 is one step per pass.
    ``n_steps``: one number for every map, or one per modality (image, signal, tabular, text). Besides the
    maps, ``sums``: each map's sum over all its elements (for its completeness error). ``maps``: which of them
    to compute (the Shapley passes run only with all four)."""
    per_map = n_steps if isinstance(n_steps, dict) else dict.fromkeys(MAPS, n_steps)
    steps = lambda m: {"n_steps": per_map[m], "internal_batch_size": internal_batch_size}  # noqa: E731

    def with_field(name, value):
        """The case repeated once per row of ``value``, with one modality tensor replaced by it."""
        n = value.shape[0]
        inputs = {m: {k: v.repeat(n, *([1] * (v.dim() - 1))) for k, v in tensors.items()}
                  for m, tensors in batch.inputs.items()}
        modality = {"image": "image", "signal": "signal", "numeric": "tabular", "input_ids": "text"}[name]
        inputs[modality][name] = value
        return type(batch)(batch.case_ids * n, batch.present.repeat(n, 1), batch.labels.repeat(n), inputs,
                           {m: t * n for m, t in batch.texts.items()}, batch.modalities, batch.outcomes.repeat(n, 1))

    out, seconds = {}, {}
    clock = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[part], clock = now - clock, now

    if set(maps) == set(MAPS):
        with torch.no_grad():
            for mask in SUBSETS:  # Shapley: 16 separate forward passes
                model(batch, present=mask[None] & batch.present)
        lap("shapley")
    ig = lambda name: IntegratedGradients(lambda x: model(with_field(name, x)).logits)  # noqa: E731
    sums = {}

    def keep(name: str, attributions: torch.Tensor) -> torch.Tensor:
        sums[name] = float(attributions.double().sum())
        return attributions.detach()

    if "image" in maps:
        out["image"] = keep("image", ig("image").attribute(batch.image, baselines=torch.zeros_like(batch.image),
                                                           target=target, **steps("image")))[0, 0].numpy()
        lap("image")
    if "signal" in maps:
        out["signal"] = keep("signal", ig("signal").attribute(
            batch.signal, baselines=torch.zeros_like(batch.signal), target=target, **steps("signal")))[0].numpy()
        lap("signal")
    if "tabular" in maps:
        normaliser = tabular_normaliser(model)
        mean = torch.where(normaliser.log_scale, torch.expm1(normaliser.mean), normaliser.mean)[None]
        out["tabular"] = keep("tabular", ig("numeric").attribute(
            batch.numeric, baselines=torch.where(batch.numeric_mask, mean, batch.numeric), target=target,
            **steps("tabular")))[0].numpy()
        lap("tabular")
    if "text" in maps:
        ids = batch.tokens["input_ids"]
        special = (ids == ids[0, 0]) | (ids == ids[0, -1])
        layer = model.encoders["text"].bert.embeddings.word_embeddings
        out["text"] = keep("text", LayerIntegratedGradients(lambda x: model(with_field("input_ids", x)).logits,
                                                            layer).attribute(
            ids, baselines=torch.where(special, ids, torch.full_like(ids, pad_id)), target=target,
            **steps("text")))[0].sum(-1).numpy()
        lap("text")
    out["seconds"], out["sums"] = seconds, sums
    return out


def captum_at_equal_error(model, batch, target: int, gaps: dict[str, float], pad_id: int,
                          tolerance: float) -> tuple[dict[str, int], dict[str, float]]:
    """Captum's step count per map for an equal-error comparison: for each map the fewest steps of
    EQUAL_ERROR_LADDER at which its relative completeness error (against ``gaps``, the f(x) - f(baseline)
    the engine's map reports for the same path) is within ``tolerance``, the ladder's last if none is. An
    oracle: a Captum user does not know these counts in advance, so the choice favours the baseline.
    Returns (steps, relative error) per map."""
    chosen, error = {}, {}
    min_gap = Integration().min_gap
    for n in EQUAL_ERROR_LADDER:
        left = tuple(m for m in MAPS if m not in chosen)
        run = naive_case(model, batch, target, n, pad_id, maps=left)
        for m in left:
            relative = abs(run["sums"][m] - gaps[m]) / max(abs(gaps[m]), min_gap)
            if relative <= tolerance or n == EQUAL_ERROR_LADDER[-1]:
                chosen[m], error[m] = n, relative
        if len(chosen) == len(MAPS):
            break
    return {m: chosen[m] for m in MAPS}, {m: error[m] for m in MAPS}


def equal_error(predictor, model, case, batch, pad_id: int) -> dict:
    """The dashboard's default explanation (app.state.DASHBOARD_SETTINGS: every map's steps chosen until it
    adds up to within the tolerance) against Captum with, per map, the fewest steps at which its map is
    within the same tolerance (captum_at_equal_error); timed alternately, median of 3 each."""
    dashboard = explain_case(predictor, case, DASHBOARD_SETTINGS)
    gaps = {m: c.gap for m, c in dashboard.completeness.items()}
    steps, captum_errors = captum_at_equal_error(model, batch, dashboard.target, gaps, pad_id,
                                                 DASHBOARD_SETTINGS.tolerance)
    dashboard_times, captum_times = [], []
    for _ in range(3):
        start = time.perf_counter()
        dashboard = explain_case(predictor, case, DASHBOARD_SETTINGS)
        dashboard_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        naive_case(model, batch, dashboard.target, steps, pad_id)
        captum_times.append(time.perf_counter() - start)
    dashboard_s, captum_s = statistics.median(dashboard_times), statistics.median(captum_times)
    return {"dashboard_s": dashboard_s, "captum_s": captum_s, "speedup": captum_s / dashboard_s,
            "dashboard": errors(dashboard), "captum_steps": steps, "captum_relative_error": captum_errors}


def _median_time(fn) -> tuple[float, object]:
    seconds, result = _times(fn)
    return statistics.median(seconds), result


def _times(fn, repeats: int = 3) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def stages(predictor, case, settings: ExplainSettings) -> dict[str, float]:
    """Seconds of each step of the default explanation as the dashboard runs it (CaseExplainer): the first
    view (prediction, attention, exact Shapley, Grad-CAM), then each modality's Integrated Gradients path in
    the order it is integrated."""
    explainer = CaseExplainer(predictor, case, settings)
    start = time.perf_counter()
    explainer.first_view()
    out = {"first view": time.perf_counter() - start}
    start = time.perf_counter()
    for name, _ in explainer.panels():
        out[name], start = time.perf_counter() - start, time.perf_counter()
    return out


def lift_difference(predictor, case, target: int, n_steps: int) -> dict[str, float]:
    """The image map with the lift (the default) against the same path with the whole encoder on every step:
    the largest difference relative to the map's largest magnitude, how many pixels differ by more than
    1e-5 of it, and the two convergence deltas' difference; the ECG map (the pair max) against the encoder's
    blocks as they are."""
    forward = ModalityForward(predictor.model.eval(), predictor.batch([case]))
    lifted = image_path(forward, case.image.shape, target).path
    encoder = predictor.model.encoders["image"]
    whole = IntegrationPath("image", "image", lifted.inputs, lifted.baseline, lambda x: encoder(x).embedding)
    settings = Integration(n_steps=n_steps)
    ((_, a, ca),) = integrate(forward, [lifted], target, settings)
    ((_, b, cb),) = integrate(forward, [whole], target, settings)
    scale = float(b.abs().max())
    ecg = predictor.model.encoders["signal"]
    paired = signal_path(forward, target, case.signal.duration_s).path
    pooled = IntegrationPath("signal", "signal", paired.inputs, paired.baseline, lambda x: ecg(x).embedding)
    ((_, c, _),) = integrate(forward, [paired], target, settings)
    ((_, d, _),) = integrate(forward, [pooled], target, settings)
    return {"max_relative_difference": float((a - b).abs().max()) / scale,
            "pixels_over_1e-5": int(((a - b).abs() > 1e-5 * scale).sum()), "pixels": b.numel(),
            "delta_difference": abs(ca.delta - cb.delta),
            "ecg_max_relative_difference": float((c - d).abs().max() / d.abs().max())}


def path_parts(predictor, case, n_steps: int) -> dict[str, dict[str, float]]:
    """Inside each path at n_steps (one case): the whole integration, the encoder's forward on the n_steps
    points alone (no gradient), the fusion's forward on n_steps rows alone; what is left is the backward
    pass and the engine's own work. The image path also without its lift (its first convolution and batch
    norm on every step, as before the lift), same run. Shapley alone: the 16 subsets' fusion pass."""
    model = predictor.model.eval()
    batch = predictor.batch([case])
    forward = ModalityForward(model, batch)
    target = 0
    paths = {"image": image_path(forward, case.image.shape, target).path,
             "signal": signal_path(forward, target, case.signal.duration_s).path,
             "tabular": tabular_path(forward, case, target).path,
             "text": note_path(forward, case.note, predictor.tokenizer, target).path}
    encoder, ecg = model.encoders["image"], model.encoders["signal"]
    paths["image, first convolution on every step"] = IntegrationPath(
        "image", "image", paths["image"].inputs, paths["image"].baseline, lambda x: encoder(x).embedding)
    paths["ECG, the encoder's blocks as they are"] = IntegrationPath(
        "signal", "signal", paths["signal"].inputs, paths["signal"].baseline, lambda x: ecg(x).embedding)
    settings = Integration(n_steps=n_steps)
    alphas = torch.tensor(nodes("gausslegendre", n_steps)[0])
    out = {}
    for label, path in paths.items():
        total, _ = _times(lambda: list(integrate(forward, [path], target, settings)), 5)
        with torch.no_grad():
            x, base = path.inputs, path.baseline
            if path.lift is not None:
                x, base = path.lift(x), path.lift(base)
            points = base + alphas.view(-1, *([1] * (x.dim() - 1))) * (x - base)  # the steps' points
            encode, embedding = _times(lambda: path.embed(points), 5)
            fuse, _ = _times(lambda: forward.with_embeddings([(path.modality, embedding)]), 5)
        out[label] = {"total_s": min(total), "encoder_forward_s": min(encode), "fusion_forward_s": min(fuse)}
    with torch.no_grad():
        shapley, _ = _times(lambda: modality_importance(model, batch, encoded=forward.encoded), 5)
    out["shapley"] = {"total_s": min(shapley)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=5)
    parser.add_argument("--n-steps", type=int, default=50)
    parser.add_argument("--before", default="282be60", help="commit whose explain/ is the code before")
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    ckpt = load_checkpoint(CHECKPOINT, device="cpu")
    cohort = CohortReader(COHORT)
    predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
    complete = [c for c in (cohort[i] for i in cohort.ids("test")) if all(c.available.values())][:args.cases]
    settings = ExplainSettings(n_steps=args.n_steps)
    explain_case(predictor, complete[0], settings)  # warm-up of both paths
    naive_case(ckpt.model, predictor.batch(complete[:1]), 0, args.n_steps, ckpt.tokenizer.pad_token_id)

    variants = {**{k: dataclasses.replace(settings, **v) for k, v in VARIANTS.items()},
                f"adaptive steps (Gauss-Legendre), tolerance {args.tolerance}":
                    dataclasses.replace(settings, tolerance=args.tolerance),
                f"adaptive steps (trapezoid), tolerance {args.tolerance}":
                    dataclasses.replace(settings, tolerance=args.tolerance, steps_method="riemann_trapezoid")}
    load_before = os.getloadavg()
    # the code before is timed at the start and again at the end of the run (the load drifts over a run)
    before_start = before_times(args.before, [c.case_id for c in complete], args.n_steps)
    rows = []
    parts = path_parts(predictor, complete[0], args.n_steps)  # the profile, one case, at the start of the run
    for case in complete:
        batch = predictor.batch([case])
        pad_id = ckpt.tokenizer.pad_token_id
        # the default and the baseline alternate, run by run, so both meet the same load (it drifts in seconds)
        fast_times, fast_cpu, naive_times, naive_cpu, naive_runs = [], [], [], [], []
        for _ in range(3):
            start, cpu = time.perf_counter(), time.process_time()
            fast = explain_case(predictor, case, settings)
            fast_times.append(time.perf_counter() - start)
            fast_cpu.append(time.process_time() - cpu)
            start, cpu = time.perf_counter(), time.process_time()
            naive_runs.append(naive_case(ckpt.model, batch, fast.target, args.n_steps, pad_id))
            naive_times.append(time.perf_counter() - start)
            naive_cpu.append(time.process_time() - cpu)
        fast_s = statistics.median(fast_times)
        stage_runs = [stages(predictor, case, settings) for _ in range(3)]
        options = {}
        for label, variant in variants.items():
            seconds, explained = _median_time(lambda: explain_case(predictor, case, variant))
            options[label] = {"seconds": seconds, "max_relative_difference": map_difference(explained, fast),
                              "completeness": errors(explained)}
        naive_s, naive = statistics.median(naive_times), naive_runs[-1]
        unbatched_s, _ = _median_time(lambda: naive_case(ckpt.model, batch, fast.target, args.n_steps, pad_id,
                                                         internal_batch_size=1))
        pairs = {"image": (fast.image.model_map, naive["image"]), "signal": (fast.signal.attributions, naive["signal"]),
                 "text": (fast.note.token_scores, naive["text"]),
                 "tabular": (fast.tabular[(fast.tabular["kind"] == "numeric")]["score"].fillna(0).to_numpy(),
                             naive["tabular"] * batch.numeric_mask[0].numpy())}
        agreement = {m: float(np.abs(a - b).max() / max(1e-12, np.abs(b).max())) for m, (a, b) in pairs.items()}
        rows.append({"case_id": case.case_id, "fast_s": fast_s, "naive_s": naive_s, "speedup": naive_s / fast_s,
                     "fast_min_s": min(fast_times), "naive_min_s": min(naive_times),
                     "fast_cpu_s": statistics.median(fast_cpu), "naive_cpu_s": statistics.median(naive_cpu),
                     "image_lift": lift_difference(predictor, case, fast.target, args.n_steps),
                     "stages_s": {k: statistics.median(r[k] for r in stage_runs) for k in stage_runs[0]},
                     "naive_parts_s": {k: statistics.median(r["seconds"][k] for r in naive_runs)
                                       for k in naive_runs[0]["seconds"]},
                     "naive_unbatched_s": unbatched_s, "speedup_unbatched": unbatched_s / fast_s,
                     "max_relative_difference": agreement, "completeness": errors(fast), "options": options})
        rows[-1]["equal_error"] = equal_error(predictor, ckpt.model, case, batch, pad_id)
        print(json.dumps(rows[-1]), flush=True)

    before_end = before_times(args.before, [c.case_id for c in complete], args.n_steps)
    for row in rows:
        start_s, end_s = before_start[row["case_id"]], before_end[row["case_id"]]
        row.update(before_start_s=start_s, before_end_s=end_s, before_s=(start_s + end_s) / 2,
                   speedup_over_before=(start_s + end_s) / 2 / row["fast_s"])
    cases100 = [cohort[i] for i in cohort.ids("test")[:100]]
    start = time.perf_counter()
    importance = cohort_importance(predictor, cases100)
    agreement = clinician_agreement(importance, cohort.rankings())
    cohort_s = time.perf_counter() - start
    load_after = os.getloadavg()

    median = lambda key: statistics.median(r[key] for r in rows)  # noqa: E731
    option_medians = {}
    for label in variants:
        seconds = statistics.median(r["options"][label]["seconds"] for r in rows)
        option_medians[label] = {
            "median_s": seconds, "speedup_over_naive": median("naive_s") / seconds,
            "worst_max_relative_difference": {m: max(r["options"][label]["max_relative_difference"][m] for r in rows)
                                              for m in rows[0]["max_relative_difference"]},
            "worst_relative_error": {m: max(r["options"][label]["completeness"][m]["relative_error"] for r in rows)
                                     for m in rows[0]["completeness"]},
            "most_steps": {m: max(r["options"][label]["completeness"][m]["n_steps"] for r in rows)
                           for m in rows[0]["completeness"]}}
    result = {"date": started, "before_commit": args.before, "n_steps": args.n_steps, "cases": rows,
              "median_before_s": median("before_s"), "median_speedup_over_before": median("speedup_over_before"),
              "options": option_medians,
              "worst_relative_error": {m: max(r["completeness"][m]["relative_error"] for r in rows)
                                       for m in rows[0]["completeness"]},
              "median_fast_s": median("fast_s"),
              "median_naive_s": median("naive_s"), "median_speedup": median("speedup"),
              "median_naive_unbatched_s": median("naive_unbatched_s"),
              "median_speedup_unbatched": median("speedup_unbatched"),
              "cohort_agreement_100_cases_s": cohort_s,
              "cohort_tau_mean": agreement["summary"].loc["all", "mean"], "torch_threads": torch.get_num_threads(),
              "cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "load_average_1min": {"start": load_before[0], "end": load_after[0]},
              "median_stages_s": {k: statistics.median(r["stages_s"][k] for r in rows) for k in rows[0]["stages_s"]},
              "median_naive_parts_s": {k: statistics.median(r["naive_parts_s"][k] for r in rows)
                                       for k in rows[0]["naive_parts_s"]},
              "least_disturbed": {"fast_s": median("fast_min_s"), "naive_s": median("naive_min_s"),
                                  "speedup": median("naive_min_s") / median("fast_min_s")},
              "cpu_time": {"fast_s": median("fast_cpu_s"), "naive_s": median("naive_cpu_s"),
                           "speedup": median("naive_cpu_s") / median("fast_cpu_s")},
              "path_parts_first_case": parts,
              "equal_error": {"tolerance": DASHBOARD_SETTINGS.tolerance,
                              "dashboard_s": statistics.median(r["equal_error"]["dashboard_s"] for r in rows),
                              "captum_s": statistics.median(r["equal_error"]["captum_s"] for r in rows),
                              "speedup": statistics.median(r["equal_error"]["speedup"] for r in rows)}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "explain_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    worst = {m: max(r["max_relative_difference"][m] for r in rows) for m in rows[0]["max_relative_difference"]}
    lines = ["# Explanation latency (demo checkpoint, CPU)", "",
             f"{len(rows)} complete test cases, n_steps = {args.n_steps}, {torch.get_num_threads()} torch threads on "
             f"{os.cpu_count()} CPU cores (OMP_NUM_THREADS={result['omp_num_threads']}). Date {started}. Produced by "
             f"`python benchmarks/explain_latency.py --cases {len(rows)} --n-steps {args.n_steps} --before "
             f"{args.before} --tolerance {args.tolerance}`; every figure and every ratio come from one run; each "
             "path's time per case is the median of 3 runs (the default explanation's and the baseline's runs "
             "alternate, so both meet the same load).", "",
             f"Machine load: 1-minute load average {load_before[0]:.1f} at the start and {load_after[0]:.1f} at the "
             f"end of the run, which counts the benchmark's own {torch.get_num_threads()} thread(s); above that, "
             "other processes were using the same cores, inflating the absolute times. The ratios compare paths "
             "measured side by side under the same load.", "",
             "| path | median seconds per case | full explanation is faster by |", "| --- | --- | --- |",
             f"| full explanation (prediction, attention, exact Shapley, image IG, note LIG, ECG IG, lab IG) on the "
             f"engine, default settings | {result['median_fast_s']:.2f} | |",
             f"| the same explanation by the code before ({args.before}; a subprocess, timed at the start and at "
             f"the end of the run, {median('before_start_s'):.2f} s and {median('before_end_s'):.2f} s, their mean) | "
             f"{result['median_before_s']:.2f} | {result['median_speedup_over_before']:.2f}x |",
             f"| **baseline**: Captum as documented, a separate IG per modality through the whole model with the "
             f"default batching (all {args.n_steps} steps in one forward pass), 16 Shapley passes | "
             f"{result['median_naive_s']:.2f} | **{result['median_speedup']:.1f}x** |",
             f"| not a baseline: the same with one path step per forward pass (`internal_batch_size=1`) | "
             f"{result['median_naive_unbatched_s']:.2f} | {result['median_speedup_unbatched']:.1f}x |", "",
             "Largest difference between the full explanation's and the baseline's attributions, relative to the "
             "baseline's largest magnitude: " + ", ".join(f"{m} {v:.1e}" for m, v in worst.items()) + ".", "",
             f"Completeness of the default maps at {args.n_steps} steps, largest relative error over the cases "
             "(|sum of attributions - (f(x) - f(baseline))| / max(|f(x) - f(baseline)|, 0.01)): "
             + ", ".join(f"{m} {v:.3g}" for m, v in result["worst_relative_error"].items()) + ".", "",
             "The engine's faster options, same cases, same run (difference: largest map difference from the "
             "default explanation relative to its largest magnitude; error: largest relative completeness error; "
             "steps: most steps taken):", "",
             "| option | median seconds | faster than the baseline by | difference | error | steps |",
             "| --- | --- | --- | --- | --- | --- |",
             *[f"| {label} | {o['median_s']:.2f} | {o['speedup_over_naive']:.1f}x | "
               + ", ".join(f"{m} {v:.1e}" for m, v in o["worst_max_relative_difference"].items()) + " | "
               + ", ".join(f"{m} {v:.3g}" for m, v in o["worst_relative_error"].items()) + " | "
               + ", ".join(f"{m} {v}" for m, v in o["most_steps"].items()) + " |"
               for label, o in result["options"].items()], "",
             f"Cohort agreement (Shapley importance of 100 test cases + Kendall tau against 3 raters): "
             f"{cohort_s:.1f} s.", "", *equal_error_lines(result), *profile_lines(result, args.n_steps)]
    (RESULTS / "explain_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

def equal_error_lines(result: dict) -> list[str]:
    """The .md's equal-error comparison: the dashboard's default against Captum with as many steps as each of
    its maps needs to add up to within the same tolerance."""
    summary, tolerance = result["equal_error"], result["equal_error"]["tolerance"]
    lines = ["## At equal error: the dashboard's default against Captum with the steps each map needs", "",
             f"At {result['n_steps']} steps the maps above are not all complete: the ratio at equal steps compares "
             "maps of unequal quality. Here the dashboard's default (app.state.DASHBOARD_SETTINGS: 8 Gauss-Legendre "
             f"steps, then nested trapezoid grids until each map adds up to within {tolerance * 100:g} %, at most "
             f"{DASHBOARD_SETTINGS.max_steps}) is timed against Captum as documented (Gauss-Legendre, default "
             "batching) with, per case and per map, the fewest steps of "
             f"{', '.join(str(n) for n in EQUAL_ERROR_LADDER)} at which that map is within the same tolerance, "
             "against the same f(x) - f(baseline). That count is an oracle (found by trying the ladder first, not "
             "timed): a Captum user would not know it in advance, so it favours the baseline. The two are timed "
             "alternately, median of 3 each; this is a second comparison beside the issue's target at equal "
             "steps, not a replacement for it.", "",
             "| case | dashboard s | its steps (relative error) | Captum s | Captum's steps (relative error) | "
             "dashboard faster by |", "| --- | --- | --- | --- | --- | --- |"]
    for row in result["cases"]:
        e = row["equal_error"]
        ours = ", ".join(f"{m} {c['n_steps']} ({c['relative_error']:.3f})" for m, c in e["dashboard"].items())
        theirs = ", ".join(f"{m} {e['captum_steps'][m]} ({e['captum_relative_error'][m]:.3f})" for m in e["dashboard"])
        lines.append(f"| {row['case_id']} | {e['dashboard_s']:.2f} | {ours} | {e['captum_s']:.2f} | {theirs} | "
                     f"{e['speedup']:.1f}x |")
    lines += ["", f"Median over the cases: the dashboard's default {summary['dashboard_s']:.2f} s, Captum at equal "
                  f"error {summary['captum_s']:.2f} s, median ratio **{summary['speedup']:.1f}x**. A map the ladder "
                  f"could not bring within {tolerance * 100:g} % keeps its {EQUAL_ERROR_LADDER[-1]} steps and shows "
                  "its error above the tolerance.", ""]
    return lines


def profile_lines(result: dict, n_steps: int) -> list[str]:
    """The .md's profile: where the default explanation's time goes, beside the baseline's parts, inside
    each path, and what bounds the ratio to the baseline at equal steps."""
    stages_s, naive_parts = result["median_stages_s"], result["median_naive_parts_s"]
    total = sum(stages_s.values())
    pairs = {"first view": "shapley", "image": "image", "signal": "signal", "tabular": "tabular", "text": "text"}
    what = {"first view": ("first view: prediction, attention, exact Shapley (16 subsets, one fusion pass), "
                           "Grad-CAM", "16 Shapley forward passes"),
            "image": (f"image Integrated Gradients, {n_steps} steps", "the same through the whole model"),
            "signal": (f"ECG Integrated Gradients, {n_steps} steps", "the same through the whole model"),
            "tabular": (f"lab Integrated Gradients, {n_steps} steps", "the same through the whole model"),
            "text": (f"note Layer Integrated Gradients (word embeddings), {n_steps} steps",
                     "the same through the whole model")}
    lines = ["## Where the time goes", "",
             "The default explanation step by step as the dashboard runs it (CaseExplainer: first view, then each "
             "panel's path), median over the cases of the median of 3 runs, beside the same part of the baseline "
             "(median over the cases of the median of 3 runs; the baseline's image, ECG, lab and note parts each run "
             "every encoder of the model on every step and differentiate one):", "",
             "| engine step | baseline part | engine seconds | share of the explanation | baseline seconds | "
             "baseline / engine |", "| --- | --- | --- | --- | --- | --- |"]
    for stage, part in pairs.items():
        if stage not in stages_s:
            continue
        engine, base = stages_s[stage], naive_parts.get(part, float("nan"))
        lines.append(f"| {what[stage][0]} | {what[stage][1]} | {engine:.3f} | {100 * engine / total:.0f} % | "
                     f"{base:.3f} | {base / engine:.1f}x |")
    parts = result["path_parts_first_case"]
    lines += ["", f"Inside each path on the first case (fastest of 5 runs each; encoder and fusion forward: the "
                  f"{n_steps} points through the encoder, the {n_steps} rows through the fusion, without gradients; "
                  "the rest is the backward pass and the engine's own work: points, weighted sums, the lift's one "
                  "vector-Jacobian product, Python):", "",
              "| path | whole integration s | encoder forward s | fusion forward s | rest (backward, overhead) s |",
              "| --- | --- | --- | --- | --- |"]
    for label, p in parts.items():
        if label == "shapley":
            continue
        rest = p["total_s"] - p["encoder_forward_s"] - p["fusion_forward_s"]
        lines.append(f"| {label} | {p['total_s']:.3f} | {p['encoder_forward_s']:.3f} | {p['fusion_forward_s']:.4f} "
                     f"| {rest:.3f} |")
    lifted, whole = parts["image"]["total_s"], parts["image, first convolution on every step"]["total_s"]
    paired, pooled = parts["signal"]["total_s"], parts["ECG, the encoder's blocks as they are"]["total_s"]
    lines += ["", f"The image path with its first convolution and batch norm at the two ends only (the lift) vs on "
                  f"every step, same run: {whole:.3f} s -> {lifted:.3f} s, {whole / lifted:.2f}x. The ECG path with "
                  "each ReLU + max pool as the pair max first and the ReLU on half the samples vs the encoder's "
                  f"blocks as they are: {pooled:.3f} s -> {paired:.3f} s, {pooled / paired:.2f}x. Exact Shapley "
                  f"(16 subsets in one fusion pass): {parts['shapley']['total_s'] * 1000:.1f} ms.", ""]
    lift = [r["image_lift"] for r in result["cases"]]
    lines += ["The lift's image maps against the whole encoder on every step, same cases: largest difference "
              f"{max(d['max_relative_difference'] for d in lift):.1e} of the map's largest magnitude (per case "
              + ", ".join(f"{d['max_relative_difference']:.1e}" for d in lift) + "), pixels differing by more than "
              "1e-5 of it: " + ", ".join(f"{d['pixels_over_1e-5']}" for d in lift) + f" of {lift[0]['pixels']}; "
              f"convergence deltas within {max(d['delta_difference'] for d in lift):.1e}. Where a difference exceeds "
              "float rounding it is a ReLU or max-pool decision at a value within rounding of its threshold, taken "
              "the other way at one step (the lift rounds the stem's output differently): a few pixels, never the "
              "map's sum. The ECG maps with the pair max against the encoder's blocks as they are: largest "
              f"difference {max(d['ecg_max_relative_difference'] for d in lift):.1e}.", ""]
    idle = result["least_disturbed"]
    cpu = result["cpu_time"]
    threads = result["torch_threads"]
    lines += [f"Processor time (time.process_time of the benchmark's process, summed over its {threads} torch "
              f"thread(s); waiting for the shared cores does not count): default explanation {cpu['fast_s']:.2f} s, "
              f"baseline {cpu['naive_s']:.2f} s, {cpu['speedup']:.1f}x, median over the cases.", ""]
    note = stages_s.get("text", float("nan"))
    bound = result["median_naive_s"] / note
    if threads == 1:
        lines += [f"**Estimate for an idle machine** (an estimate, not a measurement on an idle machine): the "
                  f"processor times above, {cpu['fast_s']:.2f} s per case for the default explanation and "
                  f"{cpu['naive_s']:.2f} s for the baseline, are what one thread would take with the cores to itself, "
                  "less what sharing the caches and memory bandwidth with the other processes still costs; for "
                  "comparison the fastest of the 3 runs of each case (median over the cases): "
                  f"{idle['fast_s']:.2f} s and {idle['naive_s']:.2f} s, {idle['speedup']:.1f}x.", ""]
    else:
        lines += [f"The fastest of the 3 runs of each case (median over the cases): default explanation "
                  f"{idle['fast_s']:.2f} s, baseline {idle['naive_s']:.2f} s, {idle['speedup']:.1f}x.", ""]
    lines += [f"**What bounds the ratio at equal steps.** The note path is {100 * note / total:.0f} % of the default "
              f"explanation: {n_steps} steps of BERT forward and backward over every token, the same work the "
              f"baseline's note part does (there it is {naive_parts.get('text', float('nan')) / note:.1f}x the "
              "engine's, the difference being the image, ECG and lab encoders the baseline also runs on every note "
              "step). Its time is matrix products and the attention kernel (PyTorch's CPU flash attention; the "
              "math kernel measured slower), with no affine part before its first non-linear operation (the "
              "embedding LayerNorm) to lift. Even with every other part free, the ratio at equal steps would be "
              f"the baseline's {result['median_naive_s']:.2f} s over the note's {note:.2f} s = {bound:.1f}x"
              + (f"; 5x at {n_steps} steps is out of reach without changing what is computed (fewer steps from the "
                 "error, the note at a higher BERT layer, bfloat16: the options above)." if bound < 5 else
                 f"; 5x at {n_steps} steps would need the explanation at {result['median_naive_s'] / 5:.2f} s, i.e. "
                 f"everything but the note (now {total - note:.2f} s: image, ECG, labs, first view) at "
                 f"{max(0.0, result['median_naive_s'] / 5 - note):.2f} s, while the image and ECG paths already "
                 "run only their own encoder forward and backward on each step (the image from after its first "
                 "convolution).")]
    return lines


if __name__ == "__main__":
    main()
