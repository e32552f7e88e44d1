"""Tiny models whose correct explanation is known in advance (as Captum's basic_models)."""

from __future__ import annotations

import torch

from neurofusion.data.dataset import Batch
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
