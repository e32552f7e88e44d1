"""Classification metrics agree with scikit-learn, and their bootstrap intervals behave like intervals."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from neurofusion.metrics import (
    Estimate,
    _ovr_auroc,
    _percentile_interval,
    _resample_counts,
    _resampled_metrics,
    classification_metrics,
    expected_calibration_error,
)

NAMES = ["a", "b", "c", "d"]
# Class "c" (2) is never predicted; class "d" (3) is predicted twice but never true. Column 0 has tied scores.
Y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 0, 1])
PROBA = np.array(
    [
        [0.70, 0.10, 0.10, 0.10],  # 0 -> 0
        [0.50, 0.20, 0.20, 0.10],  # 0 -> 0
        [0.20, 0.60, 0.10, 0.10],  # 0 -> 1
        [0.10, 0.80, 0.05, 0.05],  # 1 -> 1
        [0.30, 0.40, 0.20, 0.10],  # 1 -> 1
        [0.20, 0.20, 0.10, 0.50],  # 1 -> 3
        [0.50, 0.10, 0.30, 0.10],  # 2 -> 0
        [0.10, 0.45, 0.40, 0.05],  # 2 -> 1
        [0.25, 0.25, 0.20, 0.30],  # 0 -> 3
        [0.60, 0.30, 0.05, 0.05],  # 1 -> 0
    ]
)


def _cohort(n: int, seed: int, n_classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A noisy but informative classifier: the true class gets a logit bonus."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes)) + 1.2 * np.eye(n_classes)[y]
    proba = np.exp(logits)
    return y, proba / proba.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def hand_result() -> dict:
    return classification_metrics(Y, PROBA, NAMES, n_bootstrap=200)


def test_point_estimates_equal_scikit_learn(hand_result):
    pred = PROBA.argmax(axis=1)
    defined = [0, 1, 2]  # "d" has no cases: its F1 and AUROC are not defined and not averaged
    assert hand_result["accuracy"]["value"] == accuracy_score(Y, pred) == 0.4
    assert hand_result["macro_f1"]["value"] == pytest.approx(f1_score(Y, pred, labels=defined, average="macro"),
                                                             abs=1e-15)
    assert hand_result["macro_f1"]["value"] == pytest.approx(1 / 3)  # was 0.25 with "d" counted as F1 = 0
    per_class_f1 = f1_score(Y, pred, labels=defined, average=None, zero_division=0)
    assert [hand_result["per_class"][name]["f1"]["value"] for name in NAMES[:3]] == per_class_f1.tolist()
    assert per_class_f1.tolist() == pytest.approx([0.5, 0.5, 0.0])  # "c" has cases, none found: a real 0

    aurocs = [roc_auc_score(Y == c, PROBA[:, c]) for c in range(3)]
    assert [hand_result["per_class"][name]["auroc"]["value"] for name in NAMES[:3]] == aurocs
    assert hand_result["macro_auroc"]["value"] == pytest.approx(np.mean(aurocs), abs=1e-15)
    assert hand_result["ece"]["value"] == expected_calibration_error(Y, PROBA)


def test_confusion_matrix_and_support_by_hand(hand_result):
    assert hand_result["confusion_matrix"] == [
        [2, 1, 0, 1],
        [1, 2, 0, 1],
        [1, 1, 0, 0],
        [0, 0, 0, 0],
    ]
    assert [hand_result["per_class"][name]["support"] for name in NAMES] == [4, 4, 2, 0]
    assert hand_result["n"] == 10
    assert hand_result["class_names"] == NAMES
    assert (hand_result["ci"], hand_result["n_bootstrap"]) == (0.95, 200)


def test_result_round_trips_through_json(hand_result):
    assert json.loads(json.dumps(hand_result)) == hand_result


def test_ece_by_hand():
    y = np.array([0, 0, 0, 1])
    proba = np.array(
        [
            [0.9, 0.05, 0.05],  # right, confidence 0.9 -> upper bin
            [0.2, 0.7, 0.1],  # wrong, 0.7 -> upper bin
            [0.4, 0.3, 0.3],  # right, 0.4 -> lower bin
            [0.3, 0.3, 0.4],  # wrong, 0.4 -> lower bin
        ]
    )
    # upper: 2/4 * |0.5 - 0.8| = 0.15; lower: 2/4 * |0.5 - 0.4| = 0.05
    assert expected_calibration_error(y, proba, n_bins=2) == pytest.approx(0.20, abs=1e-12)
    # one bin: |accuracy 0.5 - mean confidence 0.6|
    assert expected_calibration_error(y, proba, n_bins=1) == pytest.approx(0.10, abs=1e-12)


def test_perfect_classifier_has_degenerate_intervals():
    # 30 cases a class, so no resample loses a class (which would score F1 0 for it, as scikit-learn does)
    y = np.repeat([0, 1, 2], 30)
    result = classification_metrics(y, np.eye(3)[y], ["x", "y", "z"], n_bootstrap=100)
    for key, expected in [("accuracy", 1.0), ("macro_f1", 1.0), ("macro_auroc", 1.0), ("ece", 0.0)]:
        expected_dict = {"value": expected, "ci_low": expected, "ci_high": expected}
        if key.startswith("macro"):
            expected_dict["classes"] = ["x", "y", "z"]
        assert result[key] == expected_dict, key


def test_single_case_is_accepted_without_aurocs():
    result = classification_metrics(np.array([1]), np.array([[0.3, 0.7]]), ["neg", "pos"], n_bootstrap=50,
                                    split="test")
    assert result["accuracy"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    neg, pos = result["per_class"]["neg"], result["per_class"]["pos"]
    assert neg["auroc"] == neg["f1"] == {"value": None, "ci_low": None, "ci_high": None,
                                         "reason": "not defined: no test cases of class neg"}
    assert pos["auroc"]["value"] is None
    assert pos["auroc"]["reason"] == "not defined: every one of the 1 test cases is class pos, so none ranks against it"
    assert result["macro_auroc"] == {"value": None, "ci_low": None, "ci_high": None,
                                     "reason": "not defined: no class has a defined AUROC", "classes": [],
                                     "excluded": {"neg": neg["auroc"]["reason"], "pos": pos["auroc"]["reason"]}}
    assert result["macro_f1"]["value"] == 1.0 and result["macro_f1"]["classes"] == ["pos"]


def test_intervals_contain_the_estimate_and_narrow_with_more_cases():
    keys = ["accuracy", "macro_f1", "ece", "macro_auroc"]
    small = classification_metrics(*_cohort(50, seed=1), ["a", "b", "c"], n_bootstrap=300)
    large = classification_metrics(*_cohort(2000, seed=1), ["a", "b", "c"], n_bootstrap=300)
    for result in (small, large):
        for key in keys:
            assert result[key]["ci_low"] <= result[key]["value"] <= result[key]["ci_high"], key
    for key in keys:
        small_width = small[key]["ci_high"] - small[key]["ci_low"]
        large_width = large[key]["ci_high"] - large[key]["ci_low"]
        assert 0 < large_width < small_width / 2, key  # ~ sqrt(40) narrower in theory


def test_same_seed_same_result_other_seed_other_intervals():
    y, proba = _cohort(200, seed=3)
    first = classification_metrics(y, proba, ["a", "b", "c"], n_bootstrap=100, seed=7)
    assert classification_metrics(y, proba, ["a", "b", "c"], n_bootstrap=100, seed=7) == first
    other = classification_metrics(y, proba, ["a", "b", "c"], n_bootstrap=100, seed=8)
    assert other["accuracy"]["value"] == first["accuracy"]["value"]
    assert other["accuracy"]["ci_low"] != first["accuracy"]["ci_low"] or other["ece"] != first["ece"]


def test_vectorised_auroc_equals_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    n = 300
    scores = rng.integers(0, 10, n) / 10  # ten distinct values: many ties
    positive = rng.random(n) < 0.3
    whole = _ovr_auroc(np.ones((1, n)), scores, positive)
    assert abs(whole[0] - roc_auc_score(positive, scores)) < 1e-12

    counts = _resample_counts(np.random.default_rng(1), n, 20)
    resampled = _ovr_auroc(counts, scores, positive)
    for row, auroc in zip(counts, resampled):
        idx = np.repeat(np.arange(n), row.astype(int))
        assert abs(auroc - roc_auc_score(positive[idx], scores[idx])) < 1e-12


def test_vectorised_auroc_is_nan_without_both_groups():
    scores = np.array([0.1, 0.4, 0.4, 0.9])
    positive = np.array([False, True, False, True])
    counts = np.array([[2.0, 0, 2, 0], [0, 3, 0, 1], [1, 1, 1, 1]])
    auroc = _ovr_auroc(counts, scores, positive)
    assert np.isnan(auroc[:2]).all()
    assert auroc[2] == roc_auc_score(positive, scores)


def test_resampled_metrics_equal_scikit_learn_on_resampled_data():
    n_classes = 4
    y, proba = _cohort(120, seed=5, n_classes=n_classes)
    y[y == 3] = 0  # class 3 never true, as in real test sets with a rare class
    counts = _resample_counts(np.random.default_rng(2), len(y), 15)
    boot = _resampled_metrics(counts, y, proba, auroc_classes=[0, 1, 2], n_bins=15)
    labels = list(range(n_classes))
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(len(y)), row.astype(int))
        y_b, proba_b = y[idx], proba[idx]
        pred_b = proba_b.argmax(axis=1)
        assert boot["accuracy"][b] == pytest.approx(accuracy_score(y_b, pred_b), abs=1e-12)
        f1 = f1_score(y_b, pred_b, labels=labels, average=None, zero_division=0)
        np.testing.assert_allclose(boot["f1"][b], f1, rtol=0, atol=1e-12)
        assert boot["ece"][b] == pytest.approx(expected_calibration_error(y_b, proba_b), abs=1e-12)
        assert boot["auroc"][b, 1] == pytest.approx(roc_auc_score(y_b == 1, proba_b[:, 1]), abs=1e-12)
        assert np.isnan(boot["auroc"][b, 3])


def test_interval_is_nan_when_fewer_than_half_the_resamples_are_usable():
    values = np.array([0.1, 0.2, 0.3, np.nan, np.nan])
    assert _percentile_interval(values, 0.95, n_bootstrap=5) == pytest.approx((0.105, 0.295))
    low, high = _percentile_interval(np.array([0.1, 0.2, np.nan, np.nan, np.nan]), 0.95, n_bootstrap=5)
    assert math.isnan(low) and math.isnan(high)


def test_auroc_interval_is_not_defined_when_most_resamples_lack_a_class():
    # With one case per class, a single resample holds both classes or one of them twice, equally often.
    y, proba = np.array([0, 1]), np.array([[0.8, 0.2], [0.3, 0.7]])
    outcomes = [
        classification_metrics(y, proba, ["neg", "pos"], n_bootstrap=1, seed=seed)["macro_auroc"]
        for seed in range(12)
    ]
    assert {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "classes": ["neg", "pos"]} in outcomes
    assert {"value": 1.0, "ci_low": None, "ci_high": None, "classes": ["neg", "pos"],
            "reason": "interval not defined: only 0 of 1 resamples define macro AUROC"} in outcomes


def test_a_class_without_cases_is_not_defined_not_zero(hand_result):
    """The issue: a class with no test cases was counted as F1 = 0 (pulling macro F1 from 0.333 to 0.25) and
    its AUROC printed as [nan, nan]; now it is null with the reason, and the macro averages say over what."""
    d = hand_result["per_class"]["d"]
    reason = "not defined: no cases of class d (2 predicted as d)"
    assert d["f1"] == d["auroc"] == {"value": None, "ci_low": None, "ci_high": None, "reason": reason}
    for key in ("macro_f1", "macro_auroc"):
        assert hand_result[key]["classes"] == ["a", "b", "c"] and hand_result[key]["excluded"] == {"d": reason}
    json.dumps(hand_result, allow_nan=False)  # strict JSON: no NaN anywhere
    named = classification_metrics(Y, PROBA, NAMES, n_bootstrap=20, split="test")
    assert named["per_class"]["d"]["f1"]["reason"] == "not defined: no test cases of class d (2 predicted as d)"


def test_rare_class_interval_ignores_resamples_without_it():
    # Class 2 has one case, always found and never confused: its F1 is 1 wherever it is defined. Counting
    # the ~37 % of resamples that lose the case as F1 = 0 put the lower bound at 0.
    y = np.array([0] * 20 + [1] * 20 + [2])
    proba = np.eye(3)[y] * 0.8 + 0.2 / 3
    result = classification_metrics(y, proba, ["x", "y", "z"], n_bootstrap=400)
    assert result["per_class"]["z"]["f1"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0}
    assert result["macro_f1"] == {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "classes": ["x", "y", "z"]}


def test_interval_of_a_class_in_few_resamples_is_not_defined_with_the_count():
    y = np.array([0] * 30 + [1])
    proba = np.eye(2)[y] * 0.9 + 0.05
    # a single resample of 31 cases loses the rare one about 37 % of the time
    outcomes = [classification_metrics(y, proba, ["common", "rare"], n_bootstrap=1, seed=seed)
                ["per_class"]["rare"]["f1"] for seed in range(10)]
    reason = "interval not defined: only 0 of 1 resamples define the F1 of rare (hold a case of it)"
    assert {"value": 1.0, "ci_low": None, "ci_high": None, "reason": reason} in outcomes
    assert {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0} in outcomes


def test_estimate_to_dict():
    assert Estimate(0.5, 0.25, 0.75).to_dict() == {"value": 0.5, "ci_low": 0.25, "ci_high": 0.75}
    assert Estimate(None, None, None, "not defined: x").to_dict() == {
        "value": None, "ci_low": None, "ci_high": None, "reason": "not defined: x"}


_GOOD_P = np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.5]])
_GOOD_Y = np.array([0, 1, 1])


@pytest.mark.parametrize(
    ("y_true", "proba", "names", "kwargs", "message"),
    [
        (_GOOD_Y[:, None], _GOOD_P, "ab", {}, "y_true must be (N,) class indices, got shape (3, 1)"),
        (np.array([], dtype=int), np.zeros((0, 2)), "ab", {}, "y_true is empty"),
        (_GOOD_Y.astype(float), _GOOD_P, "ab", {}, "y_true must hold integer class indices, got dtype float64"),
        (_GOOD_Y, _GOOD_P, "abc", {}, "proba must be (3, 3) to match y_true and class_names, got (3, 2)"),
        (_GOOD_Y[:2], _GOOD_P, "ab", {}, "proba must be (2, 2) to match y_true and class_names, got (3, 2)"),
        (_GOOD_Y, np.array([[0.6, 0.4], [np.nan, 0.8], [0.5, 0.5]]), "ab", {}, "proba must be finite, row 1"),
        (_GOOD_Y, np.array([[0.6, 0.4], [-0.2, 1.2], [0.5, 0.5]]), "ab", {}, "proba must lie in [0, 1], row 1"),
        (_GOOD_Y, np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.4]]), "ab", {}, "row 2 sums to 0.9"),
        (np.array([0, 2, 1]), _GOOD_P, "ab", {}, "class indices in [0, 2), got 2 at position 1"),
        (np.array([0, -1, 1]), _GOOD_P, "ab", {}, "class indices in [0, 2), got -1 at position 1"),
        (_GOOD_Y, _GOOD_P[:, :1], "a", {}, "class_names must name at least 2 classes, got ['a']"),
        (_GOOD_Y, _GOOD_P, "aa", {}, "class_names must be unique, got duplicates ['a']"),
        (_GOOD_Y, _GOOD_P, "ab", {"n_bootstrap": 0}, "n_bootstrap must be >= 1, got 0"),
        (_GOOD_Y, _GOOD_P, "ab", {"ci": 1.0}, "ci must be in (0, 1), e.g. 0.95, got 1.0"),
    ],
)
def test_bad_input_is_a_specific_error(y_true, proba, names, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        classification_metrics(y_true, proba, list(names), **{"n_bootstrap": 10, **kwargs})


def test_ece_bad_input_is_a_specific_error():
    with pytest.raises(ValueError, match=re.escape("n_bins must be >= 1, got 0")):
        expected_calibration_error(_GOOD_Y, _GOOD_P, n_bins=0)
    with pytest.raises(ValueError, match=re.escape("proba must be (3, C) to match y_true, got (3,)")):
        expected_calibration_error(_GOOD_Y, _GOOD_P[:, 0])
    with pytest.raises(ValueError, match=re.escape("row 2 sums to 0.9")):
        expected_calibration_error(_GOOD_Y, np.array([[0.6, 0.4], [0.2, 0.8], [0.5, 0.4]]))
