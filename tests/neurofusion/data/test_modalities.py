"""Declared modalities: ModalitySpec validation, cohort.json round trip, a cohort of five declared
modalities (RGB image, text, two tabular, signal) through the writer, reader and validator, a survival
cohort, and colour images."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neurofusion.data import CohortError, CohortReader, validate_cohort
from neurofusion.data.cohort import check_cohort, cohort_summary
from neurofusion.data.dataset import Collate, InputSpec, prepare_case
from neurofusion.data.formats import read_image, write_png
from neurofusion.data.modalities import (
    CARDIO_MODALITIES,
    MAX_MODALITIES,
    ModalityError,
    ModalitySpec,
    modalities_from_dicts,
    modalities_to_dicts,
)
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.data.tasks import TASKS
from tests.neurofusion.declared import MISSING, TOY_FEATURES, TOY_MODALITIES, toy_case, write_toy_cohort


def _edit_csv(path: Path, edit) -> None:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(table).to_csv(path, index=False)


# ------------------------------------------------------------------------------------------ declaration
def test_spec_defaults_and_cardio_declaration():
    spec = ModalitySpec("histopathology", "image", colour=True)
    assert (spec.folder, spec.file_column, spec.title) == ("histopathology", "histopathology_file", "Histopathology")
    assert ModalitySpec("genomics", "tabular").folder is None
    assert tuple(m.name for m in CARDIO_MODALITIES) == MODALITIES == ("image", "text", "signal", "tabular")
    assert [m.file_column for m in CARDIO_MODALITIES] == ["image_file", "note_file", "signal_file", None]
    cancer = TASKS["cancer"]
    assert [(m.name, m.kind) for m in cancer.modalities] == [
        ("histopathology", "image"), ("genomics", "tabular"), ("treatment_notes", "text"), ("clinical", "tabular")]
    assert cancer.modalities[0].colour and cancer.outcome == "survival" and cancer.horizon == 60


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Histo", "kind": "image"}, "lowercase identifier"),
    ({"name": "1st", "kind": "image"}, "lowercase identifier"),
    ({"name": "histo", "kind": "video"}, "kind must be one of"),
    ({"name": "image", "kind": "tabular"}, "named after a kind"),
    ({"name": "label", "kind": "text"}, "reserved"),
    ({"name": "note", "kind": "text"}, "reserved"),
    ({"name": "labs", "kind": "tabular", "colour": True}, "colour applies to image"),
    ({"name": "labs", "kind": "tabular", "folder": "labs"}, "no folder"),
    ({"name": "slide", "kind": "image", "folder": "../elsewhere"}, "relative name inside"),
    ({"name": "slide", "kind": "image", "colour": "yes"}, "true or false"),
    ({"name": "vitals", "kind": "signal", "table": "vitals.csv", "folder": "v"}, "long table .* no folder"),
    ({"name": "vitals", "kind": "signal", "table": "../vitals.csv"}, "table must be a relative name"),
])
def test_spec_validation_names_what_is_wrong(kwargs, message):
    with pytest.raises(ModalityError, match=message):
        ModalitySpec(**kwargs)


def test_declaration_validation():
    with pytest.raises(ModalityError, match=r"modalities\[1\]: missing 'kind'"):
        modalities_from_dicts([{"name": "a", "kind": "text"}, {"name": "b"}])
    with pytest.raises(ModalityError, match=r"modalities\[0\]: unknown key\(s\) colur"):
        modalities_from_dicts([{"name": "a", "kind": "image", "colur": True}])
    with pytest.raises(ModalityError, match="name 'a' is declared more than once"):
        modalities_from_dicts([{"name": "a", "kind": "text"}, {"name": "a", "kind": "image"}])
    with pytest.raises(ModalityError, match="folder 'x' is declared more than once"):
        modalities_from_dicts([{"name": "a", "kind": "text", "folder": "x"}, {"name": "b", "kind": "image", "folder": "x"}])
    with pytest.raises(ModalityError, match="at most 8"):
        modalities_from_dicts([{"name": f"m{i}", "kind": "tabular"} for i in range(MAX_MODALITIES + 1)])
    with pytest.raises(ModalityError, match="must be a list"):
        modalities_from_dicts({"name": "a", "kind": "text"})


def test_declaration_round_trips_through_json():
    text = json.dumps({"modalities": modalities_to_dicts(TOY_MODALITIES)})
    assert modalities_from_dicts(json.loads(text)["modalities"]) == TOY_MODALITIES
    assert modalities_from_dicts(modalities_to_dicts(CARDIO_MODALITIES)) == CARDIO_MODALITIES
    # a time-stamped modality keeps its table and has no per-case files; the others write no "table" key
    icu = TASKS["icu"].modalities
    assert modalities_from_dicts(json.loads(json.dumps(modalities_to_dicts(icu)))) == icu
    vitals = icu[0]
    assert (vitals.table, vitals.folder, vitals.file_column, vitals.file_backed) == ("vitals.csv", None, None, False)
    assert "table" not in modalities_to_dicts(CARDIO_MODALITIES)[0]


# ------------------------------------------------------------------------------------------------- Case
def test_case_keeps_cardio_fields_and_generic_values():
    case = Case("C1", "normal", "test", image=np.zeros((4, 4), np.float32), note="n")
    assert case.available == {"image": True, "text": True, "signal": False, "tabular": False}
    assert case.value("text") == "n" and case.values["image"] is case.image
    assert dataclasses.replace(case, image=None).available["image"] is False
    hidden = case.with_values(text=None)
    assert hidden.note is None and case.note == "n"
    toy = toy_case(0)
    assert list(toy.available) == [m.name for m in TOY_MODALITIES] and all(toy.available.values())
    assert toy.image is None and toy.with_values(genes=None).available["genes"] is False
    with pytest.raises(KeyError, match="not a modality"):
        toy.value("image")
    with pytest.raises(ValueError, match="'image' is not a declared modality"):
        Case("C2", "", "test", image=np.zeros((2, 2)), modalities=TOY_MODALITIES)


# -------------------------------------------------------------------------------------- toy cohort I/O
def test_five_declared_modalities_round_trip(tmp_path):
    root, cases = write_toy_cohort(tmp_path / "toy")
    info = json.loads((root / "cohort.json").read_text())
    assert [m["name"] for m in info["modalities"]] == [m.name for m in TOY_MODALITIES]
    header = (root / "cohort.csv").read_text().splitlines()[0].split(",")
    assert {"slide_file", "report_file", "ecg_file", "has_genes", "has_clinical", "has_ecg"} <= set(header)
    assert (root / "waves" / "T000.hea").is_file() and (root / "slide" / "T000.png").is_file()
    reader = CohortReader(root)
    assert reader.modalities == TOY_MODALITIES
    assert reader.tabular_features == {"genes": ["tp53", "brca1"], "clinical": ["age", "stage"]}
    assert validate_cohort(root) == []
    for original, loaded in zip(cases, reader):
        assert loaded.available == original.available
        for name, value in original.values.items():
            got = loaded.value(name)
            if value is None:
                assert got is None
            elif name == "slide":
                assert got.shape == (3, 24, 20) and np.abs(got - value).max() < 1e-6  # 8-bit values exactly
            elif name == "ecg":
                assert np.abs(got.data - value.data).max() <= 0.0005 + 1e-6
            else:
                assert got == value
    assert reader.availability().columns.tolist() == [m.name for m in TOY_MODALITIES]
    assert not reader.availability().loc["T002", "report"] and not reader.availability().loc["T002", "ecg"]


def test_toy_cases_become_tensors_per_modality(tmp_path):
    root, _ = write_toy_cohort(tmp_path / "toy")
    reader = CohortReader(root)
    spec = InputSpec(classes=tuple(reader.classes), features=tuple(reader.features.values()), image_size=16,
                     signal_fs=125.0, signal_seconds=2.0, modalities=reader.modalities)
    assert [f.name for f in spec.features_of("genes")] == ["tp53", "brca1"]
    batch = Collate(lambda notes: {"input_ids": np.zeros((len(notes), 3))})([prepare_case(c, spec) for c in reader])
    assert batch.present.shape == (8, 5)
    assert batch.present.tolist()[1] == [False, True, True, True, True]
    assert batch.inputs["slide"]["image"].shape == (8, 3, 16, 16)
    assert batch.inputs["genes"]["categorical"].shape == (8, 2) and batch.inputs["clinical"]["numeric"].shape == (8, 1)
    assert batch.inputs["ecg"]["signal"].shape == (8, 12, 250)
    assert batch.texts["report"][2] is None and batch.notes == batch.texts["report"]
    assert batch.image is batch.inputs["slide"]["image"]  # the first image modality under the cardio name
    assert batch.inputs["genes"]["categorical"][:, 0].tolist() == [1, 2, 1, 0, 1, 2, 0, 2]  # wt=1, mut=2, 0=missing (T003, T006)


def test_bad_declaration_in_cohort_json(tmp_path):
    root, _ = write_toy_cohort(tmp_path / "toy")
    info = json.loads((root / "cohort.json").read_text())
    info["modalities"][1]["kind"] = "audio"
    (root / "cohort.json").write_text(json.dumps(info))
    with pytest.raises(CohortError, match=r"cohort.json, field 'modalities': modalities\[1\]: .*kind must be one of"):
        CohortReader(root)


def test_tabular_column_claimed_by_no_modality(tmp_path):
    root, _ = write_toy_cohort(tmp_path / "toy")
    _edit_csv(root / "features.csv", lambda t: t.assign(modality=t["modality"].where(t["name"] != "age", "")))
    with pytest.raises(CohortError, match="column 'age' belongs to no tabular modality: with 2 declared"):
        CohortReader(root)
    _edit_csv(root / "features.csv", lambda t: t.assign(modality=t["modality"].where(t["name"] != "age", "labs")))
    with pytest.raises(CohortError, match="column 'age' names modality 'labs', which is not a declared tabular"):
        CohortReader(root)


def test_missing_file_and_presence_flag_errors_name_the_modality(tmp_path):
    root, _ = write_toy_cohort(tmp_path / "toy")
    (root / "slide" / "T003.png").unlink()
    errors = validate_cohort(root)
    assert len(errors) == 1
    assert "line 5" in str(errors[0]) and "slide file 'slide/T003.png' is referenced but does not exist" in str(errors[0])
    root2, _ = write_toy_cohort(tmp_path / "toy2")
    _edit_csv(root2 / "cohort.csv", lambda t: t.assign(has_genes=t["has_genes"].where(t["case_id"] != "T003", "1")))
    with pytest.raises(CohortError, match="has_genes is 1 but the case has no genes values"):
        CohortReader(root2)


def test_without_file_columns_files_are_found_in_each_folder(tmp_path):
    root, cases = write_toy_cohort(tmp_path / "toy")
    _edit_csv(root / "cohort.csv", lambda t: t.drop(columns=["slide_file", "report_file", "ecg_file"]))
    reader = CohortReader(root)
    assert reader.availability().equals(pd.DataFrame(
        [c.available for c in cases], index=pd.Index([c.case_id for c in cases], name="case_id")))


def test_colour_png_in_a_grey_modality_is_read_as_grey(tmp_path):
    root, _ = write_toy_cohort(tmp_path / "toy")
    info = json.loads((root / "cohort.json").read_text())
    info["modalities"][0]["colour"] = False
    (root / "cohort.json").write_text(json.dumps(info))
    case = CohortReader(root)["T000"]
    rgb = read_image(root / "slide" / "T000.png", colour=True)
    assert case.value("slide").shape == (24, 20)
    luma = np.tensordot(np.array([0.299, 0.587, 0.114]), rgb, axes=1)
    assert np.abs(case.value("slide") - luma).max() < 1 / 255 + 1e-6
    assert case.issues == [f"{root / 'slide' / 'T000.png'}: a colour image read as grey (its luminance), since the "
                           "modality is declared grey; declare it \"colour\": true in cohort.json to keep its colours"]
    check = check_cohort(root)  # the validator reports it once per case with a slide, as a warning
    assert check.errors == [] and sum("a colour image read as grey" in w for w in check.warnings) == 6
    write_png(root / "slide" / "T000.png", np.repeat(luma[None].clip(0, 1), 3, axis=0))  # RGB, but grey
    assert CohortReader(root)["T000"].issues == []


# ------------------------------------------------------------------------------------------ colour I/O
def test_colour_images_read_as_rgb(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (10, 12, 3)).astype(np.uint8)
    write_png(tmp_path / "hwc.png", rgb)
    assert np.array_equal(read_image(tmp_path / "hwc.png", colour=True), np.moveaxis(rgb, -1, 0) / np.float32(255))
    Image.fromarray(np.dstack([rgb, np.full((10, 12), 7, np.uint8)]), mode="RGBA").save(tmp_path / "rgba.png")
    assert np.allclose(read_image(tmp_path / "rgba.png", colour=True), np.moveaxis(rgb, -1, 0) / 255.0)
    grey16 = rng.random((6, 5)).astype(np.float32)
    write_png(tmp_path / "grey.png", grey16, bit_depth=16)
    got = read_image(tmp_path / "grey.png", colour=True)
    assert got.shape == (3, 6, 5) and np.allclose(got[0], got[2]) and np.abs(got[1] - grey16).max() < 1e-4
    with pytest.raises(ValueError, match="8 bits per channel"):
        write_png(tmp_path / "x.png", rgb, bit_depth=16)


# ------------------------------------------------------------------------------------------- survival
def test_survival_cohort_reads_time_and_event(tmp_path):
    root, cases = write_toy_cohort(tmp_path / "surv", survival=True)
    header = (root / "cohort.csv").read_text().splitlines()[0].split(",")
    assert "label" not in header and header[:4] == ["case_id", "split", "time", "event"]
    reader = CohortReader(root)
    assert reader.outcome == "survival" and reader.classes == ()
    assert [c.outcome for c in reader] == [c.outcome for c in cases]
    assert all(c.label == "" for c in reader)
    summary = cohort_summary(reader)
    assert summary["events"] == 4 and summary["censored"] == 4 and summary["outcome"] == "survival"
    spec = InputSpec(classes=(), features=tuple(reader.features.values()), modalities=reader.modalities,
                     outcome="survival")
    item = prepare_case(reader["T003"], spec)
    assert item["label"] == -1 and item["outcome"].tolist() == [15.5, 1.0]


@pytest.mark.parametrize("column, value, message", [
    ("time", "-2", "time '-2' is negative"),
    ("time", "soon", "time 'soon' is not a number"),
    ("time", "", "time is empty"),
    ("event", "2", "event must be 1 .* or 0 .*, got '2'"),
])
def test_survival_values_are_checked_with_row_numbers(tmp_path, column, value, message):
    root, _ = write_toy_cohort(tmp_path / "surv", survival=True)
    _edit_csv(root / "cohort.csv", lambda t: t.assign(**{column: t[column].where(t["case_id"] != "T002", value)}))
    with pytest.raises(CohortError, match=message) as err:
        CohortReader(root)
    assert err.value.line == 4 and err.value.case_id == "T002" and err.value.field == column


def test_survival_outcome_needs_its_columns(tmp_path):
    root, _ = write_toy_cohort(tmp_path / "surv", survival=True)
    _edit_csv(root / "cohort.csv", lambda t: t.drop(columns=["event"]))
    with pytest.raises(CohortError, match="a survival cohort needs time and event"):
        CohortReader(root)
    shutil.rmtree(root)
    root, _ = write_toy_cohort(tmp_path / "surv", survival=True)
    info = json.loads((root / "cohort.json").read_text())
    del info["outcome"]  # no task nor outcome named: time and event without label still read as survival
    (root / "cohort.json").write_text(json.dumps(info))
    assert CohortReader(root).outcome == "survival"


def test_missing_counts_of_the_toy_declaration_match():
    assert len(MISSING) == 8 and len(TOY_FEATURES) == 4


def test_preview_draws_one_panel_per_declared_modality(tmp_path):
    from neurofusion.data.__main__ import main

    root, _ = write_toy_cohort(tmp_path / "toy")
    out = tmp_path / "T001.png"  # T001 lacks its slide
    assert main(["preview", str(root), "--case-id", "T001", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.size == (1120, 1080)  # five panels: three rows of two


def test_colour_dicom_read_as_rgb(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.dataset import FileMetaDataset
    from pydicom.pixels import apply_color_lut
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    palette = get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(palette)
    expected = np.moveaxis(apply_color_lut(ds.pixel_array, ds) / 65535.0, -1, 0)  # 16-bit tables
    rgb = read_image(palette, colour=True)
    assert rgb.shape == (3, 350, 800) and np.abs(rgb - expected).max() < 1e-5
    notes: list[str] = []
    grey = read_image(palette, notes=notes)  # a grey modality: luminance, and the loss is reported
    assert np.abs(grey - np.tensordot([0.299, 0.587, 0.114], expected, axes=1)).max() < 1e-5
    assert len(notes) == 1 and "a colour image read as grey" in notes[0]

    pixels = np.random.default_rng(1).integers(0, 256, (6, 7, 3)).astype(np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    rgb_ds = pydicom.Dataset()
    rgb_ds.file_meta = meta
    rgb_ds.SOPClassUID, rgb_ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    rgb_ds.SamplesPerPixel, rgb_ds.PhotometricInterpretation, rgb_ds.PlanarConfiguration = 3, "RGB", 0
    rgb_ds.Rows, rgb_ds.Columns = 6, 7
    rgb_ds.BitsAllocated = rgb_ds.BitsStored = 8
    rgb_ds.HighBit, rgb_ds.PixelRepresentation = 7, 0
    rgb_ds.PixelData = pixels.tobytes()
    rgb_ds.save_as(tmp_path / "rgb.dcm", enforce_file_format=True)
    assert np.allclose(read_image(tmp_path / "rgb.dcm", colour=True), np.moveaxis(pixels, -1, 0) / 255.0)
