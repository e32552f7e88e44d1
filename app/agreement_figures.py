"""Figures of the rater-agreement page (pure: result -> plotly Figure), readable on light and dark themes.

The mean and the inter-rater ceiling are named in the legend, not by text on the plot (two nearby lines
made their labels overprint), and the ceiling carries its 95 % CI as a band.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

# Mid-tone colours that keep their contrast on Streamlit's light and dark backgrounds.
BAR_COLOR, MEAN_COLOR, CEILING_COLOR = "#3b82f6", "#f59e0b", "#ef4444"
TRANSPARENT = "rgba(0,0,0,0)"


def _defined(value: object) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def tau_histogram(per_pair: pd.DataFrame, raters: str, ceiling: Mapping[str, float] | None = None) -> go.Figure:
    """Kendall tau per (case, rater) (explain.agreement.model_vs_raters) as a histogram over -1..1 (NaN
    dropped), the mean as a solid line and, when defined, the inter-rater ceiling ({"mean", "ci_low",
    "ci_high"}, explain.agreement.inter_rater's ``mean_pairwise_tau``) as a dashed line over its CI band.
    ``raters`` names who ranked (figures.rater_group) in the title and axis."""
    if "tau" not in per_pair.columns:
        raise ValueError("per_pair must have a 'tau' column")
    tau = per_pair["tau"].astype(float).dropna().to_numpy()
    if ((tau < -1 - 1e-9) | (tau > 1 + 1e-9)).any():
        raise ValueError("tau values must lie in -1..1")
    # bins centred on multiples of 0.1, so tau = 1 and tau = -1 each get a bin
    fig = go.Figure(go.Histogram(x=tau, xbins=dict(start=-1.05, end=1.05, size=0.1), marker_color=BAR_COLOR,
                                 name="(case, rater) pairs", showlegend=False,
                                 hovertemplate="tau %{x}: %{y} pairs<extra></extra>"))
    # vertical lines as traces on a hidden 0..1 axis, so the legend names them
    line_axis = dict(yaxis="y2", mode="lines", hoverinfo="name")
    if tau.size:
        fig.add_trace(go.Scatter(x=[tau.mean()] * 2, y=[0, 1], name=f"mean {tau.mean():.2f}",
                                 line=dict(color=MEAN_COLOR, width=3), **line_axis))
    else:
        fig.add_annotation(text="no (case, rater) pair has a defined tau", showarrow=False, x=0, y=0.5, yref="paper")
    if ceiling is not None and _defined(ceiling.get("mean")):
        mean, low, high = (float(ceiling.get(k, math.nan)) for k in ("mean", "ci_low", "ci_high"))
        if not -1 <= mean <= 1:
            raise ValueError(f"the ceiling must lie in -1..1, got {mean}")
        band = _defined(low) and _defined(high)
        name = f"inter-rater {mean:.2f}" + (f" (95 % CI {low:.2f} to {high:.2f})" if band else "")
        if band:
            fig.add_trace(go.Scatter(x=[low, high, high, low, low], y=[0, 0, 1, 1, 0], fill="toself", mode="none",
                                     fillcolor="rgba(239,68,68,0.15)", yaxis="y2", hoverinfo="skip",
                                     showlegend=False, name="inter-rater 95 % CI"))
        fig.add_trace(go.Scatter(x=[mean] * 2, y=[0, 1], name=name,
                                 line=dict(color=CEILING_COLOR, width=3, dash="dash"), **line_axis))
    fig.update_layout(
        title=dict(text=f"Agreement with {raters} ({tau.size} pairs)", x=0, xanchor="left", font=dict(size=14)),
        height=340, bargap=0.05, margin=dict(l=10, r=10, t=40, b=10),
        paper_bgcolor=TRANSPARENT, plot_bgcolor=TRANSPARENT,
        legend=dict(orientation="h", x=0, xanchor="left", y=-0.22, yanchor="top"),
        yaxis2=dict(overlaying="y", range=[0, 1], visible=False, fixedrange=True),
    )
    fig.update_xaxes(range=[-1.1, 1.1], title=f"Kendall tau-b (model vs {raters})")
    fig.update_layout(yaxis=dict(title="(case, rater) pairs"))
    return fig

