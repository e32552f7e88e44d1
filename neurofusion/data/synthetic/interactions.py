"""Cross-modal interaction rules of the synthetic cardio cohort: findings whose meaning depends on another
modality, as clinical reasoning has them (a troponin rise is coronary disease only with an ischaemic ECG).

A rule pairs two cues, each a finding the existing renderers draw in one modality (``findings[m] =
{disease: intensity}``). In a *conjunction* case both cues are shown in proportion to each other and the label
is the rule's; in a *decoy* case one cue is shown far out of proportion to a faint partner and the label is
another (a loud murmur with a near-normal echo is an innocent flow murmur: normal). A cue's meaning thus flips
with its partner in both directions: a strong cue means the rule's label with a strong partner and another
label with a faint one, and a faint cue means the rule's label with a faint partner (early, mild disease) and
another label with a strong one. That is an interaction in the log-odds, not only in the probabilities: no sum
of per-modality scores separates the four corners (faint+faint and strong+strong vs strong+faint and
faint+strong), whereas an AND of two cues (both present vs either alone) is a sum of log-odds that an additive
model fits (measured: on AND rules an additive probe matched one that may combine modalities). Both decoys of a
rule share one label, for with two different labels an additive model again fits all four corners.

Everything else about such a case says which rule is at stake but not how it ends: the modalities outside the
pair show the rule's label weakly, and the work-up (demographics, tests ordered, missing modalities) is that of
the rule's label. Which cases are decided this way is drawn per case from its own generator stream
:data:`INTERACTION_STREAM`, never from the streams of the additive cohort, so an interaction share of 0
reproduces the additive cohort exactly.
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
# Cue intensities, faint or strong. A conjunction shows both cues faint (early, mild disease) or both strong
# (established disease), with equal chance; a decoy shows its cue strong and the partner faint. Every cue is
# thus faint half of the time and strong half of the time in conjunctions and decoys alike, so its intensity
# alone says nothing about which one a case is; only the two together do.
FAINT = (0.3, 0.4)
STRONG = (0.85, 1.0)
# The modalities outside the rule's pair show the rule's label only weakly: Beta(1.2, 4) scaled by this.
WEAK_SCALE = 0.5


@dataclass(frozen=True)
class Cue:
    """One modality's half of a rule: the renderer finding it shows, what a clinician reads there, and the
    lab tests it needs recorded (a troponin rise needs a troponin)."""

    modality: str
    finding: str
    reads: str
    tests: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"cue modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.finding not in CARDIO_FINDINGS:
            raise ValueError(f"cue finding must be one of {CARDIO_FINDINGS}, got {self.finding!r}")


@dataclass(frozen=True)
class Decoy:
    """One cue of a rule shown far out of proportion to its (faint) partner, and the label such a case has."""

    label: str
    cue: Cue
    rationale: str

    def __post_init__(self) -> None:
        if self.label not in CARDIO_CLASSES:
            raise ValueError(f"decoy label must be one of {CARDIO_CLASSES}, got {self.label!r}")


@dataclass(frozen=True)
class InteractionRule:
    """Label ``label`` when both ``cues`` are shown in proportion; each decoy shows one cue strongly with a
    faint partner, and has another label."""

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


_TROPONIN = Cue("tabular", CAD, "troponin rise", tests=("troponin_ng_l",))
_ISCHAEMIC_ECG = Cue("signal", CAD, "ischaemic ST-T changes")
_MURMUR = Cue("text", VALVULAR, "murmur described in the note")
_ATRIAL_ENLARGEMENT = Cue("image", VALVULAR, "left atrial enlargement with thickened mitral leaflets")
_AF = Cue("signal", ARRHYTHMIA, "atrial fibrillation")
_DILATED_LV = Cue("image", HF, "dilated, thin-walled left ventricle")

RULES: tuple[InteractionRule, ...] = (
    InteractionRule(
        "troponin_with_ischaemic_ecg", CAD, (_TROPONIN, _ISCHAEMIC_ECG),
        "A troponin rise in proportion to ischaemic ECG changes in a coronary territory is coronary disease "
        "(mild rise with subtle changes early on, marked rise with marked changes later); either far out of "
        "proportion to the other has another cause.",
        (Decoy("normal", _TROPONIN, "troponin out of proportion to a near-normal ECG: a leak (renal clearance, "
                                    "demand), no coronary disease"),
         Decoy("normal", _ISCHAEMIC_ECG, "marked ischaemic-looking repolarisation with a trace of troponin: early "
                                         "repolarisation or a strain pattern, no coronary disease")),
    ),
    InteractionRule(
        "murmur_with_atrial_enlargement", VALVULAR, (_MURMUR, _ATRIAL_ENLARGEMENT),
        "A murmur whose loudness matches the left atrial enlargement and mitral leaflet changes on the echo is "
        "valve disease; a loud murmur with a near-normal echo is an innocent flow murmur, and a large atrium "
        "with barely a murmur is not a significant valve lesion.",
        (Decoy("normal", _MURMUR, "loud murmur with a near-normal echo: innocent flow murmur"),
         Decoy("normal", _ATRIAL_ENLARGEMENT, "atrial enlargement with barely a murmur: no significant valve "
                                              "lesion")),
    ),
    InteractionRule(
        "af_with_dilated_lv", HF, (_AF, _DILATED_LV),
        "Atrial fibrillation with a ventricle dilated in proportion is heart failure (the AF its complication), "
        "not a primary arrhythmia; AF with a barely enlarged ventricle is primary AF, and a markedly dilated "
        "ventricle with only bursts of AF is a tachycardia-mediated cardiomyopathy, treated as the arrhythmia.",
        (Decoy(ARRHYTHMIA, _AF, "established AF with a barely enlarged ventricle: primary arrhythmia"),
         Decoy(ARRHYTHMIA, _DILATED_LV, "markedly dilated ventricle with only bursts of AF: tachycardia-mediated "
                                        "cardiomyopathy, primarily the arrhythmia")),
    ),
)
RULES_BY_NAME = {rule.name: rule for rule in RULES}


@dataclass(frozen=True)
class InteractionPlan:
    """How interactions decide one case: the rule, the role (conjunction or decoy), the cue intensity shown
    per modality of the pair and the strength of the interaction (a conjunction's weaker cue; a decoy's
    disproportion, its strong cue minus its faint one)."""

    rule: InteractionRule
    role: str
    decoy: Decoy | None
    intensity: dict[str, float]
    strength: float

    @property
    def cue_findings(self) -> dict[str, dict[str, float]]:
        """Per modality of the pair, the finding its cue shows and at what intensity."""
        shown = {c.modality: c.finding for c in self.rule.cues}
        return {m: {shown[m]: v} for m, v in self.intensity.items()}

    @property
    def tests(self) -> tuple[str, ...]:
        """The lab tests the rule's cues need recorded."""
        return tuple(t for c in self.rule.cues for t in c.tests)

    @property
    def misleading(self) -> str | None:
        """A decoy's strongly shown modality, whose cue alone points away from the label; None otherwise."""
        return self.decoy.cue.modality if self.decoy is not None else None


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
        level = FAINT if rng.random() < 0.5 else STRONG
        intensity = {m: float(rng.uniform(*level)) for m in rule.modalities}
        return InteractionPlan(rule, CONJUNCTION, None, intensity, min(intensity.values()))
    strong, faint = float(rng.uniform(*STRONG)), float(rng.uniform(*FAINT))
    intensity = {m: (strong if m == decoy.cue.modality else faint) for m in rule.modalities}
    return InteractionPlan(rule, DECOY, decoy, intensity, strong - faint)


def workup_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of an interaction-decided case's work-up (missing modalities, weak evidence), apart from
    :func:`draw_interaction`'s so that neither shifts the other's draws."""
    return np.random.default_rng([seed, index + 1, INTERACTION_STREAM, 1])


def weak_strengths(rng: np.random.Generator) -> dict[str, float]:
    """Per modality, the weak intensity at which a modality outside the pair shows the rule's label."""
    return {m: float(WEAK_SCALE * rng.beta(1.2, 4.0)) for m in MODALITIES}
