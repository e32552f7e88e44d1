"""The synthetic cardiovascular cohort: one case = label, per-modality evidence strength, site, missing
modalities, then an echo image, a consult note, a 12-lead ECG and labs that express the label as strongly
as drawn. The strengths are the ground truth that explanations are checked against. The note's history,
medications, smoking and blood pressure come from the same draw as the labs, so note and table agree.

Every random choice for case ``i`` comes from generators seeded by ``(seed, i)`` after the cohort-level
label and split draw, so any subset of a cohort regenerates identically.

With an ``interaction_share`` above 0, that share of cases is decided by a cross-modal interaction
(:mod:`neurofusion.data.synthetic.interactions`): the proportion of a rule's two cues decides the label, and
the rest of the case (weak look-alike evidence, work-up) is the same whichever way it ends. The choice comes
from streams of its own, so the other cases, and every case at share 0, are the additive cohort's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofusion.data.schema import MODALITIES, STANDARD_LEADS, Case, Signal
from neurofusion.data.synthetic.ecg import synthesize_ecg
from neurofusion.data.synthetic.echo import render_echo
from neurofusion.data.synthetic.interactions import (
    CONJUNCTION,
    InteractionPlan,
    draw_interaction,
    weak_strengths,
    workup_rng,
)
from neurofusion.data.synthetic.labs import HYPERLIPIDEMIA_LDL, OBESITY_BMI, LabDraw, draw_labs
from neurofusion.data.synthetic.notes import NOTE_LABS, Patient, write_note
from neurofusion.data.synthetic.splits import draw_strata
from neurofusion.data.tasks import CARDIO_CLASSES, CARDIO_FINDINGS


@dataclass(frozen=True)
class SiteSpec:
    """One hospital's acquisition settings."""

    name: str
    share: float
    ecg_fs: int
    powerline_hz: float
    ecg_noise: float
    ecg_gain: float
    image_format: str  # how the site's PACS export is stored: png8, png16 or dicom
    image_gain: float
    image_gamma: float
    speckle: float


SITES: tuple[SiteSpec, ...] = (
    SiteSpec("site_a", 0.40, 500, 60.0, 1.0, 1.0, "png8", 1.0, 1.0, 1.0),
    SiteSpec("site_b", 0.35, 250, 60.0, 1.6, 0.9, "png16", 0.85, 1.35, 0.8),
    SiteSpec("site_c", 0.25, 500, 50.0, 0.8, 1.1, "dicom", 1.15, 0.85, 1.3),
)
CLASS_PRIOR = {
    "normal": 0.28,
    "coronary_artery_disease": 0.22,
    "heart_failure": 0.18,
    "arrhythmia": 0.17,
    "valvular_disease": 0.15,
}
# Paper Table 1 (cardiovascular): 68 % complete, 24 % missing one modality, 8 % missing two or more.
MISSING_COUNT_P = {0: 0.68, 1: 0.24, 2: 0.065, 3: 0.015}
# How readily each class shows in each modality (image, text, signal, tabular): which modality tends to
# carry a case's clear evidence. Arrhythmia is an ECG diagnosis, valve disease an echo diagnosis.
_AFFINITY = {
    "normal": (1.0, 1.0, 1.0, 1.0),
    "coronary_artery_disease": (0.6, 1.0, 1.0, 1.0),
    "heart_failure": (1.0, 1.0, 0.6, 1.0),
    "arrhythmia": (0.15, 0.8, 1.5, 0.3),
    "valvular_disease": (1.5, 1.0, 0.4, 0.3),
}
# Relative chance that each modality is the missing one: an echo is often not ordered when suspicion is
# low (informative missingness); a consult nearly always leaves a note.
_MISSING_WEIGHT = {
    "normal": (2.2, 0.3, 0.8, 1.0),
    "coronary_artery_disease": (1.0, 0.3, 0.6, 0.7),
    "heart_failure": (0.6, 0.3, 0.8, 0.7),
    "arrhythmia": (1.2, 0.3, 0.4, 1.0),
    "valvular_disease": (0.5, 0.3, 1.0, 1.0),
}
N_STRONG_P = (0.5, 0.35, 0.15)  # a case is clear in 1, 2 or 3 modalities


@dataclass(frozen=True)
class CaseDraw:
    """The cohort-level part of a case, drawn for all cases before any is rendered."""

    index: int
    case_id: str
    label: str
    split: str


def draw_cohort(n: int, seed: int) -> list[CaseDraw]:
    """Labels from CLASS_PRIOR and a split stratified by class (80/10/10) for ``n`` cases."""
    labels, splits = draw_strata(n, seed, 0xC0, CARDIO_CLASSES, [CLASS_PRIOR[c] for c in CARDIO_CLASSES])
    return [CaseDraw(i, f"CV-{i + 1:05d}", str(labels[i]), str(splits[i])) for i in range(n)]


@dataclass(frozen=True)
class CasePlan:
    """Everything drawn about a case before rendering: the ground truth its files must express."""

    draw: CaseDraw
    site: SiteSpec
    strength: dict[str, float]  # per modality, in [0, 1]
    present: dict[str, bool]
    distractor: str | None
    findings: dict[str, dict[str, float]]  # per modality: disease -> intensity shown
    interaction: InteractionPlan | None = None  # set when a cross-modal interaction decides the case

    @property
    def workup_label(self) -> str:
        """The diagnosis the work-up was for: the label, or in an interaction-decided case the rule's (a
        troponin leak was worked up as suspected coronary disease). It sets the demographics, which tests were
        ordered and which modalities are missing, so these say which rule is at stake, not how it ends."""
        return self.interaction.rule.label if self.interaction is not None else self.draw.label


def plan_case(draw: CaseDraw, seed: int, interaction_share: float = 0.0) -> CasePlan:
    """Draw a case's site, strengths, missing modalities and findings; with probability
    ``interaction_share`` the case is then decided by an interaction rule instead (its pair kept present)."""
    rng = np.random.default_rng([seed, draw.index + 1, 0])
    site = SITES[rng.choice(len(SITES), p=[s.share for s in SITES])]
    strength = _draw_strengths(rng, draw.label)
    present = _draw_presence(rng, draw.label)
    distractor = _draw_distractor(rng, draw.label)
    findings = {m: _findings(rng, draw.label, strength[m], distractor) for m in MODALITIES}
    interaction = draw_interaction(seed, draw.index, draw.label, interaction_share)
    if interaction is None:
        return CasePlan(draw, site, strength, present, distractor, findings)
    return _interaction_plan(draw, seed, site, interaction)


def _interaction_plan(draw: CaseDraw, seed: int, site: SiteSpec, interaction: InteractionPlan) -> CasePlan:
    """An interaction-decided case: the pair shows only the rule's cues; the other modalities show the
    rule's label weakly in conjunctions and decoys alike (the suspicion that made the pair worth reading), so
    they say which rule is at stake, not how it ends. strength_<m> stays evidence for the case's label: both
    cues of a conjunction carry its strength, and the weak draw elsewhere; in a decoy the faint partner (whose
    faintness decides) carries it, the strong cue only where it is the label's own finding (marked AF in
    primary arrhythmia), and the look-alike elsewhere nothing (0)."""
    rule = interaction.rule
    rng = workup_rng(seed, draw.index)
    present = _draw_presence(rng, rule.label)
    weak = weak_strengths(rng)
    findings = {m: {rule.label: weak[m]} for m in MODALITIES}
    findings.update(interaction.cue_findings)
    conjunction = interaction.role == CONJUNCTION
    strength = {m: (weak[m] if conjunction else 0.0) for m in MODALITIES}
    for m in rule.modalities:
        shown = interaction.cue_findings[m]
        if m != interaction.misleading:
            strength[m] = interaction.strength
        else:
            strength[m] = shown.get(draw.label, 0.0)
    pair = rule.modalities
    return CasePlan(draw, site, strength, _keep_present(present, pair), None, findings, interaction)


def _keep_present(present: dict[str, bool], keep: tuple[str, ...]) -> dict[str, bool]:
    """The same number of missing modalities (at most the others' count), moved off ``keep``: the tests the
    interaction turns on were done, another one was not."""
    n_missing = min(sum(not p for p in present.values()), len(MODALITIES) - len(keep))
    others = [m for m in MODALITIES if m not in keep]
    # Modalities already missing stay missing first, then the next ones in MODALITIES order.
    missing = sorted(others, key=lambda m: (present[m], MODALITIES.index(m)))[:n_missing]
    return {m: m not in missing for m in MODALITIES}


@dataclass(frozen=True)
class RenderedCase:
    """One rendered case with what the files do not show: the labs as drawn (also for a case whose table
    is missing) and the patient the note was written from."""

    case: Case
    truth: dict
    site: SiteSpec
    labs: LabDraw
    patient: Patient


def synthesize_case(draw: CaseDraw, seed: int, interaction_share: float = 0.0) -> tuple[Case, dict, SiteSpec]:
    """Render one case -> (Case, its ground_truth.csv row, its site)."""
    rendered = render_case(draw, seed, interaction_share)
    return rendered.case, rendered.truth, rendered.site


def patient_from_labs(labs: LabDraw) -> Patient:
    """The patient a note describes, from the same draw as the table: age, sex, smoking, diabetes and
    hypertension as recorded; obesity and hyperlipidemia from the latent BMI and LDL (a diagnosis stands
    whether or not today's value was measured); the blood pressure only if the table records it."""
    recorded, latent = labs.recorded, labs.latent
    systolic = float(recorded["systolic_bp"])
    return Patient(
        age=int(recorded["age"]), sex=str(recorded["sex"]), smoker=str(recorded["smoker"]),
        diabetes=recorded["diabetes"] == "yes", hypertension=recorded["hypertension"] == "yes",
        hyperlipidemia=float(latent["ldl_mg_dl"]) >= HYPERLIPIDEMIA_LDL, obesity=float(latent["bmi"]) >= OBESITY_BMI,
        systolic_bp=None if np.isnan(systolic) else systolic,
    )


def render_case(draw: CaseDraw, seed: int, interaction_share: float = 0.0) -> RenderedCase:
    """Render one case: its files' contents, ground truth and site, and the draws behind its note."""
    plan = plan_case(draw, seed, interaction_share)
    rng = np.random.default_rng([seed, draw.index + 1, 1])
    site, present, findings = plan.site, plan.present, plan.findings
    labs = draw_labs(rng, plan.workup_label, findings["tabular"],
                     ordered=plan.interaction.tests if plan.interaction is not None else ())
    tabular, patient = labs.recorded, patient_from_labs(labs)
    ecg = synthesize_ecg(
        rng, findings["signal"], fs=site.ecg_fs, noise=site.ecg_noise,
        amplitude_gain=site.ecg_gain, powerline_hz=site.powerline_hz,
    )
    echo = render_echo(rng, findings["image"], gain=site.image_gain, gamma=site.image_gamma, speckle=site.speckle)
    # A note quotes only labs the record holds, so the text never contradicts the tabular modality.
    labs_for_note = {name: tabular[name] for name in NOTE_LABS} if present["tabular"] else None
    note = write_note(rng, findings["text"], patient=patient, labs=labs_for_note)

    case = Case(
        case_id=draw.case_id,
        label=draw.label,
        split=draw.split,
        site=site.name,
        image=echo.image if present["image"] else None,
        note=note.text if present["text"] else None,
        signal=Signal(ecg.signal, ecg.fs, STANDARD_LEADS) if present["signal"] else None,
        tabular=tabular if present["tabular"] else None,
    )
    truth = {"case_id": draw.case_id}
    for m in MODALITIES:
        truth[f"strength_{m}"] = round(plan.strength[m], 4) if present[m] else None
    truth["distractor"] = plan.distractor or ""
    # Where the label's own evidence lies; the renderers report the strongest finding, which is the
    # label's only when the distractor is weaker. In a conjunction the cues are the label's evidence.
    evidence = _evidence_findings(plan)
    shows = {m: present[m] and _label_dominates(findings[m], evidence[m]) for m in MODALITIES}
    truth["image_roi"] = " ".join(map(str, echo.roi)) if shows["image"] and echo.roi else ""
    truth["signal_leads"] = " ".join(ecg.affected_leads) if shows["signal"] else ""
    truth["text_evidence"] = " | ".join(
        note.text[a:b] for a, b, finding in note.evidence if present["text"] and finding == evidence["text"]
    )
    truth.update(_interaction_truth(plan.interaction))
    return RenderedCase(case, truth, site, labs, patient)


def _evidence_findings(plan: CasePlan) -> dict[str, str]:
    """Per modality, the finding that is evidence for the label: the label's own, or a conjunction's cue."""
    evidence = {m: plan.draw.label for m in MODALITIES}
    if plan.interaction is not None and plan.interaction.role == CONJUNCTION:
        evidence.update({c.modality: c.finding for c in plan.interaction.rule.cues})
    return evidence


def _interaction_truth(interaction: InteractionPlan | None) -> dict[str, str | float]:
    """ground_truth.csv's interaction columns: rule, role, modality pair and strength ("" and 0 if none)."""
    if interaction is None:
        return {"interaction_rule": "", "interaction_role": "", "interaction_pair": "", "interaction_strength": 0.0}
    return {"interaction_rule": interaction.rule.name, "interaction_role": interaction.role,
            "interaction_pair": interaction.rule.pair, "interaction_strength": round(interaction.strength, 4)}


def _label_dominates(findings: dict[str, float], label: str) -> bool:
    own = findings.get(label, 0.0)
    return own > 0 and all(own >= v for v in findings.values())


def _draw_strengths(rng: np.random.Generator, label: str) -> dict[str, float]:
    """Per-modality evidence strength in [0, 1]: 1-3 modalities clear (0.65-1), the rest weak (mostly < 0.35)."""
    weights = np.asarray(_AFFINITY[label], dtype=float)
    n_strong = rng.choice([1, 2, 3], p=N_STRONG_P)
    strong = set(rng.choice(len(MODALITIES), size=n_strong, replace=False, p=weights / weights.sum()))
    return {
        m: float(rng.uniform(0.65, 1.0) if j in strong else rng.beta(1.2, 4.0))
        for j, m in enumerate(MODALITIES)
    }


def _draw_presence(rng: np.random.Generator, label: str) -> dict[str, bool]:
    counts = list(MISSING_COUNT_P)
    n_missing = rng.choice(counts, p=[MISSING_COUNT_P[c] for c in counts])
    weights = np.asarray(_MISSING_WEIGHT[label], dtype=float)
    missing = set(rng.choice(len(MODALITIES), size=n_missing, replace=False, p=weights / weights.sum()))
    return {m: j not in missing for j, m in enumerate(MODALITIES)}


def _draw_distractor(rng: np.random.Generator, label: str) -> str | None:
    """A co-existing or look-alike finding that blurs weak modalities (e.g. mild LV dilation in a
    valve patient); None for about half of the cases."""
    if rng.random() < 0.5:
        return None
    others = [f for f in CARDIO_FINDINGS if f != label]
    return str(rng.choice(others))


def _findings(rng: np.random.Generator, label: str, strength: float, distractor: str | None) -> dict[str, float]:
    """What one modality shows: the label at the modality's strength, plus the distractor at an intensity
    that is larger where the label's own evidence is weak."""
    findings = {} if label == "normal" else {label: strength}
    if distractor is not None:
        findings[distractor] = float((1.0 - strength) * rng.uniform(0.15, 0.55))
    return findings
