"""Dashboard responsiveness on CPU: server time for an ablation-slider change, for a case page served from
the cache, and, in a real browser (Debian chromium through playwright): wall time from `streamlit run` to the
sidebar and to the first rendered case page, an ablation-slider step and a switch to an already explained
case until the page has settled, and a missing-rate slider step.

    python benchmarks/dashboard_latency.py      # writes benchmarks/results/dashboard_latency.{json,md}
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from explain.ablation import partial_case  # noqa: E402
from neurofusion.checkpoint import load_checkpoint  # noqa: E402
from neurofusion.data import CohortReader  # noqa: E402
from neurofusion.inference import Predictor  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MAIN = str(ROOT / "app" / "main.py")


def slider_prediction_ms(repeats: int = 20) -> float:
    """What a slider change costs the server beyond re-running the cached page: re-prepare + predict."""
    ckpt = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "cardio_demo", device="cpu")
    predictor = Predictor(ckpt.model, ckpt.tokenizer)
    cohort = CohortReader(ROOT / "sample_data" / "cardio")
    case = next(c for c in cohort if all(c.available.values()))
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        predictor.predict([partial_case(case, {"signal": (k % 10) / 10, "text": 0.5})])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def app_rerun_times() -> dict[str, float]:
    at = AppTest.from_file(MAIN, default_timeout=600)
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    cached = []
    for _ in range(3):
        start = time.perf_counter()
        at.run()
        cached.append(time.perf_counter() - start)
    slider = []
    for value in (0, 50, 100, 30):
        start = time.perf_counter()
        at.slider(key="case.ablate_signal").set_value(value).run()
        slider.append(time.perf_counter() - start)
    assert not at.exception
    return {"first_page_run_s": first, "cached_page_run_s": statistics.median(cached),
            "slider_page_rerun_s": statistics.median(slider)}


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run"]


@contextmanager
def _fresh_server(path: str = "/", viewport: dict | None = None):
    """A new `streamlit run` on a free loopback port and a chromium page opened at ``path`` once it answers
    -> (page, start) where ``start`` is when the server was launched (perf_counter); both are stopped after."""
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", MAIN, "--server.headless", "true",
                               "--browser.gatherUsageStats", "false", "--server.port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = browser.new_page(**({"viewport": viewport} if viewport else {}))
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}{path}", timeout=2000)
                    break
                except Exception:  # server not listening yet
                    time.sleep(0.2)
            yield page, start
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


def first_render_s() -> float | None:
    """From launching `streamlit run` to the case page's attention heatmap drawn in chromium."""
    if shutil.which("chromium") is None:
        return None
    with _fresh_server() as (page, start):
        page.get_by_text("How the modalities were combined").wait_for(timeout=600_000)
        page.locator(".js-plotly-plot").filter(has_text="to (key)").first.wait_for(timeout=60_000)
        return time.perf_counter() - start


SETTLED = "() => { const a = document.querySelector('.stApp'); return a && a.dataset.testScriptState === 'notRunning'; }"


def _settle(page, timeout_ms: int = 600_000) -> None:
    page.wait_for_timeout(50)  # the rerun request leaves the browser first
    page.wait_for_function(SETTLED, timeout=timeout_ms)


def _changed(page, selector: str, before: str) -> None:
    page.wait_for_function(
        "([s, b]) => { const e = document.querySelector(s); return e && e.innerText !== b; }",
        arg=[selector, before], timeout=600_000)


def _ecg_cases() -> list[str]:
    """Two complete test cases whose shown probability moves by at least a point without the ECG (so a
    slider step visibly changes the result)."""
    ckpt = load_checkpoint(ROOT / "sample_data" / "checkpoints" / "cardio_demo", device="cpu")
    predictor = Predictor(ckpt.model, ckpt.tokenizer)
    cohort = CohortReader(ROOT / "sample_data" / "cardio")
    availability = cohort.availability()
    found = []
    for case_id in [i for i in cohort.ids("test") if availability.loc[i].all()]:
        case = cohort[case_id]
        full = predictor.predict([case])[1][0]
        k = int(full.argmax())
        if abs(float(predictor.predict([partial_case(case, {"signal": 0.0})])[1][0][k]) - full[k]) >= 0.01:
            found.append(case_id)
        if len(found) == 2:
            return found
    raise RuntimeError("fewer than two complete test cases depend on their ECG")


def browser_interactions(repeats: int = 4) -> dict[str, object] | None:
    """One fresh server; seen in chromium: an ECG ablation-slider step until the result changed and the app
    stopped running, a switch between two already explained cases, and a missing-rate slider step."""
    if shutil.which("chromium") is None:
        return None
    import re

    first, second = _ecg_cases()
    out: dict[str, object] = {}
    with _fresh_server(f"/?case={first}", viewport={"width": 1400, "height": 1000}) as (page, _):
        page.get_by_text("How the modalities were combined").wait_for(timeout=600_000)
        _settle(page)
        slider_runs = []
        for k in range(repeats):
            before = page.locator("#ablation-result").inner_text()
            slider = page.get_by_role("slider", name=re.compile("ECG observed"))
            slider.focus()
            start = time.perf_counter()
            slider.press("Home" if k % 2 == 0 else "End")
            _changed(page, "#ablation-result", before)
            _settle(page)
            slider_runs.append(time.perf_counter() - start)
        out["browser_slider_s"] = statistics.median(slider_runs)
        out["browser_slider_runs_s"] = slider_runs

        def choose(case_id: str) -> float:
            box = page.get_by_role("combobox", name=re.compile(r"^Case \("))
            start = time.perf_counter()
            box.click()
            box.fill(case_id)
            page.keyboard.press("Enter")
            page.wait_for_function(f"() => location.search.includes('{case_id}')", timeout=600_000)
            _settle(page)
            page.get_by_text("How the modalities were combined").wait_for(timeout=600_000)
            return time.perf_counter() - start

        choose(second)  # explained once: later switches are served from the cache
        switch_runs = [choose(first if k % 2 == 0 else second) for k in range(repeats)]
        out["browser_case_switch_s"] = statistics.median(switch_runs)
        out["browser_case_switch_runs_s"] = switch_runs

        page.get_by_role("link", name="Missing modalities").click()
        start = time.perf_counter()
        page.get_by_text("Section 7.3").first.wait_for(timeout=600_000)
        _settle(page)
        out["browser_missing_first_s"] = time.perf_counter() - start
        rate_runs = []
        for k in range(repeats):
            caption = page.get_by_text("Share of cases in which").first.inner_text()
            slider = page.get_by_role("slider", name=re.compile("ECG missing"))
            slider.focus()
            start = time.perf_counter()
            slider.press("ArrowRight")
            page.wait_for_function(
                "b => [...document.querySelectorAll('p')].some(p => p.innerText.startsWith('Share of cases') "
                "&& p.innerText !== b)", arg=caption, timeout=600_000)
            _settle(page)
            rate_runs.append(time.perf_counter() - start)
        out["browser_missing_rate_step_s"] = statistics.median(rate_runs)
        out["browser_missing_rate_step_runs_s"] = rate_runs

        page.get_by_role("link", name="Cohort attention").click()
        start = time.perf_counter()
        page.get_by_text("Modality importance").first.wait_for(timeout=600_000)
        _settle(page)
        out["browser_cohort_first_s"] = time.perf_counter() - start
    return out


def sidebar_s() -> tuple[float, float] | None:
    """From launching `streamlit run` to the sidebar's page list, and to its Advanced settings, drawn in
    chromium."""
    if shutil.which("chromium") is None:
        return None
    with _fresh_server() as (page, start):
        page.get_by_role("link", name="Missing modalities").wait_for(timeout=600_000)
        pages = time.perf_counter() - start
        page.get_by_text("Advanced: model, cohort, explanations").wait_for(timeout=600_000)
        return pages, time.perf_counter() - start


def _runs(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def main() -> None:
    first = [first_render_s() for _ in range(3)]  # each a fresh server; the machine is noisy
    shells = [sidebar_s() for _ in range(3)]
    seen = browser_interactions() or {}
    result = {"slider_prediction_ms": slider_prediction_ms(), **app_rerun_times(),
              "first_render_s": None if first[0] is None else statistics.median(first),
              "first_render_runs_s": first,
              "page_list_s": None if shells[0] is None else statistics.median(s[0] for s in shells),
              "advanced_settings_s": None if shells[0] is None else statistics.median(s[1] for s in shells),
              "shell_runs_s": shells, **seen,
              "load_average": [round(x, 2) for x in os.getloadavg()]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Dashboard latency (CPU, demo checkpoint, bundled cohort)", "",
             "Produced by `python benchmarks/dashboard_latency.py` on 2 shared CPU cores (load average at the end: "
             + ", ".join(str(x) for x in result["load_average"]) + "); medians of the runs in brackets. \"Seen\" "
             "times are in chromium, from the input until the result changed and the app stopped running.", "",
             "| measure | value | target |", "| --- | --- | --- |",
             f"| ablation slider: re-prepare the case and predict | {result['slider_prediction_ms']:.0f} ms | 150 ms |",
             f"| ablation slider: whole page rerun, server (cached explanation) | {1000 * result['slider_page_rerun_s']:.0f} ms | |",
             f"| case page rerun from the cache, server | {1000 * result['cached_page_run_s']:.0f} ms | 1 s |",
             f"| first page run in a fresh process (load model, predict cohort, explain case) | "
             f"{result['first_page_run_s']:.1f} s | |"]
    if result["first_render_s"] is None:
        lines.append("| browser measures | not measured (no chromium) | |")
    else:
        lines += [
            f"| `streamlit run` to the sidebar's page list drawn | {result['page_list_s']:.1f} s "
            f"({_runs(s[0] for s in shells)}) | 2 s |",
            f"| `streamlit run` to the sidebar's settings drawn | {result['advanced_settings_s']:.1f} s "
            f"({_runs(s[1] for s in shells)}) | |",
            f"| `streamlit run` to the first case page drawn | {result['first_render_s']:.1f} s ({_runs(first)}) | 5 s (first chart) |",
            f"| ablation slider step, seen | {result['browser_slider_s']:.2f} s ({_runs(result['browser_slider_runs_s'])}) | 0.3 s |",
            f"| switch to an already explained case, seen | {result['browser_case_switch_s']:.1f} s "
            f"({_runs(result['browser_case_switch_runs_s'])}) | 1 s |",
            f"| missing-modality page, first view, seen | {result['browser_missing_first_s']:.1f} s | |",
            f"| missing-rate slider step, seen | {result['browser_missing_rate_step_s']:.1f} s "
            f"({_runs(result['browser_missing_rate_step_runs_s'])}) | 1 s |",
            f"| cohort attention page, first view, seen | {result['browser_cohort_first_s']:.1f} s | 3 s |"]
    (RESULTS / "dashboard_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
