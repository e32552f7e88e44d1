"""The cross-modal interaction planted in the synthetic ICU cohort (neurofusion.data.synthetic.icu.interactions):
share 0 writes the cohort byte for byte as before the option existed, the decided share is binomial and nests
across shares, undecided stays render as at share 0, a split regenerates identically, the ground truth agrees
with what the tables show (SpO2 band, target note, outcome, the hour both cues are recorded), the raters rank
the pair first from that hour, and the issue's probe: an additive logistic model over per-modality summaries
falls short of one with the SpO2 x target-note product term only when the rule decides stays, and only once
both cues are recorded."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.preprocessing import StandardScaler

from neurofusion.data.synthetic.icu import draw_cohort, synthesize_cohort, synthesize_stay, write_icu_cohort
from neurofusion.data.synthetic.icu.interactions import (
    COPD, HIGH_SPO2, INTERACTION_COLUMNS, LOW_SPO2, OFF_TARGET, ON_TARGET, PAIR, RULE, STANDARD, TARGET_TEXT,
    draw_icu_interaction,
)
from neurofusion.data.synthetic.icu.raters import INTERACTION_EVIDENCE, icu_evidence

# sha256 of write_icu_cohort(folder, 30, 5) as written by the generator before the interaction option (commit
# e9753a3): share 0 must keep every byte.
BEFORE = {
    "README.md": "e62ddea865446aa016c8019aa39b700325d543b8fae7cd9609337cfadd0f46cb",
    "clinician_rankings.csv": "1bd45efbda5d22147e1c07c3c923046fec74269f5b9e2f883f4117a7f166ae74",
    "cohort.csv": "1aec388646e4a4410d90a92d7a590556cf30105e65a8971ac49a0f715491fe2a",
    "cohort.json": "f911ae7e7f5c41db406cc534ed422be5d5d896ce4dfb5e54e1593806c2592c40",
    "features.csv": "174f5fe030798f81b6fdaabf77a577477e7b6f9a7a51fd6b21c10867685e522e",
    "ground_truth.csv": "512939b6f8f56405aa854ed456dd977d5a2f4bdac5f2253568af9f2c3015bdbb",
    "labs.csv": "d345f91683cd82d5ff01d2080dec53977022d7a1c7d3b0c2337f9267fd938a52",
    "notes.csv": "d7afa2d044b9e332d164c9c8b8fe6ff655b86690dead43726d041b1d5ba34937",
    "variables.csv": "a044fffa07656c035db331a3a30e63c827adb4026dff340cc9d8d85c75d344eb",
    "vitals.csv": "6108ff48ea338f94c94ab7996445c61b406d43b916ef165103e32d6d503926ce",
}
N, SEED, SHARE = 60, 13, 0.5


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    folder = tmp_path_factory.mktemp("icu_interactions")
    stays = write_icu_cohort(folder, N, SEED, interaction_share=SHARE)
    text = {"case_id": str, "missing_modalities": str, "interaction_rule": str, "interaction_role": str,
            "interaction_pair": str}
    truth = pd.read_csv(folder / "ground_truth.csv", dtype=text)
    truth[list(text)] = truth[list(text)].fillna("")
    return {"folder": folder, "stays": stays, "truth": truth}


def test_share_zero_writes_every_file_as_before_the_option(tmp_path):
    write_icu_cohort(tmp_path, 30, 5, interaction_share=0.0)
    written = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.iterdir()}
    assert written == BEFORE


def test_the_decided_share_is_binomial_nested_and_balanced_over_the_four_corners():
    n, share = 4000, 0.3
    plans = [draw_icu_interaction(7, i, share) for i in range(n)]
    count = sum(p is not None for p in plans)
    assert abs(count - n * share) <= 4 * np.sqrt(n * share * (1 - share))
    smaller = {i for i in range(n) if draw_icu_interaction(7, i, 0.1) is not None}
    larger = {i for i in range(n) if draw_icu_interaction(7, i, 0.6) is not None}
    assert smaller <= {i for i, p in enumerate(plans) if p is not None} <= larger
    chosen = [p for p in plans if p is not None]
    low = np.array([p.spo2 < 93 for p in chosen])
    copd = np.array([p.target == COPD for p in chosen])
    died = np.array([p.died for p in chosen])
    assert np.array_equal(died, low != copd)  # off target dies: low with a standard target, high with COPD's
    for cue in (low, copd):  # each cue alone is half of the stays and says nothing about the outcome
        assert abs(cue.mean() - 0.5) < 0.05
        assert abs(died[cue].mean() - died[~cue].mean()) < 0.08
    assert all(p.cue_hour < p.note_hour < p.end_hour for p in chosen)
    assert draw_icu_interaction(7, 0, 0.0) is None
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="interaction share"):
            draw_icu_interaction(7, 0, bad)


def test_undecided_stays_render_as_at_share_zero_and_a_split_regenerates_identically(tmp_path, decided):
    draws = draw_cohort(N, SEED)
    undecided = [i for i, s in enumerate(decided["stays"]) if s.truth["interaction_rule"] == ""][:6]
    assert undecided
    for i in undecided:
        plain, mixed = synthesize_stay(draws[i], SEED), decided["stays"][i]
        pd.testing.assert_frame_equal(plain.vitals, mixed.vitals)
        pd.testing.assert_frame_equal(plain.labs, mixed.labs)
        assert plain.notes == mixed.notes
        assert {k: v for k, v in mixed.truth.items() if k not in INTERACTION_COLUMNS} == plain.truth
    write_icu_cohort(tmp_path, N, SEED, splits=("test",), interaction_share=SHARE)
    for name in ("ground_truth.csv", "notes.csv", "labs.csv", "clinician_rankings.csv"):
        part = pd.read_csv(tmp_path / name, dtype=str, keep_default_na=False)
        whole = pd.read_csv(decided["folder"] / name, dtype=str, keep_default_na=False)
        stay = whole["case_id"].str.split("@").str[0]
        test_ids = {s.plan.case_id for s in decided["stays"] if s.plan.split == "test"}
        pd.testing.assert_frame_equal(part, whole[stay.isin(test_ids)].reset_index(drop=True), obj=name)


def test_the_ground_truth_agrees_with_what_the_tables_show(decided):
    truth, stays = decided["truth"], decided["stays"]
    vitals = pd.read_csv(decided["folder"] / "vitals.csv", dtype={"case_id": str})
    notes = pd.read_csv(decided["folder"] / "notes.csv", dtype={"case_id": str})
    rows = truth[truth["interaction_rule"] != ""]
    assert 0.3 * N < len(rows) < 0.7 * N
    assert set(rows["interaction_rule"]) == {RULE} and set(rows["interaction_pair"]) == {PAIR}
    assert set(rows["interaction_role"]) == {ON_TARGET, OFF_TARGET}
    blank = truth[truth["interaction_rule"] == ""]
    assert (blank["interaction_role"] == "").all() and (blank["interaction_strength"] == 0).all()
    assert blank["interaction_from_h"].isna().all()
    for _, row in rows.iterrows():
        stay, start = row["case_id"], float(row["interaction_from_h"])
        assert row["course"] == "stable" and "vitals" not in row["missing_modalities"].split()
        assert start == max(row["vitals_signal_from_h"], row["notes_signal_from_h"])
        spo2 = vitals[(vitals["case_id"] == stay) & (vitals["variable"] == "spo2") & (vitals["time"] >= start)]
        level = float(spo2["value"].median())
        low = LOW_SPO2[0] - 1 <= level <= LOW_SPO2[1] + 1
        assert low or HIGH_SPO2[0] - 1 <= level <= min(HIGH_SPO2[1] + 1, 100), (stay, level)
        assert abs(row["interaction_strength"] - abs(level - 93) / 6) < 0.2
        text = notes[notes["case_id"] == stay]
        before, after = text[text["time"] < float(row["notes_signal_from_h"])], text[text["time"] >= start]
        assert not before["text"].str.contains("target SpO2").any()
        copd = after["text"].str.contains(TARGET_TEXT[COPD], regex=False)
        assert len(after) and (copd.all() or after["text"].str.contains(TARGET_TEXT[STANDARD], regex=False).all())
        off = low != bool(copd.all())
        assert row["interaction_role"] == (OFF_TARGET if off else ON_TARGET)
        assert row["died"] == int(off) and (not off or row["stay_hours"] - start <= 48)
        assert row["stay_hours"] > start
    plans = {s.plan.case_id: s.plan for s in stays}
    assert all(plans[c].died == bool(d) for c, d in zip(truth["case_id"], truth["died"]))


def test_the_raters_rank_the_pair_first_once_both_cues_are_recorded(decided):
    rows = decided["truth"][decided["truth"]["interaction_rule"] != ""]
    for _, row in rows.iterrows():
        start = float(row["interaction_from_h"])
        later = icu_evidence(row, start + 1.0)
        assert min(later["vitals"], later["notes"]) >= INTERACTION_EVIDENCE
        assert min(later["vitals"], later["notes"]) > max(later["labs"], later["demographics"])
        if start > 1.0:
            earlier = icu_evidence(row, start - 0.5)
            assert min(earlier["vitals"], earlier["notes"]) < INTERACTION_EVIDENCE
    rankings = pd.read_csv(decided["folder"] / "clinician_rankings.csv", dtype={"case_id": str})
    stay, hour = rankings["case_id"].str.split("@").str[0], rankings["case_id"].str.extract(r"@([\d.]+)h")[0]
    starts = dict(zip(rows["case_id"], rows["interaction_from_h"].astype(float)))
    shown = rankings[[s in starts and float(h) >= starts[s] for s, h in zip(stay, hour)]]
    assert len(shown) >= 5
    top_two = ((shown["vitals"] <= 2) & (shown["notes"] <= 2)).mean()
    assert top_two >= 0.9


def _summaries(stays, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-modality summaries of what was recorded by hour t for the stays still in the unit, and the label:
    vitals (mean SpO2 and heart rate over the last 6 h), notes (target 88-92 % / 94-98 % written, count of
    trend phrases), labs (last lactate), demographics (age)."""
    features, labels = [], []
    for s in stays:
        label = s.plan.died_within(t)
        if label is None:
            continue
        window = s.vitals[(s.vitals["time"] <= t) & (s.vitals["time"] > t - 6)]
        spo2 = window.loc[(window["variable"] == "spo2") & (window["value"] > 50), "value"]
        heart = window.loc[window["variable"] == "heart_rate", "value"]
        texts = [n.text for n in s.notes if n.time <= t]
        lactate = s.labs.loc[(s.labs["time"] <= t) & (s.labs["variable"] == "lactate"), "value"]
        age = s.demographics["age"]
        features.append([spo2.mean() if len(spo2) else 95.0, heart.mean() if len(heart) else 90.0,
                         float(any("88-92" in x for x in texts)), float(any("94-98" in x for x in texts)),
                         float(sum("increasing" in x or "decreasing" in x for x in texts)),
                         lactate.iloc[-1] if len(lactate) else 1.2, 64.0 if age is None else float(age)])
        labels.append(int(label))
    return np.asarray(features), np.asarray(labels)


def _probe_gap(share: float, seed: int, t: float) -> float:
    """Cross-validated AUC of a logistic model with the SpO2 x notes product terms minus the additive one's."""
    x, y = _summaries(synthesize_cohort(300, seed, interaction_share=share), t)
    z = StandardScaler().fit_transform(x)
    with_product = np.column_stack([z, z[:, 0] * z[:, 2], z[:, 0] * z[:, 3], z[:, 0] * z[:, 4]])
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    auc = [roc_auc_score(y, cross_val_predict(LogisticRegression(max_iter=2000), m, y, cv=folds,
                                              method="predict_proba")[:, 1]) for m in (z, with_product)]
    return auc[1] - auc[0]


def test_an_additive_probe_falls_short_of_the_product_term_only_where_the_rule_decides():
    # measured over seeds 1-7 (300 stays, hour 24): share 0.3 +0.115..+0.182; share 0 -0.026..+0.031; at
    # hour 4, before any cue hour (>= 6 h), exactly 0 (no target note yet)
    assert _probe_gap(0.3, 1, 24.0) >= 0.08
    assert abs(_probe_gap(0.0, 1, 24.0)) <= 0.05
    assert abs(_probe_gap(0.3, 2, 4.0)) <= 0.01


def test_generate_cli_records_the_icu_share(tmp_path):
    """`generate --task icu --interaction-share` reaches the ICU writer: the share is in cohort.json's generator
    record and command, the ground truth names the rule, the README describes it."""
    import json

    from neurofusion.data.__main__ import main

    out = tmp_path / "icu"
    assert main(["generate", "--task", "icu", "--n", "60", "--seed", "5", "--splits", "test",
                 "--interaction-share", "0.3", "--out", str(out)]) in (0, None)
    generator = json.loads((out / "cohort.json").read_text())["generator"]
    assert generator["interaction_share"] == 0.3 and "--interaction-share 0.3" in generator["command"]
    truth = pd.read_csv(out / "ground_truth.csv")
    assert set(truth["interaction_rule"].dropna()) <= {"spo2_against_target"}
    assert "spo2_against_target" in (out / "README.md").read_text()
