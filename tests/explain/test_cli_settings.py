"""python -m explain case: the Integrated Gradients engine's settings as flags (--tolerance, --steps-method,
--max-steps, --note-layer, --reduced-precision, --joint), each map's completeness in the output, and a
specific argparse error for each bad value. Runs on the bundled demo checkpoint and cohort."""

from __future__ import annotations

import argparse
import dataclasses
import json
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import explain.__main__ as cli
from explain.case import ExplainSettings, explain_case
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data.timed import open_cohort
from neurofusion.inference import Predictor
# the ICU fixtures of the timeline tests (a generated cohort, a random-weight model of the demo config's sizes
# and its checkpoint), imported rather than copied; ``predictor`` here is theirs (the ICU model)
from tests.explain.test_timeline import _long_stay
from tests.explain.test_timeline import checkpoint as icu_checkpoint  # noqa: F401
from tests.explain.test_timeline import cohort_dir, predictor, reader  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
CARDIO = ROOT / "sample_data" / "cardio"
ICU = ROOT / "sample_data" / "icu"
CASE_ID = "CV-00026"  # a test case with every modality
BASE = ["case", "--checkpoint", str(DEMO), "--data", str(CARDIO), "--case-id", CASE_ID, "--device", "cpu"]
TOLERANCE = 0.05


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo():
    """(predictor, case, out-of-distribution reference) of the bundled demo, for explaining directly what the
    command line explains."""
    ckpt = load_checkpoint(str(DEMO), device="cpu")
    return Predictor(ckpt.model, ckpt.tokenizer, ckpt.device), open_cohort(str(CARDIO))[CASE_ID], ckpt.ood


def _run(args: list[str], capsys, as_json: bool = True):
    assert cli.main(BASE + args + (["--json"] if as_json else [])) == 0
    out = capsys.readouterr().out
    return json.loads(out) if as_json else out


@pytest.fixture(scope="module")
def default_result(demo):
    """The case command's JSON without any engine flag (run once for the module; capsys is per test)."""
    buffer = StringIO()
    with redirect_stdout(buffer):
        assert cli.main(BASE + ["--json"]) == 0
    return json.loads(buffer.getvalue())


def _assert_close(actual, expected, atol: float = 1e-6, where: str = "") -> None:
    """Same structure, numbers within ``atol``, everything else equal."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), where
        for key in expected:
            _assert_close(actual[key], expected[key], atol, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for k, (a, e) in enumerate(zip(actual, expected)):
            _assert_close(a, e, atol, f"{where}[{k}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert isinstance(actual, (int, float)) and abs(actual - expected) <= atol, f"{where}: {actual} vs {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} vs {expected!r}"


def _completeness(explanation) -> dict:
    return json.loads(json.dumps(cli.jsonable({m: dataclasses.asdict(c)
                                               for m, c in explanation.completeness.items()})))


def test_no_flag_gives_the_same_numbers_as_before(demo, default_result):
    demo_predictor, case, ood = demo
    # before the flags existed, `case` explained with ExplainSettings(image_method, 50, context=...)
    before = explain_case(demo_predictor, case, ExplainSettings("integrated_gradients", 50, context="case"), ood=ood)
    expected = json.loads(json.dumps(before.to_dict()))
    result = dict(default_result)
    completeness = result.pop("completeness")
    _assert_close(result, expected, atol=1e-6)
    assert set(completeness) == {"image", "text", "signal", "tabular"}
    for modality, c in completeness.items():
        assert (c["n_steps"], c["method"], c["tolerance"], c["converged"], c["precision"]) == (
            50, "gausslegendre", None, None, "float32"), modality
    _assert_close(completeness, _completeness(before), atol=1e-6)


def test_tolerance_reaches_every_map_and_the_json_reports_the_explanations_completeness(demo, capsys):
    demo_predictor, case, ood = demo
    result = _run(["--tolerance", str(TOLERANCE), "--max-steps", "32"], capsys)
    completeness = result["completeness"]
    assert set(completeness) == {"image", "text", "signal", "tabular"}
    for modality, c in completeness.items():
        steps = [n for n, _ in c["rounds"]]  # adaptive: rounds of growing steps, from fewer than the most
        assert c["tolerance"] == TOLERANCE and steps == sorted(set(steps)) and steps[0] < 32, modality
        assert steps[-1] == c["n_steps"], modality
        assert c["n_steps"] <= 32 and c["relative_error"] == pytest.approx(c["rounds"][-1][1])
        if c["converged"]:
            assert c["relative_error"] <= TOLERANCE, modality
        else:  # stopped at --max-steps without reaching the tolerance
            assert c["converged"] is False and c["n_steps"] == 32 and c["relative_error"] > TOLERANCE, modality
    direct = explain_case(demo_predictor, case, ExplainSettings(tolerance=TOLERANCE, max_steps=32), ood=ood)
    _assert_close(completeness, _completeness(direct), atol=1e-6)
    # the nested panels' completeness (image, note, signal) is the same as the top-level one
    for modality, field in (("image", "image"), ("text", "note"), ("signal", "signal")):
        assert result[field]["completeness"] == completeness[modality]

    text = _run(["--tolerance", str(TOLERANCE), "--max-steps", "32"], capsys, as_json=False)
    assert "Integrated Gradients completeness" in text
    for modality, c in completeness.items():
        line = next(line for line in text.splitlines() if line.startswith(f"    {modality}: "))
        assert f"{c['n_steps']} gausslegendre steps, error {100 * c['relative_error']:.2g} %" in line
        assert ("within the tolerance 5 %" in line) and (("NOT within" in line) == (not c["converged"]))


def test_note_layer_changes_the_note_map_but_not_the_image_map(default_result, capsys):
    result = _run(["--note-layer", "1"], capsys)
    assert result["note"]["layer"] == "hidden_states[1]" and default_result["note"]["layer"] == "word_embeddings"
    before, after = np.array(default_result["note"]["token_scores"]), np.array(result["note"]["token_scores"])
    assert before.shape == after.shape and np.abs(after - before).max() > 1e-3
    np.testing.assert_allclose(result["image"]["map"], default_result["image"]["map"], atol=1e-6)
    np.testing.assert_allclose(result["signal"]["attributions"], default_result["signal"]["attributions"], atol=1e-6)
    _assert_close(result["completeness"]["image"], default_result["completeness"]["image"], atol=1e-6)
    # another path between the same end points (the baseline note's and the case's layer-1 states are what the
    # word embeddings become there): the same output difference to add up to
    assert result["completeness"]["text"]["gap"] == pytest.approx(default_result["completeness"]["text"]["gap"],
                                                                  abs=1e-5)


def test_steps_method_and_reduced_precision_are_reported(capsys):
    result = _run(["--steps-method", "riemann_trapezoid", "--n-steps", "9", "--reduced-precision", "text"], capsys)
    completeness = result["completeness"]
    assert {c["method"] for c in completeness.values()} == {"riemann_trapezoid"}
    assert {c["n_steps"] for c in completeness.values()} == {9}
    assert {m: c["precision"] for m, c in completeness.items()} == {
        "image": "float32", "text": "bfloat16", "signal": "float32", "tabular": "float32"}
    text = _run(["--steps-method", "riemann_trapezoid", "--n-steps", "9", "--reduced-precision", "text"], capsys,
                as_json=False)
    assert "    text: 9 riemann_trapezoid steps" in text and "encoder in bfloat16" in text


def test_every_flag_reaches_the_settings(monkeypatch, capsys):
    seen = []

    def stop(_predictor, case, settings, **kwargs):
        seen.append(settings)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(cli, "explain_case", stop)
    assert cli.main(BASE + ["--tolerance", "0.02", "--steps-method", "riemann_trapezoid", "--max-steps", "33",
                            "--note-layer", "1", "--reduced-precision", "image, text,image", "--joint",
                            "--image-method", "grad_cam", "--context", "alone"]) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert seen == [ExplainSettings("grad_cam", 50, context="alone", tolerance=0.02,
                                    steps_method="riemann_trapezoid", max_steps=33, note_layer=1,
                                    reduced_precision=("image", "text"), joint=True)]
    assert cli.main(BASE) == 2  # no flag: the settings of before
    assert seen[-1] == ExplainSettings("integrated_gradients", 50)


def test_a_stay_is_explained_with_the_flags(monkeypatch, capsys):
    """A time-stamped stay's hours get the same engine settings (its own default of 16 steps, the risk class)."""
    seen = []

    def stop(_predictor, cohort, stay_id, hours, settings, **kwargs):
        seen.append(settings)
        raise ValueError("stopped by the test")

    monkeypatch.setattr(cli, "explain_hours", stop)
    stay_id = open_cohort(str(ICU)).stays.index[0]
    args = ["case", "--checkpoint", str(DEMO), "--data", str(ICU), "--case-id", stay_id, "--hours", "0",
            "--device", "cpu"]
    assert cli.main(args + ["--tolerance", "0.1", "--reduced-precision", "signal"]) == 2
    assert cli.main(args) == 2
    assert "stopped by the test" in capsys.readouterr().err
    assert seen == [ExplainSettings(n_steps=16, target=1, tolerance=0.1, reduced_precision=("signal",)),
                    ExplainSettings(n_steps=16, target=1)]


def test_a_stays_hours_report_each_maps_completeness(icu_checkpoint, reader, capsys):  # noqa: F811
    stay_id = _long_stay(reader)
    args = ["case", "--checkpoint", str(icu_checkpoint), "--data", str(reader.root), "--case-id", stay_id,
            "--hours", "12", "--tolerance", "0.2", "--max-steps", "16", "--device", "cpu"]
    assert cli.main(args + ["--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["hours"][0]
    completeness = entry["completeness"]
    assert set(completeness) == {"vitals", "labs", "notes", "demographics"}  # every map is by IG
    for modality, c in completeness.items():
        assert c["tolerance"] == 0.2 and c["n_steps"] <= 16, modality
        assert c["converged"] == (c["relative_error"] <= 0.2) and (c["converged"] or c["n_steps"] == 16), modality
    assert cli.main(args) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "Integrated Gradients completeness" in line)
    c = completeness["vitals"]
    assert f"Vital signs {c['n_steps']} gausslegendre steps, error {100 * c['relative_error']:.2g} %" in line


@pytest.mark.parametrize("args, message", [
    (["--tolerance", "1.5"], "argument --tolerance: expected a relative completeness error between 0 and 1 "
                             "(exclusive), e.g. 0.05, got '1.5'"),
    (["--tolerance", "0"], "argument --tolerance: expected a relative completeness error between 0 and 1"),
    (["--tolerance", "nan"], "argument --tolerance: expected a relative completeness error between 0 and 1"),
    (["--tolerance", "five"], "argument --tolerance: expected a relative completeness error between 0 and 1"),
    (["--steps-method", "simpson"], "argument --steps-method: invalid choice: 'simpson' (choose from"),
    (["--tolerance", "0.05", "--max-steps", "1"], "argument --max-steps: expected an integer of at least 2, got '1'"),
    (["--max-steps", "16"], "argument --max-steps: applies with --tolerance"),
    (["--tolerance", "0.05", "--n-steps", "16"], "argument --n-steps: fixes every map's steps, --tolerance 0.05 "
                                                 "chooses them per map"),
    (["--n-steps", "1"], "argument --n-steps: expected an integer of at least 2, got '1'"),
    (["--note-layer", "0"], "argument --note-layer: expected an integer of at least 1, got '0'"),
    (["--note-layer", "x"], "argument --note-layer: expected an integer of at least 1, got 'x'"),
    (["--reduced-precision", "image,ecg"], "argument --reduced-precision: unknown modality kind 'ecg': expected "
                                           "comma-separated kinds from image, text, signal, tabular"),
    (["--reduced-precision", ","], "argument --reduced-precision: no modality kind: expected comma-separated kinds"),
])
def test_bad_values_are_argparse_errors_naming_the_flag(args, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(BASE + args)
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "usage: python -m explain case" in err


def test_a_note_layer_beyond_the_model_names_both_numbers(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(BASE + ["--note-layer", "2"])
    assert stopped.value.code == 2
    assert ("argument --note-layer: the model's note encoder (text) has 2 BERT layers, so the note can be "
            "attributed at the hidden states entering layers 1 to 1, got 2") in capsys.readouterr().err


def _stand_in(kinds: list[str], bert_layers: int | None = None):
    """Just what the model checks read: the declared modalities' kinds and a note encoder's BERT layers."""
    specs = tuple(SimpleNamespace(name=kind, kind=kind) for kind in kinds)
    encoders = {} if bert_layers is None else {
        "text": SimpleNamespace(bert=SimpleNamespace(encoder=SimpleNamespace(layer=[None] * bert_layers)))}
    return SimpleNamespace(specs=specs, encoders=encoders)


@pytest.mark.parametrize("model, args, message", [
    (_stand_in(["image", "tabular"]), ["--reduced-precision", "tabular,signal"],
     "argument --reduced-precision: this model has no signal modality (its modalities' kinds: image, tabular), got "
     "tabular,signal"),
    (_stand_in(["image", "tabular"]), ["--note-layer", "1"],
     "argument --note-layer: this model has no BERT note encoder to attribute at layer 1"),
    (_stand_in(["text"], bert_layers=1), ["--note-layer", "1"],
     "argument --note-layer: the model's note encoder (text) has 1 BERT layer, so its note can only be attributed "
     "at its word embeddings"),
    (_stand_in(["text"], bert_layers=12), ["--note-layer", "12"],
     "argument --note-layer: the model's note encoder (text) has 12 BERT layers, so the note can be attributed at "
     "the hidden states entering layers 1 to 11, got 12"),
])
def test_the_flags_are_checked_against_the_model(model, args, message, capsys):
    parser = argparse.ArgumentParser(prog="python -m explain case")
    cli._add_engine_arguments(parser)
    with pytest.raises(SystemExit) as stopped:
        cli._check_model_arguments(parser.parse_args(args), model, parser)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_flags_the_model_has_pass_its_check():
    parser = argparse.ArgumentParser()
    cli._add_engine_arguments(parser)
    args = parser.parse_args(["--note-layer", "11", "--reduced-precision", "text,image"])
    assert cli._check_model_arguments(args, _stand_in(["image", "text"], bert_layers=12), parser) is None


def test_the_package_exports_the_case_explainer():
    import explain
    import explain.case
    import explain.integrated
    from explain import CaseExplainer, ExplainSettings as Settings, ExplanationCancelled, FirstView

    assert (CaseExplainer, Settings, FirstView) == (explain.case.CaseExplainer, explain.case.ExplainSettings,
                                                     explain.case.FirstView)
    assert ExplanationCancelled is explain.integrated.ExplanationCancelled
    assert {"CaseExplainer", "ExplainSettings", "FirstView", "ExplanationCancelled"} <= set(explain.__all__)
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        explain.NotAName
