"""Every dashboard page, headless (streamlit.testing.v1.AppTest): renders without an exception, the
ablation slider shows what explain/ computes, a bad upload is a message, a user cohort with a missing
modality renders, a bad folder is a message."""

from __future__ import annotations

import json
import re
from pathlib import Path
import shutil

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.figures import pretty
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
    at.session_state["settings.steps_mode"] = "fixed"
    for key, value in state.items():
        at.session_state[key] = value
    return at


def _figure(at: AppTest, key: str) -> dict:
    """The plotly figure of the chart with ``key``, as the page sent it."""
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    return json.loads(chart.proto.spec)


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
    # the modality tabs are lazy: only the open one is drawn, beside probabilities, attention, importance
    # and ablation; opening another tab draws its panel instead
    always = {"case.attention", "case.interactions", "case.importance"}
    tab_charts = {"Echo image": {"case.image"}, "Clinical note": set(), "ECG": {"case.ecg", "case.lead_importance"},
                  "Labs": {"case.labs"}}
    for tab, charts in tab_charts.items():
        if tab != "Echo image":
            at.session_state["case.modality_tab"] = tab
            at.run()
            _no_errors(at)
        assert {c.key for c in at.get("plotly_chart")} == always | charts, tab
        has_note = any('class="attr"' in h.proto.body for h in at.get("html"))
        assert has_note == (tab == "Clinical note"), tab
    at.session_state["case.modality_tab"] = "ECG"
    at.run()
    for view in ("12 leads stacked", "II, V1, V5"):  # the ECG's layouts, each a valid figure
        at.radio(key="case.leads").set_value(view).run()
        _no_errors(at)
    traces = {t.get("name") for t in _figure(at, "case.ecg")["data"] if t.get("mode") == "lines"}
    assert {"II", "V1", "V5"} <= traces and "aVR" not in traces


def test_each_integrated_gradients_map_says_how_well_it_adds_up():
    reader = CohortReader(SAMPLE)
    complete = next(i for i in reader.case_ids if reader.availability().loc[i].all())
    at = _app()
    at.query_params["case"] = complete
    for tab in ("Clinical note", "ECG", "Labs"):
        at.session_state["case.modality_tab"] = tab
        at.run()
        _no_errors(at)
        said = [e.value for e in (*at.caption, *at.warning) if "relative completeness error" in e.value]
        assert len(said) == 1 and "Integrated Gradients with 8 steps" in said[0], tab
        shown = float(re.search(r"within ([0-9.]+)%", said[0]).group(1)) / 100
        assert any(w.value == said[0] for w in at.warning) == (shown > 0.05), tab  # a warning above 5 %


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
    # the per-class comparison shows the model's output on the partial case for every class
    ablated = ablate_case(predictor, case, {"signal": 0.0})
    comparison = next(h.proto.body for h in at.get("html") if 'class="after"' in h.proto.body)
    shown = dict(re.findall(r'<tr data-class="([a-z_]+)">.*?<span class="after">([\d.]+)%</span>', comparison))
    assert [float(shown[c]) for c in checkpoint.config.classes] == pytest.approx(100 * ablated, abs=0.051)


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
    assert table.loc["Macro AUROC", "value"] == reason and table.loc["Macro AUROC", "95 % CI"] == reason
    accuracy = metrics["test"]["accuracy"]
    assert table.loc["Accuracy", "value"] == f"{accuracy['value']:.3f}"


# ------------------------------------------------------------------ controls belong to the case (issue 10)
MODALITY_TABS = ("Echo image", "Clinical note", "ECG", "Labs")


def _every_tab(at: AppTest) -> tuple[dict[str, dict], list[str]]:
    """The figures (by title) and html bodies of every modality tab, opened one after the other (the tabs
    are lazy: a page run draws the open one only); leaves the first tab open."""
    charts, html = {}, []
    for tab in MODALITY_TABS + MODALITY_TABS[:1]:
        at.session_state["case.modality_tab"] = tab
        at.run()
        _no_errors(at)
        charts.update(_charts(at))
        html += [h.proto.body for h in at.get("html")]
    return charts, html


def _charts(at: AppTest) -> dict[str, dict]:
    """The page's plotly figures by title text (figures without a title left out)."""
    figures = {}
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("layout", {}).get("title", {}).get("text")
        if title:
            figures[title] = spec
    return figures


def _explained(at: AppTest) -> str:
    text = next(m.value for m in at.markdown if "explained-class" in m.value)
    return re.search(r"id='explained-class'[^>]*>([^<]+)<", text).group(1)


def _full_prediction(case_id: str) -> float:
    checkpoint = load_checkpoint(DEMO, device="cpu")
    probabilities = Predictor(checkpoint.model, checkpoint.tokenizer).predict([CohortReader(SAMPLE)[case_id]])[1][0]
    return 100 * probabilities.max()


def test_ablation_and_class_controls_reset_when_the_case_changes():
    at = _app()
    at.query_params["case"] = "CV-00319"
    at.run()
    at.slider(key="case.ablate_tabular").set_value(0)
    at.radio(key="case.explain_class").set_value("class:normal").run()
    _no_errors(at)
    assert _shown(at) != pytest.approx(_full_prediction("CV-00319"), abs=0.051)  # the labs are withheld
    assert _explained(at) == "Normal"
    reader = CohortReader(SAMPLE)
    other = next(i for i in reader.case_ids if i != "CV-00319" and reader.availability().loc[i].all())
    at.selectbox(key="case.id").set_value(other).run()
    _no_errors(at)
    assert at.slider(key="case.ablate_tabular").value == 100
    assert at.slider(key="case.ablate_signal").value == 100 and at.toggle(key="case.ablate_image").value
    assert _shown(at) == pytest.approx(_full_prediction(other), abs=0.051)  # unablated
    assert at.radio(key="case.explain_class").value == "predicted"
    # a case without an ECG: its ECG control says missing, not a percentage
    at.slider(key="case.ablate_signal").set_value(30).run()
    at.selectbox(key="case.id").set_value("CV-00086").run()
    _no_errors(at)
    assert "case.ablate_signal" not in [s.key for s in at.slider]
    assert any(m.value == "**ECG:** missing" for m in at.markdown)
    assert any("this case has no ECG" in c.value for c in at.caption)
    assert at.slider(key="case.ablate_tabular").value == 100
    assert _shown(at) == pytest.approx(_full_prediction("CV-00086"), abs=0.051)


def test_the_true_class_of_a_wrong_case_can_be_explained_and_every_title_names_it():
    at = _app().run()
    at.radio(key="case.filter_outcome").set_value("wrong").run()
    case = CohortReader(SAMPLE)[at.selectbox(key="case.id").value]
    choice = at.radio(key="case.explain_class")
    assert choice.value == "predicted" and choice.options[1] == f"true ({pretty(case.label)})"
    predicted = _explained(at)
    before, _ = _every_tab(at)
    assert predicted != pretty(case.label)
    at.radio(key="case.explain_class").set_value("true").run()
    _no_errors(at)
    assert _explained(at) == pretty(case.label)
    after, html = _every_tab(at)
    titles = list(after)
    for part in ("Modality importance for", "Labs and demographics: attribution to", "ECG: attribution to",
                 "Lead importance for"):
        assert f"{part} {pretty(case.label)}" in titles, (part, titles)
    assert not any(predicted in t for t in titles)
    labs = next(t for t in after if t.startswith("Labs"))
    assert after[labs]["data"] != before[f"Labs and demographics: attribution to {predicted}"]["data"]
    assert any(f"for {pretty(case.label)}" in body for body in html)  # the note's legend
    # the true class against the predicted one: a contrast, named as such
    at.selectbox(key="case.contrast_class").set_value("predicted").run()
    _no_errors(at)
    contrast = f"{pretty(case.label)} − {predicted}"
    assert _explained(at) == contrast
    assert f"Modality importance for {contrast}" in _charts(at)


# ----------------------------------------------------------------------- raters named for what they are
def test_bundled_raters_are_called_simulated_and_uploaded_raters_by_name():
    at = _app().run()
    at.switch_page("views/agreement.py").run()
    _no_errors(at)
    assert at.title[0].value == "Agreement with simulated raters"
    assert any(m.label == "Mean tau, model vs simulated raters" for m in at.metric)
    assert any(t.startswith("Agreement with simulated raters (") for t in _charts(at))
    shown = [at.title[0].value] + [m.label for m in at.metric] + list(_charts(at))
    assert not any("clinician" in text.lower() for text in shown), shown
    bundled = pd.read_csv(Path(SAMPLE) / "clinician_rankings.csv", dtype=str, keep_default_na=False)
    cases = sorted(set(bundled["case_id"]))[:12]
    real = bundled[bundled["case_id"].isin(cases) & bundled["rater"].isin(["synthetic_rater_A", "synthetic_rater_B"])]
    real = real.replace({"rater": {"synthetic_rater_A": "dr_smith", "synthetic_rater_B": "dr_jones"}})
    at.radio(key="agreement.source").set_value("upload a CSV").run()
    at.file_uploader(key="agreement.upload").set_value(
        ("ours.csv", real.to_csv(index=False).encode(), "text/csv")).run()
    _no_errors(at)
    assert at.title[0].value == "Agreement with dr_jones and dr_smith"
    assert any(m.label == "Mean tau, model vs dr_jones and dr_smith" for m in at.metric)
    assert any(t.startswith("Agreement with dr_jones and dr_smith (") for t in _charts(at))
    assert not any("simulated" in c.value for c in at.caption)


# ------------------------------------------------------- the model and the cohort must be of one task (issue 11)
def test_a_cohort_of_another_task_is_a_message_naming_both(tmp_path):
    at = _app(**{"settings.cohort": str(Path(SAMPLE).parent / "cancer")}).run()
    assert not at.exception
    message = at.error[0].value
    assert "survival cohort with the modalities histopathology, genomics, treatment_notes, clinical" in message
    assert "classification model of the cardio task with the modalities image, text, signal, tabular" in message


def test_a_survival_model_on_a_classification_cohort_is_a_message(tmp_path):
    at = _app(**{"settings.checkpoint": str(Path(SAMPLE).parent / "checkpoints" / "cancer_demo")}).run()
    assert not at.exception
    message = at.error[0].value
    assert "is a survival model of the cancer task" in message and "a classification cohort" in message


def test_the_demo_switch_loads_the_other_bundled_task_and_starts_page_controls_afresh():
    at = _app().run()
    _no_errors(at)
    assert at.selectbox(key="settings.demo").value == "cardio"
    at.multiselect(key="case.filter_true").set_value(["normal"]).run()  # a filter of cardio's classes
    at.selectbox(key="settings.demo").set_value("cancer").run()
    _no_errors(at)
    assert at.session_state["settings.checkpoint"].endswith("cancer_demo")
    assert at.session_state["settings.cohort"].endswith("cancer")
    assert not at.session_state["case.filter_true"] if "case.filter_true" in at.session_state else True
    assert at.selectbox(key="case.id").value.startswith("CA-")
    at.selectbox(key="settings.demo").set_value("cardio").run()
    _no_errors(at)
    assert at.selectbox(key="case.id").value.startswith("CV-")


def test_typing_own_folders_shows_the_demo_as_custom(tmp_path):
    shutil.copytree(SAMPLE, tmp_path / "cohort")
    at = _app(**{"settings.cohort": str(tmp_path / "cohort")}).run()
    _no_errors(at)
    assert at.selectbox(key="settings.demo").value == "custom"
