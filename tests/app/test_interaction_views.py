"""The interaction matrix beside attention, headless (streamlit AppTest): the case page draws the pairwise
Shapley interaction matrix of the explained value (equal to shapley_interactions of the case's importance,
blank and grey where a modality is missing, following the explained class) with its rank correlation against
the attention; the cohort page draws the mean interactions by class and per class the correlation of the mean
attention with the mean |interaction|, as explain/ computes them directly; a model without attention and the
declared cancer model render without an exception."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from app.interaction_figures import MISSING_TRACE, matrix_values
from explain.attention import cohort_attention
from explain.importance import modality_importance
from explain.interaction_attention import attention_interaction_correlation
from explain.interactions import mean_interactions, shapley_interactions
from neurofusion.checkpoint import load_checkpoint, save_checkpoint
from neurofusion.data import CohortReader
from neurofusion.inference import Predictor
from tests.app.test_app import _app, _figure, _no_errors
from tests.test_sample_data import CANCER, CANCER_DEMO, DEMO, SAMPLE


def _caption(at: AppTest, part: str) -> str:
    return next(c.value for c in at.caption if part in c.value)


@pytest.fixture(scope="module")
def cardio() -> tuple[Predictor, CohortReader]:
    checkpoint = load_checkpoint(DEMO, device="cpu")
    return Predictor(checkpoint.model, checkpoint.tokenizer), CohortReader(SAMPLE)


def test_case_page_draws_the_interactions_of_the_explained_class(cardio):
    predictor, reader = cardio
    availability = reader.availability()
    case_id = next(i for i in reader.case_ids if availability.loc[i].sum() == 3)  # one modality missing
    missing = list(availability.columns).index(availability.loc[case_id].idxmin())
    at = _app()
    at.query_params["case"] = case_id
    at.run()
    _no_errors(at)
    batch = predictor.batch([reader[case_id]])
    importance = modality_importance(predictor.model, batch)
    expected = shapley_interactions(importance)[0]
    figure = _figure(at, "case.interactions")
    drawn = matrix_values(figure)
    shown = np.outer(importance.present[0], importance.present[0]) & ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(drawn[shown], expected[shown], atol=1e-6)
    assert np.isnan(drawn[~shown]).all()  # the diagonal and the missing modality's row and column are blank
    grey = np.array([[np.nan if v is None else v for v in row]
                     for row in next(t for t in figure["data"] if t["name"] == MISSING_TRACE)["z"]], dtype=float)
    assert np.isfinite(grey[missing]).all() and np.isfinite(grey[:, missing]).all()
    assert np.isnan(np.delete(np.delete(grey, missing, 0), missing, 1)).all()
    assert figure["data"][1]["x"][missing].endswith("*")
    correlation = attention_interaction_correlation(importance.cross_attention[0], expected, importance.present[0])
    assert correlation.n_pairs == 3
    caption = _caption(at, "joint presence")
    assert f"adds to p({_explained(at)})" in caption
    assert f"Spearman ρ = {correlation.rho:+.2f} over 3 modality pairs" in caption

    # another class: the matrix is that class's
    at.radio(key="case.explain_class").set_value("class:heart_failure").run()
    _no_errors(at)
    other = modality_importance(predictor.model, batch,
                                target=torch.tensor([predictor.model.classes.index("heart_failure")]))
    np.testing.assert_allclose(matrix_values(_figure(at, "case.interactions"))[shown],
                               shapley_interactions(other)[0][shown], atol=1e-6)
    assert "adds to p(Heart failure)" in _caption(at, "joint presence")


def _explained(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "explained-class" in m.value).split("'>")[1].split("</span>")[0]


def test_cohort_page_correlates_mean_attention_with_mean_interactions(cardio):
    predictor, reader = cardio
    at = _app()
    at.run()
    at.switch_page("views/cohort_attention.py").run()
    _no_errors(at)
    assert at.selectbox(key="cohort.split").value == "test"
    cases = [reader[i] for i in reader.ids("test")]
    importance = modality_importance(predictor.model, predictor.batch(cases))
    labels = [c.label for c in cases]
    attention = cohort_attention(predictor, cases)
    means = mean_interactions(importance, labels)
    names = list(importance.names)
    table = next(d for d in at.dataframe if "Spearman ρ" in d.value.columns).value.set_index("class")
    grid = _figure(at, "cohort.interactions")
    for cls in predictor.model.classes:
        rows = means[means["group"] == cls]
        size = np.full((4, 4), np.nan)
        signed = np.full((4, 4), np.nan)
        for row in rows.itertuples():
            i, j = names.index(row.a), names.index(row.b)
            size[i, j] = size[j, i] = row.mean_abs
            signed[i, j] = signed[j, i] = row.mean
        expected = attention_interaction_correlation(attention.by_true[cls], np.nan_to_num(size), np.ones(4, bool))
        shown = table.loc[cls.replace("_", " ").capitalize()]
        assert shown["Spearman ρ"] == pytest.approx(expected.rho, abs=1e-6) and shown["pairs"] == expected.n_pairs
        assert shown["cases"] == labels.count(cls)
        np.testing.assert_allclose(matrix_values(grid, cls), signed, atol=1e-6)


@pytest.fixture(scope="module")
def no_attention(tmp_path_factory, tiny_cohort, tiny_tokenizer) -> Path:
    """An (untrained) tiny MLP-fusion checkpoint: an architecture without cross-modal attention."""
    from neurofusion.models import build_model
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    model = build_model(tiny_config(tiny_cohort, tiny_tokenizer, "mlp_fusion")).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "mlp", model, tiny_tokenizer)


def test_a_model_without_attention_shows_the_interactions_alone(no_attention, tiny_cohort):
    at = _app(**{"settings.checkpoint": str(no_attention), "settings.cohort": str(tiny_cohort.root)})
    at.run()
    _no_errors(at)
    keys = {c.key for c in at.get("plotly_chart")}
    assert "case.interactions" in keys and "case.attention" not in keys
    assert "not defined (this model has no cross-modal attention)" in _caption(at, "joint presence")
    at.switch_page("views/cohort_attention.py").run()
    _no_errors(at)
    keys = {c.key for c in at.get("plotly_chart")}
    assert "cohort.interactions" in keys and "cohort.attention" not in keys
    assert not any("Spearman ρ" in d.value.columns for d in at.dataframe)


def test_declared_cancer_model_shows_its_modalities_interactions():
    checkpoint = load_checkpoint(CANCER_DEMO, device="cpu")
    predictor, reader = Predictor(checkpoint.model, checkpoint.tokenizer), CohortReader(CANCER)
    case_id = "CA-00022"  # every modality
    at = _app(**{"settings.checkpoint": str(CANCER_DEMO), "settings.cohort": str(CANCER)})
    at.query_params["case"] = case_id
    at.run()
    _no_errors(at)
    figure = _figure(at, "case.interactions")
    assert len(figure["data"][1]["x"]) == len(checkpoint.model.names) == 4
    assert "Notes" in figure["data"][1]["x"]  # the declared titles, shortened for the narrow column
    importance = modality_importance(predictor.model, predictor.batch([reader[case_id]]))  # survival at horizon
    expected = shapley_interactions(importance)[0]
    off = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(matrix_values(figure)[off], expected[off], atol=1e-6)
    caption = _caption(at, "joint presence")
    assert "adds to the predicted survival" in caption and "Spearman ρ" in caption
    correlation = attention_interaction_correlation(importance.cross_attention[0], expected, np.ones(4, bool))
    assert math.isnan(correlation.rho) or f"ρ = {correlation.rho:+.2f}" in caption
