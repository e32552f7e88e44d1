"""A toy cohort with five declared modalities (RGB image, text, two tabular, signal) and a survival
variant, written through the project's own writer, for the declared-modality tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neurofusion.config import (
    FusionConfig,
    ImageEncoderConfig,
    SignalEncoderConfig,
    TabularEncoderConfig,
    TextEncoderConfig,
)
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


def tiny_encoders(vocab_size: int, tabular_dropout: float = 0.1) -> dict:
    """The encoder and fusion sizes of every tiny declared-modality model in the tests (16 px images, 2 s
    signals at 50 Hz, one-layer text), as ModelConfig keyword arguments."""
    return dict(
        image=ImageEncoderConfig(image_size=16, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
        text=TextEncoderConfig(vocab_size=vocab_size, hidden_size=16, num_layers=1, num_heads=2,
                               intermediate_size=32, max_length=64, attention_dropout=0.0),
        signal=SignalEncoderConfig(fs=50.0, seconds=2.0, conv_channels=[8], kernel_size=5, lstm_hidden=8, out_dim=16),
        tabular=TabularEncoderConfig(hidden_sizes=[16], category_dim=2, out_dim=8, dropout=tabular_dropout),
        fusion=FusionConfig(token_dim=16, num_heads=2, fused_dim=24, dropout=0.0),
    )
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
