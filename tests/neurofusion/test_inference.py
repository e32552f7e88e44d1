"""Predictor: batched predictions come back in the order the cases were given, equal to one at a time."""

from __future__ import annotations

import numpy as np
import pytest

from neurofusion.inference import Predictor, drop_mask, parse_modalities


def test_batched_predictions_are_in_input_order_and_equal_one_at_a_time(tiny_batch, tiny_tokenizer, tiny_cohort):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    cases = [tiny_cohort[i] for i in range(12)]
    lengths = [len(c.note or "") for c in cases]
    assert lengths != sorted(lengths)  # the batches are reordered by note length internally
    labels, probabilities = predictor.predict(cases, batch_size=5)
    singles = np.concatenate([predictor.predict([c])[1] for c in cases])
    np.testing.assert_allclose(probabilities, singles, atol=1e-5)
    assert labels.tolist() == [predictor.model.classes.index(c.label) for c in cases]


def test_drop_hides_the_named_modalities(tiny_batch, tiny_tokenizer, tiny_cohort):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    present = tiny_batch[1].present
    hidden = drop_mask(present, parse_modalities("image,text"))
    assert not hidden[:, :2].any() and (hidden[:, 2:] == present[:, 2:]).all()
    with pytest.raises(ValueError, match="unknown modality 'ekg'"):
        parse_modalities("image,ekg")
    cases = [tiny_cohort[i] for i in range(4)]
    no_image = predictor.predict(cases, drop=("image",))[1]
    assert not np.allclose(no_image, predictor.predict(cases)[1])
