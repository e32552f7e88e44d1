"""The synthetic cancer cohort: regeneration from (seed, case), Table 1 missingness and what it depends on, the
stated survival model and censoring, genomics driving risk where planted, a ground truth that agrees with the
rendered case, and simulated raters."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest
from sksurv.nonparametric import SurvivalFunctionEstimator
from sksurv.util import Surv

from neurofusion.data.synthetic.cancer import (
    CANCER_MODALITIES, COHORT_MEAN_GRADE, GENE_PANEL, HIGH_RISK_GENES, STAGES, draw_cohort, expected_censoring_share,
    plan_case, sample_outcome, simulate_cancer_rankings, survival_probability, synthesize_case, TRUTH_COLUMNS,
)
from neurofusion.data.synthetic.cancer.clinical import STAGE_PRIOR
from neurofusion.data.synthetic.cancer.outcome import SCALE_MONTHS, SHAPE


def kaplan_meier(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """scikit-survival's product-limit estimate of S(t) at times ``at`` (within the follow-up)."""
    estimator = SurvivalFunctionEstimator().fit(Surv.from_arrays(event.astype(bool), time))
    return estimator.predict_proba(at)


@pytest.fixture(scope="module")
def plans():
    return [plan_case(d, seed=7) for d in draw_cohort(3000, seed=7)]


def test_stage_prior_and_stratified_split():
    draws = draw_cohort(20_000, seed=3)
    counts = Counter(d.stage for d in draws)
    for stage, share in zip(STAGES, STAGE_PRIOR):
        assert counts[stage] / len(draws) == pytest.approx(share, abs=0.012)
        splits = Counter(d.split for d in draws if d.stage == stage)
        assert abs(splits["test"] - 0.1 * counts[stage]) <= 1 and abs(splits["val"] - 0.1 * counts[stage]) <= 1
    assert len({d.case_id for d in draws}) == len(draws)
    with pytest.raises(ValueError, match="at least 1"):
        draw_cohort(0, seed=1)


def _same(a, b) -> bool:
    """Two renderings of a case are identical (NaN clinical values compare equal)."""
    clinical = pd.Series(a.clinical).equals(pd.Series(b.clinical))
    return (np.array_equal(a.histopathology, b.histopathology) and a.treatment_notes == b.treatment_notes
            and a.genomics == b.genomics and clinical and a.truth == b.truth
            and (a.time, a.event, a.site, a.present) == (b.time, b.event, b.site, b.present))


def test_any_subset_regenerates_identically():
    draws = draw_cohort(40, seed=11)
    full = [synthesize_case(d, seed=11) for d in draws]
    for i in (33, 5, 17):  # out of order, alone
        assert _same(synthesize_case(draws[i], seed=11), full[i])
    other = [synthesize_case(d, seed=12) for d in draw_cohort(40, seed=12)[:10]]
    assert sum(np.array_equal(a.histopathology, b.histopathology) for a, b in zip(full, other)) == 0
    assert sum(a.treatment_notes == b.treatment_notes for a, b in zip(full, other)) == 0


def test_missingness_matches_table_1(plans):
    n_missing = np.array([sum(not v for v in p.present.values()) for p in plans])
    assert np.mean(n_missing == 0) == pytest.approx(0.54, abs=0.025)
    assert np.mean(n_missing == 1) == pytest.approx(0.31, abs=0.025)
    assert np.mean(n_missing >= 2) == pytest.approx(0.15, abs=0.02)
    assert n_missing.max() <= 3  # every case keeps at least one modality


def test_missingness_is_informative(plans):
    """Genomics is missing far more often in stage I and at site_c, as stated; clinical rarely."""
    def genomics_missing(keep) -> float:
        chosen = [p for p in plans if keep(p)]
        return float(np.mean([not p.present["genomics"] for p in chosen]))

    stage_one = genomics_missing(lambda p: p.draw.stage == "I")
    later = genomics_missing(lambda p: p.draw.stage != "I")
    assert stage_one > 1.35 * later  # 0.37 vs 0.24 on 20,000 cases
    site_c = genomics_missing(lambda p: p.site.name == "site_c")
    assert site_c > 1.2 * genomics_missing(lambda p: p.site.name == "site_a")  # 0.35 vs 0.25
    missing = Counter(m for p in plans for m, kept in p.present.items() if not kept)
    assert missing["genomics"] > missing["histopathology"] > missing["clinical"]


@pytest.mark.parametrize("eta", [-1.5, 0.0, 1.2])
def test_event_times_follow_the_stated_survival_function(eta):
    """Kaplan-Meier of 3000 censored outcomes at a fixed linear predictor vs the analytic Weibull S(t | eta)."""
    rng = np.random.default_rng([5, int(10 * eta) + 50])
    outcomes = [sample_outcome(rng, eta) for _ in range(3000)]
    time = np.array([o.time for o in outcomes])
    event = np.array([o.event for o in outcomes])
    grid = np.arange(6.0, 110.0, 6.0)
    km = kaplan_meier(time, event, grid)
    truth = np.exp(-(grid / SCALE_MONTHS) ** SHAPE * np.exp(eta))
    np.testing.assert_allclose(km, truth, atol=0.03)
    np.testing.assert_allclose(survival_probability(grid, eta), truth)
    # Censoring: what the model states, within binomial error.
    share = 1 - event.mean()
    tolerance = 4 * np.sqrt(share * (1 - share) / 3000)
    assert share == pytest.approx(expected_censoring_share(np.array([eta])), abs=tolerance)
    assert (time <= 120.0).all() and (time[~event] > 0).all()


def test_cohort_survival_and_censoring_are_as_stated(plans):
    """5-year survival about 57 % (target 50-65 %), censoring share as the model states (about 54 %)."""
    eta = np.array([p.linear_predictor for p in plans])
    time = np.array([p.outcome.time for p in plans])
    event = np.array([p.outcome.event for p in plans])
    analytic = float(survival_probability(60.0, eta).mean())
    assert 0.5 <= analytic <= 0.65
    assert kaplan_meier(time, event, np.array([60.0]))[0] == pytest.approx(analytic, abs=0.03)
    expected = expected_censoring_share(eta)
    assert 0.45 <= expected <= 0.6
    assert 1 - event.mean() == pytest.approx(expected, abs=0.03)
    kinds = Counter(p.outcome.censoring for p in plans if not p.outcome.event)
    assert kinds["administrative"] > 0 and kinds["lost"] > 0


def test_genomics_drives_risk_where_planted(plans):
    high = [p for p in plans if set(p.drivers) & set(HIGH_RISK_GENES) and p.strength["genomics"] >= 0.8]
    none = [p for p in plans if not p.drivers]
    assert len(high) > 100
    assert np.mean([p.linear_predictor for p in high]) > np.mean([p.linear_predictor for p in none]) + 1.2
    assert min(p.contribution["genomics"] for p in high) > 1.5
    present = [p for p in high if p.present["genomics"]]
    assert np.mean([p.dominant_modality == "genomics" for p in present]) > 0.6


def test_dominant_modality_has_the_largest_contribution(plans):
    for p in plans:
        kept = [m for m in CANCER_MODALITIES if p.present[m]]
        largest = max(abs(p.contribution[m]) for m in kept)
        assert abs(p.contribution[p.dominant_modality]) == largest and p.present[p.dominant_modality]
    assert set(Counter(p.dominant_modality for p in plans)) == set(CANCER_MODALITIES)


@pytest.fixture(scope="module")
def cases():
    return [synthesize_case(d, seed=9) for d in draw_cohort(80, seed=9)]


def test_ground_truth_agrees_with_the_case(cases):
    for case in cases:
        truth, plan = case.truth, case.plan
        assert tuple(truth) == TRUTH_COLUMNS
        contributions = [truth[f"contribution_{m}"] for m in CANCER_MODALITIES]
        assert truth["linear_predictor"] == pytest.approx(sum(contributions), abs=5e-4)
        assert truth["survival_5y"] == pytest.approx(float(survival_probability(60.0, truth["linear_predictor"])),
                                                     abs=1e-3)
        assert truth["shown_grade"] == pytest.approx(
            COHORT_MEAN_GRADE + plan.strength["histopathology"] * (truth["grade"] - COHORT_MEAN_GRADE), abs=1e-3)
        for m in CANCER_MODALITIES:
            assert (truth[f"strength_{m}"] is None) == (not case.present[m])
        assert set(truth["missing_modalities"].split()) == {m for m in CANCER_MODALITIES if not case.present[m]}
        assert bool(truth["histopathology_roi"]) == case.present["histopathology"]
        drivers = truth["driver_genes"].split()
        assert all(case.genomics[g] == 1 for g in drivers)
        assert list(case.genomics) == list(GENE_PANEL)
        assert case.inputs().keys() == set(CANCER_MODALITIES)
        assert all((v is None) == (not case.present[m]) for m, v in case.inputs().items())
        if truth["histopathology_roi"]:
            x0, y0, x1, y1 = map(int, truth["histopathology_roi"].split())
            assert 0 <= x0 < x1 <= case.histopathology.shape[1] and 0 <= y0 < y1 <= case.histopathology.shape[0]
        assert case.histopathology.shape[0] >= 256 and case.histopathology.shape[2] == 3


def test_simulated_raters_rank_the_present_modalities(cases):
    truth = pd.DataFrame([c.truth for c in cases])
    rankings = simulate_cancer_rankings(truth, seed=3)
    assert list(rankings.columns) == ["case_id", "rater", *CANCER_MODALITIES]
    assert set(rankings["rater"]) == {"synthetic_rater_A", "synthetic_rater_B", "synthetic_rater_C"}
    by_id = {c.case_id: c for c in cases}
    agree = []
    for _, row in rankings.iterrows():
        case = by_id[row["case_id"]]
        kept = [m for m in CANCER_MODALITIES if case.present[m]]
        assert sorted(int(row[m]) for m in kept) == list(range(1, len(kept) + 1))
        assert all(pd.isna(row[m]) for m in CANCER_MODALITIES if not case.present[m])
        if row["rater"] == "synthetic_rater_A":
            agree.append(int(row[case.truth["dominant_modality"]]) == 1)
    assert np.mean(agree) > 0.6  # the least noisy rater mostly ranks the dominant modality first
