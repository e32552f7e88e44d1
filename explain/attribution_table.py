"""One case's attributions as a long table (one row per scored part): what the dashboard's attributions CSV
holds and what the explanation store keeps per case with ``--attributions``. No Streamlit."""

from __future__ import annotations

import pandas as pd

from explain.case import CaseExplanation

ATTRIBUTION_COLUMNS = ("case_id", "explained_class", "contrast_class", "part", "method", "item", "value", "start",
                       "end", "observed")
# The part names of cardio's modalities (named after their kinds); any other modality's rows are "<name>_word",
# "<name>_lead", "<name>_segment" or "<name>_value".
_CARDIO_PARTS = {"text": "note_word", "signal": ("ecg_lead", "ecg_segment"), "tabular": "lab"}


def attribution_table(explanation: CaseExplanation) -> pd.DataFrame:
    """Long-format table, columns :data:`ATTRIBUTION_COLUMNS`: modality importance, then each declared
    modality's attributions by kind (note words, ECG leads and segments, tabular values: cardio's parts
    note_word, ecg_lead, ecg_segment, lab; another modality's prefixed by its name), every row naming the case
    and what the attributions explain (a class, or a survival model's quantity; ``contrast_class`` blank unless
    they explain explained_class minus contrast_class). ``value`` is empty for a lead that was not recorded or
    a value that was not measured; ``start``/``end`` are a word's character offsets or a segment's seconds;
    ``observed`` is a tabular value as the case has it. (An image map is too large for a table.)"""
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
    return table
