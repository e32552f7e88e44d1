"""Configs: the shipped YAML files load, round-trip through JSON, and typos are errors naming the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neurofusion.config import ExperimentConfig, ModelConfig, load_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name", ["cardio_demo.yaml", "cardio_paper.yaml", "cancer_demo.yaml"])
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
        ("model:\n  task: cancer\n  heads:\n    - {kind: survival, num_outputs: 3, bins: {edges: [0, 60, 120]}}\n",
         r"num_outputs=3 but its bins \[0.0, 60.0, 120.0\] make 2 time bins"),
        ("model:\n  task: cancer\n  heads:\n    - {kind: survival, num_outputs: 2, bins: {edges: [0, 24, 48]}}\n",
         "its bins end at 48 months, before the horizon 60"),
        ("model:\n  task: cancer\n  heads:\n    - {kind: survival, num_outputs: 1, bins: {edges: [0, 5], unit: years}}\n",
         "counts time in years but task 'cancer' records it in months"),
        ("model:\n  heads:\n    - {kind: classification, bins: {edges: [0, 12]}}\n", "bins are for survival heads only"),
        ("model:\n  heads:\n    - {kind: survival, num_outputs: 2, bins: {edges: [0, 60, 50]}}\n", "strictly increasing"),
    ],
)
def test_bad_configs_name_what_is_wrong(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_experiment(tmp_path / "c.yaml")


def test_defaults_are_the_paper_training_settings():
    train = ExperimentConfig().train
    assert (train.lr, train.batch_size) == (1e-4, 32)


def test_cancer_demo_declares_its_survival_grid():
    model = load_experiment(CONFIGS / "cancer_demo.yaml").model
    assert model.outcome == "survival" and model.horizon == 60.0
    assert model.survival_bins.edges == tuple(float(m) for m in range(0, 121, 12))
    assert 60.0 in model.survival_bins.edges  # the 5-year horizon is a bin edge, not interpolated
    assert [m["name"] for m in model.modalities] == ["histopathology", "genomics", "treatment_notes", "clinical"]


def test_a_survival_head_without_bins_gets_the_documented_default():
    config = ModelConfig.from_dict({"task": "cancer", "heads": [{"name": "s", "kind": "survival", "num_outputs": 8}]})
    assert config.heads[0].bins == {"edges": [15.0 * k for k in range(9)], "unit": "months"}
    again = ModelConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.survival_bins.num_bins == 8
    old = ModelConfig.from_dict({"classes": ["a", "b"], "heads": [{"num_outputs": 2}]})  # a config.json of before
    assert old.heads[0].bins is None and old.outcome == "classification"
    with pytest.raises(ValueError, match="no survival time grid"):
        old.survival_bins


def test_the_gated_architecture_is_registered_and_round_trips():
    experiment = load_experiment(CONFIGS / "cancer_demo.yaml")
    data = experiment.model.to_dict() | {"architecture": "neurofusion_gated"}
    config = ModelConfig.from_dict(json.loads(json.dumps(data)))
    assert config.architecture == "neurofusion_gated" and config.modality_names == experiment.model.modality_names
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="neurofusion, mlp_fusion, early_fusion, late_fusion, neurofusion_gated or"):
        ModelConfig.from_dict({"architecture": "neurofusion_gate"})
