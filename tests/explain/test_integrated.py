"""The Integrated Gradients engine (explain.integrated) and the stepwise case explainer: the same attributions
and convergence deltas as Captum, one fusion pass for every path equal to one path at a time, the note at a
higher BERT layer equal to Captum's LayerIntegratedGradients there, adaptive steps that stop at the tolerance
and say when they cannot, Grad-CAM from the encoding pass equal to Captum's, cancellation that stops work and
returns nothing partial, and every tensor on the model's device."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients

from explain._forward import ModalityForward
from explain.case import CaseExplainer, ExplainSettings, explain_case
from explain.image import image_path, image_saliency
from explain.integrated import (
    ExplanationCancelled,
    Integration,
    IntegrationPath,
    integrate,
    nodes,
)
from explain.signal import signal_path
from explain.tabular import tabular_path
from explain.text import explain_note, note_path
from neurofusion.inference import Predictor
from neurofusion.models import build_model
from tests.conftest import tiny_config


def _explainer(predictor, case, **settings) -> CaseExplainer:
    explainer = CaseExplainer(predictor, case, ExplainSettings(**settings))
    explainer.first_view()
    return explainer


def _paths(explainer: CaseExplainer, case, predictor):
    forward, target = explainer.forward, explainer.first_view().target
    return forward, target, {
        "image": image_path(forward, case.image.shape, target),
        "signal": signal_path(forward, target, case.signal.duration_s),
        "tabular": tabular_path(forward, case, target),
        "text": note_path(forward, case.note, predictor.tokenizer, target),
    }


def test_quadrature_nodes_integrate_exactly_what_they_should():
    for method in ("gausslegendre", "riemann_trapezoid"):
        alphas, weights = nodes(method, 9)
        assert sum(weights) == pytest.approx(1.0) and min(alphas) >= 0 and max(alphas) <= 1
    alphas, weights = nodes("gausslegendre", 4)  # exact for polynomials up to degree 7
    assert sum(w * a**7 for a, w in zip(alphas, weights)) == pytest.approx(1 / 8)
    alphas, weights = nodes("riemann_trapezoid", 5)
    assert set(nodes("riemann_trapezoid", 3)[0]) <= set(alphas)  # nested: refining reuses every node
    assert sum(w * a for a, w in zip(alphas, weights)) == pytest.approx(0.5)  # exact for linear


def test_engine_equals_captum_per_modality_with_the_same_delta(predictor, complete_case):
    explainer = _explainer(predictor, complete_case)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    found = {p.modality: (a, c) for p, a, c in integrate(forward, [p.path for p in prepared.values()], target,
                                                           Integration(n_steps=12))}
    model = predictor.model
    for modality in ("image", "signal", "tabular"):
        path = prepared[modality].path
        with torch.enable_grad():
            reference, delta = IntegratedGradients(forward.function(modality)).attribute(
                path.inputs, baselines=path.baseline, target=target, n_steps=12, return_convergence_delta=True)
        attributions, completeness = found[modality]
        np.testing.assert_allclose(attributions.numpy(), reference.detach().numpy(), rtol=1e-4, atol=1e-6)
        assert completeness.delta == pytest.approx(float(delta[0]), abs=1e-5)
        assert completeness.n_steps == 12 and completeness.converged is None  # no tolerance asked for
    ids = forward.inputs("text")["input_ids"]
    layer = model.encoders["text"].bert.embeddings.word_embeddings
    baseline_ids = torch.where((ids == ids[0, 0]) | (ids == ids[0, -1]), ids,
                               torch.full_like(ids, predictor.tokenizer.pad_token_id))
    with torch.enable_grad():
        reference, delta = LayerIntegratedGradients(forward.function("text"), layer).attribute(
            ids, baselines=baseline_ids, target=target, n_steps=12, return_convergence_delta=True)
    attributions, completeness = found["text"]
    np.testing.assert_allclose(attributions.numpy(), reference.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert completeness.delta == pytest.approx(float(delta[0]), abs=1e-5)
    gap = completeness.gap
    assert completeness.relative_error == pytest.approx(abs(completeness.delta) / max(abs(gap), 1e-2))


@pytest.fixture(scope="module")
def demo():
    """The bundled demo checkpoint and one complete test case of the bundled cohort."""
    from pathlib import Path

    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.data import CohortReader

    root = Path(__file__).resolve().parents[2] / "sample_data"
    ckpt = load_checkpoint(root / "checkpoints" / "cardio_demo", device="cpu")
    cohort = CohortReader(root / "cardio")
    case = next(c for c in (cohort[i] for i in cohort.ids("test")) if all(c.available.values()))
    return Predictor(ckpt.model, ckpt.tokenizer, ckpt.device), case


def test_demo_checkpoint_engine_equals_captum(demo):
    """The same check on the bundled demo model, every path through one fusion pass."""
    predictor, case = demo
    explainer = _explainer(predictor, case)
    forward, target, prepared = _paths(explainer, case, predictor)
    found = {p.modality: (a, c) for p, a, c in integrate(forward, [p.path for p in prepared.values()], target,
                                                           Integration(n_steps=4, joint=True))}
    for modality in ("image", "signal", "tabular"):
        path = prepared[modality].path
        with torch.enable_grad():
            reference, delta = IntegratedGradients(forward.function(modality)).attribute(
                path.inputs, baselines=path.baseline, target=target, n_steps=4, return_convergence_delta=True)
        scale = float(reference.abs().max())
        assert float((found[modality][0] - reference.detach()).abs().max()) <= 1e-4 * scale
        assert found[modality][1].delta == pytest.approx(float(delta[0]), abs=1e-4 * max(1.0, abs(float(delta[0]))))


def test_one_fusion_pass_for_every_path_equals_one_path_at_a_time(predictor, complete_case):
    joint = explain_case(predictor, complete_case, ExplainSettings(n_steps=8, joint=True))
    separate = explain_case(predictor, complete_case, ExplainSettings(n_steps=8))
    np.testing.assert_allclose(joint.image.model_map, separate.image.model_map, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(joint.signal.attributions, separate.signal.attributions, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(joint.note.token_scores, separate.note.token_scores, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(joint.tabular["score"], separate.tabular["score"], rtol=1e-4, atol=1e-7)
    for name, completeness in joint.completeness.items():
        assert completeness.delta == pytest.approx(separate.completeness[name].delta, abs=1e-6)
    assert set(joint.completeness) == {"image", "signal", "text", "tabular"}


def test_alone_context_through_one_fusion_pass(predictor, complete_case):
    joint = explain_case(predictor, complete_case, ExplainSettings(n_steps=6, context="alone", joint=True))
    separate = explain_case(predictor, complete_case, ExplainSettings(n_steps=6, context="alone"))
    np.testing.assert_allclose(joint.signal.attributions, separate.signal.attributions, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(joint.image.model_map, separate.image.model_map, rtol=1e-4, atol=1e-7)


@pytest.fixture
def two_layer(tiny_cohort, tiny_tokenizer):
    """A tiny model whose BERT has 3 layers, so a note can be attributed above the embeddings."""
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    config.text.num_layers = 3
    torch.manual_seed(1)
    return Predictor(build_model(config).eval(), tiny_tokenizer)


@pytest.mark.parametrize("layer", [1, 2])
def test_note_at_a_higher_layer_equals_captum_layer_ig_there(two_layer, complete_case, layer):
    """Only the layers from ``layer`` up run on the path, the same attributions as Captum integrating the
    output of layer ``layer - 1`` with every layer run at each step."""
    forward = ModalityForward(two_layer.model, two_layer.batch([complete_case]))
    note = explain_note(forward, complete_case.note, two_layer.tokenizer, 1, n_steps=10, layer=layer)
    ids = forward.inputs("text")["input_ids"]
    baseline_ids = torch.where((ids == ids[0, 0]) | (ids == ids[0, -1]), ids,
                               torch.full_like(ids, two_layer.tokenizer.pad_token_id))
    bert_layer = two_layer.model.encoders["text"].bert.encoder.layer[layer - 1]
    with torch.enable_grad():
        reference, delta = LayerIntegratedGradients(forward.function("text"), bert_layer).attribute(
            ids, baselines=baseline_ids, target=1, n_steps=10, return_convergence_delta=True)
    np.testing.assert_allclose(note.token_scores, reference[0].sum(-1).detach().numpy(), rtol=1e-4, atol=1e-6)
    assert note.convergence_delta == pytest.approx(float(delta[0]), abs=1e-5)
    assert note.layer == f"hidden_states[{layer}]"
    with torch.no_grad():
        gap = float(forward.text_ids(ids)[0, 1] - forward.text_ids(baseline_ids)[0, 1])
    assert note.token_scores.sum() - note.convergence_delta == pytest.approx(gap, abs=1e-5)  # completeness
    words = explain_note(forward, complete_case.note, two_layer.tokenizer, 1, n_steps=10)
    assert words.layer == "word_embeddings" and not np.allclose(words.token_scores, note.token_scores)


def test_the_states_kept_from_the_encoding_pass_give_the_same_note(two_layer, complete_case):
    """The explainer keeps the case's layer-j states from its encoding pass instead of a second pass."""
    result = explain_case(two_layer, complete_case, ExplainSettings(n_steps=6, note_layer=2, target=0))
    kept = ModalityForward(two_layer.model, two_layer.batch([complete_case]), note_layer=2)
    assert set(kept.layer_inputs) == {"text"}
    fresh = explain_note(ModalityForward(two_layer.model, two_layer.batch([complete_case])), complete_case.note,
                         two_layer.tokenizer, 0, n_steps=6, layer=2)
    np.testing.assert_allclose(result.note.token_scores, fresh.token_scores, rtol=1e-5, atol=1e-7)
    assert result.note.layer == "hidden_states[2]"


def test_note_layer_out_of_range_is_a_clear_error(two_layer, complete_case):
    forward = ModalityForward(two_layer.model, two_layer.batch([complete_case]))
    with pytest.raises(ValueError, match="note layer must be an integer from 1 to 2"):
        note_path(forward, complete_case.note, two_layer.tokenizer, 0, layer=3)
    with pytest.raises(ValueError, match="note_layer must be None"):
        ExplainSettings(note_layer=0)


def test_adaptive_steps_stop_at_the_tolerance(predictor, complete_case):
    explainer = _explainer(predictor, complete_case)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    for method in ("gausslegendre", "riemann_trapezoid"):
        settings = Integration(method=method, tolerance=0.02, start_steps=4, max_steps=512)
        ((_, _, completeness),) = integrate(forward, [prepared["image"].path], target, settings)
        errors = [error for _, error in completeness.rounds]
        assert completeness.converged and errors[-1] <= 0.02 == completeness.tolerance
        assert all(error > 0.02 for error in errors[:-1])  # it stopped at the first round within tolerance
        assert completeness.n_steps == completeness.rounds[-1][0] == settings.schedule()[len(errors) - 1]


def test_adaptive_steps_say_when_max_steps_is_not_enough(predictor, complete_case):
    explainer = _explainer(predictor, complete_case)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    settings = Integration(tolerance=1e-9, start_steps=2, max_steps=6)
    ((_, _, completeness),) = integrate(forward, [prepared["signal"].path], target, settings)
    assert completeness.converged is False and completeness.n_steps == 6
    assert [n for n, _ in completeness.rounds] == [2, 4, 6] and completeness.relative_error > 1e-9


def test_nested_trapezoid_reuses_every_gradient_taken(predictor, complete_case):
    explainer = _explainer(predictor, complete_case)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    path = prepared["signal"].path
    rows = []
    counting = IntegrationPath(path.modality, path.kind, path.inputs, path.baseline,
                               lambda x: (rows.append(x.shape[0]), path.embed(x))[1])
    settings = Integration(method="riemann_trapezoid", tolerance=1e-9, start_steps=3, max_steps=9)
    ((_, _, completeness),) = integrate(forward, [counting], target, settings)
    assert [n for n, _ in completeness.rounds] == [3, 5, 9]
    assert rows == [2, 3, 2, 4]  # end points, then 3 nodes, 2 new, 4 new: 9 gradients for 3 rounds


def test_gauss_then_trapezoid_starts_with_gauss_legendre_and_refines_on_nested_grids(predictor, complete_case):
    explainer = _explainer(predictor, complete_case)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    hybrid = Integration(method="gauss_then_trapezoid", tolerance=1e-9, start_steps=4, max_steps=13)
    assert hybrid.schedule() == [4, 7, 13] and [hybrid.round_method(k) for k in range(3)] == [
        "gausslegendre", "riemann_trapezoid", "riemann_trapezoid"]
    path = prepared["signal"].path
    rows = []
    counting = IntegrationPath(path.modality, path.kind, path.inputs, path.baseline,
                               lambda x: (rows.append(x.shape[0]), path.embed(x))[1])
    ((_, attributions, completeness),) = integrate(forward, [counting], target, hybrid)
    assert rows == [2, 4, 7, 6]  # end points, 4 Gauss-Legendre nodes, then 7 trapezoid nodes, 6 new at 13
    assert completeness.method == "riemann_trapezoid" and [n for n, _ in completeness.rounds] == [4, 7, 13]
    ((_, trapezoid, _),) = integrate(forward, [path], target, Integration(method="riemann_trapezoid", n_steps=13))
    torch.testing.assert_close(attributions, trapezoid, rtol=1e-5, atol=1e-7)
    # a first round within the tolerance is Gauss-Legendre's result and says so
    easy = Integration(method="gauss_then_trapezoid", tolerance=0.999, start_steps=4)
    ((_, first, done),) = integrate(forward, [path], target, easy)
    ((_, gauss, _),) = integrate(forward, [path], target, Integration(n_steps=4))
    assert done.method == "gausslegendre" and done.n_steps == 4 and done.converged
    torch.testing.assert_close(first, gauss, rtol=1e-5, atol=1e-7)


def test_adaptive_rounds_take_at_most_32_steps_per_pass(predictor, complete_case):
    explainer = _explainer(predictor, complete_case)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    path = prepared["tabular"].path
    rows = []
    counting = IntegrationPath(path.modality, path.kind, path.inputs, path.baseline,
                               lambda x: (rows.append(x.shape[0]), path.embed(x))[1])
    settings = Integration(tolerance=1e-12, start_steps=16, max_steps=64)
    list(integrate(forward, [counting], target, settings))
    assert rows == [2, 16, 32, 32, 32]  # end points, 16, 32, then 64 in two passes


def test_grad_cam_from_the_encoding_pass_equals_captum(predictor, complete_case):
    view = CaseExplainer(predictor, complete_case, ExplainSettings(image_method="grad_cam")).first_view()
    forward = ModalityForward(predictor.model, predictor.batch([complete_case]))
    captum = image_saliency(forward, complete_case.image.shape, view.target, "grad_cam")
    np.testing.assert_allclose(view.grad_cam["image"].model_map, captum.model_map, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(view.grad_cam["image"].map, captum.map, rtol=1e-4, atol=1e-6)


def test_first_view_then_panels_make_the_same_explanation_as_explain_case(predictor, complete_case):
    settings = ExplainSettings(n_steps=6)
    whole = explain_case(predictor, complete_case, settings)
    explainer = CaseExplainer(predictor, complete_case, settings)
    view = explainer.first_view()
    assert view.target == whole.target and view.predicted == whole.predicted
    np.testing.assert_allclose(view.probabilities, whole.probabilities, atol=1e-6)
    np.testing.assert_allclose(view.importance.shapley, whole.importance.shapley, atol=1e-7)
    seen = [name for name, _ in explainer.panels()]
    assert sorted(seen) == sorted(whole.panels) and seen[-1] == "text"  # the note, the slowest, comes last
    again = explainer.explanation()
    np.testing.assert_allclose(again.note.token_scores, whole.note.token_scores, atol=1e-6)
    assert again.to_dict().keys() == whole.to_dict().keys()


def test_cancelling_stops_work_and_returns_nothing_partial(predictor, complete_case):
    passes = []
    encoder = predictor.model.encoders["image"]
    handle = encoder.register_forward_hook(lambda *_: passes.append(1))
    try:
        event = threading.Event()
        explainer = CaseExplainer(predictor, complete_case, ExplainSettings(n_steps=8, internal_batch_size=2,
                                                                            joint=False), cancel=event)
        explainer.first_view()
        panels = explainer.panels()
        next(panels)  # the first path (the image) is integrating; stop while it is
        event.set()
        with pytest.raises(ExplanationCancelled):
            list(panels)
        done = len(passes)
        with pytest.raises(ExplanationCancelled):
            explainer.explanation()
        assert len(passes) == done  # nothing ran after the cancel
        with pytest.raises(ExplanationCancelled):
            explain_case(predictor, complete_case, ExplainSettings(n_steps=8), cancel=lambda: True)
    finally:
        handle.remove()


def test_cancel_between_passes_of_one_path(predictor, complete_case):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 3

    explainer = _explainer(predictor, complete_case)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    finished = []
    with pytest.raises(ExplanationCancelled):
        for item in integrate(forward, [prepared["image"].path], target, Integration(n_steps=16, internal_batch_size=2),
                              cancel):
            finished.append(item)
    assert not finished and len(calls) == 4  # 8 passes were due; the 3rd was the last that ran


def test_bfloat16_is_reported_and_measured_against_float32_end_points(predictor, complete_case):
    settings = ExplainSettings(n_steps=16, reduced_precision=("image",))
    reduced = explain_case(predictor, complete_case, settings)
    full = explain_case(predictor, complete_case, ExplainSettings(n_steps=16))
    assert reduced.image.completeness.precision == "bfloat16" and reduced.signal.completeness.precision == "float32"
    assert reduced.image.completeness.gap == pytest.approx(full.image.completeness.gap, abs=1e-6)  # fp32 ends
    delta = reduced.image.model_map.astype(np.float64).sum() - reduced.image.completeness.gap
    assert reduced.image.completeness.delta == pytest.approx(delta, abs=1e-4)
    np.testing.assert_allclose(reduced.signal.attributions, full.signal.attributions, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="reduced_precision names modality kinds"):
        ExplainSettings(reduced_precision=("pixels",))


def test_bad_integration_settings_are_clear_errors():
    with pytest.raises(ValueError, match="integration method must be one of"):
        ExplainSettings(steps_method="simpson")
    with pytest.raises(ValueError, match="tolerance is a relative completeness error"):
        ExplainSettings(tolerance=2.0)
    with pytest.raises(ValueError, match="max_steps"):
        Integration(start_steps=16, max_steps=8)


def test_tolerance_reaches_every_panel_and_serialises(predictor, complete_case):
    import json

    result = explain_case(predictor, complete_case, ExplainSettings(tolerance=0.05, max_steps=64))
    for name, completeness in result.completeness.items():
        assert completeness.tolerance == 0.05
        assert completeness.converged == (completeness.relative_error <= 0.05)
        assert completeness.converged or completeness.n_steps == 64
    data = json.loads(json.dumps(result.to_dict()))
    assert data["image"]["completeness"]["n_steps"] == result.image.completeness.n_steps


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_every_tensor_stays_on_the_model_device(tiny_batch, tiny_tokenizer, complete_case):
    model = tiny_batch[0].to("cuda")
    predictor = Predictor(model, tiny_tokenizer, "cuda")
    settings = ExplainSettings(n_steps=6, tolerance=0.1, max_steps=12)
    explainer = CaseExplainer(predictor, complete_case, settings)
    view = explainer.first_view()
    assert view.grad_cam["image"].model_map.shape == (32, 32)
    forward, target, prepared = _paths(explainer, complete_case, predictor)
    assert all(f.device.type == "cuda" for f in forward.features.values())
    for path, attributions, _ in integrate(forward, [p.path for p in prepared.values()], target,
                                           settings.integration()):
        assert attributions.device.type == "cuda" and path.inputs.device.type == "cuda"
        assert path.baseline.device.type == "cuda"
    result = explainer.explanation()
    assert set(result.completeness) == {"image", "signal", "text", "tabular"}


def test_a_lifted_path_gives_the_attributions_and_delta_of_the_same_path_unlifted(predictor, complete_case):
    """A path with an affine lift A (here a random invertible linear map plus a shift on the lab values) steps
    in A's output space and takes the gradients back through A's transpose once: the same attributions and
    convergence delta as the path that applies A on every step."""
    explainer = _explainer(predictor, complete_case)
    forward, target = explainer.forward, explainer.first_view().target
    plain = tabular_path(forward, complete_case, target).path
    size = plain.inputs.shape[1]
    generator = torch.Generator().manual_seed(3)
    matrix = torch.eye(size) + 0.3 * torch.randn(size, size, generator=generator)  # not symmetric: A^T matters
    shift = torch.randn(size, generator=generator)

    def embed(lifted):  # undoes A, then the tabular encoder: embed(A(x)) is plain.embed(x)
        return plain.embed(torch.linalg.solve(matrix, (lifted - shift).T).T)

    lifted = IntegrationPath("tabular", "tabular", plain.inputs, plain.baseline, embed,
                             lift=lambda x: x @ matrix.T + shift)
    settings = Integration(n_steps=16)
    ((_, expected, expected_c),) = integrate(forward, [plain], target, settings)
    ((_, found, found_c),) = integrate(forward, [lifted], target, settings)
    assert found.shape == plain.inputs.shape
    scale = float(expected.abs().max())
    assert scale > 0 and float((found - expected).abs().max()) <= 1e-5 * scale
    assert found_c.delta == pytest.approx(expected_c.delta, abs=1e-6)
    assert found_c.gap == pytest.approx(expected_c.gap, abs=1e-6)
