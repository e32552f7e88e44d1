"""A synthetic case never contradicts itself: what its consult note states about the patient (age, sex,
risk factors, drugs that imply a diagnosis, smoking, blood pressure, quoted labs) is what its labs table
holds, also for a case whose table is missing (the note then follows the values drawn for it)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping

import pytest

from neurofusion.data.synthetic.cardio import draw_cohort, render_case
from neurofusion.data.synthetic.labs import HYPERLIPIDEMIA_LDL, OBESITY_BMI

# What a note may say -> the table value it needs. Patterns match the generator's wording and the usual
# abbreviations, so that a note written some other way is still checked.
_DIABETES = re.compile(r"type 2 diabetes|\bDM2?\b|diabet|metformin|insulin", re.IGNORECASE)
_HYPERTENSION = re.compile(r"\bHTN\b|\bhypertension\b|lisinopril|amlodipine", re.IGNORECASE)
_SMOKING = ((re.compile(r"never smoker", re.IGNORECASE), "never"),
            (re.compile(r"former smoker|remote smoking", re.IGNORECASE), "former"),
            (re.compile(r"\bsmokes\b|tobacco use|current smoker", re.IGNORECASE), "current"))
_OBESITY = re.compile(r"\bobes", re.IGNORECASE)
_HYPERLIPIDEMIA = re.compile(r"\bHLD\b|hyperlipid", re.IGNORECASE)
_WRONG_SEX = {"F": re.compile(r"\b(he|his|him|man|male)\b|y/o M\b", re.IGNORECASE),
              "M": re.compile(r"\b(she|her|hers|woman|female)\b|y/o F\b", re.IGNORECASE)}
# Quoted lab values with the decimals the table prints.
_QUOTED = {"troponin_ng_l": (r"(?:hs-TnI|hs-troponin I) (\d+) ng/L", 0), "bnp_pg_ml": (r"BNP (\d+) pg/mL", 0),
           "ldl_mg_dl": (r"LDL (\d+) mg/dL", 0), "potassium_mmol_l": (r"\bK (\d+\.\d) mmol/L", 1),
           "creatinine_mg_dl": (r"creatinine (\d+\.\d\d) mg/dL", 2)}
# (pattern, lab, elevated?): qualitative statements about troponin (99th percentile 26) and BNP (100).
_QUALITATIVE = ((r"troponin negative|troponin I within normal", "troponin_ng_l", False),
                (r"elevated troponin|troponin elevation", "troponin_ng_l", True),
                (r"BNP within normal|BNP not elevated", "bnp_pg_ml", False),
                (r"elevated BNP|BNP elevation", "bnp_pg_ml", True))
_CUT_OFF = {"troponin_ng_l": 26.0, "bnp_pg_ml": 100.0}
_VALVE_EVIDENCE = re.compile(r"stenosis|regurgitation|bicuspid|murmur radiating|harsh systolic|diminished S2|"
                             r"valvular heart disease", re.IGNORECASE)


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def contradictions(note: str, recorded: Mapping[str, object], latent: Mapping[str, object] | None = None) -> list[str]:
    """Every statement of ``note`` that disagrees with the case's table row ``recorded`` (NaN or "" = not
    measured). Diagnoses that stand without today's value (obesity, hyperlipidemia) are checked against
    ``latent`` (the values as drawn) when given, else against ``recorded`` where it holds them."""
    latent = latent or recorded
    found = []
    for match in re.finditer(r"\b(\d+)(?:-year-old| y/o)", note):
        if int(match.group(1)) != _number(recorded["age"]):
            found.append(f"age: note {match.group(1)}, table {recorded['age']}")
    if _WRONG_SEX[str(recorded["sex"])].search(note):
        found.append(f"sex: note has '{_WRONG_SEX[str(recorded['sex'])].search(note).group(0)}', table {recorded['sex']}")
    if _DIABETES.search(note) and recorded["diabetes"] != "yes":
        found.append(f"diabetes: note says '{_DIABETES.search(note).group(0)}', table {recorded['diabetes']}")
    if _HYPERTENSION.search(note) and recorded["hypertension"] != "yes":
        found.append(f"hypertension: note says '{_HYPERTENSION.search(note).group(0)}', "
                     f"table {recorded['hypertension']}")
    for pattern, status in _SMOKING:
        if pattern.search(note) and recorded["smoker"] != status:
            found.append(f"smoking: note says {status}, table {recorded['smoker']}")
    bmi, ldl = _number(latent.get("bmi")), _number(latent.get("ldl_mg_dl"))
    if _OBESITY.search(note) and bmi < OBESITY_BMI:  # NaN (unknown) compares False
        found.append(f"obesity: BMI {bmi}")
    if _HYPERLIPIDEMIA.search(note) and ldl < HYPERLIPIDEMIA_LDL:
        found.append(f"hyperlipidemia: LDL {ldl} mg/dL")
    for name, (pattern, decimals) in _QUOTED.items():
        value = _number(recorded.get(name))
        for match in re.finditer(pattern, note):
            if not (math.isfinite(value) and float(match.group(1)) == round(value, decimals)):
                found.append(f"{name}: note {match.group(1)}, table {recorded.get(name)}")
    for pattern, name, elevated in _QUALITATIVE:
        value = _number(recorded.get(name))
        if re.search(pattern, note) and not (value >= _CUT_OFF[name] if elevated else value < _CUT_OFF[name]):
            found.append(f"{name}: note '{pattern}', table {recorded.get(name)}")
    systolic = _number(recorded.get("systolic_bp"))
    for match in re.finditer(r"\bBP (\d+)/(\d+)", note):
        if int(match.group(1)) != systolic or int(match.group(2)) >= int(match.group(1)):
            found.append(f"blood pressure: note {match.group(1)}/{match.group(2)}, table systolic {systolic}")
    return found


def inner_contradictions(note: str) -> list[str]:
    """Statements of a note that contradict each other."""
    found = []
    if "Low suspicion for valvular disease" in note and _VALVE_EVIDENCE.search(note):
        found.append(f"low suspicion of valve disease beside '{_VALVE_EVIDENCE.search(note).group(0)}'")
    rate = re.search(r"\bHR (\d+)", note)
    if rate and int(rate.group(1)) < 100 and re.search(r"rapid ventricular response|SVT", note):
        found.append(f"tachyarrhythmia named with HR {rate.group(1)}")
    return found


# ------------------------------------------------------------------------------ the checks can fail
ROW = {"age": 64, "sex": "F", "smoker": "never", "diabetes": "no", "hypertension": "yes", "bmi": 27.0,
       "ldl_mg_dl": 150.0, "troponin_ng_l": 12.3, "bnp_pg_ml": float("nan"), "systolic_bp": 141.0,
       "potassium_mmol_l": 4.1, "creatinine_mg_dl": 0.92}


@pytest.mark.parametrize("note, what", [
    ("64-year-old woman with DM2.", "diabetes"),
    ("Medications: metformin 1000 mg BID.", "diabetes"),
    ("70-year-old woman with HTN.", "age"),
    ("He reports palpitations.", "sex"),
    ("Smokes half a pack per day.", "smoking"),
    ("64 y/o F with obesity.", "obesity"),
    ("Vitals: BP 128/70, HR 80.", "blood pressure"),
    ("Labs: hs-troponin I 13 ng/L.", "troponin_ng_l"),
    ("Labs: troponin elevation (hs-TnI 12 ng/L).", "troponin_ng_l"),
    ("Labs: BNP not elevated.", "bnp_pg_ml"),
    ("Labs: K 4.2 mmol/L.", "potassium_mmol_l"),
])
def test_the_checker_finds_each_kind_of_contradiction(note, what):
    assert [c for c in contradictions(note, ROW) if c.startswith(what)], contradictions(note, ROW)


def test_the_checker_accepts_a_note_that_agrees():
    note = ("64-year-old woman with HLD and HTN, never smoker, on lisinopril 10 mg daily. Vitals: BP 141/80, "
            "HR 72. Labs: hs-TnI 12 ng/L; troponin negative; K 4.1 mmol/L; creatinine 0.92 mg/dL. She is well.")
    assert contradictions(note, ROW) == [] and inner_contradictions(note) == []
    assert inner_contradictions("Severe aortic stenosis. Low suspicion for valvular disease.")
    assert inner_contradictions("HR 72. Likely atrial fibrillation with rapid ventricular response.")


# ------------------------------------------------------------------------- on a generated cohort
@pytest.fixture(scope="module")
def rendered():
    return [render_case(d, seed=21) for d in draw_cohort(260, seed=21)]


def test_notes_agree_with_the_table_and_with_themselves(rendered):
    problems = {}
    for r in rendered:
        if r.case.note is not None:
            found = contradictions(r.case.note, r.labs.recorded, r.labs.latent) + inner_contradictions(r.case.note)
            if found:
                problems[r.case.case_id] = found
    assert not problems, list(problems.items())[:5]


def test_notes_state_enough_for_the_agreement_to_mean_something(rendered):
    """Each kind of statement occurs often enough that a generator which drew it at random would be caught
    (as the previous one was: 165 of the 200 bundled cases had a note that contradicted their table)."""
    seen = Counter()
    for r in rendered:
        note = r.case.note or ""
        seen["diabetes"] += bool(_DIABETES.search(note))
        seen["hypertension"] += bool(_HYPERTENSION.search(note))
        seen["smoking"] += any(p.search(note) for p, _ in _SMOKING)
        seen["obesity"] += bool(_OBESITY.search(note))
        seen["hyperlipidemia"] += bool(_HYPERLIPIDEMIA.search(note))
        seen["blood pressure"] += bool(re.search(r"\bBP \d+/", note))
        seen["quoted lab"] += any(re.search(p, note) for p, _ in _QUOTED.values())
        seen["no table, history stated"] += r.case.tabular is None and bool(
            _DIABETES.search(note) or _HYPERTENSION.search(note) or re.search(r"\bBP \d+/", note))
    assert min(seen.values()) >= 3, seen
    assert seen["diabetes"] >= 15 and seen["hypertension"] >= 30 and seen["blood pressure"] >= 50, seen


def test_a_patient_without_risk_factors_is_described_as_such(rendered):
    bare = [r for r in rendered if r.case.note and not any(
        (r.patient.diabetes, r.patient.hypertension, r.patient.hyperlipidemia, r.patient.obesity))]
    assert bare
    for r in bare:
        opening = {"never": "no known cardiac risk factors", "former": "a remote smoking history",
                   "current": "active tobacco use"}[r.patient.smoker]
        assert opening in r.case.note, r.case.note[:300]
