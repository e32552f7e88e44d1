"""The committed sample cohort: valid, what the README says it is, and reproduced by its recorded command."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import pytest

from neurofusion.data import CohortReader, validate_cohort
from neurofusion.data.cohort import cohort_summary
from neurofusion.data.synthetic.generate import generate_cohort

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data" / "cardio"


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_sample_cohort_is_valid_and_as_documented():
    assert validate_cohort(SAMPLE) == []
    summary = cohort_summary(CohortReader(SAMPLE))
    assert summary["synthetic"] and summary["cases"] == 200 and summary["splits"]["test"] == 200
    assert summary["ranked_cases"] >= 100 and len(summary["raters"]) >= 3
    assert summary["ground_truth"]
    size_mb = sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 30


def test_recorded_command_regenerates_the_sample_byte_for_byte(tmp_path):
    info = CohortReader(SAMPLE).info["generator"]
    args = shlex.split(info["command"])
    assert args[:4] == ["python", "-m", "neurofusion.data", "generate"]
    generate_cohort(info["task"], info["n"], info["seed"], tmp_path / "again", splits=tuple(info["splits"]),
                    signal_format=info["signal_format"], progress=False)
    committed, regenerated = _hashes(SAMPLE), _hashes(tmp_path / "again")
    differing = sorted(k for k in committed.keys() | regenerated.keys() if committed.get(k) != regenerated.get(k))
    assert not differing, f"sample_data/cardio is stale (run `make sample-data`): {differing[:5]}"


DEMO = SAMPLE.parent / "checkpoints" / "cardio_demo"


def test_demo_checkpoint_loads_and_reproduces_its_test_metrics():
    import json

    from neurofusion.evaluate import evaluate

    recorded = json.loads((DEMO / "metrics.json").read_text())["test"]
    result = evaluate(DEMO, SAMPLE, device="cpu", n_bootstrap=200)
    assert result["n"] == recorded["n"] == 200
    # same cases, same weights: at most one borderline case may flip with another CPU's float rounding
    assert abs(result["accuracy"]["value"] - recorded["accuracy"]["value"]) <= 1 / 200
    assert abs(result["macro_f1"]["value"] - recorded["macro_f1"]["value"]) <= 0.01
    size_mb = sum(p.stat().st_size for p in DEMO.rglob("*") if p.is_file()) / 1e6
    assert size_mb < 25


def test_saliency_randomisation_check_falls_on_the_demo_model():
    """Adebayo et al.'s sanity check: re-initialising the demo model's layers from the top down must make
    its image and ECG saliency less like the trained model's."""
    from explain.faithfulness import randomisation_check
    from neurofusion.checkpoint import load_checkpoint
    from neurofusion.inference import Predictor

    ckpt = load_checkpoint(DEMO, device="cpu")
    cohort = CohortReader(SAMPLE)
    cases = [c for c in (cohort[i] for i in cohort.ids("test")[:20]) if all(c.available.values())][:2]
    table = randomisation_check(Predictor(ckpt.model, ckpt.tokenizer), cases, n_steps=8)
    for modality in ("image", "signal"):
        similarity = table[f"{modality}_similarity"].to_numpy()
        assert similarity[0] == pytest.approx(1.0)
        # step 1 re-initialises only the heads; by the input layers much less of the trained saliency is left
        assert similarity[-1] < 0.6, table
        assert similarity[-1] < similarity[1] - 0.1, table
