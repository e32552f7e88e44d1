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


def test_cohort_importance_carries_each_case_interactions_from_its_subset_values(tiny_cohort, predictor):
    """The per-case interactions of the cohort pass (several batches) are shapley_interactions of each case's
    own modality_importance, and their class means are explain.interactions.mean_interactions'."""
    from explain.cohort import cohort_importance
    from explain.importance import modality_importance
    from explain.interactions import mean_interactions, shapley_interactions

    cases = [tiny_cohort[i] for i in range(20)]
    result = cohort_importance(predictor, cases, batch_size=6)
    direct = modality_importance(predictor.model, predictor.batch(cases))
    assert result.interactions.shape == (20, 4, 4)
    np.testing.assert_allclose(result.interactions, shapley_interactions(direct), atol=1e-6)
    assert not result.interactions[~direct.present].any()  # a modality the case lacks interacts with nothing
    predicted = result.table["predicted"].tolist()
    means = result.interaction_means("predicted", classes=predictor.model.classes)
    for row in mean_interactions(direct, predicted).itertuples():
        i, j = MODALITIES.index(row.a), MODALITIES.index(row.b)
        if row.n:
            assert means.mean[row.group][i, j] == pytest.approx(row.mean, abs=1e-6)
            assert means.mean_abs[row.group][j, i] == pytest.approx(row.mean_abs, abs=1e-6)
        else:
            assert np.isnan(means.mean[row.group][i, j])
    assert sum(means.counts.values()) == 20
    # the derived interaction-aware ranking: the scores of each case's own modality_importance
    from explain.interactions import interaction_aware_scores
    assert result.methods[-1] == "interaction_aware"
    aware = result.method("interaction_aware").to_numpy(dtype=float)
    np.testing.assert_allclose(aware, interaction_aware_scores(direct), atol=1e-6)
    assert np.isnan(aware[~direct.present]).all()


def test_interaction_means_need_the_interactions(importance):
    with pytest.raises(ValueError, match="carries no interactions"):
        importance.interaction_means()
    assert "interaction_aware" not in importance.methods  # nothing to derive it from
