"""NeuroFusion and its baselines on the same encoders, all returning one structured ``ModelOutput``.

Every model works in two steps so explanations can reuse the expensive part: ``encode(batch)`` runs the
encoders once on the cases that have each modality; ``fuse(encoded, present)`` combines them under any
presence mask that is a subset of the real one (a hidden modality is treated exactly like a missing one).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from neurofusion.config import ModelConfig
from neurofusion.data.dataset import Batch
from neurofusion.data.modalities import ModalitySpec, first_of_kind
from neurofusion.models.encoders import (
    FeatureNormaliser,
    ImageEncoder,
    SignalEncoder,
    TabularEncoder,
    TextEncoder,
)
from neurofusion.models.fusion import BottleneckMLP, CrossModalFusion, GatedCrossModalFusion, MissingEmbeddings
from neurofusion.models.heads import SurvivalHead, build_heads


class NotAClassifierError(TypeError):
    """Class logits or probabilities were read from the output of a model whose primary head is not a
    classifier (a survival model): hazards are not class probabilities."""


@dataclass
class ModelOutput:
    """B = cases, M = declared modalities (in declaration order), C = classes, K = survival time bins.
    Attention maps are zero for a case that lacks the modality.

    What the prediction is depends on the primary head (``outcome``):
    - "classification": ``logits`` (B, C) and ``probabilities`` (B, C), their softmax.
    - "survival" (a discrete-time hazard head): ``hazard_logits`` (B, K), one per time bin, and ``survival``
      (B, K), the probability of surviving past the end of each bin, ``S(edges[k + 1])``; the grid is
      ``model.config.survival_bins`` and S at any horizon is ``bins.survival_at(output.survival, horizon)``
      (differentiable). ``logits`` and ``probabilities`` are not defined: reading them raises
      NotAClassifierError, so no consumer takes hazards for class probabilities.
    ``heads`` holds every head's raw output by name (the survival head's hazard logits included).
    """

    logits: InitVar[torch.Tensor | None]  # (B, C)
    probabilities: InitVar[torch.Tensor | None]  # (B, C)
    present: torch.Tensor  # (B, M) bool: the presence mask the prediction used
    heads: dict[str, torch.Tensor] = field(default_factory=dict)  # raw output of every head
    cross_attention: torch.Tensor | None = None  # (B, heads, M, M), rows = query modality
    modality_tokens: torch.Tensor | None = None  # (B, M, token_dim)
    fusion_gates: torch.Tensor | None = None  # (B, M) mean gate of each modality's fused vector, in (0, 2); gated only
    spatial_attention: torch.Tensor | None = None  # (B, h, w) over the first image modality's last feature map
    temporal_attention: torch.Tensor | None = None  # (B, T') over the first signal, T' = samples / downsample
    fused: torch.Tensor | None = None  # (B, fused_dim)
    attention_maps: dict[str, torch.Tensor] = field(default_factory=dict)  # every image / signal modality's map
    hazard_logits: torch.Tensor | None = None  # (B, K) survival models only
    survival: torch.Tensor | None = None  # (B, K) survival models only: S(end of bin k)

    def __post_init__(self, logits: torch.Tensor | None, probabilities: torch.Tensor | None) -> None:
        if self.survival is None and (logits is None or probabilities is None):
            raise ValueError("a classification output needs logits and probabilities (a survival output needs "
                             "survival and hazard_logits)")
        if self.survival is not None and self.hazard_logits is None:
            raise ValueError("a survival output needs its hazard_logits beside the survival curve")
        self._classes = {"logits": logits, "probabilities": probabilities}

    @property
    def outcome(self) -> str:
        """"survival" or "classification": which prediction this output holds."""
        return "classification" if self.survival is None else "survival"


def _class_output(name: str) -> property:
    def get(self: ModelOutput) -> torch.Tensor:
        if self.survival is not None:
            raise NotAClassifierError(
                f"this model's primary head is a survival head: its output has no class {name}. Read "
                f"output.survival (B, K: survival past the end of each time bin, grid model.config.survival_bins) "
                f"or output.hazard_logits (B, K) instead")
        return self._classes[name]

    def set(self: ModelOutput, value: torch.Tensor | None) -> None:
        self._classes[name] = value

    return property(get, set, doc=f"(B, C) class {name}; raises NotAClassifierError for a survival model")


# Set after the dataclass is made, so they replace its InitVar defaults (as Batch's cardio names do).
ModelOutput.logits = _class_output("logits")
ModelOutput.probabilities = _class_output("probabilities")


@dataclass
class Encoded:
    """Encoder outputs for a batch: ``vectors[m]`` is (B, d_m) with rows of cases lacking m left at zero.
    ``maps`` holds each image / signal modality's attention map by name; ``spatial_attention`` and
    ``temporal_attention`` are the first image's and first signal's."""

    vectors: dict[str, torch.Tensor]
    present: torch.Tensor  # (B, M) bool
    spatial_attention: torch.Tensor | None = None
    temporal_attention: torch.Tensor | None = None
    maps: dict[str, torch.Tensor] = field(default_factory=dict)

    def repeat(self, times: int) -> "Encoded":
        """Each case ``times`` times in a row (case-major), to fuse many presence masks in one pass."""
        rep = lambda t: None if t is None else t.repeat_interleave(times, dim=0)  # noqa: E731
        return Encoded({m: rep(v) for m, v in self.vectors.items()}, rep(self.present),
                       rep(self.spatial_attention), rep(self.temporal_attention),
                       {m: rep(v) for m, v in self.maps.items()})


def _image_encoder(config: ModelConfig, spec: ModalitySpec) -> nn.Module:
    return ImageEncoder(config.encoder_config(spec))


def _tabular_encoder(config: ModelConfig, spec: ModalitySpec) -> nn.Module:
    return TabularEncoder(config.tabular, config.input_spec().features_of(spec.name))


# One encoder per declared modality, looked up by its kind (a registry, as timm's create_model).
ENCODERS: dict[str, Callable[[ModelConfig, ModalitySpec], nn.Module]] = {
    "image": _image_encoder,
    "text": lambda config, spec: TextEncoder(config.text),
    "signal": lambda config, spec: SignalEncoder(config.signal),
    "tabular": _tabular_encoder,
}


def encoder_inputs(kind: str, tensors: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """A modality's batch tensors (``Batch.inputs[name]``) -> its encoder's keyword arguments, for ``rows``."""
    if kind == "image":
        return {"image": tensors["image"][rows]}
    if kind == "text":
        return {"input_ids": tensors["input_ids"][rows], "attention_mask": tensors["attention_mask"][rows]}
    if kind == "signal":
        return {"signal": tensors["signal"][rows]}
    return {"numeric": tensors["numeric"][rows], "mask": tensors["numeric_mask"][rows],
            "categorical": tensors["categorical"][rows]}


class MultiModalModel(nn.Module):
    """Shared machinery: the encoders an architecture uses, run on the present cases only.

    ``specs`` are the declared modalities (config.modalities); ``modalities`` the names of those this
    architecture encodes (all of them, one for a single-modality baseline, none for early fusion)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.specs: tuple[ModalitySpec, ...] = config.modality_specs
        self.names: tuple[str, ...] = tuple(s.name for s in self.specs)
        if not hasattr(self, "modalities"):
            self.modalities = self.names
        used = [s for s in self.specs if s.name in self.modalities]
        self.encoders = nn.ModuleDict({s.name: ENCODERS[s.kind](config, s) for s in used})
        self.dims = {s.name: config.encoder_config(s).out_dim for s in used}

    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @property
    def signal_downsample(self) -> int:
        signal = first_of_kind(self.specs, "signal")
        return self.encoders[signal.name].downsample if signal is not None and signal.name in self.encoders else 1

    def kind(self, name: str) -> str:
        return self.specs[self.names.index(name)].kind

    def encode(self, batch: Batch) -> Encoded:
        vectors: dict[str, torch.Tensor] = {}
        maps: dict[str, torch.Tensor] = {}
        for m, encoder in self.encoders.items():
            rows = batch.present[:, self.names.index(m)]
            out = encoder(**encoder_inputs(self.kind(m), batch.inputs[m], rows)) if rows.any() else None
            full = torch.zeros(len(rows), self.dims[m], device=batch.present.device)
            vectors[m] = full
            if out is not None:
                full[rows] = out.embedding.to(full.dtype)
                if out.attention is not None:
                    attention = torch.zeros(len(rows), *out.attention.shape[1:], device=full.device)
                    attention[rows] = out.attention.to(attention.dtype)
                    maps[m] = attention
        image, signal = (first_of_kind(self.specs, k) for k in ("image", "signal"))
        return Encoded(vectors, batch.present, maps.get(image.name) if image else None,
                       maps.get(signal.name) if signal else None, maps)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        raise NotImplementedError

    def forward(self, batch: Batch, present: torch.Tensor | None = None) -> ModelOutput:
        """``present`` (B, M) may hide modalities the batch has; it cannot reveal ones it lacks."""
        return self.fuse(self.encode(batch), present)

    def _mask(self, encoded: Encoded, present: torch.Tensor | None) -> torch.Tensor:
        if present is None:
            return encoded.present
        if present.shape != encoded.present.shape:
            raise ValueError(f"present must be {tuple(encoded.present.shape)}, got {tuple(present.shape)}")
        return present.bool() & encoded.present

    def _maps(self, encoded: Encoded, mask: torch.Tensor) -> dict:
        """The attention-map fields of a ModelOutput, each zeroed for cases whose modality is hidden."""
        maps = dict(encoded.maps)
        for kind, first in (("image", encoded.spatial_attention), ("signal", encoded.temporal_attention)):
            spec = first_of_kind(self.specs, kind)
            if spec is not None and first is not None:
                maps[spec.name] = first  # a caller may have replaced the first map (explain rebuilds Encoded)
        masked = {m: _masked(a, mask[:, self.names.index(m)]) for m, a in maps.items()}
        image, signal = (first_of_kind(self.specs, k) for k in ("image", "signal"))
        return {"attention_maps": masked,
                "spatial_attention": masked.get(image.name) if image else None,
                "temporal_attention": masked.get(signal.name) if signal else None}

    def _classify(self, heads: nn.ModuleDict, fused: torch.Tensor, present: torch.Tensor, **extra) -> ModelOutput:
        """Every head on the fused vector; the primary head's output becomes the prediction: class
        probabilities (softmax), or a survival curve from the hazard logits."""
        outputs = {name: head(fused) for name, head in heads.items()}
        primary = outputs[self.config.heads[0].name]
        if self.config.outcome == "survival":
            return ModelOutput(logits=None, probabilities=None, present=present, heads=outputs, fused=fused,
                               hazard_logits=primary, survival=SurvivalHead.survival_curve(primary), **extra)
        return ModelOutput(logits=primary, probabilities=torch.softmax(primary, dim=-1), present=present,
                           heads=outputs, fused=fused, **extra)


class NeuroFusion(MultiModalModel):
    """Encoders -> learned missing embeddings -> cross-modal attention fusion -> task heads. Subclasses
    change the fusion layer only (``fusion_class``: plain tensors plus the presence mask in, FusionOutput out)."""

    fusion_class: type[CrossModalFusion] = CrossModalFusion

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.missing = MissingEmbeddings(self.dims)
        self.fusion = self.fusion_class(self.dims, config.fusion)
        self.heads = build_heads(config.heads, config.fusion.fused_dim)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        filled = {m: self.missing.fill(m, encoded.vectors[m], mask[:, j]) for j, m in enumerate(self.names)}
        fusion = self.fusion(filled, mask)
        gates = None if fusion.gates is None else torch.stack([fusion.gates[m].mean(1) for m in self.names], 1)
        return self._classify(self.heads, fusion.fused, mask, cross_attention=fusion.attention,
                              modality_tokens=fusion.tokens, fusion_gates=gates, **self._maps(encoded, mask))


class GatedNeuroFusion(NeuroFusion):
    """``neurofusion_gated``: NeuroFusion whose fused per-modality vectors are multiplied by gates read from
    the other present modalities (fusion.GatedCrossModalFusion), so one modality's evidence can be switched
    on or off by another's, as an AND-type finding needs. Same output fields, same missing embeddings."""

    fusion_class = GatedCrossModalFusion


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
        filled = [self.missing.fill(m, encoded.vectors[m], mask[:, j]) for j, m in enumerate(self.names)]
        return self._classify(self.heads, self.bottleneck(torch.cat(filled, dim=1)), mask)


class SingleModality(MultiModalModel):
    """Baseline ``<name>_only``: one declared modality's encoder; a case without it gets its missing
    embedding."""

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
        j = self.names.index(m)
        single = torch.zeros_like(mask)
        single[:, j] = mask[:, j]  # the prediction uses only this modality
        vector = self.missing.fill(m, encoded.vectors[m], mask[:, j])
        return self._classify(self.heads, self.bottleneck(vector), single)


class LateFusion(MultiModalModel):
    """Baseline: one predictor per modality, combined over the modalities present. Classification: the
    mean of their log-probabilities (uniform when none is present). Survival: the mean of their hazard
    logits per time bin (a hazard of one half per bin when none is present), the same averaging in the
    survival head's own scale."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        if len(config.heads) != 1 or config.heads[0].kind not in ("classification", "survival"):
            raise ValueError("late fusion supports one classification or survival head only, got "
                             f"{[h.kind for h in config.heads]}")
        outputs = config.heads[0].num_outputs
        self.classifiers = nn.ModuleDict({
            m: nn.Sequential(BottleneckMLP(d, config.fusion.fused_dim, config.fusion.dropout),
                             nn.Linear(config.fusion.fused_dim, outputs))
            for m, d in self.dims.items()
        })

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        survival = self.config.outcome == "survival"
        per_modality = torch.stack(
            [self._scores(self.classifiers[m](encoded.vectors[m]), survival) for m in self.names], dim=1
        )  # (B, M, C) log-probabilities, or (B, M, K) hazard logits
        weights = mask.float()
        mean = (per_modality * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1)
        name = self.config.heads[0].name
        if survival:
            heads = {name: mean, **{f"{m}_hazard_logits": per_modality[:, j] for j, m in enumerate(self.names)}}
            return ModelOutput(logits=None, probabilities=None, present=mask, heads=heads, hazard_logits=mean,
                               survival=SurvivalHead.survival_curve(mean))
        logits = torch.log_softmax(mean, dim=-1)
        heads = {name: logits, **{f"{m}_logits": per_modality[:, j] for j, m in enumerate(self.names)}}
        return ModelOutput(logits=logits, probabilities=logits.exp(), present=mask, heads=heads)

    @staticmethod
    def _scores(raw: torch.Tensor, survival: bool) -> torch.Tensor:
        return raw if survival else F.log_softmax(raw, dim=-1)


class EarlyFusion(MultiModalModel):
    """Baseline: raw inputs concatenated before any modality-specific processing (downsampled image
    pixels, downsampled signals, normalised tabular values, note bag-of-words), zeros where missing, then
    an MLP."""

    modalities = ()
    _IMAGE_SIDE = 32
    _SIGNAL_STEPS = 100

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        spec = config.input_spec()
        self.vocab_size = config.text.vocab_size
        self.categories: dict[str, list[int]] = {}
        normalisers: dict[str, FeatureNormaliser] = {}
        widths = {}
        for s in self.specs:
            if s.kind == "image":
                widths[s.name] = (3 if s.colour else 1) * self._IMAGE_SIDE**2
            elif s.kind == "text":
                widths[s.name] = self.vocab_size
            elif s.kind == "signal":
                widths[s.name] = len(config.signal.leads) * self._SIGNAL_STEPS
            else:
                features = spec.features_of(s.name)
                numeric = [f for f in features if f.kind == "numeric"]
                self.categories[s.name] = [len(f.categories) for f in features if f.kind == "categorical"]
                normalisers[s.name] = FeatureNormaliser(len(numeric))
                widths[s.name] = 2 * len(numeric) + sum(k + 1 for k in self.categories[s.name])
        # the first tabular modality's statistics keep their cardio name ("normaliser.mean")
        first = first_of_kind(self.specs, "tabular")
        self.normaliser = normalisers.pop(first.name) if first else FeatureNormaliser(0)
        self.extra_normalisers = nn.ModuleDict(normalisers)
        self.raw_dims = widths
        self.mlp = BottleneckMLP(sum(widths.values()), config.fusion.fused_dim, config.fusion.dropout)
        self.heads = build_heads(config.heads, config.fusion.fused_dim)

    def normaliser_of(self, name: str) -> FeatureNormaliser:
        return self.extra_normalisers[name] if name in self.extra_normalisers else self.normaliser

    def encode(self, batch: Batch) -> Encoded:
        vectors = {}
        for s in self.specs:
            tensors = batch.inputs[s.name]
            if s.kind == "image":
                vectors[s.name] = F.adaptive_avg_pool2d(tensors["image"], self._IMAGE_SIDE).flatten(1)
            elif s.kind == "signal":
                vectors[s.name] = F.adaptive_avg_pool1d(tensors["signal"], self._SIGNAL_STEPS).flatten(1)
            elif s.kind == "text":
                ids = tensors["input_ids"]
                counts = torch.zeros(ids.shape[0], self.vocab_size, device=ids.device)
                counts.scatter_add_(1, ids, tensors["attention_mask"].float())
                vectors[s.name] = counts / counts.sum(1, keepdim=True).clamp_min(1)
            else:
                one_hot = [F.one_hot(tensors["categorical"][:, j], k + 1).float()
                           for j, k in enumerate(self.categories[s.name])]
                normalised = self.normaliser_of(s.name)(tensors["numeric"], tensors["numeric_mask"])
                vectors[s.name] = torch.cat([normalised, tensors["numeric_mask"].float(), *one_hot], 1)
        return Encoded(vectors, batch.present)

    def fuse(self, encoded: Encoded, present: torch.Tensor | None = None) -> ModelOutput:
        mask = self._mask(encoded, present)
        parts = [encoded.vectors[m] * mask[:, j, None] for j, m in enumerate(self.names)]
        return self._classify(self.heads, self.mlp(torch.cat(parts, dim=1)), mask)


ARCHITECTURE_CLASSES: dict[str, type[MultiModalModel]] = {
    "neurofusion": NeuroFusion,
    "neurofusion_gated": GatedNeuroFusion,
    "mlp_fusion": MLPFusion,
    "late_fusion": LateFusion,
    "early_fusion": EarlyFusion,
    "image_only": SingleModality,
    "text_only": SingleModality,
    "signal_only": SingleModality,
    "tabular_only": SingleModality,
}


def build_model(config: ModelConfig) -> MultiModalModel:
    """The model an architecture name stands for (registry lookup, as timm's create_model); any
    ``<name>_only`` of a declared modality is the single-modality baseline."""
    if config.architecture.endswith("_only"):
        return SingleModality(config)
    return ARCHITECTURE_CLASSES[config.architecture](config)


def tabular_normalisers(model: MultiModalModel) -> dict[str, FeatureNormaliser]:
    """{tabular modality: the module holding its statistics}, wherever the architecture keeps them."""
    tabular = [s.name for s in model.specs if s.kind == "tabular"]
    if isinstance(model, EarlyFusion):
        return {name: model.normaliser_of(name) for name in tabular}
    return {name: model.encoders[name].normaliser for name in tabular if name in model.encoders}


def tabular_normaliser(model: MultiModalModel) -> FeatureNormaliser | None:
    """The first tabular modality's statistics module (cardio's labs), or None."""
    found = tabular_normalisers(model)
    return next(iter(found.values()), None)


def _masked(attention: torch.Tensor | None, keep: torch.Tensor) -> torch.Tensor | None:
    if attention is None:
        return None
    return attention * keep.view(-1, *([1] * (attention.dim() - 1))).to(attention.dtype)
