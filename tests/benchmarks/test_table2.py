"""benchmarks/table2.py's pure parts: the paper-row mapping against the config's architecture validation, the
metric reader on evaluation-shaped results, and the markdown writer on fake runs. Nothing is trained."""

from __future__ import annotations

import dataclasses
import statistics

import pytest

from benchmarks.table2 import ROOT, TASKS, markdown, read_metrics
from neurofusion.config import HeadConfig, ModelConfig
from neurofusion.data import CohortReader
from neurofusion.models import build_model
from tests.neurofusion.declared import tiny_encoders

CANCER, CARDIO = TASKS["cancer"], TASKS["cardio"]


def _survival_result(c_index: float | None, auc: float, brier: float) -> dict:
    """The keys of neurofusion.evaluate.survival_report that the cancer table reads, with interval fields."""
    undefined = {} if c_index is not None else {"reason": "not defined: no comparable pair"}
    return {"n": 200, "c_index": {"value": c_index, "low": 0.6, "high": 0.8, **undefined},
            "auc_at_horizon": {"value": auc, "low": 0.7, "high": 0.9},
            "integrated_brier": {"value": brier, "low": 0.1, "high": 0.2, "range": [0.0, 108.0]}}


@pytest.mark.parametrize("task", [CARDIO, CANCER], ids=["cardio", "cancer"])
def test_every_row_is_an_architecture_of_the_tasks_declared_modalities(task):
    for row in task.rows:
        assert ModelConfig(task=task.name, architecture=row.architecture).architecture == row.architecture
        assert len(row.paper) == len(task.paper_headers)
    assert len({row.architecture for row in task.rows}) == len(task.rows) == 8


def test_cancer_rows_map_to_the_papers_rows():
    mapping = {row.architecture: (row.paper_row, row.paper) for row in CANCER.rows}
    assert mapping["histopathology_only"] == ("Image Only", (0.834, 0.808))
    assert mapping["treatment_notes_only"] == ("Text Only", (0.798, 0.776))
    assert mapping["genomics_only"] == mapping["clinical_only"] == ("Structured Only", (0.812, 0.789))
    assert mapping["neurofusion"] == ("NeuroFusion", (0.897, 0.878))
    with pytest.raises(ValueError, match="signal_only"):  # the paper's Signal Only row has no cancer model
        ModelConfig(task="cancer", architecture="signal_only")


def test_every_cancer_row_builds_a_survival_model():
    """Tiny encoders, the cancer cohort's declared features and a survival head: each row can be trained on
    the survival task (late fusion averages per-modality hazard logits)."""
    cohort = CohortReader(ROOT / "sample_data" / "cancer")
    features = [dataclasses.asdict(f) for f in cohort.features.values()]
    for row in CANCER.rows:
        config = ModelConfig(task="cancer", architecture=row.architecture, features=features,
                             heads=[HeadConfig("survival", "survival", 10)], **tiny_encoders(200))
        assert build_model(config).config.architecture == row.architecture


def test_read_metrics_takes_the_point_estimates():
    assert read_metrics(CANCER, _survival_result(0.71, 0.78, 0.16)) == {
        "c_index": 0.71, "auc_5y": 0.78, "integrated_brier": 0.16}
    cardio = {"accuracy": {"value": 0.9}, "macro_f1": {"value": 0.88}, "n": 200}
    assert read_metrics(CARDIO, cardio) == {"accuracy": 0.9, "macro_f1": 0.88}


def test_read_metrics_rejects_undefined_and_missing_metrics():
    with pytest.raises(ValueError, match="c_index.value is not defined.*no comparable pair"):
        read_metrics(CANCER, _survival_result(None, 0.78, 0.16))
    with pytest.raises(KeyError, match="auc_at_horizon"):
        read_metrics(CANCER, {"c_index": {"value": 0.7}})
    with pytest.raises(KeyError, match="macro_f1"):  # a survival result is not a cardio result
        read_metrics(CARDIO, {"accuracy": {"value": 0.9}, **_survival_result(0.7, 0.8, 0.1)})


def _table_lines(text: str) -> dict[str, list[str]]:
    rows = [line.strip("|").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_cancer_markdown_gives_mean_and_sd_over_seeds_beside_the_paper():
    c_indices = [0.70, 0.73, 0.745]
    runs = [{"architecture": "neurofusion", "seed": s, "c_index": c, "auc_5y": 0.8 + s / 100,
             "integrated_brier": 0.15} for s, c in enumerate(c_indices)]
    runs += [{"architecture": "clinical_only", "seed": 0, "c_index": 0.6512, "auc_5y": 0.7, "integrated_brier": 0.2}]
    for run in runs:  # every run stopped early, well inside the budget
        run.update(epochs=12, best_epoch=4, train_minutes=1.0)
    settings = {"config": "cancer_demo.yaml", "max_epochs": 40, "max_minutes": 4.0, "test_cases": 200,
                "train_cases": 1600, "val_cases": 200, "censoring_reference": "the train split", "patience": 8,
                "data": "build/cancer_trainval", "test_data": "sample_data/cancer"}
    text = markdown(CANCER, {"runs": runs, "settings": settings})
    table = _table_lines(text)
    assert table["model"] == ["seeds", "C-index", "5-yr AUC", "integrated Brier", "paper row", "paper C-index",
                              "paper 5-yr AUC"]
    mean, sd = statistics.mean(c_indices), statistics.stdev(c_indices)
    assert table["neurofusion"][:2] == ["3", f"{mean:.3f} ± {sd:.3f}"]
    assert table["neurofusion"][2] == "0.810 ± 0.010"
    assert table["neurofusion"][4:] == ["NeuroFusion", "0.897", "0.878"]
    assert table["clinical_only"] == ["1", "0.651 ± 0.000", "0.700 ± 0.000", "0.200 ± 0.000", "Structured Only",
                                      "0.812", "0.789"]
    assert "genomics_only" not in table  # no runs, no row
    for stated in ("1600 train cases", "200 val cases of build/cancer_trainval", "200 bundled test cases of "
                   "sample_data/cancer", "after 8 epochs without", "at most 40 epochs", "Synthetic data"):
        assert stated in text


def test_cardio_markdown_keeps_its_columns_and_percent_scale():
    runs = [{"architecture": "late_fusion", "seed": s, "accuracy": a, "macro_f1": 0.9} for s, a in
            enumerate([0.89, 0.91])]
    table = _table_lines(markdown(CARDIO, {"runs": runs, "settings": {"test_cases": 200}}))
    assert table["model"] == ["seeds", "accuracy (%)", "macro F1", "paper accuracy (%)", "paper F1"]
    assert table["late_fusion"] == ["2", f"90.0 ± {statistics.stdev([89.0, 91.0]):.1f}", "0.900 ± 0.000", "89.3",
                                    "0.881"]


def test_cancer_markdown_names_the_runs_a_budget_cap_stopped():
    settings = {"max_epochs": 40, "max_minutes": 4.0}
    runs = [{"architecture": "mlp_fusion", "seed": 0, "epochs": 7, "best_epoch": 5, "train_minutes": 4.84},
            {"architecture": "neurofusion", "seed": 1, "epochs": 40, "best_epoch": 39, "train_minutes": 3.0},
            {"architecture": "genomics_only", "seed": 0, "epochs": 13, "best_epoch": 5, "train_minutes": 0.2}]
    for run in runs:
        run.update(c_index=0.7, auc_5y=0.7, integrated_brier=0.2)
    text = markdown(CANCER, {"runs": runs, "settings": settings})
    assert "Stopped by the 4.0-minute cap, not by early stopping: mlp_fusion seed 0 (7 epochs, best 5)." in text
    assert "Stopped by the 40-epoch cap, not by early stopping: neurofusion seed 1 (40 epochs, best 39)." in text
    assert "genomics_only seed" not in text and "under-trained" in text
    cardio_runs = [{**run, "accuracy": 0.9, "macro_f1": 0.9} for run in runs]
    assert "Stopped by" not in markdown(CARDIO, {"runs": cardio_runs, "settings": settings})
