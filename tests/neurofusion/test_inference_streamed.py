"""Predictor.predict_streamed / predict_survival_streamed: cases read through DataLoader workers give the labels,
probabilities and survival curves of Predictor.predict on the same cases, with 0 and 2 workers, missing
modalities included; an unreadable case is a CohortError naming it, as reading it for predict is."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.data.errors import CohortError
from neurofusion.inference import Predictor
from neurofusion.loader import SplitCases
from tests.conftest import small_case, write_small_cohort
from tests.test_sample_data import CANCER, CANCER_DEMO

MISSING = [(), ("image",), ("text", "signal"), ("tabular",), (), ("signal",), ("image", "text"), ()]


@pytest.fixture
def with_missing(tmp_path) -> CohortReader:
    cases = [small_case(i, split="test", missing=MISSING[i % len(MISSING)]) for i in range(11)]
    return CohortReader(write_small_cohort(tmp_path / "cohort", cases))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streamed_equals_predict_with_missing_modalities(tiny_batch, tiny_tokenizer, with_missing, num_workers):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    ids = with_missing.ids("test")
    cases = [with_missing[i] for i in ids]
    assert not all(c.image is not None and c.signal is not None for c in cases)
    labels, probabilities = predictor.predict(cases, batch_size=4)
    streamed = predictor.predict_streamed(SplitCases(with_missing, ids), batch_size=4, num_workers=num_workers)
    assert streamed[0].tolist() == labels.tolist()
    np.testing.assert_allclose(streamed[1], probabilities, atol=1e-6, rtol=0)
    dropped = predictor.predict_streamed(SplitCases(with_missing, ids), drop=("image",), num_workers=num_workers)
    np.testing.assert_allclose(dropped[1], predictor.predict(cases, drop=("image",))[1], atol=1e-6, rtol=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_an_unreadable_case_is_a_cohort_error_naming_it(tiny_batch, tiny_tokenizer, with_missing, num_workers):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    ids = with_missing.ids("test")
    broken = with_missing.table.set_index("case_id").loc[ids[5], "image_file"]
    (with_missing.root / broken).write_bytes(b"not a png")
    with pytest.raises(CohortError) as direct:
        [with_missing[i] for i in ids]
    with pytest.raises(CohortError, match=ids[5]) as streamed:
        predictor.predict_streamed(SplitCases(with_missing, ids), batch_size=4, num_workers=num_workers)
    assert str(streamed.value) == str(direct.value)


def test_streamed_bad_arguments(tiny_batch, tiny_tokenizer, with_missing):
    predictor = Predictor(tiny_batch[0], tiny_tokenizer)
    with pytest.raises(ValueError, match="no cases"):
        predictor.predict_streamed([])
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        predictor.predict_streamed(SplitCases(with_missing, with_missing.ids("test")), num_workers=-1)
    with pytest.raises(ValueError, match="classifier, not a survival model"):
        predictor.predict_survival_streamed(SplitCases(with_missing, with_missing.ids("test")))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_survival_streamed_equals_predict_survival(num_workers):
    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    reader = CohortReader(CANCER)
    ids = reader.ids("test")[:10]
    direct = predictor.predict_survival([reader[i] for i in ids], batch_size=4)
    streamed = predictor.predict_survival_streamed(SplitCases(reader, ids), batch_size=4, num_workers=num_workers)
    assert streamed.case_ids == direct.case_ids == list(ids)
    np.testing.assert_allclose(streamed.curves, direct.curves, atol=1e-6, rtol=0)
    np.testing.assert_allclose(streamed.risk, direct.risk, atol=1e-6, rtol=0)
    np.testing.assert_array_equal(streamed.time, direct.time)
    np.testing.assert_array_equal(streamed.event, direct.event)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_streamed_on_gpu_pins_memory_and_equals_cpu(tiny_batch, tiny_tokenizer, with_missing):
    model = tiny_batch[0]
    ids = with_missing.ids("test")
    cpu = Predictor(model, tiny_tokenizer).predict_streamed(SplitCases(with_missing, ids), num_workers=2)
    gpu = Predictor(model.to("cuda"), tiny_tokenizer, "cuda")
    try:
        assert gpu.loader(SplitCases(with_missing, ids), num_workers=0).pin_memory
        streamed = gpu.predict_streamed(SplitCases(with_missing, ids), num_workers=2)
    finally:
        model.to("cpu")
    assert streamed[0].tolist() == cpu[0].tolist()
    np.testing.assert_allclose(streamed[1], cpu[1], atol=1e-4)
