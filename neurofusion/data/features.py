"""Tabular feature descriptions (kind, unit, reference range) kept beside a cohort in ``features.csv``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neurofusion.data._tables import MISSING_TOKENS, read_csv_table
from neurofusion.data.errors import CohortError

FEATURE_KINDS = ("numeric", "categorical")
_FEATURE_COLUMNS = ["name", "kind", "unit", "ref_low", "ref_high", "categories", "description"]
MODALITY_COLUMN = "modality"  # optional: which tabular modality a column belongs to (two or more declared)


@dataclass(frozen=True)
class FeatureSpec:
    """One tabular feature. Categorical features list their allowed category labels. ``modality`` names the
    tabular modality it belongs to ("" = the cohort's only tabular modality)."""

    name: str
    kind: str = "numeric"
    unit: str = ""
    ref_low: float | None = None
    ref_high: float | None = None
    categories: tuple[str, ...] = ()
    description: str = ""
    modality: str = ""

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise ValueError(f"feature {self.name!r}: kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if self.kind == "categorical" and not self.categories:
            raise ValueError(f"feature {self.name!r}: a categorical feature needs its categories")

    @property
    def reference_range(self) -> str:
        """Human-readable normal range, e.g. '< 14 ng/L' or '3.5-5.0 mmol/L'."""
        lo, hi, unit = self.ref_low, self.ref_high, f" {self.unit}" if self.unit else ""
        if lo is not None and hi is not None:
            return f"{lo:g}-{hi:g}{unit}"
        if hi is not None:
            return f"< {hi:g}{unit}"
        if lo is not None:
            return f"> {lo:g}{unit}"
        return ""


def write_features(path: str | Path, features: list[FeatureSpec]) -> None:
    rows = [
        {
            "name": f.name,
            "kind": f.kind,
            "unit": f.unit,
            "ref_low": "" if f.ref_low is None else f.ref_low,
            "ref_high": "" if f.ref_high is None else f.ref_high,
            "categories": ";".join(f.categories),
            "description": f.description,
            MODALITY_COLUMN: f.modality,
        }
        for f in features
    ]
    # the modality column is written only when a feature names one, so a cardio features.csv is unchanged
    columns = _FEATURE_COLUMNS + ([MODALITY_COLUMN] if any(f.modality for f in features) else [])
    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)


def read_features(path: str | Path) -> dict[str, FeatureSpec]:
    """Read ``features.csv`` -> {name: FeatureSpec}, in file order."""
    path = Path(path)
    table = read_csv_table(path, ("name", "kind"))
    features: dict[str, FeatureSpec] = {}
    for i, row in table.iterrows():
        line = int(i) + 2
        name = row["name"].strip()
        if not name:
            raise CohortError("feature name is empty", path=path, line=line, field="name")
        if name in features:
            raise CohortError(f"feature '{name}' is described twice", path=path, line=line, field="name")
        bounds = {}
        for column in ("ref_low", "ref_high"):
            text = row.get(column, "").strip()
            bounds[column] = _parse_bound(text, path, line, column)
        categories = tuple(c.strip() for c in row.get("categories", "").split(";") if c.strip())
        try:
            features[name] = FeatureSpec(
                name=name,
                kind=row["kind"].strip() or "numeric",
                unit=row.get("unit", "").strip(),
                categories=categories,
                description=row.get("description", "").strip(),
                modality=row.get(MODALITY_COLUMN, "").strip(),
                **bounds,
            )
        except ValueError as err:
            raise CohortError(str(err), path=path, line=line, field="kind") from None
    return features


def _parse_bound(text: str, path: Path, line: int, column: str) -> float | None:
    if text.lower() in MISSING_TOKENS:
        return None
    try:
        value = float(text)
    except ValueError:
        raise CohortError(f"'{text}' is not a number", path=path, line=line, field=column) from None
    if not math.isfinite(value):
        raise CohortError(f"'{text}' is not a finite number", path=path, line=line, field=column)
    return value
