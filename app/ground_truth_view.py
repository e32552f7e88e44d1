"""What a synthetic cohort planted in a case (its ``ground_truth.csv`` row), for the case page to draw over
the explanation: the image region, the ECG leads, the driver genes, the note phrases and the per-modality
evidence strengths beside the model's importance and the raters' ranks, over the declared modalities
(cardio's image_roi / signal_leads columns, or <image modality>_roi and driver_genes of the cancer cohort).
Overlays are added to the figures app/figures.py returns (plotly shapes and annotations), so the figures
themselves stay the same with or without it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from app.figures import MODALITY_LABELS
from explain.agreement import ranking_scores
from explain.text import Span
from neurofusion.data.schema import MODALITIES, lead_key

PLANTED_COLOR = "#15803d"  # green: not the red/blue of attributions nor the purple of the top ECG segments


@dataclass
class Planted:
    """One case's planted evidence. strengths: declared modality -> [0, 1] (None = the case lacks it), in
    declaration order. roi: (x0, y0, x1, y1) pixel box on the image or None. leads: ECG leads carrying the
    finding. phrases: note phrases expressing it. distractor: a weaker competing finding, '' if none.
    genes: planted driver genes of a mutation panel."""

    case_id: str
    strengths: dict[str, float | None]
    roi: tuple[int, int, int, int] | None = None
    leads: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    distractor: str = ""
    genes: list[str] = field(default_factory=list)


def planted(truth: pd.DataFrame | None, case_id: str, names: Sequence[str] = MODALITIES,
            image: str | None = None) -> Planted | None:
    """The case's row of ``CohortReader.ground_truth()`` (None when the cohort has none or omits the case),
    for the declared modalities ``names`` (a strength_<name> column each; a modality without one counts as
    not planted). ``image``: the declared image modality whose ``<image>_roi`` column holds the region
    (default: the image_roi column). Raises ValueError for a region that is not four whole numbers
    x0 y0 x1 y1, or a strength that is not a number."""
    if truth is None or case_id not in set(truth["case_id"]):
        return None
    row = truth.loc[truth["case_id"] == case_id].iloc[0]
    strengths = {m: _strength(row, m, case_id) for m in names}
    column = f"{image}_roi" if image is not None and f"{image}_roi" in row.index else "image_roi"
    roi_text = str(row.get(column, "") or "").strip()
    roi = None
    if roi_text:
        parts = roi_text.split()
        if len(parts) != 4 or not all(p.lstrip("-").isdigit() for p in parts):
            raise ValueError(f"ground_truth.csv: {column} of {case_id} must be 'x0 y0 x1 y1' in pixels, "
                             f"got {roi_text!r}")
        roi = tuple(int(p) for p in parts)
    leads = str(row.get("signal_leads", "") or "").split()
    phrases = [p.strip() for p in str(row.get("text_evidence", "") or "").split("|") if p.strip()]
    genes = [g for g in re.split(r"[\s|,;]+", str(row.get("driver_genes", "") or "")) if g]
    return Planted(case_id, strengths, roi, leads, phrases, str(row.get("distractor", "") or ""), genes)


def _strength(row: pd.Series, modality: str, case_id: str) -> float | None:
    value = row.get(f"strength_{modality}")
    if value is None or pd.isna(value) or str(value).strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"ground_truth.csv: strength_{modality} of {case_id} must be a number in [0, 1], "
                         f"got {value!r}") from None


def mark_roi(fig: go.Figure, roi: tuple[int, int, int, int]) -> go.Figure:
    """The planted box on an image figure whose pixels are at integer x (column) and y (row)."""
    x0, y0, x1, y1 = roi
    fig.add_shape(type="rect", xref="x", yref="y", x0=x0 - 0.5, y0=y0 - 0.5, x1=x1 + 0.5, y1=y1 + 0.5,
                  line=dict(color=PLANTED_COLOR, width=2, dash="dash"), name="planted region")
    fig.add_annotation(x=x0, y=y0, xref="x", yref="y", text="planted", showarrow=False, xanchor="left",
                       yanchor="bottom", font=dict(color=PLANTED_COLOR, size=12), bgcolor="rgba(255,255,255,0.7)")
    return fig


def mark_leads(fig: go.Figure, leads: list[str]) -> list[str]:
    """Outline every trace drawn for a planted lead (a line trace named by the lead) over its whole length:
    the synthetic finding runs through the whole recording. Returns the leads found in the figure."""
    wanted = {lead_key(lead) for lead in leads}
    marked = []
    for trace in fig.data:
        if trace.type != "scatter" or not trace.name or lead_key(trace.name) not in wanted or trace.y is None:
            continue
        y = np.asarray(trace.y, dtype=float)
        if trace.x is not None:
            x = np.asarray(trace.x, dtype=float)
            start, end = float(x.min()), float(x.max())
        else:
            start = float(trace.x0 or 0.0)
            end = start + float(trace.dx or 1.0) * (len(y) - 1)
        fig.add_shape(type="rect", xref=trace.xaxis or "x", yref=trace.yaxis or "y", x0=start, x1=end,
                      y0=float(np.nanmin(y)), y1=float(np.nanmax(y)), line=dict(color=PLANTED_COLOR, width=1.5),
                      fillcolor="rgba(21,128,61,0.06)", name=f"planted {trace.name}")
        marked.append(trace.name)
    return marked


def mark_lead_bars(fig: go.Figure, leads: list[str]) -> go.Figure:
    """'planted' above each planted lead's bar in the lead-importance figure."""
    for lead in leads:
        fig.add_annotation(x=lead, y=1, yref="paper", text="planted", showarrow=False, yanchor="bottom",
                           font=dict(color=PLANTED_COLOR, size=10))
    return fig


def phrase_table(note: str, phrases: list[str], words: list[Span]) -> pd.DataFrame:
    """Each planted phrase, where it is in the note and the model's attribution summed over its words."""
    rows = []
    for phrase in phrases:
        start = note.find(phrase)
        if start < 0:
            rows.append({"planted phrase": phrase, "characters": "not in the note", "attribution": np.nan})
            continue
        end = start + len(phrase)
        score = sum(w.score for w in words if w.start >= start and w.end <= end)
        rows.append({"planted phrase": phrase, "characters": f"{start}-{end}", "attribution": round(score, 4)})
    return pd.DataFrame(rows, columns=["planted phrase", "characters", "attribution"])


def strength_table(truth: Planted, shapley: dict[str, float], rater_ranks: pd.DataFrame | None,
                   titles: Mapping[str, str] | None = None, magnitude: bool = False) -> pd.DataFrame:
    """Per declared modality (``truth.strengths``' order): the planted strength and its rank, the model's
    Shapley value and rank, and each rater's rank. ``shapley``: modality -> value (NaN = missing).
    ``titles``: {name: title} (default cardio's labels). ``magnitude``: rank the model by |Shapley|, as a survival
    model is ranked everywhere (explain.agreement.ranking_scores)."""
    names = list(truth.strengths)
    labels = titles or MODALITY_LABELS
    strengths = pd.Series({m: np.nan if truth.strengths[m] is None else truth.strengths[m] for m in names})
    model = pd.Series({m: float(shapley.get(m, np.nan)) for m in names})
    ranked = ranking_scores(model, magnitude)
    table = pd.DataFrame({
        "modality": [labels.get(m, m) for m in names],
        "planted strength": strengths.round(3).to_numpy(),
        "planted rank": strengths.rank(ascending=False, method="min").to_numpy(),
        "model Shapley": model.round(4).to_numpy(),
        "model rank": ranked.rank(ascending=False, method="min").to_numpy(),
    })
    if rater_ranks is not None:
        for _, row in rater_ranks.iterrows():
            table[f"{row['rater']} rank"] = [np.nan if m not in row.index or pd.isna(row[m]) or row[m] == ""
                                             else float(row[m]) for m in names]
    return table


def mark_genes(fig: go.Figure, genes: Sequence[str]) -> list[str]:
    """'planted' beside each planted driver gene's bar in a gene attribution figure (bars labelled by gene,
    optionally with a '★ ' prefix or a ' (not mutated)' suffix). Returns the genes found."""
    wanted = set(genes)
    found = []
    for trace in fig.data:
        if trace.type != "bar" or trace.y is None:
            continue
        for label in trace.y:
            gene = str(label).removeprefix("★ ").split(" (")[0]
            if gene in wanted:
                fig.add_annotation(x=1, xref="paper", y=label, yref="y", text="planted driver", showarrow=False,
                                   xanchor="right", font=dict(color=PLANTED_COLOR, size=11))
                found.append(gene)
    return found
