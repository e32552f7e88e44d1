"""Downloads from the case explorer: a self-contained HTML case report and the attributions as CSV."""

from __future__ import annotations

import html
import io

import pandas as pd

from app import figures
from explain.case import CaseExplanation
from neurofusion.data.schema import MODALITIES, Case


def case_report_html(case: Case, explanation: CaseExplanation, architecture: str) -> str:
    """One HTML file that opens offline: plotly's script is embedded once, every figure follows."""
    explained = figures.explained_label(explanation.classes, explanation.target, explanation.contrast)
    parts = [figures.probability_bars(explanation.classes, explanation.probabilities, case.label)]
    parts.append(figures.importance_bars(explanation.to_dict()["modality_importance"], explained))
    if explanation.cross_attention is not None:
        parts.append(figures.attention_heatmap(explanation.cross_attention.mean(0),
                                               [explanation.present[m] for m in MODALITIES], "Cross-modal attention"))
    if explanation.image is not None:
        image = case.image if case.image.ndim == 2 else case.image[case.image.shape[0] // 2]
        method = explanation.image.method
        parts.append(figures.image_overlay(image, explanation.image.map, 0.45, explained=explained, method=method,
                                           smooth=1.0,
                                           title=f"Echo image: {figures.saliency_method_label(method)} for {explained}"))
    if explanation.signal is not None:
        parts.append(figures.ecg_figure(case.signal.data, case.signal.fs, case.signal.channels, explanation.signal,
                                        explained=explained))
    if explanation.tabular is not None:
        parts.append(figures.lab_bars(explanation.tabular, explained))
    blocks = [fig.to_html(full_html=False, include_plotlyjs=(k == 0)) for k, fig in enumerate(parts)]
    note = ""
    if explanation.note is not None:
        scale = max((abs(w.score) for w in explanation.note.words), default=0.0)
        note = (f"<h2>Clinical note</h2>{figures.note_legend_html(scale, explained)}"
                f"<div class='note'>{figures.note_html(case.note, explanation.note.words, scale)}</div>")
    missing = [figures.MODALITY_LABELS[m] for m in MODALITIES if not explanation.present[m]]
    header = (f"<h1>Case {html.escape(case.case_id)}</h1>"
              f"<p><b>Predicted:</b> {html.escape(figures.pretty(explanation.predicted))} "
              f"({explanation.probabilities.max():.1%}) &middot; <b>True label:</b> {html.escape(figures.pretty(case.label))}"
              f" &middot; <b>Explained:</b> {html.escape(explained)}"
              f" &middot; <b>Model:</b> {html.escape(architecture)} &middot; <b>Missing:</b> "
              f"{html.escape(', '.join(missing) or 'none')}</p>"
              "<p class='warn'>Research tool; synthetic demonstration data; not for clinical use.</p>")
    style = ("<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             ".note{line-height:1.7;border:1px solid #ddd;padding:1em}.warn{color:#a00}</style>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Case {html.escape(case.case_id)}</title>"
            f"{style}</head><body>{header}{''.join(blocks)}{note}</body></html>")


ATTRIBUTION_COLUMNS = ("case_id", "explained_class", "contrast_class", "part", "method", "item", "value", "start",
                       "end", "observed")


def attributions_csv(explanation: CaseExplanation) -> bytes:
    """Long-format table: modality importance, note words, ECG leads and segments, labs, every row naming
    the case and the class the attributions explain (``contrast_class`` blank unless they explain
    explained_class minus contrast_class). (The image map is too large for a table; it is in the HTML
    report.)"""
    rows = []
    for method, scores in explanation.to_dict()["modality_importance"].items():
        for modality, value in scores.items():
            rows.append({"part": "modality_importance", "method": method, "item": modality, "value": value})
    if explanation.note is not None:
        for word in explanation.note.words:
            rows.append({"part": "note_word", "method": "layer_integrated_gradients", "item": word.text,
                         "value": word.score, "start": word.start, "end": word.end})
    if explanation.signal is not None:
        for lead, value, recorded in zip(explanation.signal.leads, explanation.signal.lead_importance,
                                         explanation.signal.recorded):
            rows.append({"part": "ecg_lead", "method": "integrated_gradients", "item": lead,
                         "value": value if recorded else None})
        for rank, segment in enumerate(explanation.signal.segments, start=1):
            rows.append({"part": "ecg_segment", "method": "integrated_gradients", "item": f"top {rank}",
                         "value": segment.score, "start": segment.start_s, "end": segment.end_s})
    if explanation.tabular is not None:
        for _, lab in explanation.tabular.iterrows():
            rows.append({"part": "lab", "method": lab["method"], "item": lab["name"],
                         "value": lab["score"] if lab["measured"] else None, "observed": lab["value"]})
    table = pd.DataFrame(rows, columns=list(ATTRIBUTION_COLUMNS[3:]))
    table.insert(0, "case_id", explanation.case_id)
    table.insert(1, "explained_class", explanation.classes[explanation.target])
    table.insert(2, "contrast_class", "" if explanation.contrast is None else explanation.classes[explanation.contrast])
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    return buffer.getvalue().encode("utf-8")
