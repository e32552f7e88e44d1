"""The synthetic 50-gene panel: real symbols, background frequencies as stated, prognostic genes mutated only
as planted drivers, and the genomics contribution to the hazard as stated."""

from __future__ import annotations

import numpy as np
import pytest

from neurofusion.data.synthetic.cancer import GENE_PANEL, PRIMARY_SITES, RISK_GENES, choose_drivers, draw_panel
from neurofusion.data.synthetic.cancer.genomics import DRIVER_CHOICES, DRIVER_STRENGTH, panel_frequencies


def test_panel_is_fifty_distinct_cancer_genes():
    assert len(GENE_PANEL) == 50 and len(set(GENE_PANEL)) == 50
    assert {"TP53", "BRCA1", "BRCA2", "KRAS", "PIK3CA", "EGFR", "APC", "PTEN"} <= set(GENE_PANEL)
    assert set(RISK_GENES) <= set(GENE_PANEL)
    assert RISK_GENES["TP53"] > 0 and RISK_GENES["BRCA1"] > 0
    for site, choices in DRIVER_CHOICES.items():
        assert set(choices) <= set(RISK_GENES), site


@pytest.mark.parametrize("primary", PRIMARY_SITES)
def test_passenger_frequencies_match_the_stated_ones(primary):
    n = 4000
    rng = np.random.default_rng([1, PRIMARY_SITES.index(primary)])
    counts = np.zeros(len(GENE_PANEL))
    for _ in range(n):
        panel = draw_panel(rng, primary, 0.1)
        counts += [panel.mutations[g] for g in GENE_PANEL]
    expected = panel_frequencies(primary)
    for gene, count in zip(GENE_PANEL, counts):
        p = expected[gene]
        assert abs(count / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-9, (gene, count / n, p)


def test_risk_genes_are_mutated_exactly_when_planted():
    rng = np.random.default_rng(7)
    planted = 0
    for i in range(600):
        primary, strength = PRIMARY_SITES[i % 4], float(rng.uniform())
        panel = draw_panel(rng, primary, strength)
        for gene in RISK_GENES:
            assert panel.mutations[gene] == int(gene in panel.drivers)
        assert bool(panel.drivers) == (strength >= DRIVER_STRENGTH)
        assert set(panel.drivers) <= set(DRIVER_CHOICES[primary])
        assert panel.contribution == pytest.approx(strength * sum(RISK_GENES[g] for g in panel.drivers))
        planted += bool(panel.drivers)
    assert 200 < planted < 400


def test_second_drivers_are_adverse_and_distinct():
    rng = np.random.default_rng(3)
    pairs = [d for d in (choose_drivers(rng, "lung", 0.9) for _ in range(2000)) if len(d) == 2]
    assert 0.15 < len(pairs) / 2000 < 0.3
    assert all(a != b and RISK_GENES[b] > 0 for a, b in pairs)


def test_strength_changes_only_the_drivers():
    """The same generator state gives the same passengers at any strength (the draws do not depend on it)."""
    weak = draw_panel(np.random.default_rng(5), "colorectal", 0.2)
    strong = draw_panel(np.random.default_rng(5), "colorectal", 0.9)
    passengers = [g for g in GENE_PANEL if g not in RISK_GENES]
    assert [weak.mutations[g] for g in passengers] == [strong.mutations[g] for g in passengers]
    assert weak.drivers == () and strong.drivers


def test_rejects_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="primary site"):
        draw_panel(rng, "prostate", 0.5)
    with pytest.raises(ValueError, match="strength"):
        draw_panel(rng, "lung", 1.2)
    with pytest.raises(ValueError, match="prognostic"):
        draw_panel(rng, "lung", 0.8, drivers=("EGFR",))
