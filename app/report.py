"""Downloads from the case explorer: a self-contained HTML case report and the attributions as CSV, for any
declared set of modalities (each panel by its kind) and for a survival model (its predicted curve and the
explained quantity)."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping

import plotly.graph_objects as go

from app import case_figures, figures
from explain.attribution_table import attribution_table
from explain.case import CaseExplanation
from neurofusion.data.schema import Case
from neurofusion.survival import KaplanMeier, SurvivalBins


def case_report_html(case: Case, explanation: CaseExplanation, architecture: str,
                     titles: Mapping[str, str] | None = None,
                     survival: tuple[SurvivalBins, float, KaplanMeier | None] | None = None) -> str:
    """One HTML file that opens offline: plotly's script is embedded once, every figure follows. ``titles``:
    {name: title} of the declared modalities (default cardio's). ``survival``: (time bins, horizon, cohort
    Kaplan-Meier or None) of a survival model, whose report starts with the case's predicted curve."""
    titles = dict(titles or figures.MODALITY_LABELS)
    names = explanation.names
    cardio = names == list(figures.MODALITY_LABELS)
    if explanation.survival_curve is not None:
        if survival is None:
            raise ValueError("a survival model's report needs its time bins and horizon (survival=...)")
        bins, horizon, km = survival
        explained = case_figures.quantity_name(explanation.classes[0])
        parts: list[go.Figure] = [case_figures.curve_with_compared(bins, explanation.survival_curve, horizon,
                                                                   cohort=km)]
        value = f"{explanation.probabilities[0]:.1%}"
        prediction = (f"<b>{html.escape(explained)}:</b> {value} &middot; <b>Recorded:</b> "
                      f"{html.escape(_outcome(case, bins.unit))}")
    else:
        explained = figures.explained_label(explanation.classes, explanation.target, explanation.contrast)
        parts = [figures.probability_bars(explanation.classes, explanation.probabilities, case.label)]
        prediction = (f"<b>Predicted:</b> {html.escape(figures.pretty(explanation.predicted))} "
                      f"({explanation.probabilities.max():.1%}) &middot; <b>True label:</b> "
                      f"{html.escape(figures.pretty(case.label))}")
    declared = None if cardio else titles
    parts.append(figures.importance_bars(explanation.to_dict()["modality_importance"], explained, modalities=declared))
    if explanation.cross_attention is not None:
        parts.append(figures.attention_heatmap(explanation.cross_attention.mean(0),
                                               [explanation.present[m] for m in names], "Cross-modal attention",
                                               modalities=declared))
    notes = []
    for name, panel in explanation.panels.items():
        kind, value, title = explanation.kinds.get(name, name), case.value(name), titles.get(name, name)
        if kind == "image":
            heading = f"{title}: {figures.saliency_method_label(panel.method)} for {explained}"
            if value.ndim == 3 and value.shape[0] == 3:
                parts.append(case_figures.colour_overlay(value, panel.map, 0.45, explained=explained,
                                                         method=panel.method, smooth=1.0, title=heading))
            else:
                grey = value if value.ndim == 2 else value[value.shape[0] // 2]
                parts.append(figures.image_overlay(grey, panel.map, 0.45, explained=explained, method=panel.method,
                                                   smooth=1.0, title=heading))
        elif kind == "signal":
            parts.append(figures.ecg_figure(value.data, value.fs, value.channels, panel, explained=explained))
        elif kind == "tabular":
            if case_figures.is_binary_panel(value, {r.name: r for r in panel.itertuples()}):
                parts.append(case_figures.gene_bars(case_figures.gene_table(panel, min_abs=0.01), explained,
                                                    title=title))
            else:
                figure = figures.lab_bars(panel, explained)
                if not cardio:
                    figure.update_layout(title_text=f"{title}: attribution to {explained}")
                parts.append(figure)
        elif kind == "text":
            scale = max((abs(w.score) for w in panel.words), default=0.0)
            heading = "Clinical note" if cardio else title
            notes.append(f"<h2>{html.escape(heading)}</h2>{figures.note_legend_html(scale, explained)}"
                         f"<div class='note'>{figures.note_html(value, panel.words, scale)}</div>")
    blocks = [fig.to_html(full_html=False, include_plotlyjs=(k == 0)) for k, fig in enumerate(parts)]
    missing = [titles.get(m, m) for m in names if not explanation.present[m]]
    header = (f"<h1>Case {html.escape(case.case_id)}</h1>"
              f"<p>{prediction}"
              f" &middot; <b>Explained:</b> {html.escape(explained)}"
              f" &middot; <b>Model:</b> {html.escape(architecture)} &middot; <b>Missing:</b> "
              f"{html.escape(', '.join(missing) or 'none')}</p>"
              "<p class='warn'>Research tool; synthetic demonstration data; not for clinical use.</p>")
    style = ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             ".note{line-height:1.7;border:1px solid #ddd;padding:1em}.warn{color:#a00}</style>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Case {html.escape(case.case_id)}</title>"
            f"{style}</head><body>{header}{''.join(blocks)}{''.join(notes)}</body></html>")


def _outcome(case: Case, unit: str) -> str:
    outcome = case.outcome or {}
    time, event = outcome.get("time"), outcome.get("event")
    if time is None or event is None:
        return "not recorded"
    return case_figures.outcome_text(float(time), float(event), unit)


def attributions_csv(explanation: CaseExplanation) -> bytes:
    """:func:`explain.attribution_table.attribution_table` of the explanation as CSV (UTF-8): modality
    importance, then each declared modality's attributions by kind, every row naming the case and what the
    attributions explain. (An image map is too large for a table; it is in the HTML report.)"""
    buffer = io.StringIO()
    attribution_table(explanation).to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")
