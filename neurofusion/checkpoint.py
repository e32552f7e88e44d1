"""Checkpoints as inspectable folders (transformers' save_pretrained / from_pretrained symmetry).

    config.json          ModelConfig: rebuilds the model with nothing else
    model.safetensors    weights and buffers (tabular normalisation statistics included); never pickled
    tokenizer/           the note tokenizer
    normalisation.json   the tabular statistics in readable form (the weights file is authoritative)
    metrics.json         validation/test metrics written by training
    training.json        command, data hash, training config, timings, library versions

``python -m neurofusion.checkpoint DIR`` prints what a checkpoint holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from neurofusion.config import ModelConfig
from neurofusion.data.tokenizer import load_tokenizer
from neurofusion.models.model import MultiModalModel, build_model, tabular_normaliser

FORMAT_VERSION = 1
CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer"
NORMALISATION, METRICS, TRAINING = "normalisation.json", "metrics.json", "training.json"


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded; the message says which file and why."""


@dataclass
class Checkpoint:
    model: MultiModalModel
    tokenizer: PreTrainedTokenizerFast | None
    config: ModelConfig
    path: Path
    device: torch.device
    metrics: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' = CUDA when present, else CPU; asking for CUDA without a GPU is an error, not a silent CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CheckpointError("device 'cuda' was requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return device


def save_checkpoint(
    path: str | Path,
    model: MultiModalModel,
    tokenizer: PreTrainedTokenizerFast | None,
    *,
    metrics: dict | None = None,
    training: dict | None = None,
) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = {"format_version": FORMAT_VERSION, **_portable_config(model).to_dict()}
    (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path / WEIGHTS), metadata={"format": "pt", "architecture": model.config.architecture})
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path / TOKENIZER))
    normaliser = tabular_normaliser(model)
    if normaliser is not None:
        numeric = [f.name for f in model.config.feature_specs if f.kind == "numeric"]
        stats = {
            name: {"mean": float(normaliser.mean[j]), "std": float(normaliser.std[j]),
                   "log_scale": bool(normaliser.log_scale[j])}
            for j, name in enumerate(numeric)
        }
        (path / NORMALISATION).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    for name, content in ((METRICS, metrics), (TRAINING, training)):
        if content is not None:
            (path / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "auto") -> Checkpoint:
    """Rebuild the model from ``config.json`` and load ``model.safetensors`` strictly, in eval mode."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint folder {path} not found")
    for required in (CONFIG, WEIGHTS):
        if not (path / required).is_file():
            raise CheckpointError(f"{path / required} is missing: a checkpoint needs {CONFIG} and {WEIGHTS}")
    try:
        raw = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path / CONFIG} is not valid JSON ({err})") from None
    version = raw.pop("format_version", None)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path / CONFIG}: format_version {version!r} is not {FORMAT_VERSION}")
    try:
        config = ModelConfig.from_dict(raw)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path / CONFIG}: {err}") from None
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path / WEIGHTS} is not a readable safetensors file ({err})") from None
    model = build_model(config)
    _load_state(model, state, path / WEIGHTS)
    tokenizer = load_tokenizer(path / TOKENIZER) if (path / TOKENIZER).is_dir() else None
    if tokenizer is None and "text" in model.encoders:
        raise CheckpointError(f"{path / TOKENIZER} is missing: this model reads notes and needs its tokenizer")
    device = resolve_device(device)
    model.to(device).eval()
    return Checkpoint(model, tokenizer, config, path, device, _read_json(path / METRICS), _read_json(path / TRAINING))


def _portable_config(model: MultiModalModel) -> ModelConfig:
    """The config to save: sizes read back from encoders that came from a local pretrained directory, and
    no ``pretrained`` paths, since the weights file holds the fine-tuned encoders."""
    config = ModelConfig.from_dict(model.config.to_dict())
    if "text" in model.encoders and config.text.pretrained:
        bert = model.encoders["text"].bert.config
        config.text.vocab_size, config.text.hidden_size = bert.vocab_size, bert.hidden_size
        config.text.num_layers, config.text.num_heads = bert.num_hidden_layers, bert.num_attention_heads
        config.text.intermediate_size = bert.intermediate_size
    if "image" in model.encoders and config.image.pretrained:
        resnet = model.encoders["image"].backbone.config
        config.image.embedding_size, config.image.num_channels = resnet.embedding_size, resnet.num_channels
        config.image.hidden_sizes, config.image.depths = list(resnet.hidden_sizes), list(resnet.depths)
        config.image.layer_type = resnet.layer_type
    config.text.pretrained = config.image.pretrained = None
    return config


def _load_state(model: MultiModalModel, state: dict[str, torch.Tensor], where: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
             if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            details.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            details.append(f"{len(wrong)} of the wrong shape (e.g. {wrong[0]}, file vs config)")
        raise CheckpointError(f"{where} does not match {CONFIG}: " + "; ".join(details))
    model.load_state_dict(state, strict=True)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON ({err})") from None


def parameter_counts(model: MultiModalModel) -> dict[str, int]:
    """Parameters per part: each encoder, then everything else (fusion, missing embeddings, heads)."""
    counts = {m: sum(p.numel() for p in enc.parameters()) for m, enc in model.encoders.items()}
    counts["fusion_and_heads"] = sum(p.numel() for p in model.parameters()) - sum(counts.values())
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofusion.checkpoint", description="Describe a checkpoint.")
    parser.add_argument("checkpoint")
    args = parser.parse_args(argv)
    try:
        ckpt = load_checkpoint(args.checkpoint, device="cpu")
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {
        "architecture": ckpt.config.architecture,
        "classes": ckpt.config.classes,
        "parameters": parameter_counts(ckpt.model),
        "metrics": ckpt.metrics,
        "training": {k: ckpt.training.get(k) for k in ("command", "data_hash", "epochs", "minutes")},
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
