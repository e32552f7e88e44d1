"""The case page's "What if…" section: edit a lab value, strike or negate a highlighted note phrase, drop
ECG leads or a time window, and see the model's exact answer on the edited case (explain.whatif) beside
the original. Widgets only; the edits and the re-prediction are explain.whatif's."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import streamlit as st

from app import figures
from app.case_notes import MODALITY_NOUNS
from app.figures import pretty
from explain.case import CaseExplanation
from explain.whatif import (
    LabLimit,
    WhatIfResult,
    drop_leads,
    drop_window,
    edits_of,
    lab_limits,
    negate_phrase,
    strike_phrase,
    what_if,
    with_lab,
)
from neurofusion.data.dataset import InputSpec
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.inference import Predictor

PHRASES_OFFERED = 8  # the explanation's top phrases, as listed under the note
NOT_MEASURED = "not measured"
STRIKE, NEGATE, LEADS, WINDOW = "case.whatif_strike", "case.whatif_negate", "case.whatif_leads", "case.whatif_window"


def lab_key(name: str) -> str:
    return f"case.whatif_lab.{name}"


def control_keys(spec: InputSpec) -> tuple[str, ...]:
    """Every what-if widget key for a checkpoint: they belong to the case and reset when it changes."""
    return tuple(lab_key(f.name) for f in spec.features) + (STRIKE, NEGATE, LEADS, WINDOW)


@st.cache_resource(max_entries=4)
def _limits(_predictor: Predictor, model_key: str) -> dict[str, LabLimit]:
    return lab_limits(_predictor)


@st.cache_data(show_spinner="Predicting the edited case...", max_entries=64)
def _what_if(_predictor: Predictor, _case: Case, _edited: Case, model_key: str, case_id: str, case_key: str,
             edits: tuple[str, ...], target: int) -> WhatIfResult:
    """``edits`` (the edited case's descriptions) with the case's files key identify the edited case."""
    return what_if(_predictor, _case, _edited, target)


def what_if_section(predictor: Predictor, model_key: str, case_key: str, case: Case, base: CaseExplanation,
                    status: dict[str, str]) -> None:
    """The controls, the edited case's prediction beside the original's, and both Shapley importances for
    the class predicted for the original case."""
    st.subheader("What if…")
    st.caption("Edit the case and see the model's own output on the edited case (an exact re-prediction, "
               "nothing approximated), beside the original. Changing case resets every edit.")
    limits = _limits(predictor, model_key)
    keys = control_keys(predictor.spec)
    st.button("Reset the edits", key="case.whatif_reset", on_click=_reset, args=(keys,))
    edited, problems = case, []
    tab_labs, tab_note, tab_ecg = st.tabs(["Edit labs", "Edit note", "Edit ECG"])
    with tab_labs:
        edited = _lab_controls(edited, status["tabular"], limits, problems)
    with tab_note:
        edited = _note_controls(edited, base, status["text"], problems)
    with tab_ecg:
        edited = _ecg_controls(edited, status["signal"], problems)
    for problem in problems:
        st.warning(problem)
    if not edits_of(edited):
        st.caption("No edit yet: change a lab, pick a note phrase or an ECG lead or window above.")
        return
    target = int(base.probabilities.argmax())
    result = _what_if(predictor, case, edited, model_key, case.case_id, case_key, tuple(edits_of(edited)), target)
    _show_result(case, result)


def _reset(keys: Sequence[str]) -> None:
    for key in keys:
        st.session_state.pop(key, None)


def _missing(modality: str, state: str) -> None:
    noun = MODALITY_NOUNS[modality]
    why = f"the model cannot use this case's {noun}" if state == "unusable" else f"this case has no {noun}"
    st.info(f"{figures.MODALITY_LABELS[modality]}: {state}. Nothing to edit: {why}.")


def _lab_controls(case: Case, state: str, limits: dict[str, LabLimit], problems: list[str]) -> Case:
    if state != "used":
        _missing("tabular", state)
        return case
    st.caption("Prefilled with the case's values; empty = not measured. Values outside the range the model "
               "was trained on are refused.")
    columns = st.columns(4)
    edited = case
    for k, (name, limit) in enumerate(limits.items()):
        given = case.tabular.get(name)
        column = columns[k % 4]
        label = f"{name} ({limit.unit})" if limit.unit else name
        if limit.kind == "categorical":
            options = [NOT_MEASURED, *limit.categories]
            index = options.index(given) if given in limit.categories else 0
            chosen = column.selectbox(label, options, index=index, key=lab_key(name))
            value = None if chosen == NOT_MEASURED else chosen
            changed = value != (given if given in limit.categories else None)
        else:
            start = None if _unmeasured(given) else float(given)
            value = column.number_input(label, value=start, key=lab_key(name), format="%.4g", step=None,
                                        help=f"Plausible for this model: {_range(limit)}")
            changed = not (_unmeasured(value) and _unmeasured(start)) and value != start
        if changed:
            try:
                edited = with_lab(edited, name, value, limits)
            except ValueError as err:
                problems.append(f"Lab not applied: {err}.")
    return edited


def _unmeasured(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _range(limit: LabLimit) -> str:
    low = "-∞" if limit.low is None else f"{limit.low:g}"
    high = "∞" if limit.high is None else f"{limit.high:g}"
    return f"{low} to {high} {limit.unit}".strip()


def _note_controls(case: Case, base: CaseExplanation, state: str, problems: list[str]) -> Case:
    if state != "used" or base.note is None:
        _missing("text", state if state != "used" else "missing")
        return case
    phrases = {f"{p.start}:{p.end}": p for p in base.note.phrases[:PHRASES_OFFERED]}
    if not phrases:
        st.info("No phrase of this note moved the prediction enough to be highlighted.")
        return case

    def label(option: str) -> str:
        phrase = phrases[option]
        return f"“{phrase.text}” ({'for' if phrase.score > 0 else 'against'} {pretty(base.predicted)})"

    left, right = st.columns(2)
    struck = left.multiselect("Strike (delete) phrases", list(phrases), key=STRIKE, format_func=label)
    negated = right.multiselect("Negate phrases (insert “no” before them)", list(phrases), key=NEGATE,
                                format_func=label)
    both = set(struck) & set(negated)
    if both:
        problems.append("A phrase cannot be both struck and negated: "
                        + ", ".join(f"“{phrases[o].text}”" for o in sorted(both)) + " is only struck.")
    edits = [(phrases[o], "strike") for o in struck] + [(phrases[o], "negate") for o in negated if o not in both]
    edited = case
    for phrase, action in sorted(edits, key=lambda e: -e[0].start):  # from the end: earlier offsets stay valid
        edited = (strike_phrase if action == "strike" else negate_phrase)(edited, phrase.start, phrase.end)
    st.caption("The highlighted phrases that moved the prediction most. Striking deletes the phrase's "
               "characters; negating inserts “no” (“No” at a sentence start) before it.")
    if edited is not case:
        with st.expander("The edited note"):
            st.text(edited.note)
    return edited


def _ecg_controls(case: Case, state: str, problems: list[str]) -> Case:
    if state != "used":
        _missing("signal", state)
        return case
    signal = case.signal
    leads = st.multiselect("Drop leads (the model sees them as not recorded)", list(signal.channels), key=LEADS)
    duration = round(signal.duration_s, 1)
    window = st.slider("Drop a time window (s): flattened to each lead's baseline", 0.0, duration, (0.0, 0.0),
                       0.1, key=WINDOW, help="Both ends at the same time = no window.")
    edited = case
    try:
        if leads:
            edited = drop_leads(edited, leads)
        if window[1] > window[0]:
            if edited.signal is None:
                problems.append("ECG window not applied: every lead is dropped, so there is no ECG left.")
            else:
                edited = drop_window(edited, float(window[0]), min(float(window[1]), edited.signal.duration_s))
    except ValueError as err:
        problems.append(f"ECG edit not applied: {err}.")
    st.caption("A dropped window keeps the recording's length (later beats keep their times); the model has no "
               "per-sample 'not recorded' mark, so a flat baseline is the closest input to 'nothing seen'.")
    return edited


def _show_result(case: Case, result: WhatIfResult) -> None:
    k = result.target
    name = pretty(result.classes[k])
    st.markdown("**Edits:** " + "; ".join(result.edits))
    left, right = st.columns(2)
    left.metric(f"Original: p({name})", f"{result.original[k]:.1%}")
    right.metric(f"Edited: p({name})", f"{result.edited[k]:.1%}", delta=f"{100 * result.shift:+.1f} points")
    now = pretty(result.classes[int(result.edited.argmax())])
    st.markdown(f"Now predicted: **{now}** · <span id='whatif-result'>{result.edited[k]:.4%}</span> for {name}",
                unsafe_allow_html=True)
    st.plotly_chart(figures.probability_bars(result.classes, result.original, case.label, compare=result.edited,
                                             compare_name="edited case"), key="case.whatif_probabilities")
    table = pd.DataFrame({
        "modality": [figures.MODALITY_LABELS[m] for m in MODALITIES],
        "original": _points(result.original_importance.table("shapley").iloc[0]),
        "edited": _points(result.edited_importance.table("shapley").iloc[0]),
    })
    table["change"] = table["edited"] - table["original"]
    st.markdown(f"**Shapley importance for {name}** (probability points; blank = modality missing)")
    st.dataframe(table.round(2), hide_index=True, key="case.whatif_importance")
    st.caption(f"Each column adds up to p({name}) with every modality present minus with all missing: "
               f"original {result.original_importance.probability_full[0]:.3f} − "
               f"{result.original_importance.probability_none[0]:.3f}, edited "
               f"{result.edited_importance.probability_full[0]:.3f} − "
               f"{result.edited_importance.probability_none[0]:.3f}.")


def _points(row: pd.Series) -> list[float]:
    return [float(v) * 100 if np.isfinite(v) else np.nan for v in row.to_numpy(dtype=float)]
