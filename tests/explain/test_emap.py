"""EMAP (Hessel and Lee 2020): an additive model is its own projection (to float tolerance); a model whose logit
is a product of two modalities is not; on a real tiny NeuroFusion, the batched, chunked projection equals the
formula computed one combination at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.emap import emap
from neurofusion.models.model import Encoded, ModelOutput
from tests.explain.declared import planted_batch

NAMES = ("vitals", "labs", "notes")


class ValueModel:
    """Each case carries one number per modality (its encoded vector); a missing modality reads ``missing``.
    logit of class 1 = sum_m w_m * value_m + product * value_a * value_b; class 0 has logit 0."""

    def __init__(self, values: np.ndarray, weights: list[float], product: float = 0.0, missing: float = 0.5):
        self.names, self.values = NAMES, torch.tensor(values, dtype=torch.float64)
        self.weights, self.product, self.missing = torch.tensor(weights, dtype=torch.float64), product, missing

    def encode(self, batch):
        return Encoded({m: self.values[:, k:k + 1] for k, m in enumerate(self.names)}, batch.present)

    def fuse(self, encoded, present=None):
        mask = encoded.present if present is None else present & encoded.present
        x = torch.cat([encoded.vectors[m] for m in self.names], 1)
        x = torch.where(mask, x, torch.full_like(x, self.missing))
        logit = (x * self.weights).sum(1) + self.product * x[:, 0] * x[:, 1]
        logits = torch.stack([torch.zeros_like(logit), logit], 1)
        return ModelOutput(logits=logits, probabilities=torch.softmax(logits, -1), present=mask)


def _cases(n: int = 9, seed: int = 0):
    rng = np.random.default_rng(seed)
    present = rng.random((n, 3)) > 0.2
    return rng.normal(size=(n, 3)), planted_batch(NAMES, present.tolist())


def test_an_additive_model_is_its_own_projection():
    values, batch = _cases()
    result = emap(ValueModel(values, [0.7, -1.2, 0.4]), batch, rows_per_pass=7)
    np.testing.assert_allclose(result.projected, result.logits, atol=1e-12)
    assert result.agreement == 1.0 and result.names == NAMES


def test_a_product_of_two_modalities_is_not_additive():
    values, batch = _cases(n=40, seed=3)
    result = emap(ValueModel(values, [0.0, 0.0, 0.3], product=2.0), batch)
    gap = np.abs(result.projected[:, 1] - result.logits[:, 1])
    assert gap.max() > 0.5  # the product term cannot be written as a sum of per-modality functions
    assert result.agreement < 1.0  # and some predicted classes change without it


def test_a_real_model_projection_equals_the_formula_one_combination_at_a_time(tiny_batch):
    model, batch = tiny_batch
    names, n = model.names, batch.present.shape[0]
    result = emap(model, batch, rows_per_pass=5)  # chunks that cut across cases
    with torch.no_grad():
        encoded = model.encode(batch)
        a = np.zeros((len(names), n, result.logits.shape[1]))
        for k, name in enumerate(names):
            for i in range(n):
                for j in range(n):
                    vectors = {m: (v[i:i + 1] if m == name else v[j:j + 1]) for m, v in encoded.vectors.items()}
                    present = encoded.present[j:j + 1].clone()
                    present[0, k] = encoded.present[i, k]
                    a[k, i] += model.fuse(Encoded(vectors, present), present).logits[0].double().numpy() / n
        full = model.fuse(encoded).logits.double().numpy()
    expected = a.sum(0) - (len(names) - 1) * a.mean(axis=(0, 1))
    np.testing.assert_allclose(result.logits, full, atol=1e-6)
    np.testing.assert_allclose(result.projected, expected, atol=1e-5)


def test_one_case_is_refused():
    values, batch = _cases(n=1)
    with pytest.raises(ValueError, match="at least 2 cases"):
        emap(ValueModel(values, [1.0, 1.0, 1.0]), batch)
