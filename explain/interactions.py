"""Pairwise Shapley interaction index between modalities (Grabisch 1997), exact, from the 2^M subset values
that :func:`explain.importance.modality_importance` already computed: no extra forward pass.

For modalities i != j of M, with v(S) the explained value (probability of the explained class, or a survival
model's quantity) when only the modalities in S are shown (the others take their learned missing embedding):

    I_ij = sum over S subset of M \\ {i, j} of  |S|! (M - |S| - 2)! / (M - 1)!
                                              * [v(S + i + j) - v(S + i) - v(S + j) + v(S)]

It is the average, over the contexts S the pair can join, of how much more (I > 0) or less (I < 0) the two
modalities do together than the sum of what each does alone: 0 for every pair of a model that is additive
over modalities. A modality the case lacks interacts with nothing (its subsets are the same as without it),
so its row and column are 0. The diagonal is 0 here (the Shapley value itself is the main effect).

:func:`interaction_aware_scores` ranks modalities by what each does alone and in combination,
|phi_m| + 1/2 sum_j |I_mj|, for comparison with rankings (clinicians') that credit evidence read jointly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from explain.importance import ModalityImportance, _check_count


@lru_cache(maxsize=None)
def interaction_weights(n: int) -> np.ndarray:
    """(2**n, n, n) coefficients W with I = v @ W for a case's subset values v (2**n,) (subset k = the binary
    expansion of k, bit j = modality j, as ``explain.importance.subsets``); zero on the diagonal. Cached."""
    _check_count(n)
    weights = np.zeros((2**n, n, n))
    if n < 2:
        return weights
    size_weight = [math.factorial(s) * math.factorial(n - s - 2) / math.factorial(n - 1) for s in range(n - 1)]
    for i in range(n):
        for j in range(i + 1, n):
            pair = (1 << i) | (1 << j)
            for k in range(2**n):
                if k & pair:
                    continue  # S must exclude both
                w = size_weight[bin(k).count("1")]
                for subset, sign in ((k | pair, 1.0), (k | (1 << i), -1.0), (k | (1 << j), -1.0), (k, 1.0)):
                    weights[subset, i, j] += sign * w
            weights[:, j, i] = weights[:, i, j]
    weights.setflags(write=False)
    return weights


def shapley_interactions(importance: ModalityImportance) -> np.ndarray:
    """(B, M, M) exact pairwise Shapley interaction index of each case, symmetric, zero on the diagonal and
    for modalities the case lacks, in the units of the Shapley values (``importance.explained``)."""
    values = np.asarray(importance.subset_probability, dtype=float)  # (B, 2**M)
    n = len(importance.names)
    if values.ndim != 2 or values.shape[1] != 2**n:
        raise ValueError(f"subset values must be (cases, 2**{n}) for the {n} modalities "
                         f"({', '.join(importance.names)}), got shape {values.shape}")
    interactions = np.einsum("bk,kij->bij", values, interaction_weights(n))
    present = np.asarray(importance.present, dtype=bool)
    both = present[:, :, None] & present[:, None, :]
    return np.where(both, interactions, 0.0)


def interaction_frame(importance: ModalityImportance, case: int = 0) -> pd.DataFrame:
    """One case's (M x M) interaction matrix with the modality names on both axes."""
    matrix = shapley_interactions(importance)[case]
    return pd.DataFrame(matrix, index=list(importance.names), columns=list(importance.names))


def mean_interactions(importance: ModalityImportance, groups: Sequence[str] | None = None) -> pd.DataFrame:
    """Cohort means of the interaction index, one row per (group, modality pair): group (e.g. the true or
    predicted class; "all" without groups), a, b, mean (over the cases that have both a and b), mean_abs and n
    (those cases). Pairs no case has both of have n 0 and NaN means."""
    interactions = shapley_interactions(importance)
    present = np.asarray(importance.present, dtype=bool)
    labels = np.asarray(["all"] * len(interactions) if groups is None else list(groups), dtype=object)
    if len(labels) != len(interactions):
        raise ValueError(f"groups must name one group per case ({len(interactions)}), got {len(labels)}")
    names = list(importance.names)
    rows = []
    for group in pd.unique(labels):
        chosen = labels == group
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                both = chosen & present[:, i] & present[:, j]
                values = interactions[both, i, j]
                rows.append({"group": group, "a": names[i], "b": names[j], "n": int(both.sum()),
                             "mean": float(values.mean()) if both.any() else math.nan,
                             "mean_abs": float(np.abs(values).mean()) if both.any() else math.nan})
    return pd.DataFrame(rows, columns=["group", "a", "b", "n", "mean", "mean_abs"])


def interaction_aware_scores(importance: ModalityImportance) -> np.ndarray:
    """(B, M) modality scores that credit what a modality does in combination with others:

        score_m = |phi_m| + 1/2 * sum over j != m of |I_mj|

    with phi the exact Shapley value and I the pairwise Shapley interaction index, NaN for modalities the
    case lacks. Why this form: the Shapley value splits a pair term b of v between its two modalities
    (phi gets b / 2 each), so a finding that exists only when two modalities are read together ranks each of
    them below a modality carrying b / 2 + epsilon alone; adding half of |I| (= |b| / 2) gives each member of
    the pair the whole |b|, what the combination is worth, and a rater who needs both to see the finding
    credits both. Absolute values because redundant evidence (I < 0: either modality alone suffices) is
    also evidence the modality carries: two redundant copies of b score |b| each, as either alone would.
    An additive game (every I = 0) scores exactly |phi|.
    """
    return interaction_aware(importance.shapley, shapley_interactions(importance), importance.present)


def interaction_aware(shapley: np.ndarray, interactions: np.ndarray, present: np.ndarray) -> np.ndarray:
    """:func:`interaction_aware_scores` from arrays: Shapley values (B, M), the interaction index (B, M, M;
    its diagonal is ignored) and presence (B, M) -> (B, M) scores, NaN where absent. For results that keep
    the two apart (``explain.cohort.CohortImportance``: the shapley table and ``interactions``); NaN Shapley
    values of absent modalities are allowed."""
    shapley, interactions = np.asarray(shapley, dtype=float), np.asarray(interactions, dtype=float)
    present = np.asarray(present, dtype=bool)
    b, m = present.shape
    if shapley.shape != (b, m) or interactions.shape != (b, m, m):
        raise ValueError(f"need shapley (B, M), interactions (B, M, M) and present (B, M) for the same B and M; got "
                         f"{shapley.shape}, {interactions.shape} and {present.shape}")
    off_diagonal = np.where(np.eye(m, dtype=bool), 0.0, np.abs(interactions))
    both = present[:, :, None] & present[:, None, :]  # a modality interacts only with present ones
    scores = np.abs(np.where(present, shapley, 0.0)) + 0.5 * np.where(both, off_diagonal, 0.0).sum(axis=2)
    return np.where(present, scores, np.nan)
