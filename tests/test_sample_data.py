"""The committed sample cohort: valid, what the README says it is, and reproduced by its recorded command."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import wfdb
from PIL import Image

from neurofusion.data import CohortReader, read_image, read_note, read_signal, validate_cohort, write_png, write_wfdb
from neurofusion.data.cohort import cohort_summary
from neurofusion.data.synthetic.generate import generate_cohort

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "cardio"
TABLES = ("cohort.csv", "ground_truth.csv", "clinician_rankings.csv", "features.csv")


def test_sample_cohort_is_valid_and_as_documented():
    assert validate_cohort(SAMPLE) == []
    summary = cohort_summary(CohortReader(SAMPLE))
    assert summary["synthetic"] and summary["cases"] == 200 and summary["splits"]["test"] == 200
    assert summary["ranked_cases"] >= 100 and len(summary["raters"]) >= 3
    assert summary["ground_truth"]
    size_mb = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 30


def test_bundled_notes_agree_with_their_table():
    """What each bundled note states about its patient is what cohort.csv holds (the generator before this
    check: 167 of the 170 cases with both had a contradiction, e.g. CV-00090's 'type 2 diabetes')."""
    from tests.neurofusion.data.test_synthetic_consistency import contradictions, inner_contradictions

    table = pd.read_csv(SAMPLE / "cohort.csv")
    checked, problems = 0, {}
    for row in table.to_dict("records"):
        if isinstance(row["note_file"], str):
            note = read_note(SAMPLE / row["note_file"])
            found = inner_contradictions(note) + (contradictions(note, row) if row["has_tabular"] else [])
            checked += bool(row["has_tabular"])
            if found:
                problems[row["case_id"]] = found
    assert checked >= 150 and not problems, list(problems.items())[:5]


def _image_step(path: Path) -> float:
    """One stored level of an image as read_image returns it: 1/255 or 1/65535 for PNG, the rescale slope
    for DICOM."""
    if path.suffix == ".dcm":
        return float(pydicom.dcmread(path, stop_before_pixels=True).RescaleSlope)
    with Image.open(path) as img:
        return 1 / 65535 if img.mode.startswith("I") else 1 / 255


def _steps(x: np.ndarray, y: np.ndarray, step: float) -> int:
    """The largest difference between two decoded arrays in stored steps (decoded float32 values are whole
    steps up to their own rounding, so the count is rounded)."""
    return int(np.rint(np.abs(x.astype(np.float64) - y) / step).max()) if x.size else 0


def cohort_differences(committed: Path, regenerated: Path) -> list[str]:
    """What differs between two generated cohort folders beyond what another CPU may change.

    Cases, tables (decoded, exact), cohort.json, README.md and notes must be equal. Pixels and ECG samples
    are compared decoded, within one stored step: they are rounded from floats, and a CPU whose exp/log
    loops differ in the last bit can move a value that sits on a rounding boundary by one step. File
    bytes are not compared: PNG and WFDB bytes also depend on the zlib, Pillow and wfdb versions.
    Table values are compared exactly: they come from scalar float64 arithmetic and libm calls, so a CPU
    can change a printed digit only for a value within about 1e-16 (relative) of a rounding boundary.
    """
    files = {p.relative_to(committed).as_posix() for p in committed.rglob("*") if p.is_file()}
    again = {p.relative_to(regenerated).as_posix() for p in regenerated.rglob("*") if p.is_file()}
    found = [f"{name}: only in {committed}" for name in sorted(files - again)]
    found += [f"{name}: only in {regenerated}" for name in sorted(again - files)]
    for name in sorted(files & again):
        a, b = committed / name, regenerated / name
        if name in TABLES:
            try:
                pd.testing.assert_frame_equal(pd.read_csv(a), pd.read_csv(b), check_exact=True)
            except AssertionError as err:
                found.append(f"{name}: {' '.join(str(err).split())[:300]}")
        elif name == "cohort.json":
            if json.loads(a.read_text()) != json.loads(b.read_text()):
                found.append(f"{name} differs")
        elif name.endswith((".txt", ".md")):
            if read_note(a) != read_note(b):
                found.append(f"{name} differs")
        elif name.startswith("images/"):
            x, y, step = read_image(a), read_image(b), _image_step(a)
            if x.shape != y.shape or _steps(x, y, step) > 1:
                found.append(f"{name}: pixels differ by more than one stored level ({step:.3g})")
        elif name.endswith(".hea"):
            x, y = read_signal(a), read_signal(b)
            step = 1 / min(wfdb.rdheader(str(a.with_suffix(""))).adc_gain)
            if (x.fs, x.channels, x.data.shape) != (y.fs, y.channels, y.data.shape):
                found.append(f"{name}: rate, leads or length differ")
            elif _steps(x.data, y.data, step) > 1:
                found.append(f"{name}: samples differ by more than one ADC step ({step * 1000:.0f} uV)")
        elif not name.endswith(".dat"):  # .dat files are read through their .hea
            found.append(f"{name}: no comparison defined for this file")
    return found


def test_recorded_command_regenerates_the_sample(tmp_path):
    info = CohortReader(SAMPLE).info["generator"]
    args = shlex.split(info["command"])
    assert args[:4] == ["python", "-m", "neurofusion.data", "generate"]
    generate_cohort(info["task"], info["n"], info["seed"], tmp_path / "again", splits=tuple(info["splits"]),
                    signal_format=info["signal_format"], interaction_share=info.get("interaction_share", 0.0),
                    progress=False)
    differing = cohort_differences(SAMPLE, tmp_path / "again")
    assert not differing, f"sample_data/cardio is stale (run `make sample-data`): {differing[:5]}"


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    """A small generated cohort holding every stored format (8-bit PNG, 16-bit PNG, DICOM, WFDB 212)."""
    root = tmp_path_factory.mktemp("cohort") / "a"
    generate_cohort("cardio", 30, 5, root, signal_format="212", progress=False)
    return root


def _copy(root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(root, tmp_path / "copy"))


def _a_png(root: Path, bits: int) -> Path:
    for path in sorted((root / "images").glob("*.png")):
        if (_image_step(path) == 1 / 65535) == (bits == 16):
            return path
    raise LookupError(f"no {bits}-bit PNG in {root}")


def test_comparison_accepts_a_copy_and_one_level_of_rounding(small_cohort, tmp_path):
    copy = _copy(small_cohort, tmp_path)
    assert cohort_differences(small_cohort, copy) == []
    png = _a_png(copy, 16)
    image = read_image(png)
    image[40, 60] = min(image[40, 60] + 1 / 65535, 1.0)  # one 16-bit level: what another CPU may do
    write_png(png, image, bit_depth=16)
    header = sorted((copy / "signals").glob("*.hea"))[0]
    signal = read_signal(header)
    signal.data[3, 100] += 0.005  # one 5 uV step of format 212
    write_wfdb(header, signal, fmt="212")
    assert cohort_differences(small_cohort, copy) == []


@pytest.mark.parametrize("change, expected", [
    ("note", "notes/"), ("table", "cohort.csv"), ("truth", "ground_truth.csv"), ("png8", "images/"),
    ("png16", "images/"), ("dicom", "images/"), ("signal", "signals/"), ("missing", "only in"),
])
def test_comparison_finds_a_stale_sample(small_cohort, tmp_path, change, expected):
    copy = _copy(small_cohort, tmp_path)
    if change == "note":
        note = sorted((copy / "notes").glob("*.txt"))[0]
        note.write_text(note.read_text(encoding="utf-8") + "Addendum: seen again today.\n", encoding="utf-8")
    elif change == "table":
        table = pd.read_csv(copy / "cohort.csv")
        table.loc[table["age"].first_valid_index(), "age"] += 1
        table.to_csv(copy / "cohort.csv", index=False)
    elif change == "truth":
        truth = pd.read_csv(copy / "ground_truth.csv")
        truth.loc[truth["strength_text"].first_valid_index(), "strength_text"] += 0.0001
        truth.to_csv(copy / "ground_truth.csv", index=False)
    elif change in ("png8", "png16"):
        bits = int(change[3:])
        png = _a_png(copy, bits)
        image = read_image(png)
        image[40:44, 60:64] = np.clip(image[40:44, 60:64] + 2 / (2**bits - 1), 0, 1)  # two levels
        write_png(png, image, bit_depth=bits)
    elif change == "dicom":
        dcm = sorted((copy / "images").glob("*.dcm"))[0]
        ds = pydicom.dcmread(dcm)
        pixels = ds.pixel_array.copy()
        pixels[40, 60] = pixels[40, 60] + 2 if pixels[40, 60] < 250 else pixels[40, 60] - 2
        ds.PixelData = pixels.tobytes()
        ds.save_as(dcm)
    elif change == "signal":
        header = sorted((copy / "signals").glob("*.hea"))[0]
        signal = read_signal(header)
        signal.data[3, 100] += 0.010  # two steps of format 212
        write_wfdb(header, signal, fmt="212")
    else:
        next((copy / "notes").glob("*.txt")).unlink()
    found = cohort_differences(small_cohort, copy)
    assert found and all(expected in f for f in found), found


DEMO = SAMPLE.parent / "checkpoints" / "cardio_demo"


def test_demo_checkpoint_loads_and_reproduces_its_test_metrics():
    import json

    from neurofusion.evaluate import evaluate

    recorded = json.loads((DEMO / "metrics.json").read_text())["test"]
    result = evaluate(DEMO, SAMPLE, device="cpu", n_bootstrap=200)
    assert result["n"] == recorded["n"] == 200
    # same cases, same weights: at most one borderline case may flip with another CPU's float rounding
    # (counted in cases: 0.9 - 0.895 is 0.0050000000000000044 in floats, more than 1 / 200)
    flipped = round(abs(result["accuracy"]["value"] - recorded["accuracy"]["value"]) * result["n"])
    assert flipped <= 1, f"{flipped} test cases changed prediction"
    assert abs(result["macro_f1"]["value"] - recorded["macro_f1"]["value"]) <= 0.01
    size_mb = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 25


def test_saliency_randomisation_check_falls_on_the_demo_model():
    """Adebayo et al.'s sanity check: re-initialising the demo model's layers from the top down must make
    its image and ECG saliency less like the trained model's."""
    from explain.faithfulness import randomisation_check
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.inference import Predictor

    ckpt = load_checkpoint(DEMO, device="cpu")
    cohort = CohortReader(SAMPLE)
    cases = [c for c in (cohort[i] for i in cohort.ids("test")[:20]) if all(c.available.values())][:2]
    table = randomisation_check(Predictor(ckpt.model, ckpt.tokenizer), cases, n_steps=8)
    for modality in ("image", "signal"):
        similarity = table[f"{modality}_similarity"].to_numpy()
        assert similarity[0] == pytest.approx(1.0)
        # step 1 re-initialises only the heads; by the input layers much less of the trained saliency is left.
        # Integrated Gradients multiplies by the input, so a fully re-initialised model keeps part of the
        # similarity (image: 0.58 on the additive-cohort demo, 0.65 on the interaction-cohort demo); a method
        # blind to the model would stay at 1.0
        assert similarity[-1] < 0.7, table
        assert similarity[-1] < similarity[1] - 0.1, table


CANCER = SAMPLE.parent / "cancer"
CANCER_DEMO = SAMPLE.parent / "checkpoints" / "cancer_demo"


def test_cancer_demo_checkpoint_loads_and_reproduces_its_test_c_index():
    """The bundled survival model on the bundled cancer test split: the C-index and 5-year AUC it recorded
    when trained (same cases, same weights; a tolerance for another CPU's float rounding), a survival curve
    per case that never increases, and it is small enough to ship."""
    from neurofusion.evaluate import evaluate

    recorded = json.loads((CANCER_DEMO / "metrics.json").read_text())["test"]
    result = evaluate(CANCER_DEMO, CANCER, device="cpu", n_bootstrap=20)
    assert result["n"] == recorded["n"] == 200
    for metric in ("c_index", "auc_at_horizon"):
        assert abs(result[metric]["value"] - recorded[metric]["value"]) <= 0.01, metric
    assert recorded["c_index"]["value"] > 0.65  # far from chance on the planted hazard (ceiling 0.85)
    size_mb = sum(p.stat().st_size for p in CANCER_DEMO.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 25


ICU = SAMPLE.parent / "icu"
ICU_DEMO = SAMPLE.parent / "checkpoints" / "icu_demo"


def test_icu_sample_is_what_its_recorded_command_generates():
    """The committed ICU stays against the generator's stays of the recorded command (decoded values, not
    bytes: times and values within 1e-6), and the summary the README quotes."""
    from neurofusion.data.synthetic.icu.write import synthesize_cohort
    from neurofusion.data.timed import TimedCohortReader, timed_summary

    info = json.loads((ICU / "cohort.json").read_text())
    generator = info["generator"]
    stays = synthesize_cohort(generator["n"], generator["seed"], tuple(generator["splits"]))
    reader = TimedCohortReader(ICU)
    assert reader.stay_ids() == [s.plan.case_id for s in stays]
    for stay in stays[:: 25]:
        for table, rows in (("vitals", stay.vitals), ("labs", stay.labs)):
            stored = reader.events_of(stay.plan.case_id, table).sort_values(["variable", "time"], kind="stable")
            expected = rows.sort_values(["variable", "time"], kind="stable")
            assert stored["variable"].tolist() == expected["variable"].tolist()
            np.testing.assert_allclose(stored["time"].to_numpy(), expected["time"].to_numpy().round(4), atol=1e-6)
            np.testing.assert_allclose(stored["value"].to_numpy(), expected["value"].to_numpy(), atol=1e-6)
        assert reader.notes_of(stay.plan.case_id)["text"].tolist() == [n.text for n in stay.notes]
    summary = timed_summary(reader)
    assert (summary["stays"], summary["samples"], summary["died"]) == (200, len(reader), 31)
    assert f"{summary['died']} of the 200 stays end in death" in (ICU / "README.md").read_text()
    size_mb = sum(p.stat().st_size for p in ICU.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 25


def test_icu_demo_checkpoint_reproduces_its_test_auroc():
    """The bundled ICU model on the bundled test stays: the AUROC and AUPRC it recorded when trained (a
    tolerance for another CPU's float rounding) and the per-hour table of the same metrics."""
    from neurofusion.evaluate import evaluate

    recorded = json.loads((ICU_DEMO / "metrics.json").read_text())["test"]["risk"]
    result = evaluate(ICU_DEMO, ICU, device="cpu", n_bootstrap=20)["risk"]
    assert result["n_samples"] == recorded["n_samples"] == 1083 and result["n_stays"] == 200
    for metric in ("auroc", "auprc"):
        assert abs(result[metric]["value"] - recorded[metric]["value"]) <= 0.01, metric
    assert set(result["by_hour"]) == {"0", "6", "12", "24", "36", "48"}
    size_mb = sum(p.stat().st_size for p in ICU_DEMO.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 25
