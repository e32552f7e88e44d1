"""End to end in a real browser: `streamlit run` serves the dashboard on loopback, Debian's chromium (driven
by Playwright) opens the case explorer, waits for the attention heatmap, the ECG and the highlighted note,
moves an ablation slider and sees the probability change, with no console error and no request leaving
the machine; two sessions at once keep their own case. Saves a screenshot (``DASHBOARD_SCREENSHOT``).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from neurofusion.data import CohortReader

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian chromium is not installed (make test installs it: apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("streamlit did not start:\n" + (process.stdout.read() if process.stdout else ""))
    yield url
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def _watch(context, outside: list[str], errors: list[str]):
    """Abort and record any request to a non-loopback host; record console errors of each page."""
    def route(route):
        host = urlparse(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()
    context.route("**/*", route)
    context.on("page", lambda page: page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None))


def _complete_cases(n: int) -> list[str]:
    """Complete cases with a disease label (their explanations have something to show)."""
    reader = CohortReader(ROOT / "sample_data" / "cardio")
    availability = reader.availability()
    labels = reader.table.set_index("case_id")["label"]
    return [i for i in reader.ids("test") if availability.loc[i].all() and labels[i] != "normal"][:n]


def _case_where_the_ecg_matters() -> tuple[str, str]:
    """The first complete disease case whose shown probability moves by at least a point when its ECG is
    withheld (a saturated 99.3 % -> 99.3 % would show the slider doing nothing), and that value as shown."""
    from explain.ablation import ablate_case
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.inference import Predictor

    checkpoint = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "cardio_demo", device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    reader = CohortReader(ROOT / "sample_data" / "cardio")
    for case_id in _complete_cases(40):
        case = reader[case_id]
        full = predictor.predict([case])[1][0]
        k = int(full.argmax())
        withheld = float(ablate_case(predictor, case, {"signal": 0.0})[k])
        if abs(withheld - full[k]) >= 0.01:
            return case_id, f"{withheld:.1%}"
    raise AssertionError("no complete case among the first 40 depends on its ECG by a point")


def _selected_case(page) -> str:
    return page.get_by_role("combobox", name=re.compile(r"^Case \(")).input_value()


def _ablation_text(page) -> str:
    return page.locator("#ablation-result").inner_text(timeout=120_000)


def test_case_explorer_in_a_real_browser(server, browser, tmp_path):
    outside, errors = [], []
    context = browser.new_context(viewport={"width": 1400, "height": 2600})  # tall: the screenshot shows the page
    _watch(context, outside, errors)
    page = context.new_page()
    case_id, expected = _case_where_the_ecg_matters()
    page.goto(f"{server}/?case={case_id}")  # the default page lives at the root URL
    page.get_by_text("How the modalities were combined").wait_for(timeout=180_000)
    page.locator(".js-plotly-plot").filter(has_text="attends to").first.wait_for(timeout=60_000)  # attention heatmap

    page.get_by_role("tab", name=re.compile("^ECG")).click()
    page.locator(".js-plotly-plot").filter(has_text="V1").first.wait_for(state="visible", timeout=60_000)
    page.get_by_role("tab", name=re.compile("^Clinical note")).click()
    highlighted = page.locator("span.attr")
    highlighted.first.wait_for(state="visible", timeout=60_000)
    assert highlighted.count() > 20

    before = _ablation_text(page)
    slider = page.get_by_role("slider", name=re.compile("ECG observed"))
    slider.focus()
    slider.press("Home")  # 0 %: the ECG is withheld
    page.wait_for_function(
        "before => { const e = document.querySelector('#ablation-result'); return e && e.innerText !== before; }",
        arg=before, timeout=120_000)
    assert _ablation_text(page) == expected  # the model's own output on the case without its ECG

    # the downloads are built when clicked: the report names this case, the CSV holds its note words
    with page.expect_download(timeout=120_000) as report:
        page.get_by_role("button", name="Case report (HTML)").click()
    text = Path(report.value.path()).read_text(encoding="utf-8")
    assert text.lstrip().lower().startswith("<!doctype html") and case_id in text
    with page.expect_download(timeout=120_000) as table:
        page.get_by_role("button", name="Attributions (CSV)").click()
    rows = Path(table.value.path()).read_text(encoding="utf-8").splitlines()
    assert rows[0] == "case_id,explained_class,contrast_class,part,method,item,value,start,end,observed"
    assert all(r.startswith(f"{case_id},") for r in rows[1:]) and any(",note_word," in r for r in rows)

    screenshot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))
    page.get_by_role("tab", name=re.compile("^Clinical note")).scroll_into_view_if_needed()
    page.wait_for_timeout(1000)  # let the charts finish their transitions
    page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 50_000
    assert not outside, outside
    assert not errors, errors
    context.close()


def test_two_sessions_keep_their_own_case(server, browser):
    first_case, second_case = _complete_cases(2)
    contexts = [browser.new_context(), browser.new_context()]
    outside, errors = [], []
    for context in contexts:
        _watch(context, outside, errors)
    pages = [c.new_page() for c in contexts]
    for page, case_id in zip(pages, (first_case, second_case)):
        page.goto(f"{server}/?case={case_id}")  # the default page lives at the root URL
    for page, case_id in zip(pages, (first_case, second_case)):
        page.get_by_text("How the modalities were combined").wait_for(timeout=180_000)
        assert case_id in _selected_case(page)
    before = [_ablation_text(p) for p in pages]
    slider = pages[0].get_by_role("slider", name=re.compile("Labs observed"))
    slider.focus()
    slider.press("Home")
    pages[0].wait_for_function(
        "before => document.querySelector('#ablation-result').innerText !== before", arg=before[0], timeout=120_000)
    pages[1].reload()
    pages[1].get_by_text("How the modalities were combined").wait_for(timeout=180_000)
    assert _ablation_text(pages[1]) == before[1]  # the other session's sliders are its own
    assert second_case in _selected_case(pages[1]) and first_case in _selected_case(pages[0])
    assert not outside and not errors, (outside, errors)
    for context in contexts:
        context.close()
