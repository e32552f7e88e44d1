"""Simulated clinician rankings for the synthetic ICU cohort, one per stay and prediction hour: the
ground-truth evidence of each modality as of hour t (``icu_evidence``), perceived by the synthetic raters of
``neurofusion.data.synthetic.raters`` (Gaussian noise, a lean on vitals or labs, ties to the lean, skips),
written as ``clinician_rankings.csv`` rows keyed by the sample id ``f"{stay_id}@{t:g}h"`` (the ICU task's case
ids).

Figure 2C of the paper is the target shape: demographics lead at admission, vital-sign trends take over as
the stay goes on, notes stay in between. These rankings are synthetic and labelled so (rater names).

Measured on the bundled sample (sample_data/icu: 200 stays, rater seed 2026, presence from its tables): the
evidence puts demographics first in 95 % of samples at 0 and 6 h (the stays without them lack it) and 87 % at
12 h, vitals first in 96-97 % at 24-48 h; the raters' rankings have vitals first in 0 / 3 / 30 / 80 / 80 / 74 %
of rows at 0 / 6 / 12 / 24 / 36 / 48 h and demographics first in 100 / 95 / 66 / 4 / 1 / 0 % (nothing else is
recorded at hour 0); mean Kendall tau with the evidence ordering 0.80 / 0.65 / 0.76 for raters A (leans on
vitals) / B (leans on labs) / C (neutral), and 0.60 between raters (ICU_NOISE was calibrated to that).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from neurofusion.data.annotations import write_rankings
from neurofusion.data.synthetic.icu.cohort import ICU_MODALITIES
from neurofusion.data.synthetic.raters import RaterSpec, simulate_rankings, synthetic_raters
from neurofusion.data.timed import sample_id, table_file

RANKINGS_FILE = "clinician_rankings.csv"
EVENT_MODALITIES: tuple[str, ...] = ("vitals", "labs", "notes")  # recorded in time-stamped tables
# Demographics: DEMOGRAPHICS_START at admission, fading to DEMOGRAPHICS_FLOOR with time constant DEMOGRAPHICS_TAU_H.
DEMOGRAPHICS_START, DEMOGRAPHICS_FLOOR, DEMOGRAPHICS_TAU_H = 0.8, 0.2, 12.0
# What a time-stamped modality shows of the current state, before it shows the course, once data accumulated.
BACKGROUND: dict[str, float] = {"vitals": 0.45, "labs": 0.30, "notes": 0.25}
ACCUMULATE_TAU_H = 12.0
COURSE_TAU_H = 12.0  # how fast the evidence of a course that has shown saturates
INTERACTION_EVIDENCE = 0.9  # each cue of a planted interaction, once both are recorded
# The ICU raters: A leans on the bedside monitor (vitals; the ICU has no imaging), B on labs, C is neutral.
# Noise from calibrate_noise on the bundled sample's evidence (sample_data/icu, DEFAULT_HOURS, presence from its
# tables) to TARGET_TAU: the evidence of the modalities lies closer together than cardio's strengths, so
# less noise gives the same agreement.
ICU_NOISE = 0.065
ICU_RATERS: tuple[RaterSpec, ...] = synthetic_raters("vitals", "labs", ICU_NOISE)
_TRUTH_NEEDED = ("case_id", "stay_hours", "missing_modalities", *(f"{m}_signal_from_h" for m in EVENT_MODALITIES))


def icu_evidence(truth_row: Mapping[str, object], t: float) -> dict[str, float]:
    """Ground-truth evidence strength in [0, 1] of each ICU modality for the stay of ``truth_row`` (a row of
    ground_truth.csv: TRUTH_COLUMNS of the ICU cohort) as of hour ``t``, from the row alone:

        demographics  d(t) = 0.2 + 0.6 exp(-t / 12 h)                                (0.8 at admission, fading)
        m in vitals, labs, notes, with b_m(t) = B_m (1 - exp(-t / 12 h)), B = 0.45 / 0.30 / 0.25:
            e_m(t) = b_m(t)                                          if m has not shown the course by t
            e_m(t) = 1 - (1 - b_m(t)) * 0.5 exp(-(t - s_m) / 12 h)   once s_m = <m>_signal_from_h <= t

    so a modality jumps halfway from its background to 1 the hour it shows the course and saturates at 1 the
    longer it has shown it; a stable course (no signal hour) leaves vitals, labs and notes at their
    background, on which vitals overtake the fading demographics at 17 h (labs and notes after 1-2 days).
    In a stay the cross-modal rule decides (``interaction_pair`` and ``interaction_from_h`` set, cohorts
    written with an interaction share), each modality of the pair is at least INTERACTION_EVIDENCE from
    ``interaction_from_h`` on, the hour both cues are recorded: above demographics' 0.8 and the background
    of the others (such a stay's course is stable), so the raters rank the pair first and second.
    A modality named in ``missing_modalities`` is 0 (and never ranked).
    Returns {modality: strength} in ICU_MODALITIES order."""
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"hour t must be finite and >= 0, got {t!r}")
    missing = _missing(truth_row)
    evidence = {"demographics": DEMOGRAPHICS_FLOOR + (DEMOGRAPHICS_START - DEMOGRAPHICS_FLOOR)
                * math.exp(-t / DEMOGRAPHICS_TAU_H)}
    for m in EVENT_MODALITIES:
        background = BACKGROUND[m] * (1.0 - math.exp(-t / ACCUMULATE_TAU_H))
        shown = _hour(truth_row, f"{m}_signal_from_h")
        if shown is not None and shown <= t:
            evidence[m] = 1.0 - (1.0 - background) * 0.5 * math.exp(-(t - shown) / COURSE_TAU_H)
        else:
            evidence[m] = background
    decided = _hour(truth_row, "interaction_from_h")
    if decided is not None and decided <= t:
        for m in str(truth_row.get("interaction_pair")).split("+"):
            if m not in evidence:
                raise ValueError(f"interaction_pair of {truth_row.get('case_id')!r} names {m!r}; expected two of "
                                 f"{ICU_MODALITIES} joined by '+'")
            evidence[m] = max(evidence[m], INTERACTION_EVIDENCE)
    return {m: 0.0 if m in missing else float(evidence[m]) for m in ICU_MODALITIES}


def evidence_table(truth: pd.DataFrame, hours: Sequence[float],
                   recorded_from: pd.DataFrame | None = None) -> pd.DataFrame:
    """``icu_evidence`` for every stay of ``truth`` at every hour t of ``hours`` with t < stay_hours ->
    one row per sample: case_id (the sample id "ICU-00012@24h"), stay_id, hour, strength_<modality> for
    ICU_MODALITIES, blank (NaN) where the sample does not have the modality: missing from the stay, or, with
    ``recorded_from`` (``first_recorded``: index stay id, columns vitals/labs/notes, the first hour each was
    recorded, NaN = never), not recorded at or before t. Rows by stay in ``truth`` order, then by hour; this is
    the ground-truth view of the ICU samples, in ground_truth.csv's strength_<modality> form."""
    _check_truth(truth)
    hours = _check_hours(hours)
    if recorded_from is not None:
        absent = [m for m in EVENT_MODALITIES if m not in recorded_from.columns]
        unknown = sorted(set(truth["case_id"].astype(str)) - set(recorded_from.index.astype(str)))
        if absent or unknown:
            raise ValueError(f"recorded_from needs columns {EVENT_MODALITIES} (missing {absent}) and a row for "
                             f"every stay (missing {unknown[:5]}{' ...' if len(unknown) > 5 else ''})")
    rows = []
    for _, stay in truth.iterrows():
        stay_id, length = str(stay["case_id"]), float(stay["stay_hours"])
        first = recorded_from.loc[stay_id] if recorded_from is not None else None
        for t in hours:
            if t >= length:
                continue
            strengths = icu_evidence(stay, t)
            row: dict[str, object] = {"case_id": sample_id(stay_id, t), "stay_id": stay_id, "hour": t}
            for m in ICU_MODALITIES:
                present = m not in _missing(stay) and (
                    first is None or m not in EVENT_MODALITIES or (pd.notna(first[m]) and first[m] <= t))
                row[f"strength_{m}"] = strengths[m] if present else np.nan
            rows.append(row)
    columns = ["case_id", "stay_id", "hour", *(f"strength_{m}" for m in ICU_MODALITIES)]
    return pd.DataFrame(rows, columns=columns).astype({f"strength_{m}": float for m in ICU_MODALITIES})


def simulate_icu_rankings(truth: pd.DataFrame, hours: Sequence[float], seed: int,
                          raters: tuple[RaterSpec, ...] = ICU_RATERS,
                          recorded_from: pd.DataFrame | None = None) -> pd.DataFrame:
    """Simulated rankings of every sample of ``evidence_table(truth, hours, recorded_from)`` -> rows
    (case_id = sample id, rater, vitals, labs, notes, demographics): ranks 1..k among the k modalities the
    sample has (strongest perceived evidence first: each rater's noise, lean and tie rule, by
    ``simulate_rankings``), blank for the others; a sample a rater skipped (its skip_rate) or with
    no modality has no row. Rows by sample, then rater.

    Each sample's draws are seeded by ``seed`` and its sample id alone, so any subset of stays or hours
    regenerates the same rows."""
    evidence = evidence_table(truth, hours, recorded_from)
    strengths = evidence[["case_id", *(f"strength_{m}" for m in ICU_MODALITIES)]]
    parts = [simulate_rankings(strengths.iloc[[i]], _sample_seed(seed, case_id), raters, modalities=ICU_MODALITIES)
             for i, case_id in enumerate(strengths["case_id"])]
    columns = ["case_id", "rater", *ICU_MODALITIES]
    if not parts:
        return pd.DataFrame(columns=columns)
    rankings = pd.concat(parts, ignore_index=True)[columns]
    return rankings.astype({m: "Int64" for m in ICU_MODALITIES})


def first_recorded(folder: str | Path) -> pd.DataFrame:
    """The first hour each time-stamped modality was recorded for each stay of the cohort folder -> frame
    indexed by stay id (cohort.csv order) with columns vitals, labs, notes (NaN = never recorded), from the
    case_id and time columns of vitals.csv, labs.csv and notes.csv (each may be gzip-compressed, ``.csv.gz``;
    read, not validated: the events reader validates these tables)."""
    folder = Path(folder)
    stays = _columns(folder / "cohort.csv", ["case_id"])["case_id"]
    first = pd.DataFrame(index=pd.Index(stays, name="case_id"))
    for m in EVENT_MODALITIES:
        path = table_file(folder, f"{m}.csv")
        rows = _columns(path, ["case_id", "time"])
        times = pd.to_numeric(rows["time"], errors="coerce")
        if times.isna().any():
            line = int(np.flatnonzero(times.isna().to_numpy())[0]) + 2
            raise ValueError(f"{path} line {line}: time {rows['time'].iloc[line - 2]!r} is not a number (hours "
                             "since admission expected)")
        first[m] = times.groupby(rows["case_id"]).min().reindex(first.index)
    return first


def write_icu_rankings(folder: str | Path, truth: pd.DataFrame, hours: Sequence[float], seed: int,
                       raters: tuple[RaterSpec, ...] = ICU_RATERS) -> pd.DataFrame:
    """Simulate the rankings of the cohort folder's samples and write them to ``folder/clinician_rankings.csv``
    (case_id, rater, vitals, labs, notes, demographics; read back by
    ``annotations.read_rankings(..., modalities=ICU_MODALITIES)``). A modality counts for a sample only once
    it was recorded at or before the hour (``first_recorded`` of the folder's tables), as the ICU task defines
    presence. Returns the rankings written."""
    folder = Path(folder)
    rankings = simulate_icu_rankings(truth, hours, seed, raters, recorded_from=first_recorded(folder))
    write_rankings(folder / RANKINGS_FILE, rankings, modalities=ICU_MODALITIES)
    return rankings


def _sample_seed(seed: int, sample_id: str) -> int:
    """A 64-bit seed from the cohort seed and the sample id (hashlib: the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}|{sample_id}".encode(), digest_size=8).digest(), "little")


def _missing(truth_row: Mapping[str, object]) -> set[str]:
    value = truth_row.get("missing_modalities")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return set()
    names = set(str(value).split())
    unknown = names - set(ICU_MODALITIES)
    if unknown:
        raise ValueError(f"missing_modalities of {truth_row.get('case_id')!r} names {sorted(unknown)}; "
                         f"expected names from {ICU_MODALITIES}")
    return names


def _hour(truth_row: Mapping[str, object], column: str) -> float | None:
    value = truth_row.get(column)
    if value is None or value == "" or pd.isna(value):
        return None
    return float(value)


def _check_truth(truth: pd.DataFrame) -> None:
    absent = [c for c in _TRUTH_NEEDED if c not in truth.columns]
    if absent:
        raise ValueError(f"ICU ground truth needs columns {_TRUTH_NEEDED}; missing {absent}")
    if truth["case_id"].duplicated().any():
        raise ValueError(f"ICU ground truth lists stay {truth['case_id'][truth['case_id'].duplicated()].iloc[0]!r} "
                         "twice; one row per stay expected")


def _check_hours(hours: Sequence[float]) -> list[float]:
    values = [float(t) for t in hours]
    bad = [t for t in values if not math.isfinite(t) or t < 0]
    if bad or len({sample_id("", t) for t in values}) != len(values):
        raise ValueError(f"prediction hours must be distinct, finite and >= 0; got {list(hours)}")
    return values


def _columns(path: Path, needed: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the ICU cohort folder's tables are needed to know what was "
                                "recorded by each hour")
    header = pd.read_csv(path, nrows=0).columns
    absent = [c for c in needed if c not in header]
    if absent:
        raise ValueError(f"{path} needs columns {needed}; missing {absent}")
    return pd.read_csv(path, usecols=needed, dtype={"case_id": str})
