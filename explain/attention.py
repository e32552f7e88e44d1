"""The model's 4x4 cross-modal attention (rows = query modality, columns = key modality), per case and
head, and its cohort averages by true and by predicted class (the paper's figure 2A)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from neurofusion.data.dataset import Batch
from neurofusion.data.schema import Case
from neurofusion.inference import Predictor, model_lock


@dataclass
class CaseAttention:
    case_ids: list[str]
    per_head: np.ndarray  # (B, heads, 4, 4), each row a distribution over the 4 key modalities
    present: np.ndarray  # (B, 4) bool: a missing modality's row/column is its learned missing token

    @property
    def mean(self) -> np.ndarray:
        """(B, 4, 4) averaged over heads."""
        return self.per_head.mean(axis=1)


@dataclass
class CohortAttention:
    classes: list[str]
    by_true: dict[str, np.ndarray]  # class -> (4, 4) mean attention over that class's cases
    by_predicted: dict[str, np.ndarray]
    counts_true: dict[str, int]
    counts_predicted: dict[str, int]


@torch.no_grad()
def cross_attention(model, batch: Batch) -> CaseAttention:
    with model_lock(model):
        output = model(batch)
    if output.cross_attention is None:
        raise ValueError(f"a {model.config.architecture} model has no cross-modal attention to show")
    return CaseAttention(list(batch.case_ids), output.cross_attention.float().cpu().numpy(),
                         batch.present.cpu().numpy())


@torch.no_grad()
def cohort_attention(predictor: Predictor, cases: Sequence[Case], batch_size: int = 64) -> CohortAttention:
    """Head-averaged attention averaged per class. Each cell (query i, key j) is averaged over the cases
    that have both modalities, so a missing modality's placeholder token never dilutes the picture."""
    classes = list(predictor.model.classes)
    sums = {kind: np.zeros((len(classes), 4, 4)) for kind in ("true", "predicted")}
    weights = {kind: np.zeros((len(classes), 4, 4)) for kind in ("true", "predicted")}
    counts = {kind: np.zeros(len(classes), dtype=int) for kind in ("true", "predicted")}
    for batch in predictor.batches(cases, batch_size):
        with model_lock(predictor.model):
            output = predictor.model(batch)
        if output.cross_attention is None:
            raise ValueError(f"a {predictor.model.config.architecture} model has no cross-modal attention")
        mean = output.cross_attention.float().mean(1).cpu().numpy()  # (B, 4, 4)
        present = batch.present.cpu().numpy()
        both = (present[:, :, None] & present[:, None, :]).astype(float)  # (B, 4, 4)
        groups = {"true": batch.labels.cpu().numpy(), "predicted": output.probabilities.argmax(-1).cpu().numpy()}
        for kind, index in groups.items():
            for b, c in enumerate(index):
                if c < 0:
                    continue  # unlabelled case: no true class
                sums[kind][c] += mean[b] * both[b]
                weights[kind][c] += both[b]
                counts[kind][c] += 1
    averaged = {kind: np.divide(sums[kind], weights[kind], out=np.full_like(sums[kind], np.nan),
                                where=weights[kind] > 0) for kind in sums}
    return CohortAttention(
        classes=classes,
        by_true={c: averaged["true"][k] for k, c in enumerate(classes)},
        by_predicted={c: averaged["predicted"][k] for k, c in enumerate(classes)},
        counts_true={c: int(counts["true"][k]) for k, c in enumerate(classes)},
        counts_predicted={c: int(counts["predicted"][k]) for k, c in enumerate(classes)},
    )


