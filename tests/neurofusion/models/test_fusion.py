"""Cross-modal fusion layer: attention rows are distributions, learned missing embeddings, paper sizes."""

from __future__ import annotations

import torch

from neurofusion.config import FusionConfig
from neurofusion.models import CrossModalFusion, MissingEmbeddings

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
