"""Figures and tables of the ICU task's cohort pages (pure: result -> plotly Figure or DataFrame): figure 2C
of the cohort (mean attention received and mean |Shapley| share per modality and prediction hour, by
outcome) with the paper's numbers beside it, AUROC / AUPRC by prediction hour with their stay-bootstrap
intervals, the calibration of the risk, and the model card's and missing-modality page's tables in AUROC and
AUPRC. Inputs are ``neurofusion.risk_metrics.risk_metrics`` results and
``explain.timeline.cohort_over_time`` frames. Readable on light and dark themes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app.figures import THEMED_MARK_COLORS, finish, withheld_name

# The paper's ICU results (real MIMIC-IV data; Table 2 and section 6): NeuroFusion's AUROC and AUPRC and the
# vital-signs-only model's AUROC and AUPRC.
PAPER_ICU = {"auroc": 0.913, "auprc": 0.849, "vitals_only_auroc": 0.856, "vitals_only_auprc": 0.774}
# The two outcome groups of figure 2C, in drawing order (explain.timeline.cohort_over_time's "outcome" values).
OUTCOMES = ("died in ICU", "survived")
OUTCOME_TITLES = {"died in ICU": "Died in the ICU", "survived": "Survived"}
VALUES = {"attention": "Mean attention received", "share": "Mean |Shapley| share of the risk"}
# One colour per ICU modality; any other declared name takes the next themed colour.
ICU_COLORS = {"vitals": "#d97706", "labs": "#7c3aed", "notes": "#15803d", "demographics": "#3b6ea8"}
_AUROC_COLOR, _AUPRC_COLOR, _NEUTRAL = THEMED_MARK_COLORS[0], THEMED_MARK_COLORS[1], THEMED_MARK_COLORS[2]
_OVER_TIME_COLUMNS = ("hour", "outcome", "modality", "attention", "share", "n")


def modality_color(name: str, k: int) -> str:
    return ICU_COLORS.get(name, THEMED_MARK_COLORS[k % len(THEMED_MARK_COLORS)])


def hour_label(hour: float) -> str:
    """6.0 -> '6 h' (the key risk_metrics' by_hour uses, with the unit)."""
    return f"{float(hour):g} h"


def _check_over_time(frame: pd.DataFrame) -> None:
    missing = [c for c in _OVER_TIME_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"figure 2C needs cohort_over_time's columns {list(_OVER_TIME_COLUMNS)}; this frame lacks "
                         f"{missing} (it has {list(frame.columns)})")


def figure_2c(over_time: pd.DataFrame, titles: Mapping[str, str], value: str = "attention",
              paper: Mapping[float, Mapping[str, float]] | None = None) -> go.Figure:
    """Figure 2C of a cohort: one panel per outcome group (died in the ICU, survived), one line per modality
    (``titles``: {name: title}, declaration order) of its mean ``value`` ("attention" received, or "share" of
    |Shapley|) at each prediction hour; each hour's tick says how many samples it averages (n). ``paper``
    ({hour: {modality: value}}, the paper's attention weights for all stays) is drawn as open diamonds in
    both panels. ``over_time``: cohort_over_time's frame (hour, outcome, modality, attention, share, n)."""
    _check_over_time(over_time)
    if value not in VALUES:
        raise ValueError(f"value must be one of {tuple(VALUES)}, got {value!r}")
    groups = [o for o in OUTCOMES if (over_time["outcome"] == o).any()]
    if not groups:
        raise ValueError(f"the frame holds no sample of either outcome group {OUTCOMES}; its outcomes are "
                         f"{sorted(set(over_time['outcome']))}")
    fig = make_subplots(rows=1, cols=len(groups), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[_panel_title(over_time, o) for o in groups])
    hours = sorted(set(over_time["hour"].astype(float)))
    for col, outcome in enumerate(groups, start=1):
        part = over_time[over_time["outcome"] == outcome]
        for k, (name, title) in enumerate(titles.items()):
            rows = part[part["modality"] == name].sort_values("hour")
            if rows.empty:
                continue
            fig.add_trace(go.Scatter(
                x=rows["hour"].astype(float), y=rows[value].astype(float), mode="lines+markers", name=title,
                legendgroup=name, showlegend=col == 1, line=dict(color=modality_color(name, k), width=2.5),
                customdata=rows["n"].to_numpy(), connectgaps=False,
                hovertemplate=f"{title} at %{{x:g}} h: %{{y:.3f}} (%{{customdata}} samples)<extra>{outcome}</extra>"),
                row=1, col=col)
        counts = part.groupby("hour")["n"].max()
        fig.update_xaxes(tickvals=hours, ticktext=[f"{hour_label(h)}<br>n={int(counts.get(h, 0))}" for h in hours],
                         title_text="Hour of the stay (n = samples)", row=1, col=col)
        if paper:
            _paper_markers(fig, paper, titles, col, first=col == 1)
    fig.update_yaxes(title_text=VALUES[value], rangemode="tozero", row=1, col=1)
    fig.update_annotations(font=dict(size=12))
    what = "attention received" if value == "attention" else "|Shapley| share of the risk"
    fig = finish(fig, f"Figure 2C of this cohort: mean {what} per modality by hour and outcome", height=480,
                 legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
                 margin=dict(t=100, b=130))
    fig.update_layout(title_pad_b=30)  # above the panels' own titles
    return fig


def _panel_title(frame: pd.DataFrame, outcome: str) -> str:
    stays = frame.attrs.get("stays", {}).get(outcome) if isinstance(frame.attrs.get("stays"), Mapping) else None
    return OUTCOME_TITLES.get(outcome, outcome) + (f" ({stays} stays)" if stays is not None else "")


def _paper_markers(fig: go.Figure, paper: Mapping[float, Mapping[str, float]], titles: Mapping[str, str], col: int,
                   first: bool) -> None:
    for k, (name, title) in enumerate(titles.items()):
        points = sorted((float(h), float(v[name])) for h, v in paper.items() if name in v)
        if not points:
            continue
        fig.add_trace(go.Scatter(
            x=[h for h, _ in points], y=[v for _, v in points], mode="markers", name=f"paper: {title}",
            legendgroup=f"paper_{name}", showlegend=first,
            marker=dict(symbol="diamond-open", size=12, line=dict(width=2), color=modality_color(name, k)),
            hovertemplate=f"paper, {title} at %{{x:g}} h: %{{y:.2f}} (real data, all stays)<extra></extra>"),
            row=1, col=col)


def paper_comparison(over_time: pd.DataFrame, titles: Mapping[str, str],
                     paper: Mapping[float, Mapping[str, float]]) -> pd.DataFrame:
    """One row per (hour, modality) the paper gives a number for: the paper's attention, this cohort's mean
    attention received in each outcome group and over both (weighted by the samples each mean is over:
    n_explained, those with anything recorded, when the frame has it), and the samples averaged."""
    _check_over_time(over_time)
    rows = []
    for hour, values in sorted(paper.items()):
        at = over_time[np.isclose(over_time["hour"].astype(float), float(hour))]
        for name, reference in values.items():
            if name not in titles:
                continue
            part = at[at["modality"] == name]
            row = {"Hour": hour_label(hour), "Modality": titles[name], "Paper (real data)": float(reference)}
            for outcome in OUTCOMES:
                cell = part[part["outcome"] == outcome]
                row[OUTCOME_TITLES[outcome]] = float(cell["attention"].iloc[0]) if len(cell) else math.nan
            n = part["n"].to_numpy(dtype=float)
            weights = part["n_explained"].to_numpy(dtype=float) if "n_explained" in part else n
            attention = part["attention"].to_numpy(dtype=float)
            usable = (weights > 0) & np.isfinite(attention)
            row["Both groups"] = (float(np.average(attention[usable], weights=weights[usable])) if usable.any()
                                  else math.nan)
            row["Samples"] = int(n.sum())
            rows.append(row)
    return pd.DataFrame(rows)


def _value(estimate: Mapping) -> float:
    value = estimate.get("value")
    return math.nan if value is None else float(value)


def _bounds(estimate: Mapping) -> tuple[float, float]:
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    return (math.nan if low is None else float(low)), (math.nan if high is None else float(high))


def _check_risk(metrics: Mapping) -> Mapping[str, Mapping]:
    by_hour = metrics.get("by_hour") if isinstance(metrics, Mapping) else None
    if not by_hour:
        raise ValueError("metrics must be a risk_metrics result computed with hours (it needs 'by_hour')")
    return by_hour


def hour_metrics_figure(metrics: Mapping) -> go.Figure:
    """AUROC and AUPRC at each prediction hour with their 95 % stay-bootstrap intervals (a risk_metrics result
    with ``by_hour``), the overall values as dotted lines and the paper's (real data) as dashed ones; each
    hour's tick gives its samples and events. An hour holding one class only has no point (the title says)."""
    by_hour = _check_risk(metrics)
    keys = sorted(by_hour, key=float)
    ticks = [f"{k} h<br>n={by_hour[k]['n_samples']}<br>{by_hour[k]['n_events']} died ≤ 48 h" for k in keys]
    fig = go.Figure()
    for offset, (name, label, color) in zip((-0.25, 0.25), (("auroc", "AUROC", _AUROC_COLOR),
                                                             ("auprc", "AUPRC", _AUPRC_COLOR))):
        values = np.array([_value(by_hour[k][name]) for k in keys])
        low, high = np.array([_bounds(by_hour[k][name]) for k in keys]).reshape(-1, 2).T
        fig.add_trace(go.Scatter(
            x=np.arange(len(keys)) + offset, y=values, mode="markers", name=label, marker=dict(color=color, size=10),
            error_y=dict(type="data", symmetric=False, array=np.clip(np.nan_to_num(high - values), 0, None),
                         arrayminus=np.clip(np.nan_to_num(values - low), 0, None), color=color),
            customdata=np.stack([low, high], axis=1),
            hovertemplate=(f"{label} %{{y:.3f}} (95 % CI %{{customdata[0]:.3f}}–%{{customdata[1]:.3f}})"
                           "<extra></extra>")))
        overall = _value(metrics[name])
        if not math.isnan(overall):
            fig.add_hline(y=overall, line=dict(color=color, dash="dot", width=1),
                          annotation_text=f"{label} all hours {overall:.3f}", annotation_position="bottom left")
        fig.add_hline(y=PAPER_ICU[name], line=dict(color=color, dash="dash", width=1),  # AUPRC's under its line
                      annotation_text=f"paper {label} {PAPER_ICU[name]:.3f}",
                      annotation_position="top right" if name == "auroc" else "bottom right")
    undefined = [k for k in keys if by_hour[k]["auroc"]["value"] is None]
    title = "AUROC and AUPRC by prediction hour (95 % CI, bootstrap over stays)"
    if undefined:
        title += f"; not defined at {', '.join(k + ' h' for k in undefined)} (one class only)"
    fig.update_xaxes(tickvals=list(range(len(keys))), ticktext=ticks, title_text="Prediction hour")
    fig.update_yaxes(range=[0, 1.02], tickformat=".2f", title_text="Score")
    return finish(fig, title, height=440, legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
                  margin=dict(b=130))


def risk_calibration_figure(metrics: Mapping, title: str = "Calibration of the predicted risk") -> go.Figure:
    """Observed rate of death within 48 h against the mean predicted risk in each equal-width bin of a
    risk_metrics result (dot size = samples), with the diagonal of perfect calibration and the ECE (95 % CI)
    in the title; empty bins are left out."""
    bins = metrics.get("calibration", {}).get("bins") if isinstance(metrics, Mapping) else None
    if bins is None:
        raise ValueError("metrics must be a risk_metrics result (it needs calibration.bins)")
    rows = [b for b in bins if b["n"]]
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                               line=dict(color=_NEUTRAL, dash="dash", width=1), hoverinfo="skip"))
    if rows:
        biggest = max(b["n"] for b in rows)
        fig.add_trace(go.Scatter(
            x=[b["mean_predicted"] for b in rows], y=[b["observed"] for b in rows], mode="markers+lines",
            name="bins of predicted risk", line=dict(color=_AUROC_COLOR, width=1),
            marker=dict(color=_AUROC_COLOR, size=[6 + 16 * b["n"] / biggest for b in rows]),
            customdata=np.array([[b["n"], b["lo"], b["hi"]] for b in rows]),
            hovertemplate=("predicted %{x:.1%}, observed %{y:.1%} (%{customdata[0]} samples with risk "
                           "%{customdata[1]:.1f}–%{customdata[2]:.1f})<extra></extra>")))
    ece = metrics.get("ece", {})
    low, high = _bounds(ece)
    if ece.get("value") is not None:
        title += f" (ECE {ece['value']:.3f}" + (f", 95 % CI {low:.3f}–{high:.3f})" if not math.isnan(low) else ")")
    fig.update_xaxes(title_text="Predicted risk of death within 48 h", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="Observed: died within 48 h", range=[0, 1], tickformat=".0%")
    return finish(fig, title, height=400, legend=dict(orientation="h", x=0, y=0, yanchor="bottom", yref="container"),
                  margin=dict(b=90))


def interval(estimate: Mapping, decimals: int = 3) -> str:
    """'0.812–0.901', or why the interval is not defined."""
    low, high = estimate.get("ci_low"), estimate.get("ci_high")
    if low is None or high is None:
        return estimate.get("reason") or "not defined"
    return f"{low:.{decimals}f}–{high:.{decimals}f}"


METRIC_NAMES = {"auroc": "AUROC", "auprc": "AUPRC", "brier": "Brier score", "ece": "Expected calibration error"}
_PAPER_CELLS = {"auroc": f"{PAPER_ICU['auroc']:.3f} (vitals only {PAPER_ICU['vitals_only_auroc']:.3f})",
                "auprc": f"{PAPER_ICU['auprc']:.3f} (vitals only {PAPER_ICU['vitals_only_auprc']:.3f})",
                "brier": "not reported", "ece": "not reported"}


def risk_metric_table(metrics: Mapping) -> pd.DataFrame:
    """The overall metrics of a risk_metrics result as rows {metric, value, 95 % CI, paper (real data)} in words
    with 3 decimals; a metric the data could not define says why."""
    rows = []
    for name, label in METRIC_NAMES.items():
        estimate = metrics.get(name)
        if estimate is None:
            raise ValueError(f"metrics lack {name!r}: they must be the dict that risk_metrics returns")
        value = estimate.get("value")
        rows.append({"metric": label, "value": estimate.get("reason") or "not defined" if value is None
                     else f"{value:.3f}", "95 % CI": interval(estimate), "Paper, real data": _PAPER_CELLS[name]})
    return pd.DataFrame(rows)


def hour_table(table: pd.DataFrame) -> pd.DataFrame:
    """``neurofusion.risk_metrics.risk_metrics_table`` in words: one row for all hours, one per prediction
    hour, with samples, stays, deaths within 48 h (prevalence) and each metric with its 95 % CI."""
    rows = []
    for _, r in table.iterrows():
        row = {"Hour": "all hours" if r["hour"] == "all" else f"{r['hour']} h", "Samples": int(r["n_samples"]),
               "Stays": int(r["n_stays"]), "Died within 48 h": f"{r['prevalence']:.1%}"}
        for name, label in METRIC_NAMES.items():
            if name == "ece":
                label = "ECE"
            value, low, high = r[name], r[f"{name}_ci_low"], r[f"{name}_ci_high"]
            row[label] = "—" if pd.isna(value) else f"{value:.3f}"
            row[f"{label} 95 % CI"] = "—" if pd.isna(low) or pd.isna(high) else f"{low:.3f}–{high:.3f}"
        row["Notes"] = r["notes"] or "—"
        rows.append(row)
    return pd.DataFrame(rows)


def withheld_risk_table(study: Mapping[str, Mapping], titles: Mapping[str, str],
                        paper: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The section 7.3 study of a risk model ({withheld key: risk_metrics result}, key "none" = nothing
    withheld, "labs,notes" = both withheld) as the page's table: what was withheld (titles), AUROC with its CI
    and its change from nothing withheld in points, AUPRC with its CI, and with ``paper`` ({key: text}) the
    paper's number for that row."""
    if "none" not in study:
        raise ValueError("the study needs the 'none' row (nothing withheld) to measure changes against")
    reference = study["none"]["auroc"].get("value")
    rows = []
    for key, m in study.items():
        auroc, auprc = m["auroc"], m["auprc"]
        row = {"Withheld": withheld_name(key, titles), "AUROC": auroc.get("value"), "AUROC 95 % CI": interval(auroc),
               "Change (points)": None if auroc.get("value") is None or reference is None
               else 100 * (auroc["value"] - reference),
               "AUPRC": auprc.get("value"), "AUPRC 95 % CI": interval(auprc)}
        if paper is not None:
            row["Paper, real data"] = paper.get(key, "")
        rows.append(row)
    return pd.DataFrame(rows)


def metric_rows(metrics: Mapping, group: str, names: Sequence[str] = ("auroc", "auprc")) -> list[dict]:
    """Rows for app.figures.metric_bars: {name, group, value, ci_low, ci_high} of each metric, NaN where a
    risk_metrics estimate is not defined."""
    rows = []
    for name in names:
        low, high = _bounds(metrics[name])
        rows.append({"name": METRIC_NAMES[name], "group": group, "value": _value(metrics[name]), "ci_low": low,
                     "ci_high": high})
    return rows
