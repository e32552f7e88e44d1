"""Time-stamped long tables (neurofusion.data.events): validation with file/line/field, and the view of a
stay as of hour t on hand-made streams whose answers are worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurofusion.data.errors import CohortError
from neurofusion.data.events import (
    EventVariable,
    as_of,
    last_observation,
    read_events,
    read_notes,
    read_variables,
    regular_grid,
)

VARIABLES = """variable,table,unit,low,high,description,mimic_itemids
heart_rate,vitals,bpm,20,250,heart rate,220045
spo2,vitals,%,50,100,peripheral oxygen saturation,220277
lactate,labs,mmol/L,0,30,lactate,50813
"""
STAYS = {"S1": 30.0, "S2": 10.0}


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def variables(tmp_path):
    return read_variables(_write(tmp_path, "variables.csv", VARIABLES))


def test_variables_are_read_with_units_ranges_and_item_ids(variables):
    assert list(variables) == ["heart_rate", "spo2", "lactate"]
    assert variables["spo2"] == EventVariable("spo2", "vitals", "%", 50.0, 100.0, "peripheral oxygen saturation", (220277,))


@pytest.mark.parametrize("row, field, words", [
    ("heart_rate,vitals,bpm,,,again,", "variable", "declared twice"),
    ("temp,waveforms,C,,,,", "table", "vitals, labs"),
    ("temp,vitals, ,,,,", "unit", "no unit"),
    ("temp,vitals,C,40,30,,", "low", "empty"),
    ("temp,vitals,C,x,,,", "low", "not a number"),
    ("temp,vitals,C,,,,22 b", "mimic_itemids", "item ids"),
])
def test_a_bad_variable_declaration_names_line_and_field(tmp_path, row, field, words):
    path = _write(tmp_path, "variables.csv", VARIABLES + row + "\n")
    with pytest.raises(CohortError) as err:
        read_variables(path)
    assert err.value.line == 5 and err.value.field == field and words in str(err.value)


def test_events_are_read_sorted_per_stream_with_artefacts_counted(tmp_path, variables):
    path = _write(tmp_path, "vitals.csv", "case_id,time,variable,value,unit\n"
                  "S1,0.5,heart_rate,88,bpm\nS1,0.1,spo2,97,%\nS2,1,heart_rate,120,bpm\n"
                  "S1,0.6,spo2,0,%\nS1,1.5,heart_rate,90,bpm\n")
    table = read_events(path, variables, STAYS, "vitals")
    assert table.of("S1")[["time", "variable", "value"]].values.tolist() == [
        [0.5, "heart_rate", 88.0], [1.5, "heart_rate", 90.0], [0.1, "spo2", 97.0], [0.6, "spo2", 0.0]]
    assert table.artefacts == {"heart_rate": 0, "spo2": 1}  # SpO2 0 %: a probe-off artefact, kept and counted
    assert table.of("nobody").empty


@pytest.mark.parametrize("row, field, words", [
    ("S9,1,heart_rate,80,bpm", "case_id", "not a stay"),
    ("S1,1,lactate,2.0,mmol/L", "variable", "not a declared vitals variable"),
    ("S1,1,heart_rate,80,beats/min", "unit", "declares 'bpm'"),
    ("S1,31,heart_rate,80,bpm", "time", "outside the stay"),
    ("S1,-0.5,heart_rate,80,bpm", "time", "outside the stay"),
    ("S1,soon,heart_rate,80,bpm", "time", "not a time"),
    ("S1,1,heart_rate,high,bpm", "value", "not a number"),
    ("S1,0.2,heart_rate,80,bpm", "time", "sort each stream"),
])
def test_a_bad_event_row_names_file_line_and_field(tmp_path, variables, row, field, words):
    path = _write(tmp_path, "vitals.csv", "case_id,time,variable,value,unit\nS1,0.5,heart_rate,88,bpm\n" + row + "\n")
    with pytest.raises(CohortError) as err:
        read_events(path, variables, STAYS, "vitals")
    assert err.value.line == 3 and err.value.field == field and words in str(err.value), str(err.value)
    assert str(path) in str(err.value)


def test_a_missing_column_is_named(tmp_path, variables):
    path = _write(tmp_path, "labs.csv", "case_id,time,variable,value\nS1,1,lactate,2\n")
    with pytest.raises(CohortError, match=r"required column\(s\) unit missing"):
        read_events(path, variables, STAYS, "labs")


def test_notes_are_validated_and_sorted(tmp_path):
    path = _write(tmp_path, "notes.csv", 'case_id,time,text\nS2,3,"weaned to 2 L nasal cannula"\n'
                  'S1,1,"no pressor requirement"\nS1,4.5,"increasing pressor requirement"\n')
    notes = read_notes(path, STAYS)
    assert notes.values.tolist() == [["S1", 1.0, "no pressor requirement"],
                                     ["S1", 4.5, "increasing pressor requirement"],
                                     ["S2", 3.0, "weaned to 2 L nasal cannula"]]
    bad = _write(tmp_path, "bad.csv", 'case_id,time,text\nS1,1,"a"\nS1,2,"  "\n')
    with pytest.raises(CohortError) as err:
        read_notes(bad, STAYS)
    assert (err.value.line, err.value.field) == (3, "text")


# -------------------------------------------------------------------------------------- as of hour t


def _stream(*rows: tuple[float, str, float]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["time", "variable", "value"])


def test_the_grid_by_hand():
    # 1-hour steps over 4 hours ending at t = 10: steps (6,7], (7,8], (8,9], (9,10]
    rows = _stream((5.0, "hr", 70.0), (7.0, "hr", 80.0), (7.5, "hr", 85.0), (10.0, "hr", 90.0), (10.5, "hr", 999.0),
                   (8.2, "spo2", 95.0))
    grid = regular_grid(rows, ["hr", "spo2", "rr"], 10.0, window_h=4.0, step_h=1.0)
    assert grid.times.tolist() == [7.0, 8.0, 9.0, 10.0]
    # hr: 70 before the window carries into step 0; 7.0 ends step 0 (80); step 1 holds 85; step 2 carries 85;
    # 10.0 is known at t = 10 (90); 10.5 is after t and never seen
    assert grid.values[0].tolist() == [80.0, 85.0, 85.0, 90.0]
    assert grid.measured[0].tolist() == [True, True, False, True]
    assert grid.values[1].tolist() == [0.0, 0.0, 95.0, 95.0] and grid.measured[1].tolist() == [False, False, True, False]
    assert not grid.values[2].any() and not grid.measured[2].any()  # never recorded: 0, unmeasured


def test_nothing_recorded_after_t_changes_the_view_at_t_to_the_bit():
    rng = np.random.default_rng(0)
    times = np.sort(rng.uniform(0, 48, 400))
    rows = _stream(*[(t, ["hr", "sbp", "lactate"][k % 3], float(rng.normal(80, 10))) for k, t in enumerate(times)])
    for t in (0.0, 6.0, 12.3, 24.0, 36.0):
        later = rows["time"] > t
        changed = rows.copy()
        changed.loc[later, "value"] = rng.normal(0, 1000, int(later.sum()))  # anything after t
        a = regular_grid(rows, ["hr", "sbp"], t, window_h=12.0)
        b = regular_grid(changed, ["hr", "sbp"], t, window_h=12.0)
        assert a.values.tobytes() == b.values.tobytes() and np.array_equal(a.measured, b.measured)
        np.testing.assert_equal(last_observation(rows, ["lactate"], t), last_observation(changed, ["lactate"], t))


def test_last_observation_and_its_age():
    rows = _stream((2.0, "lactate", 1.8), (8.0, "lactate", 4.2), (12.0, "lactate", 6.0), (9.0, "wbc", 14.0))
    values, ages = last_observation(rows, ["lactate", "wbc", "creatinine"], 10.0)
    assert values["lactate"] == 4.2 and ages["lactate"] == 2.0
    assert values["wbc"] == 14.0 and ages["wbc"] == 1.0
    assert math.isnan(values["creatinine"]) and math.isnan(ages["creatinine"])
    assert as_of(rows, 8.0)["time"].tolist() == [2.0, 8.0]  # a value recorded at exactly t is known at t


def test_the_grid_rejects_a_window_that_is_not_whole_steps():
    with pytest.raises(ValueError, match="whole number of steps"):
        regular_grid(_stream((1.0, "hr", 80.0)), ["hr"], 10.0, window_h=1.0, step_h=0.3)
