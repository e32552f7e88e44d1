"""Missing-modality study: hide modalities at chosen rates across the cohort and watch accuracy, and the
paper's section 7.3 table (each modality and each pair withheld from every case)."""

from __future__ import annotations

import streamlit as st

from app import figures
from app.state import Context, context, split_picker
from explain.ablation import HiddenPredictions, hidden_predictions, missing_rate_metrics, withheld_metrics
from neurofusion.data.schema import MODALITIES

PAPER_7_3 = ("The paper (real data) gives 94.2 % with every modality, 89.7 % on average with one missing and "
             "84.3 % with two; missing ECG cost the most (−4.8 points), the note the least (−2.1). It reports no "
             "other single modality, so those rows show the mean.")


@st.cache_data(show_spinner="Predicting the cohort with each set of modalities hidden (once)...", max_entries=8)
def _hidden(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...]) -> HiddenPredictions:
    return hidden_predictions(_ctx.predictor, _cases(_ctx, ids))


@st.cache_data(max_entries=256)
def _rates(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...], rates: tuple[tuple[str, float], ...],
           seed: int) -> dict:
    """A slider step is a lookup in the cached predictions plus the bootstrap: no model pass."""
    hidden = _hidden(_ctx, model_key, cases_key, ids)
    return missing_rate_metrics(hidden, dict(rates), n_bootstrap=500, seed=seed)


@st.cache_data(max_entries=8)
def _withheld(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...]) -> dict:
    return withheld_metrics(_hidden(_ctx, model_key, cases_key, ids), n_bootstrap=500)


def _cases(ctx: Context, ids: tuple[str, ...]):
    return [ctx.cohort[i] for i in ids]


ctx = context()
st.title("Missing modalities")
split = split_picker(ctx, "missing.split")
ids = tuple(ctx.readable_ids(ctx.split_ids(split)))
if not ids:
    st.info("No case of this selection can be read.")
    st.stop()

st.subheader("Hide modalities at random")
st.caption("Each modality is hidden, independently for each case, with the chosen probability (on top of what "
           "the cohort already lacks); the model then uses its learned missing embeddings.")
columns = st.columns(4)
rates = tuple((m, column.slider(f"{figures.MODALITY_LABELS[m]} missing (%)", 0, 100, 0, 10, key=f"missing.rate_{m}") / 100)
              for column, m in zip(columns, MODALITIES))
seed = st.number_input("Random seed", 0, 10_000, 0, key="missing.seed")
baseline = _rates(ctx, ctx.model_key, ctx.cases_key, ids, tuple((m, 0.0) for m in MODALITIES), 0)
result = _rates(ctx, ctx.model_key, ctx.cases_key, ids, rates, int(seed))
metric_names = {"accuracy": "Accuracy", "macro_f1": "Macro F1"}
rows = [{"name": label, "group": "as recorded", **baseline[key]} for key, label in metric_names.items()]
rows += [{"name": label, "group": "with the rates above", **result[key]} for key, label in metric_names.items()]
st.plotly_chart(figures.metric_bars(rows, "Score on the selected cases (95 % CI)"), key="missing.metrics")
observed = ", ".join(f"{figures.MODALITY_LABELS[m]} {v:.0%}" for m, v in result["observed_share"].items())
st.caption(f"Share of cases in which each modality was seen: {observed}. Error bars: bootstrap 95 % CI.")

st.subheader("Section 7.3: withholding modalities from every case")
st.caption("As in the paper's section 7.3: each modality, and each pair of modalities, is withheld from every "
           "test case in turn, and the model predicts with its learned missing embeddings in their place.")
study = _withheld(ctx, ctx.model_key, ctx.cases_key, ids)
paper = ctx.checkpoint.config.task == "cardio"  # the paper's numbers are for the cardiovascular task
table = figures.withheld_table(study, paper=paper)
st.dataframe(table, hide_index=True, key="missing.table", height=figures.table_height(len(table)),  # every row, no scrolling
             column_config={"Accuracy (%)": st.column_config.NumberColumn(format="%.1f"),
                            "Change (points)": st.column_config.NumberColumn(format="%+.1f"),
                            "Macro F1": st.column_config.NumberColumn(format="%.3f")})
if paper:
    st.caption(PAPER_7_3)
