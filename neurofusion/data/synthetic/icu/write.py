"""A synthetic ICU cohort folder for N stays: ``cohort.csv`` (case_id, split, site, stay_hours, died,
demographics), the long tables ``vitals.csv`` / ``labs.csv`` (case_id, time, variable, value, unit) and
``notes.csv`` (case_id, time, text), ``variables.csv``, ``features.csv`` (the demographic columns),
``ground_truth.csv``, ``cohort.json`` and a README. Times are hours since admission to 4 decimals; each table
is sorted by stay, then time, so every stream runs forward in file order. The task's label at hour t is
``died == 1 and stay_hours - t <= 48`` for 0 <= t < stay_hours (read by neurofusion.data.timed).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from neurofusion.data.features import FeatureSpec, write_features
from neurofusion.data.modalities import modalities_to_dicts
from neurofusion.data.schema import SPLITS
from neurofusion.data.synthetic.icu.cohort import TRUTH_COLUMNS, IcuStay, draw_cohort, synthesize_stay
from neurofusion.data.synthetic.icu.raters import write_icu_rankings
from neurofusion.data.synthetic.icu.trajectory import ADMISSION_TYPES, DIAGNOSES
from neurofusion.data.synthetic.icu.variables import ICU_VARIABLES, write_variables
from neurofusion.data.tasks import TASKS
from neurofusion.data.timed import DEFAULT_HOURS

DEMOGRAPHIC_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("age", "numeric", "years", description="age at admission", modality="demographics"),
    FeatureSpec("sex", "categorical", categories=("F", "M"), description="sex", modality="demographics"),
    FeatureSpec("admission_type", "categorical", categories=ADMISSION_TYPES, description="admission type",
                modality="demographics"),
    FeatureSpec("diagnosis", "categorical", categories=DIAGNOSES, description="admission diagnosis",
                modality="demographics"),
)

COHORT_COLUMNS: tuple[str, ...] = ("case_id", "split", "site", "stay_hours", "died", "age", "sex",
                                   "admission_type", "diagnosis")
RANKED_SPLITS = ("test",)  # as the cardio and cancer generators
_FLOAT = "%.10g"  # times to 4 decimals up to 168 h and lab values print exactly


def synthesize_cohort(n: int, seed: int, splits: Sequence[str] = SPLITS) -> list[IcuStay]:
    """The stays of the ``splits`` of the ``n``-stay cohort drawn with ``seed`` (the same stays whichever
    splits are asked for)."""
    return [synthesize_stay(draw, seed) for draw in draw_cohort(n, seed) if draw.split in splits]


def write_icu_cohort(folder: str | Path, n: int, seed: int, *, splits: Sequence[str] = SPLITS,
                     compress_vitals: bool = False, info: dict | None = None) -> list[IcuStay]:
    """Write the cohort folder (module docstring) for the ``splits`` of ``n`` stays drawn with ``seed``;
    returns the stays. compress_vitals: write ``vitals.csv.gz`` (about a fifth of the size; the reader takes
    either). info: extra cohort.json entries (the generator's provenance)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stays = synthesize_cohort(n, seed, splits)
    cohort = pd.DataFrame([{"case_id": s.plan.case_id, "split": s.plan.split, "site": s.plan.site,
                            "stay_hours": s.plan.stay_hours, "died": int(s.plan.died), **s.demographics}
                           for s in stays], columns=list(COHORT_COLUMNS))
    cohort["age"] = cohort["age"].astype("Int64")
    cohort.to_csv(folder / "cohort.csv", index=False, float_format=_FLOAT)
    for table in ("vitals", "labs"):
        name = f"{table}.csv.gz" if compress_vitals and table == "vitals" else f"{table}.csv"
        # mtime=0: the same stays give the same bytes whenever they are written
        compression = {"method": "gzip", "mtime": 0} if name.endswith(".gz") else None
        _events(stays, table).to_csv(folder / name, index=False, float_format=_FLOAT, compression=compression)
    notes = pd.DataFrame([(s.plan.case_id, round(n.time, 4), n.text) for s in stays for n in s.notes],
                         columns=["case_id", "time", "text"])
    notes.to_csv(folder / "notes.csv", index=False, float_format=_FLOAT)
    write_variables(folder / "variables.csv")
    write_features(folder / "features.csv", list(DEMOGRAPHIC_FEATURES))
    spec = TASKS["icu"]
    cohort_info = {"task": "icu", "classes": list(spec.classes), "horizon_hours": spec.horizon,
                   "time_unit": "hours", "prediction_hours": list(DEFAULT_HOURS),
                   "modalities": modalities_to_dicts(spec.modalities), **(info or {})}
    (folder / "cohort.json").write_text(json.dumps(cohort_info, indent=2) + "\n", encoding="utf-8")
    truth = pd.DataFrame([s.truth for s in stays], columns=list(TRUTH_COLUMNS))
    truth.to_csv(folder / "ground_truth.csv", index=False, float_format=_FLOAT)
    ranked = truth[truth["case_id"].isin([s.plan.case_id for s in stays if s.plan.split in RANKED_SPLITS])]
    if len(ranked):  # the simulated annotation study covers the held-out stays, at each prediction hour
        write_icu_rankings(folder, ranked, DEFAULT_HOURS, seed)
    return stays


def _events(stays: list[IcuStay], table: str) -> pd.DataFrame:
    """(case_id, time, variable, value, unit) of every stay, stays in cohort order, rows by time."""
    parts = [getattr(s, table).assign(case_id=s.plan.case_id) for s in stays]
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["time", "variable", "value"])
    rows["time"] = rows["time"].round(4)
    rows["unit"] = rows["variable"].map({name: v.unit for name, v in ICU_VARIABLES.items()})
    return rows[["case_id", "time", "variable", "value", "unit"]]
