"""benchmarks/distillation.py's pure parts: the summary statistics and the JSON contract Figure 3 reads, the
no-teacher config (alpha 0, nothing else changed), the interleaved latency timer on a tiny model, and the
markdown on fake runs. Nothing is trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from benchmarks import distillation
from benchmarks.distillation import markdown, measure_latency, quartiles, summarise, summary, teacher_agreement
from neurofusion.checkpoint import save_checkpoint
from neurofusion.distill import load_student_config
from neurofusion.models import build_model
from tests.conftest import tiny_config

KEYS = {"parameters", "accuracy", "macro_f1", "latency_b1_ms", "latency_b32_ms", "train_minutes"}


def _run(model: str, seed: int, accuracy: float) -> dict:
    return {"model": model, "seed": seed, "parameters": 400, "accuracy": accuracy, "accuracy_ci_low": accuracy - 0.05,
            "accuracy_ci_high": accuracy + 0.05, "macro_f1": accuracy - 0.01, "macro_f1_ci_low": accuracy - 0.07,
            "macro_f1_ci_high": accuracy + 0.04, "epochs": 6, "best_epoch": 5, "train_minutes": 3.0 + seed}


def _results() -> dict:
    teacher = {"parameters": 1000, "accuracy": 0.7, "accuracy_ci_low": 0.64, "accuracy_ci_high": 0.76,
               "macro_f1": 0.69, "macro_f1_ci_low": 0.62, "macro_f1_ci_high": 0.75, "train_minutes": 14.3}
    runs = [_run("distilled", s, a) for s, a in enumerate((0.66, 0.68, 0.70))]
    runs += [_run("no_teacher", s, a) for s, a in enumerate((0.60, 0.62, 0.61))]
    for run, agreement in zip(runs, (0.9, 0.8, 0.85, 0.7, 0.75, 0.8)):
        run["teacher_agreement"] = agreement
    latency = {"samples": {name: {"latency_b1_ms": [10.0 * k, 11.0 * k, 12.0 * k, 13.0 * k],
                                  "latency_b32_ms": [100.0 * k, 120.0 * k]}
                           for name, k in (("teacher", 2), ("distilled", 1), ("no_teacher", 1))}}
    settings = {"teacher": "T", "teacher_training": "20 epochs", "config": "c.yaml", "temperature": 4.0,
                "alpha": 0.7, "seeds": [0, 1, 2], "max_epochs": 6, "patience": 8, "data": "D", "test_cases": 200, "trainval_cases": 1800,
                "test_data": "S", "n_bootstrap": 200, "machine": "x86_64", "torch_threads": 1, "command": "python b",
                "date": "today"}
    return {"teacher": teacher, "runs": runs, "latency": latency, "settings": settings}


def test_summary_follows_the_contract_and_the_statistics_are_right():
    s = summary(_results())
    assert set(s) == {"teacher", "student", "student_no_teacher"}
    for name, block in s.items():
        assert KEYS <= set(block), name
        assert set(block["accuracy"]) == set(block["macro_f1"]) == {"mean", "sd", "ci_low", "ci_high"}
        assert {"median", "q1", "q3", "samples"} <= set(block["latency_b1_ms"])
        assert isinstance(block["parameters"], int)
    student = s["student"]
    assert student["accuracy"]["mean"] == pytest.approx(0.68)
    assert student["accuracy"]["sd"] == pytest.approx(np.std([0.66, 0.68, 0.70], ddof=1))
    assert student["accuracy"]["ci_low"] == pytest.approx(0.63)
    assert student["train_minutes"] == pytest.approx(4.0)
    assert s["teacher"]["accuracy"] == {"mean": 0.7, "sd": 0.0, "ci_low": 0.64, "ci_high": 0.76}
    assert s["teacher"]["latency_b1_ms"]["median"] == pytest.approx(23.0)
    assert s["student"]["latency_b1_ms"]["q1"] == pytest.approx(10.75)
    assert s["student"]["teacher_agreement"]["mean"] == pytest.approx(0.85)
    assert "teacher_agreement" not in s["teacher"]


def test_quartiles_agree_with_numpy():
    samples = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    q = quartiles(samples)
    assert (q["q1"], q["median"], q["q3"]) == tuple(np.percentile(samples, [25, 50, 75]))
    assert q["samples"] == samples
    with pytest.raises(ValueError, match="no runs to summarise 'accuracy'"):
        summarise([], "accuracy")


def test_markdown_shows_each_model_the_ratios_and_the_paper():
    results = _results()
    results["summary"] = summary(results)
    text = markdown(results)
    assert "| student | 3 | 400 (40%) | 68.0 ± 2.0 [63.0, 73.0] |" in text
    assert "| student size vs teacher | 60% smaller | 60% smaller |" in text
    assert "| student accuracy − teacher's | -2.0 points | −1.2 points |" in text
    assert "| student accuracy − student without teacher | +7.0 points | – |" in text
    assert "| 85.0 ± 5.0 % (without teacher: 75.0 ± 5.0 %) | – |" in text
    assert "| student | 0 | 66.0 [61.0, 71.0] | 0.650 [0.590, 0.700] | 90.0 | 6 (5) | 3.0 |" in text
    assert "23.0 → 11.5 ms (×0.50) | 180 → 95 ms" in text
    assert text.count("| student_no_teacher | ") == 4  # its summary row and its three runs


def test_the_no_teacher_config_differs_only_in_alpha(tmp_path, monkeypatch):
    monkeypatch.setattr(distillation, "CHECKPOINTS", tmp_path)
    config = str(distillation.ROOT / distillation.CONFIG)
    assert distillation.student_config("distilled", config) == config
    path = distillation.student_config("no_teacher", config)
    original, changed = (yaml.safe_load(open(p)) for p in (config, path))
    assert changed["distill"]["alpha"] == 0.0
    changed["distill"]["alpha"] = original["distill"]["alpha"]
    assert changed == original
    experiment, settings = load_student_config(path)
    assert settings.alpha == 0.0 and experiment.model.architecture == "neurofusion"


def test_latency_is_timed_for_every_model_interleaved(tiny_cohort, tiny_tokenizer):
    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer)).eval()
    cases = [tiny_cohort[i] for i in range(32)]
    times = measure_latency({"a": (model, tiny_tokenizer), "b": (model, tiny_tokenizer)}, cases, 3, 2)
    assert {len(times[m]["latency_b1_ms"]) for m in "ab"} == {3}
    assert {len(times[m]["latency_b32_ms"]) for m in "ab"} == {2}
    assert all(t > 0 for m in "ab" for key in times[m] for t in times[m][key])
    with pytest.raises(ValueError, match="needs 32 complete cases, got 5"):
        measure_latency({"a": (model, tiny_tokenizer)}, cases[:5], 1, 1)


def test_a_model_agrees_with_itself_on_every_test_case(tiny_cohort, tiny_tokenizer, tmp_path):
    torch.manual_seed(0)
    teacher = save_checkpoint(tmp_path / "t", build_model(tiny_config(tiny_cohort, tiny_tokenizer)), tiny_tokenizer)
    other = tiny_config(tiny_cohort, tiny_tokenizer)
    other.fusion.fused_dim = 6
    torch.manual_seed(1)
    student = save_checkpoint(tmp_path / "s", build_model(other), tiny_tokenizer)
    agreement = teacher_agreement(teacher, [teacher, student], str(tiny_cohort.root))
    assert agreement[teacher] == 1.0
    assert 0.0 <= agreement[student] <= 1.0
    assert agreement[student] * len(tiny_cohort.ids("test")) == pytest.approx(round(agreement[student] * len(
        tiny_cohort.ids("test"))))  # a share of whole cases
