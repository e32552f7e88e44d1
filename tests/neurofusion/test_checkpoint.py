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
    from safetensors.torch import load_file, save_file

    path, _, _ = saved
    config = json.loads((path / "config.json").read_text())
    config["fusion"]["fused_dim"] = 32
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="fusion.fused_dim is 32 in config.json but 24 in the weights"):
        load_checkpoint(path)
    # weights saved before they carried their config: the tensor shapes are still checked
    weights = str(path / "model.safetensors")
    save_file(load_file(weights), weights, metadata={"format": "pt"})
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


def _edit_config(path, edit) -> None:
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize("edit, field, ours, theirs", [
    (lambda c: c["classes"].reverse(), "classes", "['valvular_disease', ", "['normal', "),
    (lambda c: c["signal"].update(fs=100.0), "signal.fs", "100.0", "50.0"),
    (lambda c: c["features"][0].update(name="age_years"), "features[0].name", "'age_years'", "'age'"),
    (lambda c: c["features"].pop(), "features", "[{", "[{"),
    (lambda c: c["image"].update(image_size=64), "image.image_size", "64", "32"),
])
def test_config_json_edited_after_training_is_refused(saved, edit, field, ours, theirs):
    """These edits keep every weight's shape, so without the config stored in the weights they loaded and
    predicted silently wrong (two classes swapped took the demo from 0.895 to 0.500 accuracy)."""
    path, _, _ = saved
    _edit_config(path, edit)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path, device="cpu")
    message = str(error.value)
    assert message.startswith(f"{path / 'config.json'} does not match the config {path / 'model.safetensors'}")
    detail = message.split(": ", 1)[1]
    assert detail.startswith(f"{field} is {ours}") and f"in config.json but {theirs}" in detail


def test_a_harmless_round_trip_of_config_json_still_loads(saved):
    path, _, _ = saved
    _edit_config(path, lambda c: None)  # same values, other formatting
    assert load_checkpoint(path, device="cpu").config_checked


def test_older_weights_without_a_config_load_with_a_warning_until_bound(saved, capsys):
    from safetensors.torch import load_file, save_file

    from neurofusion.checkpoint import bind_config, main

    path, model, batch = saved
    weights = path / "model.safetensors"
    tensors = load_file(str(weights))
    save_file(tensors, str(weights), metadata={"format": "pt", "architecture": "neurofusion"})  # as saved before
    _edit_config(path, lambda c: c["classes"].reverse())  # cannot be caught without the stored config
    old = load_checkpoint(path, device="cpu")
    assert not old.config_checked and len(old.warnings) == 1
    assert "holds no copy of the config it was trained with" in old.warnings[0] and "--bind-config" in old.warnings[0]
    assert main([str(path)]) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "cannot be checked" in captured.err
    summary = json.loads(captured.out)
    assert summary["config_checked_against_weights"] is False and summary["warnings"] == old.warnings

    _edit_config(path, lambda c: c["classes"].reverse())  # back to the classes it was trained with
    assert main([str(path), "--bind-config"]) == 0
    assert json.loads(capsys.readouterr().out)["config_checked_against_weights"] is True
    bound = load_checkpoint(path, device="cpu")
    assert bound.config_checked and bound.warnings == []
    again = load_file(str(weights))
    assert again.keys() == tensors.keys() and all(torch.equal(again[k], tensors[k]) for k in tensors)
    with torch.no_grad():
        assert torch.equal(bound.model(batch).probabilities, model(batch).probabilities)
    _edit_config(path, lambda c: c["signal"].update(fs=250.0))
    with pytest.raises(CheckpointError, match="signal.fs is 250.0 in config.json but 50.0 in the weights"):
        bind_config(path)  # a bound checkpoint cannot be re-bound to an edited config


def test_ood_reference_travels_with_the_weights_it_was_fitted_to(saved, tmp_path):
    import numpy as np

    from neurofusion.ood import OOD_FILE, OODReference, fit_modality, weights_fingerprint

    path, model, _ = saved
    rng = np.random.default_rng(0)
    reference = OODReference({"image": fit_modality(rng.normal(size=(60, 16)), rng.normal(size=(30, 16)))}, 0.99,
                             weights_fingerprint(model.state_dict()))
    save_checkpoint(path, model, load_checkpoint(path).tokenizer, ood=reference)
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.ood is not None
    assert loaded.ood.modalities["image"].threshold == reference.modalities["image"].threshold
    # other weights with the old reference file: ignored, with a warning saying how to refit
    keep = (path / OOD_FILE).read_bytes()
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    save_checkpoint(path, model, loaded.tokenizer)
    assert not (path / OOD_FILE).exists()  # saving new weights drops the stale reference
    (path / OOD_FILE).write_bytes(keep)
    stale = load_checkpoint(path, device="cpu")
    assert stale.ood is None and "was fitted to other weights" in stale.warnings[0]
    assert "python -m neurofusion.ood fit" in stale.warnings[0]
    with pytest.raises(CheckpointError, match="fitted to other weights"):
        save_checkpoint(path, model, loaded.tokenizer, ood=reference)


def test_demo_checkpoint_is_bound_to_its_config():
    from pathlib import Path

    demo = Path(__file__).resolve().parents[2] / "sample_data" / "checkpoints" / "cardio_demo"
    loaded = load_checkpoint(demo, device="cpu")
    assert loaded.config_checked and loaded.warnings == [] and loaded.ood is not None
