"""Simulated raters: the Mallows sampler has the right distribution; rankings respect missing modalities."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from neurofusion.data.synthetic.raters import RaterSpec, mallows_sample, simulate_rankings


def _kendall_distance(a: list[str], b: list[str]) -> int:
    pos = {item: i for i, item in enumerate(b)}
    return sum(1 for x, y in itertools.combinations(a, 2) if pos[x] > pos[y])


def test_mallows_frequencies_match_the_exact_distribution():
    reference = ["signal", "image", "text", "tabular"]
    phi, n = 0.5, 40_000
    rng = np.random.default_rng(0)
    counts = Counter(tuple(mallows_sample(rng, reference, phi)) for _ in range(n))
    perms = list(itertools.permutations(reference))
    weights = np.array([phi ** _kendall_distance(list(p), reference) for p in perms])
    expected = weights / weights.sum()
    observed = np.array([counts[p] / n for p in perms])
    assert np.abs(observed - expected).max() < 0.01


def test_mallows_extremes():
    rng = np.random.default_rng(1)
    reference = ["a", "b", "c", "d"]
    assert all(mallows_sample(rng, reference, 0.0) == reference for _ in range(20))
    uniform = Counter(tuple(mallows_sample(rng, reference, 1.0)) for _ in range(24_000))
    assert len(uniform) == 24 and max(uniform.values()) < 1200  # each of 24 orders ~1000 times
    with pytest.raises(ValueError, match="phi must be in"):
        mallows_sample(rng, reference, 1.5)


def test_simulated_rankings_rank_present_modalities_and_track_the_truth():
    rng = np.random.default_rng(2)
    n = 300
    truth = pd.DataFrame({"case_id": [f"C{i}" for i in range(n)],
                          **{f"strength_{m}": rng.random(n) for m in ("image", "text", "signal", "tabular")}})
    truth.loc[:49, "strength_image"] = np.nan
    raters = (RaterSpec("good", 0.2), RaterSpec("noisy", 0.8, skip_rate=0.1))
    ranks = simulate_rankings(truth, seed=0, raters=raters)

    assert ranks.groupby("rater").size().to_dict()["good"] == n
    assert 240 <= ranks.groupby("rater").size().to_dict()["noisy"] <= 290
    first50 = ranks[ranks["case_id"].isin(truth["case_id"][:50])]
    assert first50["image"].isna().all()
    assert sorted(first50.iloc[0][["text", "signal", "tabular"]].tolist()) == [1, 2, 3]

    def mean_tau(rater):
        taus = []
        for _, row in ranks[ranks["rater"] == rater].iterrows():
            t = truth.set_index("case_id").loc[row["case_id"]]
            ms = [m for m in ("image", "text", "signal", "tabular") if pd.notna(row[m])]
            taus.append(kendalltau([-t[f"strength_{m}"] for m in ms], [row[m] for m in ms]).statistic)
        return float(np.mean(taus))

    assert mean_tau("good") > 0.75 and 0.05 < mean_tau("noisy") < mean_tau("good") - 0.3


def test_declared_modalities_are_ranked_under_their_names():
    """Rankings depend on the modalities' order, not their names: renaming cardio's four gives the same
    ranks; any other number of modalities is ranked 1..k; a missing strength column is an error."""
    rng = np.random.default_rng(4)
    n = 60
    cardio = ("image", "text", "signal", "tabular")
    cancer = ("histopathology", "genomics", "treatment_notes", "clinical")
    values = {m: rng.random(n) for m in cardio}
    values["text"][:10] = np.nan
    ids = [f"C{i}" for i in range(n)]
    default = simulate_rankings(pd.DataFrame({"case_id": ids, **{f"strength_{m}": v for m, v in values.items()}}), 3)
    renamed = simulate_rankings(
        pd.DataFrame({"case_id": ids, **{f"strength_{c}": values[m] for m, c in zip(cardio, cancer)}}), 3,
        modalities=cancer)
    assert list(renamed.columns) == ["case_id", "rater", *cancer]
    pd.testing.assert_frame_equal(renamed.set_axis(default.columns, axis=1), default)
    assert renamed.loc[renamed["case_id"].isin(ids[:10]), "genomics"].isna().all()

    three = simulate_rankings(pd.DataFrame({"case_id": ids, **{f"strength_{m}": rng.random(n) for m in "abc"}}), 0,
                              modalities=("a", "b", "c"))
    assert (np.sort(three[["a", "b", "c"]].to_numpy(dtype=float), axis=1) == [1, 2, 3]).all()
    with pytest.raises(ValueError, match="strength_genomics"):
        simulate_rankings(pd.DataFrame({"case_id": ids, "strength_histopathology": 1.0}), 0, modalities=cancer[:2])
