"""Train a model on a cohort's train split, early-stopped on its val split, and save a checkpoint.

    python -m neurofusion.train --config configs/cardio_demo.yaml --data DIR --out DIR [--eval-data DIR]
        [--num-workers N] [--resume]
    torchrun --nproc_per_node N -m neurofusion.train ...   (data-parallel, one process per GPU or CPU share)

Adam with the config's learning rate (constant or cosine, after a linear warm-up), batch size (per process) and
gradient clipping; modality dropout so the missing embeddings are learned; per-modality augmentation; mixed
precision (bfloat16) on a GPU. Cases are streamed through DataLoaders (``--num-workers`` processes read, augment
and tokenise them), never held all at once. A classifier keeps the epoch with the best validation macro-F1; a
survival model (primary head ``survival``, a survival cohort) is trained on ``(bin, event)`` targets from each
case's time and event (``SurvivalBins.encode``; cases without an outcome add nothing) and keeps the epoch with
the best validation C-index of its risk score 1 - S(horizon). After each epoch the resumable state goes to
``<out>/last.pt``; ``--resume`` continues from it. At the end, the per-modality out-of-distribution reference
(neurofusion.ood) is fitted on the train split with its threshold on the val split, and saved with the
checkpoint. Under torchrun, rank 0 validates, decides when to stop, and writes everything.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import pickle
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import transformers
from sklearn.metrics import f1_score, roc_auc_score
from torch.utils.data import DataLoader
from tqdm import tqdm

from neurofusion.checkpoint import resolve_device, save_checkpoint
from neurofusion.config import ExperimentConfig, ModelConfig, TrainConfig, load_experiment
from neurofusion.data.augment import AugmentConfig
from neurofusion.data.cohort import COHORT_CSV, CohortReader
from neurofusion.data.dataset import Batch, CaseDataset
from neurofusion.data.formats import read_note
from neurofusion.data.errors import CohortError
from neurofusion.data.modalities import modalities_to_dicts
from neurofusion.data.timed import open_cohort
from neurofusion.data.tokenizer import load_tokenizer, make_tokenize, train_wordpiece
from neurofusion.distributed import (
    SINGLE,
    DistributedContext,
    broadcast_object,
    check_encoders_run_everywhere,
    context_from_environment,
    mean_over_processes,
    setup,
    sync_batch_norm,
    synchronised_modalities,
    teardown,
    wrap,
)
from neurofusion.evaluate import censoring_reference, survival_report, timed_risk_report
from neurofusion.inference import Predictor
from neurofusion.loader import EpochSampler, SplitCases, StreamedBatch, TrainingCases, TrainingCollate, case_loader
from neurofusion.loader import modality_dropout  # noqa: F401  (its home before streaming; callers import it here)
from neurofusion.metrics import classification_metrics
from neurofusion.models.heads import SurvivalHead, multitask_loss
from neurofusion.models.model import ModelOutput, MultiModalModel, build_model, tabular_normalisers
from neurofusion.ood import OODError, OODReference, fit_reference
from neurofusion.survival import concordance_index


@dataclasses.dataclass
class TrainResult:
    model: MultiModalModel
    tokenizer: transformers.PreTrainedTokenizerFast
    history: list[dict]
    best_epoch: int
    minutes: float
    ood: OODReference | None = None  # None when the cohort is too small for one: ``ood_note`` says why
    ood_note: str = ""
    mixed_precision: str = ""


# What a training step minimises, when not the primary head's task loss alone: objective(batch, kept, output,
# task_loss) -> scalar loss, with ``kept`` the (B, M) modalities the model saw after modality dropout and
# ``output`` its ModelOutput. Knowledge distillation (neurofusion.distill) mixes in a teacher's soft targets;
# FedProx (neurofusion.federated) adds its proximal term.
Objective = Callable[[Batch, torch.Tensor, ModelOutput, torch.Tensor], torch.Tensor]

STATE_FILE = "last.pt"  # the resumable state a run writes into its --out folder after each epoch


def configure_model(config: ModelConfig, cohort: CohortReader) -> ModelConfig:
    """The model config completed from the cohort: its declared modalities, classes and tabular features
    (and as many outputs of the classification head as it has classes). The caller's config is left
    unchanged; a config whose primary head does not fit the cohort's outcome is a ValueError."""
    if config.outcome != cohort.outcome:
        raise ValueError(f"the config's primary head {config.heads[0].name!r} is a {config.heads[0].kind} head but "
                         f"the cohort {cohort.root} records {cohort.outcome} outcomes; use a config for this task "
                         f"(e.g. configs/cancer_demo.yaml for survival, configs/cardio_demo.yaml for classes)")
    data = config.to_dict()
    data["modalities"] = modalities_to_dicts(cohort.modalities)
    data["classes"] = list(cohort.classes)
    data["features"] = [dataclasses.asdict(f) for f in cohort.features.values()]
    if data["heads"][0]["kind"] == "classification":
        data["heads"][0]["num_outputs"] = len(cohort.classes)
    layout = getattr(cohort, "signal_layout", None)  # a time-stamped cohort's vitals grid (channels, rate, length)
    if layout is not None:
        data["signal"].update(layout)
    return ModelConfig.from_dict(data)  # validates


def fit(cohort: CohortReader, config: ModelConfig, train: TrainConfig, *, progress: bool = True,
        state_path: str | Path | None = None, resume: bool = False, context: DistributedContext = SINGLE,
        after_epoch: Callable[[int], None] | None = None,
        tokenizer: transformers.PreTrainedTokenizerFast | None = None,
        objective: Objective | None = None) -> TrainResult:
    """Train on the cohort's train split; keep the weights of the epoch with the best validation macro-F1
    (classification) or C-index (survival).

    Cases are streamed through DataLoaders (``train.num_workers`` worker processes), never held all at once.
    ``state_path``: where each epoch's resumable state is written (rank 0, atomically); ``resume`` continues
    from it. ``context``: this process's place in a torchrun job (rank 0 validates and decides when to stop,
    every rank follows). ``after_epoch(epoch)`` is called once the epoch's state is written. ``tokenizer``: use
    this one instead of fitting a WordPiece vocabulary to the train notes (a student distilled from a teacher
    reads the teacher's token ids); a resumed run uses the interrupted one's and every process of a job rank 0's
    (a fit is deterministic, but it reads every train note: one reading is enough). ``objective``: what each step
    minimises instead of the task loss alone (see :data:`Objective`; knowledge distillation mixes in a teacher's
    soft targets)."""
    torch.manual_seed(train.seed)
    device = setup(context, resolve_device(train.device))
    train_ids, val_ids = cohort.ids("train"), cohort.ids("val")
    if not train_ids or not val_ids:
        raise CohortError("training needs cases in both the 'train' and 'val' splits", path=cohort.root / COHORT_CSV)
    if len(train_ids) < context.world_size:
        raise CohortError(f"the train split has {len(train_ids)} cases, fewer than the {context.world_size} "
                          f"training processes", path=cohort.root / COHORT_CSV)

    config = configure_model(config, cohort)
    if config.outcome == "survival":
        _check_survival_splits(cohort, train_ids, val_ids)
    spec = config.input_spec()
    reads_text = any(m.kind == "text" for m in config.modality_specs)
    saved = _read_state(state_path) if resume else None
    if saved is not None:
        tokenizer = saved["tokenizer"]
    elif reads_text and tokenizer is None and context.is_main:
        tokenizer = _tokenizer(_notes(cohort, train_ids, config, progress), config, cohort)
    tokenizer = broadcast_object(tokenizer, context) if reads_text else None
    if reads_text and not config.text.pretrained:
        config.text.vocab_size = len(tokenizer)

    model = build_model(config).to(device)
    tokenize = make_tokenize(tokenizer, config.text.max_length) if tokenizer is not None else _no_text
    collate = TrainingCollate(tokenize)
    _fit_normalisers(model, cohort, train_ids, spec, train, device)
    if context.distributed:
        model = sync_batch_norm(model, device)
    optimiser = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sampler = EpochSampler(len(train_ids), seed=train.seed, rank=context.rank, world_size=context.world_size)
    augment = AugmentConfig() if train.augment else None
    cases = TrainingCases(SplitCases(cohort, train_ids), spec, augment=augment,
                          modality_dropout=train.modality_dropout, seed=train.seed)
    loader = case_loader(cases, batch_size=train.batch_size, collate=collate, num_workers=train.num_workers,
                         sampler=sampler, device=device, seed=train.seed)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, functools.partial(lr_factor, train=train, total_steps=train.max_epochs * len(loader)))
    # evaluation batches are as large as training ones: what training fits in memory, evaluation does too
    validation = (case_loader(CaseDataset(SplitCases(cohort, val_ids), spec), batch_size=train.batch_size,
                              collate=collate, num_workers=train.num_workers, device=device)
                  if context.is_main else None)
    trained = wrap(model, context, device)
    synced = synchronised_modalities(model)
    if progress and context.is_main:
        print(f"training on {device} ({context.world_size} process(es), {train.num_workers} data worker(s) each); "
              f"{mixed_precision(device)}", file=sys.stderr)

    state = _TrainingState()
    if saved is not None:
        state = _restore_state(saved, state_path, model, optimiser, scheduler, config, train)
        if progress and context.is_main:
            print(f"resuming after epoch {state.epoch} of {state_path}", file=sys.stderr)
    start = time.perf_counter() - state.minutes * 60
    for epoch in range(state.epoch + 1, train.max_epochs + 1):
        sampler.set_epoch(epoch)
        model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        bar = tqdm(loader, desc=f"epoch {epoch}", disable=not (progress and context.is_main), file=sys.stderr,
                   leave=False)
        losses = train_epoch(trained, model, bar, optimiser, train.grad_clip, device=device, scheduler=scheduler,
                             objective=objective, check=lambda batch: check_encoders_run_everywhere(
                                 batch.present, model.names, synced, context))
        train_loss = mean_over_processes(float(np.mean(losses)), context, device)
        decision = None
        if context.is_main:
            record = {"epoch": epoch, "train_loss": train_loss,
                      **_validation_record(model, validation, device),
                      "lr": optimiser.param_groups[0]["lr"], "minutes": (time.perf_counter() - start) / 60}
            if device.type == "cuda":
                record["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
            score = record[selected_by(config)]
            improved = score > state.best_score
            best_epoch = epoch if improved else state.best_epoch
            stop = (epoch - best_epoch >= train.patience
                    or (train.max_minutes is not None and record["minutes"] >= train.max_minutes))
            decision = (record, improved, stop)
            if progress:
                shown = ", ".join(f"{k.removeprefix('val_')} {v:.3f}" for k, v in record.items()
                                  if k.startswith("val_"))
                memory = f", peak GPU {record['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in record else ""
                print(f"epoch {epoch}: loss {record['train_loss']:.3f}, val {shown} ({record['minutes']:.1f} min"
                      f"{memory})", file=sys.stderr)
        record, improved, stop = broadcast_object(decision, context)  # decided once, by rank 0
        state.history.append(record)
        state.epoch, state.minutes = epoch, record["minutes"]
        if improved:
            state.best_score, state.best_epoch = record[selected_by(config)], epoch
            state.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if state_path is not None and context.is_main:
            _save_state(Path(state_path), state, model, optimiser, scheduler, config, train, tokenizer)
        if after_epoch is not None:
            after_epoch(epoch)
        if stop:
            break
    model.load_state_dict(state.best_weights)
    model.eval()
    minutes = (time.perf_counter() - start) / 60
    ood, note = None, "not fitted by this process (rank 0 fits it)"
    if context.is_main:
        plain = CaseDataset(SplitCases(cohort, train_ids), spec)
        reference = case_loader(plain, batch_size=train.batch_size, collate=collate, num_workers=train.num_workers,
                                device=device)
        ood, note = _fit_ood(model, reference, validation, device, cohort)
        if note and progress:
            print(f"warning: {note}", file=sys.stderr)
    return TrainResult(model, tokenizer, state.history, state.best_epoch, minutes, ood, note,
                       mixed_precision(device))


def train_epoch(trained: torch.nn.Module, model: MultiModalModel, batches: Iterable[StreamedBatch],
                optimiser: torch.optim.Optimizer, grad_clip: float | None, *, device: torch.device,
                scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, objective: Objective | None = None,
                check: Callable[[Batch], None] | None = None) -> list[float]:
    """One pass over ``batches`` (a training loader's streamed batches, modality dropout applied): per batch the
    forward pass of ``trained`` (``model`` itself, or its data-parallel wrapper) under bfloat16 autocast on a
    GPU, the primary head's task loss (or ``objective``'s), one optimiser step and one scheduler step. ``check``
    sees each batch first (the data-parallel check that every process runs the same encoders). The losses, one
    per batch; a tqdm ``batches`` shows their running mean."""
    config = model.config
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    losses = []
    for streamed in batches:
        batch, kept = streamed.to(device)
        if check is not None:
            check(batch)
        with autocast:
            output = trained(batch, present=kept)
        loss, _ = multitask_loss(output.heads, {config.heads[0].name: primary_targets(config, batch)}, config.heads)
        if objective is not None:
            loss = objective(batch, kept, output, loss)
        train_step(model, loss, optimiser, grad_clip)
        if scheduler is not None:
            scheduler.step()
        losses.append(float(loss.detach()))
        if isinstance(batches, tqdm):
            batches.set_postfix(loss=f"{np.mean(losses):.3f}")
    return losses


def train_step(model: torch.nn.Module, loss: torch.Tensor, optimiser: torch.optim.Optimizer,
               grad_clip: float | None) -> float:
    """One optimiser step on ``loss``: the gradients' L2 norm (all parameters together) before clipping, which
    scales them down to ``grad_clip`` when it is larger."""
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    parameters = [p for p in model.parameters() if p.grad is not None]
    if grad_clip is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(parameters, grad_clip))
    else:
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters])))
    optimiser.step()
    return norm


def lr_factor(step: int, *, train: TrainConfig, total_steps: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based) as a fraction of ``train.lr``: linear warm-up over
    ``warmup_steps`` ((step + 1) / warmup_steps), then 1 ("constant") or a cosine from 1 down to 0 at
    ``total_steps`` ("cosine")."""
    if step < train.warmup_steps:
        return (step + 1) / train.warmup_steps
    if train.lr_schedule == "constant":
        return 1.0
    progress = min(1.0, (step - train.warmup_steps) / max(1, total_steps - train.warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def mixed_precision(device: torch.device) -> str:
    """What the training log says about mixed precision on ``device``."""
    return "mixed precision: bfloat16 autocast" if device.type == "cuda" else "mixed precision: off on CPU"


@dataclasses.dataclass
class _TrainingState:
    """What a resumed run needs besides the model, optimiser and scheduler."""

    epoch: int = 0
    minutes: float = 0.0
    best_score: float = -1.0
    best_epoch: int = 0
    best_weights: dict | None = None
    history: list[dict] = dataclasses.field(default_factory=list)


# TrainConfig fields a resumed run may change: how long and where it runs, not what it learns.
_RESUMABLE_CHANGES = ("max_epochs", "max_minutes", "device", "num_workers", "patience")


def _save_state(path: Path, state: _TrainingState, model, optimiser, scheduler, config: ModelConfig,
                train: TrainConfig, tokenizer) -> None:
    """The resumable state of the run after ``state.epoch``, written to a temporary file and renamed, so an
    interruption leaves the previous epoch's state whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"state": dataclasses.asdict(state), "model": model.state_dict(), "optimiser": optimiser.state_dict(),
               "scheduler": scheduler.state_dict(), "model_config": config.to_dict(),
               "train_config": dataclasses.asdict(train), "tokenizer": tokenizer, "torch_rng": torch.get_rng_state(),
               "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def _read_state(path: str | Path | None) -> dict:
    """The training state at ``path`` (read on the CPU: each process moves it to its device)."""
    if path is None or not Path(path).is_file():
        raise ValueError(f"cannot resume: no training state {path} (a run writes it after each epoch to "
                         f"<out>/{STATE_FILE}); start without --resume")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)  # our own file: it holds the tokenizer
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"cannot resume: {path} is not a readable training state ({err})") from None


def _restore_state(payload: dict, path, model, optimiser, scheduler, config: ModelConfig,
                   train: TrainConfig) -> _TrainingState:
    """Model, optimiser, schedule and RNG as the interrupted run left them; what else it had."""
    if payload["model_config"] != config.to_dict():
        raise ValueError(f"cannot resume from {path}: it was written for a different model config or cohort")
    saved = payload["train_config"]
    changed = [k for k, v in dataclasses.asdict(train).items() if k not in _RESUMABLE_CHANGES and saved.get(k) != v]
    if changed:
        raise ValueError(f"cannot resume from {path}: train settings differ from the interrupted run's "
                         f"({', '.join(f'{k}: {saved.get(k)!r} -> {getattr(train, k)!r}' for k in changed)}); "
                         f"only {', '.join(_RESUMABLE_CHANGES)} may change")
    model.load_state_dict(payload["model"])
    optimiser.load_state_dict(payload["optimiser"])
    scheduler.load_state_dict(payload["scheduler"])
    torch.set_rng_state(payload["torch_rng"].cpu())
    if payload["cuda_rng"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in payload["cuda_rng"]])
    return _TrainingState(**payload["state"])


def _notes(cohort: CohortReader, ids: list[str], config: ModelConfig, progress: bool) -> Iterator[str | None]:
    """The train split's notes (every text modality's): the tokenizer's corpus. A cohort folder's note files are
    read alone; other readers' (a time-stamped cohort's) cases are loaded one at a time for them."""
    specs = [m for m in config.modality_specs if m.kind == "text"]
    table = getattr(cohort, "table", None)
    files = (table is not None and not getattr(cohort, "timed", False)
             and all(s.file_column in table.columns and s.presence_column in table.columns for s in specs))
    rows = table.set_index("case_id").loc[ids] if files else None
    for n, case_id in enumerate(tqdm(ids, desc="reading notes", disable=not progress, file=sys.stderr, leave=False)):
        if files:
            row = rows.iloc[n]
            yield from (read_note(cohort.root / row[s.file_column]) if row[s.presence_column] else None for s in specs)
        else:
            case = cohort[case_id]
            yield from (case.value(s.name) for s in specs)


def _fit_normalisers(model: MultiModalModel, cohort: CohortReader, ids: list[str], spec, train: TrainConfig,
                     device: torch.device) -> None:
    """Fit the tabular encoders' normalisers on the train split's values, streamed (only the (N, F) numeric
    values of the tabular modalities are gathered, never the cases)."""
    normalisers = tabular_normalisers(model)
    if not normalisers:
        return
    tabular = dataclasses.replace(spec, modalities=tuple(m for m in spec.modalities if m.name in normalisers))
    loader = case_loader(CaseDataset(SplitCases(cohort, ids), tabular), batch_size=train.batch_size,
                         collate=TrainingCollate(None), num_workers=train.num_workers)
    gathered = {name: ([], []) for name in normalisers}
    for streamed in loader:
        for name, (values, masks) in gathered.items():
            values.append(streamed.batch.inputs[name]["numeric"])
            masks.append(streamed.batch.inputs[name]["numeric_mask"])
    for name, normaliser in normalisers.items():
        values, masks = gathered[name]
        normaliser.fit(torch.cat(values).to(device), torch.cat(masks).to(device))


def _fit_ood(model: MultiModalModel, reference: DataLoader, heldout: DataLoader, device: torch.device,
             cohort: CohortReader) -> tuple[OODReference | None, str]:
    """The out-of-distribution reference of the trained weights (train split; threshold on val), or why not."""
    def batches(loader: DataLoader):
        return (streamed.batch.to(device) for streamed in loader)

    source = {"data": str(cohort.root), "reference_split": "train", "heldout_split": "val"}
    try:
        return fit_reference(model, batches(reference), batches(heldout), source=source), ""
    except OODError as err:
        return None, (f"no out-of-distribution reference was fitted ({err}); "
                      f"inputs will not be checked against the training data")


# The validation number each outcome's early stopping follows (higher is better).
_SELECTED_BY = {"classification": "val_macro_f1", "survival": "val_c_index"}


def selected_by(config: ModelConfig) -> str:
    """The validation number that picks the kept epoch: macro-F1 of a classifier, AUROC of a two-class risk
    model (the ICU task's 48-hour mortality, where 1 in 8 samples is positive and F1 at argmax mostly measures
    the threshold), C-index of a survival model."""
    if config.outcome == "classification" and len(config.classes) == 2:
        return "val_auroc"
    return _SELECTED_BY[config.outcome]


def primary_targets(config: ModelConfig, batch: Batch) -> torch.Tensor:
    """The primary head's training targets for a batch: (B,) class indices (-1 unlabelled), or for a survival
    head (B, 2) ``(bin, event)`` from ``batch.outcomes`` by its bins' ``encode`` (bin -1, ignored: no
    outcome, or censored in the first half of bin 0)."""
    if config.outcome != "survival":
        return batch.labels
    outcomes = batch.outcomes.detach().cpu().double().numpy()
    event = np.nan_to_num(outcomes[:, 1], nan=0.0)  # ignored where the time is unknown
    return torch.from_numpy(config.survival_bins.encode(outcomes[:, 0], event)).to(batch.labels.device)


def _check_survival_splits(cohort: CohortReader, train_ids: list[str], val_ids: list[str]) -> None:
    """A survival model needs train events to learn from and a val split that defines the C-index."""
    where = cohort.root / COHORT_CSV
    table = cohort.table.set_index("case_id")
    train_time, train_event = _known(table.loc[train_ids])
    if not train_event.any():
        raise CohortError(f"the train split has no event among its {len(train_time)} cases with an outcome: a "
                          f"survival model has nothing to learn from", path=where)
    val_time, val_event = _known(table.loc[val_ids])
    c_index = concordance_index(val_time, val_event, np.zeros(len(val_time)), n_boot=1) if len(val_time) else None
    if c_index is None or c_index.value is None:
        why = "no case has an outcome" if c_index is None else c_index.reason
        raise CohortError(f"the val split cannot define the C-index that early stopping follows ({why}); give "
                          f"it cases with events and longer follow-up", path=where)


def _known(rows) -> tuple[np.ndarray, np.ndarray]:
    time = rows["time"].to_numpy(dtype=float)
    event = rows["event"].to_numpy(dtype=float)
    keep = ~np.isnan(time)
    return time[keep], event[keep].astype(bool)


def data_hash(cohort: CohortReader, ids: list[str]) -> str:
    """SHA-256 over cohort.csv and every file of the given cases: which data a checkpoint was trained on (a
    time-stamped cohort: cohort.csv and its long tables)."""
    if getattr(cohort, "timed", False):
        return cohort.data_hash()
    digest = hashlib.sha256((cohort.root / COHORT_CSV).read_bytes())
    table = cohort.table.set_index("case_id").loc[ids]
    for column in [c for c in table.columns if c.endswith("_file")]:  # every file-backed modality's
        for rel in table[column]:
            if rel:
                digest.update((cohort.root / rel).read_bytes())
    return digest.hexdigest()


def add_training_arguments(parser: argparse.ArgumentParser, *, out: str) -> None:
    """The options of a command that trains through ``fit`` (neurofusion.train, neurofusion.distill): the data,
    the output folder (``out``: its help), the evaluation cohort and the train settings :func:`override` reads."""
    parser.add_argument("--data", required=True, help="cohort folder with train and val splits")
    parser.add_argument("--out", required=True, help=out)
    parser.add_argument("--eval-data", help="cohort whose test split is evaluated after training (default: --data)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--max-epochs", type=int)
    parser.add_argument("--max-minutes", type=float)
    parser.add_argument("--device", help="auto, cpu or cuda")
    parser.add_argument("--num-workers", type=int, help="DataLoader worker processes per training process")
    parser.add_argument("--resume", action="store_true",
                        help=f"continue the interrupted run from <out>/{STATE_FILE} (written after each epoch)")
    parser.add_argument("--quiet", action="store_true")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurofusion.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="experiment YAML (configs/cardio_demo.yaml)")
    parser.add_argument("--architecture", help="override the config's architecture (baselines)")
    add_training_arguments(parser, out="checkpoint folder to write")
    args = parser.parse_args(argv)
    context = SINGLE
    try:
        context = context_from_environment()
        experiment = load_experiment(args.config)
        experiment = override(experiment, args)
        cohort = open_cohort(args.data)
        result = fit(cohort, experiment.model, experiment.train, progress=not args.quiet,
                     state_path=Path(args.out) / STATE_FILE, resume=args.resume, context=context)
        if not context.is_main:  # rank 0 evaluates and writes
            return 0
        evaluation = open_cohort(args.eval_data) if args.eval_data else cohort
        metrics = final_metrics(result, cohort, evaluation, num_workers=experiment.train.num_workers)
        training = training_record(
            result, command="python -m neurofusion.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            data=args.data, data_hash=data_hash(cohort, cohort.ids("train") + cohort.ids("val")),
            train=experiment.train, processes=context.world_size)
        save_checkpoint(args.out, result.model, result.tokenizer, metrics=metrics, training=training, ood=result.ood)
    except (CohortError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        teardown(context)
    test = metrics.get("test")
    key, name = ("c_index", "C-index") if result.model.config.outcome == "survival" else ("accuracy", "accuracy")
    value = test[key]["value"] if test else None
    summary = (f"test {name} {value:.3f}" if value is not None else f"test {name} not defined: {test[key]['reason']}"
               ) if test else "no test split evaluated"
    print(f"saved {args.out} (best epoch {result.best_epoch}, {result.minutes:.1f} min, {summary})")
    return 0


def training_record(result: TrainResult, *, command: str, data: str | Path, data_hash: str, train: TrainConfig,
                    processes: int = 1, **extra) -> dict:
    """training.json of a checkpoint trained by ``fit``: the command, the data and its hash, the train settings,
    how the kept epoch was chosen, the history, and the library versions; ``extra`` entries (a distilled
    student's teacher) follow."""
    return {
        "command": command,
        "data": str(Path(data)),
        "data_hash": data_hash,
        "train_config": dataclasses.asdict(train),
        "selected_by": selected_by(result.model.config),
        "best_epoch": result.best_epoch,
        "epochs": len(result.history),
        "minutes": round(result.minutes, 2),
        "processes": processes,
        "mixed_precision": result.mixed_precision or mixed_precision(next(result.model.parameters()).device),
        "out_of_distribution": result.ood.summary() if result.ood is not None else result.ood_note,
        "history": result.history,
        "versions": library_versions(),
        **extra,
    }


def library_versions() -> dict[str, str]:
    """The versions a checkpoint's training.json records."""
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__}


def final_metrics(result: TrainResult, cohort: CohortReader, evaluation: CohortReader, *,
                  num_workers: int = 0, splits: tuple[str, ...] = ("val", "test")) -> dict:
    """Metrics of the kept weights on the val split and the evaluation cohort's test split (``splits``: which
    of the two); survival metrics weight censoring by the training cohort's train outcomes. The cases stream
    through a DataLoader with ``num_workers`` worker processes (Predictor.predict_streamed): a split is never
    in memory whole."""
    predictor = Predictor(result.model, result.tokenizer, next(result.model.parameters()).device)
    metrics = {}
    for name, reader in (("val", cohort), ("test", evaluation)):
        if name not in splits:
            continue
        ids = reader.ids(name)
        if not ids:
            continue
        cases = SplitCases(reader, ids)
        if result.model.config.outcome == "survival":
            reference = censoring_reference(cohort, cohort.ids("train"), "the training cohort's train split")
            metrics[name] = survival_report(predictor.predict_survival_streamed(cases, num_workers=num_workers),
                                            reference)
        else:
            labels, probabilities = predictor.predict_streamed(cases, num_workers=num_workers)
            metrics[name] = classification_metrics(labels, probabilities, result.model.classes, split=name)
            if getattr(reader, "timed", False):
                metrics[name]["risk"] = timed_risk_report(reader, ids, labels, probabilities)
    return metrics


@torch.no_grad()
def _validation_record(model: MultiModalModel, loader: DataLoader, device: torch.device) -> dict[str, float]:
    """The val split's numbers for one epoch: accuracy and macro-F1 of a classifier; C-index of the risk score
    1 - S(horizon) and the mean negative log-likelihood of a survival model (cases with an outcome)."""
    model.eval()
    config = model.config
    rows: dict[str, list[np.ndarray]] = {"labels": [], "scores": [], "outcomes": [], "nll": []}
    for streamed in loader:
        batch: Batch = streamed.batch.to(device)
        output = model(batch)
        if config.outcome == "survival":
            targets = primary_targets(config, batch)
            known = int((targets[:, 0] >= 0).sum())
            rows["nll"].append(np.array([float(SurvivalHead.loss(output.hazard_logits.float(), targets)) * known,
                                         known]))
            rows["scores"].append(output.survival.float().cpu().numpy())
            rows["outcomes"].append(batch.outcomes.cpu().numpy())
        else:
            rows["labels"].append(batch.labels.cpu().numpy())
            rows["scores"].append(output.probabilities.float().cpu().numpy())
    scores = np.concatenate(rows["scores"])
    if config.outcome == "survival":
        outcomes = np.concatenate(rows["outcomes"]).astype(float)
        keep = ~np.isnan(outcomes[:, 0])
        risk = config.survival_bins.risk_score(scores.astype(float), config.horizon)
        c_index = concordance_index(outcomes[keep, 0], outcomes[keep, 1], risk[keep], n_boot=1).value
        nll = np.sum(rows["nll"], axis=0)
        return {"val_c_index": float(c_index), "val_nll": float(nll[0] / max(nll[1], 1))}
    labels, predicted = np.concatenate(rows["labels"]), scores.argmax(1)
    record = {"val_accuracy": float((predicted == labels).mean()),
              "val_macro_f1": float(f1_score(labels, predicted, average="macro", labels=range(len(config.classes)),
                                             zero_division=0))}
    if len(config.classes) == 2:  # 0.5 when the split has one class only (no ranking to judge)
        record["val_auroc"] = float(roc_auc_score(labels, scores[:, 1])) if len(set(labels)) == 2 else 0.5
    return record


def _no_text(notes: list[str]) -> dict[str, torch.Tensor]:
    return {}


def _tokenizer(notes: Iterable[str | None], config: ModelConfig, cohort: CohortReader):
    if config.text.pretrained:
        return load_tokenizer(config.text.pretrained)
    notes = [note for note in notes if note]
    if not notes:
        raise CohortError("the train split has no notes to build a vocabulary from", path=cohort.root / COHORT_CSV)
    return train_wordpiece(notes, config.text.vocab_size)


def override(experiment: ExperimentConfig, args: argparse.Namespace) -> ExperimentConfig:
    """The experiment with the command line's --architecture, --seed, --max-epochs, --max-minutes, --device and
    --num-workers in place of the config's (those given)."""
    data = {"model": experiment.model.to_dict(), "train": dataclasses.asdict(experiment.train)}
    if args.architecture:
        data["model"]["architecture"] = args.architecture
    for name, key in (("seed", "seed"), ("max_epochs", "max_epochs"), ("max_minutes", "max_minutes"),
                      ("device", "device"), ("num_workers", "num_workers")):
        if getattr(args, name) is not None:
            data["train"][key] = getattr(args, name)
    return ExperimentConfig.from_dict(data)


if __name__ == "__main__":
    sys.exit(main())
