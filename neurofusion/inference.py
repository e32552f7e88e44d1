"""From cases to model outputs: batching, tokenising, moving to the device, and predicting under a
presence mask. Shared by training, evaluation and the explanations."""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerFast

from neurofusion.data.dataset import Batch, Collate, InputSpec, prepare_case
from neurofusion.data.errors import CohortError
from neurofusion.data.schema import MODALITIES, Case
from neurofusion.data.tokenizer import make_tokenize
from neurofusion.loader import StreamedBatch, case_loader
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
        arrays = self._run(cases, drop, batch_size, _read_classes)
        return arrays["labels"], arrays["probabilities"]

    @torch.no_grad()
    def predict_survival(self, cases: Sequence[Case], *, drop: Sequence[str] = (), horizon: float | None = None,
                         batch_size: int = 64) -> SurvivalPrediction:
        """Survival curves of the cases with the ``drop`` modalities hidden, S(horizon) and the risk score
        1 - S(horizon) (horizon: the model's, ``config.horizon``, by default). A classification model:
        ValueError."""
        if self.model.config.outcome != "survival":
            raise ValueError("this model is a classifier, not a survival model: use Predictor.predict")
        arrays = self._run(cases, drop, batch_size, _read_survival)
        return self._survival_prediction([c.case_id for c in cases], arrays, horizon)

    def loader(self, cases: Sequence[Case], *, batch_size: int = 64, num_workers: int = 0) -> DataLoader:
        """A DataLoader of :class:`PredictionBatch` over ``cases`` in order: read, prepared and tokenised in
        ``num_workers`` worker processes (0: this one), memory pinned when the model is on a GPU."""
        return case_loader(PredictionCases(cases, self.spec), batch_size=batch_size,
                           collate=PredictionCollate(self.collate), num_workers=num_workers,  # type: ignore[arg-type]
                           device=self.device)

    @torch.no_grad()
    def predict_streamed(self, cases: Sequence[Case], *, drop: Sequence[str] = (), batch_size: int = 64,
                         num_workers: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict` with the cases read through :meth:`loader` (``num_workers`` processes), so a split is
        never in memory whole: ``cases`` may be a :class:`neurofusion.loader.SplitCases` that reads each case
        when indexed. The same labels and probabilities (batches follow the input order, not note length). A
        case that cannot be read or prepared: CohortError, as reading it for :meth:`predict` raises."""
        if self.model.config.outcome != "classification":
            raise NotAClassifierError("this model predicts survival, not classes: use "
                                      "Predictor.predict_survival_streamed")
        _, arrays = self._stream(cases, drop, batch_size, num_workers, _read_classes)
        return arrays["labels"], arrays["probabilities"]

    @torch.no_grad()
    def predict_survival_streamed(self, cases: Sequence[Case], *, drop: Sequence[str] = (),
                                  horizon: float | None = None, batch_size: int = 64,
                                  num_workers: int = 0) -> SurvivalPrediction:
        """:meth:`predict_survival` with the cases read through :meth:`loader` (see :meth:`predict_streamed`)."""
        if self.model.config.outcome != "survival":
            raise ValueError("this model is a classifier, not a survival model: use Predictor.predict_streamed")
        case_ids, arrays = self._stream(cases, drop, batch_size, num_workers, _read_survival)
        return self._survival_prediction(case_ids, arrays, horizon)

    def _survival_prediction(self, case_ids: list[str], arrays: dict[str, np.ndarray],
                             horizon: float | None) -> SurvivalPrediction:
        bins = self.model.config.survival_bins
        horizon = self.model.config.horizon if horizon is None else float(horizon)
        curves = arrays["curves"].astype(np.float64)
        at_horizon = np.asarray(bins.survival_at(curves, horizon))
        outcomes = arrays["outcomes"].astype(np.float64)
        return SurvivalPrediction(case_ids, curves, at_horizon, 1.0 - at_horizon, horizon, bins, outcomes[:, 0],
                                  outcomes[:, 1])

    def _stream(self, cases: Sequence[Case], drop: Sequence[str], batch_size: int, num_workers: int,
                read: Callable[[Batch, ModelOutput], dict[str, torch.Tensor]]
                ) -> tuple[list[str], dict[str, np.ndarray]]:
        """``read(batch, output)`` over the loader's batches -> the case ids and its arrays, in input order."""
        if len(cases) == 0:
            raise ValueError("no cases to predict")
        self.model.eval()
        case_ids: list[str] = []
        parts: dict[str, list[np.ndarray]] = {}
        for streamed in self.loader(cases, batch_size=batch_size, num_workers=num_workers):
            streamed.raise_errors()
            batch = streamed.batch.to(self.device)
            case_ids += batch.case_ids
            self._read_batch(batch, drop, read, parts)
        return case_ids, {key: np.concatenate(values) for key, values in parts.items()}

    def _read_batch(self, batch: Batch, drop: Sequence[str],
                    read: Callable[[Batch, ModelOutput], dict[str, torch.Tensor]],
                    parts: dict[str, list[np.ndarray]]) -> None:
        """The model on ``batch`` with ``drop`` hidden; ``read(batch, output)``'s tensors appended to ``parts`` as
        arrays (floats as float32)."""
        with model_lock(self.model):
            output = self.model(batch, present=drop_mask(batch.present, drop, batch.names))
        for key, value in read(batch, output).items():
            parts.setdefault(key, []).append(value.float().cpu().numpy() if value.is_floating_point()
                                             else value.cpu().numpy())

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
            self._read_batch(batch, drop, read, parts)
        back = np.argsort(order)
        return {key: np.concatenate(values)[back] for key, values in parts.items()}


class PredictionCases(torch.utils.data.Dataset):
    """Cases read and prepared where they are indexed (in a DataLoader worker when there are workers).

    An item is ``prepare_case``'s dict with ``read_seconds`` / ``prepare_seconds``; a case whose reading raises
    CohortError (a missing or damaged file) is the dict ``{"case_id", "error"}`` instead, so the caller decides
    what an unreadable case means (prediction raises it, the explanation store records it). A case the model
    cannot read (CohortError or ValueError from ``prepare_case``) becomes ``{"case_id", "error", "prepare": True}``.
    ``cases``: any sequence of cases, e.g. :class:`neurofusion.loader.SplitCases`, whose ``ids`` name the cases
    that could not be read."""

    def __init__(self, cases: Sequence[Case], spec: InputSpec) -> None:
        self.cases, self.spec = cases, spec

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> dict:
        started = time.perf_counter()
        try:
            case = self.cases[i]
        except CohortError as err:
            ids = getattr(self.cases, "ids", None)
            return {"case_id": ids[i] if ids is not None else str(i), "error": str(err), "position": i}
        read = time.perf_counter()
        try:
            item = prepare_case(case, self.spec)
        except ValueError as err:  # CohortError is a ValueError
            return {"case_id": case.case_id, "error": str(err), "prepare": True, "position": i}
        item.update(read_seconds=read - started, prepare_seconds=time.perf_counter() - read, position=i)
        return item


@dataclass
class PredictionBatch:
    """A collated batch of the readable cases of a loader batch (None when none was readable), their positions
    in the loader's cases, ``errors`` {case_id: why it could not be read} of the others, ``prepare_errors``
    {case_id: why the model cannot read it}, and the seconds spent reading, preparing and collating them (in
    the worker that did it)."""

    batch: Batch | None
    positions: list[int]
    errors: dict[str, str]
    prepare_errors: dict[str, str]
    read_seconds: float
    prepare_seconds: float

    def raise_errors(self, *, unreadable: bool = True) -> None:
        """CohortError naming the first case the model cannot read (with ``unreadable``, first the first case
        that could not be read at all), if any."""
        for case_id, why in {**(self.errors if unreadable else {}), **self.prepare_errors}.items():
            raise CohortError(why if case_id in why else f"case {case_id}: {why}")

    def pin_memory(self) -> "PredictionBatch":
        if self.batch is not None:
            self.batch = StreamedBatch(self.batch).pin_memory().batch
        return self


class PredictionCollate:
    """Items of :class:`PredictionCases` -> :class:`PredictionBatch`, tokenised where it runs (the worker)."""

    def __init__(self, collate: Collate) -> None:
        self.collate = collate

    def __call__(self, items: list[dict]) -> PredictionBatch:
        started = time.perf_counter()
        readable = [item for item in items if "error" not in item]
        errors = {item["case_id"]: item["error"] for item in items if "error" in item and not item.get("prepare")}
        prepare_errors = {item["case_id"]: item["error"] for item in items if item.get("prepare")}
        batch = self.collate(readable) if readable else None
        return PredictionBatch(batch, [item["position"] for item in readable], errors, prepare_errors,
                               sum(item["read_seconds"] for item in readable),
                               sum(item["prepare_seconds"] for item in readable) + time.perf_counter() - started)


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


def _read_classes(batch: Batch, output: ModelOutput) -> dict[str, torch.Tensor]:
    return {"labels": batch.labels, "probabilities": output.probabilities}


def _read_survival(batch: Batch, output: ModelOutput) -> dict[str, torch.Tensor]:
    return {"curves": output.survival, "outcomes": batch.outcomes}


def _no_text(notes: list[str]) -> dict[str, torch.Tensor]:
    return {}
