"""Tests for neurofusion/data/synthetic/notes.py: planted evidence spans, negations, labs, and intensity."""

from __future__ import annotations

import re

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from neurofusion.data.synthetic.notes import _BANK, _DENIALS, _DIAGNOSES, _NO_MURMUR, _NORMAL_EXAM, Patient, write_note
from neurofusion.data.tasks import CARDIO_FINDINGS

PHRASES = {f: {p.text for p in _BANK[f]} for f in CARDIO_FINDINGS}
NEGATIONS = ["denies palpitations", "no murmur", *_NO_MURMUR, *(d for ds in _DENIALS.values() for d in ds),
             *(n for ns in _NORMAL_EXAM.values() for n in ns)]
NEGATION_CUE = re.compile(r"\b(no|denies|without|negative|rule out|r/o|family history)\b", re.IGNORECASE)
ALL_LABS = {"troponin_ng_l": 48.0, "bnp_pg_ml": 850.0, "ldl_mg_dl": 131.0, "potassium_mmol_l": 4.1,
            "creatinine_mg_dl": 0.92}


def _note(seed: int, findings: dict[str, float], *, age: int = 64, sex: str = "F", patient: Patient | None = None,
          **kwargs):
    patient = patient or Patient(age=age, sex=sex)
    return write_note(np.random.default_rng(seed), findings, patient=patient, **kwargs)


def _random_case(rng: np.random.Generator) -> dict[str, float]:
    """A true finding plus sometimes a weaker distractor, or a normal case."""
    if rng.random() < 0.2:
        return {}
    true, other = rng.choice(CARDIO_FINDINGS, size=2, replace=False)
    case = {str(true): float(rng.uniform(0.05, 1.0))}
    if rng.random() < 0.5:
        case[str(other)] = float(rng.uniform(0.0, 0.5))
    return case


def test_same_seed_gives_same_note_and_seeds_differ():
    a, b = _note(7, {"arrhythmia": 0.6}), _note(7, {"arrhythmia": 0.6})
    assert a == b
    texts = {_note(seed, {"arrhythmia": 0.6}).text for seed in range(20)}
    assert len(texts) == 20


def test_evidence_spans_are_phrases_of_their_finding_inside_the_text():
    rng = np.random.default_rng(0)
    for seed in range(300):
        result = _note(seed, _random_case(rng), labs=ALL_LABS, sex=("F", "M")[seed % 2])
        previous_end = -1
        for start, end, finding in sorted(result.evidence):
            assert 0 <= start < end <= len(result.text)
            assert start >= previous_end, "evidence spans overlap"
            assert result.text[start:end] in PHRASES[finding], (result.text[start:end], finding)
            previous_end = end


def test_normal_case_has_no_evidence():
    for seed in range(100):
        assert _note(seed, {}, labs=ALL_LABS).evidence == ()
        assert _note(seed, {"heart_failure": 0.0}).evidence == ()


def test_evidence_count_grows_with_intensity():
    intensities = [0.0, 0.25, 0.5, 0.75, 1.0]
    means = [np.mean([len(_note(seed, {f: i}).evidence) for seed in range(60) for f in CARDIO_FINDINGS])
             for i in intensities]
    assert means[0] == 0
    assert all(lo < hi for lo, hi in zip(means, means[1:])), means


def test_diagnosis_is_named_only_at_high_intensity():
    named = {f: set(_DIAGNOSES[f]) for f in CARDIO_FINDINGS}

    def count_named(intensity: float) -> int:
        return sum(result.text[s:e] in named[f] for seed in range(50) for f in CARDIO_FINDINGS
                   for result in [_note(seed, {f: intensity})] for s, e, _ in result.evidence)

    assert count_named(0.7) == 0
    assert count_named(0.95) > 50


def test_negated_phrases_never_overlap_or_precede_evidence():
    rng = np.random.default_rng(1)
    seen_negation = 0
    for seed in range(300):
        result = _note(seed, _random_case(rng), labs=ALL_LABS)
        lower = result.text.lower()
        for negation in NEGATIONS:
            for match in re.finditer(re.escape(negation.lower()), lower):
                seen_negation += 1
                assert all(match.end() <= s or e <= match.start() for s, e, _ in result.evidence), negation
        for start, _, _ in result.evidence:
            clause = re.split(r"[.;:\n]", result.text[:start])[-1]
            assert not NEGATION_CUE.search(clause), (clause, result.text[start:])
    assert seen_negation > 300


def test_negations_appear_in_other_disease_notes():
    texts = [_note(seed, {"heart_failure": 0.9}).text.lower() for seed in range(50)]
    assert sum("denies palpitations" in t or "no palpitations" in t for t in texts) > 10


@pytest.mark.parametrize("bnp", [60.0, float("nan"), None])
def test_bnp_phrases_follow_the_measured_value(bnp):
    labs = {"troponin_ng_l": 10.0} if bnp is None else {"bnp_pg_ml": bnp}
    for seed in range(100):
        text = _note(seed, {"heart_failure": 1.0}, labs=labs).text
        assert "elevated BNP" not in text and "BNP elevation" not in text
        assert not re.search(r"BNP \d", text)
        if bnp is None or np.isnan(bnp):
            assert "BNP" not in text


@pytest.mark.parametrize("troponin", [10.0, float("nan"), None])
def test_troponin_phrases_follow_the_measured_value(troponin):
    labs = {"bnp_pg_ml": 300.0} if troponin is None else {"troponin_ng_l": troponin}
    for seed in range(100):
        text = _note(seed, {"coronary_artery_disease": 1.0}, labs=labs).text.lower()
        assert "elevated troponin" not in text and "troponin elevation" not in text
        if troponin is None or np.isnan(troponin):
            assert "tropon" not in text and "tni" not in text


def test_elevated_labs_are_cited_with_their_values():
    texts = [_note(seed, {"heart_failure": 1.0, "coronary_artery_disease": 1.0}, labs=ALL_LABS).text
             for seed in range(100)]
    assert sum("BNP" in t and "850 pg/mL" in t for t in texts) > 10
    assert sum("elevated troponin (hs-TnI 48 ng/L)" in t or "troponin elevation (hs-TnI 48 ng/L)" in t
               for t in texts) > 5
    assert all("troponin negative" not in t for t in texts)


@pytest.mark.parametrize("sex, wrong", [("F", r"\b(he|his|him|man|male)\b"), ("M", r"\b(she|her|hers|woman|female)\b")])
def test_pronouns_agree_with_sex(sex, wrong):
    rng = np.random.default_rng(2)
    texts = [_note(seed, _random_case(rng), sex=sex, labs=ALL_LABS).text for seed in range(150)]
    assert not [t for t in texts if re.search(wrong, t, re.IGNORECASE)]
    right = r"\b(she|her)\b" if sex == "F" else r"\b(he|his)\b"
    assert sum(bool(re.search(right, t, re.IGNORECASE)) for t in texts) > 100


def test_the_patient_changes_the_history_never_the_evidence():
    """The note's draws do not depend on the patient, so a cohort keeps its evidence phrases when only the
    patients' histories change; the history itself follows the patient."""
    rng = np.random.default_rng(5)
    sick = Patient(age=71, sex="F", smoker="current", diabetes=True, hypertension=True, hyperlipidemia=True,
                   obesity=True, systolic_bp=152.0)
    healthy = Patient(age=71, sex="F")
    mentions = {"sick": 0, "healthy": 0}
    for seed in range(150):
        findings = _random_case(rng)
        a, b = (_note(seed, findings, patient=p, labs=ALL_LABS) for p in (sick, healthy))
        assert [(a.text[s:e], f) for s, e, f in a.evidence] == [(b.text[s:e], f) for s, e, f in b.evidence]
        assert not re.search(r"DM2|diabetes|metformin|HTN|hypertension|lisinopril|amlodipine|HLD|hyperlipidemia|"
                             r"obesity|Smokes|Former smoker|\bBP \d", b.text), b.text
        mentions["healthy"] += "no known cardiac risk factors" in b.text
        mentions["sick"] += bool(re.search(r"DM2|diabetes|HTN|hypertension|HLD|hyperlipidemia|obesity", a.text))
        assert "Never smoker" not in a.text and not re.search(r"\bBP (?!152/)\d", a.text)
    assert mentions == {"sick": 150, "healthy": 150}


@pytest.mark.parametrize("fields, message", [
    ({"smoker": "sometimes"}, "smoker must be"), ({"systolic_bp": float("nan")}, "systolic_bp"),
    ({"systolic_bp": 20.0}, "systolic_bp"),
])
def test_bad_patient_raises(fields, message):
    with pytest.raises(ValueError, match=message):
        Patient(age=60, sex="M", **fields)


def test_word_counts_span_short_and_long_notes():
    rng = np.random.default_rng(3)
    counts = [len(_note(seed, _random_case(rng), labs=ALL_LABS).text.split()) for seed in range(200)]
    assert min(counts) <= 75 and max(counts) >= 290, (min(counts), max(counts))
    assert 45 <= min(counts) and max(counts) <= 400


@pytest.mark.parametrize("findings, kwargs, message", [
    ({"stroke": 0.5}, {}, "unknown finding"),
    ({"arrhythmia": 1.5}, {}, r"in \[0, 1\]"),
    ({"arrhythmia": -0.1}, {}, r"in \[0, 1\]"),
    ({"arrhythmia": float("nan")}, {}, r"in \[0, 1\]"),
    ({}, {"sex": "female"}, "sex must be"),
    ({}, {"age": 0}, "age must be"),
    ({}, {"labs": {"sodium": 140.0}}, "unknown lab"),
])
def test_bad_input_raises(findings, kwargs, message):
    with pytest.raises(ValueError, match=message):
        _note(0, findings, **kwargs)


def _accuracy_at(intensity: float) -> float:
    """Held-out accuracy of TF-IDF + logistic regression on normal vs single-finding notes."""
    classes = ("normal", *CARDIO_FINDINGS)
    rng = np.random.default_rng(4)
    labels = [classes[k % len(classes)] for k in range(500)]
    # Age and sex drawn independently of the label so that they cannot leak it.
    texts = [_note(seed, {} if y == "normal" else {y: intensity}, sex=("F", "M")[rng.integers(2)],
                   age=int(rng.integers(40, 85))).text for seed, y in enumerate(labels)]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2)
    model = LogisticRegression(C=10.0, max_iter=1000).fit(vectorizer.fit_transform(texts[:300]), labels[:300])
    return float(np.mean(model.predict(vectorizer.transform(texts[300:])) == np.array(labels[300:])))


def test_intensity_controls_how_separable_the_notes_are():
    assert _accuracy_at(0.9) > 0.9
    assert _accuracy_at(0.1) < 0.5
