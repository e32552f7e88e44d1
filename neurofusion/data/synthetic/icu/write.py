"""A synthetic ICU cohort folder for N stays: ``cohort.csv`` (case_id, split, site, stay_hours, died,
demographics), the long tables ``vitals.csv`` / ``labs.csv`` (case_id, time, variable, value, unit) and
``notes.csv`` (case_id, time, text), ``variables.csv`` and ``ground_truth.csv``. Times are hours since
admission to 4 decimals; each table is sorted by stay, then time, so every stream runs forward in file order.
The task's label at hour t is ``died == 1 and stay_hours - t <= 48`` for 0 <= t < stay_hours.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from neurofusion.data.synthetic.icu.cohort import TRUTH_COLUMNS, IcuStay, draw_cohort, synthesize_stay
from neurofusion.data.synthetic.icu.variables import ICU_VARIABLES, write_variables

COHORT_COLUMNS: tuple[str, ...] = ("case_id", "split", "site", "stay_hours", "died", "age", "sex",
                                   "admission_type", "diagnosis")
_FLOAT = "%.10g"  # times to 4 decimals up to 168 h and lab values print exactly


def synthesize_cohort(n: int, seed: int) -> list[IcuStay]:
    """The ``n`` stays of the cohort drawn with ``seed``."""
    return [synthesize_stay(draw, seed) for draw in draw_cohort(n, seed)]


def write_icu_cohort(folder: str | Path, n: int, seed: int) -> list[IcuStay]:
    """Write the cohort folder (module docstring) for ``n`` stays drawn with ``seed``; returns the stays."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stays = synthesize_cohort(n, seed)
    cohort = pd.DataFrame([{"case_id": s.plan.case_id, "split": s.plan.split, "site": s.plan.site,
                            "stay_hours": s.plan.stay_hours, "died": int(s.plan.died), **s.demographics}
                           for s in stays], columns=list(COHORT_COLUMNS))
    cohort["age"] = cohort["age"].astype("Int64")
    cohort.to_csv(folder / "cohort.csv", index=False, float_format=_FLOAT)
    for table in ("vitals", "labs"):
        _events(stays, table).to_csv(folder / f"{table}.csv", index=False, float_format=_FLOAT)
    notes = pd.DataFrame([(s.plan.case_id, round(n.time, 4), n.text) for s in stays for n in s.notes],
                         columns=["case_id", "time", "text"])
    notes.to_csv(folder / "notes.csv", index=False, float_format=_FLOAT)
    write_variables(folder / "variables.csv")
    truth = pd.DataFrame([s.truth for s in stays], columns=list(TRUTH_COLUMNS))
    truth.to_csv(folder / "ground_truth.csv", index=False, float_format=_FLOAT)
    return stays


def _events(stays: list[IcuStay], table: str) -> pd.DataFrame:
    """(case_id, time, variable, value, unit) of every stay, stays in cohort order, rows by time."""
    parts = [getattr(s, table).assign(case_id=s.plan.case_id) for s in stays]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["time", "variable", "value"])
    rows["time"] = rows["time"].round(4)
    rows["unit"] = rows["variable"].map({name: v.unit for name, v in ICU_VARIABLES.items()})
    return rows[["case_id", "time", "variable", "value", "unit"]]
