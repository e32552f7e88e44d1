"""Expert studies page (issue 14), headless on a temporary SQLite study database: a study created through the
form has the previewed cases and shows its progress; a duplicate name, a withdrawal without a reason and a bad
rankings import are messages, not tracebacks; an import counts as progress and comes back in the download."""

from __future__ import annotations

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from neurofusion.studies import STUDY_DB_ENV, StudyStore
from tests.app.test_app import MAIN
from tests.test_sample_data import DEMO, SAMPLE

PAGE = "views/studies.py"


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'studies.sqlite'}"
    monkeypatch.setenv(STUDY_DB_ENV, url)
    return url


def _page(url: str) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.study_db"] = url
    at.run()
    at.switch_page(PAGE).run()
    _ok(at)
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _frame(at: AppTest, *columns: str) -> pd.DataFrame:
    """The page's table with these columns (AppTest does not expose a read-only dataframe's key)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def _create(at: AppTest, name: str, n: int = 8, raters: str = "dr_a\ndr_b <b@clinic.org>") -> None:
    at.text_input(key="studies.name").input(name)
    at.radio(key="studies.cases").set_value("stratified").run()
    at.number_input(key="studies.n").set_value(n)
    at.text_area(key="studies.raters").input(raters).run()
    at.button(key="studies.create").click().run()
    assert not at.exception, [e.value for e in at.exception]


def test_create_a_study_through_the_form_and_follow_it(url):
    at = _page(url)
    assert any("No studies in this database yet" in i.value for i in at.info)
    assert any(url.removeprefix("sqlite:///") in c.value for c in at.caption)  # the database is named
    at.radio(key="studies.cases").set_value("stratified").run()
    at.number_input(key="studies.n").set_value(8).run()
    preview = _frame(at, "Class")
    assert preview.set_index("Class").loc["All", "Cases"] == 8 and preview["Cases"].iloc[:-1].sum() == 8
    assert any(c.value.startswith("Preview: 8 cases: ") for c in at.caption)

    _create(at, "fig2d")
    _ok(at)
    created = next(s.value for s in at.success if "Created study" in s.value)
    assert "8 cases" in created and "stratified sample of 8" in created and "SHA-256" in created
    assert at.selectbox(key="studies.study").value == "fig2d"
    progress = _frame(at, "Rater", "To do")
    assert progress["Rater"].tolist() == ["dr_a", "dr_b"] and progress["To do"].tolist() == [8, 8]
    assert "studies.progress_chart" in {c.key for c in at.get("plotly_chart")}
    store = StudyStore(url)
    study = store.study("fig2d")
    assert len(store.cases("fig2d")) == 8 and study.protocol == "blinded" and study.reveal
    assert (study.cohort_dir, study.checkpoint_dir) == (str(SAMPLE.resolve()), str(DEMO.resolve()))
    assert store.rater("fig2d", "dr_b").identity == "b@clinic.org"
    settings = _frame(at, "Setting").set_index("Setting")["Value"]
    assert settings["Cohort SHA-256"] == study.cohort_sha256
    assert settings["Checkpoint SHA-256"] == study.checkpoint_sha256

    # import two raters' rankings of two cases: progress and the download follow
    cases = store.cases("fig2d")[:2]
    modalities = study.modalities
    lines = ["case_id,rater," + ",".join(modalities)]
    for case in cases:
        for rater in ("dr_a", "dr_c"):
            ranks = {m: k + 1 for k, m in enumerate(case.available)}
            lines.append(f"{case.case_id},{rater}," + ",".join(str(ranks.get(m, "")) for m in modalities))
    body = "\n".join(lines).encode()
    at.file_uploader(key="studies.import").set_value(("ours.csv", body, "text/csv")).run()
    at.button(key="studies.import_button").click().run()
    _ok(at)
    assert any("Imported 4 rankings" in s.value for s in at.success)
    progress = _frame(at, "Rater", "To do").set_index("Rater")
    assert progress.loc["dr_a", "Ranked"] == 2 and progress.loc["dr_c", "Ranked"] == 2  # dr_c was added
    download = next(b for b in at.get("download_button") if "clinician_rankings.csv" in b.proto.label)
    assert "(4 rows)" in download.proto.label
    assert len(store.rankings("fig2d")) == 4
    store.close()


def test_duplicate_name_bad_import_and_withdrawal_without_a_reason_are_messages(url):
    at = _page(url)
    _create(at, "fig2d", n=6)
    _ok(at)
    _create(at, "fig2d", n=6)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("The study was not created") and "fig2d" in errors[0], errors

    store = StudyStore(url)
    case = store.cases("fig2d")[0].case_id
    bad = ("case_id,rater,image,text,signal,tabular\n"
           f"{case},dr_a,1,2,x,4\n"       # line 2: not a number
           "CV-99999,dr_a,1,2,3,4\n")     # line 3: not in the cohort
    at.file_uploader(key="studies.import").set_value(("bad.csv", bad.encode(), "text/csv")).run()
    at.button(key="studies.import_button").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "bad.csv was not imported" in errors[0] and "2 errors" in errors[0], errors
    assert "line 2" in errors[0] and "'CV-99999' is not in the cohort" in errors[0]
    assert store.rankings("fig2d").empty  # nothing was written

    at.selectbox(key="studies.withdraw_rater").set_value("dr_a")
    at.checkbox(key="studies.withdraw_confirm").check()
    at.button(key="studies.withdraw").click().run()
    assert any("give a reason" in e.value for e in at.error), [e.value for e in at.error]
    assert [r.name for r in store.raters("fig2d")] == ["dr_a", "dr_b"]

    at.text_input(key="studies.withdraw_reason").input("left the hospital")
    at.checkbox(key="studies.withdraw_confirm").uncheck()
    at.button(key="studies.withdraw").click().run()
    assert any("tick the confirmation" in e.value for e in at.error)
    assert [r.name for r in store.raters("fig2d")] == ["dr_a", "dr_b"]

    at.checkbox(key="studies.withdraw_confirm").check()
    at.button(key="studies.withdraw").click().run()
    _ok(at)
    assert any("Withdrew rater **dr_a**" in s.value for s in at.success)
    assert [r.name for r in store.raters("fig2d")] == ["dr_b"]
    withdrawn = store.rater("fig2d", "dr_a")
    assert withdrawn.withdrawn_at is not None and withdrawn.withdrawn_reason == "left the hospital"
    assert _frame(at, "Rater", "To do")["Rater"].tolist() == ["dr_b"]
    history = next(b for b in at.get("download_button") if "Full history" in b.proto.label)
    assert history.proto.label.startswith("Full history (0 submission rows")

    at.text_input(key="studies.new_rater").input("dr_e <e@clinic.org>")
    at.button(key="studies.add_rater").click().run()
    _ok(at)
    assert store.rater("fig2d", "dr_e").identity == "e@clinic.org"
    assert _frame(at, "Rater", "To do")["Rater"].tolist() == ["dr_b", "dr_e"]
    at.text_input(key="studies.new_rater").input("dr_b").run()
    at.button(key="studies.add_rater").click().run()
    assert any("The rater was not added" in e.value and "dr_b" in e.value for e in at.error)

    at.radio(key="studies.withdraw_what").set_value("study").run()
    at.text_input(key="studies.withdraw_reason").input("protocol changed")
    at.checkbox(key="studies.withdraw_confirm").check()
    at.button(key="studies.withdraw").click().run()
    _ok(at)
    assert store.study("fig2d").withdrawn_at is not None and store.studies() == []
    assert any("was withdrawn" in i.value for i in at.info)  # still listed, downloadable, closed to changes
    assert at.selectbox(key="studies.study").value == "fig2d"
    assert "studies.withdraw" not in {b.key for b in at.button} and "(0 rows)" in next(
        b.proto.label for b in at.get("download_button") if "clinician_rankings.csv" in b.proto.label)
    store.close()


def test_a_bad_database_url_is_a_message(tmp_path):
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.study_db"] = "notadialect://nowhere"
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("could not be opened" in e.value for e in at.error), [e.value for e in at.error]


def test_survival_and_time_stamped_demos(url):
    root = SAMPLE.parent
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.study_db"] = url
    at.session_state["settings.checkpoint"] = str(root / "checkpoints" / "cancer_demo")
    at.session_state["settings.cohort"] = str(root / "cancer")
    at.run()
    at.switch_page(PAGE).run()
    _create(at, "survival", n=6, raters="dr_a")
    _ok(at)
    preview = _frame(at, "Outcome", "Modalities")  # a survival cohort is stratified by event, not class
    assert set(preview["Outcome"]) <= {"event", "censored", "All"} and preview["Cases"].iloc[-1] == 6
    settings = _frame(at, "Setting").set_index("Setting")["Value"]
    assert settings["Classes"] == "none (survival)" and settings["Task"].endswith("(survival)")

    at.session_state["settings.checkpoint"] = str(root / "checkpoints" / "icu_demo")
    at.session_state["settings.cohort"] = str(root / "icu")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("time-stamped (ICU) cohorts are not supported" in e.value for e in at.error), [e.value for e in at.error]


def test_a_study_whose_checkpoint_changed_since_it_was_created_is_flagged(url, tmp_path):
    import shutil

    from neurofusion.studies import create_study

    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(DEMO, checkpoint)
    store = StudyStore(url)
    create_study(store, "moved", cohort_dir=SAMPLE, checkpoint_dir=checkpoint, selection="split", split="test",
                 raters=["dr_a"])
    store.close()
    at = _page(url)
    assert not [w.value for w in at.warning if "has changed" in w.value]
    (checkpoint / "metrics.json").write_text("{}")  # the checkpoint is no longer what the study recorded
    at.run()
    warned = [w.value for w in at.warning if "has changed since the study was created" in w.value]
    assert len(warned) == 1 and f"The checkpoint folder `{checkpoint}`" in warned[0], [w.value for w in at.warning]
    assert "cohort folder" not in warned[0]


def test_a_stratified_sample_of_one_split(url, tmp_path):
    from neurofusion.data.cohort import CohortReader
    from tests.explain.test_cli_study import write_split_cohort

    cohort = write_split_cohort(tmp_path / "cardio")
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.study_db"] = url
    at.session_state["settings.cohort"] = str(cohort)
    at.run()
    at.switch_page(PAGE).run()
    _ok(at)
    at.radio(key="studies.cases").set_value("stratified").run()
    sample_from = at.selectbox(key="studies.sample_split")
    assert sample_from.value is None and sample_from.options == [
        "the whole cohort (200 cases)", "the train split (26 cases)", "the val split (67 cases)",
        "the test split (107 cases)"]
    sample_from.set_value("test")
    at.number_input(key="studies.n").set_value(108).run()
    assert [e.value for e in at.error] == ["These cases cannot be selected: n must be between 1 and the test split's "
                                           "107 cases, got 108"]
    at.number_input(key="studies.n").set_value(12).run()
    _ok(at)
    preview = _frame(at, "Class")
    assert preview.set_index("Class").loc["All", "Cases"] == 12  # the preview follows the split and n

    _create(at, "fig2d", n=12)
    _ok(at)
    created = next(s.value for s in at.success if "Created study" in s.value)
    assert "12 cases (stratified sample of 12 of the test split by class and missingness pattern (seed 0))" in created
    store = StudyStore(url)
    chosen = [c.case_id for c in store.cases("fig2d")]
    store.close()
    assert len(chosen) == 12 and set(chosen) <= set(CohortReader(cohort).ids("test"))
