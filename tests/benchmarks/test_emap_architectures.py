"""benchmarks/emap_architectures.py: a planted additive model has EMAP gap 0 (to 1e-9), a planted pair model a
positive one; the paired bootstrap equals scikit-learn on the resamples; the seed aggregation is numpy's mean/sd;
the command runs end to end on saved tiny checkpoints, skipping a single-modality one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score

from benchmarks.emap_architectures import (
    _resampled_metrics,
    aggregate,
    checkpoint_seed,
    emap_scores,
    main,
    measure_model,
    skip_reason,
)
from benchmarks.table2 import TASKS, markdown as table2_markdown
from neurofusion.checkpoint import save_checkpoint
from neurofusion.data.dataset import Batch
from neurofusion.data.modalities import ModalitySpec
from neurofusion.models import build_model
from neurofusion.models.model import Encoded, ModelOutput
from tests.conftest import tiny_config

NAMES = ("vitals", "labs", "notes")


class PlantedModel:
    """Each case carries one number per modality; a missing modality reads 0.5. The logit of class 1 is
    sum_m w_m x_m + pair * x_vitals * x_labs, class 0's is 0."""

    names = NAMES

    def __init__(self, values: np.ndarray, weights: list[float], pair: float = 0.0) -> None:
        self.values = torch.tensor(values, dtype=torch.float64)
        self.weights, self.pair = torch.tensor(weights, dtype=torch.float64), pair

    def encode(self, batch: Batch) -> Encoded:
        return Encoded({m: self.values[:, k:k + 1] for k, m in enumerate(NAMES)}, batch.present)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = encoded.present if present is None else present & encoded.present
        x = torch.where(mask, torch.cat([encoded.vectors[m] for m in NAMES], 1), torch.tensor(0.5, dtype=torch.float64))
        logit = (x * self.weights).sum(1) + self.pair * x[:, 0] * x[:, 1]
        logits = torch.stack([torch.zeros_like(logit), logit], 1)
        return ModelOutput(logits=logits, probabilities=torch.softmax(logits, -1), present=mask)


def _planted(n: int, seed: int, weights: list[float], pair: float = 0.0, missing: float = 0.2):
    """A planted model on n cases whose labels are its own predictions with 10 % flipped (so no metric is 1)."""
    rng = np.random.default_rng(seed)
    values, present = rng.normal(size=(n, 3)), rng.random((n, 3)) > missing
    model = PlantedModel(values, weights, pair)
    with torch.no_grad():
        predicted = model.fuse(Encoded({m: model.values[:, k:k + 1] for k, m in enumerate(NAMES)},
                                       torch.tensor(present))).logits.argmax(1).numpy()
    labels = np.where(rng.random(n) < 0.1, 1 - predicted, predicted)
    batch = Batch(case_ids=[f"p{i}" for i in range(n)], present=torch.tensor(present),
                  labels=torch.tensor(labels), modalities=tuple(ModalitySpec(m, "tabular") for m in NAMES))
    return model, batch


def test_an_additive_model_has_no_emap_gap():
    model, batch = _planted(60, seed=0, weights=[0.8, -1.1, 0.5])
    record = measure_model(model, batch, rows_per_pass=97, n_bootstrap=300)
    assert record["logit_residual"] < 1e-9 and record["agreement"] == 1.0
    for metric in ("accuracy", "macro_f1"):
        assert abs(record[f"gap_{metric}"]) < 1e-9
        assert np.allclose(record[f"gap_{metric}_ci"], 0.0, atol=1e-9)
        assert record[f"model_{metric}"] == record[f"emap_{metric}"] < 1.0
    assert record["cases"] == 60 and record["fusions"] == 3 * 60 * 60


def test_a_pair_of_modalities_leaves_a_positive_gap():
    model, batch = _planted(80, seed=1, weights=[0.0, 0.0, 0.2], pair=3.0, missing=0.0)
    record = measure_model(model, batch, n_bootstrap=500)
    assert record["model_accuracy"] > 0.8  # the labels follow the product, 10 % flipped
    assert record["gap_accuracy"] > 0.2 and record["gap_accuracy_ci"][0] > 0  # the interval excludes 0
    assert record["gap_macro_f1"] > 0.2 and record["agreement"] < 0.8


def test_the_paired_resamples_are_scikit_learns_metrics_on_the_resampled_cases():
    rng = np.random.default_rng(4)
    labels, predicted = rng.integers(0, 4, 50), rng.integers(0, 4, 50)
    labels[labels == 3] = 2  # class 3 is only ever predicted: it is not among the scored classes
    classes = np.unique(labels)
    picks = [rng.integers(0, 50, 50) for _ in range(20)]
    counts = np.stack([np.bincount(p, minlength=50) for p in picks]).astype(float)
    resampled = _resampled_metrics(counts, labels, predicted, classes)
    for k, p in enumerate(picks):
        assert resampled["accuracy"][k] == pytest.approx(accuracy_score(labels[p], predicted[p]), abs=1e-12)
        expected = f1_score(labels[p], predicted[p], labels=classes, average="macro", zero_division=0)
        assert resampled["macro_f1"][k] == pytest.approx(expected, abs=1e-12)


def test_scores_refuse_mismatched_or_unlabelled_inputs():
    logits = np.zeros((4, 3))
    with pytest.raises(ValueError, match=r"both \(N, C\)"):
        emap_scores(np.zeros(4, int), logits, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="no unlabelled case"):
        emap_scores(np.array([0, 1, -1, 2]), logits, logits)


def test_the_aggregation_over_seeds_is_numpys_mean_and_sd():
    rng = np.random.default_rng(7)
    keys = [f"{w}_{m}" for w in ("model", "emap", "gap") for m in ("accuracy", "macro_f1")] + ["agreement",
                                                                                              "logit_residual"]
    runs = [{"architecture": a, **{k: float(rng.random()) for k in keys}}
            for a in ("neurofusion", "neurofusion", "late_fusion", "neurofusion")]
    table = aggregate(runs)
    assert list(table) == ["neurofusion", "late_fusion"]
    for key in keys:
        values = np.array([r[key] for r in runs if r["architecture"] == "neurofusion"])
        assert table["neurofusion"][key]["mean"] == pytest.approx(np.mean(values), abs=1e-15)
        assert table["neurofusion"][key]["sd"] == pytest.approx(np.std(values, ddof=1), abs=1e-15)
        assert table["neurofusion"][key]["n"] == 3
        assert table["late_fusion"][key] == {"mean": runs[2][key], "sd": 0.0, "n": 1}


def test_seeds_and_skips(tmp_path):
    (tmp_path / "mlp_fusion_s2").mkdir()
    assert checkpoint_seed(tmp_path / "mlp_fusion_s2") == 2
    (tmp_path / "late_seed11").mkdir()
    assert checkpoint_seed(tmp_path / "late_seed11") == 11
    (tmp_path / "x_s4").mkdir()
    (tmp_path / "x_s4" / "training.json").write_text(json.dumps({"train_config": {"seed": 9}}))
    assert checkpoint_seed(tmp_path / "x_s4") == 9  # what training recorded wins over the folder name
    assert checkpoint_seed(tmp_path) is None
    assert "single-modality" in skip_reason("signal_only", "classification")
    assert "survival" in skip_reason("neurofusion", "survival")
    assert skip_reason("neurofusion_gated", "classification") is None


def test_the_command_on_saved_tiny_checkpoints(tiny_cohort, tiny_tokenizer, tmp_path):
    for architecture in ("neurofusion_gated", "late_fusion", "tabular_only"):
        for seed in (0, 1):
            torch.manual_seed(seed)
            model = build_model(tiny_config(tiny_cohort, tiny_tokenizer, architecture)).eval()
            save_checkpoint(tmp_path / "table2" / f"{architecture}_s{seed}", model, tiny_tokenizer)
    out = tmp_path / "emap"
    code = main(["--checkpoints", str(tmp_path / "table2" / "*_s*"), "--test-data", str(tiny_cohort.root),
                 "--split", "train", "--max-cases", "12", "--n-bootstrap", "50", "--rows-per-pass", "100",
                 "--out", str(out)])
    results = json.loads(out.with_suffix(".json").read_text())
    assert code == 0 and results["settings"]["cases"] == 12 and results["settings"]["subset"]
    assert sorted((r["architecture"], r["seed"]) for r in results["runs"]) == [
        ("late_fusion", 0), ("late_fusion", 1), ("neurofusion_gated", 0), ("neurofusion_gated", 1)]
    assert [s["architecture"] for s in results["skipped"]] == ["tabular_only", "tabular_only"]
    gaps = [r["gap_accuracy"] for r in results["runs"] if r["architecture"] == "late_fusion"]
    assert results["architectures"]["late_fusion"]["gap_accuracy"]["mean"] == pytest.approx(np.mean(gaps))
    text = out.with_suffix(".md").read_text()
    assert "best additive approximation" in text and "neurofusion_gated (NeuroFusion + context gating" in text
    assert "single-modality model" in text
    with pytest.raises(SystemExit):
        main(["--checkpoints", str(tmp_path / "nowhere_*"), "--test-data", str(tiny_cohort.root)])


def test_table2_labels_the_gated_variant_without_paper_numbers():
    cardio = TASKS["cardio"]
    assert "neurofusion_gated" not in [row.architecture for row in cardio.rows]  # never run by default
    runs = [{"architecture": a, "seed": s, "accuracy": 0.9 + s / 100, "macro_f1": 0.88}
            for a in ("neurofusion", "neurofusion_gated") for s in (0, 1)]
    lines = {line.split(" | ")[0].strip("| "): line for line in
             table2_markdown(cardio, {"runs": runs, "settings": {"test_cases": 200}}).splitlines()
             if line.startswith("| neurofusion")}
    assert lines["neurofusion"].endswith("| 94.2 | 0.931 |")
    gated = lines["neurofusion_gated (NeuroFusion + context gating; not in the paper)"]
    assert gated.endswith("| – | – |") and "90.5 ± 0.7" in gated
