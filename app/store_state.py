"""The precomputed explanation store (``python -m explain cohort --out``) as the dashboard's cohort pages see
it: found for the loaded checkpoint and cohort (the session's store setting, or the cohort's default location),
checked against both, read once per rewrite of its files, and why it is not used when it is not theirs."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from explain.cohort import CohortImportance
from explain.targets import SurvivalTarget
from explain.store import (MANIFEST, ExplanationStore, StoreError, checkpoint_hash, cohort_hash, default_location,
                           open_store)
from explain.timeline import SampleImportance
from neurofusion.checkpoint import Checkpoint
from neurofusion.data.cohort import CohortReader

STORE_SETTING = "settings.explanation_store"  # a store folder set in the session (default: the cohort's own)


@dataclass(frozen=True)
class StoreLookup:
    """The precomputed explanation store for the loaded checkpoint and cohort: ``store`` when one at ``path``
    is complete and theirs, else ``problem`` says why the store there is not used (None: there is none)."""

    path: Path
    store: ExplanationStore | None = None
    problem: str | None = None

    def missing(self, case_ids: Sequence[str]) -> list[str]:
        """The ids of ``case_ids`` the store does not hold (every id when there is no usable store)."""
        return list(case_ids) if self.store is None else self.store.missing(case_ids)

    def holds(self, case_ids: Sequence[str], model, survival: SurvivalTarget | None = None) -> bool:
        """The store is usable, holds every one of ``case_ids`` and explains what ``model`` is asked to (a
        survival model: the quantity ``survival``, None = survival at its horizon): :meth:`importance` then
        gives what :func:`explain.cohort.cohort_importance` would compute."""
        return (self.store is not None and not self.store.missing(case_ids)
                and self.store.explains(model, survival) is None)

    def importance(self, case_ids: Sequence[str]) -> CohortImportance:
        """cohort_importance's result for ``case_ids``, read from the store (cached per selection)."""
        return self._cached(_stored_importance, case_ids)

    def samples(self, case_ids: Sequence[str]) -> SampleImportance:
        """A time-stamped cohort's per-sample risk, attention and Shapley values of ``case_ids``, read from the
        store (:meth:`ExplanationStore.sample_importance`, cached per selection and version of the store's files):
        figure 2C and the risk metrics by hour without the model. StoreError without a usable store."""
        return self._cached(_stored_samples, case_ids)

    def attributions(self, case_ids: Sequence[str]) -> pd.DataFrame | None:
        """The stored attribution tables of ``case_ids`` (:meth:`ExplanationStore.attributions`, cached per
        selection and version of the store's files), or None when there is no usable store, it holds no
        attributions or does not hold every one of ``case_ids`` (the page then computes what it shows). The frame
        is shared by every session and rerun (millions of rows for 20,000 cases are not copied on each hit):
        callers read it and never change it in place (copy first)."""
        if self.store is None or not self.store.has_attributions or self.store.missing(case_ids):
            return None
        return self._cached(_stored_attributions, case_ids)

    def _cached(self, read, case_ids: Sequence[str]):
        """``read(store, path, stamp, ids digest, ids)``, one of the cached readers below, for ``case_ids``;
        StoreError without a usable store."""
        if self.store is None:
            raise StoreError(f"no usable explanation store at {self.path}: {self.problem or 'none written'}")
        ids = tuple(case_ids)
        return read(self.store, str(self.path), store_stamp(self.path), ids_digest(ids), ids)

    @property
    def caption(self) -> str:
        written = self.store.written.replace("T", " ").replace("Z", " UTC") if self.store else ""
        return f"Read from the precomputed store {self.path}, written {written}."


def ids_digest(ids: Sequence[str]) -> str:
    """A cache key for a selection of ids: Streamlit hashing 20,000 ids one by one costs 0.1 s a rerun."""
    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()


def store_stamp(path: Path) -> tuple:
    """Size and modification time of the manifest and the shards (attr shards too): a rewritten store is read
    again."""
    files = [path / MANIFEST, *sorted(path.glob("part-*.parquet")), *sorted(path.glob("attr-*.parquet"))]
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file())


@st.cache_data(show_spinner="Hashing the checkpoint (to match the explanation store)...", max_entries=4)
def _checkpoint_sha(path: str, model_key: str) -> str:
    return checkpoint_hash(path)


@st.cache_data(show_spinner=False, max_entries=4)
def _cohort_sha(_cohort: CohortReader, cases_key: str, _file_stats: str | None) -> str:
    return cohort_hash(_cohort, _file_stats)


@st.cache_resource(show_spinner="Reading the precomputed explanation store...", max_entries=4)
def _read_store(path: str, stamp: tuple) -> ExplanationStore:
    """One read store per process and version of its files, shared by every session and never changed (its
    readers copy what they reshape): a data cache would pickle the 20,000-row table on the cold open (0.17 s)
    and unpickle it on every rerun (0.06 s)."""
    return open_store(path)


@st.cache_data(show_spinner=False, max_entries=16)
def _stored_importance(_store: ExplanationStore, path: str, stamp: tuple, ids_key: str,
                       _case_ids: tuple[str, ...]) -> CohortImportance:
    return _store.importance(_case_ids)


@st.cache_data(show_spinner=False, max_entries=16)
def _stored_samples(_store: ExplanationStore, path: str, stamp: tuple, ids_key: str,
                    _case_ids: tuple[str, ...]) -> SampleImportance:
    return _store.sample_importance(_case_ids)


@st.cache_resource(show_spinner="Reading the stored attributions...", max_entries=16)
def _stored_attributions(_store: ExplanationStore, path: str, stamp: tuple, ids_key: str,
                         _case_ids: tuple[str, ...]) -> pd.DataFrame:
    """One frame per selection and version of the store's files, shared and never changed, as the store itself:
    a data cache would pickle millions of rows (20,000 cases) on every hit. Its readers (app.cohort_attributions'
    summarise) only read it."""
    return _store.attributions(_case_ids)


def find_store(checkpoint: Checkpoint, cohort: CohortReader, model_key: str, cases_key: str,
               path: str | None = None, file_stats: str | None = None,
               survival: SurvivalTarget | None = None) -> StoreLookup:
    """The store at ``path`` (default <cohort>/explanations/<checkpoint hash prefix>/), checked against the
    loaded checkpoint and cohort and, for a survival model, the quantity the pages explain (``survival``; None:
    survival at the model's horizon). A time-stamped cohort's store holds its samples (explain.store).
    ``file_stats``:
    :func:`explain.store.case_file_stats` of the cohort taken for ``cases_key`` in this run (the cohort hash
    then stats no file again); None: the cohort hash stats them."""
    checkpoint_sha = _checkpoint_sha(str(checkpoint.path), model_key)
    folder = Path(path) if path else default_location(cohort.root, checkpoint_sha)
    if not (folder / MANIFEST).is_file():
        return StoreLookup(folder, problem=f"No explanation store at {folder} (the store setting): the page computes "
                                           "the explanation instead." if path else None)
    try:
        store = _read_store(str(folder), store_stamp(folder))
    except StoreError as err:
        return StoreLookup(folder, problem=f"The explanation store is not used: {err}.")
    reason = (store.mismatch(checkpoint_sha, _cohort_sha(cohort, cases_key, file_stats))
              or store.explains(checkpoint.model, survival))
    if reason:
        return StoreLookup(folder, problem=f"The explanation store {folder} is not used: {reason}. The page computes "
                                           "the explanation instead; rewrite the store with python -m explain cohort "
                                           f"--out {folder} --overwrite.")
    return StoreLookup(folder, store)
