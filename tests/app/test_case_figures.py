"""Pure pieces of the case page for declared modalities and survival models (app/case_figures.py): the colour
tile keeps its pixels exactly, the saliency sits on it, the gene table lists exactly the mutated genes, the
compared curve is drawn from S(0) = 1, and the chooser's labels read as the issue asks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.case_figures import (
    colour_overlay,
    curve_with_compared,
    decode_png_uri,
    gene_bars,
    gene_table,
    horizon_words,
    is_binary_panel,
    outcome_text,
    png_data_uri,
    rgb_uint8,
    short_titles,
    chosen_case,
    survival_case_label,
)
from neurofusion.survival import SurvivalBins, kaplan_meier

BINS = SurvivalBins(edges=(0.0, 12.0, 24.0, 36.0, 48.0, 60.0), unit="months")


def _tile(seed: int = 0, size: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).random((3, size, size)).astype(np.float32)


def test_a_float_channel_first_tile_becomes_rounded_uint8_pixels():
    tile = _tile()
    rgb = rgb_uint8(tile)
    assert rgb.shape == (12, 12, 3) and rgb.dtype == np.uint8
    assert rgb[4, 7, 2] == round(float(tile[2, 4, 7]) * 255)
    assert np.array_equal(rgb_uint8(rgb), rgb)  # channel-last uint8 passes through
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        rgb_uint8(np.zeros((12, 12)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_uint8(tile * 2)


def test_the_png_round_trip_is_lossless():
    rgb = rgb_uint8(_tile(1))
    assert np.array_equal(decode_png_uri(png_data_uri(rgb)), rgb)
    with pytest.raises(ValueError, match="uint8"):
        png_data_uri(rgb.astype(float))


def test_colour_overlay_draws_the_tile_in_colour_with_the_saliency_on_top():
    tile = _tile(2)
    saliency = np.zeros((12, 12))
    saliency[3:6, 3:6] = 1.0
    fig = colour_overlay(tile, saliency, 0.5, explained="Survival at 60 months", method="integrated_gradients")
    image, overlay = fig.data
    assert image.type == "image" and overlay.type == "heatmap"
    pixels = decode_png_uri(image.source)
    assert np.array_equal(pixels, rgb_uint8(tile))
    assert not np.array_equal(pixels[..., 0], pixels[..., 1])  # colour, not grey
    assert np.asarray(overlay.z).shape == (12, 12) and overlay.opacity == 0.5
    assert overlay.zmin == -overlay.zmax  # signed method: symmetric around 0
    assert fig.layout.title.text.endswith("for Survival at 60 months")
    assert "(logit units)" in overlay.colorbar.title.text
    other = colour_overlay(tile, saliency, explained="Risk", units="probability units").data[1]
    assert "(probability units)" in other.colorbar.title.text and "logit" not in other.colorbar.title.text
    assert tuple(fig.layout.yaxis.range) == (11.5, -0.5)  # row 0 at the top, like the tile
    assert len(colour_overlay(tile).data) == 1
    with pytest.raises(ValueError, match="shape"):
        colour_overlay(tile, np.zeros((5, 5)), explained="x")
    with pytest.raises(ValueError, match="explained"):
        colour_overlay(tile, saliency)
    with pytest.raises(ValueError, match="opacity"):
        colour_overlay(tile, saliency, 1.5, explained="x")


def test_a_mutation_panel_is_told_from_clinical_values():
    genes = {"TP53": 1.0, "BRCA1": 0.0, "KRAS": float("nan")}
    assert is_binary_panel(genes)
    assert not is_binary_panel({"age": 53.0, "sex": "F"})
    assert not is_binary_panel({"TP53": 1.0, "ecog": 2.0})
    assert not is_binary_panel({"TP53": 1.0})  # one feature is not a panel
    assert not is_binary_panel(None)


def _attributions() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["TP53", "BRCA1", "KRAS", "EGFR", "APC", "PTEN"],
        "value": [1.0, 0.0, 1.0, 0.0, np.nan, 0.0],
        "measured": [True, True, True, True, False, True],
        "score": [-0.05, 0.3, 0.2, 0.001, 0.9, -0.02],
    })


def test_gene_table_lists_exactly_the_mutated_genes_then_notable_unmutated_ones():
    table = gene_table(_attributions(), drivers=["TP53"])
    assert table["gene"].tolist() == ["KRAS", "TP53"]  # by |attribution|; the unmeasured APC is not listed
    assert table["mutated"].all() and table["driver"].tolist() == [False, True]
    assert table["attribution"].tolist() == [0.2, -0.05]
    wider = gene_table(_attributions(), min_abs=0.01)
    assert wider["gene"].tolist() == ["KRAS", "TP53", "BRCA1", "PTEN"]  # EGFR's 0.001 stays out
    assert wider["mutated"].tolist() == [True, True, False, False]
    with pytest.raises(ValueError, match="columns"):
        gene_table(_attributions().drop(columns="score"))


def test_gene_bars_label_drivers_and_unmutated_genes():
    fig = gene_bars(gene_table(_attributions(), drivers=["TP53"], min_abs=0.25), "Risk")
    (bars,) = fig.data
    assert list(bars.y) == ["KRAS", "★ TP53", "BRCA1 (not mutated)"]
    assert list(bars.x) == pytest.approx([0.2, -0.05, 0.3])
    assert list(bars.marker.opacity) == [1.0, 1.0, 0.45]
    assert fig.layout.title.text == "Mutated genes: attribution to Risk"


def test_the_compared_curve_starts_at_one_and_follows_the_bins():
    curve = np.array([0.9, 0.8, 0.6, 0.5, 0.4])
    ablated = np.array([0.95, 0.9, 0.8, 0.7, 0.65])
    km = kaplan_meier(np.array([5.0, 10.0, 20.0, 40.0, 70.0]), np.array([1, 0, 1, 1, 0], dtype=bool))
    fig = curve_with_compared(BINS, curve, 60.0, ablated, compared_name="ablated", cohort=km)
    by_name = {t.name: t for t in fig.data if t.name}
    assert list(by_name["ablated"].y) == pytest.approx([1.0, *ablated])
    assert list(by_name["ablated"].x) == list(BINS.edges)
    assert list(by_name["this case (predicted)"].y) == pytest.approx([1.0, *curve])
    assert list(by_name["cohort (Kaplan-Meier)"].y) == pytest.approx([1.0, *km.survival])
    assert "ablated" not in {t.name for t in curve_with_compared(BINS, curve, 60.0).data}
    with pytest.raises(ValueError, match=r"\(5,\)"):
        curve_with_compared(BINS, curve, 60.0, ablated[:3])


def test_chooser_labels_say_risk_survival_and_the_recorded_outcome():
    row = {"risk_group": "high", "survival": 0.274, "time": 67.01, "event": 0.0, "error": ""}
    assert survival_case_label("CA-00022", row, 60.0) == \
        "CA-00022 · high risk · 5-y survival 27 % · alive at 67 mo (censored)"
    assert outcome_text(5.81, 1.0) == "died at 5.8 mo"
    assert outcome_text(float("nan"), 1.0) == "outcome not recorded"
    assert survival_case_label("CA-1", {**row, "error": "bad PNG"}, 60.0) == "CA-1 · unreadable"
    assert survival_case_label("CA-2", row, 30.0).startswith("CA-2 · high risk · 30-months survival 27 %")
    assert horizon_words(60.0) == "5 years" and horizon_words(12.0) == "1 year" and horizon_words(30.0) == "30 months"


def test_short_titles_fit_the_narrow_figures_and_stay_distinct():
    titles = {"histopathology": "Histopathology", "genomics": "Genomics", "treatment_notes": "Treatment notes",
              "clinical": "Clinical"}
    assert short_titles(titles) == {"histopathology": "Histop.", "genomics": "Genomics",
                                    "treatment_notes": "Notes", "clinical": "Clinical"}
    clash = {"a": "Pathology slides", "b": "Radiology slides"}
    assert short_titles(clash) == clash  # 'Slides' twice would not tell them apart
    with pytest.raises(ValueError, match="width"):
        short_titles(titles, width=2)


def test_completeness_text_warns_above_five_percent():
    from app.case_panels import completeness_text
    from explain.integrated import Completeness

    def made(error: float) -> Completeness:
        return Completeness(method="gausslegendre", n_steps=32, delta=error, gap=1.0, relative_error=error,
                            tolerance=None, converged=None)

    text, complete = completeness_text(made(0.012))
    assert complete and "32 steps" in text and "within 1.2%" in text and "Above" not in text
    text, complete = completeness_text(made(0.29))
    assert not complete and "within 29.0%" in text and "until each map adds up" in text
    assert completeness_text(made(0.05))[1]  # the limit itself is within


def test_a_case_list_value_names_its_case_even_as_a_stale_label():
    ids = ["CV-00026", "CV-00090", "CV-00102"]
    assert chosen_case("CV-00090", ids) == "CV-00090"
    # the list's label from before it was labelled with predictions, handed back as text
    assert chosen_case("CV-00090 · true Valvular disease", ids) == "CV-00090"
    assert chosen_case("CA-1 · unreadable", ["CA-1"]) == "CA-1"
    assert chosen_case("CV-99999 · true Normal", ids) is None
    assert chosen_case("CV-00090x", ids) is None
    assert chosen_case(None, ids) is None and chosen_case(90, ids) is None
