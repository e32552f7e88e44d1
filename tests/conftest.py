"""Shared fixtures: small hand-made cohorts written through the project's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neurofusion.data import Case, FeatureSpec, Signal, STANDARD_LEADS, write_case_files, write_cohort_tables

FEATURES = [
    FeatureSpec("age", unit="years"),
    FeatureSpec("sex", kind="categorical", categories=("F", "M")),
    FeatureSpec("troponin_ng_l", unit="ng/L", ref_high=26),
]
CLASSES = ["normal", "heart_failure"]


def small_case(i: int, *, split: str = "train", missing: tuple[str, ...] = ()) -> Case:
    rng = np.random.default_rng(i)
    return Case(
        case_id=f"P{i:03d}",
        label=CLASSES[i % 2],
        split=split,
        site="site_a",
        image=None if "image" in missing else rng.random((40, 48)).astype(np.float32),
        note=None if "text" in missing else f"Patient {i} reports dyspnoea — café visit; BNP elevated.",
        signal=None if "signal" in missing else Signal(rng.normal(0, 0.3, (12, 1000)).astype(np.float32), 500, STANDARD_LEADS),
        tabular=None if "tabular" in missing else {"age": 50.0 + i, "sex": "F" if i % 2 else "M", "troponin_ng_l": float("nan") if i % 3 == 0 else 10.0 + i},
    )


def write_small_cohort(root: Path, cases: list[Case], *, image_format: str = "png16", info: dict | None = None) -> Path:
    rows = [write_case_files(root, case, image_format=image_format) for case in cases]
    write_cohort_tables(root, rows, features=FEATURES, info=info if info is not None else {"classes": CLASSES})
    return root


@pytest.fixture
def small_cohort(tmp_path: Path) -> tuple[Path, list[Case]]:
    splits = ["train", "train", "val", "test", "test", "test"]
    missing = [(), ("image",), ("text", "signal"), ("tabular",), (), ("signal",)]
    cases = [small_case(i, split=s, missing=m) for i, (s, m) in enumerate(zip(splits, missing))]
    return write_small_cohort(tmp_path / "cohort", cases), cases
