"""Do a model's explanations find the modality pair a synthetic case's interaction rule planted? For each case
whose ground truth names an interaction pair (``interaction_pair``, e.g. "signal+tabular") and that has both
modalities of the pair, rank the pairs of modalities the case has by a pair score and record where the planted
pair lands: by the size of its pairwise Shapley interaction index |I_ij| (does the model's output treat the pair
as a unit?) and by its symmetrised cross-modal attention a_ij + a_ji (does attention point at it?). Chance puts
the planted pair first in 1 / (number of pairs) of cases.

Rankings count ties against the planted pair: it is first only when strictly above every other pair, so a model
whose interactions are all 0 never "finds" it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd

PAIR_COLUMN = "interaction_pair"
ROLE_COLUMN = "interaction_role"


def pair_indices(pair: str, names: tuple[str, ...]) -> tuple[int, int]:
    """'signal+tabular' -> the two modalities' positions in ``names`` (sorted)."""
    parts = pair.split("+")
    unknown = [p for p in parts if p not in names]
    if len(parts) != 2 or unknown or parts[0] == parts[1]:
        raise ValueError(f"interaction pair {pair!r} must name two different modalities of {names} joined by '+'")
    i, j = sorted(names.index(p) for p in parts)
    return i, j


def planted_rank(scores: np.ndarray, present: np.ndarray, planted: tuple[int, int]) -> tuple[int, int]:
    """The planted pair's rank among the unordered pairs of present modalities by ``scores`` (M, M; only
    i < j read), 1 = strictly above all others; ties count against it -> (rank, number of pairs)."""
    pairs = [(i, j) for i, j in itertools.combinations(range(len(present)), 2) if present[i] and present[j]]
    if planted not in pairs:
        raise ValueError(f"the planted pair {planted} is not among the present pairs {pairs}")
    own = scores[planted]
    return 1 + sum(scores[p] >= own for p in pairs if p != planted), len(pairs)


@dataclass(frozen=True)
class PairFinding:
    """Per case: the planted pair's rank by |interaction| and by attention (None without attention)."""

    table: pd.DataFrame  # case_id, role, pair, n_pairs, rank_interaction, rank_attention

    def summary(self) -> pd.DataFrame:
        """Per role and overall: cases, share with the planted pair first by each score, and chance."""
        rows = []
        groups = [("all", self.table), *((role, g) for role, g in self.table.groupby("role", sort=True))]
        for name, group in groups:
            row = {"cases": len(group), "chance_first": float((1 / group["n_pairs"]).mean()) if len(group) else np.nan,
                   "interaction_first": float((group["rank_interaction"] == 1).mean()) if len(group) else np.nan}
            ranks = group["rank_attention"].dropna()
            row["attention_first"] = float((ranks == 1).mean()) if len(ranks) else np.nan
            rows.append({"group": name, **row})
        return pd.DataFrame(rows).set_index("group")


def find_planted_pairs(truth: pd.DataFrame, case_ids: list[str], present: np.ndarray, interactions: np.ndarray,
                       cross_attention: np.ndarray | None, names: tuple[str, ...]) -> PairFinding:
    """``truth``: ground truth with case_id, interaction_pair, interaction_role; per explained case (rows of
    ``case_ids``): ``present`` (B, M), ``interactions`` (B, M, M), ``cross_attention`` (B, M, M) or None."""
    missing = [c for c in ("case_id", PAIR_COLUMN, ROLE_COLUMN) if c not in truth.columns]
    if missing:
        raise ValueError(f"the ground truth has no {', '.join(missing)} column: it was generated without "
                         "interaction rules (generate --interaction-share)")
    planted = truth.set_index("case_id")[[PAIR_COLUMN, ROLE_COLUMN]].fillna("")
    rows = []
    for b, case_id in enumerate(case_ids):
        if case_id not in planted.index or not planted.loc[case_id, PAIR_COLUMN]:
            continue
        pair = pair_indices(planted.loc[case_id, PAIR_COLUMN], names)
        if not (present[b, pair[0]] and present[b, pair[1]]):
            continue  # the case lacks a modality of its pair: nothing to find
        rank_i, n_pairs = planted_rank(np.abs(interactions[b]), present[b], pair)
        rank_a = None
        if cross_attention is not None:
            symmetric = cross_attention[b] + cross_attention[b].T
            rank_a = planted_rank(symmetric, present[b], pair)[0]
        rows.append({"case_id": case_id, "role": planted.loc[case_id, ROLE_COLUMN],
                     "pair": planted.loc[case_id, PAIR_COLUMN], "n_pairs": n_pairs,
                     "rank_interaction": rank_i, "rank_attention": rank_a})
    columns = ["case_id", "role", "pair", "n_pairs", "rank_interaction", "rank_attention"]
    return PairFinding(pd.DataFrame(rows, columns=columns))
