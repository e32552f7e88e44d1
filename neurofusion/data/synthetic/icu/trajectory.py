"""The latent course of one synthetic ICU stay: admission diagnosis, course, demographics, an hourly severity
trajectory, stay length and outcome, drawn from the model stated here before anything is rendered.

Severity s(h) in [0, 1] (0 = well, 1 = moribund) on whole hours h = 0 .. MAX_STAY_H:

    s0   = DX_SEVERITY[dx] + 0.04 (age - 65) / 10 + ADMISSION_SEVERITY[type] + N(0, 0.08), clipped to [0.1, 0.85]
    deteriorating: s0 until the onset hour (U(4, 48)), then + slope (U(0.012, 0.03) per hour, capped at 1)
                   for DETERIORATION_H (U(12, 48) h) to a peak, after which treatment turns it and it settles
                   as a recovery does from the peak
    recovering:    s0 until the onset hour (U(2, 24)), then FLOOR + (s_onset - FLOOR) exp(-rate (h - onset)),
                   rate U(0.02, 0.05) per hour
    stable:        s0
    plus AR(1) noise e_h = 0.9 e_(h-1) + N(0, 0.015), and clipped to [0, 1].

Death follows a piecewise-constant hazard per hour on the current severity and age,

    lambda(h) = BASE_HAZARD * exp(SEVERITY_LOG_HR (s(h) - 1) + AGE_LOG_HR (age - 65) / 10)   per hour,

by inversion (death when the cumulative hazard passes an Exp(1) draw, linear within the hour), conditional
on being alive at SURVIVES_H (as cohorts that leave out stays of a few hours are: a stay must have data to
predict from); the hazard at the severity reached counts from then on. The stay ends
at death or at the planned discharge, whichever is first: recovering and deteriorating stays leave U(6, 24) h
after severity first falls below READY_SEVERITY (after the peak, for a deterioration), stable stays after a
log-normal time (median 60 h); a stay not ready by MAX_STAY_H is transferred out then; every stay lasts at
least MIN_STAY_H. The label of the ICU task at hour t (``died_within``) is death within 48 h of t, defined
for t inside the stay.

Measured on 4,000 stays (seed 7): mortality 13.8 % (deteriorating 52 %, stable 5.4 %, recovering 1.2 %;
sepsis 12.1 %, cardiogenic shock 20.9 %, respiratory failure 10.4 %); stay length median 2.4 days, 5-95 %
1.1-5.2 days; 0.6 % transferred out alive at 7 days; label prevalence (death within 48 h among stays still in
the unit) 7.5 % at hour 0, 10.9 % at 24 h, 9.3 % at 48 h.

Which modality carries the signal when (the ground truth): demographics and admission diagnosis carry the
prior (``prior_severity``, from hour 0); vitals carry the current severity from hour 0 and the course once
severity has moved TREND_SHOWS from its onset value (``trend_hour``); labs and notes carry the course from the
first draw / first note after that hour (set when they are rendered).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIAGNOSES: tuple[str, ...] = ("sepsis", "cardiogenic_shock", "respiratory_failure")
DIAGNOSIS_PRIOR: tuple[float, ...] = (0.45, 0.25, 0.30)
COURSES: tuple[str, ...] = ("deteriorating", "stable", "recovering")
COURSE_PRIOR: dict[str, tuple[float, ...]] = {
    "sepsis": (0.20, 0.35, 0.45), "cardiogenic_shock": (0.28, 0.37, 0.35), "respiratory_failure": (0.18, 0.40, 0.42),
}
ADMISSION_TYPES: tuple[str, ...] = ("emergency", "urgent", "elective")
ADMISSION_PRIOR: tuple[float, ...] = (0.70, 0.20, 0.10)
DX_SEVERITY = {"sepsis": 0.45, "cardiogenic_shock": 0.55, "respiratory_failure": 0.45}
ADMISSION_SEVERITY = {"emergency": 0.05, "urgent": 0.0, "elective": -0.12}
FLOOR = 0.1
READY_SEVERITY = 0.25
TREND_SHOWS = 0.1
DETERIORATION_H = (12.0, 48.0)  # how long a deterioration lasts before treatment turns it
MAX_STAY_H = 168
MIN_STAY_H = 18.0
SURVIVES_H = 4
BASE_HAZARD = 0.07  # per hour at severity 1 and age 65
SEVERITY_LOG_HR = 10.0
AGE_LOG_HR = 0.15  # per decade
HORIZON_H = 48.0


@dataclass(frozen=True)
class StayPlan:
    """Everything drawn about a stay before rendering. ``severity`` (MAX_STAY_H + 1,) is s(h) at whole hours
    (beyond the stay it is what the course would have done); ``stay_hours`` is the time of death or discharge;
    ``trend_hour`` the hour the course shows in severity (None for a stable course)."""

    index: int
    case_id: str
    split: str
    site: str
    diagnosis: str
    course: str
    age: int
    sex: str
    admission_type: str
    admit_clock: float  # hour of the day at admission, 0-24
    onset_hour: float | None
    severity: np.ndarray
    prior_severity: float
    stay_hours: float
    died: bool
    trend_hour: float | None
    present: dict[str, bool]

    def severity_at(self, times: np.ndarray) -> np.ndarray:
        """(N,) severity at times (hours) by linear interpolation between whole hours."""
        return np.interp(times, np.arange(len(self.severity), dtype=float), self.severity)

    def died_within(self, t: float, horizon_h: float = HORIZON_H) -> bool | None:
        """The task's label at hour ``t``: death within ``horizon_h`` hours after t; None when the stay has
        already ended by t (such a stay is not scored at t)."""
        if t < 0 or t >= self.stay_hours:
            return None
        return bool(self.died and self.stay_hours - t <= horizon_h)


def prior_severity(diagnosis: str, age: float, admission_type: str) -> float:
    """The expected admission severity from what the demographics modality records (no noise)."""
    if diagnosis not in DX_SEVERITY:
        raise ValueError(f"diagnosis must be one of {DIAGNOSES}, got {diagnosis!r}")
    if admission_type not in ADMISSION_SEVERITY:
        raise ValueError(f"admission type must be one of {ADMISSION_TYPES}, got {admission_type!r}")
    return float(np.clip(DX_SEVERITY[diagnosis] + 0.04 * (age - 65) / 10 + ADMISSION_SEVERITY[admission_type],
                         0.1, 0.85))


def hazard(severity: np.ndarray, age: float) -> np.ndarray:
    """Death hazard per hour at each severity (the stated model); shape of ``severity``."""
    return BASE_HAZARD * np.exp(SEVERITY_LOG_HR * (np.asarray(severity, dtype=float) - 1.0)
                                + AGE_LOG_HR * (age - 65.0) / 10.0)


def draw_severity(rng: np.random.Generator, s0: float, course: str) -> tuple[np.ndarray, float | None]:
    """(MAX_STAY_H + 1,) hourly severity of ``course`` starting at ``s0``, and its onset hour (None if stable)."""
    if course not in COURSES:
        raise ValueError(f"course must be one of {COURSES}, got {course!r}")
    hours = np.arange(MAX_STAY_H + 1, dtype=float)
    path = np.full(hours.shape, s0)
    onset: float | None = None
    if course == "deteriorating":
        onset = float(rng.uniform(4, 48))
        peak_at = onset + rng.uniform(*DETERIORATION_H)
        rise = np.minimum(s0 + rng.uniform(0.012, 0.03) * np.clip(hours - onset, 0, peak_at - onset), 1.0)
        peak = float(rise[-1])
        settle = FLOOR + (peak - FLOOR) * np.exp(-rng.uniform(0.02, 0.05) * np.clip(hours - peak_at, 0, None))
        path = np.where(hours <= peak_at, rise, settle)
    elif course == "recovering":
        onset = float(rng.uniform(2, 24))
        decay = np.exp(-rng.uniform(0.02, 0.05) * np.clip(hours - onset, 0, None))
        path = FLOOR + (s0 - FLOOR) * decay if s0 > FLOOR else path
    noise = np.zeros_like(hours)
    steps = rng.normal(0.0, 0.015, size=len(hours))
    for h in range(1, len(hours)):
        noise[h] = 0.9 * noise[h - 1] + steps[h]
    return np.clip(path + noise, 0.0, 1.0), onset


def death_time(rng: np.random.Generator, severity: np.ndarray, age: float) -> float:
    """Time of death (hours) under the hazard given survival to SURVIVES_H, by inversion of the cumulative
    hazard; inf beyond the path."""
    rates = hazard(severity[:-1], age)  # hour h .. h + 1 at the rate of s(h)
    cumulative = np.concatenate([[0.0], np.cumsum(rates)])
    target = cumulative[SURVIVES_H] + rng.exponential(1.0)
    k = int(np.searchsorted(cumulative, target))
    if k >= len(cumulative):
        return float("inf")
    return float(k - 1 + (target - cumulative[k - 1]) / rates[k - 1])


def planned_discharge(rng: np.random.Generator, severity: np.ndarray, course: str) -> float:
    """Hours to discharge if the patient lives (see the module docstring), within [MIN_STAY_H, MAX_STAY_H]."""
    if course == "stable":
        at = float(np.exp(rng.normal(np.log(60.0), 0.45)))
    else:
        worst = int(np.argmax(severity))  # a deteriorating stay is ready only after its peak
        ready = worst + np.flatnonzero(severity[worst:] < READY_SEVERITY)
        at = float(ready[0]) + rng.uniform(6, 24) if len(ready) else float(MAX_STAY_H)
    return float(np.clip(at, MIN_STAY_H, MAX_STAY_H))


def trend_hour(severity: np.ndarray, onset: float | None) -> float | None:
    """The first whole hour after onset at which severity has moved TREND_SHOWS from its onset value."""
    if onset is None:
        return None
    start = int(np.ceil(onset))
    moved = np.flatnonzero(np.abs(severity[start:] - severity[start]) >= TREND_SHOWS)
    return float(start + moved[0]) if len(moved) else None
