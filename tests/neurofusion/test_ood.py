"""Out-of-distribution references: Mahalanobis distances agree with scipy, the stated false-alarm rate is what
new in-distribution cases see, and images unlike the training data (a CT, an MR) are flagged by the demo."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis
from scipy.stats import binomtest
from sklearn.covariance import LedoitWolf

from neurofusion.checkpoint import load_checkpoint
from neurofusion.data.schema import MODALITIES
from neurofusion.inference import Predictor
from neurofusion.ood import (
    MIN_CASES,
    OOD_FILE,
    OODError,
    OODReference,
    conformal_threshold,
    encoder_vectors,
    fit_modality,
    fit_reference,
    main,
    read_ood,
    weights_fingerprint,
    write_ood,
)

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "sample_data" / "checkpoints" / "cardio_demo"
SAMPLE = ROOT / "sample_data" / "cardio"


def _gaussian(n: int, seed: int, dim: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(99).normal(size=(dim, dim))  # one fixed correlated distribution
    return rng.normal(size=(n, dim)) @ mixing + 3.0


def test_distances_are_scipy_mahalanobis_under_the_ledoit_wolf_precision():
    reference, heldout = _gaussian(400, 1), _gaussian(200, 2)
    fitted = fit_modality(reference, heldout)
    lw = LedoitWolf().fit(reference)
    points = _gaussian(5, 3)
    expected = [mahalanobis(x, lw.location_, lw.precision_) for x in points]
    np.testing.assert_allclose(fitted.distances(torch.from_numpy(points)).numpy(), expected, rtol=1e-10)
    assert fitted.n_reference == 400 and fitted.n_heldout == 200


def test_conformal_threshold_by_hand():
    distances = np.arange(1.0, 201.0)  # 1..200
    assert conformal_threshold(distances, 0.99) == 199.0  # ceil(201 * 0.99) = 199th smallest
    assert conformal_threshold(distances, 0.9) == 181.0  # ceil(201 * 0.9) = 181
    assert conformal_threshold(np.arange(1.0, 51.0), 0.99) == 50.0  # ceil(51 * 0.99) = 51 > 50: the largest


def test_stated_false_alarm_rate_is_what_new_in_distribution_cases_see():
    # Known answer: the 99th-percentile threshold flags about 1 % of fresh draws from the same distribution.
    fitted = fit_modality(_gaussian(2000, 4), _gaussian(1000, 5))
    fresh = fitted.distances(torch.from_numpy(_gaussian(20000, 6))).numpy()
    rate = float(np.mean(fresh > fitted.threshold))
    assert 0.004 <= fitted.false_alarm_rate <= 0.02
    assert abs(rate - fitted.false_alarm_rate) < 0.008 and abs(rate - 0.01) < 0.008
    shifted = fitted.distances(torch.from_numpy(_gaussian(200, 7) + 4.0)).numpy()  # shifted by ~1-2 sd per axis
    assert np.mean(shifted > fitted.threshold) > 0.9


def test_too_few_cases_or_a_bad_quantile_is_an_error():
    with pytest.raises(OODError, match=f"image: 5 held-out cases have it, at least {MIN_CASES} are needed"):
        fit_modality(_gaussian(100, 1), _gaussian(5, 2), modality="image")
    with pytest.raises(OODError, match="quantile must be in"):
        fit_modality(_gaussian(100, 1), _gaussian(100, 2), quantile=99)


def _tiny_reference(model, batch) -> OODReference:
    """Each encoder's reference fitted on noise around its outputs for the batch (enough cases for the minimum)."""
    vectors = encoder_vectors(model, [batch])
    rng = np.random.default_rng(0)
    modalities = {}
    for m, v in vectors.items():
        cloud = lambda n: v[rng.integers(0, len(v), n)] + rng.normal(0, 0.05, (n, v.shape[1]))  # noqa: E731
        modalities[m] = fit_modality(cloud(200), cloud(100), modality=m)
    return OODReference(modalities, 0.99, weights_fingerprint(model.state_dict()))


def test_scores_on_a_tiny_model_are_per_present_modality_on_the_model_device(tiny_batch, tiny_cohort):
    model, batch = tiny_batch
    reference = _tiny_reference(model, batch)
    encoded = model.encode(batch)
    distances = reference.distances(encoded)
    device = next(model.parameters()).device
    for j, m in enumerate(MODALITIES):
        assert distances[m].device == device and distances[m].shape == (len(batch.case_ids),)
        present = batch.present[:, j]
        assert torch.isnan(distances[m][~present]).all() and torch.isfinite(distances[m][present]).all()
        assert not reference.flags(encoded)[m][~present].any()
    row = int(torch.nonzero(~batch.present.all(1))[0])  # a case lacking some modality
    assessed = reference.assess(encoded, row)
    assert set(assessed) == {m for j, m in enumerate(MODALITIES) if batch.present[row, j]}
    for m, entry in assessed.items():
        assert set(entry) == {"distance", "threshold", "flagged", "false_alarm_rate"}
        assert entry["flagged"] == (entry["distance"] > entry["threshold"])
    # an image far from the reference cloud: every case with an image is flagged, nothing else changes
    odd = dataclasses.replace(batch, image=torch.rand_like(batch.image) * 0 + 1.0)
    flags = reference.flags(model.encode(odd))
    assert flags["image"][batch.present[:, 0]].all()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_scores_are_computed_on_the_gpu_and_agree_with_the_cpu(tiny_batch):
    import copy

    model, batch = tiny_batch
    reference = _tiny_reference(model, batch)
    on_cpu = reference.distances(model.encode(batch))
    with torch.no_grad():
        on_gpu = reference.distances(copy.deepcopy(model).cuda().encode(batch.to("cuda")))
    for m, distance in on_gpu.items():
        assert distance.device.type == "cuda"
        torch.testing.assert_close(distance.cpu(), on_cpu[m], rtol=1e-3, atol=1e-3, equal_nan=True)


def test_fit_reference_write_and_read_round_trip(tiny_batch, tmp_path):
    model, batch = tiny_batch
    with pytest.raises(OODError, match="image: 9 reference cases have it, at least 20 are needed"):
        fit_reference(model, [batch], [batch])  # 12 cases, 9 with an image, are too few
    reference = _tiny_reference(model, batch)
    reference.source = {"data": "x"}
    again = read_ood(write_ood(reference, tmp_path / OOD_FILE))
    assert again.weights_fingerprint == reference.weights_fingerprint and again.source == {"data": "x"}
    for m, r in reference.modalities.items():
        np.testing.assert_allclose(again.modalities[m].precision, r.precision, rtol=0, atol=0)
        assert again.modalities[m].info() == r.info()
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(OODError, match="not a readable safetensors file"):
        read_ood(tmp_path / "bad.safetensors")


def test_fingerprint_follows_the_tensor_values(tiny_batch):
    model, _ = tiny_batch
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = weights_fingerprint(state)
    assert weights_fingerprint({k: v.clone() for k, v in state.items()}) == before
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name].view(-1)[0] += 1
    assert weights_fingerprint(state) != before


@pytest.fixture(scope="module")
def demo():
    checkpoint = load_checkpoint(DEMO, device="cpu")
    if checkpoint.ood is None:
        pytest.fail(f"the demo checkpoint has no {OOD_FILE}: {checkpoint.warnings}")
    return checkpoint


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_demo_flags_a_ct_or_mr_slice_given_as_the_echo(demo, name):
    import pydicom
    from pydicom.data import get_testdata_file

    from neurofusion.data import CohortReader

    case = next(c for c in CohortReader(SAMPLE) if c.image is not None)
    image = pydicom.dcmread(get_testdata_file(name)).pixel_array.astype(np.float32)
    predictor = Predictor(demo.model, demo.tokenizer, demo.device)
    own = demo.ood.assess(demo.model.encode(predictor.batch([case])))
    odd = demo.ood.assess(demo.model.encode(predictor.batch([dataclasses.replace(case, image=image)])))
    assert not own["image"]["flagged"]
    assert odd["image"]["flagged"] and odd["image"]["distance"] > 1.5 * odd["image"]["threshold"]
    for m in set(odd) - {"image"}:  # the other modalities are the case's own and score as before
        assert odd[m]["distance"] == pytest.approx(own[m]["distance"], rel=1e-6)


def test_demo_flag_rate_on_held_out_cases_matches_the_stated_rate(demo):
    """The bundled cohort is the test split of the generator run the demo was trained on (train/val):
    in distribution and never seen. Pooled over modalities, the flagged count must be a plausible draw at
    the stated rates (two-sided binomial p > 0.001)."""
    from neurofusion.data import CohortReader

    cohort = CohortReader(SAMPLE)
    predictor = Predictor(demo.model, demo.tokenizer, demo.device)
    vectors = encoder_vectors(demo.model, predictor.batches([cohort[i] for i in cohort.ids("test")]))
    flagged = checked = 0
    expected = 0.0
    for m, reference in demo.ood.modalities.items():
        distances = reference.distances(torch.from_numpy(vectors[m])).numpy()
        flagged += int(np.sum(distances > reference.threshold))
        checked += len(distances)
        expected += len(distances) * reference.false_alarm_rate
    assert checked > 600
    assert binomtest(flagged, checked, expected / checked).pvalue > 0.001, (flagged, checked, expected)
    assert flagged / checked < 0.03


def test_cli_fit_adds_a_reference_to_a_checkpoint(tiny_batch, tiny_tokenizer, tiny_cohort, tmp_path, capsys):
    from neurofusion.checkpoint import save_checkpoint
    from tests.conftest import small_case, write_small_cohort

    model, _ = tiny_batch
    path = save_checkpoint(tmp_path / "ckpt", model, tiny_tokenizer)
    # the tiny cohort's val split is too small: a clear message, no file
    assert main(["fit", "--checkpoint", str(path), "--data", str(tiny_cohort.root), "--device", "cpu"]) == 2
    assert "at least 20 are needed" in capsys.readouterr().err and not (path / OOD_FILE).exists()
    assert main(["fit", "--checkpoint", str(path), "--data", str(tiny_cohort.root), "--reference-split", "val",
                 "--heldout-split", "val"]) == 2
    assert "must differ" in capsys.readouterr().err

    cases = [small_case(i, split="train" if i < 50 else "val") for i in range(80)]
    cohort = write_small_cohort(tmp_path / "cohort", cases)
    assert main(["fit", "--checkpoint", str(path), "--data", str(cohort), "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["source"]["heldout_split"] == "val"
    assert {m: (r["n_reference"], r["n_heldout"]) for m, r in summary["modalities"].items()} == {
        m: (50, 30) for m in MODALITIES}
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.ood is not None and not loaded.warnings
    assert loaded.ood.modalities["image"].threshold == pytest.approx(summary["modalities"]["image"]["threshold"])


def test_training_fits_the_reference_on_train_with_the_threshold_on_val(tiny_cohort, tiny_tokenizer, tmp_path):
    import yaml

    from neurofusion.train import main as train_main
    from tests.conftest import small_case, tiny_config, write_small_cohort

    config = tiny_config(tiny_cohort, tiny_tokenizer).to_dict()
    config.pop("classes"), config.pop("features")
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"model": config, "train": {"max_epochs": 1, "batch_size": 16}}))
    cases = [small_case(i, split="train" if i < 50 else "val") for i in range(80)]
    cohort = write_small_cohort(tmp_path / "cohort", cases)
    out = tmp_path / "ckpt"
    assert train_main(["--config", str(tmp_path / "tiny.yaml"), "--data", str(cohort), "--out", str(out),
                       "--quiet"]) == 0
    loaded = load_checkpoint(out, device="cpu")
    assert loaded.ood is not None and not loaded.warnings
    recorded = json.loads((out / "training.json").read_text())["out_of_distribution"]
    assert recorded["source"]["reference_split"] == "train" and recorded["source"]["heldout_split"] == "val"
    assert {m: r["n_heldout"] for m, r in recorded["modalities"].items()} == {m: 30 for m in MODALITIES}

    # a cohort too small for a reference still trains; training.json says why there is none
    small = tmp_path / "small_ckpt"
    assert train_main(["--config", str(tmp_path / "tiny.yaml"), "--data", str(tiny_cohort.root), "--out", str(small),
                       "--quiet"]) == 0
    assert not (small / OOD_FILE).exists() and load_checkpoint(small, device="cpu").ood is None
    note = json.loads((small / "training.json").read_text())["out_of_distribution"]
    assert note.startswith("no out-of-distribution reference was fitted (") and "at least 20 are needed" in note
