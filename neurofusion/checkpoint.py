"""Checkpoints as inspectable folders (transformers' save_pretrained / from_pretrained symmetry).

    config.json          ModelConfig: rebuilds the model with nothing else
    model.safetensors    weights and buffers (tabular normalisation statistics included); never pickled. Its
                         metadata holds the config the weights were trained with, so an edited config.json
                         (classes reordered, another signal rate, other features) is refused on load
    ood.safetensors      optional: per-modality out-of-distribution reference (neurofusion.ood)
    tokenizer/           the note tokenizer
    normalisation.json   the tabular statistics in readable form (the weights file is authoritative)
    metrics.json         validation/test metrics written by training
    training.json        command, data hash, training config, timings, library versions

``python -m neurofusion.checkpoint DIR`` prints what a checkpoint holds.

A checkpoint saved before the weights carried their config (no ``neurofusion.config`` metadata) still
loads, with a warning recorded in ``Checkpoint.warnings`` and printed by the command line: its config.json
cannot be checked. ``python -m neurofusion.checkpoint DIR --bind-config`` stores config.json in the weights'
metadata (same tensors), for a config.json known to be the one the weights were trained with.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformers import PreTrainedTokenizerFast

from neurofusion.config import ModelConfig
from neurofusion.data.tokenizer import load_tokenizer
from neurofusion.data.modalities import first_of_kind
from neurofusion.models.model import MultiModalModel, build_model, tabular_normalisers
from neurofusion.ood import OOD_FILE, OODError, OODReference, read_ood, weights_fingerprint, write_ood

FORMAT_VERSION = 1
CONFIG, WEIGHTS, TOKENIZER = "config.json", "model.safetensors", "tokenizer"
NORMALISATION, METRICS, TRAINING = "normalisation.json", "metrics.json", "training.json"
CONFIG_METADATA = "neurofusion.config"  # key of the config copy in the weights file's metadata


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
    ood: OODReference | None = None  # per-modality out-of-distribution reference, when fitted
    warnings: list[str] = field(default_factory=list)  # what could not be checked on loading
    config_checked: bool = True  # False: an older weights file without its config; config.json is trusted


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
    ood: OODReference | None = None,
) -> Path:
    """Write the folder. An ``ood`` reference must have been fitted to this model's weights; without one,
    a reference left from earlier weights in the folder is removed."""
    path = Path(path)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if ood is not None and ood.weights_fingerprint != weights_fingerprint(state):
        raise CheckpointError("the out-of-distribution reference was fitted to other weights than the model's")
    path.mkdir(parents=True, exist_ok=True)
    portable = _portable_config(model)
    config = {"format_version": FORMAT_VERSION, **portable.to_dict()}
    (path / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(state, str(path / WEIGHTS), metadata=_weights_metadata(portable))
    if ood is not None:
        write_ood(ood, path / OOD_FILE)
    elif (path / OOD_FILE).exists():
        (path / OOD_FILE).unlink()
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path / TOKENIZER))
    normalisers = tabular_normalisers(model)
    if normalisers:
        spec = model.config.input_spec()
        stats = {}
        for modality, normaliser in normalisers.items():  # feature names are unique across tabular modalities
            numeric = [f.name for f in spec.features_of(modality) if f.kind == "numeric"]
            stats.update({
                name: {"mean": float(normaliser.mean[j]), "std": float(normaliser.std[j]),
                       "log_scale": bool(normaliser.log_scale[j])}
                for j, name in enumerate(numeric)
            })
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
        metadata = _read_metadata(path / WEIGHTS)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path / WEIGHTS} is not a readable safetensors file ({err})") from None
    warnings = _check_config(config, metadata, path)
    model = build_model(config)
    _load_state(model, state, path / WEIGHTS)
    tokenizer = load_tokenizer(path / TOKENIZER) if (path / TOKENIZER).is_dir() else None
    if tokenizer is None and any(model.kind(m) == "text" for m in model.encoders):
        raise CheckpointError(f"{path / TOKENIZER} is missing: this model reads notes and needs its tokenizer")
    ood, ood_warning = _load_ood(path, state)
    device = resolve_device(device)
    model.to(device).eval()
    return Checkpoint(model, tokenizer, config, path, device, _read_json(path / METRICS), _read_json(path / TRAINING),
                      ood, warnings + ood_warning, config_checked=not warnings)


def bind_config(path: str | Path) -> Path:
    """Store config.json in the metadata of a checkpoint's weights file that has none (an older checkpoint),
    tensors unchanged. Only for a config.json known to be the one the weights were trained with: from then
    on any edit to it is refused on loading."""
    path = Path(path)
    checkpoint = load_checkpoint(path, device="cpu")
    metadata = _read_metadata(path / WEIGHTS)
    if CONFIG_METADATA in metadata:
        return path  # already bound, and load_checkpoint has checked that config.json agrees
    state = load_file(str(path / WEIGHTS))
    save_file(state, str(path / WEIGHTS), metadata={**metadata, **_weights_metadata(checkpoint.config)})
    return path


def _weights_metadata(config: ModelConfig) -> dict[str, str]:
    return {"format": "pt", "architecture": config.architecture,
            CONFIG_METADATA: json.dumps(config.to_dict(), sort_keys=True)}


def _read_metadata(weights: Path) -> dict[str, str]:
    with safe_open(str(weights), framework="pt") as handle:
        return dict(handle.metadata() or {})


def _check_config(config: ModelConfig, metadata: dict[str, str], path: Path) -> list[str]:
    """Refuse a config.json that differs from the config stored with the weights (CheckpointError naming
    the field and both values); an older weights file without one gives a warning instead."""
    stored = metadata.get(CONFIG_METADATA)
    if stored is None:
        return [f"{path / WEIGHTS} holds no copy of the config it was trained with (saved by an older version): "
                f"{CONFIG} cannot be checked against the weights, so reordered classes or a changed input "
                f"setting would go unnoticed. If {CONFIG} is right, run "
                f"'python -m neurofusion.checkpoint {path} --bind-config' once."]
    try:
        trained = ModelConfig.from_dict(json.loads(stored)).to_dict()
    except (json.JSONDecodeError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path / WEIGHTS}: the config stored in its metadata is unreadable ({err})") from None
    differences = _differences(config.to_dict(), trained)
    if differences:
        shown = "; ".join(f"{name} is {ours!r} in {CONFIG} but {theirs!r} in the weights"
                          for name, ours, theirs in differences[:3])
        more = f" (and {len(differences) - 3} more)" if len(differences) > 3 else ""
        raise CheckpointError(f"{path / CONFIG} does not match the config {path / WEIGHTS} was trained with: "
                              f"{shown}{more}. Restore {CONFIG} (the weights' copy is authoritative).")
    return []


def _differences(ours, theirs, where: str = "") -> list[tuple[str, object, object]]:
    """(field, value in config.json, value stored with the weights) for every field that differs; lists of
    equal length are compared item by item so a feature's changed unit names that feature."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in list(ours) + [k for k in theirs if k not in ours]:
            name = f"{where}.{key}" if where else key
            found += _differences(ours.get(key), theirs.get(key), name)
        return found
    if (isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs)
            and any(isinstance(x, (dict, list)) for x in ours)):
        return [d for i, (a, b) in enumerate(zip(ours, theirs)) for d in _differences(a, b, f"{where}[{i}]")]
    return [] if ours == theirs else [(where, ours, theirs)]


def _load_ood(path: Path, state: dict[str, torch.Tensor]) -> tuple[OODReference | None, list[str]]:
    """The folder's out-of-distribution reference; one fitted to other weights is ignored with a warning."""
    if not (path / OOD_FILE).is_file():
        return None, []
    try:
        ood = read_ood(path / OOD_FILE)
    except OODError as err:
        raise CheckpointError(str(err)) from None
    if ood.weights_fingerprint != weights_fingerprint(state):
        return None, [f"{path / OOD_FILE} was fitted to other weights than {path / WEIGHTS} and is ignored: "
                      f"no input is checked against the training data until it is refitted with "
                      f"'python -m neurofusion.ood fit --checkpoint {path} --data COHORT'"]
    return ood, []


def _portable_config(model: MultiModalModel) -> ModelConfig:
    """The config to save: sizes read back from encoders that came from a local pretrained directory, and
    no ``pretrained`` paths, since the weights file holds the fine-tuned encoders."""
    config = ModelConfig.from_dict(model.config.to_dict())
    encoded = [s for s in model.specs if s.name in model.encoders]
    text = first_of_kind(encoded, "text")
    # every image modality shares one ResNet layout; a grey one's channel count is the shared config's
    image = first_of_kind([s for s in encoded if not s.colour], "image") or first_of_kind(encoded, "image")
    if text is not None and config.text.pretrained:
        bert = model.encoders[text.name].bert.config
        config.text.vocab_size, config.text.hidden_size = bert.vocab_size, bert.hidden_size
        config.text.num_layers, config.text.num_heads = bert.num_hidden_layers, bert.num_attention_heads
        config.text.intermediate_size = bert.intermediate_size
    if image is not None and config.image.pretrained:
        resnet = model.encoders[image.name].backbone.config
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
    parser.add_argument("--bind-config", action="store_true",
                        help="store config.json in the weights' metadata (older checkpoints; tensors unchanged)")
    args = parser.parse_args(argv)
    try:
        if args.bind_config:
            bind_config(args.checkpoint)
        ckpt = load_checkpoint(args.checkpoint, device="cpu")
    except CheckpointError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = {
        "architecture": ckpt.config.architecture,
        "outcome": ckpt.config.outcome,
        "classes": ckpt.config.classes,
        **({"survival_bins": ckpt.config.heads[0].bins, "horizon": ckpt.config.horizon}
           if ckpt.config.outcome == "survival" else {}),
        "parameters": parameter_counts(ckpt.model),
        "config_checked_against_weights": ckpt.config_checked,
        "out_of_distribution": None if ckpt.ood is None else ckpt.ood.summary(),
        "warnings": ckpt.warnings,
        "metrics": ckpt.metrics,
        "training": {k: ckpt.training.get(k) for k in ("command", "data_hash", "epochs", "minutes")},
    }
    for warning in ckpt.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
