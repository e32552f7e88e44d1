"""Cross-modal fusion layer: attention rows are distributions, learned missing embeddings, paper sizes; the gated
fusion: gates in (0, 2) that start at 1 (the plain fusion), contexts that never read an absent modality."""

from __future__ import annotations

import pytest
import torch

from neurofusion.config import FusionConfig
from neurofusion.models import CrossModalFusion, MissingEmbeddings
from neurofusion.models.fusion import GatedCrossModalFusion

DIMS = {"image": 12, "text": 8, "signal": 6, "tabular": 4}


def test_attention_rows_sum_to_one_per_head():
    fusion = CrossModalFusion(DIMS, FusionConfig(token_dim=8, num_heads=2, fused_dim=10, dropout=0.0)).eval()
    out = fusion({m: torch.randn(5, d) for m, d in DIMS.items()})
    assert out.attention.shape == (5, 2, 4, 4)
    assert torch.allclose(out.attention.sum(-1), torch.ones(5, 2, 4), atol=1e-6)
    assert out.fused.shape == (5, 10) and out.tokens.shape == (5, 4, 8) and out.inputs.shape == (5, 30)


def test_missing_rows_take_the_learned_vector_not_zeros():
    missing = MissingEmbeddings(DIMS)
    vectors = torch.randn(3, 12)
    filled = missing.fill("image", vectors, torch.tensor([True, False, True]))
    assert torch.equal(filled[0], vectors[0]) and torch.equal(filled[2], vectors[2])
    assert torch.equal(filled[1], missing.vectors["image"].detach())
    assert filled[1].abs().sum() > 0


def test_paper_sizes_concatenate_to_3584_and_fuse_to_1024():
    paper = {"image": 2048, "text": 768, "signal": 512, "tabular": 256}
    fusion = CrossModalFusion(paper, FusionConfig())
    assert fusion.bottleneck.skip.in_features == 3584
    assert fusion.bottleneck.skip.out_features == 1024


def _gated(seed: int = 0) -> GatedCrossModalFusion:
    """A gated fusion whose gates are not all 1 (random gate weights instead of the zero initialisation)."""
    torch.manual_seed(seed)
    fusion = GatedCrossModalFusion(DIMS, FusionConfig(token_dim=8, num_heads=2, fused_dim=10, dropout=0.0)).eval()
    with torch.no_grad():
        for layer in fusion.gate.values():
            layer.weight.normal_(0, 0.5)
            layer.bias.normal_(0, 0.5)
    return fusion


def test_gated_fusion_shapes_and_gate_range():
    fusion = _gated()
    present = torch.tensor([[True, True, True, True], [True, False, True, False], [False, False, False, True]])
    out = fusion({m: torch.randn(3, d) for m, d in DIMS.items()}, present)
    assert out.fused.shape == (3, 10) and out.tokens.shape == (3, 4, 8) and out.inputs.shape == (3, 30)
    assert out.attention.shape == (3, 2, 4, 4)
    assert torch.allclose(out.attention.sum(-1), torch.ones(3, 2, 4), atol=1e-6)
    assert {m: tuple(g.shape) for m, g in out.gates.items()} == {m: (3, d) for m, d in DIMS.items()}
    gates = torch.cat(list(out.gates.values()), 1)
    assert (gates > 0).all() and (gates < 2).all() and gates.std() > 0.1  # 2 sigmoid, not constant


def test_an_untrained_gated_fusion_is_the_plain_fusion():
    """Zero-initialised gates are exactly 1: the same weights give NeuroFusion's fused vector."""
    config = FusionConfig(token_dim=8, num_heads=2, fused_dim=10, dropout=0.0)
    torch.manual_seed(3)
    gated = GatedCrossModalFusion(DIMS, config).eval()
    plain = CrossModalFusion(DIMS, config).eval()
    missing = plain.load_state_dict(gated.state_dict(), strict=False)
    assert sorted(missing.unexpected_keys) == sorted(f"gate.{m}.{p}" for m in DIMS for p in ("weight", "bias"))
    embeddings = {m: torch.randn(6, d) for m, d in DIMS.items()}
    present = torch.rand(6, 4) > 0.3
    with torch.no_grad():
        a, b = gated(embeddings, present), plain(embeddings, present)
    assert torch.equal(a.fused, b.fused) and torch.equal(a.attention, b.attention)
    assert all(torch.equal(g, torch.ones_like(g)) for g in a.gates.values()) and b.gates is None


def test_an_absent_modality_is_no_part_of_any_other_gate_context():
    fusion = _gated(1)
    embeddings = {m: torch.randn(4, d) for m, d in DIMS.items()}
    present = torch.tensor([[True, True, False, True]] * 4)  # signal absent
    changed = {**embeddings, "signal": embeddings["signal"] + 5 * torch.randn(4, 6)}
    with torch.no_grad():
        before, after = fusion(embeddings, present), fusion(changed, present)
        revealed = fusion(changed, torch.ones(4, 4, dtype=torch.bool))
    for m in ("image", "text", "tabular"):
        assert torch.equal(before.gates[m], after.gates[m])  # the others' gates never read the absent signal
        assert not torch.allclose(revealed.gates[m], before.gates[m], atol=1e-4)  # but do read it when present
    assert not torch.allclose(before.gates["signal"], after.gates["signal"])  # its own gate reads its own token


def test_the_gated_fusion_needs_the_presence_mask():
    fusion = _gated()
    embeddings = {m: torch.randn(2, d) for m, d in DIMS.items()}
    with pytest.raises(ValueError, match="needs the \\(B, M\\) presence mask"):
        fusion(embeddings)
    with pytest.raises(ValueError, match=r"present must be \(B, M\) = \(2, 4\), got \(2, 3\)"):
        fusion(embeddings, torch.ones(2, 3, dtype=torch.bool))
