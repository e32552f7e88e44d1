"""Synthetic 12-lead ECG whose cardiovascular findings have a known intensity, for the synthetic cardio cohort.

Each beat is a closed-form sum of Gaussian waves of a 3D cardiac dipole (Frank frame: X left, Y feet,
Z back) projected onto I, II, V1..V6 by the inverse Dower matrix; III, aVR, aVL, aVF are derived from I, II.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from neurofusion.data.schema import STANDARD_LEADS
from neurofusion.data.tasks import CARDIO_FINDINGS

# Inverse Dower (Edenbrandt & Pahlm 1988): Frank (X, Y, Z) -> I, II, V1..V6.
_INVERSE_DOWER = np.array([
    [0.632, -0.235, 0.059],
    [0.235, 1.066, -0.132],
    [-0.515, 0.157, -0.917],
    [0.044, 0.164, -1.387],
    [0.882, 0.098, -1.277],
    [1.213, 0.127, -0.601],
    [1.125, 0.127, -0.086],
    [0.831, 0.076, 0.230],
])  # (8, 3)
# III, aVR, aVL, aVF from (I, II) by Einthoven's and Goldberger's relations.
_LIMB_FROM_I_II = np.array([[-1.0, 1.0], [-0.5, -0.5], [1.0, -0.5], [-0.5, 1.0]])  # (4, 2)


def _twelve_from_eight(eight: np.ndarray) -> np.ndarray:
    """(8, ...) rows I, II, V1..V6 -> (12, ...) rows in STANDARD_LEADS order."""
    derived = np.tensordot(_LIMB_FROM_I_II, eight[:2], axes=1)
    return np.concatenate([eight[:2], derived, eight[2:]])


_LEAD_VECTORS = _twelve_from_eight(_INVERSE_DOWER)  # (12, 3)
_LEAD_INDEX = {lead: k for k, lead in enumerate(STANDARD_LEADS)}

_CAD_TERRITORIES: tuple[tuple[str, ...], ...] = (
    ("II", "III", "aVF"),  # inferior
    ("V1", "V2", "V3", "V4"),  # anterior
    ("I", "aVL", "V5", "V6"),  # lateral
)


def _territory_vector(leads: tuple[str, ...]) -> np.ndarray:
    """The dipole reading ~+1 mV in every lead of a territory and as little as it can elsewhere. (3,)"""
    in_territory = np.isin(STANDARD_LEADS, leads)
    # Weighted least squares: the territory must fit; the other leads only keep the vector from growing huge.
    weight = np.where(in_territory, 1.0, 0.3)[:, None]
    return np.linalg.lstsq(weight * _LEAD_VECTORS, weight[:, 0] * in_territory, rcond=None)[0]


_TERRITORY_VECTORS = [_territory_vector(leads) for leads in _CAD_TERRITORIES]
# AF is expressed in every lead: the irregular RR is as visible in V5 as in V1; only its f-waves favour II/V1.
_AFFECTED_LEADS: dict[str, tuple[str, ...]] = {
    "heart_failure": STANDARD_LEADS,
    "arrhythmia": STANDARD_LEADS,
    "valvular_disease": ("II", "V1", "V5", "V6"),
}

# Waves of one beat: right and left atrial halves of P, septal Q, R, terminal S, T.
_WAVES = ("P_RA", "P_LA", "Q", "R", "S", "T")
_BASE_VECTORS = np.array([
    [0.03, 0.09, -0.04],  # P_RA: inferior and anterior
    [0.06, 0.03, 0.05],  # P_LA: leftward and posterior (terminal negative P in V1)
    [-0.10, 0.03, -0.15],  # Q: septum depolarises rightward and anterior (r in V1, q in V6)
    [1.20, 0.60, 0.45],  # R: left, inferior, posterior
    [-0.15, -0.20, 0.50],  # S: posterior-superior terminal forces (deep S in V1, V2)
    [0.30, 0.20, -0.14],  # T: concordant with R in the frontal plane, anterior
])  # (6, 3) mV
_BASE_OFFSETS = np.array([0.0, 0.0, -0.028, 0.0, 0.026, 0.0])  # s from the R peak; P and T set per beat
_BASE_WIDTHS = np.array([0.016, 0.016, 0.009, 0.011, 0.010, 0.0])  # Gaussian sigma in s; T set per beat
_QRS = slice(2, 5)
_MIN_RR, _MAX_RR = 0.3, 2.0  # s
_WINDOW = (-0.4, 0.65)  # s around each R peak that its waves can reach
_F_WAVE_DIRECTION = np.array([-0.1, 0.5, -0.6]) / np.linalg.norm([-0.1, 0.5, -0.6])  # seen best in V1, II


@dataclass(frozen=True)
class EcgResult:
    """A synthetic 12-lead ECG and the facts about it that the generator knows.

    signal: float32 (12, n_samples) in mV, rows in STANDARD_LEADS order. fs: Hz.
    heart_rate_bpm: 60 / mean RR of the beats inside the record. r_peaks: sample indices of the QRS peaks
    inside the record. affected_leads: leads expressing the strongest finding; () for a normal ECG.
    """

    signal: np.ndarray
    fs: int
    heart_rate_bpm: float
    r_peaks: np.ndarray
    affected_leads: tuple[str, ...]


def _validated_findings(findings: Mapping[str, float]) -> dict[str, float]:
    for name, value in findings.items():
        if name not in CARDIO_FINDINGS:
            raise ValueError(f"unknown finding {name!r}; expected one of {CARDIO_FINDINGS}")
        if not (isinstance(value, (int, float, np.floating, np.integer)) and 0.0 <= float(value) <= 1.0):
            raise ValueError(f"intensity of finding {name!r} must be a number in [0, 1], got {value!r}")
    return {name: float(findings.get(name, 0.0)) for name in CARDIO_FINDINGS}


def _beat_times(rng: np.random.Generator, i_hf: float, i_af: float, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """R-peak times (n_max,) in s, the first one at or before 0, and the RR preceding each beat (n_max,)."""
    base_hr, hf_hr, af_hr = rng.uniform(55, 90), rng.uniform(105, 125), rng.uniform(90, 130)
    # Sinus tachycardia of failure and fast AF do not add up: the faster drive wins.
    rr0 = 60.0 / max(base_hr + i_hf * (hf_hr - base_hr), base_hr + i_af * (af_hr - base_hr))
    rsa_depth = rng.uniform(0.02, 0.05) * (1.0 - i_af)  # AF replaces respiratory sinus arrhythmia
    resp_hz, resp_phase = rng.uniform(0.2, 0.33), rng.uniform(0, 2 * np.pi)
    jitter, irregular = rng.standard_normal((2, n_max))
    cv = 0.22 * i_af  # lognormal spread ~ coefficient of variation of AF RR
    breathing = rsa_depth * np.sin(2 * np.pi * resp_hz * rr0 * np.arange(n_max) + resp_phase)
    rr = rr0 * (1.0 + breathing + 0.01 * jitter) * np.exp(cv * irregular - cv**2 / 2)
    rr = np.clip(rr, _MIN_RR, _MAX_RR)
    first = -rng.uniform(0.0, 1.0) * rr[0]  # the record starts anywhere in a cardiac cycle
    r_times = first + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    return r_times, np.concatenate([[rr0], rr[:-1]])


def _beat_waves(rng: np.random.Generator, i: dict[str, float], rr_before: np.ndarray,
                territory: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Wave vectors (6, 3), centres (6, B), left and right sigmas (6, B) in s, ST vector (3,), J point in s."""
    n_beats = len(rr_before)
    angles = np.radians(rng.normal(0.0, [6.0, 10.0, 12.0]))  # heart orientation about X, Y, Z
    amp_jitter = rng.lognormal(0.0, 0.12, len(_WAVES))
    width_jitter = rng.lognormal(0.0, 0.06, len(_WAVES))
    pr, qtc = rng.uniform(0.14, 0.18), rng.uniform(0.38, 0.42)
    st_sign = rng.choice([-1.0, 1.0])  # transmural injury (elevation) or subendocardial (depression)
    i_cad, i_hf, i_af, i_vd = (i[name] for name in CARDIO_FINDINGS)

    vectors = _BASE_VECTORS * amp_jitter[:, None]
    vectors[:2] *= max(0.0, 1.0 - 2.0 * i_af)  # atria fibrillate instead of contracting
    vectors[1] *= 1.0 + 2.2 * i_vd  # enlarged left atrium
    vectors[3] = vectors[3] * (1.0 + 0.5 * i_vd) + i_vd * np.array([0.55, -0.1, 0.8])  # LVH: big, posterior R
    vectors[4] *= 1.0 + 0.6 * i_vd
    vectors[_QRS] *= 1.0 - 0.7 * i_hf  # low QRS voltage
    vectors[5] *= 1.0 - 0.4 * i_hf
    w = _TERRITORY_VECTORS[territory]
    q_i = float(np.clip(2.0 * i_cad - 1.0, 0.0, 1.0))  # necrosis (Q waves) only in florid disease
    vectors[2] -= 0.35 * q_i * w
    vectors[3] -= 0.3 * q_i * w
    vectors[5] -= 0.75 * i_cad * w  # T inversion in the territory
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rotation = (np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
                @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
                @ np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]]))
    vectors = vectors @ rotation.T  # (6, 3); the injury current below is fixed to its territory's leads

    qrs_scale = 1.0 + 0.3 * i_hf  # failing ventricles conduct slowly
    offsets = np.repeat(_BASE_OFFSETS[:, None], n_beats, axis=1)  # (6, B)
    offsets[_QRS] *= qrs_scale
    offsets[0] = -pr - 0.014 - 0.03 * i_vd  # P widens and notches as its halves separate
    offsets[1] = -pr + 0.012
    sigma = np.repeat((_BASE_WIDTHS * width_jitter)[:, None], n_beats, axis=1)
    sigma[_QRS] *= qrs_scale
    sigma[2] *= 1.0 + 0.5 * q_i
    sigma[1] *= 1.0 + 0.4 * i_vd
    # Repolarisation scales with the preceding RR (Bazett): QT = QTc * sqrt(RR).
    root_rr = np.sqrt(rr_before)
    sigma_right = sigma.copy()
    sigma[5], sigma_right[5] = 0.052 * root_rr * width_jitter[5], 0.032 * root_rr * width_jitter[5]
    offsets[5] = -0.04 * qrs_scale + qtc * root_rr - 2.5 * sigma_right[5]
    st_vector = st_sign * 0.3 * i_cad * w
    return vectors, offsets, sigma, sigma_right, st_vector, 0.035 * qrs_scale


def _dipole(rng: np.random.Generator, i: dict[str, float], r_times: np.ndarray, rr_before: np.ndarray,
            territory: int, fs: int, n_samples: int) -> np.ndarray:
    """The cardiac dipole of all beats near the record: (3, n_samples) in mV."""
    vectors, centres, sigma_l, sigma_r, st_vector, j_point = _beat_waves(rng, i, rr_before, territory)
    beat_gain = 1.0 + 0.02 * rng.standard_normal(len(r_times))  # beat-to-beat amplitude variation
    near = (r_times > -_WINDOW[1]) & (r_times < n_samples / fs - _WINDOW[0])
    r_near = r_times[near]
    # Each beat only touches a fixed window of samples around its R peak: (B, W).
    start = np.floor((r_near + _WINDOW[0]) * fs).astype(int)
    index = start[:, None] + np.arange(math.ceil((_WINDOW[1] - _WINDOW[0]) * fs))[None, :]
    tau = index / fs - r_near[:, None]  # (B, W) s from each R peak
    dt = tau[None] - centres[:, near, None]  # (6, B, W)
    sigma = np.where(dt < 0, sigma_l[:, near, None], sigma_r[:, near, None])
    waves = np.exp(-0.5 * (dt / sigma) ** 2) * beat_gain[None, near, None]
    local = np.einsum("kbw,kc->cbw", waves, vectors)  # (6, B, W) -> (3, B, W)
    # Injury current: a plateau from the J point to the T peak, i.e. ST deviation from the PR baseline.
    t_peak = centres[5, near, None]
    plateau = 1.0 / (1.0 + np.exp(-(tau - j_point) / 0.005)) / (1.0 + np.exp((tau - t_peak) / 0.03))
    local += st_vector[:, None, None] * plateau[None]
    inside = (index >= 0) & (index < n_samples)
    return np.stack([np.bincount(index[inside], local[c][inside], minlength=n_samples) for c in range(3)])


def _fibrillatory_waves(rng: np.random.Generator, i_af: float, t: np.ndarray) -> np.ndarray:
    """AF f-waves, 4-9 Hz with wandering rate and amplitude: (3, n_samples) in mV."""
    f0, drift_hz, mod_hz = rng.uniform(4.5, 8.0), rng.uniform(0.1, 0.2), rng.uniform(0.2, 0.5)
    phases = rng.uniform(0.0, 2 * np.pi, 4)
    rate = f0 * (1.0 + 0.08 * np.sin(2 * np.pi * drift_hz * t + phases[0]))
    phase = 2 * np.pi * np.cumsum(rate) * (t[1] - t[0]) + phases[1]
    envelope = 1.0 + 0.35 * np.sin(2 * np.pi * mod_hz * t + phases[2])
    wave = envelope * (np.sin(phase) + 0.3 * np.sin(2 * phase + phases[3]))
    return 0.1 * i_af * _F_WAVE_DIRECTION[:, None] * wave[None]


def _acquisition_noise(rng: np.random.Generator, t: np.ndarray, fs: int, powerline_hz: float) -> np.ndarray:
    """Baseline wander, EMG and mains hum on the 8 independent leads: (8, n_samples) in mV."""
    wander_amp = rng.uniform(0.04, 0.12, (8, 3, 1))
    wander_hz = rng.uniform(0.1, 0.5, (8, 3, 1))
    wander_phase = rng.uniform(0.0, 2 * np.pi, (8, 3, 1))
    wander = (wander_amp * np.sin(2 * np.pi * wander_hz * t + wander_phase)).sum(axis=1)  # (8, 3, n) -> (8, n)
    emg = rng.uniform(0.01, 0.03) * rng.standard_normal((8, len(t)))
    hum_amp, hum_phase = rng.uniform(0.003, 0.015, (8, 1)), rng.uniform(0.0, 2 * np.pi)
    # An anti-aliasing filter removes hum at or above Nyquist; the draws above still happen for determinism.
    hum = hum_amp * np.sin(2 * np.pi * powerline_hz * t + hum_phase) if 0 < powerline_hz < fs / 2 else 0.0
    return wander + emg + hum


def synthesize_ecg(rng: np.random.Generator, findings: Mapping[str, float], *, fs: int = 500,
                   duration_s: float = 10.0, noise: float = 1.0, amplitude_gain: float = 1.0,
                   powerline_hz: float = 50.0) -> EcgResult:
    """A 12-lead ECG with ``findings`` (finding -> intensity in [0, 1]; {} = normal).

    Every random number comes from ``rng`` and the count drawn never depends on the findings or noise, so
    a finding at intensity 0 gives exactly the normal ECG of the same seed. ``noise`` scales all noise,
    ``amplitude_gain`` the whole trace. Returns signal float32 (12, round(fs * duration_s)) in mV.
    """
    intensity = _validated_findings(findings)
    if not (isinstance(fs, (int, np.integer)) and fs > 0):
        raise ValueError(f"fs must be a positive integer number of Hz, got {fs!r}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a positive number of seconds, got {duration_s!r}")
    n_samples = round(fs * duration_s)
    if n_samples < 2:
        raise ValueError(f"fs * duration_s must give at least 2 samples, got {fs} Hz * {duration_s} s")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be >= 0 (0 = clean), got {noise!r}")
    if not (math.isfinite(amplitude_gain) and amplitude_gain > 0):
        raise ValueError(f"amplitude_gain must be > 0, got {amplitude_gain!r}")
    if not (math.isfinite(powerline_hz) and powerline_hz >= 0):
        raise ValueError(f"powerline_hz must be >= 0 (0 = no hum), got {powerline_hz!r}")

    n_max = math.ceil((duration_s + 1.0) / _MIN_RR) + 2  # enough beats at the fastest possible rate
    r_times, rr_before = _beat_times(rng, intensity["heart_failure"], intensity["arrhythmia"], n_max)
    territory = int(rng.integers(len(_CAD_TERRITORIES)))  # drawn for every case, used only with CAD
    t = np.arange(n_samples) / fs
    dipole = _dipole(rng, intensity, r_times, rr_before, territory, fs, n_samples)  # (3, n)
    dipole += _fibrillatory_waves(rng, intensity["arrhythmia"], t)
    eight = _INVERSE_DOWER @ dipole  # (3, n) -> (8, n)
    eight += noise * _acquisition_noise(rng, t, fs, powerline_hz)
    signal = (amplitude_gain * _twelve_from_eight(eight)).astype(np.float32)  # (8, n) -> (12, n)

    in_record = r_times[(r_times >= 0) & (r_times < (n_samples - 0.5) / fs)]
    mean_rr = float(np.diff(in_record).mean()) if len(in_record) >= 2 else float(rr_before[1:3].mean())
    strongest = max(CARDIO_FINDINGS, key=lambda name: intensity[name])
    if intensity[strongest] == 0:
        affected: tuple[str, ...] = ()
    elif strongest == "coronary_artery_disease":
        affected = _CAD_TERRITORIES[territory]
    else:
        affected = _AFFECTED_LEADS[strongest]
    return EcgResult(signal=signal, fs=int(fs), heart_rate_bpm=60.0 / mean_rr,
                     r_peaks=np.round(in_record * fs).astype(int), affected_leads=affected)


if __name__ == "__main__":
    import time

    generator = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(200):
        synthesize_ecg(generator, {"arrhythmia": 0.7, "heart_failure": 0.3})
    print(f"{(time.perf_counter() - start) / 200 * 1e3:.2f} ms per 10 s 12-lead record at 500 Hz")
