"""What the case page says about a case's inputs beside the explanation: which modalities the model could
use, what it could not use as given (the input report), and which inputs are unlike the training data.

Pure functions from the explanation's plain data to sentences, so the page only renders them. Modalities are
the model's declared ones (cardio's four by default): titles and nouns come from the declaration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.figures import MODALITY_LABELS
from neurofusion.data.schema import MODALITIES

# How a modality is named inside a sentence ("the echo image is unlike ...").
MODALITY_NOUNS = {"image": "echo image", "text": "clinical note", "signal": "ECG", "tabular": "labs"}


def modality_noun(name: str, titles: Mapping[str, str] | None = None, kinds: Mapping[str, str] | None = None) -> str:
    """How modality ``name`` is named inside a sentence: cardio's nouns, else its declared title in lower
    case ('Treatment notes' -> 'treatment notes'), with what it is when ``kinds`` says and the title does
    not ('Genomics' (tabular) -> 'genomics data', 'Histopathology' (image) -> 'histopathology image')."""
    if name in MODALITY_NOUNS and (titles is None or titles.get(name) == MODALITY_LABELS.get(name)):
        return MODALITY_NOUNS[name]
    title = (titles or {}).get(name) or name.replace("_", " ")
    noun = title if title.isupper() else title.lower()
    suffix = _KIND_NOUNS.get((kinds or {}).get(name, ""))
    if suffix and not any(word in noun.split() for word in (suffix, "data", "values", "labs", "scan", "slide")):
        noun = f"{noun} {suffix}"
    return noun


_KIND_NOUNS = {"tabular": "data", "image": "image"}


@dataclass
class InputNotes:
    """unusable: modality -> why the model could not use it (it counted as missing). messages: the input
    report's sentences (most severe first) and the reader's issues they do not already state. serious:
    whether any of them is more than a value not measured or a column the model does not read."""

    unusable: dict[str, str]
    messages: list[str]
    serious: bool


def input_notes(inputs: Mapping | None, issues: Sequence[str] = ()) -> InputNotes:
    """Read an ``InputReport.to_dict()`` plus the loaded case's ``issues``."""
    inputs = inputs or {}
    messages = list(inputs.get("messages", ()))
    unusable = dict(inputs.get("unusable", {}))
    leads = inputs.get("leads") or {}
    unstated = [i for i in issues if not any(i in m for m in messages)]
    serious = (bool(unusable) or bool(unstated)
               or any(inputs.get(k) for k in ("unmatched", "unknown_categories", "wrong_kind", "notes",
                                              "short_recordings", "undescribed"))
               or bool(leads.get("unmapped")) or bool(leads.get("found") and leads.get("missing")))
    return InputNotes(unusable, messages + unstated, serious)


def modality_status(present: Mapping[str, bool], unusable: Mapping[str, str]) -> dict[str, str]:
    """modality -> "used", "unusable" (the case has it, the model cannot read it) or "missing", for every
    modality of ``present`` (the explanation's: the declared ones, in order)."""
    names = list(present) or list(MODALITIES)
    return {m: "unusable" if m in unusable else "used" if present.get(m) else "missing" for m in names}


def modality_line(status: Mapping[str, str], titles: Mapping[str, str] | None = None) -> str:
    """'Echo image ✓ · ECG — missing · ...' in the order of ``status``; ``titles``: {name: title} of the
    declared modalities (default cardio's labels)."""
    marks = {"used": "✓", "unusable": "⚠ unusable", "missing": "— missing"}
    names = titles or MODALITY_LABELS
    return " · ".join(f"{names.get(m, m)} {marks[state]}" for m, state in status.items())


def ood_warnings(ood: Mapping[str, Mapping] | None, titles: Mapping[str, str] | None = None,
                 kinds: Mapping[str, str] | None = None) -> list[str]:
    """One sentence per modality flagged as unlike the training data (``CaseExplanation.ood``)."""
    out = []
    for modality, check in (ood or {}).items():
        if check.get("flagged"):
            out.append(
                f"The {modality_noun(modality, titles, kinds)} is unlike the training data: distance "
                f"{check['distance']:.3g} > threshold {check['threshold']:.3g}, which "
                f"{100 * check['false_alarm_rate']:.1f} % of held-out training cases exceed. Its explanation "
                "describes the model outside what it learned from.")
    return out


def ood_caption(ood: Mapping[str, Mapping] | None, titles: Mapping[str, str] | None = None,
                kinds: Mapping[str, str] | None = None) -> str:
    """What the page says when nothing is flagged: which modalities were checked, or that none could be."""
    if ood is None:
        return ("This checkpoint has no out-of-distribution reference, so inputs unlike the training data "
                "cannot be flagged (`python -m neurofusion.ood fit` adds one).")
    checked = [modality_noun(m, titles, kinds) for m, c in ood.items() if not c.get("flagged")]
    return f"Within the training data's range: {', '.join(checked)}." if checked else ""
