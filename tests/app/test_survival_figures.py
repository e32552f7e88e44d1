"""Survival figures (app/survival_figures.py) on known curves: what is drawn is what was given, the horizon
value is the grid's interpolation, and bad curves are refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.survival_figures import (
    by_risk_group,
    calibration_figure,
    risk_group_figure,
    risk_group_survival,
    survival_curve_figure,
    survival_metric_table,
    withheld_survival_table,
)
from explain.attention import CohortAttention
from explain.cohort import CohortImportance
from neurofusion.survival import SurvivalBins, calibration_at, kaplan_meier, logrank, risk_groups

BINS = SurvivalBins()  # 12-month bins over 10 years


def test_survival_curve_starts_at_one_passes_every_edge_and_labels_the_horizon():
    curve = np.linspace(0.95, 0.40, BINS.num_bins)
    km = kaplan_meier(np.array([5.0, 20.0, 30.0, 70.0, 100.0]), np.array([1, 0, 1, 1, 0]))
    fig = survival_curve_figure(BINS, curve, 60.0, cohort=km)
    predicted = next(t for t in fig.data if t.name == "this case (predicted)")
    assert list(predicted.x) == list(BINS.edges) and predicted.y[0] == 1.0
    assert np.allclose(predicted.y[1:], curve)
    cohort = next(t for t in fig.data if t.name == "cohort (Kaplan-Meier)")
    assert np.allclose(cohort.y[1:], km.survival) and cohort.line.shape == "hv"
    (label,) = [a.text for a in fig.layout.annotations if a.text.startswith("S(")]
    assert label == f"S(60 months) = {float(BINS.survival_at(curve[None], 60.0)[0]):.0%}"  # 60 is an edge
    assert label == f"S(60 months) = {curve[4]:.0%}"


@pytest.mark.parametrize("curve, message", [
    (np.full(9, 0.5), r"\(10,\)"), (np.linspace(0.4, 0.9, 10), "never increases"),
    (np.full(10, 1.2), "between 0 and 1")])
def test_survival_curve_refuses_what_is_not_a_survival_curve(curve, message):
    with pytest.raises(ValueError, match=message):
        survival_curve_figure(BINS, curve, 60.0)


def test_risk_groups_draw_one_curve_per_group_and_name_the_log_rank_result():
    rng = np.random.default_rng(0)
    risk = rng.random(300)
    time = rng.exponential(40.0 / (0.2 + 2 * risk))  # higher risk, earlier events
    event = np.ones(300, dtype=bool)
    groups = risk_groups(risk)
    curves = {g: kaplan_meier(time[groups == g], event[groups == g]) for g in ("low", "medium", "high")}
    test = logrank(time, event, groups)
    fig = risk_group_figure(curves, test, horizon=60.0)
    lines = [t for t in fig.data if t.mode == "lines" and t.showlegend is not False]
    assert [t.name.split()[0] for t in lines] == ["low", "medium", "high"]
    assert f"χ² = {test.chi2:.1f}, df = 2" in fig.layout.title.text and "p < 0.001" in fig.layout.title.text
    for trace, km in zip(lines, curves.values()):
        assert np.allclose(trace.y[1:], km.survival)
    with pytest.raises(ValueError, match="at least one"):
        risk_group_figure({}, test)


def test_calibration_points_are_the_groups_with_an_observed_value():
    rng = np.random.default_rng(1)
    rate = rng.uniform(0.005, 0.03, 600)
    time = rng.exponential(1 / rate)
    event = np.ones(600, dtype=bool)
    calibration = calibration_at(time, event, np.exp(-rate * 60.0), horizon=60.0, n_groups=5, n_boot=20)
    fig = calibration_figure(calibration)
    points = next(t for t in fig.data if t.mode == "markers")
    observed = [g for g in calibration.groups if g["observed"] is not None]
    assert np.allclose(points.x, [g["predicted"] for g in observed])
    assert np.allclose(points.y, [g["observed"] for g in observed])
    assert "Calibration at 60 months" in fig.layout.title.text


# ------------------------------------------------------------- grouping and tables of the cancer pages
NAMES = ("histopathology", "genomics", "treatment_notes", "clinical")
TITLES = {"histopathology": "Histopathology", "genomics": "Genomics", "treatment_notes": "Treatment notes",
          "clinical": "Clinical"}


def test_risk_group_survival_is_tertiles_their_kaplan_meier_and_the_log_rank():
    rng = np.random.default_rng(2)
    risk = rng.random(90)
    time = rng.exponential(30.0 / (0.2 + risk))
    event = rng.random(90) < 0.7
    groups, curves, test = risk_group_survival(time, event, risk)
    assert list(groups) == list(risk_groups(risk)) and list(curves) == ["low", "medium", "high"]
    for name, km in curves.items():
        expected = kaplan_meier(time[groups == name], event[groups == name])
        np.testing.assert_allclose(km.survival, expected.survival)
        np.testing.assert_allclose(km.time, expected.time)
    assert test == logrank(time, event, groups)
    assert risk[groups == "low"].max() <= risk[groups == "high"].min()
    with pytest.raises(ValueError, match="one length"):
        risk_group_survival(time[:10], event, risk)


def _part(case_ids, scores, attention):
    table = pd.DataFrame({"case_id": case_ids, "label": "all", "predicted": "all",
                          **{f"shapley_{m}": scores[:, j] for j, m in enumerate(NAMES)}})
    cohort = CohortAttention(["all"], {"all": attention}, {"all": attention}, {"all": len(case_ids)},
                             {"all": len(case_ids)}, NAMES)
    return CohortImportance(table, cohort, NAMES, "survival at 60 months")


def test_explanations_per_risk_group_merge_into_one_grouped_by_risk_group():
    rng = np.random.default_rng(3)
    low, high = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    low[0, 3] = np.nan  # a case without clinical data: left out of that mean, not counted as 0
    a_low, a_high = np.full((4, 4), 0.25), np.eye(4)
    merged = by_risk_group({"low risk": _part(["a", "b", "c"], low, a_low),
                            "high risk": _part(["d", "e"], high, a_high)})
    means = merged.by_class("shapley", classes=["low risk", "high risk"])
    np.testing.assert_allclose(means.loc["low risk"].to_numpy(), np.nanmean(low, axis=0))
    np.testing.assert_allclose(means.loc["high risk"].to_numpy(), high.mean(axis=0))
    assert merged.attention.counts_true == {"low risk": 3, "high risk": 2}
    np.testing.assert_array_equal(merged.attention.by_true["high risk"], a_high)
    assert merged.explained == "survival at 60 months" and merged.names == NAMES
    assert list(merged.method("shapley").index) == ["a", "b", "c", "d", "e"]
    with pytest.raises(ValueError, match="at least one"):
        by_risk_group({})


def _estimate(value, low=None, high=None, reason=None):
    return {"value": value, "ci_low": low, "ci_high": high, "reason": reason}


def test_withheld_survival_table_names_modalities_by_title_and_measures_changes_in_points():
    study = {"none": {"c_index": _estimate(0.72, 0.66, 0.77), "auc_at_horizon": _estimate(0.78, 0.71, 0.85)},
             "genomics": {"c_index": _estimate(0.66, 0.60, 0.71), "auc_at_horizon": _estimate(0.72, 0.64, 0.80)},
             "genomics,clinical": {"c_index": _estimate(0.60, 0.53, 0.65),
                                   "auc_at_horizon": _estimate(None, reason="not defined: no event by 60")}}
    table = withheld_survival_table(study, TITLES, paper=True)
    assert list(table["Withheld"]) == ["Nothing (all recorded)", "Genomics", "Genomics + Clinical"]
    assert table["Change (points)"].tolist() == pytest.approx([0.0, -6.0, -12.0])
    assert table["95 % CI"].iloc[1] == "0.600–0.710"
    assert table["AUC 95 % CI"].iloc[2] == "not defined: no event by 60"
    assert table["Paper, real data (points)"].tolist() == ["", "−6.3", ""]
    with pytest.raises(ValueError, match="'none' row"):
        withheld_survival_table({"genomics": study["genomics"]}, TITLES)
    with pytest.raises(ValueError, match="unknown modality 'image'"):
        withheld_survival_table({**study, "image": study["none"]}, TITLES)


def test_survival_metric_table_reads_the_recorded_report_and_says_why_a_metric_is_missing():
    metrics = {"horizon": 60.0, "unit": "months", "c_index": _estimate(0.7213, 0.6651, 0.7704),
               "auc_at_horizon": _estimate(None, reason="not defined: no case followed beyond 60"),
               "integrated_brier": {**_estimate(0.185, 0.159, 0.217), "range": [12.0, 108.0]},
               "calibration_at_horizon": {"mean_abs_gap": _estimate(0.068, 0.062, 0.149),
                                          "slope": _estimate(1.2, reason="interval not defined: 3 of 200"),
                                          "intercept": _estimate(-0.127, -0.296, 0.028)}}
    table = survival_metric_table(metrics).set_index("metric")
    assert table.loc["C-index (Harrell)"].tolist() == ["0.721", "0.665–0.770"]
    assert table.loc["AUC at 60 months", "value"] == "not defined: no case followed beyond 60"
    assert table.loc["Integrated Brier score (12–108 months)", "value"] == "0.185"
    assert table.loc["Calibration slope (1 = calibrated)", "95 % CI"] == "interval not defined: 3 of 200"
    assert table.loc["Calibration intercept (0 = calibrated)", "95 % CI"] == "−0.296 to 0.028"
    with pytest.raises(ValueError, match="none of c_index"):
        survival_metric_table({"horizon": 60.0})
