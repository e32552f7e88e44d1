"""A study's full history table (neurofusion.studies.history): every row, oldest first, revisions, skips and
withdrawn rows included, the rows in force marked, ranks as nullable integers, times in ISO 8601 UTC."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from neurofusion.studies import history_frame, study_history
from tests.neurofusion.studies.conftest import case_with, ranking


def test_every_row_is_kept_and_the_latest_counts(store, demo):
    three, four = case_with(store, "demo", 3), case_with(store, "demo", 4)
    store.submit("demo", "ann", four.case_id, ranking(four), token="a1", confidence=2, diagnosis=demo.classes[0])
    store.submit("demo", "ann", four.case_id, ranking(four, [4, 3, 2, 1]), token="a2", reason="second look")
    store.skip("demo", "bob", three.case_id, "ECG unreadable", token="b1")
    withdrawn = store.submit("demo", "bob", four.case_id, ranking(four), token="b2")
    store.withdraw_submission(withdrawn.id, "entered by mistake")

    history = study_history(store, "demo")
    assert history["token"].tolist() == ["a1", "a2", "b1", "b2"]  # oldest first, nothing left out
    assert history["counts"].tolist() == [False, True, True, False]  # a revision replaces; a withdrawn row stops
    assert history["revision"].tolist() == [1, 2, 1, 1] and history["kind"].tolist() == ["ranking"] * 2 + [
        "skip", "ranking"]
    assert list(history.columns[5:5 + len(demo.modalities)]) == list(demo.modalities)
    second = history.iloc[1]
    assert {m: second[m] for m in four.available} == ranking(four, [4, 3, 2, 1])
    skipped = history.iloc[2]
    assert all(pd.isna(skipped[m]) for m in demo.modalities) and skipped["reason"] == "ECG unreadable"
    assert str(history[demo.modalities[0]].dtype) == "Int64" and str(history["confidence"].dtype) == "Int64"
    assert history["confidence"].iloc[0] == 2 and pd.isna(history["confidence"].iloc[1])
    assert history["withdrawn_reason"].tolist() == ["", "", "", "entered by mistake"]
    assert history["withdrawn_at"].iloc[:3].tolist() == ["", "", ""]
    for moment in (*history["submitted_at"], history["withdrawn_at"].iloc[3]):
        assert datetime.fromisoformat(moment).utcoffset().total_seconds() == 0  # aware, UTC


def test_an_empty_study_has_the_columns_and_no_rows(store, demo):
    history = study_history(store, "demo")
    assert history.empty and history.columns[-1] == "counts" and "submission_id" in history.columns
    assert list(history_frame([], ["image", "text"]).columns[5:7]) == ["image", "text"]
