"""Single-file readers and writers for the clinical formats a cohort uses.

Images: PNG (8/16-bit, grey or RGB) and DICOM, read as grey or, for a colour modality, RGB. Signals: WFDB records and DICOM waveform ECG (read only). Notes: UTF-8
text. Every reader raises :class:`CohortError` naming the file and what was wrong with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pydicom.errors
import wfdb
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from neurofusion.data.errors import CohortError
from neurofusion.data.schema import Signal, standard_channel_names

IMAGE_SUFFIXES = (".png", ".dcm", ".dicom")
SIGNAL_SUFFIXES = (".hea", ".dcm", ".dicom")
_DICOM_SUFFIXES = (".dcm", ".dicom")
# Fixed ADC gains (digital units per mV) as in PhysioNet's ECG databases: 1 uV steps in 16-bit
# (range +-32 mV), 5 uV steps in the packed 12-bit MIT format 212 (range +-10 mV).
_WFDB_GAIN = {"16": 1000.0, "212": 200.0}
_WFDB_LIMIT = {"16": 32767, "212": 2047}
_RECORD_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
# Bytes one sample takes in each uncompressed WFDB storage format (212 packs two samples in 3 bytes,
# 310/311 three in 4), to tell a truncated signal file from a corrupt one.
_WFDB_BYTES = {"8": 1, "16": 2, "61": 2, "80": 1, "160": 2, "212": 1.5, "24": 3, "32": 4, "310": 4 / 3, "311": 4 / 3}
# ITU-R BT.601 luma weights: colour -> the grey the model reads.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "microvolt": 1e-3, "millivolt": 1.0, "v": 1e3}


# ----------------------------------------------------------------------------------------------- images
def read_image(path: str | Path, colour: bool = False, *, notes: list[str] | None = None) -> np.ndarray:
    """Read a PNG or DICOM image -> float32 (H, W) or (D, H, W); with ``colour``, (3, H, W) RGB in [0, 1].

    Grey (colour=False): PNG intensities are scaled to [0, 1] (8-bit / 255, 16-bit / 65535; colour is
    converted to luminance). DICOM keeps its physical units after the modality LUT (e.g. Hounsfield units
    for CT); colour and PALETTE COLOR DICOM (ultrasound) are converted to luminance in [0, 1].

    Colour (colour=True): RGB / RGBA / palette PNG -> its RGB channels / 255 (alpha dropped; Pillow reads a
    16-bit-per-channel RGB PNG at 8 bits); RGB or PALETTE COLOR DICOM -> RGB scaled by its bit depth. A
    grey file in a colour modality is read as grey in [0, 1] (16-bit / 65535; monochrome DICOM min-max
    scaled) and its channel repeated three times: grey is a colour, so nothing is lost or invented.

    ``notes``, when given, receives one sentence if a file with colour in it (channels that differ) was
    converted to grey, so the caller can report what was lost.
    """
    path = Path(path)
    if path.suffix.lower() in _DICOM_SUFFIXES or _is_dicom(path):
        image = _read_dicom_colour(path) if colour else _read_dicom_image(path, notes)
    else:
        image = _read_png_colour(path) if colour else _read_png(path, notes)
    return image


def _note_colour_lost(rgb: np.ndarray, path: Path, notes: list[str] | None) -> None:
    """rgb (..., 3): add a sentence to ``notes`` when its channels differ (real colour made grey)."""
    if notes is not None and rgb.shape[-1] == 3 and not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
        notes.append(f"{path}: a colour image read as grey (its luminance), since the modality is declared grey; "
                     "declare it \"colour\": true in cohort.json to keep its colours")


def write_png(path: str | Path, image: np.ndarray, *, bit_depth: int = 8) -> None:
    """Write an image as PNG: float (H, W) in [0, 1] as 8- or 16-bit grey; (3, H, W) or (H, W, 3) RGB,
    float in [0, 1] or uint8, as 8-bit RGB."""
    image = np.asarray(image)
    colour = image.ndim == 3 and 3 in (image.shape[0], image.shape[-1])
    if image.ndim != 2 and not colour:
        raise ValueError(f"PNG image must be (H, W) grey or (3, H, W) / (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise ValueError("PNG image values must be finite and in [0, 1]")
    if colour:
        if bit_depth != 8:
            raise ValueError(f"an RGB PNG is written with 8 bits per channel, got bit_depth {bit_depth}")
        rgb = image if image.shape[-1] == 3 else np.moveaxis(image, 0, -1)  # (3, H, W) -> (H, W, 3)
        Image.fromarray(np.round(rgb * 255).astype(np.uint8), mode="RGB").save(path, optimize=True)
    elif bit_depth == 8:
        Image.fromarray(np.round(image * 255).astype(np.uint8), mode="L").save(path, optimize=True)
    elif bit_depth == 16:
        Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(path)
    else:
        raise ValueError(f"PNG bit depth must be 8 or 16, got {bit_depth}")


def write_dicom_image(
    path: str | Path, image: np.ndarray, *, patient_id: str, modality: str = "US", bits: int = 16
) -> None:
    """Write a float (H, W) or (D, H, W) image as 8- or 16-bit DICOM (Secondary Capture) with a rescale
    slope and intercept, so the float values come back within (max - min) / (2**bits - 1).

    Ultrasound scanners store 8 bits; 16 suits CT/MR-like data."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim not in (2, 3) or not np.isfinite(image).all():
        raise ValueError(f"DICOM image must be finite (H, W) or (D, H, W), got shape {image.shape}")
    if bits not in (8, 16):
        raise ValueError(f"DICOM bits must be 8 or 16, got {bits}")
    levels = 2**bits - 1
    lo, hi = float(image.min()), float(image.max())
    slope = (hi - lo) / levels if hi > lo else 1.0
    stored = np.round((image - lo) / slope).astype(np.uint8 if bits == 8 else np.uint16)

    # UIDs derived from the patient id keep regenerated cohorts byte-identical for the same seed.
    seed = [patient_id, "neurofusion"]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=seed + ["sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=seed + ["study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=seed + ["series"])
    ds.PatientID = patient_id
    ds.Modality = modality
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape[-2:]
    if stored.ndim == 3:
        ds.NumberOfFrames = stored.shape[0]
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleIntercept = f"{lo:.10g}"
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _is_dicom(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def _read_png(path: Path, notes: list[str] | None = None) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32) / 65535.0
            elif mode == "F":
                arr = np.asarray(img, dtype=np.float32)
            else:
                if mode not in ("L", "LA", "1"):
                    _note_colour_lost(np.asarray(img.convert("RGB")), path, notes)
                arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise CohortError("image file not found", path=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise CohortError(f"not a readable PNG/DICOM image ({err})", path=path) from None
    return arr


def _read_png_colour(path: Path) -> np.ndarray:
    """PNG -> (3, H, W) float32 RGB in [0, 1]; a grey PNG's channel is repeated."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L", "LA", "1"):
                grey = _read_png(path)
                return np.repeat(grey[None], 3, axis=0)
            arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # RGBA, P, CMYK... -> RGB
    except FileNotFoundError:
        raise CohortError("image file not found", path=path) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise CohortError(f"not a readable PNG/DICOM image ({err})", path=path) from None
    return np.ascontiguousarray(np.moveaxis(arr, -1, 0))  # (H, W, 3) -> (3, H, W)


def _read_dicom_colour(path: Path) -> np.ndarray:
    """DICOM -> (3, H, W) float32 RGB in [0, 1]: RGB scaled by BitsStored, PALETTE COLOR looked up in its
    tables, monochrome min-max scaled and repeated. A multi-frame colour file is refused."""
    ds = _dcmread(path)
    if "PixelData" not in ds:
        raise CohortError("DICOM file holds no pixel data (a waveform or structured report?)", path=path)
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).strip()
    try:
        pixels = ds.pixel_array
        if photometric == "PALETTE COLOR":
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
            rgb = apply_color_lut(pixels, ds).astype(np.float32) / np.float32(2**bits - 1)
        elif getattr(ds, "SamplesPerPixel", 1) == 3:
            if photometric.startswith("YBR"):
                from pydicom.pixels import convert_color_space

                pixels = convert_color_space(pixels, photometric, "RGB")
            rgb = pixels.astype(np.float32) / np.float32(2 ** int(getattr(ds, "BitsStored", 8)) - 1)
        else:
            grey = np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)
            lo, hi = float(grey.min()), float(grey.max())
            grey = (grey - lo) / (hi - lo) if hi > lo else np.zeros_like(grey)
            rgb = np.repeat(grey[..., None], 3, axis=-1)
    except Exception as err:  # pydicom raises many types for corrupt or unsupported pixel data
        raise CohortError(f"DICOM pixel data cannot be decoded ({type(err).__name__}: {err})", path=path) from None
    if rgb.ndim != 3:
        raise CohortError(f"a colour image must be one frame (H, W, 3), got shape {rgb.shape}", path=path)
    return np.ascontiguousarray(np.moveaxis(np.clip(rgb, 0, 1), -1, 0))


def _read_dicom_image(path: Path, notes: list[str] | None = None) -> np.ndarray:
    ds = _dcmread(path)
    if "PixelData" not in ds:
        raise CohortError("DICOM file holds no pixel data (a waveform or structured report?)", path=path)
    palette = str(getattr(ds, "PhotometricInterpretation", "")).strip() == "PALETTE COLOR"
    try:
        pixels = ds.pixel_array
        arr = _palette_to_grey(pixels, ds) if palette else apply_modality_lut(pixels, ds)
    except Exception as err:  # pydicom raises many types for corrupt or unsupported pixel data
        raise CohortError(f"DICOM pixel data cannot be decoded ({type(err).__name__}: {err})", path=path) from None
    arr = np.asarray(arr, dtype=np.float32)
    if palette and notes is not None:
        _note_colour_lost(apply_color_lut(ds.pixel_array, ds), path, notes)
    if not palette and getattr(ds, "SamplesPerPixel", 1) == 3:  # colour -> luminance, channels last
        _note_colour_lost(arr[..., :3], path, notes)
        arr = arr[..., :3] @ _LUMA
    if arr.ndim not in (2, 3):
        raise CohortError(f"DICOM image must be 2D or 3D, got shape {arr.shape}", path=path)
    return arr


def _palette_to_grey(indices: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """PALETTE COLOR (common in ultrasound): stored values are indices into the colour lookup tables, not
    intensities. Look the colours up, then take their luminance scaled to [0, 1] by the tables' bit depth,
    since the model reads grey images."""
    rgb = apply_color_lut(indices, ds)  # (..., 3) in the tables' units
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    return (rgb.astype(np.float32) @ _LUMA) / np.float32(2**bits - 1)


def _dcmread(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except FileNotFoundError:
        raise CohortError("DICOM file not found", path=path) from None
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError) as err:
        raise CohortError(f"not a readable DICOM file ({err})", path=path) from None


# ---------------------------------------------------------------------------------------------- signals
def read_signal(path: str | Path) -> Signal:
    """Read a WFDB record (path to its ``.hea`` header) or a DICOM waveform ECG -> :class:`Signal` in mV.

    Channels that stand for a standard lead get its name ('MLII', 'Lead II (Einthoven)' -> 'II'); the
    others keep theirs, for the caller to report (:func:`neurofusion.data.schema.lead_issues`)."""
    path = Path(path)
    if path.suffix.lower() in _DICOM_SUFFIXES:
        return _read_dicom_waveform(path)
    if path.suffix.lower() != ".hea":
        raise CohortError("signal must be a WFDB header (.hea) or a DICOM waveform (.dcm)", path=path)
    return _read_wfdb(path)


def write_wfdb(header_path: str | Path, signal: Signal, *, fmt: str = "16") -> None:
    """Write ``signal`` as a WFDB record: ``<name>.hea`` + ``<name>.dat`` beside it.

    fmt "16": 1 uV resolution; fmt "212" (MIT packed 12-bit): 5 uV resolution, 25 % smaller.
    """
    header_path = Path(header_path)
    name = header_path.stem
    if header_path.suffix != ".hea" or not _RECORD_NAME.match(name):
        raise ValueError(f"WFDB record must be '<letters, digits, - or _>.hea', got {header_path.name!r}")
    if fmt not in _WFDB_GAIN:
        raise ValueError(f"WFDB format must be one of {sorted(_WFDB_GAIN)}, got {fmt!r}")
    gain = _WFDB_GAIN[fmt]
    digital = np.round(signal.data.astype(np.float64) * gain)
    if np.abs(digital).max() > _WFDB_LIMIT[fmt]:
        raise ValueError(f"signal exceeds the +-{_WFDB_LIMIT[fmt] / gain:.0f} mV range of WFDB format {fmt}")
    n_ch = signal.data.shape[0]
    wfdb.wrsamp(
        name,
        fs=signal.fs,
        units=[signal.units] * n_ch,
        sig_name=list(signal.channels),
        d_signal=digital.astype(np.int32).T,  # (C, T) -> (T, C)
        fmt=[fmt] * n_ch,
        adc_gain=[gain] * n_ch,
        baseline=[0] * n_ch,
        write_dir=str(header_path.parent),
    )


def _read_wfdb(header_path: Path) -> Signal:
    if not header_path.is_file():
        raise CohortError("WFDB header not found", path=header_path)
    try:
        first = header_path.read_text(encoding="ascii", errors="replace").lstrip().splitlines()[0]
    except (OSError, IndexError):
        raise CohortError("WFDB header is empty or unreadable", path=header_path) from None
    # The record line is "name nsig fs nsamp ...": WFDB silently assumes 250 Hz when fs is absent, which
    # would corrupt every time axis, so an unstated rate is an error here.
    parts = first.split()
    if len(parts) < 3 or not re.match(r"^[0-9.]+", parts[2]):
        raise CohortError(
            "WFDB header does not state the sampling rate (expected 'name nsig fs nsamp' on line 1)",
            path=header_path,
        )
    rate = re.match(r"^[0-9.]+", parts[2]).group(0)
    if not _positive(rate):
        raise CohortError(
            f"WFDB header states a sampling rate of {rate} Hz on line 1 ({first.strip()!r}); "
            "it must be the positive rate the samples were recorded at",
            path=header_path,
        )
    # The header is parsed once, by rdrecord (parsing is most of the read time); only when reading fails is
    # it parsed again on its own, to say whether the signal file was cut off.
    try:
        record = wfdb.rdrecord(str(header_path.with_suffix("")))
    except FileNotFoundError as err:
        raise CohortError(f"WFDB signal file missing: {Path(err.filename or '').name}", path=header_path) from None
    except Exception as err:  # wfdb raises bare ValueError/IndexError/struct errors for corrupt records
        _check_wfdb_length(header_path, _wfdb_header(header_path))
        raise CohortError(f"WFDB record cannot be read ({type(err).__name__}: {err})", path=header_path) from None
    _check_wfdb_length(header_path, record)
    if record.p_signal is None:
        raise CohortError("WFDB record holds no signal samples", path=header_path)
    data = record.p_signal.T  # (T, C) -> (C, T)
    scale = np.array([_to_mv(u, header_path) for u in record.units])[:, None]
    return _signal(data * scale, record.fs, record.sig_name, header_path)


def _positive(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def wfdb_data_files(header_path: str | Path) -> tuple[str, ...]:
    """The signal file names a WFDB header lists (each beside the header), or () when the header cannot be
    parsed (reading the record then reports why). Names with a folder part are left out: the reader
    refuses them."""
    try:
        header = wfdb.rdheader(str(Path(header_path).with_suffix("")))
    except Exception:  # wfdb raises bare ValueError/IndexError for malformed headers
        return ()
    names = {n for n in header.file_name or () if n and n != "~" and "/" not in n and "\\" not in n}
    return tuple(sorted(names))


def _wfdb_header(header_path: Path) -> wfdb.Record:
    try:
        return wfdb.rdheader(str(header_path.with_suffix("")))
    except Exception as err:  # wfdb raises bare ValueError/IndexError for malformed headers
        raise CohortError(f"WFDB header cannot be parsed ({type(err).__name__}: {err})", path=header_path) from None


def _check_wfdb_length(header_path: Path, header: wfdb.Record) -> None:
    """Compare each signal file's size with the samples ``header`` (a parsed header or a read record)
    declares: wfdb reports a short file only as a numpy reshape error, which does not tell the user the
    file was cut off."""
    if not header.sig_len or not header.file_name:
        return
    frame: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for i, name in enumerate(header.file_name):
        width = _WFDB_BYTES.get(str(header.fmt[i]))
        if width is None:  # compressed (FLAC) formats: the size says nothing
            return
        frame[name] = frame.get(name, 0.0) + width * (header.samps_per_frame[i] or 1)
        offsets[name] = int((header.byte_offset or [None] * len(header.file_name))[i] or 0)
    for name, width in frame.items():
        data_path = header_path.with_name(name)
        if not data_path.is_file():
            raise CohortError(f"WFDB signal file missing: {name}", path=header_path)
        found = int(max(data_path.stat().st_size - offsets[name], 0) // width)
        if found < header.sig_len:
            raise CohortError(
                f"signal file {name} is shorter than its header declares: {found} samples per channel found, "
                f"{header.sig_len} declared (was the file cut off while copying?)",
                path=header_path,
            )


def _read_dicom_waveform(path: Path) -> Signal:
    ds = _dcmread(path)
    if "WaveformSequence" not in ds or not len(ds.WaveformSequence):
        raise CohortError("DICOM file holds no waveform (expected a 12-lead ECG waveform object)", path=path)
    group = ds.WaveformSequence[0]
    try:
        data = np.asarray(ds.waveform_array(0), dtype=np.float64).T  # (T, C) -> (C, T)
    except Exception as err:  # pydicom raises many types for corrupt waveform data
        raise CohortError(f"DICOM waveform cannot be decoded ({type(err).__name__}: {err})", path=path) from None
    names, scales = [], []
    for i, channel in enumerate(group.ChannelDefinitionSequence):
        label = channel.ChannelSourceSequence[0].CodeMeaning if "ChannelSourceSequence" in channel else ""
        names.append(str(label).strip() or f"ch{i + 1}")
        unit = "uV"
        if "ChannelSensitivityUnitsSequence" in channel:
            unit = channel.ChannelSensitivityUnitsSequence[0].CodeValue
        scales.append(_to_mv(unit, path))
    fs = float(getattr(group, "SamplingFrequency", 0) or 0)
    if fs <= 0:
        raise CohortError(
            f"DICOM waveform states a sampling frequency of {fs:g} Hz (tag 003A,001A SamplingFrequency); "
            "it must be the positive rate the samples were recorded at",
            path=path,
        )
    return _signal(data * np.array(scales)[:, None], fs, names, path)


def _to_mv(unit: str, path: Path) -> float:
    try:
        return _UNIT_TO_MV[str(unit).strip().lower()]
    except KeyError:
        raise CohortError(f"signal unit {unit!r} is not a voltage unit (expected mV, uV or V)", path=path) from None


def _signal(data: np.ndarray, fs: float, channels, path: Path) -> Signal:
    """The recording with its channels under their standard lead names where they have one."""
    try:
        return Signal(data=data.astype(np.float32), fs=fs, channels=standard_channel_names(list(channels)))
    except ValueError as err:
        raise CohortError(str(err), path=path) from None


# ------------------------------------------------------------------------------------------------ notes
def read_note(path: str | Path) -> str:
    """Read a UTF-8 clinical note; an empty note or bytes that are not UTF-8 are errors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CohortError("note file not found", path=path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise CohortError(
            f"note is not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "re-save it as UTF-8",
            path=path,
        ) from None
    if not text.strip():
        raise CohortError("note is empty", path=path)
    return text


def write_note(path: str | Path, text: str) -> None:
    if not text.strip():
        raise ValueError("refusing to write an empty note")
    Path(path).write_text(text, encoding="utf-8")
