"""Streaming training data: ``torch.utils.data.DataLoader`` over :class:`CaseDataset`, so a cohort is read case by
case (in worker processes when asked) and never held in memory whole.

Everything random about a training case (augmentation, modality dropout) comes from a generator seeded by
``(seed, epoch, case index)``, never by the worker that happens to read it: the batches, and so the trained
weights, are the same whatever the number of workers or data-parallel processes. The order of the cases is a
``DistributedSampler``'s (seeded by ``seed + epoch``) also in one process, so N processes with batch size b see,
together, the batches one process with batch size N * b sees.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler

from neurofusion.data.augment import AugmentConfig, augment_batch
from neurofusion.data.cohort import CaseSequence
from neurofusion.data.dataset import Batch, CaseDataset, Collate, InputSpec, prepare_case
from neurofusion.data.schema import Case

__all__ = ["EpochSampler", "SplitCases", "StreamedBatch", "TrainingCases", "TrainingCollate", "case_loader",
           "modality_dropout", "sample_rng"]

# cardio's aliases of the first modality of each kind in a prepared item: dropped once augmentation replaced
# the tensors they name, so nothing reads the unaugmented ones by mistake
_ALIASES = ("image", "signal", "lead_mask", "numeric", "numeric_mask", "categorical", "note")


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one case in one epoch: the same in any worker of any process."""
    return np.random.default_rng([seed, epoch, index])


def modality_dropout(present: torch.Tensor, p: float, rng: np.random.Generator) -> torch.Tensor:
    """Hide each present modality with probability p, always keeping at least one per case, so the model
    learns its missing embeddings on cases it has seen complete. present: (B, M) bool -> (B, M) bool."""
    if p <= 0:
        return present
    keep = torch.from_numpy(rng.random(tuple(present.shape)) >= p).to(present.device) & present
    empty = ~keep.any(dim=1)
    if empty.any():
        # restore one random present modality for cases that lost them all
        scores = torch.from_numpy(rng.random(tuple(present.shape))).to(present.device) * present
        restore = torch.nn.functional.one_hot(scores.argmax(1), present.shape[1]).bool()
        keep = torch.where(empty[:, None], restore & present, keep)
    return keep


class SplitCases(Sequence[Case]):
    """The cases of a list of ids of a cohort, read when indexed (nothing is loaded up front)."""

    def __init__(self, cohort: CaseSequence, ids: Sequence[str]) -> None:
        self.cohort, self.ids = cohort, list(ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Case:  # type: ignore[override]
        return self.cohort[self.ids[i]]


class TrainingCases(CaseDataset):
    """Training cases, prepared, augmented and given their modality-dropout mask where they are read.

    Indexed by ``(epoch, i)`` (what :class:`EpochSampler` yields; a plain ``i`` is epoch 0): the item of
    ``prepare_case`` with the augmented tensors and notes, and ``kept`` (M,) bool, the modalities modality
    dropout leaves visible."""

    def __init__(self, cases: Sequence[Case], spec: InputSpec, *, augment: AugmentConfig | None,
                 modality_dropout: float, seed: int) -> None:
        super().__init__(cases, spec, seed=seed)
        self.augment, self.dropout, self.seed = augment, modality_dropout, seed

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        index = self.indices[i]
        item = prepare_case(self.cases[index], self.spec)
        rng = sample_rng(self.seed, epoch, index)
        if self.augment is not None:
            augmented = augment_batch(Collate()([item]), self.augment, rng)
            item["inputs"] = {name: {k: v[0] for k, v in tensors.items()} for name, tensors in augmented.inputs.items()}
            item["texts"] = {name: notes[0] for name, notes in augmented.texts.items()}
            for alias in _ALIASES:
                item.pop(alias, None)
        item["kept"] = modality_dropout(item["present"][None], self.dropout, rng)[0]
        return item


class EpochSampler(Sampler):
    """This process's share of the shuffled cases of one epoch, as ``(epoch, i)``: a ``DistributedSampler``
    (``seed + epoch`` orders the cases; process r of N takes every N-th from r) that also tells the dataset
    the epoch, which a persistent worker could not learn from the main process otherwise. ``set_epoch`` before
    each epoch."""

    def __init__(self, n: int, *, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True) -> None:
        self.inner = DistributedSampler(range(n), num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, i) for i in self.inner)


@dataclasses.dataclass
class StreamedBatch:
    """A collated batch and, for training, its modality-dropout mask ``kept`` (B, M); pinned by the DataLoader
    when it pins memory (``pin_memory``)."""

    batch: Batch
    kept: torch.Tensor | None = None

    def pin_memory(self) -> "StreamedBatch":
        batch = self.batch
        batch.inputs = {name: {k: v.pin_memory() for k, v in tensors.items()} for name, tensors in batch.inputs.items()}
        batch.present, batch.labels, batch.outcomes = (t.pin_memory() for t in (batch.present, batch.labels,
                                                                                  batch.outcomes))
        self.kept = None if self.kept is None else self.kept.pin_memory()
        return self

    def to(self, device: torch.device) -> tuple[Batch, torch.Tensor | None]:
        return self.batch.to(device), None if self.kept is None else self.kept.to(device)


class TrainingCollate:
    """Prepared items -> :class:`StreamedBatch`, tokenised in the worker (after augmentation rewrote the notes)."""

    def __init__(self, tokenize: Callable[[list[str]], Mapping[str, torch.Tensor]] | None) -> None:
        self.collate = Collate(tokenize)

    def __call__(self, items: list[dict]) -> StreamedBatch:
        kept = torch.stack([item["kept"] for item in items]) if "kept" in items[0] else None
        return StreamedBatch(self.collate(items), kept)


def _quiet_tokenizers(worker_id: int) -> None:
    # the tokenizer's own threads are not fork-safe; a worker tokenises one batch at a time anyway
    os.environ["TOKENIZERS_PARALLELISM"] = "false"


def case_loader(dataset: torch.utils.data.Dataset, *, batch_size: int, collate: TrainingCollate,
                num_workers: int = 0, sampler: Sampler | None = None, device: torch.device | None = None,
                seed: int = 0) -> DataLoader:
    """A DataLoader of :class:`StreamedBatch`: ``num_workers`` worker processes (0: the calling process; more:
    persistent across epochs), memory pinned for a CUDA device. Its own torch generator, so creating it draws
    nothing from the global one (the model's dropout stays the same whatever the number of workers)."""
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=device is not None and device.type == "cuda",
                      worker_init_fn=_quiet_tokenizers if num_workers else None,
                      generator=torch.Generator().manual_seed(seed))
