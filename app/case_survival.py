"""The case page's parts for a survival model (the cancer task): the case chooser's filters and labels, the
prediction card with the predicted survival curve beside the cohort's Kaplan-Meier curve, the choice of the
explained quantity (survival at the model's horizon, the risk score, or survival at a chosen time), and the
ablation that moves the predicted curve. The page (app/views/case_explorer.py) calls these when
``Context.survival``; pure pieces are in app/case_figures.py."""

from __future__ import annotations

import html
from collections.abc import Mapping

import numpy as np
import pandas as pd
import streamlit as st

from app import case_figures, case_notes, case_panels
from app.state import Context
from explain.ablation import partial_case
from explain.case import CaseExplanation
from explain.targets import SurvivalTarget
from neurofusion.data.schema import Case
from neurofusion.survival import KaplanMeier, kaplan_meier

FILTERS = ("case.filter_risk", "case.filter_event", "case.filter_missing", "case.filter_site")
QUANTITY, HORIZON = "case.quantity", "case.horizon"
QUANTITIES = ("survival", "risk", "horizon")
RISK_GROUPS = ("low", "medium", "high")
OUTCOMES = ("all", "event", "censored")


@st.cache_data(show_spinner=False, max_entries=8)
def cohort_kaplan_meier(_ctx: Context, data_key: str) -> KaplanMeier:
    """Kaplan-Meier curve of the cohort's recorded outcomes (every case with a time and an event flag;
    ``data_key`` follows cohort.csv, where they are recorded)."""
    table = _ctx.cohort.table
    time = pd.to_numeric(table["time"], errors="coerce").to_numpy(dtype=float)
    event = pd.to_numeric(table["event"], errors="coerce").to_numpy(dtype=float)
    known = np.isfinite(time) & np.isfinite(event)
    return kaplan_meier(time[known], event[known].astype(bool))


def filtered(ctx: Context, cases: pd.DataFrame, predictions: pd.DataFrame | None) -> pd.DataFrame:
    """The cohort table narrowed by the survival filters (risk group needs ``predictions``)."""
    state = st.session_state
    shown = cases
    outcome = state.get(FILTERS[1], "all")
    if outcome != "all":
        event = pd.to_numeric(shown["event"], errors="coerce")
        shown = shown[(event == 1) if outcome == "event" else (event == 0)]
    if predictions is not None and state.get(FILTERS[0]):
        groups = predictions.set_index("case_id").loc[shown["case_id"], "risk_group"]
        shown = shown[groups.isin(state[FILTERS[0]]).to_numpy()]
    for modality in state.get(FILTERS[2]) or ():
        shown = shown[~shown[f"has_{modality}"].astype(bool)]
    if state.get(FILTERS[3]):
        shown = shown[shown["site"].isin(state[FILTERS[3]])]
    return shown


def needs_predictions() -> bool:
    return bool(st.session_state.get(FILTERS[0]))


def draw_filters(ctx: Context, predictions: pd.DataFrame) -> None:
    c1, c2, c3, c4 = st.columns(4)
    c1.multiselect("Predicted risk group", RISK_GROUPS, key=FILTERS[0],
                   help="Tertiles of the predicted risk over the cohort's readable cases.")
    c2.radio("Recorded outcome", OUTCOMES, key=FILTERS[1], horizontal=True,
             format_func={"all": "all", "event": "event (died)", "censored": "censored (alive)"}.get)
    c3.multiselect("Missing modality", ctx.names, key=FILTERS[2], format_func=ctx.titles.get)
    c4.multiselect("Site", sorted(predictions["site"].unique()), key=FILTERS[3])


def case_label(ctx: Context, case_id: str, row: Mapping[str, object]) -> str:
    config = ctx.checkpoint.config
    return case_figures.survival_case_label(case_id, row, config.horizon, config.survival_bins.unit)


def prediction_card(ctx: Context, case: Case, base: CaseExplanation, status: dict[str, str]) -> None:
    """S at the model's horizon, the predicted risk group, the recorded outcome, the modalities."""
    config = ctx.checkpoint.config
    row = ctx.predictions().set_index("case_id").loc[case.case_id]
    survival = float(config.survival_bins.survival_at(base.survival_curve[None], config.horizon)[0])
    st.metric(f"Survival at {case_figures.horizon_words(config.horizon, config.survival_bins.unit)}",
              f"{survival:.0%}", help="Risk group: the tertile of the predicted risk (1 − survival at the "
                                      "horizon) among this cohort's cases.")
    group = row["risk_group"] or "-"
    st.markdown(f"**Risk group:** {group} (risk {1 - survival:.2f}) · **Recorded:** "
                f"{case_figures.outcome_text(float(row['time']), float(row['event']), config.survival_bins.unit)}"
                f" · **Site:** {case.site or '-'}")
    st.markdown("**Modalities:** " + case_notes.modality_line(status, ctx.titles))


def curve_chart(ctx: Context, base: CaseExplanation) -> None:
    config = ctx.checkpoint.config
    km = cohort_kaplan_meier(ctx, ctx.data_key)
    st.plotly_chart(case_figures.curve_with_compared(config.survival_bins, base.survival_curve, config.horizon,
                                                     cohort=km, title="Predicted survival of this case"),
                    key="case.survival_curve")
    st.caption(f"The model's survival curve for this case beside the Kaplan-Meier curve of the cohort's "
               f"{int(km.at_risk[0]) if len(km.at_risk) else 0} recorded outcomes (band: 95 % interval).")


def quantity_choice(ctx: Context, case_id: str, base: CaseExplanation) -> tuple[CaseExplanation, SurvivalTarget]:
    """Which quantity the panels explain; returns its explanation and the target."""
    config = ctx.checkpoint.config
    unit, horizon = config.survival_bins.unit, float(config.horizon)
    words = case_figures.horizon_words(horizon, unit)
    labels = {"survival": f"survival at {words} (default)", "risk": f"risk score (1 − survival at {words})",
              "horizon": "survival at a chosen time"}
    left, right = st.columns([3, 1])
    choice = left.radio("Explain", QUANTITIES, key=QUANTITY, horizontal=True, format_func=labels.get)
    target = SurvivalTarget()
    if choice == "risk":
        target = SurvivalTarget("risk")
    elif choice == "horizon":
        edges = config.survival_bins.edges
        step = float(edges[1]) / 4  # a quarter of the first time bin (3 months for yearly bins)
        at = right.slider(f"Time ({unit})", step, float(edges[-1]), horizon, step, key=HORIZON,
                          help=f"Within the model's time grid (0 to {edges[-1]:g} {unit}).")
        target = SurvivalTarget() if at == horizon else SurvivalTarget("survival", float(at))  # one cache entry
    explanation = base if target == SurvivalTarget() else ctx.explain(case_id, survival=target)
    name = case_figures.quantity_name(explanation.classes[0])
    st.markdown(f"Explaining **<span id='explained-class' data-case='{html.escape(case_id, quote=True)}'>{name}"
                "</span>**", unsafe_allow_html=True)
    return explanation, target


def importance_caption(explanation: CaseExplanation) -> str:
    name = case_figures.quantity_name(explanation.classes[0])
    return (f"Shapley values for {name} add up to its value with every modality present minus with all missing "
            f"= {explanation.importance.probability_full[0]:.3f} − {explanation.importance.probability_none[0]:.3f}.")


def ablation(ctx: Context, case: Case, base: CaseExplanation, status: Mapping[str, str]) -> None:
    """Per declared modality an observed fraction (the image all or nothing); the predicted curve of the
    partial case over the original's, and the change of S at the horizon."""
    config = ctx.checkpoint.config
    st.subheader("What if a modality were missing?")
    st.caption("Observe part of each modality: the first sentences of a note, the first values of a tabular "
               "modality in its order; an image is all or nothing. 0 % = missing (the model's learned missing "
               "embedding). The curve moves as you slide.")
    declared = case_panels.Declared(ctx.names, ctx.titles, ctx.kinds, survival=True)
    fractions = case_panels.observe_controls(declared, base.present, dict(status))
    changed = any(f < 1.0 for f in fractions.values())
    curve = (ctx.predictor.predict_survival([partial_case(case, fractions)]).curves[0] if changed
             else base.survival_curve)
    bins, horizon = config.survival_bins, float(config.horizon)
    before = float(bins.survival_at(base.survival_curve[None], horizon)[0])
    after = float(bins.survival_at(np.asarray(curve)[None], horizon)[0])
    words = case_figures.horizon_words(horizon, bins.unit)
    st.markdown(f"**Survival at {words}**: {before:.1%} → <span id='ablation-result'>{after:.1%}</span> "
                f"({100 * (after - before):+.1f} points)", unsafe_allow_html=True)
    st.plotly_chart(case_figures.curve_with_compared(bins, base.survival_curve, horizon, curve if changed else None,
                                                     cohort=cohort_kaplan_meier(ctx, ctx.data_key),
                                                     title="Predicted survival: all observed and with the sliders'"
                                                           " observation"),
                    key="case.ablation_curve")
