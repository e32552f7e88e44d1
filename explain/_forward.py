"""Forward functions for attribution: the model's class logits as a function of one modality's input,
with the other modalities' encoder outputs computed once and held fixed.

Attributions are taken on logits, not probabilities: a confident prediction saturates the softmax, which
would leave every attribution near zero however much the input mattered.

This is what makes the per-modality attributions fast without changing them: integrating along one
modality's path never needs the other encoders again. Captum attaches hooks to the shared model's
modules, which would act on every other thread's forward pass too, so all of it runs under the model's
lock (:func:`neurofusion.inference.model_lock`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from neurofusion.data.dataset import Batch
from neurofusion.data.schema import MODALITIES
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
    """Class logits for one case as a function of a single modality's input.

    ``image(x)`` with x (n, 1, S, S), ``signal(x)`` with x (n, L, T), ``text_embeddings(e)`` with e
    (n, N, H) word embeddings, ``numeric(x)`` with x (n, Fn): each returns (n, C) logits.
    """

    def __init__(self, model: MultiModalModel, batch: Batch, alone: bool = False) -> None:
        """alone=False: the other modalities stay as the case has them (faithful to this prediction);
        alone=True: each modality is explained with the others hidden, i.e. what the model reads in it by
        itself (useful when redundant modalities leave one with little marginal effect)."""
        if batch.present.shape[0] != 1:
            raise ValueError(f"attribution explains one case at a time, got a batch of {batch.present.shape[0]}")
        self.model = model
        self.batch = batch
        self.alone = alone
        with model_lock(model), torch.no_grad():
            self.encoded = model.encode(batch)

    def with_embedding(self, modality: str, embedding: torch.Tensor) -> torch.Tensor:
        n = embedding.shape[0]
        fixed = self.encoded.repeat(n)
        vectors = dict(fixed.vectors)
        vectors[modality] = embedding.to(vectors[modality].dtype)
        encoded = Encoded(vectors, fixed.present, fixed.spatial_attention, fixed.temporal_attention)
        present = fixed.present
        if self.alone:
            present = torch.zeros_like(present)
            present[:, MODALITIES.index(modality)] = True
        return self.model.fuse(encoded, present).logits

    def image(self, image: torch.Tensor) -> torch.Tensor:
        return self.with_embedding("image", self.model.encoders["image"](image).embedding)

    def signal(self, signal: torch.Tensor) -> torch.Tensor:
        return self.with_embedding("signal", self.model.encoders["signal"](signal).embedding)

    def text_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        mask = self.batch.tokens["attention_mask"].expand(embeddings.shape[0], -1)
        return self.with_embedding("text", self.model.encoders["text"](None, mask, inputs_embeds=embeddings).embedding)

    def text_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        mask = self.batch.tokens["attention_mask"].expand(input_ids.shape[0], -1)
        return self.with_embedding("text", self.model.encoders["text"](input_ids, mask).embedding)

    def numeric(self, numeric: torch.Tensor) -> torch.Tensor:
        n = numeric.shape[0]
        encoder = self.model.encoders["tabular"]
        out = encoder(numeric, self.batch.numeric_mask.expand(n, -1), self.batch.categorical.expand(n, -1))
        return self.with_embedding("tabular", out.embedding)

    def has(self, modality: str) -> bool:
        return bool(self.batch.present[0, MODALITIES.index(modality)]) and modality in self.model.encoders
