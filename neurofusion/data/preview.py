"""Render one case's declared modalities to a PNG, to check by eye that a cohort loads as intended."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from neurofusion.data.cohort import CohortReader
from neurofusion.data.modalities import ModalitySpec

_ECG_LEADS = ("I", "II", "V1", "V5")
_LAB_COLUMNS = 2
_PANEL_ORDER = ("image", "signal", "text", "tabular")


def render_case_preview(reader: CohortReader, case_id: str, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write one panel per declared modality, two per row, images and signals first (cardio: image, ECG
    (4 leads); note, labs with reference ranges). Missing = labelled so.

    An existing ``out`` (which may be one of the cohort's own images) is kept unless ``overwrite``;
    missing parent folders are created."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --force to overwrite it")
    if out.exists() and not out.is_file():
        raise FileExistsError(f"{out} exists and is not a file")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    case = reader[case_id]
    specs = sorted(reader.modalities, key=lambda m: _PANEL_ORDER.index(m.kind))  # stable: declaration order within a kind
    rows = math.ceil(len(specs) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(14, 4.5 * rows), gridspec_kw={"width_ratios": [1, 1.5]}, squeeze=False)
    fig.suptitle(f"{case.case_id}  |  label: {case.label}  |  site: {case.site or '-'}  |  split: {case.split}"
                 + ("  |  SYNTHETIC" if reader.info.get("synthetic") else ""), fontsize=12)
    values = case.values
    for ax, spec in zip(axes.flat, specs):
        value = values[spec.name]
        if value is None:
            _missing(ax, spec.name)
        elif spec.kind == "tabular":
            _tabular_panel(ax, value, spec, reader)
        else:
            _PANELS[spec.kind](ax, value, spec)
    for ax in list(axes.flat)[len(specs):]:
        ax.set_axis_off()
    fig.tight_layout()
    if case.issues:  # what the reader could not use is shown, not dropped
        fig.subplots_adjust(bottom=0.06 + 0.025 * min(len(case.issues), 4))
        shown = [textwrap.shorten(issue, 170) for issue in case.issues[:4]]
        fig.text(0.01, 0.01, "\n".join(shown), fontsize=7.5, color="firebrick", va="bottom")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, format="png")
    plt.close(fig)
    return out


def _missing(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"{what}: missing", ha="center", va="center", fontsize=14, color="0.4")
    ax.set_axis_off()


def _image_panel(ax, image: np.ndarray, spec: ModalitySpec) -> None:
    if spec.colour and image.ndim == 3 and image.shape[0] == 3:
        ax.imshow(np.moveaxis(image, 0, -1).clip(0, 1))  # (3, H, W) -> (H, W, 3)
        image = image[0]
    else:
        image = image if image.ndim == 2 else image[image.shape[0] // 2]
        ax.imshow(image, cmap="gray")
    ax.set_title(f"{spec.name} {image.shape[1]}x{image.shape[0]}")
    ax.set_axis_off()


def _signal_panel(ax, signal, spec: ModalitySpec) -> None:
    t = np.arange(signal.n_samples) / signal.fs
    shown = [c for c in _ECG_LEADS if c in signal.channels] or list(signal.channels[:4])
    for k, lead in enumerate(shown):
        ax.plot(t, signal.data[signal.channels.index(lead)] - 3 * k, lw=0.6, color="k")
        ax.text(-0.2, -3 * k, lead, ha="right", va="center")
    ax.set_title(f"{spec.name}: {len(signal.channels)} channels, {signal.fs:g} Hz, {signal.duration_s:g} s "
                 f"({signal.units}; {len(shown)} shown, 3 {signal.units} apart)")
    ax.set_xlabel("seconds")
    ax.set_yticks([])


def _note_panel(ax, note: str, spec: ModalitySpec) -> None:
    words = len(note.split())
    wrapped = "\n".join(textwrap.fill(line, 70) for line in note.splitlines() if line.strip())
    lines = wrapped.splitlines()
    shown = "\n".join(lines[:38]) + ("\n[...]" if len(lines) > 38 else "")
    ax.text(0, 1, shown, va="top", ha="left", family="monospace", fontsize=6.5, transform=ax.transAxes)
    ax.set_title(f"{spec.name}: {words} words")
    ax.set_axis_off()


def _tabular_panel(ax, values: dict, spec: ModalitySpec, reader: CohortReader) -> None:
    cells = []
    for name, value in values.items():
        feature = reader.features[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            shown = "not measured"
        elif isinstance(value, float):
            shown = f"{value:g} {feature.unit}".strip()
        else:
            shown = str(value)
        flag = ""
        if isinstance(value, float) and not math.isnan(value):
            if ((feature.ref_high is not None and value > feature.ref_high)
                    or (feature.ref_low is not None and value < feature.ref_low)):
                flag = "  *"
        ref = f"  (ref {feature.reference_range})" if feature.reference_range else ""
        cells.append(f"{name}: {shown}{flag}{ref}")
    half = math.ceil(len(cells) / _LAB_COLUMNS)
    for col in range(_LAB_COLUMNS):
        block = "\n".join(cells[col * half:(col + 1) * half])
        ax.text(col / _LAB_COLUMNS, 1, block, va="top", ha="left", family="monospace", fontsize=7.5,
                transform=ax.transAxes)
    ax.set_title(f"{spec.name} (* outside the reference range)")
    ax.set_axis_off()


_PANELS = {"image": _image_panel, "signal": _signal_panel, "text": _note_panel}
