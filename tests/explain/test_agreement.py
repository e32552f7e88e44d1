"""Kendall tau agreement: equals scipy with ties, compares only shared modalities, bootstrap CIs, Kendall's W."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from explain.agreement import (
    compare_rankings,
    contrast,
    importance_to_ranks,
    inter_rater,
    kendalls_w,
    mean_with_ci,
    model_vs_raters,
    per_rater,
    rater_ranks,
    ranking_scores,
    summarize,
    tau_b,
    tau_b_rows,
    versus_ground_truth,
)

M = ["image", "text", "signal", "tabular"]


def test_importance_to_ranks_with_ties_and_missing():
    importance = pd.DataFrame([[0.5, 0.1, 0.5, np.nan], [0.0, 0.3, 0.2, 0.1]], index=["a", "b"], columns=M)
    ranks = importance_to_ranks(importance)
    assert ranks.loc["a"].tolist()[:3] == [1.5, 3.0, 1.5] and np.isnan(ranks.loc["a", "tabular"])
    assert ranks.loc["b"].tolist() == [4.0, 1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "a, b",
    [([1, 2, 3, 4], [1, 3, 2, 4]), ([1.5, 1.5, 3, 4], [1, 2, 3, 4]), ([1, 2, 3, 4], [4, 3, 2, 1]),
     ([2.5, 2.5, 1, 4], [1, 2, 2, 4]), ([1, 2, 3], [2, 1, 3])],
)
def test_tau_b_equals_scipy_including_ties(a, b):
    tau, n = tau_b(np.array(a, float), np.array(b, float))
    assert n == len(a)
    assert tau == pytest.approx(kendalltau(a, b, variant="b").statistic, abs=1e-12)


def test_tau_b_compares_only_shared_modalities():
    tau, n = tau_b(np.array([1, 2, np.nan, 3]), np.array([2, 1, 3, np.nan]))
    assert n == 2 and tau == -1.0
    assert np.isnan(tau_b(np.array([1, np.nan, np.nan, 2]), np.array([np.nan, 1, 2, 3]))[0])
    assert np.isnan(tau_b(np.array([1.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]))[0])  # no order to compare


def _scipy_tau_b(x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
    """scipy's tau-b over the positions both rank; NaN with fewer than two or one side all tied (no order)."""
    both = ~np.isnan(x) & ~np.isnan(y)
    x, y = x[both], y[both]
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan"), len(x)
    return kendalltau(x, y, variant="b").statistic, len(x)


@pytest.mark.parametrize("m", [1, 2, 4, 6])
def test_tau_b_of_many_rows_at_once_equals_scipy_row_by_row(m):
    """Random rankings with ties and unranked (NaN) modalities on either side, including rows with fewer than
    two shared modalities and rows where one side ties everything: every tau and count as scipy's."""
    rng = np.random.default_rng(m)
    a = rng.integers(1, m + 1, size=(400, m)).astype(float)  # few distinct values: many ties
    b = rng.integers(1, m + 1, size=(400, m)).astype(float)
    a[rng.random(a.shape) < 0.2] = np.nan
    b[rng.random(b.shape) < 0.2] = np.nan
    b[:20] = 2.0  # one side all tied
    taus, counts = tau_b_rows(a, b)
    expected = [_scipy_tau_b(x, y) for x, y in zip(a, b)]
    assert counts.tolist() == [n for _, n in expected]
    want = np.array([t for t, _ in expected])
    assert np.array_equal(np.isnan(taus), np.isnan(want))
    defined = int((~np.isnan(want)).sum())  # one modality: nothing to order; two: only pairs ranked apart
    assert np.isnan(want).sum() >= 20 and (defined == 0 if m == 1 else defined > (20 if m == 2 else 100))
    np.testing.assert_allclose(taus[~np.isnan(want)], want[~np.isnan(want)], rtol=0, atol=1e-12)
    one_by_one = [tau_b(x, y) for x, y in zip(a[:50], b[:50])]  # tau_b: one row of the same computation
    np.testing.assert_array_equal([t for t, _ in one_by_one], taus[:50])
    assert [n for _, n in one_by_one] == counts[:50].tolist()


def test_model_vs_raters_and_per_class_summary():
    model = importance_to_ranks(pd.DataFrame(
        {"image": [0.9, 0.1, 0.5], "text": [0.5, 0.2, np.nan], "signal": [0.1, 0.9, 0.2], "tabular": [0.0, 0.3, 0.1]},
        index=["c1", "c2", "c3"]))
    rankings = pd.DataFrame({
        "case_id": ["c1", "c1", "c2", "c3", "c9"], "rater": ["A", "B", "A", "A", "A"],
        "image": [1, 4, 4, 1, 1], "text": [2, 3, 3, pd.NA, 2], "signal": [3, 2, 1, 2, 3], "tabular": [4, 1, 2, 3, 4]})
    labels = pd.Series({"c1": "hf", "c2": "af", "c3": "hf"})
    pairs = model_vs_raters(model, rankings, labels)
    assert pairs["case_id"].tolist() == ["c1", "c1", "c2", "c3"]  # c9 was not explained
    assert pairs["tau"].tolist() == pytest.approx([1.0, -1.0, 1.0, 1.0])
    assert pairs.loc[3, "n_compared"] == 3  # c3 lacks text
    summary = summarize(pairs, n_bootstrap=200)
    assert summary.loc["all", "mean"] == pytest.approx(0.5)
    assert summary.loc["hf", "mean"] == pytest.approx(1 / 3) and summary.loc["af", "mean"] == 1.0
    assert summary.loc["all", "n_cases"] == 3


def test_bootstrap_ci_resamples_cases_and_contains_the_mean():
    rng = np.random.default_rng(0)
    pairs = pd.DataFrame({"case_id": np.repeat(np.arange(200), 3), "tau": rng.uniform(-0.2, 1, 600)})
    result = mean_with_ci(pairs, n_bootstrap=500)
    assert result.ci_low < result.mean < result.ci_high and result.n_cases == 200
    assert result.mean == pytest.approx(pairs["tau"].mean())
    assert result.ci_high - result.ci_low < 0.12


def test_kendalls_w_reference_values():
    assert kendalls_w(np.array([[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]], float)) == pytest.approx(1.0)
    assert kendalls_w(np.array([[1, 2, 3, 4], [4, 3, 2, 1]], float)) == pytest.approx(0.0)
    # hand computation: rank sums 3, 7, 8 -> S = 14, W = 12 * 14 / (9 * 24) = 0.7778
    assert kendalls_w(np.array([[1, 2, 3], [1, 3, 2], [1, 2, 3]], float)) == pytest.approx(12 * 14 / (9 * 24))
    # two raters: W = (1 + rho_spearman) / 2
    a, b = np.array([1, 2, 3, 4.0]), np.array([2, 1, 3, 4.0])
    rho = 1 - 6 * 2 / (4 * 15)
    assert kendalls_w(np.stack([a, b])) == pytest.approx((1 + rho) / 2)


def test_inter_rater_ceiling_and_ground_truth():
    rankings = pd.DataFrame({"case_id": ["c1", "c1", "c2", "c2"], "rater": ["A", "B", "A", "B"],
                             "image": [1, 1, 1, 2], "text": [2, 2, 2, 1], "signal": [3, 3, 3, 3],
                             "tabular": [4, 4, pd.NA, pd.NA]})
    ceiling = inter_rater(rankings, n_bootstrap=100)
    assert ceiling["mean_pairwise_tau"]["mean"] == pytest.approx((1 + 1 / 3) / 2)
    assert ceiling["cases_with_two_or_more_raters"] == 2
    truth = pd.DataFrame({"case_id": ["c1", "c2"], "strength_image": [0.9, 0.2], "strength_text": [0.5, 0.8],
                          "strength_signal": [0.1, 0.1], "strength_tabular": [0.0, np.nan]})
    model = importance_to_ranks(pd.DataFrame({"image": [3.0, 2.0], "text": [2.0, 1.0], "signal": [1.0, 0.5],
                                              "tabular": [0.0, np.nan]}, index=["c1", "c2"]))
    vs = versus_ground_truth(model, truth)
    # c2: model image > text > signal, truth text > image > signal: one discordant pair of three
    assert vs["tau"].tolist() == pytest.approx([1.0, 1 / 3])


def test_undefined_means_carry_their_reason():
    empty = mean_with_ci(pd.DataFrame(columns=["case_id", "tau"]))
    assert np.isnan(empty.mean) and empty.reason == "not defined: no (case, rater) pair"
    tied = mean_with_ci(pd.DataFrame({"case_id": ["a", "b"], "tau": [np.nan, np.nan]}))
    assert np.isnan(tied.mean) and tied.to_dict()["reason"].startswith("not defined: no (case, rater) pair has a "
                                                                        "defined tau")
    assert mean_with_ci(pd.DataFrame({"case_id": ["a"], "tau": [0.5]})).to_dict()["reason"] is None
    single_rater = pd.DataFrame({"case_id": ["a", "b"], "rater": ["A", "A"], "image": [1, 2], "text": [2, 1],
                                 "signal": [3, 3], "tabular": [4, 4]})
    result = inter_rater(single_rater, n_bootstrap=50)
    assert np.isnan(result["kendalls_w"]) and result["cases_with_two_or_more_raters"] == 0
    assert result["kendalls_w_reason"].startswith("not defined: no case is ranked by two or more raters")
    assert result["mean_pairwise_tau"]["reason"] == "not defined: no (case, rater) pair"


def test_inter_rater_ceiling_ci_is_a_case_bootstrap_of_the_pairwise_taus():
    """The ceiling's 95 % CI equals a direct computation: scipy tau for every rater pair of every case, then
    cases resampled with replacement (a case's pairs stay together) with the same random draws."""
    rng = np.random.default_rng(3)
    rows = []
    for c in range(12):
        for rater in "ABC"[: 2 + c % 2]:  # some cases have two raters, some three
            rows.append({"case_id": f"c{c:02d}", "rater": rater, **dict(zip(
                ("image", "text", "signal", "tabular"), rng.permutation(4) + 1))})
    rankings = pd.DataFrame(rows)
    ceiling = inter_rater(rankings, n_bootstrap=400, seed=7)["mean_pairwise_tau"]

    taus = {}
    for case_id, group in rankings.groupby("case_id"):
        ranks = group[["image", "text", "signal", "tabular"]].to_numpy(float)
        taus[case_id] = [kendalltau(ranks[a], ranks[b]).statistic
                         for a in range(len(ranks)) for b in range(a + 1, len(ranks))]
    cases = sorted(taus)
    draws = np.random.default_rng(7).integers(0, len(cases), size=(400, len(cases)))
    means = [np.mean([t for k in draw for t in taus[cases[k]]]) for draw in draws]
    assert ceiling["mean"] == pytest.approx(np.mean([t for c in cases for t in taus[c]]))
    assert (ceiling["ci_low"], ceiling["ci_high"]) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    assert ceiling["ci_low"] < ceiling["mean"] < ceiling["ci_high"] and ceiling["n_cases"] == 12


def test_a_survival_model_is_ranked_by_magnitude_and_a_classifier_by_signed_evidence():
    from explain.cohort import CohortImportance

    table = pd.DataFrame({"case_id": ["c1"], "label": ["all"], "predicted": ["all"],
                          "shapley_image": [0.02], "shapley_text": [-0.30], "shapley_signal": [0.10],
                          "shapley_tabular": [np.nan]})
    survival = CohortImportance(table, survival=True).ranks("shapley").iloc[0]
    assert survival[["text", "signal", "image"]].tolist() == [1.0, 2.0, 3.0] and np.isnan(survival["tabular"])
    # a classifier: evidence against the explained class ranks last
    classifier = CohortImportance(table).ranks("shapley").iloc[0]
    assert classifier[["signal", "image", "text"]].tolist() == [1.0, 2.0, 3.0]
    assert ranking_scores(table[["shapley_text"]], survival=True).iloc[0, 0] == 0.30


def test_one_group_named_all_is_the_overall_row_once():
    per_pair = pd.DataFrame({"case_id": ["a", "b", "c"], "rater": ["r"] * 3, "label": ["all"] * 3,
                             "tau": [0.2, 0.4, 0.6], "n_compared": [3, 3, 3]})
    summary = summarize(per_pair, n_bootstrap=50)
    assert summary.index.tolist() == ["all"] and summary.loc["all", "mean"] == pytest.approx(0.4)


def test_compare_rankings_puts_each_ranking_beside_the_raters_and_the_truth():
    rng = np.random.default_rng(5)
    ids = [f"c{i}" for i in range(30)]
    truth = pd.DataFrame({"case_id": ids, **{f"strength_{m}": rng.random(30) for m in M}})
    truth.loc[:4, "strength_text"] = np.nan
    exact = importance_to_ranks(truth.set_index("case_id").rename(columns=lambda c: c.removeprefix("strength_")))
    reversed_ = importance_to_ranks(-truth.set_index("case_id").rename(columns=lambda c: c.removeprefix("strength_")))
    rows = []
    for rater in ("A", "B"):  # A ranks as the truth; B swaps the top two of each case
        for case_id, ranks in exact.iterrows():
            if rater == "B":
                ranks = ranks.replace({1.0: 2.0, 2.0: 1.0})
            rows.append({"case_id": case_id, "rater": rater, **{m: (pd.NA if np.isnan(v) else int(v))
                                                                 for m, v in ranks.items()}})
    rankings = pd.DataFrame(rows)
    table = compare_rankings({"exact": exact, "reversed": reversed_}, rankings, truth, n_bootstrap=200)
    assert table.loc["exact", "truth_mean"] == 1.0 and table.loc["reversed", "truth_mean"] == -1.0
    b_tau = versus_ground_truth(rater_ranks(rankings, "B"), truth)["tau"].mean()
    assert b_tau == pytest.approx((25 * (1 - 2 / 6) + 5 * (1 - 2 / 3)) / 30)  # one discordant pair per case
    assert table.loc["exact", "raters_mean"] == pytest.approx((1 + b_tau) / 2)
    assert table.loc["reversed", "raters_mean"] == pytest.approx(-(1 + b_tau) / 2)
    assert table.loc["exact", "raters_cases"] == 30 and table.loc["exact", "raters_ci_low"] <= table.loc[
        "exact", "raters_mean"] <= table.loc["exact", "raters_ci_high"]
    no_truth = compare_rankings({"exact": exact}, rankings, n_bootstrap=50)
    assert np.isnan(no_truth.loc["exact", "truth_mean"]) and no_truth.loc["exact", "truth_reason"] == "no ground truth"
    assert np.isnan(rater_ranks(rankings, "A").loc["c0", "text"])
    with pytest.raises(ValueError, match="no rankings by rater 'Z'"):
        rater_ranks(rankings, "Z")


def _pairs(rows: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"case_id": c, "rater": r, "label": "x", "tau": t, "n_compared": 4} for c, r, t in rows])


def test_per_rater_means_are_each_raters_own():
    pairs = _pairs([("a", "ann", 1.0), ("b", "ann", 0.0), ("a", "bob", -1.0), ("b", "bob", np.nan)])
    table = per_rater(pairs, n_bootstrap=200)
    assert table.index.tolist() == ["ann", "bob"]
    assert table.loc["ann", "mean"] == pytest.approx(0.5) and table.loc["ann", "n_cases"] == 2
    assert table.loc["bob", "mean"] == pytest.approx(-1.0) and table.loc["bob", "n_cases"] == 1


def test_contrast_difference_and_its_bootstrap_ci():
    rng = np.random.default_rng(0)
    cases = [f"c{i}" for i in range(40)]
    blinded = _pairs([(c, "ann", t) for c, t in zip(cases, rng.normal(0.2, 0.1, 40))])
    unblinded = _pairs([(c, "bob", t) for c, t in zip(cases, rng.normal(0.6, 0.1, 40))])
    result = contrast(blinded, unblinded, n_bootstrap=500)
    assert result["difference"] == pytest.approx(unblinded["tau"].mean() - blinded["tau"].mean())
    assert result["ci_low"] < result["difference"] < result["ci_high"]
    assert result["ci_low"] > 0.3  # 0.4 apart with sd 0.1 over 40 cases: the CI excludes zero by far
    assert result["first"]["mean"] == pytest.approx(blinded["tau"].mean())


def test_contrast_of_identical_groups_is_zero_and_empty_group_is_not_defined():
    pairs = _pairs([("a", "ann", 0.5), ("b", "ann", -0.5), ("c", "ann", 1.0)])
    same = contrast(pairs, pairs.assign(rater="bob"), n_bootstrap=200)
    assert same["difference"] == pytest.approx(0.0) and same["ci_low"] == pytest.approx(0.0)
    none = contrast(pairs, pairs.iloc[:0])
    assert np.isnan(none["difference"]) and "second group" in none["reason"]
