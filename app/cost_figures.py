"""Figure 3 of the paper (performance against computational cost) drawn from the committed benchmark files only:
benchmarks/results/table2.json (accuracy over seeds), architecture_cost.json (parameters, latency samples, training
cost on this machine) and, when present, distillation.json (the distilled student). The paper's own points are
drawn as a separate series, never mixed with ours."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy import stats

from app.figures import finish

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
TABLE2, COST, DISTILLATION = "table2.json", "architecture_cost.json", "distillation.json"
BATCHES = {"batch1": "batch 1 (one case)", "batch32": "batch 32"}

# the paper's colour code: blue single-modality, green simple fusion, orange NeuroFusion variants
FAMILY_COLORS = {"single-modality": "#3b6ea8", "simple fusion": "#2f9e44", "NeuroFusion": "#d97706",
                 "distilled": "#b45309", "paper-sized": "#64748b"}
PAPER_COLOR, PAPER_NAME = "#94a3b8", "paper (reported, not measured here)"
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "triangle-down", "star")
LABELS = {"image_only": "Image only", "text_only": "Text only", "signal_only": "Signal only",
          "tabular_only": "Tabular only", "early_fusion": "Early fusion", "late_fusion": "Late fusion",
          "mlp_fusion": "MLP fusion", "neurofusion": "NeuroFusion",
          "neurofusion_gated": "NeuroFusion + gating (not in paper)",
          "distilled_student": "Distilled student", "student": "Distilled student",
          "student_no_teacher": "Student without teacher", "cardio_paper": "Paper-sized config (random weights)"}
# Figure 3 and section 7.4 of the paper (its real data, A100 GPUs): parameters (M), accuracy (%), batch-1 latency
PAPER_POINTS = ({"name": "NeuroFusion-Full", "parameters": 87e6, "accuracy": 0.942, "text_at": "bottom center"},
                {"name": "NeuroFusion-Distilled", "parameters": 35e6, "accuracy": 0.930, "text_at": "top left"},
                {"name": "Early fusion", "parameters": 18e6, "accuracy": 0.908, "text_at": "bottom left"},
                {"name": "MLP fusion", "parameters": 42e6, "accuracy": 0.914, "text_at": "bottom right"})
PAPER_LATENCY = ({"name": "NeuroFusion-Full", "median": 180.0, "q1": 165.0, "q3": 198.0},
                 {"name": "NeuroFusion-Distilled", "median": 95.0, "q1": 88.0, "q3": 104.0})
PANEL_D = ("Panel D of the paper (5-year deployment cost in dollars against diagnostic value) is not reproduced: "
           "it rests on hardware, energy and maintenance prices the paper does not give.")


class BenchmarkFileError(ValueError):
    """A benchmark file the figure needs is missing or unreadable; the message names it and the command that
    writes it."""

    def __init__(self, path: Path, problem: str, command: str) -> None:
        self.path = path
        super().__init__(f"{_shown(path)}: {problem}. Re-create it with `{command}`.")


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(RESULTS_DIR.parents[1]))
    except ValueError:
        return str(path)


_COMMANDS = {TABLE2: "python benchmarks/table2.py", COST: "python benchmarks/architecture_cost.py",
             DISTILLATION: "python benchmarks/distillation.py"}


@dataclass(frozen=True)
class ModelPoint:
    """One of our models on panel A: parameters and mean test accuracy over seeds (fractions) with its 95 % CI
    (None with a single seed)."""

    name: str
    family: str
    parameters: int
    accuracy: float
    ci_low: float | None
    ci_high: float | None
    seeds: int
    source: str
    note: str = ""  # said in the hover text

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)


@dataclass
class Figure3Data:
    """What the three panels draw: our points, the cost file's contents, and what is missing and why."""

    points: list[ModelPoint]
    cost: dict
    notes: list[str] = field(default_factory=list)  # e.g. the distilled point not measured yet
    warnings: list[str] = field(default_factory=list)  # an optional file present but unreadable


def family(name: str) -> str:
    if name.endswith("_only"):
        return "single-modality"
    if name in ("early_fusion", "late_fusion", "mlp_fusion"):
        return "simple fusion"
    if name.startswith("neurofusion"):
        return "NeuroFusion"
    if name == "cardio_paper":
        return "paper-sized"
    return "distilled"


# ---------------------------------------------------------------------------------------------------- Pareto
def pareto_front(parameters: Sequence[float], accuracy: Sequence[float]) -> list[int]:
    """Indices of the non-dominated points, by parameters ascending: a point is dominated when another has no more
    parameters and no lower accuracy, and fewer parameters or higher accuracy. Identical points do not dominate
    each other (both stay)."""
    p, a = np.asarray(parameters, dtype=float), np.asarray(accuracy, dtype=float)
    if p.shape != a.shape or p.ndim != 1:
        raise ValueError(f"parameters and accuracy must be two lists of one length, got {p.shape} and {a.shape}")
    if not (np.isfinite(p).all() and np.isfinite(a).all()):
        raise ValueError("parameters and accuracy must be finite numbers")
    front = [i for i in range(len(p))
             if not any(p[j] <= p[i] and a[j] >= a[i] and (p[j] < p[i] or a[j] > a[i]) for j in range(len(p)))]
    return sorted(front, key=lambda i: (p[i], a[i]))


# ------------------------------------------------------------------------------------------------- reading
def _read(path: Path, *, required: bool = True) -> dict | None:
    command = _COMMANDS.get(path.name, "the benchmark that writes it")
    if not path.is_file():
        if required:
            raise BenchmarkFileError(path, "not found", command)
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BenchmarkFileError(path, f"not readable JSON ({err})", command) from None
    if not isinstance(data, dict):
        raise BenchmarkFileError(path, f"expected a JSON object, got {type(data).__name__}", command)
    return data


def _number(value: Any, path: Path, where: str, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (low is not None and value < low) or (high is not None and value > high):
        bounds = "" if low is None else f" in [{low:g}, {high:g}]" if high is not None else f" >= {low:g}"
        raise BenchmarkFileError(path, f"{where} must be a finite number{bounds}, got {value!r}",
                                 _COMMANDS.get(path.name, "its benchmark"))
    return float(value)


def check_cost(cost: dict, path: Path) -> dict:
    """architecture_cost.json's fields the panels read, checked: parameters, latency samples, training."""
    command = _COMMANDS[COST]
    for key in ("parameters", "latency_samples_ms", "training", "settings"):
        if not isinstance(cost.get(key), dict):
            raise BenchmarkFileError(path, f"has no '{key}' object", command)
    for name, count in cost["parameters"].items():
        _number(count, path, f"parameters.{name}", low=1)
    for name, batches in cost["latency_samples_ms"].items():
        for batch in BATCHES:
            values = batches.get(batch) if isinstance(batches, dict) else None
            if not isinstance(values, list):
                raise BenchmarkFileError(path, f"latency_samples_ms.{name}.{batch} must be a list", command)
            for value in values:
                _number(value, path, f"latency_samples_ms.{name}.{batch}[]", low=0)
    for name, run in cost["training"].items():
        if not isinstance(run, dict):
            raise BenchmarkFileError(path, f"training.{name} must be an object", command)
        _number(run.get("peak_rss_mib"), path, f"training.{name}.peak_rss_mib", low=0)
        if name != "imports_only":
            steps = run.get("step_seconds")
            if not isinstance(steps, list) or not steps:
                raise BenchmarkFileError(path, f"training.{name}.step_seconds must be a non-empty list", command)
            for value in steps:
                _number(value, path, f"training.{name}.step_seconds[]", low=0)
    return cost


def _seed_interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The t-based 95 % CI of the mean of ``values`` (one per training seed); None with fewer than two."""
    if len(values) < 2:
        return None, None
    mean = float(np.mean(values))
    half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return mean - half, mean + half


def table2_points(table2: dict, path: Path, parameters: Mapping[str, float], cost_path: Path) -> list[ModelPoint]:
    """Each architecture of table2.json: mean test accuracy over its seeds with the t-based 95 % CI of the mean,
    beside its parameter count from architecture_cost.json."""
    runs = table2.get("runs")
    if not isinstance(runs, list) or not runs:
        raise BenchmarkFileError(path, "has no 'runs' list", _COMMANDS[TABLE2])
    by_architecture: dict[str, list[float]] = {}
    for k, run in enumerate(runs):
        if not isinstance(run, dict) or not isinstance(run.get("architecture"), str):
            raise BenchmarkFileError(path, f"runs[{k}] has no 'architecture' name", _COMMANDS[TABLE2])
        accuracy = _number(run.get("accuracy"), path, f"runs[{k}].accuracy", 0, 1)
        by_architecture.setdefault(run["architecture"], []).append(accuracy)
    points = []
    for name, values in by_architecture.items():
        if name not in parameters:
            raise BenchmarkFileError(cost_path, f"has no parameter count for {name!r} (a row of table2.json)",
                                     _COMMANDS[COST])
        points.append(ModelPoint(name, family(name), int(parameters[name]), float(np.mean(values)),
                                 *_seed_interval(values), len(values), TABLE2))
    return points


# distillation.json's summary entries and the "model" of their runs (benchmarks/distillation.py)
_DISTILLED_RUNS = {"student": "distilled", "student_no_teacher": "no_teacher"}


def distilled_points(distillation: dict, path: Path) -> list[ModelPoint]:
    """The distilled student and the student trained without the teacher from distillation.json's summary (none
    while its benchmark has trained neither yet). The
    error bars are the same kind as Table 2's (t-based CI of the mean over seeds, from the runs' accuracies); the
    summary's own interval (the runs' mean bootstrap interval over test cases) is in the hover text."""
    summary = distillation.get("summary")
    if not isinstance(summary, dict):
        raise BenchmarkFileError(path, "has no 'summary' object", _COMMANDS[DISTILLATION])
    runs = distillation.get("runs") if isinstance(distillation.get("runs"), list) else []
    points = []
    for name, model in _DISTILLED_RUNS.items():
        entry = summary.get(name)
        if entry is None:
            continue
        accuracy = entry.get("accuracy") if isinstance(entry, dict) else None
        if not isinstance(accuracy, dict):
            raise BenchmarkFileError(path, f"summary.{name}.accuracy must be an object", _COMMANDS[DISTILLATION])
        mean = _number(accuracy.get("mean"), path, f"summary.{name}.accuracy.mean", 0, 1)
        values = [_number(r.get("accuracy"), path, f"runs[].accuracy of {model}", 0, 1)
                  for r in runs if isinstance(r, dict) and r.get("model") == model]
        if values and not math.isclose(float(np.mean(values)), mean, abs_tol=1e-9):
            raise BenchmarkFileError(path, f"summary.{name}.accuracy.mean {mean} is not the mean of its runs' "
                                     f"accuracies ({float(np.mean(values))})", _COMMANDS[DISTILLATION])
        low, high = _seed_interval(values)
        note = ""
        if accuracy.get("ci_low") is not None and accuracy.get("ci_high") is not None:
            test_low, test_high = (_number(accuracy[k], path, f"summary.{name}.accuracy.{k}", 0, 1)
                                   for k in ("ci_low", "ci_high"))
            note = f"; mean per-run 95 % CI over test cases {test_low:.1%}–{test_high:.1%}"
        parameters = int(_number(entry.get("parameters"), path, f"summary.{name}.parameters", low=1))
        points.append(ModelPoint(name, "distilled", parameters, mean, low, high, len(values), DISTILLATION, note))
    return points


def load_figure3(results_dir: Path | None = None) -> Figure3Data:
    """The three panels' data from ``results_dir`` (default: benchmarks/results). A missing or unreadable
    table2.json or architecture_cost.json is a BenchmarkFileError naming it; distillation.json is optional."""
    folder = RESULTS_DIR if results_dir is None else Path(results_dir)
    cost_path, table2_path, distillation_path = folder / COST, folder / TABLE2, folder / DISTILLATION
    cost = check_cost(_read(cost_path), cost_path)
    points = table2_points(_read(table2_path), table2_path, cost["parameters"], cost_path)
    data = Figure3Data(points, cost)
    try:
        distillation = _read(distillation_path, required=False)
        if distillation is None:
            data.notes.append(f"The distilled student's accuracy is not measured yet ({_shown(distillation_path)} "
                              f"does not exist; `{_COMMANDS[DISTILLATION]}` writes it).")
        else:
            distilled = distilled_points(distillation, distillation_path)
            measured = cost["parameters"].get("distilled_student")
            mismatch = [p for p in distilled if measured is not None and p.parameters != measured]
            if mismatch:
                raise BenchmarkFileError(distillation_path, f"its student has {mismatch[0].parameters:,} parameters "
                                         f"but {COST} measured one of {int(measured):,} (configs/cardio_student.yaml "
                                         "changed between the two runs?)", _COMMANDS[DISTILLATION])
            data.points += distilled
            if not distilled:
                data.notes.append(f"The distilled student's accuracy is not measured yet ({_shown(distillation_path)} "
                                  "has no student runs yet).")
    except BenchmarkFileError as err:
        data.warnings.append(f"The distilled point is left out: {err}")
    return data


# ------------------------------------------------------------------------------------------------- figures
def _hover(point: ModelPoint) -> str:
    interval = ("" if point.ci_low is None else f" (95 % CI {point.ci_low:.1%}–{point.ci_high:.1%})")
    return (f"{point.label}: {point.parameters:,} parameters, accuracy {point.accuracy:.1%}{interval}, "
            f"{point.seeds} seed(s), {point.source}{point.note}")


def pareto_figure(data: Figure3Data) -> go.Figure:
    """Panel A: parameters (log) against mean test accuracy with 95 % CIs, our Pareto frontier, and the paper's
    reported points as their own series."""
    points = data.points
    if not points:
        raise ValueError("panel A needs at least one measured model")
    fig = go.Figure()
    for name in FAMILY_COLORS:  # one trace per model, grouped by family in the legend, a symbol per member
        for k, point in enumerate(p for p in points if p.family == name):
            high = 0.0 if point.ci_high is None else point.ci_high - point.accuracy
            low = 0.0 if point.ci_low is None else point.accuracy - point.ci_low
            fig.add_trace(go.Scatter(
                x=[point.parameters], y=[point.accuracy], mode="markers", name=point.label,
                legendgroup=f"measured: {name}", legendgrouptitle_text=f"{name} (measured here)",
                marker=dict(color=FAMILY_COLORS[name], size=10, symbol=_SYMBOLS[k % len(_SYMBOLS)]),
                error_y=dict(type="data", symmetric=False, array=[high], arrayminus=[low],
                             color=FAMILY_COLORS[name], thickness=1),
                hovertext=[_hover(point)], hoverinfo="text"))
    front = [points[i] for i in pareto_front([p.parameters for p in points], [p.accuracy for p in points])]
    fig.add_trace(go.Scatter(x=[p.parameters for p in front], y=[p.accuracy for p in front], mode="lines",
                             line=dict(color="#334155", dash="dash", shape="hv"), legendgroup="frontier",
                             name="Pareto frontier (ours: fewer parameters, higher accuracy)",
                             hovertext=[p.label for p in front], hoverinfo="text"))
    fig.add_trace(go.Scatter(x=[p["parameters"] for p in PAPER_POINTS], y=[p["accuracy"] for p in PAPER_POINTS],
                             mode="markers+text", name=PAPER_NAME, text=[p["name"] for p in PAPER_POINTS],
                             textposition=[p["text_at"] for p in PAPER_POINTS],
                             textfont=dict(size=10, color=PAPER_COLOR), legendgroup="paper",
                             marker=dict(symbol="x-thin-open", size=11, color=PAPER_COLOR, line=dict(width=2)),
                             hovertext=[f"{p['name']} (paper, real data): {p['parameters'] / 1e6:.0f} M parameters, "
                                        f"{p['accuracy']:.1%}" for p in PAPER_POINTS], hoverinfo="text"))
    sizes = [p.parameters for p in points] + [p["parameters"] for p in PAPER_POINTS]
    # room either side for the labels of the outermost points (a log axis's range is in exponents)
    fig.update_xaxes(type="log", dtick=1, title_text="Parameters (log scale)",
                     range=[math.log10(min(sizes)) - 0.3, math.log10(max(sizes)) + 0.4])
    fig.update_yaxes(tickformat=".0%", title_text="Test accuracy, 95 % CI")
    return finish(fig, "A · Parameters against accuracy (this machine, synthetic cardio cohort, CPU)", height=580,
                  legend=dict(groupclick="toggleitem", font=dict(size=11)))


def _order(cost: dict) -> list[str]:
    """Models in the cost file's order, the reference left out."""
    return [n for n in cost["parameters"] if n in cost["latency_samples_ms"]]


def training_cost_figure(data: Figure3Data) -> go.Figure:
    """Panel B: seconds per optimiser step (median, bars to the quartiles) and peak RSS per architecture."""
    training = data.cost["training"]
    names = [n for n in _order(data.cost) if n in training]
    if not names:
        raise ValueError(f"{COST} has no training measurements")
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12)
    labels = [LABELS.get(n, n) for n in names]
    colors = [FAMILY_COLORS[family(n)] for n in names]
    q1, median, q3 = (np.array([np.percentile(training[n]["step_seconds"], q) for n in names]) for q in (25, 50, 75))
    fig.add_trace(go.Bar(x=labels, y=median, marker_color=colors, name="s/step (median)", showlegend=False,
                         error_y=dict(type="data", symmetric=False, array=q3 - median, arrayminus=median - q1),
                         hovertemplate="%{x}: %{y:.2f} s/step (median)<extra></extra>"), row=1, col=1)
    peak = [training[n]["peak_rss_mib"] for n in names]
    fig.add_trace(go.Bar(x=labels, y=peak, marker_color=colors, name="peak RSS", showlegend=False,
                         hovertemplate="%{x}: %{y:.0f} MiB<extra></extra>"), row=1, col=2)
    baseline = training.get("imports_only", {}).get("peak_rss_mib")
    if baseline is not None:
        fig.add_hline(y=baseline, line=dict(dash="dot", color="#64748b"), row=1, col=2,
                      annotation_text=f"imports only: {baseline:.0f} MiB", annotation_position="bottom right")
    fig.update_xaxes(tickangle=-40)
    fig.update_yaxes(title_text="Seconds per optimiser step (batch 32)", row=1, col=1)
    fig.update_yaxes(title_text="Peak memory (RSS), MiB", row=1, col=2)
    return finish(fig, "B · Training cost per architecture (this machine, synthetic cardio cohort, CPU, 1 thread)",
                  height=460)


def latency_figure(data: Figure3Data, batch: str = "batch1") -> go.Figure:
    """Panel C: box plots of the latency samples per architecture (median, IQR, whiskers at 1.5 IQR, outliers),
    the paper's reported medians and IQRs beside at batch 1, the reference matrix product's median as a line."""
    if batch not in BATCHES:
        raise ValueError(f"batch must be one of {', '.join(BATCHES)}, got {batch!r}")
    samples = data.cost["latency_samples_ms"]
    names = [n for n in _order(data.cost) if samples[n][batch]]
    if not names:
        raise ValueError(f"{COST} has no {batch} latency samples")
    fig = go.Figure()
    for name in names:
        fig.add_trace(go.Box(y=samples[name][batch], name=LABELS.get(name, name), boxpoints="outliers",
                             marker=dict(color=FAMILY_COLORS[family(name)], size=3),
                             line=dict(color=FAMILY_COLORS[family(name)], width=1.5), showlegend=False))
    if batch == "batch1":
        for point in PAPER_LATENCY:  # the paper gives median and IQR only: no whiskers drawn
            label = f"{point['name']} (paper)"
            fig.add_trace(go.Box(name=label, x=[label], q1=[point["q1"]], median=[point["median"]],
                                 q3=[point["q3"]], lowerfence=[point["q1"]], upperfence=[point["q3"]],
                                 marker_color=PAPER_COLOR, fillcolor="rgba(148,163,184,0.15)",
                                 line=dict(color=PAPER_COLOR), showlegend=False))
    reference = samples.get("reference_matmul", {}).get(batch) or []
    if reference:
        median = float(np.median(reference))
        fig.add_hline(y=median, line=dict(dash="dot", color="#64748b"))
        # on a log axis an annotation's y is the exponent (add_hline's own annotation would land off the plot)
        fig.add_annotation(x=0, xref="paper", xanchor="left", y=math.log10(median), yref="y", yanchor="bottom",
                           text=f"reference: 2048² matrix product, median {median:.0f} ms", showarrow=False,
                           font=dict(size=11, color="#64748b"))
    fig.update_yaxes(type="log", title_text="Latency, ms (log scale)")
    fig.update_xaxes(tickangle=-40)
    title = f"C · Inference latency, {BATCHES[batch]} (this machine, CPU, 1 thread; grey: {PAPER_NAME})" \
        if batch == "batch1" else f"C · Inference latency, {BATCHES[batch]} (this machine, CPU, 1 thread)"
    return finish(fig, title, height=460)
