"""Model-vs-rater agreement per modality-ranking method, beside the raters' own agreement: on a task's cohort
and checkpoint, the mean Kendall tau-b (case-bootstrap 95 % CI) of the model's per-case modality ranking
against the bundled (simulated) raters for four rankings (cross-modal attention, exact Shapley values,
leave-one-out, interaction-aware = |Shapley| + 1/2 sum |interaction index|), next to the inter-rater ceiling
(mean pairwise tau with CI, Kendall's W) and each ranking's tau with the synthetic ground truth (the raters'
too). The model rankings are those of the dashboard's agreement page (explain.cohort.cohort_importance of the
ranked cases; an ICU risk model ranked by magnitude, per sample).

    OMP_NUM_THREADS=1 python benchmarks/rater_agreement.py [--task cardio|cancer|icu] [--data DIR]
        [--checkpoint DIR] [--n-bootstrap 1000] [--threads 1] [--out PATH_WITHOUT_SUFFIX]

Defaults: the task's bundled sample cohort and demo checkpoint; writes benchmarks/results/rater_agreement.json
and .md for cardio, rater_agreement_<task>.* for the others.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.agreement import (  # noqa: E402
    compare_rankings, importance_to_ranks, inter_rater, mean_with_ci, rater_ranks, versus_ground_truth,
)
from explain.cohort import CohortImportance, cohort_importance  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data.synthetic.icu.raters import evidence_table  # noqa: E402
from neurofusion.data.timed import open_cohort  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TASKS = ("cardio", "cancer", "icu")
LABELS = {"attention": "Attention", "shapley": "Shapley", "leave_one_out": "Leave-one-out",
          "shapley_magnitude": "abs(Shapley)", "interaction_aware": "Interaction-aware"}


def model_rankings(importance: CohortImportance) -> dict[str, pd.DataFrame]:
    """Each method's per-case ranks (cases x modalities, 1 = first, NaN = absent) indexed by case_id: the
    importance methods as the agreement page ranks them (the interaction-aware score included), and |Shapley|
    (a magnitude like the interaction-aware score: it isolates what the interaction term adds)."""
    ranks = {method: importance.ranks(method) for method in importance.methods}
    ranks["shapley_magnitude"] = importance_to_ranks(importance.method("shapley").abs())
    return ranks


def rater_truth(task: str, cohort, names: tuple[str, ...]) -> pd.DataFrame:
    """What the simulated raters read, as case_id + strength_<modality>: cardio's ground-truth strengths,
    cancer's |contribution to the log hazard| of the present modalities (simulate_cancer_rankings), each ICU
    sample's evidence as of its hour (icu_evidence) where the sample has the modality."""
    truth = cohort.ground_truth()
    if truth is None:
        raise ValueError(f"{cohort.root} has no ground_truth.csv; this benchmark needs a synthetic cohort")
    truth = truth.reset_index() if "case_id" not in truth.columns else truth
    if task == "cancer":
        scores = pd.DataFrame({"case_id": truth["case_id"]})
        for m in names:
            present = pd.to_numeric(truth[f"strength_{m}"], errors="coerce").notna()
            scores[f"strength_{m}"] = pd.to_numeric(truth[f"contribution_{m}"]).abs().where(present)
        return scores
    if task == "icu":
        strengths = evidence_table(truth, cohort.hours).set_index("case_id")
        present = cohort.table.set_index("case_id").reindex(strengths.index)
        for m in names:
            strengths.loc[~present[f"has_{m}"].fillna(False).astype(bool), f"strength_{m}"] = float("nan")
        return strengths.reset_index()
    return truth


def run(task: str, data: Path, checkpoint: Path, n_bootstrap: int, seed: int = 0) -> dict:
    ckpt = load_checkpoint(checkpoint, device="cpu")
    cohort = open_cohort(data)
    rankings = cohort.rankings()
    if rankings is None or rankings.empty:
        raise ValueError(f"{data} has no clinician_rankings.csv to compare with")
    predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
    ranked = sorted(set(rankings["case_id"]))
    importance = cohort_importance(predictor, [cohort[i] for i in ranked], progress=True)
    if task == "icu":  # a risk has no class to be evidence for: ranked by magnitude, as the agreement page does
        importance = dataclasses.replace(importance, survival=True)
    names = importance.names
    truth = rater_truth(task, cohort, names)
    table = compare_rankings(model_rankings(importance), rankings, truth, n_bootstrap=n_bootstrap, seed=seed)
    ceiling = inter_rater(rankings, n_bootstrap=n_bootstrap, seed=seed)
    raters = {}
    for rater in sorted(set(rankings["rater"])):
        vs = mean_with_ci(versus_ground_truth(rater_ranks(rankings, rater), truth), n_bootstrap=n_bootstrap, seed=seed)
        raters[rater] = {"rankings": int((rankings["rater"] == rater).sum()), "truth": vs.to_dict()}
    return {"task": task, "data": _relative(data), "checkpoint": _relative(checkpoint), "modalities": list(names),
            "explained": importance.explained, "ranked_cases": len(ranked), "rankings": len(rankings),
            "n_bootstrap": n_bootstrap, "seed": seed, "simulated_raters": bool(cohort.info.get("synthetic")),
            "methods": {name: {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                        for name, row in table.to_dict(orient="index").items()},
            "inter_rater": ceiling, "raters": raters}


def _relative(path: Path) -> str:
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _ci(mean: float | None, low: float | None, high: float | None) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def markdown(result: dict) -> str:
    who = "simulated raters" if result["simulated_raters"] else "raters"
    pairwise = result["inter_rater"]["mean_pairwise_tau"]
    lines = [f"# Model vs {who}: agreement per modality-ranking method ({result['task']})", "",
             f"Produced by `OMP_NUM_THREADS=1 python benchmarks/rater_agreement.py --task {result['task']}` on "
             f"`{result['data']}` with `{result['checkpoint']}`: {result['ranked_cases']} ranked cases, "
             f"{result['rankings']} rankings, modalities {', '.join(result['modalities'])}. Kendall tau-b over the "
             f"modalities both sides rank; 95 % CIs resample cases ({result['n_bootstrap']} bootstrap draws, "
             f"seed {result['seed']}).", ""]
    if result["simulated_raters"]:
        lines += ["The raters are **simulated** (neurofusion.data.synthetic.raters: each perceives the planted "
                  "evidence strength plus a lean and Gaussian noise calibrated to an assumed expert inter-rater "
                  "tau of 0.60), not clinicians; the numbers check the explanation machinery, not clinical "
                  "validity.", ""]
    truth = {"cardio": "the planted per-case evidence strength of each modality (ground_truth.csv)",
             "cancer": "each present modality's |contribution to the log hazard| (ground_truth.csv), what the "
                       "simulated cancer raters rank",
             "icu": "each modality's planted evidence as of the sample's hour (icu_evidence), where the sample has "
                    "it"}[result["task"]]
    lines += [f"Ground truth: {truth}.", ""]
    lines += [f"## Ceiling: the {who} among themselves", "",
              f"- Mean pairwise tau {_ci(pairwise['mean'], pairwise['ci_low'], pairwise['ci_high'])} over "
              f"{pairwise['n_cases']} cases",
              f"- Kendall's W {result['inter_rater']['kendalls_w']:.3f} (mean over "
              f"{result['inter_rater']['cases_with_two_or_more_raters']} cases ranked by two or more)", "",
              f"## Each ranking against the {who} and the synthetic ground truth", "",
              f"| ranking | tau vs {who} [95 % CI] | cases | tau vs ground truth [95 % CI] | cases |",
              "| --- | --- | --- | --- | --- |"]
    for name, row in result["methods"].items():
        raters = _ci(row["raters_mean"], row["raters_ci_low"], row["raters_ci_high"])
        truth = _ci(row["truth_mean"], row["truth_ci_low"], row["truth_ci_high"])
        lines.append(f"| {LABELS.get(name, name)} | {raters} | {row['raters_cases']} | {truth} "
                     f"| {row['truth_cases']} |")
    for rater, row in result["raters"].items():
        vs = row["truth"]
        lines.append(f"| {rater} ({who[:-1]}) | — | {row['rankings']} rankings | "
                     f"{_ci(vs['mean'], vs['ci_low'], vs['ci_high'])} | {vs['n_cases']} |")
    lines += ["", "The interaction-aware ranking scores each modality |Shapley| + 1/2 sum over the others of "
              "|pairwise Shapley interaction index| (explain.interactions.interaction_aware_scores), a magnitude, "
              "like abs(Shapley), the same ranking without the interaction term; "
              "attention, Shapley and leave-one-out rank as the dashboard's agreement page does "
              + ("(by magnitude: a risk has no class to be evidence for)." if result["task"] == "icu"
                 else "(signed evidence for the predicted class)." if result["task"] == "cardio"
                 else "(by magnitude: a survival model has no class to be evidence for)."), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="cardio", choices=TASKS)
    parser.add_argument("--data", type=Path, default=None, help="cohort folder (default sample_data/<task>)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="checkpoint folder (default sample_data/checkpoints/<task>_demo)")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="results path without suffix (default benchmarks/results/rater_agreement[_<task>])")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = args.data or ROOT / "sample_data" / args.task
    checkpoint = args.checkpoint or ROOT / "sample_data" / "checkpoints" / f"{args.task}_demo"
    out = args.out or RESULTS / ("rater_agreement" if args.task == "cardio" else f"rater_agreement_{args.task}")
    result = run(args.task, data, checkpoint, args.n_bootstrap)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2, default=_json) + "\n")
    text = markdown(result)
    out.with_suffix(".md").write_text(text)
    print(text)


def _json(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


if __name__ == "__main__":
    main()
