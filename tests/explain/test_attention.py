"""Cross-modal attention: rows are distributions; cohort means by class equal a direct masked average."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.attention import cohort_attention, cross_attention
from neurofusion.inference import Predictor


def test_case_attention_rows_are_distributions(tiny_batch):
    model, batch = tiny_batch
    result = cross_attention(model, batch)
    assert result.per_head.shape == (12, 2, 4, 4) and result.mean.shape == (12, 4, 4)
    assert np.allclose(result.mean.sum(-1), 1, atol=1e-5)


def test_cohort_average_by_class_is_the_masked_mean(tiny_batch, tiny_tokenizer, tiny_cohort):
    model, _ = tiny_batch
    predictor = Predictor(model, tiny_tokenizer)
    cases = [tiny_cohort[i] for i in range(25)]
    cohort = cohort_attention(predictor, cases, batch_size=7)  # several batches
    batch = predictor.batch(cases)
    with torch.no_grad():
        out = model(batch)
    mean = out.cross_attention.mean(1).numpy()
    present = batch.present.numpy()
    labels = batch.labels.numpy()
    label = model.classes[labels[0]]
    rows = labels == labels[0]
    both = present[rows][:, :, None] & present[rows][:, None, :]
    expected = (mean[rows] * both).sum(0) / both.sum(0)
    assert np.allclose(cohort.by_true[label], expected, atol=1e-5, equal_nan=True)
    assert sum(cohort.counts_true.values()) == sum(cohort.counts_predicted.values()) == 25


def test_models_without_attention_say_so(tiny_cohort, tiny_tokenizer):
    from neurofusion.models import build_model
    from tests.conftest import tiny_config

    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer, "mlp_fusion")).eval()
    with pytest.raises(ValueError, match="mlp_fusion model has no cross-modal attention"):
        cross_attention(model, Predictor(model, tiny_tokenizer).batch([tiny_cohort[0]]))


def test_cohort_importance_carries_the_same_attention_from_its_one_pass(tiny_batch, tiny_tokenizer, tiny_cohort):
    """The cohort page draws attention and importance from one encoder pass: its attention must equal the
    dedicated attention pass, class by class, with the same counts."""
    from explain.cohort import cohort_importance

    model, _ = tiny_batch
    predictor = Predictor(model, tiny_tokenizer)
    cases = [tiny_cohort[i] for i in range(25)]
    direct = cohort_attention(predictor, cases, batch_size=7)
    combined = cohort_importance(predictor, cases, batch_size=6).attention
    assert combined is not None
    assert combined.counts_true == direct.counts_true and combined.counts_predicted == direct.counts_predicted
    for cls in model.classes:
        assert np.allclose(combined.by_true[cls], direct.by_true[cls], atol=1e-5, equal_nan=True)
        assert np.allclose(combined.by_predicted[cls], direct.by_predicted[cls], atol=1e-5, equal_nan=True)


def test_cohort_importance_of_a_model_without_attention_has_none(tiny_cohort, tiny_tokenizer):
    from explain.cohort import cohort_importance
    from neurofusion.models import build_model
    from tests.conftest import tiny_config

    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer, "mlp_fusion")).eval()
    result = cohort_importance(Predictor(model, tiny_tokenizer), [tiny_cohort[i] for i in range(5)])
    assert result.attention is None and len(result.table) == 5


def test_averager_skips_unlabelled_cases_and_weights_each_pair_by_its_cases():
    from explain.attention import ClassAttentionAverager

    rng = np.random.default_rng(3)
    mean, present = rng.random((40, 3, 3)), rng.random((40, 3)) > 0.3
    labels, predicted = rng.integers(-1, 2, 40), rng.integers(0, 2, 40)
    averager = ClassAttentionAverager(["a", "b"], 3, ("x", "y", "z"))
    averager.add(mean[:17], present[:17], labels[:17], predicted[:17])  # two batches add up
    averager.add(mean[17:], present[17:], labels[17:], predicted[17:])
    result = averager.result()
    both = present[:, :, None] & present[:, None, :]
    for k, name in enumerate(["a", "b"]):
        rows = labels == k
        expected = (mean[rows] * both[rows]).sum(0) / both[rows].sum(0)
        np.testing.assert_allclose(result.by_true[name], expected, rtol=1e-12)
        assert result.counts_true[name] == rows.sum() and result.counts_predicted[name] == (predicted == k).sum()
    assert sum(result.counts_true.values()) == (labels >= 0).sum() < 40  # the unlabelled ones counted nowhere
