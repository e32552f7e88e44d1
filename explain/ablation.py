"""Missing-modality ablation. Case level: observe a fraction of each modality (0 = missing, the model's
learned embedding; in between = the first part of the ECG, the first sentences of the note, the first labs
in clinical order; the image is all or nothing) and re-predict. Cohort level: hide modalities at given
rates, or withhold fixed sets as in the paper's section 7.3, and measure accuracy and macro-F1 with CIs.

Modalities are the model's declared ones, each observed to a fraction by its kind: an image all or nothing,
a note by sentences, a signal by its first part, a tabular modality by its first values (cardio's labs in
clinical order, any other in its cohort order). A survival model is ablated on its explained quantity
(:class:`explain.targets.SurvivalTarget`) per case and in ``hidden_predictions``; the cohort metrics here
are classification metrics, so the withheld and missing-rate studies refuse a survival model.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from typing import Mapping, Sequence

import numpy as np
import torch

from explain.importance import modality_names, subsets
from explain.targets import SurvivalTarget, explained_label, explained_values, is_survival
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
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def section_7_3(names: Sequence[str]) -> list[tuple[str, ...]]:
    """The paper's section 7.3 table for declared modalities ``names``: nothing, each single modality and
    each pair withheld from every case."""
    return [()] + [(m,) for m in names] + list(itertools.combinations(names, 2))


SECTION_7_3 = section_7_3(MODALITIES)  # cardio's


def partial_case(case: Case, fractions: Mapping[str, float]) -> Case:
    """A copy of ``case`` with each declared modality observed to the given fraction in [0, 1] (default 1),
    by its kind (an image: 0 or 1 only)."""
    kinds = {m.name: m.kind for m in case.modalities}
    unknown = set(fractions) - set(kinds)
    if unknown:
        raise ValueError(f"unknown modality {sorted(unknown)[0]!r}; expected some of {', '.join(kinds)}")
    for name, value in fractions.items():
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"observed fraction of {name} must be in [0, 1], got {value}")
    changes = {}
    for name, value in fractions.items():
        f, kind, current = float(value), kinds[name], case.value(name)
        if kind == "image" and f not in (0.0, 1.0):
            what = "the image" if name == "image" else f"image {name}"
            raise ValueError(f"{what} is either observed or not: fraction 0 or 1, got {f}")
        if f == 1.0:
            continue
        changes[name] = {"image": lambda v, _: None, "text": _first_sentences, "signal": _first_part,
                         "tabular": _first_labs}[kind](current, f)
    return case.with_values(**changes) if changes else dataclasses.replace(case, meta=dict(case.meta),
                                                                          issues=list(case.issues))


def ablate_case(predictor: Predictor, case: Case, fractions: Mapping[str, float], *,
                survival: SurvivalTarget | None = None) -> np.ndarray:
    """Class probabilities (C,) for ``case`` observed to ``fractions``; for a survival model its explained
    quantity, shape (1,) (``survival``, default survival at the model's horizon)."""
    partial = partial_case(case, fractions)
    if not is_survival(predictor.model):
        _, probabilities = predictor.predict([partial])
        return probabilities[0]
    with model_lock(predictor.model), torch.no_grad():
        output = predictor.model.eval()(predictor.batch([partial]))
        return explained_values(predictor.model, output, survival)[0].double().cpu().numpy()


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
    model = predictor.model.eval()
    _classifier_only(model, "the withheld-modality study")
    names = modality_names(model)
    drops = section_7_3(names) if drops is None else drops
    batches = list(predictor.batches(cases, 100))
    with model_lock(model):
        encoded = [model.encode(b) for b in batches]
    labels = np.concatenate([b.labels.cpu().numpy() for b in batches])
    results = {}
    for drop in drops:
        with model_lock(model):
            probabilities = np.concatenate([
                model.fuse(e, drop_mask(b.present, drop, names)).probabilities.float().cpu().numpy()
                for e, b in zip(encoded, batches)
            ])
        results[",".join(drop) or "none"] = classification_metrics(labels, probabilities, model.classes,
                                                                   n_bootstrap=n_bootstrap, seed=seed)
    return results


@dataclasses.dataclass(frozen=True)
class HiddenPredictions:
    """Class probabilities of every case with every subset of modalities hidden: ``probabilities[s]`` (N, C)
    for subset ``s`` (bit j set = declared modality j hidden), with the labels, the presence (N, M) each
    case has, and the classes. Any random hiding pattern is then a lookup, not a model pass. A survival
    model's "probabilities" are its explained quantity (C = 1, ``classes`` = its label)."""

    probabilities: np.ndarray  # (2 ** M, N, C)
    labels: np.ndarray
    present: np.ndarray
    classes: tuple[str, ...]
    names: tuple[str, ...] = MODALITIES  # the declared modalities, bit order


@torch.no_grad()
def hidden_predictions(predictor: Predictor, cases: Sequence[Case], *,
                       survival: SurvivalTarget | None = None) -> HiddenPredictions:
    """Encode the cases once (in batches of 100, as the direct study does) and fuse each batch with every
    subset of modalities hidden: 2^M fusions, exact (the encoders do not depend on what is hidden)."""
    model = predictor.model.eval()
    names = modality_names(model)
    labels, present, parts = [], [], []
    explained = None
    for batch in predictor.batches(cases, 100):
        hidden = subsets(len(names)).to(batch.present.device)  # row s: the modalities subset s hides
        with model_lock(model):
            encoded = model.encode(batch)
            parts.append(np.stack([
                explained_values(model, model.fuse(encoded, batch.present & ~mask), survival).float().cpu().numpy()
                for mask in hidden]))
        labels.append(batch.labels.cpu().numpy())
        present.append(batch.present.cpu().numpy())
    if is_survival(model):
        explained = (explained_label(model, survival),)
    return HiddenPredictions(np.concatenate(parts, axis=1), np.concatenate(labels), np.concatenate(present),
                             explained or tuple(model.classes), names)


def random_hiding(n: int, names: Sequence[str], rates: Mapping[str, float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which modalities to hide in each of ``n`` cases, each independently with its rate: one seeded uniform
    draw per case and modality, in case order -> (hide (n, M) bool, subset (n,) the hidden set as a bit mask,
    bit j = modality j of ``names``)."""
    check_rates(rates, names)
    rng = np.random.default_rng(seed)
    hide = rng.random((n, len(names))) < np.array([rates.get(m, 0.0) for m in names])
    return hide, (hide * (1 << np.arange(len(names)))).sum(1)


def missing_rate_metrics(hidden: HiddenPredictions, rates: Mapping[str, float], *, n_bootstrap: int = 1000,
                         seed: int = 0) -> dict:
    """``missing_rate_study`` from precomputed ``hidden_predictions``: the same seeded mask (one uniform draw
    per case and modality, in case order), each case's probabilities looked up for the subset it hides."""
    n = len(hidden.labels)
    hide, subset = random_hiding(n, hidden.names, rates, seed)
    probabilities = hidden.probabilities[subset, np.arange(n)]
    metrics = classification_metrics(hidden.labels, probabilities, list(hidden.classes), n_bootstrap=n_bootstrap,
                                     seed=seed)
    observed = (hidden.present & ~hide).mean(0)
    return {**metrics, "observed_share": dict(zip(hidden.names, observed.round(4).tolist()))}


def withheld_metrics(hidden: HiddenPredictions, drops: Sequence[tuple[str, ...]] | None = None, *,
                     n_bootstrap: int = 1000, seed: int = 0) -> dict[str, dict]:
    """``withheld_study`` from precomputed ``hidden_predictions`` (no model pass)."""
    names = hidden.names
    drops = section_7_3(names) if drops is None else drops
    results = {}
    for drop in drops:
        unknown = [m for m in drop if m not in names]
        if unknown:
            raise ValueError(f"cannot withhold {unknown[0]!r}: not a declared modality ({', '.join(names)})")
        subset = sum(1 << names.index(m) for m in drop)
        results[",".join(drop) or "none"] = classification_metrics(hidden.labels, hidden.probabilities[subset],
                                                                   list(hidden.classes), n_bootstrap=n_bootstrap,
                                                                   seed=seed)
    return results


def check_rates(rates: Mapping[str, float], names: Sequence[str] = MODALITIES) -> None:
    for name, rate in rates.items():
        if name not in names or not 0.0 <= rate <= 1.0:
            raise ValueError(f"missing rate must be a modality name ({', '.join(names)}) -> value in [0, 1], "
                             f"got {name}: {rate}")


def _classifier_only(model, what: str) -> None:
    if is_survival(model):
        raise ValueError(f"{what} reports classification metrics; this model predicts survival (use "
                         "hidden_predictions for its explained quantity, and neurofusion.survival's metrics)")


@torch.no_grad()
def missing_rate_study(predictor: Predictor, cases: Sequence[Case], rates: Mapping[str, float], *,
                       n_bootstrap: int = 1000, seed: int = 0) -> dict:
    """Metrics when each modality is additionally hidden at random with its rate in [0, 1] (independently
    per case, seeded): the cohort-level ablation slider. One model pass with the drawn mask; for many rates
    on the same cases, ``hidden_predictions`` once and ``missing_rate_metrics`` per rate give the same."""
    model = predictor.model.eval()
    _classifier_only(model, "the missing-rate study")
    names = modality_names(model)
    check_rates(rates, names)
    rng = np.random.default_rng(seed)
    labels, probabilities, shown = [], [], []
    for batch in predictor.batches(cases, 100):
        hide = torch.from_numpy(rng.random(tuple(batch.present.shape)) <
                                np.array([rates.get(m, 0.0) for m in names])).to(batch.present.device)
        present = batch.present & ~hide
        with model_lock(model):
            probabilities.append(model(batch, present=present).probabilities.float().cpu().numpy())
        labels.append(batch.labels.cpu().numpy())
        shown.append(present.cpu().numpy())
    metrics = classification_metrics(np.concatenate(labels), np.concatenate(probabilities), model.classes,
                                     n_bootstrap=n_bootstrap, seed=seed)
    observed = np.concatenate(shown).mean(0)
    return {**metrics, "observed_share": dict(zip(names, observed.round(4).tolist()))}
