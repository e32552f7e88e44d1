"""The variable registry of the synthetic ICU cohort: vital signs (``chartevents``-like) and laboratory values
(``labevents``-like) as declared EventVariables with real units, plausible ranges and MIMIC-IV item ids, and
the writer of a cohort's ``variables.csv``.

The MIMIC-IV item ids are documentation for users converting their own credentialed MIMIC-IV extract into
this long-table format (select these ``itemid`` values from ``icu.chartevents`` / ``hosp.labevents``, map
them to the variable names below, keep ``charttime - intime`` in hours). Nothing from MIMIC ships with this
project: every value of the synthetic cohort is drawn by the generator. Units are the ones MIMIC-IV records
for those items (``valueuom``); temperature is the Celsius item only (223762; 223761 is Fahrenheit and must be
converted before it may share this variable).

The plausible ranges are wide physiological limits, not reference ranges: a value outside them is kept, as
monitors record it, and counted as an artefact by ``neurofusion.data.events.read_events`` (an SpO2 probe
coming off reads near 0 %, an arterial-line flush reads about 300 mmHg).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from neurofusion.data.events import VARIABLE_COLUMNS, EventVariable

ICU_VITALS: tuple[EventVariable, ...] = (
    EventVariable("heart_rate", "vitals", "bpm", 20, 250, "heart rate", (220045,)),
    EventVariable("spo2", "vitals", "%", 50, 100, "peripheral oxygen saturation (pulse oximetry)", (220277,)),
    EventVariable("resp_rate", "vitals", "insp/min", 3, 60, "respiratory rate", (220210,)),
    EventVariable("nibp_systolic", "vitals", "mmHg", 40, 250, "non-invasive blood pressure, systolic", (220179,)),
    EventVariable("nibp_diastolic", "vitals", "mmHg", 15, 150, "non-invasive blood pressure, diastolic",
                  (220180,)),
    EventVariable("nibp_mean", "vitals", "mmHg", 25, 180, "non-invasive blood pressure, mean", (220181,)),
    EventVariable("abp_systolic", "vitals", "mmHg", 40, 250, "arterial blood pressure, systolic", (220050,)),
    EventVariable("abp_diastolic", "vitals", "mmHg", 15, 150, "arterial blood pressure, diastolic", (220051,)),
    EventVariable("abp_mean", "vitals", "mmHg", 25, 180, "arterial blood pressure, mean", (220052,)),
    EventVariable("temperature", "vitals", "°C", 30, 43, "body temperature (Celsius item only)", (223762,)),
)
ICU_LABS: tuple[EventVariable, ...] = (
    EventVariable("lactate", "labs", "mmol/L", 0.2, 30, "lactate (blood gas)", (50813,)),
    EventVariable("creatinine", "labs", "mg/dL", 0.1, 20, "creatinine", (50912,)),
    EventVariable("wbc", "labs", "K/uL", 0.1, 100, "white blood cells", (51301,)),
    EventVariable("potassium", "labs", "mEq/L", 1.5, 9, "potassium", (50971,)),
    EventVariable("sodium", "labs", "mEq/L", 100, 180, "sodium", (50983,)),
    EventVariable("bicarbonate", "labs", "mEq/L", 3, 50, "bicarbonate", (50882,)),
    EventVariable("hemoglobin", "labs", "g/dL", 3, 22, "hemoglobin", (51222,)),
    EventVariable("platelets", "labs", "K/uL", 5, 1500, "platelet count", (51265,)),
    EventVariable("bilirubin_total", "labs", "mg/dL", 0.1, 50, "bilirubin, total", (50885,)),
    EventVariable("glucose", "labs", "mg/dL", 20, 1500, "glucose", (50931,)),
)
ICU_VARIABLES: dict[str, EventVariable] = {v.name: v for v in ICU_VITALS + ICU_LABS}


def write_variables(path: str | Path, variables: Sequence[EventVariable] = ICU_VITALS + ICU_LABS) -> Path:
    """Write ``variables.csv`` (VARIABLE_COLUMNS; open range ends blank, item ids separated by spaces) so
    that ``neurofusion.data.events.read_variables`` reads the same EventVariables back."""
    path = Path(path)
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        raise ValueError(f"variable names must be unique, got {names}")
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(VARIABLE_COLUMNS)
        for v in variables:
            writer.writerow([v.name, v.table, v.unit, _number(v.low), _number(v.high), v.description,
                             " ".join(str(i) for i in v.mimic_itemids)])
    return path


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))
