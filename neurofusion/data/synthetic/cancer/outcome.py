"""The survival model of the synthetic cancer cohort: a Weibull proportional-hazards model in months whose
linear predictor is the sum of the four modalities' contributions, with staggered entry, administrative
censoring at the end of the study and exponential loss to follow-up.

    S(t | eta) = exp(-(t / SCALE_MONTHS) ** SHAPE * exp(eta))
    eta = s_histopathology * GRADE_LOG_HR * (grade - COHORT_MEAN_GRADE)
        + s_genomics * sum of the planted drivers' log hazard ratios (genomics.RISK_GENES)
        + s_treatment_notes * RESPONSE_LOG_HR[response]
        + s_clinical * (STAGE_LOG_HR[stage] + AGE_LOG_HR * (age - 65) / 10 + ECOG_LOG_HR * (ecog - 1))

where s_m in [0, 1] is modality m's per-case evidence strength. Entry is uniform over the first
ACCRUAL_MONTHS of the study, which ends at STUDY_MONTHS, so administrative censoring falls between 60 and 120
months of follow-up; loss to follow-up is exponential with rate LOSS_RATE per month.

Measured on 20,000 cases (seed 7): 5-year survival 57 %; 54 % of cases censored (34 % administratively,
20 % lost to follow-up); Harrell's C-index of the true linear predictor 0.85, of one modality's term alone
0.62 (histopathology) to 0.70 (genomics), which bounds what a model of this cohort can reach.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


SHAPE = 1.3
# Chosen so that the cohort's 5-year survival is about 57 % (measured 0.57 on 20,000 draws).
SCALE_MONTHS = 249.0
STUDY_MONTHS = 120.0
ACCRUAL_MONTHS = 60.0
LOSS_RATE = 0.004  # per month: about 5 % of patients a year are lost to follow-up
HORIZON_MONTHS = 60.0
GRADE_LOG_HR = 2.0  # per grade shown
RESPONSE_LOG_HR: dict[str, float] = {
    "complete_response": -2.3, "partial_response": -0.8, "stable_disease": 0.6, "progressive_disease": 2.6,
}


def survival_probability(t: np.ndarray | float, eta: np.ndarray | float) -> np.ndarray:
    """S(t | eta) of the stated model; broadcasts t (months) against eta."""
    t = np.asarray(t, dtype=float)
    if np.any(t < 0):
        raise ValueError("survival times must be >= 0 months")
    return np.exp(-np.power(t / SCALE_MONTHS, SHAPE) * np.exp(np.asarray(eta, dtype=float)))


def sample_event_time(rng: np.random.Generator, eta: np.ndarray | float) -> np.ndarray:
    """Event times (months) by inversion: T = SCALE * (E * exp(-eta)) ** (1 / SHAPE), E ~ Exp(1); shape of eta."""
    eta = np.asarray(eta, dtype=float)
    e = rng.exponential(1.0, size=eta.shape)
    return SCALE_MONTHS * np.power(e * np.exp(-eta), 1.0 / SHAPE)


def sample_censoring(rng: np.random.Generator, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(administrative, loss-to-follow-up) censoring times in months: STUDY_MONTHS minus a uniform entry in
    [0, ACCRUAL_MONTHS), and an exponential with rate LOSS_RATE. Scalars (0-d arrays) when n is None."""
    entry = rng.uniform(0.0, ACCRUAL_MONTHS, size=n)
    loss = rng.exponential(1.0 / LOSS_RATE, size=n)
    return np.asarray(STUDY_MONTHS - entry), np.asarray(loss)


@dataclass(frozen=True)
class Outcome:
    """Observed follow-up: time (months) to the event or to censoring, event (True = death observed),
    censoring ('' for an event, else 'administrative' or 'lost'), and the event time as drawn."""

    time: float
    event: bool
    censoring: str
    event_time: float


def sample_outcome(rng: np.random.Generator, eta: float) -> Outcome:
    """One case's observed outcome under the stated model and censoring."""
    event_time = float(sample_event_time(rng, eta))
    administrative, loss = (float(x) for x in sample_censoring(rng))
    censor = min(administrative, loss)
    if event_time <= censor:
        return Outcome(event_time, True, "", event_time)
    return Outcome(censor, False, "administrative" if administrative <= loss else "lost", event_time)


def expected_censoring_share(eta: np.ndarray, grid: int = 4000) -> float:
    """P(censored) averaged over the linear predictors ``eta``, by numerical integration of
    P(T > C) = 1 - integral f(t | eta) P(C > t) dt, with P(C > t) = P(admin > t) * exp(-LOSS_RATE t)."""
    eta = np.asarray(eta, dtype=float).ravel()
    t = np.linspace(0.0, STUDY_MONTHS, grid + 1)
    admin_left = np.clip((t - (STUDY_MONTHS - ACCRUAL_MONTHS)) / ACCRUAL_MONTHS, 0.0, 1.0)
    censor_free = (1.0 - admin_left) * np.exp(-LOSS_RATE * t)  # (T,)
    s = survival_probability(t[None, :], eta[:, None])  # (n, T)
    # P(event) = sum over intervals of P(T in interval) * P(C > t) at the interval's midpoint.
    died = s[:, :-1] - s[:, 1:]
    mid = 0.5 * (censor_free[:-1] + censor_free[1:])
    return float(1.0 - (died * mid).sum(axis=1).mean())
