"""The in-memory case: the values of its declared modalities, each of which may be missing, its outcome,
and the ECG lead names.

A missing modality is ``None`` (never zeros), so every consumer has to decide what absence means. Lead
names are matched here, in one place, for the file readers and the model's input preparation alike.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from neurofusion.data.modalities import CARDIO_MODALITIES, ModalitySpec

# Cardio's modalities (the default declaration); a task or cohort may declare others
# (neurofusion.data.modalities).
MODALITIES: tuple[str, ...] = tuple(m.name for m in CARDIO_MODALITIES)
SPLITS: tuple[str, ...] = ("train", "val", "test")
STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)

TabularValue = float | str | None

# Spellings of the standard leads met in real files, after upper-casing and dropping separators and an
# "ECG"/"EKG"/"Lead" prefix: Roman numerals, MIT-BIH's modified limb leads (MLII), the D-notation of
# Latin-American devices (DII) and IEC chest-lead names (C1-C6). Arabic numerals ("ECG1", "Lead 2") and a
# bare "V" stay unmapped: they number channels or name an unspecified chest lead, not a standard lead.
_LEAD_ALIASES: dict[str, str] = {
    **{key: lead for lead in ("I", "II", "III") for key in (lead, f"ML{lead}", f"D{lead}")},
    "AVR": "aVR", "AVL": "aVL", "AVF": "aVF",
    **{f"{prefix}{k}": f"V{k}" for prefix in ("V", "C") for k in range(1, 7)},
}
_LEAD_PREFIXES = ("MDCECGLEAD", "ECGLEAD", "EKGLEAD", "LEAD", "ECG", "EKG")
_LEAD_SEPARATORS = re.compile(r"[\s_.:/-]+")
_LEAD_REMARK = re.compile(r"\(.*?\)")  # DICOM's "Lead I (Einthoven)"


@dataclass(frozen=True)
class Signal:
    """A multichannel physiological recording.

    data: float32 (channels, samples) in physical units (mV for ECG).
    fs: sampling rate in Hz. channels: one name per row of ``data``.
    """

    data: np.ndarray
    fs: float
    channels: tuple[str, ...]
    units: str = "mV"

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 2:
            raise ValueError(f"signal must be (channels, samples), got shape {data.shape}")
        if data.shape[0] == 0 or data.shape[1] < 2:
            raise ValueError(f"signal must have at least 1 channel and 2 samples, got shape {data.shape}")
        if len(self.channels) != data.shape[0]:
            raise ValueError(
                f"signal has {data.shape[0]} channels but {len(self.channels)} channel names"
            )
        if not (isinstance(self.fs, (int, float)) and math.isfinite(self.fs) and self.fs > 0):
            raise ValueError(f"signal sampling rate must be a positive number of Hz, got {self.fs!r}")
        if not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            raise ValueError(f"signal contains {bad} NaN or infinite samples")
        object.__setattr__(self, "data", data.astype(np.float32, copy=False))
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        object.__setattr__(self, "fs", float(self.fs))

    @property
    def n_samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs


def standard_lead(name: str) -> str | None:
    """The standard 12-lead name a channel label stands for ('MLII' -> 'II', 'ECG_aVR' -> 'aVR',
    'Lead V1' -> 'V1'), or None when it names no standard lead unambiguously ('ECG1', 'V', '-aVR')."""
    text = _LEAD_REMARK.sub("", str(name)).strip()
    if text.startswith(("-", "\u2212")):  # an inverted lead (Cabrera's -aVR) is not the lead itself
        return None
    key = _LEAD_SEPARATORS.sub("", text).upper()
    for prefix in _LEAD_PREFIXES:
        if key.startswith(prefix) and len(key) > len(prefix):
            key = key[len(prefix):]
            break
    return _LEAD_ALIASES.get(key)


def lead_key(name: str) -> str:
    """The name two labels are compared by: the standard lead they stand for, else the label itself
    (case-insensitive), so a model trained on other channel names still matches them."""
    return standard_lead(name) or str(name).strip().lower()


@dataclass(frozen=True)
class LeadMatch:
    """How a recording's channels meet a set of wanted leads.

    rows: wanted lead -> row of the recording. unmapped: channels that name none of the wanted leads.
    duplicates: channel -> the lead an earlier channel already supplied.
    """

    rows: dict[str, int]
    unmapped: tuple[str, ...]
    duplicates: dict[str, str]

    @property
    def usable(self) -> bool:
        return bool(self.rows)


def match_leads(channels: tuple[str, ...] | list[str], leads: tuple[str, ...] = STANDARD_LEADS) -> LeadMatch:
    """Match channel labels to ``leads`` through :func:`lead_key`. A channel spelled exactly like the
    lead wins over an alias of it ('II' over 'MLII'), else the first channel does."""
    wanted = {lead_key(lead): lead for lead in leads}
    found = [(row, channel, wanted.get(lead_key(channel))) for row, channel in enumerate(channels)]
    found.sort(key=lambda item: (item[2] is None or str(item[1]).strip() != item[2], item[0]))
    rows: dict[str, int] = {}
    duplicates: dict[str, str] = {}
    for row, channel, lead in found:
        if lead is not None and lead in rows:
            duplicates[channel] = lead
        elif lead is not None:
            rows[lead] = row
    unmapped = tuple(channel for _, channel, lead in sorted(found) if lead is None)
    return LeadMatch(rows=rows, unmapped=unmapped, duplicates=duplicates)


def standard_channel_names(channels: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Channel labels as the readers store them: each one that stands for a standard lead renamed to it
    ('MLII' -> 'II'), the others (and a second channel of the same lead) kept as written."""
    match = match_leads(channels)
    names = [str(c) for c in channels]
    for lead, row in match.rows.items():
        names[row] = lead
    return tuple(names)


def lead_issues(signal: "Signal", leads: tuple[str, ...] = STANDARD_LEADS, *, where: str = "") -> list[str]:
    """Human-readable problems with a recording's channel names against ``leads`` (empty = none).

    ``where`` (e.g. the signal file) prefixes each message so the user knows which file to fix."""
    match = match_leads(signal.channels, leads)
    prefix = f"{where}: " if where else ""
    if not match.usable:
        return [f"{prefix}signal unusable: {unusable_signal_reason(signal, leads)}"]
    issues = []
    if match.unmapped:
        names = ", ".join(repr(c) for c in match.unmapped)
        issues.append(f"{prefix}channel(s) {names} do not name {_known_leads(leads)} and are not used")
    for channel, lead in match.duplicates.items():
        issues.append(f"{prefix}channel {channel!r} repeats lead {lead} (an earlier channel) and is not used")
    return issues


def unusable_signal_reason(signal: "Signal", leads: tuple[str, ...] = STANDARD_LEADS) -> str | None:
    """Why none of the recording can be used with ``leads``, or None when some channel is one of them."""
    if match_leads(signal.channels, leads).usable:
        return None
    names = ", ".join(repr(c) for c in signal.channels)
    return f"none of its channels ({names}) names {_known_leads(leads)}; rename the channels in the file's header"


def _known_leads(leads: tuple[str, ...]) -> str:
    if tuple(leads) == STANDARD_LEADS:
        return "a standard ECG lead (I, II, III, aVR, aVL, aVF, V1-V6)"
    return f"one of the model's leads ({', '.join(leads)})"


# Modalities named after their kind keep their own Case field (cardio's four: ``case.note`` is the text).
_SLOTS: dict[str, str] = {"image": "image", "text": "note", "signal": "signal", "tabular": "tabular"}


@dataclass
class Case:
    """One patient case. ``None`` marks a missing modality; NaN / None marks a missing tabular value.

    Values are held per declared modality (``modalities``, cardio's four by default): a modality named
    image / text / signal / tabular in its field (``image``, ``note``, ``signal``, ``tabular``), any other
    in ``others`` by name. Read them with :attr:`values` / :meth:`value`, change them with
    :meth:`with_values`. Images are float32 (H, W) grey, (3, H, W) for a colour modality, or (D, H, W).
    ``outcome`` holds a survival case's ``{"time": t, "event": 0/1}`` (``label`` is then "").

    ``issues`` lists what the reader could not use as given (channels that name no lead, a signal with no
    usable lead, cohort columns it ignored), one human-readable sentence each, so no degradation is
    silent. ``meta`` may hold ``cohort_csv`` and ``cohort_line``: where a cohort case came from.
    """

    case_id: str
    label: str
    split: str
    site: str = ""
    image: np.ndarray | None = None  # float32 (H, W), (3, H, W) colour or (D, H, W)
    note: str | None = None
    signal: Signal | None = None
    tabular: Mapping[str, TabularValue] | None = None
    meta: dict = field(default_factory=dict)
    issues: list[str] = field(default_factory=list)
    others: dict[str, object] = field(default_factory=dict)  # declared modalities without a field of their own
    modalities: tuple[ModalitySpec, ...] = CARDIO_MODALITIES
    outcome: dict | None = None  # survival: {"time": float >= 0, "event": 0 or 1}

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        declared = {m.name for m in self.modalities}
        for name in self.others:
            if name in _SLOTS or name not in declared:
                where = "has its own field" if name in _SLOTS else "is not a declared modality"
                raise ValueError(f"case {self.case_id}: value {name!r} {where} "
                                 f"(declared: {', '.join(m.name for m in self.modalities)})")
        for name, slot in _SLOTS.items():
            if name not in declared and getattr(self, slot) is not None:
                raise ValueError(f"case {self.case_id}: {slot} is given but {name!r} is not a declared modality "
                                 f"(declared: {', '.join(m.name for m in self.modalities)})")

    @classmethod
    def from_values(cls, case_id: str, label: str, split: str, values: Mapping[str, object],
                    modalities: tuple[ModalitySpec, ...] = CARDIO_MODALITIES, **kwargs) -> "Case":
        """A case from ``{modality name: value}`` (absent names are missing) of a declaration."""
        slots = {_SLOTS[n]: v for n, v in values.items() if n in _SLOTS}
        others = {n: v for n, v in values.items() if n not in _SLOTS and v is not None}
        return cls(case_id=case_id, label=label, split=split, modalities=modalities, others=others, **slots, **kwargs)

    @property
    def text(self) -> str | None:
        """The clinical note under its modality name."""
        return self.note

    def value(self, name: str) -> object:
        """The value of declared modality ``name`` (None = missing)."""
        if name not in self.modality_names:
            raise KeyError(f"{name!r} is not a modality of case {self.case_id} "
                           f"(declared: {', '.join(self.modality_names)})")
        return getattr(self, _SLOTS[name]) if name in _SLOTS else self.others.get(name)

    @property
    def values(self) -> dict[str, object]:
        """{modality name: value or None}, in declaration order."""
        return {name: self.value(name) for name in self.modality_names}

    def with_values(self, **changes: object) -> "Case":
        """A copy with the named modalities' values replaced (None hides one)."""
        unknown = [n for n in changes if n not in self.modality_names]
        if unknown:
            raise KeyError(f"{unknown[0]!r} is not a modality of case {self.case_id} "
                           f"(declared: {', '.join(self.modality_names)})")
        slots = {_SLOTS[n]: v for n, v in changes.items() if n in _SLOTS}
        others = {**self.others, **{n: v for n, v in changes.items() if n not in _SLOTS}}
        others = {n: v for n, v in others.items() if v is not None}
        return dataclasses.replace(self, others=others, meta=dict(self.meta), issues=list(self.issues), **slots)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    @property
    def available(self) -> dict[str, bool]:
        """{modality name: has a value}, in declaration order."""
        return {name: value is not None for name, value in self.values.items()}

    @property
    def present_modalities(self) -> tuple[str, ...]:
        return tuple(m for m, ok in self.available.items() if ok)
