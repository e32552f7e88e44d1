"""Figures of a survival model (pure: result -> plotly Figure), for the cancer task's pages: a case's
predicted survival curve beside the cohort's Kaplan-Meier curve, Kaplan-Meier curves by predicted risk
group with the log-rank test, and calibration at the horizon. Readable on light and dark themes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from app.figures import THEMED_MARK_COLORS, _finish
from neurofusion.survival import Calibration, KaplanMeier, LogRank, SurvivalBins

PREDICTED_COLOR, COHORT_COLOR, HORIZON_COLOR = THEMED_MARK_COLORS[0], THEMED_MARK_COLORS[2], THEMED_MARK_COLORS[1]
GROUP_COLORS = {"low": "#0e7490", "medium": "#d97706", "high": "#dc2626"}
_NEUTRAL_LINE = THEMED_MARK_COLORS[2]


def survival_curve_figure(bins: SurvivalBins, curve: np.ndarray, horizon: float, *,
                          cohort: KaplanMeier | None = None, title: str = "Predicted survival") -> go.Figure:
    """A case's predicted survival (K,) = S at each bin's end (non-increasing, in [0, 1]) drawn from S(0) = 1
    through the bin edges, the horizon as a dashed line with S(horizon) labelled, and, if given, the
    cohort's Kaplan-Meier step curve with its 95 % band."""
    curve = np.asarray(curve, dtype=float)
    if curve.shape != (bins.num_bins,):
        raise ValueError(f"curve must be ({bins.num_bins},) for {bins.num_bins} time bins, got {curve.shape}")
    if not (np.isfinite(curve).all() and (curve >= 0).all() and (curve <= 1).all()):
        raise ValueError("curve must hold survival probabilities between 0 and 1")
    if np.any(np.diff(curve) > 1e-9):
        raise ValueError("a survival curve never increases")
    edges = np.asarray(bins.edges, dtype=float)
    fig = go.Figure()
    if cohort is not None:
        fig.add_trace(_band(cohort, COHORT_COLOR))
        fig.add_trace(go.Scatter(x=np.r_[0.0, cohort.time], y=np.r_[1.0, cohort.survival], mode="lines",
                                 line=dict(color=COHORT_COLOR, shape="hv", width=1.5), name="cohort (Kaplan-Meier)",
                                 hovertemplate="%{x:.0f} " + bins.unit + ": %{y:.0%}<extra>cohort</extra>"))
    fig.add_trace(go.Scatter(x=edges, y=np.r_[1.0, curve], mode="lines+markers", name="this case (predicted)",
                             line=dict(color=PREDICTED_COLOR, width=2.5), marker=dict(size=5),
                             hovertemplate="%{x:.0f} " + bins.unit + ": %{y:.0%}<extra>predicted</extra>"))
    at_horizon = float(bins.survival_at(curve[None], horizon)[0])
    fig.add_vline(x=horizon, line=dict(color=HORIZON_COLOR, dash="dash", width=1.5),
                  annotation_text=f"S({horizon:g} {bins.unit}) = {at_horizon:.0%}", annotation_position="top right")
    fig.update_xaxes(title=f"Time ({bins.unit})", range=[0, edges[-1]])
    fig.update_yaxes(title="Probability of survival", range=[0, 1.05], tickformat=".0%")
    return _finish(fig, title, height=360, legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
                   margin=dict(b=70))


def risk_group_figure(groups: Mapping[str, KaplanMeier], test: LogRank, unit: str = "months",
                      horizon: float | None = None) -> go.Figure:
    """Kaplan-Meier curves (with 95 % bands) of the cohort split by predicted risk group, the log-rank test in
    the title (or why it could not be computed)."""
    if not groups:
        raise ValueError("groups must hold at least one risk group's Kaplan-Meier curve")
    fig = go.Figure()
    for k, (name, km) in enumerate(groups.items()):
        color = GROUP_COLORS.get(name, THEMED_MARK_COLORS[k % len(THEMED_MARK_COLORS)])
        fig.add_trace(_band(km, color))
        fig.add_trace(go.Scatter(x=np.r_[0.0, km.time], y=np.r_[1.0, km.survival], mode="lines",
                                 line=dict(color=color, shape="hv", width=2),
                                 name=f"{name} risk ({int(km.at_risk[0]) if len(km.at_risk) else 0} cases)",
                                 hovertemplate="%{x:.0f} " + unit + ": %{y:.0%}<extra>" + name + "</extra>"))
    if horizon is not None:
        fig.add_vline(x=horizon, line=dict(color=_NEUTRAL_LINE, dash="dot", width=1))
    if test.p_value is None:
        result = f"log-rank test not defined: {test.reason}"
    else:
        result = f"log-rank χ² = {test.chi2:.1f}, df = {test.df}, p = {_p(test.p_value)}"
    fig.update_xaxes(title=f"Time ({unit})")
    fig.update_yaxes(title="Probability of survival", range=[0, 1.05], tickformat=".0%")
    return _finish(fig, f"Survival by predicted risk group ({result})", height=380,
                   legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"), margin=dict(b=70))


def calibration_figure(calibration: Calibration, unit: str = "months") -> go.Figure:
    """Predicted against Kaplan-Meier observed survival at the horizon per group of predicted survival (dot
    size = cases, bars = the observed 95 % interval), with the diagonal of perfect calibration; groups whose
    follow-up ends before the horizon have no observed value and are left out (the title says how many)."""
    rows = [g for g in calibration.groups if g.get("observed") is not None]
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                               line=dict(color=_NEUTRAL_LINE, dash="dash", width=1), hoverinfo="skip"))
    if rows:
        predicted = [g["predicted"] for g in rows]
        observed = [g["observed"] for g in rows]
        fig.add_trace(go.Scatter(
            x=predicted, y=observed, mode="markers", name="groups of predicted survival",
            marker=dict(color=PREDICTED_COLOR, size=[6 + 14 * g["n"] / max(r["n"] for r in rows) for g in rows]),
            error_y=dict(type="data", symmetric=False,  # no interval before the group's first event: no bar
                         array=[(g["observed_high"] or g["observed"]) - g["observed"] for g in rows],
                         arrayminus=[g["observed"] - (g["observed_low"] or g["observed"]) for g in rows],
                         color=PREDICTED_COLOR),
            customdata=[g["n"] for g in rows],
            hovertemplate="predicted %{x:.0%}, observed %{y:.0%} (%{customdata} cases)<extra></extra>"))
    left_out = len(calibration.groups) - len(rows)
    gap = calibration.mean_abs_gap.value
    title = (f"Calibration at {calibration.horizon:g} {unit}"
             + (f" (mean |predicted − observed| {gap:.3f})" if gap is not None else "")
             + (f"; {left_out} group(s) without follow-up to the horizon left out" if left_out else ""))
    fig.update_xaxes(title=f"Predicted survival at {calibration.horizon:g} {unit}", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="Observed (Kaplan-Meier)", range=[0, 1], tickformat=".0%")
    return _finish(fig, title, height=380, legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
                   margin=dict(b=70))


def _band(km: KaplanMeier, color: str) -> go.Scatter:
    """The Kaplan-Meier 95 % interval as a filled step band (upper edge, then the lower edge backwards)."""
    x = np.r_[0.0, km.time]
    upper, lower = np.r_[1.0, km.ci_high], np.r_[1.0, km.ci_low]
    xs = np.repeat(x, 2)[1:]
    up, low = np.repeat(upper, 2)[:-1], np.repeat(lower, 2)[:-1]
    return go.Scatter(x=np.r_[xs, xs[::-1]], y=np.r_[up, low[::-1]], fill="toself", mode="lines",
                      line=dict(width=0), fillcolor=_rgba(color, 0.15), hoverinfo="skip", showlegend=False)


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def _p(value: float) -> str:
    return "< 0.001" if value < 0.001 else f"{value:.3f}"
