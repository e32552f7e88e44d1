"""The explanation store of a time-stamped (ICU) cohort (explain/store.py) on the bundled ICU demo: written by
`python -m explain cohort --out`, one row per sample with its stay and hour; figure 2C from the store is
cohort_over_time's (the same aggregation, explain.timeline.figure_2c_rows) for a split and for every split; the
risk metrics' inputs are the model's; two ranks and a resumed run write the same store as one; an edited long
table makes the store another cohort's; --attributions is refused with the reason; classifier stores keep their
keys and the cohort hash of a cohort of cases its definition."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explain.__main__ import main
from explain.case import ExplainSettings
from explain.store import (StoreError, _store_key, case_file_stats, checkpoint_hash, cohort_hash, open_store,
                           shard_name, write_store)
from explain.timeline import RISK_CLASS, cohort_over_time, figure_2c_rows, sample_importance
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.data.timed import open_cohort
from neurofusion.inference import Predictor
from tests.explain.test_store import _reference_cohort_hash

ROOT = Path(__file__).resolve().parents[2]
ICU = ROOT / "sample_data" / "icu"
ICU_DEMO = ROOT / "sample_data" / "checkpoints" / "icu_demo"
COUNTS = ["n", "n_present", "n_explained"]

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not (ICU_DEMO / "config.json").is_file(),
                                 reason="the ICU demo checkpoint sample_data/checkpoints/icu_demo is not bundled")]


@pytest.fixture(scope="module")
def model():
    checkpoint = load_checkpoint(ICU_DEMO, device="cpu")
    return Predictor(checkpoint.model, checkpoint.tokenizer), open_cohort(ICU)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, model) -> Path:
    """Every sample of the demo written by the command line (the demo's samples are all in the test split)."""
    out = tmp_path_factory.mktemp("timed") / "store"
    args = ["cohort", "--checkpoint", str(ICU_DEMO), "--data", str(ICU), "--device", "cpu", "--out", str(out),
            "--split", "all", "--shard-size", "400", "--json"]
    assert main(args) == 0
    return out


def _assert_same_figure(stored: pd.DataFrame, direct: pd.DataFrame) -> None:
    assert len(stored) == len(direct) and len(direct) > 0
    pd.testing.assert_frame_equal(stored.drop(columns=["attention", "share"]),
                                  direct.drop(columns=["attention", "share"]))
    for value in ("attention", "share"):
        np.testing.assert_allclose(stored[value].to_numpy(float), direct[value].to_numpy(float), atol=1e-6, rtol=0,
                                   equal_nan=True)


def test_the_store_holds_every_sample_with_its_stay_and_hour(store_dir, model, capsys):
    _, reader = model
    store = open_store(store_dir)
    assert store.timed and store.manifest["timed"] == {"risk_class": RISK_CLASS, "risk": "dies_within_48h"}
    assert store.case_ids == reader.case_ids and len(store.manifest["shards"]) == 3
    rows = reader.table.set_index("case_id").loc[store.case_ids]
    assert store.table["stay_id"].tolist() == rows["stay_id"].tolist()
    np.testing.assert_array_equal(store.table["hour"].to_numpy(), rows["hour"].to_numpy(dtype=float))
    assert store.table["label"].tolist() == rows["label"].tolist()
    assert (store.table["target"] == RISK_CLASS).all()  # the risk is explained, whatever the predicted class
    probabilities = store.table[["p_survives_48h", "p_dies_within_48h"]].to_numpy()
    assert store.table["predicted"].tolist() == [store.manifest["classes"][k] for k in probabilities.argmax(1)]
    # the Shapley values of the risk add up to the risk with everything recorded minus with nothing (efficiency)
    shapley = store.table[[f"shapley_{m}" for m in store.manifest["modalities"]]].fillna(0.0).to_numpy().sum(1)
    assert np.ptp(store.table["p_dies_within_48h"].to_numpy() - shapley) < 1e-5


def test_figure_2c_from_the_store_equals_cohort_over_time_for_a_split_and_for_all(store_dir, model):
    predictor, reader = model
    store = open_store(store_dir)
    test = figure_2c_rows(store.sample_importance(reader.ids("test")), reader)
    _assert_same_figure(test, cohort_over_time(predictor, reader, "test"))
    every = figure_2c_rows(store.sample_importance(reader.case_ids), reader)
    _assert_same_figure(every, cohort_over_time(predictor, reader, "all"))
    some = reader.case_ids[::3]  # any selection, in any order: the means are of exactly those samples
    computed = sample_importance(predictor, reader, "all")
    chosen = np.isin(computed.case_ids, some)
    direct = dataclasses.replace(computed, case_ids=list(np.asarray(computed.case_ids)[chosen]),
                                 **{k: getattr(computed, k)[chosen] for k in ("stay_ids", "hours", "label", "risk",
                                                                             "attention", "shapley", "present")})
    _assert_same_figure(figure_2c_rows(store.sample_importance(some[::-1]), reader), figure_2c_rows(direct, reader))
    with pytest.raises(StoreError, match="no explanation of 1 of the asked samples"):
        store.sample_importance([*some[:2], "ICU-99999@0h"])


def test_risk_inputs_from_the_store_equal_the_models(store_dir, model):
    predictor, reader = model
    ids = reader.ids("test")
    samples = open_store(store_dir).sample_importance(ids)
    labels, probabilities = predictor.predict([reader[i] for i in ids])
    rows = reader.table.set_index("case_id").loc[ids]
    np.testing.assert_allclose(samples.risk, probabilities[:, RISK_CLASS], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(samples.label == RISK_CLASS, labels == RISK_CLASS)
    assert samples.stay_ids.tolist() == rows["stay_id"].tolist()
    np.testing.assert_array_equal(samples.hours, rows["hour"].to_numpy(dtype=float))
    assert (samples.label == RISK_CLASS).sum() > 0 and (samples.label != RISK_CLASS).sum() > 0


def test_two_ranks_and_a_resumed_run_write_the_same_store_as_one(model, tmp_path):
    predictor, reader = model
    ids = reader.case_ids[:120]
    common = {"checkpoint_sha": "c" * 64, "cohort_sha": cohort_hash(reader), "settings": {"split": "all"},
              "shard_size": 40}
    write_store(tmp_path / "one", predictor, reader, ids, **common)
    two = tmp_path / "two"
    with pytest.raises(StoreError, match="missing or inconsistent after writing"):  # rank 1 has not written yet
        write_store(two, predictor, reader, ids, rank=0, world_size=2, **common)
    assert sorted(p.name for p in two.glob("part-*")) == [shard_name(0), shard_name(2)]
    report = write_store(two, predictor, reader, ids, rank=1, world_size=2, **common)
    assert report.written == [1]
    report = write_store(two, predictor, reader, ids, rank=0, world_size=2, **common)  # rank 0 finishes the manifest
    assert report.written == [] and report.skipped == [0, 2] and report.complete
    one = open_store(tmp_path / "one")
    pd.testing.assert_frame_equal(open_store(two).table, one.table, check_exact=False, atol=1e-6, rtol=0)
    (two / shard_name(1)).unlink()  # a lost shard: only it is explained again
    report = write_store(two, predictor, reader, ids, **common)
    assert report.written == [1] and report.skipped == [0, 2]
    pd.testing.assert_frame_equal(open_store(two).table, one.table, check_exact=False, atol=1e-6, rtol=0)


def test_an_edited_long_table_makes_the_store_another_cohorts(model, tmp_path):
    predictor, _ = model
    copy = Path(shutil.copytree(ICU, tmp_path / "icu"))
    reader = open_cohort(copy)
    before = cohort_hash(reader)
    assert "labs.csv:" in case_file_stats(reader) and "vitals.csv.gz:" in case_file_stats(reader)
    ids = reader.case_ids[:20]
    common = {"checkpoint_sha": checkpoint_hash(ICU_DEMO), "settings": {"split": "all"}, "shard_size": 20}
    write_store(tmp_path / "store", predictor, reader, ids, cohort_sha=before, **common)
    labs = copy / "labs.csv"
    lines = labs.read_text().splitlines(keepends=True)
    header, first = lines[0].rstrip("\n").split(","), lines[1].rstrip("\n").split(",")
    column = header.index("value")
    first[column] = f"{float(first[column]) * 1.5:g}"  # one lab value changed, same stays and times
    labs.write_text("".join([lines[0], ",".join(first) + "\n", *lines[2:]]))
    edited = open_cohort(copy)
    after = cohort_hash(edited)
    assert after != before
    reason = open_store(tmp_path / "store").mismatch(checkpoint_hash(ICU_DEMO), after)
    assert reason is not None and "written for cohort" in reason
    with pytest.raises(StoreError, match="another cohort"):
        write_store(tmp_path / "store", predictor, edited, ids, cohort_sha=after, **common)


def test_attributions_and_a_non_risk_model_are_refused_with_the_reason(model, tmp_path, capsys):
    predictor, reader = model
    with pytest.raises(StoreError, match="--attributions does not apply to a time-stamped"):
        write_store(tmp_path / "store", predictor, reader, reader.case_ids[:4], checkpoint_sha="c" * 64,
                    cohort_sha="d" * 64, settings={"split": "all"}, attributions=ExplainSettings())
    assert not (tmp_path / "store").exists()
    args = ["cohort", "--checkpoint", str(ICU_DEMO), "--data", str(ICU), "--device", "cpu",
            "--out", str(tmp_path / "cli"), "--attributions"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--attributions does not apply to a time-stamped (ICU) cohort" in err and "risk of death" in err
    assert not (tmp_path / "cli").exists()


def test_classifier_stores_keep_their_keys_and_a_cohort_of_cases_its_hash():
    # the keys the store format gave these manifests before time-stamped stores existed: the shards of every
    # classifier and survival store written before keep matching their manifest
    manifest = {"format_version": 1, "checkpoint_sha256": "c" * 64, "cohort_sha256": "d" * 64,
                "settings": {"split": "all"}, "classes": ["a", "b"], "modalities": ["image", "text"],
                "shards": [{"file": "part-00000.parquet", "case_ids": ["x", "y"]}]}
    assert _store_key(manifest) == "09c1b3e6b7889fffeeb537182f703d6c0586085c3923339fbda92a9d0c3bfe5a"
    survival = dict(manifest, explained={"quantity": "survival", "horizon": 5.0, "unit": "years",
                                         "label": "S(5 years)", "time_bins": [0.0, 1.0]})
    assert _store_key(survival) == "5fc9d1bf5acfde81533c7a0e12da6bf59d0c5b29fa9e3a3bf8405372a4564e87"
    cardio = CohortReader(ROOT / "sample_data" / "cardio")
    assert cohort_hash(cardio) == _reference_cohort_hash(cardio)


def test_cli_reports_the_samples_written(store_dir, model, capsys):
    args = ["cohort", "--checkpoint", str(ICU_DEMO), "--data", str(ICU), "--device", "cpu", "--out", str(store_dir),
            "--split", "all", "--shard-size", "400", "--json"]
    assert main(args) == 0  # a complete store: every shard skipped
    result = json.loads(capsys.readouterr().out)
    assert result["written"] == [] and result["skipped"] == [0, 1, 2] and result["cases"] == len(model[1].case_ids)
