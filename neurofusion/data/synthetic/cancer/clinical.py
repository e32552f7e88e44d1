"""The demographics and staging row of a synthetic cancer case (age, sex, stage, ECOG performance status,
primary tumour site, BMI) and the clinical modality's contribution to the log hazard.

The row is drawn once per case; the treatment note is written from the same row, so note and table agree.
ECOG and BMI are missing from the recorded row at the stated rates (MISSING_VALUE_RATE), independently of
everything else; age, sex, stage and primary site are registry fields and always recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofusion.data.synthetic.cancer.genomics import PRIMARY_SITES

STAGES: tuple[str, ...] = ("I", "II", "III", "IV")
STAGE_PRIOR: tuple[float, ...] = (0.25, 0.30, 0.27, 0.18)
PRIMARY_PRIOR: tuple[float, ...] = (0.30, 0.30, 0.25, 0.15)  # over PRIMARY_SITES
_FEMALE_SHARE = {"breast": 1.0, "colorectal": 0.48, "lung": 0.46, "ovarian": 1.0}
_AGE = {"breast": (60.0, 11.0), "colorectal": (66.0, 11.0), "lung": (68.0, 9.0), "ovarian": (63.0, 10.0)}
AGE_RANGE = (25, 90)
MISSING_VALUE_RATE: dict[str, float] = {"ecog": 0.06, "bmi": 0.10}
CLINICAL_COLUMNS: tuple[str, ...] = ("age", "sex", "stage", "ecog", "primary_site", "bmi")

# Clinical part of the log hazard, before scaling by the clinical strength:
#   STAGE_LOG_HR[stage] + AGE_LOG_HR * (age - 65) / 10 + ECOG_LOG_HR * (ecog - 1)
STAGE_LOG_HR: dict[str, float] = {"I": -2.2, "II": -0.8, "III": 0.8, "IV": 2.6}
AGE_LOG_HR = 0.4  # per decade
ECOG_LOG_HR = 0.5  # per ECOG point


@dataclass(frozen=True)
class ClinicalRow:
    """A case's clinical values as drawn (``latent``: nothing missing) and as recorded (``recorded``: ecog and
    bmi may be NaN). Keys are CLINICAL_COLUMNS; age and ecog are ints in ``latent``, stage is "I".."IV"."""

    latent: dict[str, object]
    recorded: dict[str, object]


def clinical_log_hazard(stage: str, age: float, ecog: int) -> float:
    """The clinical risk of the hazard model (before scaling by the clinical strength)."""
    if stage not in STAGE_LOG_HR:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if not 0 <= ecog <= 4:
        raise ValueError(f"ECOG performance status must be 0-4, got {ecog!r}")
    return STAGE_LOG_HR[stage] + AGE_LOG_HR * (float(age) - 65.0) / 10.0 + ECOG_LOG_HR * (ecog - 1)


def draw_primary(rng: np.random.Generator) -> str:
    """A primary tumour site from PRIMARY_PRIOR."""
    return str(PRIMARY_SITES[rng.choice(len(PRIMARY_SITES), p=PRIMARY_PRIOR)])


def draw_clinical(rng: np.random.Generator, stage: str, primary_site: str) -> ClinicalRow:
    """Age, sex, ECOG and BMI for a case of ``stage`` and ``primary_site``, and the recorded row with ECOG and
    BMI missing at MISSING_VALUE_RATE. ECOG rises with stage and age; advanced disease lowers BMI."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if primary_site not in PRIMARY_SITES:
        raise ValueError(f"primary site must be one of {PRIMARY_SITES}, got {primary_site!r}")
    k = STAGES.index(stage)
    mean, sd = _AGE[primary_site]
    age = int(np.clip(round(rng.normal(mean, sd)), *AGE_RANGE))
    sex = "F" if rng.random() < _FEMALE_SHARE[primary_site] else "M"
    ecog = int(np.clip(round(rng.normal(0.1 + 0.35 * k + 0.03 * (age - 65), 0.7)), 0, 3))
    bmi = round(float(np.clip(rng.normal(27.5 - 0.8 * k, 4.8), 15.0, 50.0)), 1)
    latent: dict[str, object] = {
        "age": age, "sex": sex, "stage": stage, "ecog": ecog, "primary_site": primary_site, "bmi": bmi,
    }
    recorded = dict(latent)
    for column, rate in MISSING_VALUE_RATE.items():
        if rng.random() < rate:
            recorded[column] = float("nan")
    return ClinicalRow(latent, recorded)
