"""explain/ on declared modalities: exact Shapley over 2^M subsets for M = 2, 3, 5, 8 (efficiency, symmetry,
dummy, agreement with a brute-force computation, chunked passes), a case explanation with one panel per
declared modality of the right kind, cohort tables and agreement named by the declared names, and a
survival model explained through its chosen quantity."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import explain.importance as importance_module
from explain._forward import ModalityForward
from explain.ablation import ablate_case, hidden_predictions, section_7_3, withheld_metrics
from explain.case import ExplainSettings, explain_case
from explain.cohort import clinician_agreement, cohort_importance, ground_truth_agreement
from explain.image import ImageSaliency
from explain.importance import modality_importance, shapley_weights, subsets
from explain.signal import SignalExplanation
from explain.targets import SurvivalTarget
from explain.text import NoteExplanation
from tests.explain.declared import (
    PlantedPresenceModel,
    PlantedSurvivalModel,
    eight_modality_model,
    planted_batch,
    toy_model,
)

TWO, THREE = ("genes", "clinical"), ("slide", "report", "clinical")


@pytest.fixture(scope="module")
def toy5(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toy5") / "toy")


@pytest.fixture(scope="module")
def survival_toy(tmp_path_factory):
    return toy_model(tmp_path_factory.mktemp("toys") / "toy", survival=True)


def _build(which: str, tmp_path_factory):
    if which == "8":
        return eight_modality_model(12)
    names = {"2": TWO, "3": THREE, "5": None}[which]
    return toy_model(tmp_path_factory.mktemp(f"toy{which}") / "toy", names)


@pytest.mark.parametrize("which", ["2", "3", "5", "8"])
def test_shapley_efficiency_on_declared_models(which, tmp_path_factory):
    toy = _build(which, tmp_path_factory)
    batch = toy.predictor.batch(toy.cases)
    result = modality_importance(toy.model, batch)
    m = int(which)
    assert result.shapley.shape == (len(toy.cases), m) and result.subset_probability.shape == (len(toy.cases), 2**m)
    assert list(result.table("shapley").columns) == list(toy.model.names)
    np.testing.assert_allclose(result.shapley.sum(1), result.probability_full - result.probability_none, atol=1e-9)
    assert np.abs(result.shapley).max() > 1e-4  # the modalities move this random model's prediction
    assert (result.shapley[~result.present] == 0).all()


def test_shapley_matches_a_brute_force_permutation_average_for_five_modalities(toy5):
    """Every one of the 5! orderings, each subset fused on its own: phi_m = mean marginal contribution."""
    model, batch = toy5.model, toy5.predictor.batch(toy5.cases[:4])
    result = modality_importance(model, batch)
    with torch.no_grad():
        encoded = model.encode(batch)
        values = {}
        for subset in itertools.product([False, True], repeat=5):
            mask = torch.tensor([subset] * 4) & batch.present
            values[subset] = model.fuse(encoded, mask).probabilities.double()  # (4, C)
    for i in range(4):
        target = int(result.target[i])
        phi = np.zeros(5)
        for order in itertools.permutations(range(5)):
            members = [False] * 5
            for j in order:
                before = values[tuple(members)][i, target]
                members[j] = True
                phi[j] += float(values[tuple(members)][i, target] - before)
        phi /= math.factorial(5)
        np.testing.assert_allclose(result.shapley[i], np.where(batch.present[i].numpy(), phi, 0.0), atol=1e-6)


def test_chunked_fusion_passes_give_the_same_values(toy5, monkeypatch):
    batch = toy5.predictor.batch(toy5.cases)
    whole = modality_importance(toy5.model, batch)
    monkeypatch.setattr(importance_module, "MAX_FUSION_ROWS", 3 * 32)  # 3 cases per pass at M = 5
    assert importance_module.cases_per_pass(5) == 3
    chunked = modality_importance(toy5.model, batch)
    np.testing.assert_allclose(chunked.subset_probability, whole.subset_probability, atol=1e-6)
    np.testing.assert_allclose(chunked.attention, whole.attention, atol=1e-6)


def test_symmetry_and_dummy_on_a_planted_six_modality_model():
    names = ("a", "b", "c", "d", "e", "f")
    model = PlantedPresenceModel(names, [1.0, 1.0, 0.0, -0.7, 2.0, 0.3], pair=("a", "b"), interaction=0.8)
    result = modality_importance(model, planted_batch(names, [[True] * 6, [True, True, True, False, True, True]]))
    assert result.shapley[0, 0] == pytest.approx(result.shapley[0, 1], abs=1e-12)  # a and b are symmetric
    assert result.shapley[0, 0] != pytest.approx(result.shapley[0, 5], abs=1e-3)
    assert result.shapley[:, 2].tolist() == [0.0, 0.0]  # c is ignored by the model: exactly zero
    assert result.shapley[1, 3] == 0.0 and np.isnan(result.table("shapley").iloc[1]["d"])
    assert result.shapley[0, 4] > result.shapley[0, 5] > 0 > result.shapley[0, 3]


def test_more_than_eight_modalities_is_a_clear_error():
    assert subsets(8).shape == (256, 8) and shapley_weights(8).shape == (256, 8)
    with pytest.raises(ValueError, match="1 to 8 modalities"):
        subsets(9)
    with pytest.raises(ValueError, match="1 to 8 modalities"):
        shapley_weights(9)


def test_case_explanation_has_one_panel_per_declared_modality_by_kind(toy5):
    case = next(c for c in toy5.cases if all(c.available.values()))
    result = explain_case(toy5.predictor, case, ExplainSettings(n_steps=8))
    kinds = {"slide": ImageSaliency, "report": NoteExplanation, "genes": pd.DataFrame, "clinical": pd.DataFrame,
             "ecg": SignalExplanation}
    assert list(result.panels) == list(toy5.model.names) == list(kinds)
    for name, kind in kinds.items():
        assert isinstance(result.panels[name], kind), name
    assert result.image is None and result.note is None and result.tabular is None  # no cardio-named modality
    slide = result.panels["slide"]
    assert slide.map.shape == case.value("slide").shape[1:] and slide.model_map.shape == (16, 16)
    # the colour map is the sum over channels, so it still adds up to the change in the logit (IG completeness)
    with torch.no_grad():
        forward = ModalityForward(toy5.model, toy5.predictor.batch([case]))
        image = forward.inputs("slide")["image"]
        target = result.target
        change = forward.image(image, "slide")[0, target] - forward.image(torch.zeros_like(image), "slide")[0, target]
    assert slide.model_map.sum() - slide.convergence_delta == pytest.approx(float(change), abs=1e-4)
    assert list(result.panels["genes"]["name"]) == ["tp53", "brca1"]
    assert list(result.panels["clinical"]["name"]) == ["age", "stage"]
    data = json.loads(json.dumps(result.to_dict()))
    assert list(data["panels"]) == list(kinds) and data["panels"]["ecg"]["kind"] == "signal"
    assert set(data["modality_importance"]["shapley"]) == set(kinds)


def test_missing_modalities_have_no_panel(toy5):
    case = next(c for c in toy5.cases if not c.available["slide"])
    result = explain_case(toy5.predictor, case, ExplainSettings(n_steps=4, image_method="grad_cam"))
    assert "slide" not in result.panels and set(result.panels) == set(case.present_modalities)


def test_cohort_importance_and_agreement_use_the_declared_names(toy5):
    names = list(toy5.model.names)
    cohort = cohort_importance(toy5.predictor, toy5.cases, batch_size=5)
    assert cohort.names == tuple(names) and list(cohort.method("shapley").columns) == names
    assert {f"shapley_{m}" for m in names} <= set(cohort.table.columns)
    assert cohort.attention.by_true["low"].shape == (5, 5) and cohort.attention.names == tuple(names)
    shapley = cohort.method("shapley")
    # a rater who ranks exactly like the model agrees perfectly; one who reverses it disagrees perfectly
    ranks = shapley.rank(axis=1, ascending=False)
    rows = []
    for case_id, row in ranks.iterrows():
        rows.append({"case_id": case_id, "rater": "same", **row.to_dict()})
        rows.append({"case_id": case_id, "rater": "reversed", **(row.max() + 1 - row).to_dict()})
    rankings = pd.DataFrame(rows)
    per_pair = clinician_agreement(cohort, rankings, n_bootstrap=20)["per_pair"].dropna(subset=["tau"])
    assert len(per_pair) == 2 * len(shapley)
    np.testing.assert_allclose(per_pair[per_pair.rater == "same"]["tau"], 1.0, atol=1e-12)
    np.testing.assert_allclose(per_pair[per_pair.rater == "reversed"]["tau"], -1.0, atol=1e-12)
    truth = pd.DataFrame({"case_id": shapley.index, **{f"strength_{m}": shapley[m].to_numpy() for m in names}})
    table = ground_truth_agreement(cohort, truth)
    assert table.loc["shapley", "mean_tau"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="no strength_ecg column"):
        ground_truth_agreement(cohort, truth.drop(columns="strength_ecg"))


def test_hidden_predictions_and_withheld_study_over_declared_names(toy5):
    hidden = hidden_predictions(toy5.predictor, toy5.cases)
    assert hidden.probabilities.shape[0] == 32 and hidden.names == toy5.model.names
    drops = section_7_3(toy5.model.names)
    assert len(drops) == 1 + 5 + 10 and ("slide", "ecg") in drops
    results = withheld_metrics(hidden, [(), ("genes",)], n_bootstrap=10)
    assert set(results) == {"none", "genes"}
    with pytest.raises(ValueError, match="not a declared modality"):
        withheld_metrics(hidden, [("image",)], n_bootstrap=10)


def test_survival_model_is_explained_through_its_chosen_quantity(survival_toy):
    model, batch = survival_toy.model, survival_toy.predictor.batch(survival_toy.cases)
    survival = modality_importance(model, batch)  # default: survival at the model's horizon (60 months)
    risk = modality_importance(model, batch, survival=SurvivalTarget("risk"))
    with torch.no_grad():
        output = model(batch)
    expected = model.config.survival_bins.survival_at(output.survival.double(), 60.0).numpy()
    np.testing.assert_allclose(survival.probability_full, expected, atol=1e-6)
    np.testing.assert_allclose(survival.shapley.sum(1), survival.probability_full - survival.probability_none,
                               atol=1e-9)
    np.testing.assert_allclose(risk.shapley, -survival.shapley, atol=1e-6)  # risk = 1 - survival (float32 model)
    assert survival.explained == "survival at 60 months" and (survival.target == 0).all()
    at_24 = modality_importance(model, batch, survival=SurvivalTarget(horizon=24.0))
    assert not np.allclose(at_24.probability_full, survival.probability_full)
    with pytest.raises(ValueError, match="outside the model's time grid"):
        modality_importance(model, batch, survival=SurvivalTarget(horizon=200.0))
    with pytest.raises(ValueError, match=r"index 0 \(the survival quantity\)"):
        modality_importance(model, batch, torch.ones(len(survival_toy.cases), dtype=torch.long))


def test_survival_case_explanation_and_ablation(survival_toy):
    case = next(c for c in survival_toy.cases if all(c.available.values()))
    predictor = survival_toy.predictor
    result = explain_case(predictor, case, ExplainSettings(n_steps=6), survival=SurvivalTarget("risk", 36.0))
    assert result.classes == ["risk (1 - survival) at 36 months"] and result.target == 0
    assert result.survival_curve.shape == (10,) and np.all(np.diff(result.survival_curve) <= 1e-7)
    bins = predictor.model.config.survival_bins
    assert result.probabilities[0] == pytest.approx(1 - float(bins.survival_at(result.survival_curve[None], 36.0)[0]),
                                                    abs=1e-5)
    assert set(result.panels) == set(predictor.model.names)
    genes = result.panels["genes"]
    assert genes["method"].tolist() == ["withheld", "withheld"] and genes["score"].notna().all()
    risk = SurvivalTarget("risk", 36.0)
    full = ablate_case(predictor, case, {}, survival=risk)
    assert full.shape == (1,) and full[0] == pytest.approx(result.probabilities[0], abs=1e-5)
    none = ablate_case(predictor, case, {m: 0.0 for m in predictor.model.names}, survival=risk)
    assert none[0] == pytest.approx(result.importance.probability_none[0], abs=1e-5)
    assert ablate_case(predictor, case, {})[0] == pytest.approx(  # default: survival at 60 months
        float(bins.survival_at(result.survival_curve[None], 60.0)[0]), abs=1e-5)


def test_shapley_recovers_the_modality_that_drives_a_planted_survival_risk():
    names = ("histopathology", "genomics", "treatment_notes", "clinical")
    model = PlantedSurvivalModel(names, [0.0, 1.5, -0.3, 0.4])
    batch = planted_batch(names, [[True] * 4, [True, True, False, True], [True, False, True, True]])
    risk = modality_importance(model, batch, survival=SurvivalTarget("risk"))
    survival = modality_importance(model, batch)
    assert risk.explained == "risk (1 - survival) at 60 months"
    assert risk.shapley[:, 0].tolist() == [0.0, 0.0, 0.0]  # ignored by the model: exactly no credit
    assert risk.shapley[0, 1] > risk.shapley[0, 3] > 0 > risk.shapley[0, 2]  # genomics drives risk
    assert risk.table("shapley").iloc[:2].idxmax(axis=1).tolist() == ["genomics", "genomics"]
    np.testing.assert_allclose(risk.shapley, -survival.shapley, atol=1e-6)
    hazard = 1 / (1 + np.exp(-(-2.5 + 1.5 - 0.3 + 0.4)))  # case 0: every modality present
    assert risk.probability_full[0] == pytest.approx(1 - (1 - hazard) ** 5, abs=1e-6)  # 60 months = 5 bins
