"""Explaining one case of a paper-size model (configs/cardio_paper.yaml: ResNet-50, BERT-base; random weights,
which is enough for timing): the engine's first view and full explanation against the code before it
(``--before``, a commit whose explain/ package is run in a subprocess on the same checkpoint), and each way
of doing less work measured on its own, all in one run:

- the note attributed at a higher BERT layer (the layers below computed once per case) vs its word embeddings;
- adaptive steps from the completeness error, Gauss-Legendre vs the nested trapezoid rule at one tolerance;
- bfloat16 encoders vs float32 at the same steps (largest map difference, completeness error);
- every path's steps through one fusion pass vs one path at a time.

    python benchmarks/paper_explain_latency.py [--before 282be60] [--tolerance 0.05] [--note-layer 11]

Writes benchmarks/results/paper_explain_latency.{json,md}. Timings are single runs (a paper-size
explanation takes minutes on a loaded 2-core machine); ratios come from the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.case import CaseExplainer, ExplainSettings  # noqa: E402
from explain.image import image_path  # noqa: E402
from explain.integrated import Integration, integrate  # noqa: E402
from explain.signal import signal_path  # noqa: E402
from explain.tabular import tabular_path  # noqa: E402
from explain.text import note_path  # noqa: E402
from neurofusion.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from neurofusion.config import load_experiment  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.data.tokenizer import load_tokenizer  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402
from neurofusion.models import build_model  # noqa: E402
from neurofusion.train import configure_model  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
COHORT = ROOT / "sample_data" / "cardio"
TOKENIZER = ROOT / "sample_data" / "checkpoints" / "cardio_demo" / "tokenizer"

BEFORE_SCRIPT = """
import json, sys, time
from explain.case import ExplainSettings, explain_case
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
checkpoint, cohort, case_id, n_steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ckpt = load_checkpoint(checkpoint, device="cpu")
predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
case = CohortReader(cohort)[case_id]
start = time.perf_counter()
result = explain_case(predictor, case, ExplainSettings(n_steps=n_steps))
print(json.dumps({"seconds": time.perf_counter() - start, "target": result.target}))
"""


def build_checkpoint(folder: Path) -> Path:
    """A paper-config checkpoint with random weights (seed 0) for the bundled cohort's declaration."""
    cohort = CohortReader(COHORT)
    tokenizer = load_tokenizer(TOKENIZER)
    config = configure_model(load_experiment(ROOT / "configs" / "cardio_paper.yaml").model, cohort)
    config.text.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    return save_checkpoint(folder / "cardio_paper_random", build_model(config).eval(), tokenizer)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def before(commit: str, checkpoint: Path, case_id: str, n_steps: int, scratch: Path) -> dict:
    """The explain/ package of ``commit`` explaining the case in a subprocess (same checkpoint, same
    neurofusion, same thread count)."""
    old = scratch / "before"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "explain"], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", BEFORE_SCRIPT, str(checkpoint), str(COHORT), case_id, str(n_steps)],
                         cwd=old, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_paths(forward, prepared: list, target: int, integration: Integration) -> tuple[float, dict]:
    seconds, finished = timed(lambda: list(integrate(forward, [p.path for p in prepared], target, integration)))
    return seconds, {path.modality: (attributions, completeness) for path, attributions, completeness in finished}


def brief(completeness) -> dict:
    return {"n_steps": completeness.n_steps, "relative_error": completeness.relative_error,
            "converged": completeness.converged, "precision": completeness.precision,
            "rounds": completeness.rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", default="282be60", help="commit whose explain/ is the code before")
    parser.add_argument("--before-steps", type=int, default=16)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("--note-layer", type=int, default=11)
    parser.add_argument("--fixed-steps", type=int, default=8, help="steps of the per-way comparisons")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    if args.report_only:
        (RESULTS / "paper_explain_latency.md").write_text(report(json.loads((RESULTS / "paper_explain_latency.json")
                                                                             .read_text())))
        return
    load_start = os.getloadavg()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result: dict = {"date": started, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "settings": vars(args)}
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        path = build_checkpoint(scratch)
        ckpt = load_checkpoint(path, device="cpu")
        predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
        cohort = CohortReader(COHORT)
        case = next(c for c in (cohort[i] for i in cohort.ids("test")) if all(c.available.values()))
        tokens = int(predictor.batch([case]).inputs["text"]["input_ids"].shape[1])
        result.update(case_id=case.case_id, note_tokens=tokens,
                      parameters=sum(p.numel() for p in ckpt.model.parameters()))
        predictor.predict([case])  # warm-up
        result["predict_s"] = float(np.median([timed(lambda: predictor.predict([case]))[0] for _ in range(3)]))
        print(json.dumps({"predict_s": result["predict_s"]}), flush=True)

        fast = ExplainSettings(tolerance=args.tolerance, note_layer=args.note_layer, reduced_precision=("text",),
                               internal_batch_size=16)
        explainer = CaseExplainer(predictor, case, fast)
        result["first_view_s"], first = timed(explainer.first_view)
        panel_times, start = {}, time.perf_counter()
        for name, _ in explainer.panels():
            panel_times[name] = time.perf_counter() - start
        result["full_s"] = result["first_view_s"] + (time.perf_counter() - start)
        explanation = explainer.explanation()
        result["panels_done_after_first_view_s"] = panel_times
        result["full_completeness"] = {m: brief(c) for m, c in explanation.completeness.items()}
        print(json.dumps({k: result[k] for k in ("first_view_s", "full_s", "full_completeness")}), flush=True)

        forward, target = explainer.forward, first.target
        n = args.fixed_steps
        fixed = Integration(n_steps=n, internal_batch_size=16)
        # the note: word embeddings vs higher layers, the same steps
        layers = {}
        for layer in (None, 6, 9, args.note_layer):
            prep_s, prepared = timed(lambda: note_path(forward, case.note, predictor.tokenizer, target, layer=layer))
            seconds, out = run_paths(forward, [prepared], target, fixed)
            layers["word_embeddings" if layer is None else f"hidden_states[{layer}]"] = {
                "seconds": seconds, "prepare_s": prep_s, "per_step_s": seconds / n, **brief(out["text"][1])}
            print(json.dumps({"note": layers}), flush=True)
        result["note_layers"] = layers

        # adaptive steps: Gauss-Legendre vs trapezoid at one tolerance, per path
        paths = {"image": lambda: image_path(forward, case.image.shape, target),
                 "signal": lambda: signal_path(forward, target, case.signal.duration_s),
                 "tabular": lambda: tabular_path(forward, case, target),
                 "text": lambda: note_path(forward, case.note, predictor.tokenizer, target, layer=args.note_layer)}
        adaptive = {}
        for method in ("gausslegendre", "riemann_trapezoid"):
            for modality, make in paths.items():
                integration = Integration(method=method, tolerance=args.tolerance, internal_batch_size=16)
                seconds, out = run_paths(forward, [make()], target, integration)
                adaptive[f"{method}/{modality}"] = {"seconds": seconds, **brief(out[modality][1])}
                print(json.dumps({f"{method}/{modality}": adaptive[f"{method}/{modality}"]}), flush=True)
        result["adaptive"] = adaptive

        # bfloat16 vs float32 encoders at the same steps
        precision = {}
        for modality in ("image", "signal", "text"):
            prepared = paths[modality]()
            runs = {}
            for kinds in ((), (modality,)):
                seconds, out = run_paths(forward, [prepared], target,
                                         Integration(n_steps=n, internal_batch_size=16, reduced_precision=kinds))
                runs["bfloat16" if kinds else "float32"] = (seconds, *out[modality])
            (s32, a32, c32), (s16, a16, c16) = runs["float32"], runs["bfloat16"]
            scale = float(a32.abs().max())
            precision[modality] = {
                "float32_s": s32, "bfloat16_s": s16, "speedup": s32 / s16,
                "max_difference_relative_to_max": float((a16 - a32).abs().max()) / max(scale, 1e-12),
                "correlation": float(np.corrcoef(a16.flatten().numpy(), a32.flatten().numpy())[0, 1]),
                "relative_error_float32": c32.relative_error, "relative_error_bfloat16": c16.relative_error}
            print(json.dumps({modality: precision[modality]}), flush=True)
        result["precision"] = precision

        # one fusion pass for every path vs one path at a time, the same steps
        prepared = [make() for make in paths.values()]
        joint = {}
        for together in (True, False):
            integration = Integration(n_steps=n, internal_batch_size=16, joint=together)
            joint["joint" if together else "separate"], _ = run_paths(forward, prepared, target, integration)
        joint["speedup"] = joint["separate"] / joint["joint"]
        result["joint"] = joint
        print(json.dumps({"joint": joint}), flush=True)

        # the full explanation again, next to the code before, so that ratio is taken under the same load
        again = CaseExplainer(predictor, case, fast)
        result["full_again_s"], _ = timed(again.explanation)
        old = before(args.before, path, case.case_id, args.before_steps, scratch)
        result["before"] = {"commit": args.before, "n_steps": args.before_steps, "full_s": old["seconds"]}
        print(json.dumps({"before": result["before"]}), flush=True)
    load_end = os.getloadavg()
    result["load_average_1min"] = {"start": load_start[0], "end": load_end[0]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "paper_explain_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "paper_explain_latency.md").write_text(report(result))
    print(report(result))


ISSUE_PREDICT_S = 0.39  # the issue's prediction of one case on an idle 2-core machine


def estimate(r: dict, seconds: float) -> str:
    return f"{seconds / r['predict_s'] * ISSUE_PREDICT_S:.1f} s"


def report(r: dict) -> str:
    before_s = r["before"]["full_s"]
    s = r["settings"]
    lines = [
        "# Explaining a paper-size case (configs/cardio_paper.yaml, random weights, CPU)", "",
        f"Date {r['date']}. Command: `OMP_NUM_THREADS={r['omp_num_threads']} nice -n 5 python "
        f"benchmarks/paper_explain_latency.py --before {s['before']} --tolerance {s['tolerance']} "
        f"--note-layer {s['note_layer']}`. {r['torch_threads']} torch thread(s) on {r['cpu_count']} cores; 1-minute "
        f"load average {r['load_average_1min']['start']:.1f} at the start, {r['load_average_1min']['end']:.1f} at the "
        "end: the cores were shared with other jobs, so absolute times are several times those of an idle "
        "2-core machine (the issue measured a prediction at 0.39 s there); ratios come from this one run, "
        "each timing a single run.", "",
        f"Model: {r['parameters'] / 1e6:.0f} M parameters (ResNet-50, BERT-base), case {r['case_id']} with a "
        f"{r['note_tokens']}-token note.", "",
        "The last column is an estimate, not a measurement: the time in units of this run's own prediction of "
        f"the case ({r['predict_s']:.2f} s), times the issue's {ISSUE_PREDICT_S} s prediction on an idle 2-core "
        "machine.", "",
        "| step | seconds | vs the code before | predictions | estimate at 0.39 s per prediction |",
        "| --- | --- | --- | --- | --- |",
        f"| prediction of one case (median of 3) | {r['predict_s']:.2f} | | 1 | {ISSUE_PREDICT_S:.2f} s |",
        f"| **first view** (prediction, cross-modal attention, exact Shapley, Grad-CAM) | {r['first_view_s']:.2f} | "
        f"{before_s / r['first_view_s']:.0f}x sooner (before, nothing showed until the whole explanation) | "
        f"{r['first_view_s'] / r['predict_s']:.2f} | {estimate(r, r['first_view_s'])} |",
        f"| **full explanation**, tolerance {s['tolerance']}, note at hidden_states[{s['note_layer']}] in bfloat16 "
        f"| {r['full_s']:.2f} | {before_s / r['full_s']:.1f}x faster | {r['full_s'] / r['predict_s']:.1f} | "
        f"{estimate(r, r['full_s'])} |",
        f"| code before ({r['before']['commit']}), n_steps {r['before']['n_steps']}, note at word embeddings | "
        f"{before_s:.2f} | | {before_s / r['predict_s']:.1f} | {estimate(r, before_s)} (the issue measured 15.8 s) |",
        "",
        "The first view and the full explanation were timed at the start of the run, the code before at its "
        "end; the full explanation was timed again just before the code before (" +
        (f"{r['full_again_s']:.2f} s, {before_s / r['full_again_s']:.1f}x faster" if "full_again_s" in r else
         "not in this run") + "): with the load changing over a run, a ratio across the run is rougher than "
        "the per-way ratios below, which were timed back to back.", "",
        "Completeness of each map of the full explanation (relative error = |sum of attributions - (f(x) - "
        "f(baseline))| / max(|f(x) - f(baseline)|, 0.01)):", "",
        "| panel | steps | relative error | within tolerance | precision |", "| --- | --- | --- | --- | --- |"]
    for m, c in r["full_completeness"].items():
        lines.append(f"| {m} | {c['n_steps']} | {c['relative_error']:.3g} | {c['converged']} | {c['precision']} |")
    lines += ["", f"## The note: where it is attributed ({s['fixed_steps']} steps each)", "",
              "| attributed at | seconds | per step | relative error |", "| --- | --- | --- | --- |"]
    for k, v in r["note_layers"].items():
        lines.append(f"| {k} | {v['seconds']:.2f} | {v['per_step_s']:.3f} | {v['relative_error']:.3g} |")
    lines += ["", f"## Adaptive steps at tolerance {s['tolerance']}: Gauss-Legendre vs trapezoid", "",
              "| method / path | seconds | steps | relative error | converged |", "| --- | --- | --- | --- | --- |"]
    for k, v in r["adaptive"].items():
        lines.append(f"| {k} | {v['seconds']:.2f} | {v['n_steps']} | {v['relative_error']:.3g} | {v['converged']} |")
    lines += ["", f"## bfloat16 encoders vs float32 ({s['fixed_steps']} steps)", "",
              "bfloat16 is used only where the map stays within 1 % of float32's (largest difference relative to "
              "the largest magnitude): a completeness error alone does not show a map that changed.", "",
              "| path | float32 s | bfloat16 s | speed-up | max map difference / max | correlation | "
              "relative error fp32 / bf16 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, v in r["precision"].items():
        lines.append(f"| {k} | {v['float32_s']:.2f} | {v['bfloat16_s']:.2f} | {v['speedup']:.2f}x | "
                     f"{v['max_difference_relative_to_max']:.3g} | {v['correlation']:.4f} | "
                     f"{v['relative_error_float32']:.3g} / {v['relative_error_bfloat16']:.3g} |")
    j = r["joint"]
    lines += ["", f"## One fusion pass for every path ({s['fixed_steps']} steps)", "",
              f"All four paths through one fusion pass per step: {j['joint']:.2f} s; one path at a time: "
              f"{j['separate']:.2f} s ({j['speedup']:.2f}x).", "",
              "GPU: not measured (no GPU in this session)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
