"""The case preview renders every modality panel, missing ones included, to a real PNG."""

from __future__ import annotations

import numpy as np
from PIL import Image

from neurofusion.data.__main__ import main


def test_preview_writes_a_png_for_complete_and_incomplete_cases(small_cohort, tmp_path, capsys):
    root, _ = small_cohort
    for case_id in ("P000", "P002"):  # P002 lacks its note and ECG
        out = tmp_path / f"{case_id}.png"
        assert main(["preview", str(root), "--case-id", case_id, "--out", str(out)]) == 0
        with Image.open(out) as image:
            assert image.size == (1120, 720)
            # not a blank canvas: the ink covers a real share of the figure
            assert (np.asarray(image.convert("L")) < 128).sum() > 5000


def test_preview_of_unknown_case_is_a_message(small_cohort, tmp_path, capsys):
    root, _ = small_cohort
    assert main(["preview", str(root), "--case-id", "NOPE", "--out", str(tmp_path / "x.png")]) == 2
    assert "case 'NOPE' is not in the cohort" in capsys.readouterr().err


def test_preview_refuses_to_overwrite_without_force(small_cohort, capsys):
    """--out pointing at one of the cohort's own images must not destroy it."""
    root, _ = small_cohort
    own = root / "images" / "P000.png"
    before = own.read_bytes()
    assert main(["preview", str(root), "--case-id", "P000", "--out", str(own)]) == 2
    assert f"{own} already exists; pass --force to overwrite it" in capsys.readouterr().err
    assert own.read_bytes() == before
    assert main(["preview", str(root), "--case-id", "P000", "--out", str(own), "--force"]) == 0
    with Image.open(own) as image:
        assert image.size == (1120, 720)  # now the preview


def test_preview_creates_missing_folders(small_cohort, tmp_path):
    root, _ = small_cohort
    out = tmp_path / "reports" / "2024" / "P000.png"
    assert main(["preview", str(root), "--case-id", "P000", "--out", str(out)]) == 0
    assert out.is_file()


def test_preview_shows_what_the_reader_could_not_use(small_cohort, tmp_path):
    from neurofusion.data import CohortReader, Signal
    from neurofusion.data.formats import write_wfdb
    from neurofusion.data.preview import render_case_preview

    root, _ = small_cohort
    data = np.random.default_rng(0).normal(0, 0.3, (2, 1000)).astype(np.float32)
    write_wfdb(root / "signals" / "P000.hea", Signal(data, 500, ("ECG1", "ECG2")))
    plain = render_case_preview(CohortReader(root), "P001", tmp_path / "plain.png")
    flagged = render_case_preview(CohortReader(root), "P000", tmp_path / "flagged.png")
    def red_ink(path):
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB")).astype(int)
        return int(((rgb[..., 0] > 150) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)).sum())
    assert red_ink(plain) == 0 and red_ink(flagged) > 200  # the issue is printed in red under the panels


def test_preview_out_that_is_a_folder_is_a_message(small_cohort, tmp_path, capsys):
    root, _ = small_cohort
    assert main(["preview", str(root), "--case-id", "P000", "--out", str(tmp_path), "--force"]) == 2
    assert f"{tmp_path} exists and is not a file" in capsys.readouterr().err
