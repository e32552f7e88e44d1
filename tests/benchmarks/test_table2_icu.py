"""benchmarks/table2.py's ICU columns without training: the risk of the event class on a tiny synthetic
prediction set against scikit-learn, the metric reader on risk_metrics results (an hour holding one class is
undefined, not an error), and the markdown's mean ± sd, undefined counts and per-run intervals."""

from __future__ import annotations

import statistics

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from benchmarks.table2 import ROOT, TASKS, RiskSamples, markdown, read_metrics, risk_result, risk_samples
from neurofusion.config import ModelConfig

ICU = TASKS["icu"]
CLASSES = ("survives_48h", "dies_within_48h")


def _predictions(seed: int = 3) -> tuple[np.ndarray, np.ndarray, RiskSamples]:
    """30 stays at hours 0 / 24 / 48 (90 samples); at hour 48 every stay survives its next 48 h."""
    rng = np.random.default_rng(seed)
    stays = np.repeat([f"ICU-{i:05d}" for i in range(30)], 3)
    hours = np.tile([0.0, 24.0, 48.0], 30)
    labels = (rng.random(90) < 0.3).astype(int)
    labels[hours == 48] = 0
    risk = np.clip(0.3 * labels + rng.random(90) * 0.7, 0, 1)
    probabilities = np.stack([1 - risk, risk], axis=1)
    return labels, probabilities, RiskSamples([None] * 90, stays, hours, {})


def test_every_row_is_an_architecture_of_the_icu_cohort():
    names = ("vitals", "labs", "notes", "demographics")
    assert ModelConfig(task="icu").modality_names == names
    for row in ICU.rows:
        assert ModelConfig(task="icu", architecture=row.architecture).architecture == row.architecture
    assert {row.architecture for row in ICU.rows} == {
        "neurofusion", "mlp_fusion", "late_fusion", "early_fusion", *(f"{n}_only" for n in names)}
    papers = {row.architecture: row.paper for row in ICU.rows}
    assert papers["neurofusion"] == (0.913, 0.849) and papers["vitals_only"] == (0.856, 0.774)
    assert papers["labs_only"] == papers["demographics_only"] == (0.834, 0.751)


def test_risk_of_the_event_class_agrees_with_scikit_learn_overall_and_by_hour():
    labels, probabilities, samples = _predictions()
    result = risk_result(labels, probabilities, CLASSES, samples, n_bootstrap=50)
    values = read_metrics(ICU, result)
    risk = probabilities[:, 1]
    assert values["auroc"] == pytest.approx(roc_auc_score(labels, risk))
    assert values["auprc"] == pytest.approx(average_precision_score(labels, risk))
    assert values["brier"] == pytest.approx(brier_score_loss(labels, risk))
    for hour in (0, 24):
        at = samples.hours == hour
        assert values[f"auroc_{hour}h"] == pytest.approx(roc_auc_score(labels[at], risk[at]))
    assert values["auroc_48h"] is None  # one class at hour 48: undefined, recorded as None
    assert values["auroc_ci_low"] <= values["auroc"] <= values["auroc_ci_high"]
    assert values["auprc_ci_low"] <= values["auprc"] <= values["auprc_ci_high"]
    flipped = risk_result(labels, probabilities[:, ::-1], CLASSES, samples, n_bootstrap=50)
    assert read_metrics(ICU, flipped)["auroc"] == pytest.approx(1 - values["auroc"])  # class 1 is the event


def test_risk_result_rejects_other_shapes_and_unknown_labels():
    labels, probabilities, samples = _predictions()
    with pytest.raises(ValueError, match=r"two-class.*\(90, 2\).*\(90, 3\)"):
        risk_result(labels, np.c_[probabilities, np.zeros(90)], (*CLASSES, "other"), samples)
    labels[4] = -1
    with pytest.raises(ValueError, match="1 test samples have no label"):
        risk_result(labels, probabilities, CLASSES, samples)


def test_undefined_overall_auroc_is_an_error_with_the_reason():
    labels, probabilities, samples = _predictions()
    result = risk_result(np.zeros(90, dtype=int), probabilities, CLASSES, samples, n_bootstrap=20)
    with pytest.raises(ValueError, match="auroc.value is not defined.*every one of the 90 samples"):
        read_metrics(ICU, result)


def _table_lines(text: str) -> dict[tuple[str, str], list[str]]:
    rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines() if line.startswith("| ")]
    return {(cells[0], cells[1]): cells[2:] for cells in rows}


def test_icu_markdown_gives_mean_sd_undefined_runs_and_per_run_intervals():
    aurocs = [0.80, 0.83, 0.845]
    runs = [{"architecture": "neurofusion", "seed": s, "auroc": a, "auprc": 0.5, "brier": 0.1, "auroc_0h": 0.7,
             "auroc_24h": 0.8, "auroc_48h": None if s == 2 else 0.9, "auroc_ci_low": a - 0.05,
             "auroc_ci_high": a + 0.05, "auprc_ci_low": None, "auprc_ci_high": None}
            for s, a in enumerate(aurocs)]
    for run in runs:
        run.update(epochs=3, best_epoch=2, train_minutes=1.5)
    settings = {"config": "icu_demo.yaml", "max_epochs": 3, "max_minutes": 120.0, "patience": 6,
                "longest_train_minutes": 1.5, "train_stays": 640, "train_samples": 3500, "val_stays": 80,
                "val_samples": 453, "train_prevalence": 0.061, "test_prevalence": 0.07, "test_stays": 200,
                "test_samples": 900, "data": "build/icu_table2", "data_seed": 2027, "test_data": "sample_data/icu",
                "test_seed": 2026, "n_bootstrap": 1000, "command": "python benchmarks/table2.py --task icu"}
    text = markdown(ICU, {"runs": runs, "settings": settings})
    table = _table_lines(text)
    assert table[("model", "seeds")] == ["AUROC", "AUPRC", "Brier", "AUROC at 0 h", "AUROC at 24 h",
                                         "AUROC at 48 h", "paper row", "paper AUROC", "paper AUPRC"]
    row = table[("neurofusion", "3")]
    assert row[0] == f"{statistics.mean(aurocs):.3f} ± {statistics.stdev(aurocs):.3f}"
    assert row[5] == "0.900 ± 0.000 (1 run not defined)"
    assert row[6:] == ["NeuroFusion", "0.913", "0.849"]
    assert table[("neurofusion", "2")][:2] == ["0.845 [0.795, 0.895]", "0.500 [not defined]"]
    assert "Stopped by the 3-epoch cap, not by early stopping: neurofusion seed 0 (3 epochs, best 2)" in text
    for stated in ("640 train stays (3500 samples, 6.1 % dying within 48 h)", "seed 2027", "900 samples of the "
                   "200 bundled test stays", "7.0 % of them", "at most 3 epochs", "Synthetic data", "Image Only"):
        assert stated in text


def test_a_training_cohort_of_the_test_seed_is_refused():
    """Stay ids repeat across seeds: training on the bundled sample's seed would train on its test stays."""
    sample = ROOT / "sample_data" / "icu"
    with pytest.raises(ValueError, match=r"same seed \(2026\).*another seed"):
        risk_samples(str(sample), str(sample))


def test_a_run_whose_patience_ran_out_at_the_epoch_cap_is_not_named_as_capped():
    settings = {"max_epochs": 8, "max_minutes": 120.0, "patience": 6}
    runs = [{"architecture": a, "seed": 0, "epochs": 8, "best_epoch": best, "train_minutes": 1.0, "auroc": 0.6,
             "auprc": 0.2, "brier": 0.1} for a, best in (("neurofusion", 7), ("mlp_fusion", 2), ("late_fusion", 3))]
    text = markdown(ICU, {"runs": runs, "settings": settings})
    assert "Stopped by the 8-epoch cap, not by early stopping: neurofusion seed 0 (8 epochs, best 7), late_fusion " \
           "seed 0 (8 epochs, best 3)." in text
    assert "mlp_fusion seed 0 (8" not in text  # 6 epochs without a better one at epoch 8: early stopping
