"""A cross-modal interaction planted in the synthetic ICU cohort: the oxygen saturation the monitor shows
(vitals) read against the saturation target the nursing note sets (notes), deciding death within 48 h.

Clinical rule (``spo2_against_target``): a patient with chronic hypercapnic lung disease (known COPD, a CO2
retainer) is titrated to a target SpO2 of 88-92 %; everyone else to 94-98 % (the British Thoracic Society's
targets). A saturation inside the note's target is safe; outside it is not, in either direction:

    SpO2 87-90 % with target 88-92 % (COPD)      on target  -> survives
    SpO2 97-99 % with target 94-98 %             on target  -> survives
    SpO2 97-99 % with target 88-92 % (COPD)      off target -> dies: over-oxygenation of a CO2 retainer,
                                                                hypercapnic narcosis
    SpO2 87-90 % with target 94-98 %             off target -> dies: hypoxaemia below target

So a low saturation means safety beside a COPD target and danger beside a standard one, and a high saturation
the reverse: the cue's direction flips with its partner, the log-odds XOR that no sum of per-modality
evidence fits (an AND of two cues is a sum of log-odds that an additive model separates; see
:mod:`neurofusion.data.synthetic.interactions`). Each saturation band and each target is shown in half of
the decided stays, independently, so neither cue alone says anything about the outcome.

An interaction-decided stay: from the *cue hour* (U(6, 18) h) the monitor's SpO2 sits at the drawn level
(its noise and drift kept); a note 0.25-1.5 h later records the oxygen titration and the target, and every
later note repeats the target. The outcome is the rule's: a death 14-40 h after that note, or a discharge
alive 30-90 h after it. Everything else says nothing about how it ends: the course is stable (severity
flat at the stay's admission severity plus the usual noise), so vitals other than SpO2, labs, notes and
demographics follow the admission severity only; vitals and notes are kept present. ``interaction_from_h``
in ground_truth.csv is the hour both cues are recorded (the first SpO2 row at or after the cue hour and the
target note, whichever is later); a sample before it cannot show the rule, and the vitals and notes
``<modality>_signal_from_h`` are the hours each cue was first recorded.

Which stays are decided is drawn per stay from its own generator stream :data:`INTERACTION_STREAM`, never
from the streams of the additive cohort, so an interaction share of 0 reproduces the cohort exactly, and the
stays decided at a share are among those decided at any larger share.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofusion.data.synthetic.icu.notes import Note
from neurofusion.data.synthetic.icu.trajectory import MAX_STAY_H, StayPlan, draw_severity

# The third index of a stay's generator seed [seed, stay + 1, stream]: 0 plans the stay, 1-3 render vitals,
# labs and notes, 4 decides whether (and how) the interaction decides it.
INTERACTION_STREAM = 4
RULE = "spo2_against_target"
PAIR = "vitals+notes"
ON_TARGET, OFF_TARGET = "on_target", "off_target"
COPD, STANDARD = "copd", "standard"
TARGET_TEXT = {COPD: "target SpO2 88-92 % (known COPD, CO2 retainer)", STANDARD: "target SpO2 94-98 %"}
LOW_SPO2, HIGH_SPO2 = (87.0, 90.0), (97.0, 99.0)
BANDS_SPLIT = 93.0  # between the two targets; strength is the distance from it
CUE_HOUR = (6.0, 18.0)
NOTE_DELAY_H = (0.25, 1.5)
DEATH_AFTER_H = (14.0, 40.0)
DISCHARGE_AFTER_H = (30.0, 90.0)
INTERACTION_COLUMNS: tuple[str, ...] = ("interaction_rule", "interaction_role", "interaction_pair",
                                        "interaction_strength", "interaction_from_h")


@dataclass(frozen=True)
class IcuInteraction:
    """How the rule decides one stay: the target the note sets (``copd`` or ``standard``), the SpO2 level the
    monitor shows from ``cue_hour``, the hour of the target note, and the outcome (``died``, ``end_hour``)."""

    target: str
    spo2: float
    cue_hour: float
    note_hour: float
    died: bool
    end_hour: float

    @property
    def role(self) -> str:
        """``off_target`` (the stay dies) or ``on_target`` (it survives)."""
        return OFF_TARGET if self.died else ON_TARGET

    @property
    def strength(self) -> float:
        """How clearly the SpO2 sits on one side of the targets: |SpO2 - 93| / 6, in [0.5, 1]."""
        return min(abs(self.spo2 - BANDS_SPLIT) / 6.0, 1.0)


def draw_icu_interaction(seed: int, index: int, share: float) -> IcuInteraction | None:
    """Whether stay ``index`` (0-based) of a cohort drawn with ``seed`` is decided by the rule, and how; None
    when it is not. The first draw of the stay's own stream decides (nested across shares)."""
    if not 0.0 <= share <= 1.0:  # also rejects NaN
        raise ValueError(f"interaction share must be in [0, 1], got {share!r}")
    if share == 0.0:
        return None
    rng = np.random.default_rng([seed, index + 1, INTERACTION_STREAM])
    if rng.random() >= share:
        return None
    target = COPD if rng.random() < 0.5 else STANDARD
    low = rng.random() < 0.5
    spo2 = float(rng.uniform(*(LOW_SPO2 if low else HIGH_SPO2)))
    cue = float(rng.uniform(*CUE_HOUR))
    note = cue + float(rng.uniform(*NOTE_DELAY_H))
    died = low == (target == STANDARD)
    end = note + float(rng.uniform(*(DEATH_AFTER_H if died else DISCHARGE_AFTER_H)))
    return IcuInteraction(target, spo2, cue, note, died, round(min(end, float(MAX_STAY_H)), 4))


def decided_plan(plan: StayPlan, interaction: IcuInteraction, seed: int) -> StayPlan:
    """The stay's plan as the rule decides it: a stable course from its admission severity, the rule's
    outcome, vitals and notes present (demographics, site, labs' presence as planned)."""
    rng = np.random.default_rng([seed, plan.index + 1, INTERACTION_STREAM, 1])
    severity, _ = draw_severity(rng, float(plan.severity[0]), "stable")
    present = {**plan.present, "vitals": True, "notes": True}
    return dataclasses.replace(plan, course="stable", onset_hour=None, severity=severity, trend_hour=None,
                               stay_hours=interaction.end_hour, died=interaction.died, present=present)


def target_notes(notes: list[Note], interaction: IcuInteraction) -> list[Note]:
    """The stay's notes with the titration note at ``note_hour`` and the target repeated in every later note."""
    target = TARGET_TEXT[interaction.target]
    out = [n if n.time < interaction.note_hour else Note(n.time, f"{n.text[:-1]}; {target}.", n.describes)
           for n in notes]
    titration = Note(interaction.note_hour, f"Oxygen titrated, {target}; saturations documented hourly.", "")
    return sorted([*out, titration], key=lambda n: n.time)


def first_spo2_at_or_after(vitals: pd.DataFrame, hour: float) -> float | None:
    """The time of the first SpO2 row at or after ``hour`` in a stay's vitals rows (time, variable, value)."""
    times = vitals.loc[(vitals["variable"] == "spo2") & (vitals["time"] >= hour), "time"]
    return float(times.min()) if len(times) else None


def interaction_truth(interaction: IcuInteraction | None, vitals_from: float | None) -> dict[str, object]:
    """ground_truth.csv's interaction columns ("" / 0 / blank when the rule does not decide the stay);
    ``vitals_from``: the first SpO2 row at or after the cue hour."""
    if interaction is None:
        return {"interaction_rule": "", "interaction_role": "", "interaction_pair": "", "interaction_strength": 0.0,
                "interaction_from_h": None}
    shown = None if vitals_from is None else round(max(vitals_from, interaction.note_hour), 4)
    return {"interaction_rule": RULE, "interaction_role": interaction.role, "interaction_pair": PAIR,
            "interaction_strength": round(interaction.strength, 4), "interaction_from_h": shown}


def interactions_readme(share: float, truth: pd.DataFrame) -> str:
    """The README section on the planted interaction for a cohort written at ``share``."""
    decided = truth[truth["interaction_rule"] != ""]
    roles = decided["interaction_role"].value_counts()
    return f"""
## Cross-modal interaction

With an interaction share of {share:g}, each stay was decided by the rule `{RULE}` with probability {share:g}
({len(decided)} of the {len(truth)} stays written: {roles.get(OFF_TARGET, 0)} off target, who die,
{roles.get(ON_TARGET, 0)} on target, who survive). From a cue hour (6-18 h) the monitor's SpO2 sits low
(87-90 %) or high (97-99 %), and a nursing note sets the target: 88-92 % for a known CO2 retainer (COPD) or
94-98 % otherwise. Inside the target the patient survives; outside it (a CO2 retainer over-oxygenated, or
hypoxaemia below a standard target) dies 14-40 h after the note. Neither cue alone says anything about the
outcome; the course of such a stay is stable, so nothing else does either. ground_truth.csv records
`interaction_rule`, `interaction_role`, `interaction_pair` (vitals+notes), `interaction_strength` (|SpO2 - 93| / 6)
and `interaction_from_h`, the hour from which both cues are recorded; the simulated raters rank vitals and
notes first from that hour (neurofusion/data/synthetic/icu/raters.py).
"""
