"""Agreement between the model's modality ranking and clinicians' rankings: Kendall tau-b per case and
rater (scipy's tau-b, for every (case, rater) pair at once: ``tau_b_rows``, tested against scipy), means per
class and overall with case-bootstrap 95 % CIs, the inter-rater ceiling (mean pairwise tau, Kendall's W) and
agreement with the synthetic ground truth; several model rankings (attention,
Shapley, leave-one-out, interaction-aware) side by side against both (``compare_rankings``).

Rankings only ever compare the modalities both sides rank: a modality the case lacks is not ranked.

Modalities are whatever the tables name: an importance table's columns (the model's declared names), a
rankings table's rank columns (every column but case_id and rater, as ``read_rankings`` writes them for
the cohort's declaration), a ground-truth table's ``strength_<name>`` columns.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import rankdata

STRENGTH_PREFIX = "strength_"
_NOT_RANKS = ("case_id", "rater", "label")


# Below this many cases a case-bootstrap CI is rough: it resamples a handful of values and understates the
# uncertainty; the dashboard says so beside such a CI.
MIN_CASES_FOR_CI = 10
NO_TAU = ("not defined: no (case, rater) pair has a defined tau (each needs two or more modalities ranked "
          "by both sides, not all tied)")


@dataclass(frozen=True)
class MeanCI:
    """A mean tau with its bootstrap CI; NaN (JSON null) when not defined, and ``reason`` then says why."""

    mean: float
    ci_low: float
    ci_high: float
    n_cases: int
    reason: str | None = None

    def to_dict(self) -> dict:
        return {"mean": self.mean, "ci_low": self.ci_low, "ci_high": self.ci_high, "n_cases": self.n_cases,
                "reason": self.reason}


def importance_to_ranks(importance: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """Importance scores (rows = cases, columns = modalities, NaN = not available) -> ranks, 1 = most
    important, ties share their average rank, NaN stays NaN. ``names``: the modality columns (default all)."""
    names = list(importance.columns) if names is None else list(names)
    values = importance[names].to_numpy(dtype=float)
    ranks = rankdata(-values, method="average", axis=1, nan_policy="omit") if values.size else values.copy()
    return pd.DataFrame(ranks, index=importance.index, columns=names)


def ranking_scores(scores: pd.DataFrame | pd.Series, survival: bool = False) -> pd.DataFrame | pd.Series:
    """The scores a model's modality ranking is read from. A classifier's: the signed scores for the
    explained class (evidence for it ranks first, evidence against it last). A survival model has no class
    to be evidence for: its modalities are ranked by magnitude, the modality that moves the explained
    quantity most in either direction first, as a clinician names what matters most for a patient's
    prognosis (and as the synthetic cancer raters rank, by |contribution to the log hazard|)."""
    return scores.abs() if survival else scores


def tau_b(ranks_a: np.ndarray, ranks_b: np.ndarray) -> tuple[float, int]:
    """Kendall tau-b over the positions both rank (non-NaN) -> (tau, number compared); NaN when fewer
    than two positions are shared or one side ranks all of them equal. One pair of :func:`tau_b_rows`."""
    tau, n = tau_b_rows(np.asarray(ranks_a, dtype=float)[None], np.asarray(ranks_b, dtype=float)[None])
    return float(tau[0]), int(n[0])


def tau_b_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kendall tau-b of each row pair of ``a`` and ``b`` (R, M) at once -> (tau (R,), number compared (R,)),
    as scipy.stats.kendalltau(variant="b") over the positions both rank (tested against it): over the pairs of
    those positions, (concordant - discordant) / sqrt((pairs - ties in a) (pairs - ties in b)); NaN when fewer
    than two positions are shared or one side ranks all of them equal (the denominator is then 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    both = ~np.isnan(a) & ~np.isnan(b)  # (R, M)
    i, j = np.triu_indices(a.shape[1], k=1)
    valid = both[:, i] & both[:, j]  # (R, P): position pairs both sides rank
    with np.errstate(invalid="ignore"):
        sa, sb = np.sign(a[:, i] - a[:, j]), np.sign(b[:, i] - b[:, j])
    sa, sb = np.where(valid, sa, 0.0), np.where(valid, sb, 0.0)
    untied_a, untied_b = (sa != 0).sum(1), (sb != 0).sum(1)  # pairs - ties in a, pairs - ties in b
    denominator = np.sqrt(untied_a.astype(float) * untied_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(denominator > 0, (sa * sb).sum(1) / denominator, np.nan)
    return np.clip(tau, -1.0, 1.0), both.sum(1)


def model_vs_raters(model_ranks: pd.DataFrame, rankings: pd.DataFrame,
                    labels: pd.Series | None = None) -> pd.DataFrame:
    """One row per (case, rater) the rankings hold and the model explained: case_id, rater, label, tau,
    n_compared. ``model_ranks`` is indexed by case_id (see :func:`importance_to_ranks`)."""
    columns = ["case_id", "rater", "label", "tau", "n_compared"]
    rated = rankings[rankings["case_id"].isin(model_ranks.index)]
    if rated.empty:
        return pd.DataFrame([], columns=columns)
    case_ids = rated["case_id"].tolist()
    model = model_ranks.loc[case_ids].to_numpy(dtype=float, na_value=np.nan)
    tau, n = tau_b_rows(model, _rank_matrix(rated, list(model_ranks.columns)))
    return pd.DataFrame({"case_id": case_ids, "rater": rated["rater"].tolist(),
                         "label": [None if labels is None else labels.get(c) for c in case_ids],
                         "tau": tau, "n_compared": n.astype(int)}, columns=columns)


def mean_with_ci(per_pair: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0, ci: float = 0.95) -> MeanCI:
    """Mean tau with a percentile bootstrap CI that resamples cases (all of a case's raters together)."""
    valid = per_pair.dropna(subset=["tau"])
    if valid.empty:
        reason = "not defined: no (case, rater) pair" if per_pair.empty else NO_TAU
        return MeanCI(float("nan"), float("nan"), float("nan"), 0, reason)
    per_case = valid.groupby("case_id")["tau"].agg(["sum", "count"])
    sums, counts = per_case["sum"].to_numpy(), per_case["count"].to_numpy()
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(sums), size=(n_bootstrap, len(sums)))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    alpha = (1 - ci) / 2
    return MeanCI(float(sums.sum() / counts.sum()), float(np.quantile(means, alpha)),
                  float(np.quantile(means, 1 - alpha)), len(sums))


def summarize(per_pair: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean tau with 95 % CI overall and per class (rows), from :func:`model_vs_raters` output."""
    rows = [{"group": "all", **mean_with_ci(per_pair, n_bootstrap=n_bootstrap, seed=seed).to_dict()}]
    for label, group in per_pair.groupby("label", sort=True):
        if label == "all":  # a survival model's one group of every case: the overall row already
            continue
        rows.append({"group": label, **mean_with_ci(group, n_bootstrap=n_bootstrap, seed=seed).to_dict()})
    return pd.DataFrame(rows).set_index("group")


def per_rater(per_pair: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean tau with 95 % CI for each rater (rows, sorted by name), from :func:`model_vs_raters` output: does
    the model agree with some raters more than with others?"""
    rows = [{"rater": rater, **mean_with_ci(group, n_bootstrap=n_bootstrap, seed=seed).to_dict()}
            for rater, group in per_pair.groupby("rater", sort=True)]
    return pd.DataFrame(rows, columns=["rater", "mean", "ci_low", "ci_high", "n_cases", "reason"]).set_index("rater")


def contrast(first: pd.DataFrame, second: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0,
             ci: float = 0.95) -> dict:
    """Mean tau of two groups of (case, rater) pairs (e.g. blinded and unblinded raters, :func:`model_vs_raters`
    rows of each) and their difference second - first, with a percentile bootstrap CI that resamples the cases
    of either group together (a case rated under both protocols moves both means at once). Means are NaN, with
    ``reason``, when a group has no defined tau."""
    a, b = first.dropna(subset=["tau"]), second.dropna(subset=["tau"])
    result = {"first": mean_with_ci(first, n_bootstrap=n_bootstrap, seed=seed).to_dict(),
              "second": mean_with_ci(second, n_bootstrap=n_bootstrap, seed=seed).to_dict()}
    if a.empty or b.empty:
        return {**result, "difference": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "reason": "not defined: " + ("neither group" if a.empty and b.empty else
                                             "the first group" if a.empty else "the second group")
                          + " has a defined tau"}
    cases = np.array(sorted(set(a["case_id"]) | set(b["case_id"])), dtype=object)

    def sums(group: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        per_case = group.groupby("case_id")["tau"].agg(["sum", "count"]).reindex(cases, fill_value=0)
        return per_case["sum"].to_numpy(dtype=float), per_case["count"].to_numpy(dtype=float)

    (sa, ca), (sb, cb) = sums(a), sums(b)
    picks = np.random.default_rng(seed).integers(0, len(cases), size=(n_bootstrap, len(cases)))
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample without one group's cases: NaN, dropped
        differences = sb[picks].sum(1) / cb[picks].sum(1) - sa[picks].sum(1) / ca[picks].sum(1)
    differences = differences[~np.isnan(differences)]
    alpha = (1 - ci) / 2
    return {**result, "difference": float(sb.sum() / cb.sum() - sa.sum() / ca.sum()),
            "ci_low": float(np.quantile(differences, alpha)), "ci_high": float(np.quantile(differences, 1 - alpha)),
            "reason": None}


def inter_rater(rankings: pd.DataFrame, *, n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """The ceiling a model can reasonably reach: mean pairwise tau between raters on the cases both
    ranked (with a case-bootstrap CI), and Kendall's W per case averaged over cases ranked by >= 2 raters."""
    ranks = _rank_matrix(rankings, rank_columns(rankings))  # (rows, modalities), read once
    by_case = rankings.groupby("case_id", sort=True).indices  # case_id -> its rows' positions, in table order
    pairs = [(case_id, a, b) for case_id in sorted(by_case)  # every pair of raters of each case
             for a, b in itertools.combinations(by_case[case_id], 2)]
    cases, first, second = (list(column) for column in zip(*pairs)) if pairs else ([], [], [])
    tau, n = tau_b_rows(ranks[first], ranks[second])
    pairwise = mean_with_ci(pd.DataFrame({"case_id": cases, "tau": tau, "n_compared": n.astype(int)},
                                         columns=["case_id", "tau", "n_compared"]),
                            n_bootstrap=n_bootstrap, seed=seed)
    w = [x for x in (kendalls_w(ranks[by_case[c]]) for c in sorted(by_case)) if not np.isnan(x)]
    result = {"mean_pairwise_tau": pairwise.to_dict(), "kendalls_w": float(np.mean(w)) if w else float("nan"),
              "cases_with_two_or_more_raters": len(w)}
    if not w:
        result["kendalls_w_reason"] = ("not defined: no case is ranked by two or more raters on two or more "
                                       "shared modalities")
    return result


def kendalls_w(ranks: np.ndarray) -> float:
    """Kendall's coefficient of concordance for m raters (rows) ranking the items (columns) all of them
    ranked, with the correction for tied ranks; NaN with fewer than 2 raters or items."""
    ranks = ranks[:, ~np.isnan(ranks).any(axis=0)]
    m, n = ranks.shape
    if m < 2 or n < 2:
        return float("nan")
    ranks = np.apply_along_axis(rankdata, 1, ranks)  # re-rank 1..n over the shared items
    totals = ranks.sum(axis=0)
    s = float(((totals - totals.mean()) ** 2).sum())
    ties = sum(((counts**3 - counts).sum() for counts in (np.unique(r, return_counts=True)[1] for r in ranks)))
    denominator = m**2 * (n**3 - n) - m * ties
    return 12 * s / denominator if denominator > 0 else float("nan")


def rank_columns(rankings: pd.DataFrame) -> list[str]:
    """The modality rank columns of a rankings table: all but case_id, rater (and label)."""
    return [c for c in rankings.columns if c not in _NOT_RANKS]


def ground_truth_strengths(ground_truth: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """The ``strength_<name>`` columns of a ground-truth table as (cases x modalities), indexed by case_id;
    ``names`` (default every strength column) must each have one."""
    available = [c[len(STRENGTH_PREFIX):] for c in ground_truth.columns if c.startswith(STRENGTH_PREFIX)]
    names = available if names is None else list(names)
    absent = [n for n in names if n not in available]
    if absent:
        raise ValueError(f"the ground truth has no {STRENGTH_PREFIX}{absent[0]} column; it has strengths for "
                         f"{', '.join(available) or 'no modality'}")
    strengths = ground_truth.set_index("case_id")[[STRENGTH_PREFIX + n for n in names]]
    strengths.columns = names
    return strengths


def ground_truth_ranks(ground_truth: pd.DataFrame, names: list[str] | None = None) -> pd.DataFrame:
    """Synthetic evidence strengths -> ranks (1 = strongest), indexed by case_id."""
    return importance_to_ranks(ground_truth_strengths(ground_truth, names))


def versus_ground_truth(ranks: pd.DataFrame, ground_truth: pd.DataFrame) -> pd.DataFrame:
    """tau between any per-case ranks (model or a rater's, indexed by case_id, columns = modalities) and
    the ground truth of the same modalities."""
    truth = ground_truth_ranks(ground_truth, list(ranks.columns))
    case_ids = ranks.index.intersection(truth.index)
    tau, n = tau_b_rows(ranks.loc[case_ids].to_numpy(dtype=float, na_value=np.nan),
                        truth.loc[case_ids].to_numpy(dtype=float, na_value=np.nan))
    return pd.DataFrame({"case_id": list(case_ids), "tau": tau, "n_compared": n.astype(int)},
                        columns=["case_id", "tau", "n_compared"])


def compare_rankings(model_ranks: Mapping[str, pd.DataFrame], rankings: pd.DataFrame,
                     ground_truth: pd.DataFrame | None = None, *, n_bootstrap: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """Several model rankings side by side: for each entry of ``model_ranks`` (name -> per-case ranks indexed
    by case_id, columns = modalities, as :func:`importance_to_ranks` gives) the mean tau against the raters
    (:func:`model_vs_raters`) and, with ``ground_truth``, against the ground-truth strength ranking
    (:func:`versus_ground_truth`), each with its case-bootstrap 95 % CI. One row per ranking, indexed by name:
    raters_mean, raters_ci_low, raters_ci_high, raters_cases, raters_reason, and the same five truth_* columns
    (NaN without ground truth)."""
    rows = {}
    for name, ranks in model_ranks.items():
        row = {}
        versus = {"raters": model_vs_raters(ranks, rankings),
                  "truth": None if ground_truth is None else versus_ground_truth(ranks, ground_truth)}
        for side, per_pair in versus.items():
            result = (MeanCI(float("nan"), float("nan"), float("nan"), 0, "no ground truth") if per_pair is None
                      else mean_with_ci(per_pair, n_bootstrap=n_bootstrap, seed=seed))
            row.update({f"{side}_{key}": value for key, value in
                        (("mean", result.mean), ("ci_low", result.ci_low), ("ci_high", result.ci_high),
                         ("cases", result.n_cases), ("reason", result.reason))})
        rows[name] = row
    columns = [f"{side}_{key}" for side in ("raters", "truth")
               for key in ("mean", "ci_low", "ci_high", "cases", "reason")]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns)


def rater_ranks(rankings: pd.DataFrame, rater: str) -> pd.DataFrame:
    """One rater's rankings as float ranks (cases x modalities, NaN = not ranked) indexed by case_id, the
    form :func:`versus_ground_truth` and :func:`model_vs_raters` take for a model."""
    rows = rankings[rankings["rater"] == rater]
    if rows.empty:
        raise ValueError(f"no rankings by rater {rater!r}; raters: {sorted(set(rankings['rater']))}")
    names = rank_columns(rankings)
    return pd.DataFrame(_rank_matrix(rows, names), index=rows["case_id"].to_numpy(), columns=names)


def _rank_matrix(rankings: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The modality rank columns ``names`` as floats, NaN where not ranked (whatever the nullable dtype)."""
    return rankings[names].astype("Float64").to_numpy(dtype=float, na_value=np.nan)
