"""The ICU cohort page reads a time-stamped cohort's explanation store (explain/store.py) when it holds the
split's samples: it says so in captions and shows the figure 2C values and the AUROC by hour it shows without
the store (cohort_over_time and the model's predictions); a store of the split shown opens the page without
predicting the cohort; a store of the cohort before one of its long tables was edited is a warning and is not
used."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import app.state as state
import explain.timeline as timeline
from explain.__main__ import main
from explain.store import checkpoint_hash, cohort_hash, open_store, write_store
from explain.timeline import cohort_over_time
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data.timed import open_cohort
from neurofusion.inference import Predictor
from tests.app.test_app import _app, _figure, _no_errors
from tests.app.test_cohort_icu import ICU, ICU_DEMO, NAMES, TITLES, _panel_lines, _values

pytestmark = pytest.mark.skipif(not (ICU_DEMO / "config.json").is_file(),
                                reason="the ICU demo checkpoint sample_data/checkpoints/icu_demo is not bundled")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("icu_store") / "store"
    assert main(["cohort", "--checkpoint", str(ICU_DEMO), "--data", str(ICU), "--device", "cpu", "--out", str(out),
                 "--split", "all", "--json"]) == 0
    return out


def _page(**state):
    at = _app(**{"settings.checkpoint": str(ICU_DEMO), "settings.cohort": str(ICU), **state})
    at.run()
    at.switch_page("views/cohort_attention.py").run()
    _no_errors(at)
    assert at.selectbox(key="cohort.split").value == "test"
    return at


def _shown(at) -> dict:
    """{(value, outcome, modality): y values} of figure 2C's lines, and the AUROC over all hours."""
    shown = {}
    for value in ("attention", "share"):
        at.radio(key="cohort.icu_value").set_value(value).run()
        _no_errors(at)
        figure = _figure(at, "cohort.figure_2c")
        for axis, outcome in (("x", "died in ICU"), ("x2", "survived")):
            lines = _panel_lines(figure, axis)
            for name, title in zip(NAMES, TITLES):
                shown[value, outcome, name] = _values(lines[title]["y"])
    shown["auroc"] = float(next(m for m in at.metric if m.label == "AUROC, all hours").value)
    shown["by_hour"] = {t["name"]: _values(t["y"]) for t in _figure(at, "cohort.by_hour")["data"]}
    return shown


def test_the_page_reads_the_store_with_captions_and_shows_what_it_computes_without(store):
    stored = _page(**{"settings.explanation_store": str(store)})
    captions = [c.value for c in stored.caption]
    for what in ("Figure 2C", "The risk of every sample"):
        assert any(c.startswith(f"{what}: Read from the precomputed store {store}, written 20") for c in captions), \
            captions
    with_store = _shown(stored)

    computed = _page()
    assert not any("Read from the precomputed store" in c.value for c in computed.caption)
    without = _shown(computed)

    checkpoint = load_checkpoint(ICU_DEMO, device="cpu")
    expected = cohort_over_time(Predictor(checkpoint.model, checkpoint.tokenizer), open_cohort(ICU), "test")
    for (value, outcome, name), y in [(k, v) for k, v in with_store.items() if isinstance(k, tuple)]:
        rows = expected[(expected["outcome"] == outcome) & (expected["modality"] == name)].sort_values("hour")
        np.testing.assert_allclose(y, rows[value].to_numpy(dtype=float), atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(y, without[value, outcome, name], atol=1e-6, equal_nan=True)
    assert with_store["auroc"] == pytest.approx(without["auroc"], abs=1e-9)  # as shown (3 decimals)
    for name, y in without["by_hour"].items():
        np.testing.assert_allclose(with_store["by_hour"][name], y, atol=1e-6, equal_nan=True)


def test_a_store_of_the_cohort_before_a_long_table_was_edited_is_not_used(tmp_path):
    copy = Path(shutil.copytree(ICU, tmp_path / "icu"))
    reader = open_cohort(copy)
    checkpoint = load_checkpoint(ICU_DEMO, device="cpu")
    write_store(tmp_path / "store", Predictor(checkpoint.model, checkpoint.tokenizer), reader, reader.case_ids,
                checkpoint_sha=checkpoint_hash(ICU_DEMO), cohort_sha=cohort_hash(reader), settings={"split": "all"})
    notes = copy / "notes.csv"
    notes.write_text(notes.read_text().replace("stable", "steady", 1))  # one word of one note
    at = _app(**{"settings.checkpoint": str(ICU_DEMO), "settings.cohort": str(copy),
                 "settings.explanation_store": str(tmp_path / "store")})
    at.run()
    at.switch_page("views/cohort_attention.py").run()
    _no_errors(at)
    warnings = [w.value for w in at.warning]
    assert any("is not used" in w and "written for cohort" in w for w in warnings), warnings
    assert not any("Read from the precomputed store" in c.value for c in at.caption)


def test_a_store_of_the_split_shown_opens_the_page_without_the_model(tmp_path, monkeypatch):
    """A cohort whose first 20 stays are moved to the train split, its store written for the test split only: the
    page of the test split reads the store (figure 2C, the risk metrics, which samples are readable) and never
    predicts the cohort."""
    copy = Path(shutil.copytree(ICU, tmp_path / "icu"))
    stays = pd.read_csv(copy / "cohort.csv", dtype=str, keep_default_na=False)
    stays.loc[:19, "split"] = "train"
    stays.to_csv(copy / "cohort.csv", index=False)
    store = tmp_path / "store"
    assert main(["cohort", "--checkpoint", str(ICU_DEMO), "--data", str(copy), "--device", "cpu", "--out", str(store),
                 "--split", "test", "--json"]) == 0
    assert len(open_store(store).case_ids) == len(open_cohort(copy).ids("test"))
    at = _app(**{"settings.checkpoint": str(ICU_DEMO), "settings.cohort": str(copy),
                 "settings.explanation_store": str(store)})
    at.run()

    def refused(*args, **kwargs):
        raise AssertionError("the cohort was predicted although the store holds the split shown")

    monkeypatch.setattr(state, "cohort_predictions", refused)
    monkeypatch.setattr(timeline, "sample_importance", refused)  # under cohort_over_time
    at.switch_page("views/cohort_attention.py").run()
    _no_errors(at)
    assert at.selectbox(key="cohort.split").value == "test"
    captions = [c.value for c in at.caption]
    assert sum(c.startswith(("Figure 2C: Read from", "The risk of every sample: Read from")) for c in captions) == 2
