"""explain/store.py: the Parquet explanation store equals cohort_importance computed directly, resumes by
recomputing only the missing shards, refuses another checkpoint's or cohort's manifest, and writes the same
store from 2 processes (gloo, CPU) as from one; python -m explain cohort --out writes it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

import app.state as app_state
import explain.store as store_module
from explain.__main__ import main
from explain.cohort import cohort_importance
from explain.store import (MANIFEST, STAGES, StoreError, case_file_stats, checkpoint_hash, cohort_hash,
                           default_location, header_data_files, open_store, shard_name, write_store)
from explain.targets import SurvivalTarget
from neurofusion.checkpoint import save_checkpoint
from neurofusion.data import CohortReader
from neurofusion.data.formats import wfdb_data_files
from neurofusion.inference import Predictor
from tests.explain.declared import toy_model

SETTINGS = {"split": "all"}


@pytest.fixture
def predictor(tiny_batch, tiny_tokenizer) -> Predictor:
    return Predictor(tiny_batch[0], tiny_tokenizer)


def _write(out: Path, predictor: Predictor, cohort, ids, **kwargs):
    return write_store(out, predictor, cohort, ids, checkpoint_sha="c" * 64, cohort_sha="d" * 64, settings=SETTINGS,
                       **{"shard_size": 7, **kwargs})


def _assert_same(stored, direct) -> None:
    pd.testing.assert_frame_equal(stored.table, direct.table, check_exact=False, check_dtype=False, atol=1e-6,
                                  rtol=0)  # the attention columns are float32 there, float64 here
    assert stored.names == direct.names and stored.methods == direct.methods
    np.testing.assert_allclose(stored.interactions, direct.interactions, atol=1e-6)
    for kind in ("by_true", "by_predicted"):
        for cls, matrix in getattr(direct.attention, kind).items():
            np.testing.assert_allclose(getattr(stored.attention, kind)[cls], matrix, atol=1e-6, equal_nan=True)
    assert stored.attention.counts_true == direct.attention.counts_true
    assert stored.attention.counts_predicted == direct.attention.counts_predicted


def test_round_trip_equals_cohort_importance_for_any_selection(predictor, tiny_cohort, tmp_path):
    ids = tiny_cohort.case_ids[:20]
    report = _write(tmp_path / "store", predictor, tiny_cohort, ids)
    assert report.complete and report.written == [0, 1, 2] and report.cases == 20
    assert set(report.stage_seconds) == set(STAGES) and min(report.stage_seconds.values()) > 0
    store = open_store(tmp_path / "store")
    assert store.written and store.case_ids == ids
    _assert_same(store.importance(ids), cohort_importance(predictor, [tiny_cohort[i] for i in ids]))
    chosen = ids[15:] + ids[:3]  # another order and a subset: the class means are of exactly these cases
    _assert_same(store.importance(chosen), cohort_importance(predictor, [tiny_cohort[i] for i in chosen]))
    _, probabilities = predictor.predict([tiny_cohort[i] for i in ids])
    stored = store.predictions().set_index("case_id").loc[ids]
    np.testing.assert_allclose(stored[[f"p_{c}" for c in predictor.model.classes]].to_numpy(), probabilities,
                               atol=1e-6)
    with pytest.raises(StoreError, match="no explanation of 1 of the asked cases"):
        store.importance([*ids[:2], tiny_cohort.case_ids[30]])


def _counting(monkeypatch) -> list[int]:
    """Counts the cases each model pass of the store explains."""
    calls: list[int] = []
    original = store_module.modality_importance

    def counted(model, batch, *args, **kwargs):
        calls.append(len(batch.case_ids))
        return original(model, batch, *args, **kwargs)

    monkeypatch.setattr(store_module, "modality_importance", counted)
    return calls


def test_resume_recomputes_only_missing_shards(predictor, tiny_cohort, tmp_path, monkeypatch):
    ids, out = tiny_cohort.case_ids[:20], tmp_path / "store"
    calls = _counting(monkeypatch)
    _write(out, predictor, tiny_cohort, ids)
    assert sum(calls) == 20
    reference = open_store(out).table
    (out / shard_name(1)).unlink()  # a lost shard
    with pytest.raises(StoreError, match="lacks part-00001"):
        open_store(out)
    calls.clear()
    report = _write(out, predictor, tiny_cohort, ids)
    assert report.written == [1] and report.skipped == [0, 2] and sum(calls) == 7
    pd.testing.assert_frame_equal(open_store(out).table, reference)

    # killed after the first shard: the manifest says incomplete; a re-run explains only the rest
    interrupted = tmp_path / "interrupted"

    def dies_on_second_shard(predictor_, cohort, case_ids, manifest, batch_size=32, **kwargs):
        if case_ids[0] != ids[0]:
            raise KeyboardInterrupt
        return explain_shard(predictor_, cohort, case_ids, manifest, batch_size, **kwargs)

    explain_shard = store_module.explain_shard
    monkeypatch.setattr(store_module, "explain_shard", dies_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        _write(interrupted, predictor, tiny_cohort, ids)
    monkeypatch.setattr(store_module, "explain_shard", explain_shard)
    assert sorted(p.name for p in interrupted.glob("part-*")) == [shard_name(0)]
    with pytest.raises(StoreError, match="incomplete"):
        open_store(interrupted)
    calls.clear()
    report = _write(interrupted, predictor, tiny_cohort, ids)
    assert report.written == [1, 2] and report.skipped == [0] and sum(calls) == 13
    pd.testing.assert_frame_equal(open_store(interrupted).table, reference)


def test_another_checkpoint_or_cohort_is_refused_unless_overwritten(predictor, tiny_cohort, tmp_path):
    ids, out = tiny_cohort.case_ids[:7], tmp_path / "store"
    _write(out, predictor, tiny_cohort, ids)
    with pytest.raises(StoreError, match="another checkpoint"):
        write_store(out, predictor, tiny_cohort, ids, checkpoint_sha="e" * 64, cohort_sha="d" * 64, settings=SETTINGS,
                    shard_size=7)
    with pytest.raises(StoreError, match="another cohort"):
        write_store(out, predictor, tiny_cohort, ids, checkpoint_sha="c" * 64, cohort_sha="f" * 64, settings=SETTINGS,
                    shard_size=7)
    with pytest.raises(StoreError, match="shard plan"):
        _write(out, predictor, tiny_cohort, ids, shard_size=3)
    write_store(out, predictor, tiny_cohort, ids, checkpoint_sha="e" * 64, cohort_sha="d" * 64, settings=SETTINGS,
                shard_size=7, overwrite=True)
    store = open_store(out)
    assert store.mismatch("e" * 64, "d" * 64) is None
    assert "written for checkpoint eeeeeeeeeeee, the loaded one is cccccccccccc" in store.mismatch("c" * 64, "d" * 64)
    assert "written for cohort dddddddddddd" in store.mismatch("e" * 64, "0" * 64)
    manifest = json.loads((out / MANIFEST).read_text())
    (out / MANIFEST).write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(StoreError, match="format_version 99"):
        open_store(out)
    with pytest.raises(StoreError, match="format_version 99"):
        _write(out, predictor, tiny_cohort, ids)
    (out / "notes.txt").write_text("mine")  # --overwrite removes the store's files, nothing else
    _write(out, predictor, tiny_cohort, ids, overwrite=True)
    assert open_store(out).case_ids == ids and (out / "notes.txt").read_text() == "mine"
    with pytest.raises(StoreError, match="not an explanation store"):
        open_store(tmp_path)


def test_an_unreadable_case_is_left_out_and_named(predictor, tiny_cohort, tmp_path):
    root = Path(shutil.copytree(tiny_cohort.root, tmp_path / "cohort"))
    cohort = CohortReader(root)
    ids = cohort.case_ids[:10]
    bad = next(i for i in ids if cohort.table.set_index("case_id").loc[i, "image_file"])
    (root / cohort.table.set_index("case_id").loc[bad, "image_file"]).write_bytes(b"not a png")
    _write(tmp_path / "store", predictor, CohortReader(root), ids)
    store = open_store(tmp_path / "store")
    assert store.case_ids == [i for i in ids if i != bad] and list(store.manifest["errors"]) == [bad]
    assert store.missing(ids) == [bad]


def test_worker_processes_write_the_same_store_as_none(predictor, tiny_cohort, tmp_path):
    """Cases read and prepared in 2 DataLoader workers: the same rows (values within 1e-6), the same unreadable
    case left out and named, the same manifest as reading them in this process; every stage is timed."""
    root = Path(shutil.copytree(tiny_cohort.root, tmp_path / "cohort"))
    cohort = CohortReader(root)
    ids = cohort.case_ids[:20]
    rows = cohort.table.set_index("case_id")
    bad = next(i for i in ids[8:] if rows.loc[i, "image_file"])
    (root / rows.loc[bad, "image_file"]).write_bytes(b"not a png")
    stores = {}
    for workers in (0, 2):
        report = _write(tmp_path / f"store{workers}", predictor, cohort, ids, batch_size=3, num_workers=workers)
        assert report.written == [0, 1, 2] and min(report.stage_seconds.values()) > 0
        stores[workers] = open_store(tmp_path / f"store{workers}")
    none, two = stores[0], stores[2]
    assert two.case_ids == none.case_ids == [i for i in ids if i != bad]
    assert list(two.manifest["errors"]) == list(none.manifest["errors"]) == [bad]
    assert two.manifest["errors"][bad] == none.manifest["errors"][bad]
    pd.testing.assert_frame_equal(two.table, none.table, check_exact=False, atol=1e-6, rtol=0)
    assert {k: v for k, v in two.manifest.items() if k != "written"} == \
        {k: v for k, v in none.manifest.items() if k != "written"}


def test_a_case_the_model_cannot_read_stops_the_shard_with_its_error(predictor, tiny_cohort, tmp_path, monkeypatch):
    """prepare_case's CohortError (e.g. a category the model does not know) is not an unreadable case: it stops
    the shard, named, also from a worker process (forked workers inherit the patched function)."""
    import neurofusion.inference as inference
    from neurofusion.data.errors import CohortError

    ids = tiny_cohort.case_ids[:6]
    original = inference.prepare_case

    def refuses(case, spec):
        if case.case_id == ids[3]:
            raise CohortError("'unknown-sex' is not a category the model knows", case_id=case.case_id, field="sex")
        return original(case, spec)

    monkeypatch.setattr(inference, "prepare_case", refuses)
    for workers in (0, 2):
        with pytest.raises(CohortError, match=f"case {ids[3]}, field 'sex': 'unknown-sex'"):
            _write(tmp_path / f"store{workers}", predictor, tiny_cohort, ids, num_workers=workers)
        assert not list((tmp_path / f"store{workers}").glob("part-*"))

def test_hashes_follow_content(tiny_batch, tiny_tokenizer, tiny_cohort, tmp_path):
    path = save_checkpoint(tmp_path / "ckpt", tiny_batch[0], tiny_tokenizer)
    assert checkpoint_hash(path) == checkpoint_hash(path)
    assert len(cohort_hash(tiny_cohort)) == 64 and cohort_hash(tiny_cohort) == cohort_hash(tiny_cohort)
    assert default_location(tiny_cohort.root, checkpoint_hash(path)).parent == Path(tiny_cohort.root) / "explanations"
    before, weights = checkpoint_hash(path), path / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))  # one bit of the weights
    assert checkpoint_hash(path) != before


def _reference_cohort_hash(cohort) -> str:
    """cohort_hash as the store format defines it, written plainly (one update per file, wfdb's header
    parser): a rewrite that changed it would make every store written before it 'of another cohort'."""
    root = Path(cohort.root)
    digest = hashlib.sha256()
    for name in ("cohort.csv", "cohort.json"):
        if (root / name).is_file():
            digest.update(f"{name}:{hashlib.sha256((root / name).read_bytes()).hexdigest()}\n".encode())
    for column in [m.file_column for m in cohort.modalities if m.file_backed]:
        for relative in cohort.table[column]:
            if not relative:
                continue
            files = [relative]
            if relative.endswith(".hea") and (root / relative).is_file():
                files += [os.path.join(os.path.dirname(relative), f) for f in wfdb_data_files(root / relative)]
            for name in files:
                try:
                    stat = (root / name).stat()
                    digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
                except OSError:
                    digest.update(f"{name}:missing\n".encode())
    return digest.hexdigest()


def test_cohort_hash_keeps_its_definition_and_reads_each_header_once(tiny_cohort, tmp_path, monkeypatch):
    root = Path(shutil.copytree(tiny_cohort.root, tmp_path / "cohort"))
    cohort = CohortReader(root)
    (root / cohort.table["signal_file"].loc[cohort.table["signal_file"] != ""].iloc[1]).unlink()  # a missing header
    reads: list[Path] = []
    original = store_module.header_data_files
    monkeypatch.setattr(store_module, "header_data_files", lambda path: reads.append(path) or original(path))
    store_module.signal_data_files.cache_clear()
    assert cohort_hash(cohort) == _reference_cohort_hash(cohort)
    headers = len(reads)
    assert cohort_hash(cohort, case_file_stats(cohort)) == cohort_hash(cohort)  # the stats taken once, for both
    assert headers == len(list(root.rglob("*.hea"))) > 0
    hits = store_module.signal_data_files.cache_info().hits
    state_key = app_state.cases_key(cohort, "table")  # the dashboard's case keys: no header read again
    assert len(reads) == headers and store_module.signal_data_files.cache_info().hits == hits + headers
    signal = next(root.rglob("*.dat"))
    signal.write_bytes(signal.read_bytes() + b"\0\0")  # the samples change, their header does not
    assert cohort_hash(cohort) == _reference_cohort_hash(cohort) and app_state.cases_key(cohort, "table") != state_key
    assert len(reads) == headers


def test_header_data_files_reads_what_wfdb_reads(tiny_cohort, tmp_path):
    headers = sorted(Path(tiny_cohort.root).rglob("*.hea"))
    assert headers
    for header in headers:
        assert header_data_files(header) == wfdb_data_files(header)
    odd = tmp_path / "odd.hea"
    odd.write_text("odd 2 250 100\nodd.dat 16 200 16 0 0 0 0 I\n")  # says 2 signals, lists 1: wfdb decides
    assert header_data_files(odd) == wfdb_data_files(odd)


def _rank(rank: int, world_size: int, port: int, checkpoint: str, cohort_root: str, out: str) -> None:
    """One process of the 2-process test: loads the checkpoint, writes its shards between gloo barriers."""
    import torch.distributed as dist

    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.data import CohortReader

    torch.set_num_threads(1)
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        ckpt = load_checkpoint(checkpoint, device="cpu")
        cohort = CohortReader(cohort_root)
        write_store(out, Predictor(ckpt.model, ckpt.tokenizer), cohort, cohort.case_ids[:20],
                    checkpoint_sha="c" * 64, cohort_sha="d" * 64, settings=SETTINGS, shard_size=7, rank=rank,
                    world_size=world_size, barrier=dist.barrier)
    finally:
        dist.destroy_process_group()


def test_two_processes_write_the_same_store_as_one(tiny_batch, tiny_tokenizer, tiny_cohort, tmp_path):
    checkpoint = save_checkpoint(tmp_path / "ckpt", tiny_batch[0], tiny_tokenizer)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(checkpoint), str(tiny_cohort.root), str(tmp_path / "two")), nprocs=2)
    from neurofusion.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint, device="cpu")
    _write(tmp_path / "one", Predictor(ckpt.model, ckpt.tokenizer), tiny_cohort, tiny_cohort.case_ids[:20])
    one, two = open_store(tmp_path / "one"), open_store(tmp_path / "two")
    pd.testing.assert_frame_equal(two.table, one.table, check_exact=False, atol=1e-6, rtol=0)
    assert {k: v for k, v in two.manifest.items() if k != "written"} == \
        {k: v for k, v in one.manifest.items() if k != "written"}


def test_cli_writes_the_default_store_resumes_and_refuses_survival_flags(tiny_batch, tiny_tokenizer, tiny_cohort,
                                                                         tmp_path, capsys):
    checkpoint = save_checkpoint(tmp_path / "ckpt", tiny_batch[0], tiny_tokenizer)
    args = ["cohort", "--checkpoint", str(checkpoint), "--data", str(tiny_cohort.root), "--device", "cpu"]
    out = tmp_path / "cli_store"
    assert main([*args, "--out", str(out), "--shard-size", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    test_ids = tiny_cohort.ids("test")
    assert result["cases"] == len(test_ids) and result["cases_explained"] == len(test_ids)
    assert open_store(out).case_ids == test_ids
    assert main([*args, "--out", str(out), "--shard-size", "8"]) == 0
    assert "skipped" in (text := capsys.readouterr().out) and "wrote 0" in text
    workers = tmp_path / "cli_workers"
    assert main([*args, "--out", str(workers), "--shard-size", "8", "--num-workers", "2"]) == 0
    capsys.readouterr()
    pd.testing.assert_frame_equal(open_store(workers).table, open_store(out).table, check_exact=False, atol=1e-6,
                                  rtol=0)
    assert main([*args, "--out", str(tmp_path / "bad_workers"), "--num-workers", "-1"]) == 2
    assert "num_workers must be >= 0, got -1" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--split", "all", "--shard-size", "8"]) == 2
    assert "another settings" in capsys.readouterr().err
    assert main([*args, "--split", "all"]) == 2
    assert "--split all applies to --out" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--quantity", "risk"]) == 2
    assert "--quantity and --horizon apply to survival models; this model is a classifier" in capsys.readouterr().err

    copy = Path(shutil.copytree(tiny_cohort.root, tmp_path / "cohort"))  # --out alone: inside the cohort folder
    assert main(["cohort", "--checkpoint", str(checkpoint), "--data", str(copy), "--device", "cpu", "--out"]) == 0
    expected = default_location(copy, checkpoint_hash(checkpoint))
    assert f"explanation store {expected}:" in capsys.readouterr().out
    assert open_store(expected).case_ids == test_ids


def test_a_survival_store_holds_its_quantity_and_equals_computing_without_it(tmp_path):
    """A survival model's store, for the default quantity (survival at the model's horizon) and for another
    (risk at 24): its cohort result equals cohort_importance with that quantity (values within 1e-6, the same
    label, ranked by magnitude), each row's value is the quantity and its curve the predicted one; the store
    says which quantity it holds, and a store of another quantity is refused at the same place."""
    toy = toy_model(tmp_path / "toy", survival=True)
    cohort = CohortReader(toy.root)
    ids, model = cohort.case_ids, toy.model
    cases = [cohort[i] for i in ids]
    prediction = toy.predictor.predict_survival(cases)
    bins = model.config.survival_bins
    curves = prediction.curves
    for name, target, value in (("default", None, bins.survival_at(curves, model.config.horizon)),
                                ("risk24", SurvivalTarget("risk", 24.0), 1 - bins.survival_at(curves, 24.0))):
        out = tmp_path / name
        _write(out, toy.predictor, cohort, ids, survival=target)
        store = open_store(out)
        assert store.survival and store.manifest["classes"] == ["all"]
        direct = cohort_importance(toy.predictor, cases, survival=target)
        stored = store.importance(ids)
        _assert_same(stored, direct)
        assert stored.explained == direct.explained == (target or SurvivalTarget()).label(model)
        assert stored.survival and direct.survival
        chosen = ids[9:] + ids[:2]
        _assert_same(store.importance(chosen), cohort_importance(toy.predictor, [cohort[i] for i in chosen],
                                                                 survival=target))
        frame = store.predictions().set_index("case_id").loc[ids]
        np.testing.assert_allclose(frame["value"].to_numpy(), value, atol=1e-6)
        np.testing.assert_allclose(store.curves(), prediction.curves, atol=1e-6)
        np.testing.assert_allclose(frame[[f"curve_{k + 1}" for k in range(bins.num_bins)]].to_numpy(),
                                   prediction.curves, atol=1e-6)
        assert store.explains(model, target) is None
    assert "it holds risk (1 - survival) at 24" in open_store(tmp_path / "risk24").explains(model)
    assert open_store(tmp_path / "default").explains(model, SurvivalTarget("survival", 60.0)) is None
    with pytest.raises(StoreError, match="another explained quantity"):
        _write(tmp_path / "default", toy.predictor, cohort, ids, survival=SurvivalTarget("risk"))
    with pytest.raises(StoreError, match="outside the model's time grid"):
        _write(tmp_path / "far", toy.predictor, cohort, ids, survival=SurvivalTarget("survival", 1e6))


def test_a_classifier_store_and_a_survival_store_are_not_each_others(predictor, tiny_cohort, tmp_path):
    """A classifier's manifest has no explained quantity (its key is as before survival stores existed); asking
    a classifier's store for a survival quantity, or writing one with it, is refused with the reason."""
    _write(tmp_path / "store", predictor, tiny_cohort, tiny_cohort.case_ids[:7])
    store = open_store(tmp_path / "store")
    assert not store.survival and "explained" not in store.manifest and store.explained == "probability"
    assert store.explains(predictor.model) is None
    assert "asked of a classifier" in store.explains(predictor.model, SurvivalTarget())
    with pytest.raises(StoreError, match="applies to survival models; this checkpoint is a classifier"):
        _write(tmp_path / "other", predictor, tiny_cohort, tiny_cohort.case_ids[:7], survival=SurvivalTarget())
    with pytest.raises(StoreError, match="holds a classifier's explanation: no survival curves"):
        store.curves()
    manifest = json.loads((tmp_path / "store" / MANIFEST).read_text())
    (tmp_path / "store" / MANIFEST).write_text(json.dumps({**manifest, "explained": {"quantity": "odds"}}))
    with pytest.raises(StoreError, match="unreadable 'explained' field"):
        open_store(tmp_path / "store")


def test_cli_writes_a_survival_store_of_the_asked_quantity(tmp_path, capsys):
    """python -m explain cohort --out on the cancer demo with --quantity risk --horizon 24: the store holds that
    quantity (the report says so) and equals cohort_importance with it (within 1e-6); the same --out with the
    default quantity is refused as another explained quantity."""
    from tests.test_sample_data import CANCER, CANCER_DEMO

    out = tmp_path / "store"
    args = ["cohort", "--checkpoint", str(CANCER_DEMO), "--data", str(CANCER), "--device", "cpu", "--out", str(out),
            "--shard-size", "64"]
    assert main([*args, "--quantity", "risk", "--horizon", "24", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["explained"] == "risk (1 - survival) at 24 months"
    store = open_store(out)
    assert store.explained == "risk (1 - survival) at 24 months"
    from neurofusion.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    cohort = CohortReader(CANCER)
    ids = cohort.ids("test")[:10]
    direct = cohort_importance(Predictor(checkpoint.model, checkpoint.tokenizer), [cohort[i] for i in ids],
                               survival=SurvivalTarget("risk", 24.0))
    _assert_same(store.importance(ids), direct)
    assert main(args) == 2
    assert "another explained quantity" in capsys.readouterr().err
