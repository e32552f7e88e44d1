"""Faithfulness of the demo checkpoint's explanations on the bundled synthetic cohort: model
randomisation, deletion curves, ERASER for note phrases, and agreement of each modality-importance method
with the planted ground truth and with the simulated clinicians.

    python benchmarks/faithfulness.py        # writes benchmarks/results/faithfulness.{json,md}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.cohort import clinician_agreement, cohort_importance, ground_truth_agreement  # noqa: E402
from explain.faithfulness import eraser_scores, modality_deletion_curves, randomisation_check  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main() -> None:
    ckpt = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "cardio_demo", device="cpu")
    cohort = CohortReader(ROOT / "sample_data" / "cardio")
    predictor = Predictor(ckpt.model, ckpt.tokenizer, ckpt.device)
    cases = [cohort[i] for i in cohort.ids("test")]
    complete = [c for c in cases if all(c.available.values())]

    randomisation = randomisation_check(predictor, complete[:5], n_steps=16)
    print(randomisation.to_string(), flush=True)

    curves = {"image": [], "signal": [], "text": []}
    eraser = []
    for case in complete[:20]:
        target = int(predictor.predict([case])[1].argmax())
        for modality, curve in modality_deletion_curves(predictor, case, target, n_steps=32).items():
            curves[modality].append((curve.area_attributed, curve.area_random))
        eraser.append(eraser_scores(predictor, case, target, n_steps=32))
    deletion = {m: {"area_attributed": float(np.mean([a for a, _ in v])), "area_random": float(np.mean([r for _, r in v])),
                    "cases_where_attributed_is_lower": int(sum(a < r for a, r in v)), "cases": len(v)}
                for m, v in curves.items()}
    eraser_mean = {k: float(np.mean([e[k] for e in eraser])) for k in ("comprehensiveness", "sufficiency", "full")}

    importance = cohort_importance(predictor, cases)
    truth = ground_truth_agreement(importance, cohort.ground_truth())
    clinicians = {method: clinician_agreement(importance, cohort.rankings(), method, n_bootstrap=1000)
                  for method in importance.methods}

    result = {"randomisation": randomisation.to_dict(orient="records"), "deletion": deletion, "eraser": eraser_mean,
              "ground_truth": truth.to_dict(orient="index"),
              "clinicians": {m: a["summary"].loc["all"].to_dict() for m, a in clinicians.items()},
              "inter_rater": next(iter(clinicians.values()))["inter_rater"]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "faithfulness.json").write_text(json.dumps(result, indent=2, default=float) + "\n")

    ceiling = result["inter_rater"]
    lines = ["# Faithfulness of the explanations (demo checkpoint, synthetic test cohort)", "",
             "Produced by `python benchmarks/faithfulness.py`. Synthetic data with planted evidence: these "
             "numbers check the explanation machinery, not clinical validity.", "",
             "## Model randomisation (image and ECG Integrated Gradients, 5 complete cases)", "",
             "Spearman correlation of |saliency| with the trained model's, as layer groups are re-initialised "
             "from the output backwards. It must fall for the saliency to reflect what the model learned.", "",
             "| step | re-initialised | image | ECG |", "| --- | --- | --- | --- |"]
    for row in result["randomisation"]:
        lines.append(f"| {row['step']} | {row['re_initialised']} | {row['image_similarity']:.3f} | {row['signal_similarity']:.3f} |")
    lines += ["", "## Deletion curves (20 complete cases)", "",
              "Area under p(explained class) as the most-attributed 0-100 % of each modality is removed "
              "(lower = the attribution found what matters), against a random order.", "",
              "| modality | attributed order | random order | cases where attributed < random |", "| --- | --- | --- | --- |"]
    for m, d in deletion.items():
        lines.append(f"| {m} | {d['area_attributed']:.3f} | {d['area_random']:.3f} | {d['cases_where_attributed_is_lower']} / {d['cases']} |")
    lines += ["", "## ERASER, note rationales (top 20 % of word pieces, 20 cases)", "",
              f"Comprehensiveness {eraser_mean['comprehensiveness']:.3f} (probability lost without the rationale), "
              f"sufficiency {eraser_mean['sufficiency']:.3f} (lost with only the rationale), from a mean full "
              f"probability of {eraser_mean['full']:.3f}.", "",
              "## Modality importance against the planted truth and the simulated clinicians (200 test cases)", "",
              "| method | Kendall tau vs ground truth | Spearman score vs strength | Kendall tau vs clinicians [95 % CI] |",
              "| --- | --- | --- | --- |"]
    for method, row in result["ground_truth"].items():
        c = result["clinicians"][method]
        lines.append(f"| {method} | {row['mean_tau']:.3f} | {row['spearman_score_vs_strength']:.3f} | "
                     f"{c['mean']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}] |")
    lines += ["", f"Inter-rater ceiling: mean pairwise tau {ceiling['mean_pairwise_tau']['mean']:.3f}, "
              f"Kendall's W {ceiling['kendalls_w']:.3f}."]
    (RESULTS / "faithfulness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
