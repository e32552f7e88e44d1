"""Contrastive explanations (explain/contrast.py): the difference of two classes' explanations is the
explanation of the difference of their outputs, checked against Captum run on logit_A - logit_B directly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from explain._forward import ModalityForward, attribution_mode
from explain.case import ExplainSettings, explain_case
from explain.contrast import contrast_explanations

STEPS = 8


def _pair(predictor, case, method="integrated_gradients", a=0, b=1):
    settings = ExplainSettings(n_steps=STEPS, image_method=method)
    return (explain_case(predictor, case, dataclasses.replace(settings, target=a)),
            explain_case(predictor, case, dataclasses.replace(settings, target=b)))


def test_contrast_is_the_explanation_of_the_logit_difference(predictor, complete_case):
    one, two = _pair(predictor, complete_case)
    both = contrast_explanations(one, two)
    assert both.target == 0 and both.contrast == 1
    assert both.explained == f"{one.classes[0]} - {one.classes[1]}"
    # Integrated Gradients of logit_0 - logit_1 computed directly, on the ECG and on the image
    batch = predictor.batch([complete_case])
    forward = ModalityForward(predictor.model.eval(), batch)
    with attribution_mode(predictor.model):
        for name, function, part in (("signal", forward.signal, both.signal.attributions),
                                     ("image", forward.image, both.image.model_map)):
            x = getattr(batch, name)
            direct = IntegratedGradients(lambda v, f=function: f(v)[:, 0] - f(v)[:, 1]).attribute(
                x, baselines=torch.zeros_like(x), n_steps=STEPS, internal_batch_size=STEPS)[0]
            direct = direct[0] if name == "image" else direct
            np.testing.assert_allclose(part, direct.detach().numpy(), rtol=1e-4, atol=1e-6)
    # and not simply one of the two classes' explanations
    assert not np.allclose(both.signal.attributions, one.signal.attributions)
    # a difference of two maps is no one integration: no completeness of either class is carried over
    assert one.completeness and not both.completeness


def test_contrast_importance_is_the_difference_of_the_two_classes(predictor, complete_case):
    one, two = _pair(predictor, complete_case)
    both = contrast_explanations(one, two)
    for method in ("shapley", "leave_one_out"):
        np.testing.assert_allclose(both.importance.table(method).to_numpy(),
                                   one.importance.table(method).to_numpy() - two.importance.table(method).to_numpy())
    # Shapley efficiency for the value p_0 - p_1: the values add up to its change from none to all present
    p = one.probabilities
    assert both.importance.shapley.sum() == pytest.approx(
        (p[0] - p[1]) - (one.importance.probability_none[0] - two.importance.probability_none[0]), abs=1e-6)
    np.testing.assert_allclose(both.importance.attention, one.importance.attention)  # class-independent
    words = {(w.start, w.end): w.score for w in both.note.words}
    for x, y in zip(one.note.words, two.note.words):
        assert words[(x.start, x.end)] == pytest.approx(x.score - y.score)
    assert sum(s.score for s in both.note.sentences) == pytest.approx(sum(words.values()), abs=1e-6)
    np.testing.assert_allclose(both.tabular["score"], one.tabular["score"] - two.tabular["score"])
    assert both.to_dict()["contrast_class"] == one.classes[1]


def test_grad_cam_has_no_contrast_and_says_why(predictor, complete_case):
    both = contrast_explanations(*_pair(predictor, complete_case, method="grad_cam"))
    assert both.image is None and "not linear" in both.unexplained["image"]
    assert both.signal is not None


def test_contrast_refuses_mismatched_explanations(predictor, complete_case, tiny_cohort):
    one, two = _pair(predictor, complete_case)
    with pytest.raises(ValueError, match="two different classes"):
        contrast_explanations(one, one)
    other = next(c for c in tiny_cohort if c.case_id != complete_case.case_id)
    with pytest.raises(ValueError, match="same case"):
        contrast_explanations(one, explain_case(predictor, other, ExplainSettings(n_steps=STEPS, target=1)))
    with pytest.raises(ValueError, match="already a contrast"):
        contrast_explanations(contrast_explanations(one, two), two)
