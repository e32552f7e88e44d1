"""Dashboard responsiveness on CPU: server time for an ablation-slider change, for a case page served from
the cache, and wall time from `streamlit run` to the first rendered case page in a real browser.

    python benchmarks/dashboard_latency.py      # writes benchmarks/results/dashboard_latency.{json,md}
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import time
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


def first_render_s() -> float | None:
    """From launching `streamlit run` to the case page's attention heatmap drawn in chromium."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
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
            browser = playwright.chromium.launch(executable_path=chromium, args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run"])
            page = browser.new_page()
            while True:
                try:
                    page.goto(f"http://127.0.0.1:{port}/", timeout=2000)
                    break
                except Exception:  # server not listening yet
                    time.sleep(0.2)
            page.get_by_text("How the modalities were combined").wait_for(timeout=600_000)
            page.locator(".js-plotly-plot").filter(has_text="attends to").first.wait_for(timeout=60_000)
            elapsed = time.perf_counter() - start
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    return elapsed


def main() -> None:
    first = [first_render_s() for _ in range(3)]  # each a fresh server; the machine is noisy
    result = {"slider_prediction_ms": slider_prediction_ms(), **app_rerun_times(),
              "first_render_s": None if first[0] is None else statistics.median(first),
              "first_render_runs_s": first}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dashboard_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    first = ("not measured (no chromium)" if result["first_render_s"] is None else
             f"{result['first_render_s']:.1f} s (median of " + ", ".join(f"{t:.1f}" for t in result["first_render_runs_s"]) + ")")
    lines = ["# Dashboard latency (CPU, demo checkpoint, bundled cohort)", "",
             "Produced by `python benchmarks/dashboard_latency.py`; the machine is shared, so these are one "
             "run's medians.", "",
             "| measure | value | target |", "| --- | --- | --- |",
             f"| ablation slider: re-prepare the case and predict | {result['slider_prediction_ms']:.0f} ms | 150 ms |",
             f"| ablation slider: whole page rerun (cached explanation) | {1000 * result['slider_page_rerun_s']:.0f} ms | |",
             f"| case page rerun from the cache | {1000 * result['cached_page_run_s']:.0f} ms | 1 s |",
             f"| first page run in a fresh process (load model, predict cohort, explain case) | "
             f"{result['first_page_run_s']:.1f} s | |",
             f"| `streamlit run` to the first case page drawn in chromium | {first} | 10 s |"]
    (RESULTS / "dashboard_latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
