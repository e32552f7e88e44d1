"""python -m neurofusion.evaluate: metrics the split cannot define are said to be not defined, never 0 or NaN."""

from __future__ import annotations

import json

import pytest

from neurofusion.checkpoint import save_checkpoint
from neurofusion.evaluate import evaluate, main
from tests.conftest import small_case, write_small_cohort


@pytest.fixture
def setup(tiny_batch, tiny_tokenizer, tmp_path):
    """A tiny 5-class checkpoint and a cohort whose test split holds only two of the classes."""
    checkpoint = save_checkpoint(tmp_path / "ckpt", tiny_batch[0], tiny_tokenizer)
    cohort = write_small_cohort(tmp_path / "cohort", [small_case(i, split="test") for i in range(8)])
    return checkpoint, cohort


def _strict(text: str) -> dict:
    def refuse(constant):
        raise AssertionError(f"{constant} in the JSON output")
    return json.loads(text, parse_constant=refuse)


def test_classes_without_test_cases_are_not_defined(setup, capsys):
    checkpoint, cohort = setup
    assert main(["--checkpoint", str(checkpoint), "--data", str(cohort), "--bootstrap", "50", "--json"]) == 0
    result = _strict(capsys.readouterr().out)
    absent = [c for c in result["class_names"] if c not in ("normal", "heart_failure")]
    assert len(absent) == 3
    for name in absent:
        row = result["per_class"][name]
        assert row["support"] == 0 and row["f1"]["value"] is None and row["auroc"]["value"] is None
        assert row["f1"]["reason"].startswith(f"not defined: no test cases of class {name}")
    assert result["macro_f1"]["classes"] == ["normal", "heart_failure"]
    assert set(result["macro_f1"]["excluded"]) == set(absent)

    assert main(["--checkpoint", str(checkpoint), "--data", str(cohort), "--bootstrap", "50"]) == 0
    text = capsys.readouterr().out
    assert "nan" not in text.lower()
    assert f"not defined: no test cases of class {absent[0]}" in text
    macro = next(line for line in text.splitlines() if line.strip().startswith("macro_f1"))
    assert macro.rstrip().endswith(f"over normal, heart_failure (not {', '.join(absent)})")


def test_evaluate_value_equals_the_mean_over_the_defined_classes(setup):
    checkpoint, cohort = setup
    result = evaluate(checkpoint, cohort, device="cpu", n_bootstrap=20)
    f1 = [result["per_class"][c]["f1"]["value"] for c in ("normal", "heart_failure")]
    assert result["macro_f1"]["value"] == pytest.approx(sum(f1) / 2, abs=1e-12)


def _assert_close(streamed, before, where: str = "result") -> None:
    """Nested results equal: numbers within 1e-6, everything else exactly."""
    if isinstance(before, dict):
        assert isinstance(streamed, dict) and set(streamed) == set(before), where
        for key in before:
            _assert_close(streamed[key], before[key], f"{where}.{key}")
    elif isinstance(before, (list, tuple)):
        assert len(streamed) == len(before), where
        for i, (a, b) in enumerate(zip(streamed, before)):
            _assert_close(a, b, f"{where}[{i}]")
    elif isinstance(before, float) and not isinstance(before, bool):
        assert streamed == pytest.approx(before, abs=1e-6, nan_ok=True), where
    else:
        assert streamed == before, where


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streamed_evaluation_equals_the_whole_split_in_memory(num_workers):
    """The bundled cardio cohort's test split and the demo checkpoint: the metrics of evaluate (cases streamed
    through DataLoader workers) equal those of predicting the whole split held in memory, as it did before."""
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.data import CohortReader
    from neurofusion.inference import Predictor
    from neurofusion.metrics import classification_metrics
    from tests.test_sample_data import DEMO, SAMPLE

    checkpoint = load_checkpoint(DEMO, device="cpu")
    cohort = CohortReader(SAMPLE)
    ids = cohort.ids("test")
    labels, probabilities = Predictor(checkpoint.model, checkpoint.tokenizer).predict([cohort[i] for i in ids])
    before = classification_metrics(labels, probabilities, checkpoint.config.classes, n_bootstrap=30, seed=0,
                                    split="test")
    result = evaluate(DEMO, SAMPLE, device="cpu", n_bootstrap=30, num_workers=num_workers)
    assert result["n"] == len(ids) == 200
    _assert_close({k: result[k] for k in before}, before)


def test_survival_streamed_evaluation_equals_the_whole_split_in_memory():
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.data import CohortReader
    from neurofusion.evaluate import censoring_reference, survival_report
    from neurofusion.inference import Predictor
    from tests.test_sample_data import CANCER, CANCER_DEMO

    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    cohort = CohortReader(CANCER)
    ids = cohort.ids("test")
    prediction = Predictor(checkpoint.model, checkpoint.tokenizer).predict_survival([cohort[i] for i in ids])
    reference = (censoring_reference(cohort, cohort.ids("train"), "the cohort's train split")
                 or censoring_reference(cohort, ids, "the evaluated cases' own (test split): the cohort has no train "
                                                     "split with outcomes"))
    before = survival_report(prediction, reference, n_bootstrap=20, seed=0)
    result = evaluate(CANCER_DEMO, CANCER, device="cpu", n_bootstrap=20, num_workers=2)
    _assert_close({k: result[k] for k in before}, before)


def test_negative_num_workers_is_a_clear_error(setup, capsys):
    checkpoint, cohort = setup
    assert main(["--checkpoint", str(checkpoint), "--data", str(cohort), "--num-workers", "-1"]) == 2
    assert "num_workers must be >= 0, got -1" in capsys.readouterr().err
