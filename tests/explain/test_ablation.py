"""Missing-modality ablation: partial observation is what it says, and the cohort studies agree with
direct predictions under the same masks."""

from __future__ import annotations

import numpy as np
import pytest

from explain.ablation import (
    ablate_case,
    hidden_predictions,
    missing_rate_metrics,
    missing_rate_study,
    withheld_metrics,
    partial_case,
    sentences,
    withheld_study,
)
from neurofusion.data.schema import MODALITIES


def test_partial_observation_of_each_modality(complete_case):
    case = complete_case
    half = partial_case(case, {"signal": 0.5, "text": 0.5, "tabular": 0.25, "image": 1})
    assert half.signal.n_samples == case.signal.n_samples // 2
    assert np.array_equal(half.signal.data, case.signal.data[:, : case.signal.n_samples // 2])
    spans = sentences(case.note)
    keep = int(np.ceil(len(spans) / 2))
    assert half.note == case.note[: spans[keep - 1][1]] and len(sentences(half.note)) == keep
    kept = [k for k, v in half.tabular.items() if not (v is None or (isinstance(v, float) and np.isnan(v)))]
    assert kept[:2] == ["age", "sex"] and "tsh_miu_l" not in kept and "bnp_pg_ml" not in kept
    assert partial_case(case, {"image": 0}).image is None and partial_case(case, {}).image is case.image
    nothing = partial_case(case, {m: 0 for m in ("image", "text", "signal", "tabular")})
    assert not any(nothing.available.values())


def test_bad_fractions_are_errors(complete_case):
    with pytest.raises(ValueError, match="observed fraction of signal must be in"):
        partial_case(complete_case, {"signal": 1.5})
    with pytest.raises(ValueError, match="either observed or not"):
        partial_case(complete_case, {"image": 0.5})
    with pytest.raises(ValueError, match="unknown modality 'ecg'"):
        partial_case(complete_case, {"ecg": 0.5})


def test_slider_at_zero_equals_the_modality_missing(predictor, complete_case):
    full = ablate_case(predictor, complete_case, {})
    _, direct = predictor.predict([complete_case])
    assert np.allclose(full, direct[0], atol=1e-6)
    for modality in ("image", "text", "signal", "tabular"):
        _, hidden = predictor.predict([complete_case], drop=(modality,))
        assert np.allclose(ablate_case(predictor, complete_case, {modality: 0}), hidden[0], atol=1e-5)


def test_withheld_study_matches_direct_prediction(predictor, tiny_cohort):
    cases = [tiny_cohort[i] for i in range(30)]
    study = withheld_study(predictor, cases, n_bootstrap=50)
    assert len(study) == 11 and "signal,tabular" in study
    labels, proba = predictor.predict(cases, drop=("text", "signal"))
    assert study["text,signal"]["accuracy"]["value"] == pytest.approx((proba.argmax(1) == labels).mean())


def test_missing_rate_study_extremes(predictor, tiny_cohort):
    cases = [tiny_cohort[i] for i in range(30)]
    none = missing_rate_study(predictor, cases, {}, n_bootstrap=50)
    labels, proba = predictor.predict(cases)
    assert none["accuracy"]["value"] == pytest.approx((proba.argmax(1) == labels).mean())
    all_image = missing_rate_study(predictor, cases, {"image": 1.0}, n_bootstrap=50)
    assert all_image["observed_share"]["image"] == 0
    _, hidden = predictor.predict(cases, drop=("image",))
    assert all_image["accuracy"]["value"] == pytest.approx((hidden.argmax(1) == labels).mean())
    with pytest.raises(ValueError, match="missing rate must be"):
        missing_rate_study(predictor, cases, {"image": 2.0})


def _numbers(result: dict) -> dict:
    """Every number of a missing-rate result, flattened, for comparison."""
    out = {}
    for key, value in result.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in _numbers(value).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = value
    return out


def test_cached_hidden_predictions_give_exactly_the_direct_missing_rate_study(predictor, tiny_cohort):
    # 130 cases: more than one batch of 100, so the seeded mask must follow the cases across batches
    cases = [tiny_cohort[i] for i in range(60)] * 2 + [tiny_cohort[i] for i in range(10)]
    hidden = hidden_predictions(predictor, cases)
    assert hidden.probabilities.shape == (16, 130, len(predictor.model.classes))
    for subset in (0, 0b0101, 0b1111):  # every stored subset is the model's output with it withheld
        drop = tuple(m for j, m in enumerate(MODALITIES) if subset >> j & 1)
        _, direct = predictor.predict(cases, drop=drop)
        assert np.allclose(hidden.probabilities[subset], direct, atol=1e-6)
    for rates, seed in (({}, 0), ({"signal": 0.3}, 0), ({"image": 0.5, "text": 0.2, "tabular": 0.9}, 7),
                        ({"signal": 1.0, "text": 0.6}, 3)):
        cached = _numbers(missing_rate_metrics(hidden, rates, n_bootstrap=50, seed=seed))
        direct = _numbers(missing_rate_study(predictor, cases, rates, n_bootstrap=50, seed=seed))
        assert cached.keys() == direct.keys() and len(cached) > 8
        for key, value in direct.items():
            assert cached[key] == pytest.approx(value, abs=1e-9, nan_ok=True), (rates, seed, key)
    with pytest.raises(ValueError, match="missing rate must be"):
        missing_rate_metrics(hidden, {"ecg": 0.5})
    # the section 7.3 table from the same cache equals the study that re-fuses the cohort
    cached_table = withheld_metrics(hidden, n_bootstrap=50)
    direct_table = withheld_study(predictor, cases, n_bootstrap=50)
    assert cached_table.keys() == direct_table.keys()
    for drop, metrics in direct_table.items():
        for key, value in _numbers(metrics).items():
            assert _numbers(cached_table[drop])[key] == pytest.approx(value, abs=1e-9, nan_ok=True), (drop, key)
