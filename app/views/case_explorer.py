"""Case explorer: one patient's prediction, why (attention, modality importance, each modality's
attribution), how it changes when modalities are withheld, and how the model's ranking compares with
the raters'. Any class can be explained, or one class against another. The page follows the model's
declared modalities (tabs titled by their titles, panels chosen by kind); for a survival model the
prediction is a survival curve and the explained quantity is chosen (app/case_survival.py)."""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import streamlit as st

from app import (case_figures, case_notes, case_panels, case_survival, figures, ground_truth_view,
                 interaction_figures, whatif_view)
from app.case_figures import LABEL_SEPARATOR, chosen_case
from app.figures import pretty
from app.report import attributions_csv, case_report_html
from app.case_progress import CaseJob
from app.page_runs import redraw_interrupted_page
from app.state import CASE_ERRORS, case_key, context
from explain.ablation import partial_case
from explain.agreement import importance_to_ranks, model_vs_raters, ranking_scores
from explain.case import CaseExplanation
from explain.contrast import contrast_explanations
from explain.interaction_attention import attention_interaction_correlation
from explain.interactions import shapley_interactions
from explain.targets import SurvivalTarget
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import Case

ctx = context()
if ctx.timed:  # the ICU task: a case is a stay seen as of an hour, drawn by app/case_icu.py
    from app import case_icu

    case_icu.page(ctx)
    st.stop()
NAMES, TITLES, KINDS, SURVIVAL = ctx.names, ctx.titles, ctx.kinds, ctx.survival
FILTERS = ("case.filter_true", "case.filter_pred", "case.filter_outcome", "case.filter_missing", "case.filter_site")
DECLARED = case_panels.Declared(NAMES, TITLES, KINDS, SURVIVAL)
# Controls that are about one case (which class to explain, how much of each modality to observe): another
# case starts them afresh rather than inheriting settings that were about a different patient.
CASE_CONTROLS = (("case.explain_class", "case.contrast_class", case_survival.QUANTITY, case_survival.HORIZON)
                 + tuple(f"case.ablate_{m}" for m in NAMES) + whatif_view.control_keys(ctx.predictor.spec))

st.title("Case explorer")
# The filters and the case list are drawn here but filled in at the end of the page: their labels need
# every case's prediction, and the selected case is shown first rather than after the whole cohort is
# predicted. Filters that need predictions compute them before anything else.
chooser = st.container()


def _filtered(cases: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.DataFrame:
    """The cohort table (or the predictions table) narrowed by the filters' current values."""
    if SURVIVAL:
        return case_survival.filtered(ctx, cases, predictions)
    state = st.session_state
    shown = cases
    if state.get("case.filter_true"):
        shown = shown[shown["label"].isin(state["case.filter_true"])]
    if predictions is not None:
        by_id = predictions.set_index("case_id").loc[shown["case_id"]]
        keep = np.ones(len(shown), dtype=bool)
        if state.get("case.filter_pred"):
            keep &= by_id["predicted"].isin(state["case.filter_pred"]).to_numpy()
        if state.get("case.filter_outcome", "all") != "all":  # an unreadable case is neither
            keep &= ((by_id["correct"] == (state["case.filter_outcome"] == "correct")) & (by_id["error"] == "")).to_numpy()
        shown = shown[keep]
    for modality in state.get("case.filter_missing") or ():
        shown = shown[~shown[f"has_{modality}"]]
    if state.get("case.filter_site"):
        shown = shown[shown["site"].isin(state["case.filter_site"])]
    return shown


def _draw_chooser(predictions: pd.DataFrame | None, ids: list[str]) -> None:
    """The case list and its filters; without ``predictions`` (not computed yet) each case is labelled by its
    true class only."""
    with chooser:
        pick, filters = st.columns([5, 1], vertical_alignment="bottom")
        with filters.popover("Filter cases", width="stretch"):
            if SURVIVAL:
                case_survival.draw_filters(ctx, predictions)
            else:
                _class_filters()
        if not ids:
            pick.warning("No case matches these filters.")
            return
        if predictions is None:
            labels = cases.set_index("case_id")["label"].to_dict()
            pick.selectbox(f"Case ({len(ids)} of {len(cases)})", ids, key="case.id",
                           format_func=lambda i: f"{i}{LABEL_SEPARATOR}true {pretty(labels[i])}")
            st.caption("The list shows each case's prediction once every case is predicted (after this case's "
                       "explanation).")
            return
        rows = predictions.set_index("case_id").to_dict("index")  # one pass: Streamlit labels every option
        pick.selectbox(f"Case ({len(ids)} of {len(predictions)})", ids, key="case.id",
                       format_func=lambda i: _case_label(i, rows[i]))
        unreadable = int((predictions["error"] != "").sum())
        if unreadable:
            st.caption(f"{unreadable} case{'s' if unreadable > 1 else ''} of this cohort cannot be read "
                       "(marked \"unreadable\"); open one to see why.")


def _class_filters() -> None:
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.multiselect("True class", ctx.classes, key=FILTERS[0], format_func=pretty)
    c2.multiselect("Predicted class", ctx.classes, key=FILTERS[1], format_func=pretty)
    c3.radio("Prediction", ("all", "correct", "wrong"), key=FILTERS[2], horizontal=True)
    c4.multiselect("Missing modality", NAMES, key=FILTERS[3], format_func=TITLES.get)
    c5.multiselect("Site", sorted(cases["site"].unique()), key=FILTERS[4])


def _case_label(case_id: str, row: Mapping[str, object]) -> str:
    if SURVIVAL:
        return case_survival.case_label(ctx, case_id, row)
    if row["error"]:
        return f"{case_id}{LABEL_SEPARATOR}true {pretty(row['label'])} · unreadable"
    return (f"{case_id}{LABEL_SEPARATOR}true {pretty(row['label'])} · predicted {pretty(row['predicted'])}"
            f"{'' if row['correct'] else ' ✗'}")


cases = ctx.cohort.table[["case_id", "label", "site"] + (["time", "event"] if SURVIVAL else [])
                         + [f"has_{m}" for m in NAMES]]
if SURVIVAL:
    needs_predictions = case_survival.needs_predictions()
else:
    needs_predictions = bool(st.session_state.get("case.filter_pred")) or st.session_state.get("case.filter_outcome",
                                                                                                "all") != "all"
ids = _filtered(cases, ctx.predictions() if needs_predictions else None)["case_id"].tolist()
if not ids:
    _draw_chooser(ctx.predictions(), ids)
    st.stop()
requested = st.query_params.get("case")  # ?case=CV-00156, e.g. from the clinician agreement table
if requested and requested != st.session_state.get("case.last_query"):
    st.session_state["case.last_query"] = requested
    if requested in ids:
        st.session_state["case.id"] = requested
chosen = chosen_case(st.session_state.get("case.id"), ids)
st.session_state["case.id"] = chosen if chosen is not None else ids[0]
case_id = st.session_state["case.id"]
st.query_params["case"] = case_id
st.session_state["case.last_query"] = case_id
for key in case_panels.TAB_CONTROLS:
    if key in st.session_state:  # keep the value while its tab is closed (see case_panels.TAB_CONTROLS)
        st.session_state[key] = st.session_state[key]
if st.session_state.get("case.controls_for") != case_id:
    for key in CASE_CONTROLS:
        st.session_state.pop(key, None)
    st.session_state["case.controls_for"] = case_id


def _prediction_card(case: Case, explanation: CaseExplanation, status: dict[str, str]) -> None:
    verdict = "correct" if explanation.predicted == case.label else "wrong"
    st.metric("Predicted", pretty(explanation.predicted))
    st.markdown(f"**Probability:** {explanation.probabilities.max():.1%} · **True label:** {pretty(case.label)} "
                f"({verdict}) · **Site:** {case.site or '-'}")
    st.markdown("**Modalities:** " + case_notes.modality_line(status, TITLES))
    st.html(figures.probability_html(explanation.classes, explanation.probabilities, case.label))


def _class_choice(case: Case, base: CaseExplanation, job: CaseJob) -> CaseExplanation:
    """Which class the panels below explain (default the predicted one, the true one a click away), and
    optionally minus which other class; returns the explanation to draw (``base`` itself for the default,
    whose panels ``job`` may still be computing; a contrast needs them all first)."""
    classes = base.classes
    predicted = int(base.probabilities.argmax())
    choices = {"predicted": predicted}
    if case.label in classes:
        choices["true"] = classes.index(case.label)
    choices.update({f"class:{c}": k for k, c in enumerate(classes)})

    def label(option: str | None) -> str:
        if option is None:
            return "nothing (explain one class)"
        if option in ("predicted", "true"):
            return f"{option} ({pretty(classes[choices[option]])})"
        return pretty(option[len("class:"):])

    left, right = st.columns([3, 1])
    choice = left.radio("Explain the class", list(choices), key="case.explain_class", horizontal=True,
                        format_func=label)
    minus = right.selectbox("minus the class (contrast)", [None, *choices], key="case.contrast_class",
                            format_func=label, help="Attributions for the first class minus those for this one: "
                                                    "what speaks for one class rather than the other.")
    target = choices[choice]
    explanation = base if target == predicted else _for_class(case.case_id, target)
    if minus is not None:
        if choices[minus] == target:
            st.warning(f"A contrast needs two different classes: {pretty(classes[target])} is shown alone.")
        else:
            if predicted in (target, choices[minus]) and not job.complete:
                with st.spinner("Explaining the rest of this case..."):
                    whole = job.finish()
                explanation = whole if target == predicted else explanation
            other = job.current() if choices[minus] == predicted else _for_class(case.case_id, choices[minus])
            explanation = contrast_explanations(explanation, other)
    name = figures.explained_label(classes, explanation.target, explanation.contrast)
    st.markdown(f"Explaining **<span id='explained-class' data-case='{html.escape(case.case_id, quote=True)}'>"
                f"{name}</span>**"
                + (" (logit and probability differences)" if explanation.contrast is not None else ""),
                unsafe_allow_html=True)
    return explanation


def _for_class(case_id: str, target: int) -> CaseExplanation:
    return ctx.explain(case_id, dataclasses.replace(ctx.settings, target=target))


def _input_checks(explanation: CaseExplanation, notes: case_notes.InputNotes) -> None:
    """Inputs unlike the training data and input the model could not use as given: above the explanation,
    which is only as good as what the model was given."""
    for sentence in case_notes.ood_warnings(explanation.ood, TITLES, KINDS):
        st.warning(sentence, icon=":material/warning:")
    if notes.messages:
        body = "\n".join(f"- {m}" for m in notes.messages)
        if notes.serious:
            st.warning(f"**What the model could not use as given**\n{body}")
        else:
            with st.expander(f"Input check: {len(notes.messages)} note{'s' if len(notes.messages) > 1 else ''}"):
                st.markdown(body)
    caption = case_notes.ood_caption(explanation.ood, TITLES, KINDS)
    if caption:
        st.caption(caption)


def _explained_name(explanation: CaseExplanation) -> str:
    """What the attributions explain, as titles name it: a class (or a contrast), or the survival quantity."""
    if SURVIVAL:
        return case_figures.quantity_name(explanation.classes[0])
    return figures.explained_label(explanation.classes, explanation.target, explanation.contrast)


def _declared() -> dict[str, str] | None:
    """{name: short title} for the narrow first-screen figures, None for cardio's four (figures' own
    one-word labels)."""
    return None if NAMES == list(figures.MODALITY_LABELS) else case_figures.short_titles(TITLES)


def _combination(explanation: CaseExplanation, attention_column, importance_column) -> None:
    """The cross-modal attention with the pairwise interaction matrix under it, and the modality importance, in
    the first screen's two right-hand columns."""
    shown = None  # the attention matrix drawn (the mean of the heads, or the chosen head)
    with attention_column:
        if explanation.cross_attention is None:
            st.info(f"A {ctx.checkpoint.config.architecture} model has no cross-modal attention.")
        else:
            heads = explanation.cross_attention.shape[0]
            head = st.session_state.get("case.head", "mean")
            shown = (explanation.cross_attention.mean(0) if head == "mean"
                     else explanation.cross_attention[int(head[5:]) - 1])
            st.plotly_chart(figures.attention_heatmap(shown, [explanation.present[m] for m in NAMES],
                                                      title="Cross-modal attention", compact=True,
                                                      modalities=_declared()),
                            key="case.attention")
            what = "the same for every quantity" if SURVIVAL else "the same for every class"
            st.caption(f"How the modalities were combined: row attends to column, {what}; "
                       "* = missing (its learned placeholder).")
            st.selectbox("Attention head", ["mean"] + [f"head {k + 1}" for k in range(heads)], key="case.head")
        _interactions(explanation, shown)
    with importance_column:
        scores = explanation.to_dict()["modality_importance"]
        name = _explained_name(explanation)
        st.plotly_chart(figures.importance_bars(scores, name, compact=True, modalities=_declared()),
                        key="case.importance")
        if SURVIVAL:
            st.caption(case_survival.importance_caption(explanation))
            return
        st.caption(f"Shapley values for {name} add up to {_explained_value(explanation)} with every modality "
                   f"present minus with all missing = {explanation.importance.probability_full[0]:.2f} − "
                   f"{explanation.importance.probability_none[0]:.2f}.")


def _explained_value(explanation: CaseExplanation) -> str:
    """The explained value as figures write it: 'p(Normal)', 'p(Normal) − p(Heart failure)' for a contrast, or a
    survival model's quantity ('Survival at 60 months')."""
    name = _explained_name(explanation)
    if SURVIVAL:
        return name
    return f"p({name})" if explanation.contrast is None else "p(" + name.replace(" − ", ") − p(") + ")"


def _interactions(explanation: CaseExplanation, attention: np.ndarray | None) -> None:
    """The pairwise Shapley interaction matrix of the explained value, from the subset values the importance
    already holds (no forward pass), and how well the attention drawn above ranks the pairs the same way."""
    present = np.array([explanation.present[m] for m in NAMES], dtype=bool)
    matrix = shapley_interactions(explanation.importance)[0]  # (M, M)
    value = _explained_value(explanation)
    st.plotly_chart(interaction_figures.interaction_heatmap(matrix, present, value, title="Modality interactions",
                                                            compact=True, modalities=_declared()),
                    key="case.interactions")
    correlation = None if attention is None else attention_interaction_correlation(attention, matrix, present)
    target = f"the predicted {value[0].lower()}{value[1:]}" if SURVIVAL else value
    st.caption(f"Each cell: how much the pair's joint presence adds to {target} beyond the two modalities alone "
               "(pairwise Shapley interaction; red: more together than apart, blue: less, e.g. redundant "
               "evidence). Grey * = missing. "
               + interaction_figures.correlation_sentence(correlation))


@st.fragment
def _ablation(case: Case, explanation: CaseExplanation, status: dict[str, str]) -> None:
    """A fragment: moving a slider reruns only this section (a prediction on the partial case), not the page."""
    redraw_interrupted_page()
    if SURVIVAL:
        case_survival.ablation(ctx, case, explanation, status)
        return
    st.subheader("What if a modality were missing?")
    st.caption("Observe part of each modality: the first part of the ECG, the first sentences of the note, the "
               "first labs in clinical order. 0 % = missing (the model's learned missing embedding).")
    fractions = case_panels.observe_controls(DECLARED, explanation.present, status)
    changed = any(f < 1.0 for f in fractions.values())
    ablated = ctx.predictor.predict([partial_case(case, fractions)])[1][0] if changed else explanation.probabilities
    k = int(explanation.probabilities.argmax())
    shift = (ablated[k] - explanation.probabilities[k]) * 100
    st.markdown(f"**{pretty(explanation.classes[k])}**: {explanation.probabilities[k]:.1%} → "
                f"<span id='ablation-result'>{ablated[k]:.1%}</span> ({shift:+.1f} points); "
                f"now predicted: **{pretty(explanation.classes[int(ablated.argmax())])}**", unsafe_allow_html=True)
    st.html(figures.probability_html(explanation.classes, explanation.probabilities, case.label, compare=ablated,
                                     compare_name="with the sliders' observation"))


@st.fragment
def _what_if(case: Case, base: CaseExplanation, status: dict[str, str], files_key: str,
             survival: SurvivalTarget | None) -> None:
    """A fragment, like the ablation: an edit reruns only the what-if section."""
    redraw_interrupted_page()
    whatif_view.what_if_section(ctx.predictor, ctx.model_key, files_key, case, base, status, TITLES, survival)


def _ground_truth(case_id: str) -> ground_truth_view.Planted | None:
    """The case's planted ground truth when the cohort has one and the toggle is on (off by default)."""
    image = next((m for m in NAMES if KINDS[m] == "image"), None)
    try:
        truth = ground_truth_view.planted(ctx.cohort.ground_truth(), case_id, NAMES, image)
    except (CohortError, ValueError) as err:  # a bad ground-truth file costs the overlay, not the case
        st.error(f"The cohort's ground_truth.csv was not used: {err}")
        return None
    if truth is None:
        return None
    what = ("the image region, the driver genes and the note phrases that carry its prognosis" if SURVIVAL
            else "the echo region, the ECG leads and the note phrases that carry its finding")
    shown = st.toggle("Show the planted ground truth (synthetic cohort)", key="case.ground_truth",
                      help=f"What the generator planted in this case: {what}, and how strongly each modality "
                           "shows it.")
    return truth if shown else None


def _planted_strengths(case_id: str, truth: ground_truth_view.Planted, explanation: CaseExplanation) -> None:
    name = _explained_name(explanation)
    try:
        rankings = ctx.cohort.rankings()
    except CohortError:  # reported by the rankings section below
        rankings = None
    raters = None if rankings is None else rankings[rankings["case_id"] == case_id]
    simulated = bool(ctx.cohort.info.get("synthetic"))
    who = "" if raters is None or raters.empty else " and the " + figures.rater_group(raters["rater"], simulated)
    st.subheader(f"Planted ground truth vs the model{who}")
    shapley = explanation.to_dict()["modality_importance"]["shapley"]
    st.dataframe(ground_truth_view.strength_table(truth, {m: np.nan if v is None else v for m, v in shapley.items()},
                                                  None if raters is None or raters.empty else raters, TITLES,
                                                  magnitude=SURVIVAL),
                 hide_index=True, key="case.truth_strengths")
    if SURVIVAL:
        dominant = _dominant(case_id)
        st.caption(f"Planted strength: how strongly each modality was generated to carry the case's prognosis, "
                   f"0-1, blank = missing; rank 1 = strongest{dominant}. Model: Shapley value for {name}, ranked "
                   "by size (a modality that lowers the quantity can matter most). Raters: their ranks "
                   "(1 = most important).")
        return
    distractor = f" A weaker distractor finding was planted too: {pretty(truth.distractor)}." if truth.distractor else ""
    st.caption(f"Planted strength: how strongly each modality was generated to show the case's label "
               f"({pretty(ctx.cohort[case_id].label)}), 0-1, blank = missing; rank 1 = strongest. Model: Shapley "
               f"value for {name} (probability). Raters: their ranks (1 = most important).{distractor}")


def _dominant(case_id: str) -> str:
    """'; the generator's dominant modality: Genomics' when the ground truth names one."""
    truth = ctx.cohort.ground_truth()
    if truth is None or "dominant_modality" not in truth.columns:
        return ""
    value = str(truth.loc[truth["case_id"] == case_id, "dominant_modality"].iloc[0] or "")
    return f"; the generator's dominant modality: {TITLES.get(value, value)}" if value else ""


def _clinicians(case_id: str, explanation: CaseExplanation) -> None:
    try:
        rankings = ctx.cohort.rankings()
    except CohortError as err:  # a bad rankings file costs this section, not the case
        st.error(f"The cohort's clinician rankings were not used: {err}")
        return
    if rankings is None or case_id not in set(rankings["case_id"]):
        return
    simulated = bool(ctx.cohort.info.get("synthetic"))
    raters = figures.rater_group(rankings.loc[rankings["case_id"] == case_id, "rater"], simulated)
    st.subheader(f"Model vs {raters} for this case")
    method = st.radio("Model ranking from", ("shapley", "leave_one_out", "attention"), key="case.rank_method",
                      horizontal=True, format_func=lambda m: m.replace("_", "-").capitalize())
    if method == "attention" and explanation.importance.attention is None:
        st.info("This model has no attention; choose Shapley or leave-one-out.")
        return
    scores = explanation.importance.table(method)
    ranks = importance_to_ranks(ranking_scores(scores, SURVIVAL))  # for the predicted class
    pairs = model_vs_raters(ranks, rankings[rankings["case_id"] == case_id])
    table = rankings[rankings["case_id"] == case_id].merge(pairs[["rater", "tau"]], on="rater")
    model_row = {"rater": "model", **{m: ranks.iloc[0][m] for m in NAMES}, "tau": np.nan}
    table = pd.concat([pd.DataFrame([model_row]), table.drop(columns="case_id")], ignore_index=True)
    st.dataframe(table.rename(columns=TITLES) if SURVIVAL else table, hide_index=True, key="case.rankings")
    whose = (f"by the size of its effect on {_explained_name(explanation)}" if SURVIVAL
             else f"for its predicted class ({pretty(explanation.predicted)})")
    st.caption(f"Ranks: 1 = most important; the model's {whose}. Kendall tau-b over the modalities both ranked.")


def _export(case: Case, explanation: CaseExplanation, title: bool = True) -> None:
    if title:
        st.subheader("Export")
    d1, d2 = st.columns(2)
    architecture = ctx.checkpoint.config.architecture
    survival = None
    if SURVIVAL:
        config = ctx.checkpoint.config
        survival = (config.survival_bins, float(config.horizon),
                    case_survival.cohort_kaplan_meier(ctx, ctx.data_key))
    # built when clicked, not on every rerun (the self-contained report embeds plotly.js, ~8 MB); a download
    # does not rerun the page
    d1.download_button("Case report (HTML)",
                       lambda: case_report_html(case, explanation, architecture, TITLES, survival),
                       file_name=f"{case.case_id}_report.html", mime="text/html", key="case.download_report",
                       on_click="ignore")
    d2.download_button("Attributions (CSV)", lambda: attributions_csv(explanation),
                       file_name=f"{case.case_id}_attributions_{_slug(explanation.explained)}.csv", mime="text/csv",
                       key="case.download_csv",
                       on_click="ignore")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _show_case(case_id: str) -> CaseJob | None:
    """Read, explain and draw one case; bad input in its files is a message naming the file. The panels not
    computed yet are drawn by the returned job's ``finish()`` (called at the end of the page)."""
    try:
        case = ctx.cohort[case_id]
        # the predicted class: the card, the ablation and the rankings use it; its first view now, its
        # panels as they finish
        job = ctx.case_job(case_id)
        base = job.current()
    except CASE_ERRORS as err:
        st.error(f"Case {case_id} cannot be shown: {err}")
        st.info("Fix the file and rerun, or pick another case above.")
        return None
    notes = case_notes.input_notes(base.inputs, case.issues)
    status = case_notes.modality_status(base.present, notes.unusable)
    target = None
    if SURVIVAL:
        # the first screen: the prediction card (the attention under it), the predicted curve beside the
        # cohort's, and the importance; the quantity choice below them decides what the importance explains
        attention_column, curve, importance_column = st.columns([1, 1.25, 1.1], gap="medium")
        with attention_column:
            case_survival.prediction_card(ctx, case, base, status)
        with curve:
            case_survival.curve_chart(ctx, base)
        _input_checks(base, notes)
        explanation, target = case_survival.quantity_choice(ctx, case_id, base)
    else:
        # the first screen: the prediction, the attention and the importance side by side; the class choice
        # below them decides what the importance explains, so the two right-hand columns are filled after it
        card, attention_column, importance_column = st.columns([1.1, 1, 1.15], gap="medium")
        with card:
            _prediction_card(case, base, status)
        _input_checks(base, notes)
        explanation = _class_choice(case, base, job)
    default_view = explanation is base  # the default view's panels are drawn as they come
    _combination(explanation, attention_column, importance_column)
    truth = _ground_truth(case_id)
    case_panels.modality_panels(DECLARED, case, explanation, status, notes, truth, _explained_name(explanation),
                                job if default_view else None)
    if truth is not None:
        _planted_strengths(case_id, truth, explanation)
    _ablation(case, base, status)
    _what_if(case, base, status, case_key(ctx.cohort, case_id), target)
    _clinicians(case_id, explanation if SURVIVAL else base)
    if default_view and not job.complete:
        st.subheader("Export")
        slot = st.empty()
        slot.caption("The case report and the attributions can be downloaded when every panel is ready.")
        job.defer(slot, lambda whole: _export(case, whole, title=False))
        return job
    _export(case, explanation)
    return None


# A classification model's case list is labelled with every case's prediction: when those are not computed yet
# (minutes for a paper-size model), the list first shows true classes, this case's panels are computed, and
# then the cohort is predicted and the page redrawn from the cache. (A survival case needs its risk group.)
labelled = SURVIVAL or ctx.predictions_ready()
unfinished = None
try:
    unfinished = _show_case(case_id)
finally:
    # the case list, now that it can be labelled; drawn (into the container above the case) even when the
    # case failed in an unexpected way, so another case can always be opened
    _draw_chooser(ctx.predictions() if labelled else None, ids)
if unfinished is not None:
    unfinished.finish()  # the panels still to come, each drawn where the page left room for it
if not labelled:
    ctx.predictions()
    st.rerun()
