"""How much each modality drove a prediction, three ways side by side: the model's cross-modal attention,
exact Shapley values over the 2^M subsets of the M declared modalities (a hidden modality takes the model's
learned missing embedding), and leave-one-modality-out. Only modalities the case has can receive credit.

Modalities are the model's declared ones (``model.names``, in declaration order; cardio's four for a
model that declares none). Shapley values are exact for M <= MAX_MODALITIES (8: 256 subsets per case);
a model with more is refused (neurofusion refuses to build one).

Batching: the encoders run once; then every subset of every case is fused in one pass, case-major. When
B x 2^M would exceed :data:`MAX_FUSION_ROWS` (4096 rows) the cases are split into chunks of
``max(1, 4096 // 2^M)`` cases (e.g. 16 cases per pass at M = 8, 256 at M = 4), each chunk one pass; a
cardio batch of up to 256 cases is a single pass exactly as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
import numpy as np
import pandas as pd
import torch

from explain.targets import SurvivalTarget, explained_label, explained_values, is_survival
from neurofusion.data.dataset import Batch
from neurofusion.data.modalities import MAX_MODALITIES
from neurofusion.data.schema import MODALITIES
from neurofusion.inference import model_lock
from neurofusion.models.model import Encoded

MAX_FUSION_ROWS = 4096  # rows (case x subset) per fusion pass before the cases are chunked
METHODS = ("attention", "shapley", "leave_one_out")


def modality_names(model, batch: Batch | None = None) -> tuple[str, ...]:
    """The declared modality names a model explains, in declaration order: ``model.names``; for an object
    without them (a planted test model), the batch's declaration, else cardio's four."""
    names = getattr(model, "names", None)
    if names is None:
        names = batch.names if batch is not None else MODALITIES
    return tuple(names)


def _check_count(n: int) -> None:
    if not isinstance(n, int) or not 1 <= n <= MAX_MODALITIES:
        raise ValueError(f"exact Shapley values are computed for 1 to {MAX_MODALITIES} modalities "
                         f"(2^M subsets per case), got {n!r}")


@lru_cache(maxsize=None)
def subsets(n: int) -> torch.Tensor:
    """Every subset of n modalities as a presence mask, (2**n, n) bool; row k is the binary expansion of k
    (bit j = modality j). Cached per n; n from 1 to MAX_MODALITIES."""
    _check_count(n)
    return torch.tensor([[(k >> j) & 1 for j in range(n)] for k in range(2**n)], dtype=torch.bool)


N = len(MODALITIES)
SUBSETS = subsets(N)  # cardio's (16, 4)


@dataclass
class ModalityImportance:
    """Per case (B) and declared modality (M, columns named ``names``), in units of the explained value:
    the probability of the ``target`` class, or a survival model's chosen quantity (``explained``); attention
    is a share of attention. Absent modalities are NaN in the tables (their Shapley value is exactly 0)."""

    case_ids: list[str]
    target: np.ndarray  # (B,) class index explained (0 for a survival quantity)
    present: np.ndarray  # (B, M) bool
    probability_full: np.ndarray  # (B,) value with every modality the case has
    probability_none: np.ndarray  # (B,) value with all modalities missing (only learned embeddings)
    subset_probability: np.ndarray  # (B, 2**M) value under each subset of subsets(M)
    shapley: np.ndarray  # (B, M)
    leave_one_out: np.ndarray  # (B, M): v(full) - v(full without m)
    attention: np.ndarray | None  # (B, M): mean attention received from the present modalities
    cross_attention: np.ndarray | None = None  # (B, M, M): head-averaged attention with every modality
    names: tuple[str, ...] = field(default=MODALITIES)  # the declared modalities, column order
    explained: str = "probability"  # "probability" of a class, or a survival quantity's label

    def table(self, method: str) -> pd.DataFrame:
        """(cases x modalities) scores of one method, NaN for modalities the case lacks."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        values = getattr(self, method)
        if values is None:
            raise ValueError(f"this model has no cross-modal attention; use one of {METHODS[1:]}")
        return pd.DataFrame(np.where(self.present, values, np.nan), index=self.case_ids, columns=list(self.names))


def shapley_weights(n: int = N) -> np.ndarray:
    """(2**n, n) coefficient of v(S) in phi_m: +w(|S|-1) when m in S, -w(|S|) when not, with
    w(s) = s! (n - s - 1)! / n!."""
    _check_count(n)
    weight = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    coefficients = np.zeros((2**n, n))
    for k in range(2**n):
        members = [(k >> j) & 1 for j in range(n)]
        size = sum(members)
        for j in range(n):
            coefficients[k, j] = weight[size - 1] if members[j] else -weight[size]
    return coefficients


@lru_cache(maxsize=None)
def _coefficients(n: int) -> torch.Tensor:
    return torch.tensor(shapley_weights(n), dtype=torch.float64)  # (2**n, n), cached per n


def cases_per_pass(n_modalities: int) -> int:
    """How many cases one fusion pass takes: all 2^M subsets of each, at most MAX_FUSION_ROWS rows."""
    return max(1, MAX_FUSION_ROWS // 2**n_modalities)


@torch.no_grad()
def modality_importance(model, batch: Batch, target: torch.Tensor | None = None,
                        encoded: Encoded | None = None, *,
                        survival: SurvivalTarget | None = None) -> ModalityImportance:
    """Explain ``batch`` with ``model`` (anything with ``encode(batch)`` and ``fuse(encoded, present)``).

    target: (B,) class indices to explain; default the class the model predicts with all modalities (a
    survival model has one explained value, index 0). encoded: ``model.encode(batch)`` when the caller
    already has it. survival: the explained quantity of a survival model (default 5-year survival).
    """
    names = modality_names(model, batch)
    n = len(names)
    if batch.present.shape[1] != n:
        raise ValueError(f"the batch has {batch.present.shape[1]} modality columns but the model declares {n} "
                         f"({', '.join(names)})")
    b = batch.present.shape[0]
    masks = subsets(n).to(batch.present.device)
    step = cases_per_pass(n)
    values, rows_attention = [], []
    with model_lock(model):
        encoded = model.encode(batch) if encoded is None else encoded
        for start in range(0, b, step):
            part = _cases(encoded, start, min(b, start + step), b)
            count = part.present.shape[0]
            # case-major: [case 0 x 2^M subsets, case 1 x 2^M subsets, ...]; a subset cannot reveal what a case lacks
            outputs = model.fuse(part.repeat(len(masks)),
                                 masks.repeat(count, 1) & part.present.repeat_interleave(len(masks), 0))
            values.append(explained_values(model, outputs, survival).double().view(count, len(masks), -1))
            if outputs.cross_attention is not None:
                full_rows = torch.arange(count, device=masks.device) * len(masks) + _subset_index(part.present)
                rows_attention.append(outputs.cross_attention[full_rows])
    probabilities = torch.cat(values)  # (B, 2^M, C)
    full_index = _subset_index(batch.present)  # (B,)
    cases = torch.arange(b, device=full_index.device)
    full = probabilities[cases, full_index]  # (B, C)
    if target is None:
        target = full.argmax(-1)
    else:
        target = target.to(full.device)
        if target.shape != (b,) or bool(((target < 0) | (target >= full.shape[1])).any()):
            what = "class index" if full.shape[1] > 1 or not is_survival(model) else "index 0 (the survival quantity)"
            raise ValueError(f"target must be ({b},) with each a {what} in 0..{full.shape[1] - 1}, "
                             f"got {target.tolist()}")
    value = probabilities[cases, :, target]  # (B, 2^M): v(S) for the explained class
    shapley = value @ _coefficients(n).to(value.device)  # (B, M)
    leave_one_out = torch.stack([value[cases, full_index] - value[cases, full_index & ~(1 << j)] for j in range(n)], 1)
    attention = cross = None
    if rows_attention:
        full_attention = torch.cat(rows_attention)  # (B, heads, M, M)
        attention = attention_received(full_attention, batch.present).cpu().numpy()
        cross = full_attention.float().mean(1).cpu().numpy()  # (B, heads, M, M) -> (B, M, M)
    present = batch.present.cpu().numpy()
    return ModalityImportance(
        case_ids=list(batch.case_ids),
        target=target.cpu().numpy(),
        present=present,
        probability_full=value[cases, full_index].cpu().numpy(),
        probability_none=value[:, 0].cpu().numpy(),
        subset_probability=value.cpu().numpy(),
        shapley=np.where(present, shapley.cpu().numpy(), 0.0),
        leave_one_out=np.where(present, leave_one_out.cpu().numpy(), 0.0),
        attention=attention,
        cross_attention=cross,
        names=names,
        explained=explained_label(model, survival),
    )


def attention_received(cross_attention: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(B, heads, M, M) -> (B, M): the head-averaged attention each present modality receives from the
    present modalities, renormalised to sum to 1 over the present ones (0 for absent)."""
    mean = cross_attention.float().mean(1)  # (B, M queries, M keys)
    queries = present.float()[:, :, None]
    received = (mean * queries).sum(1) / queries.sum(1).clamp_min(1)  # (B, M keys)
    received = received * present.float()
    return received / received.sum(1, keepdim=True).clamp_min(1e-12)


def _subset_index(present: torch.Tensor) -> torch.Tensor:
    """(B, M) bool -> (B,) row of subsets(M) with that mask."""
    return (present.long() * (2 ** torch.arange(present.shape[1], device=present.device))).sum(1)


def _cases(encoded: Encoded, start: int, stop: int, total: int) -> Encoded:
    """Cases start:stop of an Encoded (itself when that is all of them)."""
    if start == 0 and stop == total:
        return encoded
    cut = lambda t: None if t is None else t[start:stop]  # noqa: E731
    return Encoded({m: cut(v) for m, v in encoded.vectors.items()}, cut(encoded.present),
                   cut(encoded.spatial_attention), cut(encoded.temporal_attention),
                   {m: cut(v) for m, v in encoded.maps.items()})
