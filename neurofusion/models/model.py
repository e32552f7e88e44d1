"""NeuroFusion and its baselines on the same encoders, all returning one structured ``ModelOutput``.

Every model works in two steps so explanations can reuse the expensive part: ``encode(batch)`` runs the
encoders once on the cases that have each modality; ``fuse(encoded, present)`` combines them under any
presence mask that is a subset of the real one (a hidden modality is treated exactly like a missing one).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from neurofusion.config import ModelConfig
from neurofusion.data.dataset import Batch
from neurofusion.data.schema import MODALITIES
from neurofusion.models.encoders import (
    FeatureNormaliser,
    ImageEncoder,
    SignalEncoder,
    TabularEncoder,
    TextEncoder,
)
from neurofusion.models.fusion import BottleneckMLP, CrossModalFusion, MissingEmbeddings
from neurofusion.models.heads import build_heads


@dataclass
class ModelOutput:
    """B = cases. Attention maps are zero for a case that lacks the modality."""

    logits: torch.Tensor  # (B, C)
    probabilities: torch.Tensor  # (B, C)
    present: torch.Tensor  # (B, 4) bool: the presence mask the prediction used
    heads: dict[str, torch.Tensor] = field(default_factory=dict)  # raw output of every head
    cross_attention: torch.Tensor | None = None  # (B, heads, 4, 4), rows = query modality
    modality_tokens: torch.Tensor | None = None  # (B, 4, token_dim)
    spatial_attention: torch.Tensor | None = None  # (B, h, w) over the image's last feature map
    temporal_attention: torch.Tensor | None = None  # (B, T') over the ECG, T' = samples / downsample
    fused: torch.Tensor | None = None  # (B, fused_dim)


@dataclass
class Encoded:
    """Encoder outputs for a batch: ``vectors[m]`` is (B, d_m) with rows of cases lacking m left at zero."""

    vectors: dict[str, torch.Tensor]
    present: torch.Tensor  # (B, 4) bool
    spatial_attention: torch.Tensor | None = None
    temporal_attention: torch.Tensor | None = None

    def repeat(self, times: int) -> "Encoded":
        """Each case ``times`` times in a row (case-major), to fuse many presence masks in one pass."""
        rep = lambda t: None if t is None else t.repeat_interleave(times, dim=0)  # noqa: E731
        return Encoded({m: rep(v) for m, v in self.vectors.items()}, rep(self.present),
                       rep(self.spatial_attention), rep(self.temporal_attention))


class MultiModalModel(nn.Module):
    """Shared machinery: the encoders an architecture uses, run on the present cases only."""

    modalities: tuple[str, ...] = MODALITIES

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        builders = {
            "image": lambda: ImageEncoder(config.image),
            "text": lambda: TextEncoder(config.text),
            "signal": lambda: SignalEncoder(config.signal),
            "tabular": lambda: TabularEncoder(config.tabular, config.feature_specs),
        }
        self.encoders = nn.ModuleDict({m: builders[m]() for m in self.modalities})
        self.dims = {m: getattr(config, m).out_dim for m in self.modalities}

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @property
    def signal_downsample(self) -> int:
        return self.encoders["signal"].downsample if "signal" in self.encoders else 1

    def encode(self, batch: Batch) -> Encoded:
        vectors: dict[str, torch.Tensor] = {}
        maps: dict[str, torch.Tensor] = {}
        for m, encoder in self.encoders.items():
            rows = batch.present[:, MODALITIES.index(m)]
            out = encoder(**_encoder_inputs(m, batch, rows)) if rows.any() else None
            full = torch.zeros(len(rows), self.dims[m], device=batch.present.device)
            vectors[m] = full
            if out is not None:
                full[rows] = out.embedding.to(full.dtype)
                if out.attention is not None:
                    attention = torch.zeros(len(rows), *out.attention.shape[1:], device=full.device)
                    attention[rows] = out.attention.to(attention.dtype)
                    maps[m] = attention
        return Encoded(vectors, batch.present, maps.get("image"), maps.get("signal"))

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        raise NotImplementedError

    def forward(self, batch: Batch, present: torch.Tensor | None = None) -> ModelOutput:
        """``present`` (B, 4) may hide modalities the batch has; it cannot reveal ones it lacks."""
        return self.fuse(self.encode(batch), present)

    def _mask(self, encoded: Encoded, present: torch.Tensor | None) -> torch.Tensor:
        if present is None:
            return encoded.present
        if present.shape != encoded.present.shape:
            raise ValueError(f"present must be {tuple(encoded.present.shape)}, got {tuple(present.shape)}")
        return present.bool() & encoded.present

    def _classify(self, heads: nn.ModuleDict, fused: torch.Tensor, present: torch.Tensor, **extra) -> ModelOutput:
        outputs = {name: head(fused) for name, head in heads.items()}
        logits = outputs[self.config.heads[0].name]
        return ModelOutput(logits=logits, probabilities=torch.softmax(logits, dim=-1), present=present,
                           heads=outputs, fused=fused, **extra)


class NeuroFusion(MultiModalModel):
    """Encoders -> learned missing embeddings -> cross-modal attention fusion -> task heads."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.missing = MissingEmbeddings(self.dims)
        self.fusion = CrossModalFusion(self.dims, config.fusion)
        self.heads = build_heads(config.heads, config.fusion.fused_dim)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        filled = {m: self.missing.fill(m, encoded.vectors[m], mask[:, j]) for j, m in enumerate(MODALITIES)}
        fusion = self.fusion(filled)
        return self._classify(
            self.heads, fusion.fused, mask, cross_attention=fusion.attention, modality_tokens=fusion.tokens,
            spatial_attention=_masked(encoded.spatial_attention, mask[:, 0]),
            temporal_attention=_masked(encoded.temporal_attention, mask[:, 2]),
        )


class MLPFusion(MultiModalModel):
    """Baseline: the same encoders and missing embeddings, concatenated straight into the bottleneck MLP
    (no cross-modal attention)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.missing = MissingEmbeddings(self.dims)
        self.bottleneck = BottleneckMLP(sum(self.dims.values()), config.fusion.fused_dim, config.fusion.dropout)
        self.heads = build_heads(config.heads, config.fusion.fused_dim)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        filled = [self.missing.fill(m, encoded.vectors[m], mask[:, j]) for j, m in enumerate(MODALITIES)]
        return self._classify(self.heads, self.bottleneck(torch.cat(filled, dim=1)), mask)


class SingleModality(MultiModalModel):
    """Baseline: one encoder; a case without that modality gets its missing embedding."""

    def __init__(self, config: ModelConfig) -> None:
        self.modalities = (config.architecture.removesuffix("_only"),)
        super().__init__(config)
        (modality,) = self.modalities
        self.missing = MissingEmbeddings({modality: self.dims[modality]})
        self.bottleneck = BottleneckMLP(self.dims[modality], config.fusion.fused_dim, config.fusion.dropout)
        self.heads = build_heads(config.heads, config.fusion.fused_dim)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        (m,) = self.modalities
        j = MODALITIES.index(m)
        single = torch.zeros_like(mask)
        single[:, j] = mask[:, j]  # the prediction uses only this modality
        vector = self.missing.fill(m, encoded.vectors[m], mask[:, j])
        return self._classify(self.heads, self.bottleneck(vector), single)


class LateFusion(MultiModalModel):
    """Baseline: one classifier per modality; the prediction averages the log-probabilities of the
    modalities present (uniform when none is)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if len(config.heads) != 1:
            raise ValueError("late fusion supports the classification head only")
        n_classes = config.heads[0].num_outputs
        self.classifiers = nn.ModuleDict({
            m: nn.Sequential(BottleneckMLP(d, config.fusion.fused_dim, config.fusion.dropout),
                             nn.Linear(config.fusion.fused_dim, n_classes))
            for m, d in self.dims.items()
        })

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        log_probs = torch.stack(
            [F.log_softmax(self.classifiers[m](encoded.vectors[m]), dim=-1) for m in MODALITIES], dim=1
        )  # (B, 4, C)
        weights = mask.float()
        mean = (log_probs * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1)
        per_modality = {f"{m}_logits": log_probs[:, j] for j, m in enumerate(MODALITIES)}
        logits = torch.log_softmax(mean, dim=-1)
        return ModelOutput(logits=logits, probabilities=logits.exp(), present=mask,
                           heads={self.config.heads[0].name: logits, **per_modality})


class EarlyFusion(MultiModalModel):
    """Baseline: raw inputs concatenated before any modality-specific processing (downsampled image
    pixels, downsampled ECG, normalised labs, note bag-of-words), zeros where missing, then an MLP."""

    modalities = ()
    _IMAGE_SIDE = 32
    _SIGNAL_STEPS = 100

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        specs = config.feature_specs
        numeric = [f for f in specs if f.kind == "numeric"]
        self.categories = [len(f.categories) for f in specs if f.kind == "categorical"]
        self.normaliser = FeatureNormaliser(len(numeric))
        self.vocab_size = config.text.vocab_size
        widths = {
            "image": self._IMAGE_SIDE**2,
            "text": self.vocab_size,
            "signal": len(config.signal.leads) * self._SIGNAL_STEPS,
            "tabular": 2 * len(numeric) + sum(k + 1 for k in self.categories),
        }
        self.raw_dims = widths
        self.mlp = BottleneckMLP(sum(widths.values()), config.fusion.fused_dim, config.fusion.dropout)
        self.heads = build_heads(config.heads, config.fusion.fused_dim)

    def encode(self, batch: Batch) -> Encoded:
        image = F.adaptive_avg_pool2d(batch.image, self._IMAGE_SIDE).flatten(1)
        signal = F.adaptive_avg_pool1d(batch.signal, self._SIGNAL_STEPS).flatten(1)
        ids = batch.tokens["input_ids"]
        counts = torch.zeros(ids.shape[0], self.vocab_size, device=ids.device)
        counts.scatter_add_(1, ids, batch.tokens["attention_mask"].float())
        text = counts / counts.sum(1, keepdim=True).clamp_min(1)
        one_hot = [F.one_hot(batch.categorical[:, j], k + 1).float() for j, k in enumerate(self.categories)]
        tabular = torch.cat([self.normaliser(batch.numeric, batch.numeric_mask), batch.numeric_mask.float(), *one_hot], 1)
        return Encoded({"image": image, "text": text, "signal": signal, "tabular": tabular}, batch.present)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        parts = [encoded.vectors[m] * mask[:, j, None] for j, m in enumerate(MODALITIES)]
        return self._classify(self.heads, self.mlp(torch.cat(parts, dim=1)), mask)


ARCHITECTURE_CLASSES: dict[str, type[MultiModalModel]] = {
    "neurofusion": NeuroFusion,
    "mlp_fusion": MLPFusion,
    "late_fusion": LateFusion,
    "early_fusion": EarlyFusion,
    "image_only": SingleModality,
    "text_only": SingleModality,
    "signal_only": SingleModality,
    "tabular_only": SingleModality,
}


def build_model(config: ModelConfig) -> MultiModalModel:
    """The model an architecture name stands for (registry lookup, as timm's create_model)."""
    return ARCHITECTURE_CLASSES[config.architecture](config)


def tabular_normaliser(model: MultiModalModel) -> FeatureNormaliser | None:
    """The module holding the tabular statistics, wherever the architecture keeps it."""
    if isinstance(model, EarlyFusion):
        return model.normaliser
    if "tabular" in model.encoders:
        return model.encoders["tabular"].normaliser
    return None


def _encoder_inputs(modality: str, batch: Batch, rows: torch.Tensor) -> dict[str, torch.Tensor]:
    if modality == "image":
        return {"image": batch.image[rows]}
    if modality == "text":
        return {"input_ids": batch.tokens["input_ids"][rows], "attention_mask": batch.tokens["attention_mask"][rows]}
    if modality == "signal":
        return {"signal": batch.signal[rows]}
    return {"numeric": batch.numeric[rows], "mask": batch.numeric_mask[rows], "categorical": batch.categorical[rows]}


def _masked(attention: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    if attention is None:
        return None
    return attention * keep.view(-1, *([1] * (attention.dim() - 1))).to(attention.dtype)
