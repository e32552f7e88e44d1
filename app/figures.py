"""Figure builders for the dashboard: pure functions from explain/ results to plotly figures (and, for the
note, to HTML), so every page draws a result the same way and each can be tested without a browser."""

from __future__ import annotations

import html
import math
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.ndimage import gaussian_filter

from neurofusion.data.schema import MODALITIES, STANDARD_LEADS

if TYPE_CHECKING:
    from explain.signal import SignalExplanation
    from explain.text import Span

MODALITY_LABELS: dict[str, str] = {"image": "Echo image", "text": "Clinical note", "signal": "ECG", "tabular": "Labs"}
# one word each, for the narrow columns of the case page's first screen
MODALITY_SHORT: dict[str, str] = {"image": "Echo", "text": "Note", "signal": "ECG", "tabular": "Labs"}
MODALITY_COLORS: dict[str, str] = {"image": "#1f77b4", "text": "#2ca02c", "signal": "#ff7f0e", "tabular": "#9467bd"}
METHOD_LABELS: dict[str, str] = {"shapley": "Shapley", "leave_one_out": "Leave-one-out", "attention": "Attention"}
METHOD_COLORS: dict[str, str] = {"shapley": "#3b6ea8", "leave_one_out": "#0e7490", "attention": "#d97706"}

# Blue = low / against the class, white = middle, red = high / for the class (the paper's scale).
DIVERGING = "RdBu_r"
_RED, _BLUE = (178, 24, 43), (33, 102, 172)
# Attention weights (0..1): white at 0, darkening with the weight.
ATTENTION_SCALE = "Blues"
_ATTENTION_COLORBAR = dict(title=dict(text="Attention<br>weight (0–1)", side="top"), thickness=10,
                           tickvals=[0, 0.25, 0.5, 0.75, 1], ticktext=["0", "0.25", "0.5", "0.75", "1"])
# Overlays fade to transparent where the map is near zero, so the echo stays visible underneath.
_SIGNED_OVERLAY = [[0.0, "rgba(33,102,172,1)"], [0.5, "rgba(247,247,247,0)"], [1.0, "rgba(178,24,43,1)"]]
_UNSIGNED_OVERLAY = [[0.0, "rgba(254,217,118,0)"], [0.5, "rgba(253,141,60,0.7)"], [1.0, "rgba(189,0,38,1)"]]
# mid-tone colours: bars and marks stay visible on Streamlit's light and dark themes alike
_PREDICTION_COLOR, _COMPARE_COLOR, _NEUTRAL, _ALERT = "#3b6ea8", "#d97706", "#64748b", "#dc2626"
_TITLE_TOP = 72  # px above the plot: the toolbar's band (about 30 px), then the title
_NOTE_MAX_ALPHA = 0.8  # the strongest word keeps its text readable
_ACRONYMS = {"bmi", "bnp", "bp", "ldl", "hdl", "tsh", "crp", "egfr", "hba1c", "nt", "ecg"}


# ------------------------------------------------------------------------------------------------ helpers
def pretty(name: str) -> str:
    """'coronary_artery_disease' -> 'Coronary artery disease'."""
    return name.replace("_", " ").capitalize()


def explained_label(classes: Sequence[str], target: int, contrast: int | None = None) -> str:
    """The class an explanation is for, as every title and legend names it: 'Heart failure', or
    'Heart failure − Normal' for a contrast (``CaseExplanation.target`` and ``.contrast``)."""
    for index in (target, contrast):
        if index is not None and not 0 <= index < len(classes):
            raise ValueError(f"class index {index} is not one of the {len(classes)} classes")
    name = pretty(classes[target])
    return name if contrast is None else f"{name} − {pretty(classes[contrast])}"


def _check_explained(explained: str | None) -> str:
    if not explained:
        raise ValueError("explained must name the class the attributions are for (explained_label)")
    return explained


def finish(fig: go.Figure, title: str = "", height: int | None = None, **layout: Any) -> go.Figure:
    """The look every figure shares: white template, small margins, a left-aligned title sitting just above
    the plot, under the band where plotly draws its toolbar (so the toolbar never covers the title)."""
    margin = dict(l=10, r=10, t=_TITLE_TOP if title else 28, b=10)
    margin.update(layout.pop("margin", {}))
    fig.update_layout(template="plotly_white", height=height, margin=margin, **layout)
    if title:
        fig.update_layout(title=dict(text=title, x=0, xanchor="left", y=1, yref="paper", yanchor="bottom",
                                     pad=dict(b=14), font=dict(size=14)))
    return fig


def _as_float(value: Any) -> float:
    """A score that may be None (missing) -> float, NaN for missing."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scores must be numbers or None, got {value!r}") from None


def _none_for_nan(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


def _cell_text(matrix: np.ndarray, fmt: str = ".2f") -> list[list[str]]:
    return [["" if math.isnan(v) else format(v, fmt) for v in row] for row in matrix]


def _check_attention(matrix: np.ndarray, name: str = "attention matrix", size: int = len(MODALITIES)) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (size, size):
        raise ValueError(f"{name} must be ({size}, {size}) (query x key modality), got {matrix.shape}")
    return matrix


def _modality_titles(modalities: Mapping[str, str] | None, compact: bool) -> tuple[list[str], list[str]]:
    """(names, axis labels) of the modalities a figure draws: ``modalities`` {name: title} in declaration
    order (a declared set, e.g. the cancer task's), or cardio's four (one-word labels when ``compact``)."""
    if modalities is None:
        return list(MODALITIES), [(MODALITY_SHORT if compact else MODALITY_LABELS)[m] for m in MODALITIES]
    if not modalities:
        raise ValueError("modalities must name at least one modality")
    return list(modalities), [str(title) or name for name, title in modalities.items()]


def _attention_trace(matrix: np.ndarray, labels: list[str], **kwargs: Any) -> go.Heatmap:
    # weights lie in 0..1 and every value is 'attends this much': a sequential scale from 0, never a diverging
    # one centred at 0.5 (which reads as 'for' / 'against')
    return go.Heatmap(z=matrix, x=labels, y=labels, text=_cell_text(matrix), texttemplate="%{text}",
                      colorscale=ATTENTION_SCALE, zmin=0, zmax=1, xgap=1, ygap=1,
                      hovertemplate="%{y} → %{x}: %{z:.3f}<extra></extra>", **kwargs)


def _symmetric_limit(values: np.ndarray) -> float:
    """|max| of the finite values, 1 when there are none or all are zero (keeps a colour range valid)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _robust_limit(values: np.ndarray, percentile: float = 99.0) -> float:
    """The ``percentile`` of |values| (finite ones): the colour range of an attribution map, so that a few
    extreme pixels or samples do not wash out everything else. Falls back to the max, then to 1."""
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 1.0
    limit = float(np.percentile(finite, percentile))
    return limit if limit > 0 else _symmetric_limit(finite)


def _plain_number(value: float, limit: float) -> str:
    """A tick in plain decimals with as many places as ``limit``'s magnitude needs, a true minus sign:
    0.00012 -> '0.00012', 2 -> '2.0' (plotly would write '120µ' or '2')."""
    decimals = max(0, 1 - math.floor(math.log10(limit))) if limit > 0 else 1
    return f"{value:.{decimals}f}".replace("-", "−")


def _signed_ticks(limit: float, values: np.ndarray) -> dict:
    """Colour-bar ticks at −limit, −limit/2, 0, +limit/2, +limit written out; the ends read '≤' / '≥' when
    values beyond them were clipped to the end colours."""
    vals = [-limit, -limit / 2, 0.0, limit / 2, limit]
    text = [_plain_number(v, limit) for v in vals]
    text[2] = "0"
    finite = np.abs(values[np.isfinite(values)])
    if finite.size and finite.max() > limit * (1 + 1e-9):
        text[0], text[-1] = "≤ " + text[0], "≥ +" + text[-1]
    else:
        text[-1] = "+" + text[-1]
    text[3] = "+" + text[3]
    return dict(tickmode="array", tickvals=vals, ticktext=text, exponentformat="none")


# --------------------------------------------------------------------------------------- case figures
def probability_bars(classes: Sequence[str], probabilities: np.ndarray, label: str | None = None,
                     compare: np.ndarray | None = None, compare_name: str = "ablated") -> go.Figure:
    """Predicted probability per class (C,), the true class's tick in bold with '(true)'. A label that is
    not one of ``classes`` (an unlabelled case) is not marked. ``compare`` (C,) adds a second bar per class."""
    p = np.asarray(probabilities, dtype=float)
    if p.ndim != 1 or len(p) != len(classes):
        raise ValueError(f"probabilities must be ({len(classes)},) for {len(classes)} classes, got {p.shape}")
    names = [f"<b>{pretty(c)} (true)</b>" if c == label else pretty(c) for c in classes]
    fig = go.Figure(_probability_trace(p, names, "prediction", _PREDICTION_COLOR))
    if compare is not None:
        q = np.asarray(compare, dtype=float)
        if q.shape != p.shape:
            raise ValueError(f"compare must have the shape of probabilities {p.shape}, got {q.shape}")
        fig.add_trace(_probability_trace(q, names, compare_name, _COMPARE_COLOR))
    fig.update_xaxes(range=[0, 1.15], tickformat=".0%", title="Probability")
    fig.update_yaxes(autorange="reversed", automargin=True)
    rows = len(classes) * (2 if compare is not None else 1)
    return finish(fig, height=70 + 26 * rows, barmode="group", showlegend=compare is not None,
                   legend=dict(orientation="h", y=-0.25))


def probability_html(classes: Sequence[str], probabilities: np.ndarray, label: str | None = None,
                     compare: np.ndarray | None = None, compare_name: str = "ablated") -> str:
    """Per class, the predicted probability (C,) as a thin bar and its value, the true class in bold with
    '(true)'; with ``compare`` (C,), a second bar per class, the value after the change and the change in
    points. Plain HTML rather than a chart: it is small enough for the first screen and is redrawn on every
    slider step, where a plotly chart costs the browser a few hundred ms per redraw and this a few."""
    p = np.asarray(probabilities, dtype=float)
    q = p if compare is None else np.asarray(compare, dtype=float)
    if p.shape != (len(classes),) or q.shape != p.shape:
        raise ValueError(f"probabilities and compare must both be ({len(classes)},) for {len(classes)} classes, "
                         f"got {p.shape} and {q.shape}")
    if not all(np.isfinite(v).all() and (v >= 0).all() and (v <= 1).all() for v in (p, q)):
        raise ValueError("probabilities must be finite numbers between 0 and 1")
    series = [(_PREDICTION_COLOR, "prediction")] + ([] if compare is None else [(_COMPARE_COLOR, compare_name)])
    rows = []
    for c, a, b in zip(classes, p, q):
        name = html.escape(pretty(c)) + (" (true)" if c == label else "")
        name = f"<b>{name}</b>" if c == label else name
        bars = "".join(f'<div title="{html.escape(title)}: {v:.1%}" style="height: 7px; margin: 1px 0; '
                       f'width: {100 * v:.1f}%; background: {color}; border-radius: 2px"></div>'
                       for v, (color, title) in zip((a, b), series))
        value = (f"{a:.1%}" if compare is None
                 else f'{a:.1%} → <span class="after">{b:.1%}</span> ({100 * (b - a):+.1f})')
        rows.append(f'<tr data-class="{html.escape(c)}"><td style="padding: 1px 8px 1px 0; white-space: nowrap">'
                    f'{name}</td><td style="width: 50%; padding: 1px 0">{bars}</td><td style="padding: 1px 0 1px '
                    f'8px; text-align: right; white-space: nowrap" class="value">{value}</td></tr>')
    key = "" if compare is None else (
        f'<div style="font-size: 0.85em"><span style="color: {_PREDICTION_COLOR}">■</span> prediction · '
        f'<span style="color: {_COMPARE_COLOR}">■</span> {html.escape(compare_name)}</div>')
    return (f'<div class="probabilities" style="font-size: 0.85em"><table style="width: 100%; border-collapse: '
            f'collapse">{"".join(rows)}</table>{key}</div>')


def _probability_trace(p: np.ndarray, names: list[str], name: str, color: str) -> go.Bar:
    return go.Bar(x=p, y=names, orientation="h", name=name, marker_color=color, text=[f"{v:.1%}" for v in p],
                  textposition="outside", cliponaxis=False, hovertemplate="%{y}: %{x:.1%}<extra>" + name + "</extra>")


def attention_heatmap(matrix: np.ndarray, present: Sequence[bool] | None = None, title: str = "",
                      compact: bool = False, modalities: Mapping[str, str] | None = None) -> go.Figure:
    """Cross-modal attention (M, M): rows = query ('attends from'), columns = key ('attends to'), colour
    range fixed to 0..1. Modalities the case lacks are labelled ' (missing)'. ``compact``: for a narrow
    column, one-word modality names (a missing one marked '*'), short axis titles and the colour bar under
    the matrix. ``modalities``: {name: title} of a declared set (default cardio's four)."""
    names, titles = _modality_titles(modalities, compact)
    matrix = _check_attention(matrix, size=len(names))
    present = [True] * len(names) if present is None else list(present)
    if len(present) != len(names):
        raise ValueError(f"present must have one flag per modality ({len(names)}), got {len(present)}")
    if compact:
        labels = [t + ("" if ok else "*") for t, ok in zip(titles, present)]
        # longer names are drawn turned, pushing the key axis title down: the colour bar goes as much lower
        extra = max(0, max(len(t) for t in labels) - 5)
        # (and, the matrix then being narrower, its title above the bar rather than beside it)
        colorbar = {**_ATTENTION_COLORBAR, "title": dict(text="weight (0–1)", side="top" if extra else "right"),
                    "orientation": "h",
                    "y": -0.3 - 0.05 * extra, "yanchor": "top", "len": 1, "thickness": 8,
                    "tickvals": [0, 0.5, 1], "ticktext": ["0", "0.5", "1"]}
    else:
        labels = [t + ("" if ok else " (missing)") for t, ok in zip(titles, present)]
        colorbar = _ATTENTION_COLORBAR
    fig = go.Figure(_attention_trace(matrix, labels, colorbar=colorbar))
    fig.update_xaxes(title="to (key)" if compact else "attends to (key)", automargin=True)
    fig.update_yaxes(title="from (query)" if compact else "attends from (query)", autorange="reversed",
                     automargin=True)
    if not compact:
        return finish(fig, title, height=380)
    return finish(fig, title, height=340 + 18 * extra, margin=dict(b=70 + 18 * extra))


def importance_bars(scores: Mapping[str, Mapping[str, float | None]], explained: str,
                    compact: bool = False, modalities: Mapping[str, str] | None = None) -> go.Figure:
    """Modality importance for the class ``explained`` names, method -> modality -> score (None or NaN: the
    case lacks the modality): bars grouped by modality, one colour per method; a modality no method scores
    is annotated 'missing'. Shapley and leave-one-out (changes in probability, signed) and attention (weights
    0..1, the same for every class) are different quantities: each kind gets its own panel and y axis with
    its units, never one shared axis. ``modalities``: {name: title} of a declared set (default cardio's)."""
    _check_explained(explained)
    if not scores:
        raise ValueError("scores must hold at least one method")
    order, x = _modality_titles(modalities, compact)
    table = {}
    for method, values in scores.items():
        unknown = [m for m in values if m not in order]
        if unknown:
            raise ValueError(f"unknown modality {unknown[0]!r}; expected one of {tuple(order)}")
        table[method] = [_as_float(values.get(m)) for m in order]
    names = {**METHOD_LABELS, "attention": "Attention (any class)"}
    panels = [kind for kind in ("probability", "attention")
              if any((method == "attention") == (kind == "attention") for method in table)]
    fig = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.12,
                        row_heights=[0.62, 0.38][:len(panels)] if len(panels) == 2 else None)
    for method, values in table.items():
        row = panels.index("attention" if method == "attention" else "probability") + 1
        unit = "weight" if method == "attention" else "Δp"
        fig.add_trace(go.Bar(x=x, y=_none_for_nan(values), name=names.get(method, pretty(method)),
                             marker_color=METHOD_COLORS.get(method),
                             hovertemplate="%{x}: " + unit + " %{y:.3f}<extra>%{fullData.name}</extra>"),
                      row=row, col=1)
    for k, label in enumerate(x):
        if all(math.isnan(values[k]) for values in table.values()):
            fig.add_annotation(x=label, y=0, yshift=12, text="missing", showarrow=False, font=dict(color=_NEUTRAL),
                               row=1, col=1)
    if "probability" in panels:
        fig.update_yaxes(title_text="Δ probability" if compact else f"Change in p({explained})<br>(probability, −1…+1)",
                         zeroline=True,
                         zerolinecolor="#94a3b8", tickformat="+.2f", automargin=True,
                         row=panels.index("probability") + 1, col=1)
    if "attention" in panels:
        fig.update_yaxes(title_text="Attention (0–1)" if compact else "Attention weight<br>(0–1, any class)",
                         range=[0, 1], dtick=0.5 if compact else 0.25,
                         automargin=True, row=panels.index("attention") + 1, col=1)
    fig.update_xaxes(automargin=True)
    return finish(fig, f"Modality importance for {explained}", height=(130 + 130 * len(panels)) if compact
                   else 200 + 170 * len(panels), barmode="group",
                   legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
                   margin=dict(b=50))


SALIENCY_METHOD_LABELS: dict[str, str] = {"integrated_gradients": "Integrated Gradients", "grad_cam": "Grad-CAM",
                                           "occlusion": "Occlusion", "attention": "Encoder attention"}
SIGNED_SALIENCY = ("integrated_gradients", "occlusion")  # the others are magnitudes (>= 0)


def saliency_method_label(method: str) -> str:
    """'grad_cam' -> 'Grad-CAM': how titles and menus name an image saliency method."""
    return SALIENCY_METHOD_LABELS.get(method, pretty(method))


def image_overlay(image: np.ndarray, saliency: np.ndarray | None = None, opacity: float = 0.45,
                  signed: bool | None = None, title: str = "", explained: str | None = None,
                  method: str | None = None, smooth: float = 0.0) -> go.Figure:
    """A greyscale image (H, W) in image orientation with a saliency map (H, W) on top: signed maps on a
    diverging scale symmetric around 0, unsigned ones (Grad-CAM, attention) on a sequential scale from 0.
    The colour range is the 99th percentile of |map| (a few outlier pixels would otherwise set it and leave
    the rest invisible); larger values take the end colour. ``smooth`` > 0 blurs the map with a Gaussian of
    that many pixels first. A map needs ``explained``, the class it is for (named in its colour bar).
    ``method`` (an explain.image method name) decides ``signed`` when that is None and, without a
    ``title``, titles the figure in words ('Grad-CAM for Heart failure')."""
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W), got {image.shape}")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    if not smooth >= 0:
        raise ValueError(f"smooth must be a non-negative number of pixels, got {smooth}")
    if signed is None:
        signed = method is None or method in SIGNED_SALIENCY
    # float32 arrays: plotly ships numpy arrays base64-encoded, so the page carries half the bytes
    fig = go.Figure(go.Heatmap(z=image.astype(np.float32), colorscale="gray", showscale=False, name="image",
                               hovertemplate="(%{x}, %{y}): %{z:.3g}<extra>image</extra>"))
    if saliency is not None:
        saliency = np.asarray(saliency, dtype=float)
        if saliency.shape != image.shape:
            raise ValueError(f"saliency must have the image's shape {image.shape}, got {saliency.shape}")
        explained = _check_explained(explained)
        if smooth > 0:
            saliency = gaussian_filter(np.nan_to_num(saliency), sigma=smooth)
        fig.add_trace(saliency_trace(saliency, opacity, signed, explained))
        if not title and method is not None:
            title = f"{saliency_method_label(method)} for {explained}"
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", scaleratio=1, constrain="domain")
    return finish(fig, title, height=440)


def saliency_trace(saliency: np.ndarray, opacity: float, signed: bool, explained: str,
                   units: str = "logit units") -> go.Heatmap:
    """The (H, W) saliency as a translucent heatmap over an image: signed on a diverging scale clipped at the
    99th percentile of |saliency| (units in the colour bar), or an unsigned weight from 0."""
    limit = _robust_limit(saliency)
    if signed:
        zmin, zmax, scale = -limit, limit, _SIGNED_OVERLAY
        ticks = _signed_ticks(limit, saliency)
        ticks["ticktext"][0] += " lowers"
        ticks["ticktext"][-1] += " raises"
        colorbar = dict(title=dict(text=f"Red raises,<br>blue lowers<br>{explained}<br>({units})", side="top"),
                        **ticks)
    else:
        zmin, zmax, scale = 0.0, limit, _UNSIGNED_OVERLAY
        clipped = float(np.nanmax(saliency)) > limit * (1 + 1e-9)
        colorbar = dict(title=dict(text=f"Weight for<br>{explained}<br>(0 = none)", side="top"), tickmode="array",
                        tickvals=[0, limit], ticktext=["0", ("≥ " if clipped else "") + _plain_number(limit, limit)],
                        exponentformat="none")
    return go.Heatmap(z=saliency.astype(np.float32), colorscale=scale, zmin=zmin, zmax=zmax, opacity=opacity,
                      name="saliency", colorbar=dict(thickness=10, **colorbar),
                      hovertemplate="(%{x}, %{y}): %{z:.3g}<extra>saliency</extra>")


# ------------------------------------------------------------------------------------------------- ECG
# Paper ECG runs at 25 mm/s and 10 mm/mV: a 1 mm box is 0.04 s x 0.1 mV, a 5 mm box 0.2 s x 0.5 mV.
ECG_GRID = {"minor_s": 0.04, "major_s": 0.2, "minor_mv": 0.1, "major_mv": 0.5}
ECG_CALIBRATION = {"mv": 1.0, "s": 0.2}  # the standard 1 mV, 0.2 s pulse at the start of every row
ECG_PAPER, _ECG_INK = "#ffffff", "#111827"
_ECG_LEFT_S = -0.3  # room left of time 0 for the calibration pulse
_ECG_PX_PER_MV = 36  # row height: about square 5 mm boxes on a 10 s strip about 900 px wide
_ECG_STRIP_MV = 0.5  # room under the lowest excursion for the attribution strip
_GRID_MAJOR, _GRID_MINOR = "rgba(220,38,38,0.55)", "rgba(220,38,38,0.15)"
_ATTENTION_COLOR = "#d97706"


# The standard 12-lead printout: three rows of four 2.5 s columns, each column the next 2.5 s of the recording
# (so a beat lines up down a column), then the whole 10 s of lead II as a rhythm strip.
ECG_3X4: tuple[tuple[str, ...], ...] = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
ECG_RHYTHM_LEAD = "II"
ECG_RHYTHM_NAME = "II rhythm"  # the strip's trace name: not the lead itself, so each lead names one cell
ECG_COLUMN_S = 2.5
ECG_LAYOUTS = ("3x4", "stacked")


def ecg_layout(channels: Sequence[str], duration_s: float, leads: Sequence[str] | None = None) -> str:
    """The layout ecg_figure draws by default: '3x4' for a 10 s recording with the 12 standard leads under
    their standard names (and no lead subset asked for), 'stacked' otherwise."""
    ten_seconds = abs(duration_s - 4 * ECG_COLUMN_S) <= 0.05
    return "3x4" if leads is None and ten_seconds and set(STANDARD_LEADS) <= set(channels) else "stacked"


def ecg_figure(data: np.ndarray, fs: float, channels: Sequence[str], explanation: SignalExplanation | None = None,
               leads: Sequence[str] | None = None, explained: str | None = None,
               layout: str | None = None) -> go.Figure:
    """The recording (C, T) in mV as an ECG is read on paper, on the standard grid (0.04 s / 0.2 s by 0.1 mV /
    0.5 mV) with one mV scale common to every lead (so low voltage looks low), a 1 mV x 0.2 s calibration pulse
    at the start of every row and horizontal lead labels. ``layout``: '3x4' (the standard printout: rows I aVR
    V1 V4 / II aVL V2 V5 / III aVF V3 V6, each column 2.5 s of its lead at its own time, then a 10 s lead II
    rhythm strip; needs the 12 standard leads and 10 s) or 'stacked' (one 10 s row per lead: ``leads``, default
    every channel in the 12-lead order); default ecg_layout(). Each drawn lead is a line trace named by the lead
    (the rhythm strip: ECG_RHYTHM_NAME). With a SignalExplanation: the signed attribution to ``explained`` as a
    coloured strip under each trace (logit units, colour bar with plain ticks), the top segments as numbered
    boxes at their times, and the encoder's temporal attention as its own thin row at the bottom, with a legend."""
    data = np.asarray(data, dtype=float)
    if data.ndim != 2 or data.shape[0] != len(channels):
        raise ValueError(f"data must be (channels, samples) with {len(channels)} channels, got {data.shape}")
    if not fs > 0:
        raise ValueError(f"fs must be a positive number of Hz, got {fs}")
    channels = list(channels)
    duration = data.shape[1] / fs
    layout = ecg_layout(channels, duration, leads) if layout is None else layout
    if layout == "3x4":
        rows = _rows_3x4(channels, duration, fs, leads)
    elif layout == "stacked":
        rows = [[(lead, lead, 0, data.shape[1])] for lead in _lead_order(channels, leads)]
    else:
        raise ValueError(f"layout must be one of {ECG_LAYOUTS}, got {layout!r}")
    if explanation is not None:
        _check_signal_explanation(explanation)
        _check_explained(explained)
    drawn = np.concatenate([data[channels.index(lead), i0:i1] for row in rows for _, lead, i0, i1 in row])
    low, high = _ecg_range(drawn[None])
    if explanation is not None:
        low -= _ECG_STRIP_MV
    lead_px = (high - low) * _ECG_PX_PER_MV
    heights = [lead_px] * len(rows) + ([70.0] if explanation is not None else [])
    fig = make_subplots(rows=len(heights), cols=1, shared_xaxes=True, vertical_spacing=4 / sum(heights),
                        row_heights=heights)
    for r, cells in enumerate(rows, start=1):
        for name, lead, i0, i1 in cells:
            start, end = i0 / fs, i1 / fs
            if explanation is not None and lead in explanation.leads:
                fig.add_trace(_attribution_strip(explanation, lead, low + _ECG_STRIP_MV / 2, 0.6 * _ECG_STRIP_MV,
                                                 start, end, closed=i1 == data.shape[1]), row=r, col=1)
            fig.add_trace(go.Scatter(x0=start, dx=1 / fs, y=data[channels.index(lead), i0:i1].astype(np.float32),
                                     mode="lines", name=name, line=dict(color="#111827", width=1), showlegend=False,
                                     hovertemplate="%{x:.3f} s: %{y:.2f} mV<extra>" + name + "</extra>"), row=r, col=1)
            if layout == "3x4":
                label = f"<b>{lead}</b>" + (" (rhythm strip)" if name == ECG_RHYTHM_NAME else "")
                fig.add_annotation(text=label, textangle=0, showarrow=False, xref="x", yref="y domain",
                                   x=start + (0.04 if i0 else 0.02), y=1, xanchor="left", yanchor="top",
                                   font=dict(size=12, color="#111827"), bgcolor="rgba(255,255,255,0.75)",
                                   row=r, col=1)
                if i0:  # the printout's tick between two columns
                    fig.add_shape(type="line", x0=start, x1=start, y0=0.3, y1=0.7, xref="x", yref="y domain",
                                  line=dict(color="#111827", width=1.5), name="column boundary", row=r, col=1)
        fig.add_trace(_calibration_pulse(), row=r, col=1)
        fig.update_yaxes(range=[low, high], dtick=ECG_GRID["major_mv"], tick0=0, showticklabels=False,
                         zeroline=False, showgrid=True, gridcolor=_GRID_MAJOR, fixedrange=True,
                         minor=dict(dtick=ECG_GRID["minor_mv"], showgrid=True, gridcolor=_GRID_MINOR),
                         row=r, col=1)
        if layout == "stacked":
            fig.add_annotation(text=f"<b>{cells[0][1]}</b>", textangle=0, showarrow=False, xref="x domain",
                               yref="y domain", x=0, y=0.5, xanchor="right", xshift=-4, font=dict(size=12),
                               row=r, col=1)
    fig.update_xaxes(range=[_ECG_LEFT_S, duration], dtick=ECG_GRID["major_s"], tick0=0, showgrid=True,
                     gridcolor=_GRID_MAJOR, zeroline=False, showticklabels=False,
                     minor=dict(dtick=ECG_GRID["minor_s"], showgrid=True, gridcolor=_GRID_MINOR))
    # the bottom row carries the time labels, one per second (every fifth 0.2 s line)
    fig.update_xaxes(showticklabels=True, ticklabelstep=5, title_text="Time (s)", row=len(heights), col=1)
    if explanation is not None:
        _attention_row(fig, explanation, duration, row=len(heights))
        _add_segments(fig, explanation.segments, bottom=fig.layout[_axis_name("y", len(rows))].domain[0])
        fig.update_layout(coloraxis=_attribution_coloraxis(np.asarray(explanation.attributions, dtype=float),
                                                           explained))
    scale = "25 mm/s · 10 mm/mV · small box 0.04 s × 0.1 mV, large box 0.2 s × 0.5 mV · pulse: 1 mV"
    if layout == "3x4":
        scale = "3 × 4 leads, 2.5 s each, + 10 s lead II rhythm strip · " + scale
    fig.add_annotation(text=scale, showarrow=False, xref="paper", yref="paper", x=1, y=1, xanchor="right",
                       yanchor="bottom", font=dict(size=10, color=_NEUTRAL))
    title = f"ECG: attribution to {explained}" if explanation is not None else "ECG"
    # ECG paper is white on every theme: the black trace and red grid are read on it, as on a printout
    fig = finish(fig, title, height=int(sum(heights)) + 130, showlegend=explanation is not None,
                  legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
                  margin=dict(l=44, r=10, t=70, b=90), paper_bgcolor=ECG_PAPER, plot_bgcolor=ECG_PAPER,
                  font=dict(color=_ECG_INK))
    # the theme's text colour would be light on a dark theme: every text on the paper is set to dark ink
    fig.update_layout(title_font_color=_ECG_INK, legend_font_color=_ECG_INK)
    if explanation is not None:
        fig.update_layout(coloraxis_colorbar=dict(title_font_color=_ECG_INK, tickfont_color=_ECG_INK))
    return fig


def _rows_3x4(channels: list[str], duration: float, fs: float,
              leads: Sequence[str] | None) -> list[list[tuple[str, str, int, int]]]:
    """The 3x4 + rhythm-strip rows as (trace name, lead, first sample, end sample) cells."""
    if leads is not None:
        raise ValueError("the 3x4 layout shows all 12 standard leads; use layout='stacked' to draw a subset")
    missing = [lead for lead in STANDARD_LEADS if lead not in channels]
    if missing:
        raise ValueError(f"the 3x4 layout needs the 12 standard leads; the recording lacks {missing} "
                         f"(channels: {channels}); use layout='stacked'")
    if abs(duration - 4 * ECG_COLUMN_S) > 0.05:
        raise ValueError(f"the 3x4 layout needs a 10 s recording, this one is {duration:.2f} s; "
                         "use layout='stacked'")
    n = int(round(duration * fs))
    bounds = [int(round(k * ECG_COLUMN_S * fs)) for k in range(4)] + [n]
    rows = [[(lead, lead, bounds[k], bounds[k + 1]) for k, lead in enumerate(row)] for row in ECG_3X4]
    return rows + [[(ECG_RHYTHM_NAME, ECG_RHYTHM_LEAD, 0, n)]]


def _axis_name(axis: str, row: int) -> str:
    return f"{axis}axis" if row == 1 else f"{axis}axis{row}"


def _lead_order(channels: list[str], leads: Sequence[str] | None) -> list[str]:
    if leads is None:
        standard = [lead for lead in STANDARD_LEADS if lead in channels]
        return standard + [c for c in channels if c not in standard]
    unknown = [lead for lead in leads if lead not in channels]
    if unknown:
        raise ValueError(f"leads {unknown} are not in the recording (channels: {channels})")
    if not leads:
        raise ValueError("leads must name at least one lead")
    return list(leads)


def _ecg_range(traces: np.ndarray) -> tuple[float, float]:
    """One mV range for every lead (L, T): the extremes of all of them, out to whole 0.5 mV boxes, never less
    than -1..+1.5 mV (room for the 1 mV pulse) so a flat or low-voltage trace is drawn small, not stretched."""
    finite = traces[np.isfinite(traces)]
    low = min(-1.0, float(finite.min())) if finite.size else -1.0
    high = max(1.5, float(finite.max())) if finite.size else 1.5
    step = ECG_GRID["major_mv"]
    return math.floor(low / step) * step, math.ceil(high / step) * step


def _calibration_pulse() -> go.Scatter:
    """The 1 mV, 0.2 s square pulse left of time 0."""
    start, width, height = _ECG_LEFT_S + 0.05, ECG_CALIBRATION["s"], ECG_CALIBRATION["mv"]
    return go.Scatter(x=[_ECG_LEFT_S, start, start, start + width, start + width, 0.0],
                      y=[0, 0, height, height, 0, 0], mode="lines", name="calibration", showlegend=False,
                      line=dict(color="#111827", width=1.5), hoverinfo="skip")


def _check_signal_explanation(explanation: SignalExplanation) -> None:
    attributions = np.asarray(explanation.attributions)
    expected = (len(explanation.leads), len(explanation.times))
    if attributions.shape != expected:
        raise ValueError(f"explanation attributions must be (leads, times) = {expected}, got {attributions.shape}")
    if len(explanation.attention) != len(explanation.attention_times):
        raise ValueError(f"explanation has {len(explanation.attention)} attention weights for "
                         f"{len(explanation.attention_times)} attention times")


def _attention_row(fig: go.Figure, explanation: SignalExplanation, duration: float, row: int) -> None:
    """The encoder's temporal attention as bars in its own row, with a dashed line at uniform attention, so
    'above the line' reads as 'attended more than average'; both in the legend."""
    times = np.asarray(explanation.attention_times, dtype=float)
    keep = times - explanation.attention_step_s / 2 < duration  # steps that cover some of the recording
    attention = np.asarray(explanation.attention, dtype=float)
    uniform = 1 / len(attention) if len(attention) else 0.0
    fig.add_trace(go.Bar(x=times[keep], y=attention[keep], width=explanation.attention_step_s,
                         marker=dict(color=_ATTENTION_COLOR, line=dict(width=0)),
                         name="Temporal attention of the ECG encoder (weights sum to 1; the same for every class)",
                         hovertemplate="%{x:.2f} s: attention %{y:.3f}<extra></extra>"), row=row, col=1)
    fig.add_trace(go.Scatter(x=[0, duration], y=[uniform, uniform], mode="lines", name=f"uniform attention (1/{len(attention)})",
                             line=dict(color=_NEUTRAL, dash="dash", width=1), hoverinfo="skip"), row=row, col=1)
    peak = float(attention[keep].max()) if keep.any() else uniform
    fig.update_yaxes(range=[0, 1.15 * max(peak, uniform, 1e-9)], showgrid=False, showticklabels=False,
                     fixedrange=True, row=row, col=1)
    fig.update_xaxes(showgrid=False, minor=dict(showgrid=False), row=row, col=1)
    fig.add_annotation(text="<b>Attn</b>", textangle=0, showarrow=False, xref="x domain", yref="y domain", x=0, y=0.5,
                       xanchor="right", xshift=-4, font=dict(size=11, color=_ATTENTION_COLOR), row=row, col=1)


def _attribution_strip(explanation: SignalExplanation, lead: str, y: float, height: float, start: float,
                       end: float, closed: bool = True) -> go.Heatmap:
    """A one-row heatmap of the signed attribution per sample under the trace, from ``start`` to ``end`` s
    (``closed``: the sample at ``end`` included; beyond the recording the model saw zero padding), one image
    for the browser to draw, where a marker per sample would be thousands of elements."""
    times = np.asarray(explanation.times, dtype=float)
    keep = (times >= start - 1e-9) & ((times <= end + 1e-9) if closed else (times < end - 1e-9))
    values = np.asarray(explanation.attributions, dtype=float)[list(explanation.leads).index(lead)]
    x0 = float(times[keep][0]) if keep.any() else start
    return go.Heatmap(z=values[keep][None].astype(np.float32), x0=x0, dx=1 / explanation.fs, y0=y,
                      dy=height, coloraxis="coloraxis", name=f"{lead} attribution",
                      hovertemplate="%{x:.3f} s: attribution %{z:.3g}<extra>" + lead + "</extra>")


def _attribution_coloraxis(values: np.ndarray, explained: str) -> dict:
    """Diverging colours clipped at the 99th percentile of |attribution| (a few extreme samples would
    otherwise wash the rest out), ticks written out in plain decimals (no '100µ')."""
    limit = _robust_limit(values)
    return dict(colorscale=DIVERGING, cmin=-limit, cmax=limit,
                colorbar=dict(title=dict(text=f"Attribution to<br>{explained}<br>(logit units)", side="top"),
                              thickness=10, len=0.45, y=1, yanchor="top", **_signed_ticks(limit, values)))


def _add_segments(fig: go.Figure, segments: Sequence[Any], bottom: float = 0.0) -> None:
    """One box per segment across every lead (from ``bottom`` of the paper up), labelled with its rank, and
    one legend entry saying what the boxes are."""
    for rank, segment in enumerate(segments, start=1):
        fig.add_shape(type="rect", xref="x", yref="paper", x0=segment.start_s, x1=segment.end_s, y0=bottom, y1=1,
                      line=dict(color="#7c3aed", width=1.5), fillcolor="rgba(124,58,237,0.06)",
                      label=dict(text=f"#{rank}", textposition="top right", font=dict(size=11, color="#7c3aed")))
    if segments:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="#1, #2, …: windows with the largest attribution",
                                 marker=dict(symbol="square-open", size=12, color="#7c3aed"), hoverinfo="skip"))


def lead_importance_bars(leads: Sequence[str], importance: np.ndarray, recorded: Sequence[bool],
                         explained: str) -> go.Figure:
    """Share of the ECG's |attribution| to ``explained`` per lead (L,); leads not recorded get no bar and a
    note."""
    _check_explained(explained)
    importance = np.asarray(importance, dtype=float)
    if importance.shape != (len(leads),) or len(recorded) != len(leads):
        raise ValueError(f"importance and recorded must have one value per lead ({len(leads)}), "
                         f"got {importance.shape} and {len(recorded)}")
    y = [float(v) if ok else None for v, ok in zip(importance, recorded)]
    fig = go.Figure(go.Bar(x=list(leads), y=y, marker_color=MODALITY_COLORS["signal"],
                           hovertemplate="%{x}: %{y:.1%}<extra></extra>"))
    for lead, ok in zip(leads, recorded):
        if not ok:
            fig.add_annotation(x=lead, y=0, yanchor="bottom", text="not recorded", textangle=-90, showarrow=False,
                               font=dict(size=10, color=_NEUTRAL))
    fig.update_yaxes(title="Share of attribution", tickformat=".0%", rangemode="tozero")
    return finish(fig, f"Lead importance for {explained}", height=280)


# ------------------------------------------------------------------------------------------------ note
def note_html(note: str, words: Sequence[Span], max_abs: float | None = None) -> str:
    """The note as HTML with each attributed word highlighted: red = evidence for the class, blue = against,
    opacity proportional to |score| / max_abs (default: the largest |score|). Every character of the note is
    kept, escaped; newlines become <br>."""
    spans = sorted(words, key=lambda w: w.start)
    _check_spans(note, spans)
    scale = max((abs(w.score) for w in spans), default=0.0) if max_abs is None else float(max_abs)
    if not scale >= 0:
        raise ValueError(f"max_abs must be a non-negative number, got {max_abs}")
    parts, position = [], 0
    for word in spans:
        parts.append(_escape(note[position:word.start]))
        parts.append(_word_html(note[word.start:word.end], float(word.score), scale))
        position = word.end
    parts.append(_escape(note[position:]))
    return '<div class="note" style="white-space: pre-wrap; line-height: 1.8">' + "".join(parts) + "</div>"


def _check_spans(note: str, spans: Sequence[Span]) -> None:
    previous_end = 0
    for word in spans:
        if not 0 <= word.start < word.end <= len(note):
            raise ValueError(f"span {word.start}:{word.end} is outside the note ({len(note)} characters)")
        if word.start < previous_end:
            raise ValueError(f"span {word.start}:{word.end} overlaps the previous span (ends at {previous_end})")
        if not math.isfinite(word.score):
            raise ValueError(f"span {word.start}:{word.end} has a non-finite score {word.score}")
        previous_end = word.end


def _escape(text: str) -> str:
    return html.escape(text).replace("\n", "<br>")


def _word_html(text: str, score: float, scale: float) -> str:
    alpha = _NOTE_MAX_ALPHA * min(abs(score) / scale, 1.0) if scale > 0 else 0.0
    r, g, b = _RED if score >= 0 else _BLUE
    return (f'<span class="attr" data-score="{score:.6g}" style="background: rgba({r},{g},{b},{alpha:.3f}); '
            f'border-radius: 3px" title="score {score:+.4g}">{_escape(text)}</span>')


def note_legend_html(max_abs: float, explained: str) -> str:
    """A small colour bar: -max_abs (blue, against ``explained``) .. 0 .. +max_abs (red, for it)."""
    _check_explained(explained)
    if not (math.isfinite(max_abs) and max_abs >= 0):
        raise ValueError(f"max_abs must be a non-negative number, got {max_abs}")
    blue, red = (f"rgba({r},{g},{b},{_NOTE_MAX_ALPHA})" for r, g, b in (_BLUE, _RED))
    bar = (f'<div style="height: 10px; border-radius: 3px; '
           f'background: linear-gradient(to right, {blue}, rgba(255,255,255,0), {red})"></div>')
    name = html.escape(explained)
    ticks = "".join(f"<span>{text}</span>" for text in (f"−{max_abs:.3g} against {name}", "0",
                                                         f"+{max_abs:.3g} for {name}"))
    return ('<div class="note-legend" style="width: 360px; font-size: 0.8em; margin-bottom: 0.5em">' + bar
            + f'<div style="display: flex; justify-content: space-between">{ticks}</div></div>')


# ------------------------------------------------------------------------------------------------ labs
_LAB_COLUMNS = ("name", "kind", "value", "unit", "reference_range", "outside_range", "measured", "score", "method")


def lab_bars(table: pd.DataFrame, explained: str, title: str = "Labs and demographics",
             units: str = "logit units") -> go.Figure:
    """Attribution to ``explained`` per lab / demographic feature (rows of explain.tabular.explain_tabular),
    in the table's order; out-of-range values in bold with an arrow, unmeasured features listed as 'not
    measured', no bar. ``title`` names the modality, ``units`` the attribution's (a survival quantity's
    attributions are in its own units)."""
    _check_explained(explained)
    missing = [c for c in _LAB_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"lab table lacks columns {missing}")
    if table.empty:
        raise ValueError("lab table has no rows")
    labels = [_lab_label(row) for row in table.to_dict(orient="records")]
    scores = [_as_float(s) if m else math.nan for s, m in zip(table["score"], table["measured"])]
    colors = [_NEUTRAL if math.isnan(s) else _rgb(_RED if s >= 0 else _BLUE) for s in scores]
    fig = go.Figure(go.Bar(x=_none_for_nan(scores), y=labels, orientation="h", marker_color=colors,
                           customdata=table["method"], hovertemplate="%{y}: %{x:.3g}<extra>%{customdata}</extra>"))
    fig.update_xaxes(title=f"Attribution ({units}; + = for {explained})", zeroline=True, zerolinecolor="#94a3b8")
    fig.update_yaxes(autorange="reversed", automargin=True)
    return finish(fig, f"{title}: attribution to {explained}", height=80 + 24 * len(labels))


def _rgb(color: tuple[int, int, int]) -> str:
    return "rgb({},{},{})".format(*color)


def _lab_label(row: Mapping[str, Any]) -> str:
    """'BNP 1558 pg/mL (ref < 100)', bold with ▲/▼ outside the range; 'BNP: not measured'."""
    name, unit = feature_name(row["name"], row["unit"] or ""), row["unit"] or ""
    if not row["measured"]:
        return f"{name}: not measured"
    value = row["value"]
    shown = value if isinstance(value, str) else _format_value(float(value)) + (f" {unit}" if unit else "")
    reference = row["reference_range"] or ""
    if unit and reference.endswith(" " + unit):
        reference = reference[:-len(unit) - 1]
    text = f"{name} {shown}" + (f" (ref {reference})" if reference else "")
    if row["outside_range"]:
        text = f"<b>{text} {_direction(value, reference)}</b>"
    return text


def feature_name(name: str, unit: str) -> str:
    """'bnp_pg_ml' (unit pg/mL) -> 'BNP', 'systolic_bp' -> 'Systolic BP'."""
    slug = re.sub(r"[^a-z0-9]+", "_", unit.lower()).strip("_")
    if slug and name.endswith("_" + slug):
        name = name[:-len(slug) - 1]
    text = " ".join(w.upper() if w in _ACRONYMS else w for w in name.split("_"))
    return text[:1].upper() + text[1:]


def _format_value(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _direction(value: Any, reference: str) -> str:
    """▲ above the reference range, ▼ below it (ranges read as '< hi', '> lo' or 'lo-hi')."""
    bounds = [float(x) for x in re.findall(r"\d+(?:\.\d+)?", reference)]
    if isinstance(value, str) or not bounds:
        return "●"
    if reference.startswith(">"):
        return "▼"
    return "▲" if float(value) > bounds[-1] else "▼"


# ---------------------------------------------------------------------------------------------- cohort
def cohort_attention_grid(by_class: Mapping[str, np.ndarray], counts: Mapping[str, int], title: str = "",
                          classes: Sequence[str] | None = None,
                          modalities: Mapping[str, str] | None = None) -> go.Figure:
    """One (M, M) mean attention heatmap per group (explain.attention.CohortAttention: a class, or a survival
    model's risk group such as 'low risk'), up to three per row, subtitled with the number of cases; one colour
    range 0..1 for all, NaN cells (no case) left blank. ``classes`` (the checkpoint's order, or the risk groups
    low to high) orders the panels; groups it lacks follow in their given order. ``modalities``: {name: title}
    of a declared set (default cardio's four)."""
    if not by_class:
        raise ValueError("by_class must hold at least one class")
    absent = [c for c in by_class if c not in counts]
    if absent:
        raise ValueError(f"counts lacks classes {absent}")
    order = _class_order(list(by_class), classes)
    names, labels = _modality_titles(modalities, compact=False)
    matrices = {c: _check_attention(by_class[c], f"attention of group {c!r}", size=len(names)) for c in order}
    cols = min(len(matrices), 3)  # wide enough for the modality names under each matrix
    rows = math.ceil(len(matrices) / cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.08, vertical_spacing=0.42 / rows,
                        subplot_titles=[f"{_wrap(pretty(c))} (n={counts[c]})" for c in matrices])
    for k, matrix in enumerate(matrices.values()):
        fig.add_trace(_attention_trace(matrix, labels, showscale=k == 0, colorbar=_ATTENTION_COLORBAR),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(autorange="reversed", automargin=True)
    fig.update_yaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=True, title_text="attends from (query)", col=1)
    fig.update_xaxes(automargin=True, tickangle=-30)
    for k in range(len(matrices)):  # the lowest panel of each column names the key axis
        if k + cols >= len(matrices):
            fig.update_xaxes(title_text="attends to (key)", row=k // cols + 1, col=k % cols + 1)
    fig.update_annotations(font=dict(size=12))
    fig = finish(fig, title, height=120 + 360 * rows, margin=dict(t=_TITLE_TOP + 36 if title else 64))
    if title:  # above the panels' own (two-line) titles
        fig.update_layout(title_pad_b=50)
    return fig


def _class_order(present: list[str], classes: Sequence[str] | None) -> list[str]:
    if classes is None:
        return present
    return [c for c in classes if c in present] + [c for c in present if c not in classes]


def _wrap(text: str, width: int = 18) -> str:
    """Break a long class name onto lines of about ``width`` characters (plotly does not wrap by itself, so
    'Coronary artery disease' would be cut off)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join(lines + [line])


def importance_by_class(table: pd.DataFrame, method: str | None = None, *,
                        modalities: Mapping[str, str] | None = None, explained: str | None = None,
                        groups: str = "class") -> go.Figure:
    """Mean modality importance per group (rows = classes or risk groups, columns = modalities, as
    CohortImportance.by_class returns), as an annotated heatmap, NaN cells blank. Shapley and leave-one-out
    (``method``, or None) are signed changes on a diverging scale symmetric around 0: of the predicted class's
    probability, or of ``explained`` (a survival model's quantity, e.g. 'survival at 60 months'); attention
    weights (0..1) are on the attention scale from 0. The colour bar and title say which and in what units.
    ``modalities``: {name: title} of a declared set (default cardio's four); ``groups`` names the rows in
    the title ('class', 'risk group')."""
    if table.empty:
        raise ValueError("importance table has no rows")
    names, titles = _modality_titles(modalities, compact=False)
    for column in table.columns:
        if column not in names:
            raise ValueError(f"unknown modality {column!r}; expected one of {tuple(names)}")
    shown = [(m, t) for m, t in zip(names, titles) if m in table.columns]
    z = table[[m for m, _ in shown]].to_numpy(dtype=float)
    rows = [_wrap(pretty(str(c)), 24) for c in table.index]
    if method == "attention":
        scale = dict(colorscale=ATTENTION_SCALE, zmin=0, zmax=1, colorbar=_ATTENTION_COLORBAR)
        what = "attention weight (0–1)"
    else:
        limit = _symmetric_limit(z)
        unit = "probability" if explained is None else html.escape(explained)
        scale = dict(colorscale=DIVERGING, zmin=-limit, zmax=limit,
                     colorbar=dict(title=dict(text=f"Mean change in<br>{unit}", side="top"), thickness=10,
                                   **_signed_ticks(limit, z)))
        what = ("change in the predicted class's probability" if explained is None
                else f"change in {html.escape(explained)}")
    fig = go.Figure(go.Heatmap(z=z, x=[t for _, t in shown], y=rows,
                               text=_cell_text(z, ".3f"), texttemplate="%{text}", xgap=1, ygap=1,
                               hovertemplate="%{y}, %{x}: %{z:.3f}<extra></extra>", **scale))
    fig.update_yaxes(autorange="reversed", automargin=True)
    name = f"{METHOD_LABELS.get(method, pretty(method))}: " if method else ""
    return finish(fig, f"Mean modality importance by {groups} ({name}{what})", height=110 + 44 * len(table))


def rater_group(raters: Sequence[str], simulated: bool) -> str:
    """How titles name the raters of a rankings table: 'simulated raters' when they are simulated, else
    their names ('dr_jones and dr_smith'; beyond three, 'a, b, c and 2 more raters')."""
    if simulated:
        return "simulated raters"
    names = sorted({str(r) for r in raters})
    if not names:
        raise ValueError("raters must name at least one rater")
    if len(names) > 3:
        return f"{', '.join(names[:3])} and {len(names) - 3} more raters"
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


_GROUP_COLORS = (_PREDICTION_COLOR, _COMPARE_COLOR, "#0e7490", _ALERT)
# every colour a mark is drawn in on the themed (light or dark) chart background
THEMED_MARK_COLORS = (_PREDICTION_COLOR, _COMPARE_COLOR, _NEUTRAL, *_GROUP_COLORS, *METHOD_COLORS.values())


def metric_bars(rows: Sequence[Mapping[str, Any]], yaxis_title: str = "Value (error bars: 95 % CI)",
                percent: bool = True) -> go.Figure:
    """Metrics with 95 % CIs, each row {"name", "value", "ci_low", "ci_high"} (fractions) and an optional
    "group" (e.g. 'as recorded' / 'with modalities hidden'): one bar colour per group, side by side, with
    asymmetric error bars; values as percentages with one decimal (or, without ``percent``, as numbers with
    3 decimals: a C-index), written at the foot of each bar so they never sit on the error bar."""
    if not rows:
        raise ValueError("rows must hold at least one metric")
    for row in rows:
        missing = [k for k in ("name", "value", "ci_low", "ci_high") if k not in row]
        if missing:
            raise ValueError(f"metric row {row!r} lacks {missing}")
    keys = [(str(r.get("group", "")), str(r["name"])) for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"metric names must be unique within a group, got {keys}")
    groups = list(dict.fromkeys(group for group, _ in keys))
    fig = go.Figure()
    for k, group in enumerate(groups):
        fig.add_trace(_metric_trace([r for r, key in zip(rows, keys) if key[0] == group], group,
                                    _GROUP_COLORS[k % len(_GROUP_COLORS)], percent))
    fig.update_yaxes(tickformat=".0%" if percent else ".2f", rangemode="tozero", title_text=yaxis_title)
    return finish(fig, height=340, barmode="group", showlegend=len(groups) > 1,
                   legend=dict(orientation="h", x=0, y=1.02, yanchor="bottom"))


def _metric_trace(rows: Sequence[Mapping[str, Any]], group: str, color: str, percent: bool = True) -> go.Bar:
    value, low, high = (np.array([_as_float(r[k]) for r in rows]) for k in ("value", "ci_low", "ci_high"))
    if ((low > high)).any():
        raise ValueError(f"every metric needs ci_low <= ci_high, got {list(rows)}")
    # A percentile bootstrap interval can miss its point estimate (ECE, small samples): clip the whisker at
    # the bar rather than drawing it backwards.
    fmt = ".1%" if percent else ".3f"
    return go.Bar(x=[str(r["name"]) for r in rows], y=value, name=group or "value", marker_color=color,
                  text=["n/a" if math.isnan(v) else f"{v:.1%}" if percent else f"{v:.3f}" for v in value],
                  textposition="inside",
                  insidetextanchor="start", textfont=dict(color="white"),
                  error_y=dict(type="data", symmetric=False, array=np.clip(high - value, 0, None),
                               arrayminus=np.clip(value - low, 0, None), color="#94a3b8"),
                  customdata=np.stack([low, high], axis=1),
                  hovertemplate=(f"%{{x}}: %{{y:{fmt}}} (95% CI %{{customdata[0]:{fmt}}}–%{{customdata[1]:{fmt}}})"
                                 "<extra>" + (group or "") + "</extra>"))


# --------------------------------------------------------------------------------- missing-modality study
# The paper's section 7.3 (cardiovascular task, real data): accuracy with every modality, the mean with any
# one and any two withheld, and the two single-modality drops it reports (ECG -4.8 points, note -2.1).
PAPER_7_3_CARDIO = {"all": 94.2, "one": 89.7, "two": 84.3, "signal": 94.2 - 4.8, "text": 94.2 - 2.1}


def table_height(rows: int) -> int:
    """Pixels for st.dataframe to show ``rows`` rows and the header without a scroll bar (35 px a row)."""
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    return 35 * (rows + 1) + 3


def withheld_name(key: str, modalities: Mapping[str, str] | None = None) -> str:
    """A withheld_study key in the modality display names: 'none' -> 'Nothing (all recorded)',
    'image,text' -> 'Echo image + Clinical note'. ``modalities``: {name: title} of a declared set (default
    cardio's four)."""
    if key == "none":
        return "Nothing (all recorded)"
    names, titles = _modality_titles(modalities, compact=False)
    shown = []
    for name in key.split(","):
        if name not in names:
            raise ValueError(f"unknown modality {name!r}; expected one of {tuple(names)}")
        shown.append(titles[names.index(name)])
    return " + ".join(shown)


def withheld_table(study: Mapping[str, Mapping[str, Any]], paper: bool = False,
                   modalities: Mapping[str, str] | None = None) -> pd.DataFrame:
    """explain.ablation.withheld_study as the page's table: what was withheld (display names of
    ``modalities``, default cardio's), accuracy and its CI in %, the change from nothing withheld in points,
    macro F1 and, with ``paper``, the paper's cardiovascular numbers in their own column (as text: 'mean of
    any one' where it gives only a mean)."""
    if "none" not in study:
        raise ValueError("the study needs the 'none' row (nothing withheld) to measure changes against")
    reference = study["none"]["accuracy"]["value"]
    rows = []
    for key, m in study.items():
        accuracy = m["accuracy"]
        row = {"Withheld": withheld_name(key, modalities), "Accuracy (%)": 100 * accuracy["value"],
               "95 % CI (%)": f"{100 * accuracy['ci_low']:.1f}–{100 * accuracy['ci_high']:.1f}",
               "Change (points)": 100 * (accuracy["value"] - reference), "Macro F1": m["macro_f1"]["value"]}
        if paper:
            row["Paper, real data (%)"] = _paper_7_3(key)
        rows.append(row)
    return pd.DataFrame(rows)


def _paper_7_3(key: str) -> str:
    names = [] if key == "none" else key.split(",")
    if not names:
        return f"{PAPER_7_3_CARDIO['all']:.1f}"
    if len(names) == 1 and names[0] in PAPER_7_3_CARDIO:
        value = PAPER_7_3_CARDIO[names[0]]
        return f"{value:.1f} ({value - PAPER_7_3_CARDIO['all']:+.1f})".replace("-", "−")
    if len(names) == 1:
        return f"{PAPER_7_3_CARDIO['one']:.1f} (mean of any one)"
    return f"{PAPER_7_3_CARDIO['two']:.1f} (mean of any two)"


# ----------------------------------------------------------------------------------------------- model card
METRIC_LABELS: dict[str, str] = {"accuracy": "Accuracy", "macro_f1": "Macro F1", "macro_auroc": "Macro AUROC",
                                 "ece": "Expected calibration error"}
ARCHITECTURE_LABELS: dict[str, str] = {
    "image_only": "Echo image only", "text_only": "Clinical note only", "signal_only": "ECG only",
    "tabular_only": "Labs only", "early_fusion": "Early fusion", "late_fusion": "Late fusion",
    "mlp_fusion": "MLP fusion", "neurofusion": "NeuroFusion",
    "neurofusion_gated (NeuroFusion + context gating; not in the paper)":
        "NeuroFusion + context gating (not in the paper)"}
_NO_PAPER_VALUE = ("–", "—", "-")  # a table2.md cell for a row the paper does not have
_MEAN_SD = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:±\s*(\d+(?:\.\d+)?))?\s*$")


def table2_frame(markdown: str) -> pd.DataFrame:
    """benchmarks/results/table2.md's table as fractions with 3 decimals everywhere ('89.7 ± 1.3' % ->
    '0.897 ± 0.013'), models by their readable names; the numeric means are kept in 'accuracy' and
    'macro_f1' columns (attrs) for comparisons."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    if len(lines) < 3:
        raise ValueError("table2.md has no table (expected a header, a rule and at least one row)")
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    needed = ["model", "accuracy (%)", "macro F1"]
    if any(c not in header for c in needed):
        raise ValueError(f"table2.md's table needs the columns {needed}, got {header}")
    rows, means = [], {}
    for line in lines[2:]:
        cells = dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
        model = cells["model"]
        accuracy, f1 = _mean_sd(cells["accuracy (%)"], 0.01), _mean_sd(cells["macro F1"], 1.0)
        means[model] = {"accuracy": accuracy[0], "macro_f1": f1[0]}
        row = {"Model": ARCHITECTURE_LABELS.get(model, pretty(model)), "Accuracy": _format_mean_sd(*accuracy),
               "Macro F1": _format_mean_sd(*f1)}
        for column, shown, scale in (("paper accuracy (%)", "Paper accuracy", 0.01),
                                     ("paper F1", "Paper macro F1", 1.0)):
            if column in cells:  # a variant the paper does not have: "–"
                row[shown] = ("—" if cells[column] in _NO_PAPER_VALUE
                              else _format_mean_sd(*_mean_sd(cells[column], scale)))
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["means"] = means
    return frame


def _mean_sd(text: str, scale: float) -> tuple[float, float | None]:
    match = _MEAN_SD.match(text)
    if not match:
        raise ValueError(f"expected 'mean' or 'mean ± sd' in table2.md, got {text!r}")
    sd = match.group(2)
    return float(match.group(1)) * scale, None if sd is None else float(sd) * scale


def _format_mean_sd(mean: float, sd: float | None) -> str:
    return f"{mean:.3f}" + ("" if sd is None else f" ± {sd:.3f}")


# what training.json's history records on the validation split each epoch, by the checkpoint's outcome
VALIDATION_CURVES: dict[str, tuple[str, str]] = {"val_macro_f1": ("Validation macro F1", "macro F1"),
                                                 "val_c_index": ("Validation C-index", "C-index"),
                                                 "val_auroc": ("Validation AUROC", "AUROC")}


def training_curves(history: Sequence[Mapping[str, Any]], best_epoch: int | None = None,
                    validation: str = "val_macro_f1", loss: str = "cross-entropy") -> go.Figure:
    """Training loss and a validation score per epoch (training.json's history: ``validation`` is the key of
    the score, macro F1 for a classifier, C-index for a survival model; ``loss`` names the training loss),
    each on its own labelled axis (the loss is unbounded, the score lies in 0..1), with the kept (best) epoch
    marked."""
    if not history:
        raise ValueError("history must hold at least one epoch")
    if validation not in VALIDATION_CURVES:
        raise ValueError(f"validation must be one of {tuple(VALIDATION_CURVES)}, got {validation!r}")
    missing = [k for k in ("epoch", "train_loss", validation) if any(k not in h for h in history)]
    if missing:
        raise ValueError(f"every epoch of the history needs {missing}")
    label, short = VALIDATION_CURVES[validation]
    epochs = [int(h["epoch"]) for h in history]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1)
    fig.add_trace(go.Scatter(x=epochs, y=[float(h["train_loss"]) for h in history], mode="lines+markers",
                             name="Training loss", line=dict(color=_PREDICTION_COLOR),
                             hovertemplate="epoch %{x}: loss %{y:.3f}<extra></extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=epochs, y=[float(h[validation]) for h in history], mode="lines+markers",
                             name=label, line=dict(color=_COMPARE_COLOR),
                             hovertemplate="epoch %{x}: " + short + " %{y:.3f}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(title_text=f"Training loss<br>({loss})", tickformat=".2f", rangemode="tozero",
                     row=1, col=1)
    fig.update_yaxes(title_text=label.replace(" ", "<br>", 1), tickformat=".2f", range=[0, 1], row=2, col=1)
    fig.update_xaxes(title_text="Epoch", dtick=max(1, len(epochs) // 12), row=2, col=1)
    if best_epoch is not None:
        for row in (1, 2):
            fig.add_vline(x=best_epoch, line=dict(color=_NEUTRAL, dash="dash", width=1), row=row, col=1)
        fig.add_annotation(x=best_epoch, y=1, yref="paper", text=f"kept: epoch {best_epoch}", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(size=11, color=_NEUTRAL))
    return finish(fig, "Training history", height=420, showlegend=False)
