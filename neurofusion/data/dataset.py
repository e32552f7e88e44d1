"""torch ``Dataset`` and collate: cases from a cohort -> fixed-size tensors plus per-modality presence.

Signals are mapped to a fixed lead order and resampled to the model's rate, images padded to square and
resized, tabular values split into numeric values and categorical codes with explicit masks. A missing
modality stays a ``False`` in ``present``; its tensor slot is zero-filled only so the batch is
rectangular, and the model must replace it (with its learned "missing" embedding), never read it. A
modality the model cannot use (a recording none of whose channels is one of its leads, tabular values
none of which is one of its features) is missing too, never zeros that count as present;
:mod:`neurofusion.inputs` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from neurofusion.data.errors import CohortError
from neurofusion.data.features import FeatureSpec
from neurofusion.data.schema import MODALITIES, STANDARD_LEADS, Case, Signal, match_leads


@dataclass(frozen=True)
class InputSpec:
    """How raw cases become tensors. Saved with a checkpoint so inference prepares data the same way."""

    classes: tuple[str, ...]
    features: tuple[FeatureSpec, ...] = ()
    image_size: int = 128
    signal_fs: float = 250.0
    signal_seconds: float = 10.0
    leads: tuple[str, ...] = STANDARD_LEADS

    @property
    def numeric_features(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == "numeric")

    @property
    def categorical_features(self) -> tuple[FeatureSpec, ...]:
        return tuple(f for f in self.features if f.kind == "categorical")

    @property
    def signal_samples(self) -> int:
        return int(round(self.signal_fs * self.signal_seconds))


@dataclass
class Batch:
    """A collated batch. B = cases, L = leads, T = signal samples, S = image side."""

    case_ids: list[str]
    present: torch.Tensor  # (B, 4) bool, columns in MODALITIES order
    image: torch.Tensor  # (B, 1, S, S)
    signal: torch.Tensor  # (B, L, T)
    lead_mask: torch.Tensor  # (B, L) bool: lead recorded
    numeric: torch.Tensor  # (B, Fn) raw values, 0 where missing
    numeric_mask: torch.Tensor  # (B, Fn) bool: value measured
    categorical: torch.Tensor  # (B, Fc) long: 0 = missing, 1..K = category
    notes: list[str | None]
    labels: torch.Tensor  # (B,) long, -1 = unlabelled
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. input_ids, attention_mask

    def to(self, device: torch.device | str) -> "Batch":
        moved = {k: v.to(device) for k, v in self.tokens.items()}
        tensors = {
            name: getattr(self, name).to(device)
            for name in ("present", "image", "signal", "lead_mask", "numeric", "numeric_mask", "categorical", "labels")
        }
        return Batch(case_ids=self.case_ids, notes=self.notes, tokens=moved, **tensors)


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
    """One case -> the tensors of one batch row (see :class:`Batch`).

    Raises CohortError naming the case (and its cohort.csv line and column when it came from a cohort)
    for a tabular value the model cannot read (a category it does not know, text where it reads a number)."""
    signal, lead_mask = prepare_signal(case.signal, spec)
    try:
        numeric, numeric_mask, categorical = prepare_tabular(case.tabular, spec)
    except TabularValueError as err:
        raise CohortError(
            f"{err.value!r} is not {err.expected}; fix the value, or leave it empty if it was not measured",
            path=case.meta.get("cohort_csv"),
            line=case.meta.get("cohort_line"),
            case_id=case.case_id,
            field=err.feature,
        ) from None
    present = dict(case.available)
    present["signal"] = present["signal"] and bool(lead_mask.any())
    present["tabular"] = present["tabular"] and _uses_any_feature(case.tabular, spec)
    return {
        "case_id": case.case_id,
        "present": torch.tensor([present[m] for m in MODALITIES]),
        "image": prepare_image(case.image, spec.image_size),
        "signal": signal,
        "lead_mask": lead_mask,
        "numeric": numeric,
        "numeric_mask": numeric_mask,
        "categorical": categorical,
        "note": case.note,
        "label": spec.classes.index(case.label) if case.label in spec.classes else -1,
    }


def prepare_image(image: np.ndarray | None, size: int) -> torch.Tensor:
    """(H, W) or (D, H, W) -> (1, size, size) in [0, 1]: middle slice of a volume, intensities scaled by
    the 0.5th-99.5th percentiles (so PNG greys and DICOM physical units look alike), padded to a square
    so the anatomy keeps its aspect ratio, then resized."""
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


def _uses_any_feature(values: Mapping[str, float | str | None] | None, spec: InputSpec) -> bool:
    """Whether any of the case's tabular names is one of the model's features: values under other names
    alone would reach the model as an all-missing table that still counts as present."""
    return values is not None and any(f.name in values for f in spec.features)


def prepare_tabular(
    values: Mapping[str, float | str | None] | None, spec: InputSpec
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tabular values -> numeric (Fn,), numeric_mask (Fn,), categorical codes (Fc,) (0 = missing)."""
    numeric_specs, categorical_specs = spec.numeric_features, spec.categorical_features
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
    for the text encoder's tokenizer (missing notes are passed as empty strings and masked by ``present``)."""

    def __init__(self, tokenize: Callable[[list[str]], Mapping[str, torch.Tensor]] | None = None) -> None:
        self.tokenize = tokenize

    def __call__(self, items: list[dict]) -> Batch:
        notes = [item["note"] for item in items]
        tokens = dict(self.tokenize([n or "" for n in notes])) if self.tokenize else {}
        stack = lambda key: torch.stack([item[key] for item in items])  # noqa: E731
        return Batch(
            case_ids=[item["case_id"] for item in items],
            present=stack("present"),
            image=stack("image"),
            signal=stack("signal"),
            lead_mask=stack("lead_mask"),
            numeric=stack("numeric"),
            numeric_mask=stack("numeric_mask"),
            categorical=stack("categorical"),
            notes=notes,
            labels=torch.tensor([item["label"] for item in items], dtype=torch.long),
            tokens=tokens,
        )
