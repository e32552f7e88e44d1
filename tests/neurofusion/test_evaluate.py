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
