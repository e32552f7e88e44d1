"""Survival grid, censoring in the discrete-time loss, and survival metrics checked against hand counts and
scikit-survival called directly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.stats import chi2 as chi2_distribution
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc, integrated_brier_score
from sksurv.util import Surv

from neurofusion.models.heads import SurvivalHead
from neurofusion.survival import (
    SurvivalBins,
    calibration_at,
    concordance_index,
    integrated_brier,
    kaplan_meier,
    logrank,
    risk_groups,
    survival_curve,
    survival_metrics,
    time_dependent_auc,
)


def _cohort(n: int, seed: int, *, rates: np.ndarray | None = None, admin: float = 120.0):
    """Exponential event times (per-case monthly rates), uniform random censoring on (0, 150) and
    administrative censoring at ``admin`` months -> (time, event, rates)."""
    rng = np.random.default_rng(seed)
    if rates is None:
        rates = 0.01 * np.exp(rng.normal(size=n))
    event_time = rng.exponential(1 / rates)
    censor_time = np.minimum(rng.uniform(0, 150, size=n), admin)
    return np.minimum(event_time, censor_time), event_time <= censor_time, rates


def _exponential_curves(rates: np.ndarray, bins: SurvivalBins) -> np.ndarray:
    return np.exp(-rates[:, None] * np.asarray(bins.edges[1:])[None, :])  # (N, K) S(edges[k + 1])


# ---------------------------------------------------------------- the time grid


def test_bins_round_trip_through_json_and_build_uniform_grids():
    bins = SurvivalBins.uniform(120, 6)
    assert bins.num_bins == 20 and bins.edges[-1] == 120.0
    assert SurvivalBins.from_dict(json.loads(json.dumps(bins.to_dict()))) == bins
    assert SurvivalBins().edges == tuple(float(m) for m in range(0, 121, 12))


@pytest.mark.parametrize("edges, message", [
    ((0.0,), "at least 2 edges"),
    ((1.0, 12.0), "must start at 0"),
    ((0.0, 12.0, 12.0), "strictly increasing: edge 2"),
    ((0.0, float("inf")), "finite"),
])
def test_bins_reject_bad_edges(edges, message):
    with pytest.raises(ValueError, match=message):
        SurvivalBins(edges)


def test_bins_reject_bad_uniform_grids_and_fields():
    with pytest.raises(ValueError, match="whole number of bin widths"):
        SurvivalBins.uniform(100, 12)
    with pytest.raises(ValueError, match="unknown SurvivalBins field"):
        SurvivalBins.from_dict({"edges": [0, 12], "width": 12})


def test_an_event_in_bin_k_is_encoded_as_bin_k():
    bins = SurvivalBins()
    rng = np.random.default_rng(0)
    k = rng.integers(0, bins.num_bins, size=500)
    edges = np.asarray(bins.edges)
    time = edges[k] + rng.uniform(1e-6, 1, size=500) * (edges[k + 1] - edges[k])  # inside (e_k, e_k+1]
    encoded = bins.encode(time, np.ones(500))
    np.testing.assert_array_equal(encoded, np.stack([k, np.ones(500, dtype=int)], axis=1))
    # bins are (e_k, e_k+1]: an event exactly at 12 months has not survived past 12 months -> bin 0
    np.testing.assert_array_equal(bins.encode([0.0, 12.0, 120.0], [1, 1, 1]), [[0, 1], [0, 1], [9, 1]])


def test_censoring_counts_a_bin_as_survived_only_from_its_midpoint():
    bins = SurvivalBins()
    time = [17.9, 18.0, 30.0, 5.9, 6.0, 121.0, 300.0, float("nan")]
    event = [0, 0, 0, 0, 0, 1, 0, float("nan")]
    expected = [[0, 0], [1, 0], [2, 0], [-1, 0], [0, 0], [9, 0], [9, 0], [-1, 0]]
    np.testing.assert_array_equal(bins.encode(time, event), expected)


@pytest.mark.parametrize("time, event, message", [
    ([-1.0], [1], "finite and >= 0"),
    ([3.0], [2], "1 \\(event\\) or 0"),
    ([3.0, 4.0], [1], "one per time"),
    ([[3.0]], [[1]], "non-empty \\(N,\\)"),
])
def test_encode_rejects_bad_outcomes(time, event, message):
    with pytest.raises(ValueError, match=message):
        SurvivalBins().encode(time, event)


def test_survival_at_interpolates_linearly_from_one_at_time_zero():
    bins = SurvivalBins((0.0, 10.0, 20.0))
    curve = np.array([[0.8, 0.4], [0.5, 0.5]])
    np.testing.assert_allclose(bins.survival_at(curve, 0.0), [1.0, 1.0])
    np.testing.assert_allclose(bins.survival_at(curve, 5.0), [0.9, 0.75])
    np.testing.assert_allclose(bins.survival_at(curve, [10.0, 15.0, 20.0]), [[0.8, 0.6, 0.4], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(bins.risk_score(curve, 15.0), [0.4, 0.5])
    with pytest.raises(ValueError, match="beyond its last bin edge"):
        bins.survival_at(curve, 20.5)


def test_survival_at_is_differentiable_and_matches_numpy_on_torch_curves():
    bins = SurvivalBins()
    logits = torch.randn(3, bins.num_bins, dtype=torch.float64, requires_grad=True)
    curve = SurvivalHead.survival_curve(logits)
    np.testing.assert_allclose(curve.detach().numpy(), survival_curve(logits.detach().numpy()), rtol=1e-12)
    at = bins.survival_at(curve, [30.0, 60.0])
    np.testing.assert_allclose(at.detach().numpy(), bins.survival_at(curve.detach().numpy(), [30.0, 60.0]))
    at[:, 1].sum().backward()
    assert logits.grad[:, :5].abs().min() > 0 and (logits.grad[:, 5:] == 0).all()  # S(60) uses bins 0..4 only


# ---------------------------------------------------------------- censoring in the loss


def _fit_free_hazards(target: torch.Tensor, num_bins: int) -> np.ndarray:
    """Per-bin hazards shared by all cases, fitted by gradient descent on SurvivalHead.loss."""
    logits = torch.zeros(num_bins, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([logits], max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = SurvivalHead.loss(logits.expand(len(target), num_bins), target)
        loss.backward()
        return loss

    optimiser.step(closure)
    return torch.sigmoid(logits).detach().numpy()


def _early_censoring_cohort():
    """4000 cases, event hazard 0.02/month; 70 % are censored uniformly within the first 24 months."""
    rng = np.random.default_rng(1)
    n = 4000
    event_time = rng.exponential(50.0, size=n)
    censor_time = np.where(rng.uniform(size=n) < 0.7, rng.uniform(0, 24, size=n), 1e9)
    return np.minimum(event_time, censor_time), event_time <= censor_time


def _km_hazards(time, event, bins: SurvivalBins) -> np.ndarray:
    km = kaplan_meier(time, event)
    survival = np.array([km.at(edge) for edge in bins.edges])
    return 1 - survival[1:] / survival[:-1]


def test_the_loss_with_censoring_recovers_the_kaplan_meier_hazard():
    bins = SurvivalBins.uniform(60, 12)
    time, event = _early_censoring_cohort()
    target = bins.encode(time, event)
    fitted = _fit_free_hazards(torch.as_tensor(target), bins.num_bins)
    # the discrete-time maximum-likelihood hazard: events in bin k over the cases still at risk in bin k
    k = np.arange(bins.num_bins)[:, None]
    at_risk = (target[:, 0] >= k).sum(axis=1)
    np.testing.assert_allclose(fitted, ((target[:, 0] == k) & (target[:, 1] == 1)).sum(axis=1) / at_risk, atol=1e-4)
    np.testing.assert_allclose(fitted, _km_hazards(time, event, bins), atol=0.01)
    np.testing.assert_allclose(fitted, 1 - math.exp(-12 * 0.02), atol=0.03)  # the simulated hazard per bin


def test_treating_censored_cases_as_events_gives_a_clearly_wrong_hazard():
    bins = SurvivalBins.uniform(60, 12)
    time, event = _early_censoring_cohort()
    as_events = bins.encode(time, np.ones_like(event))
    wrong = _fit_free_hazards(torch.as_tensor(as_events), bins.num_bins)
    assert np.abs(wrong - _km_hazards(time, event, bins))[:2].min() > 0.2


# ---------------------------------------------------------------- metrics against hand counts and the library


def test_c_index_equals_a_hand_count_of_pairs():
    time = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([1, 0, 1, 1, 0])
    risk = np.array([0.9, 0.5, 0.7, 0.2, 0.2])
    # comparable pairs (i had the event, j outlived it): case 0 with 1, 2, 3, 4 (all concordant: 0.9 is
    # highest); case 2 with 3, 4 (concordant: 0.7 > 0.2); case 3 with 4 (tied risk: counts 1/2) -> 6.5 / 7
    estimate = concordance_index(time, event, risk, n_boot=20)
    assert estimate.value == pytest.approx(6.5 / 7)


def test_metric_wrappers_equal_direct_scikit_survival_calls():
    bins = SurvivalBins()
    time, event, rates = _cohort(600, seed=2)
    train_time, train_event, _ = _cohort(800, seed=3)
    curves = _exponential_curves(rates * np.exp(np.random.default_rng(4).normal(0, 0.3, 600)), bins)
    risk = bins.risk_score(curves, 60.0)
    train, test = Surv.from_arrays(train_event, train_time), Surv.from_arrays(event, time)
    grid = np.linspace(12.0, 108.0, 100)

    c_index = concordance_index(time, event, risk, n_boot=10)
    auc = time_dependent_auc(time, event, risk, train_time=train_time, train_event=train_event, n_boot=10)
    ibs = integrated_brier(time, event, curves, bins, train_time=train_time, train_event=train_event, n_boot=10)
    assert c_index.value == pytest.approx(concordance_index_censored(event, time, risk)[0], abs=1e-12)
    assert auc.value == pytest.approx(cumulative_dynamic_auc(train, test, risk, [60.0])[0][0], abs=1e-12)
    direct_ibs = integrated_brier_score(train, test, bins.survival_at(curves, grid), grid)
    assert ibs.value == pytest.approx(direct_ibs, abs=1e-12)


def test_auc_is_one_for_a_perfectly_ordered_risk():
    time, event, _ = _cohort(400, seed=5)
    auc = time_dependent_auc(time, event, -time, train_time=time, train_event=event, n_boot=10)
    assert auc.value == pytest.approx(1.0)


def test_brier_score_of_a_perfect_predictor_is_near_zero():
    bins = SurvivalBins.uniform(120, 0.5)
    rng = np.random.default_rng(6)
    time = rng.integers(1, 121, size=300).astype(float)  # every event is observed, on a whole month
    event = np.ones(300, dtype=bool)
    time[:20] = 120.0  # followed to the end, censored there
    event[:20] = False
    curves = (np.asarray(bins.edges[1:])[None, :] < time[:, None]).astype(float)  # S = 1 until the event
    perfect = integrated_brier(time, event, curves, bins, train_time=time, train_event=event, t_range=(12, 108),
                               n_boot=10)
    km = kaplan_meier(time, event)
    cohort_curve = np.array([km.at(edge) for edge in bins.edges[1:]])
    uninformed = integrated_brier(time, event, np.tile(cohort_curve, (300, 1)), bins, train_time=time,
                                  train_event=event, t_range=(12, 108), n_boot=10)
    assert perfect.value < 0.01 and uninformed.value > 0.1


def test_kaplan_meier_equals_the_hand_computed_product_limit():
    time = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 5.0])
    event = np.array([1, 1, 0, 1, 0, 1])
    km = kaplan_meier(time, event)
    # at 1: 6 at risk, 1 death; at 2: 5 at risk, 1 death (one censored); at 3: 3 at risk, 1 death; at 4:
    # censored; at 5: the last case dies
    np.testing.assert_allclose(km.survival, [5 / 6, 5 / 6 * 4 / 5, 5 / 6 * 4 / 5 * 2 / 3, 4 / 9, 0.0])
    np.testing.assert_array_equal(km.at_risk, [6, 5, 3, 2, 1])
    np.testing.assert_array_equal(km.events, [1, 1, 1, 0, 1])
    assert (km.at(0.5), km.at(2.5), km.at(99.0)) == (1.0, pytest.approx(2 / 3), 0.0)
    # log-log interval at t = 1 from Greenwood's variance of log S: d / (n (n - d)) = 1 / 30
    s, z = 5 / 6, 1.959963984540054
    se = math.sqrt(1 / 30) / abs(math.log(s))
    assert (km.ci_low[0], km.ci_high[0]) == (pytest.approx(s ** math.exp(z * se)),
                                             pytest.approx(s ** math.exp(-z * se)))
    assert kaplan_meier([1.0, 3.0], [1, 0]).at(4.0) is None  # past the last time, survival not 0


def _hand_logrank(time, event, group) -> float:
    """Two-group log-rank chi-square: (O1 - E1)^2 / V summed over distinct event times."""
    observed = expected = variance = 0.0
    for t in np.unique(time[event]):
        at_risk = time >= t
        n, n1 = at_risk.sum(), (at_risk & group).sum()
        d, d1 = (event & (time == t)).sum(), (event & (time == t) & group).sum()
        observed += d1
        expected += d * n1 / n
        variance += d * (n1 / n) * (1 - n1 / n) * (n - d) / (n - 1) if n > 1 else 0.0
    return (observed - expected) ** 2 / variance


def test_logrank_agrees_with_a_hand_computed_chi_square():
    time = np.array([3.0, 5.0, 7.0, 2.0, 4.0, 4.0, 9.0, 11.0, 12.0, 6.0])
    event = np.array([1, 1, 0, 1, 1, 0, 1, 1, 0, 1], dtype=bool)
    group = np.array([1, 1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=bool)
    result = logrank(time, event, group)
    chi2 = _hand_logrank(time, event, group)
    assert result.df == 1 and result.chi2 == pytest.approx(chi2)
    assert result.p_value == pytest.approx(chi2_distribution.sf(chi2, 1))


def test_logrank_separates_different_groups_and_not_identical_ones():
    rates = np.r_[np.full(300, 0.01), np.full(300, 0.05)]
    time, event, _ = _cohort(600, seed=7, rates=rates)
    group = np.r_[np.zeros(300), np.ones(300)]
    assert logrank(time, event, group).p_value < 1e-6
    same_time, same_event, _ = _cohort(600, seed=8, rates=np.full(600, 0.02))
    assert logrank(same_time, same_event, group).p_value > 0.05
    # the cohort page's test across predicted risk groups (a score rising with the case's rate, no ties)
    by_risk = logrank(time, event, risk_groups(np.arange(600.0)))
    assert by_risk.df == 2 and by_risk.p_value < 1e-6
    assert logrank(time, event, np.zeros(600)).chi2 is None
    assert "no events" in logrank(time, np.zeros(600), group).reason


def test_risk_groups_are_tertiles_and_keep_ties_together():
    labels = risk_groups(np.arange(9.0))
    assert list(labels) == ["low"] * 3 + ["medium"] * 3 + ["high"] * 3
    tied = risk_groups(np.array([1.0, 1.0, 1.0, 1.0, 2.0, 3.0]))
    assert len(set(tied[:4])) == 1
    assert list(risk_groups(np.array([0.1, 0.9]), n_groups=2)) == ["low", "high"]
    with pytest.raises(ValueError, match="n_groups must be >= 2"):
        risk_groups(np.arange(3.0), n_groups=1)


# ---------------------------------------------------------------- calibration and bootstrap intervals


def test_true_survival_is_calibrated_and_a_shifted_prediction_is_not():
    time, event, rates = _cohort(2000, seed=9)
    truth = np.exp(-60.0 * rates)
    calibrated = calibration_at(time, event, truth, n_boot=30)
    assert calibrated.mean_abs_gap.value < 0.05
    assert calibrated.slope.value == pytest.approx(1.0, abs=0.15)
    assert calibrated.intercept.value == pytest.approx(0.0, abs=0.07)
    shifted = calibration_at(time, event, np.clip(truth + 0.2, 0, 1), n_boot=30)
    assert shifted.mean_abs_gap.value > 0.15
    assert shifted.mean_abs_gap.ci_low > calibrated.mean_abs_gap.ci_high
    assert shifted.intercept.value < -0.1


def test_undefined_metrics_are_none_with_a_reason_never_a_number():
    time = np.array([5.0, 10.0, 20.0, 30.0])
    censored = np.zeros(4, dtype=bool)
    c_index = concordance_index(time, censored, np.array([0.4, 0.3, 0.2, 0.1]), n_boot=10)
    assert c_index.value is None and "no events" in c_index.reason
    tied = concordance_index(np.array([2.0, 2.0]), np.array([1, 1]), np.array([0.6, 0.4]), n_boot=10)
    assert tied.value is None and "no comparable pair" in tied.reason  # scikit-survival gives NaN here
    event = np.array([1, 0, 1, 0], dtype=bool)
    auc = time_dependent_auc(time, event, np.array([0.4, 0.3, 0.2, 0.1]), train_time=time, train_event=event,
                             n_boot=10)
    assert auc.value is None and "end at 30" in auc.reason
    calibration = calibration_at(time, event, np.array([0.9, 0.8, 0.7, 0.6]), n_groups=2, n_boot=10)
    assert calibration.mean_abs_gap.value is None and "followed up to 60" in calibration.mean_abs_gap.reason
    flat = calibration_at(*_cohort(200, seed=12)[:2], np.full(200, 0.5), n_boot=10)  # one group: no line
    assert flat.mean_abs_gap.value is not None and flat.slope.value is None and "do not vary" in flat.slope.reason


def test_bootstrap_intervals_hold_the_estimate_and_repeat_under_a_seed():
    bins = SurvivalBins()
    time, event, rates = _cohort(500, seed=10)
    train_time, train_event, _ = _cohort(500, seed=11)
    curves = _exponential_curves(rates, bins)
    first = survival_metrics(time, event, curves, bins, train_time=train_time, train_event=train_event, n_boot=40,
                             seed=3)
    again = survival_metrics(time, event, curves, bins, train_time=train_time, train_event=train_event, n_boot=40,
                             seed=3)
    other = survival_metrics(time, event, curves, bins, train_time=train_time, train_event=train_event, n_boot=40,
                             seed=4)
    assert first == again and first["c_index"] != other["c_index"]
    calibration = first["calibration_at_horizon"]
    # (mean_abs_gap is left out: a sum of absolute gaps only grows with resampling noise, so its interval
    # tends to sit above the estimate, as for ECE)
    for metric in (first["c_index"], first["auc_at_horizon"], first["integrated_brier"], calibration["slope"],
                   calibration["intercept"]):
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"]
    json.dumps(first)  # JSON-ready: plain floats, ints, strings and None
