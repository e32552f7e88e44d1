"""Figures and captions of the pairwise Shapley interaction index (explain.interactions) beside the cross-modal
attention: one case's symmetric interaction matrix, the cohort's mean matrices by class, and the sentences that
say how well attention follows the interactions (explain.interaction_attention). Pure functions, no Streamlit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures import DIVERGING, MODALITY_LABELS, MODALITY_SHORT, finish, pretty
from explain.interaction_attention import AttentionInteractionCorrelation

MISSING_GREY = "#d4d4d8"  # cells of a modality the case lacks: it interacts with nothing
INTERACTION_TRACE = "interaction"  # the trace holding the values (tests and readers find it by name)
MISSING_TRACE = "missing"


def interaction_heatmap(matrix: np.ndarray, present: Sequence[bool] | None = None, explained: str = "",
                        title: str = "", compact: bool = False,
                        modalities: Mapping[str, str] | None = None) -> go.Figure:
    """One case's pairwise interaction index (M, M), symmetric: a diverging scale centred at 0 (red: the pair
    adds more together than apart, blue: less), the diagonal blank, the rows and columns of modalities the case
    lacks grey and their names marked ('*' when ``compact``, else ' (missing)'). ``explained`` names the
    quantity (e.g. 'p(Heart failure)') for the colour bar and the hover; ``modalities``: {name: title} of a
    declared set (default cardio's four)."""
    names, titles = _titles(modalities, compact)
    values = _check_matrix(matrix, len(names), "interaction matrix")
    present = [True] * len(names) if present is None else [bool(p) for p in present]
    if len(present) != len(names):
        raise ValueError(f"present must have one flag per modality ({len(names)}), got {len(present)}")
    if not np.allclose(values, values.T, equal_nan=True, atol=1e-9):
        raise ValueError("an interaction matrix is symmetric (I_ij = I_ji); got an asymmetric one")
    mark = "*" if compact else " (missing)"
    labels = [t + ("" if ok else mark) for t, ok in zip(titles, present)]
    both = np.outer(present, present)
    shown = np.where(both & ~np.eye(len(names), dtype=bool), values, np.nan)
    limit = _limit(shown)
    colorbar = dict(title=dict(text=f"interaction<br>({explained})" if explained else "interaction", side="top"),
                    thickness=10, **_ticks(limit, 5))
    if compact:
        # under the matrix, as the attention's: three ticks and the title above the bar fit a narrow column
        extra = max(0, max(len(t) for t in labels) - 5)
        colorbar.update(orientation="h", y=-0.3 - 0.05 * extra, yanchor="top", len=1, thickness=8,
                        title=dict(text="interaction", side="top"),  # the unit (a class name) may not fit
                        **_ticks(limit, 3))
    fig = go.Figure([_missing_trace(~both, labels), _interaction_trace(shown, labels, limit, explained, colorbar)])
    fig.update_xaxes(title="with" if compact else "modality", automargin=True)
    fig.update_yaxes(title="pair of" if compact else "modality", autorange="reversed", automargin=True)
    if not compact:
        return finish(fig, title, height=380)
    return finish(fig, title, height=340 + 18 * extra, margin=dict(b=70 + 18 * extra))


def cohort_interaction_grid(by_class: Mapping[str, np.ndarray], counts: Mapping[str, int], explained: str = "",
                            title: str = "", classes: Sequence[str] | None = None,
                            modalities: Mapping[str, str] | None = None) -> go.Figure:
    """One (M, M) mean interaction matrix per class (NaN: no case of the class has both modalities, and the
    diagonal), up to three per row as the attention grid, subtitled with the number of cases; one diverging
    colour range centred at 0 for all. ``classes`` orders the panels (groups it lacks follow)."""
    if not by_class:
        raise ValueError("by_class must hold at least one class")
    absent = [c for c in by_class if c not in counts]
    if absent:
        raise ValueError(f"counts lacks classes {absent}")
    order = ([c for c in classes if c in by_class] if classes is not None else []) + \
            [c for c in by_class if classes is None or c not in classes]
    names, labels = _titles(modalities, compact=False)
    matrices = {c: _check_matrix(by_class[c], len(names), f"interaction matrix of group {c!r}") for c in order}
    limit = _limit(np.stack(list(matrices.values())))
    cols = min(len(matrices), 3)
    rows = math.ceil(len(matrices) / cols)
    fig = make_subplots(rows=rows, cols=cols, horizontal_spacing=0.08, vertical_spacing=0.42 / rows,
                        subplot_titles=[f"{pretty(c)} (n={counts[c]})" for c in matrices])
    colorbar = dict(title=dict(text=f"mean interaction<br>({explained})" if explained else "mean interaction",
                               side="top"), thickness=10, **_ticks(limit, 5))
    for k, (group, matrix) in enumerate(matrices.items()):  # each panel's trace is named by its class
        fig.add_trace(_interaction_trace(matrix, labels, limit, explained, colorbar, showscale=k == 0, name=str(group)),
                      row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(autorange="reversed", automargin=True, showticklabels=False)
    fig.update_yaxes(showticklabels=True, col=1)
    fig.update_xaxes(automargin=True, tickangle=-30)
    fig.update_annotations(font=dict(size=12))
    fig = finish(fig, title, height=120 + 360 * rows, margin=dict(t=96 if title else 64))
    if title:
        fig.update_layout(title_pad_b=50)
    return fig


def correlation_sentence(result: AttentionInteractionCorrelation | None, reason_without: str | None = None) -> str:
    """'Attention vs |interaction|: Spearman ρ = +0.40 over 6 modality pairs.' or the reason it is not
    defined; ``reason_without``: the sentence for a model without attention (``result`` None)."""
    if result is None:
        return reason_without or "Attention vs |interaction|: not defined (this model has no cross-modal attention)."
    if result.reason is not None:
        return f"Attention vs |interaction|: {result.reason}."
    return (f"Attention vs |interaction|: Spearman ρ = {result.rho:+.2f} over {result.n_pairs} modality pairs "
            "(a pair's attention both ways against the size of its interaction).")


def correlation_table(correlations: pd.DataFrame, counts: Mapping[str, int]) -> pd.DataFrame:
    """explain.interaction_attention.class_correlations as the page's table: class (pretty), cases, ρ,
    pairs compared and why a ρ is not defined."""
    return pd.DataFrame({
        "class": [pretty(g) for g in correlations["group"]],
        "cases": [int(counts.get(g, 0)) for g in correlations["group"]],
        "Spearman ρ": correlations["rho"].astype(float),
        "pairs": correlations["n_pairs"].astype(int),
        "note": correlations["reason"].fillna(""),
    })


def matrix_values(figure: dict | go.Figure, trace_name: str = INTERACTION_TRACE) -> np.ndarray:
    """The interaction values a figure of :func:`interaction_heatmap` draws (NaN for blank cells), read back
    from the figure (a plotly Figure or its JSON dict); ``trace_name``: a class's panel of
    :func:`cohort_interaction_grid`."""
    data = figure.to_plotly_json()["data"] if isinstance(figure, go.Figure) else figure["data"]
    trace = next((t for t in data if t.get("name") == trace_name), None)
    if trace is None:
        raise ValueError(f"the figure has no trace named {trace_name!r}")
    return np.array([[math.nan if v is None else float(v) for v in row] for row in trace["z"]])


def _titles(modalities: Mapping[str, str] | None, compact: bool) -> tuple[list[str], list[str]]:
    if modalities is None:
        labels = MODALITY_SHORT if compact else MODALITY_LABELS
        return list(labels), list(labels.values())
    if not modalities:
        raise ValueError("modalities must name at least one modality")
    return list(modalities), [str(title) or name for name, title in modalities.items()]


def _check_matrix(matrix: np.ndarray, size: int, name: str) -> np.ndarray:
    values = np.asarray(matrix, dtype=float)
    if values.shape != (size, size):
        raise ValueError(f"{name} must be ({size}, {size}) (modality x modality), got {values.shape}")
    return values


def _limit(values: np.ndarray) -> float:
    """The colour range ±limit: the largest |value| drawn, 1 when none is non-zero (a valid range for a blank
    or all-zero matrix)."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def _ticks(limit: float, count: int) -> dict:
    """``count`` colour-bar ticks evenly from -limit to +limit, written with a sign (0 plain)."""
    values = np.linspace(-limit, limit, count)
    decimals = max(2, 1 - math.floor(math.log10(limit)))  # 0.23, 0.0040: the limit's leading digits
    text = ["0" if abs(v) < limit * 1e-9 else f"{v:+.{decimals}f}".replace("-", "−") for v in values]
    return dict(tickmode="array", tickvals=values.tolist(), ticktext=text)


def _nullable(matrix: np.ndarray) -> list[list[float | None]]:
    return [[None if math.isnan(v) else float(v) for v in row] for row in matrix]


def _interaction_trace(matrix: np.ndarray, labels: list[str], limit: float, explained: str, colorbar: dict,
                       showscale: bool = True, name: str = INTERACTION_TRACE) -> go.Heatmap:
    text = [["" if math.isnan(v) else f"{v:+.3f}".replace("-", "−") for v in row] for row in matrix]
    unit = f" ({explained})" if explained else ""
    return go.Heatmap(z=_nullable(matrix), x=labels, y=labels, text=text, texttemplate="%{text}", name=name,
                      colorscale=DIVERGING, zmin=-limit, zmax=limit, zmid=0, xgap=1, ygap=1, showscale=showscale,
                      colorbar=colorbar, hoverongaps=False,
                      hovertemplate="%{y} with %{x}: %{z:+.4f}" + unit + "<extra></extra>")


def _missing_trace(missing: np.ndarray, labels: list[str]) -> go.Heatmap:
    """Grey under the cells of a modality the case lacks (the values trace leaves them blank)."""
    z = [[1.0 if m else None for m in row] for row in missing]
    return go.Heatmap(z=z, x=labels, y=labels, name=MISSING_TRACE, colorscale=[[0, MISSING_GREY], [1, MISSING_GREY]],
                      showscale=False, xgap=1, ygap=1, hoverongaps=False,
                      hovertemplate="%{y} with %{x}: missing (interacts with nothing)<extra></extra>")
