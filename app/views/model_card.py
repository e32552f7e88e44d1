"""Model card: what the loaded model is, how it was trained and on what, how it compares with the
baselines (committed benchmark results), its size and speed, intended use and limits. A survival model
shows its survival metrics (C-index, AUC at the horizon, integrated Brier score, calibration), its time
grid and its declared modalities. A risk model on a time-stamped (ICU) cohort states its task (the label at
hour t, what the model reads at t) and shows AUROC, AUPRC, Brier score and calibration with stay-bootstrap
intervals, overall and per prediction hour, beside the paper's ICU numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app import cost_figures, figures
from app.icu_cohort_figures import PAPER_ICU, hour_table, risk_calibration_figure, risk_metric_table
from app.state import ROOT, Context, context
from app.survival_figures import survival_metric_table
from neurofusion.checkpoint import parameter_counts
from neurofusion.data.schema import MODALITIES
from neurofusion.data.timed import STEP_H, WINDOW_H
from neurofusion.risk_metrics import risk_metrics, risk_metrics_table

RESULTS = ROOT / "benchmarks" / "results"
RISK_BOOTSTRAP = 1000  # stay resamples when the checkpoint recorded no risk metrics (risk_metrics' default)


@st.cache_data(show_spinner="Computing the test metrics of the risk (bootstrap over stays)...", max_entries=8)
def _risk_metrics(_ctx: Context, model_key: str, cases_key: str, ids: tuple[str, ...]) -> dict:
    """AUROC, AUPRC, Brier score and calibration of the loaded cohort's samples ``ids`` (neurofusion.evaluate's
    risk report, computed here when the checkpoint's metrics.json has none)."""
    event = _ctx.classes[1]
    frame = _ctx.predictions().set_index("case_id").loc[list(ids)]
    samples = _ctx.cohort.table.set_index("case_id").loc[list(ids)]
    return risk_metrics((frame["label"] == event).to_numpy(dtype=int), frame[f"p_{event}"].to_numpy(dtype=float),
                        samples["stay_id"].to_numpy(), samples["hour"].to_numpy(dtype=float),
                        n_bootstrap=RISK_BOOTSTRAP, seed=0)


def _task_definition(ctx: Context) -> str:
    """The ICU task as neurofusion/data/timed.py defines it, with this cohort's hours and horizon."""
    hours = ", ".join(f"{h:g}" for h in ctx.cohort.hours)
    horizon = f"{ctx.cohort.horizon_h:g}"
    return (
        f"- **Label at hour t** of a stay: `{ctx.classes[1]}` when the patient died in the ICU within {horizon} h "
        f"after t (died, and stay end − t ≤ {horizon} h), else `{ctx.classes[0]}`. The risk is the predicted "
        f"probability of `{ctx.classes[1]}`.\n"
        f"- **Samples:** each stay as of each prediction hour ({hours} h) it reaches; a stay that had ended "
        "before t is not scored at t. A stay's samples share a patient, so every interval below resamples stays.\n"
        "- **What the model reads at t** (only what was recorded at or before t): vital signs of the last "
        f"{WINDOW_H:g} h on a {STEP_H * 60:g}-minute grid (each variable scaled by its plausible range and carried "
        "forward between measurements, plus a measured-mask channel per variable); each lab's last value and its "
        "age in hours (last observation carried forward, not the paper's nearest-neighbour matching, which could "
        "reach past t); the nursing notes written by t, newest first, each headed by how long before t it was "
        "written; the demographics known at admission. A modality is present at t only when something of it was "
        "recorded by t.")


def _icu_metrics(ctx: Context, test: dict | None) -> None:
    """The checkpoint's recorded risk metrics, or the bundled cohort's test samples' when it has none."""
    risk = (test or {}).get("risk")
    if risk is not None:
        source = (f"{risk['n_samples']} test samples of {risk['n_stays']} stays of the cohort the checkpoint was "
                  "evaluated on when it was trained (metrics.json)")
    else:
        ids = tuple(ctx.readable_ids(ctx.cohort.ids("test")))
        if not ids:
            st.info("This checkpoint has no recorded risk metrics and the loaded cohort has no readable test samples.")
            return
        risk = _risk_metrics(ctx, ctx.model_key, ctx.cases_key, ids)
        source = (f"{risk['n_samples']} test samples of {risk['n_stays']} stays of the loaded cohort "
                  f"({ctx.cohort.root.name}), computed here: the checkpoint's metrics.json records none")
    st.dataframe(risk_metric_table(risk), hide_index=True, key="model.metrics")
    st.caption(f"{source}; {risk['n_events']} samples were followed by death within 48 h. 95 % CIs from "
               f"{risk.get('n_bootstrap', RISK_BOOTSTRAP)} bootstrap resamples of stays. The paper's numbers are its "
               f"real-data results (MIMIC-IV): NeuroFusion AUROC {PAPER_ICU['auroc']:.3f}, AUPRC "
               f"{PAPER_ICU['auprc']:.3f}; vital signs only AUROC {PAPER_ICU['vitals_only_auroc']:.3f}.")
    if risk.get("by_hour"):
        st.markdown("**By prediction hour**")
        st.dataframe(hour_table(risk_metrics_table(risk)), hide_index=True, key="model.hour_metrics")
    st.plotly_chart(risk_calibration_figure(risk), key="model.calibration")

ctx = context()
config, checkpoint = ctx.checkpoint.config, ctx.checkpoint
st.title("Model card")
if ctx.timed:
    st.markdown(f"**{config.architecture}** for the **{config.task}** task · predicts the risk of death within the "
                f"next {ctx.cohort.horizon_h:g} hours at any hour of an ICU stay · loaded from `{checkpoint.path}`")
elif ctx.survival:
    bins = config.survival_bins
    st.markdown(f"**{config.architecture}** for the **{config.task}** task · predicts survival over "
                f"{bins.edges[-1]:g} {bins.unit} (risk score 1 − S({config.horizon:g} {bins.unit})) · loaded from "
                f"`{checkpoint.path}`")
else:
    st.markdown(f"**{config.architecture}** for the **{config.task}** task · classes: "
                + ", ".join(c.replace("_", " ") for c in config.classes) + f" · loaded from `{checkpoint.path}`")
# cardio's four in the words a clinician uses; any other declared set by its titles
inputs = ("echo image, clinical note, 12-lead ECG, labs" if tuple(ctx.names) == MODALITIES
          else ", ".join(t.lower() if t[1:].islower() else t for t in ctx.titles.values()))

if ctx.timed:
    st.subheader("Task")
    st.markdown(_task_definition(ctx))

st.subheader("Intended use and limits")
st.markdown(
    f"- A research and teaching tool for inspecting how a multi-modal model ({inputs}) reaches its "
    "predictions. **Not a medical device; not for clinical decisions.**\n"
    "- The bundled model was trained on **synthetic** cases whose per-modality evidence is planted; its "
    f"{'C-index' if ctx.survival else 'AUROC' if ctx.timed else 'accuracy'} says nothing about real patients. Retrain and validate on your own data before drawing any "
    "conclusion.\n"
    "- Explanations describe this model, including its mistakes. Attention is not importance; the Shapley "
    "values are exact for the model's missing-modality behaviour, which is itself learned.")

def _metric_row(name: str, metric: dict) -> dict:
    """A metric the test data could not define (value or interval None) says why instead of a number."""
    value, low, high = metric.get("value"), metric.get("ci_low"), metric.get("ci_high")
    reason = metric.get("reason", "not defined")
    return {"metric": figures.METRIC_LABELS.get(name, name), "value": reason if value is None else f"{value:.3f}",
            "95 % CI": f"{low:.3f}–{high:.3f}" if low is not None and high is not None else reason}


st.subheader("Test metrics of this checkpoint")
test = checkpoint.metrics.get("test")
if ctx.timed:
    _icu_metrics(ctx, test)
elif test and ctx.survival:
    st.dataframe(survival_metric_table(test), hide_index=True, key="model.metrics")
    reference = test.get("censoring_reference") or {}
    st.caption(f"{test['n']} test cases ({test.get('n_events', '?')} events) of the cohort the checkpoint was "
               f"evaluated on when it was trained; risk score {test.get('risk_score', '1 − S(horizon)')}; 95 % CIs "
               f"from {test.get('n_bootstrap', '?')} bootstrap resamples. The AUC and Brier score weight censoring "
               f"by {reference.get('source', 'the training outcomes')}.")
elif test:
    rows = [_metric_row(k, test[k]) for k in ("accuracy", "macro_f1", "macro_auroc", "ece") if test.get(k)]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="model.metrics")
    st.caption(f"{test['n']} test cases of the cohort the checkpoint was evaluated on when it was trained.")
else:
    st.info("This checkpoint has no recorded test metrics (metrics.json).")


if ctx.timed:
    st.subheader("Modalities")
    test_samples = ctx.cohort.table[ctx.cohort.table["split"] == "test"]
    st.dataframe(pd.DataFrame({"Modality": list(ctx.titles.values()), "Name": ctx.names,
                               "Kind": [ctx.kinds[m] for m in ctx.names],
                               "Present in the test samples": [f"{test_samples[f'has_{m}'].mean():.0%}"
                                                               if len(test_samples) else "—" for m in ctx.names]}),
                 hide_index=True, key="model.modalities")
    st.caption("Present: recorded at or before the sample's hour (at hour 0 a stay has little more than its "
               "demographics).")
elif ctx.survival:
    st.subheader("Time grid and modalities")
    edges = ", ".join(f"{e:g}" for e in bins.edges)
    st.markdown(f"{bins.num_bins} time bins with edges {edges} {bins.unit}: the model gives the probability of "
                f"surviving past the end of each bin. Horizon: **{config.horizon:g} {bins.unit}** (risk groups, "
                "the risk score and the explanations read survival there).")
    st.dataframe(pd.DataFrame({"Modality": list(ctx.titles.values()), "Name": ctx.names,
                               "Kind": [ctx.kinds[m] for m in ctx.names]}),
                 hide_index=True, key="model.modalities")


def _benchmark(name: str) -> str | None:
    path = RESULTS / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


st.subheader("Against the baselines (Table 2, synthetic cohort)")
TABLE2 = {"cancer": "table2_cancer.md", "icu": "table2_icu.md"}
table2 = _benchmark(TABLE2.get(config.task, "table2.md"))
if ctx.timed:
    if table2:  # the ICU columns (AUROC, AUPRC) as the benchmark wrote them
        st.markdown("\n".join(line for line in table2.splitlines() if line.startswith("|")))
        st.caption("Produced by `python benchmarks/table2.py --task icu` on the synthetic ICU cohort; the paper's "
                   "columns are its real-data results, for reference.")
    else:
        st.markdown("No committed ICU results (`benchmarks/results/table2_icu.md`; run `python benchmarks/table2.py "
                    f"--task icu`). The paper's ICU columns (real data): NeuroFusion AUROC {PAPER_ICU['auroc']:.3f}, "
                    f"AUPRC {PAPER_ICU['auprc']:.3f}; vital signs only AUROC {PAPER_ICU['vitals_only_auroc']:.3f}, "
                    f"AUPRC {PAPER_ICU['vitals_only_auprc']:.3f}.")
elif table2 and ctx.survival:
    # the survival columns (C-index, AUC, Brier) as the benchmark wrote them
    st.markdown("\n".join(line for line in table2.splitlines() if line.startswith("|")))
    st.caption("Produced by `python benchmarks/table2.py --task cancer` on the bundled synthetic cohort; the "
               "paper's columns are its real-data results, for reference.")
elif table2:
    frame = figures.table2_frame(table2)
    st.dataframe(frame, hide_index=True, key="model.table2", height=figures.table_height(len(frame)))
    st.caption("Mean ± sd over training seeds on the 200 bundled synthetic test cases; every model has the same "
               "encoders and training budget (`python benchmarks/table2.py`). The paper's columns are its "
               "real-data results, for reference.")
    means = frame.attrs["means"]
    if "neurofusion" in means and "mlp_fusion" in means and means["neurofusion"]["accuracy"] < means["mlp_fusion"]["accuracy"]:
        single = [m["accuracy"] for name, m in means.items() if name.endswith("_only")]
        alone = (f" Fusing the modalities still matters: the best single modality alone reaches "
                 f"{max(single):.3f} accuracy.") if single else ""
        st.info("**NeuroFusion is not first here:** its mean accuracy over seeds is below MLP fusion's on this "
                "synthetic cohort. The README's *Results* section says what the measurements suggest (the EMAP "
                "gap per architecture, in `benchmarks/results/emap.md`, shows how much each model uses "
                "cross-modal interactions)." + alone)
else:
    st.markdown("No committed results (run `python benchmarks/table2.py"
                + (" --task cancer" if config.task == "cancer" else "") + "`).")

st.subheader("Size and speed")
counts = parameter_counts(ctx.checkpoint.model)
st.dataframe(pd.DataFrame([{"part": k, "parameters": v} for k, v in counts.items()]), hide_index=True,
             key="model.params")
latency = _benchmark("latency.md")
if ctx.timed:
    icu_latency = _benchmark("icu_latency.md")
    st.caption("benchmarks/results/icu_latency.md measures this task's risk trajectory and per-hour explanations:"
               if icu_latency else "No committed ICU latency benchmark (run `python benchmarks/icu_latency.py`).")
    if icu_latency:
        st.markdown(icu_latency.split("\n", 2)[2])
elif latency and ctx.survival:
    st.caption("The committed latency benchmarks (benchmarks/results/latency.md) measure the cardio demo model; "
               "benchmarks/results/task_explain_latency.md compares one case's explanation across the two tasks.")
elif latency:
    st.markdown(latency.split("\n", 2)[2])


def _figure3() -> None:
    """The paper's Figure 3 (performance against cost) from the committed benchmark files, or why it cannot be."""
    try:
        data = cost_figures.load_figure3()
    except cost_figures.BenchmarkFileError as err:
        st.warning(f"Figure 3 cannot be drawn: {err}")
        return
    for message in data.warnings:
        st.warning(message)
    settings = data.cost["settings"]
    largest = max(p.parameters for p in data.points)
    st.caption(f"Measured on this machine ({settings.get('machine', '?')}, CPU, one torch thread, "
               f"{settings.get('date', '?')}) on the synthetic cardio cohort, never on patients: "
               "benchmarks/results/table2.json (accuracy on the bundled test cases, mean over training seeds; error "
               "bars: the t-based 95 % CI of that mean), architecture_cost.json (parameters, latency, training cost) "
               "and distillation.json (the distilled student). The dashed line joins our non-dominated models (none "
               "has both fewer parameters and a higher mean accuracy). Grey crosses and boxes are the paper's "
               "reported numbers as its Figure 3 text gives them (real data, GPUs), not measured "
               f"here; our models are CPU-sized (the largest has {largest / 1e6:.2f} M parameters, the paper's "
               "NeuroFusion 87 M).")
    st.plotly_chart(cost_figures.pareto_figure(data), key="model.fig3_pareto")
    for note in data.notes:
        st.info(note)
    st.plotly_chart(cost_figures.training_cost_figure(data), key="model.fig3_training")
    st.caption(f"{settings.get('steps', '?')} optimiser steps at batch 32 per architecture, each in a fresh process "
               "(`python benchmarks/architecture_cost.py`); bars to the quartiles of the steps. The paper reports "
               "GPU memory and hours of training (NeuroFusion-Full 32 GB and 72 h, distilled 18 GB and 45 h, "
               "single-modality 6–8 GB and 12–18 h), not comparable with a CPU process's RSS or seconds per step; "
               "GPU figures are not measured here.")
    batch = st.radio("Latency at", tuple(cost_figures.BATCHES), key="model.fig3_batch", horizontal=True,
                     format_func=cost_figures.BATCHES.get)
    st.plotly_chart(cost_figures.latency_figure(data, batch), key="model.fig3_latency")
    st.caption("Every model timed once per round in a shuffled order, round after round, so the load on the shared "
               "machine affects them alike; random weights (a forward pass costs the same whatever they are). The "
               "paper's Figure 3 also reports 45–75 ms for simple fusion and 15–30 ms for single-modality models. "
               + cost_figures.PANEL_D)


st.subheader("Figure 3: performance against computational cost")
if config.task == "cardio" and not ctx.timed and not ctx.survival:
    _figure3()
else:
    st.caption("Figure 3 is measured for the cardio architectures: load the cardio demo to see it.")

st.subheader("Training")
training = checkpoint.training
if training:
    st.markdown(f"Command: `{training.get('command', '?')}`  \nTraining data hash (SHA-256): "
                f"`{training.get('data_hash', '?')}`  \nEpochs: {training.get('epochs')} (best "
                f"{training.get('best_epoch')}), {float(training.get('minutes') or 0):.1f} minutes")
    history = training.get("history", [])
    selected = training.get("selected_by")
    if history and ctx.timed and selected not in figures.VALIDATION_CURVES:
        # the figure knows macro F1 and the C-index; a risk model keeps the epoch of best validation AUROC
        shown = [c for c in ("epoch", "train_loss", selected or "val_auroc", "val_macro_f1") if c in history[0]]
        st.dataframe(pd.DataFrame(history)[shown], hide_index=True, key="model.history_table")
        st.caption(f"Training history; the kept epoch ({training.get('best_epoch')}) is the one with the best "
                   f"{selected or 'validation score'}.")
    elif history:
        validation, loss = (("val_c_index", "negative log-likelihood") if ctx.survival
                            else (selected, "cross-entropy") if ctx.timed else ("val_macro_f1", "cross-entropy"))
        st.plotly_chart(figures.training_curves(history, training.get("best_epoch"), validation, loss),
                        key="model.history")
    with st.expander("Full configuration"):
        st.json(json.loads((Path(checkpoint.path) / "config.json").read_text()), expanded=False)
