"""Fixtures shared by the explain tests: the tiny model as a Predictor and a case that has every modality, and
the bundled demo model with its first complete test case and that case's forward functions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from explain._forward import ModalityForward
from neurofusion.inference import Predictor

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture
def predictor(tiny_batch, tiny_tokenizer):
    return Predictor(tiny_batch[0], tiny_tokenizer)


@pytest.fixture
def complete_case(tiny_cohort):
    return next(c for c in tiny_cohort if all(c.available.values()))


@pytest.fixture(scope="module")
def demo_case_forward():
    """(demo model in eval mode, its first complete test case, ModalityForward of that case)."""
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.data import CohortReader

    ckpt = load_checkpoint(SAMPLE_DATA / "checkpoints" / "cardio_demo", device="cpu")
    cohort = CohortReader(SAMPLE_DATA / "cardio")
    case = next(c for c in (cohort[i] for i in cohort.ids("test")) if all(c.available.values()))
    model = ckpt.model.eval()
    return model, case, ModalityForward(model, Predictor(model, ckpt.tokenizer, ckpt.device).batch([case]))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): on cores shared
    with other jobs two spinning threads make each small forward pass many times slower; the numbers are the
    same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
