"""Finding the planted interaction pair: ranks count ties against it (an additive model never finds it), cases
without a rule or without both modalities of their pair are left out, and the summary's shares are the ranks'."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from explain.planted_pairs import find_planted_pairs, pair_indices, planted_rank

NAMES = ("image", "text", "signal", "tabular")


def test_pair_indices_parse_and_reject():
    assert pair_indices("tabular+signal", NAMES) == (2, 3)
    for bad in ("signal", "signal+ecg", "signal+signal", "a+b+c"):
        with pytest.raises(ValueError, match="must name two different modalities"):
            pair_indices(bad, NAMES)


def test_planted_rank_counts_ties_against_the_planted_pair():
    scores = np.zeros((4, 4))
    present = np.ones(4, dtype=bool)
    assert planted_rank(scores, present, (2, 3)) == (6, 6)  # all tied: last, not first
    scores[2, 3] = 0.5
    assert planted_rank(scores, present, (2, 3)) == (1, 6)
    scores[0, 1] = 0.5
    assert planted_rank(scores, present, (2, 3)) == (2, 6)
    present[0] = False  # pairs with the image drop out: 3 pairs left, the (0, 1) tie with them
    assert planted_rank(scores, present, (2, 3)) == (1, 3)
    with pytest.raises(ValueError, match="not among the present pairs"):
        planted_rank(scores, present, (0, 2))


def test_find_planted_pairs_and_its_summary():
    truth = pd.DataFrame({"case_id": ["c0", "c1", "c2", "c3"],
                          "interaction_pair": ["signal+tabular", "image+text", "", "image+signal"],
                          "interaction_role": ["conjunction", "decoy", "", "decoy"]})
    present = np.ones((4, 4), dtype=bool)
    present[3, 0] = False  # c3 lacks the image of its pair: left out
    interactions = np.zeros((4, 4, 4))
    interactions[0, 2, 3] = interactions[0, 3, 2] = -0.3  # found by |I| (redundancy counts too)
    attention = np.full((4, 4, 4), 0.25)
    attention[1, 0, 1] = 0.6  # c1's attention points at its pair; c0's is flat (tied: not found)
    finding = find_planted_pairs(truth, ["c0", "c1", "c2", "c3"], present, interactions, attention, NAMES)
    table = finding.table.set_index("case_id")
    assert list(table.index) == ["c0", "c1"]
    assert table.loc["c0", "rank_interaction"] == 1 and table.loc["c0", "rank_attention"] == 6
    assert table.loc["c1", "rank_interaction"] == 6 and table.loc["c1", "rank_attention"] == 1
    summary = finding.summary()
    assert summary.loc["all"].to_dict() == pytest.approx(
        {"cases": 2, "chance_first": 1 / 6, "interaction_first": 0.5, "attention_first": 0.5})
    assert summary.loc["decoy", "attention_first"] == 1.0 and summary.loc["conjunction", "interaction_first"] == 1.0
    without = find_planted_pairs(truth, ["c0", "c1"], present[:2], interactions[:2], None, NAMES)
    assert np.isnan(without.summary().loc["all", "attention_first"])


def test_a_cohort_without_rules_is_refused():
    with pytest.raises(ValueError, match="generated without interaction rules"):
        find_planted_pairs(pd.DataFrame({"case_id": ["c0"]}), ["c0"], np.ones((1, 4), bool),
                           np.zeros((1, 4, 4)), None, NAMES)
