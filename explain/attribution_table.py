"""One case's attributions as a long table (one row per scored part): what the dashboard's attributions CSV
holds and what the explanation store keeps per case with ``--attributions`` (in Parquet: :func:`to_arrow`,
:func:`from_arrow`). No Streamlit."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from explain.case import CaseExplanation, ExplainSettings, explain_case
from explain.targets import SurvivalTarget
from neurofusion.inference import Predictor

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


# The Parquet form of the table: ``observed`` holds numbers (a lab value) and text (a category) in one column,
# so it is stored as two typed columns and put back together on reading.
ARROW_SCHEMA = pa.schema([pa.field(c, pa.string()) for c in ATTRIBUTION_COLUMNS[:6]]
                         + [pa.field(c, pa.float64()) for c in ("value", "start", "end", "observed_number")]
                         + [pa.field("observed_text", pa.string())])


def to_arrow(table: pd.DataFrame) -> pa.Table:
    """``attribution_table``'s rows (of any number of cases) as an Arrow table of :data:`ARROW_SCHEMA`."""
    observed = table["observed"].tolist()
    text = [v if isinstance(v, str) else None for v in observed]
    number = [None if isinstance(v, str) or v is None or pd.isna(v) else float(v) for v in observed]
    columns = {c: table[c].tolist() for c in ATTRIBUTION_COLUMNS[:6]}
    columns.update({c: pd.to_numeric(table[c], errors="coerce").astype(float).tolist() for c in ("value", "start",
                                                                                                  "end")})
    columns.update(observed_number=number, observed_text=text)
    return pa.Table.from_pydict(columns, schema=ARROW_SCHEMA)


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """The rows :func:`to_arrow` stored, columns :data:`ATTRIBUTION_COLUMNS` (``observed``: the text of a
    category, else the number, NaN where the row has none; ``value``/``start``/``end``: float, NaN where empty)."""
    frame = table.to_pandas()
    text, number = frame.pop("observed_text"), frame.pop("observed_number")
    frame["observed"] = text.astype(object).where(text.notna(), number.astype(object))
    return frame[list(ATTRIBUTION_COLUMNS)]


def explain_attributions(predictor: Predictor, cohort, case_ids: Sequence[str], settings: ExplainSettings,
                         survival: SurvivalTarget | None = None) -> tuple[pd.DataFrame, dict[str, str]]:
    """(every case's :func:`attribution_table` stacked, in ``case_ids`` order; {case_id: why it has no rows}):
    each case explained by :func:`explain.case.explain_case` with ``settings`` (its ``target`` None: the
    predicted class, or a survival model's ``survival`` quantity, as the dashboard's case page explains it). A
    case that cannot be read (CohortError) or explained (ValueError: an input the model cannot take) gets no
    rows and its reason."""
    tables, errors = [], {}
    for case_id in case_ids:
        try:
            case = cohort[case_id]
            tables.append(attribution_table(explain_case(predictor, case, settings, survival=survival)))
        except ValueError as err:  # CohortError is a ValueError
            errors[case_id] = str(err)
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in ATTRIBUTION_COLUMNS}), errors
    return pd.concat(tables, ignore_index=True), errors
