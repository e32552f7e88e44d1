"""The GPU path, end to end (``make test-gpu``; skipped where torch sees no CUDA GPU): full case
explanations of the demo checkpoint on CUDA against the CPU, the faithfulness checks on CUDA, a training
epoch under bfloat16 autocast, and the dashboard with the device set to CUDA.

The CUDA-vs-CPU comparisons run with TF32 off (convolutions and matrix products in full float32, as on the
CPU), so the tolerances measure the device, not a lower-precision format:
- probabilities (and Shapley values, in probability units): within 1e-3 absolute;
- attributions of each modality: within 1 % of that modality's largest |attribution| on the CPU, elementwise;
- Integrated Gradients convergence deltas: within 1e-3 of the CPU's plus 1 % of the summed |attribution|.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest
import torch

from explain.case import CaseExplanation, ExplainSettings, explain_case
from explain.faithfulness import cascade_groups, eraser_scores, modality_deletion_curves, randomisation_check
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
SAMPLE = ROOT / "sample_data" / "cardio"
GPU = "cuda"  # a dry run of these checks on a CPU-only machine sets this to "cpu"
PROBABILITY_TOL = 1e-3
ATTRIBUTION_SHARE = 0.01

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch sees none)")]


@contextlib.contextmanager
def full_float32():
    """TF32 off for the block (PyTorch allows it for cuDNN convolutions by default)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def predictors() -> dict[str, Predictor]:
    """{"gpu": the demo model on the GPU, "cpu": on the CPU}: two separate copies."""
    out = {}
    for name, device in (("gpu", GPU), ("cpu", "cpu")):
        checkpoint = load_checkpoint(DEMO, device=device)
        out[name] = Predictor(checkpoint.model, checkpoint.tokenizer, checkpoint.device)
    return out


def sample_cases(n_complete: int = 3, n_partial: int = 2) -> list:
    """A few test cases of the sample cohort: complete ones and ones missing a modality."""
    cohort = CohortReader(SAMPLE)
    cases = [cohort[i] for i in cohort.ids("test")[:80]]
    complete = [c for c in cases if all(c.available.values())][:n_complete]
    partial = [c for c in cases if not all(c.available.values()) and any(c.available.values())][:n_partial]
    return complete + partial


def assert_attributions_close(actual: np.ndarray, expected: np.ndarray, what: str) -> None:
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=ATTRIBUTION_SHARE * max(scale, 1e-12), err_msg=what)


def assert_same_explanation(gpu: CaseExplanation, cpu: CaseExplanation) -> None:
    """``gpu`` explains the same case as ``cpu``, to the tolerances in the module docstring."""
    name = cpu.case_id
    assert gpu.predicted == cpu.predicted and gpu.target == cpu.target, name
    np.testing.assert_allclose(gpu.probabilities, cpu.probabilities, rtol=0, atol=PROBABILITY_TOL, err_msg=name)
    assert gpu.present == cpu.present
    for method in ("shapley", "leave_one_out"):
        np.testing.assert_allclose(getattr(gpu.importance, method), getattr(cpu.importance, method), rtol=0,
                                   atol=PROBABILITY_TOL, err_msg=f"{name} {method}")
    if cpu.cross_attention is not None:
        np.testing.assert_allclose(gpu.cross_attention, cpu.cross_attention, rtol=0, atol=PROBABILITY_TOL)
    parts = {"image": (lambda e: e.image.model_map, lambda e: e.image.convergence_delta),
             "note": (lambda e: e.note.token_scores, lambda e: e.note.convergence_delta),
             "signal": (lambda e: e.signal.attributions, lambda e: e.signal.convergence_delta)}
    for part, (values, delta) in parts.items():
        assert (getattr(gpu, part) is None) == (getattr(cpu, part) is None), f"{name} {part}"
        if getattr(cpu, part) is None:
            continue
        assert_attributions_close(values(gpu), values(cpu), f"{name} {part}")
        slack = PROBABILITY_TOL + ATTRIBUTION_SHARE * float(np.abs(values(cpu)).sum())
        assert abs(delta(gpu) - delta(cpu)) <= slack, f"{name} {part} convergence delta"
    if cpu.signal is not None:
        np.testing.assert_allclose(gpu.signal.attention, cpu.signal.attention, rtol=0, atol=PROBABILITY_TOL)
    if cpu.tabular is not None:
        assert gpu.tabular["measured"].tolist() == cpu.tabular["measured"].tolist()
        assert_attributions_close(gpu.tabular["score"].fillna(0).to_numpy(), cpu.tabular["score"].fillna(0).to_numpy(),
                                  f"{name} tabular")
    if cpu.note is not None:
        assert gpu.note.tokens == cpu.note.tokens and gpu.note.truncated == cpu.note.truncated


def explain_on_both(by_device: dict[str, Predictor], cases, settings: ExplainSettings) -> list[tuple]:
    return [(explain_case(by_device["gpu"], case, settings), explain_case(by_device["cpu"], case, settings))
            for case in cases]


@pytest.fixture(scope="module")
def by_device() -> dict[str, Predictor]:
    return predictors()


def test_case_explanations_on_cuda_match_the_cpu(by_device):
    cases = sample_cases()
    with full_float32():
        pairs = explain_on_both(by_device, cases, ExplainSettings(n_steps=32))
    assert len(pairs) == 5
    for gpu, cpu in pairs:
        assert_same_explanation(gpu, cpu)


def test_other_image_methods_and_classes_on_cuda_match_the_cpu(by_device):
    case = sample_cases(1, 0)
    for method, target in (("grad_cam", 0), ("occlusion", 1), ("attention", None)):
        with full_float32():
            (gpu, cpu), = explain_on_both(by_device, case, ExplainSettings(n_steps=8, image_method=method,
                                                                            target=target, context="alone"))
        assert gpu.image.method == method
        assert_attributions_close(gpu.image.map, cpu.image.map, method)
        assert gpu.target == cpu.target


def test_faithfulness_checks_run_on_cuda(by_device):
    gpu, cpu = by_device["gpu"], by_device["cpu"]
    case = sample_cases(1, 0)[0]
    table = randomisation_check(gpu, [case], n_steps=8)
    assert len(table) == len(cascade_groups(gpu.model)) + 1
    assert table.loc[0, "image_similarity"] == pytest.approx(1.0)
    assert table.loc[0, "signal_similarity"] == pytest.approx(1.0)
    assert table["image_similarity"].iloc[-1] < 0.95 and table["signal_similarity"].iloc[-1] < 0.95
    target = int(cpu.predict([case])[1][0].argmax())
    with full_float32():
        curves = {d: modality_deletion_curves(by_device[d], case, target, n_steps=8) for d in ("gpu", "cpu")}
        eraser = {d: eraser_scores(by_device[d], case, target, n_steps=8) for d in ("gpu", "cpu")}
    assert set(curves["gpu"]) == {"image", "signal", "text"}
    for modality, curve in curves["gpu"].items():
        # the random order is the same on both devices (numpy, seeded): the same inputs, the same probabilities
        np.testing.assert_allclose(curve.random, curves["cpu"][modality].random, rtol=0, atol=PROBABILITY_TOL,
                                   err_msg=modality)
        assert curve.attributed[0] == pytest.approx(curves["cpu"][modality].attributed[0], abs=PROBABILITY_TOL)
        assert curve.attributed[-1] == pytest.approx(curves["cpu"][modality].attributed[-1], abs=PROBABILITY_TOL)
    assert eraser["gpu"]["full"] == pytest.approx(eraser["cpu"]["full"], abs=PROBABILITY_TOL)
    assert eraser["gpu"]["rationale_tokens"] == eraser["cpu"]["rationale_tokens"]


def test_one_training_epoch_under_bfloat16_autocast_on_cuda(tiny_cohort, tiny_tokenizer, monkeypatch):
    import neurofusion.train as train_module
    from neurofusion.config import TrainConfig
    from tests.conftest import tiny_config

    dtypes = []
    loss = train_module.multitask_loss

    def recording_loss(outputs, targets, configs):
        dtypes.append(next(iter(outputs.values())).dtype)
        return loss(outputs, targets, configs)

    monkeypatch.setattr(train_module, "multitask_loss", recording_loss)
    config = tiny_config(tiny_cohort, tiny_tokenizer)
    train = TrainConfig(lr=3e-3, batch_size=16, max_epochs=1, patience=5, seed=0, augment=True,
                        modality_dropout=0.2, device=GPU)
    result = train_module.fit(tiny_cohort, config, train, progress=False)
    autocast = torch.bfloat16 if GPU == "cuda" else torch.float32  # no autocast on a CPU (dry run)
    assert dtypes and set(dtypes) == {autocast}  # the heads ran under autocast
    assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])
    assert 0.0 <= result.history[0]["val_accuracy"] <= 1.0
    assert all(p.device.type == GPU and torch.isfinite(p).all() for p in result.model.parameters())
    # the trained model predicts the same in float32 on the GPU and on the CPU
    cases = [tiny_cohort[i] for i in tiny_cohort.ids("val")]
    with full_float32():
        on_gpu = Predictor(result.model, result.tokenizer, GPU).predict(cases)[1]
    on_cpu = Predictor(result.model.cpu(), result.tokenizer, "cpu").predict(cases)[1]
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=0, atol=PROBABILITY_TOL)


def test_dashboard_on_cuda_renders_the_prediction():
    from streamlit.testing.v1 import AppTest

    from app.figures import pretty

    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=300)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.device"] = GPU
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert any(f"Running on {GPU.upper()}" in c.value for c in at.sidebar.caption)
    case_id = at.selectbox(key="case.id").value
    checkpoint = load_checkpoint(DEMO, device="cpu")
    probabilities = Predictor(checkpoint.model, checkpoint.tokenizer).predict([CohortReader(SAMPLE)[case_id]])[1][0]
    predicted = next(m for m in at.metric if m.label == "Predicted")
    assert predicted.value == pretty(checkpoint.config.classes[int(probabilities.argmax())])
