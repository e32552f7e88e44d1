"""Attention against interactions: the rank correlation equals scipy's Spearman on the symmetrised attention
and |I| of the present pairs, is +1 when attention is a monotone function of |I| and -1 reversed, is NaN with
the reason when undefined (too few pairs, a constant side), leaves absent modalities out, and the cohort means
by class are explain.interactions.mean_interactions' means as matrices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import spearmanr

from explain.importance import ModalityImportance
from explain.interaction_attention import (
    attention_interaction_correlation,
    class_correlations,
    interaction_means,
)
from explain.interactions import mean_interactions, shapley_interactions


def _symmetric(values: list[float], n: int) -> np.ndarray:
    """(n, n) symmetric matrix with the upper triangle (row-major) filled from ``values``, 0 diagonal."""
    matrix = np.zeros((n, n))
    matrix[np.triu_indices(n, 1)] = values
    return matrix + matrix.T


def _attention(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.random((n, n))
    return raw / raw.sum(1, keepdims=True)  # rows are distributions, as the model's


def test_agrees_with_scipy_on_hand_made_matrices():
    attention = np.array([[0.40, 0.30, 0.20, 0.10],
                          [0.05, 0.50, 0.25, 0.20],
                          [0.30, 0.10, 0.35, 0.25],
                          [0.15, 0.45, 0.05, 0.35]])
    interactions = _symmetric([0.02, -0.07, 0.01, 0.03, -0.05, 0.04], 4)
    result = attention_interaction_correlation(attention, interactions, np.ones(4, bool))
    assert result.pairs == ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)) and result.n_pairs == 6
    symmetrised = [0.35, 0.50, 0.25, 0.35, 0.65, 0.30]
    np.testing.assert_allclose(result.attention, symmetrised, atol=1e-12)
    np.testing.assert_allclose(result.interaction, [0.02, 0.07, 0.01, 0.03, 0.05, 0.04])
    expected = spearmanr(symmetrised, [0.02, 0.07, 0.01, 0.03, 0.05, 0.04]).statistic
    assert result.rho == pytest.approx(expected, abs=1e-12) and result.reason is None
    assert result.pair_names(["image", "text", "signal", "tabular"])[1] == "image–signal"


@pytest.mark.parametrize("seed", range(4))
def test_agrees_with_scipy_on_random_matrices(seed):
    rng = np.random.default_rng(seed)
    n = 5
    attention, interactions = _attention(rng, n), _symmetric(list(rng.normal(0, 0.05, 10)), n)
    result = attention_interaction_correlation(attention, interactions, np.ones(n, bool))
    i, j = np.triu_indices(n, 1)
    expected = spearmanr(attention[i, j] + attention[j, i], np.abs(interactions[i, j])).statistic
    assert result.rho == pytest.approx(expected, abs=1e-12)


def test_monotone_attention_gives_plus_one_and_reversed_minus_one():
    interactions = _symmetric([0.03, -0.09, 0.001, 0.05, -0.02, 0.07], 4)
    size = np.abs(interactions)
    # any increasing function of |I|, split unevenly between the two directions of each pair
    up = np.triu(np.sqrt(size) * 0.7) + np.tril(np.sqrt(size) * 0.3)
    assert attention_interaction_correlation(up, interactions, np.ones(4, bool)).rho == pytest.approx(1.0)
    down = np.triu(np.exp(-size * 10)) + np.tril(np.exp(-size * 10))
    assert attention_interaction_correlation(down, interactions, np.ones(4, bool)).rho == pytest.approx(-1.0)


def test_absent_modalities_are_left_out():
    rng = np.random.default_rng(7)
    attention, interactions = _attention(rng, 5), _symmetric(list(rng.normal(0, 0.05, 10)), 5)
    present = np.array([True, False, True, True, True])
    result = attention_interaction_correlation(attention, interactions, present)
    assert all(1 not in pair for pair in result.pairs) and result.n_pairs == 6
    kept = [0, 2, 3, 4]
    sub = attention_interaction_correlation(attention[np.ix_(kept, kept)], interactions[np.ix_(kept, kept)],
                                            np.ones(4, bool))
    assert result.rho == pytest.approx(sub.rho, abs=1e-12)
    # what an absent modality's row holds (its placeholder's attention) cannot change the result
    attention[1], attention[:, 1] = 9.0, -9.0
    assert attention_interaction_correlation(attention, interactions, present).rho == pytest.approx(result.rho)


def test_undefined_cases_are_nan_with_the_reason():
    attention = np.full((4, 4), 0.25)
    interactions = _symmetric([0.02, -0.07, 0.01, 0.03, -0.05, 0.04], 4)
    three = attention_interaction_correlation(_attention(np.random.default_rng(0), 4), interactions,
                                            np.array([True, True, True, False]))
    assert three.n_pairs == 3 and not math.isnan(three.rho)  # 3 modalities present: just enough
    one = attention_interaction_correlation(attention, interactions, np.array([True, False, True, False]))
    assert math.isnan(one.rho) and one.n_pairs == 1
    assert one.reason == ("not defined: 1 modality pair to compare; a rank correlation needs at least 3, "
                          "i.e. 3 modalities present")
    flat = attention_interaction_correlation(attention, interactions, np.ones(4, bool))
    assert math.isnan(flat.rho) and flat.reason == "not defined: the attention is the same for all 6 pairs"
    additive = attention_interaction_correlation(_attention(np.random.default_rng(1), 4), np.zeros((4, 4)),
                                                 np.ones(4, bool))
    assert math.isnan(additive.rho)
    assert additive.reason == ("not defined: the |interaction| is the same for all 6 pairs "
                               "(all 0: the model is additive here)")
    # float rounding of an additive model (below the tolerance) is still 'the same'
    noise = _symmetric(list(np.random.default_rng(2).normal(0, 1e-9, 6)), 4)
    assert math.isnan(attention_interaction_correlation(_attention(np.random.default_rng(1), 4), noise,
                                                        np.ones(4, bool)).rho)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="square"):
        attention_interaction_correlation(np.zeros((4, 3)), np.zeros((4, 4)), np.ones(4, bool))
    with pytest.raises(ValueError, match="the same"):
        attention_interaction_correlation(np.zeros((4, 4)), np.zeros((5, 5)), np.ones(4, bool))
    with pytest.raises(ValueError, match="present must be"):
        attention_interaction_correlation(np.zeros((4, 4)), np.zeros((4, 4)), np.ones(3, bool))
    with pytest.raises(ValueError, match="finite"):
        attention_interaction_correlation(np.full((3, 3), np.nan), np.zeros((3, 3)), np.ones(3, bool))


def _importance(values: np.ndarray, present: np.ndarray, names: tuple[str, ...]) -> ModalityImportance:
    b = values.shape[0]
    zeros = np.zeros((b, len(names)))
    return ModalityImportance([f"c{i}" for i in range(b)], np.zeros(b, int), present, values[:, -1], values[:, 0],
                              values, zeros, zeros, None, names=names)


def test_interaction_means_are_mean_interactions_as_matrices():
    rng = np.random.default_rng(3)
    names = ("image", "text", "signal", "tabular")
    present = rng.random((30, 4)) > 0.3
    present[:, 2] &= np.arange(30) >= 10  # class "a" (cases 0-9) never has the signal
    importance = _importance(rng.random((30, 16)), present, names)
    groups = ["a"] * 10 + ["b"] * 12 + ["c"] * 8
    means = interaction_means(shapley_interactions(importance), present, groups, classes=["c", "a", "b", "d"])
    assert list(means.mean) == ["c", "a", "b", "d"] and means.counts == {"c": 8, "a": 10, "b": 12, "d": 0}
    reference = mean_interactions(importance, groups)
    for row in reference.itertuples():
        i, j = names.index(row.a), names.index(row.b)
        for matrix, value in ((means.mean[row.group], row.mean), (means.mean_abs[row.group], row.mean_abs)):
            if row.n == 0:
                assert np.isnan(matrix[i, j]) and np.isnan(matrix[j, i])
            else:
                assert matrix[i, j] == pytest.approx(value, abs=1e-12) and matrix[j, i] == matrix[i, j]
    assert np.isnan(means.mean["a"][0, 2]) and np.isnan(means.mean["b"].diagonal()).all()
    assert np.isnan(means.mean["d"]).all()
    with pytest.raises(ValueError, match="one group per case"):
        interaction_means(shapley_interactions(importance), present, groups[:-1])


def test_class_correlations_are_the_correlation_of_each_class_means():
    rng = np.random.default_rng(5)
    attention = {"a": _attention(rng, 4), "b": _attention(rng, 4)}
    sizes = {"a": _symmetric(list(rng.random(6)), 4), "b": _symmetric(list(rng.random(6)), 4)}
    sizes["b"][0, 1] = sizes["b"][1, 0] = np.nan  # no case of b has modalities 0 and 1 together
    sizes["a"][np.diag_indices(4)] = np.nan
    table = class_correlations(attention, sizes, classes=["a", "b", "z"]).set_index("group")
    full = attention_interaction_correlation(attention["a"], sizes["a"], np.ones(4, bool))
    assert table.loc["a", "rho"] == pytest.approx(full.rho, abs=1e-12) and table.loc["a", "n_pairs"] == 6
    a, b = attention["b"], sizes["b"]
    pairs = [(0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    expected = spearmanr([a[i, j] + a[j, i] for i, j in pairs], [b[i, j] for i, j in pairs]).statistic
    assert table.loc["b", "rho"] == pytest.approx(expected, abs=1e-12) and table.loc["b", "n_pairs"] == 5
    assert np.isnan(table.loc["z", "rho"]) and table.loc["z", "reason"] == "not defined: no mean attention matrix for z"
