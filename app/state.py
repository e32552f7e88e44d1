"""Loading and caching for the dashboard: the model and cohort once per process (shared, read-only), the
cohort predictions and each case's explanation once per (checkpoint, cohort, case files, settings).

A case whose files cannot be read (or that the model cannot take) is reported, never allowed to take the
rest of the cohort down: cohort predictions keep a row for it with the reason, and cohort pages leave it out.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
import torch

from app.case_progress import CaseJob, cached_or_computed, case_job
from explain.case import CaseExplainer, CaseExplanation, ExplainSettings, explain_case
from explain.cohort import CohortImportance, cohort_importance
from app.store_state import STORE_SETTING, StoreLookup, find_store  # noqa: F401  (pages import them from here)
from explain.store import case_file_stats, file_stat_lines
from explain.targets import SurvivalTarget
from neurofusion.checkpoint import CONFIG, WEIGHTS, Checkpoint, load_checkpoint
from neurofusion.config import ModelConfig
from neurofusion.data.cohort import COHORT_CSV, CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.data.modalities import ModalitySpec
from neurofusion.data.schema import SPLITS, Case
from neurofusion.data.timed import TimedCohortReader, open_cohort
from neurofusion.inference import Predictor
from neurofusion.ood import OOD_FILE
from neurofusion.survival import SurvivalBins, risk_groups

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
DEFAULT_COHORT = ROOT / "sample_data" / "cardio"


@dataclass(frozen=True)
class Demo:
    title: str
    checkpoint: Path
    cohort: Path


# The bundled demos, offered in the sidebar (the first is the default).
DEMOS = {
    "cardio": Demo("Cardiology: diagnosis (5 classes)", DEFAULT_CHECKPOINT, DEFAULT_COHORT),
    "cancer": Demo("Oncology: 5-year survival", ROOT / "sample_data" / "checkpoints" / "cancer_demo",
                   ROOT / "sample_data" / "cancer"),
    "icu": Demo("ICU: death within 48 h, at any hour", ROOT / "sample_data" / "checkpoints" / "icu_demo",
                ROOT / "sample_data" / "icu"),
}
# The sidebar's Integrated Gradients choices (app/main.py): completeness tolerances offered, the quadrature
# rules' names, and from how many BERT layers "auto" attributes the note at the last layer's input instead of
# the word embeddings (measured on BERT-base: a step there costs 1/79 of one from the word embeddings).
TOLERANCES = (0.01, 0.02, 0.05, 0.1, 0.2)
STEPS_METHOD_LABELS = {"gauss_then_trapezoid": "Gauss-Legendre, then nested trapezoid",
                       "gausslegendre": "Gauss-Legendre", "riemann_trapezoid": "trapezoid (nested)"}
# The explanation settings the sidebar starts from (and benchmarks/gpu_explain_latency.py times): each map's steps
# from 8 until it adds up to within 5 %, Gauss-Legendre first (a smooth path is done at 8 steps), nested
# trapezoid grids after (on the demo 0.74-0.99 s per case against 1.31-1.34 s for Gauss-Legendre alone).
DASHBOARD_SETTINGS = ExplainSettings(tolerance=0.05, steps_method="gauss_then_trapezoid", max_steps=128)
AUTO_NOTE_LAYERS = 6


def auto_note_layer(layers: int) -> int | None:
    """Where "auto" attributes the note of a BERT with ``layers`` layers: the word embeddings (None) for a
    small encoder, else the input of its last layer."""
    return None if layers < AUTO_NOTE_LAYERS else layers - 1


# Errors that mean "this case's input is bad", shown as a message on the case. CohortError (a ValueError)
# names the file, line and field; a plain ValueError comes from turning a readable case into model input
# (e.g. a category value the checkpoint does not know).
CASE_ERRORS = (CohortError, ValueError)


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
    """Config, weights and, when fitted, the out-of-distribution reference (refitting it alone changes
    every flag)."""
    folder = Path(path)
    optional = [folder / OOD_FILE] if (folder / OOD_FILE).is_file() else []
    return fingerprint(folder / CONFIG, folder / WEIGHTS, *optional)


def cohort_key(path: str) -> str:
    return fingerprint(Path(path) / COHORT_CSV)


def file_columns(cohort: CohortReader) -> list[str]:
    """The cohort.csv columns that name a case's files: one per declared file-backed modality (none in a
    time-stamped cohort, whose cases are read from its long tables)."""
    return [m.file_column for m in cohort.modalities if m.file_backed]


def case_files(cohort: CohortReader, case_id: str) -> list[str]:
    """The files one case is read from: one per declared file-backed modality it has (for WFDB, the
    header; ``case_key`` adds the data files it names), or a time-stamped cohort's long tables. The case's
    row of cohort.csv is covered by the cohort's own key."""
    if getattr(cohort, "timed", False):
        return [str(path) for path in cohort.table_files]
    row = cohort.table.iloc[cohort.position(case_id)]
    return [os.path.join(cohort.root, row[c]) for c in file_columns(cohort) if row[c]]


def case_key(cohort: CohortReader, case_id: str) -> str:
    """Changes when any of the case's files is edited, replaced or removed: size and modification time
    only (no read), so it is cheap enough to check on every rerun."""
    return _stat_key(case_files(cohort, case_id))


def cases_key(cohort: CohortReader, data_key: str) -> str:
    """The cohort table's key plus the size and modification time of every case's files, for results
    computed from every case: one stat per file, once per rerun (7 ms for the 200-case sample cohort)."""
    files = [os.path.join(cohort.root, f) for c in file_columns(cohort) for f in cohort.table[c] if f]
    if getattr(cohort, "timed", False):
        files = [str(path) for path in cohort.table_files]
    return hashlib.sha256(f"{data_key}:{_stat_key(files)}".encode()).hexdigest()[:16]


def _stat_key(files: Sequence[str]) -> str:
    """Hash of (path, size, mtime) of each file and of the data files each WFDB header names (editing the
    samples leaves the header untouched): :func:`explain.store.file_stat_lines`, one os.stat per file."""
    return hashlib.sha256("".join(file_stat_lines("", files)).encode()).hexdigest()[:16]


@st.cache_resource(show_spinner="Loading the model...", max_entries=4)
def load_model(path: str, device: str, key: str) -> tuple[Checkpoint, Predictor]:
    """One model per (folder, device, contents) for the whole process; never mutated after loading."""
    checkpoint = load_checkpoint(path, device=device)
    return checkpoint, Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device)


@st.cache_resource(show_spinner="Opening the cohort...", max_entries=4)
def load_cohort(path: str, key: str) -> CohortReader | TimedCohortReader:
    """The cohort with the reader its cohort.json calls for (a time-stamped ICU cohort: TimedCohortReader)."""
    return open_cohort(path)


@st.cache_data(show_spinner="Predicting every case of the cohort...", max_entries=8)
def cohort_predictions(_predictor: Predictor, _cohort: CohortReader, model_key: str, cases_key: str) -> pd.DataFrame:
    """One row per case: case_id, split, site, label, predicted, confidence, correct, has_<modality>,
    p_<class>, and error: why the case could not be predicted ("" when it was; then predicted is "" and
    the probabilities are NaN). A survival model's table is :func:`survival_table`'s."""
    cohort = _cohort
    ids = cohort.case_ids
    if _predictor.model.config.outcome == "survival":
        return survival_table(_predictor, cohort, ids)
    classes = _predictor.model.classes
    probabilities, errors = predict_readable(_predictor, cohort, ids, len(classes))
    return _prediction_table(cohort, ids, classes, probabilities, errors)


@st.cache_resource(show_spinner=False)
def _predicted() -> set[tuple[str, str]]:
    """(model key, cases key) of the cohort predictions computed in this process."""
    return set()


def _prediction_table(cohort: CohortReader, ids: Sequence[str], classes: Sequence[str], probabilities: np.ndarray,
                      errors: dict[str, str]) -> pd.DataFrame:
    """cohort_predictions' table from (N, C) class probabilities (NaN rows for the cases in ``errors``)."""
    table = cohort.table.set_index("case_id").loc[ids]
    failed = np.isnan(probabilities).any(axis=1)
    predicted = np.where(failed, 0, np.nan_to_num(probabilities).argmax(1))
    frame = pd.DataFrame({
        "case_id": ids, "split": table["split"].to_numpy(), "site": table["site"].to_numpy(),
        "label": table["label"].to_numpy(),
        "predicted": ["" if bad else classes[k] for bad, k in zip(failed, predicted)],
        "confidence": probabilities.max(1),
    })
    frame["correct"] = frame["label"] == frame["predicted"]
    for m in cohort.modality_names:
        frame[f"has_{m}"] = table[f"has_{m}"].to_numpy()
    for k, c in enumerate(classes):
        frame[f"p_{c}"] = probabilities[:, k]
    frame["error"] = [errors.get(i, "") for i in ids]
    return frame


def survival_table(predictor: Predictor, cohort: CohortReader, ids: Sequence[str]) -> pd.DataFrame:
    """A survival model's cohort table, one row per case: case_id, split, site, label (""), time, event
    (the recorded outcome), survival (predicted S at the model's horizon), risk (1 - survival), risk_group
    ("low" / "medium" / "high": tertiles of risk over the readable cases of ``ids``), has_<modality>,
    curve_<k> (S at the end of time bin k, k = 1..K), and error (as for a classifier; NaN predictions and
    risk_group "" for a case that failed)."""
    bins = predictor.model.config.survival_bins
    curves, errors = predict_readable(predictor, cohort, ids, bins.num_bins, read=_survival_curves)
    return _survival_frame(cohort, ids, bins, predictor.model.config.horizon, curves, errors)


def _survival_frame(cohort: CohortReader, ids: Sequence[str], bins: SurvivalBins, horizon: float, curves: np.ndarray,
                    errors: dict[str, str]) -> pd.DataFrame:
    """survival_table's frame from (N, K) predicted curves (NaN rows for the cases in ``errors``)."""
    table = cohort.table.set_index("case_id").loc[ids]
    failed = np.isnan(curves).any(axis=1)
    survival = np.full(len(ids), np.nan)
    survival[~failed] = bins.survival_at(curves[~failed], horizon)
    groups = np.full(len(ids), "", dtype=object)
    if (~failed).any():
        groups[~failed] = risk_groups(1.0 - survival[~failed])
    frame = pd.DataFrame({
        "case_id": ids, "split": table["split"].to_numpy(), "site": table["site"].to_numpy(),
        "label": table["label"].to_numpy(), "time": table["time"].to_numpy(dtype=float),
        "event": table["event"].to_numpy(dtype=float), "survival": survival, "risk": 1.0 - survival,
        "risk_group": groups,
    })
    for m in cohort.modality_names:
        frame[f"has_{m}"] = table[f"has_{m}"].to_numpy()
    for k in range(bins.num_bins):
        frame[f"curve_{k + 1}"] = curves[:, k]
    frame["error"] = [errors.get(i, "") for i in ids]
    return frame


def survival_curves(frame: pd.DataFrame) -> np.ndarray:
    """(N, K) predicted survival curves from a :func:`survival_table` frame (its curve_<k> columns)."""
    columns = [c for c in frame.columns if c.startswith("curve_")]
    return frame[sorted(columns, key=lambda c: int(c.split("_")[1]))].to_numpy(dtype=float)


def _class_probabilities(predictor: Predictor, cases: Sequence[Case]) -> np.ndarray:
    return predictor.predict(cases)[1]


def _survival_curves(predictor: Predictor, cases: Sequence[Case]) -> np.ndarray:
    return predictor.predict_survival(cases).curves


def predict_readable(predictor: Predictor, cohort: CohortReader, ids: Sequence[str], n_classes: int,
                     chunk: int = 64, read=_class_probabilities) -> tuple[np.ndarray, dict[str, str]]:
    """``read(predictor, cases)`` -> (n, n_classes) values (class probabilities by default, survival curves
    with :func:`_survival_curves`) for the cases of ``ids`` (NaN rows for the cases that failed), and
    {case_id: reason} for those that could not be read or turned into model input. The common path
    predicts in batches; only a batch that fails is retried case by case to find the bad one."""
    probabilities = np.full((len(ids), n_classes), np.nan)
    errors: dict[str, str] = {}
    for start in range(0, len(ids), chunk):
        rows, cases = [], []
        for k, case_id in enumerate(ids[start:start + chunk], start):
            case = _read(cohort, case_id, errors)
            if case is not None:
                rows.append(k)
                cases.append(case)
        if not cases:
            continue
        try:
            probabilities[rows] = read(predictor, cases)
        except CASE_ERRORS:
            for k, case in zip(rows, cases):
                try:
                    probabilities[k] = read(predictor, [case])[0]
                except CASE_ERRORS as err:
                    errors[case.case_id] = str(err)
    return probabilities, errors


def _read(cohort: CohortReader, case_id: str, errors: dict[str, str]) -> Case | None:
    try:
        return cohort[case_id]
    except CohortError as err:
        errors[case_id] = str(err)
        return None


@st.cache_data(show_spinner="Explaining every selected case (attention and modality importance)...", max_entries=16)
def cohort_explanation(_predictor: Predictor, _cohort: CohortReader, model_key: str, cases_key: str,
                       case_ids: tuple[str, ...], survival: SurvivalTarget | None = None) -> CohortImportance:
    """Modality importance of each case and the class-averaged attention, from one pass: the cohort
    attention and agreement pages share it, so the second of them opens from the cache. ``survival``: a
    survival model's explained quantity (None: survival at its horizon)."""
    return cohort_importance(_predictor, [_cohort[i] for i in case_ids], survival=survival)


def stored_predictions(lookup: StoreLookup, cohort: CohortReader,
                       config: ModelConfig | None = None) -> pd.DataFrame | None:
    """:func:`cohort_predictions`' table read from the store (no model) when it holds every case of the
    cohort (a case it names as unreadable counts as held, with its reason); None otherwise. A survival store's
    table is :func:`survival_table`'s, from its stored curves and ``config`` (the checkpoint's: time grid and
    horizon)."""
    store = lookup.store
    if store is None:
        return None
    errors = store.manifest.get("errors", {})
    ids = cohort.case_ids
    if store.missing([i for i in ids if i not in errors]):
        return None
    failed = {i: errors[i] for i in ids if i in errors}
    if store.survival:
        if config is None:
            raise ValueError("a survival store's predictions need the checkpoint's config (time grid and horizon)")
        curves = store.predictions().set_index("case_id").reindex(ids)
        curves = curves[[f"curve_{k + 1}" for k in range(config.survival_bins.num_bins)]].to_numpy(float)
        return _survival_frame(cohort, ids, config.survival_bins, config.horizon, curves, failed)
    classes = store.manifest["classes"]
    probabilities = store.table.set_index("case_id").reindex(ids)[[f"p_{c}" for c in classes]].to_numpy(float)
    return _prediction_table(cohort, ids, classes, probabilities, failed)




def modality_titles(specs: Sequence[ModalitySpec]) -> dict[str, str]:
    """{name: display title} of declared modalities, in declaration order (a spec without a title is shown
    by its name: 'treatment_notes' -> 'Treatment notes')."""
    return {s.name: s.title or s.name.replace("_", " ").capitalize() for s in specs}


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
        self._store_lookups: dict[str | None, StoreLookup] = {}

    @property
    def classes(self) -> list[str]:
        return list(self.checkpoint.config.classes)

    @property
    def timed(self) -> bool:
        """True for a time-stamped cohort (ICU): cases are stays, predicted as of an hour of the stay."""
        return bool(getattr(self.cohort, "timed", False))

    @property
    def survival(self) -> bool:
        """True for a survival model (cancer): no classes; a predicted curve, S(horizon) and a risk score."""
        return self.checkpoint.config.outcome == "survival"

    @property
    def names(self) -> list[str]:
        """The model's declared modalities, in declaration order (cardio: image, text, signal, tabular)."""
        return list(self.checkpoint.config.modality_names)

    @property
    def titles(self) -> dict[str, str]:
        """{modality name: display title} in declaration order (cardio: Echo image, Clinical note, ECG, Labs)."""
        return modality_titles(self.checkpoint.config.modality_specs)

    @property
    def kinds(self) -> dict[str, str]:
        return {s.name: s.kind for s in self.checkpoint.config.modality_specs}

    @functools.cached_property
    def case_file_stats(self) -> str | None:
        """Size and modification time of every case file (:func:`explain.store.case_file_stats`, one stat each,
        once per rerun), shared by :attr:`cases_key` and the explanation store's cohort hash; None for a
        time-stamped cohort (its long tables are keyed by :func:`cases_key`)."""
        return None if self.timed else case_file_stats(self.cohort)

    @functools.cached_property
    def cases_key(self) -> str:
        """Key for results over many cases: the cohort table and every case's files (once per rerun)."""
        if self.case_file_stats is None:
            return cases_key(self.cohort, self.data_key)
        return hashlib.sha256(f"{self.data_key}:{self.case_file_stats}".encode()).hexdigest()[:16]

    def predictions(self) -> pd.DataFrame:
        """Every case's prediction (or why it has none): read from the precomputed explanation store when it
        holds the whole cohort (no model pass: a large cohort's pages open without predicting every case),
        else predicted once per process and cached."""
        stored = self._stored_predictions
        if stored is not None:
            return stored
        table = cohort_predictions(self.predictor, self.cohort, self.model_key, self.cases_key)
        _predicted().add((self.model_key, self.cases_key))
        return table

    def predictions_ready(self) -> bool:
        """Whether :meth:`predictions` returns at once (from the store, or predicted before in this process): a
        paper-size model takes minutes to predict a cohort, which a page can leave for after what it shows first."""
        return self._stored_predictions is not None or (self.model_key, self.cases_key) in _predicted()

    @functools.cached_property
    def _stored_predictions(self) -> pd.DataFrame | None:
        return stored_predictions(self.explanation_store(), self.cohort, self.checkpoint.config)

    def unreadable(self) -> dict[str, str]:
        """{case_id: reason} for the cases that cannot be read or predicted."""
        frame = self.predictions()
        failed = frame[frame["error"] != ""]
        return dict(zip(failed["case_id"], failed["error"]))

    def _stored_unreadable(self, ids: Sequence[str]) -> dict[str, str] | None:
        """{case_id: why it could not be read} of ``ids`` from the explanation store (a case the store neither
        holds nor names: None, the store does not cover ``ids``). A store holds every case it could read and
        predict: one the model cannot take stops its writing."""
        store = self.explanation_store().store
        if store is None:
            return None
        errors = store.manifest.get("errors", {})
        if store.missing([i for i in ids if i not in errors]):
            return None
        return {i: errors[i] for i in ids if i in errors}

    def split_ids(self, split: str) -> list[str]:
        """The case ids of one split, or of every case for "all"."""
        return self.cohort.case_ids if split == "all" else self.cohort.ids(split)

    def readable_ids(self, ids: Sequence[str]) -> list[str]:
        """``ids`` without the unreadable cases, saying on the page which were left out and why: known from the
        explanation store when it holds (or names as unreadable) every one of ``ids``, so a page of one split
        opens from a store of that split without predicting the rest of the cohort; else from the predictions."""
        bad = self._stored_unreadable(ids)
        if bad is None:
            bad = self.unreadable()
        left_out = [i for i in ids if i in bad]
        if left_out:
            shown = "\n".join(f"- **{i}**: {bad[i]}" for i in left_out[:5])
            more = f"\n- ... and {len(left_out) - 5} more" if len(left_out) > 5 else ""
            st.warning(f"{len(left_out)} case{'s' if len(left_out) > 1 else ''} could not be read and "
                       f"{'are' if len(left_out) > 1 else 'is'} left out:\n{shown}{more}")
        return [i for i in ids if i not in bad]

    def cohort_explanation(self, case_ids: Sequence[str], survival: SurvivalTarget | None = None) -> CohortImportance:
        """A survival model's cohort result is read from the explanation store when it holds these cases and
        this quantity (no model pass); otherwise (and for a classifier, whose page reads the store itself)
        computed and cached."""
        lookup = self.explanation_store() if self.survival else None
        if lookup is not None and lookup.holds(case_ids, self.checkpoint.model, survival):
            return lookup.importance(case_ids)
        return cohort_explanation(self.predictor, self.cohort, self.model_key, self.cases_key, tuple(case_ids),
                                  survival)

    def explanation_store(self) -> StoreLookup:
        """The precomputed explanation store of this checkpoint and cohort (the session's store setting, or
        the cohort's default location), with why it is not used when it is not theirs. Looked up once per
        rerun (a Context lives for one run): the predictions and the page share the lookup."""
        path = st.session_state.get(STORE_SETTING) or None
        if path not in self._store_lookups:
            self._store_lookups[path] = find_store(self.checkpoint, self.cohort, self.model_key, self.cases_key, path,
                                                   self.case_file_stats)
        return self._store_lookups[path]

    def _explanation_key(self, case_id: str, settings: ExplainSettings, survival: SurvivalTarget | None) -> tuple:
        """A case explanation's key in the process's cache (app.case_progress): the case's files (an edited
        image, note or signal is a new entry, not a stale hit), the checkpoint (which covers its
        out-of-distribution reference), the cohort, the settings and a survival model's explained quantity."""
        return self.model_key, self.data_key, case_id, case_key(self.cohort, case_id), settings, survival

    def explain(self, case_id: str, settings: ExplainSettings | None = None,
                survival: SurvivalTarget | None = None) -> CaseExplanation:
        """The case's whole explanation (cached); ``survival`` chooses a survival model's explained quantity
        (None: its default, survival at the model's horizon)."""
        settings = settings or self.settings
        return cached_or_computed(self._explanation_key(case_id, settings, survival),
                                  lambda: explain_case(self.predictor, self.cohort[case_id], settings,
                                                       ood=self.checkpoint.ood, survival=survival))

    def case_job(self, case_id: str, settings: ExplainSettings | None = None,
                 survival: SurvivalTarget | None = None) -> CaseJob:
        """The case's explanation as the case explorer draws it (app.case_progress): whole from the cache, or
        its first view now and the panels as they finish. Shares the cache with :meth:`explain`."""
        settings = settings or self.settings
        return case_job(self._explanation_key(case_id, settings, survival), self.titles,
                        lambda: CaseExplainer(self.predictor, self.cohort[case_id], settings,
                                              ood=self.checkpoint.ood, survival=survival))


def split_picker(ctx: Context, key: str) -> str:
    """Which cases a cohort page covers: every case or one split that has cases (default: test)."""
    available = ["all"] + [s for s in SPLITS if ctx.cohort.ids(s)]
    return st.selectbox("Cases", available, index=available.index("test") if "test" in available else 0,
                        key=key, format_func=lambda s: "every case" if s == "all" else f"{s} split")


def context() -> Context:
    """The context the entry file stored for this session (pages are only run after it exists)."""
    return st.session_state["app.context"]
