"""Do the models' explanations find the modality pair each interaction-decided case was built on? On the bundled
cardio cohort (interaction share 0.4), for the demo checkpoint and every fusion checkpoint of
benchmarks/table2.py: the share of the cases a rule decides (with both modalities of its pair) in which the
planted pair comes first among the case's pairs by |pairwise Shapley interaction| and by symmetrised
cross-modal attention, beside chance (explain.planted_pairs), and each model's accuracy on the rule-decided
cases and on the others. Mean ± sd over seeds per architecture.

    python benchmarks/planted_pairs.py [--checkpoints 'build/table2/*_s*'] [--threads 1]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.importance import modality_importance  # noqa: E402
from explain.interactions import shapley_interactions  # noqa: E402
from explain.planted_pairs import find_planted_pairs  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
DEMO = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
FUSION = ("neurofusion", "neurofusion_gated", "mlp_fusion", "late_fusion")


def measure(checkpoint: Path, cohort: CohortReader) -> dict:
    ckpt = load_checkpoint(checkpoint, device="cpu")
    predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
    cases = [cohort[i] for i in cohort.ids("test")]
    ids, present, interactions, attention, correct = [], [], [], [], []
    for batch in predictor.batches(cases, 32):
        result = modality_importance(ckpt.model, batch)
        ids += list(result.case_ids)
        present.append(result.present)
        interactions.append(shapley_interactions(result))
        attention.append(result.cross_attention)
        correct.append(result.target == batch.labels.cpu().numpy())  # the explained class is the predicted one
    cross = None if any(a is None for a in attention) else np.concatenate(attention)
    truth = cohort.ground_truth()
    finding = find_planted_pairs(truth, ids, np.concatenate(present), np.concatenate(interactions), cross,
                                 ckpt.model.names)
    roles = truth.set_index("case_id").reindex(ids)["interaction_role"].fillna("").to_numpy()
    correct = np.concatenate(correct)
    accuracy = {"rule-decided": float(correct[roles != ""].mean()), "other": float(correct[roles == ""].mean()),
                **{role: float(correct[roles == role].mean()) for role in sorted(set(roles) - {""})}}
    return {"architecture": ckpt.config.architecture, "checkpoint": str(checkpoint.relative_to(ROOT)),
            "summary": finding.summary().reset_index().to_dict(orient="records"), "accuracy": accuracy}


def markdown(runs: list[dict], share: float) -> str:
    lines = ["# Do the explanations find the planted interaction pair?", "",
             f"Bundled cardio test cohort (interaction share {share:g}): of the cases an interaction rule decides and "
             "that have both modalities of the rule's pair, the share in which that pair comes first among the "
             "case's modality pairs, by |pairwise Shapley interaction index| of the predicted class's probability "
             "and by symmetrised cross-modal attention a_ij + a_ji (ties count against the planted pair), beside "
             "chance (1 / number of pairs). Mean ± sd over seeds for the benchmarks/table2.py checkpoints; the demo "
             "checkpoint alone. Produced by `python benchmarks/planted_pairs.py`. Synthetic data.", "",
             "| model | seeds | group | cases | chance | first by interaction | first by attention |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    by_model: dict[str, list[dict]] = {}
    for run in runs:
        name = "demo checkpoint" if run["checkpoint"].startswith("sample_data") else run["architecture"]
        by_model.setdefault(name, []).append(run)
    for name, model_runs in by_model.items():
        groups = [row["group"] for row in model_runs[0]["summary"]]
        for group in groups:
            rows = [next(r for r in run["summary"] if r["group"] == group) for run in model_runs]
            cells = [_mean_sd([r[key] for r in rows]) for key in ("chance_first", "interaction_first",
                                                                   "attention_first")]
            lines.append(f"| {name} | {len(model_runs)} | {group} | {rows[0]['cases']} | " + " | ".join(cells) + " |")
    groups = list(runs[0]["accuracy"])
    lines += ["", "Accuracy on the cases a rule decides and on the others (the cohort's additive cases); mean ± sd "
              "over seeds.", "", "| model | seeds | " + " | ".join(groups) + " |",
              "| --- | --- |" + " --- |" * len(groups)]
    for name, model_runs in by_model.items():
        cells = [_mean_sd([run["accuracy"][g] for run in model_runs]) for g in groups]
        lines.append(f"| {name} | {len(model_runs)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_sd(values: list[float]) -> str:
    values = np.asarray([v for v in values if v is not None and not np.isnan(v)], dtype=float)
    if not len(values):
        return "—"
    return f"{values.mean():.2f}" + (f" ± {values.std(ddof=1):.2f}" if len(values) > 1 else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", nargs="+", default=[f"build/table2/{a}_s*" for a in FUSION],
                        help="checkpoint folders or glob patterns (relative to the repository)")
    parser.add_argument("--data", default=str(ROOT / "sample_data" / "cardio"))
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 on shared, busy cores)")
    parser.add_argument("--out", default=str(RESULTS / "planted_pairs"), help="writes <out>.json and <out>.md")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cohort = CohortReader(args.data)
    share = float(cohort.info.get("generator", {}).get("interaction_share", 0.0))
    if share == 0.0:
        parser.error(f"{args.data} has no planted interactions (interaction share 0)")
    paths = [DEMO] + sorted(Path(p) for pattern in args.checkpoints for p in glob.glob(str(ROOT / pattern)))
    runs = []
    for path in paths:
        runs.append(measure(path.resolve(), cohort))
        print(path.name, runs[-1]["summary"][0], flush=True)
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"interaction_share": share, "runs": runs}, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(runs, share))
    print(markdown(runs, share), end="")


if __name__ == "__main__":
    main()
