"""The case page's "What if…" section: edit a tabular value (a lab, a clinical value), toggle a gene's
mutation in a mutation panel, strike or negate a highlighted note phrase, drop ECG leads or a time window,
and see the model's exact answer on the edited case (explain.whatif) beside the original. Edits follow the
model's declared modalities (one tab per editable one); a survival model shows its explained quantity and
the edited case's survival curve over the original's. Widgets only; the edits and the re-prediction are
explain.whatif's."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from app import case_figures, figures
from app.case_notes import modality_noun
from app.figures import pretty
from explain.case import CaseExplanation
from explain.targets import SurvivalTarget
from explain.whatif import (
    LabLimit,
    WhatIfResult,
    drop_leads,
    drop_window,
    edits_of,
    lab_limits,
    negate_phrase,
    strike_phrase,
    toggle_mutations,
    what_if,
    with_lab,
)
from neurofusion.data.dataset import InputSpec
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.inference import Predictor

PHRASES_OFFERED = 8  # the explanation's top phrases, as listed under the note
NOT_MEASURED = "not measured"
STRIKE, NEGATE, LEADS, WINDOW = "case.whatif_strike", "case.whatif_negate", "case.whatif_leads", "case.whatif_window"
TOGGLE = "case.whatif_toggle"
# Why an image cannot be edited here (the ablation above withholds it).
IMAGE_NOT_EDITABLE = ("an image is not edited here: pixel edits have no meaning the model was trained on; "
                      "withhold it with the ablation control above instead")


def lab_key(name: str, modality: str = "tabular") -> str:
    """The widget key of tabular feature ``name`` (cardio's labs keep their short keys)."""
    return f"case.whatif_lab.{name}" if modality == "tabular" else f"case.whatif_lab.{modality}.{name}"


def toggle_key(modality: str) -> str:
    return f"{TOGGLE}.{modality}"


def _named(key: str, modality: str, kind: str) -> str:
    """The key of a text / signal control: cardio's own for the modality named after its kind."""
    return key if modality == kind else f"{key}.{modality}"


def control_keys(spec: InputSpec) -> tuple[str, ...]:
    """Every what-if widget key for a checkpoint: they belong to the case and reset when it changes."""
    keys: list[str] = []
    for m in spec.modalities:
        if m.kind == "tabular":
            keys += [lab_key(f.name, m.name) for f in spec.features_of(m.name)] + [toggle_key(m.name)]
        elif m.kind == "text":
            keys += [_named(STRIKE, m.name, "text"), _named(NEGATE, m.name, "text")]
        elif m.kind == "signal":
            keys += [_named(LEADS, m.name, "signal"), _named(WINDOW, m.name, "signal")]
    return tuple(dict.fromkeys(keys + [STRIKE, NEGATE, LEADS, WINDOW]))


@st.cache_resource(max_entries=16)
def _limits(_predictor: Predictor, model_key: str, modality: str) -> dict[str, LabLimit]:
    return lab_limits(_predictor, modality)


@st.cache_data(show_spinner="Predicting the edited case...", max_entries=64)
def _what_if(_predictor: Predictor, _case: Case, _edited: Case, model_key: str, case_id: str, case_key: str,
             edits: tuple[str, ...], target: int, survival: SurvivalTarget | None = None) -> WhatIfResult:
    """``edits`` (the edited case's descriptions) with the case's files key identify the edited case."""
    return what_if(_predictor, _case, _edited, target, survival=survival)


@st.cache_data(show_spinner=False, max_entries=64)
def _edited_curve(_predictor: Predictor, _edited: Case, model_key: str, case_id: str, case_key: str,
                  edits: tuple[str, ...]) -> np.ndarray:
    """(K,) the edited case's predicted survival curve."""
    return _predictor.predict_survival([_edited]).curves[0]


def what_if_section(predictor: Predictor, model_key: str, case_key: str, case: Case, base: CaseExplanation,
                    status: dict[str, str], titles: Mapping[str, str] | None = None,
                    survival: SurvivalTarget | None = None) -> None:
    """The controls, the edited case's prediction beside the original's, and both Shapley importances for
    the class predicted for the original case (a survival model: its explained quantity ``survival`` and
    the edited survival curve)."""
    titles = dict(titles or figures.MODALITY_LABELS)
    kinds = {m.name: m.kind for m in predictor.spec.modalities}
    st.subheader("What if…")
    st.caption("Edit the case and see the model's own output on the edited case (an exact re-prediction, "
               "nothing approximated), beside the original. Changing case resets every edit.")
    keys = control_keys(predictor.spec)
    st.button("Reset the edits", key="case.whatif_reset", on_click=_reset, args=(keys,))
    edited, problems = case, []
    editable = [m for m in kinds if kinds[m] != "image"]
    tab_names = [_tab_title(m, kinds[m], titles) for m in editable]
    for modality, tab in zip(editable, st.tabs(tab_names)):
        with tab:
            edited = _controls(predictor, model_key, edited, base, modality, kinds[modality], status, titles,
                               problems)
    cardio = list(kinds) == list(MODALITIES)
    for image in (m for m in kinds if kinds[m] == "image" and not cardio):
        st.caption(f"{titles.get(image, image)}: not offered, {IMAGE_NOT_EDITABLE}.")
    for problem in problems:
        st.warning(problem)
    if not edits_of(edited):
        st.caption("No edit yet: change a lab, pick a note phrase or an ECG lead or window above." if cardio
                   else "No edit yet: change a value or pick a phrase, gene, lead or window above.")
        return
    edits = tuple(edits_of(edited))
    target = int(base.probabilities.argmax())
    result = _what_if(predictor, case, edited, model_key, case.case_id, case_key, edits, target, survival)
    if survival is None:
        _show_result(case, result, titles)
    else:
        curve = _edited_curve(predictor, edited, model_key, case.case_id, case_key, edits)
        _show_survival_result(predictor, base, result, curve, titles)


def _tab_title(modality: str, kind: str, titles: Mapping[str, str]) -> str:
    if modality in MODALITIES and modality == kind:  # cardio's tabs keep their names
        return {"tabular": "Edit labs", "text": "Edit note", "signal": "Edit ECG"}[kind]
    return f"Edit {titles.get(modality, modality).lower()}"


def _controls(predictor: Predictor, model_key: str, case: Case, base: CaseExplanation, modality: str, kind: str,
              status: dict[str, str], titles: Mapping[str, str], problems: list[str]) -> Case:
    state = status.get(modality, "missing")
    if kind == "tabular":
        limits = _limits(predictor, model_key, modality)
        if state == "used" and case_figures.is_binary_panel(case.value(modality), limits):
            return _gene_controls(case, modality, base, titles, problems)
        return _lab_controls(case, modality, state, limits, titles, problems)
    if kind == "text":
        return _note_controls(case, base, modality, state, titles, problems)
    return _ecg_controls(case, modality, state, titles, problems)
def _reset(keys: Sequence[str]) -> None:
    for key in keys:
        st.session_state.pop(key, None)


def _missing(modality: str, state: str, titles: Mapping[str, str], kind: str) -> None:
    noun = modality_noun(modality, titles, {modality: kind})
    why = f"the model cannot use this case's {noun}" if state == "unusable" else f"this case has no {noun}"
    st.info(f"{titles.get(modality, modality)}: {state}. Nothing to edit: {why}.")


def _lab_controls(case: Case, modality: str, state: str, limits: dict[str, LabLimit], titles: Mapping[str, str],
                  problems: list[str]) -> Case:
    if state != "used":
        _missing(modality, state, titles, "tabular")
        return case
    st.caption("Prefilled with the case's values; empty = not measured. Values outside the range the model "
               "was trained on are refused.")
    columns = st.columns(4)
    edited = case
    values = case.value(modality)
    for k, (name, limit) in enumerate(limits.items()):
        given = values.get(name)
        column = columns[k % 4]
        label = f"{name} ({limit.unit})" if limit.unit else name
        if limit.kind == "categorical":
            options = [NOT_MEASURED, *limit.categories]
            index = options.index(given) if given in limit.categories else 0
            chosen = column.selectbox(label, options, index=index, key=lab_key(name, modality))
            value = None if chosen == NOT_MEASURED else chosen
            changed = value != (given if given in limit.categories else None)
        else:
            start = None if _unmeasured(given) else float(given)
            value = column.number_input(label, value=start, key=lab_key(name, modality), format="%.4g", step=None,
                                        help=f"Plausible for this model: {_range(limit)}")
            changed = not (_unmeasured(value) and _unmeasured(start)) and value != start
        if changed:
            try:
                edited = with_lab(edited, name, value, limits, modality=modality)
            except ValueError as err:
                what = "Lab" if modality == "tabular" else f"{titles.get(modality, modality)} value"
                problems.append(f"{what} not applied: {err}.")
    return edited


def _gene_controls(case: Case, modality: str, base: CaseExplanation, titles: Mapping[str, str],
                   problems: list[str]) -> Case:
    """A mutation panel: pick genes whose mutation status flips (the mutated ones first, then by
    |attribution| to the explained quantity)."""
    values = case.value(modality)
    panel = base.panels.get(modality)
    score = {} if panel is None else dict(zip(panel["name"], panel["score"].astype(float).abs()))
    mutated = [g for g, v in values.items() if not _unmeasured(v) and float(v) == 1.0]
    order = mutated + sorted((g for g in values if g not in mutated), key=lambda g: -score.get(g, 0.0))
    genes = st.multiselect(f"Toggle the mutation of genes ({len(mutated)} of {len(values)} mutated)", order,
                           key=toggle_key(modality),
                           format_func=lambda g: f"{g} ({'mutated → not' if g in mutated else 'add mutation'})")
    st.caption("A mutated gene becomes unmutated and the other way round; the rest of the panel stays as it is.")
    if not genes:
        return case
    try:
        return toggle_mutations(case, genes, modality=modality)
    except ValueError as err:
        problems.append(f"{titles.get(modality, modality)} edit not applied: {err}.")
        return case


def _unmeasured(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _range(limit: LabLimit) -> str:
    low = "-∞" if limit.low is None else f"{limit.low:g}"
    high = "∞" if limit.high is None else f"{limit.high:g}"
    return f"{low} to {high} {limit.unit}".strip()


def _note_controls(case: Case, base: CaseExplanation, modality: str, state: str, titles: Mapping[str, str],
                   problems: list[str]) -> Case:
    note = base.panels.get(modality) if base.panels else base.note
    if state != "used" or note is None:
        _missing(modality, state if state != "used" else "missing", titles, "text")
        return case
    phrases = {f"{p.start}:{p.end}": p for p in note.phrases[:PHRASES_OFFERED]}
    if not phrases:
        st.info("No phrase of this note moved the prediction enough to be highlighted.")
        return case
    toward = pretty(base.predicted)

    def label(option: str) -> str:
        phrase = phrases[option]
        return f"“{phrase.text}” ({'for' if phrase.score > 0 else 'against'} {toward})"

    left, right = st.columns(2)
    struck = left.multiselect("Strike (delete) phrases", list(phrases), key=_named(STRIKE, modality, "text"),
                              format_func=label)
    negated = right.multiselect("Negate phrases (insert “no” before them)", list(phrases),
                                key=_named(NEGATE, modality, "text"), format_func=label)
    both = set(struck) & set(negated)
    if both:
        problems.append("A phrase cannot be both struck and negated: "
                        + ", ".join(f"“{phrases[o].text}”" for o in sorted(both)) + " is only struck.")
    edits = [(phrases[o], "strike") for o in struck] + [(phrases[o], "negate") for o in negated if o not in both]
    edited = case
    for phrase, action in sorted(edits, key=lambda e: -e[0].start):  # from the end: earlier offsets stay valid
        try:
            edited = (strike_phrase if action == "strike" else negate_phrase)(edited, phrase.start, phrase.end,
                                                                              modality=modality)
        except ValueError as err:
            problems.append(f"Note edit not applied: {err}.")
    st.caption("The highlighted phrases that moved the prediction most. Striking deletes the phrase's "
               "characters; negating inserts “no” (“No” at a sentence start) before it.")
    if edited is not case:
        with st.expander("The edited note"):
            st.text(edited.value(modality))
    return edited


def _ecg_controls(case: Case, modality: str, state: str, titles: Mapping[str, str], problems: list[str]) -> Case:
    if state != "used":
        _missing(modality, state, titles, "signal")
        return case
    signal = case.value(modality)
    leads = st.multiselect("Drop leads (the model sees them as not recorded)", list(signal.channels),
                           key=_named(LEADS, modality, "signal"))
    duration = round(signal.duration_s, 1)
    window = st.slider("Drop a time window (s): flattened to each lead's baseline", 0.0, duration, (0.0, 0.0),
                       0.1, key=_named(WINDOW, modality, "signal"), help="Both ends at the same time = no window.")
    edited = case
    try:
        if leads:
            edited = drop_leads(edited, leads, modality=modality)
        if window[1] > window[0]:
            if edited.value(modality) is None:
                problems.append("ECG window not applied: every lead is dropped, so there is no ECG left.")
            else:
                edited = drop_window(edited, float(window[0]),
                                     min(float(window[1]), edited.value(modality).duration_s), modality=modality)
    except ValueError as err:
        problems.append(f"ECG edit not applied: {err}.")
    st.caption("A dropped window keeps the recording's length (later beats keep their times); the model has no "
               "per-sample 'not recorded' mark, so a flat baseline is the closest input to 'nothing seen'.")
    return edited


def _show_result(case: Case, result: WhatIfResult, titles: Mapping[str, str]) -> None:
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
    st.markdown(f"**Shapley importance for {name}** (probability points; blank = modality missing)")
    st.dataframe(_importance_table(result, titles), hide_index=True, key="case.whatif_importance")
    st.caption(f"Each column adds up to p({name}) with every modality present minus with all missing: "
               f"original {result.original_importance.probability_full[0]:.3f} − "
               f"{result.original_importance.probability_none[0]:.3f}, edited "
               f"{result.edited_importance.probability_full[0]:.3f} − "
               f"{result.edited_importance.probability_none[0]:.3f}.")


def _show_survival_result(predictor: Predictor, base: CaseExplanation, result: WhatIfResult, curve: np.ndarray,
                          titles: Mapping[str, str]) -> None:
    """The explained quantity before and after, the edited survival curve over the original's, and both
    Shapley importances of the quantity."""
    name = case_figures.quantity_name(result.classes[0])
    config = predictor.model.config
    st.markdown("**Edits:** " + "; ".join(result.edits))
    left, right = st.columns(2)
    left.metric(f"Original: {name}", f"{result.original[0]:.1%}")
    right.metric(f"Edited: {name}", f"{result.edited[0]:.1%}", delta=f"{100 * result.shift:+.1f} points")
    st.markdown(f"Edited case: <span id='whatif-result'>{result.edited[0]:.4%}</span> ({name})",
                unsafe_allow_html=True)
    st.plotly_chart(case_figures.curve_with_compared(config.survival_bins, base.survival_curve, config.horizon, curve,
                                                     compared_name="edited case",
                                                     title="Predicted survival: original and edited"),
                    key="case.whatif_curve")
    st.markdown(f"**Shapley importance for {name}** (points; blank = modality missing)")
    st.dataframe(_importance_table(result, titles), hide_index=True, key="case.whatif_importance")
    st.caption(f"Each column adds up to {name} with every modality present minus with all missing: "
               f"original {result.original_importance.probability_full[0]:.3f} − "
               f"{result.original_importance.probability_none[0]:.3f}, edited "
               f"{result.edited_importance.probability_full[0]:.3f} − "
               f"{result.edited_importance.probability_none[0]:.3f}.")


def _importance_table(result: WhatIfResult, titles: Mapping[str, str]) -> pd.DataFrame:
    original = result.original_importance.table("shapley").iloc[0]
    edited = result.edited_importance.table("shapley").iloc[0]
    table = pd.DataFrame({
        "modality": [titles.get(m, m) for m in original.index],
        "original": _points(original),
        "edited": _points(edited.reindex(original.index)),
    })
    table["change"] = table["edited"] - table["original"]
    return table.round(2)


def _points(row: pd.Series) -> list[float]:
    return [float(v) * 100 if np.isfinite(v) else np.nan for v in row.to_numpy(dtype=float)]
