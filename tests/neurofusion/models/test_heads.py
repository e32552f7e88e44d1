"""Heads and the multi-task loss, checked against hand computations."""

from __future__ import annotations

import math

import torch

from neurofusion.config import HeadConfig
from neurofusion.models import ClassificationHead, RegressionHead, SurvivalHead, build_heads, multitask_loss


def test_survival_curve_is_a_non_increasing_probability():
    curve = SurvivalHead.survival_curve(torch.randn(4, 6))
    assert ((curve > 0) & (curve < 1)).all()
    assert (curve[:, 1:] <= curve[:, :-1]).all()


def test_survival_nll_matches_hand_computation():
    logits = torch.tensor([[0.0, 1.0, -1.0], [0.5, 0.5, 0.5]])
    h = torch.sigmoid(logits)
    # case 0: event in bin 1 -> survive bin 0, event in bin 1; case 1: censored in bin 2 -> survive 0, 1, 2
    expected = -(math.log(1 - h[0, 0]) + math.log(h[0, 1]) + sum(math.log(1 - h[1, k]) for k in range(3))) / 2
    loss = SurvivalHead.loss(logits, torch.tensor([[1, 1], [2, 0]]))
    assert abs(float(loss) - expected) < 1e-6


def test_survival_loss_gradient_separates_censored_from_event_cases():
    logits = torch.zeros(2, 4, requires_grad=True)  # hazard 1/2 in every bin
    SurvivalHead.loss(logits, torch.tensor([[2, 1], [2, 0]])).backward()
    # d/dh of -log(1 - sigmoid(h)) is +1/2 (survived bin), of -log(sigmoid(h)) is -1/2 (event bin); mean over 2
    # cases. The event case pushes the hazard of bin 2 up, the case censored in bin 2 pushes it down; neither
    # says anything about bin 3.
    expected = torch.tensor([[0.25, 0.25, -0.25, 0.0], [0.25, 0.25, 0.25, 0.0]])
    assert torch.allclose(logits.grad, expected)


def test_survival_and_regression_ignore_unknown_targets():
    assert float(SurvivalHead.loss(torch.randn(2, 3), torch.tensor([[-1, 0], [-1, 1]]))) == 0.0
    pred = torch.tensor([[1.0], [5.0]])
    assert float(RegressionHead.loss(pred, torch.tensor([[3.0], [float("nan")]]))) == 4.0


def test_classification_ignores_unlabelled_cases():
    logits = torch.tensor([[2.0, 0.0], [0.0, 9.0]])
    loss = ClassificationHead.loss(logits, torch.tensor([0, -1]))
    assert abs(float(loss) - math.log(1 + math.exp(-2))) < 1e-6


def test_multitask_loss_is_the_weighted_sum():
    configs = [HeadConfig("diagnosis", "classification", 2, 1.0), HeadConfig("los", "regression", 1, 0.5),
               HeadConfig("survival", "survival", 3, 2.0)]
    heads = build_heads(configs, 4)
    fused = torch.randn(2, 4)
    outputs = {name: head(fused) for name, head in heads.items()}
    targets = {"diagnosis": torch.tensor([0, 1]), "los": torch.tensor([[1.0], [2.0]]),
               "survival": torch.tensor([[0, 1], [2, 0]])}
    total, parts = multitask_loss(outputs, targets, configs)
    expected = (ClassificationHead.loss(outputs["diagnosis"], targets["diagnosis"])
                + 0.5 * RegressionHead.loss(outputs["los"], targets["los"])
                + 2.0 * SurvivalHead.loss(outputs["survival"], targets["survival"]))
    assert torch.isclose(total, expected)
    assert set(parts) == {"diagnosis", "los", "survival"}
    partial, parts = multitask_loss(outputs, {"los": targets["los"]}, configs)
    assert set(parts) == {"los"} and torch.isclose(partial, 0.5 * RegressionHead.loss(outputs["los"], targets["los"]))
