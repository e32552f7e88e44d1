"""The cohort attention page reads a precomputed explanation store (explain/store.py) when the loaded
checkpoint's and cohort's is there: it says so in a caption and shows the numbers it would compute; a
store of another checkpoint or cohort is a warning and is never used."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import app.state as state
from app.state import StoreLookup, stored_predictions
from app.store_state import find_store
from explain.store import case_file_stats, checkpoint_hash, cohort_hash, open_store, write_store
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.app.test_cohort_cancer import _values
from tests.app.test_app import _app, _figure, _no_errors
from tests.test_sample_data import DEMO as CARDIO_DEMO, SAMPLE

SPLIT = "test"  # the page's default split (every case of the sample cohort)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The sample cohort's test split written into a store of the loaded checkpoint and cohort, and the same
    into one that claims another cohort."""
    checkpoint = load_checkpoint(CARDIO_DEMO, device="cpu")
    predictor, cohort = Predictor(checkpoint.model, checkpoint.tokenizer), CohortReader(SAMPLE)
    root = tmp_path_factory.mktemp("stores")
    common = {"checkpoint_sha": checkpoint_hash(CARDIO_DEMO), "settings": {"split": SPLIT}, "shard_size": 8}
    write_store(root / "good", predictor, cohort, cohort.ids(SPLIT), cohort_sha=cohort_hash(cohort), **common)
    write_store(root / "other", predictor, cohort, cohort.ids(SPLIT), cohort_sha="0" * 64, **common)
    return root


def _page(store: str | None):
    at = _app(**({"settings.explanation_store": store} if store else {}))
    at.run()
    at.switch_page("views/cohort_attention.py").run()
    assert at.selectbox(key="cohort.split").value == SPLIT
    _no_errors(at)
    return at


def _numbers(at) -> dict:
    return {key: [trace.get("z", trace.get("y")) for trace in _figure(at, key)["data"]]
            for key in ("cohort.attention", "cohort.interactions", "cohort.importance_true")}


def test_page_reads_the_store_with_a_caption_and_the_numbers_it_would_compute(stores):
    stored = _page(str(stores / "good"))
    captions = [c.value for c in stored.caption]
    expected = f"Read from the precomputed store {stores / 'good'}, written 20"
    assert any(c.startswith(expected) for c in captions), captions
    assert not stored.warning
    computed = _page(None)  # no store at the cohort's default location: the page computes
    assert not any("precomputed store" in c.value for c in computed.caption)
    ours, theirs = _numbers(stored), _numbers(computed)
    for key in ours:  # each trace's values, None for an undefined cell
        assert len(ours[key]) == len(theirs[key]) > 0, key
        for x, y in zip(ours[key], theirs[key]):
            np.testing.assert_allclose(_values(x), _values(y), atol=1e-6, err_msg=key)


def test_a_store_of_another_cohort_is_a_warning_and_not_used(stores):
    at = _page(str(stores / "other"))
    warnings = [w.value for w in at.warning]
    assert any("is not used: it was written for cohort 000000000000" in w for w in warnings), warnings
    assert not any("precomputed store" in c.value for c in at.caption)
    missing = _page(str(stores / "nothing_here"))
    assert any("No explanation store at" in w.value for w in missing.warning)


def test_stored_predictions_equal_the_computed_cohort_predictions(tiny_batch, tiny_tokenizer, tiny_cohort, tmp_path):
    root = Path(shutil.copytree(tiny_cohort.root, tmp_path / "cohort"))
    cohort = CohortReader(root)
    bad = next(i for i in cohort.case_ids if cohort.table.set_index("case_id").loc[i, "image_file"])
    (root / cohort.table.set_index("case_id").loc[bad, "image_file"]).write_bytes(b"not a png")
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    write_store(tmp_path / "store", predictor, cohort, cohort.case_ids, checkpoint_sha="c" * 64,
                cohort_sha="d" * 64, settings={"split": "all"}, shard_size=16)
    lookup = StoreLookup(tmp_path / "store", open_store(tmp_path / "store"))
    computed = state.cohort_predictions(predictor, cohort, "model", "cases")
    stored = stored_predictions(lookup, cohort)
    assert stored.loc[stored["case_id"] == bad, "error"].item().startswith(computed.set_index("case_id").loc[bad,
                                                                                                          "error"][:40])
    pd.testing.assert_frame_equal(stored.drop(columns="error"), computed.drop(columns="error"), check_exact=False,
                                  atol=1e-6, rtol=0)
    assert (stored["error"] != "").sum() == 1
    partial = tmp_path / "partial"
    write_store(partial, predictor, cohort, cohort.case_ids[:10], checkpoint_sha="c" * 64, cohort_sha="d" * 64,
                settings={"split": "all"}, shard_size=16)
    assert stored_predictions(StoreLookup(partial, open_store(partial)), cohort) is None  # not every case
    assert stored_predictions(StoreLookup(partial), cohort) is None  # no usable store


def test_with_a_store_of_every_case_the_pages_predict_nothing(stores, monkeypatch):
    """The store holds the whole sample cohort: the cohort predictions every page shares are read from it, so a
    large cohort's pages open without a model pass over every case; a store that is not theirs is not used."""
    real, calls = state.cohort_predictions, []

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(state, "cohort_predictions", counted)
    real_find, lookups = state.find_store, []

    def found(*args, **kwargs):
        lookups.append(1)
        return real_find(*args, **kwargs)

    monkeypatch.setattr(state, "find_store", found)
    at = _page(str(stores / "good"))
    assert any(c.value.startswith("Read from the precomputed store") for c in at.caption)
    assert not calls
    assert len(lookups) == 2  # one lookup per run (the case page, then the cohort page), shared by its callers
    _page(str(stores / "other"))
    assert calls  # the other cohort's store: the model predicts


def _edits(root: Path, cohort: CohortReader) -> dict:
    """One edit per kind of file the store's cohort hash covers: {kind: (file, edit)}. The cohort.csv edit keeps
    the file's size and modification time: only its content says it changed."""
    row = cohort.table.set_index("case_id").loc[cohort.ids(SPLIT)[0]]
    header = root / row["signal_file"]

    def flip(data: bytes) -> bytes:
        return data[:-1] + bytes([data[-1] ^ 1])

    def table(data: bytes) -> bytes:
        text = data.decode()
        edited = text.replace(",57,F,", ",58,F,", 1)
        assert edited != text and len(edited) == len(text)
        return edited.encode()

    return {"image": (root / row["image_file"], flip), "note": (root / row["note_file"], lambda d: d + b" edited"),
            "ECG header": (header, lambda d: d + b"# edited\n"), "ECG samples": (header.with_suffix(".dat"), flip),
            "cohort.csv": (root / "cohort.csv", table)}


def test_an_edit_to_any_kind_of_file_makes_the_store_not_theirs(tmp_path):
    """The store found for the loaded checkpoint and cohort is used; after an edit to an image, a note, an ECG
    header, an ECG's samples or cohort.csv (same size and time) it is not, and the message says the cohort changed;
    with the file restored (bytes and times) it is used again. With the case keys' file stats passed in (one stat
    pass for both) and without them."""
    root = Path(shutil.copytree(SAMPLE, tmp_path / "cohort"))
    checkpoint = load_checkpoint(CARDIO_DEMO, device="cpu")
    cohort = CohortReader(root)
    store = tmp_path / "store"
    write_store(store, Predictor(checkpoint.model, checkpoint.tokenizer), cohort, cohort.ids(SPLIT)[:4],
                checkpoint_sha=checkpoint_hash(CARDIO_DEMO), cohort_sha=cohort_hash(cohort), settings={"split": SPLIT},
                shard_size=4)

    def lookups() -> list[StoreLookup]:
        reader = CohortReader(root)  # opened again, as the dashboard does after cohort.csv changes
        key = state.cases_key(reader, state.cohort_key(str(root)))
        return [find_store(checkpoint, reader, "model", key, str(store), stats)
                for stats in (None, case_file_stats(reader))]

    for lookup in lookups():
        assert lookup.store is not None and lookup.problem is None
    for kind, (path, edit) in _edits(root, cohort).items():
        original, times = path.read_bytes(), path.stat()
        path.write_bytes(edit(original))
        if kind == "cohort.csv":
            os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
        for lookup in lookups():
            assert lookup.store is None, kind
            assert "is not used: it was written for cohort" in lookup.problem, kind
            assert "(a case file or cohort.csv changed since)" in lookup.problem, kind
        path.write_bytes(original)
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
        for lookup in lookups():
            assert lookup.store is not None, f"{kind} restored"


CANCER = SAMPLE.parent / "cancer"
CANCER_DEMO = CARDIO_DEMO.parent / "cancer_demo"


def test_a_survival_store_is_found_for_the_quantity_the_pages_explain(tmp_path):
    """The cancer demo's store (survival at its 60-month horizon) is found for the cancer checkpoint and cohort
    and gives what the survival cohort page computes for a risk group (cohort_importance, values within 1e-6);
    asked for another quantity, the lookup says which one the store holds and is not used."""
    from explain.cohort import cohort_importance
    from explain.targets import SurvivalTarget

    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor, cohort = Predictor(checkpoint.model, checkpoint.tokenizer), CohortReader(CANCER)
    ids = cohort.ids(SPLIT)[:12]
    store = tmp_path / "store"
    write_store(store, predictor, cohort, ids, checkpoint_sha=checkpoint_hash(CANCER_DEMO),
                cohort_sha=cohort_hash(cohort), settings={"split": SPLIT}, shard_size=5)
    key = state.cases_key(cohort, state.cohort_key(str(CANCER)))
    lookup = find_store(checkpoint, cohort, "model", key, str(store))
    assert lookup.store is not None and lookup.problem is None and lookup.store.survival
    group = tuple(sorted(ids[3:10]))  # a risk group's cases, as the page asks for them
    stored, direct = lookup.importance(group), cohort_importance(predictor, [cohort[i] for i in group])
    assert stored.explained == direct.explained == "survival at 60 months" and stored.survival
    pd.testing.assert_frame_equal(stored.table, direct.table, check_exact=False, check_dtype=False, atol=1e-6, rtol=0)
    np.testing.assert_allclose(stored.interactions, direct.interactions, atol=1e-6)
    for cls, matrix in direct.attention.by_true.items():
        np.testing.assert_allclose(stored.attention.by_true[cls], matrix, atol=1e-6, equal_nan=True)
    assert lookup.holds(group, checkpoint.model) and lookup.holds(group, checkpoint.model, SurvivalTarget("survival"))
    assert not lookup.holds(group, checkpoint.model, SurvivalTarget("risk"))
    assert not lookup.holds((*group, cohort.ids(SPLIT)[20]), checkpoint.model)  # a case it does not hold
    other = find_store(checkpoint, cohort, "model", key, str(store), survival=SurvivalTarget("risk"))
    assert other.store is None
    assert "it holds survival at 60 months, the page explains risk (1 - survival) at 60 months" in other.problem
    assert other.missing(group) == list(group) and not other.holds(group, checkpoint.model, SurvivalTarget("risk"))


def test_the_survival_cohort_page_reads_the_store_and_shows_what_it_computes(tmp_path, monkeypatch):
    """The cancer demo's store of every case (survival at 60 months): the survival cohort page says it reads it,
    predicts nothing (the survival table comes from the stored curves) and draws the numbers it computes
    without the store (within 1e-6)."""
    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor, cohort = Predictor(checkpoint.model, checkpoint.tokenizer), CohortReader(CANCER)
    store = tmp_path / "store"
    write_store(store, predictor, cohort, cohort.case_ids, checkpoint_sha=checkpoint_hash(CANCER_DEMO),
                cohort_sha=cohort_hash(cohort), settings={"split": "all"}, shard_size=64)
    stored_table = state.stored_predictions(StoreLookup(store, open_store(store)), cohort, checkpoint.config)
    computed_table = state.survival_table(predictor, cohort, cohort.case_ids)
    pd.testing.assert_frame_equal(stored_table, computed_table, check_exact=False, atol=1e-6, rtol=0)

    def page(path: str | None):
        settings = {"settings.checkpoint": str(CANCER_DEMO), "settings.cohort": str(CANCER)}
        at = _app(**settings, **({"settings.explanation_store": path} if path else {}))
        at.run()
        at.switch_page("views/cohort_attention.py").run()
        _no_errors(at)
        return at

    real, calls = state.cohort_predictions, []
    monkeypatch.setattr(state, "cohort_predictions", lambda *a, **k: calls.append(1) or real(*a, **k))
    real_explanation, explained = state.cohort_explanation, []
    monkeypatch.setattr(state, "cohort_explanation", lambda *a, **k: explained.append(1) or real_explanation(*a, **k))
    stored = page(str(store))
    assert any(c.value.startswith(f"Read from the precomputed store {store}") for c in stored.caption)
    assert not calls and not explained and not stored.warning  # no model pass: predictions and groups from the store
    computed = page(None)
    assert calls and explained and not any("precomputed store" in c.value for c in computed.caption)
    for key in ("cohort.km", "cohort.attention", "cohort.importance_true"):
        ours, theirs = _figure(stored, key)["data"], _figure(computed, key)["data"]
        assert len(ours) == len(theirs) > 0, key
        for x, y in zip(ours, theirs):
            for axis in ("x", "y", "z"):
                if y.get(axis) is None:
                    continue
                if isinstance(y[axis], list) and any(isinstance(v, str) for v in y[axis]):  # category names
                    assert x[axis] == y[axis], key
                else:
                    np.testing.assert_allclose(_values(x[axis]), _values(y[axis]), atol=1e-6, err_msg=key)
