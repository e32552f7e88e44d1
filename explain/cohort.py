"""Cohort-level explanations: modality importance for every case (three methods), averaged by class, and
its agreement with clinicians' rankings and with the synthetic ground truth.

Columns follow the model's declared modalities (``CohortImportance.names``, declaration order). A survival
model has no classes: its cases are grouped as one group "all" (label and predicted both "all"), the
scores are in units of its explained quantity (:class:`explain.targets.SurvivalTarget`), and its modality
rankings are by magnitude (:func:`explain.agreement.ranking_scores`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from tqdm import tqdm

from explain.agreement import (
    ground_truth_strengths,
    importance_to_ranks,
    inter_rater,
    model_vs_raters,
    ranking_scores,
    summarize,
    versus_ground_truth,
)
from explain.attention import ClassAttentionAverager, CohortAttention
from explain.importance import METHODS, modality_importance, modality_names
from explain.interaction_attention import InteractionMeans, interaction_means
from explain.interactions import interaction_aware, shapley_interactions
from explain.targets import SurvivalTarget, is_survival
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.inference import Predictor

SURVIVAL_GROUP = "all"  # the one group of a survival model's cases (it has no classes)
# A ranking derived from two of the table's methods rather than stored in it: |Shapley| + 1/2 sum |I| per
# modality (explain.interactions.interaction_aware_scores), available when the result carries interactions.
INTERACTION_AWARE = "interaction_aware"


@dataclass
class CohortImportance:
    """One row per case: case_id, label, predicted, then ``<method>_<modality>`` scores (NaN = absent).
    ``attention``: the cross-modal attention averaged by class, from the same model pass (None for an
    architecture without cross-modal attention). ``interactions``: (cases, M, M) each case's pairwise Shapley
    interaction index (:func:`explain.interactions.shapley_interactions`, in the units of the scores; 0 where
    the case lacks either modality), rows in ``table`` order; None when not computed."""

    table: pd.DataFrame
    attention: CohortAttention | None = None
    names: tuple[str, ...] = MODALITIES  # the declared modalities, column order
    explained: str = "probability"  # what the scores are in: a class probability, or a survival quantity
    survival: bool = False  # scores of a survival model: ranked by magnitude (explain.agreement.ranking_scores)
    interactions: np.ndarray | None = None  # (cases, M, M), rows in table order

    def ranks(self, method: str) -> pd.DataFrame:
        """(cases x modalities) the model's ranking by one method, 1 = most important (see
        :func:`explain.agreement.ranking_scores`)."""
        return importance_to_ranks(ranking_scores(self.method(method), self.survival))

    def method(self, method: str) -> pd.DataFrame:
        """(cases x modalities) scores of one method, indexed by case_id (NaN where the case lacks the
        modality). ``interaction_aware`` is computed from the Shapley scores and the interactions."""
        if method == INTERACTION_AWARE and INTERACTION_AWARE in self.methods:
            shapley = self.method("shapley")
            scores = interaction_aware(shapley.to_numpy(dtype=float), self.interactions, shapley.notna().to_numpy())
            return pd.DataFrame(scores, index=shapley.index, columns=shapley.columns)
        columns = [f"{method}_{m}" for m in self.names]
        if columns[0] not in self.table:
            raise ValueError(f"no {method} importance in this result (methods: {self.methods})")
        frame = self.table.set_index("case_id")[columns]
        frame.columns = list(self.names)
        return frame

    @property
    def methods(self) -> list[str]:
        """The stored methods, then ``interaction_aware`` where the Shapley scores and interactions are both
        here for every case."""
        stored = [m for m in METHODS if f"{m}_{self.names[0]}" in self.table]
        derived = ("shapley" in stored and self.interactions is not None
                   and len(self.interactions) == len(self.table))
        return stored + [INTERACTION_AWARE] if derived else stored

    def by_class(self, method: str, group: str = "label", classes: Sequence[str] | None = None) -> pd.DataFrame:
        """Mean score per class (rows) and modality (columns), over the cases that have the modality; with
        ``classes``, one row per class in that order (NaN for a class without cases)."""
        frame = self.method(method)
        frame[group] = self.table.set_index("case_id")[group]
        means = frame.groupby(group).mean()
        return means if classes is None else means.reindex(list(classes))

    def interaction_means(self, group: str = "label", classes: Sequence[str] | None = None) -> InteractionMeans:
        """Mean interaction index (and mean |index|) per class of ``group`` ("label" or "predicted"), each cell
        over the cases of the class that have both modalities (:func:`explain.interaction_attention.
        interaction_means`); ``classes``: the classes in order, one without cases all NaN."""
        if self.interactions is None:
            raise ValueError("this cohort result carries no interactions (computed by cohort_importance)")
        if len(self.interactions) != len(self.table):
            raise ValueError(f"interactions cover {len(self.interactions)} cases but the table has {len(self.table)}")
        present = self.method("shapley").notna().to_numpy()  # a score exactly where the case has the modality
        return interaction_means(self.interactions, present, self.table[group].tolist(), classes)

    def not_defined(self, method: str, group: str = "label", classes: Sequence[str] | None = None,
                    cases: str = "cases") -> dict[str, dict[str, str]]:
        """{class: {modality: reason}} for the cells of :meth:`by_class` that are not defined (NaN)."""
        frame = self.method(method)
        frame[group] = self.table.set_index("case_id")[group]
        counts = frame.groupby(group).count()  # cases with a score, per class and modality
        sizes = frame.groupby(group).size()
        noun = "predicted as" if group == "predicted" else "of class"
        reasons: dict[str, dict[str, str]] = {}
        for cls in (list(classes) if classes is not None else list(counts.index)):
            if cls not in counts.index:
                reasons[cls] = {m: f"not defined: no {cases} {noun} {cls}" for m in self.names}
                continue
            missing = {m: f"not defined: none of the {int(sizes[cls])} {cases} {noun} {cls} has a {method} score "
                          f"for {m} (the modality is missing in all of them)"
                       for m in self.names if counts.loc[cls, m] == 0}
            if missing:
                reasons[cls] = missing
        return reasons


def cohort_importance(predictor: Predictor, cases: Sequence[Case], *, batch_size: int = 32,
                      progress: bool = False, survival: SurvivalTarget | None = None) -> CohortImportance:
    """Modality importance (every method) of each case and, from the same pass, the cross-modal attention
    averaged by class: one encoder pass per case serves both cohort views; each case's pairwise interactions
    come from the same subset values. ``survival``: a survival model's explained quantity (default survival at
    its horizon)."""
    rows, interactions = [], []
    model = predictor.model
    names = modality_names(model)
    survival_model = is_survival(model)
    classes = [SURVIVAL_GROUP] if survival_model else model.classes
    averager = ClassAttentionAverager(list(classes), len(names), names)
    has_attention = True
    explained = "probability"
    batches = predictor.batches(cases, batch_size)
    total = (len(cases) + batch_size - 1) // batch_size
    for batch in tqdm(batches, total=total, desc="importance", disable=not progress, file=sys.stderr):
        result = modality_importance(model, batch, survival=survival)
        explained = result.explained
        labels = np.zeros(len(result.case_ids), dtype=int) if survival_model else batch.labels.cpu().numpy()
        has_attention = result.cross_attention is not None
        if has_attention:
            averager.add(result.cross_attention, result.present, labels, result.target)
        interactions.append(shapley_interactions(result))  # from the subset values: no extra pass
        tables = {m: result.table(m) for m in METHODS if m != "attention" or result.attention is not None}
        for i, case_id in enumerate(result.case_ids):
            row = {"case_id": case_id, "label": classes[labels[i]] if labels[i] >= 0 else None,
                   "predicted": classes[int(result.target[i])]}
            for method, table in tables.items():
                row.update({f"{method}_{m}": table.iloc[i][m] for m in names})
            rows.append(row)
    return CohortImportance(pd.DataFrame(rows), averager.result() if has_attention else None, names, explained,
                            survival_model,
                            np.concatenate(interactions) if interactions else np.zeros((0, len(names), len(names))))


def clinician_agreement(importance: CohortImportance, rankings: pd.DataFrame, method: str = "shapley", *,
                        n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Kendall tau-b of the model's ranking (by ``method``) against each rater: per case and rater, mean
    per class and overall with 95 % CIs, and the inter-rater ceiling."""
    ranks = importance.ranks(method)
    labels = importance.table.set_index("case_id")["label"]
    per_pair = model_vs_raters(ranks, rankings, labels)
    return {"method": method, "per_pair": per_pair,
            "summary": summarize(per_pair, n_bootstrap=n_bootstrap, seed=seed),
            "inter_rater": inter_rater(rankings, n_bootstrap=n_bootstrap, seed=seed)}


def ground_truth_agreement(importance: CohortImportance, ground_truth: pd.DataFrame) -> pd.DataFrame:
    """For each method: mean Kendall tau of the per-case ranking against the ground-truth strength ranking,
    and the Spearman correlation of scores with strengths pooled over (case, present modality)."""
    rows = []
    truth = ground_truth_strengths(ground_truth, list(importance.names))
    for method in importance.methods:
        scores = ranking_scores(importance.method(method), importance.survival)
        taus = versus_ground_truth(importance.ranks(method), ground_truth)["tau"].dropna()
        common = scores.index.intersection(truth.index)
        pairs = pd.DataFrame({"score": scores.loc[common].to_numpy().ravel(),
                              "strength": truth.loc[common].to_numpy(dtype=float).ravel()}).dropna()
        rho = spearmanr(pairs["score"], pairs["strength"]).statistic if len(pairs) > 2 else np.nan
        reasons = []
        if not len(taus):
            reasons.append("mean_tau not defined: no case with a defined tau against the ground truth")
        if np.isnan(rho):
            reasons.append(f"Spearman not defined: {len(pairs)} (case, modality) pairs with a score"
                           if len(pairs) <= 2 else "Spearman not defined: the scores or strengths are all equal")
        rows.append({"method": method, "mean_tau": float(taus.mean()) if len(taus) else np.nan,
                     "cases": int(len(taus)), "spearman_score_vs_strength": float(rho),
                     "reason": "; ".join(reasons) or None})
    return pd.DataFrame(rows).set_index("method")
