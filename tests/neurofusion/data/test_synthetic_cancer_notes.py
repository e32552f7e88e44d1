"""Synthetic oncology treatment summaries: the note never contradicts the clinical table (stage, age, sex,
ECOG, primary site), its response evidence sits at the recorded spans, negation and hedging are respected."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from neurofusion.data.synthetic.cancer import RESPONSES, draw_cohort, synthesize_case, write_note
from neurofusion.data.synthetic.cancer.notes import EXPLICIT_STRENGTH, NOTE_STYLES

_STAGE = re.compile(r"\bstage (IV|III|II|I)\b")
_AGE = re.compile(r"\b(\d+)(?:-year-old| y/o)\b")
_ECOG = re.compile(r"\bECOG(?: performance status)? (\d)\b")
_WRONG_SEX = {"F": re.compile(r"\b(he|his|him|man|male)\b|y/o M\b", re.IGNORECASE),
              "M": re.compile(r"\b(she|her|hers|woman|female)\b|y/o F\b", re.IGNORECASE)}
_PRIMARY = {"breast": re.compile(r"breast"), "colorectal": re.compile(r"colon|colorectal|colectomy"),
            "lung": re.compile(r"lung|NSCLC|lobectomy"), "ovarian": re.compile(r"ovar")}
# A reader of the restaging result that knows negation: "no evidence of progression" is not progression.
_READER = (("complete_response", re.compile(r"complete (?:metabolic |radiological )?response|no evidence of disease")),
           ("partial_response", re.compile(r"partial response|reduction in tumour burden")),
           ("stable_disease", re.compile(r"stable disease|no evidence of progression|unchanged target lesions")),
           ("progressive_disease", re.compile(r"(?<!no evidence of )\b(?:disease )?progress(?:ion|ive)")))
_HEDGE = re.compile(r"\b(may|possibl[ey]|cannot (?:be )?exclude[d]?|equivocal|probably|although)\b")


def _read_response(text: str) -> set[str]:
    return {response for response, pattern in _READER if pattern.search(text)}


@pytest.fixture(scope="module")
def cases():
    return [synthesize_case(d, seed=21) for d in draw_cohort(200, seed=21)]


def test_note_agrees_with_the_clinical_row_for_every_case(cases):
    problems = []
    for case in cases:
        note, row = case.treatment_notes, case.clinical
        stages = set(_STAGE.findall(note))
        if stages != {row["stage"]}:
            problems.append(f"{case.case_id}: stage {stages} vs {row['stage']}")
        ages = {int(a) for a in _AGE.findall(note)}
        if ages != {row["age"]}:
            problems.append(f"{case.case_id}: age {ages} vs {row['age']}")
        if _WRONG_SEX[row["sex"]].search(note):
            problems.append(f"{case.case_id}: sex {row['sex']} but '{_WRONG_SEX[row['sex']].search(note).group(0)}'")
        ecog = {int(e) for e in _ECOG.findall(note)}
        recorded = row["ecog"]
        if ecog != (set() if isinstance(recorded, float) and math.isnan(recorded) else {recorded}):
            problems.append(f"{case.case_id}: ECOG {ecog} vs {recorded}")
        for primary, pattern in _PRIMARY.items():
            if (primary == row["primary_site"]) != bool(pattern.search(note)):
                problems.append(f"{case.case_id}: primary {row['primary_site']}, note mentions {primary}?")
    assert not problems, problems[:10]
    assert any(isinstance(c.clinical["ecog"], float) for c in cases)  # a missing ECOG was met and left unstated


def test_evidence_spans_are_the_response_phrases(cases):
    """The truth row's spans cut exactly its evidence phrases out of the note; none for a missing note."""
    for case in cases:
        spans = [tuple(map(int, s.split(":"))) for s in case.truth["text_evidence_spans"].split()]
        phrases = case.truth["text_evidence"].split(" | ") if case.truth["text_evidence"] else []
        if not case.present["treatment_notes"]:
            assert spans == [] and phrases == []
            continue
        assert spans and len(spans) == len(phrases)
        for (a, b), phrase in zip(spans, phrases):
            assert case.treatment_notes[a:b] == phrase and phrase.strip() == phrase and phrase


def test_explicit_notes_state_the_response_and_only_it(cases):
    """Read with negation: a stable-disease note saying "no evidence of progression" is not read as progression."""
    checked = 0
    for case in cases:
        if case.plan.strength["treatment_notes"] >= EXPLICIT_STRENGTH:
            assert _read_response(case.treatment_notes) == {case.plan.response}, case.treatment_notes
            assert not _HEDGE.search(case.truth["text_evidence"] or "x")
            checked += 1
    assert checked >= 40


def test_no_evidence_of_progression_is_never_labelled_progressive():
    rng = np.random.default_rng(2)
    row = {"age": 70, "sex": "M", "stage": "II", "ecog": 1, "primary_site": "lung", "bmi": 25.0}
    seen = 0
    for i in range(400):
        response = RESPONSES[i % 4]
        note = write_note(rng, row, response, float(rng.uniform()), NOTE_STYLES[i % 3])
        if "no evidence of progression" in note.text:
            seen += 1
            assert response != "progressive_disease"
            assert all(label == "stable_disease" for a, b, label in note.evidence
                       if "no evidence of progression" in note.text[a:b])
    assert seen > 5


def test_weak_evidence_is_hedged():
    rng = np.random.default_rng(4)
    row = {"age": 55, "sex": "F", "stage": "III", "ecog": 0, "primary_site": "ovarian", "bmi": 31.0}
    for i in range(200):
        strength = float(rng.uniform(0, EXPLICIT_STRENGTH - 1e-6))
        note = write_note(rng, row, RESPONSES[i % 4], strength, NOTE_STYLES[i % 3])
        (a, b, label), = note.evidence  # a hedged note commits to no plan: one evidence phrase
        assert label == RESPONSES[i % 4] and _HEDGE.search(note.text[a:b]), note.text[a:b]


def test_sites_write_in_different_styles(cases):
    styles = {}
    for case in cases:
        styles.setdefault(case.site, set()).add(case.treatment_notes.split("\n", 1)[0])
    assert len(styles) == 3 and all(len(s) == 1 for s in styles.values())
    assert len({next(iter(s)) for s in styles.values()}) == 3


@pytest.mark.parametrize("kwargs, match", [
    ({"response": "cured"}, "response"), ({"strength": 1.5}, "strength"), ({"style": "poem"}, "style"),
    ({"clinical": {"age": 60, "sex": "F", "stage": "V", "primary_site": "lung"}}, "stage"),
])
def test_rejects_bad_input(kwargs, match):
    args = {"clinical": {"age": 60, "sex": "F", "stage": "II", "primary_site": "lung"},
            "response": "stable_disease", "strength": 0.5, "style": "terse", **kwargs}
    with pytest.raises(ValueError, match=match):
        write_note(np.random.default_rng(0), **args)
