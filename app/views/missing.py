"""Missing-modality study: hide modalities at chosen rates across the cohort and watch accuracy (a survival
model: the C-index and the AUC at its horizon; a time-stamped ICU cohort's risk of death within 48 h: AUROC
and AUPRC with intervals that resample stays), and the paper's section 7.3 table (each modality and each pair
withheld from every case)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures
from app.icu_cohort_figures import PAPER_ICU, metric_rows, withheld_risk_table
from app.state import Context, context, split_picker
from app.survival_figures import withheld_survival_table
from explain.ablation import (
    HiddenPredictions,
    hidden_predictions,
    missing_rate_metrics,
    random_hiding,
    section_7_3,
    withheld_metrics,
)
from explain.survival_ablation import HiddenSurvival, hidden_survival, missing_rate_survival, withheld_survival
from neurofusion.data.schema import MODALITIES
from neurofusion.evaluate import censoring_reference
from neurofusion.risk_metrics import risk_metrics

PAPER_7_3 = ("The paper (real data) gives 94.2 % with every modality, 89.7 % on average with one missing and "
             "84.3 % with two; missing ECG cost the most (−4.8 points), the note the least (−2.1). It reports no "
             "other single modality, so those rows show the mean.")
PAPER_7_3_CANCER = ("The paper (real data) gives one cancer figure: withholding genomics costs 6.3 C-index points. "
                    "It reports no other modality.")
SURVIVAL_BOOTSTRAP = 200  # resamples of the C-index and AUC intervals, as the checkpoint's recorded metrics
RISK_BOOTSTRAP = 500  # stay resamples of the ICU AUROC and AUPRC intervals (as the classifier's 500 above)
PAPER_7_3_ICU = ("The paper (real data) reports no ICU figure with modalities withheld; its vital-signs-only model "
                 f"(a separately trained model, Table 2) reaches AUROC {PAPER_ICU['vitals_only_auroc']:.3f} and AUPRC "
                 f"{PAPER_ICU['vitals_only_auprc']:.3f} against NeuroFusion's {PAPER_ICU['auroc']:.3f} and "
                 f"{PAPER_ICU['auprc']:.3f}: the last row withholds everything but the vital signs from this one "
                 "model.")


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


@st.cache_data(show_spinner="Predicting survival with each set of modalities hidden (once)...", max_entries=8)
def _hidden_survival(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...]) -> HiddenSurvival:
    return hidden_survival(_ctx.predictor, _cases(_ctx, ids))


def _reference(ctx: Context) -> dict | None:
    """Whose outcomes weight censoring in the AUC: the cohort's train split when it has outcomes, else (None)
    the evaluated cases' own, as neurofusion.evaluate does."""
    return censoring_reference(ctx.cohort, ctx.cohort.ids("train"), "the cohort's train split")


@st.cache_data(show_spinner="Computing the C-index and AUC (bootstrap)...", max_entries=256)
def _survival_rates(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...],
                    rates: tuple[tuple[str, float], ...], seed: int) -> dict:
    """A slider step is a lookup in the cached curves plus the bootstrap: no model pass."""
    return missing_rate_survival(_hidden_survival(_ctx, model_key, cases_key, ids), dict(rates),
                                 reference=_reference(_ctx), n_bootstrap=SURVIVAL_BOOTSTRAP, seed=seed)


@st.cache_data(show_spinner="Computing the section 7.3 table (bootstrap)...", max_entries=8)
def _survival_withheld(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...]) -> dict:
    return withheld_survival(_hidden_survival(_ctx, model_key, cases_key, ids), reference=_reference(_ctx),
                             n_bootstrap=SURVIVAL_BOOTSTRAP)


def _survival_page(ctx: Context, ids: tuple[str, ...]) -> None:
    config = ctx.checkpoint.config
    titles, unit = ctx.titles, config.survival_bins.unit
    auc_name = f"AUC at {config.horizon:g} {unit}"
    rates, seed = _rate_controls(titles, "Each modality is hidden, independently for each case, with the chosen "
                                 "probability (on top of what the cohort already lacks); the model then uses its "
                                 "learned missing embeddings.")
    keys = (ctx, ctx.model_key, ctx.cases_key, ids)
    baseline = _survival_rates(*keys, tuple((m, 0.0) for m in titles), 0)
    result = _survival_rates(*keys, rates, seed)
    if baseline["c_index"]["value"] is None:
        st.info(f"The C-index is {baseline['c_index']['reason']} on these cases.")
        st.stop()
    metric_names = {"c_index": "C-index", "auc_at_horizon": auc_name}
    rows = [{"name": label, "group": group, **_nan_for_none(scores[key])}
            for group, scores in (("as recorded", baseline), ("with the rates above", result))
            for key, label in metric_names.items()]
    st.plotly_chart(figures.metric_bars(rows, "Score on the selected cases (95 % CI)", percent=False),
                    key="missing.metrics")
    observed = ", ".join(f"{titles[m]} {v:.0%}" for m, v in result["observed_share"].items())
    undefined = [f"{label}: {s[key]['reason']}" for key, label in metric_names.items()
                 for s in (baseline, result) if s[key]["value"] is None]
    st.caption(f"Share of cases in which each modality was seen: {observed}. {result['n']} cases with an outcome "
               f"({result['n_events']} events); risk score 1 − S({config.horizon:g} {unit}). Error bars: bootstrap "
               f"95 % CI ({SURVIVAL_BOOTSTRAP} resamples). AUC censoring weights from "
               f"{result['censoring_reference']}." + (f" Not shown: {'; '.join(undefined)}." if undefined else ""))

    st.subheader("Section 7.3: withholding modalities from every case")
    st.caption("As in the paper's section 7.3: each modality, and each pair of modalities, is withheld from every "
               "case in turn, and the model predicts with its learned missing embeddings in their place.")
    paper = config.task == "cancer"  # the paper's one survival figure is for its cancer task
    table = withheld_survival_table(_survival_withheld(*keys), titles, paper=paper).rename(
        columns={"AUC at horizon": auc_name, "AUC 95 % CI": f"{auc_name}: 95 % CI"})
    st.dataframe(table, hide_index=True, key="missing.table", height=figures.table_height(len(table)),
                 column_config={"C-index": st.column_config.NumberColumn(format="%.3f"),
                                "Change (points)": st.column_config.NumberColumn(format="%+.1f"),
                                auc_name: st.column_config.NumberColumn(format="%.3f")})
    if paper:
        st.caption(PAPER_7_3_CANCER)


def _stays_hours(ctx: Context, ids: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(N,) stay and prediction hour of each sample of a time-stamped cohort."""
    samples = ctx.cohort.table.set_index("case_id").loc[list(ids)]
    return samples["stay_id"].to_numpy(), samples["hour"].to_numpy(dtype=float)


def _risk_of(hidden: HiddenPredictions, subset: np.ndarray | int) -> np.ndarray:
    """(N,) predicted risk (probability of class 1, death within 48 h) of each sample with the modalities of
    ``subset`` hidden (a bit mask per sample, or one for all)."""
    return hidden.probabilities[subset, np.arange(len(hidden.labels)), 1]


@st.cache_data(show_spinner="Computing AUROC and AUPRC (bootstrap over stays)...", max_entries=256)
def _icu_rates(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...],
               rates: tuple[tuple[str, float], ...], seed: int) -> dict:
    """A slider step is a lookup in the cached predictions plus the stay bootstrap: no model pass."""
    hidden = _hidden(_ctx, model_key, cases_key, ids)
    hide, subset = random_hiding(len(hidden.labels), hidden.names, dict(rates), seed)
    stays, hours = _stays_hours(_ctx, ids)
    result = risk_metrics(hidden.labels == 1, _risk_of(hidden, subset), stays, hours, n_bootstrap=RISK_BOOTSTRAP,
                          seed=seed)
    observed = (hidden.present & ~hide).mean(0)
    return {**result, "observed_share": dict(zip(hidden.names, observed.round(4).tolist()))}


def icu_drops(names: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Section 7.3's rows (nothing, each modality, each pair withheld) and, when the model has vital signs,
    everything but them withheld (the paper's vitals-only comparison)."""
    drops = section_7_3(names)
    if "vitals" in names and len(names) > 3:
        drops.append(tuple(m for m in names if m != "vitals"))
    return drops


@st.cache_data(show_spinner="Computing the section 7.3 table (bootstrap over stays)...", max_entries=8)
def _icu_withheld(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...]) -> dict:
    hidden = _hidden(_ctx, model_key, cases_key, ids)
    stays, _ = _stays_hours(_ctx, ids)
    study = {}
    for drop in icu_drops(hidden.names):
        subset = sum(1 << hidden.names.index(m) for m in drop)
        study[",".join(drop) or "none"] = risk_metrics(hidden.labels == 1, _risk_of(hidden, subset), stays,
                                                       n_bootstrap=RISK_BOOTSTRAP, seed=0)
    return study


def _rate_controls(titles: dict[str, str], caption: str) -> tuple[tuple[tuple[str, float], ...], int]:
    """The random-hiding controls: one missing-rate slider per modality and the seed -> ((name, rate), ...), seed."""
    st.subheader("Hide modalities at random")
    st.caption(caption)
    columns = st.columns(len(titles))
    rates = tuple((m, column.slider(f"{title} missing (%)", 0, 100, 0, 10, key=f"missing.rate_{m}") / 100)
                  for column, (m, title) in zip(columns, titles.items()))
    return rates, int(st.number_input("Random seed", 0, 10_000, 0, key="missing.seed"))


def _icu_page(ctx: Context, ids: tuple[str, ...]) -> None:
    titles = ctx.titles
    rates, seed = _rate_controls(titles, "Each modality is hidden, independently for each sample (a stay as of a "
                                 "prediction hour), with the chosen probability (on top of what was not yet recorded "
                                 "by then); the model then uses its learned missing embeddings. Scores are of the "
                                 "predicted risk of death within 48 h.")
    keys = (ctx, ctx.model_key, ctx.cases_key, ids)
    baseline = _icu_rates(*keys, tuple((m, 0.0) for m in titles), 0)
    result = _icu_rates(*keys, rates, seed)
    rows = metric_rows(baseline, "as recorded") + metric_rows(result, "with the rates above")
    st.plotly_chart(figures.metric_bars(rows, "Score on the selected samples (95 % CI)", percent=False),
                    key="missing.metrics")
    observed = ", ".join(f"{titles[m]} {v:.0%}" for m, v in result["observed_share"].items())
    undefined = [f"{name.upper()}: {s[name]['reason']}" for name in ("auroc", "auprc") for s in (baseline, result)
                 if s[name]["value"] is None]
    st.caption(f"Share of samples in which each modality was seen: {observed}. {result['n_samples']} samples of "
               f"{result['n_stays']} stays, {result['n_events']} followed by death within 48 h. Error bars: 95 % CI "
               f"from {RISK_BOOTSTRAP} bootstrap resamples of stays (every sample of a drawn stay)."
               + (f" Not shown: {'; '.join(undefined)}." if undefined else ""))

    st.subheader("Section 7.3: withholding modalities from every sample")
    st.caption("As in the paper's section 7.3: each modality, and each pair of modalities, is withheld from every "
               "sample in turn, and the model predicts with its learned missing embeddings in their place.")
    study = _icu_withheld(*keys)
    vitals_only = ",".join(m for m in titles if m != "vitals")
    paper = {"none": f"AUROC {PAPER_ICU['auroc']:.3f}, AUPRC {PAPER_ICU['auprc']:.3f}",
             vitals_only: f"AUROC {PAPER_ICU['vitals_only_auroc']:.3f}, AUPRC {PAPER_ICU['vitals_only_auprc']:.3f} "
                          "(vitals-only model)"}
    table = withheld_risk_table(study, titles, paper=paper)
    st.dataframe(table, hide_index=True, key="missing.table", height=figures.table_height(len(table)),
                 column_config={"AUROC": st.column_config.NumberColumn(format="%.3f"),
                                "AUPRC": st.column_config.NumberColumn(format="%.3f"),
                                "Change (points)": st.column_config.NumberColumn(format="%+.1f")})
    st.caption(PAPER_7_3_ICU)


def _nan_for_none(estimate: dict) -> dict:
    """An estimate the data could not define as NaN (the bar reads n/a) instead of None."""
    return {k: float("nan") if estimate.get(k) is None else estimate[k] for k in ("value", "ci_low", "ci_high")}


ctx = context()
st.title("Missing modalities")
split = split_picker(ctx, "missing.split")
ids = tuple(ctx.readable_ids(ctx.split_ids(split)))
if not ids:
    st.info("No case of this selection can be read.")
    st.stop()
if ctx.survival:
    _survival_page(ctx, ids)
    st.stop()
if ctx.timed:
    _icu_page(ctx, ids)
    st.stop()

rates, seed = _rate_controls({m: figures.MODALITY_LABELS[m] for m in MODALITIES},
                             "Each modality is hidden, independently for each case, with the chosen probability (on "
                             "top of what the cohort already lacks); the model then uses its learned missing "
                             "embeddings.")
baseline = _rates(ctx, ctx.model_key, ctx.cases_key, ids, tuple((m, 0.0) for m in MODALITIES), 0)
result = _rates(ctx, ctx.model_key, ctx.cases_key, ids, rates, seed)
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
