"""Which cases a study asks its raters to rank: every case, one split, or a seeded stratified sample (of the
whole cohort or of one split).

A stratified sample of n allocates n over the strata (class x missingness pattern; for a survival cohort,
event x missingness pattern) in proportion to their sizes by the largest-remainder method, so each stratum
gets its proportional share rounded down or up, then draws that many cases from each stratum with the seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from neurofusion.data.cohort import CaseSequence
from neurofusion.data.schema import SPLITS
from neurofusion.studies.records import SELECTIONS
from neurofusion.studies.schema import StudyError


def select_cases(cohort: CaseSequence, how: str, *, split: str | None = None, n: int | None = None,
                 seed: int = 0) -> list[str]:
    """The case ids a study selects from ``cohort`` (a CohortReader), in cohort order.

    ``how``: "all", "split" (``split``: train / val / test) or "stratified" (``n`` cases, seeded; drawn from
    ``split`` when given, else from the whole cohort)."""
    _check_cohort(cohort)
    if how not in SELECTIONS:
        raise StudyError(f"case selection must be one of {', '.join(SELECTIONS)}, got {how!r}")
    if how == "all":
        return list(cohort.case_ids)
    if how == "split":
        return _split_ids(cohort, split)
    if n is None or isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise StudyError(f"a stratified selection needs n, the number of cases (a whole number), got {n!r}")
    pool = list(cohort.case_ids) if split is None else _split_ids(cohort, split)
    where = "the cohort's" if split is None else f"the {split} split's"
    if not 1 <= n <= len(pool):
        raise StudyError(f"n must be between 1 and {where} {len(pool)} cases, got {n}")
    strata = _strata(cohort).loc[pool]
    sizes = strata.value_counts(sort=False)
    quota = _largest_remainder(sizes.to_numpy(), int(n))
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for key, take in zip(sizes.index, quota):
        members = strata.index[strata == key].to_numpy()
        chosen.update(rng.choice(members, size=int(take), replace=False).tolist())
    return [case_id for case_id in cohort.case_ids if case_id in chosen]


def describe_selection(how: str, *, split: str | None = None, n: int | None = None, seed: int = 0,
                       outcome: str = "classification") -> str:
    """The selection in words, as a study records it."""
    if how == "all":
        return "all cases"
    if how == "split":
        return f"the {split} split"
    if how == "stratified":
        by = "event" if outcome == "survival" else "class"
        of = "" if split is None else f" of the {split} split"
        return f"stratified sample of {n}{of} by {by} and missingness pattern (seed {seed})"
    raise StudyError(f"case selection must be one of {', '.join(SELECTIONS)}, got {how!r}")


def _check_cohort(cohort: CaseSequence) -> None:
    from neurofusion.data.timed import TimedCohortReader

    if isinstance(cohort, TimedCohortReader):
        raise StudyError("studies rank cases; time-stamped (ICU) cohorts are not supported yet")


def _split_ids(cohort: CaseSequence, split: str | None) -> list[str]:
    if split not in SPLITS:
        raise StudyError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    ids = cohort.ids(split)
    if not ids:
        raise StudyError(f"the cohort has no cases in the {split} split; choose another split or all cases")
    return ids


def _strata(cohort: CaseSequence) -> pd.Series:
    """case_id -> stratum key: "<class or event>|<missingness pattern as 0/1 per modality>"."""
    table = cohort.table.set_index("case_id")
    outcome = table["event"].astype(int).astype(str) if getattr(cohort, "outcome", "") == "survival" \
        else table["label"].astype(str)
    pattern = cohort.availability().astype(int).astype(str).agg("".join, axis=1)
    return (outcome + "|" + pattern.reindex(table.index)).rename("stratum")


def _largest_remainder(sizes: np.ndarray, n: int) -> np.ndarray:
    """Allocate ``n`` over strata of ``sizes`` in proportion (Hamilton's method): floors, then one more to the
    largest remainders (ties: the larger stratum first, then stratum order)."""
    exact = sizes * n / sizes.sum()
    quota = np.floor(exact).astype(int)
    left = n - int(quota.sum())
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quota[i]), -sizes[i], i))
    for i in order[:left]:
        quota[i] += 1
    return quota
