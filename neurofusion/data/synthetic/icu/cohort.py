"""The synthetic ICU cohort (paper section 6.1, Table 1): one stay = admission diagnosis and split (cohort
draw), then site, demographics, course, hourly severity, outcome and missing modalities (``plan_stay``, the
model in ``trajectory``); then vitals, labs and nursing notes rendered from the severity, and the stay's
ground-truth row saying which modality carries the signal from which hour.

Every random choice for stay ``i`` comes from generators seeded by ``(seed, i)`` after the cohort-level
diagnosis and split draw, so any subset of a cohort regenerates identically.

Missingness (paper Table 1, ICU): 72 % of stays complete, 22 % missing one modality, 6 % two or more (5 %
two, 1 % three). It is informative: notes are the most often missing, three times as often at site_c (its
nursing documentation is not exported); labs twice as often for elective admissions (fewer tests ordered).
A missing modality has no rows (vitals, labs, notes) or blank demographic columns in cohort.csv.

Measured on 400 stays (seed 9): of the deteriorating stays, vitals show the course in 90 % (median 5.6 h
after onset), labs in 75 % (12.3 h), notes in 70 % (7.5 h); of the recovering stays 93 % (9.5 h), 83 %
(17.1 h), 61 % (10.9 h); the rest end or lose the modality first. 62 % of stays have an arterial line;
8.3 artefact values per stay (0.22 % of vital rows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from neurofusion.data.synthetic.icu.interactions import (
    decided_plan, draw_icu_interaction, first_spo2_at_or_after, interaction_truth, target_notes,
)
from neurofusion.data.synthetic.icu.labs import render_labs
from neurofusion.data.synthetic.icu.notes import Note, write_notes
from neurofusion.data.synthetic.icu.trajectory import (
    ADMISSION_PRIOR, ADMISSION_TYPES, COURSE_PRIOR, COURSES, DIAGNOSES, DIAGNOSIS_PRIOR, StayPlan, death_time,
    draw_severity, planned_discharge, prior_severity, trend_hour,
)
from neurofusion.data.synthetic.icu.vitals import render_vitals
from neurofusion.data.synthetic.splits import draw_strata

ICU_MODALITIES: tuple[str, ...] = ("vitals", "labs", "notes", "demographics")
SITES: dict[str, float] = {"site_a": 0.40, "site_b": 0.35, "site_c": 0.25}
MISSING_COUNT_P = {0: 0.72, 1: 0.22, 2: 0.05, 3: 0.01}
MISSING_WEIGHT = (0.3, 1.0, 1.2, 0.5)  # ICU_MODALITIES order, before the site and admission factors
TRUTH_COLUMNS: tuple[str, ...] = (
    "case_id", "diagnosis", "course", "onset_hour", "trend_hour", "prior_severity", "severity_admission",
    "severity_peak", "died", "stay_hours", *(f"{m}_signal_from_h" for m in ICU_MODALITIES), "missing_modalities",
    "arterial_line", "vitals_artefacts", "severity_hourly",
)


@dataclass(frozen=True)
class StayDraw:
    """The cohort-level part of a stay, drawn for all stays before any is planned."""

    index: int
    case_id: str
    diagnosis: str
    split: str


def draw_cohort(n: int, seed: int) -> list[StayDraw]:
    """Admission diagnoses from DIAGNOSIS_PRIOR and a split stratified by diagnosis (80/10/10) for ``n`` stays."""
    diagnoses, splits = draw_strata(n, seed, 0x1C, DIAGNOSES, DIAGNOSIS_PRIOR)
    return [StayDraw(i, f"ICU-{i + 1:05d}", str(diagnoses[i]), str(splits[i])) for i in range(n)]


def plan_stay(draw: StayDraw, seed: int) -> StayPlan:
    """Draw the stay's demographics, course, severity, outcome and presence (no rendering)."""
    rng = np.random.default_rng([seed, draw.index + 1, 0])
    site = str(rng.choice(list(SITES), p=list(SITES.values())))
    age = int(np.clip(round(rng.normal(64, 15)), 18, 95))
    sex = "F" if rng.random() < 0.43 else "M"
    admission_type = str(rng.choice(ADMISSION_TYPES, p=ADMISSION_PRIOR))
    course = str(rng.choice(COURSES, p=COURSE_PRIOR[draw.diagnosis]))
    prior = prior_severity(draw.diagnosis, age, admission_type)
    s0 = float(np.clip(prior + rng.normal(0, 0.08), 0.1, 0.85))
    severity, onset = draw_severity(rng, s0, course)
    died_at = death_time(rng, severity, age)
    discharge = planned_discharge(rng, severity, course)
    died = died_at < discharge
    stay_hours = round(died_at if died else discharge, 4)
    trend = trend_hour(severity, onset)
    present = _draw_presence(rng, site, admission_type)
    return StayPlan(draw.index, draw.case_id, draw.split, site, draw.diagnosis, course, age, sex, admission_type,
                    float(rng.uniform(0, 24)), onset, severity, prior, stay_hours, bool(died),
                    trend if trend is not None and trend < stay_hours else None, present)


@dataclass(frozen=True)
class IcuStay:
    """One synthesised stay: ``vitals`` and ``labs`` rows (time, variable, value) sorted by time, ``notes`` in
    time order (all empty for a missing modality), ``demographics`` {age, sex, admission_type, diagnosis}
    (None values when missing), ``truth`` the ground-truth row (TRUTH_COLUMNS order)."""

    plan: StayPlan = field(repr=False)
    vitals: pd.DataFrame
    labs: pd.DataFrame
    notes: list[Note]
    demographics: dict[str, object]
    truth: dict[str, object]


def synthesize_stay(draw: StayDraw, seed: int, interaction_share: float = 0.0) -> IcuStay:
    """Render one stay of the cohort drawn with ``seed``. With probability ``interaction_share`` (drawn from
    the stay's own stream) the cross-modal rule of ``icu.interactions`` decides it, and its truth row then has
    the INTERACTION_COLUMNS (blank for an undecided stay); at share 0 the stay is as without the option."""
    plan = plan_stay(draw, seed)
    interaction = draw_icu_interaction(seed, draw.index, interaction_share)
    if interaction is not None:
        plan = decided_plan(plan, interaction, seed)
    base = [seed, draw.index + 1]
    cue = (interaction.cue_hour, interaction.spo2) if interaction is not None else None
    vitals = render_vitals(np.random.default_rng(base + [1]), plan, spo2_from=cue)
    labs = render_labs(np.random.default_rng(base + [2]), plan)
    notes = write_notes(np.random.default_rng(base + [3]), plan)
    if interaction is not None:
        notes = target_notes(notes, interaction)
    demographics: dict[str, object] = {"age": plan.age, "sex": plan.sex, "admission_type": plan.admission_type,
                                       "diagnosis": plan.diagnosis}
    if not plan.present["demographics"]:
        demographics = {k: None for k in demographics}
    vitals_rows = vitals.rows if plan.present["vitals"] else vitals.rows.iloc[:0]
    labs = labs if plan.present["labs"] else labs.iloc[:0]
    notes = notes if plan.present["notes"] else []
    truth = _truth(plan, labs, notes, vitals.arterial_line, sum(vitals.artefacts.values()))
    if interaction_share > 0:
        vitals_from = first_spo2_at_or_after(vitals_rows, interaction.cue_hour) if interaction is not None else None
        truth.update(interaction_truth(interaction, vitals_from))
        if interaction is not None:  # each cue carries the rule's signal from the hour it is first recorded
            truth["vitals_signal_from_h"] = _round(vitals_from)
            truth["notes_signal_from_h"] = _round(interaction.note_hour)
    return IcuStay(plan, vitals_rows, labs, notes, demographics, truth)


def _truth(plan: StayPlan, labs: pd.DataFrame, notes: list[Note], arterial: bool, artefacts: int) -> dict[str, object]:
    trend = plan.trend_hour
    signal: dict[str, float | None] = {"demographics": 0.0, "vitals": trend, "labs": None, "notes": None}
    if trend is not None:
        after = labs["time"].to_numpy()[labs["time"].to_numpy() >= trend]
        signal["labs"] = float(after[0]) if len(after) else None
        described = [n.time for n in notes if n.describes == plan.course and n.time >= (plan.onset_hour or 0.0)]
        signal["notes"] = described[0] if described else None
    truth: dict[str, object] = {
        "case_id": plan.case_id, "diagnosis": plan.diagnosis, "course": plan.course,
        "onset_hour": _round(plan.onset_hour), "trend_hour": _round(trend),
        "prior_severity": round(plan.prior_severity, 4), "severity_admission": round(float(plan.severity[0]), 4),
        "severity_peak": round(float(plan.severity[: int(np.ceil(plan.stay_hours)) + 1].max()), 4),
        "died": int(plan.died), "stay_hours": plan.stay_hours,
    }
    for m in ICU_MODALITIES:
        truth[f"{m}_signal_from_h"] = _round(signal[m]) if plan.present[m] else None
    truth["missing_modalities"] = " ".join(m for m in ICU_MODALITIES if not plan.present[m])
    truth["arterial_line"] = int(arterial)
    truth["vitals_artefacts"] = artefacts if plan.present["vitals"] else 0
    hours = plan.severity[: int(np.floor(plan.stay_hours)) + 1]
    truth["severity_hourly"] = " ".join(f"{s:.3f}" for s in hours)
    return truth


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _draw_presence(rng: np.random.Generator, site: str, admission_type: str) -> dict[str, bool]:
    counts = list(MISSING_COUNT_P)
    n_missing = rng.choice(counts, p=[MISSING_COUNT_P[c] for c in counts])
    weights = np.asarray(MISSING_WEIGHT, dtype=float)
    weights[2] *= 3.0 if site == "site_c" else 1.0
    weights[1] *= 2.0 if admission_type == "elective" else 1.0
    missing = set(rng.choice(len(ICU_MODALITIES), size=n_missing, replace=False, p=weights / weights.sum()))
    return {m: j not in missing for j, m in enumerate(ICU_MODALITIES)}
