"""Loading and caching for the dashboard: the model and cohort once per process (shared, read-only), the
cohort predictions and each case's explanation once per (checkpoint, cohort, case, settings)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from explain.case import CaseExplanation, ExplainSettings, explain_case
from neurofusion.checkpoint import CONFIG, WEIGHTS, Checkpoint, load_checkpoint
from neurofusion.data.cohort import COHORT_CSV, CohortReader
from neurofusion.data.schema import MODALITIES, SPLITS
from neurofusion.inference import Predictor

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
DEFAULT_COHORT = ROOT / "sample_data" / "cardio"


def fingerprint(*files: Path) -> str:
    """Changes when any of the files changes (size, modification time, first 64 kB): cache keys that
    follow a retrained checkpoint or an edited cohort without hashing gigabytes."""
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(65536))
    return digest.hexdigest()[:16]


def checkpoint_key(path: str) -> str:
    folder = Path(path)
    return fingerprint(folder / CONFIG, folder / WEIGHTS)


def cohort_key(path: str) -> str:
    return fingerprint(Path(path) / COHORT_CSV)


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def load_model(path: str, device: str, key: str) -> tuple[Checkpoint, Predictor]:
    """One model per (folder, device, contents) for the whole process; never mutated after loading."""
    checkpoint = load_checkpoint(path, device=device)
    return checkpoint, Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device)


@st.cache_resource(show_spinner="Opening the cohort...", max_entries=4)
def load_cohort(path: str, key: str) -> CohortReader:
    return CohortReader(path)


@st.cache_data(show_spinner="Predicting every case of the cohort...", max_entries=8)
def cohort_predictions(_predictor: Predictor, _cohort: CohortReader, model_key: str, data_key: str) -> pd.DataFrame:
    """One row per case: case_id, split, site, label, predicted, confidence, correct, has_<modality>."""
    cohort = _cohort
    ids = cohort.case_ids
    _, probabilities = _predictor.predict([cohort[i] for i in ids])
    classes = _predictor.model.classes
    table = cohort.table.set_index("case_id").loc[ids]
    predicted = probabilities.argmax(1)
    frame = pd.DataFrame({
        "case_id": ids, "split": table["split"].to_numpy(), "site": table["site"].to_numpy(),
        "label": table["label"].to_numpy(), "predicted": [classes[k] for k in predicted],
        "confidence": probabilities.max(1),
    })
    frame["correct"] = frame["label"] == frame["predicted"]
    for m in MODALITIES:
        frame[f"has_{m}"] = table[f"has_{m}"].to_numpy()
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = probabilities[:, k]
    return frame


@st.cache_data(show_spinner="Explaining this case...", max_entries=256)
def case_explanation(_predictor: Predictor, _cohort: CohortReader, model_key: str, data_key: str, case_id: str,
                     settings: ExplainSettings) -> CaseExplanation:
    return explain_case(_predictor, _cohort[case_id], settings)


def device_options() -> list[str]:
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Context:
    """What every page needs, loaded by the entry file from the sidebar settings."""

    def __init__(self, checkpoint: Checkpoint, predictor: Predictor, cohort: CohortReader, model_key: str,
                 data_key: str, settings: ExplainSettings) -> None:
        self.checkpoint = checkpoint
        self.predictor = predictor
        self.cohort = cohort
        self.model_key = model_key
        self.data_key = data_key
        self.settings = settings

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.config.classes)

    def predictions(self) -> pd.DataFrame:
        return cohort_predictions(self.predictor, self.cohort, self.model_key, self.data_key)

    def split_ids(self, split: str) -> list[str]:
        """The case ids of one split, or of every case for "all"."""
        return self.cohort.case_ids if split == "all" else self.cohort.ids(split)

    def explain(self, case_id: str, settings: ExplainSettings | None = None) -> CaseExplanation:
        return case_explanation(self.predictor, self.cohort, self.model_key, self.data_key, case_id,
                                settings or self.settings)


def split_picker(ctx: Context, key: str) -> str:
    """Which cases a cohort page covers: every case or one split that has cases (default: test)."""
    available = ["all"] + [s for s in SPLITS if ctx.cohort.ids(s)]
    return st.selectbox("Cases", available, index=available.index("test") if "test" in available else 0,
                        key=key, format_func=lambda s: "every case" if s == "all" else f"{s} split")


def context() -> Context:
    """The context the entry file stored for this session (pages are only run after it exists)."""
    return st.session_state["app.context"]
