"""torch Dataset/collate: shapes, resampling, lead mapping, presence and tabular masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurofusion.data import (
    MODALITIES,
    STANDARD_LEADS,
    Case,
    CaseDataset,
    CohortError,
    CohortReader,
    Collate,
    InputSpec,
    Signal,
)
from neurofusion.data.dataset import prepare_case, prepare_image, prepare_signal, resample
from tests.conftest import CLASSES, FEATURES


@pytest.fixture
def spec() -> InputSpec:
    return InputSpec(classes=tuple(CLASSES), features=tuple(FEATURES), image_size=32, signal_fs=250, signal_seconds=2)


def test_batch_shapes_and_presence(small_cohort, spec):
    reader = CohortReader(small_cohort[0])
    lengths = []
    collate = Collate(tokenize=lambda notes: lengths.append(len(notes)) or {"input_ids": torch.zeros(len(notes), 5)})
    batch = collate([CaseDataset(reader, spec)[i] for i in range(len(reader))])
    assert batch.image.shape == (6, 1, 32, 32)
    assert batch.signal.shape == (6, 12, 500)
    assert batch.numeric.shape == (6, 2) and batch.categorical.shape == (6, 1)
    assert batch.present.tolist() == [list(c.available.values()) for c in small_cohort[1]]
    assert batch.labels.tolist() == [i % 2 for i in range(6)]
    assert lengths == [6] and batch.tokens["input_ids"].shape == (6, 5)
    # missing modalities: zero-filled slots, False in present, no leads, no tabular values
    assert batch.image[1].abs().sum() == 0 and not batch.present[1, 0]
    assert not batch.lead_mask[2].any() and batch.notes[2] is None
    assert not batch.numeric_mask[3].any() and batch.categorical[3].item() == 0
    # troponin missing for every third case even when tabular is present
    assert batch.numeric_mask[:, 1].tolist() == [False, True, True, False, True, True]
    assert batch.categorical[0].item() == 2  # "M" is the second category -> code 2


def test_resample_preserves_a_sine():
    t = np.arange(5000) / 500
    sine = np.sin(2 * np.pi * 5 * t)[None].astype(np.float32)
    down = resample(sine, 500, 250)
    t2 = np.arange(2500) / 250
    assert down.shape == (1, 2500)
    assert np.abs(down[0, 50:-50] - np.sin(2 * np.pi * 5 * t2[50:-50])).max() < 0.01


def test_signal_leads_mapped_by_name_and_padded(spec):
    data = np.stack([np.full(1000, 1.0), np.full(1000, 2.0)]).astype(np.float32)  # 1 s at 1000 Hz
    signal, mask = prepare_signal(Signal(data, 1000, ("v1", "II")), spec)
    assert signal.shape == (12, 500)
    assert mask.tolist() == [lead in ("II", "V1") for lead in STANDARD_LEADS]
    assert signal[STANDARD_LEADS.index("V1"), 100:200].mean().item() == pytest.approx(1.0, abs=1e-3)
    assert signal[STANDARD_LEADS.index("II"), 100:200].mean().item() == pytest.approx(2.0, abs=1e-3)
    assert signal[:, 260:].abs().sum() == 0  # 1 s of a 2 s window: zero padding after 250 samples


def test_image_volume_and_aspect_ratio():
    volume = np.zeros((5, 20, 40), dtype=np.float32)
    volume[2] = np.linspace(0.8, 1.0, 800).reshape(20, 40)  # only the middle slice is bright
    volume[2, 0, :10] = 0.0
    out = prepare_image(volume, 16)
    assert out.shape == (1, 16, 16)
    # a 20x40 slice padded to 40x40: the top and bottom quarters are padding
    assert out[0, :3].max() < 0.05 and out[0, 6:10].mean() > 0.9


def test_physical_units_are_scaled_like_png():
    ct = np.linspace(-1000, 2000, 64 * 64, dtype=np.float32).reshape(64, 64)
    png = (ct + 1000) / 3000
    assert torch.allclose(prepare_image(ct, 32), prepare_image(png, 32), atol=1e-5)


def test_unknown_category_is_an_error(spec):
    from neurofusion.data.dataset import prepare_tabular

    with pytest.raises(ValueError, match="feature sex: 'X' is not one of"):
        prepare_tabular({"sex": "X"}, spec)


def test_signal_lead_aliases_reach_their_lead(spec):
    data = np.stack([np.full(500, k + 1.0) for k in range(4)]).astype(np.float32)  # 2 s at 250 Hz
    signal, mask = prepare_signal(Signal(data, 250, ("MLII", "ECG_V1", "Lead aVR", "ECG1")), spec)
    assert mask.tolist() == [lead in ("II", "V1", "aVR") for lead in STANDARD_LEADS]
    for lead, value in (("II", 1.0), ("V1", 2.0), ("aVR", 3.0)):
        assert signal[STANDARD_LEADS.index(lead)].mean().item() == pytest.approx(value, abs=1e-5)
    assert signal[~mask].abs().sum() == 0  # ECG1 (ambiguous) is nowhere


def _case(**parts) -> Case:
    return Case(case_id="U7", label="normal", split="test", **parts)


def test_signal_with_no_mappable_lead_is_not_present(spec):
    """Channels named ECG1/ECG2 used to reach the model as a flat zero signal that counted as present."""
    unusable = Signal(np.ones((2, 500), np.float32), 250, ("ECG1", "ECG2"))
    item = prepare_case(_case(signal=unusable), spec)
    assert _case(signal=unusable).available["signal"]  # the case holds a recording...
    assert not item["present"][MODALITIES.index("signal")]  # ...that the model cannot use
    assert not item["lead_mask"].any()
    usable = Signal(np.ones((2, 500), np.float32), 250, ("ECG1", "MLII"))
    assert prepare_case(_case(signal=usable), spec)["present"][MODALITIES.index("signal")]


def test_tabular_under_other_names_only_is_not_present(spec):
    other = prepare_case(_case(tabular={"Age": 61.0, "trop": 40.0}), spec)
    assert not other["present"][MODALITIES.index("tabular")]
    some = prepare_case(_case(tabular={"age": 61.0, "trop": 40.0}), spec)
    assert some["present"][MODALITIES.index("tabular")] and some["numeric_mask"].tolist() == [True, False]


def test_unknown_category_names_the_case_line_column_and_expected_values(spec):
    case = _case(tabular={"sex": "male"}, meta={"cohort_csv": "/data/c/cohort.csv", "cohort_line": 9})
    with pytest.raises(CohortError) as err:
        prepare_case(case, spec)
    assert str(err.value) == ("/data/c/cohort.csv, line 9, case U7, field 'sex': 'male' is not one of the "
                              "categories the model knows (F, M); fix the value, or leave it empty if it was "
                              "not measured")
    assert (err.value.case_id, err.value.line, err.value.field) == ("U7", 9, "sex")
    with pytest.raises(CohortError, match=r"^case U7, field 'sex': 'male' is not one of the categories"):
        prepare_case(_case(tabular={"sex": "male"}), spec)  # an in-memory case: no file, no line


def test_text_where_the_model_reads_a_number_names_the_case(spec):
    with pytest.raises(CohortError, match=r"case U7, field 'age': 'sixty' is not a number \(the model reads "
                                          r"this feature as numeric\)"):
        prepare_case(_case(tabular={"age": "sixty"}), spec)
