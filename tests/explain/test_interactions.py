"""The pairwise Shapley interaction index: equal to its Moebius-transform characterisation on random games,
exact on planted games (a pair term b gives I = b, a triple term d gives d / 2 to each of its pairs), zero for
additive models, and recovered from a planted model through modality_importance's subset values."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from explain.importance import ModalityImportance, modality_importance, shapley_weights
from explain.interactions import (interaction_aware, interaction_aware_scores, interaction_weights, mean_interactions,
                                 shapley_interactions)
from neurofusion.models.model import Encoded, ModelOutput
from tests.explain.declared import planted_batch


def _importance(values: np.ndarray, present: np.ndarray, names: tuple[str, ...]) -> ModalityImportance:
    b = values.shape[0]
    zeros = np.zeros((b, len(names)))
    return ModalityImportance([f"c{i}" for i in range(b)], np.zeros(b, int), present, values[:, -1], values[:, 0],
                              values, zeros, zeros, None, names=names)


def _moebius_reference(v: np.ndarray, n: int) -> np.ndarray:
    """I_ij = sum over T containing i and j of m(T) / (|T| - 1), m the Moebius transform (Harsanyi dividends)
    of v: a characterisation independent of the subset-weight formula the module uses."""
    m = np.zeros(2**n)
    for t in range(2**n):
        s = t
        while True:  # every subset s of t
            m[t] += (-1) ** (bin(t).count("1") - bin(s).count("1")) * v[s]
            if s == 0:
                break
            s = (s - 1) & t
    reference = np.zeros((n, n))
    for i, j in itertools.combinations(range(n), 2):
        pair = (1 << i) | (1 << j)
        total = sum(m[t] / (bin(t).count("1") - 1) for t in range(2**n) if t & pair == pair)
        reference[i, j] = reference[j, i] = total
    return reference


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_equals_the_moebius_characterisation_on_random_games(n):
    rng = np.random.default_rng(n)
    values = rng.random((3, 2**n))
    names = tuple(f"m{j}" for j in range(n))
    result = shapley_interactions(_importance(values, np.ones((3, n), bool), names))
    for case in range(3):
        np.testing.assert_allclose(result[case], _moebius_reference(values[case], n), atol=1e-12)
    assert np.allclose(result, result.transpose(0, 2, 1)) and not result[:, range(n), range(n)].any()


def _game(n: int, constant: float, main: list[float], terms: dict[tuple[int, ...], float]) -> np.ndarray:
    """v(S) = constant + sum of main effects in S + each term whose modalities are all in S."""
    v = np.zeros(2**n)
    for k in range(2**n):
        members = {j for j in range(n) if k >> j & 1}
        v[k] = constant + sum(main[j] for j in members) + sum(w for t, w in terms.items() if set(t) <= members)
    return v


def test_a_planted_pair_has_exactly_its_interaction_and_additive_games_none():
    n, names = 4, ("image", "text", "signal", "tabular")
    additive = _game(n, 0.2, [0.1, -0.3, 0.05, 0.4], {})
    pair = _game(n, 0.2, [0.1, -0.3, 0.05, 0.4], {(1, 2): 0.25})
    triple = _game(n, 0.0, [0.0] * n, {(0, 1, 3): 0.3})
    result = shapley_interactions(_importance(np.stack([additive, pair, triple]), np.ones((3, n), bool), names))
    np.testing.assert_allclose(result[0], 0.0, atol=1e-12)
    expected = np.zeros((n, n))
    expected[1, 2] = expected[2, 1] = 0.25
    np.testing.assert_allclose(result[1], expected, atol=1e-12)
    expected = np.zeros((n, n))
    for i, j in itertools.combinations((0, 1, 3), 2):
        expected[i, j] = expected[j, i] = 0.15  # a three-way term is shared: d / (3 - 1) per pair
    np.testing.assert_allclose(result[2], expected, atol=1e-12)


class LinearPresenceModel:
    """P(class 1) = 0.1 + sum_m main[m] [m present] + pair_weight [a and b present]: linear in probability,
    so the interaction index of (a, b) is pair_weight exactly and every other pair's is 0."""

    def __init__(self, names, main, pair, pair_weight):
        self.names, self.main = names, torch.tensor(main, dtype=torch.float64)
        self.pair, self.pair_weight = tuple(names.index(m) for m in pair), pair_weight

    def encode(self, batch):
        return Encoded({m: torch.zeros(batch.present.shape[0], 1) for m in self.names}, batch.present)

    def fuse(self, encoded, present=None):
        mask = encoded.present if present is None else present & encoded.present
        a, b = self.pair
        p = 0.1 + (mask.double() * self.main).sum(1) + self.pair_weight * (mask[:, a] & mask[:, b]).double()
        probabilities = torch.stack([1 - p, p], 1)
        return ModelOutput(logits=probabilities.log(), probabilities=probabilities, present=mask)


def test_recovered_from_the_models_subset_values_with_no_extra_pass():
    names = ("vitals", "labs", "notes", "demographics", "genomics")
    model = LinearPresenceModel(names, [0.05, 0.1, 0.0, 0.02, 0.03], ("labs", "notes"), 0.3)
    present = [[True] * 5, [True, True, False, True, True], [False, True, True, True, True]]
    importance = modality_importance(model, planted_batch(names, present), target=torch.ones(3, dtype=torch.long))
    result = shapley_interactions(importance)
    assert result[0, 1, 2] == pytest.approx(0.3, abs=1e-9) and result[2, 2, 1] == pytest.approx(0.3, abs=1e-9)
    others = result[0].copy()
    others[1, 2] = others[2, 1] = 0.0
    np.testing.assert_allclose(others, 0.0, atol=1e-9)
    # a case without the notes has no interaction through them; nor a case without the vitals
    assert not result[1, 2].any() and not result[1, :, 2].any() and not result[2, 0].any()
    table = mean_interactions(importance, groups=["x", "x", "y"])
    row = table[(table["group"] == "x") & (table["a"] == "labs") & (table["b"] == "notes")].iloc[0]
    assert row["n"] == 1 and row["mean"] == pytest.approx(0.3, abs=1e-9)
    assert len(table) == 2 * 10


def test_weights_and_bad_input():
    assert interaction_weights(1).shape == (2, 1, 1) and not interaction_weights(1).any()
    # each pair's weights sum to zero over subsets: a constant game has no interaction
    np.testing.assert_allclose(interaction_weights(6).sum(0), 0.0, atol=1e-12)
    bad = _importance(np.zeros((1, 8)), np.ones((1, 4), bool), ("a", "b", "c", "d"))
    with pytest.raises(ValueError, match=r"subset values must be \(cases, 2\*\*4\)"):
        shapley_interactions(bad)
    ok = _importance(np.zeros((2, 16)), np.ones((2, 4), bool), ("a", "b", "c", "d"))
    with pytest.raises(ValueError, match="one group per case"):
        mean_interactions(ok, groups=["x"])


def _scored(games: list[np.ndarray], present: np.ndarray, names: tuple[str, ...]) -> ModalityImportance:
    """An importance whose Shapley values are the exact ones of the given games (v(S) over subsets)."""
    values = np.stack(games)
    importance = _importance(values, present, names)
    importance.shapley = np.where(present, values @ shapley_weights(len(names)), 0.0)
    return importance


def test_interaction_aware_scores_put_a_planted_pair_first_even_without_main_effects():
    n, names = 4, ("image", "text", "signal", "tabular")
    # text and signal matter only together (0.3); image and tabular carry 0.2 alone, more than the pair's
    # Shapley share (0.15 each), so Shapley ranks the pair last and the interaction-aware score first
    game = _game(n, 0.1, [0.2, 0.0, 0.0, -0.2], {(1, 2): 0.3})
    importance = _scored([game], np.ones((1, n), bool), names)
    np.testing.assert_allclose(importance.shapley[0], [0.2, 0.15, 0.15, -0.2], atol=1e-12)
    scores = interaction_aware_scores(importance)[0]
    np.testing.assert_allclose(scores, [0.2, 0.3, 0.3, 0.2], atol=1e-12)
    assert set(np.argsort(-scores)[:2]) == {1, 2}
    assert set(np.argsort(-np.abs(importance.shapley[0]))[:2]) == {0, 3}
    # redundant evidence (either of the pair alone gives 0.3): each member still scores the whole 0.3
    redundant = _game(n, 0.1, [0.0, 0.3, 0.3, 0.0], {(1, 2): -0.3})
    np.testing.assert_allclose(interaction_aware_scores(_scored([redundant], np.ones((1, n), bool), names))[0],
                               [0.0, 0.3, 0.3, 0.0], atol=1e-12)


def test_interaction_aware_scores_equal_abs_shapley_on_additive_games_and_nan_when_absent():
    rng = np.random.default_rng(7)
    n, names = 5, tuple(f"m{j}" for j in range(5))
    games = [_game(n, float(rng.normal()), list(rng.normal(size=n)), {}) for _ in range(3)]
    present = np.ones((3, n), bool)
    present[1, 2] = present[2, 0] = False
    importance = _scored(games, present, names)
    scores = interaction_aware_scores(importance)
    assert np.isnan(scores[1, 2]) and np.isnan(scores[2, 0]) and np.isnan(scores).sum() == 2
    np.testing.assert_allclose(scores[present], np.abs(importance.shapley)[present], atol=1e-12)
    # a non-additive random game scores at least |phi| everywhere, more where it interacts
    noisy = _scored([rng.random(2**n)], np.ones((1, n), bool), names)
    assert (interaction_aware_scores(noisy)[0] >= np.abs(noisy.shapley[0]) - 1e-12).all()


def test_interaction_aware_from_arrays_ignores_the_diagonal_and_absent_modalities():
    shapley = np.array([[0.1, -0.2, np.nan]])
    interactions = np.array([[[9.0, 0.4, 7.0], [0.4, 9.0, 7.0], [7.0, 7.0, 9.0]]])  # absent modality 2: ignored
    scores = interaction_aware(shapley, interactions, np.array([[True, True, False]]))
    np.testing.assert_allclose(scores[0, :2], [0.3, 0.4], atol=1e-12)
    assert np.isnan(scores[0, 2])
    with pytest.raises(ValueError, match="same B and M"):
        interaction_aware(shapley, interactions[:, :2], np.array([[True, True, False]]))
