"""Research export (issue 10): the agreement zip holds the summary, every ranking, the settings and hashes
equal to an independent hash of the files; the case CSV names its case and the class it explains."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import datetime, timezone

import pandas as pd
import pytest

from app.export import EXPORT_FILES, PER_CASE_COLUMNS, SUMMARY_COLUMNS, research_export
from app.report import attributions_csv
from explain.case import ExplainSettings, explain_case
from explain.cohort import clinician_agreement, cohort_importance
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data.cohort import CohortReader
from neurofusion.data.schema import MODALITIES
from neurofusion.inference import Predictor
from tests.test_sample_data import DEMO, SAMPLE


@pytest.fixture(scope="module")
def demo():
    checkpoint = load_checkpoint(DEMO, device="cpu")
    return checkpoint, Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device), CohortReader(SAMPLE)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_zip_holds_summary_rankings_settings_and_file_hashes(demo):
    checkpoint, predictor, cohort = demo
    rankings = cohort.rankings()
    ids = sorted(set(rankings["case_id"]))[:6]
    rankings = rankings[rankings["case_id"].isin(ids)].reset_index(drop=True)
    importance = cohort_importance(predictor, [cohort[i] for i in ids])
    result = clinician_agreement(importance, rankings, "shapley", n_bootstrap=50)
    settings = ExplainSettings(image_method="grad_cam", n_steps=12, context="alone")
    raw = (SAMPLE / "clinician_rankings.csv").read_bytes()
    data = research_export(result, importance, rankings, raters="simulated raters", simulated=True,
                           settings=settings, checkpoint_dir=DEMO, cohort_dir=SAMPLE,
                           rankings_name="clinician_rankings.csv", rankings_bytes=raw,
                           created=datetime(2026, 1, 2, tzinfo=timezone.utc))
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == sorted(EXPORT_FILES)

    summary = pd.read_csv(archive.open("agreement_summary.csv"))
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert summary["group"].tolist()[-1] == "inter_rater" and summary.iloc[0]["class"] == "all"
    assert summary.iloc[0]["mean_tau"] == pytest.approx(result["summary"].loc["all", "mean"])

    per_case = pd.read_csv(archive.open("per_case.csv"))
    assert tuple(per_case.columns) == PER_CASE_COLUMNS and len(per_case) == len(rankings)
    merged = per_case.merge(rankings, on=["case_id", "rater"])
    for m in MODALITIES:  # every rater's ranking, as the file gave it (blank = not ranked)
        assert merged[f"rater_rank_{m}"].fillna(-1).tolist() == merged[m].astype(float).fillna(-1).tolist()
    model = importance.method("shapley").loc[per_case["case_id"]]
    assert per_case["model_score_image"].tolist() == pytest.approx(model["image"].tolist(), nan_ok=True)
    assert per_case["tau"].tolist() == pytest.approx(result["per_pair"]["tau"].tolist(), nan_ok=True)

    config = json.loads(archive.read("settings.json"))
    assert config["importance_method"] == "shapley" and config["raters_simulated"] is True
    assert config["explanation"] == {"image_method": "grad_cam", "n_steps": 12, "internal_batch_size": None,
                                     "context": "alone", "tolerance": None, "steps_method": "gausslegendre",
                                     "max_steps": 128, "note_layer": None, "reduced_precision": [], "joint": False}
    assert config["created_utc"] == "2026-01-02T00:00:00+00:00"
    # hashes equal an independent hash of the files
    assert config["rankings"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert config["checkpoint"]["files"]["model.safetensors"] == _sha256(DEMO / "model.safetensors")
    assert config["checkpoint"]["files"]["config.json"] == _sha256(DEMO / "config.json")
    assert config["cohort"]["files"]["cohort.csv"] == _sha256(SAMPLE / "cohort.csv")
    files = sorted(p for p in SAMPLE.rglob("*") if p.is_file())
    assert len(config["cohort"]["files"]) == len(files)
    listing = "".join(f"{_sha256(p)}  {p.relative_to(SAMPLE).as_posix()}\n"
                      for p in sorted(files, key=lambda p: p.relative_to(SAMPLE).as_posix()))
    assert config["cohort"]["sha256"] == hashlib.sha256(listing.encode()).hexdigest()
    flat = pd.read_csv(archive.open("settings.csv")).set_index("setting")["value"]
    assert flat["checkpoint.sha256"] == config["checkpoint"]["sha256"] and flat["explanation.n_steps"] == "12"

    agreement = json.loads(archive.read("agreement.json"))
    assert len(agreement["per_case"]) == len(rankings) and agreement["summary"][0]["class"] == "all"


def test_the_case_csv_names_its_case_and_explained_class(demo):
    checkpoint, predictor, cohort = demo
    case = cohort[cohort.ids("test")[0]]
    explanation = explain_case(predictor, case, ExplainSettings(n_steps=4, target=1))
    rows = attributions_csv(explanation).decode().splitlines()
    assert rows[0] == "case_id,explained_class,contrast_class,part,method,item,value,start,end,observed"
    table = pd.read_csv(io.StringIO("\n".join(rows)), keep_default_na=False)
    assert set(table["case_id"]) == {case.case_id}
    assert set(table["explained_class"]) == {checkpoint.config.classes[1]} and set(table["contrast_class"]) == {""}


def test_the_export_of_a_survival_model_has_columns_per_declared_modality():
    from app.export import per_case_columns
    from tests.test_sample_data import CANCER, CANCER_DEMO

    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device)
    cohort = CohortReader(CANCER)
    rankings = cohort.rankings()
    ids = sorted(set(rankings["case_id"]))[:5]
    rankings = rankings[rankings["case_id"].isin(ids)].reset_index(drop=True)
    importance = cohort_importance(predictor, [cohort[i] for i in ids])
    result = clinician_agreement(importance, rankings, "shapley", n_bootstrap=20)
    data = research_export(result, importance, rankings, raters="simulated raters", simulated=True,
                           settings=ExplainSettings(), checkpoint_dir=CANCER_DEMO, cohort_dir=CANCER,
                           rankings_name="clinician_rankings.csv", rankings_bytes=b"x")
    archive = zipfile.ZipFile(io.BytesIO(data))
    per_case = pd.read_csv(archive.open("per_case.csv"))
    names = ("histopathology", "genomics", "treatment_notes", "clinical")
    assert tuple(per_case.columns) == per_case_columns(names) and len(per_case) == len(rankings)
    assert not any(c.endswith(("_image", "_signal")) for c in per_case.columns)
    merged = per_case.merge(rankings, on=["case_id", "rater"])
    for m in names:
        assert merged[f"rater_rank_{m}"].fillna(-1).tolist() == merged[m].astype(float).fillna(-1).tolist()
    scores = importance.method("shapley").loc[per_case["case_id"]]
    assert per_case["model_score_genomics"].tolist() == pytest.approx(scores["genomics"].tolist(), nan_ok=True)
    config = json.loads(archive.read("settings.json"))
    assert config["importance_units"] == "survival at 60 months" and config["modalities"] == list(names)
