"""A case's explanation as the case explorer draws it: the first view at once, each modality's panel as soon
as its attribution finishes, and nothing more computed for a case the user has left.

The work runs in the page's own script run, in steps (:class:`explain.case.CaseExplainer`). Before every
Integrated Gradients pass it updates the progress line, and that update is where Streamlit stops a run the
user has moved on from (another case, another page, a closed tab): its rerun or stop exception ends the work
there; the server log says so. What was finished is kept in the session, so coming back to the case shows it
at once and computes only the rest; a whole explanation is kept for every session of the process
(:func:`explanation_cache`), so a case explained once reappears instantly.
"""

from __future__ import annotations

import html
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import streamlit as st

from explain.case import CaseExplainer, CaseExplanation

PROGRESS_ID = "explanation-progress"  # the progress line's element id (the real-browser tests read it)
KEPT_PER_SESSION = 3  # unfinished explanations a session keeps (cases left half-explained)
SESSION_KEY = "app.explainers"
log = logging.getLogger("neurofusion.app")


class ExplanationCache:
    """Whole case explanations, least recently used first out; shared by every session of the process and
    safe to use from their threads. Entries are never changed after they are put (pages derive new ones)."""

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, CaseExplanation] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> CaseExplanation | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: Hashable, explanation: CaseExplanation) -> None:
        with self._lock:
            self._entries[key] = explanation
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@st.cache_resource(show_spinner=False)
def explanation_cache() -> ExplanationCache:
    """The process's cache of whole case explanations."""
    return ExplanationCache()


def cached_or_computed(key: Hashable, compute: Callable[[], CaseExplanation]) -> CaseExplanation:
    """The whole explanation under ``key``: from the cache, else computed (with a spinner) and kept."""
    cache = explanation_cache()
    found = cache.get(key)
    if found is None:
        with st.spinner("Explaining this case..."):
            found = compute()
        cache.put(key, found)
    return found


@dataclass
class Deferred:
    """A part of the page drawn when the explanation is whole (or, for a panel, when that panel is ready):
    where (a placeholder) and how (``draw(explanation)``)."""

    slot: object  # st.empty()
    draw: Callable[[CaseExplanation], None]
    modality: str | None = None  # a panel: drawn as soon as this modality's panel exists


@dataclass
class CaseJob:
    """One case's explanation on the page: ``whole`` when it came from the cache, else ``explainer`` holding
    the first view and the panels finished so far. :meth:`finish` computes the rest, filling what the page
    deferred."""

    key: Hashable
    titles: dict[str, str]
    explainer: CaseExplainer | None = None
    whole: CaseExplanation | None = None
    cached: bool = False
    _status: object | None = None
    _deferred: list[Deferred] = field(default_factory=list)
    _current: str | None = None
    _passes: int = 0

    @property
    def complete(self) -> bool:
        return self.whole is not None

    def current(self) -> CaseExplanation:
        """The explanation as far as it is computed (the whole one when complete)."""
        return self.whole if self.whole is not None else self.explainer.partial()

    def pending(self) -> list[str]:
        """The modalities whose panels are still to come, in the order they will be computed."""
        return [] if self.whole is not None else self.explainer.pending()

    def total(self) -> int:
        explanation = self.current()
        return len(explanation.panels) + len(self.pending())

    def defer(self, slot, draw: Callable[[CaseExplanation], None], modality: str | None = None) -> None:
        """Draw ``draw(explanation)`` into ``slot`` once ``modality``'s panel exists (None: the whole
        explanation); at once when it does already."""
        if self.whole is not None or (modality is not None and modality in self.current().panels):
            with slot.container():
                draw(self.current())
            return
        self._deferred.append(Deferred(slot, draw, modality))

    def status_line(self) -> None:
        """The progress line: a placeholder the page puts above the panels, updated as they finish."""
        self._status = st.empty()
        self._draw_status()

    def _draw_status(self) -> None:
        if self._status is None:
            return
        explanation, pending = self.current(), self.pending()
        done = len(explanation.panels)
        total = done + len(pending)
        if self.whole is not None:
            state = "cached" if self.cached else "complete"
            text = (f"All {total} panels ready" + (" (from the cache)." if self.cached else ".")) if total else ""
        else:
            state = "computing"
            steps = []
            for k, name in enumerate(pending):
                title = self.titles.get(name, name)
                if k == 0:
                    where = f", pass {self._passes}" if self._current == name and self._passes else ""
                    steps.append(f"computing the {title} map{where}")
                else:
                    steps.append(f"{title} queued")
            ready = ", ".join(self.titles.get(n, n) for n in explanation.panels)
            text = (f"Explaining: {done} of {total} panels ready" + (f" ({ready})" if ready else "")
                    + "".join(f" · {step}" for step in steps)
                    + ". The panels appear as they finish; leaving the case stops the work.")
        case = html.escape(explanation.case_id, quote=True)  # a browser may still show the last case's line
        self._status.html(f"<div id='{PROGRESS_ID}' data-case='{case}' data-state='{state}' data-done='{done}' "
                          f"data-total='{total}' "
                          f"style='color: rgba(49, 51, 63, 0.6); font-size: 0.875rem'>{html.escape(text)}</div>")

    def _tick(self) -> bool:
        """Called before every pass: updates the progress line (where Streamlit stops a run the user left);
        never asks the engine to stop by itself."""
        pending = self.explainer.pending()
        name = pending[0] if pending else None
        self._passes = self._passes + 1 if name == self._current else 1
        self._current = name
        self._draw_status()
        return False

    def finish(self) -> CaseExplanation:
        """Compute every panel still missing, drawing each deferred part as soon as it can be; keep the whole
        explanation in the process's cache. A stop from Streamlit (the user left) ends the work between passes:
        the finished panels stay with the session's explainer, nothing is cached, the server log says so."""
        if self.whole is not None:
            return self.whole
        explainer = self.explainer
        explainer.cancel = self._tick
        try:
            for modality, _ in explainer.panels():
                self._passes, self._current = 0, None
                self._draw_status()
                for part in [d for d in self._deferred if d.modality == modality]:
                    self._deferred.remove(part)
                    with part.slot.container():
                        part.draw(explainer.partial())
        except Exception:
            raise
        except BaseException:  # Streamlit's rerun or stop: the page moved on
            log.warning("stopped explaining case %s after %d of %d panels: the page moved on",
                        explainer.case.case_id, len(explainer.done), len(explainer.done) + len(explainer.pending()))
            raise
        finally:
            explainer.cancel = None
        self.whole = explainer.partial()
        explanation_cache().put(self.key, self.whole)
        _forget(self.key)
        self._draw_status()
        for part in self._deferred:
            with part.slot.container():
                part.draw(self.whole)
        self._deferred.clear()
        return self.whole


def case_job(key: Hashable, titles: dict[str, str], make: Callable[[], CaseExplainer]) -> CaseJob:
    """The job of the case under ``key``: whole from the process's cache, else the session's unfinished
    explainer of that case (its first view and finished panels kept), else a new one from ``make`` with its
    first view computed."""
    whole = explanation_cache().get(key)
    if whole is not None:
        return CaseJob(key, titles, whole=whole, cached=True)
    kept: OrderedDict = st.session_state.setdefault(SESSION_KEY, OrderedDict())
    explainer = kept.get(key)
    if explainer is None:
        explainer = make()
        with st.spinner("Predicting and weighing the modalities..."):
            explainer.first_view()
        kept[key] = explainer
    kept.move_to_end(key)
    while len(kept) > KEPT_PER_SESSION:
        kept.popitem(last=False)
    return CaseJob(key, titles, explainer=explainer)


def _forget(key: Hashable) -> None:
    """Drop a finished explainer from the session (the cache holds its explanation)."""
    kept = st.session_state.get(SESSION_KEY)
    if kept is not None:
        kept.pop(key, None)
