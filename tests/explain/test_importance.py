"""Modality importance: exact Shapley (efficiency, dummy, symmetry, brute-force reference), leave-one-out,
attention received, on planted models and on the tiny NeuroFusion."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from explain.importance import SUBSETS, attention_received, modality_importance, shapley_weights
from tests.explain.planted import PresenceModel, presence_batch


def _brute_force_shapley(value, players):
    """Average marginal contribution over all orderings of the players (an independent reference)."""
    phi = np.zeros(len(players))
    orders = list(itertools.permutations(range(len(players))))
    for order in orders:
        seen = 0
        for j in order:
            phi[j] += value(seen | (1 << j)) - value(seen)
            seen |= 1 << j
    return phi / len(orders)


def test_weights_of_each_player_sum_to_zero_over_subsets():
    w = shapley_weights()
    assert np.allclose(w.sum(0), 0) and w.shape == (16, 4)
    assert w[15, 0] == pytest.approx(math.factorial(3) / math.factorial(4))


def test_efficiency_dummy_and_symmetry_on_a_planted_model():
    model = PresenceModel([1.5, 1.5, 0.0, -0.7])  # image and text symmetric, signal a dummy
    batch = presence_batch([[True, True, True, True], [True, True, False, True], [False, True, True, False]])
    result = modality_importance(model, batch, target=torch.ones(3, dtype=torch.long))
    assert np.allclose(result.shapley.sum(1), result.probability_full - result.probability_none, atol=1e-12)
    assert np.allclose(result.shapley[:, 2], 0)  # dummy
    assert result.shapley[0, 0] == pytest.approx(result.shapley[0, 1], abs=1e-12)  # symmetry
    assert result.shapley[2, 0] == 0 and result.shapley[2, 3] == 0  # absent: no credit
    assert result.shapley[0, 3] < 0  # a modality pushing against the class gets negative credit
    assert np.isnan(result.table("shapley").loc["c2", "image"])


def test_exact_shapley_equals_the_brute_force_reference():
    model = PresenceModel([0.9, -0.4, 2.0, 0.3])
    batch = presence_batch([[True, True, True, True]])
    result = modality_importance(model, batch, target=torch.tensor([1]))
    reference = _brute_force_shapley(lambda k: result.subset_probability[0, k], range(4))
    assert np.allclose(result.shapley[0], reference, atol=1e-12)


def test_model_reading_only_the_ecg_ranks_it_first():
    model = PresenceModel([0.0, 0.0, 3.0, 0.0])
    result = modality_importance(model, presence_batch([[True, True, True, True]]), target=torch.tensor([1]))
    table = result.table("shapley")
    assert table.loc["c0"].idxmax() == "signal"
    assert np.allclose(table.loc["c0", ["image", "text", "tabular"]], 0)
    assert result.table("leave_one_out").loc["c0"].idxmax() == "signal"


def test_leave_one_out_is_the_drop_when_hiding_each_modality():
    model = PresenceModel([1.0, 0.5, 0.2, 0.1])
    result = modality_importance(model, presence_batch([[True, True, True, False]]), target=torch.tensor([1]))
    p = lambda w: 1 / (1 + math.exp(-w))  # noqa: E731
    assert result.leave_one_out[0, 0] == pytest.approx(p(1.7) - p(0.7))
    assert result.leave_one_out[0, 3] == 0


def test_attention_received_is_renormalised_over_present_modalities():
    attention = torch.full((1, 2, 4, 4), 0.25)
    received = attention_received(attention, torch.tensor([[True, False, True, True]]))
    assert torch.allclose(received, torch.tensor([[1 / 3, 0, 1 / 3, 1 / 3]]))


def test_on_the_tiny_neurofusion_efficiency_holds_and_default_target_is_the_prediction(tiny_batch):
    model, batch = tiny_batch
    result = modality_importance(model, batch)
    with torch.no_grad():
        predicted = model(batch).probabilities.argmax(-1).numpy()
    assert (result.target == predicted).all()
    assert np.allclose(result.shapley.sum(1), result.probability_full - result.probability_none, atol=1e-5)
    assert np.allclose(result.attention.sum(1), 1, atol=1e-5)
    assert (result.attention[~result.present] == 0).all()
    assert SUBSETS.shape == (16, 4)
