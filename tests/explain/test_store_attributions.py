"""explain/store.py with attributions (python -m explain cohort --out STORE --attributions): each case's stored
rows equal attribution_table(explain_case(...)) of that case; adding them to a complete store rewrites no core
shard and keeps the store's key; a store without them opens as before; a missing attr shard, other settings
and an unreadable case are named; two ranks write what one writes; a survival store holds its quantity's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import explain.store as store_module
from explain.__main__ import main
from explain.attribution_table import ATTRIBUTION_COLUMNS, attribution_table
from explain.case import ExplainSettings, explain_case
from explain.store import (MANIFEST, StoreError, _store_key, attribution_name, attribution_settings, open_store,
                           shard_name, write_store)
from explain.targets import SurvivalTarget
from neurofusion.checkpoint import load_checkpoint, save_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor

SETTINGS = {"split": "all"}
FAST = ExplainSettings("grad_cam", n_steps=4)  # fixed steps: quick, and the same in every run
# the manifest of a store written before attributions existed: the same fields, so such a store reads as before
OLD_MANIFEST = {"format_version", "checkpoint_sha256", "cohort_sha256", "settings", "classes", "modalities",
                "complete", "cases", "shards", "columns", "written", "errors"}


def _write(out: Path, predictor: Predictor, cohort, ids, **kwargs):
    return write_store(out, predictor, cohort, ids, checkpoint_sha="c" * 64, cohort_sha="d" * 64, settings=SETTINGS,
                       **{"shard_size": 3, **kwargs})


def _assert_rows_equal(stored: pd.DataFrame, expected: pd.DataFrame) -> None:
    """The text columns exactly, the numbers within 1e-5 (empty where empty), ``observed`` as either holds it."""
    assert list(stored.columns) == list(ATTRIBUTION_COLUMNS) and len(stored) == len(expected) > 0
    for column in ATTRIBUTION_COLUMNS[:6]:
        assert stored[column].tolist() == expected[column].tolist(), column
    for column in ("value", "start", "end"):
        np.testing.assert_allclose(stored[column].to_numpy(float), pd.to_numeric(expected[column]).to_numpy(float),
                                   atol=1e-5, rtol=0, err_msg=column)
    for ours, theirs in zip(stored["observed"], expected["observed"]):
        if isinstance(theirs, str):
            assert ours == theirs
        else:
            np.testing.assert_allclose(float(ours), float(theirs), atol=1e-5, rtol=0)


def _expected(predictor, cohort, case_ids, settings=FAST, survival=None) -> dict[str, pd.DataFrame]:
    return {i: attribution_table(explain_case(predictor, cohort[i], settings, survival=survival)) for i in case_ids}


def test_stored_rows_are_each_case_explained(predictor, tiny_cohort, tmp_path):
    ids, out = tiny_cohort.case_ids[:8], tmp_path / "store"
    report = _write(out, predictor, tiny_cohort, ids, attributions=FAST)
    assert report.attributions_written == [0, 1, 2] and report.attributed_cases == 8
    assert report.stage_seconds["attributions"] > 0
    assert sorted(p.name for p in out.glob("attr-*")) == [attribution_name(i) for i in range(3)]
    store = open_store(out)
    assert store.has_attributions and store.manifest["attributions"] == attribution_settings(FAST)
    assert store.manifest["attribution_errors"] == {}
    expected = _expected(predictor, tiny_cohort, ids)
    for case_id in ids:
        _assert_rows_equal(store.attributions([case_id]), expected[case_id])
    _assert_rows_equal(store.attributions(), pd.concat(expected.values(), ignore_index=True))
    chosen = [ids[7], ids[0], ids[4]]  # the asked order, case by case, from the shards holding them
    _assert_rows_equal(store.attributions(chosen), pd.concat([expected[i] for i in chosen], ignore_index=True))
    (out / attribution_name(1)).unlink()  # only the shards holding the asked cases are read
    _assert_rows_equal(store.attributions([ids[7], ids[0]]), pd.concat([expected[ids[7]], expected[ids[0]]],
                                                                       ignore_index=True))
    with pytest.raises(StoreError, match=f"lacks {attribution_name(1)}"):
        store.attributions([ids[4]])
    with pytest.raises(StoreError, match="no attributions of 1 of the asked cases"):
        store.attributions([ids[0], tiny_cohort.case_ids[30]])
    report = _write(out, predictor, tiny_cohort, ids, attributions=FAST)  # resumes: only the missing attr shard
    assert report.attributions_written == [1] and report.attributions_skipped == [0, 2] and report.written == []
    _assert_rows_equal(open_store(out).attributions([ids[4]]), expected[ids[4]])


def _files(out: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(out.glob("part-*"))}


def test_adding_attributions_rewrites_no_core_shard_and_keeps_the_key(predictor, tiny_cohort, tmp_path, monkeypatch):
    ids, out = tiny_cohort.case_ids[:8], tmp_path / "store"
    _write(out, predictor, tiny_cohort, ids)
    old = open_store(out)  # a store without the flag: as before attributions existed
    assert set(old.manifest) == OLD_MANIFEST and not old.has_attributions
    with pytest.raises(StoreError, match="holds no attributions .write them with"):
        old.attributions()
    core, key = _files(out), _store_key(old.manifest)

    explain_attributions = store_module.explain_attributions

    def dies_on_second_shard(predictor_, cohort, case_ids, *args, **kwargs):
        if case_ids[0] != ids[0]:
            raise KeyboardInterrupt
        return explain_attributions(predictor_, cohort, case_ids, *args, **kwargs)

    monkeypatch.setattr(store_module, "explain_attributions", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        _write(out, predictor, tiny_cohort, ids, attributions=FAST)
    half = open_store(out)  # the core stays readable while attributions are being added
    assert half.case_ids == ids and not half.has_attributions
    with pytest.raises(StoreError, match="their writing did not finish"):
        half.attributions()
    monkeypatch.setattr(store_module, "explain_attributions", explain_attributions)
    report = _write(out, predictor, tiny_cohort, ids, attributions=FAST)
    assert report.written == [] and report.skipped == [0, 1, 2]
    assert report.attributions_written == [1, 2] and report.attributions_skipped == [0]
    assert _files(out) == core  # the core shards' bytes and modification times
    store = open_store(out)
    assert _store_key(store.manifest) == key and store.has_attributions
    pd.testing.assert_frame_equal(store.table, old.table)
    _assert_rows_equal(store.attributions(), pd.concat(_expected(predictor, tiny_cohort, ids).values(),
                                                       ignore_index=True))


def test_other_attribution_settings_are_refused_unless_overwritten(predictor, tiny_cohort, tmp_path):
    ids, out = tiny_cohort.case_ids[:4], tmp_path / "store"
    _write(out, predictor, tiny_cohort, ids, attributions=FAST)
    other = ExplainSettings("grad_cam", n_steps=5)
    with pytest.raises(StoreError, match=r"differ in n_steps \(4 held, 5 asked\).*computed with \(image_method "
                                         r"grad_cam, n_steps 4,.*this run asks for \(image_method grad_cam, n_steps 5,"):
        _write(out, predictor, tiny_cohort, ids, attributions=other)
    with pytest.raises(StoreError, match="this run asks for none .no --attributions."):
        _write(out, predictor, tiny_cohort, ids)
    with pytest.raises(StoreError, match="predicted class"):
        _write(tmp_path / "target", predictor, tiny_cohort, ids, attributions=ExplainSettings(n_steps=4, target=1))
    report = _write(out, predictor, tiny_cohort, ids, attributions=other, overwrite=True)
    assert report.written == [0, 1] and report.attributions_written == [0, 1]
    store = open_store(out)
    assert store.manifest["attributions"]["n_steps"] == 5
    _assert_rows_equal(store.attributions(), pd.concat(_expected(predictor, tiny_cohort, ids, other).values(),
                                                       ignore_index=True))
    _write(out, predictor, tiny_cohort, ids, overwrite=True)  # replaced by a store without: no attr shard is left
    assert not list(out.glob("attr-*")) and not open_store(out).has_attributions


def test_two_ranks_write_what_one_writes(predictor, tiny_cohort, tmp_path):
    """world_size 2, rank 0 and 1 run in turn in this process (no barrier): rank 0 writes the even shards and
    attr shards and finds rank 1's missing; rank 1 writes the odd ones; rank 0 again completes the store."""
    ids, two = tiny_cohort.case_ids[:8], tmp_path / "two"
    with pytest.raises(StoreError, match="missing or inconsistent after writing: part-00001.parquet, "
                                         "attr-00001.parquet"):
        _write(two, predictor, tiny_cohort, ids, attributions=FAST, rank=0, world_size=2)
    first = _write(two, predictor, tiny_cohort, ids, attributions=FAST, rank=1, world_size=2)
    assert first.written == [1] and first.attributions_written == [1]
    last = _write(two, predictor, tiny_cohort, ids, attributions=FAST, rank=0, world_size=2)
    assert last.written == [] and last.skipped == [0, 2] and last.attributions_skipped == [0, 2]
    _write(tmp_path / "one", predictor, tiny_cohort, ids, attributions=FAST)
    one, both = open_store(tmp_path / "one"), open_store(two)
    assert both.has_attributions
    pd.testing.assert_frame_equal(both.attributions(), one.attributions(), check_exact=False, atol=1e-6, rtol=0)
    assert {k: v for k, v in both.manifest.items() if k != "written"} == \
        {k: v for k, v in one.manifest.items() if k != "written"}


def test_a_case_that_cannot_be_read_has_no_rows_and_its_reason(predictor, tiny_cohort, tmp_path):
    root = Path(shutil.copytree(tiny_cohort.root, tmp_path / "cohort"))
    cohort = CohortReader(root)
    ids = cohort.case_ids[:6]
    rows = cohort.table.set_index("case_id")
    bad = next(i for i in ids if rows.loc[i, "image_file"])
    (root / rows.loc[bad, "image_file"]).write_bytes(b"not a png")
    _write(tmp_path / "store", predictor, cohort, ids, attributions=FAST)
    store = open_store(tmp_path / "store")
    assert list(store.manifest["attribution_errors"]) == [bad] and list(store.manifest["errors"]) == [bad]
    assert store.manifest["attribution_errors"][bad] == store.manifest["errors"][bad]
    stored = store.attributions()
    assert bad not in set(stored["case_id"]) and set(stored["case_id"]) == set(ids) - {bad}
    assert store.attributions([bad]).empty and list(store.attributions([bad]).columns) == list(ATTRIBUTION_COLUMNS)


def test_a_survival_store_holds_the_attributions_of_its_quantity(tmp_path):
    """The cancer demo (5 test cases): each case's rows explain the store's quantity (survival at the model's
    horizon, as the case page by default) and equal attribution_table(explain_case(...)) with it."""
    from tests.test_sample_data import CANCER, CANCER_DEMO

    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor, cohort = Predictor(checkpoint.model, checkpoint.tokenizer), CohortReader(CANCER)
    ids = cohort.ids("test")[:5]
    _write(tmp_path / "store", predictor, cohort, ids, attributions=FAST)
    store = open_store(tmp_path / "store")
    stored = store.attributions()
    assert set(stored["explained_class"]) == {store.explained} == {SurvivalTarget().label(predictor.model)}
    expected = _expected(predictor, cohort, ids, survival=SurvivalTarget())
    for case_id in ids:
        _assert_rows_equal(store.attributions([case_id]), expected[case_id])
    assert {"genomics_value", "treatment_notes_word"} <= set(stored["part"])


def test_cli_writes_attributions_with_the_engine_flags(tiny_batch, tiny_tokenizer, tiny_cohort, tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "ckpt", tiny_batch[0], tiny_tokenizer)
    args = ["cohort", "--checkpoint", str(checkpoint), "--data", str(tiny_cohort.root), "--device", "cpu"]
    out = tmp_path / "store"
    assert main([*args, "--out", str(out), "--shard-size", "8"]) == 0
    capsys.readouterr()
    core = _files(out)
    engine = ["--tolerance", "0.3", "--steps-method", "gauss_then_trapezoid", "--max-steps", "16"]
    assert main([*args, "--out", str(out), "--shard-size", "8", "--attributions", *engine, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    test_ids = tiny_cohort.ids("test")
    assert result["cases_explained"] == 0 and result["attributed_cases"] == len(test_ids)
    assert _files(out) == core
    store = open_store(out)
    settings = ExplainSettings("grad_cam", tolerance=0.3, steps_method="gauss_then_trapezoid", max_steps=16)
    assert store.manifest["attributions"] == attribution_settings(settings)
    _assert_rows_equal(store.attributions(test_ids[:2]),
                       pd.concat(_expected(Predictor(tiny_batch[0], tiny_tokenizer), tiny_cohort, test_ids[:2],
                                           settings).values(), ignore_index=True))
    assert main([*args, "--out", str(out), "--shard-size", "8", "--attributions", *engine]) == 0
    assert "attributions: wrote 0 shard(s)" in capsys.readouterr().out
    assert main([*args, "--out", str(out), "--shard-size", "8", "--attributions", "--n-steps", "4"]) == 2
    assert "holds attributions of other settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out), "--n-steps", "4"])
    assert "--n-steps: sets how the stored attributions are computed; it applies with --attributions" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--attributions"])
    assert "--attributions: applies to --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out), "--attributions", "--n-steps", "4", "--tolerance", "0.1"])
    assert "give one of the two" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(out), "--attributions", "--reduced-precision", "voice"])
    assert "unknown modality kind 'voice'" in capsys.readouterr().err
    assert json.loads((out / MANIFEST).read_text())["attributions_complete"] is True
    assert (out / shard_name(0)).is_file()
