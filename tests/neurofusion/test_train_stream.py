"""Streamed training (neurofusion/loader.py, neurofusion/train.py): the same weights whatever the number of
data workers, never every prepared case in memory at once, the learning-rate schedule, gradient clipping, and
a run interrupted after an epoch that resumes to the weights of an uninterrupted one."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

import neurofusion.data.dataset as dataset_module
import neurofusion.loader as loader_module
from neurofusion.checkpoint import load_checkpoint
from neurofusion.config import TrainConfig
from neurofusion.data.augment import AugmentConfig
from neurofusion.data.tokenizer import make_tokenize
from neurofusion.loader import EpochSampler, SplitCases, TrainingCases, TrainingCollate, case_loader
from neurofusion.train import STATE_FILE, fit, lr_factor, main as train_main, train_step
from tests.conftest import tiny_config

# The batches are bit-identical whatever the workers (test below); the weights of two runs still differ by
# float32 rounding (measured up to ~6e-7 after 2 epochs: tensors that arrive from a worker's shared memory
# take other vectorised paths), which Adam carries on. Weights are O(0.1).
WEIGHTS_ATOL = 1e-5


def _weights_close(a: torch.nn.Module, b: torch.nn.Module, atol: float = WEIGHTS_ATOL) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.allclose(sa[key].float(), sb[key].float(), rtol=0, atol=atol), key


def _small_train(**changes) -> TrainConfig:
    settings = dict(lr=3e-3, batch_size=8, max_epochs=2, patience=10, seed=3, augment=True, modality_dropout=0.25)
    return TrainConfig(**{**settings, **changes})


def test_the_same_batches_from_any_number_of_workers(tiny_cohort, tiny_tokenizer):
    """Augmentation and modality dropout are drawn per case and epoch: 0 or 2 workers give identical batches,
    and another epoch gives other ones."""
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    ids = tiny_cohort.ids("train")
    cases = TrainingCases(SplitCases(tiny_cohort, ids), config.input_spec(), augment=AugmentConfig(),
                          modality_dropout=0.5, seed=3)
    collate = TrainingCollate(make_tokenize(tiny_tokenizer, 128))

    def epoch_batches(workers: int, epoch: int) -> list:
        sampler = EpochSampler(len(ids), seed=3)
        sampler.set_epoch(epoch)
        return list(case_loader(cases, batch_size=8, collate=collate, num_workers=workers, sampler=sampler))

    alone, workers, later = epoch_batches(0, 1), epoch_batches(2, 1), epoch_batches(0, 2)
    assert len(alone) == len(workers) == math.ceil(len(ids) / 8)
    for a, b in zip(alone, workers):
        assert a.batch.case_ids == b.batch.case_ids and torch.equal(a.kept, b.kept)
        for name, tensors in a.batch.inputs.items():
            assert all(torch.equal(t, b.batch.inputs[name][k]) for k, t in tensors.items()), name
        assert a.batch.texts == b.batch.texts
    image = next(m.name for m in config.modality_specs if m.kind == "image")
    first = {cid: row for a in alone for cid, row in zip(a.batch.case_ids, a.batch.inputs[image]["image"])}
    again = {cid: row for a in later for cid, row in zip(a.batch.case_ids, a.batch.inputs[image]["image"])}
    assert sum(not torch.equal(first[c], again[c]) for c in first) > len(first) // 2  # re-augmented each epoch


def test_the_same_weights_with_and_without_worker_processes(tiny_cohort, tiny_tokenizer):
    """Augmentation and modality dropout are seeded per case and epoch, not per worker."""
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    alone = fit(tiny_cohort, config, _small_train(num_workers=0), progress=False, tokenizer=tiny_tokenizer)
    workers = fit(tiny_cohort, config, _small_train(num_workers=2), progress=False, tokenizer=tiny_tokenizer)
    _weights_close(alone.model, workers.model)
    assert [h["train_loss"] for h in alone.history] == pytest.approx([h["train_loss"] for h in workers.history],
                                                                      abs=1e-6)
    # and the seed matters: another seed draws other augmentations and dropout masks
    other = fit(tiny_cohort, config, _small_train(num_workers=0, seed=4), progress=False, tokenizer=tiny_tokenizer)
    assert any(not torch.allclose(a, b, atol=1e-3) for a, b in zip(alone.model.state_dict().values(),
                                                                   other.model.state_dict().values()))


def test_training_never_holds_every_prepared_case(tiny_cohort, tiny_tokenizer, monkeypatch):
    """Prepared cases are counted while alive: at most the batch being collated and the one being trained on
    exist at once, however many cases the splits have."""
    live, peak, made = [0], [0], [0]

    class Counted(dict):
        def __del__(self):
            live[0] -= 1

    def counting(prepare):
        def prepare_case(case, spec):
            item = Counted(prepare(case, spec))
            live[0] += 1
            made[0] += 1
            peak[0] = max(peak[0], live[0])
            return item
        return prepare_case

    monkeypatch.setattr(loader_module, "prepare_case", counting(loader_module.prepare_case))
    monkeypatch.setattr(dataset_module, "prepare_case", counting(dataset_module.prepare_case))
    batch_size = 4
    n_cases = len(tiny_cohort.ids("train")) + len(tiny_cohort.ids("val"))
    fit(tiny_cohort, tiny_config(tiny_cohort, tiny_tokenizer), _small_train(batch_size=batch_size, max_epochs=2),
        progress=False, tokenizer=tiny_tokenizer)
    assert made[0] >= 2 * n_cases  # the counter saw every case of both epochs
    assert peak[0] <= 2 * batch_size < n_cases, (peak[0], n_cases)


def test_the_learning_rate_follows_the_schedule(tiny_cohort, tiny_tokenizer):
    constant = TrainConfig(lr_schedule="constant", warmup_steps=4)
    assert [lr_factor(s, train=constant, total_steps=100) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    cosine = TrainConfig(lr_schedule="cosine", warmup_steps=2)
    factors = [lr_factor(s, train=cosine, total_steps=12) for s in range(13)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert factors[7] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert factors[12] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))  # decreasing after the warm-up

    # a run's optimiser follows it: the lr logged after each epoch is lr * factor(steps done so far)
    train = _small_train(lr_schedule="cosine", warmup_steps=3, max_epochs=3, augment=False)
    result = fit(tiny_cohort, tiny_config(tiny_cohort, tiny_tokenizer), train, progress=False,
                 tokenizer=tiny_tokenizer)
    steps = math.ceil(len(tiny_cohort.ids("train")) / train.batch_size)
    expected = [train.lr * lr_factor(e * steps, train=train, total_steps=3 * steps) for e in (1, 2, 3)]
    assert [h["lr"] for h in result.history] == pytest.approx(expected, abs=1e-12)
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_gradient_clipping_bounds_the_gradient_norm():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the step leaves the gradients to inspect

    def loss():
        return (model(torch.randn(16, 5) * 100) ** 2).mean()

    def grad_norm():
        return float(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()])))

    unclipped = train_step(model, loss(), optimiser, None)
    assert unclipped == pytest.approx(grad_norm(), rel=1e-5) and unclipped > 1.0
    before = train_step(model, loss(), optimiser, 0.5)
    assert before > 1.0  # it needed clipping...
    assert grad_norm() <= 0.5 * (1 + 1e-5)  # ...and was clipped to the bound
    assert grad_norm() == pytest.approx(0.5, rel=1e-4)


def test_bad_train_settings_are_specific_errors():
    with pytest.raises(ValueError, match="train.lr_schedule must be one of constant, cosine, got 'linear'"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="train.num_workers must be >= 0, got -1"):
        TrainConfig(num_workers=-1)
    with pytest.raises(ValueError, match="train.grad_clip must be a positive number or null, got 0"):
        TrainConfig(grad_clip=0)
    with pytest.raises(ValueError, match="train.warmup_steps must be >= 0"):
        TrainConfig(warmup_steps=-2)


class Interrupted(Exception):
    pass


def test_a_run_interrupted_after_an_epoch_resumes_to_the_same_weights(tiny_cohort, tiny_tokenizer, tmp_path):
    """The state written after epoch 1 (model, optimiser, schedule, RNG, best so far, history) carries a new
    process to the weights of a run that was never interrupted. Tolerance: WEIGHTS_ATOL (same ops, same order)."""
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    train = _small_train(max_epochs=3, lr_schedule="cosine", warmup_steps=2, grad_clip=1.0)
    whole = fit(tiny_cohort, config, train, progress=False, tokenizer=tiny_tokenizer,
                state_path=tmp_path / "whole" / STATE_FILE)

    def stop_after_first(epoch: int) -> None:
        if epoch == 1:
            raise Interrupted

    with pytest.raises(Interrupted):
        fit(tiny_cohort, config, train, progress=False, tokenizer=tiny_tokenizer,
            state_path=tmp_path / "cut" / STATE_FILE, after_epoch=stop_after_first)
    assert (tmp_path / "cut" / STATE_FILE).is_file() and not (tmp_path / "cut" / f"{STATE_FILE}.partial").exists()
    # no tokenizer given: the resumed run takes the interrupted run's from the state
    resumed = fit(tiny_cohort, config, train, progress=False, state_path=tmp_path / "cut" / STATE_FILE, resume=True)
    assert resumed.tokenizer.get_vocab() == tiny_tokenizer.get_vocab()
    _weights_close(whole.model, resumed.model)
    assert resumed.best_epoch == whole.best_epoch
    assert len(resumed.history) == 3
    for a, b in zip(whole.history, resumed.history):
        assert {k: v for k, v in a.items() if k != "minutes"} == pytest.approx(
            {k: v for k, v in b.items() if k != "minutes"}, abs=1e-6)

    # what a resumed run may not change, and resuming without a state, are errors that say so
    with pytest.raises(ValueError, match=r"train settings differ .*lr: 0.003 -> 0.01"):
        fit(tiny_cohort, config, _small_train(max_epochs=3, lr=0.01, lr_schedule="cosine", warmup_steps=2,
                                              grad_clip=1.0),
            progress=False, state_path=tmp_path / "cut" / STATE_FILE, resume=True)
    with pytest.raises(ValueError, match="cannot resume: no training state"):
        fit(tiny_cohort, config, train, progress=False, state_path=tmp_path / "none" / STATE_FILE, resume=True)


def test_cli_resume_continues_the_run_in_its_out_folder(tiny_cohort, tiny_tokenizer, tmp_path, capsys):
    """``--resume`` after a run that stopped at epoch 1 trains epoch 2 on its state; the checkpoint loads."""
    model = tiny_config(tiny_cohort, tiny_tokenizer).to_dict()
    model.pop("classes"), model.pop("features")
    experiment = {"model": model, "train": {"lr": 0.003, "batch_size": 8, "max_epochs": 2, "patience": 10,
                                            "augment": True, "grad_clip": 2.0, "seed": 1}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(experiment))
    common = ["--config", str(tmp_path / "tiny.yaml"), "--data", str(tiny_cohort.root), "--quiet"]
    assert train_main(common + ["--out", str(tmp_path / "cut"), "--max-epochs", "1"]) == 0
    first = json.loads((tmp_path / "cut" / "training.json").read_text())["history"]
    vocab = torch.load(tmp_path / "cut" / STATE_FILE, weights_only=False)["tokenizer"].get_vocab()
    assert train_main(common + ["--out", str(tmp_path / "cut"), "--resume"]) == 0
    cut = load_checkpoint(tmp_path / "cut", device="cpu")
    # the CLI fits its own WordPiece vocabulary, which is not deterministic (two fits number some word pieces
    # differently), so the weights of two CLI runs are not compared (the test above does it with one
    # tokenizer); the resumed run kept the interrupted run's vocabulary and its first epoch
    assert cut.tokenizer.get_vocab() == vocab
    resumed = json.loads((tmp_path / "cut" / "training.json").read_text())["history"]
    assert [h["epoch"] for h in resumed] == [1, 2]
    assert {k: v for k, v in resumed[0].items() if k != "minutes"} == {k: v for k, v in first[0].items()
                                                                         if k != "minutes"}
    training = json.loads((tmp_path / "cut" / "training.json").read_text())
    assert training["epochs"] == 2 and training["processes"] == 1
    assert training["mixed_precision"] == "mixed precision: off on CPU"
    assert training["train_config"]["grad_clip"] == 2.0 and training["train_config"]["lr_schedule"] == "constant"
    capsys.readouterr()
    assert train_main(common + ["--out", str(tmp_path / "fresh"), "--resume"]) == 2
    assert "cannot resume: no training state" in capsys.readouterr().err
