"""Laboratory values of a synthetic ICU stay as long-table rows (time, variable, value): draws every 6-24 h
(sooner the sicker the patient), the first within an hour of admission; each draw a basic metabolic panel
and blood count, lactate (blood gas) when the patient is unwell or the draw is the first, total bilirubin
once a day; a test is occasionally not run. Values follow severity (LAB_MODEL; creatinine follows severity
6 h earlier, as kidney injury lags), around per-patient baselines with proportional noise, rounded as the
laboratory reports them and kept inside each variable's plausible range.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurofusion.data.synthetic.icu.trajectory import StayPlan
from neurofusion.data.synthetic.icu.variables import ICU_VARIABLES

# variable: (baseline mean, baseline sd, change at severity 1 per diagnosis (sepsis, cardiogenic, respiratory),
#            noise sd as a share of the value, decimals); lactate and bilirubin rise with severity squared.
LAB_MODEL: dict[str, tuple[float, float, tuple[float, float, float], float, int]] = {
    "lactate": (1.1, 0.25, (6.5, 7.0, 3.0), 0.10, 1),
    "creatinine": (0.9, 0.2, (2.4, 2.0, 0.8), 0.06, 2),
    "wbc": (8.5, 2.0, (16.0, 5.0, 6.0), 0.08, 1),
    "potassium": (4.1, 0.3, (0.9, 0.8, 0.4), 0.04, 1),
    "sodium": (139.0, 2.5, (-4.0, -5.0, -2.0), 0.01, 0),
    "bicarbonate": (25.0, 1.8, (-11.0, -10.0, 4.0), 0.05, 0),
    "hemoglobin": (11.8, 1.3, (-1.5, -1.0, -0.5), 0.04, 1),
    "platelets": (240.0, 50.0, (-150.0, -60.0, -30.0), 0.07, 0),
    "bilirubin_total": (0.7, 0.2, (2.8, 2.2, 0.5), 0.10, 1),
    "glucose": (125.0, 15.0, (45.0, 40.0, 30.0), 0.10, 0),
}
_SQUARED = ("lactate", "bilirubin_total")
DX_INDEX = {"sepsis": 0, "cardiogenic_shock": 1, "respiratory_failure": 2}
SKIP_RATE = 0.05
LACTATE_FROM = 0.35  # severity at which lactate is sent with every draw


def draw_times(rng: np.random.Generator, plan: StayPlan) -> np.ndarray:
    """(K,) lab draw times in hours: the first in [0.2, 1), then each interval 6 + 18 (1 - s) h with jitter."""
    times = [rng.uniform(0.2, 1.0)]
    while True:
        s = float(plan.severity_at(np.array([times[-1]]))[0])
        nxt = times[-1] + (6.0 + 18.0 * (1.0 - s)) * rng.uniform(0.85, 1.15)
        if nxt >= plan.stay_hours:
            break
        times.append(nxt)
    return np.asarray([t for t in times if t < plan.stay_hours])


def render_labs(rng: np.random.Generator, plan: StayPlan) -> pd.DataFrame:
    """Render the stay's labs -> rows (time, variable, value) sorted by time then variable."""
    times = draw_times(rng, plan)
    d = DX_INDEX[plan.diagnosis]
    baseline = {name: max(rng.normal(mean, sd), 0.2 * mean) if mean > 0 else mean
                for name, (mean, sd, _, _, _) in LAB_MODEL.items()}
    severity = plan.severity_at(times)
    lagged = plan.severity_at(np.clip(times - 6.0, 0.0, None))
    last_bilirubin = -np.inf
    rows: list[tuple[float, str, float]] = []
    for k, t in enumerate(times):
        for name, (_, _, change, noise, decimals) in LAB_MODEL.items():
            if name == "lactate" and k > 0 and severity[k] < LACTATE_FROM and rng.random() < 0.7:
                continue
            if name == "bilirubin_total":
                if t - last_bilirubin < 20.0:
                    continue
                last_bilirubin = t
            if k > 0 and rng.random() < SKIP_RATE:
                continue
            s = lagged[k] if name == "creatinine" else severity[k]
            s = s * s if name in _SQUARED else s
            drift = -0.02 * t if name == "hemoglobin" else 0.0  # phlebotomy and dilution over the stay
            value = (baseline[name] + change[d] * s + drift) * (1.0 + rng.normal(0.0, noise))
            v = ICU_VARIABLES[name]
            rows.append((float(t), name, round(float(np.clip(value, v.low, v.high)), decimals)))
    frame = pd.DataFrame(rows, columns=["time", "variable", "value"])
    return frame.sort_values(["time", "variable"], kind="stable").reset_index(drop=True)
