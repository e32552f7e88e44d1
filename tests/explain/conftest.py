"""Fixtures shared by the explain tests: the tiny model as a Predictor and a case that has every modality."""

from __future__ import annotations

import pytest

from neurofusion.inference import Predictor


@pytest.fixture
def predictor(tiny_batch, tiny_tokenizer):
    return Predictor(tiny_batch[0], tiny_tokenizer)


@pytest.fixture
def complete_case(tiny_cohort):
    return next(c for c in tiny_cohort if all(c.available.values()))
