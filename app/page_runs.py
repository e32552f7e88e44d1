"""Whether the page behind a fragment was drawn to its end.

A widget inside an ``st.fragment`` reruns only that fragment. When such a widget is moved while the page's own
run is still computing (a case's panels, the cohort's predictions), Streamlit interrupts the page's run and then
runs the fragment alone: the rest of the page would stay half drawn, the panels still saying "computing" and
the case list never labelled. :func:`run_page` records whether the page's last run reached its end, and
:func:`redraw_interrupted_page` (first thing in every fragment) turns such a fragment rerun into a whole-page
rerun, which draws the page with the moved widget's new value.
"""

from __future__ import annotations

import streamlit as st
from streamlit.navigation.page import StreamlitPage

RUNNING = "app.page_running"
DRAWN = "app.page_drawn"


def run_page(page: StreamlitPage) -> None:
    """Run the selected page's script, recording in the session whether it ran to its end. A page that stops
    early (``st.stop``) counts as not drawn: its fragments then rerun the page, which costs a page run only."""
    state = st.session_state
    state[RUNNING], state[DRAWN] = True, False
    try:
        page.run()
        state[DRAWN] = True
    finally:  # also when the run is interrupted: Streamlit raises inside the script to stop it
        state[RUNNING] = False


def redraw_interrupted_page() -> None:
    """Call first in a fragment: when the page's last run was interrupted before its end (and this is a fragment
    rerun, not the fragment drawn as part of the page's run), rerun the whole page instead."""
    state = st.session_state
    if not state.get(RUNNING, False) and state.get(DRAWN) is False:
        st.rerun(scope="app")
