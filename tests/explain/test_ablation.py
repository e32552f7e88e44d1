"""Missing-modality ablation: partial observation is what it says, and the cohort studies agree with
direct predictions under the same masks."""

from __future__ import annotations

import numpy as np
import pytest

from explain.ablation import ablate_case, missing_rate_study, partial_case, sentences, withheld_study


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
