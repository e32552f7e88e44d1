"""The case page's what-if section and ground-truth overlay (AppTest): an edited lab shows exactly the
model's output on the edited case, edits reset with the case, a missing modality's what-if says so, and
the planted ground truth is drawn only for a cohort that has one."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from explain.whatif import lab_limits, strike_phrase, with_lab
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.test_sample_data import DEMO, SAMPLE

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
CASE = "CV-00090"  # complete, with a planted echo region, ECG leads and note phrases


def _app(case_id: str = CASE, **state) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.steps_mode"] = "fixed"
    for key, value in state.items():
        at.session_state[key] = value
    at.query_params["case"] = case_id
    return at.run()


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _shown(at: AppTest) -> float | None:
    text = next((m.value for m in at.markdown if "whatif-result" in m.value), None)
    return None if text is None else float(re.search(r"id='whatif-result'>([\d.]+)%", text).group(1)) / 100


def _table(at: AppTest, column: str) -> pd.DataFrame | None:
    """The page's table with ``column`` (AppTest does not report a dataframe's key)."""
    return next((d.value for d in at.dataframe if column in d.value.columns), None)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    checkpoint = load_checkpoint(DEMO, device="cpu")
    return Predictor(checkpoint.model, checkpoint.tokenizer)


def test_an_edited_lab_shows_the_models_output_on_the_edited_case_and_resets_with_the_case(predictor):
    reader = CohortReader(SAMPLE)
    case = reader[CASE]
    at = _app()
    _no_errors(at)
    lab = at.number_input(key="case.whatif_lab.troponin_ng_l")
    assert lab.value == pytest.approx(case.tabular["troponin_ng_l"])  # prefilled with the case's value
    assert _shown(at) is None
    lab.set_value(500.0).run()
    _no_errors(at)
    full = predictor.predict([case])[1][0]
    k = int(full.argmax())
    edited = predictor.predict([with_lab(case, "troponin_ng_l", 500.0, lab_limits(predictor))])[1][0]
    assert abs(edited[k] - full[k]) > 0.01  # the edit matters, so the check below can tell
    assert _shown(at) == pytest.approx(edited[k], abs=5e-7)  # shown to 4 decimals of a percent
    assert any(m.label.startswith("Original: p(") and m.value == f"{full[k]:.1%}" for m in at.metric)
    # and a phrase struck on top of it: still the model's output on that exact case
    option = at.multiselect(key="case.whatif_strike").options[0]
    at.multiselect(key="case.whatif_strike").select(option).run()
    _no_errors(at)
    explanation_phrase = next(m for m in at.markdown if m.value.startswith("**Edits:**")).value
    start, end = map(int, re.search(r"characters (\d+)-(\d+)", explanation_phrase).groups())
    both = strike_phrase(with_lab(case, "troponin_ng_l", 500.0, lab_limits(predictor)), start, end)
    assert _shown(at) == pytest.approx(predictor.predict([both])[1][0][k], abs=5e-7)
    # an implausible value is refused with the reason, and the other edits stay applied
    at.number_input(key="case.whatif_lab.potassium_mmol_l").set_value(4000.0).run()
    assert not at.exception
    assert any("potassium_mmol_l = 4000 mmol/L is outside the plausible range" in w.value for w in at.warning)
    assert _shown(at) == pytest.approx(predictor.predict([both])[1][0][k], abs=5e-7)
    # another case: every edit is gone, the labs are that case's own
    other = next(i for i in reader.case_ids if i != CASE and reader.availability().loc[i].all())
    at.selectbox(key="case.id").set_value(other).run()
    _no_errors(at)
    assert _shown(at) is None
    assert at.number_input(key="case.whatif_lab.troponin_ng_l").value == pytest.approx(
        reader[other].tabular["troponin_ng_l"])
    assert at.multiselect(key="case.whatif_strike").value == []


def test_a_missing_modality_says_so_and_reset_undoes_every_edit():
    at = _app("CV-00086")  # no ECG
    _no_errors(at)
    assert any(i.value.startswith("ECG: missing. Nothing to edit: this case has no ECG") for i in at.info)
    assert "case.whatif_leads" not in [m.key for m in at.multiselect]
    given = at.number_input(key="case.whatif_lab.bnp_pg_ml").value
    at.number_input(key="case.whatif_lab.bnp_pg_ml").set_value(2000.0)
    at.selectbox(key="case.whatif_lab.sex").set_value("not measured").run()
    _no_errors(at)
    assert _shown(at) is not None
    at.button(key="case.whatif_reset").click().run()
    _no_errors(at)
    assert _shown(at) is None and at.number_input(key="case.whatif_lab.bnp_pg_ml").value == given


def test_ground_truth_toggle_draws_what_was_planted():
    truth = pd.read_csv(Path(SAMPLE) / "ground_truth.csv", dtype=str, keep_default_na=False).set_index("case_id")
    at = _app()
    assert not at.toggle(key="case.ground_truth").value
    assert _table(at, "planted strength") is None
    at.toggle(key="case.ground_truth").set_value(True).run()
    _no_errors(at)
    table = _table(at, "planted strength")
    planted = [float(truth.loc[CASE, f"strength_{m}"]) for m in ("image", "text", "signal", "tabular")]
    assert table["planted strength"].tolist() == pytest.approx(planted, abs=5e-4)
    assert any(c.endswith(" rank") and c.startswith("synthetic_rater") for c in table.columns)
    charts = {json.loads(c.proto.spec)["layout"].get("title", {}).get("text"): json.loads(c.proto.spec)
              for c in at.get("plotly_chart")}
    image = next(spec for title, spec in charts.items() if title and " for " in title and "gradients" in title.lower())
    x0, y0, x1, y1 = map(int, truth.loc[CASE, "image_roi"].split())
    assert any(s["type"] == "rect" and (s["x0"], s["y0"], s["x1"], s["y1"]) == (x0 - 0.5, y0 - 0.5, x1 + 0.5, y1 + 0.5)
               for s in image["layout"]["shapes"])
    at.session_state["case.modality_tab"] = "ECG"  # the modality tabs are drawn when opened
    at.run()
    charts = {json.loads(c.proto.spec)["layout"].get("title", {}).get("text"): json.loads(c.proto.spec)
              for c in at.get("plotly_chart")}
    ecg = next(spec for title, spec in charts.items() if title and title.startswith("ECG"))
    marked = [s.get("name") for s in ecg["layout"]["shapes"] if s.get("name", "").startswith("planted ")]
    assert sorted(marked) == sorted(f"planted {lead}" for lead in truth.loc[CASE, "signal_leads"].split())
    at.session_state["case.modality_tab"] = "Clinical note"
    at.run()
    phrases = _table(at, "planted phrase")
    assert phrases["planted phrase"].tolist() == truth.loc[CASE, "text_evidence"].split(" | ")
    assert "not in the note" not in phrases["characters"].tolist()


def test_no_ground_truth_toggle_for_a_cohort_without_one(tmp_path):
    reader = CohortReader(SAMPLE)
    root = tmp_path / "user"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("ground_truth.csv"))
    table = pd.read_csv(root / "cohort.csv", dtype=str, keep_default_na=False)
    table[table["case_id"].isin(reader.ids("test")[:4] + [CASE])].to_csv(root / "cohort.csv", index=False)
    ranks = pd.read_csv(root / "clinician_rankings.csv", dtype=str, keep_default_na=False)
    ranks[ranks["case_id"].isin(table["case_id"][table["case_id"].isin(reader.ids("test")[:4] + [CASE])])].to_csv(
        root / "clinician_rankings.csv", index=False)
    at = _app(**{"settings.cohort": str(root)})
    _no_errors(at)
    assert at.selectbox(key="case.id").value == CASE
    assert "case.ground_truth" not in [t.key for t in at.toggle]
