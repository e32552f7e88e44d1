"""Figure builders: each draws what it is given (values, ranges, missing parts marked) and rejects bad input."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pandas as pd
import pytest

from app import figures
from explain.signal import Segment, SignalExplanation
from explain.text import Span


def _bars(fig):
    return [t for t in fig.data if t.type == "bar"]


# ----------------------------------------------------------------------------------------- probabilities
def test_probability_bars_values_and_true_label():
    fig = figures.probability_bars(["normal", "coronary_artery_disease"], np.array([0.2, 0.8]),
                                   label="coronary_artery_disease")
    (bar,) = _bars(fig)
    assert list(bar.x) == pytest.approx([0.2, 0.8])
    assert list(bar.text) == ["20.0%", "80.0%"]
    assert bar.y[0] == "Normal"
    assert "Coronary artery disease (true)" in bar.y[1] and bar.y[1].startswith("<b>")
    assert fig.layout.template.layout.paper_bgcolor == "white"


def test_probability_bars_compare_trace_and_bad_shapes():
    fig = figures.probability_bars(["a", "b"], np.array([0.4, 0.6]), "zzz", compare=np.array([0.9, 0.1]),
                                   compare_name="without ECG")
    bars = _bars(fig)
    assert [b.name for b in bars] == ["prediction", "without ECG"]
    assert list(bars[1].x) == pytest.approx([0.9, 0.1])
    assert not any("(true)" in y for y in bars[0].y)  # a label outside the classes is not marked
    with pytest.raises(ValueError, match="probabilities"):
        figures.probability_bars(["a", "b"], np.array([1.0]))
    with pytest.raises(ValueError, match="compare"):
        figures.probability_bars(["a", "b"], np.array([0.4, 0.6]), compare=np.array([1.0]))


# ---------------------------------------------------------------------------------------------- attention
def test_probability_html_rows_values_comparison_and_bad_input():
    classes = ["normal", "heart_failure", "arrhythmia"]
    before, after = np.array([0.7, 0.2, 0.1]), np.array([0.25, 0.6, 0.15])
    single = figures.probability_html(classes, before, label="heart_failure")
    rows = re.findall(r'<tr data-class="([a-z_]+)">(.*?)</tr>', single)
    assert [c for c, _ in rows] == classes
    for (cls, row), a in zip(rows, before):
        assert [float(w) for w in re.findall(r"width: ([\d.]+)%; background", row)] == pytest.approx([100 * a], abs=0.051)
        assert f'class="value">{a:.1%}</td>' in row, cls
    assert "<b>Heart failure (true)</b>" in dict(rows)["heart_failure"] and "(true)" not in dict(rows)["normal"]
    out = figures.probability_html(classes, before, compare=after, compare_name="ablated")
    for (cls, row), a, b in zip(re.findall(r'<tr data-class="([a-z_]+)">(.*?)</tr>', out), before, after):
        widths = [float(w) for w in re.findall(r"width: ([\d.]+)%; background", row)]
        assert widths == pytest.approx([100 * a, 100 * b], abs=0.051), cls
        assert f"{a:.1%} → <span class=\"after\">{b:.1%}</span> ({100 * (b - a):+.1f})" in row
    with pytest.raises(ValueError, match=r"\(3,\)"):
        figures.probability_html(classes, before, compare=after[:2])
    with pytest.raises(ValueError, match="between 0 and 1"):
        figures.probability_html(classes, before, compare=np.array([0.5, np.nan, 0.5]))
    assert "&lt;b&gt;" in figures.probability_html(["<b>"], np.array([1.0]))


def test_compact_attention_and_importance_use_one_word_names_and_keep_units():
    matrix = np.full((4, 4), 0.25)
    fig = figures.attention_heatmap(matrix, [True, False, True, True], title="Cross-modal attention", compact=True)
    assert list(fig.data[0].x) == ["Echo", "Note*", "ECG", "Labs"] == list(fig.data[0].y)
    assert fig.data[0].colorbar.orientation == "h" and (fig.data[0].zmin, fig.data[0].zmax) == (0, 1)
    scores = {"shapley": {"image": 0.3, "text": None, "signal": -0.1, "tabular": 0.05},
              "attention": {"image": 0.5, "text": None, "signal": 0.3, "tabular": 0.2}}
    bars = figures.importance_bars(scores, "Heart failure", compact=True)
    assert list(bars.data[0].x) == ["Echo", "Note", "ECG", "Labs"]
    assert bars.layout.yaxis.title.text == "Δ probability" and bars.layout.yaxis2.title.text == "Attention (0–1)"
    assert bars.layout.title.text == "Modality importance for Heart failure"


def test_attention_heatmap_values_range_and_missing_labels():
    matrix = np.random.default_rng(0).dirichlet(np.ones(4), size=4)
    fig = figures.attention_heatmap(matrix, [True, False, True, True], title="attention")
    (heat,) = fig.data
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), matrix)
    assert (heat.zmin, heat.zmax) == (0, 1)
    assert list(heat.x) == ["Echo image", "Clinical note (missing)", "ECG", "Labs"] == list(heat.y)
    assert heat.text[1][2] == f"{matrix[1, 2]:.2f}"
    assert fig.layout.yaxis.autorange == "reversed"
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        figures.attention_heatmap(np.ones((3, 4)))
    with pytest.raises(ValueError, match="one flag per modality"):
        figures.attention_heatmap(matrix, [True, False])


def test_cohort_grid_one_heatmap_per_class_with_shared_range_and_blank_nan():
    a = np.full((4, 4), 0.25)
    b = a.copy()
    b[0, 1] = np.nan
    fig = figures.cohort_attention_grid({"normal": a, "heart_failure": b}, {"normal": 10, "heart_failure": 3})
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 2
    assert all((h.zmin, h.zmax) == (0, 1) for h in heatmaps)
    assert heatmaps[1].text[0][1] == "" and heatmaps[1].text[0][0] == "0.25"
    titles = [a.text for a in fig.layout.annotations]
    assert "Heart failure (n=3)" in titles and "Normal (n=10)" in titles
    with pytest.raises(ValueError, match="counts"):
        figures.cohort_attention_grid({"normal": a}, {})


def test_attention_scales_start_at_zero_and_axes_are_named_on_the_cohort_grid():
    """Weights are 0..1: a sequential scale from 0 (not red/blue around 0.5), query/key axes named on every
    attention figure, panels in the checkpoint's class order, the title below the toolbar band."""
    matrix = np.full((4, 4), 0.25)
    case = figures.attention_heatmap(matrix, title="Cross-modal attention")
    classes = ["normal", "coronary_artery_disease", "heart_failure", "arrhythmia"]
    grid = figures.cohort_attention_grid({c: matrix for c in reversed(classes)}, {c: 1 for c in classes}, "by class",
                                         classes=classes)
    for fig in (case, grid):
        for heat in (t for t in fig.data if t.type == "heatmap"):
            scale = heat.colorscale
            assert (heat.zmin, heat.zmax) == (0, 1)
            assert scale[0][1] in ("rgb(247,251,255)", "#f7fbff")  # white at 0 (Blues), not blue
            assert scale[len(scale) // 2][1] != "rgb(247,247,247)"  # no white midpoint at 0.5
        assert fig.layout.title.yref == "paper" and fig.layout.title.yanchor == "bottom"
        assert fig.layout.margin.t >= 60  # the toolbar's band is above the title
    x_titles = {fig_axis.title.text for fig_axis in (grid.layout[k] for k in grid.layout if k.startswith("xaxis"))}
    y_titles = {fig_axis.title.text for fig_axis in (grid.layout[k] for k in grid.layout if k.startswith("yaxis"))}
    assert "attends to (key)" in x_titles and "attends from (query)" in y_titles
    titles = [a.text for a in grid.layout.annotations]
    assert titles[:4] == ["Normal (n=1)", "Coronary artery<br>disease (n=1)", "Heart failure (n=1)", "Arrhythmia (n=1)"]


# --------------------------------------------------------------------------------------------- importance
def test_importance_bars_skip_missing_modality():
    scores = {"shapley": {"image": 0.3, "text": None, "signal": 0.1, "tabular": -0.05},
              "leave_one_out": {"image": 0.2, "text": float("nan"), "signal": 0.05, "tabular": 0.0}}
    fig = figures.importance_bars(scores, explained="Heart failure")
    bars = _bars(fig)
    assert [b.name for b in bars] == ["Shapley", "Leave-one-out"]
    assert list(bars[0].x) == ["Echo image", "Clinical note", "ECG", "Labs"]
    assert bars[0].y[1] is None and bars[1].y[1] is None
    assert bars[0].y[0] == pytest.approx(0.3)
    notes = [a for a in fig.layout.annotations if a.text == "missing"]
    assert [a.x for a in notes] == ["Clinical note"]
    assert bars[0].marker.color != bars[1].marker.color
    with pytest.raises(ValueError, match="unknown modality"):
        figures.importance_bars({"shapley": {"audio": 0.1}}, explained="Heart failure")


def test_importance_bars_put_probability_and_attention_on_separate_axes_with_units():
    scores = {"shapley": {"image": 0.3, "text": 0.1, "signal": 0.1, "tabular": -0.05},
              "leave_one_out": {"image": 0.2, "text": 0.0, "signal": 0.05, "tabular": 0.0},
              "attention": {"image": 0.4, "text": 0.2, "signal": 0.3, "tabular": 0.1}}
    fig = figures.importance_bars(scores, explained="Heart failure")
    axes = {b.name: b.yaxis for b in _bars(fig)}
    assert axes["Shapley"] == axes["Leave-one-out"] != axes["Attention (any class)"]
    probability = fig.layout["yaxis" + axes["Shapley"][1:]]
    attention = fig.layout["yaxis" + axes["Attention (any class)"][1:]]
    assert "probability" in probability.title.text and "Heart failure" in probability.title.text
    assert "0–1" in attention.title.text and tuple(attention.range) == (0, 1)
    assert fig.layout.title.text == "Modality importance for Heart failure"
    alone = figures.importance_bars({"shapley": scores["shapley"]}, explained="Heart failure")
    assert {b.yaxis for b in _bars(alone)} == {"y"} and "probability" in alone.layout.yaxis.title.text


def test_importance_by_class_units_follow_the_method():
    table = pd.DataFrame({"image": [0.2, 0.4], "text": [0.1, 0.3], "signal": [0.6, 0.1], "tabular": [0.1, 0.2]},
                         index=pd.Index(["normal", "heart_failure"], name="label"))
    attention = figures.importance_by_class(table, "attention")
    (heat,) = attention.data
    assert (heat.zmin, heat.zmax) == (0, 1) and heat.colorscale[0][1] in ("rgb(247,251,255)", "#f7fbff")
    assert "attention weight (0–1)" in attention.layout.title.text
    shapley = figures.importance_by_class(table, "shapley")
    assert "probability" in shapley.layout.title.text and shapley.data[0].zmin == -shapley.data[0].zmax


def test_importance_by_class_heatmap_nan_safe():
    table = pd.DataFrame({"image": [0.2, np.nan], "text": [0.1, 0.3], "signal": [0.0, -0.1], "tabular": [0.05, 0.2]},
                         index=pd.Index(["normal", "heart_failure"], name="label"))
    (heat,) = figures.importance_by_class(table).data
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), table.to_numpy(), equal_nan=True)
    assert list(heat.y) == ["Normal", "Heart failure"]
    assert heat.text[1][0] == "" and heat.zmin == -heat.zmax == pytest.approx(-0.3)
    with pytest.raises(ValueError, match="unknown modality"):
        figures.importance_by_class(table.rename(columns={"text": "note"}))


# --------------------------------------------------------- cohort figures over declared modalities (issue 11)
CANCER_TITLES = {"histopathology": "Histopathology", "genomics": "Genomics", "treatment_notes": "Treatment notes",
                 "clinical": "Clinical"}
RISK_ORDER = ["low risk", "medium risk", "high risk"]


def test_cohort_grid_draws_declared_modalities_and_risk_groups_in_order():
    matrices = {g: np.full((4, 4), k / 4) for k, g in enumerate(reversed(RISK_ORDER))}
    fig = figures.cohort_attention_grid(matrices, {g: 10 + k for k, g in enumerate(RISK_ORDER)}, "by risk group",
                                        classes=RISK_ORDER, modalities=CANCER_TITLES)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert [a.text for a in fig.layout.annotations][:3] == ["Low risk (n=10)", "Medium risk (n=11)",
                                                            "High risk (n=12)"]
    assert list(heatmaps[0].x) == list(CANCER_TITLES.values()) == list(heatmaps[0].y)
    assert heatmaps[0].z[0][0] == pytest.approx(0.5)  # "low risk" was given last: its own matrix, not the first
    with pytest.raises(ValueError, match=r"must be \(3, 3\)"):
        figures.cohort_attention_grid({"low risk": np.zeros((4, 4))}, {"low risk": 1},
                                      modalities=dict(list(CANCER_TITLES.items())[:3]))
    # the default stays cardio's four
    cardio = figures.cohort_attention_grid({"normal": np.zeros((4, 4))}, {"normal": 1})
    assert list(cardio.data[0].x) == ["Echo image", "Clinical note", "ECG", "Labs"]


def test_importance_by_risk_group_names_the_explained_quantity_and_the_declared_titles():
    table = pd.DataFrame({"histopathology": [-0.02, 0.01], "genomics": [-0.1, 0.05], "treatment_notes": [0.0, 0.01],
                          "clinical": [np.nan, -0.03]}, index=pd.Index(["low risk", "high risk"], name="label"))
    fig = figures.importance_by_class(table, "shapley", modalities=CANCER_TITLES, explained="survival at 60 months",
                                      groups="risk group")
    (heat,) = fig.data
    assert list(heat.x) == list(CANCER_TITLES.values()) and list(heat.y) == ["Low risk", "High risk"]
    title = fig.layout.title.text
    assert title == "Mean modality importance by risk group (Shapley: change in survival at 60 months)"
    assert "survival at 60 months" in heat.colorbar.title.text and "probability" not in title
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float), table.to_numpy(), equal_nan=True)
    assert heat.zmin == -heat.zmax == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="unknown modality 'image'"):
        figures.importance_by_class(table.rename(columns={"genomics": "image"}), modalities=CANCER_TITLES)


def test_withheld_names_follow_declared_titles():
    assert figures.withheld_name("genomics,clinical", CANCER_TITLES) == "Genomics + Clinical"
    assert figures.withheld_name("none", CANCER_TITLES) == "Nothing (all recorded)"
    assert figures.withheld_name("image,text") == "Echo image + Clinical note"
    with pytest.raises(ValueError, match="unknown modality 'image'"):
        figures.withheld_name("image", CANCER_TITLES)


def test_metric_bars_without_percent_write_three_decimals():
    rows = [{"name": "C-index", "value": 0.7214, "ci_low": 0.665, "ci_high": 0.770}]
    fig = figures.metric_bars(rows, "C-index (95 % CI)", percent=False)
    (bar,) = fig.data
    assert list(bar.text) == ["0.721"] and fig.layout.yaxis.tickformat == ".2f"
    assert "%{y:.3f}" in bar.hovertemplate
    assert list(figures.metric_bars(rows).data[0].text) == ["72.1%"]


# ------------------------------------------------------------------------------------------------- image
def test_image_overlay_signed_and_unsigned():
    image = np.linspace(0, 1, 12).reshape(3, 4)
    saliency = np.array([[0.5, -2.0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0.1]])
    fig = figures.image_overlay(image, saliency, opacity=0.3, signed=True, explained="Normal")
    assert len(fig.data) == 2
    base, overlay = fig.data
    np.testing.assert_allclose(np.asarray(base.z, dtype=float), image)
    np.testing.assert_allclose(np.asarray(overlay.z, dtype=float), saliency)  # the values themselves, unclipped
    assert overlay.opacity == 0.3
    limit = np.percentile(np.abs(saliency), 99)
    assert (overlay.zmin, overlay.zmax) == pytest.approx((-limit, limit))
    assert fig.layout.yaxis.autorange == "reversed" and fig.layout.yaxis.scaleanchor == "x"
    unsigned = figures.image_overlay(image, np.abs(saliency), signed=False, explained="Normal").data[1]
    assert (unsigned.zmin, unsigned.zmax) == pytest.approx((0.0, limit))
    assert len(figures.image_overlay(image).data) == 1
    with pytest.raises(ValueError, match="shape"):
        figures.image_overlay(image, np.zeros((4, 3)), explained="Normal")
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        figures.image_overlay(np.zeros((2, 3, 4)))


def test_image_overlay_robust_range_colour_bar_words_and_method_titles():
    """Integrated Gradients: a few outlier pixels must not set the colour range (they made the map invisible)."""
    rng = np.random.default_rng(0)
    saliency = rng.normal(scale=1e-4, size=(64, 64))
    saliency[0, :5] = [0.5, -0.4, 0.3, 0.6, -0.7]  # five outlier pixels, 1000x the rest
    fig = figures.image_overlay(np.zeros((64, 64)), saliency, explained="Heart failure", method="integrated_gradients")
    overlay = fig.data[1]
    limit = np.percentile(np.abs(saliency), 99)
    assert overlay.zmax == pytest.approx(limit) and overlay.zmin == pytest.approx(-limit)
    assert overlay.zmax < 0.01 * np.abs(saliency).max()
    bar = overlay.colorbar
    assert "Red raises" in bar.title.text and "blue lowers" in bar.title.text and "Heart failure" in bar.title.text
    assert bar.ticktext[0].endswith("lowers") and bar.ticktext[-1].endswith("raises")
    assert not any("µ" in t or "e-" in t for t in bar.ticktext)
    assert fig.layout.title.text == "Integrated Gradients for Heart failure"
    titles = {m: figures.image_overlay(np.zeros((8, 8)), np.ones((8, 8)), explained="Normal", method=m).layout.title.text
              for m in ("grad_cam", "occlusion", "attention")}
    assert titles == {"grad_cam": "Grad-CAM for Normal", "occlusion": "Occlusion for Normal",
                      "attention": "Encoder attention for Normal"}
    cam = figures.image_overlay(np.zeros((8, 8)), np.ones((8, 8)), explained="Normal", method="grad_cam").data[1]
    assert cam.zmin == 0  # Grad-CAM is a magnitude: sequential from 0
    # smoothing spreads a single hot pixel over its neighbours
    spike = np.zeros((9, 9))
    spike[4, 4] = 1.0
    smooth = np.asarray(figures.image_overlay(np.zeros((9, 9)), spike, explained="Normal", smooth=1.0).data[1].z,
                        dtype=float)
    assert smooth[4, 4] < 0.5 and smooth[4, 5] > 0
    with pytest.raises(ValueError, match="smooth"):
        figures.image_overlay(np.zeros((9, 9)), spike, explained="Normal", smooth=-1)


# --------------------------------------------------------------------------------------------------- ECG
def _signal_explanation() -> SignalExplanation:
    rng = np.random.default_rng(1)
    leads = ["I", "II", "V1", "V5"]
    return SignalExplanation(
        target=1, leads=leads, fs=100.0, times=np.arange(300) / 100, attributions=rng.normal(size=(4, 300)),
        lead_importance=np.array([0.3, 0.5, 0.2, 0.0]), recorded=np.array([True, True, True, False]),
        recorded_seconds=2.0, attention=np.full(12, 1 / 12), attention_times=(np.arange(12) + 0.5) * 0.25,
        attention_step_s=0.25, segments=[Segment(0.5, 1.0, 3.0), Segment(1.2, 1.7, 2.0)], convergence_delta=0.0)


def _lines(fig):
    return [t for t in fig.data if t.type == "scatter" and t.mode == "lines" and t.name in figures.STANDARD_LEADS]


def test_ecg_figure_leads_explanation_and_segments():
    data = np.sin(np.linspace(0, 20, 500))[None].repeat(3, 0) * np.array([[1.0], [0.5], [2.0]])
    channels = ("V1", "I", "II")  # recording order differs from the 12-lead order
    plain = figures.ecg_figure(data, 250.0, channels)
    lines = _lines(plain)
    assert [t.name for t in lines] == ["I", "II", "V1"]
    np.testing.assert_allclose(lines[0].y, data[1])
    assert (lines[0].x0, lines[0].dx) == (0.0, pytest.approx(1 / 250))  # 500 samples over 2 s

    fig = figures.ecg_figure(data, 250.0, channels, _signal_explanation(), explained="Arrhythmia")
    strips = [t for t in fig.data if t.type == "heatmap" and t.name.endswith("attribution")]
    assert len(_lines(fig)) == len(strips) == 3
    assert len(strips[0].z[0]) == 201 and strips[0].dx == pytest.approx(0.01)  # up to the recording's 2 s
    np.testing.assert_allclose(strips[0].z[0], _signal_explanation().attributions[0, :201], rtol=1e-6)
    assert strips[0].coloraxis == "coloraxis"
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 2 and (rects[0].x0, rects[0].x1) == (0.5, 1.0) and rects[0].label.text == "#1"
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax
    assert any("largest attribution" in t.name for t in fig.data if t.showlegend is not False)  # the boxes' legend


def _axes(fig, axis):
    return [fig.layout[k] for k in fig.layout if re.fullmatch(axis + r"axis\d*", k)]


def test_ecg_figure_paper_convention_common_scale_grid_calibration_and_labels():
    """One mV scale for every lead (a low-voltage lead is drawn small, not stretched), the 25 mm/s, 10 mm/mV
    grid, a 1 mV x 0.2 s calibration pulse per row, horizontal lead labels."""
    t = np.linspace(0, 2, 500)
    data = np.stack([2.2 * np.sin(8 * t), 0.3 * np.sin(8 * t), -1.7 * np.sin(8 * t)])  # V1 low voltage
    fig = figures.ecg_figure(data, 250.0, ["II", "V1", "V5"])
    # white paper on every theme (Streamlit's dark theme would otherwise hide the black trace)
    assert fig.layout.paper_bgcolor == fig.layout.plot_bgcolor == "#ffffff"
    ranges = {tuple(a.range) for a in _axes(fig, "y")}
    assert len(ranges) == 1  # the same mV range on every lead
    (low, high), = ranges
    assert low <= -1.7 and high >= 2.2 and high - low <= 5.0  # covers the largest lead, not the smallest
    assert low % 0.5 == 0 and high % 0.5 == 0  # whole 5 mm boxes
    for y in _axes(fig, "y"):
        assert (y.dtick, y.minor.dtick) == (0.5, pytest.approx(0.1)) and y.showgrid and y.minor.showgrid
    for x in _axes(fig, "x"):
        assert (x.dtick, x.minor.dtick) == (0.2, pytest.approx(0.04)) and x.range[0] < -0.2  # room for the pulse
    pulses = [t for t in fig.data if t.name == "calibration"]
    assert len(pulses) == 3
    x, y = np.asarray(pulses[0].x, dtype=float), np.asarray(pulses[0].y, dtype=float)
    assert y.max() - y.min() == pytest.approx(1.0)  # 1 mV
    assert np.ptp(x[y == 1.0]) == pytest.approx(0.2) and x.max() <= 0  # 0.2 s, before the trace starts
    labels = [a for a in fig.layout.annotations if a.text in ("<b>II</b>", "<b>V1</b>", "<b>V5</b>")]
    assert len(labels) == 3 and all(a.textangle == 0 for a in labels)
    assert not any(y.title.text for y in _axes(fig, "y"))  # no rotated axis titles for the leads


def test_ecg_figure_attention_row_with_legend_and_readable_colour_bar():
    explanation = _signal_explanation()
    explanation.attributions = explanation.attributions * 1e-4  # IG on an ECG: logit units of 1e-4
    explanation.attributions[0, 10] = 1.0  # one outlier sample does not set the colour range
    data = np.zeros((3, 500))
    fig = figures.ecg_figure(data, 250.0, ["I", "II", "V1"], explanation, explained="Arrhythmia")
    (bars,) = [t for t in fig.data if t.type == "bar"]
    assert "attention" in bars.name.lower() and bars.showlegend is not False
    assert bars.yaxis != "y" and bars.yaxis not in {t.yaxis for t in _lines(fig)}  # its own row
    assert len(bars.y) == 8  # attention steps that cover the 2 s recording
    assert bars.width == pytest.approx(0.25)
    assert fig.layout.showlegend
    bar = fig.layout.coloraxis.colorbar
    assert "logit" in bar.title.text and "Arrhythmia" in bar.title.text
    assert fig.layout.coloraxis.cmax < 1e-3  # the 99th percentile, not the outlier
    assert bar.tickmode == "array" and bar.ticktext[2] == "0"
    assert not any(re.search(r"[µmkMG]$", t) for t in bar.ticktext)  # no SI prefixes
    assert all(re.fullmatch(r"(≤ |≥ )?[+−]?\d+(\.\d+)?", t) for t in bar.ticktext), bar.ticktext
    assert bar.ticktext[-1].startswith("≥") and bar.ticktext[0].startswith("≤")  # clipped ends say so


def test_ecg_figure_lead_subset_and_errors():
    data = np.zeros((2, 100))
    fig = figures.ecg_figure(data, 100.0, ["II", "V1"], leads=["V1"])
    assert [t.name for t in _lines(fig)] == ["V1"]
    with pytest.raises(ValueError, match="not in the recording"):
        figures.ecg_figure(data, 100.0, ["II", "V1"], leads=["V6"])
    with pytest.raises(ValueError, match="channels"):
        figures.ecg_figure(data, 100.0, ["II"])
    bad = _signal_explanation()
    bad.attributions = bad.attributions[:2]
    with pytest.raises(ValueError, match="attributions"):
        figures.ecg_figure(data, 100.0, ["II", "V1"], bad, explained="Arrhythmia")


def test_lead_importance_bars_skip_unrecorded_leads():
    fig = figures.lead_importance_bars(["I", "II", "V1"], np.array([0.4, 0.6, 0.0]), [True, True, False], "Normal")
    (bar,) = _bars(fig)
    assert list(bar.y) == [0.4, 0.6, None]
    assert [a.x for a in fig.layout.annotations if a.text == "not recorded"] == ["V1"]
    with pytest.raises(ValueError, match="one value per lead"):
        figures.lead_importance_bars(["I"], np.array([0.4, 0.6]), [True, True], "Normal")


# -------------------------------------------------------------------------------------------------- note
NOTE = "Dyspnoea on exertion.\nBNP <script>alert(1)</script> 1558 & \"raised\"\n\nNo chest pain."


def _span(note: str, word: str, score: float) -> Span:
    start = note.index(word)
    return Span(start, start + len(word), word, score)


def test_note_html_keeps_every_character_and_marks_each_word():
    words = [_span(NOTE, "raised", 0.8), _span(NOTE, "Dyspnoea", 0.4), _span(NOTE, "chest", -0.2)]
    out = figures.note_html(NOTE, words)
    assert "<script>" not in out and "&lt;script&gt;" in out
    text = re.sub(r"<(?!br>)[^>]*>", "", out).replace("<br>", "\n")
    assert html.unescape(text) == NOTE
    spans = re.findall(r'<span class="attr" data-score="([^"]+)" style="background: rgba\((\d+),(\d+),(\d+),'
                       r'([\d.]+)\)[^"]*" title="[^"]*">([^<]*)</span>', out)
    assert [s[5] for s in spans] == ["Dyspnoea", "raised", "chest"]  # in note order
    assert [float(s[0]) for s in spans] == pytest.approx([0.4, 0.8, -0.2])
    colours = {s[5]: s[1:4] for s in spans}
    assert colours["raised"] == colours["Dyspnoea"] != colours["chest"]
    alphas = {s[5]: float(s[4]) for s in spans}
    assert alphas["raised"] == pytest.approx(2 * alphas["Dyspnoea"]) == pytest.approx(4 * alphas["chest"])


def test_note_html_scale_and_bad_spans():
    word = _span(NOTE, "raised", 0.5)
    half = re.search(r"rgba\(\d+,\d+,\d+,([\d.]+)\)", figures.note_html(NOTE, [word], max_abs=1.0)).group(1)
    full = re.search(r"rgba\(\d+,\d+,\d+,([\d.]+)\)", figures.note_html(NOTE, [word])).group(1)
    assert float(full) == pytest.approx(2 * float(half))
    assert figures.note_html("a\nb", []) == '<div class="note" style="white-space: pre-wrap; line-height: 1.8">a<br>b</div>'
    with pytest.raises(ValueError, match="overlaps"):
        figures.note_html(NOTE, [Span(0, 8, "Dyspnoea", 1.0), Span(3, 10, "pnoea o", 1.0)])
    with pytest.raises(ValueError, match="outside the note"):
        figures.note_html("short", [Span(2, 40, "x", 1.0)])
    legend = figures.note_legend_html(0.25, "Normal")
    assert "0.25" in legend and "linear-gradient" in legend
    with pytest.raises(ValueError):
        figures.note_legend_html(float("nan"), "Normal")


# -------------------------------------------------------------------------------------------------- labs
def test_lab_bars_labels_and_unmeasured_features():
    table = pd.DataFrame([
        {"name": "bnp_pg_ml", "kind": "numeric", "value": 1558.0, "unit": "pg/mL", "reference_range": "< 100 pg/mL",
         "outside_range": True, "measured": True, "score": 0.9, "method": "integrated_gradients"},
        {"name": "hdl_mg_dl", "kind": "numeric", "value": float("nan"), "unit": "mg/dL",
         "reference_range": "> 40 mg/dL", "outside_range": False, "measured": False, "score": float("nan"),
         "method": "integrated_gradients"},
        {"name": "sex", "kind": "categorical", "value": "M", "unit": "", "reference_range": "",
         "outside_range": False, "measured": True, "score": -0.1, "method": "withheld"},
    ])
    (bar,) = _bars(figures.lab_bars(table, "Heart failure"))
    assert list(bar.y) == ["<b>BNP 1558 pg/mL (ref < 100) ▲</b>", "HDL: not measured", "Sex M"]
    assert bar.x[1] is None and list(bar.x[::2]) == pytest.approx([0.9, -0.1])
    assert bar.marker.color[0] != bar.marker.color[2]
    with pytest.raises(ValueError, match="lacks columns"):
        figures.lab_bars(table.drop(columns="measured"), "Heart failure")


# ------------------------------------------------------------------------------------------------ cohort
def test_rater_group_names_who_ranked():
    assert figures.rater_group(["synthetic_rater_A"], simulated=True) == "simulated raters"
    assert figures.rater_group(["dr_smith", "dr_jones", "dr_smith"], simulated=False) == "dr_jones and dr_smith"
    assert figures.rater_group(list("abcde"), simulated=False) == "a, b, c and 2 more raters"
    with pytest.raises(ValueError, match="at least one rater"):
        figures.rater_group([], simulated=False)


# ------------------------------------------------------------------------------------ the explained class
def test_every_attribution_figure_names_the_explained_class():
    name = figures.explained_label(["normal", "heart_failure"], 1, contrast=0)
    assert name == "Heart failure − Normal" and figures.explained_label(["normal"], 0) == "Normal"
    with pytest.raises(ValueError, match="class index 2"):
        figures.explained_label(["normal", "heart_failure"], 2)
    scores = {"shapley": {"image": 0.3, "text": 0.1, "signal": 0.1, "tabular": -0.05}}
    channels = ["I", "II", "V1"]
    data = np.zeros((3, 500))
    lab = pd.DataFrame([{"name": "bnp_pg_ml", "kind": "numeric", "value": 50.0, "unit": "pg/mL",
                         "reference_range": "< 100 pg/mL", "outside_range": False, "measured": True, "score": 0.9,
                         "method": "integrated_gradients"}])
    titled = [figures.importance_bars(scores, name), figures.lab_bars(lab, name),
              figures.lead_importance_bars(["I"], np.array([1.0]), [True], name),
              figures.ecg_figure(data, 250.0, channels, _signal_explanation(), explained=name)]
    for fig in titled:
        assert name in fig.layout.title.text, fig.layout.title.text
    overlay = figures.image_overlay(np.zeros((3, 4)), np.ones((3, 4)), explained=name)
    assert name in overlay.data[1].colorbar.title.text
    assert f"for {html.escape(name)}" in figures.note_legend_html(0.5, name)
    # an attribution without the class it is for is refused, not drawn unlabelled
    for build in (lambda: figures.importance_bars(scores, ""),
                  lambda: figures.ecg_figure(data, 250.0, channels, _signal_explanation()),
                  lambda: figures.image_overlay(np.zeros((3, 4)), np.ones((3, 4)))):
        with pytest.raises(ValueError, match="explained must name the class"):
            build()


def test_metric_bars_error_bars_match_ci():
    rows = [{"name": "accuracy", "value": 0.8, "ci_low": 0.7, "ci_high": 0.85},
            {"name": "macro F1", "value": 0.654, "ci_low": 0.6, "ci_high": 0.7}]
    (bar,) = figures.metric_bars(rows).data
    assert list(bar.error_y.array) == pytest.approx([0.05, 0.046])
    assert list(bar.error_y.arrayminus) == pytest.approx([0.1, 0.054])
    assert bar.error_y.symmetric is False
    assert list(bar.text) == ["80.0%", "65.4%"]
    with pytest.raises(ValueError, match="ci_low <= ci_high"):
        figures.metric_bars([{"name": "x", "value": 0.9, "ci_low": 0.8, "ci_high": 0.7}])
    outside = figures.metric_bars([{"name": "x", "value": 0.9, "ci_low": 0.7, "ci_high": 0.8}]).data[0].error_y
    assert list(outside.array) == [0] and list(outside.arrayminus) == pytest.approx([0.2])  # clipped, not reversed
    assert math.isnan(figures.metric_bars([{"name": "x", "value": np.nan, "ci_low": np.nan,
                                            "ci_high": np.nan}]).data[0].y[0])


def test_metric_bars_groups_in_colours_labels_clear_of_error_bars_and_a_y_title():
    rows = [{"name": "Accuracy", "group": "as recorded", "value": 0.9, "ci_low": 0.85, "ci_high": 0.94},
            {"name": "Macro F1", "group": "as recorded", "value": 0.88, "ci_low": 0.8, "ci_high": 0.92},
            {"name": "Accuracy", "group": "with the rates above", "value": 0.7, "ci_low": 0.6, "ci_high": 0.8},
            {"name": "Macro F1", "group": "with the rates above", "value": 0.65, "ci_low": 0.6, "ci_high": 0.7}]
    fig = figures.metric_bars(rows, "Score (95 % CI)")
    baseline, ablated = fig.data
    assert (baseline.name, ablated.name) == ("as recorded", "with the rates above")
    assert baseline.marker.color != ablated.marker.color
    assert list(ablated.x) == ["Accuracy", "Macro F1"] and list(ablated.y) == pytest.approx([0.7, 0.65])
    assert baseline.textposition == "inside" and baseline.insidetextanchor == "start"  # at the foot, not the whisker
    assert fig.layout.yaxis.title.text == "Score (95 % CI)" and fig.layout.showlegend
    assert figures.metric_bars(rows[:1]).layout.yaxis.title.text  # a y title by default too
    with pytest.raises(ValueError, match="unique within a group"):
        figures.metric_bars(rows[:1] * 2)


def _metric(value):
    return {"value": value, "ci_low": value - 0.05, "ci_high": value + 0.03}


def test_withheld_table_names_modalities_as_the_sliders_and_gives_the_paper_a_column():
    study = {key: {"accuracy": _metric(acc), "macro_f1": _metric(acc - 0.01)}
             for key, acc in [("none", 0.9), ("image", 0.85), ("signal", 0.8), ("text", 0.88), ("image,text", 0.7)]}
    table = figures.withheld_table(study, paper=True)
    assert list(table["Withheld"]) == ["Nothing (all recorded)", "Echo image", "ECG", "Clinical note",
                                       "Echo image + Clinical note"]
    assert list(table["Change (points)"]) == pytest.approx([0, -5, -10, -2, -20])
    assert list(table["Paper, real data (%)"]) == ["94.2", "89.7 (mean of any one)", "89.4 (−4.8)", "92.1 (−2.1)",
                                                   "84.3 (mean of any two)"]
    assert table.loc[0, "95 % CI (%)"] == "85.0–93.0"
    assert "Paper, real data (%)" not in figures.withheld_table(study).columns
    assert figures.table_height(11) >= 35 * 12  # the 11 rows and the header, no last row behind a scroll bar
    with pytest.raises(ValueError, match="'none' row"):
        figures.withheld_table({"image": study["image"]})
    with pytest.raises(ValueError, match="unknown modality"):
        figures.withheld_name("audio")


TABLE2 = """# Table 2

| model | seeds | accuracy (%) | macro F1 | paper accuracy (%) | paper F1 |
| --- | --- | --- | --- | --- | --- |
| image_only | 3 | 55.0 ± 1.8 | 0.518 ± 0.032 | 86.3 | 0.847 |
| mlp_fusion | 3 | 91.5 ± 1.8 | 0.917 ± 0.018 | 91.4 | 0.904 |
| neurofusion | 3 | 89.7 ± 1.3 | 0.898 ± 0.012 | 94.2 | 0.931 |
"""


def test_table2_frame_three_decimals_everywhere_and_readable_names():
    frame = figures.table2_frame(TABLE2)
    assert list(frame["Model"]) == ["Echo image only", "MLP fusion", "NeuroFusion"]
    assert list(frame.columns) == ["Model", "Accuracy", "Macro F1", "Paper accuracy", "Paper macro F1"]
    assert frame.loc[2].tolist() == ["NeuroFusion", "0.897 ± 0.013", "0.898 ± 0.012", "0.942", "0.931"]
    for cell in frame.drop(columns="Model").to_numpy().ravel():
        assert all(re.fullmatch(r"\d\.\d{3}", part) for part in cell.split(" ± ")), cell
    assert frame.attrs["means"]["neurofusion"]["accuracy"] < frame.attrs["means"]["mlp_fusion"]["accuracy"]
    with pytest.raises(ValueError, match="no table"):
        figures.table2_frame("# nothing here")


def test_table2_frame_shows_a_variant_without_paper_numbers():
    variant = ("| neurofusion_gated (NeuroFusion + context gating; not in the paper) | 2 | 80.5 ± 2.1 "
               "| 0.801 ± 0.020 | – | – |\n")
    frame = figures.table2_frame(TABLE2 + variant)
    assert frame.loc[3].tolist() == ["NeuroFusion + context gating (not in the paper)", "0.805 ± 0.021",
                                     "0.801 ± 0.020", "—", "—"]
    with pytest.raises(ValueError, match="expected 'mean' or 'mean ± sd'"):
        figures.table2_frame(TABLE2 + "| neurofusion | 3 | n/a | 0.9 | 94.2 | 0.931 |\n")


def test_training_curves_loss_and_f1_on_separate_labelled_axes():
    history = [{"epoch": k, "train_loss": 1.5 / k, "val_macro_f1": 0.4 + 0.05 * k} for k in range(1, 9)]
    fig = figures.training_curves(history, best_epoch=6)
    loss, f1 = fig.data
    assert loss.yaxis != f1.yaxis
    assert "loss" in fig.layout.yaxis.title.text.lower() and "F1" in fig.layout.yaxis2.title.text
    assert tuple(fig.layout.yaxis2.range) == (0, 1)
    assert [s.x0 for s in fig.layout.shapes] == [6, 6]
    with pytest.raises(ValueError, match="needs"):
        figures.training_curves([{"epoch": 1}])


def test_training_curves_of_a_survival_model_show_the_validation_c_index():
    history = [{"epoch": k, "train_loss": 1.5 / k, "val_c_index": 0.55 + 0.02 * k, "val_nll": 1.4} for k in range(1, 6)]
    fig = figures.training_curves(history, best_epoch=4, validation="val_c_index", loss="negative log-likelihood")
    loss, c_index = fig.data
    assert list(c_index.y) == pytest.approx([h["val_c_index"] for h in history])
    assert fig.layout.yaxis2.title.text == "Validation<br>C-index"
    assert "negative log-likelihood" in fig.layout.yaxis.title.text
    with pytest.raises(ValueError, match=r"needs \['val_macro_f1'\]"):
        figures.training_curves(history)  # a survival history has no macro F1
    with pytest.raises(ValueError, match="validation must be one of"):
        figures.training_curves(history, validation="val_auc")


# ------------------------------------------------------------------------------------- ECG 3x4 printout
def _twelve_lead(fs: float = 100.0, seconds: float = 10.0) -> tuple[np.ndarray, list[str]]:
    """Each lead's samples hold its row number plus its time, so a drawn window shows where it came from."""
    channels = list(figures.STANDARD_LEADS)[::-1]  # recording order differs from the printout's
    t = np.arange(int(seconds * fs)) / fs
    return np.stack([0.01 * k + t / 100 for k in range(len(channels))]), channels


def _explanation_12(fs: float = 100.0) -> SignalExplanation:
    rng = np.random.default_rng(2)
    leads = list(figures.STANDARD_LEADS)
    return SignalExplanation(
        target=1, leads=leads, fs=fs, times=np.arange(1000) / fs, attributions=rng.normal(size=(12, 1000)),
        lead_importance=np.full(12, 1 / 12), recorded=np.ones(12, bool), recorded_seconds=10.0,
        attention=np.full(40, 1 / 40), attention_times=(np.arange(40) + 0.5) * 0.25, attention_step_s=0.25,
        segments=[Segment(6.0, 6.5, 3.0), Segment(1.0, 1.5, 2.0)], convergence_delta=0.0)


def test_ecg_3x4_is_the_default_for_a_10_s_12_lead_record_and_each_lead_sits_in_its_cell():
    data, channels = _twelve_lead()
    fig = figures.ecg_figure(data, 100.0, channels)
    lines = {t.name: t for t in fig.data if t.type == "scatter" and t.name not in ("calibration",)}
    assert set(lines) == set(figures.STANDARD_LEADS) | {figures.ECG_RHYTHM_NAME}  # one trace per lead + rhythm
    for row, leads in enumerate(figures.ECG_3X4):
        axes = {lines[lead].yaxis for lead in leads}
        assert len(axes) == 1  # the four leads of a row share its axes
        for column, lead in enumerate(leads):
            trace = lines[lead]
            x = trace.x0 + trace.dx * np.arange(len(trace.y))
            assert x[0] == pytest.approx(2.5 * column) and 2.5 * (column + 1) - 0.011 <= x[-1] < 2.5 * (column + 1)
            expected = data[channels.index(lead), int(250 * column):int(250 * (column + 1))]
            np.testing.assert_allclose(trace.y, expected, rtol=1e-6)  # this lead, this window
    rows = [lines[leads[0]].yaxis for leads in figures.ECG_3X4]
    assert len(set(rows)) == 3
    rhythm = lines[figures.ECG_RHYTHM_NAME]
    assert rhythm.yaxis not in rows and rhythm.x0 == 0 and len(rhythm.y) * rhythm.dx == pytest.approx(10.0)
    np.testing.assert_allclose(rhythm.y, data[channels.index("II")], rtol=1e-6)  # lead II, all 10 s
    # the paper's convention in every cell: one mV range, the grid, a pulse on each of the 4 rows
    assert len({tuple(a.range) for a in _axes(fig, "y")}) == 1
    assert all((y.dtick, y.minor.dtick) == (0.5, pytest.approx(0.1)) for y in _axes(fig, "y"))
    pulses = [t for t in fig.data if t.name == "calibration"]
    assert sorted(p.yaxis for p in pulses) == sorted(rows + [rhythm.yaxis])
    labels = {a.text: a for a in fig.layout.annotations if a.text.startswith("<b>")}
    for lead, trace in lines.items():
        if lead in figures.ECG_3X4[0] + figures.ECG_3X4[1] + figures.ECG_3X4[2]:
            label = labels[f"<b>{lead}</b>"]
            assert label.textangle == 0 and label.yref == f"{trace.yaxis} domain" and label.xref == trace.xaxis
            assert trace.x0 <= label.x < trace.x0 + 0.5  # at the start of its own cell
    assert labels["<b>II</b> (rhythm strip)"].yref == f"{rhythm.yaxis} domain"
    assert figures.ecg_layout(channels, 10.0) == "3x4"


def test_ecg_3x4_attribution_strips_and_segment_boxes_stay_on_their_time_windows():
    data, channels = _twelve_lead()
    explanation = _explanation_12()
    fig = figures.ecg_figure(data, 100.0, channels, explanation, explained="Arrhythmia")
    strips = {}
    for t in fig.data:
        if t.type == "heatmap":
            strips.setdefault(t.name, []).append(t)
    assert len(strips["V1 attribution"]) == 1 and len(strips["II attribution"]) == 2  # its cell and the rhythm
    (v1,) = strips["V1 attribution"]
    assert v1.x0 == pytest.approx(5.0) and len(v1.z[0]) == 250  # V1's column: 5.0 to 7.5 s
    np.testing.assert_allclose(v1.z[0], explanation.attributions[figures.STANDARD_LEADS.index("V1"), 500:750],
                               rtol=1e-6)
    assert sorted(len(s.z[0]) for s in strips["II attribution"]) == [250, 1000]
    lines = {t.name: t for t in fig.data
             if t.type == "scatter" and t.name in figures.STANDARD_LEADS + (figures.ECG_RHYTHM_NAME,)}
    assert len(lines) == 13 and v1.yaxis == lines["V1"].yaxis
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(r.x0, r.x1, r.xref) for r in rects] == [(6.0, 6.5, "x"), (1.0, 1.5, "x")]  # shared time axis
    rhythm_bottom = fig.layout[lines[figures.ECG_RHYTHM_NAME].yaxis.replace("y", "yaxis")].domain[0]
    assert all(r.y0 == pytest.approx(rhythm_bottom) and r.y1 == 1 for r in rects)  # over every row
    (bars,) = [t for t in fig.data if t.type == "bar"]
    assert bars.yaxis not in {t.yaxis for t in lines.values()}


def test_ecg_layout_falls_back_to_stacked_and_refuses_a_3x4_it_cannot_draw():
    data, channels = _twelve_lead()
    subset = figures.ecg_figure(data, 100.0, channels, leads=["II", "V1", "V5"])
    assert [t.name for t in _lines(subset)] == ["II", "V1", "V5"] and len({t.yaxis for t in _lines(subset)}) == 3
    stacked = figures.ecg_figure(data, 100.0, channels, layout="stacked")
    assert len(_lines(stacked)) == 12 and all(t.x0 == 0 and len(t.y) == 1000 for t in _lines(stacked))
    renamed = [f"ch{k}" for k in range(12)]  # leads named otherwise: stacked
    assert figures.ecg_layout(renamed, 10.0) == "stacked" and figures.ecg_layout(channels, 5.0) == "stacked"
    assert len(figures.ecg_figure(data, 100.0, renamed).data) == 24  # 12 traces + 12 pulses, one per row
    with pytest.raises(ValueError, match="lacks \\['I'\\]"):
        figures.ecg_figure(data[1:], 100.0, [c for c in channels if c != "I"], layout="3x4")
    with pytest.raises(ValueError, match="10 s recording"):
        figures.ecg_figure(data[:, :500], 100.0, channels, layout="3x4")
    with pytest.raises(ValueError, match="subset"):
        figures.ecg_figure(data, 100.0, channels, leads=["II"], layout="3x4")
    with pytest.raises(ValueError, match="layout must be one of"):
        figures.ecg_figure(data, 100.0, channels, layout="6x2")


def _contrast(a: str, b: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""
    def luminance(color: str) -> float:
        channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_mark_colours_stay_visible_on_the_light_and_the_dark_theme():
    """Bars and lines need 3:1 against the background (WCAG for graphics) on Streamlit's light (#ffffff) and
    dark (#0e1117) themes; the old slate #334155 had 1.8:1 on dark and vanished."""
    from app import survival_figures

    assert _contrast("#334155", "#0e1117") < 3  # the check can fail
    survival = (survival_figures.PREDICTED_COLOR, survival_figures.COHORT_COLOR, *survival_figures.GROUP_COLORS.values())
    for color in (*figures.THEMED_MARK_COLORS, *survival):
        assert _contrast(color, "#ffffff") >= 3 and _contrast(color, "#0e1117") >= 3, color


CANCER = {"histopathology": "Histopathology", "genomics": "Genomics", "treatment_notes": "Treatment notes",
          "clinical": "Clinical"}


def test_attention_and_importance_draw_a_declared_set_of_modalities():
    """The cancer task's four named modalities (or any M) in declaration order, titled by their titles."""
    matrix = np.full((4, 4), 0.25)
    fig = figures.attention_heatmap(matrix, [True, False, True, True], modalities=CANCER)
    assert list(fig.data[0].x) == ["Histopathology", "Genomics (missing)", "Treatment notes", "Clinical"]
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        figures.attention_heatmap(matrix, modalities=dict(list(CANCER.items())[:3]))
    scores = {"shapley": {"histopathology": 0.1, "genomics": None, "treatment_notes": -0.02, "clinical": 0.05}}
    bars = figures.importance_bars(scores, "5-year survival", modalities=CANCER)
    assert list(bars.data[0].x) == list(CANCER.values())
    assert bars.data[0].y[1] is None and bars.data[0].y[2] == pytest.approx(-0.02)
    with pytest.raises(ValueError, match="unknown modality 'image'"):
        figures.importance_bars({"shapley": {"image": 0.1}}, "5-year survival", modalities=CANCER)
