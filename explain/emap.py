"""Does a model use interactions between modalities at all? The empirical multimodally-additive function
projection (EMAP; Hessel and Lee, EMNLP 2020): replace the model by its best additive approximation over
modalities on a set of cases and compare the two models' performance. Equal performance means that, on
these cases, the model's cross-modal interactions do not matter for its predictions.

For N cases with modalities x_i = (x_i^1, ..., x_i^M) and the model's logits f (the pre-softmax class scores;
a survival model's hazard logits):

    A_m(i) = 1/N sum_j f(x_i^m, x_j^{-m})           (case i's modality m with case j's other modalities)
    f0     = 1/M sum_m 1/N^2 sum_i sum_j f(x_i^m, x_j^{-m})
    EMAP(x_i) = sum_m A_m(i) - (M - 1) f0

For a model whose logits are a sum of one function per modality, EMAP reproduces them exactly; what it loses is
the part of f that no sum of per-modality functions can express. A case's modality m carries its presence with
it (a missing modality stays missing, replaced by the model's learned missing embedding). The N^2 combinations
of each modality are fused from the encoders' outputs of the N cases (the encoders run once), in chunks of
:data:`ROWS_PER_PASS`; the other modalities come from one other case jointly, as Hessel and Lee's two-modality
definition does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from explain.importance import modality_names
from neurofusion.data.dataset import Batch
from neurofusion.inference import model_lock
from neurofusion.models.model import Encoded

ROWS_PER_PASS = 4096  # (case, other case) combinations fused per pass


@dataclass
class EmapResult:
    """The model's logits on the N cases and their additive projection, both (N, C)."""

    logits: np.ndarray
    projected: np.ndarray
    names: tuple[str, ...]

    @property
    def agreement(self) -> float:
        """Share of cases whose projected logits pick the model's own class."""
        return float((self.logits.argmax(1) == self.projected.argmax(1)).mean())


def _logits(output) -> torch.Tensor:
    return output.hazard_logits if output.survival is not None else output.logits


@torch.no_grad()
def emap(model, batch: Batch, *, rows_per_pass: int = ROWS_PER_PASS) -> EmapResult:
    """The EMAP projection of ``model`` (anything with ``encode`` / ``fuse``) on the cases of ``batch``
    (module docstring). Costs M x N^2 fusions and one encoder pass: about 2 s for N = 200 cardio cases."""
    names = modality_names(model, batch)
    n, m = batch.present.shape[0], len(names)
    if n < 2:
        raise ValueError("EMAP averages over other cases: it needs at least 2 cases")
    with model_lock(model):
        encoded = model.encode(batch)
        logits = _logits(model.fuse(encoded)).double()
        sums = torch.zeros(m, n, logits.shape[1], dtype=torch.float64, device=logits.device)
        i_all = torch.arange(n, device=batch.present.device).repeat_interleave(n)  # case i, each n times
        j_all = torch.arange(n, device=batch.present.device).repeat(n)  # with every case j
        for k, name in enumerate(names):
            for start in range(0, n * n, rows_per_pass):
                i, j = i_all[start:start + rows_per_pass], j_all[start:start + rows_per_pass]
                mixed = _mixed(encoded, names, k, i, j)
                out = _logits(model.fuse(mixed, mixed.present)).double()
                sums[k].index_add_(0, i, out)
    means = sums / n  # (M, N, C): A_m(i)
    f0 = means.mean(dim=(0, 1))  # (C,)
    projected = means.sum(0) - (m - 1) * f0
    return EmapResult(logits.cpu().numpy(), projected.cpu().numpy(), names)


def _mixed(encoded: Encoded, names: tuple[str, ...], k: int, i: torch.Tensor, j: torch.Tensor) -> Encoded:
    """Rows (i, j): modality k of case i with every other modality of case j (vectors and presence)."""
    vectors = {name: (v[i] if name == names[k] else v[j]) for name, v in encoded.vectors.items()}
    present = encoded.present[j].clone()
    present[:, k] = encoded.present[i, k]
    return Encoded(vectors, present)
