"""Cross-modal attention fusion on plain tensors plus a presence mask (the layer; the model wraps it).

Per declared modality m (M of them, in declaration order) with encoder output h_m (dim d_m): a missing
modality's h_m is its learned "missing" embedding, never zeros. Token t_m = LayerNorm(W_m h_m); multi-head
attention lets each token attend to all M; u_m = h_m + U_m(z_m) adds the attended context back in the encoder's
own space; the concatenation of the u_m (sum of d_m; 2048+768+512+256 = 3584 in the paper) goes through a
bottleneck MLP with a residual projection, dropout and layer norm to the fused vector (1024 in the paper).

:class:`GatedCrossModalFusion` (architecture ``neurofusion_gated``) adds multiplicative context gating after the
attention block: u_m <- g_m * u_m before the concatenation (see its docstring for why there).
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
    gates: dict[str, torch.Tensor] | None = None  # {m: (B, d_m)} in (0, 2), gated fusion only


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

    def forward(self, embeddings: dict[str, torch.Tensor], present: torch.Tensor | None = None) -> FusionOutput:
        """embeddings: {modality: (B, d_m)}, missing rows already replaced by the missing embedding; present:
        (B, M) bool in declaration order. This fusion sees absence only through the missing embeddings (it
        ignores ``present``); the gated one also keeps absent modalities out of every gate's context."""
        tokens = torch.stack([self.to_token[m](embeddings[m]) for m in self.names], dim=1)  # (B, M, d)
        tokens = tokens + self.modality_embedding
        attended, weights = self.attention(tokens, tokens, tokens, need_weights=True, average_attn_weights=False)
        mixed = self.attention_norm(tokens + attended)  # (B, M, d)
        enriched = [embeddings[m] + self.from_token[m](mixed[:, j]) for j, m in enumerate(self.names)]
        enriched, gates = self._gate(enriched, tokens, present)
        inputs = torch.cat(enriched, dim=1)  # (B, sum d_m)
        return FusionOutput(self.bottleneck(inputs), weights, mixed, inputs, gates)

    def _gate(self, enriched: list[torch.Tensor], tokens: torch.Tensor,
              present: torch.Tensor | None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor] | None]:
        """The per-modality vectors as they enter the bottleneck: unchanged here (no gates)."""
        return enriched, None


class GatedCrossModalFusion(CrossModalFusion):
    """Cross-modal attention fusion plus multiplicative context gating (``neurofusion_gated``).

    Each modality's enriched vector u_m (B, d_m) is multiplied, per dimension, by a gate computed from its own
    token and the other *present* modalities' tokens (before attention, t = LayerNorm(W h) + modality
    embedding):

        c_m = mean of t_k over k != m with k present       (0 when no other modality is present)
        g_m = 2 sigmoid(G_m [t_m ; c_m])                    (B, d_m), in (0, 2)
        u_m <- g_m * u_m

    Why: attention mixes tokens with convex weights, and the bottleneck then adds the modalities' vectors up in
    its first layer, so the only place where one modality can switch another's evidence on or off is the
    bottleneck's ReLU. An AND-type finding (a troponin rise counts only with ischaemic ECG changes) is a product
    of two modalities' evidence; the gate makes that product explicit: g_m near 0 removes modality m's evidence,
    and the gate reads the other modalities. Why after attention: the attention block, its weights (the
    ``cross_attention`` the explainers show) and the tokens are computed exactly as in NeuroFusion, and the gate
    acts on what the bottleneck reads, residual path included, so a closed gate really closes. Why the
    context is masked rather than the missing embedding: an absent modality carries no evidence that could
    open or close another's gate (its own vector is still its learned missing embedding, gated by the others).
    Why 2 sigmoid with a zero-initialised G: every gate starts at exactly 1, so the untrained gated model is
    NeuroFusion, and training moves away from it only where a product of modalities helps.
    """

    def __init__(self, dims: dict[str, int], config: FusionConfig) -> None:
        super().__init__(dims, config)
        d = config.token_dim
        self.gate = nn.ModuleDict({m: nn.Linear(2 * d, dim) for m, dim in dims.items()})
        for layer in self.gate.values():
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _gate(self, enriched: list[torch.Tensor], tokens: torch.Tensor,
              present: torch.Tensor | None) -> tuple[list[torch.Tensor], dict[str, torch.Tensor]]:
        batch, modalities = tokens.shape[:2]
        if present is None:
            raise ValueError("the gated fusion needs the (B, M) presence mask to build each gate's context; "
                             "got present=None")
        if present.shape != (batch, modalities):
            raise ValueError(f"present must be (B, M) = ({batch}, {modalities}), got {tuple(present.shape)}")
        weights = present.to(tokens.dtype)  # (B, M)
        others = weights[:, None, :] * (1 - torch.eye(modalities, dtype=tokens.dtype, device=tokens.device))
        context = others @ tokens / others.sum(-1, keepdim=True).clamp_min(1)  # (B, M, M) @ (B, M, d) -> (B, M, d)
        gates = {m: 2 * torch.sigmoid(self.gate[m](torch.cat([tokens[:, j], context[:, j]], dim=1)))
                 for j, m in enumerate(self.names)}  # (B, 2d) -> (B, d_m)
        return [gates[m] * u for m, u in zip(self.names, enriched)], gates
