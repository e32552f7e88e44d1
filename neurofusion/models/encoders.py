"""The four modality encoders. Each maps its (present cases') inputs to one vector per case and keeps
what the dashboard displays: the image's spatial attention, the ECG's temporal attention."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import BertConfig, BertModel, ResNetConfig, ResNetModel

from neurofusion.config import (
    ImageEncoderConfig,
    SignalEncoderConfig,
    TabularEncoderConfig,
    TextEncoderConfig,
)
from neurofusion.data.features import FeatureSpec


@dataclass
class EncoderOutput:
    embedding: torch.Tensor  # (B, out_dim)
    attention: torch.Tensor | None = None  # image: (B, h, w) spatial; signal: (B, T') temporal


class AttentionPool(nn.Module):
    """Score each position, softmax over positions, weighted sum: (B, N, D) -> (B, D), weights (B, N)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax(self.score(x).squeeze(-1), dim=-1)  # (B, N)
        return torch.einsum("bn,bnd->bd", weights, x), weights


class ImageEncoder(nn.Module):
    """transformers ``ResNetModel`` on a greyscale image + spatial-attention pooling of its last map."""

    def __init__(self, config: ImageEncoderConfig) -> None:
        super().__init__()
        if config.pretrained:
            self.backbone = _load_local(ResNetModel, config.pretrained, "image")
        else:
            self.backbone = ResNetModel(ResNetConfig(
                num_channels=config.num_channels,
                embedding_size=config.embedding_size,
                hidden_sizes=list(config.hidden_sizes),
                depths=list(config.depths),
                layer_type=config.layer_type,
            ))
        self.in_channels = self.backbone.config.num_channels
        out_dim = self.backbone.config.hidden_sizes[-1]
        if out_dim != config.out_dim:
            raise ValueError(f"image encoder: pretrained ResNet gives {out_dim} features, config says {config.out_dim}")
        self.pool = AttentionPool(out_dim)

    def forward(self, image: torch.Tensor) -> EncoderOutput:
        # (B, 1, S, S); an ImageNet ResNet wants 3 channels: repeat the grey image
        x = image.expand(-1, self.in_channels, -1, -1) if self.in_channels != image.shape[1] else image
        feature_map = self.backbone(pixel_values=x).last_hidden_state  # (B, C, h, w)
        b, c, h, w = feature_map.shape
        pooled, weights = self.pool(feature_map.flatten(2).transpose(1, 2))  # (B, h*w, C) -> (B, C)
        return EncoderOutput(pooled, weights.view(b, h, w))


class TextEncoder(nn.Module):
    """transformers ``BertModel``; the note is the [CLS] state of the last layer."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        if config.pretrained:
            self.bert = _load_local(BertModel, config.pretrained, "text", add_pooling_layer=False)
        else:
            self.bert = BertModel(BertConfig(
                vocab_size=config.vocab_size,
                hidden_size=config.hidden_size,
                num_hidden_layers=config.num_layers,
                num_attention_heads=config.num_heads,
                intermediate_size=config.intermediate_size,
                max_position_embeddings=max(512, config.max_length),
                hidden_dropout_prob=config.dropout,
                attention_probs_dropout_prob=config.attention_dropout,
                attn_implementation="sdpa",
            ), add_pooling_layer=False)
        if self.bert.config.hidden_size != config.out_dim:
            raise ValueError(
                f"text encoder: pretrained BERT has hidden size {self.bert.config.hidden_size}, config says {config.out_dim}"
            )
        # Only the [CLS] state of the last layer is used: that layer attends from [CLS] alone (keys and
        # values still from every token), which skips most of its work, forward and backward. Same weights
        # and state-dict keys; the output equals BertModel's last_hidden_state[:, 0] (tested).
        last = self.bert.encoder.layer[-1]
        last.forward = _cls_query_forward.__get__(last)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, inputs_embeds: torch.Tensor | None = None
    ) -> EncoderOutput:
        # (B, N) token ids -> (B, N, H) -> [CLS] (B, H). inputs_embeds lets attribution methods feed
        # interpolated embeddings instead of ids.
        if inputs_embeds is not None:
            states = self.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        else:
            states = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return EncoderOutput(states[:, 0])


def _cls_query_forward(layer: nn.Module, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                       *args, **kwargs) -> torch.Tensor:
    """transformers' BertLayer forward for the first position only: (B, N, H) -> (B, 1, H)."""
    attention = layer.attention.self
    b, n, _ = hidden_states.shape
    heads = lambda x, length: x.view(b, length, -1, attention.attention_head_size).transpose(1, 2)  # noqa: E731
    cls = hidden_states[:, :1]
    if attention_mask is not None and attention_mask.dim() == 4:
        attention_mask = attention_mask[:, :, :1, :]  # the [CLS] query's row (bool keep-mask or additive)
    context = F.scaled_dot_product_attention(
        heads(attention.query(cls), 1), heads(attention.key(hidden_states), n), heads(attention.value(hidden_states), n),
        attn_mask=attention_mask, dropout_p=attention.dropout.p if layer.training else 0.0, scale=attention.scaling)
    attended = layer.attention.output(context.transpose(1, 2).reshape(b, 1, -1), cls)
    return layer.output(layer.intermediate(attended), attended)


class SignalEncoder(nn.Module):
    """Conv1d blocks (each halves time) -> biLSTM -> temporal attention pooling -> Linear."""

    def __init__(self, config: SignalEncoderConfig) -> None:
        super().__init__()
        blocks, channels = [], len(config.leads)
        for out in config.conv_channels:
            blocks += [
                nn.Conv1d(channels, out, config.kernel_size, padding=config.kernel_size // 2),
                nn.BatchNorm1d(out),
                nn.ReLU(),
                nn.MaxPool1d(2),
            ]
            channels = out
        self.conv = nn.Sequential(*blocks)
        self.lstm = nn.LSTM(channels, config.lstm_hidden, batch_first=True, bidirectional=True)
        self.pool = AttentionPool(2 * config.lstm_hidden)
        self.project = nn.Sequential(nn.Linear(2 * config.lstm_hidden, config.out_dim), nn.ReLU())
        self.downsample = 2 ** len(config.conv_channels)  # input samples per attention step

    def forward(self, signal: torch.Tensor) -> EncoderOutput:
        return self.head(self.conv(signal))  # (B, L, T) -> (B, C, T') -> (B, out_dim)

    def head(self, x: torch.Tensor) -> EncoderOutput:
        """Everything after the convolution blocks: (B, C, T') -> the embedding and the temporal attention
        (a method of its own so an attribution path can run the blocks its own way, explain.signal)."""
        with _rnn_differentiable_in_eval(self.lstm):
            states, _ = self.lstm(x.transpose(1, 2))  # (B, T', 2H)
        pooled, weights = self.pool(states)  # (B, 2H), (B, T')
        return EncoderOutput(self.project(pooled), weights)


_CUDNN_SWITCH = threading.Lock()


@contextlib.contextmanager
def _rnn_differentiable_in_eval(rnn: nn.Module) -> Iterator[None]:
    """cuDNN's RNN kernels can only be differentiated in training mode ("cudnn RNN backward can only be
    called in training mode"), yet attribution differentiates the model in eval mode. Where that is about
    to happen (gradients on, module in eval mode) the RNN runs with cuDNN switched off: PyTorch's native
    LSTM, the same function and differentiable in any mode. A no-op for the numbers on a CPU, which has no
    cuDNN. The switch is process-wide, so it is flipped and restored under a lock (two threads interleaving
    their save and restore would leave cuDNN off for good)."""
    if rnn.training or not torch.is_grad_enabled():
        yield
        return
    with _CUDNN_SWITCH:
        enabled = torch.backends.cudnn.enabled
        torch.backends.cudnn.enabled = False
        try:
            yield
        finally:
            torch.backends.cudnn.enabled = enabled


class FeatureNormaliser(nn.Module):
    """Numeric tabular values -> z-scores with training statistics stored as buffers (so they travel with
    the weights); unmeasured values become 0. Strongly right-skewed positive features (troponin, BNP) are
    normalised on a log scale."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.register_buffer("log_scale", torch.zeros(n_features, dtype=torch.bool))

    @torch.no_grad()
    def fit(self, numeric: torch.Tensor, mask: torch.Tensor) -> None:
        """Set the statistics from training values (B, Fn) where measured."""
        for j in range(numeric.shape[1]):
            values = numeric[mask[:, j], j]
            if len(values) < 2:
                continue
            skewed = bool(values.min() >= 0) and float(_skewness(values)) > 2.0
            if skewed:
                values = torch.log1p(values)
            self.log_scale[j] = skewed
            self.mean[j] = values.mean()
            self.std[j] = values.std().clamp_min(1e-6)

    def forward(self, numeric: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scaled = torch.where(self.log_scale, torch.log1p(numeric.clamp_min(0)), numeric)
        return torch.where(mask, (scaled - self.mean) / self.std, torch.zeros_like(numeric))


class TabularEncoder(nn.Module):
    """Normalised numeric values + explicit measured-masks + categorical embeddings (index 0 = missing)
    -> MLP."""

    def __init__(self, config: TabularEncoderConfig, features: tuple[FeatureSpec, ...]) -> None:
        super().__init__()
        numeric = [f for f in features if f.kind == "numeric"]
        categorical = [f for f in features if f.kind == "categorical"]
        self.normaliser = FeatureNormaliser(len(numeric))
        self.embeddings = nn.ModuleList(
            nn.Embedding(len(f.categories) + 1, config.category_dim, padding_idx=0) for f in categorical
        )
        width = 2 * len(numeric) + config.category_dim * len(categorical)
        layers: list[nn.Module] = []
        for hidden in config.hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(config.dropout)]
            width = hidden
        layers += [nn.Linear(width, config.out_dim), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, mask: torch.Tensor, categorical: torch.Tensor) -> EncoderOutput:
        parts = [self.normaliser(numeric, mask), mask.float()]  # (B, Fn) each
        parts += [emb(categorical[:, j]) for j, emb in enumerate(self.embeddings)]  # (B, category_dim) each
        return EncoderOutput(self.mlp(torch.cat(parts, dim=1)))


SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")  # one file, or the index of a sharded set


def _load_local(cls, path: str, modality: str, **kwargs):
    """A transformers model from a local directory only: never a hub download, and only safetensors
    weights. A pickled ``pytorch_model.bin`` can run arbitrary code when it is loaded, so it is refused
    before anything reads it."""
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{modality} encoder: pretrained directory {path} not found (only local folders are used)")
    if not any((folder / name).is_file() for name in SAFE_WEIGHTS):
        found = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl"))
        seen = (f"it has {', '.join(found)}, pickled weights that are never loaded" if found
                else "it has no weights file")
        raise ValueError(
            f"{modality} encoder: pretrained directory {path} has no model.safetensors ({seen}); "
            f"save the {cls.__name__} there with save_pretrained(..., safe_serialization=True) "
            "or convert its weights to model.safetensors"
        )
    try:
        return cls.from_pretrained(path, local_files_only=True, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as err:
        raise ValueError(f"{modality} encoder: cannot load {cls.__name__} from {path} ({err})") from None


def _skewness(values: torch.Tensor) -> torch.Tensor:
    centred = values - values.mean()
    return (centred**3).mean() / centred.pow(2).mean().clamp_min(1e-12) ** 1.5
