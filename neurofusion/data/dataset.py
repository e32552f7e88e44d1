"""torch ``Dataset`` and collate: cases -> fixed-size tensors per declared modality plus presence.

Each declared modality is prepared by its kind: signals mapped to a fixed lead order and resampled to
the model's rate, images padded to square and resized (grey (1, S, S) or colour (3, S, S)), tabular values
(each tabular modality its own features) split into numeric values and categorical codes with explicit
masks, notes kept as text for the tokenizer. A missing modality stays a ``False`` in ``present``; its
tensor slot is zero-filled only so the batch is rectangular, and the model must replace it (with its
learned "missing" embedding), never read it. A modality the model cannot use (a recording none of whose
channels is one of its leads, tabular values none of which is one of its features) is missing too, never
zeros that count as present; :mod:`neurofusion.inputs` says why.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from fractions import Fraction
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from neurofusion.data.errors import CohortError
from neurofusion.data.features import FeatureSpec
from neurofusion.data.modalities import CARDIO_MODALITIES, ModalitySpec, first_of_kind, of_kind
from neurofusion.data.schema import STANDARD_LEADS, Case, Signal, match_leads


@dataclass(frozen=True)
class InputSpec:
    """How raw cases become tensors. Saved with a checkpoint so inference prepares data the same way.

    ``modalities`` is the declaration the model reads (cardio's by default); ``outcome`` is
    "classification" (``classes``) or "survival"."""

    classes: tuple[str, ...]
    features: tuple[FeatureSpec, ...] = ()
    image_size: int = 128
    signal_fs: float = 250.0
    signal_seconds: float = 10.0
    leads: tuple[str, ...] = STANDARD_LEADS
    modalities: tuple[ModalitySpec, ...] = CARDIO_MODALITIES
    outcome: str = "classification"

    def features_of(self, modality: str) -> tuple[FeatureSpec, ...]:
        """The features of one tabular modality: those naming it, and unnamed ones when it is the only one."""
        only = len(of_kind(self.modalities, "tabular")) == 1
        return tuple(f for f in self.features if f.modality == modality or (only and not f.modality))

    @property
    def first_tabular(self) -> str | None:
        spec = first_of_kind(self.modalities, "tabular")
        return None if spec is None else spec.name

    @property
    def numeric_features(self) -> tuple[FeatureSpec, ...]:
        """Numeric features of the first tabular modality (cardio's labs), in batch column order."""
        name = self.first_tabular
        return () if name is None else tuple(f for f in self.features_of(name) if f.kind == "numeric")

    @property
    def categorical_features(self) -> tuple[FeatureSpec, ...]:
        name = self.first_tabular
        return () if name is None else tuple(f for f in self.features_of(name) if f.kind == "categorical")

    @property
    def signal_samples(self) -> int:
        return int(round(self.signal_fs * self.signal_seconds))


# The tensors each kind's slot holds (text slots hold the tokenizer's output, e.g. input_ids, attention_mask).
KIND_TENSORS: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "signal": ("signal", "lead_mask"),
    "tabular": ("numeric", "numeric_mask", "categorical"),
    "text": (),
}
# Batch attributes that read the first modality of a kind (cardio's names), for code written for cardio.
_LEGACY = {"image": "image", "signal": "signal", "lead_mask": "signal", "numeric": "tabular",
           "numeric_mask": "tabular", "categorical": "tabular"}


@dataclass(eq=False)
class Batch:
    """A collated batch. B = cases, M = declared modalities, L = leads, T = signal samples, S = image side.

    ``inputs[name]`` holds one modality's tensors by kind: image {"image": (B, C, S, S)} (C = 1 grey, 3
    colour); signal {"signal": (B, L, T), "lead_mask": (B, L) bool}; tabular {"numeric": (B, Fn) raw values
    (0 where missing), "numeric_mask": (B, Fn) bool, "categorical": (B, Fc) long (0 = missing)}; text the
    tokenizer's tensors, e.g. {"input_ids": (B, N), "attention_mask": (B, N)}, with the raw notes in
    ``texts[name]``. ``present`` is (B, M) bool in declaration order. ``labels`` (B,) long, -1 =
    unlabelled; ``outcomes`` (B, 2) float (time, event), NaN where unknown (classification cohorts).

    ``image``, ``signal``, ``lead_mask``, ``numeric``, ``numeric_mask``, ``categorical``, ``tokens`` and
    ``notes`` read and set the first modality of their kind (cardio's tensors under their old names; None
    when no modality is of that kind); they may also be given to the constructor or to
    ``dataclasses.replace`` instead of ``inputs``.
    """

    case_ids: list[str]
    present: torch.Tensor
    labels: torch.Tensor
    inputs: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    texts: dict[str, list[str | None]] = field(default_factory=dict)
    modalities: tuple[ModalitySpec, ...] = CARDIO_MODALITIES
    outcomes: torch.Tensor | None = None
    image: InitVar[torch.Tensor | None] = None
    signal: InitVar[torch.Tensor | None] = None
    lead_mask: InitVar[torch.Tensor | None] = None
    numeric: InitVar[torch.Tensor | None] = None
    numeric_mask: InitVar[torch.Tensor | None] = None
    categorical: InitVar[torch.Tensor | None] = None
    notes: InitVar[list[str | None] | None] = None
    tokens: InitVar[Mapping[str, torch.Tensor] | None] = None

    def __post_init__(self, image, signal, lead_mask, numeric, numeric_mask, categorical, notes, tokens) -> None:
        self.modalities = tuple(self.modalities)
        self.inputs = {name: dict(t) for name, t in self.inputs.items()}  # a replace() must not edit the original
        self.texts = {name: list(t) for name, t in self.texts.items()}
        if self.outcomes is None:
            self.outcomes = torch.full((len(self.case_ids), 2), float("nan"))
        legacy = {"image": image, "signal": signal, "lead_mask": lead_mask, "numeric": numeric,
                  "numeric_mask": numeric_mask, "categorical": categorical}
        for key, value in legacy.items():
            if value is not None:
                _set_legacy(self, key, value)
        if notes is not None:
            _set_notes(self, notes)
        if tokens is not None:
            _set_tokens(self, tokens)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modalities)

    def column(self, name: str) -> int:
        """The ``present`` column of modality ``name``."""
        return self.names.index(name)

    def to(self, device: torch.device | str) -> "Batch":
        moved = {name: {k: v.to(device) for k, v in tensors.items()} for name, tensors in self.inputs.items()}
        return Batch(self.case_ids, self.present.to(device), self.labels.to(device), moved, self.texts,
                     self.modalities, self.outcomes.to(device))


def _first(batch: Batch, kind: str) -> ModalitySpec | None:
    return first_of_kind(batch.modalities, kind)


def _get_legacy(batch: Batch, key: str) -> torch.Tensor | None:
    spec = _first(batch, _LEGACY[key])
    return None if spec is None else batch.inputs.get(spec.name, {}).get(key)


def _set_legacy(batch: Batch, key: str, value: torch.Tensor | None) -> None:
    spec = _first(batch, _LEGACY[key])
    if spec is None:
        if value is not None:
            raise AttributeError(f"cannot set {key}: the batch declares no {_LEGACY[key]} modality "
                                 f"({', '.join(batch.names)})")
        return
    batch.inputs.setdefault(spec.name, {})[key] = value


def _get_tokens(batch: Batch) -> dict[str, torch.Tensor]:
    spec = _first(batch, "text")
    return {} if spec is None else batch.inputs.get(spec.name, {})


def _set_tokens(batch: Batch, value: Mapping[str, torch.Tensor] | None) -> None:
    spec = _first(batch, "text")
    if spec is None:
        if value:
            raise AttributeError(f"cannot set tokens: the batch declares no text modality ({', '.join(batch.names)})")
        return
    batch.inputs[spec.name] = dict(value or {})


def _get_notes(batch: Batch) -> list[str | None]:
    spec = _first(batch, "text")
    empty = [None] * len(batch.case_ids)
    return empty if spec is None else batch.texts.get(spec.name, empty)


def _set_notes(batch: Batch, value: list[str | None] | None) -> None:
    spec = _first(batch, "text")
    if spec is not None and value is not None:
        batch.texts[spec.name] = list(value)


# The cardio names as properties (set after the dataclass is made, so they replace its InitVar defaults).
for _key in _LEGACY:
    setattr(Batch, _key, property(lambda self, k=_key: _get_legacy(self, k),
                                  lambda self, value, k=_key: _set_legacy(self, k, value)))
Batch.tokens = property(_get_tokens, _set_tokens, doc="The first text modality's tokens ({} before tokenisation).")
Batch.notes = property(_get_notes, _set_notes, doc="The first text modality's notes (None = missing).")


class CaseDataset(torch.utils.data.Dataset):
    """Cases (any sequence of :class:`Case`, e.g. a CohortReader or a list) -> per-case tensor dicts.

    ``transform(case, rng)`` (e.g. training augmentation) runs on the raw case before preparation.
    """

    def __init__(
        self,
        cases: Sequence[Case],
        spec: InputSpec,
        indices: Sequence[int] | None = None,
        transform: Callable[[Case, np.random.Generator], Case] | None = None,
        seed: int = 0,
    ) -> None:
        self.cases = cases
        self.spec = spec
        self.indices = list(range(len(cases))) if indices is None else list(indices)
        self.transform = transform
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        case = self.cases[self.indices[i]]
        if self.transform is not None:
            case = self.transform(case, self.rng)
        return prepare_case(case, self.spec)


def prepare_case(case: Case, spec: InputSpec) -> dict:
    """One case -> the tensors of one batch row (see :class:`Batch`), for the modalities ``spec`` declares.

    Raises CohortError naming the case (and its cohort.csv line and column when it came from a cohort)
    for a tabular value the model cannot read (a category it does not know, text where it reads a number),
    and ValueError when the case's declaration lacks one of the model's modalities."""
    declared = set(case.modality_names)
    absent = [m.name for m in spec.modalities if m.name not in declared]
    if absent:
        raise ValueError(f"case {case.case_id} has no modality {absent[0]!r} the model reads (the case declares "
                         f"{', '.join(case.modality_names)}; the model {', '.join(m.name for m in spec.modalities)})")
    inputs: dict[str, dict[str, torch.Tensor]] = {}
    texts: dict[str, str | None] = {}
    present: list[bool] = []
    for modality in spec.modalities:
        value = case.value(modality.name)
        used = value is not None
        if modality.kind == "image":
            inputs[modality.name] = {"image": prepare_image(value, spec.image_size, colour=modality.colour)}
        elif modality.kind == "signal":
            signal, lead_mask = prepare_signal(value, spec)
            inputs[modality.name] = {"signal": signal, "lead_mask": lead_mask}
            used = used and bool(lead_mask.any())
        elif modality.kind == "tabular":
            features = spec.features_of(modality.name)
            inputs[modality.name] = _prepare_tabular_of_case(case, value, features)
            used = used and _uses_any_feature(value, features)
        else:
            texts[modality.name] = value
            inputs[modality.name] = {}
        present.append(used)
    outcome = case.outcome or {}
    item = {
        "case_id": case.case_id,
        "modalities": spec.modalities,
        "present": torch.tensor(present, dtype=torch.bool),
        "inputs": inputs,
        "texts": texts,
        "label": spec.classes.index(case.label) if case.label in spec.classes else -1,
        "outcome": torch.tensor([float(outcome.get("time", float("nan"))), float(outcome.get("event", float("nan")))]),
    }
    # the first modality of each kind under cardio's keys too ("image", "lead_mask", "note", ...)
    for key, kind in _LEGACY.items():
        first = first_of_kind(spec.modalities, kind)
        if first is not None:
            item[key] = inputs[first.name][key]
    text = first_of_kind(spec.modalities, "text")
    if text is not None:
        item["note"] = texts[text.name]
    return item


def _prepare_tabular_of_case(case: Case, values, features: tuple[FeatureSpec, ...]) -> dict[str, torch.Tensor]:
    try:
        numeric, numeric_mask, categorical = prepare_tabular(values, features)
    except TabularValueError as err:
        raise CohortError(
            f"{err.value!r} is not {err.expected}; fix the value, or leave it empty if it was not measured",
            path=case.meta.get("cohort_csv"),
            line=case.meta.get("cohort_line"),
            case_id=case.case_id,
            field=err.feature,
        ) from None
    return {"numeric": numeric, "numeric_mask": numeric_mask, "categorical": categorical}


def prepare_image(image: np.ndarray | None, size: int, colour: bool = False) -> torch.Tensor:
    """(H, W) or (D, H, W) -> (1, size, size) in [0, 1]: middle slice of a volume, intensities scaled by
    the 0.5th-99.5th percentiles (so PNG greys and DICOM physical units look alike), padded to a square
    so the anatomy keeps its aspect ratio, then resized. colour: (3, H, W) RGB in [0, 1] -> (3, size,
    size), clipped to [0, 1] but not rescaled (a per-image stretch would change the stain's colours)."""
    if colour:
        return _prepare_colour(image, size)
    if image is None:
        return torch.zeros(1, size, size)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        image = image[image.shape[0] // 2]
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W) or (D, H, W), got shape {image.shape}")
    lo, hi = np.percentile(image, [0.5, 99.5])
    scaled = np.clip((image - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(image)
    h, w = scaled.shape
    side = max(h, w)
    padded = np.zeros((side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    padded[top:top + h, left:left + w] = scaled
    tensor = torch.from_numpy(padded)[None, None]  # (H, W) -> (1, 1, S0, S0)
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp(0, 1)


def _prepare_colour(image: np.ndarray | None, size: int) -> torch.Tensor:
    if image is None:
        return torch.zeros(3, size, size)
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"a colour image must be (3, H, W) RGB, got shape {image.shape}")
    _, h, w = image.shape
    side = max(h, w)
    padded = np.zeros((3, side, side), dtype=np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    padded[:, top:top + h, left:left + w] = np.clip(image, 0, 1)
    tensor = torch.from_numpy(padded)[None]  # (3, S0, S0) -> (1, 3, S0, S0)
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized[0].clamp(0, 1)


def prepare_signal(signal: Signal | None, spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Signal -> (L, T) in spec.leads order at spec.signal_fs, cropped or zero-padded to
    spec.signal_seconds, and the (L,) mask of leads the recording has."""
    out = torch.zeros(len(spec.leads), spec.signal_samples)
    mask = torch.zeros(len(spec.leads), dtype=torch.bool)
    if signal is None:
        return out, mask
    rows = match_leads(signal.channels, spec.leads).rows  # aliases ('MLII', 'ECG_V1') matched in one place
    if not rows:
        return out, mask
    data = resample(signal.data, signal.fs, spec.signal_fs)
    n = min(data.shape[1], spec.signal_samples)
    for j, lead in enumerate(spec.leads):
        row = rows.get(lead)
        if row is not None:
            out[j, :n] = torch.from_numpy(np.ascontiguousarray(data[row, :n]))
            mask[j] = True
    return out, mask


def resample(data: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """(C, T) at fs_in -> (C, T') at fs_out with a polyphase anti-aliasing filter."""
    if fs_in == fs_out:
        return data.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # imported when first needed: scipy.signal takes ~0.8 s to import

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return resample_poly(data, ratio.numerator, ratio.denominator, axis=1).astype(np.float32)


class TabularValueError(ValueError):
    """A tabular value the model cannot read: a category it was not trained with, or text where it reads
    a number. ``expected`` says what it reads instead."""

    def __init__(self, feature: str, value: object, expected: str) -> None:
        self.feature, self.value, self.expected = feature, value, expected
        super().__init__(f"feature {feature}: {value!r} is not {expected}")


def _uses_any_feature(values: Mapping[str, float | str | None] | None, features: Sequence[FeatureSpec]) -> bool:
    """Whether any of the case's tabular names is one of the model's features: values under other names
    alone would reach the model as an all-missing table that still counts as present."""
    return values is not None and any(f.name in values for f in features)


def prepare_tabular(
    values: Mapping[str, float | str | None] | None, spec: InputSpec | Sequence[FeatureSpec]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tabular values -> numeric (Fn,), numeric_mask (Fn,), categorical codes (Fc,) (0 = missing), for
    ``spec``'s features (an InputSpec: its first tabular modality's) or the given features."""
    features = tuple(spec.features_of(spec.first_tabular)) if isinstance(spec, InputSpec) and spec.first_tabular else (
        () if isinstance(spec, InputSpec) else tuple(spec))
    numeric_specs = tuple(f for f in features if f.kind == "numeric")
    categorical_specs = tuple(f for f in features if f.kind == "categorical")
    numeric = torch.zeros(len(numeric_specs))
    numeric_mask = torch.zeros(len(numeric_specs), dtype=torch.bool)
    categorical = torch.zeros(len(categorical_specs), dtype=torch.long)
    if values is None:
        return numeric, numeric_mask, categorical
    for j, feature in enumerate(numeric_specs):
        value = values.get(feature.name)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            try:
                numeric[j] = float(value)
            except (TypeError, ValueError):
                expected = "a number (the model reads this feature as numeric)"
                raise TabularValueError(feature.name, value, expected) from None
            numeric_mask[j] = True
    for j, feature in enumerate(categorical_specs):
        value = values.get(feature.name)
        if value is not None:
            if value not in feature.categories:
                raise TabularValueError(
                    feature.name, value, f"one of the categories the model knows ({', '.join(feature.categories)})"
                )
            categorical[j] = feature.categories.index(value) + 1
    return numeric, numeric_mask, categorical


class Collate:
    """Stack prepared cases into a :class:`Batch`; ``tokenize(notes) -> {name: (B, N) tensor}`` is the hook
    for the text encoder's tokenizer, applied to each text modality (missing notes are passed as empty
    strings and masked by ``present``)."""

    def __init__(self, tokenize: Callable[[list[str]], Mapping[str, torch.Tensor]] | None = None) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[dict]) -> Batch:
        if not items:
            raise ValueError("cannot collate an empty list of cases")
        modalities = items[0]["modalities"]
        inputs: dict[str, dict[str, torch.Tensor]] = {}
        texts: dict[str, list[str | None]] = {}
        for spec in modalities:
            if spec.kind == "text":
                notes = [item["texts"][spec.name] for item in items]
                texts[spec.name] = notes
                inputs[spec.name] = dict(self.tokenize([n or "" for n in notes])) if self.tokenize else {}
            else:
                inputs[spec.name] = {key: torch.stack([item["inputs"][spec.name][key] for item in items])
                                     for key in KIND_TENSORS[spec.kind]}
        return Batch(
            case_ids=[item["case_id"] for item in items],
            present=torch.stack([item["present"] for item in items]),
            labels=torch.tensor([item["label"] for item in items], dtype=torch.long),
            inputs=inputs,
            texts=texts,
            modalities=modalities,
            outcomes=torch.stack([item["outcome"] for item in items]),
        )
