"""The synthetic ICU-mortality cohort (paper section 6.1): time-stamped vitals, labs and nursing notes in
long tables, with demographics, from an hourly latent severity with a stated death hazard and known ground
truth of which modality carries the signal when; simulated raters per stay and hour; optionally a share of
stays decided by a planted cross-modal interaction (SpO2 against the note's saturation target). Written by
``python -m neurofusion.data generate --task icu`` and read by ``neurofusion.data.timed``."""

from neurofusion.data.synthetic.icu.cohort import (
    ICU_MODALITIES, MISSING_COUNT_P, SITES, TRUTH_COLUMNS, IcuStay, StayDraw, draw_cohort, plan_stay, synthesize_stay,
)
from neurofusion.data.synthetic.icu.interactions import (
    INTERACTION_COLUMNS, IcuInteraction, decided_plan, draw_icu_interaction,
)
from neurofusion.data.synthetic.icu.labs import LAB_MODEL, draw_times, render_labs
from neurofusion.data.synthetic.icu.notes import Note, note_times, write_notes
from neurofusion.data.synthetic.icu.raters import (
    evidence_table, first_recorded, icu_evidence, simulate_icu_rankings, write_icu_rankings,
)
from neurofusion.data.synthetic.icu.trajectory import (
    COURSES, DIAGNOSES, HORIZON_H, MAX_STAY_H, StayPlan, death_time, draw_severity, hazard, planned_discharge,
    prior_severity, trend_hour,
)
from neurofusion.data.synthetic.icu.variables import ICU_LABS, ICU_VARIABLES, ICU_VITALS, write_variables
from neurofusion.data.synthetic.icu.vitals import DX_EFFECT, VitalsResult, render_vitals
from neurofusion.data.synthetic.icu.write import COHORT_COLUMNS, synthesize_cohort, write_icu_cohort

__all__ = [
    "COHORT_COLUMNS", "COURSES", "DIAGNOSES", "DX_EFFECT", "HORIZON_H", "ICU_LABS", "ICU_MODALITIES", "ICU_VARIABLES",
    "ICU_VITALS", "LAB_MODEL", "MAX_STAY_H", "MISSING_COUNT_P", "SITES", "TRUTH_COLUMNS", "IcuStay", "Note",
    "StayDraw", "StayPlan", "VitalsResult", "death_time", "draw_cohort", "draw_severity", "draw_times", "hazard",
    "note_times", "plan_stay", "planned_discharge", "prior_severity", "render_labs", "render_vitals",
    "synthesize_cohort", "synthesize_stay", "trend_hour", "write_icu_cohort", "write_notes", "write_variables",
    "evidence_table", "first_recorded", "icu_evidence", "simulate_icu_rankings", "write_icu_rankings",
    "INTERACTION_COLUMNS", "IcuInteraction", "decided_plan", "draw_icu_interaction",
]
