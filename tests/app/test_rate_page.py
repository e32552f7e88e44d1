"""The "Rate cases" page (AppTest) on a study of the bundled cardio cohort in a temporary SQLite database: a blinded
page shows nothing from the model before the ranking is submitted; a submission stores the ranks given; the
reveal follows only when the study reveals; ties and a skip without a reason are refused with a message; a
revision is a new row; an unblinded rater sees the prediction; another case starts a fresh form; a study of
another cohort offers to load it; with login configured the rater is the login's claimed name."""

from __future__ import annotations

import json
import shutil

import pytest
from streamlit.testing.v1 import AppTest

from app.figures import pretty
from app.rating_panels import note_html
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data.cohort import CohortReader
from neurofusion.inference import Predictor
from neurofusion.studies import StudyError, StudyStore, create_study
from tests.app.test_app import MAIN
from tests.test_sample_data import CANCER_DEMO, DEMO, SAMPLE

PAGE = "views/rate.py"
RATERS = ["dr_a", "dr_b"]
# Words that only model output would put on the page (checked case-insensitively)
MODEL_WORDS = ("predict", "probab", "attention", "shapley", "saliency", "importance", "attribution", "kendall",
               "model's")


@pytest.fixture
def store(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'studies.sqlite'}"
    monkeypatch.setenv("NEUROFUSION_STUDY_DB", url)
    store = StudyStore(url)
    yield store
    store.close()


def _study(store: StudyStore, name: str = "pilot", **options):
    return create_study(store, name, cohort_dir=SAMPLE, checkpoint_dir=DEMO, selection="stratified", n=6, seed=3,
                        raters=RATERS, created_by="test", **options)


def _page(store: StudyStore, rater: str | None = "dr_a", **state) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.steps_mode"] = "fixed"
    at.session_state["settings.study_db"] = store.url
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(PAGE).run()
    _ok(at)
    if rater is not None:
        at.selectbox(key="rate.rater").set_value(rater).run()
        _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _case_id(at: AppTest) -> str:
    return next(h.value for h in at.main.subheader if h.value.startswith("Case ")).removeprefix("Case ")


def _available(at: AppTest) -> list[str]:
    return [s.key.removeprefix("rate.f.rank.") for s in at.selectbox if (s.key or "").startswith("rate.f.rank.")]


def _rank(at: AppTest, ranks: dict[str, int]) -> None:
    for modality, rank in ranks.items():
        at.selectbox(key=f"rate.f.rank.{modality}").set_value(rank)


def _click(at: AppTest, label: str) -> None:
    next(b for b in at.button if b.label == label).click().run()
    _ok(at)


def _texts(at: AppTest, note: str | None = None) -> list[str]:
    """Every piece of text the main area shows (labels, markdown, captions, messages, table cells), except the
    selectboxes' options (the diagnosis lists every class) and the case's own note."""
    texts = []
    for kind in ("title", "subheader", "markdown", "caption", "info", "warning", "success", "error", "text",
                 "metric"):
        texts += [str(e.value) for e in at.main.get(kind)]
    texts += [e.proto.body for e in at.main.get("html") if note is None or e.proto.body != note_html(note)]
    for widget in ("selectbox", "radio", "text_area", "text_input", "button"):
        texts += [str(w.label) for w in at.main.get(widget)]
    for frame in at.main.get("arrow_data_frame"):
        texts += [str(c) for c in frame.value.columns] + [str(v) for v in frame.value.to_numpy().ravel()]
    return texts


def _ranks_in_order(modalities: list[str]) -> dict[str, int]:
    return {m: k for k, m in enumerate(modalities, 1)}


# ------------------------------------------------------------------------------------------ blinded capture
def test_blinded_page_shows_the_case_and_nothing_from_the_model(store):
    _study(store)
    at = _page(store)
    case_id = _case_id(at)
    case = CohortReader(SAMPLE)[case_id]
    checkpoint = load_checkpoint(DEMO, device="cpu")
    probabilities = Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device).predict([case])[1][0]
    texts = _texts(at, case.note)
    joined = "\n".join(texts).lower()
    assert not [w for w in MODEL_WORDS if w in joined], [w for w in MODEL_WORDS if w in joined]
    assert not [f"{p:.1%}" for p in probabilities if f"{p:.1%}" in joined]
    assert case.label not in joined and pretty(case.label).lower() not in joined  # no true label
    for chart in at.main.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        assert not any("saliency" in str(t.get("name")) or "attention" in str(t.get("name")).lower()
                       for t in spec["data"])
        assert "coloraxis" not in spec["layout"]
    # what a clinician reads: each available modality under its title, and the progress of this rater
    titles = [h.value for h in at.main.subheader]
    assert titles[0] == f"Case {case_id}"
    assert set(titles[1:]) <= {"Echo image", "Clinical note", "ECG", "Labs"} and len(titles) > 2
    assert "0 ranked, 0 skipped, 6 to do, of 6 cases" in at.main.get("progress")[0].proto.text


def test_submitting_stores_the_ranks_given_then_reveals(store):
    _study(store)
    at = _page(store)
    case_id, available = _case_id(at), _available(at)
    ranks = _ranks_in_order(list(reversed(available)))
    _rank(at, ranks)
    at.selectbox(key="rate.f.diagnosis").set_value("heart_failure")
    at.radio(key="rate.f.confidence").set_value(4)
    at.text_area(key="rate.f.reason").input("raised BNP")
    _click(at, "Submit")
    rows = store.history("pilot", "dr_a")
    assert len(rows) == 1
    row = rows[0]
    assert (row.case_id, row.kind, row.ranks, row.revision) == (case_id, "ranking", ranks, 1)
    assert (row.diagnosis, row.confidence, row.reason, row.protocol, row.source) == (
        "heart_failure", 4, "raised BNP", "blinded", "dashboard")
    # the reveal, after the submission only
    assert "The model's view of this case" in [h.value for h in at.main.subheader]
    assert any(m.value.startswith("**Model's prediction:**") for m in at.main.markdown)
    assert any("Kendall tau-b with your ranking" in m.value for m in at.main.markdown)
    _click(at, "Next case")
    assert _case_id(at) != case_id
    assert "1 ranked, 0 skipped, 5 to do" in at.main.get("progress")[0].proto.text
    # going back after the reveal: the rater is told a revision is no longer blind to the model
    at.selectbox(key="rate.revise").set_value(case_id).run()
    assert any(c.value.startswith("You saw the model's view of this case") for c in at.main.caption)


def test_without_reveal_the_next_case_follows_with_no_model_output(store):
    _study(store, reveal=False)
    at = _page(store)
    first, available = _case_id(at), _available(at)
    _rank(at, _ranks_in_order(available))
    _click(at, "Submit")
    assert _case_id(at) != first
    assert any(s.value.startswith(f"Stored your ranking of case {first}") for s in at.main.success)
    joined = "\n".join(_texts(at, CohortReader(SAMPLE)[_case_id(at)].note)).lower()
    assert "model's" not in joined and "kendall" not in joined


def test_ties_are_refused_with_a_message_when_the_study_does_not_allow_them(store):
    _study(store)
    at = _page(store)
    available = _available(at)
    _rank(at, {m: 1 for m in available})
    _click(at, "Submit")
    assert any("this study does not allow ties" in e.value for e in at.main.error), [e.value for e in at.main.error]
    assert store.history("pilot", "dr_a") == []


def test_ties_are_stored_when_the_study_allows_them(store):
    _study(store, allow_ties=True)
    at = _page(store)
    available = _available(at)
    ranks = {m: (1 if k < 2 else k + 1) for k, m in enumerate(available)}  # 1, 1, 3, 4
    _rank(at, ranks)
    _click(at, "Submit")
    assert [r.ranks for r in store.history("pilot", "dr_a")] == [ranks]


def test_a_skip_needs_a_reason(store):
    _study(store)
    at = _page(store)
    case_id = _case_id(at)
    _click(at, "Skip")
    assert any(e.value.startswith("Give a reason to skip this case") for e in at.main.error)
    assert store.history("pilot", "dr_a") == []
    at.text_input(key="rate.f.skip_reason").input("ECG unreadable")
    _click(at, "Skip")
    rows = store.history("pilot", "dr_a")
    assert [(r.case_id, r.kind, r.reason) for r in rows] == [(case_id, "skip", "ECG unreadable")]
    assert _case_id(at) != case_id
    assert "0 ranked, 1 skipped, 5 to do" in at.main.get("progress")[0].proto.text


def test_revising_makes_revision_2_and_keeps_revision_1(store):
    _study(store, reveal=False)
    at = _page(store)
    case_id, available = _case_id(at), _available(at)
    first = _ranks_in_order(available)
    _rank(at, first)
    _click(at, "Submit")
    at.selectbox(key="rate.revise").set_value(case_id).run()
    _ok(at)
    assert _case_id(at) == case_id
    assert any(i.value.startswith("Revision 2: your previous ranking was 1 ") for i in at.main.info)
    # the form starts from the previous answer
    assert {m: at.selectbox(key=f"rate.f.rank.{m}").value for m in available} == first
    second = _ranks_in_order(list(reversed(available)))
    _rank(at, second)
    _click(at, "Submit")
    history = store.history("pilot", "dr_a", case_id)
    assert [(r.revision, r.ranks) for r in history] == [(1, first), (2, second)]
    assert [(r.revision, r.ranks) for r in store.latest("pilot", "dr_a")] == [(2, second)]


def test_switching_case_resets_the_form(store):
    _study(store, reveal=False)
    at = _page(store)
    done, available = _case_id(at), _available(at)
    _rank(at, _ranks_in_order(available))
    _click(at, "Submit")
    current, shown = _case_id(at), _available(at)
    _rank(at, {shown[0]: 2})
    at.text_area(key="rate.f.reason").input("half-written")
    at.run()
    at.selectbox(key="rate.revise").set_value(done).run()  # another case: its own (previous) answer
    _ok(at)
    assert at.text_area(key="rate.f.reason").value == ""
    at.selectbox(key="rate.revise").set_value(None).run()  # back to the next case: a fresh form
    _ok(at)
    assert _case_id(at) == current
    assert all(at.selectbox(key=f"rate.f.rank.{m}").value is None for m in shown)
    assert at.text_area(key="rate.f.reason").value == ""


# ------------------------------------------------------------------------------------------ protocols, set-up
def test_unblinded_rater_sees_the_prediction_before_ranking(store):
    _study(store, protocol="unblinded")
    at = _page(store)
    markdown = [m.value for m in at.main.markdown]
    assert any(m.startswith("**Model's prediction:**") and "its ranking" in m for m in markdown), markdown
    assert store.history("pilot", "dr_a") == []


def test_a_study_of_another_cohort_offers_to_load_it(store, tmp_path):
    copy = tmp_path / "cardio_copy"
    shutil.copytree(SAMPLE, copy)
    create_study(store, "elsewhere", cohort_dir=copy, checkpoint_dir=DEMO, selection="stratified", n=6, seed=3,
                 raters=RATERS)
    at = _page(store, rater=None)
    assert any("rates cases of the cohort" in w.value and str(copy.name) in w.value for w in at.main.warning)
    assert not at.main.get("progress")
    _click(at, "Load the study's model and cohort")
    assert at.session_state["settings.cohort"] == store.study("elsewhere").cohort_dir
    assert at.selectbox(key="rate.study").value == "elsewhere"
    (copy / "cohort.json").write_text((copy / "cohort.json").read_text() + "\n")  # the cohort changed since
    at.run()
    _ok(at)
    assert any("has changed since the study was created" in w.value for w in at.main.warning)


def test_no_study_is_a_message(store):
    at = _page(store, rater=None)
    assert any(i.value.startswith("No study in the database") for i in at.main.info)


def test_with_login_the_rater_is_the_claimed_name_and_cannot_switch(store):
    _study(store)
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x",
                          "client_id": "id", "client_secret": "secret",
                          "server_metadata_url": "https://example.org/.well-known/openid-configuration"}
    at.user = {"is_logged_in": True, "email": "b@example.org"}
    at.session_state["settings.study_db"] = store.url
    at.run()
    at.switch_page(PAGE).run()
    _ok(at)
    assert not [s for s in at.selectbox if s.key == "rate.rater"]  # no name picker
    at.selectbox(key="rate.claim").set_value("dr_b").run()
    _click(at, "Claim this name")
    assert store.rater("pilot", "dr_b").identity == "b@example.org"
    assert any("Rating as **dr_b**" in c.value for c in at.main.caption)
    _rank(at, _ranks_in_order(_available(at)))
    _click(at, "Submit")
    assert [r.rater for r in store.history("pilot")] == ["dr_b"]


# ------------------------------------------------------------------------------------------ robustness
def test_a_second_submission_of_the_same_form_stores_one_row(store):
    """As when a double click reruns the page after the first run stored the row but before it moved on (here
    while revising, so the same case and form stay open): the form's token is already stored, so the store
    returns that row and nothing new is written."""
    _study(store, reveal=False)
    at = _page(store)
    case_id, available = _case_id(at), _available(at)
    _rank(at, _ranks_in_order(available))
    _click(at, "Submit")
    at.selectbox(key="rate.revise").set_value(case_id).run()
    ranks = _ranks_in_order(list(reversed(available)))
    first_click = store.submit("pilot", "dr_a", case_id, ranks, token=at.session_state["rate.token"])
    assert first_click.revision == 2
    _rank(at, ranks)
    _click(at, "Submit")
    assert [r.revision for r in store.history("pilot", "dr_a")] == [1, 2]
    assert any(s.value.startswith(f"Stored your ranking of case {case_id} (revision 2)") for s in at.main.success)
    assert at.session_state["rate.token"] != first_click.token  # the next form has its own token


def test_a_store_error_is_a_message_not_a_traceback(store, monkeypatch):
    _study(store)
    at = _page(store)
    _rank(at, _ranks_in_order(_available(at)))

    def refuse(*args, **kwargs):
        raise StudyError("study 'pilot' was withdrawn by the researcher (reason: protocol changed)")

    monkeypatch.setattr(StudyStore, "submit", refuse)
    _click(at, "Submit")
    assert [e.value for e in at.main.error] == ["Not stored: study 'pilot' was withdrawn by the researcher (reason: "
                                                "protocol changed)"]


def test_a_survival_study_shows_the_slide_and_plain_tables(store):
    cancer, checkpoint = SAMPLE.parent / "cancer", CANCER_DEMO
    create_study(store, "onco", cohort_dir=cancer, checkpoint_dir=checkpoint, selection="stratified", n=6, seed=3,
                 raters=RATERS)
    at = _page(store, **{"settings.checkpoint": str(checkpoint), "settings.cohort": str(cancer)})
    assert not at.main.warning, [w.value for w in at.main.warning]
    assert not [s for s in at.selectbox if s.key == "rate.f.diagnosis"]  # a survival model has no classes
    shown = [h.value for h in at.main.subheader][1:]
    assert shown and set(shown) <= {"Histopathology", "Genomics", "Treatment notes", "Clinical"}
    for frame in at.main.get("arrow_data_frame"):
        assert "Test" in frame.value.columns
    _rank(at, _ranks_in_order(_available(at)))
    _click(at, "Submit")
    assert any(m.value.startswith("**Model's prediction:** Survival at") for m in at.main.markdown), \
        [m.value for m in at.main.markdown]


def test_a_rater_withdrawn_meanwhile_is_told_and_cannot_rate(store):
    _study(store)
    at = _page(store)
    store.withdraw_rater("pilot", "dr_a", "left the study")
    at.run()
    _ok(at)
    assert any(w.value.startswith("dr_a has been withdrawn from study 'pilot'") for w in at.main.warning)
    assert at.selectbox(key="rate.rater").options == ["dr_b"]
    assert not _available(at)  # no form until a current rater is picked


def test_a_rater_who_answered_every_case_is_told_so_and_can_still_go_back(store):
    create_study(store, "small", cohort_dir=SAMPLE, checkpoint_dir=DEMO, selection="stratified", n=2, seed=3,
                 raters=RATERS)
    at = _page(store)
    assert any(c.value.startswith("Name-picker mode: nothing checks who is at the keyboard") for c in at.main.caption)
    answered = []
    for _ in range(2):
        answered.append(_case_id(at))
        at.text_input(key="rate.f.skip_reason").input("outside my specialty")
        _click(at, "Skip")
    assert any(s.value.startswith("You have answered every case of this study") for s in at.main.success)
    assert not _available(at)
    assert at.selectbox(key="rate.revise").options == [f"{c} · skipped" for c in answered]
    at.selectbox(key="rate.revise").set_value(answered[0]).run()
    assert any(i.value.startswith("Revision 2: you previously skipped it (outside my specialty)") for i in at.main.info)
