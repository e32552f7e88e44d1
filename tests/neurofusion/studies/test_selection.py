"""Case selection of a study: all, a split, a seeded stratified sample (class or event x missingness
pattern) with proportional allocation by the largest remainder."""

from __future__ import annotations

import pandas as pd
import pytest

from neurofusion.data.cohort import CohortReader
from neurofusion.data.timed import open_cohort
from neurofusion.studies import StudyError, describe_selection, select_cases
from tests.neurofusion.studies.conftest import CANCER, CARDIO, ROOT


@pytest.fixture(scope="module")
def cardio() -> CohortReader:
    return CohortReader(CARDIO)


@pytest.fixture(scope="module")
def cancer() -> CohortReader:
    return CohortReader(CANCER)


@pytest.fixture(scope="module")
def split_cardio() -> CohortReader:
    """The cardio sample with its cases spread over the three splits (every third case in val, every fifth
    remaining one in train), so a sample drawn from one split can be told from one drawn from the cohort."""
    cohort = CohortReader(CARDIO)
    splits = ["val" if i % 3 == 0 else "train" if i % 5 == 0 else "test" for i in range(len(cohort))]
    cohort.table["split"] = splits
    return cohort


def _strata(cohort: CohortReader, by: str) -> pd.Series:
    table = cohort.table.set_index("case_id")
    pattern = cohort.availability().astype(int).astype(str).agg("".join, axis=1)
    return table[by].astype(str) + "|" + pattern


@pytest.mark.parametrize("n", [1, 7, 40, 133, 200])
def test_stratified_sizes_are_within_one_of_proportional(cardio, n):
    chosen = select_cases(cardio, "stratified", n=n, seed=11)
    assert len(chosen) == n == len(set(chosen))
    strata = _strata(cardio, "label")
    expected = strata.value_counts() * n / len(strata)
    got = strata.loc[chosen].value_counts().reindex(expected.index, fill_value=0)
    assert ((got - expected).abs() < 1).all(), pd.DataFrame({"got": got, "expected": expected})
    assert chosen == [c for c in cardio.case_ids if c in set(chosen)]  # cohort order


def test_stratified_on_a_survival_cohort_uses_event_and_pattern(cancer):
    chosen = select_cases(cancer, "stratified", n=30, seed=2)
    strata = _strata(cancer, "event")
    expected = strata.value_counts() * 30 / len(strata)
    got = strata.loc[chosen].value_counts().reindex(expected.index, fill_value=0)
    assert len(chosen) == 30 and ((got - expected).abs() < 1).all()
    assert describe_selection("stratified", n=30, seed=2, outcome="survival") == \
        "stratified sample of 30 by event and missingness pattern (seed 2)"


def test_stratified_within_a_split_samples_only_that_split_in_proportion(split_cardio):
    test_ids = split_cardio.ids("test")
    assert 0 < len(test_ids) < len(split_cardio) - 40  # the fixture leaves most cases outside the test split
    chosen = select_cases(split_cardio, "stratified", split="test", n=40, seed=7)
    assert len(chosen) == 40 == len(set(chosen)) and set(chosen) <= set(test_ids)
    strata = _strata(split_cardio, "label").loc[test_ids]
    expected = strata.value_counts() * 40 / len(strata)
    got = strata.loc[chosen].value_counts().reindex(expected.index, fill_value=0)
    assert ((got - expected).abs() < 1).all(), pd.DataFrame({"got": got, "expected": expected})
    assert chosen == [c for c in split_cardio.case_ids if c in set(chosen)]  # cohort order
    assert select_cases(split_cardio, "stratified", split="test", n=len(test_ids), seed=1) == test_ids
    assert select_cases(split_cardio, "stratified", split="test", n=40, seed=7) == chosen
    assert describe_selection("stratified", split="test", n=40, seed=7) == \
        "stratified sample of 40 of the test split by class and missingness pattern (seed 7)"


def test_stratified_without_a_split_draws_from_the_whole_cohort(split_cardio):
    chosen = select_cases(split_cardio, "stratified", n=150, seed=7)
    assert len(chosen) == 150 and len({split_cardio.table.set_index("case_id").loc[c, "split"] for c in chosen}) == 3


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "test", "n": 0}, "n must be between 1 and the test split's {test} cases, got 0"),
    ({"split": "test", "n": 10_000}, "n must be between 1 and the test split's {test} cases, got 10000"),
    ({"split": "holdout", "n": 5}, "split must be one of train, val, test, got 'holdout'"),
])
def test_bad_stratified_splits_are_errors(split_cardio, kwargs, message):
    with pytest.raises(StudyError, match=message.format(test=len(split_cardio.ids("test")))):
        select_cases(split_cardio, "stratified", **kwargs)


def test_the_seed_decides_the_sample(cardio):
    first = select_cases(cardio, "stratified", n=40, seed=7)
    assert select_cases(cardio, "stratified", n=40, seed=7) == first
    assert select_cases(cardio, "stratified", n=40, seed=8) != first


def test_all_and_split(cardio):
    assert select_cases(cardio, "all") == cardio.case_ids
    assert select_cases(cardio, "split", split="test") == cardio.ids("test")
    assert describe_selection("all") == "all cases"
    assert describe_selection("split", split="test") == "the test split"


@pytest.mark.parametrize("how, kwargs, message", [
    ("stratified", {"n": 0}, "n must be between 1 and the cohort's 200 cases, got 0"),
    ("stratified", {"n": 201}, "n must be between 1 and the cohort's 200 cases, got 201"),
    ("stratified", {}, "a stratified selection needs n"),
    ("split", {"split": "holdout"}, "split must be one of train, val, test, got 'holdout'"),
    ("split", {"split": "train"}, "the cohort has no cases in the train split"),
    ("stratified", {"split": "train", "n": 5}, "the cohort has no cases in the train split"),
    ("random", {}, "case selection must be one of all, split, stratified, got 'random'"),
])
def test_bad_selections_are_errors(cardio, how, kwargs, message):
    assert cardio.ids("train") == []  # the bundled sample is a test split only
    with pytest.raises(StudyError, match=message):
        select_cases(cardio, how, **kwargs)


def test_time_stamped_cohorts_are_refused():
    icu = open_cohort(ROOT / "sample_data" / "icu")
    with pytest.raises(StudyError, match="time-stamped \\(ICU\\) cohorts are not supported yet"):
        select_cases(icu, "all")
