"""explain.survival_ablation: the cached per-subset survival predictions give what a direct pass gives
(Predictor.predict_survival with modalities dropped, neurofusion.survival.concordance_index on its risk), and
the seeded missing-rate mask is the one explain.ablation draws."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.survival_ablation import (
    OWN_REFERENCE,
    hidden_survival,
    missing_rate_survival,
    survival_scores,
    withheld_survival,
)
from neurofusion.checkpoint import load_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from neurofusion.survival import concordance_index, time_dependent_auc
from tests.test_sample_data import CANCER, CANCER_DEMO, DEMO, SAMPLE

N_CASES = 40
BOOT = 20


@pytest.fixture(scope="module")
def cancer():
    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor = Predictor(checkpoint.model, checkpoint.tokenizer)
    reader = CohortReader(CANCER)
    cases = [reader[i] for i in reader.ids("test")[:N_CASES]]
    return predictor, cases, hidden_survival(predictor, cases)


def test_every_subset_is_one_curve_per_case_and_nothing_hidden_is_the_plain_prediction(cancer):
    predictor, cases, hidden = cancer
    assert hidden.curves.shape == (16, N_CASES, predictor.model.config.survival_bins.num_bins)
    assert hidden.names == ("histopathology", "genomics", "treatment_notes", "clinical")
    direct = predictor.predict_survival(cases)
    np.testing.assert_allclose(hidden.curves[0], direct.curves, atol=1e-5)
    np.testing.assert_allclose(hidden.risk(0), direct.risk, atol=1e-5)
    np.testing.assert_array_equal(hidden.time, direct.time)
    np.testing.assert_array_equal(hidden.event, direct.event)
    # hiding everything leaves every case with the same learned missing tokens: one curve for all
    everything = hidden.curves[15]
    np.testing.assert_allclose(everything, np.broadcast_to(everything[0], everything.shape), atol=1e-5)


@pytest.mark.parametrize("drop", [(), ("genomics",), ("genomics", "clinical")])
def test_withheld_c_index_is_that_of_predict_survival_with_the_modalities_dropped(cancer, drop):
    predictor, cases, hidden = cancer
    study = withheld_survival(hidden, [drop], n_bootstrap=BOOT, seed=3)
    direct = predictor.predict_survival(cases, drop=drop)
    np.testing.assert_allclose(hidden.risk(hidden.subset(drop)), direct.risk, atol=1e-5)
    expected = concordance_index(direct.time, direct.event, direct.risk, n_boot=BOOT, seed=3)
    got = study[",".join(drop) or "none"]["c_index"]
    assert got["value"] == pytest.approx(expected.value, abs=1e-6)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx((expected.ci_low, expected.ci_high), abs=1e-6)
    auc = time_dependent_auc(direct.time, direct.event, direct.risk, train_time=direct.time,
                             train_event=direct.event, horizon=60.0, n_boot=BOOT, seed=3)
    assert study[",".join(drop) or "none"]["auc_at_horizon"]["value"] == pytest.approx(auc.value, abs=1e-6)


def test_default_study_is_section_7_3_and_withholding_genomics_costs_c_index(cancer):
    _, _, hidden = cancer
    study = withheld_survival(hidden, n_bootstrap=BOOT)
    assert list(study)[:5] == ["none", "histopathology", "genomics", "treatment_notes", "clinical"]
    assert len(study) == 1 + 4 + 6
    assert study["genomics"]["c_index"]["value"] < study["none"]["c_index"]["value"]
    assert all(row["censoring_reference"] == OWN_REFERENCE for row in study.values())


def test_missing_rates_of_one_and_zero_are_the_withheld_and_the_recorded_predictions(cancer):
    _, _, hidden = cancer
    study = withheld_survival(hidden, [(), ("genomics",)], n_bootstrap=BOOT)
    full = missing_rate_survival(hidden, {"genomics": 1.0}, n_bootstrap=BOOT)
    assert full["c_index"] == study["genomics"]["c_index"]
    assert full["observed_share"]["genomics"] == 0.0
    none = missing_rate_survival(hidden, {}, n_bootstrap=BOOT)
    assert none["c_index"] == study["none"]["c_index"]
    assert none["observed_share"] == pytest.approx(dict(zip(hidden.names, hidden.present.mean(0))), abs=1e-4)


def test_a_random_rate_hides_what_a_direct_pass_with_the_same_seeded_mask_hides(cancer):
    predictor, cases, hidden = cancer
    rates, seed = {"histopathology": 0.5, "clinical": 0.3}, 7
    result = missing_rate_survival(hidden, rates, n_bootstrap=BOOT, seed=seed)
    rng = np.random.default_rng(seed)  # the draw explain.ablation.missing_rate_study makes
    hide = rng.random((len(cases), 4)) < np.array([rates.get(m, 0.0) for m in hidden.names])
    batch = predictor.batch(cases)
    with torch.no_grad():
        output = predictor.model.eval()(batch, present=batch.present & ~torch.from_numpy(hide))
    bins = predictor.model.config.survival_bins
    risk = 1.0 - bins.survival_at(output.survival.double().numpy(), 60.0)
    expected = concordance_index(hidden.time, hidden.event, risk, n_boot=BOOT, seed=seed)
    assert result["c_index"]["value"] == pytest.approx(expected.value, abs=1e-6)
    assert result["observed_share"]["histopathology"] == pytest.approx(
        (hidden.present[:, 0] & ~hide[:, 0]).mean(), abs=1e-4)


def test_a_reference_that_ends_before_the_horizon_leaves_the_auc_undefined_with_the_reason(cancer):
    _, _, hidden = cancer
    short = {"time": np.array([10.0, 20.0, 30.0]), "event": np.array([1, 0, 1]), "source": "short"}
    scores = survival_scores(hidden, hidden.risk(0), reference=short, n_bootstrap=BOOT)
    assert scores["auc_at_horizon"]["value"] is None and "end at 30" in scores["auc_at_horizon"]["reason"]
    assert scores["c_index"]["value"] is not None and scores["censoring_reference"] == "short"


def test_bad_input_is_refused_with_what_is_expected(cancer):
    _, cases, hidden = cancer
    with pytest.raises(ValueError, match="not a declared modality"):
        withheld_survival(hidden, [("image",)])
    with pytest.raises(ValueError, match="missing rate must be a modality name"):
        missing_rate_survival(hidden, {"genomics": 1.5})
    with pytest.raises(ValueError, match=r"risk must be \(40,\)"):
        survival_scores(hidden, np.zeros(3))
    unknown = type(hidden)(hidden.curves, np.full(N_CASES, np.nan), hidden.event, hidden.present, hidden.names,
                           hidden.bins, hidden.horizon)
    with pytest.raises(ValueError, match="none of the 40 cases has a recorded outcome"):
        survival_scores(unknown, hidden.risk(0))
    classifier = load_checkpoint(DEMO, device="cpu")
    with pytest.raises(ValueError, match="needs a survival model"):
        reader = CohortReader(SAMPLE)
        hidden_survival(Predictor(classifier.model, classifier.tokenizer), [reader[reader.case_ids[0]]])
