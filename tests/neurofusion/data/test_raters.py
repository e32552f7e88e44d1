"""Simulated raters: the default noise reaches the assumed expert agreement on the bundled cardio truth,
agreement falls with noise, noise 0 reproduces the truth, a lean moves its modality up, skips follow their
rate, ties follow the stated rule, and the inter-rater tau equals explain.agreement's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from explain.agreement import inter_rater
from neurofusion.data.schema import MODALITIES
from neurofusion.data.synthetic.raters import (
    CANCER_RATERS, DEFAULT_NOISE, SYNTHETIC_RATERS, TARGET_TAU, RaterSpec, calibrate_noise, mean_pairwise_tau,
    rank_perceived, simulate_rankings,
)

CARDIO = Path(__file__).resolve().parents[3] / "sample_data" / "cardio"
M = list(MODALITIES)


@pytest.fixture(scope="module")
def truth() -> pd.DataFrame:
    return pd.read_csv(CARDIO / "ground_truth.csv", dtype={"case_id": str})


def _with_noise(raters: tuple[RaterSpec, ...], noise: float) -> tuple[RaterSpec, ...]:
    return tuple(dataclasses.replace(r, noise=noise) for r in raters)


def _ranks(rankings: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """A rankings table indexed by case_id -> (cases of truth, M) float ranks, NaN where blank."""
    return rankings.loc[truth["case_id"], M].astype("Float64").to_numpy(dtype=float, na_value=np.nan)


def _random_truth(n: int, seed: int, names=M) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"case_id": [f"C{i}" for i in range(n)], **{f"strength_{m}": rng.random(n) for m in names}})


def test_default_raters_agree_as_the_assumed_experts_on_the_bundled_cardio_truth(truth):
    taus = [mean_pairwise_tau(simulate_rankings(truth, seed), M) for seed in range(5)]
    assert abs(np.mean(taus) - TARGET_TAU) < 0.05 and all(abs(t - TARGET_TAU) < 0.08 for t in taus)
    assert calibrate_noise(truth) == pytest.approx(DEFAULT_NOISE, abs=0.002)  # the constant is its result
    assert calibrate_noise(truth, 0.4) > DEFAULT_NOISE > calibrate_noise(truth, 0.7)


def test_mean_pairwise_tau_equals_explain_agreements_inter_rater(truth):
    rankings = simulate_rankings(truth, 3)
    expected = inter_rater(rankings, n_bootstrap=10)["mean_pairwise_tau"]["mean"]
    assert mean_pairwise_tau(rankings, M) == pytest.approx(expected, abs=1e-12)
    tied = rankings[rankings["case_id"].isin(truth["case_id"][:12])].copy()  # tau-b with tied ranks, as a
    tied.loc[tied.index[::2], "image"] = tied.loc[tied.index[::2], "text"]  # user's own table may hold
    reference = inter_rater(tied, n_bootstrap=10)["mean_pairwise_tau"]
    assert reference["n_cases"] >= 10 and mean_pairwise_tau(tied, M) == pytest.approx(reference["mean"], abs=1e-12)


def test_agreement_falls_monotonically_with_noise(truth):
    noises = [0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]
    taus = [mean_pairwise_tau(simulate_rankings(truth, 0, _with_noise(SYNTHETIC_RATERS, s)), M) for s in noises]
    assert all(a > b for a, b in zip(taus, taus[1:])), taus
    assert taus[0] > 0.75 and taus[-1] < 0.15


def test_noise_zero_without_style_reproduces_the_true_ranking(truth):
    exact = RaterSpec("exact", noise=0.0, tie_margin=0.0)
    ranks = simulate_rankings(truth, 0, (exact,)).set_index("case_id")
    values = truth.set_index("case_id")[[f"strength_{m}" for m in M]].to_numpy(dtype=float)
    expected = np.full_like(values, np.nan)
    for i, row in enumerate(values):
        known = ~np.isnan(row)
        expected[i, known] = rankdata(-row[known], method="ordinal")  # equal strengths in declared order
    np.testing.assert_array_equal(_ranks(ranks, truth), expected)
    # the default tie margin only reorders modalities whose strengths lie within it
    margin = simulate_rankings(truth, 0, (RaterSpec("margin", noise=0.0),)).set_index("case_id")
    differs = (_ranks(margin, truth) != expected) & ~np.isnan(expected)
    for i in np.flatnonzero(differs.any(axis=1)):
        present = np.sort(values[i][~np.isnan(values[i])])
        assert np.diff(present).min() <= 0.02


def test_a_style_bias_moves_its_modality_up_on_average():
    truth = _random_truth(800, 1)
    neutral, leaning = RaterSpec("neutral", noise=0.2), RaterSpec("leaning", noise=0.2, style={"signal": 0.15})
    ranks = simulate_rankings(truth, 4, (neutral, leaning))
    mean_rank = ranks.groupby("rater")[M].mean()
    assert mean_rank.loc["leaning", "signal"] < mean_rank.loc["neutral", "signal"] - 0.2
    assert (mean_rank.loc["leaning", ["image", "text", "tabular"]] > mean_rank.loc["neutral", ["image", "text",
                                                                                              "tabular"]]).all()
    assert leaning.style == (("signal", 0.15),) and leaning.bias("signal") == 0.15 and leaning.bias("image") == 0.0


def test_skip_rates_are_within_binomial_tolerance():
    n, rates = 3000, (0.0, 0.05, 0.2)
    raters = tuple(RaterSpec(f"r{k}", skip_rate=p) for k, p in enumerate(rates))
    counts = simulate_rankings(_random_truth(n, 2), 5, raters).groupby("rater").size()
    for k, p in enumerate(rates):
        skipped = n - counts.get(f"r{k}", 0)
        assert abs(skipped - n * p) <= 4 * np.sqrt(n * p * (1 - p)) + 1e-9, (p, skipped)
    assert [r.skip_rate for r in SYNTHETIC_RATERS] == [0.0, 0.03, 0.06]


def test_ties_go_to_the_raters_lean_then_the_declared_order():
    names = ("image", "text", "signal", "tabular")
    neutral = RaterSpec("neutral", noise=0.0, tie_margin=0.05)
    leaning = RaterSpec("leaning", noise=0.0, tie_margin=0.05, style={"tabular": 0.01})
    # image and signal tie exactly; text is 0.04 below them: within the leader's margin, so one group of three
    perceived = np.array([0.8, 0.76, 0.8, 0.3])
    assert rank_perceived(perceived, neutral, names).tolist() == [1, 2, 3, 4]  # declared order inside the tie
    # a group is led by the strongest perception: tabular (0.2 + lean) is alone below the group
    assert rank_perceived(np.array([0.8, 0.2, 0.79, 0.2]), leaning, names).tolist() == [1, 4, 2, 3]
    # within the margin the lean wins even against a stronger perception; outside it, it does not
    assert rank_perceived(np.array([0.8, np.nan, 0.1, 0.78]), leaning, names)[[0, 2, 3]].tolist() == [2, 3, 1]
    assert rank_perceived(np.array([0.8, np.nan, 0.1, 0.7]), leaning, names)[[0, 2, 3]].tolist() == [1, 3, 2]
    # a planted conjunction (the pair shares the top strength) ranks the pair first, the lean deciding the tie
    truth = pd.DataFrame({"case_id": ["K"], "strength_image": [0.3], "strength_text": [0.2],
                          "strength_signal": [0.9], "strength_tabular": [0.9], "interaction_rule": ["conjunction"],
                          "interaction_pair": ["signal tabular"], "interaction_strength": [0.9]})
    ranks = simulate_rankings(truth, 0, (neutral, leaning)).set_index("rater")
    assert ranks.loc["neutral", M].tolist() == [3, 4, 1, 2] and ranks.loc["leaning", M].tolist() == [3, 4, 2, 1]


def test_interaction_columns_present_or_absent_change_nothing(truth):
    extra = truth.assign(interaction_rule="conjunction", interaction_role="member", interaction_pair="image text",
                         interaction_strength=0.5)
    pd.testing.assert_frame_equal(simulate_rankings(extra, 9), simulate_rankings(truth, 9))


def test_declared_modalities_are_ranked_under_their_names():
    """Draws depend on the modalities' order, not their names: renaming cardio's four (with the raters' leans
    renamed too) gives the same ranks; any number of modalities is ranked 1..k; missing strengths stay blank."""
    cardio, cancer = tuple(M), ("histopathology", "genomics", "treatment_notes", "clinical")
    values = _random_truth(60, 4)
    values.loc[:9, "strength_text"] = np.nan
    default = simulate_rankings(values, 3)
    renamed_raters = tuple(dataclasses.replace(r, style={cancer[cardio.index(m)]: b for m, b in r.style})
                           for r in SYNTHETIC_RATERS)
    cancer_truth = values.rename(columns={f"strength_{m}": f"strength_{c}" for m, c in zip(cardio, cancer)})
    renamed = simulate_rankings(cancer_truth, 3, renamed_raters, modalities=cancer)
    assert list(renamed.columns) == ["case_id", "rater", *cancer]
    pd.testing.assert_frame_equal(renamed.set_axis(default.columns, axis=1), default)
    assert renamed.loc[renamed["case_id"].isin(values["case_id"][:10]), "genomics"].isna().all()
    three = simulate_rankings(_random_truth(60, 0, "abc"), 0, (RaterSpec("x"),), modalities=("a", "b", "c"))
    assert (np.sort(three[["a", "b", "c"]].to_numpy(dtype=float), axis=1) == [1, 2, 3]).all()
    assert len(simulate_rankings(cancer_truth, 0, CANCER_RATERS, modalities=cancer)) > 150


def test_bad_input_is_refused(truth):
    with pytest.raises(ValueError, match="strength_genomics"):
        simulate_rankings(pd.DataFrame({"case_id": ["a"], "strength_histopathology": 1.0}), 0,
                          modalities=("histopathology", "genomics"))
    with pytest.raises(ValueError, match=r"leans on \['image'\], which this cohort does not declare"):
        simulate_rankings(pd.DataFrame({"case_id": ["a"], "strength_x": 1.0, "strength_y": 0.5}), 0,
                          modalities=("x", "y"))  # the cardio raters' leans name cardio's modalities
    with pytest.raises(ValueError, match="noise must be in"):
        RaterSpec("bad", noise=-0.1)
    with pytest.raises(ValueError, match="skip_rate must be in"):
        RaterSpec("bad", skip_rate=1.5)
    with pytest.raises(ValueError, match="is not between the agreement"):
        calibrate_noise(truth, 0.95)
    with pytest.raises(ValueError, match="target_tau"):
        calibrate_noise(truth, 1.0)
