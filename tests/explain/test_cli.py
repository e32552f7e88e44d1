"""python -m explain case / cohort on a saved tiny checkpoint."""

from __future__ import annotations

import json

import pytest

from explain.__main__ import main
from neurofusion.checkpoint import save_checkpoint


@pytest.fixture
def checkpoint(tiny_batch, tiny_tokenizer, tmp_path):
    return save_checkpoint(tmp_path / "ckpt", tiny_batch[0], tiny_tokenizer)


def test_case_json(checkpoint, tiny_cohort, capsys):
    case_id = tiny_cohort.ids("test")[0]
    assert main(["case", "--checkpoint", str(checkpoint), "--data", str(tiny_cohort.root), "--case-id", case_id,
                 "--n-steps", "4", "--image-method", "occlusion", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["case_id"] == case_id and sum(result["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    shapley = [v for v in result["modality_importance"]["shapley"].values() if v is not None]
    assert sum(shapley) == pytest.approx(result["probabilities"][result["explained_class"]]
                                         - result["probability_all_missing"], abs=1e-4)


def test_cohort_with_bundled_rankings_and_ground_truth(checkpoint, tiny_cohort, capsys):
    assert main(["cohort", "--checkpoint", str(checkpoint), "--data", str(tiny_cohort.root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["cases"] == len(tiny_cohort.ids("test"))
    assert "all" in result["clinician_agreement"] and "kendalls_w" in result["inter_rater"]
    assert set(result["ground_truth_agreement"]) == {"attention", "shapley", "leave_one_out", "interaction_aware"}
    assert len(result["attention_by_true_class"]) == 5


def test_errors_are_messages(checkpoint, tiny_cohort, tmp_path, capsys):
    bad = tmp_path / "rankings.csv"
    bad.write_text("case_id,rater,image,text,signal,tabular\nCV-00001,A,1,1,2,3\n")
    assert main(["cohort", "--checkpoint", str(checkpoint), "--data", str(tiny_cohort.root),
                 "--rankings", str(bad)]) == 2
    assert "ranks must be a permutation" in capsys.readouterr().err
    assert main(["case", "--checkpoint", str(checkpoint), "--data", str(tiny_cohort.root), "--case-id", "NOPE"]) == 2
    assert "NOPE" in capsys.readouterr().err


def test_case_reports_out_of_distribution_inputs_and_the_input_report(tiny_batch, tiny_tokenizer, tiny_cohort,
                                                                     tmp_path, capsys):
    from tests.explain.test_case import _reference

    model, batch = tiny_batch
    path = save_checkpoint(tmp_path / "ood_ckpt", model, tiny_tokenizer, ood=_reference(model, batch, far=("image",)))
    case_id = next(c.case_id for c in tiny_cohort if c.image is not None)
    args = ["case", "--checkpoint", str(path), "--data", str(tiny_cohort.root), "--case-id", case_id,
            "--n-steps", "4", "--image-method", "grad_cam", "--device", "cpu"]
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ood"]["image"]["flagged"] is True and "messages" in result["inputs"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "OUT OF DISTRIBUTION: image is unlike the training data (distance" in text
    assert ("input: " in text) == bool(result["inputs"]["messages"])

    plain = save_checkpoint(tmp_path / "plain", model, tiny_tokenizer)
    assert main(["case", "--checkpoint", str(plain), "--data", str(tiny_cohort.root), "--case-id", case_id,
                 "--n-steps", "4", "--image-method", "grad_cam"]) == 0
    assert "out of distribution: not checked" in capsys.readouterr().out


def test_cohort_says_which_class_values_are_not_defined(checkpoint, tmp_path, capsys):
    from tests.conftest import small_case, write_small_cohort

    cohort = write_small_cohort(tmp_path / "two_classes", [small_case(i, split="test") for i in range(6)])
    args = ["cohort", "--checkpoint", str(checkpoint), "--data", str(cohort), "--device", "cpu"]
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert result["importance_by_true_class"]["arrhythmia"] == {m: None for m in ("image", "text", "signal", "tabular")}
    reason = "not defined: no test cases of class arrhythmia"
    assert result["not_defined"]["importance_by_true_class.arrhythmia"] == reason
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "nan" not in text.lower()
    assert "arrhythmia                 image n/a, text n/a, signal n/a, tabular n/a" in text
    assert "  n/a arrhythmia: not defined: no test cases of class arrhythmia" in text
