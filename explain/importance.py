"""How much each modality drove a prediction, three ways side by side: the model's cross-modal attention,
exact Shapley values over the 16 modality subsets (a hidden modality takes the model's learned missing
embedding), and leave-one-modality-out. Only modalities the case has can receive credit.

All 16 subsets of a batch are evaluated in one fusion pass over encoder outputs computed once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from neurofusion.data.dataset import Batch
from neurofusion.data.schema import MODALITIES
from neurofusion.inference import model_lock
from neurofusion.models.model import Encoded

N = len(MODALITIES)
# Every subset of the four modalities as a presence mask, (16, 4); row k is the binary expansion of k.
SUBSETS = torch.tensor([[(k >> j) & 1 for j in range(N)] for k in range(2**N)], dtype=torch.bool)
METHODS = ("attention", "shapley", "leave_one_out")


@dataclass
class ModalityImportance:
    """Per case (B) and modality (4), in probability units of the ``target`` class (attention: a share
    of attention). Absent modalities are NaN in the tables (their Shapley value is exactly 0)."""

    case_ids: list[str]
    target: np.ndarray  # (B,) class index explained
    present: np.ndarray  # (B, 4) bool
    probability_full: np.ndarray  # (B,) p(target) with every modality the case has
    probability_none: np.ndarray  # (B,) p(target) with all four missing (only learned embeddings)
    subset_probability: np.ndarray  # (B, 16) p(target) under each subset of SUBSETS
    shapley: np.ndarray  # (B, 4)
    leave_one_out: np.ndarray  # (B, 4): p(full) - p(full without m)
    attention: np.ndarray | None  # (B, 4): mean attention received from the present modalities
    cross_attention: np.ndarray | None = None  # (B, 4, 4): head-averaged attention with every modality

    def table(self, method: str) -> pd.DataFrame:
        """(cases x modalities) scores of one method, NaN for modalities the case lacks."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        values = getattr(self, method)
        if values is None:
            raise ValueError(f"this model has no cross-modal attention; use one of {METHODS[1:]}")
        return pd.DataFrame(np.where(self.present, values, np.nan), index=self.case_ids, columns=list(MODALITIES))


def shapley_weights(n: int = N) -> np.ndarray:
    """(2**n, n, 2) coefficient of v(S) in phi_m: +w(|S|-1) when m in S, -w(|S|) when not, with
    w(s) = s! (n - s - 1)! / n!."""
    weight = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    coefficients = np.zeros((2**n, n))
    for k in range(2**n):
        members = [(k >> j) & 1 for j in range(n)]
        size = sum(members)
        for j in range(n):
            coefficients[k, j] = weight[size - 1] if members[j] else -weight[size]
    return coefficients


_COEFFICIENTS = torch.tensor(shapley_weights(), dtype=torch.float64)  # (16, 4)


@torch.no_grad()
def modality_importance(model, batch: Batch, target: torch.Tensor | None = None,
                        encoded: Encoded | None = None) -> ModalityImportance:
    """Explain ``batch`` with ``model`` (anything with ``encode(batch)`` and ``fuse(encoded, present)``).

    target: (B,) class indices to explain; default the class the model predicts with all modalities.
    encoded: ``model.encode(batch)`` when the caller already has it.
    """
    b = batch.present.shape[0]
    masks = SUBSETS.to(batch.present.device)
    with model_lock(model):
        encoded = model.encode(batch) if encoded is None else encoded
        # case-major: rows [case 0 x 16 subsets, case 1 x 16 subsets, ...]; a subset cannot reveal what a case lacks
        outputs = model.fuse(encoded.repeat(len(masks)),
                             masks.repeat(b, 1) & batch.present.repeat_interleave(len(masks), 0))
    probabilities = outputs.probabilities.double().view(b, len(masks), -1)  # (B, 16, C)
    full_index = _subset_index(batch.present)  # (B,)
    cases = torch.arange(b, device=full_index.device)
    full = probabilities[cases, full_index]  # (B, C)
    target = full.argmax(-1) if target is None else target.to(full.device)
    value = probabilities[cases, :, target]  # (B, 16): v(S) for the explained class
    shapley = value @ _COEFFICIENTS.to(value.device)  # (B, 4)
    leave_one_out = torch.stack([value[cases, full_index] - value[cases, full_index & ~(1 << j)] for j in range(N)], 1)
    attention = cross = None
    full_rows = cases * len(masks) + full_index
    if outputs.cross_attention is not None:
        attention = attention_received(outputs.cross_attention[full_rows], batch.present)
        cross = outputs.cross_attention[full_rows].float().mean(1).cpu().numpy()  # (B, heads, 4, 4) -> (B, 4, 4)
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
        attention=None if attention is None else attention.cpu().numpy(),
        cross_attention=cross,
    )


def attention_received(cross_attention: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """(B, heads, 4, 4) -> (B, 4): the head-averaged attention each present modality receives from the
    present modalities, renormalised to sum to 1 over the present ones (0 for absent)."""
    mean = cross_attention.float().mean(1)  # (B, 4 queries, 4 keys)
    queries = present.float()[:, :, None]
    received = (mean * queries).sum(1) / queries.sum(1).clamp_min(1)  # (B, 4 keys)
    received = received * present.float()
    return received / received.sum(1, keepdim=True).clamp_min(1e-12)


def _subset_index(present: torch.Tensor) -> torch.Tensor:
    """(B, 4) bool -> (B,) row of SUBSETS with that mask."""
    return (present.long() * (2 ** torch.arange(N, device=present.device))).sum(1)
