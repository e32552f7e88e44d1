"""Cohort folder: round trip through the writer/reader, lazy loading, and every bad-input error."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from neurofusion.data import CohortError, CohortReader, validate_cohort
from neurofusion.data.cohort import cohort_summary
from tests.conftest import FEATURES, small_case, write_small_cohort


def _edit_csv(root: Path, edit, name: str = "cohort.csv") -> None:
    table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
    table = edit(table)
    table.to_csv(root / name, index=False)


def test_round_trip_preserves_every_modality(small_cohort):
    root, cases = small_cohort
    reader = CohortReader(root)
    assert reader.case_ids == [c.case_id for c in cases]
    assert reader.classes == ("normal", "heart_failure")
    assert list(reader.features) == [f.name for f in FEATURES]
    for original, loaded in zip(cases, reader):
        assert loaded.available == original.available
        assert (loaded.label, loaded.split, loaded.site) == (original.label, original.split, original.site)
        if original.image is not None:
            assert np.abs(loaded.image - original.image).max() <= 0.5 / 65535 + 1e-7
        if original.signal is not None:
            assert loaded.signal.fs == 500 and loaded.signal.channels == original.signal.channels
            assert np.abs(loaded.signal.data - original.signal.data).max() <= 0.0005 + 1e-6
        assert loaded.note == original.note
        if original.tabular is not None:
            assert loaded.tabular["sex"] == original.tabular["sex"]
            assert loaded.tabular["age"] == original.tabular["age"]
            assert np.isnan(loaded.tabular["troponin_ng_l"]) == np.isnan(original.tabular["troponin_ng_l"])


def test_missing_modality_is_none_never_zeros(small_cohort):
    reader = CohortReader(small_cohort[0])
    case = reader["P002"]
    assert case.note is None and case.signal is None
    assert case.available == {"image": True, "text": False, "signal": False, "tabular": True}
    assert reader["P003"].tabular is None
    assert reader.availability().loc["P001"].tolist() == [False, True, True, True]


def test_ids_by_split_and_lookup(small_cohort):
    reader = CohortReader(small_cohort[0])
    assert reader.ids("test") == ["P003", "P004", "P005"]
    assert reader.position("P004") == 4
    with pytest.raises(KeyError, match="P999"):
        reader["P999"]


def test_files_found_by_case_id_without_file_columns(small_cohort):
    root, cases = small_cohort
    _edit_csv(root, lambda t: t.drop(columns=["image_file", "signal_file", "note_file"]))
    reader = CohortReader(root)
    assert [c.available for c in reader] == [c.available for c in cases]


def test_user_cohort_with_pydicom_ct_image_and_dicom_waveform_ecg(tmp_path):
    """A user's own folder: DICOM CT as the image, a DICOM 12-lead waveform as the ECG, no flags."""
    root = tmp_path / "user"
    (root / "images").mkdir(parents=True)
    (root / "signals").mkdir()
    (root / "notes").mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), root / "images" / "U1.dcm")
    shutil.copy(get_testdata_file("waveform_ecg.dcm"), root / "signals" / "U1.dcm")
    (root / "notes" / "U1.txt").write_text("Exertional chest pain, troponin pending.", encoding="utf-8")
    (root / "notes" / "U2.txt").write_text("Routine follow-up.", encoding="utf-8")
    pd.DataFrame(
        {"case_id": ["U1", "U2"], "split": ["test", "test"], "label": ["cad", "normal"], "troponin": ["31.5", ""]}
    ).to_csv(root / "cohort.csv", index=False)

    reader = CohortReader(root)
    assert reader.classes == ("cad", "normal")  # no cohort.json: the labels present
    u1, u2 = reader
    assert u1.image.shape == (128, 128) and u1.image.min() < -800
    assert u1.signal.fs == 1000 and u1.signal.data.shape == (12, 10000) and u1.signal.channels[6] == "V1"
    assert u1.tabular == {"troponin": 31.5}
    assert u2.available == {"image": False, "text": True, "signal": False, "tabular": False}
    assert validate_cohort(root) == []


def test_twenty_thousand_cases_open_lazily_in_seconds(tmp_path):
    root = tmp_path / "big"
    (root / "notes").mkdir(parents=True)
    n = 20_000
    ids = [f"C{i:05d}" for i in range(n)]
    for case_id in ids[:50]:
        (root / "notes" / f"{case_id}.txt").write_text("note", encoding="utf-8")
    rng = np.random.default_rng(0)
    pd.DataFrame({
        "case_id": ids, "split": "train", "label": rng.choice(["a", "b"], n),
        "note_file": [f"notes/{i}.txt" if k < 50 else "" for k, i in enumerate(ids)],
        **{f"lab{j}": rng.normal(size=n).round(3) for j in range(20)},
    }).to_csv(root / "cohort.csv", index=False)
    start = time.perf_counter()
    reader = CohortReader(root)
    elapsed = time.perf_counter() - start
    assert len(reader) == n and reader[0].note == "note" and reader[-1 + n].note is None
    assert elapsed < 10, f"opening 20,000 cases took {elapsed:.1f} s"  # generous: shared CI machines


def test_summary_counts(small_cohort):
    summary = cohort_summary(CohortReader(small_cohort[0]))
    assert summary["cases"] == 6
    assert summary["splits"] == {"train": 2, "val": 1, "test": 3}
    assert summary["complete_pct"] == pytest.approx(100 * 2 / 6, abs=0.05)
    assert summary["missing_one_pct"] == pytest.approx(100 * 3 / 6, abs=0.05)
    assert summary["missing_two_plus_pct"] == pytest.approx(100 * 1 / 6, abs=0.05)


# ------------------------------------------------------------------------------------------ bad input
def test_missing_folder_and_missing_cohort_csv(tmp_path):
    with pytest.raises(CohortError, match="cohort folder not found"):
        CohortReader(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CohortError, match=r"empty/cohort\.csv: cohort\.csv not found"):
        CohortReader(tmp_path / "empty")


@pytest.mark.parametrize("column", ["case_id", "split", "label"])
def test_missing_required_column(small_cohort, column):
    root, _ = small_cohort
    _edit_csv(root, lambda t: t.drop(columns=[column]))
    with pytest.raises(CohortError, match=rf"cohort\.csv, field '{column}': required column\(s\) {column} missing"):
        CohortReader(root)


def test_duplicate_case_ids_name_both_lines(small_cohort):
    root, _ = small_cohort
    _edit_csv(root, lambda t: t.assign(case_id=t["case_id"].replace({"P004": "P001"})))
    with pytest.raises(CohortError, match="duplicate case_id 'P001' on lines 3, 6"):
        CohortReader(root)


def test_unknown_split(small_cohort):
    root, _ = small_cohort
    _edit_csv(root, lambda t: t.assign(split=t["split"].replace({"val": "validation"})))
    with pytest.raises(CohortError, match=r"line 4, case P002, field 'split': unknown split 'validation'; "
                                          r"expected one of train, val, test"):
        CohortReader(root)


def test_unknown_label(small_cohort):
    root, _ = small_cohort
    _edit_csv(root, lambda t: t.assign(label=t["label"].replace({"normal": "nromal"})))
    with pytest.raises(CohortError, match=r"line 2, case P000, field 'label': unknown label 'nromal'.*\(2 more rows"):
        CohortReader(root)


def test_referenced_file_absent(small_cohort):
    root, _ = small_cohort
    (root / "notes" / "P004.txt").unlink()
    with pytest.raises(CohortError, match=r"line 6, case P004, field 'note_file': text file 'notes/P004\.txt' "
                                          r"is referenced but does not exist"):
        CohortReader(root)


def test_flag_disagreeing_with_files(small_cohort):
    root, _ = small_cohort
    _edit_csv(root, lambda t: t.assign(has_image="1"))
    with pytest.raises(CohortError, match="case P001, field 'has_image': has_image is 1 but the case has no image file"):
        CohortReader(root)


@pytest.mark.parametrize("value, message", [("12,5", "value '12,5' is not a number"), ("inf", "value 'inf' is not finite")])
def test_bad_lab_value(small_cohort, value, message):
    root, _ = small_cohort
    def edit(t):
        t.loc[4, "troponin_ng_l"] = value
        return t
    _edit_csv(root, edit)
    with pytest.raises(CohortError, match=rf"line 6, case P004, field 'troponin_ng_l': {message}"):
        CohortReader(root)


def test_unknown_category(small_cohort):
    root, _ = small_cohort
    def edit(t):
        t.loc[0, "sex"] = "female"
        return t
    _edit_csv(root, edit)
    with pytest.raises(CohortError, match="field 'sex': 'female' is not one of the categories F, M"):
        CohortReader(root)


def test_lazy_open_then_corrupt_file_names_it_on_access(small_cohort):
    root, _ = small_cohort
    (root / "images" / "P004.png").write_bytes(b"\x89PNG garbage")
    reader = CohortReader(root)  # opening checks existence only
    with pytest.raises(CohortError, match=r"images/P004\.png: not a readable PNG/DICOM image"):
        reader["P004"]
    problems = validate_cohort(root)
    assert len(problems) == 1 and "P004.png" in str(problems[0])


def test_validate_collects_every_unreadable_file(small_cohort):
    root, _ = small_cohort
    (root / "notes" / "P000.txt").write_bytes(b"\xff\xfe bad")
    (root / "signals" / "P004.dat").write_bytes(b"")
    problems = [str(p) for p in validate_cohort(root)]
    assert len(problems) == 2
    assert "P000.txt: note is not valid UTF-8" in problems[0]
    assert "P004.hea" in problems[1]


def test_cli_validate_and_summary(small_cohort, capsys):
    from neurofusion.data.__main__ import main

    root, _ = small_cohort
    assert main(["validate", str(root)]) == 0
    assert "valid (6 cases, every file read)" in capsys.readouterr().out
    assert main(["summary", str(root)]) == 0
    assert "6 cases" in capsys.readouterr().out
    (root / "notes" / "P000.txt").write_text("")
    assert main(["validate", str(root)]) == 1
    assert "P000.txt: note is empty" in capsys.readouterr().err


def test_writer_refuses_bad_case_id(tmp_path):
    case = small_case(0)
    case.case_id = "../escape"
    with pytest.raises(ValueError, match="case_id '../escape' must be"):
        write_small_cohort(tmp_path / "c", [case])


# ---------------------------------------------------------------------------------- paths stay inside
@pytest.mark.parametrize(
    "value, message",
    [
        ("/etc/hosts.txt", r"text file '/etc/hosts\.txt' is an absolute path; give it relative to the cohort "
                           r"folder \(e\.g\. notes/<case_id>\.txt\)"),
        ("C:\\notes\\P001.txt", r"text file 'C:\\\\notes\\\\P001\.txt' is an absolute path"),
        ("notes/../../secret.txt", r"text file 'notes/\.\./\.\./secret\.txt' contains '\.\.'; files must lie "
                                   r"inside the cohort folder"),
    ],
)
def test_paths_outside_the_folder_are_rejected_with_line_and_column(small_cohort, value, message):
    root, _ = small_cohort
    def edit(t):
        t.loc[1, "note_file"] = value
        return t
    _edit_csv(root, edit)
    with pytest.raises(CohortError, match=rf"cohort\.csv, line 3, case P001, field 'note_file': {message}"):
        CohortReader(root)


def test_symbolic_link_out_of_the_folder_is_rejected(small_cohort, tmp_path):
    root, _ = small_cohort
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("a note that is not part of the cohort", encoding="utf-8")
    (root / "notes" / "P001.txt").unlink()
    (root / "notes" / "P001.txt").symlink_to(outside)
    with pytest.raises(CohortError, match=r"cohort\.csv, line 3, case P001, field 'note_file': text file "
                                          r"'notes/P001\.txt' resolves to .*elsewhere\.txt, outside the cohort "
                                          r"folder \(a symbolic link\?\)"):
        CohortReader(root)


def test_linked_folder_out_of_the_cohort_is_rejected_without_file_columns(small_cohort, tmp_path):
    root, _ = small_cohort
    _edit_csv(root, lambda t: t.drop(columns=["image_file", "signal_file", "note_file"]))
    shutil.move(root / "notes", tmp_path / "shared_notes")
    (root / "notes").symlink_to(tmp_path / "shared_notes", target_is_directory=True)
    (root / "notes2").mkdir()
    # os.walk does not enter a linked folder, so the notes are not found by id: add one that is a link
    (root / "images" / "P001.png").symlink_to(tmp_path / "shared_notes" / "P001.txt")
    with pytest.raises(CohortError, match=r"images/P001\.png: image file is a link to .*shared_notes/P001\.txt, "
                                          r"outside the cohort folder"):
        CohortReader(root)


def test_file_column_through_a_linked_folder_out_of_the_cohort_is_rejected(small_cohort, tmp_path):
    """The file itself is no link, a folder on its way is: the path still leads out of the cohort."""
    root, _ = small_cohort
    shutil.move(root / "notes", tmp_path / "shared_notes")
    (root / "notes").symlink_to(tmp_path / "shared_notes", target_is_directory=True)
    with pytest.raises(CohortError, match=r"field 'note_file': text file 'notes/P\d+\.txt' resolves to "
                                          r".*shared_notes/P\d+\.txt, outside the cohort folder"):
        CohortReader(root)


def test_cohort_folder_opened_through_a_link_is_fine(small_cohort, tmp_path):
    root, _ = small_cohort
    (tmp_path / "via_link").symlink_to(root, target_is_directory=True)
    assert CohortReader(tmp_path / "via_link")["P001"].note.startswith("Patient 1")


def test_link_inside_the_folder_is_fine(small_cohort):
    root, _ = small_cohort
    (root / "notes" / "copy.txt").symlink_to(root / "notes" / "P001.txt")
    def edit(t):
        t.loc[1, "note_file"] = "notes/copy.txt"
        return t
    _edit_csv(root, edit)
    assert CohortReader(root)["P001"].note.startswith("Patient 1")


# --------------------------------------------------------------------------------------- CSV structure
def test_unquoted_decimal_comma_reports_the_field_count_not_a_duplicate_id(small_cohort):
    root, _ = small_cohort
    lines = (root / "cohort.csv").read_text().splitlines()
    lines[1] = lines[1].replace(",50,", ",50,5,", 1)  # age 50 written as an unquoted "50,5"
    (root / "cohort.csv").write_text("\n".join(lines) + "\n")
    header = len(lines[0].split(","))
    with pytest.raises(CohortError) as err:
        CohortReader(root)
    assert str(err.value) == (f"{root / 'cohort.csv'}: line 2 has {header + 1} fields, the header has {header} "
                              '(unquoted comma? quote values that contain commas, e.g. "12,5", or write '
                              "decimals with a point, 12.5)")
    assert err.value.line == 2


def test_row_with_too_few_fields_is_reported(small_cohort):
    root, _ = small_cohort
    lines = (root / "cohort.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0]
    (root / "cohort.csv").write_text("\n".join(lines) + "\n")
    header = len(lines[0].split(","))
    with pytest.raises(CohortError, match=rf"line 4 has {header - 2} fields, the header has {header} \(missing "
                                          r"separator, or a line break inside an unquoted value\?\)"):
        CohortReader(root)


def test_quoted_commas_and_blank_lines_are_fine(small_cohort):
    root, _ = small_cohort
    _edit_csv(root, lambda t: t.assign(site=t["site"].replace({"site_a": "Hospital A, ward 3"})))
    (root / "cohort.csv").write_text((root / "cohort.csv").read_text() + "\n\n")
    assert CohortReader(root)["P000"].site == "Hospital A, ward 3"


# ---------------------------------------------------------------------------------------- extra columns
def test_undeclared_extra_column_is_listed_and_ignored(small_cohort, capsys):
    """A numeric column features.csv does not describe used to fail as 'has_tabular is 0 but ...'."""
    from neurofusion.data.__main__ import main

    root, _ = small_cohort
    _edit_csv(root, lambda t: t.assign(bmi=[str(20 + i) for i in range(len(t))]))
    reader = CohortReader(root)
    assert reader.extra_columns == ["bmi"]
    assert list(reader.features) == [f.name for f in FEATURES] and "bmi" not in reader.table.columns
    assert reader["P003"].tabular is None  # has_tabular 0: its bmi value is not a tabular value
    assert reader["P003"].meta["ignored_columns"] == {"bmi": "23"}
    assert main(["validate", str(root)]) == 0
    out = capsys.readouterr().out
    assert (f"warning: {root / 'cohort.csv'}: column(s) 'bmi' are not described in features.csv and are ignored; "
            "describe them in features.csv to use them") in out
    assert "valid (6 cases, every file read, 1 warning(s))" in out


def test_without_features_csv_every_other_column_is_a_feature(small_cohort):
    root, _ = small_cohort
    (root / "features.csv").unlink()
    _edit_csv(root, lambda t: t.drop(columns=["sex"]).assign(bmi=["25", "26", "27", "", "29", "30"]))
    reader = CohortReader(root)
    assert list(reader.features) == ["age", "troponin_ng_l", "bmi"] and reader.extra_columns == []
    assert reader["P001"].tabular["bmi"] == 26.0


def test_has_tabular_0_with_values_names_the_flag(small_cohort):
    root, _ = small_cohort
    def edit(t):
        t.loc[3, "age"] = "70"
        return t
    _edit_csv(root, edit)
    with pytest.raises(CohortError, match=r"line 5, case P003, field 'has_tabular': has_tabular is 0 but the "
                                          r"case has tabular values; fix the flag or remove the data"):
        CohortReader(root)


# --------------------------------------------------------------------------- unusable ECGs, case origin
def _write_ecg(root: Path, name: str, channels: tuple[str, ...]) -> None:
    from neurofusion.data import Signal
    from neurofusion.data.formats import write_wfdb

    data = np.random.default_rng(1).normal(0, 0.3, (len(channels), 1000)).astype(np.float32)
    write_wfdb(root / "signals" / f"{name}.hea", Signal(data, 500, channels))


def test_ecg_without_standard_leads_is_reported_with_its_file(small_cohort, capsys):
    from neurofusion.data import check_cohort
    from neurofusion.data.__main__ import main

    root, _ = small_cohort
    _write_ecg(root, "P000", ("ECG1", "ECG2"))
    _write_ecg(root, "P001", ("MLII", "V1", "V"))
    p0, p1 = CohortReader(root)[:2]
    hea0, hea1 = root / "signals" / "P000.hea", root / "signals" / "P001.hea"
    assert p0.signal.channels == ("ECG1", "ECG2")
    assert p0.issues == [f"{hea0}: signal unusable: none of its channels ('ECG1', 'ECG2') names a standard ECG "
                         "lead (I, II, III, aVR, aVL, aVF, V1-V6); rename the channels in the file's header"]
    assert p1.signal.channels == ("II", "V1", "V")
    assert p1.issues == [f"{hea1}: channel(s) 'V' do not name a standard ECG lead (I, II, III, aVR, aVL, aVF, "
                         "V1-V6) and are not used"]
    check = check_cohort(root)
    assert check.errors == []
    assert check.warnings == [f"case P000: {p0.issues[0]}", f"case P001: {p1.issues[0]}"]
    assert main(["validate", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"warning: case P000: {hea0}: signal unusable" in out and "2 warning(s)" in out


def test_case_knows_its_cohort_line(small_cohort):
    root, _ = small_cohort
    case = CohortReader(root)["P004"]
    assert case.meta["cohort_csv"] == str(root / "cohort.csv") and case.meta["cohort_line"] == 6
    assert case.meta["signal_file"] == str(root / "signals" / "P004.hea") and case.issues == []


def test_category_the_model_does_not_know_names_cohort_line_and_column(small_cohort):
    from neurofusion.data import InputSpec, prepare_case
    from neurofusion.data.features import FeatureSpec

    root, _ = small_cohort
    spec = InputSpec(classes=("normal", "heart_failure"),
                     features=(FeatureSpec("sex", kind="categorical", categories=("female", "male")),))
    with pytest.raises(CohortError) as err:
        prepare_case(CohortReader(root)["P001"], spec)
    assert str(err.value) == (f"{root / 'cohort.csv'}, line 3, case P001, field 'sex': 'F' is not one of the "
                              "categories the model knows (female, male); fix the value, or leave it empty if "
                              "it was not measured")
