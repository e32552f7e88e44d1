"""The synthetic cancer-prognosis cohort (paper section 6.1, Table 1): one case = stage and split (cohort
draw), then site, clinical row, tumour grade, planted genomic drivers, treatment response, per-modality
evidence strengths, missing modalities and a survival outcome from the model in ``outcome``; then an H&E
tile, a 50-gene panel, a treatment summary and the clinical row, each expressing its part of the risk at its
recorded strength. The ground truth records which modality carries the risk and where.

What a strength s in [0, 1] means for each modality (its term of the linear predictor is always scaled by s,
see ``outcome``): histopathology shows the grade's morphology at s (s = 0 looks like the cohort average);
genomics carries planted drivers only at s >= 0.5 (genomics.DRIVER_STRENGTH); treatment notes state the
response plainly at s >= 0.5 and hedge it below; the clinical row records stage, age and ECOG exactly
whatever s, so its strength is how much of the case's risk those values carry, which the row itself does not
show.

Every random choice for case ``i`` comes from generators seeded by ``(seed, i)`` after the cohort-level stage
and split draw, so any subset of a cohort regenerates identically.

Missingness (paper Table 1, cancer): 54 % complete, 31 % missing one modality, 15 % missing two or more
(12 % two, 3 % three; every case keeps one). It is informative: which modality is missing depends on the case
(MISSING_WEIGHT): genomics is the most often missing, with four times the weight in stage I (a panel is rarely
ordered for early disease) and three times at site_c (no in-house sequencing). Measured on 20,000 cases:
genomics missing in 37 % of stage I cases vs 24 % of stage II-IV, 35 % at site_c vs 25 % at site_a; the
number missing stays at the Table 1 rates whatever the case.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from neurofusion.data.synthetic.cancer.clinical import (
    STAGE_PRIOR, STAGES, ClinicalRow, clinical_log_hazard, draw_clinical, draw_primary,
)
from neurofusion.data.synthetic.cancer.genomics import choose_drivers, draw_panel, genomic_log_hazard
from neurofusion.data.synthetic.cancer.interactions import (
    PAIR, BiomarkerPlan, blank_truth, draw_biomarker, therapy_line,
)
from neurofusion.data.synthetic.cancer.histology import (
    COHORT_MEAN_GRADE, GRADE_PRIOR, GRADES, StainSpec, render_tile,
)
from neurofusion.data.synthetic.cancer.notes import RESPONSE_PRIOR, RESPONSES, write_note
from neurofusion.data.synthetic.cancer.outcome import (
    GRADE_LOG_HR, HORIZON_MONTHS, RESPONSE_LOG_HR, Outcome, sample_outcome, survival_probability,
)
from neurofusion.data.synthetic.raters import CANCER_RATERS, RaterSpec, simulate_rankings
from neurofusion.data.synthetic.splits import draw_strata

CANCER_MODALITIES: tuple[str, ...] = ("histopathology", "genomics", "treatment_notes", "clinical")


@dataclass(frozen=True)
class CancerSite:
    """One hospital: its share of cases, H&E staining, note template and how often it lacks sequencing."""

    name: str
    share: float
    stain: StainSpec
    note_style: str
    genomics_missing: float  # multiplies the weight of genomics being the missing modality


SITES: tuple[CancerSite, ...] = (
    CancerSite("site_a", 0.40, StainSpec(), "structured", 1.0),
    CancerSite("site_b", 0.35, StainSpec((0.60, 0.72, 0.36), (0.18, 0.84, 0.50), 1.15, 1.25), "terse", 1.0),
    CancerSite("site_c", 0.25, StainSpec((0.64, 0.74, 0.21), (0.26, 0.78, 0.58), 0.9, 0.8), "narrative", 3.0),
)
MISSING_COUNT_P = {0: 0.54, 1: 0.31, 2: 0.12, 3: 0.03}
# Relative chance that each modality (CANCER_MODALITIES order) is a missing one, before the site factor.
MISSING_WEIGHT = (0.8, 1.0, 0.9, 0.3)
STAGE_I_GENOMICS_MISSING = 4.0
# How readily each modality carries a case's clear evidence (CANCER_MODALITIES order); the paper finds
# genomics the costliest modality to lose (section 7.3).
AFFINITY = (1.0, 1.4, 0.8, 0.9)
N_STRONG_P = (0.5, 0.35, 0.15)  # a case is clear in 1, 2 or 3 modalities
STRONG_RANGE = (0.65, 1.0)
# The ground-truth row of a case (ground_truth.csv columns). Strengths are blank for a missing modality, as
# are the roi, driver genes and text evidence, which only a present modality can show; contributions, the
# linear predictor and the 5-year survival are the true model's whatever is missing.
TRUTH_COLUMNS: tuple[str, ...] = (
    "case_id", *(f"strength_{m}" for m in CANCER_MODALITIES), *(f"contribution_{m}" for m in CANCER_MODALITIES),
    "dominant_modality", "histopathology_roi", "grade", "shown_grade", "driver_genes", "response",
    "text_evidence", "text_evidence_spans", "linear_predictor", "survival_5y", "missing_modalities",
)


@dataclass(frozen=True)
class CaseDraw:
    """The cohort-level part of a case, drawn for all cases before any is rendered."""

    index: int
    case_id: str
    stage: str
    split: str


def draw_cohort(n: int, seed: int) -> list[CaseDraw]:
    """Stages from STAGE_PRIOR and a split stratified by stage (80/10/10) for ``n`` cases."""
    stages, splits = draw_strata(n, seed, 0xCA, STAGES, STAGE_PRIOR)
    return [CaseDraw(i, f"CA-{i + 1:05d}", str(stages[i]), str(splits[i])) for i in range(n)]


@dataclass(frozen=True)
class CasePlan:
    """Everything drawn about a case before rendering: the ground truth its modalities must express."""

    draw: CaseDraw
    site: CancerSite
    clinical: ClinicalRow
    grade: int
    response: str
    drivers: tuple[str, ...]
    strength: dict[str, float]  # per modality, in [0, 1]
    present: dict[str, bool]
    contribution: dict[str, float]  # per modality: its term of the linear predictor (a rule's Shapley half included)
    outcome: Outcome
    interaction: BiomarkerPlan | None = None  # set when a predictive-biomarker rule decides the case

    @property
    def linear_predictor(self) -> float:
        return float(sum(self.contribution.values()))

    @property
    def dominant_modality(self) -> str:
        """The present modality with the largest absolute contribution to the linear predictor."""
        present = [m for m in CANCER_MODALITIES if self.present[m]]
        return max(present, key=lambda m: abs(self.contribution[m]))


def plan_case(draw: CaseDraw, seed: int, interaction_share: float = 0.0) -> CasePlan:
    """Draw the case's latent state, strengths, presence and outcome (no rendering). With probability
    ``interaction_share`` a predictive-biomarker rule (``interactions``) also decides the case: its pair is kept
    present, its Shapley halves join the pair's contributions and the outcome is drawn from the same random
    numbers on the new linear predictor."""
    rng = np.random.default_rng([seed, draw.index + 1, 0])
    site = SITES[rng.choice(len(SITES), p=[s.share for s in SITES])]
    primary = draw_primary(rng)
    clinical = draw_clinical(rng, draw.stage, primary)
    grade = int(GRADES[rng.choice(len(GRADES), p=GRADE_PRIOR)])
    response = str(RESPONSES[rng.choice(len(RESPONSES), p=RESPONSE_PRIOR)])
    strength = _draw_strengths(rng)
    drivers = choose_drivers(rng, primary, strength["genomics"])
    present = _draw_presence(rng, draw.stage, site)
    latent = clinical.latent
    contribution = {
        "histopathology": strength["histopathology"] * GRADE_LOG_HR * (grade - COHORT_MEAN_GRADE),
        "genomics": strength["genomics"] * genomic_log_hazard(drivers),
        "treatment_notes": strength["treatment_notes"] * RESPONSE_LOG_HR[response],
        "clinical": strength["clinical"] * clinical_log_hazard(draw.stage, latent["age"], latent["ecog"]),
    }
    interaction = draw_biomarker(seed, draw.index, primary, interaction_share)
    if interaction is not None:
        present.update({m: True for m in PAIR})
        for m, value in interaction.contribution.items():
            contribution[m] += value
    outcome = sample_outcome(np.random.default_rng([seed, draw.index + 1, 2]), sum(contribution.values()))
    return CasePlan(draw, site, clinical, grade, response, drivers, strength, present, contribution, outcome,
                    interaction)


@dataclass(frozen=True)
class CancerCase:
    """One synthesised case. Modality values are given whether or not the modality is present (``present``
    says which a cohort keeps): histopathology uint8 (H, W, 3) RGB, genomics {gene: 0/1}, treatment_notes
    str, clinical {column: value} as recorded (ecog, bmi may be NaN). time (months, to 0.01, at least 0.01 so
    that survival libraries accept it) and event are the observed follow-up; truth is the case's ground-truth
    row; plan holds the latent draws behind it."""

    case_id: str
    split: str
    site: str
    histopathology: np.ndarray
    genomics: dict[str, int]
    treatment_notes: str
    clinical: dict[str, object]
    time: float
    event: bool
    truth: dict[str, object]
    present: dict[str, bool]
    plan: CasePlan = field(repr=False)

    def inputs(self) -> dict[str, object | None]:
        """{modality: value, or None where the modality is missing}, in CANCER_MODALITIES order."""
        return {m: getattr(self, m) if self.present[m] else None for m in CANCER_MODALITIES}


def synthesize_case(draw: CaseDraw, seed: int, interaction_share: float = 0.0) -> CancerCase:
    """Render one case of the cohort drawn with ``seed``; above an ``interaction_share`` of 0 its ground truth
    adds the interaction columns (``interactions.INTERACTION_COLUMNS``, blank where no rule decides), the
    panel shows a decided case's alteration and its note names the therapy if given."""
    plan = plan_case(draw, seed, interaction_share)
    rng = np.random.default_rng([seed, draw.index + 1, 1])
    primary = str(plan.clinical.latent["primary_site"])
    tile = render_tile(rng, plan.grade, plan.strength["histopathology"], stain=plan.site.stain)
    panel = draw_panel(rng, primary, plan.strength["genomics"], drivers=plan.drivers)
    note = write_note(rng, plan.clinical.recorded, plan.response, plan.strength["treatment_notes"],
                      plan.site.note_style)
    mutations = panel.mutations
    if plan.interaction is not None:
        mutations = {**mutations, plan.interaction.rule.gene: plan.interaction.alteration}
        note = replace(note, text=note.text + therapy_line(plan.interaction, plan.site.note_style,
                                                           str(plan.clinical.latent["sex"])))
    truth: dict[str, object] = {"case_id": draw.case_id}  # keys in TRUTH_COLUMNS order
    for m in CANCER_MODALITIES:
        truth[f"strength_{m}"] = round(plan.strength[m], 4) if plan.present[m] else None
    for m in CANCER_MODALITIES:
        truth[f"contribution_{m}"] = round(plan.contribution[m], 4)
    truth["dominant_modality"] = plan.dominant_modality
    truth["histopathology_roi"] = " ".join(map(str, tile.roi)) if plan.present["histopathology"] else ""
    truth["grade"] = plan.grade
    truth["shown_grade"] = round(tile.shown_grade, 4)
    truth["driver_genes"] = " ".join(plan.drivers) if plan.present["genomics"] else ""
    truth["response"] = plan.response
    spans = note.evidence if plan.present["treatment_notes"] else ()
    truth["text_evidence"] = " | ".join(note.text[a:b] for a, b, _ in spans)
    truth["text_evidence_spans"] = " ".join(f"{a}:{b}" for a, b, _ in spans)
    truth["linear_predictor"] = round(plan.linear_predictor, 4)
    truth["survival_5y"] = round(float(survival_probability(HORIZON_MONTHS, plan.linear_predictor)), 4)
    truth["missing_modalities"] = " ".join(m for m in CANCER_MODALITIES if not plan.present[m])
    if interaction_share > 0:
        truth.update(plan.interaction.truth() if plan.interaction is not None else blank_truth())
    return CancerCase(
        case_id=draw.case_id, split=draw.split, site=plan.site.name, histopathology=tile.image,
        genomics=mutations, treatment_notes=note.text, clinical=dict(plan.clinical.recorded),
        time=max(round(plan.outcome.time, 2), 0.01), event=plan.outcome.event, truth=truth, present=dict(plan.present),
        plan=plan,
    )


def simulate_cancer_rankings(
    truth: pd.DataFrame, seed: int, raters: tuple[RaterSpec, ...] = CANCER_RATERS,
) -> pd.DataFrame:
    """Simulated clinician rankings of the present modalities, ordered by |contribution| (what matters for
    the case's risk) as perceived by the raters (noise, lean on histopathology or genomics, ties; see
    neurofusion.data.synthetic.raters) -> rows (case_id, rater, one rank column per
    modality of CANCER_MODALITIES; missing modalities blank)."""
    scores = pd.DataFrame({"case_id": truth["case_id"]})
    for m in CANCER_MODALITIES:
        present = truth[f"strength_{m}"].notna()
        scores[f"strength_{m}"] = truth[f"contribution_{m}"].abs().where(present)
    return simulate_rankings(scores, seed, raters, modalities=CANCER_MODALITIES)


def _draw_strengths(rng: np.random.Generator) -> dict[str, float]:
    """Per-modality strength in [0, 1]: 1-3 modalities clear (STRONG_RANGE), the rest weak (mostly < 0.35)."""
    weights = np.asarray(AFFINITY, dtype=float)
    n_strong = rng.choice([1, 2, 3], p=N_STRONG_P)
    strong = set(rng.choice(len(CANCER_MODALITIES), size=n_strong, replace=False, p=weights / weights.sum()))
    return {
        m: float(rng.uniform(*STRONG_RANGE) if j in strong else rng.beta(1.2, 4.0))
        for j, m in enumerate(CANCER_MODALITIES)
    }


def _draw_presence(rng: np.random.Generator, stage: str, site: CancerSite) -> dict[str, bool]:
    counts = list(MISSING_COUNT_P)
    n_missing = rng.choice(counts, p=[MISSING_COUNT_P[c] for c in counts])
    weights = np.asarray(MISSING_WEIGHT, dtype=float)
    weights[1] *= site.genomics_missing * (STAGE_I_GENOMICS_MISSING if stage == "I" else 1.0)
    missing = set(rng.choice(len(CANCER_MODALITIES), size=n_missing, replace=False, p=weights / weights.sum()))
    return {m: j not in missing for j, m in enumerate(CANCER_MODALITIES)}
