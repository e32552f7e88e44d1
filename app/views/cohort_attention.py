"""Cohort attention: the model's average cross-modal attention and modality importance, by true and by
predicted class (the paper's figure 2A). For a survival model: Kaplan-Meier curves by predicted risk group
with the log-rank test, calibration at the model's horizon, the C-index, and attention and importance by
risk group."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures
from app.state import Context, context, split_picker
from app.survival_figures import (
    RISK_GROUPS,
    by_risk_group,
    calibration_figure,
    risk_group_figure,
    risk_group_survival,
)
from neurofusion.survival import Calibration, calibration_at, concordance_index


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
    parts = {f"{g} risk": ctx.cohort_explanation(tuple(sorted(ids_known[groups == g]))) for g in present}
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
importance = ctx.cohort_explanation(ids)
attention = importance.attention
if attention is None:
    st.info(f"A {ctx.checkpoint.config.architecture} model has no cross-modal attention; modality importance "
            "is shown below.")
else:
    by = st.radio("Group by", ("true class", "predicted class"), key="cohort.group", horizontal=True)
    groups, counts = ((attention.by_true, attention.counts_true) if by == "true class"
                      else (attention.by_predicted, attention.counts_predicted))
    st.plotly_chart(figures.cohort_attention_grid(groups, counts, f"Mean attention by {by} (row attends to column)",
                                                  classes=ctx.checkpoint.config.classes),
                    key="cohort.attention")
    st.caption("Each cell is averaged over the cases that have both modalities. Attention shows what the model "
               "mixes, not by itself what it relies on: compare with the Shapley values below.")

method = st.radio("Modality importance", importance.methods, key="cohort.method", horizontal=True,
                  format_func=lambda m: figures.METHOD_LABELS.get(m, figures.pretty(m)))
st.plotly_chart(figures.importance_by_class(importance.by_class(method, classes=ctx.checkpoint.config.classes),
                                           method), key="cohort.importance_true")
st.caption("Mean over the cases of each true class that have the modality. Shapley and leave-one-out are "
           "changes in the probability of the predicted class; attention is a weight between 0 and 1.")
