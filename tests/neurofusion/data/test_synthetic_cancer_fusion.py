"""Fusion must matter in the synthetic cancer cohort: linear probes on simple features of one modality predict
5-year death clearly worse than the four together."""

from __future__ import annotations

from neurofusion.data.synthetic.cancer import CANCER_MODALITIES, draw_cohort, synthesize_case
from neurofusion.data.synthetic.cancer.separability import modality_probe_auc


def test_each_single_modality_is_clearly_below_all_four():
    """Measured on this draw (600 cases, 5-fold cross-validated ROC AUC for 5-year death): histopathology 0.61,
    genomics 0.67, treatment notes 0.67, clinical 0.63, all four 0.76 (the true linear predictor: 0.90)."""
    cases = [synthesize_case(d, seed=5) for d in draw_cohort(600, seed=5)]
    scores = modality_probe_auc(cases)
    best_single = max(scores[m] for m in CANCER_MODALITIES)
    assert scores["all"] >= 0.73, scores
    assert best_single <= scores["all"] - 0.07, scores
    assert min(scores[m] for m in CANCER_MODALITIES) > 0.56, scores  # every modality carries some signal
