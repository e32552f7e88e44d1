"""Tests for the synthetic 12-lead ECG generator: structure, lead algebra, rhythm and each finding's signature."""

from __future__ import annotations

import neurokit2 as nk
import numpy as np
import pytest

from neurofusion.data.schema import STANDARD_LEADS
from neurofusion.data.synthetic.ecg import EcgResult, synthesize_ecg
from neurofusion.data.tasks import CARDIO_FINDINGS

LEAD = {name: k for k, name in enumerate(STANDARD_LEADS)}
SEEDS = (0, 1, 2, 3, 4)


def _ecg(seed: int, findings: dict[str, float] | None = None, **kwargs) -> EcgResult:
    return synthesize_ecg(np.random.default_rng(seed), findings or {}, **kwargs)


def _inner_peaks(result: EcgResult, before_s: float, after_s: float) -> np.ndarray:
    """R peaks whose [R - before_s, R + after_s] window lies inside the record."""
    n = result.signal.shape[1]
    r = result.r_peaks
    return r[(r - before_s * result.fs >= 0) & (r + after_s * result.fs < n)]


def _st_deviation(result: EcgResult) -> np.ndarray:
    """Mean ST level at J+60 ms (R+105 ms) minus the PR baseline (R-80 ms), per lead: (12,) mV."""
    r = _inner_peaks(result, 0.1, 0.2)
    st = result.signal[:, r + round(0.105 * result.fs)]
    pr = result.signal[:, r - round(0.080 * result.fs)]
    return (st - pr).mean(axis=1)


def _qrs_extremes(result: EcgResult) -> tuple[np.ndarray, np.ndarray]:
    """Mean per-beat max and min within R +- 60 ms, per lead: two (12,) arrays in mV."""
    r = _inner_peaks(result, 0.06, 0.06)
    half = round(0.06 * result.fs)
    beats = np.stack([result.signal[:, k - half:k + half + 1] for k in r])  # (B, 12, W)
    return beats.max(axis=2).mean(axis=0), beats.min(axis=2).mean(axis=0)


def _sokolow_lyon(result: EcgResult) -> float:
    high, low = _qrs_extremes(result)
    return float(-low[LEAD["V1"]] + max(high[LEAD["V5"]], high[LEAD["V6"]]))


def _limb_qrs_voltage(result: EcgResult) -> float:
    high, low = _qrs_extremes(result)
    return float((high - low)[:6].max())


def _rr_cv(result: EcgResult) -> float:
    rr = np.diff(result.r_peaks)
    return float(rr.std() / rr.mean())


@pytest.mark.parametrize("fs", [500, 250])
def test_structure(fs: int) -> None:
    result = _ecg(0, fs=fs)
    assert result.signal.shape == (12, 10 * fs)
    assert result.signal.dtype == np.float32
    assert result.fs == fs
    assert result.affected_leads == ()
    assert np.issubdtype(result.r_peaks.dtype, np.integer)
    assert np.all(np.diff(result.r_peaks) > 0)
    assert 0 <= result.r_peaks[0] and result.r_peaks[-1] < 10 * fs
    assert len(result.r_peaks) == pytest.approx(10 * result.heart_rate_bpm / 60, abs=1.5)
    # Rows follow STANDARD_LEADS: with a normal axis R is upright in II and V5 and negative in aVR.
    clean = _ecg(0, fs=fs, noise=0.0).signal[:, result.r_peaks]
    assert np.all(clean[LEAD["II"]] > 0.3) and np.all(clean[LEAD["V5"]] > 0.5)
    assert np.all(clean[LEAD["aVR"]] < -0.2)


def test_same_seed_same_record_and_seeds_differ() -> None:
    a, b, c = _ecg(7, {"arrhythmia": 0.6}), _ecg(7, {"arrhythmia": 0.6}), _ecg(8, {"arrhythmia": 0.6})
    np.testing.assert_array_equal(a.signal, b.signal)
    np.testing.assert_array_equal(a.r_peaks, b.r_peaks)
    assert not np.allclose(a.signal, c.signal)


def test_zero_intensity_is_exactly_the_normal_ecg() -> None:
    normal = _ecg(3)
    for finding in CARDIO_FINDINGS:
        absent = _ecg(3, {finding: 0.0})
        np.testing.assert_array_equal(absent.signal, normal.signal)
        assert absent.affected_leads == ()


def test_limb_leads_obey_einthoven_and_goldberger_with_noise() -> None:
    s = {name: row.astype(np.float64) for name, row in
         zip(STANDARD_LEADS, _ecg(1, {"arrhythmia": 0.8}, noise=2.0, amplitude_gain=1.7).signal)}
    np.testing.assert_allclose(s["III"], s["II"] - s["I"], atol=1e-5)
    np.testing.assert_allclose(s["aVR"], -(s["I"] + s["II"]) / 2, atol=1e-5)
    np.testing.assert_allclose(s["aVL"], s["I"] - s["II"] / 2, atol=1e-5)
    np.testing.assert_allclose(s["aVF"], s["II"] - s["I"] / 2, atol=1e-5)


def test_amplitude_gain_scales_the_whole_trace() -> None:
    np.testing.assert_allclose(_ecg(2, amplitude_gain=2.5).signal, 2.5 * _ecg(2).signal, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("findings", "kwargs", "message"),
    [
        ({"flu": 0.5}, {}, "unknown finding 'flu'"),
        ({"heart_failure": 1.2}, {}, "must be a number in"),
        ({"arrhythmia": -0.1}, {}, "must be a number in"),
        ({}, {"fs": 0}, "fs must be a positive integer"),
        ({}, {"duration_s": -1.0}, "duration_s must be a positive"),
        ({}, {"noise": -1.0}, "noise must be >= 0"),
        ({}, {"amplitude_gain": 0.0}, "amplitude_gain must be > 0"),
    ],
)
def test_bad_input_is_rejected(findings: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _ecg(0, findings, **kwargs)


@pytest.mark.parametrize("fs", [500, 250])
def test_neurokit_heart_rate_agrees(fs: int) -> None:
    for seed in SEEDS[:3]:
        result = _ecg(seed, fs=fs)
        _, info = nk.ecg_peaks(result.signal[LEAD["II"]], sampling_rate=fs)
        peaks = np.asarray(info["ECG_R_Peaks"])
        assert 55 - 5 < result.heart_rate_bpm < 90 + 5
        assert 60 * fs / np.diff(peaks).mean() == pytest.approx(result.heart_rate_bpm, abs=5)


def test_atrial_fibrillation_makes_rr_irregular() -> None:
    normal = [_rr_cv(_ecg(seed)) for seed in SEEDS]
    af = [_rr_cv(_ecg(seed, {"arrhythmia": 1.0})) for seed in SEEDS]
    assert max(normal) < 0.06
    assert np.mean(af) > 0.13 and np.mean(af) > 3 * np.mean(normal)
    assert _ecg(0, {"arrhythmia": 1.0}).affected_leads == STANDARD_LEADS


def test_coronary_disease_deviates_st_in_its_territory() -> None:
    territories = {("II", "III", "aVF"), ("V1", "V2", "V3", "V4"), ("I", "aVL", "V5", "V6")}
    for seed in SEEDS:
        sick = _ecg(seed, {"coronary_artery_disease": 1.0}, noise=0.0)
        assert set(sick.affected_leads) and tuple(sick.affected_leads) in territories
        rows = [LEAD[name] for name in sick.affected_leads]
        st = _st_deviation(sick)[rows]
        assert np.all(np.sign(st) == np.sign(st[0]))  # all elevated or all depressed
        assert np.abs(st).mean() > 0.15 and np.abs(st).min() > 0.12
        assert np.abs(_st_deviation(_ecg(seed, noise=0.0))).max() < 0.05


def test_st_deviation_grows_with_intensity() -> None:
    levels = (0.0, 0.25, 0.5, 0.75, 1.0)
    for seed in SEEDS[:2]:
        cases = [_ecg(seed, {"coronary_artery_disease": level}, noise=0.0) for level in levels]
        rows = [LEAD[name] for name in cases[-1].affected_leads]
        deviation = [np.abs(_st_deviation(case)[rows]).mean() for case in cases]
        assert np.all(np.diff(deviation) > 0.03), deviation


def test_heart_failure_is_fast_with_low_voltage() -> None:
    for seed in SEEDS[:3]:
        normal, failing = _ecg(seed, noise=0.0), _ecg(seed, {"heart_failure": 1.0}, noise=0.0)
        assert failing.heart_rate_bpm > max(100.0, normal.heart_rate_bpm + 10)
        assert _limb_qrs_voltage(failing) < 0.6 < _limb_qrs_voltage(normal)
        assert failing.affected_leads == STANDARD_LEADS


def test_valvular_disease_raises_sokolow_lyon_voltage() -> None:
    for seed in SEEDS[:3]:
        normal, valvular = _ecg(seed, noise=0.0), _ecg(seed, {"valvular_disease": 1.0}, noise=0.0)
        assert _sokolow_lyon(normal) < 3.0
        assert _sokolow_lyon(valvular) > 3.5
        assert valvular.affected_leads == ("II", "V1", "V5", "V6")


def test_strongest_finding_sets_affected_leads() -> None:
    both = _ecg(0, {"valvular_disease": 0.3, "heart_failure": 0.8})
    assert both.affected_leads == STANDARD_LEADS
    assert _ecg(0, {"valvular_disease": 0.9, "heart_failure": 0.2}).affected_leads == ("II", "V1", "V5", "V6")
