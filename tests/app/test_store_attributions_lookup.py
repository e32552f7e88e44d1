"""app/store_state.py: StoreLookup.attributions gives the store's attribution tables of the asked cases (what
ExplanationStore.attributions reads), None when there is no usable store, it holds no attributions or lacks a
case, and reads the Parquet files once per selection and version of the store's files."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import app.store_state as store_state
from app.store_state import StoreLookup
from explain.case import ExplainSettings
from explain.store import ExplanationStore, attribution_name, open_store, write_store
from neurofusion.inference import Predictor

FAST = ExplainSettings("grad_cam", n_steps=4)


@pytest.fixture
def stores(tiny_batch, tiny_tokenizer, tiny_cohort, tmp_path):
    """Two stores of the same 6 cases (shards of 3): one with attributions, one without."""
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    root = tmp_path
    ids = tiny_cohort.case_ids[:6]
    common = {"checkpoint_sha": "c" * 64, "cohort_sha": "d" * 64, "settings": {"split": "all"}, "shard_size": 3}
    write_store(root / "with", predictor, tiny_cohort, ids, attributions=FAST, **common)
    write_store(root / "without", predictor, tiny_cohort, ids, **common)
    return root, ids


def test_lookup_gives_the_stored_tables_or_none(stores):
    root, ids = stores
    lookup = StoreLookup(root / "with", open_store(root / "with"))
    chosen = [ids[4], ids[1]]
    pd.testing.assert_frame_equal(lookup.attributions(chosen), lookup.store.attributions(chosen))
    assert list(lookup.attributions(chosen)["case_id"].unique()) == chosen
    assert lookup.attributions([ids[0], "CV-99999"]) is None  # a case the store does not hold
    assert StoreLookup(root / "without", open_store(root / "without")).attributions(ids) is None
    assert StoreLookup(root / "nothing", problem="none written").attributions(ids) is None


def test_lookup_reads_once_per_selection_and_version_of_the_files(stores, monkeypatch):
    root, ids = stores
    reads: list[tuple[str, ...]] = []
    original = ExplanationStore.attributions
    monkeypatch.setattr(ExplanationStore, "attributions",
                        lambda self, case_ids=None: reads.append(tuple(case_ids)) or original(self, case_ids))
    store_state._stored_attributions.clear()
    lookup = StoreLookup(root / "with", open_store(root / "with"))
    first = lookup.attributions(ids[:2])
    again = lookup.attributions(ids[:2])  # a page rerun: from the cache
    assert reads == [tuple(ids[:2])]
    pd.testing.assert_frame_equal(first, again)
    lookup.attributions(ids[2:4])  # another selection: read
    assert len(reads) == 2
    shard = root / "with" / attribution_name(0)
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # the attr shard rewritten
    lookup.attributions(ids[:2])
    assert len(reads) == 3
