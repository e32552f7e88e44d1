"""The case page for a time-stamped cohort (the ICU task, issue 12): a case is a stay, and everything shown is
what the model knew at the chosen hour. The stay list with filters; an "As of hour" slider whose state
belongs to the stay; the risk trajectory over the whole stay (shown first: one batched prediction); at the
chosen hour the risk, its label, the cross-modal attention, the exact Shapley importance, the vital signs as
trend charts, the labs as a time table, the notes with highlighted phrases; what-if edits at that hour;
the planted ground truth of a synthetic stay; and the stay's own figure 2C, streamed hour by hour.
app/views/case_explorer.py calls :func:`page` when ``Context.timed``; figures are in app/icu_figures.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import streamlit as st

from app import case_figures, case_notes, figures, icu_figures
from app.page_runs import redraw_interrupted_page
from app.state import CASE_ERRORS, Context
from explain import timeline
from explain.case import ExplainSettings
from explain.icu_whatif import DEFAULT_HIDDEN_H, StayEdit, edited_case, note_parts, notes_at, risk
from neurofusion.data.timed import TimedCohortReader

STAY, HOUR, HOUR_FOR = "case.id", "case.icu_hour", "case.icu_hour_for"
FILTERS = ("case.icu_filter_outcome", "case.icu_filter_missing", "case.icu_filter_site")
HIDE, HIDE_HOURS, NOTE, LAB, WHATIF_FOR = ("case.icu_hide", "case.icu_hide_hours", "case.icu_note", "case.icu_lab",
                                           "case.icu_whatif_for")
EXPLAINED = "death within 48 h"
DEFAULT_BEFORE_H = 24.0  # the slider starts at the last prediction hour up to this one


# ----------------------------------------------------------------------------------------- cached data
@st.cache_data(show_spinner=False, max_entries=64)
def stay_trajectory(_predictor, _reader: TimedCohortReader, model_key: str, data_key: str,
                    stay_id: str) -> timeline.RiskTrajectory:
    """The risk at every whole hour of the stay (one batched prediction)."""
    return timeline.risk_trajectory(_predictor, _reader, stay_id)


@st.cache_data(show_spinner=False, max_entries=512)
def hour_explanation(_predictor, _reader: TimedCohortReader, _ood, model_key: str, data_key: str, stay_id: str,
                     hour: float, settings: ExplainSettings) -> timeline.HourExplanation:
    """One hour's full explanation of the risk (explain.timeline.explain_hours for that hour)."""
    return next(timeline.explain_hours(_predictor, _reader, stay_id, [hour], settings, ood=_ood))


@st.cache_data(show_spinner=False, max_entries=512)
def edited_risk(_predictor, _reader: TimedCohortReader, model_key: str, data_key: str, stay_id: str, hour: float,
                edit: StayEdit) -> float:
    """The model's risk on the sample with ``edit`` applied (explain.icu_whatif)."""
    return float(risk(_predictor, [edited_case(_reader, stay_id, hour, edit)])[0])


@st.cache_data(show_spinner=False, max_entries=8)
def stay_table(_reader: TimedCohortReader, data_key: str) -> pd.DataFrame:
    """One row per stay: stay_id, diagnosis, site, stay_hours, died, and has_<modality>: whether anything of
    it was recorded during the stay (demographics: whether the stay has them)."""
    stays = _reader.stays
    frame = pd.DataFrame({"stay_id": stays.index, "diagnosis": stays.get("diagnosis", pd.Series("", stays.index)),
                          "site": stays["site"], "stay_hours": stays["stay_hours"], "died": stays["died"].astype(bool)})
    recorded = _reader.first_recorded.notna()
    for modality in recorded.columns:
        frame[f"has_{modality}"] = recorded[modality]
    return frame.reset_index(drop=True)


def peak_risks(ctx: Context) -> pd.Series:
    """{stay: the highest predicted risk over its prediction hours} from the cohort's predictions."""
    predictions = ctx.predictions()
    column = f"p_{ctx.classes[timeline.RISK_CLASS]}"
    stays = predictions["case_id"].str.rpartition("@")[0]
    return predictions[column].groupby(stays).max()


# ------------------------------------------------------------------------------------------ the page
def page(ctx: Context) -> None:
    reader: TimedCohortReader = ctx.cohort
    st.title("Case explorer")
    st.caption("ICU cohort: a case is a **stay**. Everything below is what the model knew at the chosen hour "
               "(only what was recorded by then); the risk is P(death within 48 h of that hour).")
    chooser = st.container()
    stays = stay_table(reader, ctx.data_key)
    shown = _filtered(stays)
    if shown.empty:
        _draw_chooser(ctx, chooser, stays, shown)
        st.stop()
    ids = shown["stay_id"].tolist()
    requested = st.query_params.get("case")
    if requested and requested != st.session_state.get("case.last_query"):
        st.session_state["case.last_query"] = requested
        if requested in ids:
            st.session_state[STAY] = requested
    if st.session_state.get(STAY) not in ids:
        st.session_state[STAY] = ids[0]
    stay_id = st.session_state[STAY]
    st.query_params["case"] = stay_id
    st.session_state["case.last_query"] = stay_id
    try:
        _show_stay(ctx, reader, stay_id)
        _stream_over_time(ctx, reader, stay_id)
    finally:
        # the stay list last, once its labels' peak risks (every sample of the cohort predicted, cached for the
        # process) do not hold up the stay's own results; drawn even when the stay failed, so another can be
        # opened
        _draw_chooser(ctx, chooser, stays, shown)


def _filtered(stays: pd.DataFrame) -> pd.DataFrame:
    state = st.session_state
    shown = stays
    outcome = state.get(FILTERS[0], "all")
    if outcome != "all":
        shown = shown[shown["died"] == (outcome == "died")]
    for modality in state.get(FILTERS[1]) or ():
        shown = shown[~shown[f"has_{modality}"]]
    if state.get(FILTERS[2]):
        shown = shown[shown["site"].isin(state[FILTERS[2]])]
    return shown


def _draw_chooser(ctx: Context, chooser, stays: pd.DataFrame, shown: pd.DataFrame) -> None:
    with chooser:
        pick, filters = st.columns([5, 1], vertical_alignment="bottom")
        with filters.popover("Filter stays", width="stretch"):
            c1, c2, c3 = st.columns(3)
            c1.radio("Outcome", ("all", "died", "discharged"), key=FILTERS[0], horizontal=True)
            c2.multiselect("Never recorded in the stay", ctx.names, key=FILTERS[1], format_func=ctx.titles.get)
            c3.multiselect("Site", sorted(stays["site"].unique()), key=FILTERS[2])
        if shown.empty:
            pick.warning("No stay matches these filters.")
            return
        peaks = peak_risks(ctx)
        rows = shown.set_index("stay_id")
        pick.selectbox(f"Stay ({len(shown)} of {len(stays)})", rows.index.tolist(), key=STAY,
                       format_func=lambda s: icu_figures.stay_label(s, str(rows.loc[s, "diagnosis"] or ""),
                                                                    float(rows.loc[s, "stay_hours"]),
                                                                    bool(rows.loc[s, "died"]),
                                                                    float(peaks.get(s, math.nan))))
        st.caption("Peak risk: the highest predicted risk at the cohort's prediction hours "
                   f"({', '.join(f'{h:g}' for h in ctx.cohort.hours)} h) the stay reaches.")


def default_hour(reader: TimedCohortReader, stay_hours: float) -> int:
    """The last prediction hour up to 24 h inside the stay (whole hours: the slider's step)."""
    return int(max(h for h in (*reader.hours, 0.0) if h <= DEFAULT_BEFORE_H and h < stay_hours))


def _hour_slider(reader: TimedCohortReader, stay_id: str, stay_hours: float) -> int:
    """The "As of hour" slider: its state belongs to the stay (another stay starts it at its default)."""
    state = st.session_state
    if state.get(HOUR_FOR) != stay_id:
        state.pop(HOUR, None)
        state[HOUR_FOR] = stay_id
    last = math.ceil(stay_hours) - 1  # the last whole hour before the stay's end (it is not scored at its end)
    if last < 1:
        return 0
    state.setdefault(HOUR, default_hour(reader, stay_hours))
    return int(st.slider("As of hour", 0, last, step=1, key=HOUR, format="%d h",
                         help="Everything on this page is what the model knew at this hour of the stay."))


def _show_stay(ctx: Context, reader: TimedCohortReader, stay_id: str) -> None:
    stay = reader.stays.loc[stay_id]
    hour = _hour_slider(reader, stay_id, float(stay["stay_hours"]))
    try:
        trajectory = stay_trajectory(ctx.predictor, reader, ctx.model_key, ctx.data_key, stay_id)
    except CASE_ERRORS as err:
        st.error(f"Stay {stay_id} cannot be shown: {err}")
        return
    k = int(np.flatnonzero(trajectory.hours == hour)[0])
    chart, card = st.columns([2.4, 1], gap="medium")
    explained_hours = [h for h in reader.hours if h < trajectory.stay_hours]
    chart.plotly_chart(icu_figures.risk_trajectory_figure(trajectory, hour, reader.horizon_h, explained_hours),
                       key="case.icu_trajectory")
    with card:
        _risk_card(ctx, trajectory, k)
    settings = dataclasses.replace(ctx.settings, target=timeline.RISK_CLASS)
    try:
        with st.spinner(f"Explaining the risk at {hour} h..."):
            explained = hour_explanation(ctx.predictor, reader, ctx.checkpoint.ood, ctx.model_key, ctx.data_key,
                                         stay_id, float(hour), settings)
    except CASE_ERRORS as err:
        st.error(f"Stay {stay_id} at {hour} h cannot be explained: {err}")
        return
    case, explanation = explained.case, explained.explanation
    _combination(ctx, explanation)
    _panels(ctx, reader, stay_id, hour, case, explanation)
    _what_if(ctx, stay_id, float(hour), float(trajectory.risk[k]))
    _ground_truth(ctx, reader, stay_id, hour, float(stay["stay_hours"]))


def _risk_card(ctx: Context, trajectory: timeline.RiskTrajectory, k: int) -> None:
    """The risk at the hour (the trajectory's value: the model on what was recorded by then), its change
    since the hour before, the label at the hour and what had been recorded."""
    hour, value = int(trajectory.hours[k]), float(trajectory.risk[k])
    delta = None if k == 0 else f"{100 * (value - float(trajectory.risk[k - 1])):+.1f} points since {hour - 1} h"
    st.metric(f"Risk of death within 48 h, as of {hour} h", f"{value:.1%}", delta, delta_color="inverse")
    st.markdown(f"**Label at {hour} h:** {icu_figures.label_text(trajectory.labels[k])} (the stay "
                f"{icu_figures.outcome_text(trajectory.stay_hours, trajectory.died)}).")
    status = {m: "used" if ok else "missing" for m, ok in zip(trajectory.names, trajectory.present[k])}
    st.markdown("**Recorded by this hour:** " + case_notes.modality_line(status, ctx.titles))


def _combination(ctx: Context, explanation) -> None:
    """The cross-modal attention and the exact Shapley importance of the risk at the hour."""
    for sentence in case_notes.ood_warnings(explanation.ood, ctx.titles, ctx.kinds):
        st.warning(sentence, icon=":material/warning:")
    # 'Vital signs' would shorten to 'Signs'; clinicians say 'vitals'
    short = {**case_figures.short_titles(ctx.titles), **({"vitals": "Vitals"} if "vitals" in ctx.titles else {})}
    attention_column, importance_column = st.columns(2, gap="medium")
    with attention_column:
        if explanation.cross_attention is None:
            st.info(f"A {ctx.checkpoint.config.architecture} model has no cross-modal attention.")
        else:
            matrix = explanation.cross_attention.mean(0)
            st.plotly_chart(figures.attention_heatmap(matrix, [explanation.present[m] for m in ctx.names],
                                                      title="Cross-modal attention", compact=True, modalities=short),
                            key="case.attention")
            st.caption("Mean over heads; row attends to column; * = not recorded by this hour (its learned "
                       "placeholder).")
    with importance_column:
        scores = explanation.to_dict()["modality_importance"]
        scores = {m: scores[m] for m in ("shapley", "attention") if m in scores}
        st.plotly_chart(figures.importance_bars(scores, pretty_explained(), compact=True, modalities=short),
                        key="case.importance")
        importance = explanation.importance
        st.caption(f"Exact Shapley values of the risk: they add up to p with every recorded modality − p with all "
                   f"missing = {importance.probability_full[0]:.3f} − {importance.probability_none[0]:.3f}.")


def pretty_explained() -> str:
    return figures.pretty(EXPLAINED)


def _panels(ctx: Context, reader: TimedCohortReader, stay_id: str, hour: int, case, explanation) -> None:
    st.subheader(f"What the model saw by {hour} h")
    recorded = reader.recorded_in_stay(stay_id)
    absent = {m: "" if explanation.present[m] else " (never in this stay)" if not recorded.get(m, True)
              else " (not recorded yet)" for m in ctx.names}
    tabs = st.tabs([ctx.titles[m] + absent[m] for m in ctx.names])
    panels = dict(zip(ctx.names, tabs))
    with panels["vitals"]:
        if not explanation.present["vitals"]:
            when = "in this stay" if not recorded["vitals"] else f"by {hour} h"
            st.info(f"No vital sign was recorded {when}: the model used its learned 'missing' embedding.")
        else:
            over = timeline.vitals_over_time(explanation, reader, stay_id, float(hour))
            variables = {v: reader.variables[v] for v in reader.vital_variables}
            st.plotly_chart(icu_figures.vitals_trends(reader.events_of(stay_id, "vitals", hour), variables, hour,
                                                      over, explained=pretty_explained()), key="case.icu_vitals")
            st.caption(f"Dots: measurements (joined when at most {icu_figures.GAP_H * 60:.0f} min apart, so gaps "
                       "show); red crosses: values "
                       "outside the plausible range (artefacts such as a probe off or a line flush, kept as "
                       "recorded). Shading behind each row: the Integrated Gradients attribution of each 5-minute "
                       "step (value + measured mask) to the risk, red raising it, blue lowering it, one scale for "
                       f"every row. Top row: the encoder's temporal attention, one weight per "
                       f"{explanation.panels['vitals'].attention_step_s / 60:.0f} minutes.")
    with panels["labs"]:
        if not explanation.present["labs"]:
            when = "in this stay" if not recorded["labs"] else f"by {hour} h"
            st.info(f"No lab was drawn {when}: the model used its learned 'missing' embedding.")
        else:
            labs = {v: reader.variables[v] for v in reader.lab_variables}
            table = icu_figures.labs_table(reader.events_of(stay_id, "labs", hour), labs, hour,
                                           explanation.panels.get("labs"))
            st.dataframe(table, hide_index=True, key="case.icu_labs",
                         column_config={"attribution (value)": st.column_config.NumberColumn(format="%+.3f"),
                                        "attribution (age)": st.column_config.NumberColumn(format="%+.3f")})
            st.caption("Every draw up to this hour, newest first. The model reads each lab's last value and its age "
                       "(last observation carried forward); the attributions (Integrated Gradients, logit units, + "
                       "raises the risk) are on that last draw.")
    with panels["notes"]:
        note = explanation.panels.get("notes")
        if note is None:
            when = "in this stay" if not recorded["notes"] else f"by {hour} h"
            st.info(f"No nursing note was written {when}: the model used its learned 'missing' embedding.")
        else:
            text = case.value("notes")
            times = reader.notes_of(stay_id)["time"].to_numpy(dtype=float)
            parts = [(times[k], start, end) for k, start, end in note_parts(reader, stay_id, hour, text)]
            scale = max((abs(w.score) for w in note.words), default=0.0)
            st.html(figures.note_legend_html(scale, pretty_explained())
                    + icu_figures.notes_html(text, parts, note.words, scale, note.covered_chars))
            st.caption("Newest first, as the model reads them: each note headed by how long before this hour it "
                       "was written, its words coloured by their attribution to the risk.")
            if note.truncated:
                st.warning(f"The notes are longer than the model reads: only the first {note.covered_chars} "
                           "characters (the newest notes) were used and highlighted.")
            top = pd.DataFrame([{"phrase": p.text, "score": round(p.score, 4)} for p in note.phrases[:8]])
            if not top.empty:
                st.dataframe(top, hide_index=True, key="case.icu_phrases")
    with panels["demographics"]:
        table = explanation.panels.get("demographics")
        if table is None:
            st.info("This stay has no demographics: the model used its learned 'missing' embedding.")
        else:
            st.plotly_chart(figures.lab_bars(table, pretty_explained(), ctx.titles["demographics"]),
                            key="case.icu_demographics")


@st.fragment
def _what_if(ctx: Context, stay_id: str, hour: float, before: float) -> None:
    """Edits of the sample at this hour, each re-predicted exactly (explain.icu_whatif); a fragment, so an
    edit reruns only this section. The controls belong to the sample: another stay or hour resets them."""
    redraw_interrupted_page()
    reader: TimedCohortReader = ctx.cohort
    state = st.session_state
    if state.get(WHATIF_FOR) != (stay_id, hour):
        for key in (HIDE, HIDE_HOURS, NOTE, LAB):
            state.pop(key, None)
        state[WHATIF_FOR] = (stay_id, hour)
    st.subheader(f"What if, at {hour:g} h?")
    case = reader.at(stay_id, hour)
    c1, c2, c3 = st.columns(3)
    hide = 0.0
    if case.value("vitals") is not None:
        if c1.toggle("Hide the last hours of vital signs", key=HIDE):
            hide = float(c1.number_input("hours hidden", 1, 48, int(DEFAULT_HIDDEN_H), 1, key=HIDE_HOURS))
    else:
        c1.caption("No vital signs by this hour: nothing to hide.")
    notes = reader.notes_of(stay_id)
    written = notes_at(reader, stay_id, hour)
    note = c2.selectbox("Remove a note", [None, *written], key=NOTE, disabled=not written,
                        format_func=lambda k: "none" if k is None else
                        f"{float(notes['time'].iloc[k]):.1f} h: {notes['text'].iloc[k][:50]}")
    labs = case.value("labs") or {}
    measured = [lab for lab in reader.lab_variables if not math.isnan(labs.get(lab, math.nan))]
    lab = c3.selectbox("Drop a lab", [None, *measured], key=LAB, disabled=not measured,
                       format_func=lambda v: "none" if v is None else f"{v} ({labs[v]:g} {reader.variables[v].unit})")
    edit = StayEdit(hide_vitals_h=hide, removed_notes=() if note is None else (int(note),),
                    dropped_labs=() if lab is None else (lab,))
    if edit.empty:
        st.caption("Hide the newest vital signs (the 48-h window still ends at this hour), remove a note or drop a "
                   "lab: the risk is predicted again, exactly, on what is left.")
        return
    after = edited_risk(ctx.predictor, reader, ctx.model_key, ctx.data_key, stay_id, hour, edit)
    st.markdown(f"**Risk at {hour:g} h**: {before:.1%} → <span id='icu-whatif-result'>{after:.1%}</span> "
                f"({100 * (after - before):+.1f} points) with {'; '.join(edit.describe(reader, stay_id))}.",
                unsafe_allow_html=True)


def _ground_truth(ctx: Context, reader: TimedCohortReader, stay_id: str, hour: int, stay_hours: float) -> None:
    """What the generator planted in a synthetic stay (its course and when each modality carries the signal)."""
    truth = reader.ground_truth()
    if truth is None or stay_id not in truth.index:
        return
    row = truth.loc[stay_id]
    synthetic = bool(ctx.cohort.info.get("synthetic"))
    st.subheader("Ground truth of this SYNTHETIC stay" if synthetic else "Ground truth of this stay (ground_truth.csv)")
    onset, trend = _hours(row.get("onset_hour")), _hours(row.get("trend_hour"))
    diagnosis = figures.pretty(str(row.get("diagnosis") or "-"))
    st.markdown(f"**Course:** {row.get('course') or '-'} · **diagnosis:** {diagnosis}"
                f" · **onset:** {_at(onset)} · **trend from:** {_at(trend)} · **prior severity:** "
                f"{row.get('prior_severity') or '-'}")
    signal_from = {m: _hours(row.get(f"{m}_signal_from_h")) for m in ctx.names}
    table = pd.DataFrame([{"modality": ctx.titles[m], "carries the outcome signal from": _at(h),
                           f"at {hour} h": "never" if math.isnan(h) else ("yes" if hour >= h else "not yet")}
                          for m, h in signal_from.items()])
    st.dataframe(table, hide_index=True, key="case.icu_truth")
    severity = [float(v) for v in str(row.get("severity_hourly") or "").split()]
    if severity:
        st.plotly_chart(icu_figures.severity_figure(severity, signal_from, ctx.titles, hour, stay_hours),
                        key="case.icu_severity")
    st.caption("Planted by the synthetic generator (ground_truth.csv): which modality carries the outcome signal "
               "from which hour. Compare with the importance over the stay below.")


def _hours(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _at(hours: float) -> str:
    return "-" if math.isnan(hours) else f"{round(hours, 1):g} h"


def _stream_over_time(ctx: Context, reader: TimedCohortReader, stay_id: str) -> None:
    """The stay's figure 2C at its prediction hours, each hour's explanation drawn as it arrives."""
    stay_hours = float(reader.stays.loc[stay_id, "stay_hours"])
    hours = [h for h in reader.hours if h < stay_hours]
    st.subheader("Which modality mattered when")
    chart, progress = st.empty(), st.empty()
    settings = dataclasses.replace(ctx.settings, target=timeline.RISK_CLASS)
    explained: list[timeline.HourExplanation] = []
    titles = {m: ctx.titles[m] for m in ctx.names}
    chart.plotly_chart(icu_figures.importance_over_time_figure(timeline.importance_over_time([]), hours, titles))
    for hour in hours:
        progress.caption(f"Explaining {hour:g} h ({len(explained) + 1} of {len(hours)})...")
        try:
            explained.append(hour_explanation(ctx.predictor, reader, ctx.checkpoint.ood, ctx.model_key, ctx.data_key,
                                              stay_id, float(hour), settings))
        except CASE_ERRORS as err:
            progress.error(f"Hour {hour:g} cannot be explained: {err}")
            return
        frame = timeline.importance_over_time(explained)
        chart.plotly_chart(icu_figures.importance_over_time_figure(frame, hours, titles))
    progress.caption(f"At the cohort's prediction hours ({', '.join(f'{h:g}' for h in hours)} h) inside the stay. "
                     "Each bar stacks the modalities' shares: of the absolute exact Shapley values of the risk "
                     "(top) and of the cross-modal attention they receive (bottom).")
