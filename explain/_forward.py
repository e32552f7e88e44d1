"""Forward functions for attribution: the explained scores (class logits, or a survival model's chosen
quantity, :mod:`explain.targets`) as a function of one modality's input, with the other modalities'
encoder outputs computed once and held fixed.

Attributions are taken on logits, not probabilities: a confident prediction saturates the softmax, which
would leave every attribution near zero however much the input mattered. A survival model's quantity (a
probability of surviving past a horizon, or its complement) is explained as it is, as one column.

This is what makes the per-modality attributions fast without changing them: integrating along one
modality's path never needs the other encoders again. Captum attaches hooks to the shared model's
modules, which would act on every other thread's forward pass too, so all of it runs under the model's
lock (:func:`neurofusion.inference.model_lock`).

Every declared modality is addressed by name; each input function defaults to the first declared
modality of its kind (cardio's image, text, signal and tabular).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch

from explain.importance import modality_names
from explain.targets import SurvivalTarget, explained_scores
from neurofusion.data.dataset import Batch
from neurofusion.inference import model_lock
from neurofusion.models.model import Encoded, MultiModalModel

__all__ = ["ModalityForward", "attribution_mode", "model_lock"]


@contextmanager
def attribution_mode(model: MultiModalModel) -> Iterator[None]:
    """Hold the model's lock with gradients on, tracked for inputs only. Attribution differentiates with
    respect to inputs (or a layer's activations), never the weights; leaving the weights untracked skips
    the weight-gradient half of every backward pass and gives the same attributions."""
    with model_lock(model), torch.enable_grad():
        tracked = [p for p in model.parameters() if p.requires_grad]
        for p in tracked:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in tracked:
                p.requires_grad_(True)


class ModalityForward:
    """Explained scores for one case as a function of a single modality's input.

    ``image(x)`` with x (n, C, S, S) (C = 1 grey, 3 colour), ``signal(x)`` with x (n, L, T),
    ``text_embeddings(e)`` with e (n, N, H) word embeddings, ``text_ids(ids)`` with ids (n, N),
    ``numeric(x)`` with x (n, Fn): each returns (n, C) logits, or (n, 1) for a survival quantity. Each
    takes ``name=`` (a declared modality of that kind; default the first); :meth:`function` binds it.
    """

    def __init__(self, model: MultiModalModel, batch: Batch, alone: bool = False,
                 survival: SurvivalTarget | None = None, keep_features: bool = False,
                 note_layer: int | None = None) -> None:
        """alone=False: the other modalities stay as the case has them (faithful to this prediction);
        alone=True: each modality is explained with the others hidden, i.e. what the model reads in it by
        itself (useful when redundant modalities leave one with little marginal effect). survival: the
        explained quantity of a survival model (default 5-year survival). keep_features: keep each image
        encoder's last ResNet stage activations from the encoding pass in ``features`` (name -> (1, C, h, w))
        for Grad-CAM without a second backbone pass (image encoders without ResNet stages are left out).
        note_layer: keep what each text encoder's BERT passes to that layer in ``layer_inputs`` (name ->
        (hidden states (1, N, H), other arguments, keyword arguments)), so a note attributed there needs no
        second pass through the layers below."""
        if batch.present.shape[0] != 1:
            raise ValueError(f"attribution explains one case at a time, got a batch of {batch.present.shape[0]}")
        self.model = model
        self.batch = batch
        self.alone = alone
        self.survival = survival
        self.names = modality_names(model, batch)
        specs = getattr(model, "specs", None) or batch.modalities
        self.kinds = {s.name: s.kind for s in specs}
        self.features: dict[str, torch.Tensor] = {}
        handles = []
        if keep_features:
            for name in self.of_kind("image"):
                stage = _last_stage(model.encoders[name]) if name in getattr(model, "encoders", {}) else None
                if stage is not None:
                    handles.append(stage.register_forward_hook(partial(_keep, self.features, name)))
        self.layer_inputs: dict[str, tuple] = {}
        self.note_layer = note_layer
        if note_layer is not None:
            encoders = getattr(model, "encoders", {})
            for name in self.of_kind("text"):
                bert = getattr(encoders[name], "bert", None) if name in encoders else None
                if bert is not None and 0 <= note_layer < len(bert.encoder.layer):
                    handles.append(bert.encoder.layer[note_layer].register_forward_pre_hook(
                        partial(_keep_inputs, self.layer_inputs, name), with_kwargs=True))
        try:
            with model_lock(model), torch.no_grad():
                self.encoded = model.encode(batch)
        finally:
            for handle in handles:
                handle.remove()

    def first(self, kind: str) -> str | None:
        """The first declared modality of ``kind`` (None when there is none)."""
        return next((n for n in self.names if self.kinds.get(n) == kind), None)

    def of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(n for n in self.names if self.kinds.get(n) == kind)

    def _name(self, name: str | None, kind: str) -> str:
        name = self.first(kind) if name is None else name
        if name is None or self.kinds.get(name) != kind:
            raise ValueError(f"{name!r} is not a declared {kind} modality (declared {kind}: "
                             f"{', '.join(self.of_kind(kind)) or 'none'})")
        return name

    def scores(self, output) -> torch.Tensor:
        """(n, C) what attributions explain, from a ModelOutput."""
        return explained_scores(self.model, output, self.survival)

    def with_embedding(self, modality: str, embedding: torch.Tensor) -> torch.Tensor:
        n = embedding.shape[0]
        fixed = self.encoded.repeat(n)
        vectors = dict(fixed.vectors)
        vectors[modality] = embedding.to(vectors[modality].dtype)
        encoded = Encoded(vectors, fixed.present, fixed.spatial_attention, fixed.temporal_attention)
        present = fixed.present
        if self.alone:
            present = torch.zeros_like(present)
            present[:, self.names.index(modality)] = True
        return self.scores(self.model.fuse(encoded, present))

    def with_embeddings(self, parts: list[tuple[str, torch.Tensor]]) -> torch.Tensor:
        """Several modalities' paths through one fusion pass: ``parts`` = [(modality, embeddings (n_k, d))];
        the rows of part k are the case with that modality's embedding replaced (the others as the case has
        them, or hidden when ``alone``). -> (sum n_k, C) explained scores, part-major. Each row depends on its
        own embedding only, so one backward pass gives every row's gradient."""
        counts = [e.shape[0] for _, e in parts]
        fixed = self.encoded.repeat(sum(counts))
        vectors = {}
        for m, vector in fixed.vectors.items():
            pieces, start = [], 0
            for (name, embedding), n in zip(parts, counts):
                pieces.append(embedding.to(vector.dtype) if name == m else vector[start:start + n])
                start += n
            vectors[m] = torch.cat(pieces)
        present = fixed.present
        if self.alone:
            present = torch.zeros_like(present)
            start = 0
            for (name, _), n in zip(parts, counts):
                present[start:start + n, self.names.index(name)] = True
                start += n
        encoded = Encoded(vectors, fixed.present, fixed.spatial_attention, fixed.temporal_attention)
        return self.scores(self.model.fuse(encoded, present))

    def image(self, image: torch.Tensor, name: str | None = None) -> torch.Tensor:
        name = self._name(name, "image")
        return self.with_embedding(name, self.model.encoders[name](image).embedding)

    def signal(self, signal: torch.Tensor, name: str | None = None) -> torch.Tensor:
        name = self._name(name, "signal")
        return self.with_embedding(name, self.model.encoders[name](signal).embedding)

    def text_embeddings(self, embeddings: torch.Tensor, name: str | None = None) -> torch.Tensor:
        name = self._name(name, "text")
        mask = self.inputs(name)["attention_mask"].expand(embeddings.shape[0], -1)
        return self.with_embedding(name, self.model.encoders[name](None, mask, inputs_embeds=embeddings).embedding)

    def text_ids(self, input_ids: torch.Tensor, name: str | None = None) -> torch.Tensor:
        name = self._name(name, "text")
        mask = self.inputs(name)["attention_mask"].expand(input_ids.shape[0], -1)
        return self.with_embedding(name, self.model.encoders[name](input_ids, mask).embedding)

    def numeric(self, numeric: torch.Tensor, name: str | None = None) -> torch.Tensor:
        name = self._name(name, "tabular")
        return self.with_embedding(name, self.tabular_embedding(name, numeric))

    def tabular_embedding(self, name: str, numeric: torch.Tensor, categorical: torch.Tensor | None = None,
                          ) -> torch.Tensor:
        """The tabular encoder's embedding of ``numeric`` (n, Fn) with the case's masks (and categories,
        unless ``categorical`` (1, Fc) replaces them)."""
        n = numeric.shape[0]
        tensors = self.inputs(name)
        categorical = tensors["categorical"] if categorical is None else categorical
        return self.model.encoders[name](numeric, tensors["numeric_mask"].expand(n, -1),
                                         categorical.expand(n, -1)).embedding

    def function(self, name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        """The input function of modality ``name`` by its kind (for Captum's forward_func)."""
        kind = self.kinds.get(name)
        method = {"image": self.image, "signal": self.signal, "text": self.text_ids, "tabular": self.numeric}.get(kind)
        if method is None:
            raise ValueError(f"{name!r} is not a declared modality ({', '.join(self.names)})")
        return partial(method, name=name)

    def inputs(self, name: str) -> dict[str, torch.Tensor]:
        """The batch tensors of modality ``name`` (Batch.inputs[name])."""
        return self.batch.inputs[name]

    def has(self, modality: str) -> bool:
        return (modality in self.names and bool(self.batch.present[0, self.names.index(modality)])
                and modality in self.model.encoders)


def _last_stage(encoder) -> torch.nn.Module | None:
    """The last ResNet stage of an image encoder (what Grad-CAM reads), or None for another architecture."""
    stages = getattr(getattr(getattr(encoder, "backbone", None), "encoder", None), "stages", None)
    return stages[-1] if stages is not None and len(stages) else None


def _keep(store: dict[str, torch.Tensor], name: str, module, args, output) -> None:
    store[name] = output.detach()


def _keep_inputs(store: dict[str, tuple], name: str, module, args, kwargs) -> None:
    store[name] = (args[0].detach(), args[1:], kwargs)
