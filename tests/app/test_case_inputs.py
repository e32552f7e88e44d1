"""The case page shows what the model could not use and what is unlike its training data: an ECG whose
channels name no lead is "unusable" with the reason (never "ECG ✓"), and a flagged modality is a warning
with its distance, threshold and false-alarm rate."""

from __future__ import annotations

import app.state
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
    assert any(w.startswith("This case's ECG cannot be used") and f"{case_id}.hea" in w for w in warnings), warnings


def test_flagged_modality_is_a_visible_warning(tmp_path, monkeypatch):
    root, ids = _small_cohort(tmp_path)
    explain = app.state.explain_case

    def with_ood(predictor, case, settings):  # the OOD result as CaseExplanation.ood carries it
        explanation = explain(predictor, case, settings)
        explanation.ood = {
            "image": {"distance": 57.31, "threshold": 31.9, "flagged": True, "false_alarm_rate": 0.011},
            "text": {"distance": 12.0, "threshold": 29.4, "flagged": False, "false_alarm_rate": 0.009},
        }
        return explanation

    monkeypatch.setattr(app.state, "explain_case", with_ood)
    at = _app(root, ids[0])
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert ("The echo image is unlike the training data: distance 57.3 > threshold 31.9, which 1.1 % of "
            "held-out training cases exceed.") in " ".join(warnings), warnings
    assert any(c.value == "Within the training data's range: clinical note." for c in at.caption)
