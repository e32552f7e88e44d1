"""What-if edits of an ICU stay as the model sees it at hour t (issue 12): hide the last hours of vital
signs, remove one nursing note, drop one lab; each builds the edited sample from the time-stamped cohort's
own views, so re-predicting it gives the model's exact risk for "what if this had not been recorded".

The edits are pure functions of (reader, stay, t) -> :class:`neurofusion.data.schema.Case`: the reader is
not changed, and the edited case records what was done in ``meta["what_if"]`` (as :mod:`explain.whatif`'s
edits do). What each one means to the model:

- **Hide the last h hours of vitals** (:func:`hide_recent_vitals`): the vitals grid still ends at t (the
  model's 48-h window does not move), but it is built from the streams cut at t - h: the last h hours hold
  no measurement of their own and carry the last value recorded by t - h forward, as any unmeasured stretch
  does. With nothing recorded by t - h the stay has no vitals at t (the model's missing embedding).
- **Remove a note** (:func:`remove_note`): that note's text and its age header leave the notes the model
  reads; the other notes keep their text, order and ages. Removing the only note leaves no notes.
- **Drop a lab** (:func:`drop_lab`): the lab and its age are missing, as if it had never been drawn by t.
  Dropping the only lab measured by t leaves no labs (a modality is present only when something of it was
  recorded).

:func:`edited_case` applies several at once (they act on different modalities, so their order does not
matter); :func:`risk` reads the model's P(death within 48 h) = probability of class index 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from neurofusion.data.schema import Case, Signal
from neurofusion.data.timed import AGE_SUFFIX, STEP_H, TimedCohortReader
from neurofusion.inference import Predictor

__all__ = ["StayEdit", "hide_recent_vitals", "remove_note", "drop_lab", "edited_case", "risk", "notes_at",
           "note_parts"]

DEFAULT_HIDDEN_H = 6.0  # the "hide the last 6 h of vitals"


@dataclass(frozen=True)
class StayEdit:
    """The edits of one sample: ``hide_vitals_h`` hours of vitals hidden before t (0 = none), the notes
    removed (positions in ``reader.notes_of(stay)``, i.e. in time order over the whole stay) and the labs
    dropped (variable names)."""

    hide_vitals_h: float = 0.0
    removed_notes: tuple[int, ...] = ()
    dropped_labs: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return self.hide_vitals_h == 0 and not self.removed_notes and not self.dropped_labs

    def describe(self, reader: TimedCohortReader, stay_id: str) -> list[str]:
        """One line per edit, as a user would say it."""
        lines = []
        if self.hide_vitals_h:
            lines.append(f"vital signs of the last {self.hide_vitals_h:g} h hidden")
        notes = reader.notes_of(stay_id)
        for k in self.removed_notes:
            lines.append(f"note written at {float(notes['time'].iloc[k]):.1f} h removed")
        lines += [f"{lab} dropped" for lab in self.dropped_labs]
        return lines


def notes_at(reader: TimedCohortReader, stay_id: str, t: float) -> list[int]:
    """Positions (in ``reader.notes_of(stay)``) of the notes written at or before hour t, in time order."""
    times = reader.notes_of(stay_id)["time"].to_numpy(dtype=float)
    return [int(k) for k in np.flatnonzero(times <= t)]


def hide_recent_vitals(reader: TimedCohortReader, stay_id: str, t: float, hours: float = DEFAULT_HIDDEN_H) -> Case:
    """The stay at hour t with the vital signs of the last ``hours`` hours not recorded (module docstring)."""
    return edited_case(reader, stay_id, t, StayEdit(hide_vitals_h=hours))


def remove_note(reader: TimedCohortReader, stay_id: str, t: float, note: int) -> Case:
    """The stay at hour t without note ``note`` (its position in ``reader.notes_of(stay)``; written by t)."""
    return edited_case(reader, stay_id, t, StayEdit(removed_notes=(note,)))


def drop_lab(reader: TimedCohortReader, stay_id: str, t: float, lab: str) -> Case:
    """The stay at hour t with lab ``lab`` never measured (value and age missing)."""
    return edited_case(reader, stay_id, t, StayEdit(dropped_labs=(lab,)))


def edited_case(reader: TimedCohortReader, stay_id: str, t: float, edit: StayEdit) -> Case:
    """``reader.at(stay_id, t)`` with the edits of ``edit`` applied; the unedited case when it is empty."""
    case = reader.at(stay_id, t)
    if edit.empty:
        return case
    changes: dict[str, object] = {}
    if edit.hide_vitals_h:
        changes["vitals"] = _vitals_hiding(reader, stay_id, t, edit.hide_vitals_h)
    if edit.removed_notes:
        changes["notes"] = _notes_without(reader, stay_id, t, case.value("notes"), edit.removed_notes)
    if edit.dropped_labs:
        changes["labs"] = _labs_without(reader, stay_id, t, case.value("labs"), edit.dropped_labs)
    edited = case.with_values(**changes)
    edited.meta["what_if"] = "; ".join(edit.describe(reader, stay_id))
    return edited


def risk(predictor: Predictor, cases: Sequence[Case]) -> np.ndarray:
    """(N,) the model's P(death within 48 h) of each case: the probability of class index 1."""
    if len(predictor.model.classes) != 2:
        raise ValueError(f"an ICU risk needs a two-class model (survives, dies within 48 h), got the classes "
                         f"{list(predictor.model.classes)}")
    return predictor.predict(list(cases))[1][:, 1].astype(float)


# ------------------------------------------------------------------------------------------ helpers


def _vitals_hiding(reader: TimedCohortReader, stay_id: str, t: float, hours: float) -> Signal | None:
    """(2V, T) vitals at t built from the streams cut at t - hours, the window still ending at t.

    The grid at t from streams cut at c = t - hours equals, step for step, the grid at c moved on by
    ``hours``: its steps up to c are the grid at c's last steps (the same measurements in the same 5-minute
    bins, the same value carried in from before the window), and its steps after c hold no measurement and
    carry the value at c forward. So the reader's own signal at c, shifted, is the answer, with the reader's
    scaling and nothing re-derived here (tests/explain/test_icu_whatif.py checks it against
    ``events.grid_of_streams`` on the cut streams)."""
    if not (math.isfinite(hours) and hours > 0):
        raise ValueError(f"hours of vitals to hide must be a positive number, got {hours!r}")
    shift = int(round(hours / STEP_H))
    if not math.isclose(shift * STEP_H, hours, rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"hours of vitals to hide must be a whole number of 5-minute grid steps, got {hours:g}")
    cut = t - hours
    if cut < 0 or reader.events_of(stay_id, "vitals", cut).empty:
        return None  # nothing recorded by t - hours: no vitals at t
    return reader.vitals_signal(stay_id, t, recorded_until=cut)


def note_parts(reader: TimedCohortReader, stay_id: str, t: float, text: str) -> list[tuple[int, int, int]]:
    """Where each note written by hour t lies in ``text``, the notes text the model reads at t:
    [(position in ``reader.notes_of(stay)``, start, end)] newest first, ``text[start:end]`` the part
    (``TimedCohortReader.note_parts``). ValueError when ``text`` is not the reader's notes text at t."""
    expected, parts = reader.note_parts(stay_id, t)
    if text != expected:
        raise ValueError(f"the text given is not the notes text of stay {stay_id} at {t:g} h (one part per note "
                         f"written by then, newest first)")
    return parts


def _notes_without(reader: TimedCohortReader, stay_id: str, t: float, text: str | None,
                   removed: Sequence[int]) -> str | None:
    """The notes text at t without the notes at positions ``removed`` (the others keep their parts)."""
    written = notes_at(reader, stay_id, t)
    unknown = [k for k in removed if k not in written]
    if unknown:
        raise ValueError(f"stay {stay_id} has no note {unknown[0]} written by hour {t:g} (its notes by then are "
                         f"at positions {written or 'none'} of reader.notes_of)")
    if text is None:
        raise ValueError(f"stay {stay_id} has no notes at hour {t:g}")
    return reader.note_parts(stay_id, t, without=tuple(removed))[0]


def _labs_without(reader: TimedCohortReader, stay_id: str, t: float, labs: dict[str, float] | None,
                  dropped: Sequence[str]) -> dict[str, float] | None:
    """The lab values at t with the ``dropped`` labs (and their ages) missing; None when no lab is left."""
    unknown = [lab for lab in dropped if lab not in reader.lab_variables]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a lab of this cohort (labs: {', '.join(reader.lab_variables)})")
    if labs is None:
        raise ValueError(f"stay {stay_id} has no labs measured by hour {t:g}")
    edited = dict(labs)
    for lab in dropped:
        if math.isnan(edited[lab]):
            raise ValueError(f"{lab} was not measured in stay {stay_id} by hour {t:g}: there is nothing to drop")
        edited[lab] = math.nan
        edited[f"{lab}{AGE_SUFFIX}"] = math.nan
    left = any(not math.isnan(edited[lab]) for lab in reader.lab_variables)
    return edited if left else None
