"""ECG explanations for one case: Integrated Gradients per lead and time, the encoder's temporal attention
on the recording's time axis (seconds), per-lead importance and the top-k time segments. The integral runs
on the shared engine (:mod:`explain.integrated`); :func:`signal_path` is its path."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from explain._forward import ModalityForward, model_lock
from explain.integrated import Cancel, Completeness, Integration, IntegrationPath, Prepared, integrate


@dataclass
class Segment:
    start_s: float
    end_s: float
    score: float  # summed |attribution| over all leads in the window


@dataclass
class SignalExplanation:
    target: int
    leads: list[str]
    fs: float  # the model's sampling rate: attributions are on its resampled time axis
    times: np.ndarray  # (T,) seconds from the start of the recording
    attributions: np.ndarray  # (L, T) signed IG attribution per lead and sample (logit units, flat-line baseline)
    lead_importance: np.ndarray  # (L,) share of total |attribution| per lead, 0 for leads not recorded
    recorded: np.ndarray  # (L,) bool: lead present in the recording
    recorded_seconds: float  # beyond this the model saw zero padding
    attention: np.ndarray  # (T',) temporal attention weights (sum to 1)
    attention_times: np.ndarray  # (T',) centre of each attention step, seconds
    attention_step_s: float
    segments: list[Segment]  # top-k windows by attribution, highest first
    convergence_delta: float
    completeness: Completeness | None = None  # steps, relative completeness error, converged


def explain_signal(forward: ModalityForward, target: int, recorded_seconds: float, *, n_steps: int = 50,
                   internal_batch_size: int | None = None, top_k: int = 3, window_s: float = 0.5,
                   modality: str | None = None, integration: Integration | None = None,
                   cancel: Cancel = None) -> SignalExplanation:
    """Integrated Gradients over signal modality ``modality`` (default the first declared), per lead and
    sample, with the encoder's temporal attention and the top segments. ``integration``: how the path is
    integrated (default exactly ``n_steps`` Gauss-Legendre steps)."""
    prepared = signal_path(forward, target, recorded_seconds, top_k=top_k, window_s=window_s, modality=modality)
    integration = integration or Integration(n_steps=n_steps, internal_batch_size=internal_batch_size)
    ((_, attributions, completeness),) = integrate(forward, [prepared.path], target, integration, cancel)
    return prepared.finish(attributions, completeness)


def signal_path(forward: ModalityForward, target: int, recorded_seconds: float, *, top_k: int = 3,
                window_s: float = 0.5, modality: str | None = None) -> Prepared:
    """The Integrated Gradients path of a signal modality (flat line to the recording, through its encoder)
    and how its attributions become the panel."""
    name = forward.first("signal") if modality is None else modality
    if name is None or not forward.has(name):
        raise ValueError("this case has no ECG to explain" if name is None or name == "signal"
                         else f"this case has no {name} signal to explain")
    model = forward.model
    spec = model.config.input_spec()
    tensors = forward.inputs(name)
    signal = tensors["signal"]  # (1, L, T)
    encoder = model.encoders[name]
    blocks = _path_blocks(encoder)
    if blocks is None:  # another architecture: the encoder as it is
        path = IntegrationPath(name, "signal", signal, torch.zeros_like(signal), lambda x: encoder(x).embedding)
    else:
        path = IntegrationPath(name, "signal", signal, torch.zeros_like(signal),
                               lambda x: encoder.head(blocks(x)).embedding)

    def finish(attributions: torch.Tensor, completeness: Completeness) -> SignalExplanation:
        with model_lock(model), torch.no_grad():
            attention = encoder(signal).attention[0].float().cpu().numpy()  # (T',)
        attr = attributions[0].float().cpu().numpy()  # (L, T)
        recorded = tensors["lead_mask"][0].cpu().numpy()
        magnitude = np.abs(attr).sum(1) * recorded
        step = getattr(encoder, "downsample", model.signal_downsample) / spec.signal_fs
        return SignalExplanation(
            target=target,
            leads=list(spec.leads),
            fs=spec.signal_fs,
            times=np.arange(attr.shape[1]) / spec.signal_fs,
            attributions=attr,
            lead_importance=magnitude / magnitude.sum() if magnitude.sum() > 0 else magnitude,
            recorded=recorded,
            recorded_seconds=min(recorded_seconds, spec.signal_seconds),
            attention=attention,
            attention_times=(np.arange(len(attention)) + 0.5) * step,
            attention_step_s=step,
            segments=top_segments(np.abs(attr).sum(0), spec.signal_fs, top_k, window_s),
            convergence_delta=completeness.delta,
            completeness=completeness,
        )

    return Prepared(path, finish)


class _PairMax(nn.Module):
    """``MaxPool1d(2)`` as the larger of each pair of samples: (B, C, T) -> (B, C, T // 2), the same values and
    the same gradient (to the first of two equal values, as the pool), measured faster on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : x.shape[-1] // 2 * 2].unflatten(-1, (-1, 2)).max(-1).values


def _pair_pool(module) -> bool:
    return (isinstance(module, nn.MaxPool1d) and module.kernel_size in (2, (2,)) and module.stride in (2, (2,))
            and module.padding in (0, (0,)) and module.dilation in (1, (1,)) and not module.ceil_mode
            and not module.return_indices)


def _path_blocks(encoder) -> nn.Sequential | None:
    """A convolutional ECG encoder's blocks as its path runs them: each ReLU + MaxPool1d(2) as the pair max
    first and the ReLU on half the samples (relu(max(a, b)) = max(relu(a), relu(b)), and the gradient takes
    the same sample), sharing the encoder's modules. The same function and gradients; None when the encoder
    has no such blocks (another architecture), which then runs as it is."""
    blocks = getattr(encoder, "conv", None)
    if not isinstance(blocks, nn.Sequential) or not callable(getattr(encoder, "head", None)):
        return None
    layers, out, k = list(blocks), [], 0
    while k < len(layers):
        if isinstance(layers[k], nn.ReLU) and k + 1 < len(layers) and _pair_pool(layers[k + 1]):
            out += [_PairMax(), layers[k]]
            k += 2
        else:
            out.append(_PairMax() if _pair_pool(layers[k]) else layers[k])
            k += 1
    if not any(isinstance(m, _PairMax) for m in out):
        return None
    return nn.Sequential(*out)


def top_segments(magnitude: np.ndarray, fs: float, k: int, window_s: float) -> list[Segment]:
    """The k non-overlapping windows of ``window_s`` seconds with the largest summed magnitude (T,)."""
    width = max(1, int(round(window_s * fs)))
    if len(magnitude) < width:
        return [Segment(0.0, len(magnitude) / fs, float(magnitude.sum()))]
    sums = np.convolve(magnitude, np.ones(width), mode="valid")  # window starting at each sample
    taken = np.zeros(len(sums), dtype=bool)
    segments = []
    for start in np.argsort(-sums, kind="stable"):
        if len(segments) == k:
            break
        if taken[start]:
            continue
        segments.append(Segment(start / fs, (start + width) / fs, float(sums[start])))
        taken[max(0, start - width + 1):start + width] = True  # no overlap with a chosen window
    return segments
