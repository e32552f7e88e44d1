"""Configs: the shipped YAML files load, round-trip through JSON, and typos are errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofusion.config import ExperimentConfig, ModelConfig, load_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["cardio_demo.yaml", "cardio_paper.yaml"])
def test_shipped_configs_load_and_round_trip(name):
    experiment = load_experiment(CONFIGS / name)
    data = json.loads(json.dumps(experiment.model.to_dict()))
    assert ModelConfig.from_dict(data) == experiment.model


def test_paper_config_has_the_published_widths():
    model = load_experiment(CONFIGS / "cardio_paper.yaml").model
    dims = [model.image.out_dim, model.text.out_dim, model.signal.out_dim, model.tabular.out_dim]
    assert dims == [2048, 768, 512, 256] and sum(dims) == 3584
    assert model.fusion.fused_dim == 1024
    assert load_experiment(CONFIGS / "cardio_paper.yaml").train.lr == 1e-4


@pytest.mark.parametrize(
    "text, message",
    [
        ("model:\n  image:\n    image_sise: 64\n", r"unknown key\(s\) in 'config.model.image': image_sise"),
        ("train:\n  batch_size: 3.5\n", "'config.train.batch_size' has the wrong type: 3.5 is not int"),
        ("model:\n  architecture: transformer\n", "'config.model': architecture must be one of"),
        ("model:\n  heads:\n    - kind: regression\n", "the first head must be the"),
        ("- just a list\n", "expected a mapping"),
        ("model: [\n", "not valid YAML"),
    ],
)
def test_bad_configs_name_what_is_wrong(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_experiment(tmp_path / "c.yaml")


def test_defaults_are_the_paper_training_settings():
    train = ExperimentConfig().train
    assert (train.lr, train.batch_size) == (1e-4, 32)
