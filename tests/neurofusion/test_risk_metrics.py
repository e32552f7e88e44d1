"""Binary risk metrics agree with scikit-learn, their bootstrap resamples stays (not samples), and the per-hour
blocks are the metrics of each hour's samples."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from neurofusion.metrics import _ovr_auroc, _resample_counts
from neurofusion.risk_metrics import (
    _bootstrap,
    _weighted_average_precision,
    risk_metrics,
    risk_metrics_table,
)

HOURS = [0, 6, 12, 24, 36, 48]


def _icu_like(n_stays: int, seed: int, *, round_to: int | None = 1) -> tuple[np.ndarray, ...]:
    """Stays scored at some of HOURS each, with a stay-level risk shared by its samples (so they correlate).

    ``p`` is rounded to ``round_to`` decimals so that many samples tie. Returns y, p, stay ids, hours.
    """
    rng = np.random.default_rng(seed)
    n_hours = rng.integers(1, len(HOURS) + 1, n_stays)  # stays that ended early are scored at fewer hours
    stay = np.repeat([f"ICU-{i:05d}" for i in range(n_stays)], n_hours)
    hours = np.concatenate([HOURS[:k] for k in n_hours]).astype(float)
    severity = np.repeat(rng.normal(size=n_stays), n_hours)
    y = (rng.random(len(stay)) < 1 / (1 + np.exp(-(1.5 * severity - 1.0)))).astype(int)
    p = 1 / (1 + np.exp(-(severity - 1.0 + rng.normal(0, 0.7, len(stay)))))
    if round_to is not None:
        p = np.round(p, round_to)
    return y, p, stay, hours


def _reference_ece(y: np.ndarray, p: np.ndarray, n_bins: int) -> float:
    """ECE written out bin by bin, bins (lo, hi] with 0 in the first."""
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for b in range(n_bins):
        inside = (p > edges[b]) & (p <= edges[b + 1]) if b else (p <= edges[1])
        if inside.any():
            total += inside.sum() / len(y) * abs(y[inside].mean() - p[inside].mean())
    return total


@pytest.fixture(scope="module")
def cohort() -> tuple[np.ndarray, ...]:
    return _icu_like(120, seed=3)


@pytest.fixture(scope="module")
def result(cohort) -> dict:
    y, p, stay, hours = cohort
    return risk_metrics(y, p, stay, hours, n_bootstrap=300, seed=1)


def test_point_values_equal_scikit_learn_with_ties(cohort, result):
    y, p, _, _ = cohort
    assert len(np.unique(p)) < len(p) / 5  # rounding left many ties, which the rank formulas must handle
    assert result["auroc"]["value"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert result["auprc"]["value"] == pytest.approx(average_precision_score(y, p), abs=1e-9)
    assert result["brier"]["value"] == pytest.approx(brier_score_loss(y, p), abs=1e-9)
    assert result["ece"]["value"] == pytest.approx(_reference_ece(y, p, 10), abs=1e-9)
    assert result["n_samples"] == len(y) and result["n_stays"] == 120
    assert result["prevalence"] == pytest.approx(y.mean(), abs=1e-12)
    for name in ("auroc", "auprc", "brier", "ece"):
        estimate = result[name]
        assert estimate["ci_low"] < estimate["ci_high"], name
        assert "reason" not in estimate
    # An informative model's AUROC interval lies well above chance and contains its point value.
    assert 0.5 < result["auroc"]["ci_low"] <= result["auroc"]["value"] <= result["auroc"]["ci_high"]


def test_weighted_formulas_equal_scikit_learn_on_the_duplicated_stay_resample(cohort):
    """Each vectorised resample equals scikit-learn on the data set built by repeating every drawn stay's
    samples as often as the stay was drawn."""
    y, p, stay, _ = cohort
    stays, stay_index = np.unique(stay, return_inverse=True)
    y, p = y.astype(float), p.astype(float)
    n_resamples, seed = 12, 7
    boot = _bootstrap(y, p, stay_index, len(stays), True, n_bootstrap=n_resamples, seed=seed, n_bins=10)
    stay_counts = _resample_counts(np.random.default_rng(seed), len(stays), n_resamples)  # the same draws
    members = [np.flatnonzero(stay_index == s) for s in range(len(stays))]
    for b in range(n_resamples):
        drawn = np.concatenate([np.tile(members[s], int(c)) for s, c in enumerate(stay_counts[b]) if c])
        y_b, p_b = y[drawn], p[drawn]
        assert boot["auroc"][b] == pytest.approx(roc_auc_score(y_b, p_b), abs=1e-9)
        assert boot["auprc"][b] == pytest.approx(average_precision_score(y_b, p_b), abs=1e-9)
        assert boot["brier"][b] == pytest.approx(brier_score_loss(y_b, p_b), abs=1e-9)
        assert boot["ece"][b] == pytest.approx(_reference_ece(y_b, p_b, 10), abs=1e-9)


def test_weighted_average_precision_with_zero_weights_and_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(float)
    scores = np.round(rng.random(300), 1)
    weights = rng.integers(0, 4, (5, 300)).astype(float)  # zero weights drop samples; others repeat them
    ap = _weighted_average_precision(weights, scores, y)
    auroc = _ovr_auroc(weights, scores, y == 1)
    for b in range(5):
        kept = np.repeat(np.arange(300), weights[b].astype(int))
        assert ap[b] == pytest.approx(average_precision_score(y[kept], scores[kept]), abs=1e-9)
        assert auroc[b] == pytest.approx(roc_auc_score(y[kept], scores[kept]), abs=1e-9)
    no_positive = np.where(y == 1, 0.0, 1.0)[None, :]
    assert np.isnan(_weighted_average_precision(no_positive, scores, y)).all()


def test_bootstrap_resamples_stays_not_samples():
    """A stay whose samples are identical copies counts once: repeating every stay 8 times leaves every interval
    as it is with one sample per stay. Resampling samples would narrow them by about sqrt(8)."""
    y, p, stay, _ = _icu_like(60, seed=5, round_to=None)
    first = np.unique(stay, return_index=True)[1]
    y1, p1, stay1 = y[first], p[first], stay[first]
    copies = 8
    once = risk_metrics(y1, p1, stay1, n_bootstrap=400, seed=2)
    repeated = risk_metrics(np.repeat(y1, copies), np.repeat(p1, copies), np.repeat(stay1, copies),
                            n_bootstrap=400, seed=2)
    per_sample = risk_metrics(np.repeat(y1, copies), np.repeat(p1, copies), np.arange(copies * len(y1)),
                              n_bootstrap=400, seed=2)
    for name in ("auroc", "auprc", "brier", "ece"):
        for field in ("value", "ci_low", "ci_high"):
            assert repeated[name][field] == pytest.approx(once[name][field], abs=1e-9), (name, field)
    for name in ("auroc", "brier"):
        stay_width = repeated[name]["ci_high"] - repeated[name]["ci_low"]
        sample_width = per_sample[name]["ci_high"] - per_sample[name]["ci_low"]
        assert stay_width > 2 * sample_width, name


def test_one_stay_holding_every_event_leaves_a_third_of_stay_resamples_without_events():
    """Stay resamples miss a given stay with probability (1 - 1/S)^S (0.36 for S = 30); sample resamples
    of 150 samples, 10 of them events, almost never miss all 10."""
    n_stays, per_stay = 30, 5
    stay = np.repeat(np.arange(n_stays), per_stay)
    y = (stay == 0).astype(float)
    p = np.linspace(0.05, 0.95, len(y))
    for groups, low, high in ((stay, 0.30, 0.42), (np.arange(len(y)), 0.0, 0.01)):
        stays, index = np.unique(groups, return_inverse=True)
        boot = _bootstrap(y, p, index, len(stays), True, n_bootstrap=1000, seed=0, n_bins=10)
        missing = np.isnan(boot["auroc"]).mean()
        assert low <= missing <= high
        assert np.array_equal(np.isnan(boot["auprc"]), np.isnan(boot["auroc"]))
        assert not np.isnan(boot["brier"]).any()
    result = risk_metrics(y, p, stay, n_bootstrap=1000, seed=0)
    assert result["auroc"]["value"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert result["auroc"]["ci_low"] is not None  # about 64 % of resamples define it: enough for an interval


def test_interval_not_defined_when_fewer_than_half_of_the_resamples_define_it():
    # Two stays, one all events, one all non-events: a resample defines AUROC only when it draws both (p = 1/2).
    y, p, stay = np.array([1, 1, 0, 0]), np.array([0.9, 0.7, 0.4, 0.1]), np.array(["a", "a", "b", "b"])
    outcomes = set()
    for seed in range(20):
        auroc = risk_metrics(y, p, stay, n_bootstrap=3, seed=seed)["auroc"]
        assert auroc["value"] == 1.0
        if auroc["ci_low"] is None:
            assert auroc["ci_high"] is None
            usable = int(re.search(r"only (\d) of 3 stay resamples", auroc["reason"]).group(1))
            assert usable <= 1
        else:
            assert auroc["ci_low"] == auroc["ci_high"] == 1.0 and "reason" not in auroc
        outcomes.add(auroc["ci_low"] is None)
    assert outcomes == {True, False}  # both branches are reached over 20 seeds


def test_by_hour_blocks_equal_the_metrics_of_that_hour_alone(cohort, result):
    y, p, stay, hours = cohort
    assert list(result["by_hour"]) == [f"{h:g}" for h in HOURS]
    for hour in HOURS:
        at = hours == hour
        alone = risk_metrics(y[at], p[at], stay[at], n_bootstrap=300, seed=1)
        block = result["by_hour"][f"{hour:g}"]
        assert "by_hour" not in block
        for key in ("n_samples", "n_stays", "n_events", "prevalence", "calibration"):
            assert block[key] == alone[key], (hour, key)
        for name in ("auroc", "auprc", "brier", "ece"):
            assert block[name] == pytest.approx(alone[name], abs=1e-12), (hour, name)
        assert block["auroc"]["value"] == pytest.approx(roc_auc_score(y[at], p[at]), abs=1e-9)
        assert block["brier"]["value"] == pytest.approx(brier_score_loss(y[at], p[at]), abs=1e-9)
    assert sum(block["n_samples"] for block in result["by_hour"].values()) == result["n_samples"]


def test_fractional_hours_are_keyed_as_in_sample_ids():
    y, p = np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.3, 0.6])
    result = risk_metrics(y, p, ["s1", "s2", "s1", "s2"], [0, 0, 6.5, 6.5], n_bootstrap=20)
    assert list(result["by_hour"]) == ["0", "6.5"]
    with pytest.raises(ValueError, match=r"hours 100000.2 and another hour both print as '100000'"):
        risk_metrics(y, p, ["s1", "s2", "s1", "s2"], [100000.1, 100000.1, 100000.2, 100000.2], n_bootstrap=20)


def test_single_class_subset_is_not_defined_with_a_reason():
    y = np.array([0, 0, 0, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.7])
    stay = np.array(["a", "b", "c", "a", "b", "c"])
    hours = np.array([0, 0, 0, 24, 24, 24])
    result = risk_metrics(y, p, stay, hours, n_bootstrap=50)
    early = result["by_hour"]["0"]
    for name in ("auroc", "auprc"):
        assert early[name]["value"] is None and early[name]["ci_low"] is None and early[name]["ci_high"] is None
        assert early[name]["reason"] == ("not defined: every one of the 3 samples at hour 0 is a non-event, "
                                         "so none ranks against the other class")
    assert early["brier"]["value"] == pytest.approx(brier_score_loss(y[:3], p[:3]), abs=1e-12)
    assert early["brier"]["ci_low"] is not None
    all_events = risk_metrics(np.ones(3), np.array([0.5, 0.6, 0.7]), ["a", "b", "c"], n_bootstrap=20)
    assert all_events["auprc"]["value"] is None and "is an event" in all_events["auprc"]["reason"]
    text = json.dumps(result, allow_nan=False)  # nulls, never NaN
    assert "NaN" not in text and json.loads(text)["by_hour"]["0"]["auroc"]["value"] is None


def test_calibration_bins_match_calibration_curve_and_list_empty_bins():
    y = np.array([0, 0, 1, 0, 1, 1, 1, 0, 1])
    p = np.array([0.0, 0.1, 0.1, 0.15, 0.5, 0.55, 0.9, 0.95, 1.0])  # 0.1 sits in (0, 0.1], 1.0 in the last bin
    result = risk_metrics(y, p, np.arange(9), n_bootstrap=20, n_bins=10)
    bins = result["calibration"]["bins"]
    assert [b["lo"] for b in bins] == pytest.approx([k / 10 for k in range(10)], abs=1e-12)
    assert [b["hi"] for b in bins] == pytest.approx([(k + 1) / 10 for k in range(10)], abs=1e-12)
    assert [b["n"] for b in bins] == [3, 1, 0, 0, 1, 1, 0, 0, 1, 2]
    empty = [b for b in bins if b["n"] == 0]
    assert all(b["mean_predicted"] is None and b["observed"] is None for b in empty)
    filled = [b for b in bins if b["n"]]
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    assert [b["observed"] for b in filled] == pytest.approx(prob_true, abs=1e-12)
    assert [b["mean_predicted"] for b in filled] == pytest.approx(prob_pred, abs=1e-12)
    ece = sum(b["n"] / 9 * abs(b["observed"] - b["mean_predicted"]) for b in filled)
    assert result["ece"]["value"] == pytest.approx(ece, abs=1e-12)


def test_table_has_a_row_for_all_samples_and_each_hour():
    y = np.array([0, 0, 0, 1, 0, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.7])
    result = risk_metrics(y, p, ["a", "b", "c", "a", "b", "c"], [0, 0, 0, 24, 24, 24], n_bootstrap=50)
    table = risk_metrics_table(result)
    assert isinstance(table, pd.DataFrame)
    assert table["hour"].tolist() == ["all", "0", "24"]
    assert table["n_samples"].tolist() == [6, 3, 3]
    row = table.set_index("hour").loc["all"]
    for name in ("auroc", "auprc", "brier", "ece"):
        assert row[name] == pytest.approx(result[name]["value"])
        assert row[f"{name}_ci_low"] == pytest.approx(result[name]["ci_low"])
    early = table.set_index("hour").loc["0"]
    assert math.isnan(early["auroc"]) and math.isnan(early["auprc_ci_high"])
    assert "auroc: not defined" in early["notes"] and table.set_index("hour").loc["24", "notes"] == ""
    with pytest.raises(ValueError, match=r"by_hour\['0'\] lack \['auroc'\]"):
        broken = dict(result, by_hour={"0": {k: v for k, v in result["by_hour"]["0"].items() if k != "auroc"}})
        risk_metrics_table(broken)
    with pytest.raises(TypeError, match="must be the dict that risk_metrics returns"):
        risk_metrics_table(table)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y": [[0, 1]]}, r"y must be \(N,\) 0/1 labels, got shape \(1, 2\)"),
        ({"y": []}, "y is empty"),
        ({"p": [0.1, 0.2]}, r"p must be \(N,\) = \(3,\) to match y, got shape \(2,\)"),
        ({"groups": ["a", "b"]}, r"groups must be \(N,\) = \(3,\)"),
        ({"hours": [0, 6]}, r"hours must be \(N,\) = \(3,\)"),
        ({"y": [0, 2, 1]}, "y must hold only 0 and 1, got 2 at position 1"),
        ({"y": ["0", "1", "0"]}, "y must hold 0/1 labels as numbers or booleans"),
        ({"p": [0.1, 1.5, 0.2]}, r"p must hold finite probabilities in \[0, 1\], got 1.5 at position 1"),
        ({"p": [0.1, 0.5, np.nan]}, "got nan at position 2"),
        ({"p": [True, False, True]}, "p must hold probabilities as floats"),
        ({"groups": ["a", None, "b"]}, r"position 1 is missing \(None\)"),
        ({"hours": [0, np.inf, 6]}, "hours must be finite, got inf at position 1"),
        ({"hours": ["0", "6", "6"]}, "hours must hold prediction hours as numbers"),
        ({"n_bootstrap": 0}, "n_bootstrap must be an integer >= 1, got 0"),
        ({"ci": 1.0}, r"ci must be in \(0, 1\)"),
        ({"n_bins": 0}, "n_bins must be an integer >= 1, got 0"),
    ],
)
def test_bad_input_is_rejected_with_what_was_wrong(kwargs, message):
    args = {"y": [0, 1, 0], "p": [0.2, 0.7, 0.4], "groups": ["a", "b", "c"], "hours": None} | kwargs
    with pytest.raises(ValueError, match=message):
        risk_metrics(args.pop("y"), args.pop("p"), args.pop("groups"), args.pop("hours"), **args)
