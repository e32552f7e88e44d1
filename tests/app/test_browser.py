"""End to end in a real browser: `streamlit run` serves the dashboard on loopback, Debian's chromium (driven
by Playwright) opens the case explorer, waits for the attention heatmap, the ECG and the highlighted note,
moves an ablation slider and sees the probability change, with no console error and no request leaving
the machine; two sessions at once keep their own case. What only a browser shows: the ECG's lead labels are
drawn as horizontal text, the saliency overlay has visible contrast (its colour range is the clipped 99th
percentile, and the drawn pixels are coloured), and at 1280x720 the prediction is above the fold. The
sidebar's demo switch opens the cancer task: a survival curve, the H&E tile painted in colour, and an
observe slider moving the 5-year survival to the model's own value. The ICU demo: a stay's risk trajectory,
and the "As of hour" slider moved with the arrow keys showing the model's risk at the new hour.
``DASHBOARD_SCREENSHOT=path.png`` saves the README's screenshot and, beside it in ``screens/``, every page at
1440x900 and 1280x720 (``make screenshot``).
"""

from __future__ import annotations

import io
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

import numpy as np
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


def serve(env: dict[str, str] | None = None):
    """`streamlit run app/main.py` on a free loopback port (with ``env`` added to the environment): yields its
    URL once it answers, stops it after."""
    for url, _ in serve_process(env):
        yield url


def serve_process(env: dict[str, str] | None = None):
    """serve(), yielding (URL, the server's process: its stdout carries stdout and stderr)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.headless", "true",
         "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    yield url, process
    process.terminate()
    process.wait(timeout=20)


@pytest.fixture(scope="module")
def server():
    yield from serve()


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


_ROTATION = re.compile(r"rotate\(\s*(-?[\d.]+)")

# The ECG figure's annotation texts and every transform from each up to the plot.
_ECG_LABELS_JS = """() => {
  const gd = Array.from(document.querySelectorAll('.js-plotly-plot'))
    .find(g => ((g.querySelector('.gtitle') || {}).textContent || '').startsWith('ECG'));
  if (!gd) return null;
  return Array.from(gd.querySelectorAll('text.annotation-text, text.ytitle')).map(t => {
    const transforms = [];
    for (let e = t; e && e !== gd; e = e.parentElement) {
      const tr = e.getAttribute('transform');
      if (tr) transforms.push(tr);
    }
    const box = t.getBoundingClientRect();
    return {text: t.textContent, cls: t.getAttribute('class'), transforms, width: box.width, height: box.height};
  });
}"""

# The drawn saliency trace (plotly's full data) and the plot area's box on the page.
_SALIENCY_JS = """() => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const trace = (gd._fullData || []).find(d => d.name === 'saliency');
    if (!trace) continue;
    const area = gd.querySelector('.nsewdrag').getBoundingClientRect();
    return {zmin: trace.zmin, zmax: trace.zmax, z: Array.from(trace.z, row => Array.from(row)),
            box: {x: area.x, y: area.y, width: area.width, height: area.height}};
  }
  return null;
}"""


def _check_ecg_labels_are_horizontal(page) -> None:
    """Every lead label of the 3x4 printout is rendered, with no rotation on it or above it, one line high."""
    from app.figures import STANDARD_LEADS

    labels = page.evaluate(_ECG_LABELS_JS)
    assert labels, "no ECG figure on the page"
    leads = {label["text"].removesuffix(" (rhythm strip)"): label for label in labels
             if label["text"].removesuffix(" (rhythm strip)") in STANDARD_LEADS}
    assert set(leads) == set(STANDARD_LEADS), [label["text"] for label in labels]
    assert any(label["text"] == "II (rhythm strip)" for label in labels)
    assert not any(label["cls"] == "ytitle" and label["text"] for label in labels)  # plotly stands axis titles on end
    for label in labels:
        angles = [float(a) for t in label["transforms"] for a in _ROTATION.findall(t)]
        assert all(a == 0 for a in angles), (label["text"], label["transforms"])
        assert label["height"] <= 24, label  # one line of text high: not stood on its end
    rhythm = next(label for label in labels if label["text"] == "II (rhythm strip)")
    assert rhythm["width"] > 3 * rhythm["height"], rhythm  # laid out along the line, not up the page


def _check_saliency_contrast(page) -> None:
    """The overlay's colour range is the 99th percentile of |map| (not set by a few outlier pixels), and the
    pixels the browser drew inside the image are visibly coloured (red/blue), not all grey."""
    from PIL import Image

    drawn = page.evaluate(_SALIENCY_JS)
    assert drawn, "no saliency overlay on the page"
    z = np.asarray(drawn["z"], dtype=float)
    limit = float(np.percentile(np.abs(z[np.isfinite(z)]), 99))
    assert drawn["zmax"] == pytest.approx(limit, rel=1e-3) and drawn["zmin"] in (0, pytest.approx(-limit, rel=1e-3))
    assert (np.abs(z) >= 0.25 * limit).mean() > 0.02  # a visible share of the map is at least a quarter of the range
    box = drawn["box"]
    shot = Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB")
    pixels = np.asarray(shot, dtype=int)
    # the echo is grey (R = B); the overlay's end colours at the default opacity differ by about 60
    coloured = np.abs(pixels[..., 0] - pixels[..., 2]) > 40
    assert coloured.mean() > 0.005, coloured.mean()  # IG is sparse: about 1 % of the plot on the demo cases


def test_case_explorer_in_a_real_browser(server, browser, tmp_path):
    outside, errors = [], []
    context = browser.new_context(viewport={"width": 1400, "height": 2600})  # tall: the screenshot shows the page
    _watch(context, outside, errors)
    page = context.new_page()
    case_id, expected = _case_where_the_ecg_matters()
    page.goto(f"{server}/?case={case_id}")  # the default page lives at the root URL
    page.get_by_text("How the modalities were combined").wait_for(timeout=180_000)
    page.locator(".js-plotly-plot").filter(has_text="to (key)").first.wait_for(timeout=60_000)  # attention heatmap
    page.locator(".js-plotly-plot").filter(has_text="raises").first.wait_for(state="visible", timeout=60_000)
    _check_saliency_contrast(page)

    page.get_by_role("tab", name=re.compile("^ECG")).click()
    page.locator(".js-plotly-plot").filter(has_text="V1").first.wait_for(state="visible", timeout=60_000)
    _check_ecg_labels_are_horizontal(page)
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


def test_a_slider_moved_while_the_page_computes_keeps_the_case_and_finishes_the_page(browser):
    """In a fresh server the page first explains the case, then predicts the cohort to label the case list. The
    ECG slider pressed as soon as it shows interrupts that run: the whole page is drawn again with the slider's
    value (not the slider's section alone, leaving the rest half drawn), on the same case, with the list
    labelled."""
    case_id, expected = _case_where_the_ecg_matters()
    for url in serve():
        context = browser.new_context(viewport={"width": 1400, "height": 2600})
        outside, errors = [], []
        _watch(context, outside, errors)
        page = context.new_page()
        page.goto(f"{url}/?case={case_id}")
        slider = page.get_by_role("slider", name=re.compile("ECG observed"))
        slider.focus(timeout=180_000)
        slider.press("Home")
        page.wait_for_function("() => [...document.querySelectorAll('input[role=\"combobox\"]')]"
                               ".some(i => i.value.includes(' · predicted '))", polling=100, timeout=180_000)
        page.wait_for_function(
            "shown => { const e = document.querySelector('#ablation-result'); return e && e.innerText === shown; }",
            arg=expected, timeout=120_000)
        assert _selected_case(page).startswith(f"{case_id} · ")
        progress = page.locator("#explanation-progress")
        assert progress.get_attribute("data-state") in ("complete", "cached")
        assert progress.get_attribute("data-done") == progress.get_attribute("data-total")
        assert not outside and not errors, (outside, errors)
        context.close()


def _largest_withheld_shift(case_id: str) -> tuple[str, str]:
    """The cancer modality whose withholding moves this case's shown 5-year survival most, and that value as
    the page shows it (the model's own output on the case without it)."""
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.inference import Predictor

    checkpoint = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "cancer_demo", device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    case = CohortReader(ROOT / "sample_data" / "cancer")[case_id]
    full = float(predictor.predict_survival([case]).survival[0])
    shown = {}
    for spec in checkpoint.config.modality_specs:
        if case.value(spec.name) is not None and spec.kind != "image":  # an image is a toggle, not a slider
            shown[spec.title] = float(predictor.predict_survival([case], drop=[spec.name]).survival[0])
    title = max(shown, key=lambda t: abs(shown[t] - full))
    assert abs(shown[title] - full) >= 0.002, f"no modality of {case_id} moves its survival by a shown 0.1 %"
    return title, f"{shown[title]:.1%}"


def _check_tile_in_colour(page) -> None:
    """The histopathology tab's figure, as the browser paints it, is an H&E-coloured tile: many pixels far
    from grey (a grey tile under a saliency overlay would be mostly neutral)."""
    from PIL import Image

    figure = page.locator(".js-plotly-plot").filter(has_text="Integrated Gradients for").first  # the default method
    figure.wait_for(state="visible", timeout=60_000)
    pixels = np.asarray(Image.open(io.BytesIO(figure.screenshot())).convert("RGB"), dtype=int)
    painted = pixels.min(axis=2) < 235  # not the white page: the tile, the colour bar, the text
    share = float((pixels.max(axis=2) - pixels.min(axis=2) > 40)[painted].mean())
    assert share > 0.6, f"only {share:.0%} of the painted pixels are coloured (a grey tile?)"


def test_a_cancer_case_in_a_real_browser(server, browser):
    """The sidebar's demo switch opens the cancer task: a case's survival curve beside the cohort's
    Kaplan-Meier curve, the histopathology tile in colour, the mutated genes, and an observe slider moving
    the 5-year survival to the model's own value without that modality."""
    outside, errors = [], []
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    _watch(context, outside, errors)
    page = context.new_page()
    page.goto(server)
    page.get_by_text("How the modalities were combined").wait_for(timeout=180_000)
    page.get_by_test_id("stSidebar").get_by_role("combobox", name=re.compile("^Demo")).click()
    page.get_by_role("option", name=re.compile("^Oncology")).click()
    page.locator(".js-plotly-plot").filter(has_text="Predicted survival of this case").first.wait_for(
        state="visible", timeout=180_000)
    # the case list is filled in at the end of the page run: wait until it lists the cancer cohort's cases
    page.wait_for_function("""() => [...document.querySelectorAll('input[role="combobox"]')]
        .some(e => (e.getAttribute('aria-label') || '').startsWith('Case (') && e.value.startsWith('CA-'))""",
                           timeout=120_000)
    case_id = _selected_case(page).split(" ")[0]
    page.locator(".js-plotly-plot").filter(has_text="cohort (Kaplan-Meier)").first.wait_for(timeout=60_000)
    _check_tile_in_colour(page)
    page.get_by_role("tab", name=re.compile("^Genomics")).click()
    page.get_by_text(re.compile(r"mutated")).first.wait_for(timeout=60_000)

    title, expected = _largest_withheld_shift(case_id)
    before = _ablation_text(page)
    slider = page.get_by_role("slider", name=re.compile(f"{title} observed"))
    slider.focus()
    slider.press("Home")  # 0 %: withheld
    page.wait_for_function(
        "before => { const e = document.querySelector('#ablation-result'); return e && e.innerText !== before; }",
        arg=before, timeout=120_000)
    assert _ablation_text(page) == expected
    assert not outside, outside
    assert not errors, errors
    context.close()


# the value of the ICU page's risk card ("Risk of death within 48 h, as of <hour> h")
_ICU_RISK_JS = """() => {
  const card = [...document.querySelectorAll('[data-testid="stMetric"]')]
    .find(e => e.innerText.includes('Risk of death within 48 h'));
  return card ? card.querySelector('[data-testid="stMetricValue"]').innerText : null;
}"""


def _icu_risks(stay_id: str) -> dict[int, str]:
    """{hour: the risk as the ICU case page shows it} at every whole hour of the stay: the model's own value
    on what was recorded by that hour."""
    from explain.timeline import risk_trajectory
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.data.timed import TimedCohortReader
    from neurofusion.inference import Predictor

    checkpoint = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "icu_demo", device="cpu")
    trajectory = risk_trajectory(Predictor(checkpoint.model, checkpoint.tokenizer),
                                 TimedCohortReader(ROOT / "sample_data" / "icu"), stay_id)
    return {int(h): f"{r:.1%}" for h, r in zip(trajectory.hours, trajectory.risk)}


def test_an_icu_stay_in_a_real_browser(server, browser):
    """The sidebar's demo switch opens the ICU task: a stay's risk trajectory; moving the "As of hour"
    slider with the keyboard shows the model's risk at the new hour. ``DASHBOARD_SCREENS=folder`` also saves
    icu_case_1440x900.png there."""
    from playwright.sync_api import expect

    outside, errors = [], []
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    _watch(context, outside, errors)
    page = context.new_page()
    page.goto(server)
    page.get_by_text("How the modalities were combined").wait_for(timeout=180_000)
    page.get_by_test_id("stSidebar").get_by_role("combobox", name=re.compile("^Demo")).click()
    page.get_by_role("option", name=re.compile("^ICU")).click()
    page.locator(".js-plotly-plot").filter(has_text="Risk of death within 48 h over stay").first.wait_for(
        state="visible", timeout=180_000)
    # the stay list is filled in after the stay is drawn: wait until it lists the ICU cohort's stays
    page.wait_for_function("""() => [...document.querySelectorAll('input[role="combobox"]')]
        .some(e => (e.getAttribute('aria-label') || '').startsWith('Stay (') && e.value.startsWith('ICU-'))""",
                           timeout=180_000)
    stay_id = page.get_by_role("combobox", name=re.compile(r"^Stay \(")).input_value().split(" ")[0]
    slider = page.get_by_role("slider", name=re.compile("As of hour"))
    hour = int(slider.input_value())  # an <input type="range">
    risks = _icu_risks(stay_id)
    shown = page.evaluate(_ICU_RISK_JS)
    assert shown == risks[hour]
    # the next hours until the shown risk differs (adjacent hours can round to the same 0.1 %)
    steps = next(k for k in range(1, len(risks)) if risks.get(hour + k, shown) != shown)
    slider.focus()
    for _ in range(steps):
        slider.press("ArrowRight")
    expect(slider).to_have_value(str(hour + steps), timeout=60_000)
    page.wait_for_function(f"want => ({_ICU_RISK_JS})() === want", arg=risks[hour + steps], timeout=120_000)
    if os.environ.get("DASHBOARD_SCREENS"):
        folder = Path(os.environ["DASHBOARD_SCREENS"])
        folder.mkdir(parents=True, exist_ok=True)
        # the stay's figure 2C is streamed last: its caption replaces the progress line once every hour is in
        page.get_by_text(re.compile("^At the cohort's prediction hours")).wait_for(timeout=300_000)
        _settle(page, "^Case explorer")
        page.mouse.move(1438, 898)
        page.screenshot(path=str(folder / "icu_case_1440x900.png"))
        assert (folder / "icu_case_1440x900.png").stat().st_size > 20_000
    assert not outside, outside
    assert not errors, errors
    context.close()


def _open(page, url: str, heading: str) -> None:
    """Go to a page and wait until it is drawn (see _settle)."""
    page.goto(url)
    _settle(page, heading)


def _settle(page, heading: str) -> None:
    """Wait until the page's heading and a chart are drawn and the script has stopped running."""
    page.evaluate("window.__idleSince = 0")
    page.get_by_role("heading", name=re.compile(heading)).first.wait_for(timeout=180_000)
    page.locator(".js-plotly-plot").first.wait_for(state="visible", timeout=180_000)
    page.wait_for_function(
        """() => {
          const busy = document.querySelector('[data-testid="stStatusWidget"]');
          const now = Date.now();
          if (busy) { window.__idleSince = now; return false; }
          window.__idleSince = window.__idleSince || now;
          return now - window.__idleSince > 1500;
        }""", polling=250, timeout=180_000)
    page.wait_for_timeout(1000)  # let the charts finish their transitions


def test_prediction_above_the_fold_at_1280x720_in_a_real_browser(server, browser):
    """A presenter's laptop: the predicted class, its probability chart, the cross-modal attention and the
    modality importance are all on the first screen, without scrolling."""
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    outside, errors = [], []
    _watch(context, outside, errors)
    page = context.new_page()
    _open(page, f"{server}/?case={_complete_cases(1)[0]}", "^Case explorer")
    plots = page.locator(".js-plotly-plot")
    for element in (page.locator('[data-testid="stMetric"]').filter(has_text="Predicted").first,
                    page.locator(".probabilities").first, plots.filter(has_text="to (key)").first,
                    plots.filter(has_text="Modality importance").first):
        box = element.bounding_box()
        assert box is not None and box["height"] > 0
        assert box["y"] >= 0 and box["y"] + box["height"] <= 720, box
    assert not outside and not errors, (outside, errors)
    context.close()


# page file name -> (its link in the sidebar, its heading); the case explorer is the root URL
PAGES = {"case_explorer": ("Case explorer", "^Case explorer"), "cohort_attention": ("Cohort attention", "^Cohort attention"),
         "rater_agreement": ("Rater agreement", "agreement|Agreement"),
         "missing_modalities": ("Missing modalities", "^Missing modalities"), "model_card": ("Model card", "^Model card")}
SIZES = ((1440, 900), (1280, 720))


@pytest.mark.skipif(not os.environ.get("DASHBOARD_SCREENSHOT"),
                    reason="screenshots of every page only on `make screenshot` (DASHBOARD_SCREENSHOT set)")
def test_every_page_screenshot_in_a_real_browser(server, browser):
    """app/assets/screens/<page>_<w>x<h>.png: what each page shows on the first screen at both sizes,
    case_explorer_ecg.png: the case's ECG figure (3x4 + rhythm strip) as the page draws it, and
    cancer_<page>_<w>x<h>.png / icu_<page>_<w>x<h>.png: the same pages on the cancer and ICU demos."""
    folder = Path(os.environ.get("DASHBOARD_SCREENS", Path(os.environ["DASHBOARD_SCREENSHOT"]).parent / "screens"))
    folder.mkdir(parents=True, exist_ok=True)
    case = _complete_cases(1)[0]
    outside, errors = [], []
    for width, height in SIZES:
        context = browser.new_context(viewport={"width": width, "height": height})
        _watch(context, outside, errors)
        page = context.new_page()
        _open(page, f"{server}/?case={case}", PAGES["case_explorer"][1])
        for name, (link, heading) in PAGES.items():
            if name != "case_explorer":  # through the sidebar, as a user goes (a deep link reloads the app)
                page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
                _settle(page, heading)
            page.mouse.move(width - 2, height - 2)  # no hover effect (the sidebar's collapse arrow) in the picture
            target = folder / f"{name}_{width}x{height}.png"
            page.screenshot(path=str(target))
            assert target.stat().st_size > 20_000, target
            if name == "case_explorer" and (width, height) == SIZES[0]:  # its ECG as the page draws it
                page.set_viewport_size({"width": width, "height": 1400})  # the whole figure fits: the app scrolls
                page.get_by_role("tab", name=re.compile("^ECG")).click()  # inside itself, not the document
                ecg = page.locator(".js-plotly-plot").filter(has_text="rhythm strip").first
                ecg.wait_for(state="visible", timeout=120_000)
                ecg.scroll_into_view_if_needed()
                page.wait_for_timeout(3000)  # the tab's chart is laid out again once shown
                ecg.screenshot(path=str(folder / "case_explorer_ecg.png"))
                assert (folder / "case_explorer_ecg.png").stat().st_size > 20_000
                page.set_viewport_size({"width": width, "height": height})
        _demo_screens(page, folder, width, height, "Oncology", "cancer", "Predicted survival of this case")
        _demo_screens(page, folder, width, height, "ICU", "icu", "Risk of death within 48 h over stay")
        context.close()
    assert not outside and not errors, (outside, errors)


def _demo_screens(page, folder: Path, width: int, height: int, demo: str, prefix: str, first_view: str) -> None:
    """<prefix>_<page>_<w>x<h>.png: every page on another bundled demo, opened through the sidebar's demo switch
    (``demo``: the start of its name there; ``first_view``: text of the case page's first chart)."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=PAGES["case_explorer"][0]).click()
    _settle(page, PAGES["case_explorer"][1])
    page.get_by_test_id("stSidebar").get_by_role("combobox", name=re.compile("^Demo")).click()
    page.get_by_role("option", name=re.compile(f"^{demo}")).click()
    page.locator(".js-plotly-plot").filter(has_text=first_view).first.wait_for(state="visible", timeout=180_000)
    for name, (link, heading) in PAGES.items():
        if name != "case_explorer":
            page.get_by_test_id("stSidebarNav").get_by_role("link", name=link).click()
        _settle(page, heading)
        page.mouse.move(width - 2, height - 2)
        target = folder / f"{prefix}_{name}_{width}x{height}.png"
        page.screenshot(path=str(target))
        assert target.stat().st_size > 20_000, target
