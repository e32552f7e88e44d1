"""Cross-modal attention fusion on plain tensors plus a presence mask (the layer; the model wraps it).

Per declared modality m (M of them, in declaration order) with encoder output h_m (dim d_m): a missing
modality's h_m is its learned "missing" embedding, never zeros. Token t_m = LayerNorm(W_m h_m); multi-head
attention lets each token attend to all M; u_m = h_m + U_m(z_m) adds the attended context back in the encoder's own space; the concatenation of
the u_m (sum of d_m; 2048+768+512+256 = 3584 in the paper) goes through a bottleneck MLP with a residual
projection, dropout and layer norm to the fused vector (1024 in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from neurofusion.config import FusionConfig


@dataclass
class FusionOutput:
    fused: torch.Tensor  # (B, fused_dim)
    attention: torch.Tensor  # (B, heads, M, M): rows = query modality, columns = key modality
    tokens: torch.Tensor  # (B, M, token_dim) after attention
    inputs: torch.Tensor  # (B, sum d_m): the concatenated per-modality vectors fed to the bottleneck


class MissingEmbeddings(nn.Module):
    """One learned vector per modality standing in for it when it is absent."""

    def __init__(self, dims: dict[str, int]) -> None:
        super().__init__()
        self.vectors = nn.ParameterDict({m: nn.Parameter(torch.randn(d) * 0.02) for m, d in dims.items()})

    def fill(self, modality: str, vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, d) encoder outputs + (B,) presence -> (B, d) with absent rows replaced by the learned vector."""
        missing = self.vectors[modality].to(vectors.dtype)
        return torch.where(present[:, None], vectors, missing.expand_as(vectors))


class BottleneckMLP(nn.Module):
    """in_dim -> fused_dim: two layers with ReLU and dropout, a linear residual path, layer norm."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(out_dim, out_dim)
        )
        self.skip = nn.Linear(in_dim, out_dim)
        self.norm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.skip(x) + self.dropout(self.body(x)))


class CrossModalFusion(nn.Module):
    """Cross-modal attention over the modalities of ``dims`` ({name: d_m}, in declaration order)."""

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__()
        if not dims:
            raise ValueError("fusion needs at least one modality")
        self.names = tuple(dims)
        d = config.token_dim
        self.to_token = nn.ModuleDict({m: nn.Sequential(nn.Linear(dim, d), nn.LayerNorm(d)) for m, dim in dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(dims), d) * 0.02)  # which modality a token is
        self.attention = nn.MultiheadAttention(d, config.num_heads, dropout=config.dropout, batch_first=True)
        self.attention_norm = nn.LayerNorm(d)
        self.from_token = nn.ModuleDict({m: nn.Linear(d, dim) for m, dim in dims.items()})
        self.bottleneck = BottleneckMLP(sum(dims.values()), config.fused_dim, config.dropout)

    def forward(self, embeddings: dict[str, torch.Tensor]) -> FusionOutput:
        """embeddings: {modality: (B, d_m)}, missing rows already replaced by the missing embedding."""
        tokens = torch.stack([self.to_token[m](embeddings[m]) for m in self.names], dim=1)  # (B, M, d)
        tokens = tokens + self.modality_embedding
        attended, weights = self.attention(tokens, tokens, tokens, need_weights=True, average_attn_weights=False)
        tokens = self.attention_norm(tokens + attended)  # (B, M, d)
        enriched = [embeddings[m] + self.from_token[m](tokens[:, j]) for j, m in enumerate(self.names)]
        inputs = torch.cat(enriched, dim=1)  # (B, sum d_m)
        return FusionOutput(self.bottleneck(inputs), weights, tokens, inputs)
