"""app.page_runs: a fragment rerun after its page's run was interrupted reruns the whole page; after a page run
that reached its end, or while the page's own run draws the fragment, it does not."""

from __future__ import annotations

import pytest
import streamlit as st

from app import page_runs


class Interrupted(Exception):
    """Stands for the exception Streamlit raises inside a script to stop its run."""


class Page:
    def __init__(self, body=lambda: None):
        self.body = body

    def run(self):
        self.body()


@pytest.fixture
def reruns(monkeypatch) -> list[str]:
    """A session state of its own, and the scopes st.rerun was called with."""
    calls = []
    monkeypatch.setattr(st, "session_state", {})
    monkeypatch.setattr(st, "rerun", lambda scope="app": calls.append(scope))
    return calls


def test_a_fragment_after_an_interrupted_page_run_reruns_the_page(reruns):
    def interrupted():
        page_runs.redraw_interrupted_page()  # the fragment, drawn as part of the page's run
        raise Interrupted

    with pytest.raises(Interrupted):
        page_runs.run_page(Page(interrupted))
    assert reruns == []  # not while the page's own run draws the fragment
    page_runs.redraw_interrupted_page()  # the fragment rerun that interrupted the page
    assert reruns == ["app"]


def test_a_fragment_after_a_complete_page_run_reruns_alone(reruns):
    page_runs.run_page(Page(page_runs.redraw_interrupted_page))
    page_runs.redraw_interrupted_page()
    page_runs.redraw_interrupted_page()
    assert reruns == []
    assert st.session_state == {page_runs.RUNNING: False, page_runs.DRAWN: True}


def test_the_next_page_run_starts_afresh(reruns):
    with pytest.raises(Interrupted):
        page_runs.run_page(Page(lambda: (_ for _ in ()).throw(Interrupted())))
    page_runs.run_page(Page())
    page_runs.redraw_interrupted_page()
    assert reruns == []
