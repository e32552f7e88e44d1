"""Simulated clinician modality rankings: each synthetic rater is a Mallows-model reading of the true
ranking (modalities ordered by their ground-truth evidence strength), with its own noise level.

These stand in for an expert annotation study; they are labelled synthetic wherever they are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from neurofusion.data.schema import MODALITIES


@dataclass(frozen=True)
class RaterSpec:
    name: str
    phi: float  # Mallows dispersion in (0, 1]: 0 reproduces the true ranking, 1 ranks at random
    skip_rate: float = 0.0  # share of cases this rater did not rank


SYNTHETIC_RATERS: tuple[RaterSpec, ...] = (
    RaterSpec("synthetic_rater_A", phi=0.25),
    RaterSpec("synthetic_rater_B", phi=0.45),
    RaterSpec("synthetic_rater_C", phi=0.7, skip_rate=0.06),
)


def mallows_sample(rng: np.random.Generator, reference: list[str], phi: float) -> list[str]:
    """A ranking drawn from the Mallows model centred on ``reference`` (best first), by repeated
    insertion: item i goes to position j <= i with probability proportional to phi ** (i - j), which gives
    P(ranking) proportional to phi ** (Kendall distance to reference)."""
    if not 0.0 <= phi <= 1.0:
        raise ValueError(f"Mallows phi must be in [0, 1], got {phi}")
    ranking: list[str] = []
    for i, item in enumerate(reference):
        weights = phi ** (i - np.arange(i + 1, dtype=float))
        position = rng.choice(i + 1, p=weights / weights.sum())
        ranking.insert(int(position), item)
    return ranking


def simulate_rankings(
    ground_truth: pd.DataFrame, seed: int, raters: tuple[RaterSpec, ...] = SYNTHETIC_RATERS,
    modalities: tuple[str, ...] = MODALITIES,
) -> pd.DataFrame:
    """Rankings of the present modalities (missing ones blank) for every case of ``ground_truth``
    (case_id + strength_<modality> for each of ``modalities``, NaN = missing; higher = ranked first)
    -> clinician_rankings.csv rows (case_id, rater, one rank column per modality).

    ``modalities``: the declared names in order (cardio's four by default). Random draws depend on their
    order and number, not their names, so renaming them gives the same ranks."""
    modalities = tuple(modalities)
    columns = tuple(f"strength_{m}" for m in modalities)
    absent = [c for c in ("case_id", *columns) if c not in ground_truth.columns]
    if not modalities or absent:
        raise ValueError(f"ground truth needs case_id and strength_<modality> for each of {modalities}; "
                         f"missing {absent or 'modalities'}")
    rows = []
    for r, rater in enumerate(raters):
        rng = np.random.default_rng([seed, 0xA7, r])
        for _, case in ground_truth.iterrows():
            strengths = {m: case[c] for m, c in zip(modalities, columns) if pd.notna(case[c])}
            if rng.random() < rater.skip_rate or not strengths:
                continue
            reference = sorted(strengths, key=strengths.get, reverse=True)
            order = mallows_sample(rng, reference, rater.phi)
            row = {"case_id": case["case_id"], "rater": rater.name}
            row.update({m: (order.index(m) + 1 if m in order else pd.NA) for m in modalities})
            rows.append(row)
    return pd.DataFrame(rows, columns=["case_id", "rater", *modalities])
