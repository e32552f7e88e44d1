"""The predictive-biomarker interactions of the synthetic cancer cohort: share 0 writes the cohort the generator
wrote before interactions (pinned hashes), undecided cases are unchanged at a share above 0, the decided share is
binomial and nests across shares, a split regenerates identically, the ground truth agrees with the rendered
panel and note and with the stated hazard table and Shapley split, the CLI takes the share for cancer, and an
additive probe misses what a probe with cross-modal products reaches only when interactions are planted."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neurofusion.data.__main__ import main
from neurofusion.data.synthetic.cancer import CANCER_MODALITIES, TRUTH_COLUMNS, draw_cohort, plan_case, synthesize_case
from neurofusion.data.synthetic.cancer.interactions import (
    ALTERATION_LOG_HR, INTERACTION_COLUMNS, INTERACTION_LOG_HR, OFF_TARGET_LOG_HR, PAIR, ROLES, RULES, RULES_BY_NAME,
    STRENGTH_RANGE, TARGETED_LOG_HR, draw_biomarker, named_therapy,
)
from neurofusion.data.synthetic.cancer.separability import pair_probe_auc
from neurofusion.data.synthetic.generate import generate_cohort

# generate_cohort("cancer", 40, 11, ..., workers=1) before interactions existed (commit 644c82a): file hashes,
# the treatment notes (name + text, in name order) hashed together, and the sum of all tiles' stored levels.
BEFORE = {
    "cohort.csv": "dbddc3c4dd41346b37400da330ff7f2ed255b17936b1a7c37bc7e874956ba139",
    "ground_truth.csv": "6321c2ab669d71fe241a6580dd6d25a7038591050e6de3c7fce7a32c5ba494ae",
    "clinician_rankings.csv": "f06a8f69c812f6b10b69c9034b66c0faf0795beaed37131dd2aee9194c021de0",
    "features.csv": "aef89b374eca54662238f02bbcefb111fbf003992ba646a9da3a23020e70d3b0",
}
BEFORE_NOTES = "f271839a0a22e78ef7cbd83b93ae17f99e4abd367bc9dc69a29c9e43145e2967"
BEFORE_TILES = (31, 1009902843)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_share_zero_writes_the_cohort_as_before(tmp_path):
    root = generate_cohort("cancer", 40, 11, tmp_path / "c", workers=1, interaction_share=0.0, progress=False)
    for name, digest in BEFORE.items():
        assert _sha((root / name).read_bytes()) == digest, name
    notes = sorted((root / "treatment_notes").iterdir())
    assert _sha(b"".join(p.name.encode() + p.read_bytes() for p in notes)) == BEFORE_NOTES
    tiles = sorted((root / "histopathology").iterdir())
    total = sum(int(np.asarray(Image.open(p)).astype(np.int64).sum()) for p in tiles)
    assert len(tiles) == BEFORE_TILES[0] and total == pytest.approx(BEFORE_TILES[1], rel=1e-6)
    assert "interaction" not in (root / "README.md").read_text() and "interaction_share" not in (
        root / "cohort.json").read_text()


def test_undecided_cases_are_unchanged_and_decided_ones_differ_only_in_the_pair():
    decided = 0
    for draw in draw_cohort(40, 3):
        additive, mixed = synthesize_case(draw, 3), synthesize_case(draw, 3, interaction_share=0.5)
        assert list(additive.truth) == list(TRUTH_COLUMNS)
        assert list(mixed.truth) == [*TRUTH_COLUMNS, *INTERACTION_COLUMNS]
        assert np.array_equal(additive.histopathology, mixed.histopathology) and additive.clinical.keys() == \
            mixed.clinical.keys()
        plan = mixed.plan.interaction
        if plan is None:
            assert mixed.truth["interaction_rule"] == "" and mixed.truth["interaction_term"] == 0.0
            assert {k: v for k, v in mixed.truth.items() if k not in INTERACTION_COLUMNS} == additive.truth
            assert (mixed.treatment_notes, mixed.genomics, mixed.time, mixed.event) == (
                additive.treatment_notes, additive.genomics, additive.time, additive.event)
            continue
        decided += 1
        assert mixed.treatment_notes.startswith(additive.treatment_notes)  # the therapy line is appended
        assert {g: v for g, v in mixed.genomics.items() if g != plan.rule.gene} == \
            {g: v for g, v in additive.genomics.items() if g != plan.rule.gene}
        for m in CANCER_MODALITIES:
            delta = mixed.plan.contribution[m] - additive.plan.contribution[m]
            assert delta == pytest.approx(plan.contribution.get(m, 0.0), abs=1e-12)
        assert all(mixed.present[m] for m in PAIR)
    assert 8 <= decided <= 32  # Binomial(40, 0.5)


def test_decided_share_is_binomial_and_nests_across_shares():
    draws = draw_cohort(4000, 5)
    sites = [str(plan_case(d, 5).clinical.latent["primary_site"]) for d in draws]
    at = {s: np.array([draw_biomarker(5, d.index, site, s) is not None for d, site in zip(draws, sites)])
          for s in (0.2, 0.35, 0.6)}
    for share, decided in at.items():
        assert abs(decided.mean() - share) <= 4 * math.sqrt(share * (1 - share) / len(draws)), (share, decided.mean())
    assert not (at[0.2] & ~at[0.6]).any() and not (at[0.35] & ~at[0.6]).any()
    with pytest.raises(ValueError, match=r"interaction share must be in \[0, 1\]"):
        draw_biomarker(5, 0, "lung", float("nan"))
    with pytest.raises(ValueError, match="no biomarker rule for primary site"):
        draw_biomarker(5, 0, "pancreas", 0.5)


@pytest.fixture(scope="module")
def all_decided():
    """Plans of 2000 cases, every one decided by its site's rule."""
    return [plan_case(d, 9, interaction_share=1.0) for d in draw_cohort(2000, 9)]


def test_hazard_table_crosses_and_shapley_split_sums_to_it(all_decided):
    assert TARGETED_LOG_HR < 0 < OFF_TARGET_LOG_HR < ALTERATION_LOG_HR  # a qualitative (crossing) interaction
    roles = Counter((p.interaction.rule.name, p.interaction.role) for p in all_decided)
    assert all(roles[(r.name, role)] >= 15 for r in RULES for role in ROLES.values()), roles
    table = {(0, 0): 0.0, (1, 0): ALTERATION_LOG_HR, (0, 1): OFF_TARGET_LOG_HR, (1, 1): TARGETED_LOG_HR}
    for p in all_decided:
        it = p.interaction
        assert it.rule.primary_site == p.clinical.latent["primary_site"]
        assert STRENGTH_RANGE[0] <= it.strength <= STRENGTH_RANGE[1]
        assert it.log_hazard == pytest.approx(it.strength * table[(it.alteration, it.therapy)], abs=1e-12)
        assert it.term == pytest.approx(it.strength * INTERACTION_LOG_HR * it.alteration * it.therapy, abs=1e-12)
        assert sum(it.contribution.values()) == pytest.approx(it.log_hazard, abs=1e-12)
        # Shapley with "neither" as baseline: the average of each player's marginal gains.
        v = {k: it.strength * t for k, t in table.items()}
        a, t = it.alteration, it.therapy
        assert it.contribution["genomics"] == pytest.approx(0.5 * (v[(a, 0)] + v[(a, t)] - v[(0, t)]), abs=1e-12)
        assert all(p.present[m] for m in PAIR)


def test_ground_truth_agrees_with_the_rendered_panel_and_note():
    cases = [synthesize_case(d, 2, interaction_share=0.6) for d in draw_cohort(60, 2)]
    seen = Counter()
    for c in cases:
        truth, plan = c.truth, c.plan.interaction
        assert truth["linear_predictor"] == pytest.approx(sum(c.plan.contribution.values()), abs=1e-3)
        assert truth["linear_predictor"] == pytest.approx(
            sum(truth[f"contribution_{m}"] for m in CANCER_MODALITIES), abs=5e-4)
        if plan is None:
            assert named_therapy(c.treatment_notes) is None and truth["interaction_pair"] == ""
            continue
        rule = RULES_BY_NAME[truth["interaction_rule"]]
        seen[truth["interaction_role"]] += 1
        assert truth["interaction_role"] == ROLES[(truth["interaction_alteration"], truth["interaction_therapy"])]
        assert truth["interaction_pair"] == "genomics+treatment_notes"
        assert c.genomics[rule.gene] == truth["interaction_alteration"]
        assert named_therapy(c.treatment_notes) == (rule.therapy if truth["interaction_therapy"] else None)
        assert rule.gene not in c.treatment_notes and "amplification" not in c.treatment_notes  # A stays in the panel
        assert truth["interaction_log_hazard"] == pytest.approx(plan.log_hazard, abs=1e-4)
        assert truth["interaction_term"] == pytest.approx(plan.term, abs=1e-4)
    assert len(seen) == 4, seen


def test_note_evidence_spans_still_point_at_the_response():
    for d in draw_cohort(30, 6):
        c = synthesize_case(d, 6, interaction_share=1.0)
        spans = [s for s in c.truth["text_evidence_spans"].split() if s]
        for span, phrase in zip(spans, c.truth["text_evidence"].split(" | ") if spans else []):
            a, b = map(int, span.split(":"))
            assert c.treatment_notes[a:b] == phrase


def test_a_split_regenerates_identically_with_interactions(tmp_path):
    full = generate_cohort("cancer", 40, 4, tmp_path / "full", workers=1, interaction_share=0.5, progress=False)
    part = generate_cohort("cancer", 40, 4, tmp_path / "test", splits=("test",), workers=1, interaction_share=0.5,
                           progress=False)
    read = lambda root: pd.read_csv(root / "ground_truth.csv", dtype=str, keep_default_na=False)  # noqa: E731
    whole, test = read(full), read(part)
    pd.testing.assert_frame_equal(whole[whole["case_id"].isin(test["case_id"])].reset_index(drop=True), test)
    for case_id in test["case_id"]:
        a, b = full / "treatment_notes" / f"{case_id}.txt", part / "treatment_notes" / f"{case_id}.txt"
        assert a.exists() == b.exists() and (not a.exists() or a.read_bytes() == b.read_bytes())
    assert (whole["interaction_rule"] != "").sum() > 0


def test_cli_generates_a_cancer_cohort_with_a_share(tmp_path):
    out = tmp_path / "cli"
    main(["generate", "--task", "cancer", "--n", "16", "--seed", "3", "--interaction-share", "0.5", "--out",
          str(out), "--workers", "1"])
    info = json.loads((out / "cohort.json").read_text())
    assert info["generator"]["interaction_share"] == 0.5
    assert "--interaction-share 0.5" in info["generator"]["command"]
    truth = pd.read_csv(out / "ground_truth.csv", dtype=str, keep_default_na=False)
    assert list(truth.columns[-len(INTERACTION_COLUMNS):]) == list(INTERACTION_COLUMNS)
    readme = (out / "README.md").read_text()
    assert "predictive biomarkers" in readme and all(f"`{r.name}`" in readme for r in RULES)
    assert f"({(truth['interaction_rule'] != '').sum()} of the 16 cases written)" in readme


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_additive_probe_misses_the_biomarker_only_when_planted(seed):
    """Measured on 3000 cases, seeds 0-7: gap on decided cases +0.030..+0.051 at share 0.4 (additive AUC
    0.885..0.902); at share 0, on all cases, -0.002..-0.001."""
    planted = pair_probe_auc([plan_case(d, seed, 0.4) for d in draw_cohort(3000, seed)])
    additive = pair_probe_auc([plan_case(d, seed, 0.0) for d in draw_cohort(3000, seed)])
    assert planted["n_scored"] > 900 and planted["gap"] >= 0.02, planted
    assert abs(additive["gap"]) <= 0.01, additive
