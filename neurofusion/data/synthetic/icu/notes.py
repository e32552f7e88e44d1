"""Nursing notes of a synthetic ICU stay as (time, text) rows: an admission note within the first hour, a
note at each shift change (07:00 and 19:00 by the ward clock), and an event note 1-4 h after the course
shows in the severity. Each note reads the severity now and its change since the previous note (since
admission for the first), as the nurse compares with the last assessment: a change of at least NOTE_TREND
(the same size as trajectory.TREND_SHOWS) is written with trend phrases for the diagnosis ("increasing pressor
requirement", "weaned to 2 L nasal cannula"), otherwise as stable; the level decides support phrases
(pressor dose, oxygen device) and negations ("no pressor requirement", "no signs of bleeding") fill in.
``describes`` records which course, if any, a note's words describe (the ground truth of the text).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurofusion.data.synthetic.icu.trajectory import TREND_SHOWS, StayPlan

NOTE_TREND = TREND_SHOWS
SHIFT_CLOCK = (7.0, 19.0)
_WORSE = {
    "sepsis": ["increasing pressor requirement", "febrile to {temp} C", "tachycardic to {hr}",
               "urine output decreasing", "rigors noted"],
    "cardiogenic_shock": ["increasing pressor requirement", "cool mottled peripheries", "urine output decreasing",
                          "new crackles at both bases", "tachycardic to {hr}"],
    "respiratory_failure": ["increasing oxygen requirement", "increased work of breathing",
                            "desaturating to {spo2} % on current settings", "using accessory muscles"],
}
_BETTER = {
    "sepsis": ["norepinephrine weaned", "afebrile this shift", "urine output improving", "tolerating enteral feed"],
    "cardiogenic_shock": ["pressor requirement decreasing", "peripheries warm and well perfused",
                          "urine output improving", "mobilised to chair"],
    "respiratory_failure": ["weaned to 2 L nasal cannula", "work of breathing settled", "saturating well on room air",
                            "coughing effectively"],
}
_STABLE = ["hemodynamically stable", "no acute events this shift", "remains on current settings",
           "observations within targets"]
_NEGATIONS = ["no signs of bleeding", "denies chest pain", "no new pressure injury", "no seizure activity",
              "no signs of line infection"]


@dataclass(frozen=True)
class Note:
    """One note: ``time`` in hours since admission, ``text``, and ``describes`` ('deteriorating',
    'recovering' or '' when its words describe no change)."""

    time: float
    text: str
    describes: str


def note_times(rng: np.random.Generator, plan: StayPlan) -> np.ndarray:
    """(K,) sorted note times inside the stay (see the module docstring)."""
    times = [rng.uniform(0.3, 1.0)]
    days = int(plan.stay_hours // 24) + 2
    for clock in SHIFT_CLOCK:
        first = (clock - plan.admit_clock) % 24.0
        times += list(first + 24.0 * np.arange(days) + rng.uniform(-0.3, 0.3, size=days))
    if plan.trend_hour is not None:
        times.append(plan.trend_hour + rng.uniform(1.0, 4.0))
    times_arr = np.sort(np.asarray(times))
    return times_arr[(times_arr > 0.0) & (times_arr < plan.stay_hours)]


def write_notes(rng: np.random.Generator, plan: StayPlan) -> list[Note]:
    """The stay's notes in time order."""
    times = note_times(rng, plan)
    return [_note(rng, plan, float(t), float(times[k - 1]) if k else 0.0) for k, t in enumerate(times)]


def _note(rng: np.random.Generator, plan: StayPlan, t: float, previous: float) -> Note:
    now, before = plan.severity_at(np.array([t, previous]))
    change = now - before
    dx = plan.diagnosis
    numbers = {"temp": f"{38.0 + 2.0 * now:.1f}", "hr": f"{int(90 + 50 * now)}", "spo2": f"{int(96 - 12 * now)}"}
    if change >= NOTE_TREND:
        picked, describes = _pick(rng, _fitting(_WORSE[dx], now), 2), "deteriorating"
    elif change <= -NOTE_TREND:
        picked, describes = _pick(rng, _fitting(_BETTER[dx], now), 2), "recovering"
    else:
        picked, describes = _pick(rng, _STABLE, 1), ""
    phrases = [p.format(**numbers) for p in picked]
    if dx != "respiratory_failure":
        phrases.append(f"on norepinephrine {0.05 + 0.5 * (now - 0.55):.2f} mcg/kg/min" if now > 0.55
                       else "no pressor requirement")
    else:
        phrases.append("on high-flow nasal cannula, FiO2 {:d} %".format(int(40 + 60 * (now - 0.5))) if now > 0.5
                       else "on 2 L nasal cannula" if now > 0.3 else "on room air")
    phrases += _pick(rng, _NEGATIONS, int(rng.integers(1, 3)))
    text = "; ".join(phrases)
    return Note(t, text[0].upper() + text[1:] + ".", describes)


def _fitting(options: list[str], now: float) -> list[str]:
    """The phrases that agree with the support the note states at severity ``now`` (no "increasing pressor
    requirement" beside "no pressor requirement", no "room air" beside high-flow oxygen)."""
    def fits(phrase: str) -> bool:
        if "increasing pressor" in phrase:
            return now > 0.55
        if "norepinephrine weaned" in phrase or "pressor requirement decreasing" in phrase:
            return now > 0.45
        if "2 L nasal cannula" in phrase or "room air" in phrase:
            return now <= 0.5
        return True
    return [p for p in options if fits(p)]


def _pick(rng: np.random.Generator, options: list[str], k: int) -> list[str]:
    return [options[j] for j in sorted(rng.choice(len(options), size=min(k, len(options)), replace=False))]
