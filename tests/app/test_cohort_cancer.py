"""The cohort pages on the bundled cancer demo (issue 11: "every page runs under AppTest on the cancer
cohort"): cohort, agreement, missing-modality and model-card pages render without an exception or an error,
and what they show is what neurofusion.survival and explain/ compute directly from the same predictions."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from explain.cohort import clinician_agreement, cohort_importance
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from neurofusion.survival import concordance_index, kaplan_meier, logrank, risk_groups
from tests.app.test_app import _app, _figure, _no_errors
from tests.test_sample_data import CANCER, CANCER_DEMO

TITLES = ("Histopathology", "Genomics", "Treatment notes", "Clinical")


@pytest.fixture(scope="module")
def app() -> AppTest:
    """One app for the module: the pages are switched to in turn (each switch is a fresh page run)."""
    at = _app(**{"settings.checkpoint": str(CANCER_DEMO), "settings.cohort": str(CANCER)})
    at.run()  # the case page opens first; the pages under test are switched to below
    return at


@pytest.fixture(scope="module")
def model():
    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    reader = CohortReader(CANCER)
    return checkpoint, predictor, reader


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    _no_errors(at)
    return at


def _values(y) -> np.ndarray:
    if isinstance(y, dict):  # plotly's binary encoding
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])
    return np.asarray(y, dtype=float)


def test_cohort_page_draws_kaplan_meier_by_risk_group_with_the_log_rank_and_the_c_index(app, model):
    _, predictor, reader = model
    at = _page(app, "views/cohort_attention.py")
    assert at.selectbox(key="cohort.split").value == "test"
    prediction = predictor.predict_survival([reader[i] for i in reader.ids("test")])
    groups = risk_groups(prediction.risk)
    figure = _figure(at, "cohort.km")
    lines = {t["name"].split()[0]: t for t in figure["data"] if t.get("mode") == "lines" and t.get("name")}
    assert list(lines) == ["low", "medium", "high"]
    for name, trace in lines.items():
        km = kaplan_meier(prediction.time[groups == name], prediction.event[groups == name])
        np.testing.assert_allclose(_values(trace["x"])[1:], km.time)
        np.testing.assert_allclose(_values(trace["y"])[1:], km.survival, atol=1e-12)
        assert trace["name"] == f"{name} risk ({(groups == name).sum()} cases)"
    test = logrank(prediction.time, prediction.event, groups)
    assert f"log-rank χ² = {test.chi2:.1f}, df = 2" in figure["layout"]["title"]["text"]
    c_index = concordance_index(prediction.time, prediction.event, prediction.risk, n_boot=200, seed=0)
    metric = next(m for m in at.metric if m.label == "C-index on the test split")
    assert float(metric.value) == pytest.approx(c_index.value, abs=5e-4)
    assert any(f"95 % CI {c_index.ci_low:.3f} to {c_index.ci_high:.3f}" in c.value for c in at.caption)
    assert "Calibration at 60 months" in _figure(at, "cohort.calibration")["layout"]["title"]["text"]
    attention = _figure(at, "cohort.attention")
    subtitles = [a["text"] for a in attention["layout"]["annotations"]][:3]
    assert subtitles == [f"{g.capitalize()} risk (n={(groups == g).sum()})" for g in ("low", "medium", "high")]
    assert tuple(attention["data"][0]["x"]) == TITLES
    importance = _figure(at, "cohort.importance_true")
    assert tuple(importance["data"][0]["x"]) == TITLES
    assert list(importance["data"][0]["y"]) == ["Low risk", "Medium risk", "High risk"]
    at.radio(key="cohort.method").set_value("shapley").run()
    _no_errors(at)
    title = _figure(at, "cohort.importance_true")["layout"]["title"]["text"]
    assert title == "Mean modality importance by risk group (Shapley: change in survival at 60 months)"


def test_missing_page_with_genomics_always_missing_reports_the_c_index_without_genomics(app, model):
    checkpoint, predictor, reader = model
    at = _page(app, "views/missing.py")
    assert [s.label for s in at.slider if s.key.startswith("missing.")] == [f"{t} missing (%)" for t in TITLES]
    at.slider(key="missing.rate_genomics").set_value(100).run()
    _no_errors(at)
    cases = [reader[i] for i in reader.ids("test")]
    dropped = predictor.predict_survival(cases, drop=["genomics"])
    expected = concordance_index(dropped.time, dropped.event, dropped.risk, n_boot=200, seed=0).value
    bars = {t["name"]: _values(t["y"]) for t in _figure(at, "missing.metrics")["data"]}
    assert bars["with the rates above"][0] == pytest.approx(expected, abs=1e-6)
    recorded = checkpoint.metrics["test"]["c_index"]["value"]
    assert bars["as recorded"][0] == pytest.approx(recorded, abs=1e-3)  # the checkpoint's own test C-index
    table = next(d.value for d in at.dataframe if "Withheld" in d.value.columns).set_index("Withheld")
    assert table.loc["Genomics", "C-index"] == pytest.approx(expected, abs=1e-6)
    # benchmarks/results/missing_modalities_cancer.md: genomics withheld costs the most of any one modality
    singles = table.loc[list(TITLES), "Change (points)"]
    assert singles.idxmin() == "Genomics" and singles["Genomics"] == pytest.approx(-5.9, abs=0.1)
    assert table.loc["Genomics", "Paper, real data (points)"] == "−6.3"
    assert any("Genomics 0%" in c.value for c in at.caption)
    at.slider(key="missing.rate_genomics").set_value(0).run()


def test_model_card_shows_the_recorded_survival_metrics_time_grid_and_modalities(app, model):
    checkpoint, _, _ = model
    at = _page(app, "views/model_card.py")
    metrics = next(d.value for d in at.dataframe if "metric" in d.value.columns).set_index("metric")
    recorded = checkpoint.metrics["test"]
    assert metrics.loc["C-index (Harrell)", "value"] == f"{recorded['c_index']['value']:.3f}"
    assert metrics.loc["AUC at 60 months", "value"] == f"{recorded['auc_at_horizon']['value']:.3f}"
    assert "Calibration slope (1 = calibrated)" in metrics.index
    modalities = next(d.value for d in at.dataframe if "Kind" in d.value.columns)
    assert modalities["Kind"].tolist() == ["image", "tabular", "text", "tabular"]
    assert tuple(modalities["Modality"]) == TITLES
    assert any("0, 12, 24" in m.value and "60 months" in m.value for m in at.markdown)
    history = _figure(at, "model.history")
    assert "C-index" in history["layout"]["yaxis2"]["title"]["text"]


def test_agreement_page_mean_tau_is_clinician_agreement_on_the_same_cases(app, model):
    _, predictor, reader = model
    at = _page(app, "views/agreement.py")
    assert at.title[0].value == "Agreement with simulated raters"
    at.radio(key="agreement.method").set_value("shapley").run()
    _no_errors(at)
    rankings = reader.rankings()
    ids = sorted(set(rankings["case_id"]))
    expected = clinician_agreement(cohort_importance(predictor, [reader[i] for i in ids]), rankings, "shapley")
    overall = expected["summary"].iloc[0]  # the row over every case
    metric = next(m for m in at.metric if m.label == "Mean tau, model vs simulated raters")
    assert float(metric.value) == pytest.approx(overall["mean"], abs=5e-4)
    ceiling = next(m for m in at.metric if m.label.startswith("Inter-rater ceiling"))
    assert float(ceiling.value) == pytest.approx(expected["inter_rater"]["mean_pairwise_tau"]["mean"], abs=5e-4)
    summary = next(d.value for d in at.dataframe if d.value.columns[0] == "Risk group")
    assert summary["Risk group"].tolist() == ["All cases", "Low risk", "Medium risk", "High risk"]
    assert summary["Cases"].iloc[0] == overall["n_cases"]
    assert any(d.value.columns[0] == "Model ranking from" for d in at.dataframe)  # the ground-truth table
    spec = json.dumps(_figure(at, "agreement.hist")["layout"]["title"])
    assert "simulated raters" in spec
