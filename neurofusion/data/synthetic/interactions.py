"""Cross-modal interaction rules of the synthetic cardio cohort: findings whose meaning depends on another
modality, as clinical reasoning has them (a troponin rise is coronary disease only with an ischaemic ECG).

A rule pairs two cues, each a finding the existing renderers draw in one modality (``findings[m] =
{disease: intensity}``). In a *conjunction* case both cues are shown and the label is the rule's; in a
*decoy* case one cue is shown alone and the label is another (an innocent flow murmur is a murmur without an
enlarged atrium: normal). The same cue therefore points at different labels depending on its partner, so no
single modality decides such a case. Which cases are decided this way is drawn per case from its own
generator stream :data:`INTERACTION_STREAM`, never from the streams of the additive cohort, so an
interaction share of 0 reproduces the additive cohort exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofusion.data.schema import MODALITIES
from neurofusion.data.tasks import CARDIO_CLASSES, CARDIO_FINDINGS

CAD, HF, ARRHYTHMIA, VALVULAR = CARDIO_FINDINGS
# The third index of a case's generator seed [seed, case + 1, stream]: 0 plans the additive case, 1 renders
# it, 2 decides whether (and how) interactions decide it.
INTERACTION_STREAM = 2
CONJUNCTION, DECOY = "conjunction", "decoy"
# Cue intensities. Each cue alone is ambiguous: a conjunction shows both cues at moderate intensity, a decoy
# shows its single cue as strongly as or more strongly than a conjunction's, so that no monotone reading of one
# modality (nor a sum of such readings) tells the two apart; only the partner's presence does.
CONJUNCTION_INTENSITY = (0.35, 0.65)
DECOY_INTENSITY = (0.5, 0.85)
# The modalities outside the rule's pair show the label only weakly: Beta(1.2, 4) scaled by this.
WEAK_SCALE = 0.5


@dataclass(frozen=True)
class Cue:
    """One modality's half of a rule: the renderer finding it shows, and what a clinician reads there."""

    modality: str
    finding: str
    reads: str

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"cue modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.finding not in CARDIO_FINDINGS:
            raise ValueError(f"cue finding must be one of {CARDIO_FINDINGS}, got {self.finding!r}")


@dataclass(frozen=True)
class Decoy:
    """One cue of a rule shown without its partner, and the label such a case has."""

    label: str
    cue: Cue
    rationale: str

    def __post_init__(self) -> None:
        if self.label not in CARDIO_CLASSES:
            raise ValueError(f"decoy label must be one of {CARDIO_CLASSES}, got {self.label!r}")


@dataclass(frozen=True)
class InteractionRule:
    """Label ``label`` when both ``cues`` are present; each decoy shows one cue alone with another label."""

    name: str
    label: str
    cues: tuple[Cue, Cue]
    rationale: str
    decoys: tuple[Decoy, ...]

    def __post_init__(self) -> None:
        if self.label not in CARDIO_FINDINGS:
            raise ValueError(f"rule {self.name!r}: label must be one of {CARDIO_FINDINGS}, got {self.label!r}")
        if self.cues[0].modality == self.cues[1].modality:
            raise ValueError(f"rule {self.name!r}: its two cues must lie in different modalities")
        for decoy in self.decoys:
            if decoy.cue not in self.cues or decoy.label == self.label:
                raise ValueError(f"rule {self.name!r}: a decoy shows one of the rule's cues with another label")

    @property
    def modalities(self) -> tuple[str, str]:
        """The rule's two modalities in MODALITIES order."""
        a, b = sorted((c.modality for c in self.cues), key=MODALITIES.index)
        return a, b

    @property
    def pair(self) -> str:
        """The pair as ground_truth.csv writes it, e.g. ``"signal+tabular"``."""
        return "+".join(self.modalities)


_TROPONIN = Cue("tabular", CAD, "troponin rise")
_ISCHAEMIC_ECG = Cue("signal", CAD, "ischaemic ST-T changes")
_MURMUR = Cue("text", VALVULAR, "murmur described in the note")
_ATRIAL_ENLARGEMENT = Cue("image", VALVULAR, "left atrial enlargement with thickened mitral leaflets")
_AF = Cue("signal", ARRHYTHMIA, "atrial fibrillation")
_DILATED_LV = Cue("image", HF, "dilated, thin-walled left ventricle")

RULES: tuple[InteractionRule, ...] = (
    InteractionRule(
        "troponin_with_ischaemic_ecg", CAD, (_TROPONIN, _ISCHAEMIC_ECG),
        "A troponin rise means coronary disease when the ECG shows ischaemia in a coronary territory; either "
        "alone is common outside coronary disease.",
        (Decoy("normal", _TROPONIN, "troponin leak with a normal ECG (renal clearance, demand): no coronary "
                                    "disease"),
         Decoy("normal", _ISCHAEMIC_ECG, "ischaemic-looking repolarisation with a normal troponin "
                                         "(early repolarisation, strain pattern): no coronary disease")),
    ),
    InteractionRule(
        "murmur_with_atrial_enlargement", VALVULAR, (_MURMUR, _ATRIAL_ENLARGEMENT),
        "A murmur with an enlarged left atrium and abnormal mitral leaflets on the echo is valve disease; a "
        "murmur alone is often an innocent flow murmur, and a mildly enlarged atrium alone is non-specific.",
        (Decoy("normal", _MURMUR, "innocent flow murmur with a normal echo"),
         Decoy("normal", _ATRIAL_ENLARGEMENT, "mild atrial enlargement without a murmur: not significant "
                                              "valve disease")),
    ),
    InteractionRule(
        "af_with_dilated_lv", HF, (_AF, _DILATED_LV),
        "Atrial fibrillation with a dilated, poorly contracting ventricle is heart failure (the AF its "
        "complication), not a primary arrhythmia; a dilated ventricle in sinus rhythm alone can be an "
        "athlete's heart.",
        (Decoy(ARRHYTHMIA, _AF, "atrial fibrillation with a normal ventricle: primary arrhythmia"),
         Decoy("normal", _DILATED_LV, "mildly dilated ventricle in sinus rhythm (athlete's heart): normal")),
    ),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}


@dataclass(frozen=True)
class InteractionPlan:
    """How interactions decide one case: the rule, the role (conjunction or decoy), the cue intensity shown
    per modality of the pair (0 for the partner of a decoy's cue) and the strength of the interaction (the
    weaker cue of a conjunction, the single cue of a decoy)."""

    rule: InteractionRule
    role: str
    decoy: Decoy | None
    intensity: dict[str, float]
    strength: float

    @property
    def cue_findings(self) -> dict[str, dict[str, float]]:
        """Per modality of the pair, the findings its cue shows ({} for a decoy's silent partner)."""
        shown = {c.modality: c.finding for c in self.rule.cues}
        return {m: ({shown[m]: v} if v > 0 else {}) for m, v in self.intensity.items()}


def roles_for_label(label: str) -> list[tuple[InteractionRule, Decoy | None]]:
    """Every (rule, decoy) a case of ``label`` can play: the conjunction of its own rule (decoy None) and
    each decoy with its label. A label with neither (none in RULES today) cannot be interaction-decided."""
    if label not in CARDIO_CLASSES:
        raise ValueError(f"unknown cardio label {label!r}; expected one of {CARDIO_CLASSES}")
    roles: list[tuple[InteractionRule, Decoy | None]] = [(r, None) for r in RULES if r.label == label]
    roles += [(r, d) for r in RULES for d in r.decoys if d.label == label]
    return roles


def draw_interaction(seed: int, index: int, label: str, share: float) -> InteractionPlan | None:
    """Whether case ``index`` (0-based) of a cohort drawn with ``seed`` is decided by an interaction, and
    how; None when it is not. The first draw of the case's own stream decides, so the cases decided at a
    share are among those decided at any larger share."""
    if not 0.0 <= share <= 1.0:  # also rejects NaN
        raise ValueError(f"interaction share must be in [0, 1], got {share!r}")
    if share == 0.0:
        return None
    rng = np.random.default_rng([seed, index + 1, INTERACTION_STREAM])
    roles = roles_for_label(label)
    if rng.random() >= share or not roles:
        return None
    rule, decoy = roles[int(rng.integers(len(roles)))]
    if decoy is None:
        intensity = {c.modality: float(rng.uniform(*CONJUNCTION_INTENSITY)) for c in rule.cues}
        return InteractionPlan(rule, CONJUNCTION, None, intensity, min(intensity.values()))
    value = float(rng.uniform(*DECOY_INTENSITY))
    intensity = {m: (value if m == decoy.cue.modality else 0.0) for m in rule.modalities}
    return InteractionPlan(rule, DECOY, decoy, intensity, value)


def weak_strengths(seed: int, index: int) -> dict[str, float]:
    """The weak label evidence of an interaction-decided case per modality, from the case's interaction
    stream after :func:`draw_interaction`'s draws (a separate generator, so the two never shift each other)."""
    rng = np.random.default_rng([seed, index + 1, INTERACTION_STREAM, 1])
    return {m: float(WEAK_SCALE * rng.beta(1.2, 4.0)) for m in MODALITIES}
