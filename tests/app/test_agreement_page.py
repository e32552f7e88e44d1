"""Rater agreement page (issue 10): readable labels and tables, the inter-rater ceiling with its CI, a warning
on CIs from few cases, every error of an upload listed with its line, and a histogram whose labels do not
collide."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.agreement_figures import tau_histogram
from tests.app.test_app import MAIN, SAMPLE

PAGE = "views/agreement.py"
SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")


def _page(**state) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.steps_mode"] = "fixed"
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _upload(at: AppTest, body: str, name: str = "ours.csv") -> None:
    at.radio(key="agreement.source").set_value("upload a CSV").run()
    at.file_uploader(key="agreement.upload").set_value((name, body.encode(), "text/csv")).run()
    assert not at.exception, [e.value for e in at.exception]


TABLES = {"agreement.summary": "Class", "agreement.truth": "Model ranking from", "agreement.table": "Case"}


def _frame(at: AppTest, key: str) -> pd.DataFrame:
    """The page's table by its first column (AppTest does not expose a read-only dataframe's key)."""
    return next(d.value for d in at.dataframe if d.value.columns[0] == TABLES[key])


# ------------------------------------------------------------------------------------------ the figure
def test_histogram_names_mean_and_ceiling_in_the_legend_not_in_colliding_labels():
    per_pair = pd.DataFrame({"tau": [0.2, 0.4, 0.4, np.nan, 1.0]})
    fig = tau_histogram(per_pair, "simulated raters", {"mean": 0.45, "ci_low": 0.3, "ci_high": 0.6})
    assert not fig.layout.annotations  # no text on the plot that two nearby lines could overprint
    names = [t.name for t in fig.data if t.showlegend is not False]
    assert names == ["mean 0.50", "inter-rater 0.45 (95 % CI 0.30 to 0.60)"]
    band = next(t for t in fig.data if getattr(t, "fill", None) == "toself")
    assert (min(band.x), max(band.x)) == (0.3, 0.6)
    # transparent backgrounds and no forced template: the dark theme's background shows through
    assert fig.layout.paper_bgcolor == fig.layout.plot_bgcolor == "rgba(0,0,0,0)"
    assert fig.layout.template.layout.paper_bgcolor is None


def test_histogram_without_a_ceiling_or_any_tau():
    fig = tau_histogram(pd.DataFrame({"tau": [np.nan]}), "dr_a", None)
    assert [t.name for t in fig.data if getattr(t, "mode", None) == "lines"] == []
    assert "no (case, rater) pair" in fig.layout.annotations[0].text


# ------------------------------------------------------------------------------------------ the page
def test_tables_and_metrics_read_in_words_with_the_ceilings_ci():
    at = _page()
    assert not at.error, [e.value for e in at.error]
    summary = _frame(at, "agreement.summary")
    assert list(summary.columns) == ["Class", "Mean tau", "95 % CI", "Cases", "Note"]
    assert "All classes" in summary["Class"].tolist() and "Coronary artery disease" in summary["Class"].tolist()
    pairs = _frame(at, "agreement.table")
    assert list(pairs.columns) == ["Case", "Rater", "True class", "Kendall tau-b", "Modalities compared"]
    truth = _frame(at, "agreement.truth")
    for frame in (summary, pairs, truth):
        assert not frame.isna().any().any(), frame  # no "None" cell anywhere
        text = " ".join(map(str, frame.columns)) + " " + " ".join(frame.astype(str).to_numpy().ravel())
        assert not SNAKE.search(text.replace("synthetic_rater", "")), SNAKE.findall(text)
    assert [b.proto.label for b in at.get("download_button")] == ["Agreement, rankings, settings and hashes (zip)"]
    ceiling = [c.value for c in at.caption if c.value.startswith("95 % CI") and "cases" in c.value]
    assert len(ceiling) == 2, [c.value for c in at.caption]  # the model's mean and the inter-rater ceiling
    assert any(m.label == "Inter-rater ceiling (mean pairwise tau)" and m.value != "n/a" for m in at.metric)
    spec = json.loads(next(c for c in at.get("plotly_chart")
                           if "Agreement with" in json.dumps(json.loads(c.proto.spec)["layout"].get("title"))).proto.spec)
    legend = [t.get("name") for t in spec["data"] if t.get("mode") == "lines"]
    assert legend[0].startswith("mean ") and legend[1].startswith("inter-rater ") and "95 % CI" in legend[1]


def test_a_ci_from_few_cases_carries_a_warning():
    bundled = pd.read_csv(SAMPLE / "clinician_rankings.csv", dtype=str, keep_default_na=False)
    cases = sorted(set(bundled["case_id"]))[:3]
    _upload(at := _page(), bundled[bundled["case_id"].isin(cases)].to_csv(index=False))
    assert not at.error, [e.value for e in at.error]
    warnings = [w.value for w in at.warning if "fewer than 10 cases" in w.value]
    assert warnings and "all cases (n = 3)" in warnings[0] and "the inter-rater ceiling (n = 3)" in warnings[0]
    note = _frame(at, "agreement.summary").set_index("Class").loc["All classes", "Note"]
    assert note.startswith("few cases")


def test_an_upload_with_three_errors_lists_each_with_its_line():
    bundled = pd.read_csv(SAMPLE / "clinician_rankings.csv", dtype=str, keep_default_na=False)
    ids = sorted(set(bundled["case_id"]))[:2]
    body = ("case_id,rater,image,text,signal,tabular\n"
            f"{ids[0]},A,1,1,2,3\n"      # line 2: a tie
            f"{ids[1]},A,1,2,x,4\n"      # line 3: not a number
            "CV-99999,A,1,2,3,4\n")      # line 4: not in the cohort
    _upload(at := _page(), body, "three.csv")
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "3 errors" in errors[0], errors
    for line in (2, 3, 4):
        assert f"three.csv, line {line}, case" in errors[0], errors[0]
    assert "ranks must be a permutation" in errors[0] and "'x' is not a number" in errors[0]
    assert "'CV-99999' is not in the cohort" in errors[0]


# ------------------------------------------------------------------------------------------ a live study
def _study_with_two_protocols(tmp_path) -> tuple[str, list[str]]:
    """A study on the bundled cohort with a blinded and an unblinded rater, each ranking 12 cases."""
    from neurofusion.studies import StudyStore, create_study
    from tests.test_sample_data import DEMO

    url = f"sqlite:///{tmp_path / 'studies.sqlite'}"
    store = StudyStore(url)
    create_study(store, "fig2d", cohort_dir=SAMPLE, checkpoint_dir=DEMO, selection="stratified", n=12,
                 seed=3, raters=["dr_blind"], protocol="blinded", reveal=False)  # a revision stays blind
    store.add_rater("fig2d", "dr_seen", protocol="unblinded")
    rng = np.random.default_rng(0)
    for rater in ("dr_blind", "dr_seen"):
        for case in store.cases("fig2d"):
            order = rng.permutation(len(case.available)) + 1
            store.submit("fig2d", rater, case.case_id, dict(zip(case.available, order.tolist())),
                         token=f"{rater}-{case.case_id}")
    first = store.cases("fig2d")[0]
    store.submit("fig2d", "dr_blind", first.case_id, {m: i + 1 for i, m in enumerate(first.available)},
                 token="revised")  # a revision: the latest ranking is the one that counts
    store.export_csv("fig2d", tmp_path / "exported.csv")
    store.close()
    return url, [c.case_id for c in StudyStore(url).cases("fig2d")]


def test_a_study_is_read_live_and_agrees_with_its_exported_csv(tmp_path):
    url, _ = _study_with_two_protocols(tmp_path)
    at = _page(**{"settings.study_db": url})
    at.radio(key="agreement.source").set_value("an expert study").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="agreement.study").value == "fig2d"
    from_study = _frame(at, "agreement.summary")
    raters = next(d.value for d in at.dataframe if d.value.columns[0] == "Rater")
    assert raters["Rater"].tolist() == ["dr_blind", "dr_seen"]
    metrics = {m.label: m.value for m in at.metric}
    assert {"Blinded: mean tau", "Unblinded: mean tau", "Difference (unblinded − blinded)"} <= set(metrics)
    blind, seen = float(metrics["Blinded: mean tau"]), float(metrics["Unblinded: mean tau"])
    assert float(metrics["Difference (unblinded − blinded)"]) == pytest.approx(seen - blind, abs=2e-3)

    _upload(at, (tmp_path / "exported.csv").read_text(encoding="utf-8"), "exported.csv")
    from_csv = _frame(at, "agreement.summary")
    pd.testing.assert_frame_equal(from_study, from_csv)  # the same numbers, whichever way the rankings came
    assert "Blinded: mean tau" not in {m.label for m in at.metric}  # an upload has no protocol to contrast


def test_a_study_rating_as_it_comes_in_changes_the_agreement(tmp_path):
    from neurofusion.studies import StudyStore

    url, cases = _study_with_two_protocols(tmp_path)
    at = _page(**{"settings.study_db": url})
    at.radio(key="agreement.source").set_value("an expert study").run()
    before = _frame(at, "agreement.summary")["Cases"].iloc[0]
    store = StudyStore(url)
    store.withdraw_rater("fig2d", "dr_seen", "left the study")  # marked, not deleted: out of the agreement
    at.button(key="agreement.reload").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any(d.value.columns[0] == "Rater" for d in at.dataframe)  # one rater left
    assert "Blinded: mean tau" not in {m.label for m in at.metric}
    assert _frame(at, "agreement.summary")["Cases"].iloc[0] == before
    assert len(store.history("fig2d", rater="dr_seen")) == len(cases)


def test_no_study_of_this_cohort_says_where_to_create_one(tmp_path):
    at = _page(**{"settings.study_db": f"sqlite:///{tmp_path / 'empty.sqlite'}"})
    at.radio(key="agreement.source").set_value("an expert study").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Expert studies" in i.value for i in at.info)
