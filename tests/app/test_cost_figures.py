"""app/cost_figures.py (Figure 3 on the model card): the Pareto frontier on hand-made points, the readers and
figure builders on fixture benchmark files with known answers, bad files as errors naming them, and the model card
page with the section and with a corrupt file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app import cost_figures
from app.cost_figures import (
    COST,
    DISTILLATION,
    PAPER_NAME,
    TABLE2,
    BenchmarkFileError,
    latency_figure,
    load_figure3,
    pareto_figure,
    pareto_front,
    training_cost_figure,
)

MAIN = str(Path(__file__).resolve().parents[2] / "app" / "main.py")


# ---------------------------------------------------------------------------------------------------- Pareto
def test_pareto_front_keeps_the_non_dominated_points_in_parameter_order():
    parameters = [300, 100, 200, 400, 150]
    accuracy = [0.80, 0.60, 0.70, 0.75, 0.55]
    # 400/0.75 is dominated by 300/0.80, 150/0.55 by 100/0.60
    assert pareto_front(parameters, accuracy) == [1, 2, 0]


def test_pareto_front_ties():
    # identical points do not dominate each other; same size and lower accuracy, or same accuracy and more
    # parameters, is dominated
    assert pareto_front([100, 100], [0.7, 0.7]) == [0, 1]
    assert pareto_front([100, 100], [0.7, 0.6]) == [0]
    assert pareto_front([100, 200], [0.7, 0.7]) == [0]


def test_pareto_front_of_one_point_is_that_point_and_bad_input_is_an_error():
    assert pareto_front([5], [0.5]) == [0]
    assert pareto_front([], []) == []
    with pytest.raises(ValueError, match="one length"):
        pareto_front([1, 2], [0.5])
    with pytest.raises(ValueError, match="finite"):
        pareto_front([1, float("nan")], [0.5, 0.6])


# ------------------------------------------------------------------------------------------------- fixtures
PARAMETERS = {"image_only": 300, "neurofusion": 1_200, "mlp_fusion": 1_000, "distilled_student": 500,
              "cardio_paper": 144_000_000}
STEPS = {"image_only": [0.5, 0.6, 0.7, 0.8], "neurofusion": [2.0, 2.2, 2.4, 9.0], "mlp_fusion": [1.0, 1.1, 1.3, 1.2],
         "distilled_student": [0.9, 1.0, 1.1, 1.0]}


def _cost() -> dict:
    samples = {name: {"batch1": [float(i + k) for k in range(1, 6)], "batch32": [float(10 * (i + 1))] * 3}
               for i, name in enumerate(PARAMETERS)}
    samples["cardio_paper"]["batch32"] = []  # the paper-sized model is not timed at batch 32
    samples["reference_matmul"] = {"batch1": [40.0, 42.0, 44.0], "batch32": [50.0, 52.0]}
    training = {name: {"step_seconds": steps, "peak_rss_mib": 1000.0 + 10 * i}
                for i, (name, steps) in enumerate(STEPS.items())}
    training["imports_only"] = {"peak_rss_mib": 500.0}
    return {"settings": {"machine": "test machine", "date": "2026-12-01", "steps": 4}, "parameters": PARAMETERS,
            "latency_samples_ms": samples, "training": training}


TABLE2_RUNS = [{"architecture": "image_only", "seed": s, "accuracy": a} for s, a in enumerate((0.4, 0.5, 0.6))] + \
    [{"architecture": "neurofusion", "seed": s, "accuracy": a} for s, a in enumerate((0.6, 0.7, 0.8))] + \
    [{"architecture": "mlp_fusion", "seed": 0, "accuracy": 0.65}]


def _distillation() -> dict:
    def entry(parameters: int, mean: float) -> dict:
        return {"parameters": parameters, "accuracy": {"mean": mean, "sd": 0.01, "ci_low": mean - 0.02,
                                                       "ci_high": mean + 0.02}}

    return {"summary": {"teacher": entry(1_200, 0.7), "student": entry(500, 0.68),
                        "student_no_teacher": entry(500, 0.62)},
            "runs": [{"model": "distilled", "seed": s, "accuracy": a} for s, a in enumerate((0.66, 0.68, 0.70))]
            + [{"model": "no_teacher", "seed": 0, "accuracy": 0.62}]}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    (tmp_path / COST).write_text(json.dumps(_cost()))
    (tmp_path / TABLE2).write_text(json.dumps({"runs": TABLE2_RUNS}))
    (tmp_path / DISTILLATION).write_text(json.dumps(_distillation()))
    return tmp_path


# -------------------------------------------------------------------------------------------------- reading
def test_points_are_means_over_seeds_with_the_t_interval_and_the_cost_file_parameters(results):
    points = {p.name: p for p in load_figure3(results).points}
    assert set(points) == {"image_only", "neurofusion", "mlp_fusion", "student", "student_no_teacher"}
    fusion = points["neurofusion"]
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n)
    assert fusion.accuracy == pytest.approx(0.7)
    assert (fusion.ci_low, fusion.ci_high) == (pytest.approx(0.7 - half, abs=1e-6), pytest.approx(0.7 + half, abs=1e-6))
    assert fusion.parameters == 1_200 and fusion.seeds == 3
    assert points["mlp_fusion"].ci_low is None and points["mlp_fusion"].seeds == 1  # one seed: no interval
    # the distilled points get the same kind of interval (over seeds, from the runs), the summary's test-set
    # interval goes to the hover text
    student = points["student"]
    half = 4.302653 * 0.02 / math.sqrt(3)
    assert (student.parameters, student.accuracy, student.seeds) == (500, 0.68, 3)
    assert student.ci_low == pytest.approx(0.68 - half, abs=1e-6)
    assert student.ci_high == pytest.approx(0.68 + half, abs=1e-6)
    assert "over test cases 66.0%–70.0%" in student.note
    assert points["student_no_teacher"].ci_low is None and points["student_no_teacher"].seeds == 1


def test_a_missing_distillation_file_is_a_note_and_a_corrupt_one_a_warning(results):
    (results / DISTILLATION).unlink()
    data = load_figure3(results)
    assert not any(p.family == "distilled" for p in data.points)
    assert len(data.notes) == 1 and "not measured yet" in data.notes[0] and DISTILLATION in data.notes[0]
    (results / DISTILLATION).write_text(json.dumps({"summary": {"teacher": _distillation()["summary"]["teacher"]}}))
    data = load_figure3(results)  # the benchmark has trained no student yet
    assert "has no student runs yet" in data.notes[0] and not data.warnings
    (results / DISTILLATION).write_text('{"summary": {"student": {"parameters": 5, "accuracy": {"mean": 2}}}}')
    data = load_figure3(results)
    assert not data.notes and len(data.warnings) == 1
    assert "summary.student.accuracy.mean" in data.warnings[0] and DISTILLATION in data.warnings[0]
    broken = _distillation()
    broken["summary"]["student"]["accuracy"]["mean"] = 0.9  # not its runs' mean
    (results / DISTILLATION).write_text(json.dumps(broken))
    data = load_figure3(results)
    assert "is not the mean of its runs' accuracies" in data.warnings[0]
    assert [p.name for p in data.points if p.family == "distilled"] == []
    other = _distillation()
    other["summary"]["student"]["parameters"] = 800  # another student than the cost file timed (500)
    (results / DISTILLATION).write_text(json.dumps(other))
    data = load_figure3(results)
    assert "its student has 800 parameters but architecture_cost.json measured one of 500" in data.warnings[0]


@pytest.mark.parametrize("name, content, expected", [
    (COST, "{not json", "architecture_cost.json: not readable JSON"),
    (TABLE2, "[1, 2]", "table2.json: expected a JSON object"),
    (TABLE2, json.dumps({"runs": [{"architecture": "image_only", "accuracy": 1.5}]}),
     "runs[0].accuracy must be a finite number in [0, 1]"),
    (TABLE2, json.dumps({"runs": [{"architecture": "late_fusion", "accuracy": 0.5}]}),
     "architecture_cost.json: has no parameter count for 'late_fusion'"),
    (COST, json.dumps({**_cost(), "training": {"neurofusion": {"peak_rss_mib": 3, "step_seconds": []}}}),
     "training.neurofusion.step_seconds must be a non-empty list"),
])
def test_a_bad_required_file_is_an_error_naming_it_and_its_field(results, name, content, expected):
    (results / name).write_text(content)
    with pytest.raises(BenchmarkFileError, match=expected.replace("[", r"\[").replace("]", r"\]")) as err:
        load_figure3(results)
    assert "Re-create it with `python benchmarks/" in str(err.value)


def test_a_missing_required_file_is_an_error_naming_it(results):
    (results / TABLE2).unlink()
    with pytest.raises(BenchmarkFileError, match=r"table2.json: not found.*python benchmarks/table2.py"):
        load_figure3(results)


# -------------------------------------------------------------------------------------------------- figures
def test_pareto_figure_draws_ours_the_frontier_and_the_paper_apart(results):
    fig = pareto_figure(load_figure3(results))
    traces = {t.name: t for t in fig.data}
    frontier = traces["Pareto frontier (ours: fewer parameters, higher accuracy)"]
    # image_only 300/0.5, student 500/0.68, neurofusion 1200/0.7; mlp 1000/0.65 and no-teacher 500/0.62 dominated
    assert list(frontier.x) == [300, 500, 1_200] and list(frontier.y) == pytest.approx([0.5, 0.68, 0.7])
    paper = traces[PAPER_NAME]
    assert list(paper.x) == [87e6, 35e6, 18e6, 42e6] and list(paper.y) == [0.942, 0.930, 0.908, 0.914]
    ours = [t for t in fig.data if (t.legendgroup or "").startswith("measured")]
    assert sorted(t.name for t in ours) == ["Distilled student", "Image only", "MLP fusion", "NeuroFusion",
                                            "Student without teacher"]
    assert not any(x >= 1e6 for t in ours for x in t.x)
    assert traces["NeuroFusion"].legendgrouptitle.text == "NeuroFusion (measured here)"
    assert traces["NeuroFusion"].error_y.array[0] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), abs=1e-6)
    assert traces["MLP fusion"].error_y.array[0] == 0  # one seed: no bar
    assert fig.layout.xaxis.type == "log" and "synthetic" in fig.layout.title.text and "CPU" in fig.layout.title.text


def test_training_cost_figure_shows_the_median_step_and_the_peaks(results):
    fig = training_cost_figure(load_figure3(results))
    steps, peaks = fig.data
    assert list(steps.x) == ["Image only", "NeuroFusion", "MLP fusion", "Distilled student"]  # the cost file's order
    assert list(steps.y) == pytest.approx([np.median(s) for s in STEPS.values()])
    assert steps.error_y.array[1] == pytest.approx(np.percentile(STEPS["neurofusion"], 75) - 2.3)
    assert list(peaks.y) == [1000.0, 1010.0, 1020.0, 1030.0]
    assert any("imports only: 500 MiB" in a.text for a in fig.layout.annotations)


def test_latency_figure_boxes_our_samples_and_the_paper_only_at_batch_1(results):
    data = load_figure3(results)
    fig = latency_figure(data, "batch1")
    boxes = {t.name: t for t in fig.data}
    assert list(boxes["Image only"].y) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert "Paper-sized config (random weights)" in boxes
    paper = boxes["NeuroFusion-Full (paper)"]
    assert (paper.q1[0], paper.median[0], paper.q3[0]) == (165.0, 180.0, 198.0) and paper.y is None
    assert any("median 42 ms" in a.text for a in fig.layout.annotations)
    many = latency_figure(data, "batch32")
    names = [t.name for t in many.data]
    assert not any("(paper)" in n for n in names) and "Paper-sized config (random weights)" not in names
    assert list(many.data[1].y) == [20.0, 20.0, 20.0]
    with pytest.raises(ValueError, match="batch must be one of batch1, batch32"):
        latency_figure(data, "batch8")


def test_the_committed_files_draw_every_panel():
    """The committed benchmark files themselves are readable and every panel draws from them."""
    data = load_figure3()
    assert {p.name for p in data.points} >= {"neurofusion", "mlp_fusion", "image_only"}
    pareto_figure(data), training_cost_figure(data), latency_figure(data, "batch1"), latency_figure(data, "batch32")


# ----------------------------------------------------------------------------------------------------- page
def _model_card() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.run()
    at.switch_page("views/model_card.py").run()
    return at


def test_model_card_shows_figure_3():
    at = _model_card()
    assert not at.exception, [e.value for e in at.exception]
    assert "Figure 3: performance against computational cost" in [h.value for h in at.subheader]
    keys = {c.key for c in at.get("plotly_chart")}
    assert {"model.fig3_pareto", "model.fig3_training", "model.fig3_latency"} <= keys
    at.radio(key="model.fig3_batch").set_value("batch32").run()
    chart = next(c for c in at.get("plotly_chart") if c.key == "model.fig3_latency")
    assert "batch 32" in json.loads(chart.proto.spec)["layout"]["title"]["text"]
    assert any("Panel D" in c.value for c in at.caption)


def test_model_card_with_a_corrupt_cost_file_says_which_file(tmp_path, monkeypatch, results):
    (results / COST).write_text("{truncated")
    monkeypatch.setattr(cost_figures, "RESULTS_DIR", results)
    at = _model_card()
    assert not at.exception, [e.value for e in at.exception]
    message = next(w.value for w in at.warning if "Figure 3 cannot be drawn" in w.value)
    assert "architecture_cost.json: not readable JSON" in message
    assert "python benchmarks/architecture_cost.py" in message
    assert not {"model.fig3_pareto", "model.fig3_latency"} & {c.key for c in at.get("plotly_chart")}
