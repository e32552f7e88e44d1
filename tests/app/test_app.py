"""Every dashboard page, headless (streamlit.testing.v1.AppTest): renders without an exception, the
ablation slider shows what explain/ computes, a bad upload is a message, a user cohort with a missing
modality renders, a bad folder is a message."""

from __future__ import annotations

import re
from pathlib import Path
import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from explain.ablation import ablate_case
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.test_sample_data import DEMO, SAMPLE

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")
PAGES = ["views/cohort_attention.py", "views/agreement.py", "views/missing.py", "views/model_card.py"]


def _app(**state) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.n_steps"] = 8  # keep the attributions quick in tests
    for key, value in state.items():
        at.session_state[key] = value
    return at


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_case_explorer_renders_every_panel_of_a_complete_case():
    reader = CohortReader(SAMPLE)
    complete = next(i for i in reader.case_ids if reader.availability().loc[i].all())
    at = _app()
    at.query_params["case"] = complete
    at.run()
    _no_errors(at)
    assert at.title[0].value == "Case explorer"
    assert at.selectbox(key="case.id").value == complete
    # probabilities, image, ECG, lead importance, labs, attention, importance, ablation
    assert len(at.get("plotly_chart")) == 8
    assert any("class=\"attr\"" in h.proto.body or 'class="attr"' in h.proto.body for h in at.get("html"))


def test_ablation_slider_at_zero_shows_the_explain_result():
    at = _app().run()
    case_id = at.selectbox(key="case.id").value
    before = _shown(at)
    at.slider(key="case.ablate_signal").set_value(0).run()
    _no_errors(at)
    after = _shown(at)
    checkpoint = load_checkpoint(DEMO, device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    case = CohortReader(SAMPLE)[case_id]
    full = predictor.predict([case])[1][0]
    expected = ablate_case(predictor, case, {"signal": 0.0})[int(full.argmax())]
    assert after == pytest.approx(100 * expected, abs=0.051)  # shown with one decimal
    assert before == pytest.approx(100 * full.max(), abs=0.051)


def test_case_filters_narrow_the_list_and_pick_a_matching_case():
    at = _app().run()
    total = len(at.selectbox(key="case.id").options)
    at.radio(key="case.filter_outcome").set_value("wrong").run()
    _no_errors(at)
    wrong = at.selectbox(key="case.id")
    assert 0 < len(wrong.options) < total and all(o.endswith(" ✗") for o in wrong.options)
    checkpoint = load_checkpoint(DEMO, device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    case = CohortReader(SAMPLE)[wrong.value]
    assert checkpoint.config.classes[int(predictor.predict([case])[1][0].argmax())] != case.label
    at.radio(key="case.filter_outcome").set_value("all")
    at.multiselect(key="case.filter_missing").set_value(["text"]).run()
    _no_errors(at)
    assert CohortReader(SAMPLE)[at.selectbox(key="case.id").value].note is None
    assert any("no clinical note" in i.value for i in at.info)
    at.multiselect(key="case.filter_true").set_value(["normal"])
    at.multiselect(key="case.filter_site").set_value([]).run()
    at.multiselect(key="case.filter_missing").set_value(["image", "text", "signal", "tabular"]).run()
    _no_errors(at)
    assert any("No case matches" in w.value for w in at.warning)


def _shown(at: AppTest) -> float:
    text = next(m.value for m in at.markdown if "ablation-result" in m.value)
    return float(re.search(r"id='ablation-result'>([\d.]+)%", text).group(1))


@pytest.mark.parametrize("page", PAGES)
def test_every_other_page_renders(page):
    at = _app().run()
    at.switch_page(page).run()
    _no_errors(at)


def test_malformed_rankings_upload_is_an_error_and_the_page_keeps_working():
    at = _app().run()
    at.switch_page("views/agreement.py").run()
    at.radio(key="agreement.source").set_value("upload a CSV").run()
    at.file_uploader(key="agreement.upload").set_value(
        ("bad.csv", b"case_id,rater,image,text,signal,tabular\nCV-00102,A,1,1,2,3\n", "text/csv")).run()
    assert not at.exception
    assert any("ranks must be a permutation" in e.value for e in at.error)
    at.radio(key="agreement.source").set_value("bundled with the cohort").run()
    _no_errors(at)
    assert any("Mean tau" in m.label for m in at.metric)


def test_user_cohort_with_a_missing_modality_renders(tmp_path):
    reader = CohortReader(SAMPLE)
    keep = reader.ids("test")[:6]
    root = tmp_path / "user"
    shutil.copytree(SAMPLE, root, ignore=shutil.ignore_patterns("clinician_rankings.csv", "ground_truth.csv"))
    table = pd.read_csv(root / "cohort.csv", dtype=str, keep_default_na=False)
    table = table[table["case_id"].isin(keep)].copy()
    table["note_file"] = ""  # this user has no notes at all
    table["has_text"] = "0"
    table.to_csv(root / "cohort.csv", index=False)
    at = _app(**{"settings.cohort": str(root)}).run()
    _no_errors(at)
    assert any("no clinical note" in i.value for i in at.info)
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, page


def test_bad_checkpoint_folder_is_a_message(tmp_path):
    at = _app(**{"settings.checkpoint": str(tmp_path / "nowhere")}).run()
    assert not at.exception
    assert "Could not load the model or cohort" in at.error[0].value
    assert "checkpoint folder" in at.error[0].value and "not found" in at.error[0].value


def test_model_card_says_why_a_metric_is_not_defined(tmp_path):
    import json

    ckpt = tmp_path / "ckpt"
    shutil.copytree(DEMO, ckpt)
    metrics = json.loads((ckpt / "metrics.json").read_text())
    reason = "not defined: no test cases of class normal"
    metrics["test"]["macro_auroc"] = {"value": None, "ci_low": None, "ci_high": None, "reason": reason}
    (ckpt / "metrics.json").write_text(json.dumps(metrics))
    at = _app(**{"settings.checkpoint": str(ckpt)}).run()
    at.switch_page("views/model_card.py").run()
    _no_errors(at)
    table = next(d.value for d in at.dataframe if "metric" in d.value.columns).set_index("metric")
    assert table.loc["macro_auroc", "value"] == reason and table.loc["macro_auroc", "95 % CI"] == reason
    accuracy = metrics["test"]["accuracy"]
    assert table.loc["accuracy", "value"] == f"{accuracy['value']:.3f}"
