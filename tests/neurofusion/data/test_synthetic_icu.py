"""The synthetic ICU cohort (neurofusion.data.synthetic.icu): determinism and per-stay regeneration, the
written long tables passing the events validator, planted artefacts counted, the stated outcome model's
mortality and stay lengths, vitals and labs that follow the severity, and the as-of-hour view of a written
stay never seeing later rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neurofusion.data.events import last_observation, read_events, read_notes, read_variables, regular_grid
from neurofusion.data.synthetic.icu import (
    COHORT_COLUMNS, DX_EFFECT, ICU_LABS, ICU_MODALITIES, ICU_VARIABLES, ICU_VITALS, MAX_STAY_H, TRUTH_COLUMNS,
    StayPlan, draw_cohort, draw_severity, hazard, plan_stay, prior_severity, render_labs, render_vitals,
    synthesize_stay, write_icu_cohort, write_variables,
)
from neurofusion.data.synthetic.icu.trajectory import MIN_STAY_H, SURVIVES_H

N, SEED = 40, 11


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("icu")
    stays = write_icu_cohort(folder, N, SEED)
    table = pd.read_csv(folder / "cohort.csv", dtype={"case_id": str})
    lengths = dict(zip(table["case_id"], table["stay_hours"].astype(float)))
    variables = read_variables(folder / "variables.csv")
    return {"folder": folder, "stays": stays, "table": table, "lengths": lengths, "variables": variables,
            "vitals": read_events(folder / "vitals.csv", variables, lengths, "vitals"),
            "labs": read_events(folder / "labs.csv", variables, lengths, "labs"),
            "notes": read_notes(folder / "notes.csv", lengths)}


def test_variables_csv_round_trips_with_mimic_item_ids(tmp_path):
    read = read_variables(write_variables(tmp_path / "variables.csv"))
    assert read == ICU_VARIABLES and list(read) == [v.name for v in ICU_VITALS + ICU_LABS]
    ids = {name: v.mimic_itemids for name, v in read.items()}
    assert ids["heart_rate"] == (220045,) and ids["spo2"] == (220277,) and ids["abp_mean"] == (220052,)
    assert ids["lactate"] == (50813,) and ids["wbc"] == (51301,) and ids["bilirubin_total"] == (50885,)
    assert read["temperature"].unit == "°C" and read["creatinine"].unit == "mg/dL"
    with pytest.raises(ValueError, match="unique"):
        write_variables(tmp_path / "twice.csv", ICU_VITALS[:2] + ICU_VITALS[:1])


def test_a_cohort_regenerates_byte_for_byte_and_each_stay_alone(tmp_path, cohort):
    again = write_icu_cohort(tmp_path, N, SEED)
    for name in ("cohort.csv", "vitals.csv", "labs.csv", "notes.csv", "ground_truth.csv", "variables.csv"):
        assert (tmp_path / name).read_bytes() == (cohort["folder"] / name).read_bytes(), name
    alone = synthesize_stay(draw_cohort(N, SEED)[17], SEED)  # one stay without rendering the others
    whole = cohort["stays"][17]
    pd.testing.assert_frame_equal(alone.vitals, whole.vitals)
    pd.testing.assert_frame_equal(alone.labs, whole.labs)
    assert alone.notes == whole.notes and alone.truth == whole.truth and again[17].truth == whole.truth
    other = synthesize_stay(draw_cohort(N, SEED + 1)[17], SEED + 1)
    assert other.truth != whole.truth


def test_the_written_tables_are_valid_and_complete(cohort):
    table, stays = cohort["table"], cohort["stays"]
    assert tuple(table.columns) == COHORT_COLUMNS and table["case_id"].tolist() == [s.plan.case_id for s in stays]
    truth = pd.read_csv(cohort["folder"] / "ground_truth.csv")
    assert tuple(truth.columns) == TRUTH_COLUMNS and len(truth) == N
    for s in stays:
        for kind in ("vitals", "labs"):
            rows = cohort[kind].of(s.plan.case_id)
            assert len(rows) == len(getattr(s, kind))
            assert (len(rows) > 0) == s.plan.present[kind]
            assert rows["time"].between(0, s.plan.stay_hours).all()
        notes = cohort["notes"][cohort["notes"]["case_id"] == s.plan.case_id]
        assert (len(notes) > 0) == s.plan.present["notes"]
        row = table[table["case_id"] == s.plan.case_id].iloc[0]
        assert pd.isna(row["age"]) != s.plan.present["demographics"]
    assert {"sepsis", "cardiogenic_shock", "respiratory_failure"} >= set(table["diagnosis"].dropna())
    for kind in ("vitals", "labs", "notes"):  # as written: stays in cohort order, each stay's rows in time order
        raw = pd.read_csv(cohort["folder"] / f"{kind}.csv", dtype={"case_id": str})
        assert raw["case_id"].drop_duplicates().tolist() == [c for c in table["case_id"] if c in set(raw["case_id"])]
        assert (raw.groupby("case_id", sort=False)["time"].diff().dropna() >= 0).all(), kind


def test_artefacts_exist_and_read_events_counts_exactly_the_planted_ones(cohort):
    counted = cohort["vitals"].artefacts
    planted = sum(int(s.truth["vitals_artefacts"]) for s in cohort["stays"])
    assert sum(counted.values()) == planted > 0
    assert counted["spo2"] > 0 and counted["abp_systolic"] > 0  # probe-off readings and arterial-line flushes
    assert counted["heart_rate"] == counted["temperature"] == 0 and sum(cohort["labs"].artefacts.values()) == 0
    rows = cohort["vitals"].rows
    assert (rows.loc[rows["variable"] == "spo2", "value"] < 30).any()
    assert (rows.loc[rows["variable"] == "abp_systolic", "value"] > 270).any()
    # artefacts are a small share of the rows
    assert sum(counted.values()) < 0.01 * len(rows)


def test_mortality_stay_lengths_and_missingness_follow_the_stated_model():
    plans = [plan_stay(d, 3) for d in draw_cohort(1500, 3)]
    died = np.array([p.died for p in plans])
    hours = np.array([p.stay_hours for p in plans])
    assert 0.10 <= died.mean() <= 0.20
    assert hours[~died].min() >= MIN_STAY_H and hours.max() <= MAX_STAY_H and 40 <= np.median(hours) <= 80
    assert hours[died].min() >= SURVIVES_H  # every stay has its first hours of data
    course = np.array([p.course for p in plans])
    assert died[course == "deteriorating"].mean() > 4 * died[course == "stable"].mean() > 0
    assert died[course == "recovering"].mean() < died[course == "stable"].mean()
    complete = np.mean([all(p.present.values()) for p in plans])
    assert abs(complete - 0.72) < 0.04
    # notes are the most often missing modality
    missing = {m: np.mean([not p.present[m] for p in plans]) for m in ICU_MODALITIES}
    assert max(missing, key=missing.get) == "notes"


def test_the_label_is_death_within_48_hours_inside_the_stay():
    plan = next(p for p in (plan_stay(d, 3) for d in draw_cohort(200, 3)) if p.died and p.stay_hours > 60)
    assert plan.died_within(plan.stay_hours - 47.0) is True
    assert plan.died_within(plan.stay_hours - 49.0) is False
    assert plan.died_within(plan.stay_hours + 1.0) is None and plan.died_within(-1.0) is None


def test_the_hazard_rises_with_severity_and_the_prior_with_age():
    assert np.all(np.diff(hazard(np.linspace(0, 1, 11), 65.0)) > 0)
    assert hazard(np.array([1.0]), 65.0)[0] == pytest.approx(0.07)
    assert prior_severity("sepsis", 85, "emergency") > prior_severity("sepsis", 45, "emergency")
    assert prior_severity("cardiogenic_shock", 65, "elective") < prior_severity("cardiogenic_shock", 65, "emergency")
    with pytest.raises(ValueError, match="diagnosis"):
        prior_severity("flu", 65, "emergency")
    with pytest.raises(ValueError, match="course"):
        draw_severity(np.random.default_rng(0), 0.5, "improving")
    with pytest.raises(ValueError, match="at least 1"):
        draw_cohort(0, 1)


def _ramp_plan(diagnosis: str) -> StayPlan:
    """A hand-made stay: severity 0.2 for 24 h, rising to 0.9 by 48 h, then 0.9; 72 h long."""
    hours = np.arange(MAX_STAY_H + 1, dtype=float)
    severity = np.interp(hours, [0, 24, 48, MAX_STAY_H], [0.2, 0.2, 0.9, 0.9])
    return StayPlan(0, "ICU-X", "train", "site_b", diagnosis, "deteriorating", 65, "F", "emergency", 8.0, 24.0,
                    severity, 0.45, 72.0, False, 31.0, {m: True for m in ICU_MODALITIES})


def _mean(rows: pd.DataFrame, variable: str, start: float, end: float) -> float:
    pick = rows[(rows["variable"] == variable) & rows["time"].between(start, end)]
    return float(pick["value"].mean())


def test_vitals_and_labs_follow_the_severity_by_diagnosis():
    rise = 0.7  # severity 0.2 -> 0.9
    sepsis = _ramp_plan("sepsis")
    vitals = render_vitals(np.random.default_rng(0), sepsis).rows
    change = {v: _mean(vitals, v, 52, 72) - _mean(vitals, v, 0, 22) for v in ("heart_rate", "nibp_mean", "temperature")}
    effect = DX_EFFECT["sepsis"]
    assert change["heart_rate"] == pytest.approx(effect["hr"] * rise, abs=10)  # tachycardia
    assert change["nibp_mean"] == pytest.approx(effect["map"] * rise, abs=9)  # hypotension
    assert change["temperature"] == pytest.approx(effect["temp"] * rise, abs=0.5)  # fever
    labs = render_labs(np.random.default_rng(0), sepsis)
    assert _mean(labs, "lactate", 50, 72) - _mean(labs, "lactate", 0, 22) > 3.0
    assert _mean(labs, "wbc", 50, 72) - _mean(labs, "wbc", 0, 22) > 6.0
    respiratory = render_vitals(np.random.default_rng(1), _ramp_plan("respiratory_failure")).rows
    plausible = respiratory[respiratory["value"] > 50]  # leave probe-off readings out of the mean
    assert _mean(plausible, "spo2", 52, 72) - _mean(plausible, "spo2", 0, 22) == pytest.approx(-13 * rise, abs=3)
    assert _mean(respiratory, "resp_rate", 52, 72) - _mean(respiratory, "resp_rate", 0, 22) == pytest.approx(
        20 * rise, abs=4)


def test_a_deteriorating_stays_heart_rate_and_lactate_trend_up_unlike_a_recovering_ones():
    stays = [synthesize_stay(d, 5) for d in draw_cohort(80, 5)]
    change: dict[str, list[tuple[float, float]]] = {"deteriorating": [], "recovering": []}
    for s in stays:
        p = s.plan
        if p.course not in change or not (p.present["vitals"] and p.present["labs"]) or p.onset_hour is None:
            continue
        turn = float(np.argmax(p.severity[: int(p.stay_hours) + 1])) if p.course == "deteriorating" else min(
            p.onset_hour + 30.0, p.stay_hours)
        onset = p.onset_hour
        hr = _mean(s.vitals, "heart_rate", turn - 6, turn) - _mean(s.vitals, "heart_rate", onset - 6, onset)
        lactate = s.labs[s.labs["variable"] == "lactate"]
        before, after = lactate[lactate["time"] <= p.onset_hour], lactate[lactate["time"] <= turn]
        if np.isfinite(hr) and len(before) and len(after):
            change[p.course].append((hr, after["value"].iloc[-1] - before["value"].iloc[-1]))
    worse, better = np.array(change["deteriorating"]), np.array(change["recovering"])
    assert len(worse) >= 5 and len(better) >= 10
    assert worse[:, 0].mean() > 8.0 > -4.0 > better[:, 0].mean()  # bpm
    assert worse[:, 1].mean() > 0.5 > 0.0 > better[:, 1].mean()  # mmol/L


def test_the_ground_truth_says_when_each_modality_shows_the_course(cohort):
    truth = pd.read_csv(cohort["folder"] / "ground_truth.csv", dtype={"case_id": str})
    notes, labs = cohort["notes"], cohort["labs"]
    for _, row in truth.iterrows():
        if row["course"] == "stable":
            assert pd.isna(row["trend_hour"]) and pd.isna(row["labs_signal_from_h"])
        if pd.notna(row["labs_signal_from_h"]):
            times = labs.of(row["case_id"])["time"].round(4)
            assert row["labs_signal_from_h"] >= row["trend_hour"] and (times == row["labs_signal_from_h"]).any()
        if pd.notna(row["notes_signal_from_h"]):
            times = notes.loc[notes["case_id"] == row["case_id"], "time"]
            assert row["notes_signal_from_h"] >= row["onset_hour"]
            assert np.isclose(times, row["notes_signal_from_h"]).any()
        assert len(row["severity_hourly"].split()) == int(np.floor(row["stay_hours"])) + 1
    assert truth["notes_signal_from_h"].notna().sum() >= 5


def test_the_as_of_hour_view_of_a_written_stay_never_sees_later_rows(cohort):
    stay = next(s for s in cohort["stays"] if s.plan.present["vitals"] and s.plan.present["labs"]
                and s.plan.stay_hours > 40)
    rows = cohort["vitals"].of(stay.plan.case_id)
    labs = cohort["labs"].of(stay.plan.case_id)
    vitals = [v.name for v in ICU_VITALS]
    for t in (0.5, 6.0, 24.0, 36.0):
        changed = rows.assign(value=np.where(rows["time"] > t, -999.0, rows["value"]))
        a, b = regular_grid(rows, vitals, t, window_h=12.0), regular_grid(changed, vitals, t, window_h=12.0)
        assert a.values.tobytes() == b.values.tobytes() and np.array_equal(a.measured, b.measured)
        assert not (a.values == -999.0).any()
        lab_changed = labs.assign(value=np.where(labs["time"] > t, -1.0, labs["value"]))
        np.testing.assert_equal(last_observation(labs, [v.name for v in ICU_LABS], t),
                                last_observation(lab_changed, [v.name for v in ICU_LABS], t))
    grid = regular_grid(rows, vitals, 24.0, window_h=24.0)
    heart = grid.measured[vitals.index("heart_rate")]
    assert heart.mean() > 0.8  # monitor values every 5 minutes, gaps aside


def test_fifty_stays_stay_small_enough_to_generate_in_seconds(tmp_path):
    # a bound on the work, not a timing: about 1,500 vital rows per stay-day is what 5-minute sampling of
    # three monitor channels, an arterial line and intermittent cuff and temperature readings makes
    stays = write_icu_cohort(tmp_path, 50, 2)
    days = sum(s.plan.stay_hours for s in stays) / 24
    rows = sum(len(s.vitals) for s in stays)
    assert 1000 * days < rows < 2400 * days
    assert sum(len(s.labs) for s in stays) < 60 * days and sum(len(s.notes) for s in stays) < 6 * days
