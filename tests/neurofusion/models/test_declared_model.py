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
    source = REPO / "sample_data" / "checkpoints" / "cardio_demo"
    assert "modalities" not in json.loads((source / "config.json").read_text())
    ckpt = load_checkpoint(source, device="cpu")
    assert ckpt.model.names == ("image", "text", "signal", "tabular")
    assert {k.split(".")[1] for k in ckpt.model.state_dict() if k.startswith("encoders.")} == set(ckpt.model.names)
    assert ckpt.ood is not None and ckpt.ood.columns == ckpt.model.names


# Probabilities of the bundled cardio_demo checkpoint on the first 20 test cases of sample_data/cardio,
# computed by the code before modalities were declared (commit e417be5), rounded to 7 decimals.
EXPECTED_IDS = ["CV-00026", "CV-00086", "CV-00090", "CV-00102", "CV-00119", "CV-00123", "CV-00128", "CV-00136",
                "CV-00139", "CV-00155", "CV-00156", "CV-00158", "CV-00166", "CV-00185", "CV-00187", "CV-00216",
                "CV-00224", "CV-00229", "CV-00261", "CV-00265"]
EXPECTED = [
    [0.9907890, 0.0046850, 0.0012137, 0.0019323, 0.0013800],
    [0.0009209, 0.9969257, 0.0012317, 0.0007936, 0.0001281],
    [0.0004891, 0.0059375, 0.0003587, 0.0001646, 0.9930501],
    [0.0003156, 0.0081050, 0.9907923, 0.0001403, 0.0006469],
    [0.0004288, 0.9968303, 0.0002896, 0.0005062, 0.0019451],
    [0.0005101, 0.9971821, 0.0014011, 0.0003204, 0.0005864],
    [0.9891462, 0.0020086, 0.0009576, 0.0010664, 0.0068212],
    [0.9698492, 0.0195923, 0.0004849, 0.0080659, 0.0020077],
    [0.9920471, 0.0005220, 0.0004997, 0.0012486, 0.0056827],
    [0.0007868, 0.0007339, 0.0002218, 0.0002303, 0.9980271],
    [0.0000914, 0.0009904, 0.9983695, 0.0003479, 0.0002007],
    [0.0006232, 0.0003682, 0.9979503, 0.0009527, 0.0001056],
    [0.6979226, 0.0675920, 0.1090320, 0.0665715, 0.0588818],
    [0.5089170, 0.4778958, 0.0057718, 0.0069093, 0.0005061],
    [0.0001755, 0.0010855, 0.0014940, 0.0003066, 0.9969385],
    [0.0057547, 0.9916475, 0.0001175, 0.0019762, 0.0005040],
    [0.0001328, 0.0010662, 0.9981861, 0.0001500, 0.0004650],
    [0.0026802, 0.0006775, 0.0003522, 0.0001702, 0.9961200],
    [0.0254109, 0.9712266, 0.0023065, 0.0003936, 0.0006624],
    [0.0003530, 0.0003116, 0.0011794, 0.9977811, 0.0003750],
]
EXPECTED_WITHOUT_IMAGE_AND_LABS = [  # the first five cases with image and tabular hidden
    [0.9316850, 0.0197118, 0.0219765, 0.0091435, 0.0174830],
    [0.0027484, 0.9702517, 0.0219212, 0.0034128, 0.0016657],
    [0.0122459, 0.1258160, 0.0074475, 0.0002749, 0.8542157],
    [0.5325416, 0.3717698, 0.0544431, 0.0064591, 0.0347864],
    [0.0004149, 0.9821456, 0.0106939, 0.0003795, 0.0063661],
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
