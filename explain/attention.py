"""The model's M x M cross-modal attention over its declared modalities (rows = query modality, columns =
key modality, declaration order), per case and head, and its cohort averages by true and by predicted
class (the paper's figure 2A); a survival model's cases form one group "all"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from neurofusion.data.dataset import Batch
from explain.importance import modality_names
from explain.targets import is_survival
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.inference import Predictor, model_lock


@dataclass
class CaseAttention:
    case_ids: list[str]
    per_head: np.ndarray  # (B, heads, M, M), each row a distribution over the M key modalities
    present: np.ndarray  # (B, M) bool: a missing modality's row/column is its learned missing token
    names: tuple[str, ...] = MODALITIES  # the declared modalities, row and column order

    @property
    def mean(self) -> np.ndarray:
        """(B, M, M) averaged over heads."""
        return self.per_head.mean(axis=1)


@dataclass
class CohortAttention:
    classes: list[str]
    by_true: dict[str, np.ndarray]  # class -> (M, M) mean attention over that class's cases
    by_predicted: dict[str, np.ndarray]
    counts_true: dict[str, int]
    counts_predicted: dict[str, int]
    names: tuple[str, ...] = MODALITIES  # the declared modalities, row and column order


@torch.no_grad()
def cross_attention(model, batch: Batch) -> CaseAttention:
    with model_lock(model):
        output = model(batch)
    if output.cross_attention is None:
        raise ValueError(f"a {model.config.architecture} model has no cross-modal attention to show")
    return CaseAttention(list(batch.case_ids), output.cross_attention.float().cpu().numpy(),
                         batch.present.cpu().numpy(), modality_names(model, batch))


@torch.no_grad()
def cohort_attention(predictor: Predictor, cases: Sequence[Case], batch_size: int = 64) -> CohortAttention:
    """Head-averaged attention averaged per class. Each cell (query i, key j) is averaged over the cases
    that have both modalities, so a missing modality's placeholder token never dilutes the picture."""
    model = predictor.model
    survival = is_survival(model)
    names = modality_names(model)
    averager = ClassAttentionAverager(["all"] if survival else list(model.classes), len(names), names)
    for batch in predictor.batches(cases, batch_size):
        with model_lock(model):
            output = model(batch)
        if output.cross_attention is None:
            raise ValueError(f"a {model.config.architecture} model has no cross-modal attention")
        b = len(batch.case_ids)
        labels = np.zeros(b, dtype=int) if survival else batch.labels.cpu().numpy()
        predicted = np.zeros(b, dtype=int) if survival else output.probabilities.argmax(-1).cpu().numpy()
        averager.add(output.cross_attention.float().mean(1).cpu().numpy(), batch.present.cpu().numpy(),
                     labels, predicted)
    return averager.result()


class ClassAttentionAverager:
    """Accumulates head-averaged (B, M, M) attention batch by batch into per-class means by true and by
    predicted class, each cell over the cases that have both modalities."""

    def __init__(self, classes: list[str], n_modalities: int, names: tuple[str, ...] | None = None) -> None:
        self.classes = classes
        if names is None and n_modalities != len(MODALITIES):
            raise ValueError(f"name the {n_modalities} modalities (names=...); only cardio's {len(MODALITIES)} "
                             "are implied")
        self.names = MODALITIES if names is None else tuple(names)
        if len(self.names) != n_modalities:
            raise ValueError(f"{n_modalities} modalities but {len(self.names)} names: {', '.join(self.names)}")
        kinds = ("true", "predicted")
        self._sums = {kind: np.zeros((len(classes), n_modalities, n_modalities)) for kind in kinds}
        self._weights = {kind: np.zeros((len(classes), n_modalities, n_modalities)) for kind in kinds}
        self._counts = {kind: np.zeros(len(classes), dtype=int) for kind in kinds}

    def add(self, mean: np.ndarray, present: np.ndarray, labels: np.ndarray, predicted: np.ndarray) -> None:
        """mean: (B, M, M); present: (B, M) bool; labels: (B,) class index, -1 = unlabelled; predicted: (B,)."""
        both = (present[:, :, None] & present[:, None, :]).astype(float)  # (B, M, M)
        for kind, index in (("true", labels), ("predicted", predicted)):
            index = np.asarray(index)
            keep = index >= 0  # an unlabelled case has no true class
            # np.add.at adds case by case in order (the same sums as a loop), without a Python loop over cases
            np.add.at(self._sums[kind], index[keep], mean[keep] * both[keep])
            np.add.at(self._weights[kind], index[keep], both[keep])
            np.add.at(self._counts[kind], index[keep], 1)

    def result(self) -> CohortAttention:
        averaged = {kind: np.divide(self._sums[kind], self._weights[kind], out=np.full_like(self._sums[kind], np.nan),
                                    where=self._weights[kind] > 0) for kind in self._sums}
        return CohortAttention(
            classes=self.classes,
            by_true={c: averaged["true"][k] for k, c in enumerate(self.classes)},
            by_predicted={c: averaged["predicted"][k] for k, c in enumerate(self.classes)},
            counts_true={c: int(self._counts["true"][k]) for k, c in enumerate(self.classes)},
            counts_predicted={c: int(self._counts["predicted"][k]) for k, c in enumerate(self.classes)},
            names=self.names,
        )
