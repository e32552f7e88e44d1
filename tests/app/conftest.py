"""Fixtures shared by the real-browser tests (test_browser.py, test_browser_study.py)."""

from __future__ import annotations

import pytest

from tests.app.test_browser import ARGS, CHROMIUM


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (never a browser downloaded by a test tool)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()
