"""Simulated clinician modality rankings: each synthetic rater perceives every present modality's
ground-truth evidence strength through Gaussian noise and a personal style, and ranks by what it perceives.

The rater model (a Thurstone-style reading of the truth). For a case with strengths s_m of its present
modalities, rater r perceives

    p_m = s_m + style_r(m) + noise_r * z_m,   z_m ~ N(0, 1) independent per case, rater and modality

and ranks the modalities by p, highest first. ``style_r`` is the rater's lean, a bias declared by modality
name (one rater leans on imaging, one on labs, one is neutral); ``noise_r`` is in strength units.

Ties. Two modalities perceived within the rater's ``tie_margin`` of each other are a tie: the rater cannot
tell them apart and, as a reader does, puts the modality they lean on first (larger style bias first), else
the one read first in the record (the declared modality order). Ties are grouped from the top: the
strongest remaining perception leads a group of every remaining modality within tie_margin below it. A
planted conjunction (both modalities of a pair given the same, highest strength) is therefore, at noise 0,
ranked first and second in the rater's preferred order; with noise it is a tie whenever the two
perceptions fall within the margin.

Skips. Each rater leaves a share ``skip_rate`` of cases unranked (no row), drawn independently per case.

Calibration (an assumption, not a measured value). Expert clinicians ranking which evidence drove a
diagnosis agree substantially but not perfectly; we assume their mean pairwise Kendall tau is 0.60, the
lower edge of Landis and Koch's "substantial" band (0.61-0.80) rounded down. Those bands were proposed
for kappa, not for Kendall's tau; reading them on the tau scale is part of the assumption. No expert
inter-rater tau for modality rankings was measured for this project. :func:`calibrate_noise` finds the
noise at which the default raters reach that target on a cohort's ground truth; the constants below are
its results on the bundled sample cohorts (sample_data/<task>/ground_truth.csv, CALIBRATION_SEEDS; the ICU
raters' ICU_NOISE is in neurofusion.data.synthetic.icu.raters). The previous Mallows raters (phi 0.25 /
0.45 / 0.7) agreed with each other at tau 0.16 on the cardio sample, too little for a model-vs-rater tau
to mean anything.

These stand in for an expert annotation study; they are labelled synthetic wherever they are written.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import ndtri

from neurofusion.data.schema import MODALITIES

CALIBRATION_SEEDS = (0, 1, 2, 3, 4)  # rankings drawn per noise level by calibrate_noise
TARGET_TAU = 0.60  # assumed expert mean pairwise Kendall tau (see the module docstring)
DEFAULT_NOISE = 0.155  # calibrate_noise(cardio sample ground truth, interaction share 0.4, TARGET_TAU)
DEFAULT_STYLE_BIAS = 0.10  # a rater's lean, on the [0, 1] strength scale of cardio and ICU
DEFAULT_TIE_MARGIN = 0.02  # perceptions closer than this are a tie, on the [0, 1] strength scale
SKIP_RATES = (0.0, 0.03, 0.06)  # raters A, B, C
# Cancer raters read |contribution to the log hazard| (spread about 2.5 times the [0, 1] strengths'), so
# their lean and tie margin are 2.5 times cardio's and their noise is calibrated on that scale.
CANCER_SCALE = 2.5
CANCER_NOISE = 0.302  # calibrate_noise(cancer sample |contribution| strengths, TARGET_TAU) with CANCER_RATERS


@dataclass(frozen=True)
class RaterSpec:
    """One simulated rater: ``noise`` (sd of the perception noise, strength units, >= 0), ``style`` (a bias
    added to each named modality's perceived strength; any mapping, stored as sorted (name, bias) pairs; a
    name the cohort does not declare is an error when ranking), ``skip_rate`` (share of cases left unranked,
    in [0, 1]) and ``tie_margin`` (perceptions within it are a tie, >= 0)."""

    name: str
    noise: float = DEFAULT_NOISE
    style: tuple[tuple[str, float], ...] = field(default=())
    skip_rate: float = 0.0
    tie_margin: float = DEFAULT_TIE_MARGIN

    def __post_init__(self) -> None:
        style = self.style.items() if isinstance(self.style, Mapping) else self.style
        object.__setattr__(self, "style", tuple(sorted((str(m), float(b)) for m, b in style)))
        for label, value, top in (("noise", self.noise, math.inf), ("skip_rate", self.skip_rate, 1.0),
                                  ("tie_margin", self.tie_margin, math.inf)):
            if not (isinstance(value, (int, float)) and 0.0 <= value <= top):
                raise ValueError(f"rater {self.name!r}: {label} must be in [0, {top}], got {value!r}")

    def bias(self, modality: str) -> float:
        """The style bias this rater adds to ``modality``'s perceived strength (0 if it has none)."""
        return dict(self.style).get(modality, 0.0)


def synthetic_raters(imaging: str | None, labs: str | None, noise: float,
                     bias: float = DEFAULT_STYLE_BIAS, tie_margin: float = DEFAULT_TIE_MARGIN,
                     ) -> tuple[RaterSpec, ...]:
    """The three simulated raters of a task: A leans on ``imaging``, B on ``labs`` (each by ``bias``; None =
    no lean), C is neutral; all with ``noise`` and ``tie_margin``; skip rates SKIP_RATES."""
    styles = ({imaging: bias} if imaging else {}, {labs: bias} if labs else {}, {})
    return tuple(RaterSpec(f"synthetic_rater_{letter}", noise, style, skip, tie_margin)
                 for letter, style, skip in zip("ABC", styles, SKIP_RATES))


SYNTHETIC_RATERS: tuple[RaterSpec, ...] = synthetic_raters("image", "tabular", DEFAULT_NOISE)
CANCER_RATERS: tuple[RaterSpec, ...] = synthetic_raters(
    "histopathology", "genomics", CANCER_NOISE, DEFAULT_STYLE_BIAS * CANCER_SCALE, DEFAULT_TIE_MARGIN * CANCER_SCALE)


def rank_perceived(perceived: np.ndarray, rater: RaterSpec, modalities: tuple[str, ...]) -> np.ndarray:
    """(M,) perceived strengths (NaN = modality absent) -> (M,) ranks 1..k of the k present ones (NaN for
    absent), ties within ``rater.tie_margin`` resolved by the rater's lean, then declared order."""
    ranks = np.full(len(modalities), np.nan)
    remaining = sorted(np.flatnonzero(~np.isnan(perceived)), key=lambda j: (-perceived[j], j))
    position = 1
    while remaining:
        leader = perceived[remaining[0]]
        tied = [j for j in remaining if leader - perceived[j] <= rater.tie_margin]
        for j in sorted(tied, key=lambda j: (-rater.bias(modalities[j]), j)):
            ranks[j] = position
            position += 1
        remaining = [j for j in remaining if j not in tied]
    return ranks


def simulate_rankings(
    ground_truth: pd.DataFrame, seed: int, raters: tuple[RaterSpec, ...] = SYNTHETIC_RATERS,
    modalities: tuple[str, ...] = MODALITIES,
) -> pd.DataFrame:
    """Rankings of the present modalities (missing ones blank) for every case of ``ground_truth``
    (case_id + strength_<modality> for each of ``modalities``, NaN = missing; higher = ranked first; other
    columns are ignored) -> clinician_rankings.csv rows (case_id, rater, one rank column per modality),
    by rater, then case. Each rater's style must name declared modalities.

    Draws: rater r's generator is seeded (seed, 0xA7, r) and gives each case, in row order, one uniform for
    the skip and one normal per declared modality (drawn whether or not it is present), so a case's draws
    depend on its row position and the modalities' number, not their names or the noise level."""
    modalities = tuple(modalities)
    columns = tuple(f"strength_{m}" for m in modalities)
    absent = [c for c in ("case_id", *columns) if c not in ground_truth.columns]
    if not modalities or absent:
        raise ValueError(f"ground truth needs case_id and strength_<modality> for each of {modalities}; "
                         f"missing {absent or 'modalities'}")
    for rater in raters:
        unknown = [m for m, _ in rater.style if m not in modalities]
        if unknown:
            raise ValueError(f"rater {rater.name!r} leans on {unknown}, which this cohort does not declare; "
                             f"style names must be among {modalities}")
    strengths = ground_truth[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)  # (N, M)
    case_ids = ground_truth["case_id"].tolist()
    n, m = strengths.shape
    rows = []
    for r, rater in enumerate(raters):
        uniforms = np.random.default_rng([seed, 0xA7, r]).random((n, 1 + m))  # (N, 1 + M): skip, then z per modality
        z = ndtri(np.clip(uniforms[:, 1:], 1e-16, 1 - 1e-16))
        style = np.array([rater.bias(name) for name in modalities])
        perceived = strengths + style + rater.noise * z  # NaN stays NaN: an absent modality is not ranked
        for i in range(n):
            if uniforms[i, 0] < rater.skip_rate or np.isnan(perceived[i]).all():
                continue
            ranks = rank_perceived(perceived[i], rater, modalities)
            row = {"case_id": case_ids[i], "rater": rater.name}
            row.update({name: (int(rank) if not np.isnan(rank) else pd.NA) for name, rank in zip(modalities, ranks)})
            rows.append(row)
    return pd.DataFrame(rows, columns=["case_id", "rater", *modalities])


def mean_pairwise_tau(rankings: pd.DataFrame, modalities: tuple[str, ...]) -> float:
    """Mean Kendall tau-b between every two raters on every case both ranked, over the modalities both
    ranked (pairs sharing fewer than two, or with one side all tied, are left out): the inter-rater
    agreement ``explain.agreement.inter_rater`` reports, computed here without it (neurofusion does not
    import explain). NaN when no pair is defined."""
    modalities = list(modalities)
    values = rankings[modalities].astype("Float64").to_numpy(dtype=float, na_value=np.nan)  # (rows, M)
    total, count = 0.0, 0
    upper = np.triu_indices(len(modalities), 1)
    for _, index in rankings.groupby("case_id", sort=False).indices.items():
        case = values[index]
        diffs = np.sign(case[:, :, None] - case[:, None, :])[:, upper[0], upper[1]]  # (raters, M(M-1)/2), NaN if absent
        for a, b in itertools.combinations(range(len(case)), 2):
            both = ~np.isnan(diffs[a]) & ~np.isnan(diffs[b])
            sa, sb = diffs[a][both], diffs[b][both]
            denominator = math.sqrt(float((sa != 0).sum()) * float((sb != 0).sum()))
            if denominator > 0:
                total += float((sa * sb).sum()) / denominator
                count += 1
    return total / count if count else float("nan")


def calibrate_noise(ground_truth: pd.DataFrame, target_tau: float = TARGET_TAU, *,
                    raters: tuple[RaterSpec, ...] = SYNTHETIC_RATERS, modalities: tuple[str, ...] = MODALITIES,
                    seeds: Sequence[int] = CALIBRATION_SEEDS, low: float = 0.0, high: float = 3.0,
                    tolerance: float = 1e-3) -> float:
    """The noise (every rater's, their styles, skips and tie margins kept) at which the raters' mean pairwise
    tau on ``ground_truth``, averaged over the rankings drawn with each of ``seeds`` (one draw of a 200-case
    cohort varies by about +-0.03), is ``target_tau``: bisection over [low, high] until the bracket is
    narrower than ``tolerance``, with the same seeds (the same normal draws, scaled) at every step, so the
    answer is deterministic. Raises ValueError when the target is not bracketed (agreement at ``low`` below
    it or at ``high`` above it)."""
    if not -1.0 < target_tau < 1.0 or not 0.0 <= low < high or tolerance <= 0:
        raise ValueError(f"need -1 < target_tau < 1, 0 <= low < high and tolerance > 0; got target_tau "
                         f"{target_tau}, low {low}, high {high}, tolerance {tolerance}")

    if not seeds:
        raise ValueError("calibrate_noise needs at least one seed")

    def agreement(noise: float) -> float:
        noisy = tuple(dataclasses.replace(r, noise=noise) for r in raters)
        return float(np.mean([mean_pairwise_tau(simulate_rankings(ground_truth, seed, noisy, modalities), modalities)
                              for seed in seeds]))

    at_low, at_high = agreement(low), agreement(high)
    if not at_high <= target_tau <= at_low:
        raise ValueError(f"target tau {target_tau} is not between the agreement at noise {high} ({at_high:.3f}) "
                         f"and at noise {low} ({at_low:.3f}); widen [low, high]")
    while high - low > tolerance:
        middle = (low + high) / 2
        if agreement(middle) >= target_tau:
            low = middle
        else:
            high = middle
    return round((low + high) / 2, 3)
