"""Synthetic labs: plausible units, disease effects scaled by strength, informative missingness."""

from __future__ import annotations

import numpy as np
import pytest

from neurofusion.data.synthetic.labs import CARDIO_FEATURES, synthesize_labs


def _draw(label, findings, n=400, seed=0):
    rng = np.random.default_rng(seed)
    return [synthesize_labs(rng, label, findings) for _ in range(n)]


def _median(rows, name):
    return float(np.nanmedian([r[name] for r in rows]))


def _missing(rows, name):
    return float(np.mean([np.isnan(r[name]) for r in rows]))


def test_every_feature_present_with_declared_categories():
    row = _draw("normal", {}, n=1)[0]
    assert list(row) == [f.name for f in CARDIO_FEATURES]
    for feature in CARDIO_FEATURES:
        if feature.kind == "categorical":
            assert row[feature.name] in feature.categories


def test_normal_values_sit_in_reference_ranges():
    rows = _draw("normal", {})
    assert _median(rows, "troponin_ng_l") < 26 and _median(rows, "bnp_pg_ml") < 100
    assert 3.5 < _median(rows, "potassium_mmol_l") < 5.0 and 135 < _median(rows, "sodium_mmol_l") < 145
    assert 0.4 < _median(rows, "tsh_miu_l") < 4.0


@pytest.mark.parametrize(
    "finding, lab, factor",
    [("coronary_artery_disease", "troponin_ng_l", 10), ("heart_failure", "bnp_pg_ml", 10),
     ("coronary_artery_disease", "ldl_mg_dl", 1.3)],
)
def test_disease_effect_grows_with_strength(finding, lab, factor):
    low = _median(_draw(finding, {finding: 0.0}), lab)
    mid = _median(_draw(finding, {finding: 0.5}), lab)
    high = _median(_draw(finding, {finding: 1.0}), lab)
    assert low < mid < high and high > factor * low


def test_missingness_is_informative():
    assert _missing(_draw("normal", {}), "troponin_ng_l") > 0.4
    assert _missing(_draw("coronary_artery_disease", {"coronary_artery_disease": 0.2}), "troponin_ng_l") < 0.15
    assert _missing(_draw("arrhythmia", {}), "tsh_miu_l") < _missing(_draw("normal", {}), "tsh_miu_l") - 0.4


def test_lipid_panel_missing_together():
    rows = _draw("normal", {})
    assert all(np.isnan(r["ldl_mg_dl"]) == np.isnan(r["hdl_mg_dl"]) for r in rows)


def test_bad_input():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown finding"):
        synthesize_labs(rng, "normal", {"stroke": 0.5})
    with pytest.raises(ValueError, match=r"intensity must be in \[0, 1\]"):
        synthesize_labs(rng, "normal", {"heart_failure": 1.5})
