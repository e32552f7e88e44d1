"""The case explorer's progressive explanation in a real browser (Debian chromium through Playwright): the first
view (the prediction card and the explained class) appears before the modality panels, the page's
``#explanation-progress`` counts the panels done until it says "complete", an already explained case comes back
from the cache at once ("cached"), and leaving a case while its panels are computed stops that work (the server
prints ``stopped explaining case <id>``). Run on the demo model and on a paper-config checkpoint (ResNet-50,
BERT-base, random weights) written by the test. Timings are printed and written under pytest's tmp_path but do not
decide pass or fail; benchmarks/browser_case_latency.py measures them.

The helpers here (a server whose output is read, a case picked in the case list, a sampler that records what the
page shows over time) are the ones the benchmark uses.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from neurofusion.data import CohortReader
from tests.app.test_browser import CHROMIUM, serve_process

ROOT = Path(__file__).resolve().parents[2]
COHORT = ROOT / "sample_data" / "cardio"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed "
                                "(make test installs it: apt-get install chromium)")

STOPPED = "stopped explaining case {}"


@dataclass
class Server:
    """A running `streamlit run` (tests/app/test_browser.py's serve()) and the lines it has printed so far."""

    url: str
    lines: list[str] = field(default_factory=list)

    def printed(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def wait_printed(self, text: str, timeout: float) -> float | None:
        """Seconds until a line containing ``text`` was printed (None if it was not within ``timeout``)."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.printed(text):
                return time.perf_counter() - start
            time.sleep(0.1)
        return None


@contextmanager
def served(env: dict[str, str] | None = None) -> Iterator[Server]:
    """serve() with its output (stdout and stderr, piped together) read line by line into ``Server.lines``."""
    generator = serve_process({"PYTHONUNBUFFERED": "1", **(env or {})})
    url, process = next(generator)
    server = Server(url)

    def read() -> None:
        for line in process.stdout:
            server.lines.append(line.rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield server
    finally:
        next(generator, None)  # terminates the server
        reader.join(timeout=10)


def paper_checkpoint(folder: Path) -> Path:
    """A paper-config checkpoint (configs/cardio_paper.yaml, random weights) written by
    benchmarks/paper_explain_latency.py's build_checkpoint."""
    spec = importlib.util.spec_from_file_location("paper_explain_latency",
                                                  ROOT / "benchmarks" / "paper_explain_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_checkpoint(folder)


def complete_cases(n: int, skip: int = 0) -> list[str]:
    """Test cases with every modality present (each has all its panels to compute)."""
    reader = CohortReader(COHORT)
    availability = reader.availability()
    return [i for i in reader.ids("test") if availability.loc[i].all()][skip:skip + n]


# Every 25 ms, what the page shows, recorded when it changes: the case in the URL, the explained class and the
# prediction card (null while stale: drawn by the previous run), the progress element's attributes and text, and
# how many progress bars are visible in the main area. Times are the page's performance.now() in ms; t0 is set by
# the mousedown on a case in the case list.
_SAMPLER_JS = """() => {
  if (window.__nfTimer) clearInterval(window.__nfTimer);
  window.__nfLog = [];
  window.__nfT0 = null;
  if (!window.__nfListening) {
    document.addEventListener('mousedown', e => {
      if (e.target.closest('[role="option"]')) window.__nfT0 = performance.now();
    }, true);
    window.__nfListening = true;
  }
  const fresh = e => {
    if (!e) return false;
    const c = e.closest('[data-testid="stElementContainer"]');
    return !(c && c.getAttribute('data-stale') === 'true');
  };
  // the explained class and the progress line name their case: right after a pick the browser can still show the
  // last case's, not yet marked stale, under the new case's URL
  const ours = (e, id) => fresh(e) && e.getAttribute('data-case') === id;
  const visible = e => { const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; };
  let last = '';
  window.__nfTimer = setInterval(() => {
    const p = document.querySelector('#explanation-progress');
    const ex = document.querySelector('#explained-class');
    const card = document.querySelector('[data-testid="stMain"] [data-testid="stMetric"]');
    const main = document.querySelector('[data-testid="stMain"]') || document;
    const bars = [...main.querySelectorAll('[data-testid="stProgress"]')].filter(b => fresh(b) && visible(b));
    const id = new URLSearchParams(location.search).get('case');
    const s = {
      case: id,
      explained: ours(ex, id) ? ex.innerText : null,
      card: ours(ex, id) && fresh(card) ? card.innerText : null,
      state: ours(p, id) ? p.getAttribute('data-state') : null,
      done: ours(p, id) ? p.getAttribute('data-done') : null,
      total: ours(p, id) ? p.getAttribute('data-total') : null,
      text: ours(p, id) ? p.innerText : null,
      bars: bars.length,
    };
    const key = JSON.stringify(s);
    if (key !== last) { last = key; window.__nfLog.push({t: performance.now(), ...s}); }
  }, 25);
}"""

# true once the page shows ``case``'s first view: the URL names it and the explained class and the prediction
# card were drawn by the current run
_FIRST_VIEW_JS = """case_id => {
  const log = window.__nfLog || [];
  const s = log[log.length - 1];
  return !!s && s.case === case_id && s.explained !== null && s.card !== null;
}"""

_STATE_JS = """([case_id, states]) => {
  const log = window.__nfLog || [];
  const s = log[log.length - 1];
  return !!s && s.case === case_id && states.includes(s.state);
}"""


def start_sampling(page) -> None:
    page.evaluate(_SAMPLER_JS)


def sampled(page) -> tuple[float | None, list[dict]]:
    """(t0, the recorded samples) of the page's sampler."""
    return page.evaluate("() => [window.__nfT0, window.__nfLog]")


def case_list(page):
    return page.get_by_role("combobox", name=re.compile(r"^Case \("))


def pick_case(page, case_id: str, timeout_ms: float = 600_000) -> None:
    """Choose ``case_id`` in the case list as a user does (open it, type, click the option); the sampler's t0 is
    the mousedown on the option."""
    box = case_list(page)
    box.wait_for(timeout=timeout_ms)
    box.click()
    box.fill(case_id)
    page.get_by_role("option", name=re.compile(f"^{re.escape(case_id)}")).first.click(timeout=timeout_ms)


def wait_first_view(page, case_id: str, timeout_ms: float) -> None:
    page.wait_for_function(_FIRST_VIEW_JS, arg=case_id, polling=50, timeout=timeout_ms)


def wait_state(page, case_id: str, states: tuple[str, ...], timeout_ms: float) -> None:
    page.wait_for_function(_STATE_JS, arg=[case_id, list(states)], polling=50, timeout=timeout_ms)


@dataclass
class CaseTiming:
    """What the page showed after a case was picked: seconds from the mousedown on the case to its first view and
    to the final progress state (None where not reached), and what was seen on the way."""

    case_id: str
    t0_ms: float  # the mousedown on the case, on the page's clock
    first_view_s: float | None
    final_s: float | None
    final_state: str | None
    done: int | None
    total: int | None
    states_seen: list[str]
    max_bars: int
    first_view_before_final: bool
    samples: list[dict]

    def brief(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "samples"}


def timing(page, case_id: str) -> CaseTiming:
    """Reads the sampler's record of ``case_id`` (after pick_case and the waits)."""
    t0, samples = sampled(page)
    if t0 is None:
        raise RuntimeError("the sampler saw no mousedown on a case option")
    mine = [s for s in samples if s["t"] >= t0 and s["case"] == case_id]
    first = next((s for s in mine if s["explained"] is not None and s["card"] is not None), None)
    final = next((s for s in mine if s["state"] in ("complete", "cached")), None)
    return CaseTiming(
        case_id=case_id, t0_ms=t0,
        first_view_s=None if first is None else (first["t"] - t0) / 1000,
        final_s=None if final is None else (final["t"] - t0) / 1000,
        final_state=None if final is None else final["state"],
        done=None if final is None or final["done"] is None else int(final["done"]),
        total=None if final is None or final["total"] is None else int(final["total"]),
        states_seen=list(dict.fromkeys(s["state"] for s in mine if s["state"])),
        max_bars=max((s["bars"] for s in mine), default=0),
        first_view_before_final=first is not None and (final is None or first["t"] <= final["t"]),
        samples=mine)


def explain_case_in_page(page, case_id: str, timeout_ms: float, states=("complete", "cached")) -> CaseTiming:
    """Pick ``case_id`` and wait for its first view and then a final progress state; returns what was seen."""
    start_sampling(page)
    pick_case(page, case_id, timeout_ms)
    wait_first_view(page, case_id, timeout_ms)
    wait_state(page, case_id, states, timeout_ms)
    return timing(page, case_id)


def open_app(page, url: str, case_id: str, timeout_ms: float = 600_000) -> None:
    """Open the case explorer on ``case_id`` and wait until that case is completely explained (or cached)."""
    page.goto(f"{url}/?case={case_id}")
    start_sampling(page)
    wait_first_view(page, case_id, timeout_ms)
    wait_state(page, case_id, ("complete", "cached"), timeout_ms)
    case_list(page).wait_for(timeout=timeout_ms)
    # in a fresh server the cohort is predicted after the first case's panels and the page redrawn with the case
    # list labelled: wait for that, so the next pick is not raced by the redraw
    page.wait_for_function("() => [...document.querySelectorAll('input[role=\"combobox\"]')]"
                           ".some(i => i.value.includes(' · predicted '))", polling=100, timeout=timeout_ms)


def small_cohort(folder: Path, ids: list[str]) -> Path:
    """A cardio cohort of only ``ids`` (cohort.csv's rows for them, the declaration and their files copied): the
    case list predicts every case of the cohort, which for a paper-size model takes minutes for all 200."""
    folder.mkdir(parents=True)
    for name in ("cohort.json", "features.csv"):
        shutil.copy(COHORT / name, folder / name)
    for name in ("images", "notes", "signals"):
        (folder / name).mkdir()
        for case_id in ids:  # a WFDB record is its header and the data files beside it
            for path in (COHORT / name).glob(f"{case_id}.*"):
                shutil.copy(path, folder / name / path.name)
    header, *rows = (COHORT / "cohort.csv").read_text(encoding="utf-8").splitlines()
    wanted = set(ids)
    kept = [row for row in rows if row.split(",", 1)[0] in wanted]
    if len(kept) != len(wanted):
        raise ValueError(f"cases {sorted(wanted - {r.split(',', 1)[0] for r in kept})} are not in {COHORT}")
    (folder / "cohort.csv").write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    return folder


def use_folder(page, label: str, folder: Path, case_id: str, timeout_ms: float = 600_000) -> None:
    """Type ``folder`` into the sidebar's text input ``label`` ("Checkpoint folder" or "Cohort folder", under
    Advanced) and wait until ``case_id`` (the case in the URL) is completely explained with it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    sidebar = page.get_by_test_id("stSidebar")
    field = sidebar.get_by_role("textbox", name=label)
    if not field.is_visible():
        sidebar.get_by_text("Advanced: model, cohort, explanations").click()
    field.fill(str(folder))
    start_sampling(page)
    field.press("Enter")
    # the run with the new folder has begun: the first view drawn before is stale (a run quicker than the
    # sampler's 25 ms can pass unseen, and is then over)
    try:
        page.wait_for_function("() => (window.__nfLog || []).some(s => s.explained === null)", polling=25,
                               timeout=10_000)
    except PlaywrightTimeout:
        pass
    wait_first_view(page, case_id, timeout_ms)
    wait_state(page, case_id, ("complete", "cached"), timeout_ms)
    case_list(page).wait_for(timeout=timeout_ms)
    # in a fresh server the cohort is predicted after the first case's panels and the page redrawn with the case
    # list labelled: wait for that, so the next pick is not raced by the redraw
    page.wait_for_function("() => [...document.querySelectorAll('input[role=\"combobox\"]')]"
                           ".some(i => i.value.includes(' · predicted '))", polling=100, timeout=timeout_ms)


def _record(tmp_path: Path, name: str, timings: dict) -> None:
    print(json.dumps({name: timings}, indent=1))
    (tmp_path / f"{name}.json").write_text(json.dumps(timings, indent=1) + "\n")


@pytest.fixture(scope="module")
def server():
    with served() as running:
        yield running


def test_demo_case_appears_first_then_completes_and_comes_back_cached(server, browser, tmp_path):
    """The demo model: a picked case's first view appears, then every panel is done ("complete", done == total);
    picking an already explained case again shows it "cached"."""
    first, second = complete_cases(2)
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    open_app(page, server.url, first)
    fresh = explain_case_in_page(page, second, 180_000)
    assert fresh.first_view_s is not None and fresh.first_view_before_final, fresh.brief()
    assert fresh.final_state == "complete", fresh.brief()  # explained here for the first time: not from the cache
    assert fresh.total == 4 and fresh.done == fresh.total, fresh.brief()  # a complete case: its four panels
    again = explain_case_in_page(page, first, 180_000)  # explained above: from the cache
    assert again.final_state == "cached" and again.done == again.total, again.brief()
    assert "computing" not in again.states_seen, again.brief()
    _record(tmp_path, "demo", {"fresh": fresh.brief(), "cached": again.brief()})
    context.close()


def test_paper_size_case_progresses_and_stops_when_left(server, browser, tmp_path):
    """A paper-config checkpoint (random weights): the first view comes before the full explanation and the page
    shows that work remains (a progress bar in the open tab or "computing"); picking another case mid-way makes the
    server print "stopped explaining case <id>"; the case picked then completes. On a three-case copy of the cardio
    cohort, so that the case list's predictions take seconds, not minutes."""
    checkpoint = paper_checkpoint(tmp_path)
    warm, left, finished = complete_cases(3, skip=2)
    context = browser.new_context(viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.goto(f"{server.url}/?case={warm}")
    start_sampling(page)
    wait_first_view(page, warm, 180_000)
    use_folder(page, "Cohort folder", small_cohort(tmp_path / "cohort", [warm, left, finished]), warm)
    use_folder(page, "Checkpoint folder", checkpoint, warm, 900_000)

    start_sampling(page)
    pick_case(page, left)
    wait_first_view(page, left, 600_000)
    wait_state(page, left, ("computing", "complete", "cached"), 600_000)
    seen = timing(page, left)
    assert seen.final_state is None, seen.brief()  # its panels are being computed (it was never explained)
    pick_case(page, finished)  # leave the case while its panels are computed
    stopped_after = server.wait_printed(STOPPED.format(left), timeout=120)
    assert stopped_after is not None, server.lines[-20:]
    wait_first_view(page, finished, 600_000)
    # "complete", or "cached" when the page was redrawn from the cache at once after completing
    wait_state(page, finished, ("complete", "cached"), 900_000)
    done = timing(page, finished)
    assert done.first_view_before_final and done.total == 4 and done.done == done.total, done.brief()
    assert "computing" in done.states_seen, done.brief()  # computed here, panel by panel
    assert done.first_view_s < done.final_s, done.brief()
    assert not server.printed(STOPPED.format(finished)), server.lines[-20:]
    page.get_by_role("tab", name=re.compile("^Clinical note")).click()  # the last panel computed is drawn
    highlighted = page.locator("span.attr")
    highlighted.first.wait_for(state="visible", timeout=60_000)
    assert highlighted.count() > 20
    _record(tmp_path, "paper", {"left": seen.brief(), "stopped_after_s": stopped_after, "finished": done.brief()})
    context.close()
