"""NeuroFusion and baselines: shapes under every missing-modality pattern, missing = learned embedding,
hidden modality = absent modality, encode-once / fuse-many equivalence; the gated NeuroFusion: starts as
NeuroFusion, ignores absent inputs, trains end to end, round-trips through a checkpoint, explains exactly, and fits
a cross-modal XOR that late fusion cannot."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from explain.importance import modality_importance
from neurofusion.checkpoint import load_checkpoint, save_checkpoint
from neurofusion.config import ARCHITECTURES, HeadConfig, load_experiment
from neurofusion.inference import Predictor
from neurofusion.models import NotAClassifierError, build_model, tabular_normaliser
from neurofusion.models.model import Encoded, GatedNeuroFusion
from neurofusion.survival import survival_curve
from tests.conftest import tiny_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
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
            if architecture in ("neurofusion", "neurofusion_gated"):
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

def _gated_model(cohort, tokenizer, seed: int = 0) -> GatedNeuroFusion:
    """A tiny gated NeuroFusion whose gates are not all 1 (random gate weights, as after training)."""
    model = _model(cohort, tokenizer, "neurofusion_gated")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.fusion.gate.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model


def test_an_untrained_gated_neurofusion_is_neurofusion(tiny_cohort, tiny_tokenizer):
    gated = _model(tiny_cohort, tiny_tokenizer, "neurofusion_gated")
    plain = _model(tiny_cohort, tiny_tokenizer)
    assert isinstance(gated, GatedNeuroFusion)
    keys = plain.load_state_dict(gated.state_dict(), strict=False)
    assert not keys.missing_keys and all(k.startswith("fusion.gate.") for k in keys.unexpected_keys)
    batch = Predictor(plain, tiny_tokenizer).batch([tiny_cohort[i] for i in range(10)])
    with torch.no_grad():
        a, b = gated(batch), plain(batch)
    torch.testing.assert_close(a.probabilities, b.probabilities, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.cross_attention, b.cross_attention, atol=1e-6, rtol=0)
    assert b.fusion_gates is None  # NeuroFusion has no gates


def test_gated_neurofusion_never_reads_an_absent_modality(tiny_cohort, tiny_tokenizer):
    model = _gated_model(tiny_cohort, tiny_tokenizer)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(20)])
    signal = model.names.index("signal")
    with torch.no_grad():
        encoded = model.encode(batch)
        before = model.fuse(encoded)
        hidden = batch.present.clone()
        hidden[:, signal] = False  # every case without its ECG
        without = model.fuse(encoded, hidden)
        ecg = encoded.vectors["signal"]
        vectors = dict(encoded.vectors, signal=ecg + 3 * torch.randn_like(ecg))
        changed = model.fuse(Encoded(vectors, encoded.present), hidden)  # a different ECG, still hidden
        revealed = model.fuse(Encoded(vectors, encoded.present))
    assert torch.equal(without.probabilities, changed.probabilities)
    assert torch.equal(without.fusion_gates, changed.fusion_gates)
    assert before.fusion_gates.shape == (20, 4) and ((before.fusion_gates > 0) & (before.fusion_gates < 2)).all()
    has_signal = batch.present[:, signal]
    assert has_signal.any()
    assert not torch.allclose(revealed.probabilities[has_signal], before.probabilities[has_signal], atol=1e-4)


def test_gradients_reach_every_part_of_gated_neurofusion(tiny_cohort, tiny_tokenizer):
    model = _gated_model(tiny_cohort, tiny_tokenizer).train()
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(12)])
    F.cross_entropy(model(batch).logits, batch.labels).backward()
    norm = lambda module: sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None)  # noqa: E731
    for name, module in [*model.fusion.gate.items(), ("attention", model.fusion.attention),
                         ("bottleneck", model.fusion.bottleneck), *model.encoders.items()]:
        assert norm(module) > 0, f"no gradient reaches {name}"
    absent = [m for j, m in enumerate(model.names) if not batch.present[:, j].all()]
    assert absent and all(model.missing.vectors[m].grad.abs().sum() > 0 for m in absent)


def test_gated_neurofusion_round_trips_through_a_checkpoint(tiny_cohort, tiny_tokenizer, tmp_path):
    model = _gated_model(tiny_cohort, tiny_tokenizer, seed=2)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(16)])
    tabular_normaliser(model).fit(batch.numeric, batch.numeric_mask)
    loaded = load_checkpoint(save_checkpoint(tmp_path / "gated", model, tiny_tokenizer), device="cpu")
    assert loaded.config.architecture == "neurofusion_gated" and isinstance(loaded.model, GatedNeuroFusion)
    again = Predictor(loaded.model, loaded.tokenizer).batch([tiny_cohort[i] for i in range(16)])
    with torch.no_grad():
        before, after = model(batch), loaded.model(again)
    torch.testing.assert_close(after.probabilities, before.probabilities, atol=1e-6, rtol=0)
    torch.testing.assert_close(after.cross_attention, before.cross_attention, atol=1e-6, rtol=0)
    torch.testing.assert_close(loaded.model.fusion.gate["signal"].weight, model.fusion.gate["signal"].weight)


def test_shapley_values_of_gated_neurofusion_add_up_to_the_prediction_difference(tiny_cohort, tiny_tokenizer):
    model = _gated_model(tiny_cohort, tiny_tokenizer)
    batch = Predictor(model, tiny_tokenizer).batch([tiny_cohort[i] for i in range(12)])
    result = modality_importance(model, batch)
    np.testing.assert_allclose(result.shapley.sum(1), result.probability_full - result.probability_none, atol=1e-6)
    assert (result.shapley[~result.present] == 0).all()
    with torch.no_grad():
        full = model(batch).probabilities.double().numpy()
    np.testing.assert_allclose(result.probability_full, full[np.arange(12), result.target], atol=1e-6)
    assert result.cross_attention.shape == (12, 4, 4)


def _xor_task(dims: dict[str, int], n: int, seed: int) -> tuple[Encoded, torch.Tensor]:
    """Encoder outputs in which each modality carries one number x_m (along a constant direction, plus a
    little noise); the label is 1 when exactly one of x_signal > 0 and x_tabular > 0 holds (a cross-modal XOR),
    else 0. No function of one modality at a time tells the classes apart."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, len(dims), generator=generator)
    vectors = {m: 3 * x[:, j:j + 1] / d**0.5 + 0.1 * torch.randn(n, d, generator=generator)
               for j, (m, d) in enumerate(dims.items())}
    names = list(dims)
    label = (x[:, names.index("signal")] > 0) ^ (x[:, names.index("tabular")] > 0)
    return Encoded(vectors, torch.ones(n, len(dims), dtype=torch.bool)), label.long()


def _fit_xor(cohort, tokenizer, architecture: str) -> tuple[float, float]:
    """Train ``architecture``'s fusion and heads (300 full-batch Adam steps on 256 cases) on the XOR task ->
    (held-out cross-entropy, held-out accuracy) on 512 other cases."""
    model = _model(cohort, tokenizer, architecture).train()
    train, labels = _xor_task(model.dims, 256, seed=0)
    test, test_labels = _xor_task(model.dims, 512, seed=1)
    optimiser = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("encoders.")], lr=1e-2)
    for _ in range(300):
        optimiser.zero_grad()
        F.cross_entropy(model.fuse(train).logits, labels).backward()
        optimiser.step()
    with torch.no_grad():
        logits = model.eval().fuse(test).logits
    return F.cross_entropy(logits, test_labels).item(), (logits.argmax(1) == test_labels).float().mean().item()


def test_gated_neurofusion_fits_a_cross_modal_xor_that_late_fusion_cannot(tiny_cohort, tiny_tokenizer):
    """Measured (init seeds 0-4): gated held-out loss 0.21-0.39, accuracy 0.953-0.971; late fusion, a sum over
    modalities, stays at chance (accuracy 0.504-0.523, loss 2.4-4.4 from memorising the training noise)."""
    gated_loss, gated_accuracy = _fit_xor(tiny_cohort, tiny_tokenizer, "neurofusion_gated")
    late_loss, late_accuracy = _fit_xor(tiny_cohort, tiny_tokenizer, "late_fusion")
    assert gated_loss < 0.5 and gated_accuracy > 0.93
    assert late_accuracy < 0.6 and late_loss > 0.69  # no better than guessing (log 2 = 0.693)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")  # the shipped configs list no features
@pytest.mark.parametrize("name, outcome", [("cancer_demo", "survival"), ("icu_demo", "classification")])
def test_gated_neurofusion_over_the_declared_modalities_of_other_tasks(name, outcome):
    config = load_experiment(CONFIGS / f"{name}.yaml").model
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(config, architecture="neurofusion_gated")).eval()
    assert model.names == config.modality_names and set(model.fusion.gate) == set(config.modality_names)
    present = torch.tensor([[1, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]], dtype=torch.bool)
    encoded = Encoded({m: torch.randn(3, d) for m, d in model.dims.items()}, present)
    with torch.no_grad():
        out = model.fuse(encoded)
        swapped = dict(encoded.vectors, **{model.names[1]: torch.randn(3, model.dims[model.names[1]])})
        again = model.fuse(Encoded(swapped, present))  # cases 0 and 2 lack the second modality
    assert out.outcome == outcome and out.cross_attention.shape == (3, config.fusion.num_heads, 4, 4)
    assert out.fusion_gates.shape == (3, 4) and torch.equal(out.fusion_gates, torch.ones(3, 4))  # untrained: all 1
    scores = out.hazard_logits if outcome == "survival" else out.logits
    rescored = again.hazard_logits if outcome == "survival" else again.logits
    assert torch.equal(scores[[0, 2]], rescored[[0, 2]]) and not torch.allclose(scores[1], rescored[1])
