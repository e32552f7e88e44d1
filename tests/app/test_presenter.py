"""Presenter mode (issue 10): developer settings fold into an "Advanced" sidebar section and still drive the
app under their old session keys; the "not for clinical use" line is on every page; the theme is the
viewer's (no forced light base)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.app.test_app import MAIN, PAGES

SETTINGS = ("settings.checkpoint", "settings.cohort", "settings.device", "settings.image_method",
            "settings.n_steps", "settings.context")
CONFIG = Path(MAIN).resolve().parents[1] / ".streamlit" / "config.toml"


def _app() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.steps_mode"] = "fixed"
    return at


def _disclaimer(at: AppTest) -> str:
    return at.main.caption[0].value


def test_settings_live_in_the_advanced_expander_and_still_work(tmp_path):
    at = _app().run()
    assert not at.exception
    advanced = at.sidebar.expander
    assert len(advanced) == 1 and advanced[0].label.startswith("Advanced")
    inside = {w.key for kind in ("text_input", "radio", "selectbox", "slider") for w in getattr(advanced[0], kind)}
    assert set(SETTINGS) <= inside, inside

    # the widgets in the expander drive the explanation settings
    at.slider(key="settings.n_steps").set_value(12).run()
    at.radio(key="settings.context").set_value("alone").run()
    at.selectbox(key="settings.image_method").set_value("grad_cam").run()
    settings = at.session_state["app.context"].settings
    assert (settings.n_steps, settings.context, settings.image_method) == (12, "alone", "grad_cam")
    # and the folder fields still load (or refuse) a cohort
    at.text_input(key="settings.cohort").input(str(tmp_path / "nowhere")).run()
    assert not at.exception and "Could not load the model or cohort" in at.error[0].value
    assert "Advanced" in at.info[0].value
    assert "not for clinical use" in _disclaimer(at)


@pytest.mark.parametrize("page", [None, *PAGES])
def test_the_disclaimer_opens_every_page(page):
    at = _app().run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception
    assert _disclaimer(at) == ":material/science: Research tool on synthetic data: **not for clinical use.**"


def test_the_theme_is_the_viewers_choice():
    config = tomllib.loads(CONFIG.read_text())
    assert "base" not in config.get("theme", {})


def test_reruns_do_not_wait_for_a_full_garbage_collection():
    """With torch and transformers loaded, Streamlit's post-run gc.collect() held every slider step ~0.33 s
    (benchmarks/dashboard_latency.py measures the step in a browser); the project's config switches it off."""
    config = tomllib.loads(CONFIG.read_text())
    assert config["runner"]["postScriptGC"] is False
