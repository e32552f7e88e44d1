"""Input reports: what a model can use of a case or a cohort whose names differ from its training data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurofusion.data import Case, CohortReader, FeatureSpec, InputSpec, Signal, STANDARD_LEADS
from neurofusion.data.formats import write_wfdb
from neurofusion.inputs import InputReport, case_input_report, cohort_input_report
from tests.conftest import CLASSES, FEATURES


@pytest.fixture
def spec() -> InputSpec:
    return InputSpec(classes=tuple(CLASSES), features=tuple(FEATURES), signal_fs=250, signal_seconds=2)


def _case(**parts) -> Case:
    return Case(case_id="U1", label="normal", split="test", **parts)


def _signal(channels, seconds=2.0, fs=250) -> Signal:
    return Signal(np.zeros((len(channels), int(seconds * fs)), np.float32), fs, tuple(channels))


def test_case_with_renamed_column_unknown_category_and_unmapped_channels(spec):
    case = _case(
        tabular={"age": 61.0, "sex": "male", "troponin": 40.0, "bmi": 27.0},
        signal=_signal(("MLII", "ECG2", "V1")),
    )
    report = case_input_report(spec, case)
    assert report.matched == ["age", "sex"]
    assert report.unmatched == ["troponin_ng_l"]
    assert report.extra == ["troponin", "bmi"]
    assert report.not_measured == []
    assert report.unknown_categories == {"sex": ["male"]}
    assert report.leads == {"found": ["II", "V1"], "missing": [l for l in STANDARD_LEADS if l not in ("II", "V1")],
                            "unmapped": ["ECG2"]}
    assert report.unusable == {}
    messages = report.messages()
    assert ("case U1: the model expects tabular input 'troponin_ng_l' but the data has no such column (is "
            "'troponin' the same measurement? then rename the column to 'troponin_ng_l'); the model treats it "
            "as missing") in messages
    assert "case U1: 'sex' has value(s) 'male' the model does not know; expected one of F, M" in messages
    assert "case U1: column(s) 'troponin', 'bmi' are not inputs of the model and are ignored" in messages
    assert any(m.startswith("case U1: ECG channel(s) 'ECG2' name no lead the model reads") for m in messages)
    assert any("lacks the model's lead(s) I, III, aVR" in m for m in messages)


def test_case_with_no_usable_signal_or_tabular_says_why(spec):
    case = _case(tabular={"Age": 61.0}, signal=_signal(("ECG1", "ECG2")),
                 meta={"signal_file": "/c/signals/U1.hea"})
    report = case_input_report(spec, case)
    assert report.unusable["signal"] == (
        "/c/signals/U1.hea: none of its channels ('ECG1', 'ECG2') names a standard ECG lead (I, II, III, aVR, "
        "aVL, aVF, V1-V6); rename the channels in the file's header")
    assert report.unusable["tabular"] == ("none of its 1 value(s) ('Age') is a feature the model reads "
                                          "('age', 'sex', 'troponin_ng_l')")
    assert report.messages()[0] == f"case U1: signal cannot be used: {report.unusable['signal']}"
    assert report.leads["found"] == [] and report.leads["unmapped"] == ["ECG1", "ECG2"]


def test_not_measured_and_short_recording(spec):
    case = _case(tabular={"age": 61.0, "sex": None, "troponin_ng_l": float("nan")}, signal=_signal(STANDARD_LEADS, 1.5))
    report = case_input_report(spec, case)
    assert report.not_measured == ["sex", "troponin_ng_l"] and report.short_recordings == 1
    assert report.messages() == [
        "case U1: not measured: sex, troponin_ng_l (the model treats them as missing)",
        "case U1: the recording is shorter than the 2 s the model reads; the rest of the window is zero padding",
    ]


def test_complete_matching_case_has_nothing_to_say(spec):
    report = case_input_report(spec, _case(tabular={"age": 61.0, "sex": "F", "troponin_ng_l": 3.0},
                                           signal=_signal(STANDARD_LEADS, 3.0)))
    assert report.ok and report.messages() == []
    assert report.leads["found"] == list(STANDARD_LEADS) and report.leads["missing"] == []


def test_model_with_other_leads_is_matched_through_aliases():
    spec = InputSpec(classes=("a",), leads=("MLII", "V5"), signal_fs=250, signal_seconds=2)
    report = case_input_report(spec, _case(signal=_signal(("II", "ECG3"))))
    assert report.leads == {"found": ["MLII"], "missing": ["V5"], "unmapped": ["ECG3"]}
    assert any("rename them to the model's lead names (MLII, V5)" in m for m in report.messages())


def test_reader_issues_are_kept_but_not_repeated(small_cohort, spec):
    root, _ = small_cohort
    data = np.zeros((3, 1000), np.float32)
    write_wfdb(root / "signals" / "P000.hea", Signal(data, 500, ("II", "ECG2", "V1")))
    case = CohortReader(root)["P000"]
    assert len(case.issues) == 1 and "'ECG2'" in case.issues[0]
    case.issues.append("something else the reader noticed")
    report = case_input_report(spec, case)
    lead_messages = [m for m in report.messages() if "ECG2" in m]
    assert len(lead_messages) == 1  # the model's view replaces the reader's, not added to it
    assert "case P000: something else the reader noticed" in report.messages()


def test_to_dict_is_json_ready(spec):
    report = case_input_report(spec, _case(tabular={"age": 1.0, "sex": "X"}, signal=_signal(("ECG1",))))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["unknown_categories"] == {"sex": ["X"]} and data["messages"] == report.messages()
    assert set(f.name for f in dataclasses.fields(InputReport)) <= set(data)


# --------------------------------------------------------------------------------------------- cohorts
def _renamed_cohort(root: Path) -> None:
    """The small cohort as another hospital exports it: troponin under its own name, sex spelled out, an
    undocumented extra column."""
    table = pd.read_csv(root / "cohort.csv", dtype=str, keep_default_na=False)
    table = table.rename(columns={"troponin_ng_l": "trop_t"})
    table["sex"] = table["sex"].replace({"F": "female", "M": "male"})
    table["ward"] = "3"
    table.to_csv(root / "cohort.csv", index=False)
    features = pd.read_csv(root / "features.csv", dtype=str, keep_default_na=False)
    features["name"] = features["name"].replace({"troponin_ng_l": "trop_t"})
    features.loc[features["name"] == "sex", "categories"] = "female;male"
    features.to_csv(root / "features.csv", index=False)


def test_cohort_report_names_renamed_ignored_and_unknown(small_cohort, spec):
    root, _ = small_cohort
    _renamed_cohort(root)
    report = cohort_input_report(spec, CohortReader(root))
    assert report.matched == ["age", "sex"] and report.unmatched == ["troponin_ng_l"]
    assert report.extra == ["trop_t", "ward"] and report.undescribed == ["ward"]
    assert report.unknown_categories == {"sex": ["female", "male"]}
    where = str(root / "cohort.csv")
    assert report.messages() == [
        f"{where}: the model expects tabular input 'troponin_ng_l' but the data has no such column (is 'trop_t' "
        "the same measurement? then rename the column to 'troponin_ng_l'); the model treats it as missing",
        f"{where}: 'sex' has value(s) 'female', 'male' the model does not know; expected one of F, M",
        f"{where}: column(s) 'ward' are not described in features.csv, so they are not read; describe them there "
        "(under the model's names) to use them",
        f"{where}: column(s) 'trop_t' are not inputs of the model and are ignored",
    ]


def test_cohort_kind_mismatch_and_no_usable_column(small_cohort):
    root, _ = small_cohort
    age = FeatureSpec("age", kind="categorical", categories=("old", "young"))
    spec = InputSpec(classes=tuple(CLASSES), features=(age,))
    report = cohort_input_report(spec, CohortReader(root))
    assert report.wrong_kind == {"age": "the model reads it as categories (old, young) but features.csv describes "
                                        "it as a number; describe it as the model does"}
    other = InputSpec(classes=tuple(CLASSES), features=(FeatureSpec("lactate"),))
    assert cohort_input_report(other, CohortReader(root)).unusable == {
        "tabular": "none of the cohort's 3 tabular column(s) is a feature the model reads ('lactate')"}


def test_cli_validate_with_checkpoint_prints_the_report(small_cohort, tmp_path, capsys):
    from neurofusion.checkpoint import save_checkpoint
    from neurofusion.config import HeadConfig, ModelConfig, SignalEncoderConfig, TabularEncoderConfig
    from neurofusion.data.__main__ import main
    from neurofusion.models import build_model

    config = ModelConfig(architecture="tabular_only", classes=list(CLASSES),
                         features=[dataclasses.asdict(f) for f in FEATURES],
                         signal=SignalEncoderConfig(fs=50.0, seconds=2.0),
                         tabular=TabularEncoderConfig(hidden_sizes=[8], category_dim=2, out_dim=4),
                         heads=[HeadConfig(num_outputs=len(CLASSES))])
    checkpoint = save_checkpoint(tmp_path / "ckpt", build_model(config), None)
    root, _ = small_cohort
    assert main(["validate", str(root), "--checkpoint", str(checkpoint)]) == 0
    assert "3 of 3 tabular features found; everything the cohort holds is usable" in capsys.readouterr().out

    _renamed_cohort(root)
    write_wfdb(root / "signals" / "P000.hea", Signal(np.zeros((2, 1000), np.float32), 500, ("ECG1", "ECG2")))
    assert main(["validate", str(root), "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 tabular features found" in out
    assert "input: " + str(root / "cohort.csv") + ": the model expects tabular input 'troponin_ng_l'" in out
    assert ("signal cannot be used: in 1 of 4 case(s) with a recording (P000) no channel is a lead the model "
            "reads") in out
    assert "column(s) 'ward' are not described in features.csv" in out
    assert main(["validate", str(root), "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "--checkpoint: checkpoint folder" in capsys.readouterr().err


def test_case_from_a_renamed_cohort_says_what_the_model_misses(small_cohort, spec):
    root, _ = small_cohort
    _renamed_cohort(root)
    report = case_input_report(spec, CohortReader(root)["P001"])
    assert report.unmatched == ["troponin_ng_l"] and report.extra == ["trop_t", "ward"]
    assert report.unknown_categories == {"sex": ["female"]}
    assert any("column(s) 'ward' are not described in features.csv" in m for m in report.messages())


def test_values_of_the_wrong_kind_are_named(spec):
    report = case_input_report(spec, _case(tabular={"age": "sixty", "sex": 1.0}))
    assert report.wrong_kind == {
        "age": "the model reads it as a number but the case holds 'sixty'",
        "sex": "the model reads it as categories (F, M) but the case holds 1.0",
    }
    assert "case U1: 'age': the model reads it as a number but the case holds 'sixty'" in report.messages()


def test_cohort_leads_gathered_from_case_reports(small_cohort, spec):
    root, _ = small_cohort
    cohort = CohortReader(root)
    reports = [
        case_input_report(spec, _case(signal=_signal(("II", "V1", "ECG3"), seconds=1.0))),
        case_input_report(spec, _case(signal=_signal(("MLII", "V1"), seconds=2.0))),
        case_input_report(spec, _case(tabular={"age": 1.0})),  # no recording: not counted
    ]
    report = cohort_input_report(spec, cohort, reports)
    assert report.leads == {"found": ["II", "V1"], "missing": [l for l in STANDARD_LEADS if l not in ("II", "V1")],
                            "unmapped": ["ECG3"]}
    assert report.short_recordings == 1 and "signal" not in report.unusable
    messages = report.messages()
    assert any(": no recording has the model's lead(s) I, III, aVR" in m for m in messages)
    assert messages[-1] == (f"{root / 'cohort.csv'}: 1 recording(s) are shorter than the 2 s the model reads; "
                            "the rest of the window is zero padding")
