"""Does cross-modal attention point at the modality pairs that interact? The rank correlation (Spearman)
between the symmetrised attention of each unordered pair of modalities, a_ij + a_ji, and the size of the pair's
Shapley interaction index |I_ij| (:mod:`explain.interactions`), for one case or for cohort means by class.

Attention says which modalities the model mixes; the interaction index says which pairs do more (or less)
together than apart in the explained output. A high rho means the pairs that attend to each other most are the
pairs that interact most. It is undefined (NaN, with the reason) with fewer than 3 pairs, or when either side is
the same for every pair (e.g. an additive model, whose interactions are all 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

MIN_PAIRS = 3  # a rank correlation of two points is always +-1: it says nothing
# Values closer than this are the same: attention weights and subset values come from float32 model outputs
# (about 1e-7 relative), so smaller spreads are rounding, not a ranking.
TOLERANCE = 1e-6


@dataclass(frozen=True)
class AttentionInteractionCorrelation:
    """Spearman rho between a_ij + a_ji and |I_ij| over ``pairs`` (i < j, row-major order); ``attention`` and
    ``interaction`` (n_pairs,) are the two sides compared. rho is NaN when undefined, ``reason`` says why."""

    rho: float
    n_pairs: int
    pairs: tuple[tuple[int, int], ...]
    attention: np.ndarray  # (n_pairs,) symmetrised attention of each pair
    interaction: np.ndarray  # (n_pairs,) |interaction index| of each pair
    reason: str | None = None

    def pair_names(self, names: Sequence[str]) -> list[str]:
        """The pairs as 'a–b' with the modalities' names (or titles), in ``pairs`` order."""
        return [f"{names[i]}–{names[j]}" for i, j in self.pairs]


def attention_interaction_correlation(attention: np.ndarray, interactions: np.ndarray,
                                      present: Sequence[bool] | np.ndarray, *,
                                      tolerance: float = TOLERANCE) -> AttentionInteractionCorrelation:
    """One case: attention (M, M) (head-averaged, row = query), interactions (M, M) (the case's Shapley
    interaction index, :func:`explain.interactions.shapley_interactions`), present (M,) bool. Only pairs of
    modalities the case has are compared (a missing modality's attention is to its learned placeholder)."""
    attention, interactions = _square(attention, "attention"), _square(interactions, "interactions")
    if interactions.shape != attention.shape:
        raise ValueError(f"attention {attention.shape} and interactions {interactions.shape} must be the same "
                         "(M, M) over the same modalities")
    mask = np.asarray(present)
    if mask.dtype != bool or mask.shape != (len(attention),):
        raise ValueError(f"present must be ({len(attention)},) bool, one flag per modality, got "
                         f"{mask.dtype} {mask.shape}")
    pairs = [(i, j) for i in range(len(mask)) for j in range(i + 1, len(mask)) if mask[i] and mask[j]]
    for i, j in pairs:
        if not np.isfinite([attention[i, j], attention[j, i], interactions[i, j]]).all():
            raise ValueError(f"attention and interactions must be finite for present modalities {i} and {j}")
    return _correlate(attention, interactions, pairs, tolerance)


def class_correlations(attention: Mapping[str, np.ndarray], interactions: Mapping[str, np.ndarray],
                       classes: Sequence[str] | None = None, *, tolerance: float = TOLERANCE) -> pd.DataFrame:
    """Cohort version over mean matrices by group (class): for each group of ``classes`` (default those of
    ``attention``), the correlation of its mean attention (M, M) with its mean interaction matrix (M, M)
    (pass the mean |I| to ask whether attention follows how strongly pairs interact in either direction).
    A pair is compared when both of its attention cells and its interaction are defined (not NaN: some case
    of the group has both modalities). Columns: group, rho, n_pairs, reason; one row per group, a group
    missing from either mapping has rho NaN and says so."""
    rows = []
    for group in (list(attention) if classes is None else list(classes)):
        if group not in attention or group not in interactions:
            which = "attention" if group not in attention else "interaction"
            rows.append({"group": group, "rho": math.nan, "n_pairs": 0,
                         "reason": f"not defined: no mean {which} matrix for {group}"})
            continue
        a = _square(attention[group], f"attention of {group!r}")
        b = _square(interactions[group], f"interactions of {group!r}")
        if a.shape != b.shape:
            raise ValueError(f"attention {a.shape} and interactions {b.shape} of {group!r} must be the same (M, M)")
        pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))
                 if np.isfinite([a[i, j], a[j, i], b[i, j]]).all()]
        result = _correlate(a, b, pairs, tolerance)
        rows.append({"group": group, "rho": result.rho, "n_pairs": result.n_pairs, "reason": result.reason})
    return pd.DataFrame(rows, columns=["group", "rho", "n_pairs", "reason"])


@dataclass(frozen=True)
class InteractionMeans:
    """Per group (class): the mean interaction matrix (M, M), the mean |interaction| (M, M), each cell over the
    cases of the group that have both modalities (NaN where none has, and on the diagonal), and the cases."""

    mean: dict[str, np.ndarray]
    mean_abs: dict[str, np.ndarray]
    counts: dict[str, int]


def interaction_means(interactions: np.ndarray, present: np.ndarray, groups: Sequence[str],
                      classes: Sequence[str] | None = None) -> InteractionMeans:
    """interactions (B, M, M), present (B, M) bool, groups (B,) each case's group (None: in none, e.g. an
    unlabelled case grouped by true class); ``classes``: the groups to return, in order (default those that
    occur, in order of appearance), a group without cases all NaN. The matrix form of
    :func:`explain.interactions.mean_interactions` (same cases, same means) for figures and correlations."""
    values = np.asarray(interactions, dtype=float)
    mask = np.asarray(present)
    if values.ndim != 3 or values.shape[1] != values.shape[2]:
        raise ValueError(f"interactions must be (cases, M, M), got shape {values.shape}")
    if mask.dtype != bool or mask.shape != values.shape[:2]:
        raise ValueError(f"present must be (cases, M) = {values.shape[:2]} bool, got {mask.dtype} {mask.shape}")
    labels = np.asarray(list(groups), dtype=object)
    if labels.shape != (len(values),):
        raise ValueError(f"groups must name one group per case ({len(values)}), got {len(labels)}")
    order = list(pd.unique(labels[pd.notna(labels)])) if classes is None else list(classes)
    both = mask[:, :, None] & mask[:, None, :]  # (B, M, M)
    off_diagonal = ~np.eye(values.shape[1], dtype=bool)
    mean, mean_abs, counts = {}, {}, {}
    for group in order:
        chosen = labels == group
        weight = (both & chosen[:, None, None]).sum(0)  # (M, M) cases with both, per cell
        defined = (weight > 0) & off_diagonal
        with np.errstate(invalid="ignore", divide="ignore"):
            total = np.where(both, values, 0.0)[chosen].sum(0)
            total_abs = np.where(both, np.abs(values), 0.0)[chosen].sum(0)
            mean[group] = np.where(defined, total / weight, np.nan)
            mean_abs[group] = np.where(defined, total_abs / weight, np.nan)
        counts[group] = int(chosen.sum())
    return InteractionMeans(mean, mean_abs, counts)


def _square(matrix: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"{name} must be a square (M, M) matrix over the modalities, got shape {values.shape}")
    return values


def _correlate(attention: np.ndarray, interactions: np.ndarray, pairs: list[tuple[int, int]],
               tolerance: float) -> AttentionInteractionCorrelation:
    a = np.array([attention[i, j] + attention[j, i] for i, j in pairs], dtype=float)
    b = np.array([abs(interactions[i, j]) for i, j in pairs], dtype=float)
    reason = None
    if len(pairs) < MIN_PAIRS:
        reason = (f"not defined: {len(pairs)} modality pair{'' if len(pairs) == 1 else 's'} to compare; a rank "
                  f"correlation needs at least {MIN_PAIRS}, i.e. 3 modalities present")
    elif np.ptp(a) <= tolerance:
        reason = f"not defined: the attention is the same for all {len(pairs)} pairs"
    elif np.ptp(b) <= tolerance:
        reason = (f"not defined: the |interaction| is the same for all {len(pairs)} pairs"
                  + (" (all 0: the model is additive here)" if b.max() <= tolerance else ""))
    rho = math.nan if reason else float(spearmanr(a, b).statistic)
    return AttentionInteractionCorrelation(rho, len(pairs), tuple(pairs), a, b, reason)
