"""The synthetic cardiovascular cohort: targets of Table 1, determinism, and that fusion matters."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from neurofusion.data import CohortReader, MODALITIES, validate_cohort
from neurofusion.data.synthetic.cardio import CLASS_PRIOR, draw_cohort, plan_case, synthesize_case
from neurofusion.data.synthetic.generate import generate_cohort
from neurofusion.data.synthetic.labs import CARDIO_FEATURES
from neurofusion.data.synthetic.separability import modality_probe_accuracy
from neurofusion.data.tasks import CARDIO_CLASSES


def _file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def plans():
    return [plan_case(d, seed=7) for d in draw_cohort(6000, seed=7)]


def test_class_balance_and_stratified_split():
    draws = draw_cohort(20_000, seed=3)
    counts = Counter(d.label for d in draws)
    for cls, share in CLASS_PRIOR.items():
        assert counts[cls] / len(draws) == pytest.approx(share, abs=0.012)
    for cls in CARDIO_CLASSES:
        splits = Counter(d.split for d in draws if d.label == cls)
        total = sum(splits.values())
        assert abs(splits["test"] - 0.1 * total) <= 1 and abs(splits["val"] - 0.1 * total) <= 1


def test_missingness_matches_table_1(plans):
    n_missing = np.array([sum(not v for v in p.present.values()) for p in plans])
    assert np.mean(n_missing == 0) == pytest.approx(0.68, abs=0.02)
    assert np.mean(n_missing == 1) == pytest.approx(0.24, abs=0.02)
    assert np.mean(n_missing >= 2) == pytest.approx(0.08, abs=0.012)
    assert n_missing.max() <= 3  # every case keeps at least one modality


def test_missingness_matches_table_1_with_interactions_too():
    """Interaction-decided cases keep their rule's pair and move the missing modalities elsewhere."""
    plans = [plan_case(d, seed=7, interaction_share=0.4) for d in draw_cohort(6000, seed=7)]
    n_missing = np.array([sum(not v for v in p.present.values()) for p in plans])
    assert np.mean(n_missing == 0) == pytest.approx(0.68, abs=0.02)
    assert np.mean(n_missing == 1) == pytest.approx(0.24, abs=0.02)
    assert np.mean(n_missing >= 2) == pytest.approx(0.08, abs=0.012)
    assert all(p.present[m] for p in plans if p.interaction for m in p.interaction.rule.modalities)


def test_missingness_is_informative(plans):
    def echo_missing(label):
        chosen = [p for p in plans if p.draw.label == label]
        return np.mean([not p.present["image"] for p in chosen])

    assert echo_missing("normal") > 1.8 * echo_missing("heart_failure")


def test_evidence_strength_structure(plans):
    strengths = np.array([[p.strength[m] for m in MODALITIES] for p in plans])
    assert (strengths.max(axis=1) >= 0.65).all()  # every case is clear in at least one modality
    # half the cases are planned clear in 2-3 modalities; a weak draw above 0.65 now and then adds a few
    assert 0.5 <= ((strengths >= 0.65).sum(axis=1) >= 2).mean() <= 0.6
    arrhythmia = np.array([[p.strength[m] for m in MODALITIES] for p in plans if p.draw.label == "arrhythmia"])
    signal, image = MODALITIES.index("signal"), MODALITIES.index("image")
    assert (arrhythmia[:, signal] >= 0.65).mean() > 3 * (arrhythmia[:, image] >= 0.65).mean()


def test_distractor_is_weaker_where_the_label_is_clear(plans):
    for plan in plans[:500]:
        if plan.distractor is None:
            continue
        for m in MODALITIES:
            assert plan.findings[m][plan.distractor] <= 0.55 * (1 - plan.strength[m]) + 1e-9


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    generate_cohort("cardio", 40, 11, root / "a", workers=2, progress=False)
    return root


def test_same_seed_gives_an_identical_cohort_whatever_the_workers(generated):
    generate_cohort("cardio", 40, 11, generated / "b", workers=1, progress=False)
    assert _file_hashes(generated / "a") == _file_hashes(generated / "b")


def test_a_split_regenerates_identically_on_its_own(generated):
    generate_cohort("cardio", 40, 11, generated / "test_only", splits=("test",), progress=False)
    full, part = _file_hashes(generated / "a"), _file_hashes(generated / "test_only")
    test_ids = CohortReader(generated / "test_only").case_ids
    assert test_ids == CohortReader(generated / "a").ids("test")
    per_case = [k for k in part if any(f"/{case_id}." in k for case_id in test_ids)]
    assert per_case and all(part[k] == full[k] for k in per_case)


def test_different_seed_differs(generated):
    generate_cohort("cardio", 40, 12, generated / "c", progress=False)
    a, c = _file_hashes(generated / "a"), _file_hashes(generated / "c")
    assert sum(a.get(k) == v for k, v in c.items()) < 3  # at most the constant features.csv


def test_generated_cohort_is_valid_labelled_synthetic_and_multi_site(generated):
    root = generated / "a"
    assert validate_cohort(root) == []
    reader = CohortReader(root)
    assert reader.info["synthetic"] is True and "SYNTHETIC" in (root / "README.md").read_text()
    rankings = reader.rankings()
    assert set(rankings["rater"]) == {"synthetic_rater_A", "synthetic_rater_B", "synthetic_rater_C"}
    assert set(rankings["case_id"]) <= set(reader.ids("test"))
    truth = reader.ground_truth()
    assert truth["case_id"].tolist() == reader.case_ids
    by_site = {}
    for case in reader:
        if case.signal is not None:
            by_site.setdefault(case.site, set()).add(case.signal.fs)
    assert by_site.get("site_b") == {250.0} and by_site.get("site_a") == {500.0}
    files = reader.table.set_index("site")["image_file"]
    assert all(f.endswith(".dcm") for f in files.get("site_c", []) if f)


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_cohort("cardio", 10, 0, tmp_path, progress=False)
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_each_single_modality_is_clearly_below_all_four():
    """Linear probes on simple features: fusion must add at least 12 points over the best single modality."""
    cases = [synthesize_case(d, seed=5)[0] for d in draw_cohort(420, seed=5)]
    scores = modality_probe_accuracy(cases, CARDIO_FEATURES, list(CARDIO_CLASSES))
    best_single = max(scores[m] for m in MODALITIES)
    assert scores["all"] >= 0.78, scores
    assert best_single <= scores["all"] - 0.12, scores
    assert min(scores[m] for m in MODALITIES) > 0.3, scores  # every modality carries some signal
