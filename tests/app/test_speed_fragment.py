"""Speed (issue 10) without timing: the ablation section, now a fragment that reruns alone, still shows the
model's own output on the partially observed case; and the entry file draws the page list before it imports
the model libraries (a cold start shows the shell instead of a blank page)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from explain.ablation import ablate_case
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.app.test_app import MAIN, _app, _no_errors, _shown
from tests.test_sample_data import DEMO, SAMPLE


def test_partial_ablation_shows_the_models_output_on_the_partial_case():
    reader = CohortReader(SAMPLE)
    case_id = next(i for i in reader.ids("test") if reader.availability().loc[i].all())
    at = _app()
    at.query_params["case"] = case_id
    at.run()
    at.slider(key="case.ablate_signal").set_value(30)
    at.slider(key="case.ablate_text").set_value(50)
    at.toggle(key="case.ablate_image").set_value(False).run()
    _no_errors(at)
    checkpoint = load_checkpoint(DEMO, device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    case = reader[case_id]
    k = int(predictor.predict([case])[1][0].argmax())
    expected = ablate_case(predictor, case, {"signal": 0.3, "text": 0.5, "image": 0.0})[k]
    assert _shown(at) == pytest.approx(100 * expected, abs=0.051)
    # the what-if section (the other fragment) is still drawn below, with its reset button
    assert any(b.key == "case.whatif_reset" for b in at.button)


def _first_line(tree: ast.Module, match) -> int:
    return min(node.lineno for node in ast.walk(tree) if match(node))


def test_the_page_list_is_drawn_before_the_model_libraries_are_imported():
    tree = ast.parse(Path(MAIN).read_text(encoding="utf-8"))
    navigation = _first_line(tree, lambda n: isinstance(n, ast.Attribute) and n.attr == "navigation")
    heavy = _first_line(tree, lambda n: isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0]
                        in ("explain", "neurofusion", "torch", "transformers") or
                        isinstance(n, ast.ImportFrom) and n.module in ("app.state", "app.figures"))
    assert navigation < heavy
