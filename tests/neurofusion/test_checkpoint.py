"""Checkpoints: save -> load gives identical outputs; every broken checkpoint is a clear error."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from neurofusion.checkpoint import CheckpointError, load_checkpoint, parameter_counts, resolve_device, save_checkpoint
from neurofusion.inference import Predictor
from neurofusion.models import build_model, tabular_normaliser
from tests.conftest import tiny_config


@pytest.fixture
def saved(tiny_cohort, tiny_tokenizer, tmp_path):
    torch.manual_seed(1)
    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer)).eval()
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(30)])
    tabular_normaliser(model).fit(batch.numeric, batch.numeric_mask)
    path = save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer, metrics={"test": {"accuracy": 0.5}},
                           training={"command": "test"})
    return path, model, batch


def test_round_trip_gives_identical_outputs(saved, tiny_cohort):
    path, model, batch = saved
    loaded = load_checkpoint(path, device="cpu")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "metrics.json", "model.safetensors",
                                                       "normalisation.json", "tokenizer", "training.json"]
    again = Predictor(loaded.model, loaded.tokenizer).batch([tiny_cohort[i] for i in range(30)])
    with torch.no_grad():
        before, after = model(batch), loaded.model(again)
    assert torch.equal(batch.tokens["input_ids"], again.tokens["input_ids"])
    assert torch.equal(before.probabilities, after.probabilities)
    assert torch.equal(before.cross_attention, after.cross_attention)
    assert loaded.metrics == {"test": {"accuracy": 0.5}} and loaded.training["command"] == "test"
    stats = json.loads((path / "normalisation.json").read_text())
    assert stats["troponin_ng_l"]["log_scale"] is True  # the fitted statistics travel with the weights
    assert torch.equal(tabular_normaliser(loaded.model).mean, tabular_normaliser(model).mean)
    assert parameter_counts(loaded.model)["total"] == sum(p.numel() for p in model.parameters())


def test_missing_folder_or_files(saved, tmp_path):
    path, _, _ = saved
    with pytest.raises(CheckpointError, match="checkpoint folder .* not found"):
        load_checkpoint(tmp_path / "nowhere")
    for name in ("config.json", "model.safetensors"):
        broken = tmp_path / f"no_{name}"
        shutil.copytree(path, broken)
        (broken / name).unlink()
        with pytest.raises(CheckpointError, match=f"{name} is missing"):
            load_checkpoint(broken)
    shutil.rmtree(path / "tokenizer")
    with pytest.raises(CheckpointError, match="tokenizer is missing: this model reads notes"):
        load_checkpoint(path)


def test_corrupt_weights_and_pickles_are_refused(saved):
    path, _, _ = saved
    (path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)
    torch.save({"a": torch.zeros(1)}, path / "model.safetensors")  # a pickle is never unpickled
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(path)


def test_config_that_does_not_match_the_weights(saved):
    path, _, _ = saved
    config = json.loads((path / "config.json").read_text())
    config["fusion"]["fused_dim"] = 32
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"does not match config.json: .* of the wrong shape \(e.g. "):
        load_checkpoint(path)
    config["fusion"]["fused_dim"] = 24
    config["architecture"] = "mlp_fusion"
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"missing \(e.g. .*unexpected \(e.g. "):
        load_checkpoint(path)


def test_bad_config_json(saved):
    path, _, _ = saved
    (path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(CheckpointError, match="format_version 99 is not 1"):
        load_checkpoint(path)
    (path / "config.json").write_text(json.dumps({"format_version": 1, "fusion": {"fused_dim": "big"}}))
    with pytest.raises(CheckpointError, match="'model.fusion.fused_dim' has the wrong type"):
        load_checkpoint(path)


def test_cuda_without_a_gpu_is_an_error_not_a_silent_cpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(CheckpointError, match="no CUDA GPU is available"):
        resolve_device("cuda")


def test_model_started_from_a_local_pretrained_bert_reloads_without_that_folder(tiny_cohort, tiny_tokenizer, tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=16, num_hidden_layers=3, num_attention_heads=4,
                         intermediate_size=40), add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    config.text.pretrained = str(tmp_path / "bert")  # its own config says 1 layer; the folder has 3
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer)
    shutil.rmtree(tmp_path / "bert")
    loaded = load_checkpoint(tmp_path / "ckpt", device="cpu")
    assert loaded.config.text.num_layers == 3 and loaded.config.text.pretrained is None
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[0]])
    with torch.no_grad():
        assert torch.equal(model(batch).probabilities, loaded.model(batch).probabilities)
