"""What-if edits of one case and the model's exact answer to them: change a lab value, strike or negate a
note phrase, drop ECG leads or a time window; then re-predict and re-explain (exact Shapley modality
importance) the edited case beside the original.

Every edit is a pure function ``Case -> Case``: it returns a new case and leaves its input untouched, and
it records a one-line description of itself in the new case's ``meta["what_if"]``. Nothing is
approximated: the edited prediction is the model's output on the edited case, prepared exactly as any
other case.

What each edit means to the model:

- **Lab value** (:func:`with_lab`): the value the model reads for that feature; ``None`` = not measured
  (the model's missing-value mask). Numbers must be finite and plausible for the checkpoint: within
  ``Z_LIMIT`` standard deviations of the training cases' values (on the log scale for skewed labs such as
  troponin, as the model normalises them) and not negative for a quantity the training data had only
  positive. Categories must be ones the model knows.
- **Strike a phrase** (:func:`strike_phrase`): ``note[start:end]`` is deleted, nothing else changes (no
  whitespace is tidied, so the offsets of the rest of the note are predictable).
- **Negate a phrase** (:func:`negate_phrase`): ``"no "`` (or ``"denies "`` / ``"without "``) is inserted
  before ``note[start:]``, capitalised at the start of a sentence; the phrase itself is unchanged.
- **Drop leads** (:func:`drop_leads`): the channels of those leads are removed from the recording, so the
  model's lead mask marks them as not recorded (as for a recording that lacks them); dropping every lead
  leaves no ECG, which the model replaces by its learned missing embedding.
- **Toggle mutations** (:func:`toggle_mutations`): genes of a 0/1 mutation panel flip between mutated and
  not mutated (an unmeasured gene becomes mutated).
- **Drop a time window** (:func:`drop_window`): the samples of ``[start_s, end_s)`` are replaced, in every
  lead, by that lead's baseline (its median over the recording): a flat isoelectric line with no step at
  the window's edges. The recording keeps its length, so the rest stays where it was in time (cropping
  would shift every later beat and shorten the record, which the model then zero-pads). The model has no
  per-sample "not recorded" mask, so a flat baseline is the closest input to "nothing seen here".

Each edit takes ``modality=``: the declared modality it edits (a tabular, text or signal one), default the
first of its kind (cardio's labs, note and ECG). :func:`lab_limits` takes it too. A survival model's
what-if compares its explained quantity (:class:`explain.targets.SurvivalTarget`) instead of class
probabilities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from explain.importance import ModalityImportance, modality_importance
from explain.targets import SurvivalTarget, explained_label, explained_values, is_survival
from neurofusion.data.modalities import first_of_kind
from neurofusion.data.schema import Case, Signal, TabularValue, lead_key
from neurofusion.inference import Predictor, model_lock
from neurofusion.models.model import tabular_normalisers

__all__ = ["Z_LIMIT", "NEGATIONS", "LabLimit", "WhatIfResult", "lab_limits", "with_lab", "strike_phrase",
           "negate_phrase", "drop_leads", "drop_window", "edits_of", "what_if"]

Z_LIMIT = 6.0  # how many training standard deviations from the training mean a what-if lab value may go
NEGATIONS = ("no", "denies", "without")
_SENTENCE_ENDS = ".!?\n:;"


@dataclass(frozen=True)
class LabLimit:
    """What the checkpoint accepts for one tabular feature: a number in [low, high] (either may be None:
    unbounded) or one of ``categories``."""

    name: str
    kind: str  # "numeric" or "categorical"
    unit: str = ""
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()


def lab_limits(predictor: Predictor, modality: str | None = None) -> dict[str, LabLimit]:
    """{feature: LabLimit} of tabular modality ``modality`` (default the first declared) from the
    checkpoint's feature spec and, for numeric features, its stored normalisation statistics (training
    mean and standard deviation, log scale for skewed features)."""
    name = _modality(predictor.spec.modalities, modality, "tabular")
    normaliser = tabular_normalisers(predictor.model).get(name)
    features = predictor.spec.features_of(name)
    limits: dict[str, LabLimit] = {}
    for j, feature in enumerate(f for f in features if f.kind == "numeric"):
        low = high = None
        if normaliser is not None and j < normaliser.mean.numel():
            mean, std = float(normaliser.mean[j]), float(normaliser.std[j])
            lo, hi = mean - Z_LIMIT * std, mean + Z_LIMIT * std
            if bool(normaliser.log_scale[j]):  # statistics of log1p(value), a value >= 0
                low, high = max(0.0, math.expm1(lo)), math.expm1(min(hi, 700.0))
            else:
                positive = mean - 3 * std > 0  # a positive quantity: a negative value is a typo
                low, high = (max(0.0, lo) if positive else lo), hi
        limits[feature.name] = LabLimit(feature.name, "numeric", feature.unit, _round(low), _round(high))
    for feature in (f for f in features if f.kind == "categorical"):
        limits[feature.name] = LabLimit(feature.name, "categorical", feature.unit, categories=feature.categories)
    return {f.name: limits[f.name] for f in features}  # in the checkpoint's feature order


def _modality(specs, modality: str | None, kind: str) -> str:
    """The declared modality an edit works on: ``modality`` (checked to be of ``kind``) or the first of it."""
    if modality is None:
        spec = first_of_kind(specs, kind)
        if spec is None:
            raise ValueError(f"no {kind} modality is declared ({', '.join(s.name for s in specs)})")
        return spec.name
    kinds = {s.name: s.kind for s in specs}
    if kinds.get(modality) != kind:
        raise ValueError(f"{modality!r} is not a declared {kind} modality (declared: "
                         f"{', '.join(f'{n} ({k})' for n, k in kinds.items())})")
    return modality


def _round(value: float | None) -> float | None:
    """Limits shown to a user: 3 significant figures, rounded outwards would hide nothing that matters."""
    return None if value is None else float(f"{value:.3g}")


def with_lab(case: Case, name: str, value: TabularValue, limits: dict[str, LabLimit], *,
             modality: str | None = None) -> Case:
    """A copy of ``case`` whose feature ``name`` of tabular modality ``modality`` (default the first) is
    ``value`` (None = not measured).

    ``limits`` is :func:`lab_limits` of the checkpoint (for the same modality). Raises ValueError saying
    what is wrong: a case without labs, a feature the model does not read, a value that is not a finite
    number, outside the plausible range, or a category the model does not know."""
    modality = _modality(case.modalities, modality, "tabular")
    values = case.value(modality)
    if values is None:
        raise ValueError(f"case {case.case_id} has no labs or demographics to edit" if modality == "tabular"
                         else f"case {case.case_id} has no {modality} values to edit")
    if name not in limits:
        raise ValueError(f"the model reads no tabular feature {name!r}; it reads {', '.join(limits)}")
    limit = limits[name]
    unit = f" {limit.unit}" if limit.unit else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        new, shown = (float("nan") if limit.kind == "numeric" else None), "not measured"
    elif limit.kind == "categorical":
        if value not in limit.categories:
            raise ValueError(f"{name} must be one of {', '.join(limit.categories)} (or not measured), got {value!r}")
        new, shown = value, str(value)
    else:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ValueError(f"{name} must be a number{unit}, got {value!r}")
        new = float(value)
        if not math.isfinite(new):
            raise ValueError(f"{name} must be a finite number{unit}, got {value!r}")
        if (limit.low is not None and new < limit.low) or (limit.high is not None and new > limit.high):
            raise ValueError(f"{name} = {new:g}{unit} is outside the plausible range for this model "
                             f"({_range_text(limit)}{unit}: within {Z_LIMIT:g} standard deviations of its "
                             "training cases); check the value and its unit")
        shown = f"{new:g}{unit}"
    before = values.get(name)
    tabular = dict(values)
    tabular[name] = new
    return _edited(case, f"{name}: {_lab_text(before, unit)} → {shown}", **{modality: tabular})


def _range_text(limit: LabLimit) -> str:
    if limit.low is not None and limit.high is not None:
        return f"{limit.low:g} to {limit.high:g}"
    return f"at least {limit.low:g}" if limit.low is not None else f"at most {limit.high:g}"


def _lab_text(value: TabularValue, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "not measured"
    return f"{value:g}{unit}" if isinstance(value, (int, float)) else str(value)


def strike_phrase(case: Case, start: int, end: int, *, modality: str | None = None) -> Case:
    """A copy of ``case`` with ``note[start:end]`` deleted (character offsets into the note as written) in
    text modality ``modality`` (default the first)."""
    modality = _modality(case.modalities, modality, "text")
    note = _checked_span(case, start, end, modality)
    return _edited(case, f"struck {note[start:end]!r} (characters {start}-{end})",
                   **{modality: note[:start] + note[end:]})


def negate_phrase(case: Case, start: int, end: int, negation: str = "no", *, modality: str | None = None) -> Case:
    """A copy of ``case`` with ``negation + " "`` inserted before ``note[start:end]`` ("No " at the start of
    a sentence) in text modality ``modality`` (default the first); the phrase itself is unchanged. A
    phrase that already starts with a negation is refused: strike it instead."""
    modality = _modality(case.modalities, modality, "text")
    note = _checked_span(case, start, end, modality)
    if negation not in NEGATIONS:
        raise ValueError(f"negation must be one of {', '.join(NEGATIONS)}, got {negation!r}")
    phrase = note[start:end]
    first = phrase.split(maxsplit=1)[0].lower().strip(",.;:") if phrase.strip() else ""
    if first in NEGATIONS + ("not", "denied", "negative"):
        raise ValueError(f"{phrase!r} is already negated; strike it to remove it instead")
    before = note[:start].rstrip(" \t")
    word = negation.capitalize() if not before or before[-1] in _SENTENCE_ENDS else negation
    return _edited(case, f"negated {phrase!r}: {word} {phrase!r} (characters {start}-{end})",
                   **{modality: note[:start] + word + " " + note[start:]})


def _checked_span(case: Case, start: int, end: int, modality: str) -> str:
    note = case.value(modality)
    if note is None:
        raise ValueError(f"case {case.case_id} has no clinical note to edit" if modality == "text"
                         else f"case {case.case_id} has no {modality} text to edit")
    if not (isinstance(start, (int, np.integer)) and isinstance(end, (int, np.integer))):
        raise ValueError(f"phrase offsets must be whole numbers, got {start!r} and {end!r}")
    if not 0 <= start < end <= len(note):
        raise ValueError(f"phrase offsets must satisfy 0 <= start < end <= {len(note)} (the note's length), "
                         f"got start {start}, end {end}")
    return note


def drop_leads(case: Case, leads: Sequence[str], *, modality: str | None = None) -> Case:
    """A copy of ``case`` without the channels of ``leads`` (standard names or any spelling the readers
    accept, 'MLII' for II) in signal modality ``modality`` (default the first): the model sees them as not
    recorded. Every lead dropped = no ECG."""
    modality = _modality(case.modalities, modality, "signal")
    signal = _checked_signal(case, modality)
    if not leads:
        raise ValueError("name at least one lead to drop")
    keys = {lead_key(lead): str(lead) for lead in leads}
    recorded = {lead_key(c) for c in signal.channels}
    absent = [name for key, name in keys.items() if key not in recorded]
    if absent:
        raise ValueError(f"the recording has no lead {', '.join(absent)}; its channels are {', '.join(signal.channels)}")
    keep = [row for row, channel in enumerate(signal.channels) if lead_key(channel) not in keys]
    what = f"dropped lead{'s' if len(keys) > 1 else ''} {', '.join(keys.values())}"
    if not keep:
        return _edited(case, what + " (every lead: no ECG)", **{modality: None})
    kept = Signal(signal.data[keep].copy(), signal.fs, tuple(signal.channels[r] for r in keep), signal.units)
    return _edited(case, what, **{modality: kept})


def drop_window(case: Case, start_s: float, end_s: float, *, modality: str | None = None) -> Case:
    """A copy of ``case`` whose ECG samples in [start_s, end_s) seconds are each lead's baseline (median),
    in signal modality ``modality`` (default the first)."""
    modality = _modality(case.modalities, modality, "signal")
    signal = _checked_signal(case, modality)
    duration = signal.duration_s
    if not (math.isfinite(start_s) and math.isfinite(end_s) and 0 <= start_s < end_s <= duration + 1e-9):
        raise ValueError(f"the window must satisfy 0 <= start < end <= {duration:g} s (the recording), "
                         f"got {start_s:g}-{end_s:g} s")
    first, last = int(math.floor(start_s * signal.fs)), min(signal.n_samples, int(math.ceil(end_s * signal.fs)))
    if first == 0 and last == signal.n_samples:
        raise ValueError("a window over the whole recording leaves a flat line, not a missing ECG; withhold "
                         "the ECG with the 'missing modality' control instead")
    data = signal.data.copy()
    data[:, first:last] = np.median(signal.data, axis=1, keepdims=True)
    flat = Signal(data, signal.fs, signal.channels, signal.units)
    return _edited(case, f"ECG {start_s:g}-{end_s:g} s flattened to each lead's baseline", **{modality: flat})


def _checked_signal(case: Case, modality: str) -> Signal:
    signal = case.value(modality)
    if signal is None:
        raise ValueError(f"case {case.case_id} has no ECG to edit" if modality == "signal"
                         else f"case {case.case_id} has no {modality} signal to edit")
    return signal


def toggle_mutations(case: Case, genes: Sequence[str], *, modality: str | None = None) -> Case:
    """Flip each of ``genes`` in a mutation panel (a tabular modality of 0/1 values; default the first
    tabular one): mutated (1) -> not mutated (0), not mutated or unmeasured -> mutated. Not a :func:`with_lab`
    edit: a panel's training statistics would call a rare gene's 1 implausible, yet a mutation is the
    panel's one other value."""
    modality = _modality(case.modalities, modality, "tabular")
    values = case.value(modality)
    if values is None:
        raise ValueError(f"case {case.case_id} has no {modality} values to edit")
    unknown = [g for g in genes if g not in values]
    if unknown:
        raise ValueError(f"{modality} has no gene {', '.join(unknown)}; it has {', '.join(values)}")
    changed, words = dict(values), []
    for gene in genes:
        before = changed[gene]
        mutated = before is not None and not (isinstance(before, float) and math.isnan(before)) and float(before) == 1.0
        changed[gene] = 0.0 if mutated else 1.0
        words.append(f"{gene}: {'mutated → not mutated' if mutated else 'not mutated → mutated'}")
    return _edited(case, words, **{modality: changed})


def _edited(case: Case, description: str | list[str], **changes) -> Case:
    """A copy with the modality values ``changes`` (by declared name) and the description (or one per
    change) appended to meta["what_if"] (new meta, new list)."""
    edited = case.with_values(**changes)
    added = [description] if isinstance(description, str) else list(description)
    edited.meta["what_if"] = [*case.meta.get("what_if", ()), *added]
    return edited


def edits_of(case: Case) -> list[str]:
    """The descriptions of the what-if edits applied to ``case``, in order."""
    return list(case.meta.get("what_if", ()))


@dataclass
class WhatIfResult:
    """The original and the edited case under the same model, explained for the same class.

    probabilities: (C,) each. importance: exact Shapley (and leave-one-out) modality importance of the
    class ``target`` for each case. edits: what was changed, in order."""

    classes: list[str]
    target: int
    original: np.ndarray
    edited: np.ndarray
    original_importance: ModalityImportance
    edited_importance: ModalityImportance
    edits: list[str] = field(default_factory=list)

    @property
    def shift(self) -> float:
        """Change of p(target) from the original to the edited case, in probability (edited - original)."""
        return float(self.edited[self.target] - self.original[self.target])


def what_if(predictor: Predictor, case: Case, edited: Case, target: int | None = None, *,
            survival: SurvivalTarget | None = None) -> WhatIfResult:
    """Predict and explain ``case`` and ``edited`` with the same model, for class ``target`` (default the
    class the model predicts for the original case, so both importances answer the same question). A
    survival model: its explained quantity ``survival`` (default survival at its horizon), one "class"."""
    model = predictor.model.eval()
    if is_survival(model):
        with model_lock(model), torch.no_grad():
            original, changed = (
                explained_values(model, model(predictor.batch([c])), survival)[0].double().cpu().numpy()
                for c in (case, edited))
        classes = [explained_label(model, survival)]
    else:
        original = predictor.predict([case])[1][0]
        changed = predictor.predict([edited])[1][0]
        classes = list(model.classes)
    target = int(original.argmax()) if target is None else int(target)
    if not 0 <= target < len(original):
        raise ValueError(f"target must be a class index in 0..{len(original) - 1}, got {target}")
    explained = torch.tensor([target], device=predictor.device)
    with model_lock(model):
        importance = [modality_importance(model, predictor.batch([c]), explained, survival=survival)
                      for c in (case, edited)]
    return WhatIfResult(classes, target, original, changed, importance[0], importance[1], edits_of(edited))
