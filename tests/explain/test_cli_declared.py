"""python -m explain on checkpoints with declared modalities: a 5-modality survival model (the explained
quantity chosen on the command line, one summary line per declared panel) and the 5-modality classifier."""

from __future__ import annotations

import json

import pytest

from explain.__main__ import main
from neurofusion.checkpoint import save_checkpoint
from tests.explain.declared import toy_model


@pytest.fixture(scope="module")
def survival_checkpoint(tmp_path_factory):
    toy = toy_model(tmp_path_factory.mktemp("cli_surv") / "toy", survival=True)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "surv", toy.model, toy.predictor.tokenizer)
    return path, toy


def test_survival_case_explains_the_chosen_quantity(survival_checkpoint, capsys):
    path, toy = survival_checkpoint
    case = next(c for c in toy.cases if all(c.available.values()))
    args = ["case", "--checkpoint", str(path), "--data", str(toy.root), "--case-id", case.case_id, "--n-steps", "4"]
    assert main(args + ["--json"]) == 0
    survival = json.loads(capsys.readouterr().out)
    assert survival["explained"] == "survival at 60 months" and list(survival["panels"]) == list(toy.model.names)
    assert len(survival["survival_curve"]) == 10
    assert main(args + ["--json", "--quantity", "risk", "--horizon", "24"]) == 0
    risk = json.loads(capsys.readouterr().out)
    assert risk["explained"] == "risk (1 - survival) at 24 months"
    shapley = [v for v in risk["modality_importance"]["shapley"].values() if v is not None]
    assert sum(shapley) == pytest.approx(risk["probabilities"][risk["explained"]] - risk["probability_all_missing"],
                                         abs=1e-5)
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "Shapley (survival at 60 months)" in text and "report phrases:" in text and "ecg: strongest segment" in text
    assert "genes: " in text


def test_survival_cohort_groups_every_case_together(survival_checkpoint, capsys):
    path, toy = survival_checkpoint
    assert main(["cohort", "--checkpoint", str(path), "--data", str(toy.root), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["modalities"] == list(toy.model.names) and result["explained"] == "survival at 60 months"
    assert list(result["importance_by_true_class"]) == ["all"]
    assert set(result["importance_by_true_class"]["all"]) == set(toy.model.names)
    assert len(result["attention_by_true_class"]["all"]) == 5


def test_a_classifier_refuses_survival_options(tmp_path, capsys):
    toy = toy_model(tmp_path / "toy")
    path = save_checkpoint(tmp_path / "ckpt", toy.model, toy.predictor.tokenizer)
    args = ["case", "--checkpoint", str(path), "--data", str(toy.root), "--case-id", toy.cases[0].case_id,
            "--n-steps", "4"]
    assert main(args + ["--quantity", "risk"]) == 2
    assert "apply to survival models" in capsys.readouterr().err
    assert main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "explained" not in result and set(result["probabilities"]) == {"low", "high"}
    assert list(result["panels"]) == list(toy.model.names)
