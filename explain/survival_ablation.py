"""Missing-modality study of a survival model: hide modalities at random rates across the cohort, or withhold
fixed sets from every case (the paper's section 7.3), and measure Harrell's C-index and the time-dependent
AUC at the model's horizon with bootstrap CIs (neurofusion.survival).

As for a classifier (:func:`explain.ablation.hidden_predictions`), the cases are encoded once and fused with
every subset of modalities hidden (2^M fusions; the encoders do not depend on what is hidden), so any random
hiding pattern or withheld set is a lookup, not a model pass. The risk score is ``1 - S(horizon)``, the one
``neurofusion.evaluate`` and ``Predictor.predict_survival`` report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from explain.ablation import random_hiding, section_7_3
from explain.importance import modality_names, subsets
from explain.targets import is_survival
from neurofusion.data.schema import Case
from neurofusion.inference import Predictor, model_lock
from neurofusion.survival import SurvivalBins, concordance_index, time_dependent_auc

# what a result is computed on when no reference for the censoring weights is given
OWN_REFERENCE = "the evaluated cases' own outcomes"


@dataclass(frozen=True)
class HiddenSurvival:
    """Predicted survival curves of every case with every subset of modalities hidden: ``curves[s]`` (N, K)
    for subset ``s`` (bit j set = declared modality j hidden), the recorded outcomes ``time`` / ``event``
    (N,) (NaN time = no outcome), the presence (N, M) each case has, the declared modalities (bit order),
    the model's time grid and horizon."""

    curves: np.ndarray  # (2 ** M, N, K)
    time: np.ndarray  # (N,)
    event: np.ndarray  # (N,)
    present: np.ndarray  # (N, M) bool
    names: tuple[str, ...]
    bins: SurvivalBins
    horizon: float

    @property
    def known(self) -> np.ndarray:
        """(N,) bool: the cases with a recorded outcome (the only ones the metrics use)."""
        return ~np.isnan(self.time)

    def risk(self, subset: int | np.ndarray) -> np.ndarray:
        """(N,) risk score 1 - S(horizon) of each case with ``subset`` hidden: one subset for every case, or
        (N,) subsets, one per case."""
        index = np.broadcast_to(np.asarray(subset), self.time.shape)
        curves = self.curves[index, np.arange(len(self.time))]  # (N, K)
        return 1.0 - np.asarray(self.bins.survival_at(curves, self.horizon), dtype=float)

    def subset(self, drop: Sequence[str]) -> int:
        """The subset index that hides the modalities ``drop``."""
        unknown = [m for m in drop if m not in self.names]
        if unknown:
            raise ValueError(f"cannot withhold {unknown[0]!r}: not a declared modality ({', '.join(self.names)})")
        return sum(1 << self.names.index(m) for m in drop)


@torch.no_grad()
def hidden_survival(predictor: Predictor, cases: Sequence[Case], *, batch_size: int = 100) -> HiddenSurvival:
    """Encode the cases once (in batches) and fuse each batch with every subset of modalities hidden. A
    classifier is refused (:func:`explain.ablation.hidden_predictions` is its study)."""
    model = predictor.model.eval()
    if not is_survival(model):
        raise ValueError("hidden_survival needs a survival model; this one is a classifier (use "
                         "explain.ablation.hidden_predictions)")
    if not cases:
        raise ValueError("hidden_survival needs at least one case")
    names = modality_names(model)
    parts, outcomes, present = [], [], []
    for batch in predictor.batches(cases, batch_size):
        hidden = subsets(len(names)).to(batch.present.device)  # row s: the modalities subset s hides
        with model_lock(model):
            encoded = model.encode(batch)
            # (2^M, B, K): S at the end of each time bin, per hidden subset
            parts.append(np.stack([model.fuse(encoded, batch.present & ~mask).survival.double().cpu().numpy()
                                   for mask in hidden]))
        outcomes.append(batch.outcomes.double().cpu().numpy())
        present.append(batch.present.cpu().numpy())
    outcome = np.concatenate(outcomes)
    return HiddenSurvival(np.concatenate(parts, axis=1), outcome[:, 0], outcome[:, 1], np.concatenate(present),
                          tuple(names), model.config.survival_bins, float(model.config.horizon))


def survival_scores(hidden: HiddenSurvival, risk: np.ndarray, *, reference: Mapping | None = None,
                    n_bootstrap: int = 200, seed: int = 0) -> dict:
    """C-index and AUC at the horizon (each {"value", "ci_low", "ci_high", "reason"}) of the (N,) ``risk``
    scores on the cases of ``hidden`` with a recorded outcome, plus n and n_events. ``reference`` (``{"time",
    "event", "source"}``, as neurofusion.evaluate.censoring_reference gives): whose outcomes weight censoring
    in the AUC; default the evaluated cases' own."""
    risk = np.asarray(risk, dtype=float)
    if risk.shape != hidden.time.shape:
        raise ValueError(f"risk must be ({len(hidden.time)},), one score per case, got shape {risk.shape}")
    known = hidden.known
    if not known.any():
        raise ValueError(f"none of the {len(known)} cases has a recorded outcome (time, event)")
    time, event = hidden.time[known], hidden.event[known]
    if reference is None:
        reference = {"time": time, "event": event, "source": OWN_REFERENCE}
    common = {"n_boot": n_bootstrap, "seed": seed}
    return {
        "n": int(known.sum()), "n_events": int((event == 1).sum()),
        "c_index": concordance_index(time, event, risk[known], **common).to_dict(),
        "auc_at_horizon": time_dependent_auc(time, event, risk[known], train_time=reference["time"],
                                             train_event=reference["event"], horizon=hidden.horizon,
                                             **common).to_dict(),
        "censoring_reference": str(reference["source"]),
    }


def missing_rate_survival(hidden: HiddenSurvival, rates: Mapping[str, float], *, reference: Mapping | None = None,
                          n_bootstrap: int = 200, seed: int = 0) -> dict:
    """Scores (:func:`survival_scores`) when each modality is additionally hidden with its rate in [0, 1],
    independently per case (the same seeded draw as explain.ablation.missing_rate_metrics: one uniform
    number per case and modality, in case order), and ``observed_share``: per modality, the share of cases
    in which it was seen."""
    names = hidden.names
    hide, subset = random_hiding(len(hidden.time), names, rates, seed)
    scores = survival_scores(hidden, hidden.risk(subset), reference=reference, n_bootstrap=n_bootstrap, seed=seed)
    observed = (hidden.present & ~hide).mean(0)
    return {**scores, "observed_share": dict(zip(names, observed.round(4).tolist()))}


def withheld_survival(hidden: HiddenSurvival, drops: Sequence[tuple[str, ...]] | None = None, *,
                      reference: Mapping | None = None, n_bootstrap: int = 200, seed: int = 0) -> dict[str, dict]:
    """Scores with each set of modalities withheld from every case (default: nothing, each single modality
    and each pair, the section 7.3 table), keyed as explain.ablation.withheld_metrics: "none", "genomics",
    "histopathology,genomics"."""
    drops = section_7_3(hidden.names) if drops is None else drops
    return {",".join(drop) or "none": survival_scores(hidden, hidden.risk(hidden.subset(drop)), reference=reference,
                                                      n_bootstrap=n_bootstrap, seed=seed)
            for drop in drops}
