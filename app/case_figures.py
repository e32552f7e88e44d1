"""Pure pieces of the case page for declared modalities and survival models (inputs -> plotly figure, table
or text; no Streamlit): a colour image (histopathology) with its saliency on top, the mutated genes of a
binary panel with their attributions, a predicted survival curve with a second (ablated or edited) curve
over it, and the survival case chooser's labels.

Colour images arrive as the reader gives them: float (3, H, W) in [0, 1]. They are drawn as a plotly Image
trace whose source is a PNG of the tile (the page carries ~100 kB instead of 200 k numbers)."""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from PIL import Image
from scipy.ndimage import gaussian_filter

from app.figures import SIGNED_SALIENCY, finish, saliency_trace, pretty, saliency_method_label
from app.survival_figures import HORIZON_COLOR, survival_curve_figure
from neurofusion.survival import KaplanMeier, SurvivalBins

COMPARED_COLOR = HORIZON_COLOR  # the ablated / edited curve: the page's compare colour (amber)
GENE_COLUMNS = ("gene", "mutated", "attribution", "driver")
LABEL_SEPARATOR = " · "  # a case list's labels: the case id, then what is known of the case


def rgb_uint8(image: np.ndarray) -> np.ndarray:
    """A colour image (3, H, W) or (H, W, 3), float in [0, 1] or uint8, as (H, W, 3) uint8 (floats rounded)."""
    array = np.asarray(image)
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise ValueError(f"a colour image must be (3, H, W) or (H, W, 3), got shape {array.shape}")
    if array.shape[0] == 3 and array.shape[-1] != 3:
        array = np.moveaxis(array, 0, -1)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    values = array.astype(float)
    if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError("a float colour image must hold finite values in [0, 1]")
    return np.ascontiguousarray(np.rint(values * 255).astype(np.uint8))


def png_data_uri(rgb: np.ndarray) -> str:
    """(H, W, 3) uint8 -> 'data:image/png;base64,...' (lossless)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_png_uri(uri: str) -> np.ndarray:
    """The (H, W, 3) uint8 pixels of a :func:`png_data_uri` string (for tests and checks)."""
    prefix = "data:image/png;base64,"
    if not uri.startswith(prefix):
        raise ValueError("not a PNG data URI")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):]))).convert("RGB"))


def colour_overlay(image: np.ndarray, saliency: np.ndarray | None = None, opacity: float = 0.45, *,
                   explained: str | None = None, method: str | None = None, smooth: float = 0.0,
                   title: str = "", units: str = "logit units") -> go.Figure:
    """A colour image (3, H, W) / (H, W, 3) in its own colours, with a saliency map (H, W) on top (signed maps
    diverging around 0, Grad-CAM and attention from 0, as :func:`app.figures.image_overlay` draws them on a
    grey image). Pixel (column x, row y) sits at integer x, y, row 0 at the top. ``units``: what the map is in,
    as its colour bar says (a survival model's attributions are in units of the explained quantity)."""
    rgb = rgb_uint8(image)
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    if not smooth >= 0:
        raise ValueError(f"smooth must be a non-negative number of pixels, got {smooth}")
    height, width = rgb.shape[:2]
    fig = go.Figure(go.Image(source=png_data_uri(rgb), x0=0, y0=0, dx=1, dy=1, name="image",
                             hoverinfo="skip"))
    if saliency is not None:
        saliency = np.asarray(saliency, dtype=float)
        if saliency.shape != (height, width):
            raise ValueError(f"saliency must have the image's shape {(height, width)}, got {saliency.shape}")
        if not explained:
            raise ValueError("explained must name what the saliency is for")
        if smooth > 0:
            saliency = gaussian_filter(np.nan_to_num(saliency), sigma=smooth)
        signed = method is None or method in SIGNED_SALIENCY
        trace = saliency_trace(saliency, opacity, signed, explained, units)
        fig.add_trace(trace)
        if not title and method is not None:
            title = f"{saliency_method_label(method)} for {explained}"
    fig.update_xaxes(visible=False, range=[-0.5, width - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, range=[height - 0.5, -0.5], scaleanchor="x", scaleratio=1, constrain="domain")
    return finish(fig, title, height=440)


def is_binary_panel(values: Mapping[str, object] | None, limits: Mapping[str, object] | None = None) -> bool:
    """True when a tabular modality reads as a mutation panel: at least two features, every one numeric
    without a unit (per ``limits``, LabLimit-like, when given) and every measured value 0 or 1."""
    if not values or len(values) < 2:
        return False
    for name, value in values.items():
        limit = None if limits is None else limits.get(name)
        if limit is not None and (getattr(limit, "kind", "numeric") != "numeric" or getattr(limit, "unit", "")):
            return False
        if value is None or isinstance(value, str):
            return False
        number = float(value)
        if not math.isnan(number) and number not in (0.0, 1.0):
            return False
    return True


def gene_table(attributions: pd.DataFrame, drivers: Sequence[str] = (), min_abs: float = 0.0) -> pd.DataFrame:
    """The genes to show from a binary panel's attribution table (explain.tabular rows: name, value,
    measured, score): every mutated gene (value 1), then the unmutated ones with |attribution| >= ``min_abs``
    when ``min_abs`` > 0, each sorted by |attribution|. Columns: gene, mutated, attribution, driver (the gene
    is one of ``drivers``, e.g. planted driver genes)."""
    missing = [c for c in ("name", "value", "measured", "score") if c not in attributions.columns]
    if missing:
        raise ValueError(f"attribution table lacks columns {missing}")
    if min_abs < 0:
        raise ValueError(f"min_abs must be >= 0, got {min_abs}")
    measured = attributions[attributions["measured"].astype(bool)]
    values = pd.to_numeric(measured["value"], errors="coerce")
    scores = measured["score"].astype(float)
    mutated = measured[values == 1.0]
    notable = measured[(values == 0.0) & (scores.abs() >= min_abs)] if min_abs > 0 else measured.iloc[0:0]
    wanted = set(drivers)
    parts = []
    for part, flag in ((mutated, True), (notable, False)):
        part = part.assign(order=part["score"].astype(float).abs()).sort_values("order", ascending=False)
        parts.append(pd.DataFrame({"gene": part["name"].astype(str).to_numpy(), "mutated": flag,
                                   "attribution": part["score"].astype(float).to_numpy(),
                                   "driver": part["name"].isin(wanted).to_numpy()}))
    return pd.concat(parts, ignore_index=True)[list(GENE_COLUMNS)]


def gene_bars(genes: pd.DataFrame, explained: str, title: str = "Mutated genes") -> go.Figure:
    """Horizontal attribution bars of a :func:`gene_table` (red raises ``explained``, blue lowers it);
    unmutated genes are paler and labelled '(not mutated)', planted drivers '★'."""
    if not explained:
        raise ValueError("explained must name what the attributions are for")
    missing = [c for c in GENE_COLUMNS if c not in genes.columns]
    if missing:
        raise ValueError(f"gene table lacks columns {missing}")
    labels = [f"{'★ ' if d else ''}{g}{'' if m else ' (not mutated)'}"
              for g, m, d in zip(genes["gene"], genes["mutated"], genes["driver"])]
    scores = genes["attribution"].astype(float).to_numpy()
    colors = ["rgb(178,24,43)" if s >= 0 else "rgb(33,102,172)" for s in scores]
    opacity = [1.0 if m else 0.45 for m in genes["mutated"]]  # unmutated genes paler
    fig = go.Figure(go.Bar(x=scores, y=labels, orientation="h", marker=dict(color=colors, opacity=opacity),
                           name="attribution",
                           hovertemplate="%{y}: %{x:.3g}<extra></extra>"))
    fig.update_xaxes(title=f"Attribution (+ = raises {explained})", zeroline=True, zerolinecolor="#94a3b8")
    fig.update_yaxes(autorange="reversed", automargin=True)
    return finish(fig, f"{title}: attribution to {explained}", height=110 + 24 * max(1, len(labels)))


def curve_with_compared(bins: SurvivalBins, curve: np.ndarray, horizon: float, compared: np.ndarray | None = None,
                        *, compared_name: str = "with the sliders' observation", cohort: KaplanMeier | None = None,
                        title: str = "Predicted survival") -> go.Figure:
    """:func:`app.survival_figures.survival_curve_figure` of ``curve`` (K,) with, when given, a second
    predicted curve ``compared`` (K,) dashed over it (the ablated or edited case), named ``compared_name``."""
    fig = survival_curve_figure(bins, curve, horizon, cohort=cohort, title=title)
    if compared is not None:
        compared = np.asarray(compared, dtype=float)
        if compared.shape != (bins.num_bins,):
            raise ValueError(f"compared curve must be ({bins.num_bins},), got {compared.shape}")
        fig.add_trace(go.Scatter(x=np.asarray(bins.edges, dtype=float), y=np.r_[1.0, compared], mode="lines+markers",
                                 name=compared_name, line=dict(color=COMPARED_COLOR, width=2.5, dash="dash"),
                                 marker=dict(size=5),
                                 hovertemplate="%{x:.0f} " + bins.unit + ": %{y:.0%}<extra>" + compared_name
                                               + "</extra>"))
    return fig


def outcome_text(time: float, event: float, unit: str = "months") -> str:
    """The recorded outcome in words: 'died at 5.8 mo', 'alive at 67 mo (censored)', 'outcome not recorded'."""
    short = "mo" if unit == "months" else unit
    if time is None or event is None or not (math.isfinite(float(time)) and math.isfinite(float(event))):
        return "outcome not recorded"
    shown = f"{time:.1f}" if time < 10 else f"{time:.0f}"
    return f"died at {shown} {short}" if event else f"alive at {shown} {short} (censored)"


def chosen_case(value: object, ids: Sequence[str]) -> str | None:
    """The listed case a case list's value names: the id itself, or the id a stale option label starts with (a
    widget moved while the cohort was being predicted sends the list's label from before the list was labelled
    with predictions, and Streamlit hands back a label it no longer lists as the label text); None when it
    names no listed case."""
    if not isinstance(value, str):
        return None
    case_id = value if value in ids else value.split(LABEL_SEPARATOR, 1)[0]
    return case_id if case_id in ids else None


def survival_case_label(case_id: str, row: Mapping[str, object], horizon: float, unit: str = "months") -> str:
    """A survival case's chooser label: 'CA-00022 · high risk · 5-y survival 27 % · alive at 67 mo
    (censored)'. ``row``: its survival_table row (risk_group, survival, time, event, error)."""
    if row.get("error"):
        return f"{case_id}{LABEL_SEPARATOR}unreadable"
    years = horizon / 12 if unit == "months" else None
    when = f"{years:g}-y" if years is not None and float(years).is_integer() else f"{horizon:g}-{unit}"
    return (f"{case_id}{LABEL_SEPARATOR}{row['risk_group']} risk · {when} survival "
            f"{100 * float(row['survival']):.0f} % · {outcome_text(float(row['time']), float(row['event']), unit)}")


def horizon_words(horizon: float, unit: str = "months") -> str:
    """'5 years' for 60 months, else '30 months'."""
    if unit == "months" and float(horizon / 12).is_integer() and horizon > 0:
        years = int(horizon / 12)
        return f"{years} year{'s' if years != 1 else ''}"
    return f"{horizon:g} {unit}"


def quantity_name(label: str) -> str:
    """The explained quantity as titles name it (the SurvivalTarget label, capitalised)."""
    return pretty(label)


def short_titles(titles: Mapping[str, str], width: int = 9) -> dict[str, str]:
    """One short word per declared modality for the narrow first-screen figures (as cardio's 'Echo', 'Note'):
    a title of up to ``width`` characters stays; a longer one keeps its last word when it has several
    ('Treatment notes' -> 'Notes'), else its first ``width - 3`` letters and a full stop ('Histopathology'
    -> 'Histop.'). Distinct titles stay distinct (a clash keeps the full titles)."""
    if width < 4:
        raise ValueError(f"width must be at least 4 characters, got {width}")
    short = {}
    for name, title in titles.items():
        words = str(title).split()
        if len(title) <= width:
            short[name] = title
        elif len(words) > 1 and len(words[-1]) <= width:
            short[name] = words[-1].capitalize()
        else:
            short[name] = title[:width - 3] + "."
    return short if len(set(short.values())) == len(short) else dict(titles)
