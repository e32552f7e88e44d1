"""From cases to model outputs: batching, tokenising, moving to the device, and predicting under a
presence mask. Shared by training, evaluation and the explanations."""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from neurofusion.data.dataset import Batch, Collate, InputSpec, prepare_case
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.data.tokenizer import make_tokenize
from neurofusion.models.model import ModelOutput, MultiModalModel, NotAClassifierError

if TYPE_CHECKING:  # neurofusion.survival loads scikit-survival, which classification never needs
    from neurofusion.survival import SurvivalBins


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


def parse_modalities(text: str | Iterable[str] | None, modalities: Sequence[str] = MODALITIES) -> tuple[str, ...]:
    """'image,text' or ['image', 'text'] -> ('image', 'text'); names not in ``modalities`` (the declared
    names, cardio's by default) are an error."""
    if text is None or text == "":
        return ()
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n) for n in text]
    unknown = [n for n in names if n not in modalities]
    if unknown:
        raise ValueError(f"unknown modality {unknown[0]!r}; expected some of {', '.join(modalities)}")
    return tuple(names)


def drop_mask(present: torch.Tensor, drop: Sequence[str], modalities: Sequence[str] = MODALITIES) -> torch.Tensor:
    """(B, M) presence (columns = ``modalities``, cardio's by default) with the named modalities hidden for
    every case."""
    out = present.clone()
    names = list(modalities)
    for name in drop:
        if name not in names:
            raise ValueError(f"unknown modality {name!r}; expected some of {', '.join(names)}")
        out[:, names.index(name)] = False
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
        """-> (labels (N,) with -1 for unknown, probabilities (N, C)) with the ``drop`` modalities hidden.
        A survival model has no classes: NotAClassifierError, use :meth:`predict_survival`."""
        if self.model.config.outcome != "classification":
            raise NotAClassifierError("this model predicts survival, not classes: use Predictor.predict_survival")
        read = lambda batch, output: {"labels": batch.labels, "probabilities": output.probabilities}  # noqa: E731
        arrays = self._run(cases, drop, batch_size, read)
        return arrays["labels"], arrays["probabilities"]

    @torch.no_grad()
    def predict_survival(self, cases: Sequence[Case], *, drop: Sequence[str] = (), horizon: float | None = None,
                         batch_size: int = 64) -> SurvivalPrediction:
        """Survival curves of the cases with the ``drop`` modalities hidden, S(horizon) and the risk score
        1 - S(horizon) (horizon: the model's, ``config.horizon``, by default). A classification model:
        ValueError."""
        if self.model.config.outcome != "survival":
            raise ValueError("this model is a classifier, not a survival model: use Predictor.predict")
        bins = self.model.config.survival_bins
        horizon = self.model.config.horizon if horizon is None else float(horizon)
        read = lambda batch, output: {"curves": output.survival, "outcomes": batch.outcomes}  # noqa: E731
        arrays = self._run(cases, drop, batch_size, read)
        curves = arrays["curves"].astype(np.float64)
        at_horizon = np.asarray(bins.survival_at(curves, horizon))
        outcomes = arrays["outcomes"].astype(np.float64)
        return SurvivalPrediction([c.case_id for c in cases], curves, at_horizon, 1.0 - at_horizon, horizon, bins,
                                  outcomes[:, 0], outcomes[:, 1])

    def _run(self, cases: Sequence[Case], drop: Sequence[str], batch_size: int,
             read: Callable[[Batch, ModelOutput], dict[str, torch.Tensor]]) -> dict[str, np.ndarray]:
        """``read(batch, output)`` over the cases in batches with ``drop`` hidden -> its arrays, concatenated in
        input order."""
        self.model.eval()
        # batches of similar note length: a batch's notes are padded to its longest, so this skips most of
        # the padding the text encoder would otherwise attend over (the results come back in input order)
        order = np.argsort([_text_length(c, self.spec) for c in cases], kind="stable")
        parts: dict[str, list[np.ndarray]] = {}
        for batch in self.batches([cases[i] for i in order], batch_size):
            with model_lock(self.model):
                output = self.model(batch, present=drop_mask(batch.present, drop, batch.names))
            for key, value in read(batch, output).items():
                parts.setdefault(key, []).append(value.float().cpu().numpy() if value.is_floating_point()
                                                 else value.cpu().numpy())
        back = np.argsort(order)
        return {key: np.concatenate(values)[back] for key, values in parts.items()}


@dataclass(frozen=True)
class SurvivalPrediction:
    """A survival model's predictions for N cases: ``curves`` (N, K) = S(end of each bin of ``bins``),
    ``survival`` (N,) = S(horizon), ``risk`` (N,) = 1 - S(horizon), and the cases' recorded outcome
    ``time`` / ``event`` (N,), NaN where the cohort gives none."""

    case_ids: list[str]
    curves: np.ndarray
    survival: np.ndarray
    risk: np.ndarray
    horizon: float
    bins: SurvivalBins
    time: np.ndarray
    event: np.ndarray

    @property
    def known(self) -> np.ndarray:
        """(N,) bool: cases with a recorded outcome."""
        return ~np.isnan(self.time)


def _text_length(case: Case, spec: InputSpec) -> int:
    """Characters of the case's notes (every text modality the model reads)."""
    return sum(len(case.value(m.name) or "") for m in spec.modalities
               if m.kind == "text" and m.name in case.modality_names)


def _no_text(notes: list[str]) -> dict[str, torch.Tensor]:
    return {}
