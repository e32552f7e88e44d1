"""Knowledge distillation (neurofusion.distill): the objective against a NumPy reference on fixed logits, alpha 0
is the task loss exactly (and training with it is plain training), the soft targets change what a student
learns, the student checkpoint loads and predicts like any other, and bad student configs or teachers are
specific errors."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
import yaml

from neurofusion.checkpoint import load_checkpoint, save_checkpoint
from neurofusion.config import HeadConfig, ModelConfig, TrainConfig
from neurofusion.distill import (
    DistillConfig,
    DistillationObjective,
    check_compatible,
    distill,
    distillation_loss,
    load_student_config,
    main as distill_main,
    weights_sha256,
)
from neurofusion.inference import Predictor
from neurofusion.models import build_model
from neurofusion.survival import SurvivalBins
from neurofusion.train import configure_model, fit
from tests.conftest import tiny_config
from tests.neurofusion.declared import tiny_encoders

STUDENT_SIZES = {"fusion": {"token_dim": 8, "num_heads": 2, "fused_dim": 12, "dropout": 0.0},
                 "tabular": {"hidden_sizes": [8], "category_dim": 2, "out_dim": 4}}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_objective_equals_the_formula_on_fixed_logits():
    student = np.array([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    teacher = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 3.0]])
    task, t, alpha = 0.7, 2.0, 0.25
    p, q = _softmax(teacher / t), _softmax(student / t)
    kl = float(np.sum(p * (np.log(p) - np.log(q))) / 2)  # summed over classes, averaged over the 2 cases
    expected = (1 - alpha) * task + alpha * t * t * kl
    got = distillation_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(task),
                            DistillConfig(temperature=t, alpha=alpha))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert kl > 0.05  # the case is not trivial: the soft term contributes


def test_alpha_zero_is_the_task_loss_and_equal_logits_leave_only_its_share():
    logits = torch.randn(4, 5)
    task = torch.tensor(1.2345)
    assert torch.equal(distillation_loss(logits, torch.randn(4, 5), task, DistillConfig(3.0, 0.0)), task)
    same = distillation_loss(logits, logits.clone(), task, DistillConfig(3.0, 0.4))
    assert float(same) == pytest.approx(0.6 * 1.2345, abs=1e-6)


def test_soft_term_gradient_is_temperature_times_the_probability_gap():
    """d/ds of T^2 KL(softmax(t/T) || softmax(s/T)) = T (softmax(s/T) - softmax(t/T)) / B."""
    student = torch.tensor([[0.3, -0.2, 1.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0, -1.0]])
    distillation_loss(student, teacher, torch.tensor(0.0), DistillConfig(temperature=3.0, alpha=1.0)).backward()
    expected = 3.0 * (_softmax(student.detach().numpy() / 3.0) - _softmax(teacher.numpy() / 3.0))
    np.testing.assert_allclose(student.grad.numpy(), expected, atol=1e-6)


def test_mismatched_logits_are_refused():
    with pytest.raises(ValueError, match=r"must both be \(B, C\), got \(2, 3\) and \(2, 4\)"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.tensor(0.0), DistillConfig())


@pytest.fixture(scope="module")
def teacher(tiny_cohort, tiny_tokenizer, tmp_path_factory):
    """A tiny classifier trained 2 epochs on the tiny cohort, saved as a checkpoint folder."""
    train = TrainConfig(lr=3e-3, batch_size=16, max_epochs=2, patience=5, seed=0, augment=False,
                        modality_dropout=0.0)
    result = fit(tiny_cohort, tiny_config(tiny_cohort, tiny_tokenizer), train, progress=False,
                 tokenizer=tiny_tokenizer)
    return save_checkpoint(tmp_path_factory.mktemp("teacher") / "ckpt", result.model, result.tokenizer)


def _student_yaml(tiny_cohort, tiny_tokenizer, path, distill_section=None, **train) -> str:
    model = tiny_config(tiny_cohort, tiny_tokenizer).to_dict()
    model.pop("classes"), model.pop("features")
    for part, sizes in STUDENT_SIZES.items():
        model[part].update(sizes)
    data = {"model": model, "train": {"lr": 0.003, "batch_size": 16, "max_epochs": 2, "augment": False,
                                      "modality_dropout": 0.2, **train}}
    if distill_section is not False:
        data["distill"] = distill_section or {"temperature": 2.0, "alpha": 0.5}
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _student(tiny_cohort, tiny_tokenizer, tmp_path, teacher, alpha: float):
    experiment, _ = load_student_config(_student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "s.yaml"))
    ckpt = load_checkpoint(teacher, device="cpu")
    return distill(ckpt, tiny_cohort, experiment, DistillConfig(temperature=2.0, alpha=alpha), progress=False)


def test_soft_targets_change_what_the_student_learns_and_alpha_zero_is_plain_training(
        tiny_cohort, tiny_tokenizer, tmp_path, teacher):
    plain, soft = (_student(tiny_cohort, tiny_tokenizer, tmp_path, teacher, alpha) for alpha in (0.0, 1.0))
    experiment, _ = load_student_config(_student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "s.yaml"))
    alone = fit(tiny_cohort, experiment.model, experiment.train, progress=False, tokenizer=tiny_tokenizer)
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, alone.model.state_dict()[name]), name
    differing = [name for name, value in plain.model.state_dict().items()
                 if value.dtype.is_floating_point and not torch.equal(value, soft.model.state_dict()[name])]
    assert len(differing) > 10, differing
    assert soft.history[0]["train_loss"] != plain.history[0]["train_loss"]


def test_the_teacher_sees_the_students_kept_modalities_without_gradients(tiny_cohort, tiny_tokenizer, teacher):
    ckpt = load_checkpoint(teacher, device="cpu")
    objective = DistillationObjective(ckpt.model, DistillConfig(2.0, 1.0))
    batch = Predictor(ckpt.model, ckpt.tokenizer).batch([tiny_cohort[i] for i in range(6)])
    kept = batch.present.clone()
    kept[:, 0] = False  # the student did not see the first modality: neither may the teacher
    with torch.no_grad():
        expected = ckpt.model(batch, present=kept).logits
    logits = objective.teacher_logits(batch, kept)
    torch.testing.assert_close(logits, expected)
    assert not logits.requires_grad and not ckpt.model.training
    assert not torch.allclose(logits, objective.teacher_logits(batch, batch.present))


def test_cli_writes_a_student_checkpoint_that_loads_and_predicts(tiny_cohort, tiny_tokenizer, tmp_path, teacher,
                                                                  capsys):
    config = _student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "student.yaml")
    out = tmp_path / "student"
    assert distill_main(["--teacher", str(teacher), "--student-config", config, "--data", str(tiny_cohort.root),
                         "--out", str(out), "--seed", "1", "--quiet"]) == 0
    assert "student of" in capsys.readouterr().out
    student = load_checkpoint(out, device="cpu")
    teacher_ckpt = load_checkpoint(teacher, device="cpu")
    assert student.tokenizer.get_vocab() == teacher_ckpt.tokenizer.get_vocab()
    assert sum(p.numel() for p in student.model.parameters()) < sum(p.numel() for p in teacher_ckpt.model.parameters())
    cases = [tiny_cohort[i] for i in tiny_cohort.ids("test")]
    labels, probabilities = Predictor(student.model, student.tokenizer).predict(cases)
    assert probabilities.shape == (len(cases), len(tiny_cohort.classes))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-5)
    training = json.loads((out / "training.json").read_text())
    assert training["distillation"]["teacher"] == str(teacher)
    assert training["distillation"]["teacher_weights_sha256"] == weights_sha256(teacher)
    assert len(training["distillation"]["teacher_weights_sha256"]) == 64
    assert (training["distillation"]["temperature"], training["distillation"]["alpha"]) == (2.0, 0.5)
    assert training["train_config"]["seed"] == 1 and training["epochs"] == 2
    assert json.loads((out / "metrics.json").read_text())["test"]["n"] == len(cases)


def test_an_interrupted_student_resumes_from_its_last_epoch(tiny_cohort, tiny_tokenizer, tmp_path, teacher):
    config = _student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "student.yaml")
    out = tmp_path / "student"
    common = ["--teacher", str(teacher), "--student-config", config, "--data", str(tiny_cohort.root),
              "--out", str(out), "--quiet"]
    assert distill_main([*common, "--max-epochs", "1"]) == 0
    first = json.loads((out / "training.json").read_text())["history"]
    assert distill_main([*common, "--max-epochs", "2", "--resume"]) == 0
    history = json.loads((out / "training.json").read_text())["history"]
    assert [r["epoch"] for r in history] == [1, 2] and history[0] == first[0]


@pytest.mark.parametrize("section, message", [
    ({"temperature": 0, "alpha": 0.5}, r"'distill.temperature' must be a finite number > 0, got 0"),
    ({"temperature": 2.0, "alpha": 1.5}, r"'distill.alpha' must be in \[0, 1\].*got 1.5"),
    ({"temperature": "hot", "alpha": 0.5}, r"'distill.temperature' must be a number, got 'hot'"),
    ({"temperature": 2.0}, r"'distill' needs alpha"),
    ({"temperature": 2.0, "alpha": 0.5, "beta": 1}, r"unknown key\(s\) in 'distill': beta"),
    (False, r"no 'distill' section"),
])
def test_bad_distill_section_is_a_message_naming_the_file_and_field(tiny_cohort, tiny_tokenizer, tmp_path, teacher,
                                                                    capsys, section, message):
    config = _student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "bad.yaml", distill_section=section)
    assert distill_main(["--teacher", str(teacher), "--student-config", config, "--data", str(tiny_cohort.root),
                         "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: {config}: " in err
    assert re.search(message, err), err
    assert not (tmp_path / "x").exists()


def test_bad_model_field_in_a_student_config_names_it(tiny_cohort, tiny_tokenizer, tmp_path):
    config = _student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "bad.yaml", lr="fast")
    with pytest.raises(ValueError, match=r"bad.yaml: 'config.train.lr' has the wrong type: 'fast' is not float"):
        load_student_config(config)


def test_unreadable_teacher_is_a_message(tiny_cohort, tiny_tokenizer, tmp_path, capsys):
    config = _student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "student.yaml")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "broken" / "model.safetensors").write_bytes(b"")
    for folder in ("missing", "broken"):
        assert distill_main(["--teacher", str(tmp_path / folder), "--student-config", config,
                             "--data", str(tiny_cohort.root), "--out", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "cannot read the teacher checkpoint" in err and str(tmp_path / folder) in err, err


def test_a_teacher_of_other_classes_or_inputs_is_refused(tiny_cohort, tiny_tokenizer, tmp_path, capsys):
    reordered = tiny_config(tiny_cohort, tiny_tokenizer)
    reordered.classes = list(reversed(reordered.classes))
    smaller_images = tiny_config(tiny_cohort, tiny_tokenizer)
    smaller_images.image.image_size = 16
    config = _student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "student.yaml")
    for name, model_config, field in (("reordered", reordered, "classes: teacher"),
                                      ("small", smaller_images, "image.image_size: teacher 16, student 32")):
        torch.manual_seed(0)
        saved = save_checkpoint(tmp_path / name, build_model(model_config), tiny_tokenizer)
        assert distill_main(["--teacher", str(saved), "--student-config", config, "--data", str(tiny_cohort.root),
                             "--out", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"the student cannot learn from teacher {saved}: {field}" in err, err
    assert not (tmp_path / "x").exists()


def test_a_survival_teacher_and_a_pretrained_student_vocabulary_are_refused(tiny_cohort, tiny_tokenizer):
    bins = SurvivalBins()
    survival = ModelConfig(task="toy", heads=[HeadConfig("survival", "survival", bins.num_bins, bins=bins.to_dict())],
                           **tiny_encoders(200))
    student = configure_model(tiny_config(tiny_cohort, tiny_tokenizer), tiny_cohort)
    with pytest.raises(ValueError, match=r"teacher T is a survival model .* classification teachers only"):
        check_compatible(survival, student, "T")
    pretrained = dataclasses.replace(student, text=dataclasses.replace(student.text, pretrained="bert-dir"))
    with pytest.raises(ValueError, match=r"sets text.pretrained \('bert-dir'\) .* teacher's tokenizer"):
        check_compatible(student, pretrained, "T")
    check_compatible(student, student, "T")  # the same config is compatible


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")
def test_distillation_runs_on_cuda_with_the_teacher_on_the_students_device(tiny_cohort, tiny_tokenizer, tmp_path,
                                                                          teacher):
    config = _student_yaml(tiny_cohort, tiny_tokenizer, tmp_path / "student.yaml")
    out = tmp_path / "student"
    assert distill_main(["--teacher", str(teacher), "--student-config", config, "--data", str(tiny_cohort.root),
                         "--out", str(out), "--device", "cuda", "--quiet"]) == 0
    training = json.loads((out / "training.json").read_text())
    assert training["mixed_precision"] == "mixed precision: bfloat16 autocast"
    assert all(np.isfinite(record["train_loss"]) for record in training["history"])
    # the teacher's soft targets under bfloat16 autocast on the GPU stay close to its float32 CPU logits
    cpu, gpu = (load_checkpoint(teacher, device=device) for device in ("cpu", "cuda"))
    batch = Predictor(cpu.model, cpu.tokenizer).batch([tiny_cohort[i] for i in range(8)])
    expected = DistillationObjective(cpu.model, DistillConfig()).teacher_logits(batch, batch.present)
    got = DistillationObjective(gpu.model, DistillConfig()).teacher_logits(batch.to("cuda"), batch.present.cuda())
    torch.testing.assert_close(got.cpu(), expected, atol=5e-2, rtol=5e-2)
