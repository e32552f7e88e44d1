"""The case page shows what the model could not use and what is unlike its training data: an ECG whose
channels name no lead is "unusable" with the reason (never "ECG ✓"), and a flagged modality is a warning
with its distance, threshold and false-alarm rate (the demo checkpoint's reference)."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image

from tests.app.test_faults import _app, _small_cohort


def test_ecg_with_no_recognisable_lead_is_shown_as_unusable(tmp_path):
    root, ids = _small_cohort(tmp_path)
    case_id = ids[0]
    header = root / "signals" / f"{case_id}.hea"
    lines = header.read_text().splitlines()
    renamed = [lines[0]] + [" ".join(line.split()[:-1] + [f"ECG{k}"]) for k, line in enumerate(lines[1:], 1)]
    header.write_text("\n".join(renamed) + "\n")
    at = _app(root, case_id)
    assert not at.exception, [e.value for e in at.exception]
    modalities = next(m.value for m in at.markdown if m.value.startswith("**Modalities:**"))
    assert "ECG ⚠ unusable" in modalities and "ECG ✓" not in modalities
    warnings = [w.value for w in at.warning]
    assert any("signal cannot be used" in w and "'ECG1'" in w for w in warnings), warnings
    at.session_state["case.modality_tab"] = "ECG (unusable)"  # the tab says why, once opened
    at.run()
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("This case's ECG cannot be used") and f"{case_id}.hea" in w for w in warnings), warnings


def test_image_unlike_the_training_data_is_a_visible_warning(tmp_path):
    root, ids = _small_cohort(tmp_path)
    case_id = ids[0]
    png = root / "images" / f"{case_id}.png"
    shape = np.asarray(Image.open(png)).shape
    checkerboard = (np.indices(shape).sum(0) // 8 % 2 * 255).astype(np.uint8)  # no echo looks like this
    Image.fromarray(checkerboard, mode="L").save(png)
    at = _app(root, case_id)
    assert not at.exception, [e.value for e in at.exception]
    flagged = [w.value for w in at.warning if "unlike the training data" in w.value]
    assert len(flagged) == 1 and flagged[0].startswith("The echo image is unlike the training data"), flagged
    found = re.search(r"distance ([\d.]+) > threshold ([\d.]+), which ([\d.]+) % of held-out", flagged[0])
    distance, threshold, rate = map(float, found.groups())
    assert distance > threshold > 0 and 0 <= rate < 10
    assert any(c.value.startswith("Within the training data's range: clinical note") for c in at.caption)
