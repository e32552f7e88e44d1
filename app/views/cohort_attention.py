"""Cohort attention: the model's average cross-modal attention and modality importance, by true and by
predicted class (the paper's figure 2A)."""

from __future__ import annotations

import streamlit as st

from app import figures
from app.state import context, split_picker


ctx = context()
st.title("Cohort attention")
split = split_picker(ctx, "cohort.split")
ids = tuple(ctx.readable_ids(ctx.split_ids(split)))
if not ids:
    st.info("No case of this selection can be read.")
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
