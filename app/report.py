"""Downloads from the case explorer: a self-contained HTML case report and the attributions as CSV, for any
declared set of modalities (each panel by its kind) and for a survival model (its predicted curve and the
explained quantity)."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from app import case_figures, figures
from explain.case import CaseExplanation
from neurofusion.data.schema import Case
from neurofusion.survival import KaplanMeier, SurvivalBins

# The CSV's part names of cardio's modalities (named after their kinds); any other modality's rows are
# "<name>_word", "<name>_lead", "<name>_segment" or "<name>_value".
_CARDIO_PARTS = {"text": "note_word", "signal": ("ecg_lead", "ecg_segment"), "tabular": "lab"}


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


ATTRIBUTION_COLUMNS = ("case_id", "explained_class", "contrast_class", "part", "method", "item", "value", "start",
                       "end", "observed")


def attributions_csv(explanation: CaseExplanation) -> bytes:
    """Long-format table: modality importance, then each declared modality's attributions by kind (note
    words, ECG leads and segments, tabular values: cardio's parts note_word, ecg_lead, ecg_segment, lab;
    another modality's prefixed by its name), every row naming the case and what the attributions explain
    (a class, or a survival model's quantity; ``contrast_class`` blank unless they explain explained_class
    minus contrast_class). (An image map is too large for a table; it is in the HTML report.)"""
    rows = []
    for method, scores in explanation.to_dict()["modality_importance"].items():
        for modality, value in scores.items():
            rows.append({"part": "modality_importance", "method": method, "item": modality, "value": value})
    for name, panel in explanation.panels.items():
        kind = explanation.kinds.get(name, name)
        own = name == kind and name in _CARDIO_PARTS
        if kind == "text":
            part = _CARDIO_PARTS["text"] if own else f"{name}_word"
            for word in panel.words:
                rows.append({"part": part, "method": "layer_integrated_gradients", "item": word.text,
                             "value": word.score, "start": word.start, "end": word.end})
        elif kind == "signal":
            lead_part, segment_part = _CARDIO_PARTS["signal"] if own else (f"{name}_lead", f"{name}_segment")
            for lead, value, recorded in zip(panel.leads, panel.lead_importance, panel.recorded):
                rows.append({"part": lead_part, "method": "integrated_gradients", "item": lead,
                             "value": value if recorded else None})
            for rank, segment in enumerate(panel.segments, start=1):
                rows.append({"part": segment_part, "method": "integrated_gradients", "item": f"top {rank}",
                             "value": segment.score, "start": segment.start_s, "end": segment.end_s})
        elif kind == "tabular":
            part = _CARDIO_PARTS["tabular"] if own else f"{name}_value"
            for _, lab in panel.iterrows():
                rows.append({"part": part, "method": lab["method"], "item": lab["name"],
                             "value": lab["score"] if lab["measured"] else None, "observed": lab["value"]})
    table = pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS[3:]))
    table.insert(0, "case_id", explanation.case_id)
    table.insert(1, "explained_class", explanation.classes[explanation.target])
    table.insert(2, "contrast_class", "" if explanation.contrast is None else explanation.classes[explanation.contrast])
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")
