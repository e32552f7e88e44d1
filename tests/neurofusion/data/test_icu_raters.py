"""Simulated clinician rankings of the synthetic ICU cohort (neurofusion.data.synthetic.icu.raters): the stated
evidence formula on hand-made ground-truth rows, sample ids only for hours inside each stay, missing and
not-yet-recorded modalities never ranked, demographics first early and vitals first late, rater agreement
falling with the perception noise, the default raters as consistent as the assumed experts, determinism and per-sample regeneration, and the written file read back
by the annotations reader (also against a stand-in cohort of samples)."""

from __future__ import annotations

import gzip
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from neurofusion.data.annotations import RankingErrors, read_rankings
from neurofusion.data.synthetic.icu import ICU_MODALITIES, write_icu_cohort
from neurofusion.data.synthetic.icu.raters import (
    ICU_RATERS, evidence_table, first_recorded, icu_evidence, simulate_icu_rankings, write_icu_rankings,
)
from neurofusion.data.synthetic.raters import TARGET_TAU, RaterSpec, mean_pairwise_tau

N, SEED, RATER_SEED = 60, 5, 21
HOURS = (0, 6, 12, 24, 36, 48)
STRENGTHS = [f"strength_{m}" for m in ICU_MODALITIES]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("icu_raters")
    stays = write_icu_cohort(folder, N, SEED)
    truth = pd.read_csv(folder / "ground_truth.csv", dtype={"case_id": str})
    written = write_icu_rankings(folder, truth, HOURS, RATER_SEED)
    return {"folder": folder, "stays": stays, "truth": truth, "written": written,
            "recorded": first_recorded(folder)}


def _row(**values: object) -> dict[str, object]:
    row: dict[str, object] = {"case_id": "ICU-00001", "stay_hours": 80.0, "missing_modalities": "",
                              "vitals_signal_from_h": None, "labs_signal_from_h": None, "notes_signal_from_h": None,
                              "demographics_signal_from_h": 0.0}
    row.update(values)
    return row


def _hours_of(case_ids: pd.Series) -> np.ndarray:
    return case_ids.str.rsplit("@", n=1).str[1].str.rstrip("h").astype(float).to_numpy()


def _first_shares(rankings: pd.DataFrame, hour: float) -> dict[str, float]:
    at = rankings[_hours_of(rankings["case_id"]) == hour]
    return {m: float((at[m] == 1).fillna(False).astype(bool).mean()) for m in ICU_MODALITIES}


def test_evidence_follows_the_stated_formula():
    stable = icu_evidence(_row(), 0.0)
    assert stable == {"vitals": 0.0, "labs": 0.0, "notes": 0.0, "demographics": pytest.approx(0.8)}
    at24 = icu_evidence(_row(), 24.0)
    assert at24["vitals"] == pytest.approx(0.45 * (1 - math.exp(-2)))
    assert at24["demographics"] == pytest.approx(0.2 + 0.6 * math.exp(-2))
    assert at24["vitals"] > at24["demographics"] > at24["labs"] > at24["notes"]  # a stable course at one day
    at48 = icu_evidence(_row(), 48.0)
    assert at48["vitals"] > at48["labs"] > at48["notes"] > at48["demographics"]  # ... and at two
    shown = _row(vitals_signal_from_h=10.0, labs_signal_from_h=float("nan"))  # NaN as read from the CSV
    before, at, later, much_later = (icu_evidence(shown, t)["vitals"] for t in (9.99, 10.0, 22.0, 400.0))
    background = 0.45 * (1 - math.exp(-10 / 12))
    assert at == pytest.approx(1 - (1 - background) * 0.5) and before == pytest.approx(background, abs=1e-3)
    assert before < at < later < much_later <= 1.0 and much_later == pytest.approx(1.0)
    assert later == pytest.approx(1 - (1 - 0.45 * (1 - math.exp(-22 / 12))) * 0.5 * math.exp(-1))
    missing = icu_evidence(_row(missing_modalities="vitals notes", vitals_signal_from_h=1.0), 30.0)
    assert missing["vitals"] == 0.0 and missing["notes"] == 0.0 and missing["labs"] > 0.0
    with pytest.raises(ValueError, match=">= 0"):
        icu_evidence(_row(), -1.0)
    with pytest.raises(ValueError, match="missing_modalities"):
        icu_evidence(_row(missing_modalities="ecg"), 1.0)


def test_samples_are_only_hours_inside_each_stay(cohort):
    truth, written = cohort["truth"], cohort["written"]
    lengths = dict(zip(truth["case_id"], truth["stay_hours"]))
    stays = written["case_id"].str.rsplit("@", n=1).str[0]
    hours = _hours_of(written["case_id"])
    assert (hours < stays.map(lengths).to_numpy()).all()
    assert set(hours) == set(HOURS)
    expected = {f"{s}@{t:g}h" for s, length in lengths.items() for t in HOURS if t < length}
    # rater A never skips; a stay missing demographics has nothing recorded at hour 0 and no ranking then
    rater_a = set(written.loc[written["rater"] == ICU_RATERS[0].name, "case_id"])
    no_demographics = {f"{s}@0h" for s, m in zip(truth["case_id"], truth["missing_modalities"].fillna(""))
                       if "demographics" in m.split()}
    assert rater_a == expected - no_demographics
    skipped = 1 - (written["rater"] == ICU_RATERS[2].name).sum() / len(rater_a)  # draws differ per sample
    assert 0.02 < skipped < 0.12 and ICU_RATERS[2].skip_rate == 0.06
    assert simulate_icu_rankings(truth.iloc[:3], [6.5], 1)["case_id"].str.endswith("@6.5h").all()


def test_missing_and_not_yet_recorded_modalities_are_never_ranked(cohort):
    truth, written = cohort["truth"], cohort["written"].set_index("case_id")
    stays = {s.plan.case_id: s for s in cohort["stays"]}
    checked = 0
    for case_id, row in written.iterrows():
        stay_id, hour = case_id.rsplit("@", 1)
        t, stay = float(hour[:-1]), stays[stay_id]
        recorded = {"vitals": (stay.vitals["time"].round(4) <= t).any(),
                    "labs": (stay.labs["time"].round(4) <= t).any(),
                    "notes": any(round(n.time, 4) <= t for n in stay.notes),
                    "demographics": stay.plan.present["demographics"]}
        for m in ICU_MODALITIES:
            assert pd.notna(row[m]) == bool(recorded[m] and stay.plan.present[m]), (case_id, m)
        checked += 1
    assert checked == len(written) and written.loc[:, list(ICU_MODALITIES)].isna().any(axis=None)
    missing = truth["missing_modalities"].fillna("").str.split()
    assert missing.str.len().gt(0).sum() >= 5  # the cohort has stays missing modalities to check
    loose = simulate_icu_rankings(truth, HOURS, RATER_SEED)  # present = not missing, without the tables
    by_stay = dict(zip(truth["case_id"], missing))
    for _, row in loose.iterrows():
        gone = by_stay[row["case_id"].rsplit("@", 1)[0]]
        assert all(pd.isna(row[m]) for m in gone) and all(pd.notna(row[m]) for m in ICU_MODALITIES if m not in gone)


def test_demographics_lead_at_admission_and_vitals_at_36_hours(cohort):
    truth = cohort["truth"]
    loose = simulate_icu_rankings(truth, HOURS, RATER_SEED)  # all of a stay's modalities ranked at every hour
    early, late = _first_shares(loose, 0), _first_shares(loose, 36)
    assert early["demographics"] > late["demographics"] + 0.3 and early["demographics"] > 0.45
    assert late["vitals"] > early["vitals"] + 0.2 and late["vitals"] > 0.45
    written = cohort["written"]  # with presence from the tables only demographics exist at hour 0
    assert _first_shares(written, 0)["demographics"] == 1.0
    assert _first_shares(written, 36)["vitals"] > _first_shares(written, 12)["vitals"] + 0.15
    evidence = evidence_table(truth, (0, 36))  # the noise-free ordering the raters read
    strongest = evidence[STRENGTHS].fillna(-1.0).to_numpy().argmax(axis=1)
    at0, at36 = evidence["hour"].to_numpy() == 0, evidence["hour"].to_numpy() == 36
    has_demographics = evidence["strength_demographics"].notna().to_numpy()
    has_vitals = evidence["strength_vitals"].notna().to_numpy()
    assert (strongest[at0 & has_demographics] == ICU_MODALITIES.index("demographics")).all()
    assert (strongest[at36 & has_vitals] == ICU_MODALITIES.index("vitals")).mean() > 0.9


def test_agreement_with_the_evidence_falls_with_the_rater_noise(cohort):
    truth = cohort["truth"]
    raters = (RaterSpec("synthetic_exact", noise=0.0, tie_margin=0.0),
              *(RaterSpec(f"synthetic_{noise}", noise=noise) for noise in (0.03, 0.1, 0.3)))
    rankings = simulate_icu_rankings(truth, HOURS[1:], RATER_SEED, raters, recorded_from=cohort["recorded"])
    evidence = evidence_table(truth, HOURS[1:], cohort["recorded"]).set_index("case_id")
    mean_tau = {}
    for rater, rows in rankings.groupby("rater", sort=False):
        taus = []
        for _, row in rows.iterrows():
            ranked = [m for m in ICU_MODALITIES if pd.notna(row[m])]
            strengths = evidence.loc[row["case_id"], [f"strength_{m}" for m in ranked]].to_numpy(dtype=float)
            if len(ranked) >= 2 and len(set(strengths)) == len(ranked):
                taus.append(kendalltau([-int(row[m]) for m in ranked], strengths).statistic)
        assert len(taus) > 150, rater
        mean_tau[rater] = float(np.mean(taus))
    taus = [mean_tau[r.name] for r in raters]
    assert taus[0] == pytest.approx(1.0)  # noise 0, no lean, no tie margin: the evidence ordering exactly
    assert taus[0] > taus[1] > taus[2] > taus[3] > 0.0 and taus[1] - taus[3] > 0.25


def test_default_icu_raters_agree_as_the_assumed_experts(cohort):
    """The raters' noise was calibrated on the bundled sample; on another cohort of the same generator their
    mean pairwise tau is still near the assumed expert value."""
    rankings = simulate_icu_rankings(cohort["truth"], HOURS, RATER_SEED, recorded_from=cohort["recorded"])
    assert abs(mean_pairwise_tau(rankings, ICU_MODALITIES) - TARGET_TAU) < 0.08
    leans = {r.name: dict(r.style) for r in ICU_RATERS}
    assert [set(style) for style in leans.values()] == [{"vitals"}, {"labs"}, set()]


def test_rankings_are_deterministic_and_each_sample_regenerates_alone(cohort):
    truth, written = cohort["truth"], cohort["written"]
    again = simulate_icu_rankings(truth, HOURS, RATER_SEED, recorded_from=cohort["recorded"])
    pd.testing.assert_frame_equal(again, written)
    from_memory = pd.DataFrame([s.truth for s in cohort["stays"]])  # None rather than NaN for the blanks
    pd.testing.assert_frame_equal(simulate_icu_rankings(from_memory, HOURS, RATER_SEED,
                                                        recorded_from=cohort["recorded"]), written)
    as_strings = pd.read_csv(cohort["folder"] / "ground_truth.csv", dtype=str, keep_default_na=False)  # "" blanks
    pd.testing.assert_frame_equal(simulate_icu_rankings(as_strings, HOURS, RATER_SEED,
                                                        recorded_from=cohort["recorded"]), written)
    subset = simulate_icu_rankings(truth.iloc[[41, 7, 19]], (36, 12), RATER_SEED, recorded_from=cohort["recorded"])
    keys = ["case_id", "rater"]
    whole = written.set_index(keys).loc[pd.MultiIndex.from_frame(subset[keys])].reset_index()
    pd.testing.assert_frame_equal(subset, whole)
    other = simulate_icu_rankings(truth, HOURS, RATER_SEED + 1, recorded_from=cohort["recorded"])
    assert not (other.shape == written.shape and other.equals(written))


class _Samples:
    """The parts of a timed cohort reader that ``read_rankings`` checks against: declared modality names, the
    sample ids and their availability as of each hour."""

    def __init__(self, truth: pd.DataFrame, recorded: pd.DataFrame) -> None:
        evidence = evidence_table(truth, HOURS, recorded).set_index("case_id")
        self.modality_names = ICU_MODALITIES
        self.case_ids = list(evidence.index)
        self._availability = evidence[STRENGTHS].notna().set_axis(list(ICU_MODALITIES), axis=1)

    def availability(self) -> pd.DataFrame:
        return self._availability


def test_the_written_file_reads_back(cohort):
    path = cohort["folder"] / "clinician_rankings.csv"
    read = read_rankings(path, modalities=ICU_MODALITIES)
    pd.testing.assert_frame_equal(read, cohort["written"], check_dtype=False)
    samples = _Samples(cohort["truth"], cohort["recorded"])
    pd.testing.assert_frame_equal(read_rankings(path, cohort=samples), read)
    lines = path.read_text().splitlines()
    at0 = next(k for k, line in enumerate(lines) if "@0h," in line)
    fields = lines[at0].split(",")
    fields[2:5] = ["2", "3", "4"]  # vitals, labs and notes ranked at admission, before any was recorded
    fields[5] = "1"
    lines[at0] = ",".join(fields)
    path.with_name("tampered.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RankingErrors, match="this case has no vitals"):
        read_rankings(path.with_name("tampered.csv"), cohort=samples)


def test_bad_input_is_refused(cohort):
    truth = cohort["truth"]
    with pytest.raises(ValueError, match="missing \\['stay_hours'\\]"):
        simulate_icu_rankings(truth.drop(columns="stay_hours"), HOURS, 1)
    with pytest.raises(ValueError, match="distinct, finite and >= 0"):
        simulate_icu_rankings(truth, (0, 6, 6), 1)
    with pytest.raises(ValueError, match="distinct, finite and >= 0"):
        evidence_table(truth, (-6, 0))
    with pytest.raises(ValueError, match="every stay"):
        simulate_icu_rankings(truth, HOURS, 1, recorded_from=cohort["recorded"].iloc[1:])
    with pytest.raises(ValueError, match="twice"):
        evidence_table(pd.concat([truth.iloc[:2], truth.iloc[:1]]), HOURS)


def test_first_recorded_reads_compressed_tables_and_needs_them(cohort, tmp_path):
    for name in ("cohort.csv", "labs.csv", "notes.csv"):
        shutil.copy(cohort["folder"] / name, tmp_path / name)
    (tmp_path / "vitals.csv.gz").write_bytes(gzip.compress((cohort["folder"] / "vitals.csv").read_bytes()))
    recorded = first_recorded(tmp_path)
    pd.testing.assert_frame_equal(recorded, cohort["recorded"])
    assert recorded.index.tolist() == cohort["truth"]["case_id"].tolist()
    vitals, labs = recorded["vitals"].dropna(), recorded["labs"].dropna()
    assert len(vitals) > 50 and (vitals > 0).all() and (labs >= 0.2).all()  # the first lab draw is in [0.2, 1) h
    (tmp_path / "notes.csv").unlink()
    with pytest.raises(FileNotFoundError, match="notes.csv not found"):
        first_recorded(tmp_path)
