"""Model card: what the loaded model is, how it was trained and on what, how it compares with the
baselines (committed benchmark results), its size and speed, intended use and limits."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from app import figures
from app.state import ROOT, context
from neurofusion.checkpoint import parameter_counts

RESULTS = ROOT / "benchmarks" / "results"

ctx = context()
config, checkpoint = ctx.checkpoint.config, ctx.checkpoint
st.title("Model card")
st.markdown(f"**{config.architecture}** for the **{config.task}** task · classes: "
            + ", ".join(c.replace("_", " ") for c in config.classes) + f" · loaded from `{checkpoint.path}`")

st.subheader("Intended use and limits")
st.markdown(
    "- A research and teaching tool for inspecting how a multi-modal model (echo image, clinical note, "
    "12-lead ECG, labs) reaches its predictions. **Not a medical device; not for clinical decisions.**\n"
    "- The bundled model was trained on **synthetic** cases whose per-modality evidence is planted; its "
    "accuracy says nothing about real patients. Retrain and validate on your own data before drawing any "
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
if test:
    rows = [_metric_row(k, test[k]) for k in ("accuracy", "macro_f1", "macro_auroc", "ece") if test.get(k)]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="model.metrics")
    st.caption(f"{test['n']} test cases of the cohort the checkpoint was evaluated on when it was trained.")
else:
    st.info("This checkpoint has no recorded test metrics (metrics.json).")


def _benchmark(name: str) -> str | None:
    path = RESULTS / name
    return path.read_text(encoding="utf-8") if path.is_file() else None


st.subheader("Against the baselines (Table 2, synthetic cohort)")
table2 = _benchmark("table2.md")
if table2:
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
        st.info("**Why NeuroFusion is not first here:** this synthetic cohort plants each modality's evidence "
                "independently, so no finding shows only in a combination of modalities, which is what "
                "cross-modal attention could add. Without such interactions the attention layer is extra "
                "parameters to fit from the same training cases, and plain MLP fusion does as well or better."
                + alone)
else:
    st.markdown("No committed results (run `python benchmarks/table2.py`).")

st.subheader("Size and speed")
counts = parameter_counts(ctx.checkpoint.model)
st.dataframe(pd.DataFrame([{"part": k, "parameters": v} for k, v in counts.items()]), hide_index=True,
             key="model.params")
latency = _benchmark("latency.md")
if latency:
    st.markdown(latency.split("\n", 2)[2])

st.subheader("Training")
training = checkpoint.training
if training:
    st.markdown(f"Command: `{training.get('command', '?')}`  \nTraining data hash (SHA-256): "
                f"`{training.get('data_hash', '?')}`  \nEpochs: {training.get('epochs')} (best "
                f"{training.get('best_epoch')}), {float(training.get('minutes') or 0):.1f} minutes")
    history = training.get("history", [])
    if history:
        st.plotly_chart(figures.training_curves(history, training.get("best_epoch")), key="model.history")
    with st.expander("Full configuration"):
        st.json(json.loads((Path(checkpoint.path) / "config.json").read_text()), expanded=False)
