"""A case's explanation drawn as it is computed (app/case_progress.py): the process-wide cache of whole
explanations, a run stopped between passes (the way Streamlit stops a run the user left) keeping the finished
panels and caching nothing, the resumed run computing only the rest, and the case explorer's progress line."""

from __future__ import annotations

import logging
from contextlib import nullcontext

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.case_progress import PROGRESS_ID, CaseJob, ExplanationCache, explanation_cache
from explain.case import CaseExplainer, ExplainSettings, explain_case
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.app.test_app import _app, _no_errors
from tests.test_sample_data import DEMO, SAMPLE

SETTINGS = ExplainSettings(n_steps=4)
TITLES = {"image": "Echo image", "text": "Clinical note", "signal": "ECG", "tabular": "Labs"}


class Stopped(BaseException):
    """Stands in for Streamlit's rerun exception, raised where the page next sends something."""


class Slot:
    """A placeholder that records what is drawn in it. With ``stop_after`` (an explainer): raises Stopped at the
    second update after that explainer's first panel is done (the line drawn for the panel, then the next pass's
    update), as Streamlit does at the first update after the user left."""

    def __init__(self, stop_after: CaseExplainer | None = None) -> None:
        self.stop_after, self.entered, self.since_done = stop_after, 0, 0

    def html(self, body: str) -> None:
        self.last = body
        if self.stop_after is not None and self.stop_after.done:
            self.since_done += 1
            if self.since_done == 2:
                raise Stopped()

    def container(self):
        self.entered += 1
        return nullcontext()


@pytest.fixture(scope="module")
def demo():
    checkpoint = load_checkpoint(DEMO, device="cpu")
    reader = CohortReader(SAMPLE)
    case_id = next(i for i in reader.case_ids if reader.availability().loc[i].all())
    return Predictor(checkpoint.model, checkpoint.tokenizer), reader[case_id]


def test_the_cache_keeps_the_most_recently_used_explanations():
    cache = ExplanationCache(max_entries=2)
    cache.put("a", "A")
    cache.put("b", "B")
    assert cache.get("a") == "A"  # now the most recent
    cache.put("c", "C")
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == ("A", None, "C", 2)


def test_a_run_stopped_between_passes_keeps_its_panels_caches_nothing_and_resumes(demo, caplog):
    predictor, case = demo
    key = ("test-stop", case.case_id)
    explainer = CaseExplainer(predictor, case, SETTINGS)
    explainer.first_view()  # as app.case_progress.case_job does before the page is drawn
    first = CaseJob(key, TITLES, explainer=explainer)
    first._status = Slot(stop_after=explainer)
    drawn = []
    panel_slot = Slot()
    first.defer(panel_slot, lambda e: drawn.append(sorted(e.panels)), "image")
    with caplog.at_level(logging.WARNING, logger="neurofusion.app"), pytest.raises(Stopped):
        first.finish()
    assert explainer.done == ["image"] and explainer.pending() == ["signal", "tabular", "text"]
    assert drawn == [["image"]] and panel_slot.entered == 1  # the image tab was filled when its map was ready
    assert explanation_cache().get(key) is None and not first.complete
    assert f"stopped explaining case {case.case_id} after 1 of 4 panels" in caplog.text
    assert explainer.cancel is None  # the stopped run's callback does not outlive it

    image = explainer.partial().panels["image"]
    resumed = CaseJob(key, TITLES, explainer=explainer)
    resumed._status = Slot()
    whole = resumed.finish()
    assert whole.panels["image"] is image  # not computed again
    assert list(whole.panels) == ["image", "text", "signal", "tabular"]
    assert explanation_cache().get(key) is whole and resumed.complete
    assert "data-state='complete'" in resumed._status.last and "data-done='4' data-total='4'" in resumed._status.last
    direct = explain_case(predictor, case, SETTINGS)
    for name, panel in direct.panels.items():
        if name == "tabular":
            np.testing.assert_allclose(whole.panels[name]["score"], panel["score"], atol=1e-6)
        elif name == "text":
            np.testing.assert_allclose(whole.panels[name].token_scores, panel.token_scores, atol=1e-6)
        elif name == "image":
            np.testing.assert_allclose(whole.panels[name].map, panel.map, atol=1e-6)
        else:
            np.testing.assert_allclose(whole.panels[name].attributions, panel.attributions, atol=1e-6)


def test_the_progress_line_names_the_panel_being_computed(demo):
    predictor, case = demo
    explainer = CaseExplainer(predictor, case, SETTINGS)
    explainer.first_view()
    job = CaseJob(("test-line", case.case_id), TITLES, explainer=explainer)
    job._status = Slot()
    job._tick()
    job._tick()
    assert f"data-case='{case.case_id}' data-state='computing' data-done='0' data-total='4'" in job._status.last
    assert "computing the Echo image map, pass 2" in job._status.last and "Clinical note queued" in job._status.last


def _progress(at: AppTest) -> str:
    bodies = [e.proto.body for e in at.get("html") if PROGRESS_ID in e.proto.body]
    assert len(bodies) == 1, bodies
    return bodies[0]


def test_the_case_explorer_completes_the_panels_and_shows_them_cached_on_return():
    from app import state

    explanation_cache.clear()  # a fresh server process: nothing explained, no cohort predicted
    state._predicted.clear()
    reader = CohortReader(SAMPLE)
    first, second = [i for i in reader.case_ids if reader.availability().loc[i].all()][:2]
    at = _app()
    at.query_params["case"] = first
    at.run()
    _no_errors(at)
    # the panels were computed before the cohort's predictions; then the page was redrawn from the cache with
    # the case list labelled by them
    assert "data-state='cached' data-done='4' data-total='4'" in _progress(at)
    assert all(" · predicted " in o or "unreadable" in o for o in at.selectbox(key="case.id").options)
    assert {b.label for b in at.get("download_button")} == {"Case report (HTML)", "Attributions (CSV)"}
    at.selectbox(key="case.id").set_value(second).run()
    _no_errors(at)
    assert f"data-case='{second}' data-state='complete' data-done='4' data-total='4'" in _progress(at)
    assert {b.label for b in at.get("download_button")} == {"Case report (HTML)", "Attributions (CSV)"}
    at.selectbox(key="case.id").set_value(first).run()  # back: the whole explanation from the cache
    _no_errors(at)
    assert "data-state='cached' data-done='4' data-total='4'" in _progress(at)
    assert at.get("plotly_chart")
