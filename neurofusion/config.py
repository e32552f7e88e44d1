"""Plain, serialisable configs: one dataclass per model part, the whole model, and training.

``ModelConfig`` is all a model's constructor needs; it round-trips through JSON (saved as a checkpoint's
``config.json``) and YAML (``configs/*.yaml``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from neurofusion.data.dataset import InputSpec
from neurofusion.data.features import FeatureSpec
from neurofusion.data.modalities import ModalitySpec, modalities_from_dicts, modalities_to_dicts
from neurofusion.data.schema import STANDARD_LEADS
from neurofusion.data.tasks import TASKS, task_modalities


@dataclass
class ImageEncoderConfig:
    """transformers ResNet + spatial-attention pooling. Paper: ResNet-50 (bottleneck, 3-4-6-3) -> 2048."""

    image_size: int = 224
    embedding_size: int = 64
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    layer_type: str = "bottleneck"
    num_channels: int = 1  # 3 for an ImageNet-pretrained ResNet: the grey image is repeated
    pretrained: str | None = None  # a local ResNetModel directory; never a hub name

    @property
    def out_dim(self) -> int:
        return self.hidden_sizes[-1]


@dataclass
class TextEncoderConfig:
    """transformers BERT, [CLS] pooling. Paper: BioBERT-base (768, 12 layers)."""

    vocab_size: int = 8000
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_length: int = 512
    dropout: float = 0.1
    attention_dropout: float = 0.1  # 0 lets PyTorch's fused attention kernel run: ~3x faster training on CPU
    pretrained: str | None = None  # a local BertModel + tokenizer directory (e.g. a BioBERT)

    @property
    def out_dim(self) -> int:
        return self.hidden_size


@dataclass
class SignalEncoderConfig:
    """1D convolutions + biLSTM + temporal attention pooling -> out_dim. Paper: 512."""

    fs: float = 250.0
    seconds: float = 10.0
    leads: list[str] = field(default_factory=lambda: list(STANDARD_LEADS))
    conv_channels: list[int] = field(default_factory=lambda: [64, 128, 256, 256])
    kernel_size: int = 7
    lstm_hidden: int = 256
    out_dim: int = 512


@dataclass
class TabularEncoderConfig:
    """Normalised numeric values + missing masks + categorical embeddings -> MLP. Paper: 256."""

    hidden_sizes: list[int] = field(default_factory=lambda: [256])
    category_dim: int = 8
    out_dim: int = 256
    dropout: float = 0.1


@dataclass
class FusionConfig:
    """Modality tokens of ``token_dim``, cross-modal attention, concat -> bottleneck of ``fused_dim``."""

    token_dim: int = 256
    num_heads: int = 8
    fused_dim: int = 1024
    dropout: float = 0.1


DEFAULT_SURVIVAL_SPAN = 120.0  # months: a survival head given no bins spans 10 years in equal bins
DEFAULT_HORIZON = 60.0  # months: survival is predicted and explained at 5 years unless the task says otherwise


@dataclass
class HeadConfig:
    """A task head on the fused vector. kind: classification (num_outputs = classes), regression (1),
    survival (num_outputs = time bins of a discrete-time hazard model).

    ``bins`` (survival heads only) is the head's time grid, ``SurvivalBins.to_dict()`` ({"edges": [0, ...],
    "unit": "months"}), saved in config.json so a checkpoint rebuilds its grid; ``num_outputs`` must equal its
    number of bins. A survival head given no bins gets ``num_outputs`` equal bins over 0-120 months (12-month
    bins for 10 outputs), written out here so the saved config always states its grid."""

    name: str = "diagnosis"
    kind: str = "classification"
    num_outputs: int = 5
    weight: float = 1.0
    bins: dict | None = None

    def __post_init__(self) -> None:
        if self.kind != "survival":
            if self.bins is not None:
                raise ValueError(f"head {self.name!r}: bins are for survival heads only, this one is {self.kind}")
            return
        # imported here: neurofusion.survival loads scikit-survival, which a classification config never needs
        from neurofusion.survival import SurvivalBins

        if self.num_outputs < 1:
            raise ValueError(f"survival head {self.name!r} needs at least one time bin, "
                             f"got num_outputs={self.num_outputs}")
        if self.bins is None:
            grid = SurvivalBins.uniform(DEFAULT_SURVIVAL_SPAN, DEFAULT_SURVIVAL_SPAN / self.num_outputs)
        elif isinstance(self.bins, SurvivalBins):
            grid = self.bins
        elif isinstance(self.bins, dict):
            try:
                grid = SurvivalBins.from_dict(self.bins)
            except (TypeError, ValueError) as err:
                raise ValueError(f"survival head {self.name!r}: bins {self.bins}: {err}") from None
        else:
            raise ValueError(f"survival head {self.name!r}: bins must be a mapping like "
                             f"{{'edges': [0, 12, 24], 'unit': 'months'}}, got {type(self.bins).__name__}")
        if grid.num_bins != self.num_outputs:
            raise ValueError(f"survival head {self.name!r} has num_outputs={self.num_outputs} but its bins "
                             f"{list(grid.edges)} make {grid.num_bins} time bins; they must agree")
        self.bins = grid.to_dict()


# Architectures over every declared modality. neurofusion_gated: NeuroFusion plus multiplicative context
# gating of each modality's fused vector by the other present modalities (neurofusion.models.fusion).
FUSION_ARCHITECTURES = ("neurofusion", "mlp_fusion", "early_fusion", "late_fusion", "neurofusion_gated")
ARCHITECTURES = (
    *FUSION_ARCHITECTURES, "image_only", "text_only", "signal_only", "tabular_only",
)  # and "<name>_only" for any declared modality name
PRIMARY_HEADS = ("classification", "survival")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model: its architecture, inputs and every part's sizes.

    ``modalities`` (ModalitySpec fields, in declaration order) are the inputs; empty means the task's
    declaration (cardio's four for cardio, so a config.json written before modalities were declared loads
    as cardio). The per-kind encoder configs (image, text, signal, tabular) are shared by every modality
    of that kind, except what the declaration implies: a colour image modality reads 3 channels, and each
    tabular modality reads its own features (``features[i]["modality"]``)."""

    task: str = "cardio"
    architecture: str = "neurofusion"
    classes: list[str] = field(default_factory=list)
    features: list[dict] = field(default_factory=list)  # FeatureSpec fields, in column order
    modalities: list[dict] = field(default_factory=list)  # ModalitySpec fields; empty = the task's
    image: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    signal: SignalEncoderConfig = field(default_factory=SignalEncoderConfig)
    tabular: TabularEncoderConfig = field(default_factory=TabularEncoderConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    heads: list[HeadConfig] = field(default_factory=lambda: [HeadConfig()])

    def __post_init__(self) -> None:
        specs = modalities_from_dicts(self.modalities) if self.modalities else task_modalities(self.task)
        self.modalities = modalities_to_dicts(specs)
        names = [m.name for m in specs]
        single = self.architecture.removesuffix("_only") if self.architecture.endswith("_only") else None
        if self.architecture not in FUSION_ARCHITECTURES and single not in names:
            singles = ", ".join(n + "_only" for n in names)
            raise ValueError(f"architecture must be one of {', '.join(FUSION_ARCHITECTURES)} or <modality>_only "
                             f"for a declared modality ({singles}), got {self.architecture!r}")
        if not self.heads:
            raise ValueError("a model needs at least one head")
        kinds = [h.kind for h in self.heads]
        if kinds[0] not in PRIMARY_HEADS or kinds.count(kinds[0]) != 1 or kinds.count("classification") > 1:
            raise ValueError(f"the first head must be the task's (only) primary head, one of {PRIMARY_HEADS}; "
                             f"got head kinds {kinds}")
        if kinds[0] == "survival":
            self._check_survival_grid()
        if kinds[0] == "classification" and self.classes and self.heads[0].num_outputs != len(self.classes):
            raise ValueError(
                f"classification head has {self.heads[0].num_outputs} outputs but there are {len(self.classes)} classes"
            )

    def _check_survival_grid(self) -> None:
        bins, task = self.survival_bins, TASKS.get(self.task)
        if task is not None and task.outcome == "survival" and bins.unit != task.time_unit:
            raise ValueError(f"survival head {self.heads[0].name!r} counts time in {bins.unit} but task "
                             f"{self.task!r} records it in {task.time_unit}")
        if self.horizon > bins.edges[-1]:
            raise ValueError(f"survival head {self.heads[0].name!r}: its bins end at {bins.edges[-1]:g} {bins.unit}, "
                             f"before the horizon {self.horizon:g} the model is evaluated at; extend the bins")

    @property
    def modality_specs(self) -> tuple[ModalitySpec, ...]:
        return tuple(ModalitySpec(**m) for m in self.modalities)

    @property
    def modality_names(self) -> tuple[str, ...]:
        return tuple(m["name"] for m in self.modalities)

    @property
    def outcome(self) -> str:
        """"survival" when the primary head is a survival head, else "classification"."""
        return "survival" if self.heads[0].kind == "survival" else "classification"

    @property
    def survival_bins(self):
        """The primary survival head's time grid (``neurofusion.survival.SurvivalBins``); ValueError for a
        classification model."""
        if self.outcome != "survival":
            raise ValueError(f"the primary head {self.heads[0].name!r} is {self.heads[0].kind}: the model has no "
                             f"survival time grid")
        from neurofusion.survival import SurvivalBins

        return SurvivalBins.from_dict(self.heads[0].bins)

    @property
    def horizon(self) -> float:
        """The survival horizon the model is evaluated and explained at, in its bins' unit: the task's own
        (cancer: 60 months) or 60 months for a task the project does not know."""
        task = TASKS.get(self.task)
        return float(task.horizon) if task is not None and task.outcome == "survival" else DEFAULT_HORIZON

    @property
    def feature_specs(self) -> tuple[FeatureSpec, ...]:
        return tuple(FeatureSpec(**{**f, "categories": tuple(f.get("categories", ()))}) for f in self.features)

    def encoder_config(self, spec: ModalitySpec):
        """The encoder config of one declared modality: its kind's shared config, with 3 input channels
        for a colour image."""
        config = getattr(self, spec.kind)
        if spec.kind == "image" and spec.colour and config.num_channels != 3:
            config = dataclasses.replace(config, num_channels=3)
        return config

    def input_spec(self) -> InputSpec:
        return InputSpec(
            classes=tuple(self.classes),
            features=self.feature_specs,
            image_size=self.image.image_size,
            signal_fs=self.signal.fs,
            signal_seconds=self.signal.seconds,
            leads=tuple(self.signal.leads),
            modalities=self.modality_specs,
            outcome=self.outcome,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        return _build(cls, data, "model")


@dataclass
class TrainConfig:
    """Optimisation settings. Paper: Adam, lr 1e-4, batch 32."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    batch_size: int = 32  # per process under torchrun: the job's batch is WORLD_SIZE times it
    max_epochs: int = 50
    patience: int = 8  # epochs without a better validation macro-F1 (survival: C-index) before stopping
    max_minutes: float | None = None  # wall-clock budget; stops after the epoch that crosses it
    modality_dropout: float = 0.2  # chance each present modality is hidden during training
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0  # DataLoader worker processes reading and augmenting cases (0: the training process)
    lr_schedule: str = "constant"  # "constant" or "cosine" (to 0 at the last step of max_epochs), after warmup
    warmup_steps: int = 0  # optimiser steps of linear warm-up from lr / warmup_steps to lr
    grad_clip: float | None = None  # max L2 norm of all gradients together, None = no clipping

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"train.num_workers must be >= 0, got {self.num_workers}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        if self.warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"train.grad_clip must be a positive number or null, got {self.grad_clip}")


LR_SCHEDULES = ("constant", "cosine")


@dataclass
class ExperimentConfig:
    """A configs/*.yaml file: the model and how to train it."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ExperimentConfig":
        return _build(cls, data, "config")


def read_config_mapping(path: Path, sections: str, *, what: str = "config",
                        error: type[ValueError] = ValueError) -> dict[str, Any]:
    """The mapping a YAML (or JSON) config file holds; ``error`` naming the file when it is missing, not YAML,
    or not a mapping (``sections``: what the mapping should hold, for the message)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} file {path} not found") from None
    except yaml.YAMLError as err:
        raise error(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping with {sections}")
    return data


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read a YAML (or JSON) experiment config; unknown keys and wrong types are errors naming the key."""
    path = Path(path)
    data = read_config_mapping(path, "'model' and 'train' sections")
    try:
        return ExperimentConfig.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None


def save_json(obj: Any, path: str | Path) -> None:
    data = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
    Path(path).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _build(cls, data: dict[str, Any], where: str):
    """Construct a (nested) config dataclass from plain data, rejecting unknown keys."""
    if not isinstance(data, dict):
        raise ValueError(f"'{where}' must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"unknown key(s) in '{where}': {', '.join(sorted(unknown))}; expected {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        sub = _NESTED.get((cls.__name__, name))
        if sub is None:
            _check_type(value, hints[name], f"{where}.{name}")
            kwargs[name] = value
        elif name == "heads":
            kwargs[name] = [_build(HeadConfig, h, f"{where}.heads[{i}]") for i, h in enumerate(value or [])]
        else:
            kwargs[name] = _build(sub, value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except ValueError as err:
        raise ValueError(f"'{where}': {err}") from None


def _check_type(value: Any, hint: Any, where: str) -> None:
    """Scalars and lists of scalars are checked; a YAML typo like ``lr: 1e-4x`` fails here, not mid-training."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return
        if origin is list and isinstance(value, list):
            inner = typing.get_args(option)
            if not inner or all(_scalar_ok(v, inner[0]) for v in value):
                return
        elif origin in (int, float, str, bool) and _scalar_ok(value, origin):
            return
        elif origin not in (int, float, str, bool, list, type(None)):
            return  # richer types (dicts of feature specs) are validated by their own constructors
    raise ValueError(f"'{where}' has the wrong type: {value!r} is not {_type_name(hint)}")


def _scalar_ok(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _type_name(hint: Any) -> str:
    if typing.get_args(hint):
        return str(hint).replace("typing.", "")
    return getattr(hint, "__name__", str(hint))


_NESTED = {
    ("ModelConfig", "image"): ImageEncoderConfig,
    ("ModelConfig", "text"): TextEncoderConfig,
    ("ModelConfig", "signal"): SignalEncoderConfig,
    ("ModelConfig", "tabular"): TabularEncoderConfig,
    ("ModelConfig", "fusion"): FusionConfig,
    ("ModelConfig", "heads"): HeadConfig,
    ("ExperimentConfig", "model"): ModelConfig,
    ("ExperimentConfig", "train"): TrainConfig,
}
