"""A synthetic 50-gene somatic mutation panel whose prognostic driver mutations are planted and known, so
per-gene attributions can be checked against the genes that carry a case's risk.

Status is binary (1 = a pathogenic somatic mutation reported). Passenger genes are mutated independently at
background frequencies of the order seen in pan-cancer sequencing studies, raised for the primary sites where
they are common (APC in colorectal, PIK3CA and GATA3 in breast, EGFR in lung). The prognostic genes of this
synthetic model (RISK_GENES) are mutated only as planted drivers, so that every such mutation in a cohort is
one whose hazard the ground truth counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

PRIMARY_SITES: tuple[str, ...] = ("breast", "colorectal", "lung", "ovarian")

# The panel, in display order: (symbol, background frequency of a pathogenic mutation).
_PANEL: tuple[tuple[str, float], ...] = (
    ("TP53", 0.0), ("BRCA1", 0.0), ("BRCA2", 0.03), ("KRAS", 0.0), ("PIK3CA", 0.12), ("EGFR", 0.03),
    ("APC", 0.04), ("PTEN", 0.05), ("BRAF", 0.05), ("NRAS", 0.02), ("ARID1A", 0.07), ("KMT2D", 0.06),
    ("KMT2C", 0.06), ("ATM", 0.04), ("CDKN2A", 0.0), ("SMAD4", 0.0), ("STK11", 0.0), ("KEAP1", 0.03),
    ("NF1", 0.05), ("RB1", 0.03), ("FBXW7", 0.03), ("CTNNB1", 0.02), ("ERBB2", 0.03), ("ERBB3", 0.02),
    ("FGFR2", 0.02), ("FGFR3", 0.02), ("GATA3", 0.02), ("CDH1", 0.03), ("MAP3K1", 0.02), ("NOTCH1", 0.03),
    ("PIK3R1", 0.03), ("AKT1", 0.01), ("IDH1", 0.01), ("IDH2", 0.01), ("POLE", 0.0), ("MLH1", 0.02),
    ("MSH2", 0.01), ("MSH6", 0.02), ("PALB2", 0.01), ("CHEK2", 0.02), ("RNF43", 0.03), ("SMAD2", 0.01),
    ("SOX9", 0.02), ("TCF7L2", 0.02), ("ALK", 0.01), ("RET", 0.01), ("MET", 0.02), ("ROS1", 0.01),
    ("NFE2L2", 0.02), ("ESR1", 0.01),
)
GENE_PANEL: tuple[str, ...] = tuple(symbol for symbol, _ in _PANEL)
BACKGROUND_FREQUENCY: dict[str, float] = dict(_PANEL)
# Primary-site frequencies that differ from the background.
SITE_FREQUENCY: dict[str, dict[str, float]] = {
    "breast": {"PIK3CA": 0.34, "GATA3": 0.12, "CDH1": 0.10, "MAP3K1": 0.08, "ERBB2": 0.05},
    "colorectal": {"APC": 0.72, "PIK3CA": 0.18, "BRAF": 0.10, "FBXW7": 0.10, "TCF7L2": 0.08},
    "lung": {"EGFR": 0.14, "KEAP1": 0.15, "NF1": 0.10, "BRAF": 0.06, "MET": 0.04},
    "ovarian": {"NF1": 0.08, "RB1": 0.05, "ARID1A": 0.10, "BRCA2": 0.06},
}
# Log hazard ratio of a planted driver in this synthetic model (not a clinical estimate). TP53 and BRCA1 are
# the paper's high-risk mutations (section 7.2); KRAS, STK11, SMAD4 and CDKN2A are commonly reported as adverse
# in colorectal, lung and pancreatic cancer; POLE exonuclease-domain mutations (ultramutated colorectal
# tumours) are the favourable one.
RISK_GENES: dict[str, float] = {
    "TP53": 2.3, "BRCA1": 2.2, "KRAS": 1.4, "STK11": 1.5, "SMAD4": 1.3, "CDKN2A": 1.3, "POLE": -2.0,
}
HIGH_RISK_GENES: tuple[str, ...] = ("TP53", "BRCA1")
# Which drivers each primary site can carry, with their relative chance of being the one planted.
DRIVER_CHOICES: dict[str, dict[str, float]] = {
    "breast": {"TP53": 0.6, "BRCA1": 0.4},
    "colorectal": {"TP53": 0.4, "KRAS": 0.3, "SMAD4": 0.15, "POLE": 0.15},
    "lung": {"TP53": 0.4, "KRAS": 0.25, "STK11": 0.2, "CDKN2A": 0.15},
    "ovarian": {"TP53": 0.6, "BRCA1": 0.4},
}
# Genomics carries the case's risk (drivers are planted) only at strength >= this.
DRIVER_STRENGTH = 0.5
SECOND_DRIVER_P = 0.25


@dataclass(frozen=True)
class PanelResult:
    """One case's panel: mutations {symbol: 0 or 1} over GENE_PANEL, the planted drivers, and the genomics
    contribution to the log hazard (strength * the drivers' summed log hazard ratios)."""

    mutations: dict[str, int]
    drivers: tuple[str, ...]
    contribution: float


def _check(primary_site: str, strength: float) -> None:
    if primary_site not in PRIMARY_SITES:
        raise ValueError(f"primary site must be one of {PRIMARY_SITES}, got {primary_site!r}")
    if not 0.0 <= strength <= 1.0:  # also rejects NaN
        raise ValueError(f"genomics strength must be in [0, 1], got {strength!r}")


def choose_drivers(rng: np.random.Generator, primary_site: str, strength: float) -> tuple[str, ...]:
    """The drivers planted in a case: none below DRIVER_STRENGTH, else one (a second, adverse one with
    probability SECOND_DRIVER_P) drawn from the primary site's DRIVER_CHOICES. Draws the same numbers
    whatever the strength."""
    _check(primary_site, strength)
    choices = DRIVER_CHOICES[primary_site]
    genes = list(choices)
    first = genes[rng.choice(len(genes), p=np.asarray(list(choices.values())) / sum(choices.values()))]
    second_draw, second_pick = rng.random(), rng.random()
    if strength < DRIVER_STRENGTH:
        return ()
    adverse = [g for g in genes if g != first and RISK_GENES[g] > 0]
    if RISK_GENES[first] > 0 and adverse and second_draw < SECOND_DRIVER_P:
        return (first, adverse[int(second_pick * len(adverse))])
    return (first,)


def genomic_log_hazard(drivers: tuple[str, ...] | list[str]) -> float:
    """Summed log hazard ratio of the given drivers (before scaling by strength)."""
    unknown = [g for g in drivers if g not in RISK_GENES]
    if unknown:
        raise ValueError(f"not prognostic genes of this model: {unknown}; expected names from {sorted(RISK_GENES)}")
    return float(sum(RISK_GENES[g] for g in drivers))


def draw_panel(
    rng: np.random.Generator, primary_site: str, strength: float, drivers: tuple[str, ...] | None = None,
) -> PanelResult:
    """A 50-gene panel for a case of ``primary_site`` whose genomics carries its risk at ``strength``.

    drivers: the planted drivers (default: :func:`choose_drivers`). Passenger statuses are drawn for every
    gene (the same numbers whatever the drivers), then risk genes are set from the drivers alone.
    """
    _check(primary_site, strength)
    if drivers is None:
        drivers = choose_drivers(rng, primary_site, strength)
    frequency = panel_frequencies(primary_site)
    draws = rng.random(len(GENE_PANEL))
    mutations = {
        gene: int(gene in drivers) if gene in RISK_GENES else int(u < frequency[gene])
        for gene, u in zip(GENE_PANEL, draws)
    }
    return PanelResult(mutations, tuple(drivers), strength * genomic_log_hazard(drivers))


def panel_frequencies(primary_site: str) -> Mapping[str, float]:
    """Passenger mutation frequency of every panel gene at ``primary_site`` (0 for RISK_GENES)."""
    if primary_site not in PRIMARY_SITES:
        raise ValueError(f"primary site must be one of {PRIMARY_SITES}, got {primary_site!r}")
    return {**BACKGROUND_FREQUENCY, **SITE_FREQUENCY[primary_site]}
