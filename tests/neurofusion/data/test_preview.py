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
