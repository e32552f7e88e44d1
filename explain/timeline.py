"""Explanations over the time of an ICU stay (issue 12): the risk of death within 48 h at every hour, each
hour's full explanation (streamed as it finishes), modality importance over the stay, the vitals panel on
the clock, and the cohort's figure 2C (mean attention and Shapley share per hour, by outcome).

The risk explained at every hour is the probability of class index 1 ("dies_within_48h"), i.e.
``ExplainSettings(target=1)``, never the predicted class. Hour t of a stay is what the model saw at t
(:meth:`neurofusion.data.timed.TimedCohortReader.at`); a stay is not scored at or after its end.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from explain.case import CaseExplanation, ExplainSettings, explain_case
from explain.importance import modality_importance, modality_names
from explain.signal import SignalExplanation, top_segments
from explain.text import NoteExplanation
from neurofusion.data.schema import Case
from neurofusion.data.timed import AGE_SUFFIX, NOTE_HEADER, vital_channels
from neurofusion.inference import Predictor
from neurofusion.ood import OODReference

__all__ = ["RISK_CLASS", "OUTCOME_GROUPS", "PAPER_FIGURE_2C", "RiskTrajectory", "HourExplanation",
           "trajectory_hours", "split_hours", "check_risk_model", "risk_trajectory", "explain_hours",
           "importance_over_time", "vitals_over_time", "SampleImportance", "sample_importance", "figure_2c_rows",
           "cohort_over_time", "hour_summary", "not_scored_message"]

RISK_CLASS = 1  # "dies_within_48h": the class whose probability is the risk
OUTCOME_GROUPS = ("died in ICU", "survived")  # how a stay ended, the groups of figure 2C
# The paper's attention per modality at the hours it names (section 7.2, figure 2C): demographics 0.43 at
# admission, vital-sign trends 0.38 at 12 h, 0.52 at 24 h and 0.58 at 36 h, nursing notes 0.25 throughout.
PAPER_FIGURE_2C: dict[float, dict[str, float]] = {
    0.0: {"demographics": 0.43, "notes": 0.25},
    12.0: {"vitals": 0.38, "notes": 0.25},
    24.0: {"vitals": 0.52, "notes": 0.25},
    36.0: {"vitals": 0.58, "notes": 0.25},
}


@dataclass
class RiskTrajectory:
    stay_id: str
    hours: np.ndarray  # (T,) hours since admission, ascending, all < stay_hours
    risk: np.ndarray  # (T,) P(death within 48 h) predicted from what was recorded by each hour
    labels: list[str]  # (T,) the label at each hour
    present: np.ndarray  # (T, M) bool, modalities present at each hour (declaration order)
    names: tuple[str, ...]  # the M modality names
    stay_hours: float  # when the stay ended
    died: bool  # ended by death (else discharge)


@dataclass
class HourExplanation:
    hour: float
    case: Case  # reader.at(stay_id, hour)
    explanation: CaseExplanation  # explain_case(..., ExplainSettings(target=1, ...))


def _stay(reader, stay_id: str) -> pd.Series:
    if not getattr(reader, "timed", False):
        raise ValueError(f"explanations over time need a time-stamped cohort (cohort.json \"task\": \"icu\"); "
                         f"{getattr(reader, 'root', reader)} is not one")
    return reader.stay(stay_id)


def trajectory_hours(reader, stay_id: str, step_h: float = 1.0) -> np.ndarray:
    """(T,) hours 0, step_h, 2 step_h, ... before the stay's end (hours at or after it are not scored)."""
    if not (isinstance(step_h, (int, float)) and step_h > 0 and math.isfinite(step_h)):
        raise ValueError(f"step_h must be a positive number of hours, got {step_h!r}")
    end = float(_stay(reader, stay_id)["stay_hours"])
    hours = np.arange(math.ceil(end / step_h) + 1) * float(step_h)
    return hours[hours < end]


def split_hours(reader, stay_id: str, hours: Sequence[float]) -> tuple[list[float], dict[float, str]]:
    """Hours -> (the ones inside the stay, in the given order; {hour: why it is not scored} for the others).
    A negative or non-finite hour is a ValueError."""
    end = float(_stay(reader, stay_id)["stay_hours"])
    inside, outside = [], {}
    for hour in hours:
        hour = float(hour)
        if not (math.isfinite(hour) and hour >= 0):
            raise ValueError(f"hours are hours since admission (>= 0), got {hour:g} for stay {stay_id}")
        if hour < end:
            inside.append(hour)
        else:
            outside[hour] = not_scored_message(end)
    return inside, outside


def _scored(reader, stay_id: str, hours: Sequence[float]) -> list[float]:
    """The hours, all inside the stay; a ValueError naming those that are not and why."""
    inside, outside = split_hours(reader, stay_id, hours)
    if outside:
        raise ValueError(f"stay {stay_id}: hours {', '.join(f'{h:g}' for h in outside)} are "
                         f"{next(iter(outside.values()))}")
    return inside


def check_risk_model(predictor: Predictor) -> None:
    """ValueError unless the model is a two-class classifier, whose class RISK_CLASS probability is the risk."""
    model = predictor.model
    if model.config.outcome != "classification" or len(model.classes) != 2:
        what = f"classes {', '.join(model.classes)}" if model.config.outcome == "classification" else "survival"
        raise ValueError(f"the risk over a stay is the probability of class {RISK_CLASS} of a two-class model "
                         f"(survives_48h, dies_within_48h); this model predicts {what}")


def risk_trajectory(predictor: Predictor, reader, stay_id: str, hours: Sequence[float] | None = None, *,
                    step_h: float = 1.0, batch_size: int = 64) -> RiskTrajectory:
    """The risk at every ``hours`` (default every ``step_h`` h of the stay) in batched predictions: each
    hour's case is what was recorded by then. Hours outside the stay are a ValueError saying why."""
    check_risk_model(predictor)
    stay = _stay(reader, stay_id)
    if hours is None:
        times = trajectory_hours(reader, stay_id, step_h)
    else:
        times = np.array(sorted(set(_scored(reader, stay_id, hours))), dtype=float)
    cases = [reader.at(stay_id, float(t)) for t in times]
    names = modality_names(predictor.model)
    risk = predictor.predict(cases, batch_size=batch_size)[1][:, RISK_CLASS] if cases else np.zeros(0)
    present = np.array([[c.value(m) is not None for m in names] for c in cases], dtype=bool).reshape(len(cases),
                                                                                                     len(names))
    return RiskTrajectory(stay_id, times, risk.astype(np.float64), [c.label for c in cases], present, names,
                          float(stay["stay_hours"]), bool(stay["died"]))


def _risk_settings(settings: ExplainSettings | None) -> ExplainSettings:
    if settings is None:
        return ExplainSettings(target=RISK_CLASS, n_steps=16)
    if settings.target is None:
        return dataclasses.replace(settings, target=RISK_CLASS)
    if settings.target != RISK_CLASS:
        raise ValueError(f"the risk over time is the probability of class {RISK_CLASS} (dies_within_48h); "
                         f"settings.target must be {RISK_CLASS} or None, got {settings.target}")
    return settings


def explain_hours(predictor: Predictor, reader, stay_id: str, hours: Sequence[float],
                  settings: ExplainSettings | None = None, *, ood: OODReference | None = None,
                  ) -> Iterator[HourExplanation]:
    """Each hour's full explanation of the risk (:func:`explain.case.explain_case` on ``reader.at``), yielded
    as soon as it is computed, in the given order. ``settings`` default ExplainSettings(target=1,
    n_steps=16). Every hour is checked before the first is explained: one outside the stay is a ValueError."""
    check_risk_model(predictor)
    settings = _risk_settings(settings)
    return _explained(predictor, reader, stay_id, _scored(reader, stay_id, hours), settings, ood)


def _explained(predictor, reader, stay_id, hours, settings, ood) -> Iterator[HourExplanation]:
    for hour in hours:
        case = reader.at(stay_id, hour)
        yield HourExplanation(hour, case, explain_case(predictor, case, settings, ood=ood))


def importance_over_time(explained: Sequence[HourExplanation]) -> pd.DataFrame:
    """One row per (hour, declared modality): hour, modality, title, attention (attention received from the
    present modalities, 0 when absent; NaN for an architecture without cross-modal attention), shapley
    (exact Shapley value of the risk), share (|shapley| / sum of |shapley| at that hour; NaN when every
    value is 0), present."""
    rows = []
    for item in explained:
        importance = item.explanation.importance
        titles = {m.name: m.title for m in item.case.modalities}
        shapley = importance.shapley[0]
        total = np.abs(shapley).sum()
        for j, name in enumerate(importance.names):
            rows.append({"hour": float(item.hour), "modality": name, "title": titles.get(name, name),
                         "attention": math.nan if importance.attention is None else float(importance.attention[0, j]),
                         "shapley": float(shapley[j]),
                         "share": float(abs(shapley[j]) / total) if total > 0 else math.nan,
                         "present": bool(importance.present[0, j])})
    return pd.DataFrame(rows, columns=["hour", "modality", "title", "attention", "shapley", "share", "present"])


def vitals_over_time(explanation: CaseExplanation, reader, stay_id: str, hour: float) -> pd.DataFrame:
    """The vitals panel of one hour's explanation on the clock: one row per 5-minute grid step at or after
    admission and per vital sign: time (hours since admission, the step's end; the step holds the
    measurements in the 5 minutes up to it), variable, attribution (the signed attribution of the variable's
    value channel plus its measured-mask channel at that step), measured (the step holds a measurement),
    temporal_attention (the encoder's weight of the attention window holding the step; a window spans
    several steps). Empty when the case had no vital signs by that hour."""
    columns = ["time", "variable", "attribution", "measured", "temporal_attention"]
    name = next((n for n, kind in explanation.kinds.items() if kind == "signal"), None)
    panel = explanation.panels.get(name) if name is not None else None
    if panel is None:
        return pd.DataFrame(columns=columns)
    if not isinstance(panel, SignalExplanation):
        raise ValueError(f"the {name} panel is not a signal explanation (got {type(panel).__name__})")
    variables = list(reader.vital_variables)
    channels = vital_channels(variables)
    missing = [c for c in channels if c not in panel.leads]
    if missing:
        raise ValueError(f"the model's vitals channels ({', '.join(panel.leads)}) lack {', '.join(missing)} of "
                         f"cohort {reader.root}: explain with a checkpoint trained on this cohort's variables")
    steps = panel.attributions.shape[1]
    step_h = 1 / (panel.fs * 3600)
    times = float(hour) - (steps - 1 - np.arange(steps)) * step_h  # (T,) each step's end, the last at the hour
    window = np.minimum(np.arange(steps) * len(panel.attention) // steps, len(panel.attention) - 1)
    signal = reader.vitals_signal(stay_id, float(hour)).data  # (2V, T): the measured masks are its last V rows
    keep = times >= -1e-9
    frames = []
    for j, variable in enumerate(variables):
        value_row, mask_row = panel.leads.index(channels[j]), panel.leads.index(channels[len(variables) + j])
        frames.append(pd.DataFrame({
            "time": times[keep], "variable": variable,
            "attribution": (panel.attributions[value_row] + panel.attributions[mask_row])[keep],
            "measured": signal[len(variables) + j][keep] > 0.5,
            "temporal_attention": panel.attention[window][keep]}))
    return pd.concat(frames, ignore_index=True)[columns].sort_values(["time", "variable"], kind="stable",
                                                                   ignore_index=True)


@dataclass
class SampleImportance:
    """Per sample (N: a stay as of a prediction hour) of a time-stamped cohort, what figure 2C and the risk
    metrics by hour are computed from: :func:`sample_importance` computes it with the model, an explanation
    store (:meth:`explain.store.ExplanationStore.sample_importance`) reads it back. Rows in ``case_ids`` order."""

    case_ids: list[str]  # (N,) sample ids ("<stay>@<hour>h")
    stay_ids: np.ndarray  # (N,) str
    hours: np.ndarray  # (N,) float, the prediction hour
    label: np.ndarray  # (N,) int class index of the label at that hour (RISK_CLASS = dies within 48 h; -1 none)
    risk: np.ndarray  # (N,) P(class RISK_CLASS) with everything recorded by the hour
    attention: np.ndarray  # (N, M) attention received (0 when absent; NaN without cross-modal attention)
    shapley: np.ndarray  # (N, M) exact Shapley values of the risk (0 when absent)
    present: np.ndarray  # (N, M) bool
    names: tuple[str, ...]  # the M modality names, declaration order


def _samples_of(reader, split: str, hours: Sequence[float]) -> pd.DataFrame:
    """The rows of ``reader.table`` of ``split`` ("all": every split) at ``hours``; ValueError when none."""
    chosen = reader.table["hour"].isin(hours)
    if split != "all":
        chosen &= reader.table["split"] == split
    table = reader.table[chosen]
    if table.empty:
        raise ValueError(f"no samples of split {split!r} at hours {', '.join(f'{h:g}' for h in hours)} in "
                         f"cohort {reader.root}")
    return table


def sample_importance(predictor: Predictor, reader, split: str = "test", hours: Sequence[float] | None = None, *,
                      batch_size: int = 64) -> SampleImportance:
    """Every sample of ``split`` ("all": every split) at ``hours`` (default the cohort's prediction hours), in
    the cohort table's order: its risk, the attention each modality receives and the exact Shapley values of the
    risk over modality subsets (no Integrated Gradients), batched."""
    check_risk_model(predictor)
    if not getattr(reader, "timed", False):
        raise ValueError(f"figure 2C needs a time-stamped cohort; {getattr(reader, 'root', reader)} is not one")
    hours = tuple(reader.hours) if hours is None else tuple(float(h) for h in hours)
    table = _samples_of(reader, split, hours)
    model = predictor.model
    names = modality_names(model)
    cases = [reader.at(stay, float(t)) for stay, t in zip(table["stay_id"], table["hour"])]
    attention, shapley, present, risk, labels = [], [], [], [], []
    for batch in predictor.batches(cases, batch_size):
        target = torch.full((batch.present.shape[0],), RISK_CLASS, dtype=torch.long, device=batch.present.device)
        result = modality_importance(model, batch, target)
        shapley.append(result.shapley)
        present.append(result.present)
        risk.append(result.probability_full)
        labels.append(batch.labels.cpu().numpy())
        attention.append(np.full(result.shapley.shape, np.nan) if result.attention is None else result.attention)
    return SampleImportance(table["case_id"].tolist(), table["stay_id"].to_numpy(dtype=object),
                            table["hour"].to_numpy(dtype=float), np.concatenate(labels).astype(int),
                            np.concatenate(risk).astype(np.float64), np.concatenate(attention).astype(np.float64),
                            np.concatenate(shapley).astype(np.float64), np.concatenate(present).astype(bool), names)


def figure_2c_rows(samples: SampleImportance, reader, hours: Sequence[float] | None = None) -> pd.DataFrame:
    """Figure 2C's rows from per-sample arrays (:func:`cohort_over_time` documents them): one row per (hour,
    outcome group, modality), the outcome read from ``reader.stays`` (how each sample's stay ended), the means
    over the samples at each of ``hours`` (default the cohort's prediction hours; an hour without samples has
    n 0 and NaN means)."""
    hours = tuple(reader.hours) if hours is None else tuple(float(h) for h in hours)
    names = samples.names
    attention, shapley, present = samples.attention.copy(), samples.shapley, samples.present
    explained = present.any(1)
    attention[~explained] = np.nan  # nothing recorded: no attention to share out
    total = np.abs(shapley).sum(1, keepdims=True)
    share = np.divide(np.abs(shapley), total, out=np.full(shapley.shape, np.nan), where=total > 0)
    died = reader.stays.loc[list(samples.stay_ids), "died"].to_numpy().astype(bool)
    titles = {m.name: m.title for m in reader.modalities}
    rows = []
    for hour in sorted(set(hours)):
        for group, dead in zip(OUTCOME_GROUPS, (True, False)):
            chosen = (samples.hours == hour) & (died == dead)
            for j, name in enumerate(names):
                rows.append({"hour": hour, "outcome": group, "modality": name, "title": titles.get(name, name),
                             "attention": _mean(attention[chosen, j]), "share": _mean(share[chosen, j]),
                             "n": int(chosen.sum()), "n_present": int(present[chosen, j].sum()),
                             "n_explained": int((chosen & explained).sum())})
    return pd.DataFrame(rows, columns=["hour", "outcome", "modality", "title", "attention", "share", "n", "n_present",
                                       "n_explained"])


def cohort_over_time(predictor: Predictor, reader, split: str = "test", hours: Sequence[float] | None = None, *,
                     batch_size: int = 64) -> pd.DataFrame:
    """Figure 2C of ``split`` ("all": every split): one row per (hour, outcome group, modality) with hour,
    outcome ("died in ICU" / "survived": how the stay ended), modality, title, attention (mean attention
    received; a modality a sample lacks counts 0, so the modalities' means sum to 1 at an hour), share (mean
    |Shapley| share of the risk, likewise), n (samples), n_present (samples with the modality) and n_explained
    (samples with anything recorded, over which the means are taken: one with nothing has no attention to share
    out). Exact Shapley values over modality subsets only (no Integrated Gradients). Hours default to the
    cohort's prediction hours. :func:`sample_importance`, then :func:`figure_2c_rows`."""
    return figure_2c_rows(sample_importance(predictor, reader, split, hours, batch_size=batch_size), reader, hours)


def _mean(values: np.ndarray) -> float:
    """The mean of the defined values; NaN when there are none."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else math.nan


def not_scored_message(stay_hours: float) -> str:
    """Why an hour at or after the stay's end has no prediction."""
    return f"not scored (the stay ended at {stay_hours:.1f} h)"


def hour_summary(item: HourExplanation, *, top: int = 5, period_h: float = 2.0) -> dict:
    """A compact, JSON-ready account of one hour: the risk, what was recorded, the cross-modal attention
    (head-averaged, {query: {key: weight}}), the attention received, the exact Shapley values of the risk
    and their shares, and per modality its strongest attributions: vital signs (the ``top`` variables by
    |attribution| and the ``period_h``-hour period holding the most), tabular values (labs with their age,
    demographics) and note phrases (with the hour each note was written)."""
    explanation, case = item.explanation, item.case
    importance = explanation.importance
    names = list(importance.names)
    shapley = importance.shapley[0]
    total = float(np.abs(shapley).sum())
    attention = None
    if explanation.cross_attention is not None:
        mean = explanation.cross_attention.mean(0)
        attention = {q: {k: float(mean[i, j]) for j, k in enumerate(names)} for i, q in enumerate(names)}
    summary = {
        "hour": float(item.hour), "sample_id": case.case_id, "label": case.label,
        "risk": float(explanation.probabilities[RISK_CLASS]),
        "risk_nothing_recorded": float(importance.probability_none[0]),
        "present": dict(explanation.present),
        "cross_attention": attention,
        "attention_received": None if importance.attention is None else
        {m: float(importance.attention[0, j]) for j, m in enumerate(names)},
        "shapley": {m: float(shapley[j]) for j, m in enumerate(names)},
        "share": {m: float(abs(shapley[j]) / total) if total > 0 else None for j, m in enumerate(names)},
        "attributions": {},
    }
    for name, panel in explanation.panels.items():
        if isinstance(panel, SignalExplanation):
            summary["attributions"][name] = _vitals_summary(panel, item.hour, top, period_h)
        elif isinstance(panel, NoteExplanation):
            summary["attributions"][name] = _note_summary(panel, str(case.value(name)), item.hour, top)
        elif isinstance(panel, pd.DataFrame):
            summary["attributions"][name] = _tabular_summary(panel, top)
    return summary


def _vitals_summary(panel: SignalExplanation, hour: float, top: int, period_h: float) -> dict:
    """Per variable: the value and measured-mask channels together; the top variables by |attribution|
    share and the period_h-hour window of the grid with the most |attribution|, on the clock."""
    leads = list(panel.leads)
    values = leads[:len(leads) // 2]
    if tuple(leads) != vital_channels(values):
        raise ValueError(f"a vitals signal has each variable's values, then each one's measured mask "
                         f"({', '.join(vital_channels(values))}); this one has {', '.join(leads)}")
    per_step = {v: panel.attributions[j] + panel.attributions[len(values) + j]
                for j, v in enumerate(values)}  # variable -> (T,)
    magnitude = {v: float(np.abs(a).sum()) for v, a in per_step.items()}
    total = sum(magnitude.values())
    ranked = sorted(values, key=lambda v: -magnitude[v])[:top]
    steps = panel.attributions.shape[1]
    window_h = steps / panel.fs / 3600
    curve = np.abs(np.stack(list(per_step.values()))).sum(0) if per_step else np.zeros(steps)
    period = top_segments(curve, panel.fs, 1, period_h * 3600)[0]
    start = hour - window_h + period.start_s / 3600
    return {"top_variables": [{"variable": v, "attribution": float(per_step[v].sum()),
                               "share": magnitude[v] / total if total > 0 else None} for v in ranked],
            "top_period": {"start_h": max(0.0, start), "end_h": hour - window_h + period.end_s / 3600,
                           "share": float(period.score / curve.sum()) if curve.sum() > 0 else None}}


def _note_summary(panel: NoteExplanation, text: str, hour: float, top: int) -> dict:
    """The top phrases by |score|, each with the hour its note was written (from the note's header); a
    phrase inside a header ("[3.0 h before]") is the note's age, not its content, and is left out."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]  # offset of each note (one per line)
    written, headers = [], []
    for start in starts:
        header = NOTE_HEADER.match(text, start)
        written.append(None if header is None else float(hour) - float(header.group(1)))
        headers.append((start, start) if header is None else header.span())
    content = [p for p in panel.phrases if not any(a <= p.start and p.end <= b for a, b in headers)]
    phrases = sorted(content, key=lambda p: -abs(p.score))[:top]
    return {"phrases": [{"text": p.text, "score": float(p.score),
                         "written_h": written[int(np.searchsorted(starts, p.start, side="right")) - 1]}
                        for p in phrases],
            "truncated": bool(panel.truncated)}


def _tabular_summary(panel: pd.DataFrame, top: int) -> dict:
    """The top measured features by |score|; a lab's age feature (``<lab>_age_h``) is folded into its lab:
    the lab's score is the sum of both and its age is given beside its value."""
    rows = {r["name"]: r for r in panel.to_dict(orient="records")}
    items = []
    for name, row in rows.items():
        if name.endswith(AGE_SUFFIX) and name.removesuffix(AGE_SUFFIX) in rows or not row["measured"]:
            continue
        age = rows.get(f"{name}{AGE_SUFFIX}")
        score = float(row["score"]) + (float(age["score"]) if age is not None and age["measured"] else 0.0)
        items.append({"name": name, "value": row["value"], "unit": row["unit"] or None,
                      "age_h": float(age["value"]) if age is not None and age["measured"] else None,
                      "outside_range": bool(row["outside_range"]), "score": score})
    return {"top": sorted(items, key=lambda r: -abs(r["score"]))[:top]}
