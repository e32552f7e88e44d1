"""Training: loss decreases on a tiny run, modality dropout keeps its promises, the CLI writes a
checkpoint whose metrics the evaluation command reproduces."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from neurofusion.config import TrainConfig
from neurofusion.evaluate import main as evaluate_main
from neurofusion.data import CohortReader
from neurofusion.train import data_hash, fit, main as train_main, modality_dropout
from tests.conftest import tiny_config


def test_tiny_training_run_decreases_the_loss(tiny_cohort, tiny_tokenizer):
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    train = TrainConfig(lr=3e-3, batch_size=16, max_epochs=10, patience=20, seed=0, augment=False,
                        modality_dropout=0.0)
    result = fit(tiny_cohort, config, train, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert len(losses) == 10
    assert losses[-1] < 0.7 * losses[0], losses
    assert 1 <= result.best_epoch <= 10
    assert result.model.config.text.vocab_size == len(result.tokenizer)


def test_modality_dropout_never_empties_a_case_nor_reveals_a_missing_modality():
    rng = np.random.default_rng(0)
    present = torch.from_numpy(rng.random((4000, 4)) < 0.8)
    present[~present.any(1), 0] = True
    kept = modality_dropout(present, 0.3, rng)
    assert kept.any(1).all()
    assert not (kept & ~present).any()
    single = present.sum(1) == 1
    assert torch.equal(kept[single], present[single])  # a lone modality is never hidden
    multi = present.sum(1) >= 3
    hidden = (present & ~kept)[multi].sum() / present[multi].sum()
    assert 0.25 < float(hidden) < 0.32
    assert torch.equal(modality_dropout(present, 0.0, rng), present)


def test_cli_trains_saves_and_evaluation_reproduces_its_metrics(tiny_cohort, tiny_tokenizer, tmp_path, capsys):
    config = tiny_config(tiny_cohort, tiny_tokenizer).to_dict()
    config.pop("classes"), config.pop("features")
    experiment = {"model": config, "train": {"lr": 0.003, "batch_size": 16, "max_epochs": 2, "augment": True}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(experiment))
    out = tmp_path / "ckpt"
    assert train_main(["--config", str(tmp_path / "tiny.yaml"), "--data", str(tiny_cohort.root),
                       "--out", str(out), "--quiet"]) == 0
    training = json.loads((out / "training.json").read_text())
    assert training["epochs"] == 2
    assert training["data_hash"] == data_hash(tiny_cohort, tiny_cohort.ids("train") + tiny_cohort.ids("val"))
    assert training["command"].startswith("python -m neurofusion.train --config")
    metrics = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(out), "--data", str(tiny_cohort.root), "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["n"] == metrics["test"]["n"] == len(tiny_cohort.ids("test"))
    assert evaluated["accuracy"] == metrics["test"]["accuracy"]


def test_cli_reports_bad_config_as_a_message(tiny_cohort, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("train:\n  lr: fast\n")
    assert train_main(["--config", str(tmp_path / "bad.yaml"), "--data", str(tiny_cohort.root),
                       "--out", str(tmp_path / "x")]) == 2
    assert "'config.train.lr' has the wrong type: 'fast' is not float" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("drop", ["image,signal", "text"])
def test_evaluate_with_withheld_modalities(tiny_cohort, tiny_tokenizer, tmp_path, capsys, drop):
    from neurofusion.checkpoint import save_checkpoint
    from neurofusion.inference import Predictor
    from neurofusion.models import build_model

    torch.manual_seed(0)
    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer)).eval()
    save_checkpoint(tmp_path / "c", model, tiny_tokenizer)
    assert evaluate_main(["--checkpoint", str(tmp_path / "c"), "--data", str(tiny_cohort.root),
                          "--split", "train", "--drop", drop, "--json", "--bootstrap", "50"]) == 0
    result = json.loads(capsys.readouterr().out)
    labels, proba = Predictor(model, tiny_tokenizer).predict([tiny_cohort[i] for i in tiny_cohort.ids("train")],
                                                             drop=tuple(drop.split(",")))
    assert result["dropped"] == drop.split(",")
    assert result["accuracy"]["value"] == pytest.approx(float((proba.argmax(1) == labels).mean()))
    assert evaluate_main(["--checkpoint", str(tmp_path / "c"), "--data", str(tiny_cohort.root),
                          "--drop", "ecg"]) == 2
    assert "unknown modality 'ecg'" in capsys.readouterr().err


def test_data_hash_follows_the_training_files_and_nothing_else(tiny_cohort, tmp_path):
    """The hash names the data a checkpoint was trained on: the same files anywhere give the same hash; one
    changed byte in a training case's file changes it; a test case's file does not enter it."""
    copies = [tmp_path / "a", tmp_path / "b"]
    for copy in copies:
        shutil.copytree(tiny_cohort.root, copy)

    def hash_of(root):
        reader = CohortReader(root)
        return data_hash(reader, reader.ids("train") + reader.ids("val"))

    original = hash_of(copies[0])
    assert len(original) == 64 and original == hash_of(copies[1])
    table = CohortReader(copies[1]).table.set_index("case_id")

    def touch(split: str, column: str) -> None:
        rel = next(r for r in table.loc[table["split"] == split, column] if r)
        path = copies[1] / rel
        data = bytearray(path.read_bytes())
        data[-1] ^= 1  # one bit of the last byte
        path.write_bytes(bytes(data))

    touch("test", "note_file")
    touch("test", "image_file")
    assert hash_of(copies[1]) == original
    touch("val", "signal_file")
    changed = hash_of(copies[1])
    assert changed != original
    touch("train", "note_file")
    assert hash_of(copies[1]) not in (original, changed)
