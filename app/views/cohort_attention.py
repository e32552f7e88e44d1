"""Cohort attention: the model's average cross-modal attention and modality importance, by true and by
predicted class (the paper's figure 2A). For a survival model: Kaplan-Meier curves by predicted risk group
with the log-rank test, calibration at the model's horizon, the C-index, and attention and importance by
risk group. For a time-stamped (ICU) cohort: figure 2C (mean attention received and |Shapley| share per
modality and prediction hour, by outcome, beside the paper's numbers), AUROC / AUPRC per prediction hour
with stay-bootstrap intervals and the calibration of the risk. Each reads the precomputed explanation store
(python -m explain cohort --out) when it holds the cases shown, and says so; otherwise it computes them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import figures, interaction_figures
from app.cohort_attributions import attribution_section
from app.icu_cohort_figures import (
    VALUES,
    figure_2c,
    hour_metrics_figure,
    hour_table,
    paper_comparison,
    risk_calibration_figure,
)
from app.state import Context, StoreLookup, context, split_picker
from explain.cohort import CohortImportance
from explain.interaction_attention import class_correlations
from explain.timeline import PAPER_FIGURE_2C, RISK_CLASS, cohort_over_time, figure_2c_rows
from app.survival_figures import (
    RISK_GROUPS,
    by_risk_group,
    calibration_figure,
    risk_group_figure,
    risk_group_survival,
)
from neurofusion.risk_metrics import risk_metrics, risk_metrics_table
from neurofusion.survival import Calibration, calibration_at, concordance_index

RISK_BOOTSTRAP = 1000  # stay resamples of the AUROC / AUPRC intervals, as risk_metrics' default


@st.cache_data(show_spinner="Computing the C-index and the calibration (bootstrap)...", max_entries=16)
def _survival_metrics(time: np.ndarray, event: np.ndarray, risk: np.ndarray,
                      horizon: float) -> tuple[dict, Calibration]:
    """C-index of the risk scores and calibration of 1 - risk at the horizon, each with bootstrap CIs (200
    resamples, seed 0, as the checkpoint's recorded metrics)."""
    n_groups = max(2, min(10, len(time) // 10))  # about ten cases a group at least
    return (concordance_index(time, event, risk, n_boot=200, seed=0).to_dict(),
            calibration_at(time, event, 1.0 - risk, horizon=horizon, n_groups=n_groups, n_boot=200, seed=0))


def _survival_page(ctx: Context, ids: tuple[str, ...], split: str) -> None:
    config = ctx.checkpoint.config
    bins, horizon = config.survival_bins, float(config.horizon)
    frame = ctx.predictions().set_index("case_id").loc[list(ids)]
    known = frame[frame["time"].notna()]
    if known.empty:
        st.info("None of these cases has a recorded outcome (time, event): no survival curve to draw.")
        st.stop()
    if len(known) < len(frame):
        st.caption(f"{len(frame) - len(known)} case(s) without a recorded outcome are left out.")
    time, event = known["time"].to_numpy(dtype=float), known["event"].to_numpy(dtype=float)
    risk = known["risk"].to_numpy(dtype=float)
    groups, curves, test = risk_group_survival(time, event, risk)
    c_index, calibration = _survival_metrics(time, event, risk, horizon)
    where = "every case" if split == "all" else f"the {split} split"
    c1, c2 = st.columns(2)
    c1.metric(f"C-index on {where}", "n/a" if c_index["value"] is None else f"{c_index['value']:.3f}")
    c1.caption(f"95 % CI {c_index['ci_low']:.3f} to {c_index['ci_high']:.3f} (bootstrap over {len(known)} cases); "
               f"risk score 1 − S({horizon:g} {bins.unit})" if c_index["ci_low"] is not None
               else c_index.get("reason") or "")
    c2.metric("Events", f"{int(event.sum())} of {len(known)}")
    st.plotly_chart(risk_group_figure(curves, test, bins.unit, horizon), key="cohort.km")
    st.caption("Risk groups are tertiles of the predicted risk 1 − S(horizon) over these cases; bands are the "
               "Kaplan-Meier 95 % intervals; the dotted line is the horizon.")
    st.plotly_chart(calibration_figure(calibration, bins.unit), key="cohort.calibration")

    st.subheader("Attention and importance by predicted risk group")
    present = [g for g in RISK_GROUPS if (groups == g).any()]
    ids_known = known.index.to_numpy()
    stored = ctx.explanation_store()
    if stored.problem:
        st.warning(stored.problem)
    parts = {f"{g} risk": ctx.cohort_explanation(tuple(sorted(ids_known[groups == g]))) for g in present}
    if stored.holds(ids_known, ctx.checkpoint.model):
        st.caption(stored.caption)
    importance = by_risk_group(parts)
    order = list(parts)
    if importance.attention is None:
        st.info(f"A {config.architecture} model has no cross-modal attention; modality importance is shown below.")
    else:
        attention = importance.attention
        st.plotly_chart(figures.cohort_attention_grid(attention.by_true, attention.counts_true,
                                                      "Mean attention by predicted risk group (row attends to column)",
                                                      classes=order, modalities=ctx.titles), key="cohort.attention")
        st.caption("Each cell is averaged over the cases that have both modalities. Attention shows what the model "
                   "mixes, not by itself what it relies on: compare with the Shapley values below.")
    method = st.radio("Modality importance", importance.methods, key="cohort.method", horizontal=True,
                      format_func=lambda m: figures.METHOD_LABELS.get(m, figures.pretty(m)))
    st.plotly_chart(figures.importance_by_class(importance.by_class(method, classes=order), method,
                                               modalities=ctx.titles, explained=importance.explained,
                                               groups="risk group"), key="cohort.importance_true")
    st.caption(f"Mean over the cases of each risk group that have the modality. Shapley and leave-one-out are in "
               f"units of the explained quantity, the predicted {importance.explained} (a probability: a "
               "negative value lowers predicted survival); attention is a weight between 0 and 1.")
    attribution_section(stored, ids, survival=True, titles=ctx.titles)


def risk_inputs(ctx: Context, ids: tuple[str, ...],
                stored: StoreLookup | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(N,) label (1 = dies within 48 h), predicted risk, stay and prediction hour of the samples ``ids`` of a
    time-stamped cohort: read from the explanation store ``stored`` (its samples' rows, no model), else from the
    cohort predictions."""
    if stored is not None:
        samples = stored.samples(ids)
        return (samples.label == RISK_CLASS).astype(int), samples.risk, samples.stay_ids, samples.hours
    event = ctx.classes[RISK_CLASS]
    frame = ctx.predictions().set_index("case_id").loc[list(ids)]
    samples = ctx.cohort.table.set_index("case_id").loc[list(ids)]
    return ((frame["label"] == event).to_numpy(dtype=int), frame[f"p_{event}"].to_numpy(dtype=float),
            samples["stay_id"].to_numpy(), samples["hour"].to_numpy(dtype=float))


@st.cache_data(show_spinner="Computing AUROC, AUPRC and calibration by hour (bootstrap over stays)...",
               max_entries=16)
def _risk_metrics(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...], from_store: bool) -> dict:
    return risk_metrics(*risk_inputs(_ctx, ids, _ctx.explanation_store() if from_store else None),
                        n_bootstrap=RISK_BOOTSTRAP, seed=0)


@st.cache_data(show_spinner="Figure 2C: attention and modality importance of every sample...", max_entries=8)
def _over_time(_ctx: Context, model_key: str, cases_key: str, split: str) -> pd.DataFrame:
    """cohort_over_time of one split, or of every split ("all"), computed with the model."""
    return cohort_over_time(_ctx.predictor, _ctx.cohort, split=split)


def _stored_over_time(ctx: Context, stored: StoreLookup, split: str) -> pd.DataFrame | None:
    """Figure 2C's rows of ``split`` from the explanation store when it holds every sample of the split (the same
    aggregation as cohort_over_time: explain.timeline.figure_2c_rows); None otherwise, saying why when a store
    is there."""
    ids = ctx.split_ids(split)
    if stored.holds(ids, ctx.checkpoint.model):
        return figure_2c_rows(stored.samples(ids), ctx.cohort)
    if stored.store is not None:
        held = stored.store.manifest["settings"].get("split")
        st.caption(f"The precomputed store {stored.path} does not hold {len(stored.missing(ids))} of these samples "
                   f"(it was written for {'every split' if held == 'all' else f'the {held} split'}): computed here "
                   "instead.")
    return None


def _icu_page(ctx: Context, ids: tuple[str, ...], split: str) -> None:
    where = "every stay" if split == "all" else f"the {split} split"
    hours = ", ".join(f"{h:g}" for h in ctx.cohort.hours)
    st.caption(f"Each sample is a stay of {where} as of one prediction hour ({hours} h): "
               "the model reads only what was recorded by then and predicts death within the next 48 hours. "
               "Stays that had ended by an hour are not scored at it.")
    stored = ctx.explanation_store()
    if stored.problem:
        st.warning(stored.problem)
    st.subheader("How the model's attention moves over the stay (figure 2C)")
    over_time = _stored_over_time(ctx, stored, split)
    if over_time is not None:
        st.caption(f"Figure 2C: {stored.caption}")
    else:
        over_time = _over_time(ctx, ctx.model_key, ctx.cases_key, split)
    value = st.radio("Show", tuple(VALUES), key="cohort.icu_value", horizontal=True, format_func=VALUES.get)
    st.plotly_chart(figure_2c(over_time, ctx.titles, value, PAPER_FIGURE_2C), key="cohort.figure_2c")
    st.caption("Outcome is how the stay ended (died in the ICU or discharged alive), whatever the hour. Attention "
               "received is the mean over the query modalities of the cross-modal attention each modality "
               "receives; the |Shapley| share is each modality's share of the exact Shapley values of the predicted "
               "risk. Diamonds: the paper's attention weights (real data, every stay; it reports demographics at "
               "0 h, vital signs at 12, 24 and 36 h and nursing notes near 0.25 throughout).")
    comparison = paper_comparison(over_time, ctx.titles, PAPER_FIGURE_2C)
    if not comparison.empty:
        st.dataframe(comparison, hide_index=True, key="cohort.paper_2c",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                                    ("Paper (real data)", "Died in the ICU", "Survived", "Both groups")})

    st.subheader("Performance by prediction hour")
    from_store = stored.holds(ids, ctx.checkpoint.model)
    metrics = _risk_metrics(ctx, ctx.model_key, ctx.cases_key, ids, from_store)
    if from_store:
        st.caption(f"The risk of every sample: {stored.caption}")
    c1, c2, c3 = st.columns(3)
    for column, name, label in ((c1, "auroc", "AUROC"), (c2, "auprc", "AUPRC"), (c3, "brier", "Brier score")):
        estimate = metrics[name]
        column.metric(f"{label}, all hours", "n/a" if estimate["value"] is None else f"{estimate['value']:.3f}")
        column.caption(f"95 % CI {estimate['ci_low']:.3f} to {estimate['ci_high']:.3f}"
                       if estimate["ci_low"] is not None else estimate.get("reason") or "not defined")
    st.caption(f"{metrics['n_samples']} samples of {metrics['n_stays']} stays, {metrics['n_events']} followed by death "
               f"within 48 h; intervals: {RISK_BOOTSTRAP} bootstrap resamples of stays (every sample of a drawn stay). "
               "Paper (real data): AUROC 0.913, AUPRC 0.849.")
    st.plotly_chart(hour_metrics_figure(metrics), key="cohort.by_hour")
    st.dataframe(hour_table(risk_metrics_table(metrics)), hide_index=True, key="cohort.hour_table")
    st.plotly_chart(risk_calibration_figure(metrics), key="cohort.calibration")


def _cohort_interactions(importance: CohortImportance, group: str, by: str, classes: list[str],
                         modalities: dict[str, str] | None) -> None:
    """The mean pairwise interaction matrix per class beside (under) the mean attention, and per class the rank
    correlation of the mean attention with the mean |interaction| (from the cohort pass's subset values)."""
    means = importance.interaction_means(group, classes)
    shown = {c: m for c, m in means.mean.items() if means.counts[c]}
    if not shown:
        st.info(f"No case here has a {by}: no interaction to average.")
        return
    st.plotly_chart(interaction_figures.cohort_interaction_grid(shown, means.counts, "p(predicted class)",
                                                                f"Mean modality interaction by {by}", classes,
                                                                modalities),
                    key="cohort.interactions")
    st.caption("Each cell: the pairwise Shapley interaction index, how much the two modalities' joint presence "
               "adds to the probability of the case's predicted class beyond each alone (red: more together than "
               "apart, blue: less, e.g. redundant evidence), averaged over the cases that have both.")
    if importance.attention is None:
        return
    attention = importance.attention.by_true if group == "label" else importance.attention.by_predicted
    correlations = class_correlations(attention, means.mean_abs, [c for c in classes if means.counts[c]])
    st.dataframe(interaction_figures.correlation_table(correlations, means.counts), hide_index=True,
                 key="cohort.interaction_correlation",
                 column_config={"Spearman ρ": st.column_config.NumberColumn(format="%.2f")})
    st.caption("Does attention point at the pairs that interact? Per class, Spearman's ρ between the mean "
               "attention both ways (a_ij + a_ji) and the mean |interaction| of each modality pair (its size in "
               "either direction); not defined with fewer than 3 pairs or when either side is the same for all.")


ctx = context()
st.title("Cohort attention")
split = split_picker(ctx, "cohort.split")
ids = tuple(ctx.readable_ids(ctx.split_ids(split)))
if not ids:
    st.info("No case of this selection can be read.")
    st.stop()
if ctx.survival:
    _survival_page(ctx, ids, split)
    st.stop()
if ctx.timed:
    _icu_page(ctx, ids, split)
    st.stop()
stored = ctx.explanation_store()
if stored.problem:
    st.warning(stored.problem)
uncovered = stored.missing(ids)
if not uncovered:
    importance = stored.importance(ids)
    st.caption(stored.caption)
else:
    if stored.store is not None:
        st.caption(f"The precomputed store {stored.path} does not hold {len(uncovered)} of these cases (it was written "
                   f"for the {stored.store.manifest['settings']['split']} split): computed here instead.")
    importance = ctx.cohort_explanation(ids)
attention = importance.attention
classes = ctx.checkpoint.config.classes
# cardio's four keep the figures' own labels; a declared set is labelled by its titles
modalities = None if list(ctx.names) == list(figures.MODALITY_LABELS) else ctx.titles
by = st.radio("Group by", ("true class", "predicted class"), key="cohort.group", horizontal=True)
if attention is None:
    st.info(f"A {ctx.checkpoint.config.architecture} model has no cross-modal attention; the modality "
            "interactions and importance are shown below.")
else:
    groups, counts = ((attention.by_true, attention.counts_true) if by == "true class"
                      else (attention.by_predicted, attention.counts_predicted))
    st.plotly_chart(figures.cohort_attention_grid(groups, counts, f"Mean attention by {by} (row attends to column)",
                                                  classes=classes, modalities=modalities),
                    key="cohort.attention")
    st.caption("Each cell is averaged over the cases that have both modalities. Attention shows what the model "
               "mixes, not by itself what it relies on: compare with the interactions and Shapley values below.")
_cohort_interactions(importance, "label" if by == "true class" else "predicted", by, classes, modalities)

method = st.radio("Modality importance", importance.methods, key="cohort.method", horizontal=True,
                  format_func=lambda m: figures.METHOD_LABELS.get(m, figures.pretty(m)))
st.plotly_chart(figures.importance_by_class(importance.by_class(method, classes=ctx.checkpoint.config.classes),
                                           method), key="cohort.importance_true")
st.caption("Mean over the cases of each true class that have the modality. Shapley and leave-one-out are "
           "changes in the probability of the predicted class; attention is a weight between 0 and 1.")
attribution_section(stored, ids, survival=False, labels=ctx.predictions().set_index("case_id")["label"],
                    order=classes, titles=ctx.titles)
