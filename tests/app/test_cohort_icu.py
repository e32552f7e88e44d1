"""The cohort pages on the bundled ICU demo (issue 12: "every page under AppTest on the ICU cohort"): the cohort
page's figure 2C, per-hour AUROC / AUPRC and calibration, the agreement page with the simulated per-sample
raters, the missing-modality page in AUROC / AUPRC and the model card render without an exception or an error,
and what they show is what explain.timeline, neurofusion.risk_metrics, scikit-learn and the Predictor compute
directly for the same samples."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from streamlit.testing.v1 import AppTest

from explain.agreement import importance_to_ranks, mean_with_ci, model_vs_raters
from explain.importance import modality_importance
from explain.timeline import PAPER_FIGURE_2C, cohort_over_time
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data.timed import open_cohort
from neurofusion.inference import Predictor
from neurofusion.risk_metrics import risk_metrics
from tests.app.test_app import _app, _figure, _no_errors

ROOT = Path(__file__).resolve().parents[2]
ICU = ROOT / "sample_data" / "icu"
ICU_DEMO = ROOT / "sample_data" / "checkpoints" / "icu_demo"
TITLES = ("Vital signs", "Labs", "Nursing notes", "Demographics")
NAMES = ("vitals", "labs", "notes", "demographics")

pytestmark = pytest.mark.skipif(not (ICU_DEMO / "config.json").is_file(),
                                reason="the ICU demo checkpoint sample_data/checkpoints/icu_demo is not bundled")


@pytest.fixture(scope="module")
def app() -> AppTest:
    """One app for the module, on the ICU demo: the pages are switched to in turn (each a fresh page run)."""
    at = _app(**{"settings.checkpoint": str(ICU_DEMO), "settings.cohort": str(ICU)})
    at.switch_page("views/model_card.py").run()
    _no_errors(at)
    return at


@pytest.fixture(scope="module")
def model():
    checkpoint = load_checkpoint(ICU_DEMO, device="cpu")
    return checkpoint, Predictor(checkpoint.model, checkpoint.tokenizer), open_cohort(ICU)


@pytest.fixture(scope="module")
def test_samples(model):
    """The test samples' ids, cases, labels (1 = dies within 48 h), predicted risk, stays and hours."""
    _, predictor, reader = model
    ids = reader.ids("test")
    cases = [reader[i] for i in ids]
    labels, probabilities = predictor.predict(cases)
    rows = reader.table.set_index("case_id").loc[ids]
    return {"ids": ids, "cases": cases, "y": (labels == 1).astype(int), "risk": probabilities[:, 1],
            "stays": rows["stay_id"].to_numpy(), "hours": rows["hour"].to_numpy(dtype=float)}


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(page).run()
    _no_errors(at)
    return at


def _values(y) -> np.ndarray:
    if isinstance(y, dict):  # plotly's binary encoding
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).astype(float)
    return np.array([np.nan if v is None else v for v in y], dtype=float)


def _panel_lines(figure: dict, axis: str) -> dict[str, dict]:
    """{modality title: trace} of the cohort's lines (not the paper's markers) in one panel of figure 2C."""
    return {t["name"]: t for t in figure["data"] if t.get("xaxis", "x") == axis and not t["name"].startswith("paper")}


def test_cohort_page_figure_2c_equals_cohort_over_time_and_auroc_by_hour_equals_scikit_learn(app, model, test_samples):
    _, predictor, reader = model
    at = _page(app, "views/cohort_attention.py")
    assert at.selectbox(key="cohort.split").value == "test"
    expected = cohort_over_time(predictor, reader, split="test")
    figure = _figure(at, "cohort.figure_2c")
    assert [a["text"] for a in figure["layout"]["annotations"]][:2] == ["Died in the ICU", "Survived"]
    for value in ("attention", "share"):
        if value == "share":
            at.radio(key="cohort.icu_value").set_value("share").run()
            _no_errors(at)
            figure = _figure(at, "cohort.figure_2c")
        for axis, outcome in (("x", "died in ICU"), ("x2", "survived")):
            lines = _panel_lines(figure, axis)
            assert tuple(lines) == TITLES
            part = expected[expected["outcome"] == outcome]
            for name, title in zip(NAMES, TITLES):
                rows = part[part["modality"] == name].sort_values("hour")
                np.testing.assert_allclose(_values(lines[title]["x"]), rows["hour"].to_numpy(dtype=float))
                np.testing.assert_allclose(_values(lines[title]["y"]), rows[value].to_numpy(dtype=float),
                                           atol=1e-6, equal_nan=True)
            ticks = figure["layout"]["xaxis" if axis == "x" else "xaxis2"]["ticktext"]
            counts = part.groupby("hour")["n"].max()
            assert ticks == [f"{h:g} h<br>n={int(counts[h])}" for h in sorted(counts.index)]
    # the paper's attention weights, as open diamonds in both panels
    paper = {t["name"]: t for t in figure["data"] if t["name"].startswith("paper") and t.get("xaxis", "x") == "x"}
    assert set(paper) == {"paper: Vital signs", "paper: Nursing notes", "paper: Demographics"}
    vitals = sorted((h, v["vitals"]) for h, v in PAPER_FIGURE_2C.items() if "vitals" in v)
    np.testing.assert_allclose(_values(paper["paper: Vital signs"]["y"]), [v for _, v in vitals])
    comparison = next(d.value for d in at.dataframe if "Paper (real data)" in d.value.columns)
    row = comparison[(comparison["Hour"] == "24 h") & (comparison["Modality"] == "Vital signs")].iloc[0]
    cell = expected[(expected["hour"] == 24) & (expected["modality"] == "vitals") & (expected["outcome"] == "survived")]
    assert row["Paper (real data)"] == 0.52 and row["Survived"] == pytest.approx(cell["attention"].iloc[0], abs=1e-9)

    # performance by hour: the page's AUROC / AUPRC against scikit-learn, intervals against risk_metrics
    y, risk, stays, hours = (test_samples[k] for k in ("y", "risk", "stays", "hours"))
    reference = risk_metrics(y, risk, stays, hours, n_bootstrap=1000, seed=0)
    metric = next(m for m in at.metric if m.label == "AUROC, all hours")
    assert float(metric.value) == pytest.approx(roc_auc_score(y, risk), abs=5e-4)
    by_hour = {t["name"]: t for t in _figure(at, "cohort.by_hour")["data"]}
    for name, score in (("AUROC", roc_auc_score), ("AUPRC", average_precision_score)):
        shown = _values(by_hour[name]["y"])
        for k, hour in enumerate(sorted(set(hours))):
            at_hour = hours == hour
            if len(set(y[at_hour])) < 2:
                assert np.isnan(shown[k])
                continue
            assert shown[k] == pytest.approx(score(y[at_hour], risk[at_hour]), abs=1e-6)
            estimate = reference["by_hour"][f"{hour:g}"][name.lower()]
            upper = _values(by_hour[name]["error_y"]["array"])[k]
            assert shown[k] + upper == pytest.approx(max(estimate["ci_high"], shown[k]), abs=1e-6)
    assert "Calibration of the predicted risk (ECE" in _figure(at, "cohort.calibration")["layout"]["title"]["text"]
    at.radio(key="cohort.icu_value").set_value("attention").run()


def test_missing_page_with_vitals_always_missing_reports_the_auroc_of_the_model_without_vitals(app, model,
                                                                                            test_samples):
    _, predictor, _ = model
    at = _page(app, "views/missing.py")
    assert [s.label for s in at.slider if s.key.startswith("missing.")] == [f"{t} missing (%)" for t in TITLES]
    y, stays = test_samples["y"], test_samples["stays"]
    bars = {t["name"]: _values(t["y"]) for t in _figure(at, "missing.metrics")["data"]}
    assert bars["as recorded"][0] == pytest.approx(roc_auc_score(y, test_samples["risk"]), abs=1e-6)
    at.slider(key="missing.rate_vitals").set_value(100).run()
    _no_errors(at)
    without = predictor.predict(test_samples["cases"], drop=["vitals"])[1][:, 1]
    expected = roc_auc_score(y, without)
    bars = {t["name"]: _values(t["y"]) for t in _figure(at, "missing.metrics")["data"]}
    assert bars["with the rates above"][0] == pytest.approx(expected, abs=1e-6)
    assert bars["with the rates above"][1] == pytest.approx(average_precision_score(y, without), abs=1e-6)
    assert any("Vital signs 0%" in c.value for c in at.caption)
    table = next(d.value for d in at.dataframe if "Withheld" in d.value.columns).set_index("Withheld")
    assert table.loc["Vital signs", "AUROC"] == pytest.approx(expected, abs=1e-6)
    interval = risk_metrics(y, without, stays, n_bootstrap=500, seed=0)["auroc"]
    assert table.loc["Vital signs", "AUROC 95 % CI"] == f"{interval['ci_low']:.3f}–{interval['ci_high']:.3f}"
    only_vitals = predictor.predict(test_samples["cases"], drop=["labs", "notes", "demographics"])[1][:, 1]
    row = table.loc["Labs + Nursing notes + Demographics"]
    assert row["AUROC"] == pytest.approx(roc_auc_score(y, only_vitals), abs=1e-6)
    assert "0.856" in row["Paper, real data"]
    assert len(table) == 1 + 4 + 6 + 1  # nothing, each modality, each pair, all but the vital signs
    at.slider(key="missing.rate_vitals").set_value(0).run()


def test_model_card_states_the_task_and_the_risk_metrics_overall_and_by_hour_beside_the_paper(app, model,
                                                                                           test_samples):
    checkpoint, _, _ = model
    at = _page(app, "views/model_card.py")
    task = next(m.value for m in at.markdown if "Label at hour t" in m.value)
    assert "dies_within_48h" in task and "not scored" in task and "last observation carried forward" in task
    metrics = next(d.value for d in at.dataframe if "metric" in d.value.columns).set_index("metric")
    recorded = (checkpoint.metrics.get("test") or {}).get("risk")
    if recorded is None:  # the page computes the bundled cohort's test metrics itself
        y, risk = test_samples["y"], test_samples["risk"]
        recorded = risk_metrics(y, risk, test_samples["stays"], test_samples["hours"], n_bootstrap=1000, seed=0)
        assert recorded["auroc"]["value"] == pytest.approx(roc_auc_score(y, risk), abs=1e-12)
    for name, label in (("auroc", "AUROC"), ("auprc", "AUPRC"), ("brier", "Brier score")):
        assert metrics.loc[label, "value"] == f"{recorded[name]['value']:.3f}"
        assert metrics.loc[label, "95 % CI"] == f"{recorded[name]['ci_low']:.3f}–{recorded[name]['ci_high']:.3f}"
    assert metrics.loc["AUROC", "Paper, real data"] == "0.913 (vitals only 0.856)"
    assert metrics.loc["AUPRC", "Paper, real data"].startswith("0.849")
    hours = next(d.value for d in at.dataframe if "Hour" in d.value.columns and "AUROC" in d.value.columns)
    assert hours["Hour"].tolist() == ["all hours"] + [f"{k} h" for k in sorted(recorded["by_hour"], key=float)]
    assert hours["Samples"].iloc[0] == recorded["n_samples"]
    modalities = next(d.value for d in at.dataframe if "Kind" in d.value.columns)
    assert tuple(modalities["Modality"]) == TITLES
    assert modalities["Kind"].tolist() == ["signal", "tabular", "text", "tabular"]
    assert "Calibration" in _figure(at, "model.calibration")["layout"]["title"]["text"]


def test_agreement_page_groups_samples_by_hour_and_ranks_by_the_size_of_the_effect_on_the_risk(app, model):
    _, predictor, reader = model
    at = _page(app, "views/agreement.py")
    assert at.title[0].value == "Agreement with simulated raters"
    at.radio(key="agreement.method").set_value("shapley").run()
    _no_errors(at)
    rankings = reader.rankings()
    ids = sorted(set(rankings["case_id"]))
    # direct: exact Shapley values of the risk itself (class 1), ranked by magnitude
    scores = []
    for batch in predictor.batches([reader[i] for i in ids], 64):
        target = torch.ones(batch.present.shape[0], dtype=torch.long)
        scores.append(modality_importance(predictor.model, batch, target).table("shapley"))
    ranks = importance_to_ranks(pd.concat(scores).abs())
    hours = reader.table.set_index("case_id").loc[ranks.index, "hour"]
    per_pair = model_vs_raters(ranks, rankings, hours.map(lambda h: f"{h:g} h"))
    overall = mean_with_ci(per_pair)
    metric = next(m for m in at.metric if m.label == "Mean tau, model vs simulated raters")
    assert float(metric.value) == pytest.approx(overall.mean, abs=5e-4)
    summary = next(d.value for d in at.dataframe if d.value.columns[0] == "Prediction hour")
    assert summary["Prediction hour"].tolist() == ["All hours"] + [f"{h:g} h" for h in reader.hours]
    assert summary["Cases"].iloc[0] == overall.n_cases
    at_6 = mean_with_ci(per_pair[per_pair["label"] == "6 h"])
    assert summary.set_index("Prediction hour").loc["6 h", "Mean tau"] == f"{at_6.mean:.3f}"
    truth = next(d.value for d in at.dataframe if d.value.columns[0] == "Model ranking from")
    assert truth["Cases"].max() > 0  # samples compared with their planted evidence as of the hour
    assert "simulated raters" in json.dumps(_figure(at, "agreement.hist")["layout"]["title"])


def test_agreement_page_without_bundled_rankings_says_so_and_offers_the_upload(tmp_path):
    """A copy of a few ICU stays without clinician_rankings.csv: the page says plainly that the folder has none
    and still offers the upload."""
    reader = open_cohort(ICU)
    stays = reader.stays.index[:6]
    folder = tmp_path / "icu_few"
    folder.mkdir()
    for name in ("cohort.json", "features.csv", "variables.csv", "ground_truth.csv"):
        shutil.copy(ICU / name, folder / name)
    for name in ("cohort.csv", "labs.csv", "notes.csv", "vitals.csv.gz"):
        table = pd.read_csv(ICU / name, dtype=str, keep_default_na=False)
        table[table["case_id"].isin(stays)].to_csv(folder / name, index=False)
    at = _app(**{"settings.checkpoint": str(ICU_DEMO), "settings.cohort": str(folder)})
    at.switch_page("views/agreement.py").run()
    _no_errors(at)
    assert any("has no clinician_rankings.csv" in i.value and "upload a CSV" in i.value for i in at.info)
    assert at.radio(key="agreement.source").options == ["bundled with the cohort", "upload a CSV"]
