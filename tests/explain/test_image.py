"""Image saliency: the planted region is found, IG is complete, maps come back at the original size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain._forward import ModalityForward
from explain.image import IMAGE_METHODS, image_path, image_saliency, to_original
from explain.integrated import Integration, IntegrationPath, integrate
from neurofusion.config import HeadConfig, ModelConfig
from neurofusion.data.dataset import prepare_image
from neurofusion.inference import Predictor
from tests.explain.planted import RegionImageModel, presence_batch

PLANTED = ModelConfig(classes=["no", "yes"], heads=[HeadConfig(num_outputs=2)])


def _planted_case(image_value: float = 0.9):
    model = RegionImageModel(PLANTED, slice(8, 16), slice(20, 28))
    batch = presence_batch([[True, False, False, False]])
    batch.image = torch.full((1, 1, 32, 32), 0.2)
    batch.image[0, 0, 8:16, 20:28] = image_value  # the planted finding
    return model, batch


def test_integrated_gradients_puts_all_evidence_in_the_planted_region_and_is_complete():
    model, batch = _planted_case()
    saliency = image_saliency(ModalityForward(model, batch), (32, 32), target=1, method="integrated_gradients")
    inside = np.zeros((32, 32), bool)
    inside[8:16, 20:28] = True
    assert np.abs(saliency.model_map[~inside]).max() < 1e-9
    assert saliency.model_map[inside].min() > 0
    _, black = _planted_case()
    black.image.zero_()
    with torch.no_grad():
        gap = float(model(batch).logits[0, 1] - model(black).logits[0, 1])
    assert saliency.model_map.sum() == pytest.approx(gap, abs=1e-3)  # completeness
    assert abs(saliency.convergence_delta) < 1e-3


def test_occlusion_peaks_in_the_planted_region():
    model, batch = _planted_case()
    saliency = image_saliency(ModalityForward(model, batch), (32, 32), target=1, method="occlusion", window=4, stride=4)
    row, col = np.unravel_index(saliency.model_map.argmax(), saliency.model_map.shape)
    assert 8 <= row < 16 and 20 <= col < 28


@pytest.mark.parametrize("method", IMAGE_METHODS)
def test_every_method_on_the_tiny_neurofusion_gives_a_map_at_the_original_size(tiny_batch, tiny_tokenizer,
                                                                               tiny_cohort, method):
    model, _ = tiny_batch
    case = next(c for c in tiny_cohort if c.image is not None)
    batch = Predictor(model, tiny_tokenizer).batch([case])
    saliency = image_saliency(ModalityForward(model, batch), case.image.shape, target=0, method=method, n_steps=8)
    assert saliency.map.shape == case.image.shape and saliency.model_map.shape == (32, 32)
    assert np.isfinite(saliency.map).all()
    if method == "grad_cam":
        assert (saliency.map >= -1e-6).all()


def test_to_original_undoes_padding_and_resizing():
    y, x = np.mgrid[0:40, 0:64]
    image = (0.5 + 0.25 * np.sin(x / 6) + 0.25 * np.cos(y / 5)).astype(np.float32)  # smooth: survives 2x down
    back = to_original(prepare_image(image, 32)[0].numpy(), image.shape)
    assert back.shape == (40, 64)
    assert np.corrcoef(back.ravel(), image.ravel())[0, 1] > 0.95  # the same picture, in the same place
    # 40x64 is padded with 12 rows above and below to 64x64, i.e. 6 of 32 rows in the model's frame
    frame = np.zeros((32, 32), np.float32)
    frame[6:26] = 1.0
    assert to_original(frame, (40, 64))[2:-2].min() > 0.99  # the image region maps back, padding does not


def test_case_without_image_is_an_error():
    model, batch = _planted_case()
    batch.present[0, 0] = False
    with pytest.raises(ValueError, match="no image"):
        image_saliency(ModalityForward(model, batch), (32, 32), 1, "integrated_gradients")


def _whole_encoder_path(path, encoder) -> IntegrationPath:
    """The same path with the whole image encoder on every step (the path before the stem was lifted)."""
    return IntegrationPath(path.modality, path.kind, path.inputs, path.baseline, lambda x: encoder(x).embedding)


def _relative_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def test_the_resnet_path_steps_after_the_first_convolution_with_the_same_maps(tiny_batch, tiny_tokenizer,
                                                                            tiny_cohort):
    model, _ = tiny_batch
    generator = torch.Generator().manual_seed(5)
    for module in model.modules():  # batch norms that do something, so the lifted stem is not an identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(0.3 * torch.randn(module.num_features, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator))
    case = next(c for c in tiny_cohort if c.image is not None)
    forward = ModalityForward(model, Predictor(model, tiny_tokenizer).batch([case]))
    path = image_path(forward, case.image.shape, 0).path
    assert path.lift is not None  # the stem is computed at the two ends only
    whole = _whole_encoder_path(path, model.encoders["image"])
    ((_, lifted, lifted_c),) = integrate(forward, [path], 0, Integration(n_steps=16))
    ((_, expected, expected_c),) = integrate(forward, [whole], 0, Integration(n_steps=16))
    assert _relative_difference(lifted, expected) <= 1e-5
    assert lifted_c.delta == pytest.approx(expected_c.delta, abs=1e-6)


def test_a_model_in_training_mode_or_another_encoder_runs_the_whole_encoder(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    case = next(c for c in tiny_cohort if c.image is not None)
    batch = Predictor(model, tiny_tokenizer).batch([case])
    model.train()
    try:  # batch statistics are not affine in one case's pixels: no lift
        assert image_path(ModalityForward(model, batch), case.image.shape, 0).path.lift is None
    finally:
        model.eval()
    planted, planted_batch = _planted_case()
    assert image_path(ModalityForward(planted, planted_batch), (32, 32), 1).path.lift is None


def test_the_demo_image_map_at_50_steps_is_the_whole_encoder_map(demo_case_forward):
    """Today's default on the bundled demo: the lifted path's map equals the whole-encoder path's within 1e-5
    of its largest value (measured 2.4e-07 on this case), with the same completeness."""
    model, case, forward = demo_case_forward
    path = image_path(forward, case.image.shape, 0).path
    ((_, lifted, lifted_c),) = integrate(forward, [path], 0, Integration(n_steps=50))
    ((_, expected, expected_c),) = integrate(forward, [_whole_encoder_path(path, model.encoders["image"])], 0,
                                             Integration(n_steps=50))
    assert _relative_difference(lifted, expected) <= 1e-5
    assert lifted_c.delta == pytest.approx(expected_c.delta, abs=1e-6)
    assert lifted_c.relative_error == pytest.approx(expected_c.relative_error, abs=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_lifted_image_path_on_cuda_equals_the_cpu_map(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    case = next(c for c in tiny_cohort if c.image is not None)
    cpu = image_saliency(ModalityForward(model, Predictor(model, tiny_tokenizer).batch([case])), case.image.shape, 0,
                         "integrated_gradients", n_steps=8)
    model = model.to("cuda")
    try:
        forward = ModalityForward(model, Predictor(model, tiny_tokenizer, "cuda").batch([case]))
        path = image_path(forward, case.image.shape, 0).path
        assert path.lift is not None
        ((_, attributions, _),) = integrate(forward, [path], 0, Integration(n_steps=8))
        assert attributions.device.type == "cuda"
        gpu = attributions[0].sum(0).cpu().numpy()
    finally:
        model.to("cpu")
    np.testing.assert_allclose(gpu, cpu.model_map, rtol=1e-3, atol=1e-4 * float(np.abs(cpu.model_map).max()))
