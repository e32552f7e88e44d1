"""An expert study in a real browser: `streamlit run` on a throwaway study database, two raters in two browser
sessions on the Rate cases page at once. Each sees a blinded case (no model output anywhere on the page), ranks
its modalities and both submit at the same moment; both rows are stored exactly as each rater ranked, and only
then does each page reveal the model's view and the case's Kendall tau-b. Uses Debian's chromium, as
test_browser.py does."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.app.test_browser import CHROMIUM, _watch, serve
from tests.test_sample_data import DEMO, SAMPLE

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian chromium is not installed (make test installs it: apt-get install chromium)")

STUDY = "browser-study"
RATERS = ("dr_ann", "dr_bob")
MODEL_WORDS = ("Model's prediction", "model's view", "Shapley", "attention", "probability", "Kendall")


@pytest.fixture(scope="module")
def study_db(tmp_path_factory) -> str:
    from neurofusion.studies import StudyStore, create_study

    url = f"sqlite:///{tmp_path_factory.mktemp('study') / 'studies.sqlite'}"
    store = StudyStore(url)
    create_study(store, STUDY, cohort_dir=SAMPLE, checkpoint_dir=DEMO, selection="stratified", n=4, seed=5,
                 raters=list(RATERS), protocol="blinded", reveal=True)
    store.close()
    return url


@pytest.fixture(scope="module")
def study_server(study_db):
    yield from serve({"NEUROFUSION_STUDY_DB": study_db})


def _choose(page, label: str, option: str) -> None:
    """Open a selectbox and pick an option; the page may still be redrawing (a rerun closes an open list), so
    the list is reopened until the option shows."""
    box = page.get_by_role("combobox", name=label, exact=True)
    for _ in range(10):
        box.scroll_into_view_if_needed()
        box.click()
        choice = page.get_by_role("option", name=option, exact=True)
        try:
            choice.wait_for(timeout=5_000)
        except Exception:  # noqa: BLE001 - playwright's TimeoutError: the list closed under a rerun; reopen
            page.keyboard.press("Escape")
            continue
        choice.click()
        return
    raise AssertionError(f"the option {option!r} of {label!r} never showed")


def _main_text(page) -> str:
    return page.locator('[data-testid="stMain"]').inner_text()


def _screenshot(page, name: str) -> None:
    """With DASHBOARD_SCREENS set (`make screenshot`): <name>_1440x900.png of the page as it is now."""
    folder = os.environ.get("DASHBOARD_SCREENS")
    if not folder:
        return
    size = page.viewport_size
    page.set_viewport_size({"width": 1440, "height": 900})
    page.wait_for_timeout(2000)  # charts are laid out again at the new width
    page.mouse.move(1438, 898)
    page.locator("h1").first.scroll_into_view_if_needed()  # the page from its top, as a rater opens it
    page.wait_for_timeout(500)
    page.screenshot(path=str(Path(folder) / f"{name}_1440x900.png"))
    page.set_viewport_size(size)


def test_two_raters_submit_at_once_blinded_then_revealed(study_server, study_db, browser):
    from neurofusion.studies import StudyStore

    store = StudyStore(study_db)
    contexts = [browser.new_context(viewport={"width": 1400, "height": 1800}) for _ in RATERS]
    outside, errors = [], []
    for context in contexts:
        _watch(context, outside, errors)
    pages = [c.new_page() for c in contexts]
    missing = []
    for page in pages:
        page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    for page in pages:
        page.goto(f"{study_server}/rate?study={STUDY}")
    wanted = {}
    for page, rater in zip(pages, RATERS):
        page.get_by_role("combobox", name="Who is rating").wait_for(timeout=180_000)
        _choose(page, "Who is rating", rater)
        page.get_by_text("Rank the modalities").wait_for(timeout=180_000)
        case_id = store.next_case(STUDY, rater)
        assert f"Case {case_id}" in _main_text(page)
        available = next(c.available for c in store.cases(STUDY) if c.case_id == case_id)
        titles = {"image": "Echo image", "text": "Clinical note", "signal": "ECG", "tabular": "Labs"}
        # the two raters rank in opposite orders, so a row carrying the other's ranks would show
        order = list(available) if rater == RATERS[0] else list(reversed(available))
        for rank, modality in enumerate(order, start=1):
            _choose(page, titles[modality], str(rank))
        wanted[rater] = (case_id, {m: r for r, m in enumerate(order, start=1)})
        text = _main_text(page)
        hidden = [w for w in MODEL_WORDS if w.lower() in text.lower()]
        assert not hidden, f"blinded page shows model output ({hidden}) before the submission"
    _screenshot(pages[0], "rate_cases")
    for page in pages:  # both submissions leave within a few milliseconds of each other
        page.get_by_role("button", name="Submit").click(no_wait_after=True)
    for page in pages:
        page.get_by_text("Stored your ranking").wait_for(timeout=180_000)
        page.get_by_text("The model's view of this case").wait_for(timeout=180_000)
        page.get_by_text("Kendall tau-b with your ranking").wait_for(timeout=180_000)  # after the explanation

    _screenshot(pages[0], "rate_cases_reveal")
    if os.environ.get("DASHBOARD_SCREENS"):
        pages[0].get_by_test_id("stSidebarNav").get_by_role("link", name="Expert studies").click()
        pages[0].get_by_role("heading", name="Progress").first.wait_for(timeout=120_000)
        pages[0].locator(".js-plotly-plot").first.wait_for(state="visible", timeout=120_000)
        _screenshot(pages[0], "expert_studies")
    for rater, (case_id, ranks) in wanted.items():
        rows = store.history(STUDY, rater=rater)
        assert [(r.case_id, r.revision, r.kind, r.ranks) for r in rows] == [(case_id, 1, "ranking", ranks)]
    # Opened at /rate (the link a researcher sends), Streamlit's client first asks for its health and host
    # config under the page's path, gets 404 and falls back to the root: that probe is the only 404 allowed.
    probes = [u for u in missing if re.search(r"/rate/_stcore/(health|host-config)$", u)]
    assert missing == probes, missing
    errors = [e for e in errors if not (probes and "status of 404" in e)]
    assert not outside and not errors, (outside, errors)
    for context in contexts:
        context.close()
