"""ECG explanations: a model that reads one lead in one window gets its attributions there and nowhere else."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain._forward import ModalityForward
from explain.signal import explain_signal, top_segments
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
