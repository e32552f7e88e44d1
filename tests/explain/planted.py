"""Tiny models whose correct explanation is known in advance (as Captum's basic_models)."""

from __future__ import annotations

import torch

from neurofusion.config import ModelConfig
from neurofusion.data.dataset import Batch
from neurofusion.models.encoders import EncoderOutput
from neurofusion.models.model import Encoded, ModelOutput


class PresenceModel:
    """Two classes; logit of class 1 = sum_m weight[m] * [m present]. Modalities with equal weights are
    symmetric players, a zero weight a dummy."""

    def __init__(self, weights: list[float]) -> None:
        self.weights = torch.tensor(weights)

    def encode(self, batch: Batch) -> Encoded:
        b = batch.present.shape[0]
        return Encoded({m: torch.zeros(b, 1) for m in ("image", "text", "signal", "tabular")}, batch.present)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = encoded.present if present is None else present & encoded.present
        logit = (mask.float() * self.weights).sum(1)
        logits = torch.stack([torch.zeros_like(logit), logit], 1)
        return ModelOutput(logits=logits, probabilities=torch.softmax(logits, -1), present=mask)


def presence_batch(present: list[list[bool]]) -> Batch:
    present_t = torch.tensor(present)
    b = len(present)
    return Batch(case_ids=[f"c{i}" for i in range(b)], present=present_t, image=torch.zeros(b, 1, 4, 4),
                 signal=torch.zeros(b, 12, 10), lead_mask=torch.ones(b, 12, dtype=torch.bool),
                 numeric=torch.zeros(b, 1), numeric_mask=torch.zeros(b, 1, dtype=torch.bool),
                 categorical=torch.zeros(b, 0, dtype=torch.long), notes=[None] * b,
                 labels=torch.zeros(b, dtype=torch.long))


class _PlantedBase(torch.nn.Module):
    """Two classes; the logit of class 1 comes from one modality's planted feature."""

    modality = ""

    def __init__(self, config: ModelConfig, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.config = config
        self.encoders = torch.nn.ModuleDict({self.modality: encoder})
        self.signal_downsample = 10

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    def encode(self, batch: Batch) -> Encoded:
        b = batch.present.shape[0]
        vectors = {m: torch.zeros(b, 1) for m in ("image", "text", "signal", "tabular")}
        column = ("image", "text", "signal", "tabular").index(self.modality)
        rows = batch.present[:, column]
        vectors[self.modality] = torch.where(rows[:, None], self.encoders[self.modality](
            **({"image": batch.image} if self.modality == "image" else {"signal": batch.signal})).embedding, 0.0)
        return Encoded(vectors, batch.present)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = encoded.present if present is None else present & encoded.present
        column = ("image", "text", "signal", "tabular").index(self.modality)
        logit = 8.0 * (encoded.vectors[self.modality][:, 0] - 0.3) * mask[:, column]
        logits = torch.stack([torch.zeros_like(logit), logit], 1)
        return ModelOutput(logits=logits, probabilities=torch.softmax(logits, -1), present=mask)

    def forward(self, batch: Batch, present: torch.Tensor | None = None) -> ModelOutput:
        return self.fuse(self.encode(batch), present)


class _RegionEncoder(torch.nn.Module):
    def __init__(self, rows: slice, cols: slice) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def forward(self, image: torch.Tensor) -> EncoderOutput:
        region = image[:, 0, self.rows, self.cols]
        attention = torch.full((image.shape[0], 4, 4), 1 / 16)
        return EncoderOutput(region.mean((1, 2))[:, None], attention)


class _WindowEncoder(torch.nn.Module):
    def __init__(self, lead: int, samples: slice) -> None:
        super().__init__()
        self.lead, self.samples = lead, samples

    def forward(self, signal: torch.Tensor) -> EncoderOutput:
        window = signal[:, self.lead, self.samples]
        steps = signal.shape[-1] // 10
        attention = torch.full((signal.shape[0], steps), 1 / steps)
        return EncoderOutput(window.pow(2).mean(1)[:, None], attention)


class RegionImageModel(_PlantedBase):
    """Class 1 iff the mean brightness of one image region is high: all evidence lies in that region."""

    modality = "image"

    def __init__(self, config: ModelConfig, rows: slice, cols: slice) -> None:
        super().__init__(config, _RegionEncoder(rows, cols))


class WindowECGModel(_PlantedBase):
    """Class 1 iff one lead has energy inside one time window: the planted ECG evidence."""

    modality = "signal"

    def __init__(self, config: ModelConfig, lead: int, samples: slice) -> None:
        super().__init__(config, _WindowEncoder(lead, samples))
