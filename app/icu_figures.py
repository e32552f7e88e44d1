"""Figure and table builders for the ICU case page (issue 12): pure functions from a stay's timeline
results (explain.timeline) and its recorded rows (TimedCohortReader) to plotly figures and tables, testable
without a browser. The risk is P(death within 48 h) as of each hour; times are hours since admission."""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from app import figures
from app.figures import finish, pretty
from neurofusion.data.timed import AGE_SUFFIX

if TYPE_CHECKING:
    from explain.text import Span
    from explain.timeline import RiskTrajectory
    from neurofusion.data.events import EventVariable

DIES = "dies_within_48h"
RISK_COLOR, HOUR_COLOR, DEATH_COLOR, DISCHARGE_COLOR = "#3b6ea8", "#d97706", "#b91c1c", "#15803d"
HORIZON_FILL = "rgba(217,119,6,0.12)"
# attribution shading behind a trend: transparent at 0, translucent blue (lowers) / red (raises) at the ends
_SHADE = [[0.0, "rgba(33,102,172,0.55)"], [0.5, "rgba(255,255,255,0)"], [1.0, "rgba(178,24,43,0.55)"]]
# the paper's colours by kind (orange signals, green text, purple structured data); demographics in blue
ICU_COLORS = {"vitals": "#ff7f0e", "labs": "#9467bd", "notes": "#2ca02c", "demographics": "#1f77b4"}
_FALLBACK = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
GAP_H = 0.5  # consecutive measurements further apart than this are drawn as a gap, not joined


def outcome_text(stay_hours: float, died: bool) -> str:
    """'died at 63 h' / 'discharged at 90 h'."""
    return f"{'died' if died else 'discharged'} at {stay_hours:.0f} h"


def label_text(label: str) -> str:
    """The label at an hour as a sentence: 'died within 48 h of this hour' / 'did not die within 48 h ...'."""
    return "died within 48 h of this hour" if label == DIES else "did not die within 48 h of this hour"


def stay_label(stay_id: str, diagnosis: str, stay_hours: float, died: bool, peak_risk: float) -> str:
    """The case list's line for a stay: 'ICU-00012 · sepsis · died at 63 h · peak risk 34 %'."""
    peak = "peak risk -" if math.isnan(peak_risk) else f"peak risk {peak_risk:.0%}"
    diagnosis = pretty(diagnosis) if diagnosis else "no diagnosis"
    return f"{stay_id} · {diagnosis} · {outcome_text(stay_hours, died)} · {peak}"


def modality_color(name: str, k: int = 0) -> str:
    return ICU_COLORS.get(name, _FALLBACK[k % len(_FALLBACK)])


def risk_trajectory_figure(trajectory: RiskTrajectory, hour: float, horizon_h: float = 48.0,
                           prediction_hours: Sequence[float] = ()) -> go.Figure:
    """The risk at every hour of the stay (line; markers red where the label at that hour is 'dies within
    48 h'), the chosen ``hour`` marked, the ``horizon_h`` hours its risk is about shaded, the end of the
    stay (death or discharge) marked, and the ``prediction_hours`` whose explanations are drawn below."""
    hours, risk = np.asarray(trajectory.hours, dtype=float), np.asarray(trajectory.risk, dtype=float)
    if hours.shape != risk.shape or len(trajectory.labels) != len(hours):
        raise ValueError(f"a trajectory needs one risk and one label per hour, got {hours.shape}, {risk.shape} and "
                         f"{len(trajectory.labels)} labels")
    dies = np.array([label == DIES for label in trajectory.labels], dtype=bool)
    end = float(trajectory.stay_hours)
    fig = go.Figure()
    fig.add_vrect(x0=hour, x1=min(hour + horizon_h, end), fillcolor=HORIZON_FILL, line_width=0)
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"the {horizon_h:g} h this risk is about",
                             marker=dict(symbol="square", size=12, color=HORIZON_FILL), hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=hours, y=risk, mode="lines", name="risk", line=dict(color=RISK_COLOR, width=2),
                             hovertemplate="%{x:g} h: %{y:.1%}<extra>risk</extra>"))
    for flag, name, color in ((False, "label: survives 48 h", "#94a3b8"),
                              (True, "label: dies within 48 h", DEATH_COLOR)):
        chosen = dies == flag
        if chosen.any():
            fig.add_trace(go.Scatter(x=hours[chosen], y=risk[chosen], mode="markers", name=name,
                                     marker=dict(color=color, size=5),
                                     hovertemplate="%{x:g} h: %{y:.1%}<extra>" + name + "</extra>"))
    shown = [h for h in prediction_hours if h < end]
    if shown:
        at = np.interp(shown, hours, risk) if len(hours) else np.zeros(len(shown))
        fig.add_trace(go.Scatter(x=shown, y=at, mode="markers", name="explained below",
                                 marker=dict(symbol="diamond-open", size=11, color="#334155", line=dict(width=1.5)),
                                 hovertemplate="%{x:g} h<extra>explained below</extra>"))
    k = int(np.argmin(np.abs(hours - hour))) if len(hours) else None
    at_hour = f": {risk[k]:.1%}" if k is not None and abs(hours[k] - hour) < 1e-9 else ""
    fig.add_vline(x=hour, line=dict(color=HOUR_COLOR, width=2),
                  annotation_text=f"as of {hour:g} h{at_hour}", annotation_position="top right",
                  annotation_font=dict(color=HOUR_COLOR))
    fig.add_vline(x=end, line=dict(color=DEATH_COLOR if trajectory.died else DISCHARGE_COLOR, width=2, dash="dash"),
                  annotation_text=outcome_text(end, trajectory.died), annotation_position="top left",
                  annotation_font=dict(color=DEATH_COLOR if trajectory.died else DISCHARGE_COLOR))
    fig.update_xaxes(title="hours since admission", range=[0, end * 1.02 + 0.5], zeroline=False)
    fig.update_yaxes(title="P(death within 48 h)", range=[0, 1.05], tickformat=".0%")
    return finish(fig, f"Risk of death within {horizon_h:g} h over stay {trajectory.stay_id}", height=330,
                  legend=dict(orientation="h", x=0, y=-0.28, yanchor="top"), margin=dict(b=40))


def _with_gaps(times: np.ndarray, values: np.ndarray, gap_h: float) -> tuple[list, list]:
    """Line points with a None between measurements further apart than ``gap_h``: plotly breaks the line."""
    xs: list = []
    ys: list = []
    for k, (x, y) in enumerate(zip(times, values)):
        if k and x - times[k - 1] > gap_h:
            xs.append(None)
            ys.append(None)
        xs.append(float(x))
        ys.append(float(y))
    return xs, ys


def vitals_trends(rows: pd.DataFrame, variables: Mapping[str, EventVariable], hour: float,
                  over_time: pd.DataFrame | None = None, window_h: float = 48.0, explained: str = "the risk",
                  gap_h: float = GAP_H) -> go.Figure:
    """The vital signs the model saw at ``hour``: one row per vital with a measurement in the window
    (``window_h`` hours up to the hour), in real units; measured points as dots joined where they are no
    more than ``gap_h`` apart, values outside the plausible range as red crosses (artefacts: kept, as the
    monitor recorded them). ``over_time`` (timeline.vitals_over_time: time, variable, attribution,
    temporal_attention) shades each row's attribution under the curve (red raises ``explained``, blue
    lowers it; one scale for every row) and adds the encoder's temporal attention as a top row.
    ``rows``: (time, variable, value) recorded up to the hour."""
    start = hour - window_h
    rows = rows[(rows["time"] > start) & (rows["time"] <= hour)]
    names = [v for v in variables if v in set(rows["variable"])]
    if not names:
        raise ValueError(f"no vital sign was recorded in the {window_h:g} h up to hour {hour:g}")
    attention = over_time is not None and not over_time.empty
    count = len(names) + (1 if attention else 0)
    titles = (["temporal attention"] if attention else []) + [_vital_title(variables[v]) for v in names]
    fig = make_subplots(rows=count, cols=1, shared_xaxes=True, vertical_spacing=0.012,
                        specs=[[{"secondary_y": True}]] * count)
    limit = 1.0
    if attention:
        limit = _shade_limit(over_time["attribution"].to_numpy(dtype=float))
        steps = over_time.drop_duplicates("time").sort_values("time")
        fig.add_trace(go.Bar(x=steps["time"], y=steps["temporal_attention"], marker_color="#94a3b8",
                             name="temporal attention", showlegend=False,
                             hovertemplate="%{x:.2f} h: %{y:.4f}<extra>temporal attention</extra>"), row=1, col=1)
    for k, name in enumerate(names, start=2 if attention else 1):
        variable = variables[name]
        part = rows[rows["variable"] == name].sort_values("time")
        times, values = part["time"].to_numpy(dtype=float), part["value"].to_numpy(dtype=float)
        if attention:
            mine = over_time[over_time["variable"] == name].sort_values("time")
            score = mine["attribution"].to_numpy(dtype=float)
            # the row's background, coloured by the attribution of each 5-minute step (cells at y 0 and 1 of a
            # 0..1 axis: the two half-cells fill the row)
            fig.add_trace(go.Heatmap(x=mine["time"], y=[0.0, 1.0], z=[score, score], zmin=-limit, zmax=limit,
                                     colorscale=_SHADE, showscale=False, name=f"attribution to {explained}",
                                     hovertemplate="%{x:.2f} h: %{z:+.3g}<extra>attribution</extra>"),
                          row=k, col=1, secondary_y=True)
            fig.update_yaxes(range=[0, 1], showticklabels=False, showgrid=False, zeroline=False,
                             row=k, col=1, secondary_y=True)
        xs, ys = _with_gaps(times, values, gap_h)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", line=dict(color="#1e293b", width=1),
                                 marker=dict(size=3, color="#1e293b"), showlegend=False, name=name,
                                 hovertemplate="%{x:.2f} h: %{y:g} " + variable.unit + "<extra>" + name + "</extra>"),
                      row=k, col=1)
        wrong = ~variable.plausible(values)
        if wrong.any():
            fig.add_trace(go.Scatter(x=times[wrong], y=values[wrong], mode="markers", showlegend=False,
                                     marker=dict(symbol="x", size=8, color=DEATH_COLOR), name="artefact",
                                     hovertemplate="%{x:.2f} h: %{y:g} " + variable.unit
                                                   + "<extra>outside the plausible range</extra>"),
                          row=k, col=1)
        fig.update_yaxes(title_text=titles[k - 1], title_font=dict(size=10), row=k, col=1, secondary_y=False,
                         nticks=3, automargin=True)
    if attention:
        fig.update_yaxes(title_text="temporal<br>attention", title_font=dict(size=10), row=1, col=1, nticks=2)
    fig.update_xaxes(range=[max(0.0, start), hour])
    fig.update_xaxes(title="hours since admission", row=count, col=1)
    return finish(fig, f"Vital signs the model saw at {hour:g} h (the last {window_h:g} h)", height=90 * count + 110,
                  showlegend=False, bargap=0)


def _shade_limit(values: np.ndarray, percentile: float = 99.0) -> float:
    """The shading's colour range: the 99th percentile of |attribution| (a few extreme steps would wash the
    rest out; beyond it the colour saturates); 1 when every value is 0."""
    finite = np.abs(values[np.isfinite(values)])
    limit = float(np.percentile(finite, percentile)) if finite.size else 0.0
    return limit if limit > 0 else (float(finite.max()) if finite.size and finite.max() > 0 else 1.0)


def _vital_title(variable: EventVariable) -> str:
    short = variable.name.replace("nibp_", "NIBP ").replace("abp_", "ABP ").replace("_", " ")
    return f"{short}<br>({variable.unit})"


def labs_table(rows: pd.DataFrame, variables: Mapping[str, EventVariable], hour: float,
               attributions: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every lab draw up to ``hour``, newest first: time (h), hours before, lab, value, unit, plausible range,
    outside (the value lies outside it), and on each lab's last draw (the one the model reads, with its age)
    the attribution of its value and of its age (explain.tabular rows: name, score); blank elsewhere."""
    rows = rows[rows["time"] <= hour].sort_values(["time", "variable"], ascending=[False, True], kind="stable")
    scores = {} if attributions is None else dict(zip(attributions["name"], attributions["score"]))
    last = ~rows.duplicated("variable", keep="first")  # newest first: the first row of a lab is its last draw
    out = []
    for (_, row), is_last in zip(rows.iterrows(), last):
        variable = variables[row["variable"]]
        value = float(row["value"])
        out.append({
            "time (h)": round(float(row["time"]), 2), "hours before": round(hour - float(row["time"]), 2),
            "lab": row["variable"], "value": value, "unit": variable.unit,
            "plausible range": _range(variable), "outside": not bool(variable.plausible(np.array([value]))[0]),
            "attribution (value)": scores.get(row["variable"], math.nan) if is_last else math.nan,
            "attribution (age)": scores.get(f"{row['variable']}{AGE_SUFFIX}", math.nan) if is_last else math.nan,
        })
    columns = ["time (h)", "hours before", "lab", "value", "unit", "plausible range", "outside",
               "attribution (value)", "attribution (age)"]
    return pd.DataFrame(out, columns=columns)


def _range(variable: EventVariable) -> str:
    low = "" if variable.low is None else f"{variable.low:g}"
    high = "" if variable.high is None else f"{variable.high:g}"
    return f"{low}–{high}" if low or high else "-"


def notes_html(text: str, parts: Sequence[tuple[float, int, int]], words: Sequence[Span], scale: float,
               covered_chars: int | None = None) -> str:
    """The notes the model reads (``text``), one block per note in the text's order (newest first), each headed
    by when it was written and with its words highlighted (figures.note_html; ``words`` are spans of
    ``text``). ``parts``: (written at, start, end) of each note in ``text``. A note starting at or after
    ``covered_chars`` is marked as not read (the model's text length ran out)."""
    blocks = []
    for written, start, end in parts:
        if not 0 <= start <= end <= len(text):
            raise ValueError(f"note part {start}:{end} is outside the notes text ({len(text)} characters)")
        mine = [dataclasses.replace(w, start=w.start - start, end=w.end - start) for w in words
                if start <= w.start and w.end <= end]
        unread = covered_chars is not None and start >= covered_chars
        head = f"written at {written:.1f} h" + (" · not read: beyond the model's text length" if unread else "")
        style = "margin: 0.6em 0 0.1em; font-size: 0.85em; color: #475569"
        blocks.append(f'<div style="{style}"><b>{html.escape(head)}</b></div>'
                      + figures.note_html(text[start:end], mine, scale))
    return '<div class="icu-notes">' + "".join(blocks) + "</div>"


def importance_over_time_figure(frame: pd.DataFrame, hours: Sequence[float], titles: Mapping[str, str],
                                explained: str = "the risk") -> go.Figure:
    """The case's own figure 2C: at each explained hour, stacked bars of each modality's share of the risk's
    |Shapley| values (top) and of the cross-modal attention it receives (bottom); ``frame`` is
    timeline.importance_over_time's (hour, modality, attention, shapley, share, present). Hours of ``hours``
    not yet in the frame are labelled 'computing...'."""
    names = list(titles)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=(f"share of |Shapley| of {explained}", "attention received"))
    labels = [f"{h:g} h" for h in hours]
    for k, name in enumerate(names):
        mine = frame[frame["modality"] == name].set_index("hour") if not frame.empty else pd.DataFrame()
        for row, column in ((1, "share"), (2, "attention")):
            values = [float(mine.loc[h, column]) if h in mine.index else None for h in hours]
            values = [None if v is None or math.isnan(v) else v for v in values]
            fig.add_trace(go.Bar(x=labels, y=values, name=titles[name], marker_color=modality_color(name, k),
                                 legendgroup=name, showlegend=row == 1,
                                 hovertemplate="%{x}: %{y:.2f}<extra>" + titles[name] + "</extra>"), row=row, col=1)
    done = set() if frame.empty else set(frame["hour"])
    for label, h in zip(labels, hours):
        if h not in done:
            fig.add_annotation(x=label, y=0.5, text="computing...", showarrow=False, row=1, col=1,
                               font=dict(color="#64748b"))
    fig.update_yaxes(range=[0, 1], tickformat=".0%", row=1, col=1)
    fig.update_yaxes(range=[0, 1], row=2, col=1)
    fig.update_xaxes(title="as of hour", row=2, col=1)
    return finish(fig, "Modality importance over the stay (this stay's figure 2C)", height=460, barmode="stack",
                  legend=dict(orientation="h", x=0, y=-0.15, yanchor="top"), margin=dict(b=40))


def severity_figure(severity: Sequence[float], signal_from: Mapping[str, float], titles: Mapping[str, str],
                    hour: float, stay_hours: float) -> go.Figure:
    """The generator's hourly severity of a SYNTHETIC stay (value at each whole hour from admission), the
    hour each modality starts carrying the outcome signal (dotted lines; NaN: never) and the chosen hour."""
    values = np.asarray(severity, dtype=float)
    fig = go.Figure(go.Scatter(x=np.arange(len(values)), y=values, mode="lines", line=dict(color="#475569"),
                               name="planted severity", hovertemplate="%{x} h: %{y:.3f}<extra>severity</extra>"))
    for k, (name, start) in enumerate(signal_from.items()):
        if not math.isnan(start):
            color = modality_color(name, k)
            fig.add_vline(x=start, line=dict(color=color, dash="dot", width=2))
            fig.add_annotation(x=start, y=0.97 - 0.12 * k, yref="paper", xanchor="left", showarrow=False,
                               text=f" {titles.get(name, name)} from {round(start, 1):g} h", font=dict(size=10, color=color))
    fig.add_vline(x=hour, line=dict(color=HOUR_COLOR, width=2))
    fig.update_xaxes(title="hours since admission", range=[0, stay_hours])
    fig.update_yaxes(title="severity (0-1)", range=[0, 1])
    return finish(fig, "Planted severity of this SYNTHETIC stay", height=280, showlegend=False)
