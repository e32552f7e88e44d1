"""`generate --task cancer` and the bundled sample_data/cancer: the folder read back holds exactly the cases
the synthesiser renders (declared modalities, survival outcome, tabular columns assigned to genomics and
clinical, missing modalities as absent files / empty cells), validates clean, and regenerates identically
from any subset of splits; the committed sample matches its recorded command and stays under 15 MB."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neurofusion.data import CohortReader
from neurofusion.data.__main__ import main as cli
from neurofusion.data.cohort import check_cohort
from neurofusion.data.synthetic.cancer import (
    CANCER_MODALITIES, CLINICAL_COLUMNS, GENE_PANEL, TRUTH_COLUMNS, cancer_readme, draw_cohort,
    simulate_cancer_rankings, synthesize_case,
)
from neurofusion.data.synthetic.generate import generate_cohort

N, SEED = 30, 4
NAMES = ("histopathology", "genomics", "treatment_notes", "clinical")
SAMPLE = Path(__file__).resolve().parents[3] / "sample_data" / "cancer"
PALETTE_LEVELS = 7  # palette quantisation (measured at most 6 of 255 on the sample) + one level of rounding


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cancer") / "full"
    generate_cohort("cancer", N, SEED, root, workers=2, progress=False)
    return root


@pytest.fixture(scope="module")
def rendered():
    return {d.case_id: synthesize_case(d, SEED) for d in draw_cohort(N, SEED)}


def _raw(root: Path, name: str = "cohort.csv") -> pd.DataFrame:
    return pd.read_csv(root / name, dtype=str, keep_default_na=False)


def _tile(value: np.ndarray) -> np.ndarray:
    """A decoded (3, H, W) colour image in [0, 1] -> (H, W, 3) stored levels 0..255."""
    return np.rint(np.moveaxis(value, 0, -1).astype(np.float64) * 255).astype(int)


def _check_case(reader: CohortReader, c, image_levels: int) -> None:
    """Case ``c`` (a CancerCase) as the cohort holds it: every value decoded equal to the rendered one
    (the tile within ``image_levels`` stored levels), missing modalities absent."""
    case = reader.load(c.case_id)
    assert (case.split, case.site, case.label) == (c.split, c.site, "")
    assert case.outcome == {"time": c.time, "event": int(c.event)}
    assert case.available == c.present
    if c.present["histopathology"]:
        image = case.value("histopathology")
        assert image.shape == (3, *c.histopathology.shape[:2]) and image.dtype == np.float32
        assert np.abs(_tile(image) - c.histopathology.astype(int)).max() <= image_levels
    if c.present["treatment_notes"]:
        assert case.value("treatment_notes") == c.treatment_notes
    if c.present["genomics"]:
        assert case.value("genomics") == {g: float(v) for g, v in c.genomics.items()}
    if c.present["clinical"]:
        pd.testing.assert_series_equal(pd.Series(case.value("clinical"), dtype=object),
                                       pd.Series(c.clinical, dtype=object).map(_as_read), check_exact=True)


def _as_read(value):
    """A rendered clinical value as the reader gives it: numbers as float (NaN = not recorded), labels as str."""
    return value if isinstance(value, str) else float(value)


def test_every_case_reads_back_as_synthesised(cohort, rendered):
    reader = CohortReader(cohort)
    assert sorted(reader.case_ids) == sorted(rendered)
    for c in rendered.values():
        _check_case(reader, c, image_levels=0)  # lossless RGB PNG, rendered on this machine: exact


def test_missing_modalities_are_absent_files_and_empty_cells(cohort, rendered):
    raw = _raw(cohort).set_index("case_id")
    missing_seen = dict.fromkeys(NAMES, 0)
    for case_id, c in rendered.items():
        row = raw.loc[case_id]
        for name, present in c.present.items():
            missing_seen[name] += not present
            assert row[f"has_{name}"] == str(int(present))
        for name, suffix in (("histopathology", ".png"), ("treatment_notes", ".txt")):
            exists = (cohort / name / f"{case_id}{suffix}").is_file()
            assert exists == c.present[name] and (row[f"{name}_file"] != "") == exists
        genes, clinical = row[list(GENE_PANEL)], row[list(CLINICAL_COLUMNS)]
        assert (genes == "").all() != c.present["genomics"]
        if c.present["genomics"]:
            assert genes.isin(["0", "1"]).all()
        if not c.present["clinical"]:
            assert (clinical == "").all()
    assert all(missing_seen.values()), missing_seen  # 30 cases miss each modality at least once


def test_survival_outcome_declared_modalities_and_tabular_assignment(cohort):
    reader = CohortReader(cohort)
    assert reader.outcome == "survival" and reader.classes == ()
    assert reader.modality_names == NAMES == CANCER_MODALITIES
    assert [(m.kind, m.colour) for m in reader.modalities] == [
        ("image", True), ("tabular", False), ("text", False), ("tabular", False)]
    assert reader.tabular_features == {"genomics": list(GENE_PANEL), "clinical": list(CLINICAL_COLUMNS)}
    assert reader.extra_columns == []
    features = reader.features
    assert all(features[g].kind == "numeric" and features[g].modality == "genomics" for g in GENE_PANEL)
    assert {c: features[c].kind for c in CLINICAL_COLUMNS} == {
        "age": "numeric", "sex": "categorical", "stage": "categorical", "ecog": "numeric",
        "primary_site": "categorical", "bmi": "numeric"}
    assert features["stage"].categories == ("I", "II", "III", "IV")
    head = list(_raw(cohort).columns[:5])
    assert head == ["case_id", "split", "time", "event", "site"]
    info = json.loads((cohort / "cohort.json").read_text())
    assert (info["task"], info["outcome"], info["horizon"], info["synthetic"]) == ("cancer", "survival", 60.0, True)
    command = f"python -m neurofusion.data generate --task cancer --n {N} --seed {SEED} --out <folder>"
    assert info["generator"]["command"] == command
    readme = (cohort / "README.md").read_text()
    assert "SYNTHETIC DATA" in readme and info["generator"]["command"] in readme


def test_validate_passes_without_errors_or_warnings(cohort, capsys):
    check = check_cohort(cohort)
    assert check.errors == [] and check.warnings == []
    assert cli(["validate", str(cohort)]) == 0
    assert "valid (30 cases" in capsys.readouterr().out


def test_ground_truth_and_rankings_use_the_declared_names(cohort, rendered):
    reader = CohortReader(cohort)
    truth = reader.ground_truth()
    assert tuple(truth.columns) == TRUTH_COLUMNS
    raw = _raw(cohort, "ground_truth.csv").set_index("case_id")
    for case_id, c in rendered.items():
        for column in TRUTH_COLUMNS[1:]:
            expected = c.truth[column]
            cell = raw.loc[case_id, column]
            if expected is None or expected == "":
                assert cell == "", (case_id, column)
            elif isinstance(expected, str):
                assert cell == expected, (case_id, column)
            else:
                assert float(cell) == float(expected), (case_id, column)
    rankings = reader.rankings()
    assert list(rankings.columns) == ["case_id", "rater", *NAMES]
    test_ids = reader.ids("test")
    assert sorted(rankings["case_id"].unique()) == sorted(test_ids)
    expected = simulate_cancer_rankings(pd.DataFrame([rendered[i].truth for i in reader.case_ids if i in test_ids]),
                                        seed=SEED)
    pd.testing.assert_frame_equal(rankings.reset_index(drop=True),
                                  expected.astype({m: "Int64" for m in NAMES}).reset_index(drop=True))


def test_a_split_alone_regenerates_the_same_cases(cohort, tmp_path):
    part = generate_cohort("cancer", N, SEED, tmp_path / "test_only", splits=("test",), workers=1, progress=False)
    full_reader, reader = CohortReader(cohort), CohortReader(part)
    ids = reader.case_ids
    assert ids == full_reader.ids("test") and set(reader.table["split"]) == {"test"}
    full = _raw(cohort).set_index("case_id").loc[ids]
    pd.testing.assert_frame_equal(_raw(part).set_index("case_id"), full)
    for name in ("ground_truth.csv", "clinician_rankings.csv"):
        a, b = _raw(part, name), _raw(cohort, name)
        pd.testing.assert_frame_equal(a, b[b["case_id"].isin(ids)].reset_index(drop=True))
    files = sorted(p.relative_to(part).as_posix() for p in part.rglob("*") if p.parent != part)
    assert files and all((part / f).read_bytes() == (cohort / f).read_bytes() for f in files)


def test_palette_storage_is_colour_within_its_tolerance(tmp_path, capsys):
    root = tmp_path / "palette"
    assert cli(["generate", "--task", "cancer", "--n", "12", "--seed", "9", "--colour-format", "palette",
                "--workers", "1", "--out", str(root)]) == 0
    assert "wrote 12 cases" in capsys.readouterr().out
    reader = CohortReader(root)
    assert "--colour-format palette" in reader.info["generator"]["command"]
    tiles = sorted((root / "histopathology").glob("*.png"))
    assert tiles
    for path in tiles:
        with Image.open(path) as image:
            assert image.mode == "P"
    for d in draw_cohort(12, 9):
        _check_case(reader, synthesize_case(d, 9), image_levels=PALETTE_LEVELS)
    with pytest.raises(ValueError, match="has none"):
        generate_cohort("cardio", 10, 0, tmp_path / "cardio", colour_format="palette", progress=False)


def _disk_bytes(root: Path, block: int = 4096) -> int:
    """What ``du`` counts on a file system of ``block``-byte blocks: every file rounded up to whole blocks."""
    return sum(math.ceil(p.stat().st_size / block) * block for p in root.rglob("*") if p.is_file())


def test_sample_matches_its_recorded_command_and_size():
    assert _disk_bytes(SAMPLE) <= 15 * 2**20
    reader = CohortReader(SAMPLE)
    gen = reader.info["generator"]
    args = shlex.split(gen["command"])
    assert args[:4] == ["python", "-m", "neurofusion.data", "generate"]
    options = dict(zip(args[4::2], args[5::2]))
    assert options == {"--task": "cancer", "--n": str(gen["n"]), "--seed": str(gen["seed"]),
                       "--splits": ",".join(gen["splits"]), "--colour-format": gen["colour_format"],
                       "--out": "<folder>"}
    draws = [d for d in draw_cohort(gen["n"], gen["seed"]) if d.split in gen["splits"]]
    assert reader.case_ids == [d.case_id for d in draws] and len(draws) == 200
    assert (SAMPLE / "README.md").read_text(encoding="utf-8") == cancer_readme(reader.info, len(draws))
    # a few cases, among them ones missing modalities: decoded values equal the recorded command's
    picks = draws[::40]
    truth = _raw(SAMPLE, "ground_truth.csv").set_index("case_id")
    for d in picks:
        c = synthesize_case(d, gen["seed"])
        _check_case(reader, c, image_levels=PALETTE_LEVELS if gen["colour_format"] == "palette" else 1)
        assert truth.loc[d.case_id, "driver_genes"] == c.truth["driver_genes"]
        assert float(truth.loc[d.case_id, "linear_predictor"]) == c.truth["linear_predictor"]
    assert not all(all(synthesize_case(d, gen["seed"]).present.values()) for d in picks)
