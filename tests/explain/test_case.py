"""A whole case explained at once: consistent parts, JSON-ready, and safe to run from two threads."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from explain._forward import ModalityForward
from explain.case import ExplainSettings, explain_case
from explain.signal import explain_signal


def test_complete_case_has_every_part_and_serialises(predictor, tiny_cohort):
    case = next(c for c in tiny_cohort if all(c.available.values()))
    result = explain_case(predictor, case, ExplainSettings(n_steps=8))
    assert result.image is not None and result.note is not None and result.signal is not None
    assert result.tabular is not None and result.cross_attention.shape == (2, 4, 4)
    assert result.target == int(result.probabilities.argmax())
    assert np.isclose(result.importance.probability_full[0], result.probabilities[result.target], atol=1e-5)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["predicted"] == result.predicted and set(data["modality_importance"]) == {
        "shapley", "leave_one_out", "attention"}


def test_missing_modalities_are_missing_in_the_explanation(predictor, tiny_cohort):
    case = next(c for c in tiny_cohort if not all(c.available.values()))
    result = explain_case(predictor, case, ExplainSettings(n_steps=4, image_method="grad_cam"))
    for modality, part in (("image", result.image), ("text", result.note), ("signal", result.signal),
                           ("tabular", result.tabular)):
        assert (part is None) == (not case.available[modality])
        if not case.available[modality]:
            assert result.to_dict()["modality_importance"]["shapley"][modality] is None


def test_two_threads_get_the_same_results_as_sequential(predictor, tiny_cohort):
    cases = [c for c in tiny_cohort if c.image is not None and c.note is not None][:2]
    settings = ExplainSettings(n_steps=6, image_method="grad_cam")
    sequential = [explain_case(predictor, c, settings) for c in cases]
    _, plain = predictor.predict(cases)
    results: dict[int, object] = {}
    predictions: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for _ in range(3):  # overlap several times
                results[k] = explain_case(predictor, cases[k], settings)
        except BaseException as err:  # surfaced below
            errors.append(err)

    def predict() -> None:  # a plain prediction while hooks may be attached in the other threads
        try:
            for _ in range(6):
                predictions.append(predictor.predict(cases)[1])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)] + [threading.Thread(target=predict)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(np.allclose(p, plain, atol=1e-6) for p in predictions)
    for k in range(2):
        assert np.allclose(results[k].image.map, sequential[k].image.map, atol=1e-6)
        assert np.allclose(results[k].note.token_scores, sequential[k].note.token_scores, atol=1e-6)
        assert np.allclose(results[k].importance.shapley, sequential[k].importance.shapley, atol=1e-7)


def test_bad_settings():
    with pytest.raises(ValueError, match="image_method must be one of"):
        ExplainSettings(image_method="lime")


def test_alone_context_explains_each_modality_with_the_others_hidden(predictor, tiny_cohort):
    import torch

    from explain._forward import ModalityForward

    case = next(c for c in tiny_cohort if all(c.available.values()))
    batch = predictor.batch([case])
    alone = ModalityForward(predictor.model, batch, alone=True)
    with torch.no_grad():
        only_signal = predictor.model(batch, present=torch.tensor([[False, False, True, False]])).logits
        assert torch.allclose(alone.signal(batch.signal), only_signal, atol=1e-5)
    result = explain_case(predictor, case, ExplainSettings(n_steps=8, context="alone"))
    in_case = explain_case(predictor, case, ExplainSettings(n_steps=8))
    assert not np.allclose(result.signal.attributions, in_case.signal.attributions)
    with pytest.raises(ValueError, match="context must be"):
        ExplainSettings(context="global")


def test_untracked_weights_give_the_same_attributions_and_their_flags_come_back(predictor, tiny_cohort):
    """Attribution leaves the weights' gradients untracked for speed; that must change no number, and
    every weight must be trainable again afterwards (a frozen one stays frozen)."""
    model = predictor.model.eval()
    frozen = next(model.parameters())
    frozen.requires_grad_(False)
    try:
        case = next(c for c in tiny_cohort if c.signal is not None)
        forward = ModalityForward(model, predictor.batch([case]))
        fast = explain_signal(forward, 0, case.signal.duration_s, n_steps=8)
        with torch.enable_grad():  # plain Captum, weights tracked
            plain = IntegratedGradients(forward.signal).attribute(
                forward.batch.signal, baselines=torch.zeros_like(forward.batch.signal), target=0, n_steps=8,
                internal_batch_size=8)[0].detach().numpy()
        np.testing.assert_allclose(fast.attributions, plain, rtol=1e-5, atol=1e-7)
        assert not frozen.requires_grad
        assert all(p.requires_grad for p in model.parameters() if p is not frozen)
    finally:
        frozen.requires_grad_(True)


def _reference(model, batch, far: tuple[str, ...] = ()):
    """A reference around the batch's own encoder outputs; modalities in ``far`` are fitted 50 units away,
    so every case that has them is flagged (a known answer)."""
    from neurofusion.ood import OODReference, encoder_vectors, fit_modality, weights_fingerprint

    rng = np.random.default_rng(0)
    modalities = {}
    for m, v in encoder_vectors(model, [batch]).items():
        shift = 50.0 if m in far else 0.0
        cloud = lambda n: v[rng.integers(0, len(v), n)] + rng.normal(0, 0.05, (n, v.shape[1])) + shift  # noqa: E731
        modalities[m] = fit_modality(cloud(200), cloud(100), modality=m)
    return OODReference(modalities, 0.99, weights_fingerprint(model.state_dict()))


def test_out_of_distribution_and_input_report_for_the_modalities_the_case_has(predictor, tiny_cohort):
    from neurofusion.inputs import case_input_report

    cases = [tiny_cohort[i] for i in range(12)]
    reference = _reference(predictor.model, predictor.batch(cases), far=("image",))
    case = next(c for c in cases if c.image is not None and not all(c.available.values()))
    result = explain_case(predictor, case, ExplainSettings(n_steps=4, image_method="grad_cam"), ood=reference)
    assert set(result.ood) == {m for m, has in case.available.items() if has}
    assert result.ood["image"]["flagged"] and result.ood["image"]["distance"] > 100 * result.ood["image"]["threshold"]
    expected = reference.assess(predictor.model.encode(predictor.batch([case])))
    for m, entry in result.ood.items():
        assert entry["distance"] == pytest.approx(expected[m]["distance"], rel=1e-6)
        assert entry["threshold"] == reference.modalities[m].threshold
        assert entry["false_alarm_rate"] == reference.modalities[m].false_alarm_rate
    assert not any(entry["flagged"] for m, entry in result.ood.items() if m != "image")
    assert result.inputs == case_input_report(predictor.spec, case).to_dict()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["ood"]["image"]["flagged"] is True and data["inputs"]["messages"] == result.inputs["messages"]

    plain = explain_case(predictor, case, ExplainSettings(n_steps=4, image_method="grad_cam"))
    assert plain.ood is None and plain.to_dict()["ood"] is None  # no reference: not checked, not "fine"


def test_an_unusable_input_is_reported_in_the_explanation(predictor, tiny_cohort):
    import dataclasses

    case = next(c for c in tiny_cohort if c.tabular is not None)
    renamed = dataclasses.replace(case, tabular={f"x_{k}": v for k, v in case.tabular.items()})
    result = explain_case(predictor, renamed, ExplainSettings(n_steps=4, image_method="grad_cam"))
    assert "tabular" in result.inputs["unusable"]
    assert any("tabular cannot be used" in m for m in result.to_dict()["inputs"]["messages"])
