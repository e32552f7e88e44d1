"""Survival figures (app/survival_figures.py) on known curves: what is drawn is what was given, the horizon
value is the grid's interpolation, and bad curves are refused."""

from __future__ import annotations

import numpy as np
import pytest

from app.survival_figures import calibration_figure, risk_group_figure, survival_curve_figure
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
    assert f"χ² = {test.chi2:.1f}, df = 2" in fig.layout.title.text and "p = < 0.001" in fig.layout.title.text
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
