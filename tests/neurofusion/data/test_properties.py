"""Property-based checks (hypothesis): rankings validation and signal round trips over many inputs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from neurofusion.data import CohortError, MODALITIES, Signal, read_rankings, read_signal, write_wfdb


def _write_row(ranks: list[int | None]) -> Path:
    path = Path(tempfile.mkdtemp()) / "r.csv"
    cells = ["" if r is None else str(r) for r in ranks]
    path.write_text("case_id,rater," + ",".join(MODALITIES) + "\nC1,A," + ",".join(cells) + "\n")
    return path


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(4)), st.integers(1, 4))
def test_any_permutation_of_the_ranked_subset_is_accepted(order, k):
    ranks: list[int | None] = [None] * 4
    for rank, modality in enumerate(order[:k], start=1):
        ranks[modality] = rank
    back = read_rankings(_write_row(ranks))
    assert [None if np.isnan(v) else int(v) for v in back.loc[0, list(MODALITIES)].astype(float)] == ranks


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(1, 6)), min_size=4, max_size=4))
def test_anything_else_is_rejected(ranks):
    given_ranks = [r for r in ranks if r is not None]
    if given_ranks and all(r == 1 + sum(x < r for x in given_ranks) for r in given_ranks):
        return  # a valid ranking (a permutation, or ties in competition form): covered above and below
    with pytest.raises(CohortError):
        read_rankings(_write_row(ranks))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=4, max_size=4), st.lists(st.booleans(), min_size=4, max_size=4))
def test_competition_ranks_of_any_scores_are_accepted(scores, ranked):
    # scipy's rankdata(method="min") is the reference: tied scores share the better place, the next skips
    from scipy.stats import rankdata

    if not any(ranked):
        ranked = [True] + ranked[1:]
    kept = [-s for s, keep in zip(scores, ranked) if keep]
    places = iter(rankdata(kept, method="min").astype(int).tolist())
    ranks = [next(places) if keep else None for keep in ranked]
    back = read_rankings(_write_row(ranks))
    assert [None if np.isnan(v) else int(v) for v in back.loc[0, list(MODALITIES)].astype(float)] == ranks


@settings(max_examples=25, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(2, 300)),
              elements=st.floats(-9.5, 9.5, width=32)),
       st.sampled_from([100, 250, 360, 500, 1000]))
def test_wfdb_round_trip_within_format_resolution(data, fs):
    with tempfile.TemporaryDirectory() as tmp:
        channels = tuple(f"ch{i}" for i in range(data.shape[0]))
        write_wfdb(Path(tmp) / "r.hea", Signal(data, fs, channels), fmt="212")
        back = read_signal(Path(tmp) / "r.hea")
    assert back.fs == fs and back.channels == channels
    assert np.abs(back.data - data).max() <= 0.0025 + 1e-6
