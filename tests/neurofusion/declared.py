"""A toy cohort with five declared modalities (RGB image, text, two tabular, signal) and a survival
variant, written through the project's own writer, for the declared-modality tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofusion.data import STANDARD_LEADS, Case, FeatureSpec, Signal, write_case_files, write_cohort_tables
from neurofusion.data.modalities import ModalitySpec, modalities_to_dicts

TOY_MODALITIES = (
    ModalitySpec("slide", "image", title="Slide", colour=True),
    ModalitySpec("report", "text", title="Report"),
    ModalitySpec("genes", "tabular", title="Genes"),
    ModalitySpec("clinical", "tabular", title="Clinical"),
    ModalitySpec("ecg", "signal", title="ECG", folder="waves"),
)
TOY_FEATURES = [
    FeatureSpec("tp53", kind="categorical", categories=("wt", "mut"), modality="genes"),
    FeatureSpec("brca1", kind="categorical", categories=("wt", "mut"), modality="genes"),
    FeatureSpec("age", unit="years", modality="clinical"),
    FeatureSpec("stage", kind="categorical", categories=("I", "II", "III", "IV"), modality="clinical"),
]
TOY_CLASSES = ["low", "high"]
SPLITS = ["train", "train", "val", "test", "test", "test", "train", "val"]
# which modalities each case lacks
MISSING = [(), ("slide",), ("report", "ecg"), ("genes",), ("clinical",), (), ("slide", "genes"), ()]


def toy_case(i: int, *, split: str = "train", missing: tuple[str, ...] = (), survival: bool = False) -> Case:
    rng = np.random.default_rng(100 + i)
    values = {
        "slide": (rng.integers(0, 256, (3, 24, 20)) / 255.0).astype(np.float32),
        "report": f"Case {i}: partial response after two cycles; no progression.",
        "genes": {"tp53": "mut" if i % 2 else "wt", "brca1": "wt"},
        "clinical": {"age": 40.0 + i, "stage": ("I", "II", "III", "IV")[i % 4]},
        "ecg": Signal(rng.normal(0, 0.3, (12, 500)).astype(np.float32), 250, STANDARD_LEADS),
    }
    values = {k: v for k, v in values.items() if k not in missing}
    outcome = {"time": float(5 * i + 0.5), "event": i % 2} if survival else None
    label = "" if survival else TOY_CLASSES[i % 2]
    return Case.from_values(f"T{i:03d}", label, split, values, TOY_MODALITIES, site="site_a", outcome=outcome)


def toy_info(survival: bool = False) -> dict:
    info = {"task": "toy", "modalities": modalities_to_dicts(TOY_MODALITIES)}
    return {**info, "outcome": "survival"} if survival else {**info, "classes": TOY_CLASSES}


def write_toy_cohort(root: Path, *, survival: bool = False, n: int = len(SPLITS)) -> tuple[Path, list[Case]]:
    cases = [toy_case(i, split=SPLITS[i % len(SPLITS)], missing=MISSING[i % len(MISSING)], survival=survival)
             for i in range(n)]
    rows = [write_case_files(root, case) for case in cases]
    write_cohort_tables(root, rows, features=TOY_FEATURES, info=toy_info(survival))
    return root, cases
