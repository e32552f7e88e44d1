"""NeuroFusion and baselines: shapes under every missing-modality pattern, missing = learned embedding,
hidden modality = absent modality, encode-once / fuse-many equivalence."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from neurofusion.config import ARCHITECTURES, HeadConfig
from neurofusion.inference import Predictor
from neurofusion.models import NotAClassifierError, build_model
from neurofusion.survival import survival_curve
from tests.conftest import tiny_config

SUBSETS = [s for k in range(1, 5) for s in itertools.combinations(range(4), k)]


def _model(cohort, tokenizer, architecture="neurofusion", **kw):
    torch.manual_seed(0)
    return build_model(tiny_config(cohort, tokenizer, architecture, **kw)).eval()


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_under_every_presence_subset(tiny_cohort, tiny_tokenizer, architecture):
    model = _model(tiny_cohort, tiny_tokenizer, architecture)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(10)])
    with torch.no_grad():
        for subset in SUBSETS:  # all but one missing, ..., complete
            mask = torch.zeros(10, 4, dtype=torch.bool)
            mask[:, list(subset)] = True
            out = model(batch, present=mask)
            assert out.logits.shape == (10, 5)
            assert torch.allclose(out.probabilities.sum(-1), torch.ones(10), atol=1e-5)
            assert not (out.present & ~batch.present).any()  # never reveals what the case lacks
            if architecture == "neurofusion":
                assert out.cross_attention.shape == (10, 2, 4, 4)
                assert torch.allclose(out.cross_attention.sum(-1), torch.ones(10, 2, 4), atol=1e-5)


def test_structured_output_of_neurofusion(tiny_batch):
    model, batch = tiny_batch
    with torch.no_grad():
        out = model(batch)
    assert out.spatial_attention.shape == (12, 4, 4)  # 32 px: /4 in the stem, /2 in the second stage
    assert out.temporal_attention.shape == (12, 200 // model.signal_downsample)
    assert out.modality_tokens.shape == (12, 4, 16) and out.fused.shape == (12, 24)
    has_image = batch.present[:, 0]
    assert torch.allclose(out.spatial_attention[has_image].sum((1, 2)), torch.ones(int(has_image.sum())), atol=1e-5)
    assert (out.spatial_attention[~has_image] == 0).all()


def test_hiding_a_modality_equals_the_case_not_having_it(tiny_cohort, tiny_tokenizer):
    model = _model(tiny_cohort, tiny_tokenizer)
    predictor = Predictor(model, tiny_tokenizer)
    case = next(c for c in tiny_cohort if all(c.available.values()))
    without = dataclasses.replace(case, signal=None)
    with torch.no_grad():
        hidden = model(predictor.batch([case]), present=torch.tensor([[True, True, False, True]]))
        absent = model(predictor.batch([without]))
        zeros = predictor.batch([case])
        zeros.signal.zero_()  # "missing as zeros" is NOT what the model does
        zeroed = model(zeros)
    assert torch.allclose(hidden.probabilities, absent.probabilities, atol=1e-6)
    assert not torch.allclose(zeroed.probabilities, absent.probabilities, atol=1e-4)


def test_missing_modality_uses_its_learned_embedding(tiny_cohort, tiny_tokenizer):
    model = _model(tiny_cohort, tiny_tokenizer)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(20)])
    lacks_image = ~batch.present[:, 0]
    assert lacks_image.any() and (~lacks_image).any()
    with torch.no_grad():
        before = model(batch).probabilities
        model.missing.vectors["image"].add_(1.0)
        after = model(batch).probabilities
    changed = (before - after).abs().sum(-1) > 1e-6
    assert changed[lacks_image].all() and not changed[~lacks_image].any()


def test_absent_inputs_are_never_read(tiny_batch):
    model, batch = tiny_batch
    with torch.no_grad():
        before = model(batch).probabilities
        absent = ~batch.present[:, 0]
        batch.image[absent] = torch.rand_like(batch.image[absent])  # garbage in the empty slots
        after = model(batch).probabilities
    assert torch.equal(before, after)


def test_encode_once_fuse_many_equals_separate_forwards(tiny_batch):
    model, batch = tiny_batch
    masks = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        encoded = model.encode(batch).repeat(len(masks))
        together = model.fuse(encoded, masks.repeat(len(batch.case_ids), 1)).probabilities.view(12, 3, -1)
        for k, mask in enumerate(masks):
            alone = model(batch, present=mask.expand(12, 4)).probabilities
            assert torch.allclose(together[:, k], alone, atol=1e-6)


def test_single_modality_model_reads_only_its_modality(tiny_cohort, tiny_tokenizer):
    model = _model(tiny_cohort, tiny_tokenizer, "signal_only")
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(8)])
    assert list(model.encoders) == ["signal"]
    with torch.no_grad():
        before = model(batch).probabilities
        batch.image.uniform_()
        batch.numeric.normal_()
        assert torch.equal(before, model(batch).probabilities)
        assert (model(batch).present[:, [0, 1, 3]] == 0).all()


def test_late_fusion_with_one_modality_is_that_modality_classifier(tiny_cohort, tiny_tokenizer):
    model = _model(tiny_cohort, tiny_tokenizer, "late_fusion")
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(8)])
    only_text = torch.tensor([[False, True, False, False]]).expand(8, 4) & batch.present
    with torch.no_grad():
        out = model(batch, present=only_text)
        encoded = model.encode(batch)
        expected = torch.softmax(model.classifiers["text"](encoded.vectors["text"]), -1)
    rows = only_text[:, 1]
    assert torch.allclose(out.probabilities[rows], expected[rows], atol=1e-5)


def test_extra_heads_come_out_by_name(tiny_cohort, tiny_tokenizer):
    heads = [HeadConfig(num_outputs=5), HeadConfig("risk", "survival", 4, 0.5)]
    model = _model(tiny_cohort, tiny_tokenizer, heads=heads)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[0], tiny_cohort[1]])
    with torch.no_grad():
        out = model(batch)
    assert set(out.heads) == {"diagnosis", "risk"} and out.heads["risk"].shape == (2, 4)
    # each head reads the one fused vector; the prediction is the first (classification) head's
    with torch.no_grad():
        torch.testing.assert_close(out.heads["risk"], model.heads["risk"](out.fused))
        torch.testing.assert_close(out.logits, model.heads["diagnosis"](out.fused))
    torch.testing.assert_close(out.probabilities, torch.softmax(out.heads["diagnosis"], -1))
    assert not torch.allclose(out.heads["risk"][0], out.heads["risk"][1])  # per case, not a constant


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_survival_primary_head_gives_curves_not_class_probabilities(tiny_cohort, tiny_tokenizer, architecture):
    heads = [HeadConfig("survival", "survival", 6, bins={"edges": [0, 12, 24, 36, 60, 90, 120]})]
    model = _model(tiny_cohort, tiny_tokenizer, architecture, heads=heads)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(6)])
    with torch.no_grad():
        out = model(batch)
    assert out.outcome == "survival" and out.survival.shape == (6, 6)
    torch.testing.assert_close(out.hazard_logits, out.heads["survival"])
    np.testing.assert_allclose(out.survival.numpy(), survival_curve(out.hazard_logits.numpy()), atol=1e-6)
    assert ((out.survival > 0) & (out.survival < 1)).all() and (out.survival.diff(dim=1) <= 0).all()
    with pytest.raises(NotAClassifierError, match="output.survival"):
        out.probabilities
    assert model.config.survival_bins.survival_at(out.survival, 60.0).shape == (6,)  # S(5 years) per case


def test_late_fusion_survival_averages_the_hazard_logits_of_the_modalities_present(tiny_cohort, tiny_tokenizer):
    heads = [HeadConfig("survival", "survival", 6, bins={"edges": [0, 12, 24, 36, 60, 90, 120]})]
    model = _model(tiny_cohort, tiny_tokenizer, "late_fusion", heads=heads)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(4)])
    with torch.no_grad():
        out = model(batch)
        only_text = model(batch, present=torch.tensor([[m == "text" for m in model.names]] * 4) & batch.present)
    per = torch.stack([out.heads[f"{m}_hazard_logits"] for m in model.names], dim=1)  # (B, M, K)
    weights = out.present.float()[..., None]
    torch.testing.assert_close(out.hazard_logits, (per * weights).sum(1) / weights.sum(1).clamp_min(1))
    has_text = batch.present[:, model.names.index("text")]
    torch.testing.assert_close(only_text.hazard_logits[has_text], out.heads["text_hazard_logits"][has_text])


def test_late_fusion_refuses_auxiliary_heads(tiny_cohort, tiny_tokenizer):
    with pytest.raises(ValueError, match="one classification or survival head only"):
        _model(tiny_cohort, tiny_tokenizer, "late_fusion", heads=[HeadConfig(num_outputs=5),
                                                                  HeadConfig("size", "regression", 1)])