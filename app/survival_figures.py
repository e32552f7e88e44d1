"""Figures of a survival model (pure: result -> plotly Figure or table), for the cancer task's pages: a case's
predicted survival curve beside the cohort's Kaplan-Meier curve, Kaplan-Meier curves by predicted risk
group with the log-rank test, calibration at the horizon, the section 7.3 table in C-index and the model
card's survival metrics; and the grouping these pages share (risk groups of a split, explanations merged
by risk group). Readable on light and dark themes."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.figures import THEMED_MARK_COLORS, finish, withheld_name
from explain.attention import CohortAttention
from explain.cohort import CohortImportance
from neurofusion.survival import Calibration, KaplanMeier, LogRank, SurvivalBins, kaplan_meier, logrank, risk_groups

PREDICTED_COLOR, COHORT_COLOR, HORIZON_COLOR = THEMED_MARK_COLORS[0], THEMED_MARK_COLORS[2], THEMED_MARK_COLORS[1]
GROUP_COLORS = {"low": "#0e7490", "medium": "#d97706", "high": "#dc2626"}
_NEUTRAL_LINE = THEMED_MARK_COLORS[2]


RISK_GROUPS = ("low", "medium", "high")  # neurofusion.survival.risk_groups' tertiles, lowest risk first
# The paper's section 7.3 gives one cancer number: genomics withheld costs 6.3 C-index points (real data).
PAPER_7_3_CANCER = {"genomics": -6.3}


def risk_group_survival(time: np.ndarray, event: np.ndarray, risk: np.ndarray
                        ) -> tuple[np.ndarray, dict[str, KaplanMeier], LogRank]:
    """(N,) outcomes and predicted risk scores -> (N,) risk group of each case (tertiles of ``risk`` over these
    cases: "low" / "medium" / "high"), the Kaplan-Meier curve of each non-empty group (lowest risk first) and
    the log-rank test across the groups."""
    groups = risk_groups(np.asarray(risk, dtype=float))
    time, event = np.asarray(time, dtype=float), np.asarray(event)
    if time.shape != groups.shape or event.shape != groups.shape:
        raise ValueError(f"time, event and risk must be (N,) arrays of one length, got {time.shape}, "
                         f"{event.shape} and {groups.shape}")
    curves = {g: kaplan_meier(time[groups == g], event[groups == g]) for g in RISK_GROUPS if (groups == g).any()}
    return groups, curves, logrank(time, event, groups)


def by_risk_group(parts: Mapping[str, CohortImportance]) -> CohortImportance:
    """One survival model's cohort explanations, computed per risk group ({group: CohortImportance of that
    group's cases}, each a single group "all"), as one result grouped by risk group: every case's label and
    predicted group is its risk group, and the attention averages are the groups'. Cheaper than regrouping
    per-case attention: the groups together are one pass over the cases."""
    if not parts:
        raise ValueError("parts must hold at least one risk group's explanation")
    first = next(iter(parts.values()))
    if any(p.names != first.names for p in parts.values()):
        raise ValueError("every group's explanation must cover the same declared modalities")
    tables = []
    for group, part in parts.items():
        table = part.table.copy()
        table["label"] = group
        table["predicted"] = group
        tables.append(table)
    attention = None
    if all(p.attention is not None for p in parts.values()):
        only = {g: next(iter(p.attention.by_true)) for g, p in parts.items()}  # the single group of each part
        by = {g: p.attention.by_true[only[g]] for g, p in parts.items()}
        counts = {g: p.attention.counts_true[only[g]] for g, p in parts.items()}
        attention = CohortAttention(list(parts), by, dict(by), counts, dict(counts), first.attention.names)
    return CohortImportance(pd.concat(tables, ignore_index=True), attention, first.names, first.explained,
                            first.survival)


def withheld_survival_table(study: Mapping[str, Mapping], modalities: Mapping[str, str],
                            paper: bool = False) -> pd.DataFrame:
    """explain.survival_ablation.withheld_survival as the page's table: what was withheld (display titles),
    the C-index and its CI, the change from nothing withheld in points, the AUC at the horizon with its CI
    (or why it is not defined) and, with ``paper``, the paper's cancer figure (genomics only)."""
    if "none" not in study:
        raise ValueError("the study needs the 'none' row (nothing withheld) to measure changes against")
    reference = study["none"]["c_index"]["value"]
    rows = []
    for key, m in study.items():
        c_index, auc = m["c_index"], m["auc_at_horizon"]
        row = {"Withheld": withheld_name(key, modalities), "C-index": c_index["value"],
               "95 % CI": _interval(c_index),
               "Change (points)": None if c_index["value"] is None or reference is None
               else 100 * (c_index["value"] - reference),
               "AUC at horizon": auc["value"], "AUC 95 % CI": _interval(auc)}
        if paper:
            row["Paper, real data (points)"] = (f"{PAPER_7_3_CANCER[key]:+.1f}".replace("-", "−")
                                                if key in PAPER_7_3_CANCER else "")
        rows.append(row)
    return pd.DataFrame(rows)


def survival_metric_table(metrics: Mapping) -> pd.DataFrame:
    """A checkpoint's recorded survival test metrics (metrics.json's "test", neurofusion.evaluate's survival
    report) as rows {metric, value, 95 % CI} in words with 3 decimals; a metric the test data could not
    define says why in both cells."""
    horizon, unit = metrics.get("horizon"), metrics.get("unit", "")
    calibration = metrics.get("calibration_at_horizon") or {}
    brier = metrics.get("integrated_brier") or {}
    span = f" ({brier['range'][0]:g}–{brier['range'][1]:g} {unit})" if brier.get("range") else ""
    entries = [
        ("C-index (Harrell)", metrics.get("c_index")),
        (f"AUC at {horizon:g} {unit}" if horizon is not None else "AUC at the horizon", metrics.get("auc_at_horizon")),
        (f"Integrated Brier score{span}", brier or None),
        ("Calibration: mean |predicted − observed|", calibration.get("mean_abs_gap")),
        ("Calibration slope (1 = calibrated)", calibration.get("slope")),
        ("Calibration intercept (0 = calibrated)", calibration.get("intercept")),
    ]
    rows = []
    for name, estimate in entries:
        if estimate is None:
            continue
        value, reason = estimate.get("value"), estimate.get("reason") or "not defined"
        rows.append({"metric": name, "value": reason if value is None else f"{value:.3f}",
                     "95 % CI": _interval(estimate, 3) if estimate.get("ci_low") is not None else reason})
    if not rows:
        raise ValueError("the survival metrics hold none of c_index, auc_at_horizon, integrated_brier, "
                         "calibration_at_horizon")
    return pd.DataFrame(rows)


def _interval(estimate: Mapping, decimals: int = 3) -> str:
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    if low is None or high is None:
        return estimate.get("reason") or "not defined"
    if low < 0:  # '−0.296 to 0.028' reads as a range; '-0.296–0.028' does not
        return f"{low:.{decimals}f} to {high:.{decimals}f}".replace("-", "−")
    return f"{low:.{decimals}f}–{high:.{decimals}f}"


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
    return finish(fig, title, height=360, legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
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
        result = f"log-rank χ² = {test.chi2:.1f}, df = {test.df}, {_p(test.p_value)}"
    fig.update_xaxes(title=f"Time ({unit})")
    fig.update_yaxes(title="Probability of survival", range=[0, 1.05], tickformat=".0%")
    return finish(fig, f"Survival by predicted risk group ({result})", height=380,
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
    return finish(fig, title, height=380, legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
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
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"
