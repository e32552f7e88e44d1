"""A case's explanation as a user waits for it in a real browser (Debian chromium through Playwright, `streamlit
run` on loopback): for the demo model and for a paper-config checkpoint (configs/cardio_paper.yaml: ResNet-50,
BERT-base; random weights, enough for timing) written to a temporary folder, the seconds from the mousedown on a
case in the case list to its first view (the prediction card and the explained class drawn) and to
``#explanation-progress[data-state=complete]``; then an already explained case picked again until
``data-state=cached``; and a paper-size case left right after its first view, until the server prints
``stopped explaining case <id>``.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/browser_case_latency.py [--cases 3] [--skip-paper]

Writes benchmarks/results/browser_case_latency.{json,md}. Each case is timed once (a warm-up case first, opened
with each model); the medians are over the cases. The browser's clock times the page (performance.now(), sampled
every 25 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.app.test_browser import ARGS, CHROMIUM  # noqa: E402
from tests.app.test_browser_progressive import (  # noqa: E402
    STOPPED,
    CaseTiming,
    complete_cases,
    explain_case_in_page,
    open_app,
    paper_checkpoint,
    pick_case,
    start_sampling,
    timing,
    use_folder,
    wait_first_view,
    wait_state,
)

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"first_view_s": 1.5, "full_s": 10.0}  # issue 16, paper config on an idle 2-core machine
TIMEOUT_MS = 900_000


def _timeline(case: CaseTiming) -> list[dict]:
    """The progress element's changes after the case was picked: ms after the mousedown, state, done/total, its
    text, progress bars."""
    out, last = [], None
    for s in case.samples:
        key = (s["state"], s["done"], s["total"], s["text"], s["bars"])
        if key != last and s["state"] is not None:
            out.append({"ms": round(s["t"] - case.t0_ms), "state": s["state"], "done": s["done"],
                        "total": s["total"], "text": s["text"], "bars": s["bars"]})
            last = key
    return out


def _brief(case: CaseTiming) -> dict:
    return {**case.brief(), "timeline": _timeline(case)}


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def wait_labelled(page) -> None:
    """Until the case list is labelled with the model's predictions: a paper-size model's page predicts the
    cohort after the first case's panels (minutes for 200 cases) and is then redrawn."""
    page.wait_for_function("""() => [...document.querySelectorAll('input[role="combobox"]')]
        .some(e => (e.getAttribute('aria-label') || '').startsWith('Case (') && e.value.includes('predicted'))""",
                           polling=200, timeout=TIMEOUT_MS)


def measure_model(page, cases: list[str], open_first) -> dict:
    """Open the warm-up case with ``open_first`` (timed) and wait for the labelled case list (timed), explain
    ``cases`` one after the other, then pick the first of them again (from the cache)."""
    start = time.perf_counter()
    open_first()
    warm_s = time.perf_counter() - start
    wait_labelled(page)
    labelled_s = time.perf_counter() - start
    fresh = [explain_case_in_page(page, case_id, TIMEOUT_MS) for case_id in cases]
    for case in fresh:
        print(json.dumps(case.brief()), flush=True)
    cached = explain_case_in_page(page, cases[0], TIMEOUT_MS)  # "cached" expected: the report says which
    print(json.dumps(cached.brief()), flush=True)
    return {"warm_up_case_s": warm_s, "case_list_labelled_s": labelled_s, "cases": [_brief(c) for c in fresh],
            "cached": _brief(cached),
            "median_first_view_s": _median([c.first_view_s for c in fresh]),
            "median_full_s": _median([c.final_s for c in fresh]),
            "cached_s": cached.final_s}


def measure_stop(page, server, left: str, then: str) -> dict:
    """Pick ``left``, pick ``then`` right after ``left``'s first view and its progress line (its panels being
    computed); seconds until the server says it stopped explaining ``left``, and ``then``'s timing."""
    start_sampling(page)
    pick_case(page, left)
    wait_first_view(page, left, TIMEOUT_MS)
    wait_state(page, left, ("computing", "complete", "cached"), TIMEOUT_MS)
    seen = timing(page, left)
    start_sampling(page)
    pick_case(page, then)
    stopped_s = server.wait_printed(STOPPED.format(left), timeout=300)
    wait_first_view(page, then, TIMEOUT_MS)
    wait_state(page, then, ("complete", "cached"), TIMEOUT_MS)
    after = timing(page, then)
    return {"left": _brief(seen), "stopped_line_printed": stopped_s is not None,
            "stopped_after_s": stopped_s, "then": _brief(after),
            "server_lines": [line for line in server.lines if "stopped explaining" in line]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=3, help="cases timed per model after the warm-up case")
    parser.add_argument("--skip-paper", action="store_true", help="only the demo model")
    parser.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((RESULTS / "browser_case_latency.json").read_text())
        (RESULTS / "browser_case_latency.md").write_text(report(result))
        return
    from playwright.sync_api import sync_playwright

    from tests.app.test_browser_progressive import served

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"Debian chromium is not at {CHROMIUM} (apt-get install chromium)")
    load_start = os.getloadavg()
    result: dict = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "settings": vars(args),
                    "dashboard_settings": "the sidebar's defaults (Advanced untouched but the checkpoint folder)",
                    "cohort": "sample_data/cardio", "targets": TARGETS}
    ids = complete_cases(2 * args.cases + 4)
    demo_cases, paper_warm, paper_cases = ids[1:1 + args.cases], ids[1 + args.cases], ids[2 + args.cases:
                                                                                          2 + 2 * args.cases]
    left, then = ids[2 + 2 * args.cases:4 + 2 * args.cases]
    with served() as server, sync_playwright() as playwright, tempfile.TemporaryDirectory() as scratch:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1200}).new_page()
        result["demo"] = measure_model(page, demo_cases, lambda: open_app(page, server.url, ids[0], TIMEOUT_MS))
        result["demo"]["warm_up_case"] = ids[0]
        if not args.skip_paper:
            start = time.perf_counter()
            checkpoint = paper_checkpoint(Path(scratch))
            result["paper_checkpoint_written_s"] = time.perf_counter() - start
            # the paper model's warm-up: loaded, every case of the cohort predicted for the case list, one case
            explain_case_in_page(page, paper_warm, TIMEOUT_MS)  # by the demo model, then by the paper one:
            result["paper"] = measure_model(page, paper_cases, lambda: use_folder(
                page, "Checkpoint folder", checkpoint, paper_warm, TIMEOUT_MS))
            result["paper"]["warm_up_case"] = paper_warm
            result["paper"]["stop"] = measure_stop(page, server, left, then)
        browser.close()
    load_end = os.getloadavg()
    result["load_average_1min"] = {"start": load_start[0], "end": load_end[0]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "browser_case_latency.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "browser_case_latency.md").write_text(report(result))
    print(report(result))


def _s(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.2f}"


def report(r: dict) -> str:
    threads = r["omp_num_threads"] or "unset"
    lines = [
        "# A case's explanation in a real browser (demo model and paper-config checkpoint, CPU)", "",
        f"Date {r['date']}. Command: `OMP_NUM_THREADS={threads} nice -n 5 python benchmarks/browser_case_latency.py "
        f"--cases {r['settings']['cases']}{' --skip-paper' if r['settings']['skip_paper'] else ''}` (the streamlit "
        f"server inherits OMP_NUM_THREADS); {r['cpu_count']} cores; 1-minute load average "
        f"{r['load_average_1min']['start']:.1f} at the start, {r['load_average_1min']['end']:.1f} at the end. The "
        "cores were shared with other jobs and the browser: absolute times are above those of an idle 2-core "
        "machine, which the issue's targets are for. Each case is timed once, from the mousedown on it in the "
        "case list to what the page shows (chromium's clock, sampled every 25 ms); the cohort is "
        f"{r['cohort']}, the dashboard's settings {r['dashboard_settings']}.", "",
        "| model | first view, median (s) | full explanation, median (s) | cached case (s) | target first view | "
        "target full |", "| --- | --- | --- | --- | --- | --- |"]
    for name, title in (("demo", "demo (1.26 M parameters)"), ("paper", "paper config, random weights")):
        if name in r:
            m = r[name]
            lines.append(f"| {title} | {_s(m['median_first_view_s'])} | {_s(m['median_full_s'])} | "
                         f"{_s(m['cached_s'])} | <= {TARGETS['first_view_s']} | <= {TARGETS['full_s']} |")
    lines += ["", "The issue's targets are for the paper config on an idle 2-core machine.", ""]
    for name in ("demo", "paper"):
        if name not in r:
            continue
        m = r[name]
        lines += [f"## {name}: per case", "",
                  f"Warm-up case {m['warm_up_case']} (opened first: "
                  + ("the server's first page: imports, the demo model, the case" if name == "demo" else
                     "the checkpoint folder typed in the sidebar: the model loaded, the case explained")
                  + f"): complete after {m['warm_up_case_s']:.1f} s; the case list labelled with every case's "
                  f"prediction after {m['case_list_labelled_s']:.1f} s.", "",
                  "| case | first view (s) | final (s) | final state | panels done / total | states seen | "
                  "most progress bars at once |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for c in [*m["cases"], m["cached"]]:
            lines.append(f"| {c['case_id']} | {_s(c['first_view_s'])} | {_s(c['final_s'])} | {c['final_state']} | "
                         f"{c['done']} / {c['total']} | {', '.join(c['states_seen'])} | {c['max_bars']} |")
        lines.append("")
        timeline = m["cases"][0]["timeline"] if m["cases"] else []
        if timeline:
            lines += [f"Progress of {m['cases'][0]['case_id']} as the page showed it (ms after the mousedown on "
                      "the case):", "", "| ms | state | done / total | text | progress bars |",
                      "| --- | --- | --- | --- | --- |"]
            lines += [f"| {t['ms']} | {t['state']} | {t['done']} / {t['total']} | "
                      f"{(t['text'] or '').replace('|', '/')} | {t['bars']} |" for t in timeline]
            lines.append("")
    if "paper" in r:
        stop = r["paper"]["stop"]
        lines += ["## Leaving a paper-size case", "",
                  f"Case {stop['left']['case_id']} was picked and, once its first view "
                  f"({_s(stop['left']['first_view_s'])} s) and its progress line "
                  f"({', '.join(stop['left']['states_seen']) or 'none'}) showed, case {stop['then']['case_id']} "
                  "was picked. "
                  + (f"The server printed \"stopped explaining case {stop['left']['case_id']}\" "
                     f"{stop['stopped_after_s']:.2f} s after that (checked every 0.1 s)."
                     if stop["stopped_line_printed"] else
                     f"The server did NOT print \"stopped explaining case {stop['left']['case_id']}\" within 300 s.")
                  + f" Case {stop['then']['case_id']}: first view {_s(stop['then']['first_view_s'])} s, "
                  f"final {_s(stop['then']['final_s'])} s ({stop['then']['final_state']}).", ""]
        lines.append("The paper-config checkpoint (random weights) was written in "
                     f"{r['paper_checkpoint_written_s']:.1f} s, before its timings.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
