"""Device-clean explanations, checked on any machine: every explanation path runs under
:class:`HostTensorGuard`, which records each operation that would combine a tensor left on the host with
the model's tensors (what a GPU refuses). The GPU itself is exercised in tests/gpu/test_cuda.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from explain.ablation import missing_rate_study, withheld_study
from explain.attention import cohort_attention, cross_attention
from explain.case import ExplainSettings, explain_case
from explain.faithfulness import eraser_scores, modality_deletion_curves, randomisation_check
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.gpu.host_tensors import HostTensorGuard

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
SAMPLE = ROOT / "sample_data" / "cardio"


@pytest.fixture(scope="module")
def demo():
    checkpoint = load_checkpoint(DEMO, device="cpu")
    cohort = CohortReader(SAMPLE)
    cases = [cohort[i] for i in cohort.ids("test")[:40]]
    complete = next(c for c in cases if all(c.available.values()))
    partial = next(c for c in cases if not c.available["image"] and c.available["text"] and c.available["signal"])
    return Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device), cases, complete, partial


@pytest.fixture
def guard(monkeypatch):
    return HostTensorGuard().patch(monkeypatch)


def _where(guard: HostTensorGuard) -> str:
    """One line per place, first occurrence's detail."""
    places = {}
    for m in guard.mixings:
        places.setdefault(f"{m.where} {m.operation}", m.detail)
    return "\n".join(f"{place}: {detail}" for place, detail in places.items())


def test_the_guard_catches_a_host_mask_and_a_host_generator(guard):
    """The two bugs this guard stands for, as they were written in explain/text.py and faithfulness.py."""
    ids = torch.arange(6).to(torch.device("cpu"))[None]  # as a batch arrives: moved to the model's device
    weights = torch.nn.Linear(3, 3).weight  # made before the guard: a model parameter
    with guard:
        special = torch.tensor([True, False, False, False, False, True])[None]
        torch.where(special, ids, torch.full_like(ids, 0))
        keep = torch.from_numpy(np.ones(6, dtype=bool))
        ids * keep
        with torch.no_grad():
            torch.nn.init.xavier_normal_(weights, generator=torch.Generator().manual_seed(0))
        # and what is fine: masks made beside the ids, 0-d scalars, host-only post-processing
        torch.where(torch.tensor([True] * 6, device=ids.device)[None], ids, ids + torch.tensor(1))
        ids * keep.to(ids.device)
        torch.from_numpy(np.zeros(4)).mean()
        with torch.no_grad():
            torch.nn.init.xavier_normal_(weights, generator=torch.Generator(device=weights.device).manual_seed(0))
    problems = [m.operation for m in guard.mixings]
    assert len(problems) == 3, _where(guard)
    assert problems[0].endswith("where") and problems[1].endswith("mul") and problems[2].endswith("normal_")
    assert "generator" in guard.mixings[2].detail


def test_case_explanations_keep_every_tensor_on_the_model_device(demo, guard):
    predictor, _, complete, partial = demo
    with guard:
        full = explain_case(predictor, complete, ExplainSettings(n_steps=4))
        explain_case(predictor, complete, ExplainSettings(n_steps=4, image_method="grad_cam", target=0,
                                                          context="alone"))
        explain_case(predictor, complete, ExplainSettings(n_steps=4, image_method="occlusion"))
        explain_case(predictor, complete, ExplainSettings(n_steps=4, image_method="attention"))
        explain_case(predictor, partial, ExplainSettings(n_steps=4))
    assert full.note is not None and full.signal is not None and full.tabular is not None
    assert not guard.mixings, _where(guard)


def test_faithfulness_checks_keep_every_tensor_on_the_model_device(demo, guard):
    predictor, _, complete, _ = demo
    target = int(predictor.predict([complete])[1][0].argmax())
    with guard:
        table = randomisation_check(predictor, [complete], n_steps=2)
        curves = modality_deletion_curves(predictor, complete, target, n_steps=2)
        eraser_scores(predictor, complete, target, n_steps=2)
    assert len(table) > 2 and set(curves) == {"image", "signal", "text"}
    assert not guard.mixings, _where(guard)


def test_cohort_explanations_keep_every_tensor_on_the_model_device(demo, guard):
    predictor, cases, _, _ = demo
    with guard:
        cross_attention(predictor.model, predictor.batch(cases[:4]))
        cohort_attention(predictor, cases[:12], batch_size=8)
        withheld_study(predictor, cases[:12], [(), ("image",)], n_bootstrap=10)
        missing_rate_study(predictor, cases[:12], {"text": 0.5}, n_bootstrap=10)
    assert not guard.mixings, _where(guard)
