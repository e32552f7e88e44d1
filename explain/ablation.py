"""Missing-modality ablation. Case level: observe a fraction of each modality (0 = missing, the model's
learned embedding; in between = the first part of the ECG, the first sentences of the note, the first labs
in clinical order; the image is all or nothing) and re-predict. Cohort level: hide modalities at given
rates, or withhold fixed sets as in the paper's section 7.3, and measure accuracy and macro-F1 with CIs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from typing import Mapping, Sequence

import numpy as np
import torch

from explain.importance import SUBSETS
from neurofusion.data.schema import MODALITIES, Case, Signal
from neurofusion.inference import Predictor, drop_mask, model_lock
from neurofusion.metrics import classification_metrics

# Labs a clinician has first (history and bedside) to last (send-out tests); unknown columns keep their
# cohort order after these.
CLINICAL_ORDER = (
    "age", "sex", "bmi", "smoker", "diabetes", "hypertension", "systolic_bp", "sodium_mmol_l",
    "potassium_mmol_l", "creatinine_mg_dl", "hemoglobin_g_dl", "troponin_ng_l", "bnp_pg_ml", "ldl_mg_dl",
    "hdl_mg_dl", "tsh_miu_l",
)
# The paper's section 7.3 table: nothing, each single modality and each pair withheld from every case.
SECTION_7_3 = [()] + [(m,) for m in MODALITIES] + list(itertools.combinations(MODALITIES, 2))
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def partial_case(case: Case, fractions: Mapping[str, float]) -> Case:
    """A copy of ``case`` with each modality observed to the given fraction in [0, 1] (default 1)."""
    unknown = set(fractions) - set(MODALITIES)
    if unknown:
        raise ValueError(f"unknown modality {sorted(unknown)[0]!r}; expected some of {', '.join(MODALITIES)}")
    for name, value in fractions.items():
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"observed fraction of {name} must be in [0, 1], got {value}")
    f = {m: float(fractions.get(m, 1.0)) for m in MODALITIES}
    if f["image"] not in (0.0, 1.0):
        raise ValueError(f"the image is either observed or not: fraction 0 or 1, got {f['image']}")
    return dataclasses.replace(
        case,
        image=case.image if f["image"] == 1.0 else None,
        note=_first_sentences(case.note, f["text"]),
        signal=_first_part(case.signal, f["signal"]),
        tabular=_first_labs(case.tabular, f["tabular"]),
    )


def ablate_case(predictor: Predictor, case: Case, fractions: Mapping[str, float]) -> np.ndarray:
    """Class probabilities (C,) for ``case`` observed to ``fractions``."""
    _, probabilities = predictor.predict([partial_case(case, fractions)])
    return probabilities[0]


def sentences(note: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the note's sentences and lines, in order."""
    spans, start = [], 0
    for match in _SENTENCE_END.finditer(note):
        if note[start:match.start()].strip():
            spans.append((start, match.start()))
        start = match.end()
    if note[start:].strip():
        spans.append((start, len(note)))
    return spans


def _first_sentences(note: str | None, fraction: float) -> str | None:
    if note is None or fraction == 0.0:
        return None
    spans = sentences(note)
    keep = max(1, math.ceil(fraction * len(spans)))  # any fraction above 0 shows at least one sentence
    return note[:spans[keep - 1][1]] if keep < len(spans) else note


def _first_part(signal: Signal | None, fraction: float) -> Signal | None:
    if signal is None or fraction == 0.0:
        return None
    if fraction == 1.0:
        return signal
    n = max(2, int(round(fraction * signal.n_samples)))
    return Signal(signal.data[:, :n], signal.fs, signal.channels, signal.units)


def _first_labs(tabular: Mapping | None, fraction: float) -> dict | None:
    if tabular is None or fraction == 0.0:
        return None
    order = [n for n in CLINICAL_ORDER if n in tabular] + [n for n in tabular if n not in CLINICAL_ORDER]
    keep = set(order[:math.ceil(fraction * len(order))])
    return {name: (value if name in keep else _missing_like(value)) for name, value in tabular.items()}


def _missing_like(value):
    return None if value is None or isinstance(value, str) else float("nan")


@torch.no_grad()
def withheld_study(predictor: Predictor, cases: Sequence[Case], drops: Sequence[tuple[str, ...]] | None = None,
                   *, n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict]:
    """Metrics with each set of modalities withheld from every case (default: none, each single, each
    pair: the section 7.3 table). Encodes the cases once."""
    drops = SECTION_7_3 if drops is None else drops
    model = predictor.model.eval()
    batches = list(predictor.batches(cases, 100))
    with model_lock(model):
        encoded = [model.encode(b) for b in batches]
    labels = np.concatenate([b.labels.cpu().numpy() for b in batches])
    results = {}
    for drop in drops:
        with model_lock(model):
            probabilities = np.concatenate([
                model.fuse(e, drop_mask(b.present, drop)).probabilities.float().cpu().numpy()
                for e, b in zip(encoded, batches)
            ])
        results[",".join(drop) or "none"] = classification_metrics(labels, probabilities, model.classes,
                                                                   n_bootstrap=n_bootstrap, seed=seed)
    return results


@dataclasses.dataclass(frozen=True)
class HiddenPredictions:
    """Class probabilities of every case with every subset of modalities hidden: ``probabilities[s]`` (N, C)
    for subset ``s`` (bit j set = modality j of MODALITIES hidden), with the labels, the presence (N, 4)
    each case has, and the classes. Any random hiding pattern is then a lookup, not a model pass."""

    probabilities: np.ndarray  # (2 ** len(MODALITIES), N, C)
    labels: np.ndarray
    present: np.ndarray
    classes: tuple[str, ...]


@torch.no_grad()
def hidden_predictions(predictor: Predictor, cases: Sequence[Case]) -> HiddenPredictions:
    """Encode the cases once (in batches of 100, as the direct study does) and fuse each batch with every
    subset of modalities hidden: 16 fusions, exact (the encoders do not depend on what is hidden)."""
    model = predictor.model.eval()
    labels, present, parts = [], [], []
    for batch in predictor.batches(cases, 100):
        hidden = SUBSETS.to(batch.present.device)  # row s: the modalities subset s hides
        with model_lock(model):
            encoded = model.encode(batch)
            parts.append(np.stack([
                model.fuse(encoded, batch.present & ~mask).probabilities.float().cpu().numpy() for mask in hidden]))
        labels.append(batch.labels.cpu().numpy())
        present.append(batch.present.cpu().numpy())
    return HiddenPredictions(np.concatenate(parts, axis=1), np.concatenate(labels), np.concatenate(present),
                             tuple(model.classes))


def missing_rate_metrics(hidden: HiddenPredictions, rates: Mapping[str, float], *, n_bootstrap: int = 1000,
                         seed: int = 0) -> dict:
    """``missing_rate_study`` from precomputed ``hidden_predictions``: the same seeded mask (one uniform draw
    per case and modality, in case order), each case's probabilities looked up for the subset it hides."""
    _check_rates(rates)
    n = len(hidden.labels)
    rng = np.random.default_rng(seed)
    hide = rng.random((n, len(MODALITIES))) < np.array([rates.get(m, 0.0) for m in MODALITIES])
    subset = (hide * (1 << np.arange(len(MODALITIES)))).sum(1)
    probabilities = hidden.probabilities[subset, np.arange(n)]
    metrics = classification_metrics(hidden.labels, probabilities, list(hidden.classes), n_bootstrap=n_bootstrap,
                                     seed=seed)
    observed = (hidden.present & ~hide).mean(0)
    return {**metrics, "observed_share": dict(zip(MODALITIES, observed.round(4).tolist()))}


def withheld_metrics(hidden: HiddenPredictions, drops: Sequence[tuple[str, ...]] | None = None, *,
                     n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict]:
    """``withheld_study`` from precomputed ``hidden_predictions`` (no model pass)."""
    drops = SECTION_7_3 if drops is None else drops
    results = {}
    for drop in drops:
        subset = sum(1 << MODALITIES.index(m) for m in drop)
        results[",".join(drop) or "none"] = classification_metrics(hidden.labels, hidden.probabilities[subset],
                                                                   list(hidden.classes), n_bootstrap=n_bootstrap,
                                                                   seed=seed)
    return results


def _check_rates(rates: Mapping[str, float]) -> None:
    for name, rate in rates.items():
        if name not in MODALITIES or not 0.0 <= rate <= 1.0:
            raise ValueError(f"missing rate must be a modality name -> value in [0, 1], got {name}: {rate}")


@torch.no_grad()
def missing_rate_study(predictor: Predictor, cases: Sequence[Case], rates: Mapping[str, float], *,
                       n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Metrics when each modality is additionally hidden at random with its rate in [0, 1] (independently
    per case, seeded): the cohort-level ablation slider. One model pass with the drawn mask; for many rates
    on the same cases, ``hidden_predictions`` once and ``missing_rate_metrics`` per rate give the same."""
    _check_rates(rates)
    rng = np.random.default_rng(seed)
    model = predictor.model.eval()
    labels, probabilities, shown = [], [], []
    for batch in predictor.batches(cases, 100):
        hide = torch.from_numpy(rng.random(tuple(batch.present.shape)) <
                                np.array([rates.get(m, 0.0) for m in MODALITIES])).to(batch.present.device)
        present = batch.present & ~hide
        with model_lock(model):
            probabilities.append(model(batch, present=present).probabilities.float().cpu().numpy())
        labels.append(batch.labels.cpu().numpy())
        shown.append(present.cpu().numpy())
    metrics = classification_metrics(np.concatenate(labels), np.concatenate(probabilities), model.classes,
                                     n_bootstrap=n_bootstrap, seed=seed)
    observed = np.concatenate(shown).mean(0)
    return {**metrics, "observed_share": dict(zip(MODALITIES, observed.round(4).tolist()))}
