"""Vital signs of a synthetic ICU stay as long-table rows (time, variable, value), rendered from the stay's
severity: monitor values every 5 minutes (heart rate, SpO2, respiratory rate, arterial pressure when the
stay has an arterial line), cuff pressure every 15-30 minutes (every 4 h beside an arterial line),
temperature every 4 h; with per-patient baselines, slow drift and measurement noise; sensor drop-outs and
monitor-off gaps (rows absent); and artefacts kept as monitors record them: an SpO2 probe coming off reads
near 0 % just before its gap, an arterial-line flush reads about 300 mmHg. Every other value is kept inside
the variable's plausible range, so ``read_events`` counts exactly the planted artefacts.

Diagnosis-specific response to severity s (DX_EFFECT, added to the baseline): sepsis tachycardia,
hypotension, fever and tachypnoea; cardiogenic shock low MAP with a narrow pulse pressure, moderate
tachycardia and cool temperature; respiratory failure low SpO2 and a high respiratory rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofusion.data.synthetic.icu.trajectory import StayPlan
from neurofusion.data.synthetic.icu.variables import ICU_VARIABLES

STEP_H = 5 / 60
# per unit of severity: heart rate (bpm), MAP (mmHg), pulse pressure (mmHg), SpO2 (%), resp rate, temperature (°C)
DX_EFFECT: dict[str, dict[str, float]] = {
    "sepsis": {"hr": 50.0, "map": -32.0, "pp": 5.0, "spo2": -4.0, "rr": 12.0, "temp": 2.2},
    "cardiogenic_shock": {"hr": 30.0, "map": -38.0, "pp": -22.0, "spo2": -6.0, "rr": 10.0, "temp": -0.6},
    "respiratory_failure": {"hr": 32.0, "map": -8.0, "pp": 0.0, "spo2": -13.0, "rr": 20.0, "temp": 0.5},
}
DROPOUTS_PER_DAY = 1.5
FLUSHES_PER_DAY = 1.0
PROBE_OFF_SHARE = 0.7  # of SpO2 drop-outs, how many start with a near-0 reading


@dataclass(frozen=True)
class VitalsResult:
    """``rows`` (time, variable, value) sorted by time then variable; ``artefacts`` {variable: count planted};
    ``arterial_line`` whether the stay has one."""

    rows: pd.DataFrame
    artefacts: dict[str, int]
    arterial_line: bool


def render_vitals(rng: np.random.Generator, plan: StayPlan,
                  spo2_from: tuple[float, float] | None = None) -> VitalsResult:
    """Render the stay's vital signs (the module docstring says how). spo2_from: (hour, level): from that
    hour the SpO2 sits at ``level`` instead of following severity (its drift and noise kept; no extra draws,
    so the other values are as without it), as an interaction rule of the cohort plants it."""
    end = plan.stay_hours
    arterial = bool(rng.random() < 0.25 + 0.6 * plan.severity[0] + (0.15 if plan.site == "site_a" else 0.0))
    monitor = rng.uniform(0, STEP_H) + STEP_H * np.arange(int(end / STEP_H) + 1)
    monitor = monitor[monitor < end]
    s = plan.severity_at(monitor)
    effect = DX_EFFECT[plan.diagnosis]
    base = {"hr": rng.normal(84, 9), "map": rng.normal(86, 7), "pp": rng.normal(48, 7), "spo2": rng.normal(97.5, 1.0),
            "rr": rng.normal(16, 2.0), "temp": rng.normal(36.9, 0.25)}
    drift = {k: _drift(rng, monitor, sd) for k, sd in
             {"hr": 4.0, "map": 3.0, "pp": 2.0, "spo2": 0.6, "rr": 1.2, "temp": 0.15}.items()}
    level = {k: base[k] + effect[k] * s + drift[k] for k in base}
    level["pp"] = np.maximum(level["pp"], 12.0)
    frames: list[tuple[np.ndarray, str, np.ndarray]] = []

    def noisy(key: str, sd: float, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        values = level[key][index]
        return values + rng.normal(0, sd, size=len(values))

    frames.append((monitor, "heart_rate", np.round(noisy("hr", 2.5))))
    spo2 = noisy("spo2", 0.8)
    if spo2_from is not None:
        after = monitor >= spo2_from[0]
        spo2[after] += spo2_from[1] - (level["spo2"] - drift["spo2"])[after]
    frames.append((monitor, "spo2", np.round(np.minimum(spo2, 100.0))))
    frames.append((monitor, "resp_rate", np.round(noisy("rr", 1.5))))
    if arterial:
        mean = noisy("map", 2.0)
        frames += _pressures(monitor, mean, level["pp"], rng, "abp", 1.5)
    cuff_step = 4.0 if arterial else (0.25 if plan.severity[0] > 0.5 else 0.5)
    cuff = _times(rng, end, cuff_step, jitter=2 / 60)
    index = np.clip(np.searchsorted(monitor, cuff), 0, len(monitor) - 1)
    frames += _pressures(cuff, noisy("map", 4.0, index), level["pp"][index], rng, "nibp", 3.0)
    temp_times = _times(rng, end, 4.0, jitter=0.5)
    index = np.clip(np.searchsorted(monitor, temp_times), 0, len(monitor) - 1)
    frames.append((temp_times, "temperature", np.round(noisy("temp", 0.1, index), 1)))

    rows = pd.concat([pd.DataFrame({"time": t, "variable": name, "value": _inside(name, v)}) for t, name, v in frames],
                     ignore_index=True)
    rows, artefacts = _dropouts_and_artefacts(rng, rows, end, arterial)
    rows = rows.sort_values(["time", "variable"], kind="stable").reset_index(drop=True)
    return VitalsResult(rows, artefacts, arterial)


def _pressures(times: np.ndarray, mean: np.ndarray, pulse: np.ndarray, rng: np.random.Generator, prefix: str,
               sd: float) -> list[tuple[np.ndarray, str, np.ndarray]]:
    """Systolic / diastolic / mean rows from a mean pressure and a pulse pressure (MAP = DBP + PP / 3)."""
    systolic = mean + 2 * pulse / 3 + rng.normal(0, sd, len(times))
    diastolic = mean - pulse / 3 + rng.normal(0, sd, len(times))
    return [(times, f"{prefix}_systolic", np.round(systolic)), (times, f"{prefix}_diastolic", np.round(diastolic)),
            (times, f"{prefix}_mean", np.round(mean))]


def _times(rng: np.random.Generator, end: float, step: float, jitter: float) -> np.ndarray:
    """Intermittent measurement times every ``step`` hours with a little jitter, inside [0, end)."""
    times = rng.uniform(0, step) + step * np.arange(int(end / step) + 1)
    times = times + rng.uniform(-jitter, jitter, size=len(times))
    return np.sort(times[(times >= 0) & (times < end)])


def _drift(rng: np.random.Generator, times: np.ndarray, sd: float) -> np.ndarray:
    """A slow mean-reverting wander (hourly AR(1), stationary sd ``sd``) interpolated onto ``times``."""
    hours = np.arange(int(times[-1]) + 2 if len(times) else 2, dtype=float)
    values = np.zeros(len(hours))
    steps = rng.normal(0, sd * np.sqrt(1 - 0.8 ** 2), len(hours))
    for h in range(1, len(hours)):
        values[h] = 0.8 * values[h - 1] + steps[h]
    return np.interp(times, hours, values)


def _inside(name: str, values: np.ndarray) -> np.ndarray:
    """Clip a physiological value into the variable's plausible range (only planted artefacts leave it)."""
    v = ICU_VARIABLES[name]
    return np.clip(values, v.low, v.high)


def _dropouts_and_artefacts(rng: np.random.Generator, rows: pd.DataFrame, end: float,
                            arterial: bool) -> tuple[pd.DataFrame, dict[str, int]]:
    """Remove drop-out windows (SpO2 probe, arterial line, whole monitor) and plant probe-off and flush values."""
    keep = np.ones(len(rows), dtype=bool)
    time, variable = rows["time"].to_numpy(), rows["variable"].to_numpy()
    value = rows["value"].to_numpy(dtype=float).copy()
    groups = {"spo2": ("spo2",), "aline": ("abp_systolic", "abp_diastolic", "abp_mean"),
              "monitor": ("heart_rate", "spo2", "resp_rate", "abp_systolic", "abp_diastolic", "abp_mean")}
    for _ in range(rng.poisson(DROPOUTS_PER_DAY * end / 24)):
        kind = str(rng.choice(["spo2", "aline", "monitor"], p=[0.55, 0.25, 0.2]))
        kind = "spo2" if kind == "aline" and not arterial else kind
        start = rng.uniform(0, end)
        gap = (time >= start) & (time < start + rng.uniform(10, 90) / 60) & np.isin(variable, groups[kind])
        keep &= ~gap
        if kind == "spo2" and rng.random() < PROBE_OFF_SHARE:
            before = np.flatnonzero((variable == "spo2") & (time < start) & keep)[-2:]
            value[before] = np.round(rng.uniform(0, 25, len(before)))
    if arterial:
        line = np.flatnonzero(variable == "abp_mean")
        for _ in range(rng.poisson(FLUSHES_PER_DAY * end / 24)):
            at = time[line[rng.integers(len(line))]]
            systolic = rng.uniform(280, 320)
            for name, reading in (("abp_systolic", systolic), ("abp_diastolic", systolic - rng.uniform(5, 20)),
                                  ("abp_mean", systolic - rng.uniform(2, 10))):
                k = np.flatnonzero((variable == name) & (time == at))
                value[k] = round(reading)
    out = rows.assign(value=value)[keep]
    # counted on what remains: a later drop-out may have removed a planted value
    artefacts = {name: int((~v.plausible(out.loc[out["variable"] == name, "value"].to_numpy())).sum())
                 for name, v in ICU_VARIABLES.items() if v.table == "vitals"}
    return out, artefacts
