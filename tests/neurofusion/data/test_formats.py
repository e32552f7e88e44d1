"""Round-trips through every file format and the specific error for each kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from neurofusion.data import CohortError, Signal, STANDARD_LEADS, read_image, read_note, read_signal
from neurofusion.data.formats import write_dicom_image, write_note, write_png, write_wfdb


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(0).random((37, 53)).astype(np.float32)


@pytest.mark.parametrize("bits, tolerance", [(8, 0.5 / 255), (16, 0.5 / 65535)])
def test_png_round_trip_within_quantisation(tmp_path, image, bits, tolerance):
    write_png(tmp_path / "x.png", image, bit_depth=bits)
    back = read_image(tmp_path / "x.png")
    assert back.shape == image.shape and back.dtype == np.float32
    assert np.abs(back - image).max() <= tolerance + 1e-7


@pytest.mark.parametrize("bits", [8, 16])
def test_dicom_round_trip_keeps_physical_units(tmp_path, image, bits):
    hounsfield = image * 2000 - 1000
    write_dicom_image(tmp_path / "x.dcm", hounsfield, patient_id="P1", bits=bits)
    back = read_image(tmp_path / "x.dcm")
    assert np.abs(back - hounsfield).max() <= 2000 / (2**bits - 1) / 2 + 1e-3


def test_dicom_volume_round_trip(tmp_path):
    volume = np.random.default_rng(1).random((4, 16, 20))
    write_dicom_image(tmp_path / "v.dcm", volume, patient_id="P2")
    back = read_image(tmp_path / "v.dcm")
    assert back.shape == (4, 16, 20)
    assert np.abs(back - volume).max() < 1e-4


def test_colour_png_becomes_luminance(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 0] = 255  # pure red -> ITU-R 601 luma 0.299
    Image.fromarray(rgb, mode="RGB").save(tmp_path / "c.png")
    assert read_image(tmp_path / "c.png") == pytest.approx(np.full((8, 8), 76 / 255), abs=1e-6)


def test_pydicom_ct_example_reads_in_hounsfield_units():
    ct = read_image(get_testdata_file("CT_small.dcm"))
    assert ct.shape == (128, 128)
    assert ct.min() < -800 and ct.max() > 1000  # air and bone after the rescale intercept of -1024


@pytest.mark.parametrize("fmt, resolution_mv", [("16", 0.001), ("212", 0.005)])
def test_wfdb_round_trip(tmp_path, fmt, resolution_mv):
    data = np.random.default_rng(2).normal(0, 0.8, (12, 2500)).astype(np.float32)
    write_wfdb(tmp_path / "rec-1.hea", Signal(data, 250, STANDARD_LEADS), fmt=fmt)
    back = read_signal(tmp_path / "rec-1.hea")
    assert back.fs == 250 and back.channels == STANDARD_LEADS and back.data.shape == (12, 2500)
    assert np.abs(back.data - data).max() <= resolution_mv / 2 + 1e-6


def test_dicom_waveform_ecg_reads_twelve_named_leads_in_millivolts():
    ecg = read_signal(get_testdata_file("waveform_ecg.dcm"))
    assert ecg.channels == STANDARD_LEADS
    assert ecg.fs == 1000 and ecg.data.shape == (12, 10000)
    # Einthoven's law holds in the recording: III = II - I (within the 1.25 uV sensitivity)
    assert np.abs(ecg.data[2] - (ecg.data[1] - ecg.data[0])).max() < 0.01
    assert 0.3 < np.abs(ecg.data).max() < 5  # millivolts, not microvolts


def test_note_round_trip_keeps_unicode(tmp_path):
    write_note(tmp_path / "n.txt", "Pt denies chest pain — BNP ↑, café.")
    assert read_note(tmp_path / "n.txt") == "Pt denies chest pain — BNP ↑, café."


# ------------------------------------------------------------------------------------------ bad input
def test_truncated_png_is_a_clear_error(tmp_path, image):
    write_png(tmp_path / "x.png", image)
    data = (tmp_path / "x.png").read_bytes()
    (tmp_path / "x.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CohortError, match=r"x\.png: not a readable PNG/DICOM image"):
        read_image(tmp_path / "x.png")


def test_text_file_named_png_is_a_clear_error(tmp_path):
    (tmp_path / "x.png").write_text("not an image")
    with pytest.raises(CohortError, match="not a readable PNG/DICOM image"):
        read_image(tmp_path / "x.png")


def test_corrupt_dicom_is_a_clear_error(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"\x00" * 50)
    with pytest.raises(CohortError, match=r"x\.dcm: not a readable DICOM file"):
        read_image(tmp_path / "x.dcm")


def test_waveform_dicom_used_as_image_is_a_clear_error():
    with pytest.raises(CohortError, match="holds no pixel data"):
        read_image(get_testdata_file("waveform_ecg.dcm"))


def test_image_dicom_used_as_signal_is_a_clear_error():
    with pytest.raises(CohortError, match="holds no waveform"):
        read_signal(get_testdata_file("CT_small.dcm"))


def test_wfdb_header_without_sampling_rate_is_an_error(tmp_path):
    write_wfdb(tmp_path / "r.hea", Signal(np.zeros((1, 100), np.float32), 500, ("II",)))
    lines = (tmp_path / "r.hea").read_text().splitlines()
    lines[0] = "r 1"  # WFDB would silently assume 250 Hz
    (tmp_path / "r.hea").write_text("\n".join(lines) + "\n")
    with pytest.raises(CohortError, match="does not state the sampling rate"):
        read_signal(tmp_path / "r.hea")


def test_wfdb_without_its_data_file_is_an_error(tmp_path):
    write_wfdb(tmp_path / "r.hea", Signal(np.zeros((1, 100), np.float32), 500, ("II",)))
    (tmp_path / "r.dat").unlink()
    with pytest.raises(CohortError, match=r"WFDB signal file missing: r\.dat"):
        read_signal(tmp_path / "r.hea")


def test_wfdb_with_invalid_samples_is_a_nan_error(tmp_path):
    write_wfdb(tmp_path / "r.hea", Signal(np.zeros((2, 100), np.float32), 500, ("I", "II")))
    raw = bytearray((tmp_path / "r.dat").read_bytes())
    raw[40:42] = (-32768).to_bytes(2, "little", signed=True)  # WFDB's "invalid sample" code -> NaN
    (tmp_path / "r.dat").write_bytes(bytes(raw))
    with pytest.raises(CohortError, match="NaN or infinite samples"):
        read_signal(tmp_path / "r.hea")


@pytest.mark.parametrize(
    "data, fs, channels, message",
    [
        (np.zeros(500), 500, ("II",), r"must be \(channels, samples\), got shape \(500,\)"),
        (np.zeros((2, 500)), 500, ("II",), "2 channels but 1 channel names"),
        (np.zeros((1, 500)), 0, ("II",), "sampling rate must be a positive number"),
        (np.full((1, 500), np.nan), 500, ("II",), "500 NaN or infinite samples"),
    ],
)
def test_signal_rejects_bad_shape_rate_and_nan(data, fs, channels, message):
    with pytest.raises(ValueError, match=message):
        Signal(data, fs, channels)


def test_note_not_utf8_names_the_byte(tmp_path):
    (tmp_path / "n.txt").write_bytes("Pt reports café".encode("latin-1"))
    with pytest.raises(CohortError, match=r"n\.txt: note is not valid UTF-8 \(byte 0xe9 at offset 14\)"):
        read_note(tmp_path / "n.txt")


def test_empty_note_is_an_error(tmp_path):
    (tmp_path / "n.txt").write_text("  \n\t")
    with pytest.raises(CohortError, match="note is empty"):
        read_note(tmp_path / "n.txt")
