"""Round-trips through every file format and the specific error for each kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from neurofusion.data import CohortError, Signal, STANDARD_LEADS, read_image, read_note, read_signal
from neurofusion.data.formats import wfdb_data_files, write_dicom_image, write_note, write_png, write_wfdb


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


# ------------------------------------------------------------------------------- lead names, other rates
@pytest.mark.parametrize(
    "label, lead",
    [("II", "II"), ("ii", "II"), ("MLII", "II"), ("MLI", "I"), ("ML-III", "III"), ("ECG_I", "I"),
     ("Lead I", "I"), ("Lead I (Einthoven)", "I"), ("ECG lead V5", "V5"), ("avr", "aVR"), ("AVL", "aVL"),
     ("MDC_ECG_LEAD_aVF", "aVF"), ("DIII", "III"), ("C3", "V3"), ("ecg-v1", "V1"), (" V6 ", "V6")],
)
def test_common_lead_spellings_map_to_the_standard_lead(label, lead):
    from neurofusion.data import standard_lead

    assert standard_lead(label) == lead


@pytest.mark.parametrize("label", ["ECG1", "ECG 2", "Lead 2", "V", "V7", "-aVR", "EKG", "Pleth", "ABP", ""])
def test_ambiguous_or_other_channel_names_stay_unmapped(label):
    from neurofusion.data import standard_lead

    assert standard_lead(label) is None


def test_wfdb_record_with_mit_bih_names_at_360_hz(tmp_path):
    """A record as MIT-BIH writes them: MLII and V1 at 360 Hz in format 212, plus a numbered channel."""
    import wfdb

    rng = np.random.default_rng(5)
    data = rng.normal(0, 0.5, (720, 3))
    wfdb.wrsamp("mit", fs=360, units=["mV"] * 3, sig_name=["MLII", "V1", "ECG1"], p_signal=data,
                fmt=["212"] * 3, write_dir=str(tmp_path))
    back = read_signal(tmp_path / "mit.hea")
    assert back.fs == 360 and back.channels == ("II", "V1", "ECG1")  # ambiguous ECG1 kept, to be reported
    assert np.abs(back.data - data.T).max() < 0.01  # wfdb chose the gain; 212 keeps it within a few uV


def test_dicom_waveform_with_other_lead_labels_and_rate(tmp_path):
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = ds.WaveformSequence[0]
    group.SamplingFrequency = 500
    labels = {0: "ECG_I", 1: "MLII", 2: "ECG3", 3: "avr"}
    for i, label in labels.items():
        group.ChannelDefinitionSequence[i].ChannelSourceSequence[0].CodeMeaning = label
    ds.save_as(tmp_path / "w.dcm")
    back = read_signal(tmp_path / "w.dcm")
    reference = read_signal(get_testdata_file("waveform_ecg.dcm"))
    assert back.fs == 500
    assert back.channels[:4] == ("I", "II", "ECG3", "aVR") and back.channels[4:] == STANDARD_LEADS[4:]
    assert np.array_equal(back.data, reference.data)  # same samples, only names and rate changed


def test_channel_spelled_as_the_lead_wins_over_its_alias():
    from neurofusion.data import match_leads

    match = match_leads(("MLII", "V", "II"))
    assert match.rows == {"II": 2} and match.unmapped == ("V",) and match.duplicates == {"MLII": "II"}


def test_lead_issues_name_the_file_and_the_channels():
    from neurofusion.data import lead_issues

    some = Signal(np.zeros((3, 10), np.float32), 100, ("II", "ECG1", "V"))
    assert lead_issues(some, where="signals/a.hea") == [
        "signals/a.hea: channel(s) 'ECG1', 'V' do not name a standard ECG lead (I, II, III, aVR, aVL, aVF, "
        "V1-V6) and are not used"
    ]
    none = Signal(np.zeros((2, 10), np.float32), 100, ("ECG1", "ECG2"))
    [issue] = lead_issues(none, where="signals/b.hea")
    assert issue.startswith("signals/b.hea: signal unusable: none of its channels ('ECG1', 'ECG2') names a "
                            "standard ECG lead")
    assert lead_issues(some, ("II", "V5")) == [
        "channel(s) 'ECG1', 'V' do not name one of the model's leads (II, V5) and are not used"
    ]


# ---------------------------------------------------------------------------------- palette colour DICOM
def test_palette_colour_ultrasound_is_looked_up_then_grey():
    """PALETTE COLOR pixels are indices: the image must be the luminance of pydicom's own colour lookup."""
    import pydicom
    from pydicom.pixels import apply_color_lut

    path = get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "PALETTE COLOR" and ds.Modality == "US"
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.float64) / 65535  # 16-bit tables
    expected = rgb @ np.array([0.299, 0.587, 0.114])
    grey = read_image(path)
    assert grey.shape == (350, 800) and grey.dtype == np.float32
    assert np.abs(grey - expected).max() < 1e-5
    # the indices themselves are not the image: this palette is far from the identity ramp
    assert np.abs(ds.pixel_array / 255 - expected).max() > 0.2


def test_multi_frame_palette_dicom_gives_a_grey_volume(tmp_path):
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("examples_palette.dcm"))
    single = read_image(get_testdata_file("examples_palette.dcm"))
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData + ds.PixelData[::-1]  # second frame: the first, turned by 180 degrees
    ds.save_as(tmp_path / "cine.dcm")
    volume = read_image(tmp_path / "cine.dcm")
    assert volume.shape == (2, 350, 800)
    assert np.abs(volume[0] - single).max() < 1e-6 and np.abs(volume[1] - single[::-1, ::-1]).max() < 1e-6


# ------------------------------------------------------------------------------------ truncated, 0 Hz
def test_truncated_wfdb_data_file_says_it_is_shorter_than_declared(tmp_path):
    write_wfdb(tmp_path / "r.hea", Signal(np.zeros((3, 5000), np.float32), 500, ("I", "II", "III")))
    raw = (tmp_path / "r.dat").read_bytes()
    (tmp_path / "r.dat").write_bytes(raw[: 2 * 3 * 1200])  # 1200 of 5000 frames of 3 16-bit samples
    with pytest.raises(CohortError, match=r"r\.hea: signal file r\.dat is shorter than its header declares: "
                                          r"1200 samples per channel found, 5000 declared"):
        read_signal(tmp_path / "r.hea")


def test_wfdb_header_with_zero_sampling_rate_is_a_specific_error(tmp_path):
    write_wfdb(tmp_path / "z.hea", Signal(np.zeros((1, 100), np.float32), 500, ("II",)))
    lines = (tmp_path / "z.hea").read_text().splitlines()
    lines[0] = "z 1 0 100"
    (tmp_path / "z.hea").write_text("\n".join(lines) + "\n")
    with pytest.raises(CohortError, match=r"z\.hea: WFDB header states a sampling rate of 0 Hz on line 1 "
                                          r"\('z 1 0 100'\); it must be the positive rate"):
        read_signal(tmp_path / "z.hea")


def test_dicom_waveform_with_zero_sampling_frequency_is_a_specific_error(tmp_path):
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    ds.WaveformSequence[0].SamplingFrequency = 0
    ds.save_as(tmp_path / "w.dcm")
    with pytest.raises(CohortError, match=r"w\.dcm: DICOM waveform states a sampling frequency of 0 Hz"):
        read_signal(tmp_path / "w.dcm")


def test_wfdb_header_that_cannot_be_parsed_is_an_error(tmp_path):
    write_wfdb(tmp_path / "r.hea", Signal(np.zeros((1, 100), np.float32), 500, ("II",)))
    (tmp_path / "r.hea").write_text("r 1 500 100\nr.dat sixteen garbage here\n")
    with pytest.raises(CohortError, match=r"r\.hea: WFDB header cannot be parsed"):
        read_signal(tmp_path / "r.hea")


def test_wfdb_data_files_lists_what_the_header_names(tmp_path):
    data = np.zeros((2, 500), dtype=np.float32)
    write_wfdb(tmp_path / "rec.hea", Signal(data=data, fs=250.0, channels=("I", "II")))
    assert wfdb_data_files(tmp_path / "rec.hea") == ("rec.dat",)
    (tmp_path / "bad.hea").write_text("bad 2 zero\n")
    assert wfdb_data_files(tmp_path / "bad.hea") == ()
    assert wfdb_data_files(tmp_path / "absent.hea") == ()
