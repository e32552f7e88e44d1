"""The case page's input notes, from real input reports: an ECG with no recognisable lead is "unusable"
(never "ECG ✓"), routine notes are not warnings, a flagged out-of-distribution modality is a sentence with
its numbers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from app.case_notes import input_notes, modality_line, modality_noun, modality_status, ood_caption, ood_warnings
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inputs import case_input_report
from tests.test_sample_data import DEMO, SAMPLE


@pytest.fixture(scope="module")
def spec():
    return load_checkpoint(DEMO, device="cpu").config.input_spec()


@pytest.fixture(scope="module")
def complete_case():
    reader = CohortReader(SAMPLE)
    return reader[next(i for i in reader.case_ids if reader.availability().loc[i].all())]


def test_ecg_with_no_recognisable_lead_is_unusable_not_a_tick(spec, complete_case):
    signal = dataclasses.replace(complete_case.signal,
                                 channels=tuple(f"ECG{k + 1}" for k in range(complete_case.signal.data.shape[0])))
    case = dataclasses.replace(complete_case, signal=signal)
    notes = input_notes(case_input_report(spec, case).to_dict(), case.issues)
    assert set(notes.unusable) == {"signal"} and "'ECG1'" in notes.unusable["signal"]
    assert notes.serious and any("signal cannot be used" in m for m in notes.messages)
    status = modality_status({"image": True, "text": True, "signal": False, "tabular": True}, notes.unusable)
    assert status == {"image": "used", "text": "used", "signal": "unusable", "tabular": "used"}
    line = modality_line(status)
    assert "ECG ⚠ unusable" in line and "ECG ✓" not in line and "Echo image ✓" in line


def test_unmapped_channels_and_reader_issues_are_warnings(spec, complete_case):
    channels = list(complete_case.signal.channels)
    channels[-1] = "Pleth"  # one channel that is no ECG lead: the other eleven are used
    case = dataclasses.replace(complete_case, signal=dataclasses.replace(complete_case.signal, channels=tuple(channels)),
                               issues=["cohort.csv: column 'ward' is not read"])
    notes = input_notes(case_input_report(spec, case).to_dict(), case.issues)
    assert notes.unusable == {} and notes.serious
    assert any("'Pleth'" in m for m in notes.messages)
    assert sum("column 'ward' is not read" in m for m in notes.messages) == 1  # stated once


def test_values_not_measured_are_a_note_not_a_warning(spec, complete_case):
    tabular = dict(complete_case.tabular)
    tabular["troponin_ng_l"] = float("nan")
    case = dataclasses.replace(complete_case, tabular=tabular)
    notes = input_notes(case_input_report(spec, case).to_dict(), case.issues)
    assert not notes.serious and notes.unusable == {}
    assert any("not measured" in m and "troponin_ng_l" in m for m in notes.messages)


def test_flagged_modality_is_a_warning_with_its_numbers():
    ood = {"image": {"distance": 41.234, "threshold": 30.52, "flagged": True, "false_alarm_rate": 0.013},
           "text": {"distance": 3.1, "threshold": 28.0, "flagged": False, "false_alarm_rate": 0.01}}
    (sentence,) = ood_warnings(ood)
    assert sentence.startswith("The echo image is unlike the training data: distance 41.2 > threshold 30.5, "
                               "which 1.3 % of held-out training cases exceed.")
    assert ood_caption(ood) == "Within the training data's range: clinical note."
    assert ood_warnings({"signal": {**ood["image"], "flagged": np.bool_(False)}}) == []


def test_checkpoint_without_an_ood_reference_says_so():
    assert ood_warnings(None) == []
    assert "no out-of-distribution reference" in ood_caption(None)


CANCER_TITLES = {"histopathology": "Histopathology", "genomics": "Genomics", "treatment_notes": "Treatment notes",
                 "clinical": "Clinical"}


def test_declared_modalities_are_named_by_their_titles_in_declaration_order():
    present = {"histopathology": True, "genomics": False, "treatment_notes": True, "clinical": True}
    status = modality_status(present, {"treatment_notes": "the file is empty"})
    assert list(status) == list(CANCER_TITLES)
    assert status == {"histopathology": "used", "genomics": "missing", "treatment_notes": "unusable",
                      "clinical": "used"}
    assert modality_line(status, CANCER_TITLES) == ("Histopathology ✓ · Genomics — missing · "
                                                    "Treatment notes ⚠ unusable · Clinical ✓")
    assert modality_noun("treatment_notes", CANCER_TITLES) == "treatment notes"
    assert modality_noun("image") == "echo image" and modality_noun("signal", {"signal": "ECG"}) == "ECG"
    assert modality_noun("image", {"image": "Histopathology"}) == "histopathology"  # a declared title wins
    check = {"distance": 20.0, "threshold": 10.0, "flagged": True, "false_alarm_rate": 0.01}
    kinds = {"histopathology": "image", "genomics": "tabular", "treatment_notes": "text", "clinical": "tabular"}
    assert [modality_noun(m, CANCER_TITLES, kinds) for m in kinds] == ["histopathology image", "genomics data",
                                                                      "treatment notes", "clinical data"]
    assert modality_noun("labs", {"labs": "Labs"}, {"labs": "tabular"}) == "labs"  # says what it is already
    (sentence,) = ood_warnings({"genomics": check, "clinical": {**check, "flagged": False}}, CANCER_TITLES, kinds)
    assert sentence.startswith("The genomics data is unlike the training data: distance 20 > threshold 10")
    assert ood_caption({"clinical": {**check, "flagged": False}}, CANCER_TITLES, kinds) == \
        "Within the training data's range: clinical data."
