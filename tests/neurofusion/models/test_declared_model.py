"""Models on declared modalities: 3 and 5 modalities (RGB image, text, two tabular, signal), forward
shapes, a hidden modality equals a missing one, every baseline, checkpoint round trip; old cardio
configs and the bundled cardio_demo checkpoint load and predict as before."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofusion.checkpoint import load_checkpoint, save_checkpoint
from neurofusion.config import HeadConfig, ModelConfig
from neurofusion.data import CohortReader
from neurofusion.data.modalities import CARDIO_MODALITIES, modalities_to_dicts
from neurofusion.data.tokenizer import train_wordpiece
from neurofusion.inference import Predictor, drop_mask
from neurofusion.models import build_model
from neurofusion.models.model import tabular_normalisers
from tests.neurofusion.declared import TOY_MODALITIES, tiny_encoders, write_toy_cohort

REPO = Path(__file__).resolve().parents[3]
THREE = ("slide", "report", "clinical")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root, _ = write_toy_cohort(tmp_path_factory.mktemp("declared") / "toy", n=16)
    reader = CohortReader(root)
    tokenizer = train_wordpiece([c.value("report") for c in reader if c.value("report")], 200)
    return reader, tokenizer


def _config(reader: CohortReader, tokenizer, names=None, architecture="neurofusion") -> ModelConfig:
    specs = [m for m in reader.modalities if names is None or m.name in names]
    kept = {m.name for m in specs}
    return ModelConfig(
        task="toy", architecture=architecture, classes=list(reader.classes),
        features=[dataclasses.asdict(f) for f in reader.features.values() if f.modality in kept],
        modalities=modalities_to_dicts(specs),
        **tiny_encoders(len(tokenizer)),
        heads=[HeadConfig(num_outputs=len(reader.classes))],
    )


def _model(config: ModelConfig):
    torch.manual_seed(0)
    return build_model(config).eval()


@pytest.mark.parametrize("names", [THREE, None], ids=["3 modalities", "5 modalities"])
def test_forward_shapes_follow_the_declaration(toy, names):
    reader, tokenizer = toy
    model = _model(_config(reader, tokenizer, names))
    m = len(model.names)
    assert m == (3 if names else 5)
    batch = Predictor(model, tokenizer).batch(list(reader))
    with torch.no_grad():
        out = model(batch)
    assert batch.present.shape == out.present.shape == (16, m)
    assert out.cross_attention.shape == (16, 2, m, m) and out.modality_tokens.shape == (16, m, 16)
    assert torch.allclose(out.cross_attention.sum(-1), torch.ones(16, 2, m), atol=1e-5)
    assert model.encoders["slide"].backbone.config.num_channels == 3  # colour image: RGB input
    assert out.spatial_attention is out.attention_maps["slide"]
    slide = batch.present[:, 0]
    assert (out.spatial_attention[~slide] == 0).all() and torch.allclose(
        out.spatial_attention[slide].sum((1, 2)), torch.ones(int(slide.sum())), atol=1e-5)
    if names is None:
        assert out.temporal_attention is out.attention_maps["ecg"]
        assert set(tabular_normalisers(model)) == {"genes", "clinical"}
        assert model.encoders["genes"].embeddings[0].num_embeddings == 3  # wt, mut + missing: its own features


@pytest.mark.parametrize("hidden", ["slide", "genes", "ecg"])
def test_hiding_a_modality_equals_the_case_not_having_it(toy, hidden):
    reader, tokenizer = toy
    model = _model(_config(reader, tokenizer))
    predictor = Predictor(model, tokenizer)
    case = next(c for c in reader if all(c.available.values()))
    mask = drop_mask(predictor.batch([case]).present, [hidden], model.names)
    with torch.no_grad():
        by_mask = model(predictor.batch([case]), present=mask)
        absent = model(predictor.batch([case.with_values(**{hidden: None})]))
    assert torch.equal(by_mask.present, absent.present)
    assert torch.allclose(by_mask.probabilities, absent.probabilities, atol=1e-6)
    with torch.no_grad():
        full = model(predictor.batch([case]))
    assert not torch.allclose(full.logits, by_mask.logits, atol=1e-6)  # the modality mattered


@pytest.mark.parametrize("architecture", ["mlp_fusion", "late_fusion", "early_fusion", "genes_only", "slide_only"])
def test_baselines_over_declared_modalities(toy, architecture):
    reader, tokenizer = toy
    model = _model(_config(reader, tokenizer, architecture=architecture))
    batch = Predictor(model, tokenizer).batch(list(reader))
    with torch.no_grad():
        out = model(batch)
    assert out.probabilities.shape == (16, 2) and out.present.shape == (16, 5)
    assert torch.allclose(out.probabilities.sum(-1), torch.ones(16), atol=1e-5)
    if architecture.endswith("_only"):
        j = model.names.index(architecture.removesuffix("_only"))
        assert out.present[:, [k for k in range(5) if k != j]].sum() == 0
    with pytest.raises(ValueError, match="<modality>_only for a declared modality"):
        _config(reader, tokenizer, architecture="image_only")


def test_checkpoint_round_trip_gives_identical_outputs(toy, tmp_path):
    reader, tokenizer = toy
    model = _model(_config(reader, tokenizer))
    normaliser = tabular_normalisers(model)["clinical"]
    normaliser.mean.fill_(45.0)  # statistics must travel with the weights
    normaliser.std.fill_(5.0)
    save_checkpoint(tmp_path / "ckpt", model, tokenizer)
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert [m["name"] for m in saved["modalities"]] == [m.name for m in TOY_MODALITIES]
    assert json.loads((tmp_path / "ckpt" / "normalisation.json").read_text())["age"]["mean"] == 45.0
    loaded = load_checkpoint(tmp_path / "ckpt", device="cpu")
    assert loaded.model.names == model.names and loaded.config_checked
    cases = list(reader)
    with torch.no_grad():
        before = model(Predictor(model, tokenizer).batch(cases))
        after = loaded.model(Predictor(loaded.model, loaded.tokenizer).batch(cases))
    assert torch.equal(before.logits, after.logits)
    assert torch.equal(before.cross_attention, after.cross_attention)


def test_a_config_without_modalities_is_cardio():
    config = ModelConfig.from_dict({"task": "cardio", "classes": ["a", "b"], "heads": [{"num_outputs": 2}]})
    assert config.modality_specs == CARDIO_MODALITIES
    assert config.input_spec().modalities == CARDIO_MODALITIES
    survival = ModelConfig.from_dict({"task": "cancer", "heads": [{"name": "survival", "kind": "survival",
                                                                   "num_outputs": 12}]})
    assert survival.modality_names == ("histopathology", "genomics", "treatment_notes", "clinical")
    assert survival.outcome == "survival" and survival.input_spec().outcome == "survival"
    with pytest.raises(ValueError, match="primary head"):
        ModelConfig.from_dict({"heads": [{"kind": "regression", "num_outputs": 1}]})
    with pytest.raises(ValueError, match="primary head"):
        ModelConfig.from_dict({"heads": [{"kind": "classification"}, {"name": "b", "kind": "classification"}]})


def test_cardio_checkpoint_config_json_has_no_modalities_and_loads_as_cardio(tmp_path):
    """A cardio checkpoint saved before modalities were declared (config.json without "modalities", features
    without "modality") loads as cardio's four modalities: the bundled demo, stripped back to that format."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from neurofusion.checkpoint import CONFIG_METADATA, WEIGHTS

    def legacy(config: dict) -> dict:
        config.pop("modalities", None)
        for feature in config.get("features", []):
            feature.pop("modality", None)
        return config

    source = tmp_path / "legacy"
    shutil.copytree(REPO / "sample_data" / "checkpoints" / "cardio_demo", source)
    (source / "config.json").write_text(json.dumps(legacy(json.loads((source / "config.json").read_text()))))
    with safe_open(str(source / WEIGHTS), framework="pt") as handle:  # the weights' own copy of the config too
        metadata = dict(handle.metadata())
    metadata[CONFIG_METADATA] = json.dumps(legacy(json.loads(metadata[CONFIG_METADATA])), sort_keys=True)
    save_file(load_file(str(source / WEIGHTS)), str(source / WEIGHTS), metadata=metadata)
    assert "modalities" not in json.loads((source / "config.json").read_text())
    ckpt = load_checkpoint(source, device="cpu")
    assert ckpt.model.names == ("image", "text", "signal", "tabular")
    assert {k.split(".")[1] for k in ckpt.model.state_dict() if k.startswith("encoders.")} == set(ckpt.model.names)
    assert ckpt.ood is not None and ckpt.ood.columns == ckpt.model.names


# Probabilities of the bundled cardio_demo checkpoint on the first 20 test cases of sample_data/cardio, rounded
# to 7 decimals: first computed by the code before modalities were declared (commit e417be5), recomputed when the
# demo was retrained on the interaction cohort (issue 13); a code change that moves them changes predictions.
EXPECTED_IDS = ["CV-00026", "CV-00086", "CV-00090", "CV-00102", "CV-00119", "CV-00123", "CV-00128", "CV-00136",
                "CV-00139", "CV-00155", "CV-00156", "CV-00158", "CV-00166", "CV-00185", "CV-00187", "CV-00216",
                "CV-00224", "CV-00229", "CV-00261", "CV-00265"]
EXPECTED = [
    [0.2211499, 0.0029530, 0.0012119, 0.0012502, 0.7734351],
    [0.2161625, 0.7553380, 0.0217787, 0.0062270, 0.0004940],
    [0.4224247, 0.0395697, 0.0005247, 0.0005663, 0.5369146],
    [0.0002462, 0.0005796, 0.9619467, 0.0363056, 0.0009217],
    [0.1415370, 0.8429414, 0.0014011, 0.0003252, 0.0137952],
    [0.1405439, 0.8544855, 0.0022792, 0.0021005, 0.0005909],
    [0.9850711, 0.0029828, 0.0030466, 0.0026879, 0.0062117],
    [0.9771674, 0.0109449, 0.0011396, 0.0010103, 0.0097377],
    [0.1014678, 0.8946085, 0.0014075, 0.0010489, 0.0014674],
    [0.2257111, 0.0013454, 0.0012269, 0.0026388, 0.7690779],
    [0.0004156, 0.0009651, 0.9897925, 0.0081736, 0.0006533],
    [0.0011008, 0.0005099, 0.9013547, 0.0964267, 0.0006080],
    [0.4873465, 0.1738696, 0.1902529, 0.1081198, 0.0404113],
    [0.1937208, 0.7775437, 0.0102954, 0.0176886, 0.0007516],
    [0.3342450, 0.0012022, 0.0013554, 0.0022793, 0.6609182],
    [0.0343593, 0.9619755, 0.0023294, 0.0006228, 0.0007131],
    [0.0003840, 0.0007436, 0.9916189, 0.0061505, 0.0011031],
    [0.4189928, 0.0014138, 0.0018679, 0.0014751, 0.5762504],
    [0.1880681, 0.8080198, 0.0014200, 0.0008676, 0.0016246],
    [0.0002917, 0.0006394, 0.1576576, 0.8405107, 0.0009006],
]
EXPECTED_WITHOUT_IMAGE_AND_LABS = [  # the first five cases with image and tabular hidden
    [0.4743412, 0.0177882, 0.0035112, 0.0029071, 0.5014524],
    [0.4479587, 0.1911818, 0.2162465, 0.1096362, 0.0349767],
    [0.5436032, 0.2084532, 0.0022676, 0.0027699, 0.2429062],
    [0.0132797, 0.0090388, 0.3560098, 0.6194277, 0.0022439],
    [0.3023517, 0.6829421, 0.0037622, 0.0023060, 0.0086379],
]


def test_cardio_demo_predictions_are_unchanged(tmp_path):
    ckpt = load_checkpoint(REPO / "sample_data" / "checkpoints" / "cardio_demo", device="cpu")
    reader = CohortReader(REPO / "sample_data" / "cardio")
    ids = reader.ids("test")[:20]
    assert ids == EXPECTED_IDS
    cases = [reader[i] for i in ids]
    predictor = Predictor(ckpt.model, ckpt.tokenizer, "cpu")
    _, probabilities = predictor.predict(cases)
    np.testing.assert_allclose(probabilities, np.array(EXPECTED), atol=1e-5, rtol=0)
    _, without = predictor.predict(cases[:5], drop=("image", "tabular"))
    np.testing.assert_allclose(without, np.array(EXPECTED_WITHOUT_IMAGE_AND_LABS), atol=1e-5, rtol=0)
    # a copy re-saved by this code (config.json now lists the modalities) predicts the same
    shutil.copytree(REPO / "sample_data" / "checkpoints" / "cardio_demo", tmp_path / "copy")
    copy = load_checkpoint(tmp_path / "copy", device="cpu")
    save_checkpoint(tmp_path / "copy", copy.model, copy.tokenizer, ood=copy.ood)
    assert [m["name"] for m in json.loads((tmp_path / "copy" / "config.json").read_text())["modalities"]] == list(
        copy.model.names)
    resaved = load_checkpoint(tmp_path / "copy", device="cpu")
    _, again = Predictor(resaved.model, resaved.tokenizer, "cpu").predict(cases)
    np.testing.assert_allclose(again, probabilities, atol=1e-6, rtol=0)
