"""The train/val/test split every synthetic cohort uses: the paper's 80-10-10, stratified by a case-level
draw (the class for cardio, the stage for cancer, the admission diagnosis for ICU) so each split has every
stratum in proportion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPLIT_SHARE = {"train": 0.8, "val": 0.1, "test": 0.1}


def stratified_splits(rng: np.random.Generator, strata: np.ndarray, values: Sequence[str]) -> np.ndarray:
    """(N,) split name per case: within each stratum value, in ``values`` order, a random permutation's
    first round(10 %) are test, the next round(10 %) val, the rest train. ``rng`` is consumed in that
    order, so a cohort regenerates identically."""
    splits = np.empty(len(strata), dtype=object)
    for value in values:
        members = rng.permutation(np.flatnonzero(strata == value))
        n_test = int(round(SPLIT_SHARE["test"] * len(members)))
        n_val = int(round(SPLIT_SHARE["val"] * len(members)))
        splits[members[:n_test]] = "test"
        splits[members[n_test:n_test + n_val]] = "val"
        splits[members[n_test + n_val:]] = "train"
    return splits


def draw_strata(n: int, seed: int, salt: int, values: Sequence[str], prior: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The cohort-level draw every generator starts with: ``n`` cases' stratum (class, stage, admission
    diagnosis) from ``prior`` over ``values``, then a split stratified by it (:func:`stratified_splits`),
    from one generator seeded by (seed, salt) -> (strata (N,), splits (N,))."""
    if n < 1:
        raise ValueError(f"cohort size must be at least 1, got {n}")
    rng = np.random.default_rng([seed, salt])
    strata = rng.choice(values, size=n, p=prior)
    return strata, stratified_splits(rng, strata, values)
