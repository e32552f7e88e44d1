"""Synthetic cardiology consult notes whose finding phrases sit at known character spans, so that text
attributions can be checked against the evidence that was planted."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from neurofusion.data.tasks import CARDIO_FINDINGS


@dataclass(frozen=True)
class NoteResult:
    text: str
    # (start, end, finding): text[start:end] is a phrase that expresses `finding`.
    evidence: tuple[tuple[int, int, str], ...]


_SMOKING = ("never", "former", "current")


@dataclass(frozen=True)
class Patient:
    """What a note states about the patient besides the findings: age, sex, risk factors, smoking and the
    blood pressure. Built from the case's own tabular draw (``cardio.patient_from_labs``, also when the
    case's table is missing), so that the history, medications, social history and vitals agree with the
    labs by construction. The defaults describe a never-smoker with none of the risk factors."""

    age: int
    sex: str  # "F" or "M"
    smoker: str = "never"  # never, former or current
    diabetes: bool = False
    hypertension: bool = False
    hyperlipidemia: bool = False
    obesity: bool = False
    systolic_bp: float | None = None  # mmHg; None = not measured, and the note then states no blood pressure

    def __post_init__(self) -> None:
        if self.sex not in ("F", "M"):
            raise ValueError(f"sex must be 'F' or 'M', got {self.sex!r}")
        if not self.age > 0:
            raise ValueError(f"age must be a positive number of years, got {self.age}")
        if self.smoker not in _SMOKING:
            raise ValueError(f"smoker must be one of {_SMOKING}, got {self.smoker!r}")
        if self.systolic_bp is not None and not 50 <= self.systolic_bp <= 260:  # also rejects NaN
            raise ValueError(f"systolic_bp must be None (not measured) or 50-260 mmHg, got {self.systolic_bp}")


@dataclass(frozen=True)
class _Phrase:
    text: str
    finding: str
    slot: str  # where the note puts it: hpi, history, neck, heart, lungs, extremities, labs, impression
    specific: bool  # explicit wording; vague wording is what weak cases mostly show
    lab: str = ""  # lab that must be measured and elevated for the phrase to be true


# Plain text, or (phrase, finding) for a planted evidence phrase.
_Piece = str | tuple[str, str]

# finding -> slot -> phrases. Phrases are noun phrases so any template can carry them, and none holds a
# negation cue ("no", "denies"), so a span never starts mid-negation.
_SPECIFIC: dict[str, dict[str, tuple[str, ...]]] = {
    "coronary_artery_disease": {
        "hpi": ("exertional chest pain", "substernal chest pressure radiating to the left arm",
                "chest pressure relieved by rest", "exertional angina"),
        "history": ("prior PCI to the LAD", "ST depressions on prior stress test",
                    "multivessel CAD on prior catheterization", "a prior NSTEMI"),
    },
    "heart_failure": {
        "hpi": ("orthopnea", "paroxysmal nocturnal dyspnea", "progressive DOE", "a 4 kg weight gain with leg swelling"),
        "history": ("reduced ejection fraction", "EF 25-30% on prior echo", "HFrEF"),
        "neck": ("elevated JVP", "JVD to the angle of the jaw"),
        "lungs": ("bibasilar crackles", "rales at both bases"),
        "extremities": ("bilateral pitting edema", "2+ pitting edema to the knees"),
    },
    "arrhythmia": {
        "hpi": ("palpitations", "episodes of a racing irregular heartbeat",
                "sudden-onset palpitations with near-syncope"),
        "history": ("atrial fibrillation on Holter", "paroxysmal AF on a prior event monitor",
                    "frequent PVCs on Holter"),
        "heart": ("irregularly irregular rhythm", "pulse deficit"),
    },
    "valvular_disease": {
        "hpi": ("exertional presyncope",),
        "history": ("known aortic stenosis", "moderate mitral regurgitation on prior echo", "a bicuspid aortic valve"),
        "heart": ("harsh systolic murmur at the right upper sternal border",
                  "holosystolic murmur radiating to the axilla", "diminished S2",
                  "III/VI crescendo-decrescendo murmur radiating to the carotids"),
    },
}
# Vague phrases overlap between findings on purpose: a weak case should not be trivially classifiable.
_VAGUE: dict[str, dict[str, tuple[str, ...]]] = {
    "coronary_artery_disease": {"hpi": ("intermittent chest tightness", "vague chest discomfort with exertion",
                                        "reduced exercise tolerance")},
    "heart_failure": {"hpi": ("mild dyspnea on exertion", "increasing fatigue", "some ankle swelling in the evenings"),
                      "extremities": ("trace ankle edema",)},
    "arrhythmia": {"hpi": ("episodes of lightheadedness", "occasional fluttering in the chest",
                           "an occasional skipped beat"),
                   "heart": ("occasional ectopic beats",)},
    "valvular_disease": {"hpi": ("reduced exercise tolerance", "exertional fatigue"),
                         "heart": ("a soft systolic murmur", "a faint murmur at the apex")},
}
# Lab phrases are only planted when the lab is measured and elevated (see _ELEVATED).
_LAB_EVIDENCE: dict[str, tuple[str, tuple[str, ...]]] = {
    "coronary_artery_disease": ("troponin_ng_l", ("elevated troponin", "troponin elevation")),
    "heart_failure": ("bnp_pg_ml", ("elevated BNP", "BNP elevation")),
}
_DIAGNOSES: dict[str, tuple[str, ...]] = {
    "coronary_artery_disease": ("coronary artery disease with stable angina", "ischemic heart disease",
                                "unstable angina"),
    "heart_failure": ("heart failure with reduced ejection fraction", "acute on chronic systolic heart failure",
                      "decompensated HFrEF"),
    "arrhythmia": ("paroxysmal atrial fibrillation", "atrial fibrillation with rapid ventricular response",
                   "symptomatic SVT"),
    "valvular_disease": ("severe aortic stenosis", "severe mitral regurgitation", "symptomatic valvular heart disease"),
}


def _bank(finding: str) -> tuple[_Phrase, ...]:
    phrases = [_Phrase(t, finding, slot, True) for slot, ts in _SPECIFIC[finding].items() for t in ts]
    phrases += [_Phrase(t, finding, slot, False) for slot, ts in _VAGUE[finding].items() for t in ts]
    if finding in _LAB_EVIDENCE:
        lab, texts = _LAB_EVIDENCE[finding]
        phrases += [_Phrase(t, finding, "labs", True, lab) for t in texts]
    return (*phrases, *(_Phrase(t, finding, "impression", True) for t in _DIAGNOSES[finding]))


# Every phrase the generator can mark as evidence, by finding.
_BANK: dict[str, tuple[_Phrase, ...]] = {f: _bank(f) for f in CARDIO_FINDINGS}

# Negations (never evidence); a finding's denials appear only in notes with no evidence for it.
_DENIALS: dict[str, tuple[str, ...]] = {
    "coronary_artery_disease": ("denies chest pain", "no exertional chest pain", "denies anginal symptoms"),
    "heart_failure": ("no orthopnea or PND", "denies leg swelling", "no paroxysmal nocturnal dyspnea"),
    "arrhythmia": ("denies palpitations", "no palpitations or syncope"),
    "valvular_disease": ("denies exertional syncope",),
}
_NORMAL_EXAM: dict[str, tuple[str, ...]] = {
    "neck": ("no JVD", "JVP not elevated", "supple, no JVD"),
    "lungs": ("clear to auscultation bilaterally", "CTAB", "clear, no crackles or wheezes"),
    "extremities": ("no peripheral edema", "warm and well perfused, no edema", "no clubbing, cyanosis or edema"),
}
_NORMAL_RHYTHM = ("regular rate and rhythm", "RRR")
_NO_MURMUR = ("no murmurs, rubs or gallops", "normal S1 and S2, no murmur", "no m/r/g")
# Hedged mentions name diseases without asserting them; drawn independently of the findings.
_HEDGES = ("Rule out ACS.", "Would rule out an underlying arrhythmia.", "Cannot exclude structural heart disease.",
           "Low suspicion for valvular disease.", "R/o ischemia.")
_LOW_SUSPICION = {"Low suspicion for valvular disease.": "valvular_disease"}  # false once the note evidences it
_FAMILY = ("Family history of atrial fibrillation in {poss} mother.", "Father had an MI at age 70.",
           "Family history notable for premature CAD.", "Family history noncontributory.")

_HEADINGS = ("CARDIOLOGY CONSULT NOTE", "Cardiology Consultation", "CARDIOLOGY CONSULTATION", "Cardiology Consult Note",
             "Inpatient Cardiology Consult", "Outpatient Cardiology Consultation")
_HEADERS: dict[str, tuple[str, ...]] = {
    "reason": ("Reason for consult:", "Reason for consultation:", "RFC:"),
    "hpi": ("HPI:", "History of Present Illness:", "HISTORY OF PRESENT ILLNESS:"),
    "pmh": ("PMH:", "Past Medical History:", "PAST MEDICAL HISTORY:"),
    "meds": ("Medications:", "Meds:", "Current medications:"),
    "social": ("Social history:", "SH:", "Social/family history:"),
    "ros": ("ROS:", "Review of systems:", "REVIEW OF SYSTEMS:"),
    "exam": ("Physical exam:", "PHYSICAL EXAMINATION:", "Exam:"),
    "labs": ("Labs:", "Pertinent labs:", "Laboratory data:"),
    "impression": ("Impression:", "Assessment:", "IMPRESSION:"),
    "plan": ("Plan:", "PLAN:", "Recommendations:"),
}
_REASONS = ("chest discomfort", "shortness of breath", "an abnormal ECG", "pre-operative cardiac risk assessment",
            "fatigue", "cardiovascular risk assessment", "dizziness")
_RISK_FACTORS = (("HTN", "hypertension"), ("DM2", "type 2 diabetes"), ("HLD", "hyperlipidemia"), ("obesity",))
_RISK_FLAGS = ("hypertension", "diabetes", "hyperlipidemia", "obesity")  # the Patient field behind each
# The opening's history when the patient has none of the risk factors above.
_NO_RISK_FACTOR = {"current": "active tobacco use", "former": "a remote smoking history",
                   "never": "no known cardiac risk factors"}
_OTHER_PMH = ("hypothyroidism", "GERD", "osteoarthritis of the knees", "s/p right total knee replacement",
              "s/p cholecystectomy", "chronic low back pain", "migraines", "gout", "OSA on CPAP", "depression")
_MEDS = ("lisinopril 10 mg daily", "metformin 1000 mg BID", "atorvastatin 40 mg nightly", "levothyroxine 75 mcg daily",
         "omeprazole 20 mg daily", "sertraline 50 mg daily", "acetaminophen PRN for knee pain", "vitamin D",
         "amlodipine 5 mg daily", "aspirin 81 mg daily")
# A drug that implies a diagnosis is listed only for a patient who has it.
_MED_FOR = {"lisinopril 10 mg daily": "hypertension", "amlodipine 5 mg daily": "hypertension",
            "metformin 1000 mg BID": "diabetes"}
_SMOKING_STATUS = {"former": "Former smoker, quit {years} years ago.", "never": "Never smoker.",
                   "current": "Smokes half a pack per day."}
_SOCIAL = (tuple(_SMOKING_STATUS.values()),  # one draw from three, then the patient's own status
           ("Drinks alcohol socially.", "Drinks 2-3 glasses of wine per week.", "No alcohol or illicit drug use."),
           ("Retired {job}.", "Works as a {job}."), ("Lives with {poss} spouse.", "Lives alone.",
                                                     "Lives with {poss} daughter."))
_JOBS = ("teacher", "accountant", "nurse", "electrician", "bus driver", "farmer", "librarian", "software engineer")
_OPENINGS = ("{Pro} is a {age}-year-old {noun} with {risk} referred for {reason}.",
             "{age} y/o {sx} with {risk}, seen for {reason}.",
             "{age}-year-old {noun} with {history} who presents for {reason}.")
_SYMPTOM_TEMPLATES = ("{Pro} reports {x}.", "{Pro} endorses {x}.", "{Pro} describes {x} over the past {weeks} weeks.",
                      "Over the last {weeks} weeks {pro} has noticed {x}.", "Complains of {x}.",
                      "{Pro} notes {x}, worse over the past month.")
_HPI_FILLERS = ("{Pro} was seen by {poss} PCP, who requested this consult.", "{Pro} remains independent in ADLs.",
                "{Pro} walks about {miles} miles most days.", "No recent travel or sick contacts.",
                "{Pro} reports good adherence to {poss} medications.", "Outside records were reviewed.",
                "{Pro} is accompanied by {poss} daughter today.", "{Pro} had a flu-like illness last winter.",
                "{Pro} sleeps well and has a good appetite.", "{Pro} is otherwise active and enjoys gardening.",
                "{Pro} fractured {poss} left wrist in a fall on the ice two years ago; it healed well.",
                "{Pro} had a screening colonoscopy last year that was unremarkable.",
                "{Pro} has not been to the emergency department for this.")
_ROS_GENERAL = ("Negative for fever, chills, cough or abdominal pain.", "Negative in 10 systems except as in HPI.",
                "All other systems reviewed and negative.", "Denies fever, weight loss or night sweats.")
_GENERAL_EXAM = ("well-appearing, in no acute distress", "NAD", "alert and oriented, comfortable")
_OTHER_EXAM = ("HEENT: normocephalic, moist mucous membranes.", "Abdomen: soft, non-tender, non-distended.",
               "Skin: warm and dry, no rashes.", "Neuro: alert and oriented x3, no focal deficits.",
               "Musculoskeletal: healed scar over the right knee, full range of motion.",
               "Psych: pleasant, normal affect.")
_CLOSINGS = ("Discussed the findings with the patient, who agrees with the plan.",
             "Will coordinate further care with the primary care team.",
             "Questions were answered and written instructions were provided.",
             "Total time spent was 45 minutes, more than half in counselling.")
_DX_LEADS = ("Presentation most consistent with", "Findings consistent with", "Likely")
_VITALS = ((105, 165), (60, 95), (55, 100), (12, 20), (93, 100))  # drawn systolic, diastolic, HR, RR, SpO2
_TACHYARRHYTHMIAS = ("atrial fibrillation with rapid ventricular response", "symptomatic SVT")
_NO_EVIDENCE = ("No convincing evidence of a primary cardiac process.", "Cardiac exam unremarkable today.")
_PLAN = ("obtain TTE", "exercise treadmill stress test", "continue current medications", "lipid panel and HbA1c",
         "14-day ambulatory ECG monitor", "risk factor modification and regular exercise",
         "follow up in cardiology clinic in {weeks} weeks", "BP goal below 130/80",
         "encourage 150 minutes of moderate exercise per week", "review results with the PCP")

NOTE_LABS = ("troponin_ng_l", "bnp_pg_ml", "ldl_mg_dl", "potassium_mmol_l", "creatinine_mg_dl")
_ELEVATED = {"troponin_ng_l": 26.0, "bnp_pg_ml": 100.0}  # hs troponin I 99th percentile; BNP HF cut-off
_MAX_PHRASES = 6  # phrases per finding at intensity 1 (plus possibly the named diagnosis)
_NAMED_ABOVE = 0.75  # the impression names the diagnosis only above this intensity
_SLOT_CAP = {"hpi": 3, "history": 2, "heart": 2, "neck": 1, "lungs": 1, "extremities": 1, "labs": 1}


def write_note(rng: np.random.Generator, findings: Mapping[str, float], *, patient: Patient,
               labs: Mapping[str, float] | None = None) -> NoteResult:
    """Write one consult note for `patient` with `findings` (finding -> intensity in [0, 1]).

    Each finding plants Binomial(6, intensity**1.5) phrases, explicit ones with probability `intensity`
    and vague ones otherwise; above intensity 0.75 the impression may name the diagnosis. Lab phrases
    follow `labs` (NaN or absent = not measured); risk factors, drugs that imply a diagnosis, smoking and
    the blood pressure follow `patient`. All randomness comes from `rng`, and the draws do not depend on
    `patient` (so a cohort regenerates with the same evidence whatever its patients' histories).
    """
    measured = _validate(findings, labs)
    she = patient.sex == "F"
    risk, n_risk = _risk_factors(rng, patient)
    age = int(patient.age)
    ctx = {"Pro": "She" if she else "He", "pro": "she" if she else "he", "poss": "her" if she else "his",
           "noun": _pick(rng, ("woman", "female") if she else ("man", "male")), "sx": patient.sex, "age": age,
           "risk": " and ".join(risk) or _NO_RISK_FACTOR[patient.smoker],
           "reason": _pick(rng, _REASONS), "weeks": int(rng.integers(2, 9)),
           # nobody quit smoking before the age of 16
           "years": min(int(rng.integers(2, 30)), max(2, age - 16)), "miles": int(rng.integers(2, 5)),
           "job": _pick(rng, _JOBS)}
    ctx["history"] = f"a history of {ctx['risk']}" if risk else ctx["risk"]
    planted = _plant(rng, findings, measured)
    by_slot: dict[str, list[_Phrase]] = {}
    for phrase in planted:
        by_slot.setdefault(phrase.slot, []).append(phrase)
    evidenced = {p.finding for p in planted}
    denials = [_pick(rng, _denials_for(f, ctx["reason"])) for f in CARDIO_FINDINGS
               if f not in evidenced and rng.random() < 0.7]
    verbosity = rng.random()  # one draw sets how much optional material the note carries

    has_ros = rng.random() < 0.1 + 0.8 * verbosity
    sections: dict[str, list[_Piece] | None] = {
        "reason": [_pick(rng, ("Consult requested for {reason}.", "Referred for {reason}.")).format(**ctx)],
        "hpi": _hpi(rng, ctx, by_slot.get("hpi", []), [] if has_ros else denials, verbosity),
        "pmh": _pmh(rng, risk, n_risk, by_slot.get("history", []), verbosity)
        if by_slot.get("history") or rng.random() < 0.3 + 0.7 * verbosity else None,
        "meds": _meds(rng, patient, verbosity) if rng.random() < 0.2 + 0.8 * verbosity else None,
        "social": _social(rng, ctx, patient.smoker, verbosity) if rng.random() < 0.1 + 0.9 * verbosity else None,
        "ros": [*([*_denial_sentence(denials), " "] if denials else []), _pick(rng, _ROS_GENERAL)] if has_ros else None,
        "exam": _exam(rng, by_slot, evidenced, patient.systolic_bp, verbosity),
        "labs": _labs(rng, by_slot.get("labs", []), measured, verbosity),
        "impression": _impression(rng, ctx, by_slot.get("impression", []), evidenced, verbosity),
        "plan": _plan(rng, ctx, verbosity),
    }
    middle = ["pmh", "meds", "social"]
    if rng.random() < 0.3:  # slight reordering, as different authors do
        k = int(rng.integers(2))
        middle[k], middle[k + 1] = middle[k + 1], middle[k]
    middle.insert(0 if rng.random() < 0.3 else 3, "ros")
    exam_labs = ["labs", "exam"] if rng.random() < 0.3 else ["exam", "labs"]
    order = ["reason", "hpi", *middle, *exam_labs, "impression", "plan"]
    return _render(_pick(rng, _HEADINGS), [(_pick(rng, _HEADERS[s]), sections[s]) for s in order],
                   _pick(rng, ("\n", "\n\n")))


def _validate(findings: Mapping[str, float], labs: Mapping[str, float] | None) -> dict[str, float]:
    """Raise on bad input; return the measured (non-NaN) labs."""
    for name, value in findings.items():
        if name not in CARDIO_FINDINGS:
            raise ValueError(f"unknown finding {name!r}; expected one of {CARDIO_FINDINGS}")
        if not 0.0 <= float(value) <= 1.0:  # also rejects NaN
            raise ValueError(f"intensity of {name!r} must be in [0, 1], got {value}")
    measured = {}
    for name, value in (labs or {}).items():
        if name not in NOTE_LABS:
            raise ValueError(f"unknown lab {name!r}; expected one of {NOTE_LABS}")
        if value is not None and not math.isnan(value):
            measured[name] = float(value)
    return measured


def _risk_factors(rng: np.random.Generator, patient: Patient) -> tuple[list[str], int]:
    """One or two of the patient's own risk factors as the note words them, and how many were drawn.

    The draws are those every note makes (how many, in what order, which wording) whatever the patient
    has, so the rest of the note keeps its draws; the wording of a factor those draws did not word comes
    from a child stream, which leaves ``rng`` where it was."""
    n_risk = int(rng.integers(1, 3))
    order = [int(k) for k in rng.permutation(len(_RISK_FACTORS))]
    words = {k: _pick(rng, _RISK_FACTORS[k]) for k in order[:n_risk]}
    chosen = [k for k in order if getattr(patient, _RISK_FLAGS[k])][:n_risk]
    if any(k not in words for k in chosen):
        child = rng.spawn(1)[0]
        words.update({k: _pick(child, _RISK_FACTORS[k]) for k in chosen if k not in words})
    return [words[k] for k in chosen], n_risk


def _plant(rng: np.random.Generator, findings: Mapping[str, float], measured: Mapping[str, float]) -> list[_Phrase]:
    """Choose the evidence phrases: more, and more explicit, as intensity grows."""
    planted: list[_Phrase] = []
    used: set[str] = set()  # vague phrases are shared between findings; never write one twice
    for finding in CARDIO_FINDINGS:  # fixed order keeps the draws reproducible
        intensity = float(findings.get(finding, 0.0))
        if intensity == 0.0:
            continue
        bank = [p for p in _BANK[finding] if p.slot != "impression"
                and (not p.lab or measured.get(p.lab, -math.inf) >= _ELEVATED[p.lab])]
        chosen: list[_Phrase] = []
        for _ in range(rng.binomial(_MAX_PHRASES, intensity ** 1.5)):
            free = [p for p in bank if p.text not in used
                    and sum(q.slot == p.slot for q in chosen) < _SLOT_CAP[p.slot]]
            if not free:
                break
            explicit = rng.random() < intensity
            pool = [p for p in free if p.specific == explicit] or free
            chosen.append(_pick(rng, pool))
            used.add(chosen[-1].text)
        if intensity > _NAMED_ABOVE and rng.random() < 0.7:
            chosen.append(_pick(rng, [p for p in _BANK[finding] if p.slot == "impression"]))
        planted += chosen
    return planted


def _hpi(rng: np.random.Generator, ctx: dict, symptoms: list[_Phrase], denials: list[str],
         verbosity: float) -> list[_Piece]:
    sentences: list[list[_Piece]] = [[_pick(rng, _OPENINGS).format(**ctx)]]
    symptoms = [symptoms[k] for k in rng.permutation(len(symptoms))]
    templates = _some(rng, _SYMPTOM_TEMPLATES, len(_SYMPTOM_TEMPLATES))  # no template twice in a row
    while symptoms:  # one or two symptoms per sentence
        k = min(len(symptoms), int(rng.integers(1, 3)))
        head, tail = templates[len(sentences) % len(templates)].split("{x}")
        phrases = _join([[(p.text, p.finding)] for p in symptoms[:k]])
        sentences.append([head.format(**ctx), *phrases, tail.format(**ctx)])
        symptoms = symptoms[k:]
    if denials:
        sentences.append(_denial_sentence(denials))
    n_fillers = round(7 * verbosity * (0.7 + 0.3 * rng.random()))
    sentences += [[s.format(**ctx)] for s in _some(rng, _HPI_FILLERS, n_fillers)]
    return _join(sentences, " ", " ")


def _pmh(rng: np.random.Generator, risk: list[str], n_risk: int, history: list[_Phrase],
         verbosity: float) -> list[_Piece]:
    # A patient with fewer risk factors than were drawn leaves empty slots, so the shuffle draws as before.
    items: list[list[_Piece]] = [[r] for r in risk] + [[]] * (n_risk - len(risk))
    items += [[s] for s in _some(rng, _OTHER_PMH, round(6 * verbosity))]
    items += [[(p.text, p.finding)] for p in history]
    shuffled = [items[k] for k in rng.permutation(len(items)) if items[k]]
    return [*_join(shuffled, ", ", ", "), "."] if shuffled else ["No significant past medical history."]


def _meds(rng: np.random.Generator, patient: Patient, verbosity: float) -> list[_Piece]:
    n_meds = int(rng.integers(round(3 * verbosity), 2 + round(6 * verbosity)))
    # One shuffle of the whole list whoever the patient is; drugs for a condition the patient lacks are skipped.
    meds = [m for m in _some(rng, _MEDS, len(_MEDS)) if m not in _MED_FOR or getattr(patient, _MED_FOR[m])]
    meds = meds[:n_meds]
    return [", ".join(meds) + "." if meds else "None."] + ([" Allergies: NKDA."] if rng.random() < 0.4 else [])


def _social(rng: np.random.Generator, ctx: dict, smoker: str, verbosity: float) -> list[_Piece]:
    parts = []
    for group in _SOCIAL:
        if rng.random() < 0.3 + 0.6 * verbosity:
            sentence = _pick(rng, group)
            parts.append((_SMOKING_STATUS[smoker] if group is _SOCIAL[0] else sentence).format(**ctx))
    if rng.random() < 0.5 * verbosity:
        parts.append(_pick(rng, _FAMILY).format(**ctx))
    return [" ".join(parts) or "Noncontributory."]


def _exam(rng: np.random.Generator, by_slot: Mapping[str, list[_Phrase]], evidenced: set[str],
          systolic_bp: float | None, verbosity: float) -> list[_Piece]:
    lines: list[list[_Piece]] = []
    if rng.random() < 0.4 + 0.6 * verbosity:
        sbp, dbp, hr, rr, spo2 = (int(rng.integers(lo, hi)) for lo, hi in _VITALS)
        # The blood pressure is the table's (none when it was not measured); the drawn one only keeps the
        # draws. A tachyarrhythmia named in the impression comes with a fast rate.
        bp = "" if systolic_bp is None else f"BP {round(systolic_bp)}/{min(dbp, round(systolic_bp) - 25)}, "
        if any(p.text in _TACHYARRHYTHMIAS for p in by_slot.get("impression", [])):
            hr += 45
        lines.append([f"Vitals: {bp}HR {hr}, RR {rr}, SpO2 {spo2}% on RA."])
    if rng.random() < verbosity:
        lines.append([f"General: {_pick(rng, _GENERAL_EXAM)}."])
    heart = by_slot.get("heart", [])
    # Normal statements first, then evidence, then negations, so no evidence follows a negation cue.
    items: list[list[_Piece]] = [] if any(p.finding == "arrhythmia" for p in heart) else [[_pick(rng, _NORMAL_RHYTHM)]]
    items += [[(p.text, p.finding)] for p in heart]
    if "valvular_disease" not in evidenced:  # "no murmur" would contradict any valve evidence
        items.append([_pick(rng, _NO_MURMUR)])
    exam_slots = {"neck": ("Neck:",), "heart": ("Heart:", "CV:"), "lungs": ("Lungs:", "Resp:"),
                  "extremities": ("Extremities:", "Ext:")}
    for slot, labels in exam_slots.items():
        if slot == "heart":
            body = _join(items, ", ", ", ")
        elif by_slot.get(slot):
            body = [(by_slot[slot][0].text, by_slot[slot][0].finding)]
        elif rng.random() < 0.3 + 0.7 * verbosity:
            body = [_pick(rng, _NORMAL_EXAM[slot])]
        else:
            continue
        lines.append([_pick(rng, labels) + " ", *body, "."])
    lines += [[s] for s in _some(rng, _OTHER_EXAM, round(5 * verbosity * (0.5 + 0.5 * rng.random())))]
    return ["\n", *_join(lines, "\n", "\n")] if rng.random() < 0.6 else _join(lines, " ", " ")


def _labs(rng: np.random.Generator, evidence: list[_Phrase], measured: Mapping[str, float],
          verbosity: float) -> list[_Piece] | None:
    """Lab items consistent with `measured`; None when nothing is reported."""
    if not measured or not (evidence or rng.random() < 0.3 + 0.6 * verbosity):
        return None
    cited = {p.lab: p for p in evidence}
    items: list[list[_Piece]] = []
    for name in NOTE_LABS:
        if name not in measured or (name not in cited and rng.random() < 0.2):
            continue
        v = measured[name]
        if name in cited:
            unit = f"hs-TnI {v:.0f} ng/L" if name == "troponin_ng_l" else f"{v:.0f} pg/mL"
            items.insert(0, [(cited[name].text, cited[name].finding), f" ({unit})"])
        elif name == "troponin_ng_l":  # values are quoted only when elevated
            items.append([f"hs-troponin I {v:.0f} ng/L" if v >= _ELEVATED[name]
                          else _pick(rng, ("troponin negative", "hs-troponin I within normal limits"))])
        elif name == "bnp_pg_ml":
            items.append([f"BNP {v:.0f} pg/mL" if v >= _ELEVATED[name]
                          else _pick(rng, ("BNP within normal limits", "BNP not elevated"))])
        else:
            items.append([{"ldl_mg_dl": f"LDL {v:.0f} mg/dL", "potassium_mmol_l": f"K {v:.1f} mmol/L",
                           "creatinine_mg_dl": f"creatinine {v:.2f} mg/dL"}[name]])
    # "; " keeps a negated lab ("troponin negative") out of the clause of a cited one.
    return [*_join(items, "; ", "; "), "."] if items else None


def _impression(rng: np.random.Generator, ctx: dict, diagnoses: list[_Phrase], evidenced: set[str],
                verbosity: float) -> list[_Piece]:
    sentences: list[list[_Piece]] = []
    if not diagnoses or rng.random() < 0.3 + 0.7 * verbosity:
        sentences.append(["{age}-year-old {noun} with {risk}, seen for {reason}.".format(**ctx)])
    sentences += [[_pick(rng, _DX_LEADS) + " ", (p.text, p.finding), "."] for p in diagnoses]
    if not evidenced and rng.random() < 0.5:
        sentences.append([_pick(rng, _NO_EVIDENCE)])
    if rng.random() < 0.4:
        hedge = _pick(rng, _HEDGES)
        if _LOW_SUSPICION.get(hedge) not in evidenced:
            sentences.append([hedge])
    sentences += [[s] for s in _some(rng, _CLOSINGS, round(3 * verbosity * (0.5 + 0.5 * rng.random())))]
    return _join(sentences, " ", " ")


def _plan(rng: np.random.Generator, ctx: dict, verbosity: float) -> list[_Piece]:
    steps = [s.format(**ctx) for s in _some(rng, _PLAN, 1 + round(5 * verbosity * (0.5 + 0.5 * rng.random())))]
    if rng.random() < 0.5:
        return ["\n" + "\n".join(f"{k}. {s[0].upper()}{s[1:]}." for k, s in enumerate(steps, 1))]
    text = "; ".join(steps)
    return [text[0].upper() + text[1:] + "."]


def _denials_for(finding: str, reason: str) -> tuple[str, ...]:
    # A patient referred for chest discomfort does not "deny chest pain".
    return tuple(d for d in _DENIALS[finding] if "chest" not in reason or "chest pain" not in d) or _DENIALS[finding]


def _denial_sentence(denials: Sequence[str]) -> list[_Piece]:
    text = "; ".join(denials)
    return [text[0].upper() + text[1:] + "."]


def _join(items: Sequence[Sequence[_Piece]], sep: str = ", ", last: str = " and ") -> list[_Piece]:
    out: list[_Piece] = []
    for k, item in enumerate(items):
        if k:
            out.append(last if k == len(items) - 1 else sep)
        out.extend(item)
    return out


def _render(heading: str, sections: Sequence[tuple[str, list[_Piece] | None]], gap: str) -> NoteResult:
    """Concatenate the pieces, recording where each evidence phrase lands."""
    pieces: list[_Piece] = [heading]
    for header, body in sections:
        if body is not None:
            pieces += [gap, header, "" if body and isinstance(body[0], str) and body[0].startswith("\n") else " ",
                       *body]
    chunks, spans, pos = [], [], 0
    for piece in pieces:
        if isinstance(piece, tuple):
            spans.append((pos, pos + len(piece[0]), piece[1]))
            piece = piece[0]
        chunks.append(piece)
        pos += len(piece)
    return NoteResult(text="".join(chunks) + "\n", evidence=tuple(spans))


def _pick(rng: np.random.Generator, options: Sequence):
    return options[int(rng.integers(len(options)))]


def _some(rng: np.random.Generator, options: Sequence[str], k: int) -> list[str]:
    return [options[j] for j in rng.permutation(len(options))[:k]]
