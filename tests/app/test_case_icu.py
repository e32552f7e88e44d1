"""The case page on the ICU cohort (a stay seen as of an hour), headless: the risk trajectory it draws is
timeline.risk_trajectory's and the model's on icu_reader.at at each hour; the shown risk follows the "As of
hour" slider to the model's value at the new hour; the slider starts afresh when the stay changes; each
what-if control changes the risk to the value computed directly from explain.icu_whatif; stays missing whole
modalities render without a traceback; the ground-truth panel says the stay is synthetic; and the figure
builders draw what they are given."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import icu_figures
from app.case_icu import default_hour
from explain import timeline
from explain.icu_whatif import drop_lab, hide_recent_vitals, notes_at, remove_note, risk

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")
ICU = ROOT / "sample_data" / "icu"
CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "icu_demo"
STAY = "ICU-00603"  # died at 19.3 h; every modality recorded by 12 h; three prediction hours (0, 6, 12)
OTHER = "ICU-00004"  # discharged at 18.5 h
NO_VITALS_OR_LABS = "ICU-00253"  # never has vitals or labs
NO_LABS_NOTES_DEMOGRAPHICS = "ICU-00282"


def _app(stay_id: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=600)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.steps_mode"] = "fixed"
    at.session_state["settings.checkpoint"] = str(CHECKPOINT)
    at.session_state["settings.cohort"] = str(ICU)
    at.query_params["case"] = stay_id
    return at.run()


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _figure(at: AppTest, key: str) -> dict:
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    return json.loads(chart.proto.spec)


def _values(trace: dict, axis: str = "y") -> np.ndarray:
    import base64

    value = trace[axis]
    if isinstance(value, dict):  # {"dtype": ..., "bdata": base64}
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).astype(float)
    return np.asarray(value, dtype=float)


def _span(at: AppTest, span_id: str) -> str:
    pattern = re.compile(f"<span id='{span_id}'>([^<]*)</span>")
    return next(m.group(1) for e in at.markdown if (m := pattern.search(e.value)))


@pytest.fixture(scope="module")
def page() -> AppTest:
    at = _app(STAY)
    _no_errors(at)
    return at


def test_the_trajectory_is_the_models_risk_at_every_hour_of_the_stay(page, icu_predictor, icu_reader):
    assert page.title[0].value == "Case explorer"
    figure = _figure(page, "case.icu_trajectory")
    line = next(t for t in figure["data"] if t.get("name") == "risk")
    expected = timeline.risk_trajectory(icu_predictor, icu_reader, STAY)
    hours = _values(line, "x")
    np.testing.assert_array_equal(hours, np.arange(20.0))  # every whole hour before the end at 19.3 h
    np.testing.assert_allclose(_values(line), expected.risk, atol=1e-6)
    one_by_one = [risk(icu_predictor, [icu_reader.at(STAY, h)])[0] for h in (0.0, 7.0, 19.0)]
    np.testing.assert_allclose(_values(line)[[0, 7, 19]], one_by_one, atol=1e-5)
    # every hour of this stay is within 48 h of its death: each marker says so
    dies = next(t for t in figure["data"] if t.get("name") == "label: dies within 48 h")
    assert len(_values(dies, "x")) == 20
    assert "died at 19 h" in json.dumps(figure["layout"]["annotations"])
    label = page.selectbox(key="case.id").format_func(STAY)
    assert re.fullmatch(r"ICU-00603 · Cardiogenic shock · died at 19 h · peak risk \d+%", label)


def test_moving_the_slider_shows_the_models_risk_at_the_new_hour(page, icu_predictor, icu_reader):
    assert page.slider(key="case.icu_hour").value == 12  # the last prediction hour up to 24 h
    shown = {}
    for hour in (12, 3, 17):
        page.slider(key="case.icu_hour").set_value(hour).run()
        _no_errors(page)
        expected = risk(icu_predictor, [icu_reader.at(STAY, float(hour))])[0]
        metric = next(m for m in page.metric if m.label.startswith("Risk of death"))
        assert metric.value == f"{expected:.1%}" and f"as of {hour} h" in metric.label
        shown[hour] = expected
    assert len({f"{v:.1%}" for v in shown.values()}) > 1, "the risk did not move with the hour"
    page.slider(key="case.icu_hour").set_value(12).run()


def test_the_hour_starts_afresh_when_the_stay_changes(page, icu_reader):
    page.slider(key="case.icu_hour").set_value(5).run()
    page.selectbox(key="case.id").set_value(OTHER).run()
    _no_errors(page)
    assert page.slider(key="case.icu_hour").value == default_hour(icu_reader, icu_reader.stays.loc[OTHER, "stay_hours"])
    assert page.slider(key="case.icu_hour").max == 18
    page.selectbox(key="case.id").set_value(STAY).run()
    assert page.slider(key="case.icu_hour").value == 12


def test_each_what_if_control_changes_the_risk_to_the_value_computed_directly(page, icu_predictor, icu_reader):
    hour = 12.0
    page.toggle(key="case.icu_hide").set_value(True).run()
    _no_errors(page)
    hidden = risk(icu_predictor, [hide_recent_vitals(icu_reader, STAY, hour, 6.0)])[0]
    assert _span(page, "icu-whatif-result") == f"{hidden:.1%}"
    page.number_input(key="case.icu_hide_hours").set_value(2).run()
    hidden = risk(icu_predictor, [hide_recent_vitals(icu_reader, STAY, hour, 2.0)])[0]
    assert _span(page, "icu-whatif-result") == f"{hidden:.1%}"
    page.toggle(key="case.icu_hide").set_value(False).run()
    assert not any("icu-whatif-result" in m.value for m in page.markdown)  # undone: no edit, the risk as shown
    note = notes_at(icu_reader, STAY, hour)[-1]
    page.selectbox(key="case.icu_note").set_value(note).run()
    edited = remove_note(icu_reader, STAY, hour, note)
    assert _span(page, "icu-whatif-result") == f"{risk(icu_predictor, [edited])[0]:.1%}"
    page.selectbox(key="case.icu_note").set_value(None).run()
    lab = page.selectbox(key="case.icu_lab").options[1].split(" ")[0]
    page.selectbox(key="case.icu_lab").set_value(lab).run()
    assert _span(page, "icu-whatif-result") == f"{risk(icu_predictor, [drop_lab(icu_reader, STAY, hour, lab)])[0]:.1%}"
    page.selectbox(key="case.icu_lab").set_value(None).run()
    _no_errors(page)


def test_the_ground_truth_is_labelled_synthetic_and_the_importance_over_time_has_every_hour(page, icu_reader):
    assert any(h.value == "Ground truth of this SYNTHETIC stay" for h in page.subheader)
    truth = next(d.value for d in page.dataframe if "carries the outcome signal from" in d.value.columns)
    assert list(truth["modality"]) == ["Vital signs", "Labs", "Nursing notes", "Demographics"]
    over = next(json.loads(c.proto.spec) for c in page.get("plotly_chart")
                if "figure 2C" in json.dumps(json.loads(c.proto.spec)["layout"].get("title", {})))
    bars = [t for t in over["data"] if t["type"] == "bar"]
    shares = np.array([[np.nan if v is None else v for v in t["y"]] for t in bars if t["yaxis"] == "y"])
    assert shares.shape == (4, 3)  # four modalities at 0, 6 and 12 h
    np.testing.assert_allclose(np.nansum(shares, axis=0), 1.0, atol=1e-6)
    assert "computing" not in json.dumps(over["layout"].get("annotations", []))


def test_the_filters_list_the_stays_that_never_record_a_modality_or_ended_one_way(page, icu_reader):
    never_labs = [s for s in icu_reader.stays.index if not icu_reader.recorded_in_stay(s)["labs"]]
    page.multiselect(key="case.icu_filter_missing").set_value(["labs"]).run()
    _no_errors(page)
    stays = page.selectbox(key="case.id")
    assert stays.label == f"Stay ({len(never_labs)} of {len(icu_reader.stays)})"
    assert [option.split(" ")[0] for option in stays.options] == never_labs
    page.radio(key="case.icu_filter_outcome").set_value("died").run()
    died = [s for s in never_labs if icu_reader.stays.loc[s, "died"] == 1]
    assert [o.split(" ")[0] for o in page.selectbox(key="case.id").options] == died
    assert all("· died at" in o for o in page.selectbox(key="case.id").options)
    page.multiselect(key="case.icu_filter_missing").set_value([])
    page.radio(key="case.icu_filter_outcome").set_value("all").run()
    page.selectbox(key="case.id").set_value(STAY).run()
    _no_errors(page)


@pytest.mark.parametrize("stay_id", [NO_VITALS_OR_LABS, NO_LABS_NOTES_DEMOGRAPHICS])
def test_a_stay_missing_whole_modalities_renders_and_says_so(stay_id, icu_reader):
    at = _app(stay_id)
    _no_errors(at)
    missing = icu_reader.table[icu_reader.table["stay_id"] == stay_id][[f"has_{m}" for m in icu_reader.modality_names]]
    assert not missing.all(axis=None)
    titles = [t.label for t in at.tabs]
    never = [m for m, ok in icu_reader.recorded_in_stay(stay_id).items() if not ok]
    assert never
    for modality in never:
        title = icu_reader.modalities[icu_reader.modality_names.index(modality)].title
        assert f"{title} (never in this stay)" in titles


def test_the_labs_table_lists_every_draw_newest_first_with_the_attribution_on_the_last(icu_reader):
    stay_id, hour = "ICU-00008", 24.0
    rows = icu_reader.events_of(stay_id, "labs", hour)
    attributions = pd.DataFrame({"name": ["lactate", "lactate_age_h"], "score": [0.5, -0.25]})
    table = icu_figures.labs_table(rows, icu_reader.variables, hour, attributions)
    assert len(table) == len(rows)
    assert (np.diff(table["time (h)"].to_numpy()) <= 0).all()
    lactate = table[table["lab"] == "lactate"]
    assert lactate["attribution (value)"].iloc[0] == 0.5 and lactate["attribution (age)"].iloc[0] == -0.25
    assert lactate["attribution (value)"].iloc[1:].isna().all()
    assert lactate["hours before"].iloc[0] == pytest.approx(hour - rows[rows["variable"] == "lactate"]["time"].max(),
                                                            abs=0.01)


def test_the_notes_are_one_block_per_note_newest_first_with_the_words_highlighted_in_place(icu_reader):
    from explain.icu_whatif import note_parts
    from explain.text import Span

    hour = 12.0
    text = icu_reader.at(STAY, hour).value("notes")
    times = icu_reader.notes_of(STAY)["time"].to_numpy(dtype=float)
    parts = [(times[k], a, b) for k, a, b in note_parts(icu_reader, STAY, hour, text)]
    last = parts[-1]  # the oldest note: its first word after the age header, highlighted
    first = text.index("] ", last[1]) + 2
    word = Span(first, text.index(" ", first), text[first:text.index(" ", first)], 0.5)
    page = icu_figures.notes_html(text, parts, [word], 0.5, covered_chars=last[1])
    heads = re.findall(r"written at ([\d.]+) h", page)
    assert heads == [f"{t:.1f}" for t, _, _ in parts] and float(heads[0]) >= float(heads[-1])
    assert page.count("not read") == 1  # the oldest starts at the model's text length
    assert re.search(f'data-score="0.5"[^>]*>{re.escape(word.text)}</span>', page)  # the word, in its note


def test_vitals_trends_break_the_line_at_gaps_and_mark_artefacts(icu_reader):
    from neurofusion.data.events import EventVariable

    rows = pd.DataFrame({"time": [1.0, 1.1, 1.2, 3.0, 3.1], "variable": "spo2",
                         "value": [97.0, 96.0, 20.0, 95.0, 94.0]})
    variables = {"spo2": EventVariable("spo2", "vitals", "%", 50.0, 100.0)}
    figure = icu_figures.vitals_trends(rows, variables, 4.0)
    line, crosses = figure.data
    assert list(line.x) == [1.0, 1.1, 1.2, None, 3.0, 3.1]  # 1.8 h without a measurement: a gap
    assert list(crosses.y) == [20.0]  # outside 50-100 %: an artefact, kept and marked
    with pytest.raises(ValueError, match="no vital sign was recorded"):
        icu_figures.vitals_trends(rows, variables, 60.0)


def test_the_sidebar_counts_stays_and_samples(page):
    assert any(c.value.startswith("Running on CPU · 200 stays (1083 samples) · SYNTHETIC data")
               for c in page.sidebar.caption)
