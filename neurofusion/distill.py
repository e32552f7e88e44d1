"""Knowledge distillation: a smaller student trained on a teacher checkpoint's soft targets plus the labels.

    python -m neurofusion.distill --teacher CKPT --student-config configs/cardio_student.yaml --data DIR --out DIR
        [--eval-data DIR] [--seed N] [--max-epochs N] [--max-minutes M] [--num-workers N] [--resume] [--quiet]

The student config is an ordinary experiment config (``model`` and ``train``) plus a ``distill`` section::

    distill:
      temperature: 4.0   # T > 0: softens both models' class distributions before they are compared
      alpha: 0.5         # in [0, 1]: the weight of the soft-target term (0 = the labels alone)

Each training step minimises ``(1 - alpha) * task_loss + alpha * T^2 * KL(softmax(teacher / T) ||
softmax(student / T))`` (Hinton et al. 2015; T^2 keeps the soft term's gradients on the task loss's scale as T
grows), the teacher in eval mode without gradients, on the same batch and the same kept modalities (after
modality dropout) as the student, on the student's device. The student reads the teacher's tokenizer (the same
token ids), is trained by ``neurofusion.train.fit`` (early stopping, resumable state, out-of-distribution
reference) and saved as an ordinary checkpoint: metrics on val and test, and in training.json the teacher's path,
the SHA-256 of its weights file, the temperature and alpha. Classification teachers only: a survival teacher is
refused (its soft targets would be a distribution over time bins, not classes, which this objective does not
model). Single process (no torchrun).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import shlex
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from neurofusion.checkpoint import (
    WEIGHTS,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from neurofusion.config import ExperimentConfig, ModelConfig, read_config_mapping
from neurofusion.data.cohort import CohortReader
from neurofusion.data.dataset import Batch
from neurofusion.data.errors import CohortError
from neurofusion.data.timed import open_cohort
from neurofusion.models.model import ModelOutput, MultiModalModel
# train.main's own metrics and --seed/--max-epochs/... overrides: one definition for both commands
from neurofusion.train import (STATE_FILE, TrainResult, add_training_arguments, configure_model, data_hash,
                               final_metrics, fit, override, training_record)

DISTILL_SECTION = "distill"


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """The ``distill:`` section of a student config."""

    temperature: float = 4.0  # > 0; 1 = the models' own distributions, larger = softer
    alpha: float = 0.5  # weight of the soft-target term in [0, 1]; 1 - alpha weighs the task loss

    def __post_init__(self) -> None:
        for name in ("temperature", "alpha"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"'{DISTILL_SECTION}.{name}' must be a number, got {value!r}")
        if not self.temperature > 0 or self.temperature == float("inf"):
            raise ValueError(f"'{DISTILL_SECTION}.temperature' must be a finite number > 0, got {self.temperature!r}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"'{DISTILL_SECTION}.alpha' must be in [0, 1] (the weight of the soft-target term), "
                             f"got {self.alpha!r}")

    @classmethod
    def from_dict(cls, data: Any) -> "DistillConfig":
        if not isinstance(data, dict):
            raise ValueError(f"'{DISTILL_SECTION}' must be a mapping with temperature and alpha, "
                             f"got {type(data).__name__}")
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ValueError(f"unknown key(s) in '{DISTILL_SECTION}': {', '.join(unknown)}; expected "
                             f"{', '.join(fields)}")
        missing = [name for name in fields if name not in data]
        if missing:
            raise ValueError(f"'{DISTILL_SECTION}' needs {' and '.join(missing)} (temperature > 0, alpha in [0, 1])")
        return cls(**data)


def load_student_config(path: str | Path) -> tuple[ExperimentConfig, DistillConfig]:
    """Read a student YAML: the ``distill`` section and the rest as an ordinary experiment config. Every error
    names the file and the field."""
    path = Path(path)
    data = read_config_mapping(path, f"'model', 'train' and '{DISTILL_SECTION}' sections", what="student config")
    if DISTILL_SECTION not in data:
        raise ValueError(f"{path}: no '{DISTILL_SECTION}' section (temperature > 0, alpha in [0, 1]); a student "
                         f"config is an experiment config plus that section")
    try:
        distill = DistillConfig.from_dict(data.pop(DISTILL_SECTION))
        experiment = ExperimentConfig.from_dict(data)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return experiment, distill


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, task_loss: torch.Tensor,
                      distill: DistillConfig) -> torch.Tensor:
    """``(1 - alpha) * task_loss + alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))``, the KL
    divergence summed over classes and averaged over the batch's cases (labelled or not: soft targets need no
    label). Logits (B, C); ``task_loss`` a scalar. alpha 0 returns ``task_loss`` itself."""
    if student_logits.shape != teacher_logits.shape or student_logits.dim() != 2:
        raise ValueError(f"student and teacher logits must both be (B, C), got {tuple(student_logits.shape)} and "
                         f"{tuple(teacher_logits.shape)}")
    if distill.alpha == 0:
        return task_loss
    t = distill.temperature
    kl = F.kl_div(F.log_softmax(student_logits.float() / t, dim=1), F.log_softmax(teacher_logits.float() / t, dim=1),
                  reduction="batchmean", log_target=True)
    return (1 - distill.alpha) * task_loss + distill.alpha * t * t * kl


class DistillationObjective:
    """The training objective (``neurofusion.train.Objective``) of a student: the teacher's logits on the same
    batch and kept modalities, mixed with the task loss by :func:`distillation_loss`. The teacher must be on
    the student's device; it is put in eval mode and never receives gradients."""

    def __init__(self, teacher: MultiModalModel, distill: DistillConfig) -> None:
        self.teacher = teacher.eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.distill = distill

    def __call__(self, batch: Batch, kept: torch.Tensor, output: ModelOutput, task_loss: torch.Tensor) -> torch.Tensor:
        if self.distill.alpha == 0:  # no soft-target term: the teacher's forward pass would be wasted
            return task_loss
        return distillation_loss(output.logits, self.teacher_logits(batch, kept), task_loss, self.distill)

    @torch.no_grad()
    def teacher_logits(self, batch: Batch, kept: torch.Tensor) -> torch.Tensor:
        """(B, C) float32 logits of the teacher on ``batch`` with only the ``kept`` (B, M) modalities."""
        self.teacher.eval()  # stays in eval mode even if a caller switched every module to train()
        device = kept.device
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda"
                    else contextlib.nullcontext())
        with autocast:
            return self.teacher(batch, present=kept).logits.float()


# Fields the teacher and the student must share: the student's batches are built for the student's inputs and
# tokenised by the teacher's tokenizer, and both models' class logits are compared index by index.
def _shared_fields(config: ModelConfig) -> dict[str, Any]:
    return {"task": config.task, "outcome": config.outcome, "classes": list(config.classes),
            "modalities": config.modality_specs, "features": config.feature_specs,
            "image.image_size": config.image.image_size, "signal.fs": config.signal.fs,
            "signal.seconds": config.signal.seconds, "signal.leads": list(config.signal.leads),
            "text.max_length": config.text.max_length}


def check_compatible(teacher: ModelConfig, student: ModelConfig, teacher_path: str | Path) -> None:
    """ValueError naming what differs when ``student`` (completed from the cohort by ``configure_model``) cannot
    learn from ``teacher``: another task, outcome, classes (or their order), modalities, features or input
    sizes; a survival teacher; a student text encoder with its own pretrained vocabulary."""
    if teacher.outcome != "classification":
        raise ValueError(f"teacher {teacher_path} is a {teacher.outcome} model (primary head "
                         f"{teacher.heads[0].name!r}); distillation here matches class distributions and supports "
                         f"classification teachers only")
    theirs, ours = _shared_fields(teacher), _shared_fields(student)
    differing = [name for name in theirs if theirs[name] != ours[name]]
    if differing:
        shown = "; ".join(_difference(name, theirs[name], ours[name]) for name in differing[:3])
        more = f" (and {len(differing) - 3} more)" if len(differing) > 3 else ""
        raise ValueError(f"the student cannot learn from teacher {teacher_path}: {shown}{more}. The student must "
                         f"have the teacher's task, classes, modalities, features and input sizes (train it on "
                         f"the teacher's kind of cohort; widths and depths may differ)")
    if student.text.pretrained:
        raise ValueError(f"the student config sets text.pretrained ({student.text.pretrained!r}) but the student "
                         f"reads the teacher's tokenizer; leave text.pretrained null")


def _difference(name: str, teacher: Any, student: Any) -> str:
    """``name: teacher X, student Y``; for two lists of modalities or features of one length, their first
    differing item."""
    if isinstance(teacher, tuple) and isinstance(student, tuple) and len(teacher) == len(student):
        index = next(i for i, (ours, theirs) in enumerate(zip(teacher, student)) if ours != theirs)
        teacher, student, name = teacher[index], student[index], f"{name}[{index}]"
    elif name in ("modalities", "features"):
        teacher, student = [item.name for item in teacher], [item.name for item in student]
    return f"{name}: teacher {_short(teacher)}, student {_short(student)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def weights_sha256(checkpoint: str | Path) -> str | None:
    """SHA-256 of a checkpoint's weights file, or None when there is none to hash."""
    weights = Path(checkpoint) / WEIGHTS
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with open(weights, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_teacher(path: str | Path, device: str | torch.device = "auto") -> Checkpoint:
    """The teacher checkpoint on ``device``; an unreadable folder is a ValueError naming it."""
    try:
        return load_checkpoint(path, device=device)
    except CheckpointError as err:
        raise ValueError(f"cannot read the teacher checkpoint: {err}") from None


def distill(teacher: Checkpoint, cohort: CohortReader, experiment: ExperimentConfig, settings: DistillConfig, *,
            progress: bool = True, state_path: str | Path | None = None, resume: bool = False) -> TrainResult:
    """Train ``experiment``'s student on ``cohort`` (train split, early-stopped on val) against ``teacher``'s soft
    targets with its tokenizer. The teacher is moved to the student's device."""
    student = configure_model(experiment.model, cohort)
    check_compatible(teacher.config, student, teacher.path)
    device = resolve_device(experiment.train.device)
    teacher.model.to(device)
    teacher.device = device
    objective = DistillationObjective(teacher.model, settings)
    return fit(cohort, experiment.model, experiment.train, progress=progress, state_path=state_path, resume=resume,
               tokenizer=teacher.tokenizer, objective=objective)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofusion.distill", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="teacher checkpoint folder (a classifier)")
    parser.add_argument("--student-config", required=True, help="student YAML with a distill section "
                        "(configs/cardio_student.yaml)")
    add_training_arguments(parser, out="student checkpoint folder to write")
    parser.set_defaults(architecture=None)  # the student config's architecture, never overridden here
    args = parser.parse_args(argv)
    try:
        experiment, settings = load_student_config(args.student_config)
        experiment = override(experiment, args)
        cohort = open_cohort(args.data)
        teacher = load_teacher(args.teacher, device=experiment.train.device)
        result = distill(teacher, cohort, experiment, settings, progress=not args.quiet,
                         state_path=Path(args.out) / STATE_FILE, resume=args.resume)
        evaluation = open_cohort(args.eval_data) if args.eval_data else cohort
        metrics = final_metrics(result, cohort, evaluation, num_workers=experiment.train.num_workers)
        training = training_record(
            result, command="python -m neurofusion.distill " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            data=args.data, data_hash=data_hash(cohort, cohort.ids("train") + cohort.ids("val")),
            train=experiment.train,
            distillation={"teacher": str(Path(args.teacher)), "teacher_weights_sha256": weights_sha256(args.teacher),
                          "teacher_data_hash": teacher.training.get("data_hash"),
                          "temperature": settings.temperature, "alpha": settings.alpha, "tokenizer": "the teacher's"})
        save_checkpoint(args.out, result.model, result.tokenizer, metrics=metrics, training=training, ood=result.ood)
    except (CohortError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    test = metrics.get("test")
    summary = f"test accuracy {test['accuracy']['value']:.3f}" if test else "no test split evaluated"
    print(f"saved {args.out} (student of {args.teacher}, T {settings.temperature:g}, alpha {settings.alpha:g}; "
          f"best epoch {result.best_epoch}, {result.minutes:.1f} min, {summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
