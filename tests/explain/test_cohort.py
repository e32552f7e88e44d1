"""Cohort-level importance by class: a class without cases, or whose cases all lack a modality, is reported
as not defined with the reason, never as NaN printed as '+nan'."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from explain.cohort import CohortImportance, ground_truth_agreement
from neurofusion.data.schema import MODALITIES

CLASSES = ["normal", "heart_failure", "arrhythmia"]


@pytest.fixture
def importance() -> CohortImportance:
    rows = []
    for i, (label, predicted) in enumerate([("normal", "normal"), ("normal", "heart_failure"),
                                            ("heart_failure", "heart_failure")]):
        row = {"case_id": f"c{i}", "label": label, "predicted": predicted}
        for m, value in zip(MODALITIES, [0.1 * (i + 1), 0.2, 0.3, 0.4]):
            # heart_failure's only case has no image: its image mean is not defined
            row[f"shapley_{m}"] = np.nan if (label == "heart_failure" and m == "image") else value
        rows.append(row)
    return CohortImportance(pd.DataFrame(rows))


def test_by_class_means_over_the_cases_with_the_modality(importance):
    table = importance.by_class("shapley", classes=CLASSES)
    assert table.index.tolist() == CLASSES
    assert table.loc["normal", "image"] == pytest.approx(0.15) and table.loc["heart_failure", "text"] == 0.2
    assert np.isnan(table.loc["heart_failure", "image"]) and table.loc["arrhythmia"].isna().all()


def test_not_defined_cells_have_reasons(importance):
    reasons = importance.not_defined("shapley", classes=CLASSES, cases="test cases")
    assert reasons == {
        "heart_failure": {"image": "not defined: none of the 1 test cases of class heart_failure has a shapley score "
                                   "for image (the modality is missing in all of them)"},
        "arrhythmia": {m: "not defined: no test cases of class arrhythmia" for m in MODALITIES},
    }
    by_predicted = importance.not_defined("shapley", "predicted", classes=CLASSES, cases="test cases")
    assert by_predicted["arrhythmia"]["text"] == "not defined: no test cases predicted as arrhythmia"
    assert "heart_failure" not in by_predicted  # c1, also predicted heart_failure, has an image


def test_ground_truth_agreement_says_why_a_value_is_missing(importance):
    truth = pd.DataFrame({"case_id": ["c0"], "strength_image": [0.9], "strength_text": [0.1],
                          "strength_signal": [0.5], "strength_tabular": [0.3]})
    defined = ground_truth_agreement(importance, truth).loc["shapley"]
    # scores 0.1 < 0.2 < 0.3 < 0.4 against strengths 0.9, 0.1, 0.5, 0.3: 2 of 6 pairs concordant
    assert defined["mean_tau"] == pytest.approx(-1 / 3) and defined["reason"] is None
    elsewhere = ground_truth_agreement(importance, truth.assign(case_id="c9")).loc["shapley"]
    assert np.isnan(elsewhere["mean_tau"]) and elsewhere["cases"] == 0
    assert elsewhere["reason"] == ("mean_tau not defined: no case with a defined tau against the ground truth; "
                                   "Spearman not defined: 0 (case, modality) pairs with a score")
