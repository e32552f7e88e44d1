"""The in-memory case: up to four modalities, each of which may be missing.

A missing modality is ``None`` (never zeros), so every consumer has to decide what absence means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

MODALITIES: tuple[str, ...] = ("image", "text", "signal", "tabular")
SPLITS: tuple[str, ...] = ("train", "val", "test")
STANDARD_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)

TabularValue = float | str | None


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


@dataclass
class Case:
    """One patient case. ``None`` marks a missing modality; NaN / None marks a missing tabular value."""

    case_id: str
    label: str
    split: str
    site: str = ""
    image: np.ndarray | None = None  # float32 (H, W) or (D, H, W)
    note: str | None = None
    signal: Signal | None = None
    tabular: Mapping[str, TabularValue] | None = None
    meta: dict = field(default_factory=dict)

    @property
    def text(self) -> str | None:
        """The clinical note under its modality name."""
        return self.note

    @property
    def available(self) -> dict[str, bool]:
        return {
            "image": self.image is not None,
            "text": self.note is not None,
            "signal": self.signal is not None,
            "tabular": self.tabular is not None,
        }

    @property
    def present_modalities(self) -> tuple[str, ...]:
        return tuple(m for m, ok in self.available.items() if ok)
