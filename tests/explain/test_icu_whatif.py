"""explain/icu_whatif.py on the bundled ICU cohort: hiding the last hours of vitals gives the grid built at t
from the streams cut at t - h (window still ending at t, scaled by the plausible ranges), computed here
independently with events.grid_of_streams; removing a note removes exactly its part of the notes text;
dropping a lab makes it (and its age) missing to the model; the demo model's risk on each edited case is its
risk on the independently built case, moves, and comes back when the edit is undone (the icu_reader is never
changed); bad edits are errors that say what was wrong."""

from __future__ import annotations

import math

import numpy as np
import pytest

from explain.icu_whatif import (StayEdit, drop_lab, edited_case, hide_recent_vitals, note_parts, notes_at, remove_note,
                                risk)
from neurofusion.data.events import grid_of_streams
from neurofusion.data.schema import Signal
from neurofusion.data.timed import STEP_H, WINDOW_H, TimedCohortReader


def _samples(icu_reader: TimedCohortReader, column: str, n: int) -> list[tuple[str, float]]:
    """The first n (stay, hour) samples with ``column`` true, at hours past the first 6 h."""
    table = icu_reader.table[icu_reader.table[column] & (icu_reader.table["hour"] >= 12)]
    return [(row.stay_id, float(row.hour)) for row in table.head(n).itertuples()]


def _cut_grid(icu_reader: TimedCohortReader, stay_id: str, t: float, hours: float) -> np.ndarray:
    """(2V, 576): the vitals at t from the streams cut at t - hours, by hand from grid_of_streams: each
    variable scaled so its plausible range spans -1..1, 0 until its first value, then the measured masks."""
    cut = icu_reader.events_of(stay_id, "vitals", t - hours)
    streams = {v: (part["time"].to_numpy(float), part["value"].to_numpy(float)) for v, part in cut.groupby("variable")}
    grid = grid_of_streams(streams, icu_reader.vital_variables, t, window_h=WINDOW_H, step_h=STEP_H)
    ranges = [icu_reader.variables[v] for v in icu_reader.vital_variables]
    centre = np.array([(v.low + v.high) / 2 for v in ranges], dtype=np.float32)[:, None]
    half = np.array([(v.high - v.low) / 2 for v in ranges], dtype=np.float32)[:, None]
    before = np.array([bool((streams.get(v, (np.zeros(0),))[0] <= t - WINDOW_H).any())
                       for v in icu_reader.vital_variables])
    known = np.logical_or.accumulate(grid.measured, axis=1) | before[:, None]
    scaled = np.where(known, (grid.values - centre) / half, 0.0)
    return np.concatenate([scaled, grid.measured.astype(np.float32)]).astype(np.float32)


@pytest.mark.parametrize("hours", [6.0, 1.0, 12.5])
def test_hiding_the_last_hours_of_vitals_is_the_grid_of_the_cut_streams_ending_at_t(icu_reader, hours):
    samples = _samples(icu_reader, "has_vitals", 12) + [(s, t + 0.5) for s, t in _samples(icu_reader, "has_vitals", 4)]
    built = 0
    for stay_id, t in samples:
        case = hide_recent_vitals(icu_reader, stay_id, t, hours)
        signal = case.value("vitals")
        if icu_reader.events_of(stay_id, "vitals", t - hours).empty:  # nothing recorded by t - hours
            assert signal is None
            continue
        built += 1
        assert isinstance(signal, Signal)
        assert signal.channels == icu_reader.vitals_signal(stay_id, t).channels
        np.testing.assert_array_equal(signal.data, _cut_grid(icu_reader, stay_id, t, hours))
        variables = len(icu_reader.vital_variables)
        steps = int(round(hours / STEP_H))
        assert not signal.data[variables:, -steps:].any()  # nothing measured in the hidden hours
        # the other modalities are the sample's own
        full = icu_reader.at(stay_id, t)
        assert case.value("notes") == full.value("notes")
        assert case.value("labs") == full.value("labs") or (case.value("labs") is None and full.value("labs") is None)
        assert case.case_id == full.case_id and case.label == full.label
        assert "last" in case.meta["what_if"]
    assert built >= 10


def test_hiding_every_recorded_vital_leaves_no_vitals(icu_reader):
    stay_id, t = _samples(icu_reader, "has_vitals", 1)[0]
    first = float(icu_reader.events_of(stay_id, "vitals")["time"].min())
    hours = math.floor((t - first) / STEP_H + 1) * STEP_H  # the cut falls just before the first measurement
    assert hide_recent_vitals(icu_reader, stay_id, t, hours).value("vitals") is None
    assert hide_recent_vitals(icu_reader, stay_id, t, hours - STEP_H).value("vitals") is not None


def test_removing_a_note_removes_exactly_its_part_of_the_notes_text(icu_reader):
    stay_id, t = next((s, t) for s, t in _samples(icu_reader, "has_notes", 60) if len(notes_at(icu_reader, s, t)) >= 3)
    full = icu_reader.at(stay_id, t).value("notes").split("\n")
    written = notes_at(icu_reader, stay_id, t)
    notes = icu_reader.notes_of(stay_id)
    for position, k in enumerate(written):
        edited = remove_note(icu_reader, stay_id, t, k).value("notes").split("\n")
        line = len(written) - 1 - position  # newest first
        assert edited == full[:line] + full[line + 1:]
        assert full[line].endswith(notes["text"].iloc[k])
        text = notes["text"].iloc[k]
        assert sum(text in x for x in edited) == sum(text in x for x in full) - 1
    # every note removed: no notes at all
    assert edited_case(icu_reader, stay_id, t, StayEdit(removed_notes=tuple(written))).value("notes") is None


def test_note_parts_cut_the_notes_text_into_one_part_per_note_newest_first(icu_reader):
    stay_id, t = next((s, t) for s, t in _samples(icu_reader, "has_notes", 60) if len(notes_at(icu_reader, s, t)) >= 3)
    text = icu_reader.at(stay_id, t).value("notes")
    parts = note_parts(icu_reader, stay_id, t, text)
    notes = icu_reader.notes_of(stay_id)
    assert [k for k, _, _ in parts] == notes_at(icu_reader, stay_id, t)[::-1]
    assert "\n".join(text[a:b] for _, a, b in parts) == text
    for k, a, b in parts:
        assert text[a:b].endswith(notes["text"].iloc[k])
        assert text[a:b].startswith(f"[{t - notes['time'].iloc[k]:.1f} h before]")
    with pytest.raises(ValueError, match="is not the notes text"):
        note_parts(icu_reader, stay_id, t, text + "\n[0.0 h before] an extra note")
    with pytest.raises(ValueError, match="is not the notes text"):
        note_parts(icu_reader, stay_id, t, "\n".join(reversed(text.split("\n"))))


def test_dropping_a_lab_makes_it_and_its_age_missing(icu_reader):
    stay_id, t = _samples(icu_reader, "has_labs", 1)[0]
    labs = icu_reader.at(stay_id, t).value("labs")
    measured = [lab for lab in icu_reader.lab_variables if not math.isnan(labs[lab])]
    assert len(measured) >= 2
    edited = drop_lab(icu_reader, stay_id, t, measured[0]).value("labs")
    assert math.isnan(edited[measured[0]]) and math.isnan(edited[f"{measured[0]}_age_h"])
    assert {k: v for k, v in edited.items() if not k.startswith(measured[0])} == {
        k: v for k, v in labs.items() if not k.startswith(measured[0])}
    assert edited_case(icu_reader, stay_id, t, StayEdit(dropped_labs=tuple(measured))).value("labs") is None


def test_bad_edits_say_what_was_wrong(icu_reader):
    stay_id, t = _samples(icu_reader, "has_labs", 1)[0]
    with pytest.raises(ValueError, match="not a lab of this cohort"):
        drop_lab(icu_reader, stay_id, t, "troponin")
    with pytest.raises(ValueError, match="whole number of 5-minute grid steps"):
        hide_recent_vitals(icu_reader, stay_id, t, 0.1)
    with pytest.raises(ValueError, match="positive number"):
        hide_recent_vitals(icu_reader, stay_id, t, -6.0)
    later = len(icu_reader.notes_of(stay_id))  # past the last note of the stay
    with pytest.raises(ValueError, match="has no note"):
        remove_note(icu_reader, stay_id, t, later)
    labs = icu_reader.at(stay_id, t).value("labs")
    unmeasured = next((lab for lab in icu_reader.lab_variables if math.isnan(labs[lab])), None)
    if unmeasured is not None:
        with pytest.raises(ValueError, match="was not measured"):
            drop_lab(icu_reader, stay_id, t, unmeasured)


def test_the_risk_of_each_edit_is_the_models_on_the_edited_input_and_comes_back_when_undone(icu_reader, icu_predictor):
    stay_id, t = next((s, t) for s, t in _samples(icu_reader, "has_vitals", 200)
                      if icu_reader.at(s, t).value("labs") is not None and len(notes_at(icu_reader, s, t)) >= 2)
    original = icu_reader.at(stay_id, t)
    before = risk(icu_predictor, [original])[0]
    # hide 6 h: the model's risk on the grid built independently from the cut streams
    hidden = hide_recent_vitals(icu_reader, stay_id, t, 6.0)
    by_hand = original.with_values(vitals=Signal(_cut_grid(icu_reader, stay_id, t, 6.0), hidden.value("vitals").fs,
                                                 hidden.value("vitals").channels, units="scaled"))
    r_hidden, r_hand = risk(icu_predictor, [hidden, by_hand])
    assert r_hidden == pytest.approx(r_hand, abs=1e-6)
    # remove the newest note / drop the first measured lab
    note = notes_at(icu_reader, stay_id, t)[-1]
    lab = next(lab for lab in icu_reader.lab_variables if not math.isnan(original.value("labs")[lab]))
    edits = [hidden, remove_note(icu_reader, stay_id, t, note), drop_lab(icu_reader, stay_id, t, lab)]
    after = risk(icu_predictor, edits)
    assert all(0.0 <= r <= 1.0 for r in after)
    assert max(abs(after - before)) > 1e-4, "no edit moved the risk"
    batch = icu_predictor.batch([edits[2]])
    features = [f.name for f in icu_predictor.spec.features_of("labs") if f.kind == "numeric"]
    mask = batch.inputs["labs"]["numeric_mask"][0].numpy()
    assert not mask[features.index(lab)] and not mask[features.index(f"{lab}_age_h")]
    # undone: the empty edit is the sample itself, and the icu_reader was not changed by the edits
    undone = edited_case(icu_reader, stay_id, t, StayEdit())
    assert risk(icu_predictor, [undone])[0] == before
    assert risk(icu_predictor, [icu_reader.at(stay_id, t)])[0] == before
