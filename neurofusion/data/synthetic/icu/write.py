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
from neurofusion.data.synthetic.icu.interactions import INTERACTION_COLUMNS, interactions_readme
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


def synthesize_cohort(n: int, seed: int, splits: Sequence[str] = SPLITS,
                      interaction_share: float = 0.0) -> list[IcuStay]:
    """The stays of the ``splits`` of the ``n``-stay cohort drawn with ``seed`` (the same stays whichever
    splits are asked for), that share of them decided by the interaction rule (icu.interactions)."""
    return [synthesize_stay(draw, seed, interaction_share) for draw in draw_cohort(n, seed) if draw.split in splits]


def write_icu_cohort(folder: str | Path, n: int, seed: int, *, splits: Sequence[str] = SPLITS,
                     compress_vitals: bool = False, info: dict | None = None,
                     interaction_share: float = 0.0) -> list[IcuStay]:
    """Write the cohort folder (module docstring) for the ``splits`` of ``n`` stays drawn with ``seed``;
    returns the stays. compress_vitals: write ``vitals.csv.gz`` (about a fifth of the size; the reader takes
    either). info: extra cohort.json entries (the generator's provenance). interaction_share: the probability,
    in [0, 1], that a stay is decided by the cross-modal rule of icu.interactions; above 0, ground_truth.csv
    gains the INTERACTION_COLUMNS and the README a section on the rule (at 0 every file is as without it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stays = synthesize_cohort(n, seed, splits, interaction_share)
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
    columns = list(TRUTH_COLUMNS) + (list(INTERACTION_COLUMNS) if interaction_share > 0 else [])
    truth = pd.DataFrame([s.truth for s in stays], columns=columns)
    truth.to_csv(folder / "ground_truth.csv", index=False, float_format=_FLOAT)
    readme = icu_readme(cohort_info, stays)
    if interaction_share > 0:
        readme += interactions_readme(interaction_share, truth)
    (folder / "README.md").write_text(readme, encoding="utf-8")
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


def icu_readme(info: dict, stays: list[IcuStay]) -> str:
    """The cohort folder's README: what it is, how to regenerate it, the task, and every file."""
    generator = info.get("generator", {})
    command = generator.get("command", "python -m neurofusion.data generate --task icu ...")
    died = sum(s.plan.died for s in stays)
    part = (f"It holds the {', '.join(generator['splits'])} part of a {generator['n']}-stay cohort drawn with seed "
            f"{generator['seed']}; the other splits come from the same command with `--splits` naming them."
            if generator else "")
    hours = ", ".join(f"{h:g}" for h in info["prediction_hours"])
    return f"""# Synthetic ICU cohort ({len(stays)} stays)

**SYNTHETIC DATA. No real patient is represented; not for clinical use.**

Regenerate it (into an empty folder) with:

    {command}

That gives the same stays, rows and notes exactly. {part}
{died} of the {len(stays)} stays end in death in the ICU.

Task: death within the next {info['horizon_hours']:g} hours, predicted at any hour t of the stay from what was
recorded up to t (paper section 6.1). The label at t is `dies_within_48h` when the patient died and the stay
ended at most 48 h after t; a stay that has ended by t is not scored at t. The cohort's samples are the stays at
hours {hours} (`ICU-00012@24h`); neurofusion/data/timed.py says what the model reads at t.

The stays come from a latent hourly severity (course deteriorating, stable or recovering; admission
diagnosis sepsis, cardiogenic shock or respiratory failure; demographics as a prior) and a death hazard on it
(neurofusion/data/synthetic/icu/trajectory.py states the model). Missing modalities follow the paper's
Table 1 (72 % complete, 22 % missing one, 6 % two or more), informatively: nursing notes are not exported at
site_c three times as often, labs are missing twice as often for elective admissions. A missing modality has
no rows (or blank demographic cells).

- `cohort.csv`: one row per stay: split, site, stay_hours (admission to death or discharge), died (1 = death
  in the ICU), and the demographics (age, sex, admission_type, diagnosis).
- `vitals.csv.gz` (gzip-compressed CSV) and `labs.csv`: long tables (case_id, time in hours since admission,
  variable, value, unit) in the shape of MIMIC-IV `chartevents` / `labevents`: monitor values every 5
  minutes, cuff pressures every 15-30 min, temperature every 4 h, labs every 6-24 h; gaps, sensor drop-outs
  and artefacts kept as monitors record them (an SpO2 probe coming off reads near 0 %, an arterial-line flush
  about 300 mmHg).
- `notes.csv`: time-stamped nursing notes (case_id, time, text) that follow the course ("increasing pressor
  requirement", "weaned to 2 L nasal cannula") with negations.
- `variables.csv`: each variable's table, unit, plausible range and the MIMIC-IV item ids it stands for.
- `features.csv`: the demographic columns' kinds and categories.
- `ground_truth.csv`: per stay the diagnosis, course, onset and trend hours, the hourly severity, and from
  which hour each modality carries the course (`<modality>_signal_from_h`).
- `clinician_rankings.csv`: modality rankings (1 = most important) of the test stays at each prediction hour
  by the simulated raters synthetic_rater_A, synthetic_rater_B, synthetic_rater_C: readings
  (noise calibrated to an assumed expert tau of 0.60, a lean per rater) of the ground-truth evidence at that
  hour (neurofusion/data/synthetic/icu/raters.py), standing in for a clinician annotation study.
- `cohort.json`: task, classes, horizon, prediction hours, the declared modalities and this provenance.
"""
