"""benchmarks/architecture_cost.py's pure parts: the step clock that stops training, the configs it builds, the
quartile summary and the markdown writer on a fake result. Nothing is timed or trained."""

from __future__ import annotations

import pytest
import torch

from benchmarks.architecture_cost import (
    ARCHITECTURES,
    PAPER,
    REFERENCE,
    STUDENT,
    StepClock,
    _Enough,
    experiment_config,
    markdown,
    model_configs,
    summary,
)


def test_step_clock_returns_the_task_loss_and_stops_after_its_steps():
    clock = StepClock(2)
    loss = torch.tensor(1.5)
    assert clock(None, None, None, loss) is loss  # before step 1's optimiser step
    assert clock(None, None, None, loss) is loss
    with pytest.raises(_Enough):  # the third note closes the second step: training stops before a third
        clock(None, None, None, loss)
    assert len(clock.step_seconds()) == 2 and all(s >= 0 for s in clock.step_seconds())
    with pytest.raises(ValueError, match="steps must be >= 1"):
        StepClock(0)


def test_every_table2_architecture_is_built_from_the_demo_config(tmp_path):
    configs = model_configs(include_student=False)
    assert tuple(configs) == ARCHITECTURES
    assert {c.model.architecture for c in configs.values()} == set(ARCHITECTURES)
    assert len({c.model.fusion.token_dim for c in configs.values()}) == 1  # same widths everywhere


def test_a_student_config_s_distill_section_is_set_aside(tmp_path):
    path = tmp_path / "student.yaml"
    path.write_text("model:\n  task: cardio\n  architecture: neurofusion\ntrain:\n  seed: 3\n"
                    "distill:\n  temperature: 4.0\n  alpha: 0.5\n")
    assert experiment_config(path).train.seed == 3
    path.write_text("model:\n  task: cardio\n  nonsense: 1\n")
    with pytest.raises(SystemExit, match="student.yaml"):
        experiment_config(path)


def test_summary_gives_the_median_and_quartiles():
    assert summary([1.0, 2.0, 3.0, 4.0, 5.0]) == {"median": 3.0, "q1": 2.0, "q3": 4.0, "n": 5}
    assert summary([]) is None


def test_markdown_lists_every_model_and_says_what_was_not_measured():
    one = {"median": 10.0, "q1": 9.0, "q3": 11.0, "n": 3}
    result = {
        "settings": {"machine": "m", "torch_threads": 1, "date": "2026-12-01", "command": "python x", "steps": 4,
                     "warmup": 1, "batch1_rounds": 3, "batch32_rounds": 2, "paper_every": 2,
                     "train_data": "build/cardio_trainval"},
        "parameters": {"neurofusion": 1_264_707, STUDENT: 477_067, PAPER: 144_043_119},
        "latency": {"neurofusion": {"batch1": one, "batch32": one}, STUDENT: {"batch1": one, "batch32": one},
                    PAPER: {"batch1": one, "batch32": None}, REFERENCE: {"batch1": {**one, "median": 40.0},
                                                                         "batch32": one}},
        "training": {"imports_only": {"peak_rss_mib": 500.0},
                     "neurofusion": {"step_seconds_median": 2.25, "peak_rss_mib": 1133.5},
                     STUDENT: {"step_seconds_median": 1.0, "peak_rss_mib": 900.0}},
    }
    text = markdown(result)
    assert "| neurofusion | 1.265 M | 10.0 [9.0–11.0] | 0.25 | 10 [9–11] | 2.25 | 1134 |" in text
    assert f"| {PAPER} | 144.043 M | 10.0 [9.0–11.0] | 0.25 | not measured | not measured | not measured |" in text
    assert "peaks at 500 MiB" in text and "not reproduced" in text and "87 M" in text
