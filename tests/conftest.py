"""Shared fixtures: small hand-made cohorts written through the project's own writer, a small generated
cardio cohort and a tiny model config for model and explanation tests."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofusion.config import (
    FusionConfig,
    HeadConfig,
    ImageEncoderConfig,
    ModelConfig,
    SignalEncoderConfig,
    TabularEncoderConfig,
    TextEncoderConfig,
)
from neurofusion.data import (
    STANDARD_LEADS,
    Case,
    CohortReader,
    FeatureSpec,
    Signal,
    write_case_files,
    write_cohort_tables,
)
from neurofusion.data.synthetic.generate import generate_cohort
from neurofusion.data.tokenizer import train_wordpiece
from neurofusion.inference import Predictor



_MAIN = sys.modules.get("__main__")  # pytest's own, as the session started


@pytest.fixture(autouse=True)
def _keep_main_module():
    """Streamlit's AppTest runs the app script as sys.modules["__main__"] and leaves it there (also from a
    module-scoped fixture, set up before this one); a test that starts processes with the spawn method would make
    every child run the app script (spawn re-imports the parent's __main__). Every test starts with, and leaves,
    the session's own __main__."""
    if _MAIN is not None:
        sys.modules["__main__"] = _MAIN
    yield
    if _MAIN is not None:
        sys.modules["__main__"] = _MAIN


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


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> CohortReader:
    root = tmp_path_factory.mktemp("cohort") / "cardio60"
    generate_cohort("cardio", 60, 3, root, progress=False)
    return CohortReader(root)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_cohort):
    return train_wordpiece([c.note for c in tiny_cohort if c.note], 400)


def tiny_config(cohort: CohortReader, tokenizer, architecture: str = "neurofusion", **heads) -> ModelConfig:
    return ModelConfig(
        task="cardio",
        architecture=architecture,
        classes=list(cohort.classes),
        features=[dataclasses.asdict(f) for f in cohort.features.values()],
        image=ImageEncoderConfig(image_size=32, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
        text=TextEncoderConfig(vocab_size=len(tokenizer), hidden_size=16, num_layers=1, num_heads=2,
                               intermediate_size=32, max_length=128, attention_dropout=0.0),
        signal=SignalEncoderConfig(fs=50.0, seconds=4.0, conv_channels=[8, 8], kernel_size=5, lstm_hidden=8, out_dim=16),
        tabular=TabularEncoderConfig(hidden_sizes=[16], category_dim=2, out_dim=8),
        fusion=FusionConfig(token_dim=16, num_heads=2, fused_dim=24, dropout=0.0),
        heads=heads.get("heads", [HeadConfig(num_outputs=len(cohort.classes))]),
    )


@pytest.fixture
def tiny_batch(tiny_cohort, tiny_tokenizer):
    """The first 12 cases collated for a tiny neurofusion config, with the config and predictor."""
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    torch.manual_seed(0)
    from neurofusion.models import build_model

    model = build_model(config).eval()
    predictor = Predictor(model, tiny_tokenizer)
    return model, predictor.batch([tiny_cohort[i] for i in range(12)])


@pytest.fixture(scope="session")
def icu_reader():
    """The bundled ICU test stays (sample_data/icu), opened once for the session."""
    from neurofusion.data.timed import TimedCohortReader

    return TimedCohortReader(Path(__file__).resolve().parents[1] / "sample_data" / "icu")


@pytest.fixture(scope="session")
def icu_predictor():
    """The bundled ICU demo model on the CPU."""
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.inference import Predictor

    checkpoint = load_checkpoint(Path(__file__).resolve().parents[1] / "sample_data" / "checkpoints" / "icu_demo",
                                 device="cpu")
    return Predictor(checkpoint.model, checkpoint.tokenizer)
