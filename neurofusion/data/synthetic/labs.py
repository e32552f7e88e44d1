"""Synthetic demographics, risk factors and laboratory values (real units and reference ranges) for the
cardiovascular cohort, with disease effects scaled by the case's tabular evidence strength and
informative missingness (a test is less often ordered when the clinician's suspicion is low)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from neurofusion.data.features import FeatureSpec
from neurofusion.data.tasks import CARDIO_FINDINGS

CAD, HF, ARRHYTHMIA, VALVULAR = CARDIO_FINDINGS

CARDIO_FEATURES: list[FeatureSpec] = [
    FeatureSpec("age", unit="years", description="age at the consultation"),
    FeatureSpec("sex", kind="categorical", categories=("F", "M"), description="sex recorded at birth"),
    FeatureSpec("bmi", unit="kg/m2", ref_low=18.5, ref_high=25, description="body-mass index"),
    FeatureSpec("smoker", kind="categorical", categories=("never", "former", "current"), description="smoking status"),
    FeatureSpec("diabetes", kind="categorical", categories=("no", "yes"), description="diabetes mellitus"),
    FeatureSpec("hypertension", kind="categorical", categories=("no", "yes"), description="treated hypertension"),
    FeatureSpec("systolic_bp", unit="mmHg", ref_low=90, ref_high=130, description="systolic blood pressure"),
    FeatureSpec("troponin_ng_l", unit="ng/L", ref_high=26, description="high-sensitivity troponin I (99th percentile 26)"),
    FeatureSpec("bnp_pg_ml", unit="pg/mL", ref_high=100, description="B-type natriuretic peptide"),
    FeatureSpec("ldl_mg_dl", unit="mg/dL", ref_high=130, description="LDL cholesterol"),
    FeatureSpec("hdl_mg_dl", unit="mg/dL", ref_low=40, description="HDL cholesterol"),
    FeatureSpec("creatinine_mg_dl", unit="mg/dL", ref_low=0.6, ref_high=1.3, description="serum creatinine"),
    FeatureSpec("potassium_mmol_l", unit="mmol/L", ref_low=3.5, ref_high=5.0, description="serum potassium"),
    FeatureSpec("sodium_mmol_l", unit="mmol/L", ref_low=135, ref_high=145, description="serum sodium"),
    FeatureSpec("hemoglobin_g_dl", unit="g/dL", ref_low=12, ref_high=17.5, description="haemoglobin"),
    FeatureSpec("tsh_miu_l", unit="mIU/L", ref_low=0.4, ref_high=4.0, description="thyroid-stimulating hormone"),
]

# Mean age by diagnosis: a population-level prior, not part of the per-case evidence strength.
_AGE_MEAN = {"normal": 54.0, CAD: 63.0, HF: 67.0, ARRHYTHMIA: 66.0, VALVULAR: 70.0}
# Probability each test is ordered, by diagnosis: the informative part of the missingness.
_ORDERED = {
    "troponin_ng_l": {"normal": 0.45, CAD: 0.92, HF: 0.75, ARRHYTHMIA: 0.6, VALVULAR: 0.55},
    "bnp_pg_ml": {"normal": 0.35, CAD: 0.6, HF: 0.93, ARRHYTHMIA: 0.7, VALVULAR: 0.78},
    "tsh_miu_l": {"normal": 0.25, CAD: 0.25, HF: 0.4, ARRHYTHMIA: 0.85, VALVULAR: 0.3},
    "ldl_mg_dl": {"normal": 0.7, CAD: 0.9, HF: 0.7, ARRHYTHMIA: 0.65, VALVULAR: 0.65},
}
_ROUTINE_ORDERED = 0.94  # creatinine, potassium, sodium, haemoglobin, blood pressure, BMI
# Thresholds at which a consult note may call a latent value a diagnosis.
OBESITY_BMI = 30.0  # kg/m2, WHO class I
HYPERLIPIDEMIA_LDL = 130.0  # mg/dL, the top of the ldl_mg_dl reference range


@dataclass(frozen=True)
class LabDraw:
    """One case's tabular values twice: ``latent`` as drawn (every value exists, ordered or not), and
    ``recorded`` as the table holds them (NaN where the test was not ordered). The note is written from
    the same draw, so it can state a diagnosis from a latent value (obesity from the BMI) without ever
    contradicting what the table records."""

    latent: dict[str, float | str]
    recorded: dict[str, float | str]


def synthesize_labs(
    rng: np.random.Generator, label: str, findings: Mapping[str, float]
) -> dict[str, float | str | None]:
    """One case's tabular values. ``findings`` are disease intensities in [0, 1] as expressed in the labs
    (the true disease at the case's tabular strength, plus any weaker distractor); ``label`` drives only
    the demographic prior and which tests were ordered. NaN / None = not measured."""
    return draw_labs(rng, label, findings).recorded


def draw_labs(rng: np.random.Generator, label: str, findings: Mapping[str, float], *,
              ordered: tuple[str, ...] = ()) -> LabDraw:
    """:func:`synthesize_labs` with the latent values kept (same draws, same recorded values). ``ordered``:
    tests recorded whatever the ordering draw says (a test a case's diagnosis turns on was done); the draws
    are the same, so without it the values are exactly those of a call without it."""
    unknown = set(findings) - set(CARDIO_FINDINGS)
    if unknown:
        raise ValueError(f"unknown finding(s) {sorted(unknown)}; expected some of {CARDIO_FINDINGS}")
    if label not in _AGE_MEAN:
        raise ValueError(f"unknown label {label!r}")
    not_orderable = set(ordered) - set(_ORDERED)
    if not_orderable:
        raise ValueError(f"ordered names tests that are not always ordered: {sorted(not_orderable)}; "
                         f"expected some of {sorted(_ORDERED)}")
    cad, hf, af, valve = (float(findings.get(f, 0.0)) for f in CARDIO_FINDINGS)
    for name, value in zip(CARDIO_FINDINGS, (cad, hf, af, valve)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"finding {name} intensity must be in [0, 1], got {value}")

    sex = "M" if rng.random() < (0.62 if label == CAD else 0.5) else "F"
    age = float(np.clip(rng.normal(_AGE_MEAN[label], 11), 19, 95))
    male = sex == "M"
    smoker = rng.choice(["never", "former", "current"], p=_smoking_p(cad))
    # math.exp and math.log: one scalar libm call, not numpy's loops that CPUs dispatch to different
    # vector code, so the printed value does not hang on the machine's last bit.
    values: dict[str, float | str | None] = {
        "age": round(age),
        "sex": sex,
        "bmi": round(float(np.clip(rng.normal(27.5 + 2 * hf, 4.5), 16, 55)), 1),
        "smoker": str(smoker),
        "diabetes": "yes" if rng.random() < 0.12 + 0.2 * cad + 0.08 * hf else "no",
        "hypertension": "yes" if rng.random() < 0.25 + 0.006 * (age - 50) + 0.2 * max(cad, hf) else "no",
        "systolic_bp": round(float(rng.normal(124 + 0.3 * (age - 55) + 10 * valve - 8 * hf, 13))),
        # hs-troponin I: log-normal around a few ng/L, rising into the hundreds with myocardial injury.
        "troponin_ng_l": round(math.exp(rng.normal(math.log(5) + 3.8 * cad + 1.3 * hf, 0.55)), 1),
        "bnp_pg_ml": round(math.exp(rng.normal(math.log(35) + 3.2 * hf + 1.3 * valve + 1.1 * af, 0.5))),
        "ldl_mg_dl": round(float(rng.normal(110 + 55 * cad, 28))),
        "hdl_mg_dl": round(float(np.clip(rng.normal((48 if male else 58) - 12 * cad, 11), 18, 110))),
        "creatinine_mg_dl": round(math.exp(rng.normal(math.log(0.85 if not male else 1.0) + 0.45 * hf, 0.15)), 2),
        "potassium_mmol_l": round(float(rng.normal(4.25 - 0.55 * af, 0.3)), 1),
        "sodium_mmol_l": round(float(rng.normal(140 - 6 * hf, 2.2))),
        "hemoglobin_g_dl": round(float(rng.normal((14.8 if male else 13.2) - 1.4 * hf, 1.1)), 1),
        # About half of the atrial fibrillation here is thyrotoxic: suppressed TSH.
        "tsh_miu_l": round(math.exp(rng.normal(math.log(1.6) - 2.4 * af * (rng.random() < 0.5), 0.45)), 2),
    }
    latent = dict(values)
    for name in ("bmi", "systolic_bp", "creatinine_mg_dl", "potassium_mmol_l", "sodium_mmol_l", "hemoglobin_g_dl"):
        if rng.random() > _ROUTINE_ORDERED:
            values[name] = float("nan")
    for name, by_label in _ORDERED.items():
        # Clinical suspicion raised by the expressed findings makes ordering more likely still.
        p = min(1.0, by_label[label] + 0.15 * max(cad, hf, af, valve))
        if rng.random() > p and name not in ordered:
            values[name] = float("nan")
    if np.isnan(values["ldl_mg_dl"]):  # one lipid panel measures both
        values["hdl_mg_dl"] = float("nan")
    return LabDraw(latent=latent, recorded=values)


def _smoking_p(cad: float) -> list[float]:
    current = 0.15 + 0.2 * cad
    former = 0.25 + 0.05 * cad
    return [1 - current - former, former, current]
