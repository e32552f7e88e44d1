"""The case page on the cancer cohort (a survival model with declared modalities), headless: it renders for a
complete case and one without genomics, every modality tab opens, and what it draws is what the model and
the cohort say: the predicted curve is predict_survival's, the Kaplan-Meier curve the cohort's, the genomics
slider at 0 % gives predict_survival with genomics dropped, the risk quantity is 1 - survival, the tile is
in colour, the genomics panel lists the case's mutated genes, a what-if edit moves the curve, controls reset
with the case, a corrupt tile is a message naming the file, and the report draws the curve."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app.case_figures import decode_png_uri, gene_bars, rgb_uint8
from app.ground_truth_view import mark_genes, planted, strength_table
from app.report import attributions_csv, case_report_html
from explain.whatif import toggle_mutations
from explain.case import ExplainSettings, explain_case
from explain.whatif import edits_of, lab_limits, what_if, with_lab
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from neurofusion.survival import kaplan_meier

ROOT = Path(__file__).resolve().parents[2]
MAIN = str(ROOT / "app" / "main.py")
CANCER = ROOT / "sample_data" / "cancer"
CHECKPOINT = ROOT / "sample_data" / "checkpoints" / "cancer_demo"
COMPLETE = "CA-00022"  # every modality; TP53 mutated, a planted region, driver gene and phrases
NO_GENOMICS = "CA-00107"  # histopathology, notes and clinical; no mutation panel
TABS = {"Histopathology": "case.image.histopathology", "Genomics": "case.genes.genomics",
        "Treatment notes": None, "Clinical": "case.labs.clinical"}


def _app(case_id: str, cohort: Path = CANCER) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=300)
    at.session_state["settings.n_steps"] = 8
    at.session_state["settings.steps_mode"] = "fixed"
    at.session_state["settings.checkpoint"] = str(CHECKPOINT)
    at.session_state["settings.cohort"] = str(cohort)
    at.query_params["case"] = case_id
    return at.run()


def _figure(at: AppTest, key: str) -> dict:
    chart = next(c for c in at.get("plotly_chart") if c.key == key)
    return json.loads(chart.proto.spec)


def _trace(figure: dict, name: str) -> dict:
    return next(t for t in figure["data"] if t.get("name") == name)


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _values(trace: dict, axis: str = "y") -> np.ndarray:
    """A trace's values, whether plotly sent a list or a typed array."""
    value = trace[axis]
    if isinstance(value, dict):  # {"dtype": ..., "bdata": base64}
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).astype(float)
    return np.asarray(value, dtype=float)


def _caption(at: AppTest, start: str) -> str:
    return next(c.value for c in at.caption if c.value.startswith(start))


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    checkpoint = load_checkpoint(CHECKPOINT, device="cpu")
    return Predictor(checkpoint.model, checkpoint.tokenizer)


@pytest.fixture(scope="module")
def reader() -> CohortReader:
    return CohortReader(CANCER)


@pytest.fixture(scope="module")
def page() -> AppTest:
    """One page run on the complete case, shared by the tests below (each leaves the controls as it found them)."""
    at = _app(COMPLETE)
    _no_errors(at)
    return at


def test_first_screen_shows_the_predicted_curve_beside_the_cohorts_kaplan_meier(page, predictor, reader):
    assert page.title[0].value == "Case explorer"
    label = page.selectbox(key="case.id").format_func(COMPLETE)
    assert re.fullmatch(r"CA-00022 · (low|medium|high) risk · 5-y survival \d+ % · alive at 67 mo \(censored\)",
                        label)
    figure = _figure(page, "case.survival_curve")
    expected = predictor.predict_survival([reader[COMPLETE]]).curves[0]
    assert _values(_trace(figure, "this case (predicted)")) == pytest.approx(np.r_[1.0, expected], abs=1e-6)
    table = reader.table
    km = kaplan_meier(table["time"].to_numpy(dtype=float), table["event"].to_numpy(dtype=float).astype(bool))
    cohort = _trace(figure, "cohort (Kaplan-Meier)")
    assert _values(cohort, "x") == pytest.approx(np.r_[0.0, km.time])
    assert _values(cohort) == pytest.approx(np.r_[1.0, km.survival], abs=1e-9)
    assert any(m.value.startswith("**Modalities:** Histopathology ✓ · Genomics ✓") for m in page.markdown)


def test_every_modality_tab_opens_and_the_histopathology_tile_is_in_colour(page, reader):
    case = reader[COMPLETE]
    for tab, key in TABS.items():
        page.session_state["case.modality_tab"] = tab
        page.run()
        _no_errors(page)
        keys = {c.key for c in page.get("plotly_chart")}
        assert {"case.survival_curve", "case.attention", "case.importance", "case.ablation_curve"} <= keys
        assert key is None or key in keys, (tab, keys)
        if tab == "Treatment notes":
            assert any('class="attr"' in h.proto.body for h in page.get("html"))
        if tab == "Genomics":
            mutated = sorted(g for g, v in case.value("genomics").items() if v == 1.0)
            line = next(m.value for m in page.markdown if "mutated-genes" in m.value)
            assert line.startswith(f"**{len(mutated)} of 50 genes mutated**")
            assert sorted(re.search(r"id='mutated-genes'>([^<]*)<", line).group(1).split(", ")) == mutated
    page.session_state["case.modality_tab"] = "Histopathology"
    page.run()
    image = _figure(page, "case.image.histopathology")["data"][0]
    assert image["type"] == "image"
    pixels = decode_png_uri(image["source"])
    assert np.array_equal(pixels, rgb_uint8(case.value("histopathology")))
    assert np.abs(pixels[..., 0].astype(int) - pixels[..., 2].astype(int)).mean() > 5  # H&E colours, not grey
    colorbar = _figure(page, "case.image.histopathology")["data"][1]["colorbar"]["title"]["text"]
    assert "Survival at 60 months" in colorbar and "(probability units)" in colorbar


def test_genomics_slider_at_zero_draws_the_curve_with_genomics_dropped(page, predictor, reader):
    page.slider(key="case.ablate_genomics").set_value(0).run()
    _no_errors(page)
    case = reader[COMPLETE]
    dropped = predictor.predict_survival([case], drop=("genomics",))
    ablated = _trace(_figure(page, "case.ablation_curve"), "with the sliders' observation")
    assert _values(ablated) == pytest.approx(np.r_[1.0, dropped.curves[0]], abs=1e-6)
    text = next(m.value for m in page.markdown if "ablation-result" in m.value)
    assert float(re.search(r"id='ablation-result'>([\d.]+)%", text).group(1)) == pytest.approx(
        100 * dropped.survival[0], abs=0.051)
    page.slider(key="case.ablate_genomics").set_value(100).run()


def test_the_risk_quantity_is_one_minus_survival_in_the_importance_caption(page):
    pattern = r"= ([\d.]+) − ([\d.]+)\.$"
    survival = [float(v) for v in re.search(pattern, _caption(page, "Shapley values for Survival")).groups()]
    page.radio(key="case.quantity").set_value("risk").run()
    _no_errors(page)
    risk = [float(v) for v in re.search(pattern, _caption(page, "Shapley values for Risk")).groups()]
    assert risk == pytest.approx([1 - survival[0], 1 - survival[1]], abs=1.5e-3)
    page.radio(key="case.quantity").set_value("horizon").run()
    _no_errors(page)
    assert page.slider(key="case.horizon").value == 60.0
    page.slider(key="case.horizon").set_value(24.0).run()
    assert any("Survival at 24 months" in m.value for m in page.markdown if "explained-class" in m.value)
    page.radio(key="case.quantity").set_value("survival").run()


def test_ground_truth_marks_the_region_the_driver_genes_and_the_strengths(page):
    truth = pd.read_csv(CANCER / "ground_truth.csv", dtype=str, keep_default_na=False).set_index("case_id")
    page.toggle(key="case.ground_truth").set_value(True).run()
    _no_errors(page)
    table = next(d.value for d in page.dataframe if "planted strength" in d.value.columns)
    names = ("histopathology", "genomics", "treatment_notes", "clinical")
    assert table["planted strength"].tolist() == pytest.approx([float(truth.loc[COMPLETE, f"strength_{m}"])
                                                                for m in names], abs=5.01e-4)
    assert table["modality"].tolist() == ["Histopathology", "Genomics", "Treatment notes", "Clinical"]
    x0, y0, x1, y1 = map(int, truth.loc[COMPLETE, "histopathology_roi"].split())
    shapes = _figure(page, "case.image.histopathology")["layout"]["shapes"]
    assert any(s["type"] == "rect" and (s["x0"], s["y0"], s["x1"], s["y1"]) == (x0 - 0.5, y0 - 0.5, x1 + 0.5, y1 + 0.5)
               for s in shapes)
    page.session_state["case.modality_tab"] = "Genomics"
    page.run()
    notes = [a["text"] for a in _figure(page, "case.genes.genomics")["layout"]["annotations"]]
    assert notes.count("planted driver") == len(truth.loc[COMPLETE, "driver_genes"].split())
    page.session_state["case.modality_tab"] = "Treatment notes"
    page.run()
    phrases = next(d.value for d in page.dataframe if "planted phrase" in d.value.columns)
    assert phrases["planted phrase"].tolist() == truth.loc[COMPLETE, "text_evidence"].split(" | ")
    page.toggle(key="case.ground_truth").set_value(False)
    page.session_state["case.modality_tab"] = "Histopathology"
    page.run()


def test_a_gene_toggle_moves_the_curve_and_the_quantity(page, predictor, reader):
    page.multiselect(key="case.whatif_toggle.genomics").set_value(["TP53"]).run()
    _no_errors(page)
    case = reader[COMPLETE]
    edited = toggle_mutations(case, ["TP53"], modality="genomics")
    assert edited.value("genomics")["TP53"] == 0.0 and case.value("genomics")["TP53"] == 1.0
    curve = predictor.predict_survival([edited]).curves[0]
    shown = _trace(_figure(page, "case.whatif_curve"), "edited case")
    assert _values(shown) == pytest.approx(np.r_[1.0, curve], abs=1e-6)
    result = what_if(predictor, case, edited)
    text = next(m.value for m in page.markdown if "whatif-result" in m.value)
    assert float(re.search(r"id='whatif-result'>([\d.]+)%", text).group(1)) / 100 == pytest.approx(
        result.edited[0], abs=5e-6)
    assert any("not offered" in c.value and "Histopathology" in c.value for c in page.caption)
    page.selectbox(key="case.whatif_lab.clinical.stage").set_value("I").run()  # and a clinical value with it
    _no_errors(page)
    both = with_lab(edited, "stage", "I", lab_limits(predictor, "clinical"), modality="clinical")
    text = next(m.value for m in page.markdown if m.value.startswith("**Edits:**"))
    assert text == "**Edits:** TP53: mutated → not mutated; stage: IV → I"
    shown = _trace(_figure(page, "case.whatif_curve"), "edited case")
    assert _values(shown) == pytest.approx(np.r_[1.0, predictor.predict_survival([both]).curves[0]], abs=1e-6)


def test_controls_reset_when_the_case_changes(page):
    page.slider(key="case.ablate_clinical").set_value(20)
    page.radio(key="case.quantity").set_value("risk").run()
    other = "CA-00038"
    page.selectbox(key="case.id").set_value(other).run()
    _no_errors(page)
    assert page.slider(key="case.ablate_clinical").value == 100
    assert page.radio(key="case.quantity").value == "survival"
    assert page.multiselect(key="case.whatif_toggle.genomics").value == []
    assert not any("whatif-result" in m.value for m in page.markdown)


def test_a_case_without_genomics_renders_and_says_so(reader):
    at = _app(NO_GENOMICS)
    _no_errors(at)
    assert any("Genomics — missing" in m.value for m in at.markdown if m.value.startswith("**Modalities:**"))
    assert "case.ablate_genomics" not in [s.key for s in at.slider]
    assert any(m.value == "**Genomics:** missing" for m in at.markdown)
    for tab in ("Genomics (missing)", "Treatment notes", "Clinical"):
        at.session_state["case.modality_tab"] = tab
        at.run()
        _no_errors(at)
    at.session_state["case.modality_tab"] = "Genomics (missing)"
    at.run()
    assert any(i.value == "This case has no genomics data." for i in at.info)
    assert any(c.value == "Nothing to withhold: this case has no genomics data." for c in at.caption)


def test_a_corrupt_tile_is_an_error_naming_the_file(tmp_path, reader):
    keep = reader.ids("test")[:5]
    root = tmp_path / "cancer"
    shutil.copytree(CANCER, root, ignore=shutil.ignore_patterns("*.png", "*.txt"))
    for name in ("cohort.csv", "clinician_rankings.csv", "ground_truth.csv"):
        table = pd.read_csv(root / name, dtype=str, keep_default_na=False)
        table[table["case_id"].isin(keep)].to_csv(root / name, index=False)
    for case_id in keep:
        for folder, suffix in (("histopathology", ".png"), ("treatment_notes", ".txt")):
            source = CANCER / folder / f"{case_id}{suffix}"
            if source.exists():
                shutil.copy(source, root / folder / source.name)
    bad = next(i for i in keep if (root / "histopathology" / f"{i}.png").exists())
    (root / "histopathology" / f"{bad}.png").write_bytes(b"\x89PNG\r\n\x1a\n not a picture")
    at = _app(bad, root)
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith(f"Case {bad} cannot be shown") and f"{bad}.png" in errors[0]
    assert at.selectbox(key="case.id").format_func(bad) == f"{bad} · unreadable"
    good = next(i for i in keep if i != bad)
    at.selectbox(key="case.id").set_value(good).run()
    _no_errors(at)


def test_the_report_draws_the_curve_and_the_csv_names_each_modality(predictor, reader):
    checkpoint = load_checkpoint(CHECKPOINT, device="cpu")
    config = checkpoint.config
    case = reader[COMPLETE]
    explanation = explain_case(predictor, case, ExplainSettings(n_steps=8))
    report = case_report_html(case, explanation, config.architecture,
                              {"histopathology": "Histopathology", "genomics": "Genomics",
                               "treatment_notes": "Treatment notes", "clinical": "Clinical"},
                              (config.survival_bins, float(config.horizon), None))
    assert "this case (predicted)" in report and "Survival at 60 months" in report
    assert "Recorded:</b> alive at 67 mo (censored)" in report and "<h2>Treatment notes</h2>" in report
    with pytest.raises(ValueError, match="time bins"):
        case_report_html(case, explanation, config.architecture)
    rows = pd.read_csv(io.BytesIO(attributions_csv(explanation)))
    assert set(rows["part"]) == {"modality_importance", "genomics_value", "clinical_value", "treatment_notes_word"}
    genes = rows[rows["part"] == "genomics_value"]
    assert len(genes) == 50 and (rows["explained_class"] == "survival at 60 months").all()
    panel = explanation.panels["genomics"].set_index("name")["score"]
    assert genes.set_index("item")["value"].to_numpy() == pytest.approx(panel.loc[genes["item"]].to_numpy())


def test_planted_truth_of_a_cancer_case_follows_the_declared_modalities(reader):
    names = list(reader.modality_names)
    truth = planted(reader.ground_truth(), COMPLETE, names, "histopathology")
    assert list(truth.strengths) == names and truth.roi == (109, 65, 249, 224) and truth.genes == ["TP53"]
    assert truth.phrases == ["a partial response with a 45% decrease in target lesions", "continue the current regimen"]
    shapley = {"histopathology": 0.07, "genomics": -0.12, "treatment_notes": 0.01, "clinical": -0.26}
    table = strength_table(truth, shapley, None, {m: m.upper() for m in names}, magnitude=True)
    assert table["modality"].tolist() == [m.upper() for m in names]
    assert table["model rank"].tolist() == [3, 2, 4, 1]  # by size: clinical's -0.26 matters most
    assert strength_table(truth, shapley, None)["model rank"].tolist() == [1, 3, 2, 4]  # signed, as for a class
    bad = reader.ground_truth().copy()
    bad["strength_genomics"] = bad["strength_genomics"].astype(object)
    bad.loc[bad["case_id"] == COMPLETE, "strength_genomics"] = "strong"
    with pytest.raises(ValueError, match="strength_genomics of CA-00022 must be a number"):
        planted(bad, COMPLETE, names)
    figure = gene_bars(pd.DataFrame({"gene": ["KRAS", "TP53"], "mutated": [True, False], "attribution": [0.1, 0.2],
                                     "driver": [False, True]}), "Risk")
    assert mark_genes(figure, ["TP53", "BRCA1"]) == ["TP53"]


def test_a_gene_toggle_flips_only_the_named_genes_and_says_what_it_did(reader):
    case = reader[COMPLETE]
    edited = toggle_mutations(case, ["TP53", "KRAS"], modality="genomics")
    before, after = case.value("genomics"), edited.value("genomics")
    assert (after["TP53"], after["KRAS"]) == (0.0, 1.0)
    assert {g: v for g, v in after.items() if g not in ("TP53", "KRAS")} == \
        {g: v for g, v in before.items() if g not in ("TP53", "KRAS")}
    assert edits_of(edited) == ["TP53: mutated → not mutated", "KRAS: not mutated → mutated"]
    assert before["TP53"] == 1.0  # the original is untouched
    with pytest.raises(ValueError, match="has no gene XYZ1"):
        toggle_mutations(case, ["XYZ1"], modality="genomics")
    with pytest.raises(ValueError, match="no genomics values"):
        toggle_mutations(reader[NO_GENOMICS], ["TP53"], modality="genomics")
