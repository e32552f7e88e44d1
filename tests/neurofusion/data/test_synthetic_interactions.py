"""Cross-modal interactions planted in the synthetic cardio cohort: share 0 is the additive cohort as before,
the ground truth says what the files show, the share and any subset reproduce, the option is validated, and
an additive probe falls short of one that may combine modalities exactly where interactions decide."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections import Counter

import numpy as np
import pytest

from neurofusion.data import CohortReader
from neurofusion.data.__main__ import main
from neurofusion.data.schema import MODALITIES
from neurofusion.data.synthetic import interactions
from neurofusion.data.synthetic.cardio import draw_cohort, plan_case, render_case
from neurofusion.data.synthetic.generate import generate_cohort
from neurofusion.data.synthetic.interactions import (
    CONJUNCTION,
    DECOY,
    FAINT,
    RULES,
    STRONG,
    WEAK_SCALE,
    Cue,
    Decoy,
    InteractionRule,
    draw_interaction,
    roles_for_label,
)
from neurofusion.data.synthetic.labs import CARDIO_FEATURES, draw_labs
from neurofusion.data.synthetic.separability import additive_and_interaction_probes, modality_scores
from neurofusion.data.tasks import CARDIO_CLASSES

INTERACTION_COLUMNS = ("interaction_rule", "interaction_role", "interaction_pair", "interaction_strength")
# Cases 1-6 of draw_cohort(30, seed=7) as the generator rendered them before interactions existed (commit
# 13a424c): image and ECG sums (float64 of the stored float32 arrays) and hashes of the note, the labs and the
# ground-truth row. Notes, labs and ground truth are the same on any machine; pixel and sample sums within a
# rounding step of a float32 value.
BEFORE_INTERACTIONS = [
    ("CV-00001", 10477.256098014324, 2429.3374045151136, "f3f441440a3b14cd", "a9e5ba1ef3e04181", "ce9844bbdf335b6b"),
    ("CV-00002", None, None, "00fbcca7899c096b", "44136fa355b3678a", "6164a16d5c73c147"),
    ("CV-00003", 9486.928145542728, 1399.2268071804806, "abd2d895c397d23a", "e466f4761556566b", "13439acc6c567003"),
    ("CV-00004", 7671.863718331881, 1795.4066581219736, "f759d98b361a6f4f", "d1473f349befe0bf", "1d8f4ae03d719dfe"),
    ("CV-00005", 8399.829474406364, 2064.0703687777204, "f050cb766a8e6700", "44136fa355b3678a", "6dcf2d8f77494090"),
    ("CV-00006", 3799.050832006592, 173.4884903253892, "06bf3e10f953052f", "5cfea3ed1207ae38", "3edb6ea88d8bd98f"),
]


def _sha(obj) -> str:
    if isinstance(obj, dict):
        obj = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in sorted(obj.items())}
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _fingerprint(rendered) -> tuple:
    case = rendered.case
    truth = {k: v for k, v in rendered.truth.items() if k not in INTERACTION_COLUMNS}
    return (case.case_id,
            None if case.image is None else float(np.asarray(case.image, np.float64).sum()),
            None if case.signal is None else float(np.asarray(case.signal.data, np.float64).sum()),
            _sha(case.note or ""), _sha(dict(case.tabular) if case.tabular else {}), _sha(truth))


def _same_case(a, b) -> bool:
    """Two renderings of a case hold the same arrays (within 1e-9), note, labs and ground truth."""
    def close(x, y):
        return (x is None and y is None) or (x is not None and y is not None and np.allclose(x, y, rtol=0, atol=1e-9))

    return (close(a.case.image, b.case.image)
            and close(None if a.case.signal is None else a.case.signal.data,
                      None if b.case.signal is None else b.case.signal.data)
            and a.case.note == b.case.note and _sha(a.case.tabular or {}) == _sha(b.case.tabular or {})
            and a.truth == b.truth)


def test_share_zero_renders_the_additive_cohort_as_before():
    for draw, (case_id, image_sum, signal_sum, note, labs, truth) in zip(draw_cohort(30, 7), BEFORE_INTERACTIONS):
        got = _fingerprint(render_case(draw, 7, interaction_share=0.0))
        assert got[0] == case_id and got[3:] == (note, labs, truth), case_id
        for value, expected in ((got[1], image_sum), (got[2], signal_sum)):
            assert (value is None) == (expected is None)
            assert value is None or value == pytest.approx(expected, rel=1e-6)


def test_cases_not_decided_by_an_interaction_are_the_additive_ones_and_carry_blank_columns():
    draws = draw_cohort(40, 3)
    decided = 0
    for draw in draws:
        additive, mixed = render_case(draw, 3), render_case(draw, 3, interaction_share=0.5)
        assert additive.truth["interaction_rule"] == "" and additive.truth["interaction_role"] == ""
        assert additive.truth["interaction_pair"] == "" and additive.truth["interaction_strength"] == 0.0
        if mixed.truth["interaction_rule"]:
            decided += 1
            assert not _same_case(additive, mixed)
        else:
            assert _same_case(additive, mixed), draw.case_id
    assert 8 <= decided <= 32  # Binomial(40, 0.5): both kinds occur


def test_decided_share_is_binomial_and_larger_shares_decide_a_superset():
    draws = draw_cohort(4000, 5)
    at = {s: np.array([draw_interaction(5, d.index, d.label, s) is not None for d in draws]) for s in (0.2, 0.35, 0.6)}
    for share, decided in at.items():
        assert abs(decided.mean() - share) <= 4 * math.sqrt(share * (1 - share) / len(draws)), (share, decided.mean())
    assert not (at[0.2] & ~at[0.6]).any() and not (at[0.35] & ~at[0.6]).any()
    assert all(draw_interaction(5, d.index, d.label, 0.0) is None for d in draws[:50])


@pytest.fixture(scope="module")
def all_decided():
    """Plans of 1500 cases, every one decided by an interaction."""
    return [plan_case(d, 9, interaction_share=1.0) for d in draw_cohort(1500, 9)]


def test_every_label_has_a_role_and_each_cue_is_ambiguous_alone(all_decided):
    assert all(roles_for_label(label) for label in CARDIO_CLASSES)
    for rule in RULES:
        assert len({d.label for d in rule.decoys}) == 1  # one decoy label: else an additive model fits the corners
        for cue in rule.cues:
            labels = {p.draw.label for p in all_decided if p.interaction.rule is rule}
            assert rule.label in labels and any(d.label in labels for d in rule.decoys if d.cue is cue)
    roles = Counter((p.interaction.rule.name, p.interaction.role) for p in all_decided)
    assert all(roles[(r.name, role)] > 40 for r in RULES for role in (CONJUNCTION, DECOY)), roles


def test_planned_findings_and_ground_truth_say_the_same(all_decided):
    for plan in all_decided:
        inter, label = plan.interaction, plan.draw.label
        pair = inter.rule.modalities
        assert all(plan.present[m] for m in pair) and plan.distractor is None
        cue_of = {c.modality: c.finding for c in inter.rule.cues}
        for m in MODALITIES:
            if m in pair:
                assert set(plan.findings[m]) == {cue_of[m]}
            else:  # outside the pair: the rule's label, weakly, in conjunctions and decoys alike
                assert set(plan.findings[m]) == {inter.rule.label} and plan.findings[m][inter.rule.label] <= WEAK_SCALE
        levels = {m: plan.findings[m][cue_of[m]] for m in pair}
        if inter.role == CONJUNCTION:
            assert label == inter.rule.label and inter.decoy is None
            band = FAINT if levels[pair[0]] < 0.5 else STRONG
            assert all(band[0] <= v <= band[1] for v in levels.values())  # in proportion: both faint or both strong
            assert inter.strength == min(levels.values())
            assert all(plan.strength[m] == inter.strength for m in pair)  # raters see a tie between the pair
        else:
            assert label == inter.decoy.label != inter.rule.label
            strong, faint = inter.misleading, next(m for m in pair if m != inter.misleading)
            assert STRONG[0] <= levels[strong] <= STRONG[1] and FAINT[0] <= levels[faint] <= FAINT[1]
            assert inter.strength == pytest.approx(levels[strong] - levels[faint])
            assert plan.strength[faint] == inter.strength
            assert plan.strength[strong] == (levels[strong] if cue_of[strong] == label else 0.0)


def test_rendered_cues_follow_their_intensity():
    """R1's troponin is always recorded and is high exactly where its cue is strong; the ECG marks the ischaemic
    territory in ground truth where its cue is shown."""
    troponin = {"faint": [], "strong": []}
    for draw in draw_cohort(160, 4):
        plan = plan_case(draw, 4, interaction_share=1.0)
        if plan.interaction.rule.name != "troponin_with_ischaemic_ecg":
            continue
        rendered = render_case(draw, 4, interaction_share=1.0)
        level = plan.findings["tabular"]["coronary_artery_disease"]
        troponin["strong" if level > 0.5 else "faint"].append(rendered.case.tabular["troponin_ng_l"])
        truth = rendered.truth
        assert truth["interaction_pair"] == "signal+tabular" and truth["interaction_role"] == plan.interaction.role
        if plan.interaction.role == CONJUNCTION:
            assert truth["signal_leads"]  # the ischaemic territory is the label's evidence
    assert min(len(v) for v in troponin.values()) >= 8 and not np.isnan(troponin["faint"] + troponin["strong"]).any()
    assert np.median(troponin["strong"]) > 5 * np.median(troponin["faint"])


def test_rules_reject_inconsistent_declarations():
    with pytest.raises(ValueError, match="cue modality"):
        Cue("echo", "heart_failure", "x")
    with pytest.raises(ValueError, match="cue finding"):
        Cue("image", "normal", "x")
    rule = RULES[0]
    with pytest.raises(ValueError, match="different modalities"):
        dataclasses.replace(rule, cues=(rule.cues[0], rule.cues[0]), decoys=())
    with pytest.raises(ValueError, match="decoy"):
        dataclasses.replace(rule, decoys=(Decoy(rule.label, rule.cues[0], "x"),))
    with pytest.raises(ValueError, match="label must be one of"):
        InteractionRule("x", "normal", rule.cues, "x", ())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        draw_interaction(0, 0, "normal", 1.5)
    with pytest.raises(ValueError, match="unknown cardio label"):
        roles_for_label("flu")


def test_draw_labs_ordered_records_the_test_with_the_same_draws():
    findings = {"coronary_artery_disease": 0.3}
    forced_any = False
    for i in range(40):
        plain = draw_labs(np.random.default_rng(i), "normal", findings)
        forced = draw_labs(np.random.default_rng(i), "normal", findings, ordered=("troponin_ng_l",))
        assert forced.latent == plain.latent and not math.isnan(forced.recorded["troponin_ng_l"])
        others = {k: v for k, v in plain.recorded.items() if k != "troponin_ng_l"}
        assert _sha(others) == _sha({k: v for k, v in forced.recorded.items() if k != "troponin_ng_l"})
        forced_any |= math.isnan(plain.recorded["troponin_ng_l"])
    assert forced_any  # some of these troponins would not have been ordered
    with pytest.raises(ValueError, match="not always ordered"):
        draw_labs(np.random.default_rng(0), "normal", findings, ordered=("sodium_mmol_l",))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("interactions")
    generate_cohort("cardio", 40, 11, root / "all", interaction_share=0.5, workers=2, progress=False)
    return root


def test_a_split_regenerates_identically_with_interactions(generated):
    generate_cohort("cardio", 40, 11, generated / "test_only", splits=("test",), interaction_share=0.5,
                    progress=False)
    full, part = CohortReader(generated / "all"), CohortReader(generated / "test_only")
    ids = part.case_ids
    assert ids == full.ids("test")
    for name in ("images", "signals", "notes"):
        for path in sorted((generated / "test_only" / name).iterdir()):
            assert path.read_bytes() == (generated / "all" / name / path.name).read_bytes(), path.name
    truth_full = full.ground_truth().set_index("case_id").loc[ids].reset_index()
    assert truth_full.equals(part.ground_truth())


def test_generated_cohort_records_the_share_and_the_rules(generated):
    reader = CohortReader(generated / "all")
    generator = reader.info["generator"]
    assert generator["interaction_share"] == 0.5 and "--interaction-share 0.5" in generator["command"]
    truth = reader.ground_truth()
    decided = truth[truth["interaction_rule"] != ""]
    assert 0 < len(decided) < len(truth)
    assert set(decided["interaction_role"]) <= {CONJUNCTION, DECOY}
    assert (truth.loc[truth["interaction_rule"] == "", "interaction_strength"].astype(float) == 0).all()
    assert (decided["interaction_strength"].astype(float) > 0).all()
    readme = (generated / "all" / "README.md").read_text()
    assert f"({len(decided)} of the {len(truth)} cases written)" in readme
    for rule in RULES:
        mine = decided[decided["interaction_rule"] == rule.name]
        assert set(mine["interaction_pair"]) <= {rule.pair}
        counts = Counter(mine["interaction_role"])
        assert (f"`{rule.name}` ({rule.pair})" in readme and rule.rationale in readme
                and f"decided {counts[CONJUNCTION]} conjunction and {counts[DECOY]} decoy case(s)" in readme)


@pytest.mark.parametrize("share", ["1.5", "-0.1", "nan", "half"])
def test_cli_rejects_a_share_outside_0_1(tmp_path, capsys, share):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", "--task", "cardio", "--n", "10", "--out", str(tmp_path / "c"), "--interaction-share", share])
    assert exit_info.value.code == 2 and "--interaction-share" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_generate_rejects_a_bad_share_or_a_task_without_rules(tmp_path, monkeypatch):
    import dataclasses

    from neurofusion.data.synthetic import generate

    with pytest.raises(ValueError, match=r"interaction_share must be a number in \[0, 1\]"):
        generate_cohort("cardio", 10, 0, tmp_path / "a", interaction_share=1.2, progress=False)
    # every task has rules today (cardio, cancer, icu): a generator without them is refused
    monkeypatch.setitem(generate.GENERATORS, "cancer", dataclasses.replace(generate.GENERATORS["cancer"],
                                                                           interactions=False))
    with pytest.raises(ValueError, match=r"tasks with interaction rules \(cardio, icu\), not 'cancer'"):
        generate_cohort("cancer", 10, 0, tmp_path / "b", interaction_share=0.3, progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def _probe_margins(n: int, seed: int, share: float) -> tuple[float, float]:
    """Interaction-probe accuracy minus additive-probe accuracy on the cases an interaction decides at
    ``share``, in the cohort at ``share`` and in the same cohort at share 0 (those cases additive again)."""
    draws = draw_cohort(n, seed)
    mixed = [render_case(d, seed, interaction_share=share) for d in draws]
    decided = np.array([r.truth["interaction_rule"] != "" for r in mixed])
    additive = [render_case(d, seed) if decided[i] else mixed[i] for i, d in enumerate(draws)]
    margins = []
    for cohort in (mixed, additive):
        cases = [r.case for r in cohort]
        labels = np.array([CARDIO_CLASSES.index(c.label) for c in cases])
        scores, present = modality_scores(cases, CARDIO_FEATURES, list(CARDIO_CLASSES), seed=seed)
        correct = additive_and_interaction_probes(scores, present, labels, seed=seed)
        margins.append(float(correct["interaction"][decided].mean() - correct["additive"][decided].mean()))
    return margins[0], margins[1]


def test_an_additive_probe_falls_short_only_where_interactions_decide():
    """Measured over seeds 1-8 with 1200 cases: margin +0.11 to +0.18 at share 0.4 (seed 7: +0.162) and -0.02 to
    +0.03 at share 0 (seed 7: +0.010). 600 cases were too few for the forest (+0.04 to +0.08 against -0.04 to
    +0.04)."""
    with_interactions, additive = _probe_margins(1200, 7, 0.4)
    assert with_interactions >= 0.08, with_interactions
    assert abs(additive) <= 0.05, additive


def test_modality_scores_reject_too_few_cases():
    cases = [render_case(d, 0).case for d in draw_cohort(6, 0)]
    with pytest.raises(ValueError, match="at least 10 cases"):
        modality_scores(cases, CARDIO_FEATURES, list(CARDIO_CLASSES))
    with pytest.raises(ValueError, match="must match"):
        additive_and_interaction_probes(np.zeros((4, 4, 5)), np.ones((3, 4), bool), np.zeros(4, int))


def test_rule_constants_keep_faint_and_strong_apart():
    assert 0 < FAINT[0] < FAINT[1] < STRONG[0] < STRONG[1] <= 1 and interactions.INTERACTION_STREAM not in (0, 1)
