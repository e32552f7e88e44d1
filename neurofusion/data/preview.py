"""Render one case's four modalities to a PNG, to check by eye that a cohort loads as intended."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from neurofusion.data.cohort import CohortReader
from neurofusion.data.schema import Case

_ECG_LEADS = ("I", "II", "V1", "V5")
_LAB_COLUMNS = 2


def render_case_preview(reader: CohortReader, case_id: str, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write a 2x2 figure: image, ECG (4 leads), note, labs with reference ranges. Missing = labelled so.

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
    fig, axes = plt.subplots(2, 2, figsize=(14, 9), gridspec_kw={"width_ratios": [1, 1.5]})
    fig.suptitle(f"{case.case_id}  |  label: {case.label}  |  site: {case.site or '-'}  |  split: {case.split}"
                 + ("  |  SYNTHETIC" if reader.info.get("synthetic") else ""), fontsize=12)
    _image_panel(axes[0, 0], case)
    _signal_panel(axes[0, 1], case)
    _note_panel(axes[1, 0], case)
    _tabular_panel(axes[1, 1], case, reader)
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


def _image_panel(ax, case: Case) -> None:
    if case.image is None:
        return _missing(ax, "image")
    image = case.image if case.image.ndim == 2 else case.image[case.image.shape[0] // 2]
    ax.imshow(image, cmap="gray")
    ax.set_title(f"image {image.shape[1]}x{image.shape[0]}")
    ax.set_axis_off()


def _signal_panel(ax, case: Case) -> None:
    if case.signal is None:
        return _missing(ax, "signal")
    signal = case.signal
    t = np.arange(signal.n_samples) / signal.fs
    shown = [c for c in _ECG_LEADS if c in signal.channels] or list(signal.channels[:4])
    for k, lead in enumerate(shown):
        ax.plot(t, signal.data[signal.channels.index(lead)] - 3 * k, lw=0.6, color="k")
        ax.text(-0.2, -3 * k, lead, ha="right", va="center")
    ax.set_title(f"signal: {len(signal.channels)} channels, {signal.fs:g} Hz, {signal.duration_s:g} s "
                 f"({signal.units}; {len(shown)} shown, 3 {signal.units} apart)")
    ax.set_xlabel("seconds")
    ax.set_yticks([])


def _note_panel(ax, case: Case) -> None:
    if case.note is None:
        return _missing(ax, "text")
    words = len(case.note.split())
    wrapped = "\n".join(textwrap.fill(line, 70) for line in case.note.splitlines() if line.strip())
    lines = wrapped.splitlines()
    shown = "\n".join(lines[:38]) + ("\n[...]" if len(lines) > 38 else "")
    ax.text(0, 1, shown, va="top", ha="left", family="monospace", fontsize=6.5, transform=ax.transAxes)
    ax.set_title(f"text: {words} words")
    ax.set_axis_off()


def _tabular_panel(ax, case: Case, reader: CohortReader) -> None:
    if case.tabular is None:
        return _missing(ax, "tabular")
    cells = []
    for name, value in case.tabular.items():
        spec = reader.features[name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            shown = "not measured"
        elif isinstance(value, float):
            shown = f"{value:g} {spec.unit}".strip()
        else:
            shown = str(value)
        flag = ""
        if isinstance(value, float) and not math.isnan(value):
            if (spec.ref_high is not None and value > spec.ref_high) or (spec.ref_low is not None and value < spec.ref_low):
                flag = "  *"
        ref = f"  (ref {spec.reference_range})" if spec.reference_range else ""
        cells.append(f"{name}: {shown}{flag}{ref}")
    half = math.ceil(len(cells) / _LAB_COLUMNS)
    for col in range(_LAB_COLUMNS):
        block = "\n".join(cells[col * half:(col + 1) * half])
        ax.text(col / _LAB_COLUMNS, 1, block, va="top", ha="left", family="monospace", fontsize=7.5,
                transform=ax.transAxes)
    ax.set_title("tabular (* outside the reference range)")
    ax.set_axis_off()
