"""ECG explanations: a model that reads one lead in one window gets its attributions there and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain._forward import ModalityForward
from explain.integrated import Integration, IntegrationPath, integrate
from explain.signal import _PairMax, _path_blocks, explain_signal, signal_path, top_segments
from neurofusion.config import HeadConfig, ModelConfig, SignalEncoderConfig
from neurofusion.inference import Predictor
from tests.explain.planted import WindowECGModel, presence_batch

CONFIG = ModelConfig(classes=["no", "yes"], heads=[HeadConfig(num_outputs=2)],
                     signal=SignalEncoderConfig(fs=100.0, seconds=10.0))


def test_attributions_fall_on_the_planted_lead_and_time_window():
    lead, window = 1, slice(300, 400)  # lead II, 3.0-4.0 s at 100 Hz
    model = WindowECGModel(CONFIG, lead, window)
    batch = presence_batch([[False, False, True, False]])
    t = np.arange(1000) / 100
    batch.signal = torch.tensor(np.tile(0.8 * np.sin(2 * np.pi * 1.2 * t), (12, 1))[None], dtype=torch.float32)
    result = explain_signal(ModalityForward(model, batch), target=1, recorded_seconds=10.0, top_k=2, window_s=1.0)
    outside = np.ones((12, 1000), bool)
    outside[lead, window] = False
    assert np.abs(result.attributions[outside]).max() < 1e-9
    assert result.lead_importance.argmax() == lead and result.lead_importance[lead] == pytest.approx(1.0)
    best = result.segments[0]
    assert best.start_s == pytest.approx(3.0) and best.end_s == pytest.approx(4.0)
    assert abs(result.convergence_delta) < 1e-3
    assert result.times[-1] == pytest.approx(9.99) and result.attention_step_s == pytest.approx(0.1)


def test_top_segments_do_not_overlap():
    magnitude = np.zeros(100)
    magnitude[10:15] = 1
    magnitude[15:25] = 2
    magnitude[70:80] = 0.5
    segments = top_segments(magnitude, fs=10.0, k=3, window_s=1.0)
    spans = sorted((s.start_s, s.end_s) for s in segments)
    assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:]))
    assert (segments[0].start_s, segments[0].end_s, segments[0].score) == pytest.approx((1.5, 2.5, 20.0))


def test_tiny_neurofusion_signal_explanation(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    case = next(c for c in tiny_cohort if c.signal is not None)
    batch = Predictor(model, tiny_tokenizer).batch([case])
    result = explain_signal(ModalityForward(model, batch), target=0, recorded_seconds=case.signal.duration_s, n_steps=8)
    assert result.attributions.shape == (12, 200) and result.attention.shape == (200 // model.signal_downsample,)
    assert result.attention.sum() == pytest.approx(1.0, abs=1e-5)
    assert result.recorded_seconds == 4.0  # the tiny model reads 4 s of the 10 s recording
    assert result.lead_importance.sum() == pytest.approx(1.0)


def test_the_pair_max_is_the_max_pool_in_values_and_gradients():
    torch.manual_seed(0)
    x = torch.relu(torch.randn(3, 4, 11))  # odd length (the last sample is dropped, as by the pool), ties at 0
    x[0, 0, 2:4] = 0.5  # a tie of positive values: the gradient goes to the first, as the pool's
    pooled, paired = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    expected, found = torch.nn.MaxPool1d(2)(pooled), _PairMax()(paired)
    assert torch.equal(found, expected)
    weights = torch.randn(expected.shape)
    (expected * weights).sum().backward()
    (found * weights).sum().backward()
    assert torch.equal(paired.grad, pooled.grad)


def _whole_encoder_path(path, encoder) -> IntegrationPath:
    return IntegrationPath(path.modality, path.kind, path.inputs, path.baseline, lambda x: encoder(x).embedding)


def test_the_signal_path_runs_the_encoder_blocks_with_the_same_map(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    case = next(c for c in tiny_cohort if c.signal is not None)
    forward = ModalityForward(model, Predictor(model, tiny_tokenizer).batch([case]))
    encoder = model.encoders["signal"]
    blocks = _path_blocks(encoder)
    assert blocks is not None and any(isinstance(m, _PairMax) for m in blocks)
    signal = forward.inputs("signal")["signal"]
    with torch.no_grad():
        assert torch.allclose(encoder.head(blocks(signal)).embedding, encoder(signal).embedding, rtol=0, atol=1e-7)
    path = signal_path(forward, 0, case.signal.duration_s).path
    ((_, found, found_c),) = integrate(forward, [path], 0, Integration(n_steps=12))
    ((_, expected, expected_c),) = integrate(forward, [_whole_encoder_path(path, encoder)], 0, Integration(n_steps=12))
    assert float((found - expected).abs().max()) <= 1e-6 * float(expected.abs().max())
    assert found_c.delta == pytest.approx(expected_c.delta, abs=1e-7)


def test_an_encoder_without_pooled_blocks_runs_as_it_is():
    model = WindowECGModel(CONFIG, 1, slice(300, 400))
    assert _path_blocks(model.encoders["signal"]) is None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_signal_path_on_cuda_equals_the_cpu_map(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    case = next(c for c in tiny_cohort if c.signal is not None)
    cpu = explain_signal(ModalityForward(model, Predictor(model, tiny_tokenizer).batch([case])), 0,
                         case.signal.duration_s, n_steps=8)
    model = model.to("cuda")
    try:
        forward = ModalityForward(model, Predictor(model, tiny_tokenizer, "cuda").batch([case]))
        ((_, attributions, _),) = integrate(forward, [signal_path(forward, 0, case.signal.duration_s).path], 0,
                                            Integration(n_steps=8))
        assert attributions.device.type == "cuda"
        gpu = attributions[0].cpu().numpy()
    finally:
        model.to("cpu")
    np.testing.assert_allclose(gpu, cpu.attributions, rtol=1e-3, atol=1e-4 * float(np.abs(cpu.attributions).max()))


def test_the_demo_ecg_map_at_50_steps_is_the_whole_encoder_map(demo_case_forward):
    """Today's default on the bundled demo: the same map as the encoder run as it is (measured identical)."""
    model, case, forward = demo_case_forward
    path = signal_path(forward, 0, case.signal.duration_s).path
    ((_, found, found_c),) = integrate(forward, [path], 0, Integration(n_steps=50))
    ((_, expected, expected_c),) = integrate(forward, [_whole_encoder_path(path, model.encoders["signal"])], 0,
                                             Integration(n_steps=50))
    assert float((found - expected).abs().max()) <= 1e-6 * float(expected.abs().max())
    assert found_c.delta == pytest.approx(expected_c.delta, abs=1e-7)
