"""From cases to model outputs: batching, tokenising, moving to the device, and predicting under a
presence mask. Shared by training, evaluation and the explanations."""

from __future__ import annotations

import threading
import weakref
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from neurofusion.data.dataset import Batch, Collate, InputSpec, prepare_case
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.data.tokenizer import make_tokenize
from neurofusion.models.model import ModelOutput, MultiModalModel


_LOCKS: "weakref.WeakKeyDictionary[MultiModalModel, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: MultiModalModel) -> threading.RLock:
    """The re-entrant lock of one shared model object. Attribution methods (Captum) register forward
    hooks on a model's modules, and a hook acts on every forward pass, from any thread, while it is
    attached; so every forward pass through a model that is shared between threads holds this lock."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def parse_modalities(text: str | Iterable[str] | None) -> tuple[str, ...]:
    """'image,text' or ['image', 'text'] -> ('image', 'text'); unknown names are an error."""
    if text is None or text == "":
        return ()
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n) for n in text]
    unknown = [n for n in names if n not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}; expected some of {', '.join(MODALITIES)}")
    return tuple(names)


def drop_mask(present: torch.Tensor, drop: Sequence[str]) -> torch.Tensor:
    """(B, 4) presence with the named modalities hidden for every case."""
    out = present.clone()
    for name in drop:
        out[:, MODALITIES.index(name)] = False
    return out


class Predictor:
    """A model with its tokenizer and input spec: cases in, outputs out, in batches, on one device."""

    def __init__(self, model: MultiModalModel, tokenizer: PreTrainedTokenizerFast | None,
                 device: torch.device | str = "cpu") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec: InputSpec = model.config.input_spec()
        self.collate = Collate(make_tokenize(tokenizer, model.config.text.max_length) if tokenizer else _no_text)
        self.device = torch.device(device)

    def batch(self, cases: Sequence[Case]) -> Batch:
        return self.collate([prepare_case(c, self.spec) for c in cases]).to(self.device)

    def batches(self, cases: Sequence[Case], batch_size: int = 64) -> Iterator[Batch]:
        for start in range(0, len(cases), batch_size):
            yield self.batch(cases[start:start + batch_size])

    @torch.no_grad()
    def predict(self, cases: Sequence[Case], *, drop: Sequence[str] = (), batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """-> (labels (N,) with -1 for unknown, probabilities (N, C)) with the ``drop`` modalities hidden."""
        self.model.eval()
        # batches of similar note length: a batch's notes are padded to its longest, so this skips most of
        # the padding the text encoder would otherwise attend over (the results come back in input order)
        order = np.argsort([len(c.note or "") for c in cases], kind="stable")
        labels, probabilities = [], []
        for batch in self.batches([cases[i] for i in order], batch_size):
            with model_lock(self.model):
                output: ModelOutput = self.model(batch, present=drop_mask(batch.present, drop))
            labels.append(batch.labels.cpu().numpy())
            probabilities.append(output.probabilities.float().cpu().numpy())
        back = np.argsort(order)
        return np.concatenate(labels)[back], np.concatenate(probabilities)[back]


def _no_text(notes: list[str]) -> dict[str, torch.Tensor]:
    return {}
