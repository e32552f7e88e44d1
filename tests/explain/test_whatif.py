"""What-if edits (explain/whatif.py): each edit changes exactly what it says, leaves the original case
alone and refuses bad input with a specific message; the re-prediction is the model's own output on the
edited case and its Shapley importance is exact (efficiency)."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest

from explain.whatif import (
    Z_LIMIT,
    drop_leads,
    drop_window,
    edits_of,
    lab_limits,
    negate_phrase,
    strike_phrase,
    what_if,
    with_lab,
)
from neurofusion.data.dataset import prepare_case


@pytest.fixture
def limits(predictor):
    return lab_limits(predictor)


def _numeric(case, limits):
    return next(n for n, lim in limits.items() if lim.kind == "numeric" and n in case.tabular
                and not math.isnan(case.tabular[n]))


def test_the_edited_prediction_is_the_models_output_on_the_edited_case(predictor, complete_case, limits):
    name = _numeric(complete_case, limits)
    lab = with_lab(complete_case, name, limits[name].high, limits)
    for edited in (lab, strike_phrase(lab, 0, 12), drop_leads(lab, ["II", "V5"]), drop_window(lab, 1.0, 2.5)):
        result = what_if(predictor, complete_case, edited)
        np.testing.assert_array_equal(result.edited, predictor.predict([edited])[1][0])
        np.testing.assert_array_equal(result.original, predictor.predict([complete_case])[1][0])
        assert not np.allclose(result.edited, result.original)  # the edit reached the model
        # the importance explains the same cases: its p(target) with every modality is the prediction
        assert result.edited_importance.probability_full[0] == pytest.approx(result.edited[result.target], abs=1e-5)
        assert result.shift == pytest.approx(result.edited[result.target] - result.original[result.target])
    assert result.edits == edits_of(edited) and len(result.edits) == 2


def test_shapley_efficiency_holds_for_the_edited_case(predictor, complete_case):
    edited = drop_leads(strike_phrase(complete_case, 0, 20), ["V1"])
    result = what_if(predictor, complete_case, edited, target=1)
    assert result.target == 1
    for importance in (result.original_importance, result.edited_importance):
        total = importance.shapley[0].sum()
        assert total == pytest.approx(importance.probability_full[0] - importance.probability_none[0], abs=1e-9)
    assert not np.allclose(result.original_importance.shapley, result.edited_importance.shapley)


def test_edits_leave_the_original_case_unchanged(complete_case, limits):
    before = copy.deepcopy(complete_case)
    name = _numeric(complete_case, limits)
    edited = negate_phrase(drop_window(drop_leads(with_lab(complete_case, name, None, limits), ["I"]), 0.5, 1.0), 3, 9)
    assert math.isnan(edited.tabular[name]) and edited is not complete_case
    assert complete_case.note == before.note and complete_case.tabular == before.tabular
    np.testing.assert_array_equal(complete_case.signal.data, before.signal.data)
    assert complete_case.signal.channels == before.signal.channels and complete_case.meta == before.meta
    assert edits_of(complete_case) == [] and len(edits_of(edited)) == 4


def test_bad_lab_values_are_refused_with_specific_messages(complete_case, limits):
    name = _numeric(complete_case, limits)
    high = limits[name].high
    with pytest.raises(ValueError, match=rf"{name} = .* is outside the plausible range .* {Z_LIMIT:g} standard"):
        with_lab(complete_case, name, high * 10 + 1000, limits)
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        with_lab(complete_case, name, float("inf"), limits)
    with pytest.raises(ValueError, match=f"{name} must be a number"):
        with_lab(complete_case, name, "high", limits)
    with pytest.raises(ValueError, match="the model reads no tabular feature 'lactate'"):
        with_lab(complete_case, "lactate", 2.0, limits)
    with pytest.raises(ValueError, match=r"sex must be one of F, M \(or not measured\), got 'X'"):
        with_lab(complete_case, "sex", "X", limits)
    assert with_lab(complete_case, "sex", "F", limits).tabular["sex"] == "F"
    without = dataclasses.replace(complete_case, tabular=None)
    with pytest.raises(ValueError, match="has no labs or demographics to edit"):
        with_lab(without, name, 1.0, limits)


def test_lab_limits_follow_the_checkpoints_training_statistics(predictor, limits):
    from neurofusion.models.model import tabular_normaliser

    normaliser = tabular_normaliser(predictor.model)
    normaliser.mean[0], normaliser.std[0], normaliser.log_scale[0] = 60.0, 10.0, False
    first = predictor.spec.numeric_features[0].name
    fresh = lab_limits(predictor)[first]
    assert (fresh.low, fresh.high) == (0.0, 120.0)  # 60 +- 6 * 10, and a positive quantity stays >= 0


def test_a_dropped_lead_is_absent_from_the_prepared_lead_mask(predictor, complete_case):
    leads = list(predictor.spec.leads)
    before = prepare_case(complete_case, predictor.spec)["lead_mask"]
    edited = drop_leads(complete_case, ["V2", "aVL"])
    mask = prepare_case(edited, predictor.spec)["lead_mask"]
    assert before.all()
    assert [lead for lead, ok in zip(leads, mask.tolist()) if not ok] == ["aVL", "V2"]
    assert "V2" not in edited.signal.channels and edited.signal.data.shape[0] == complete_case.signal.data.shape[0] - 2
    with pytest.raises(ValueError, match="the recording has no lead V7"):
        drop_leads(complete_case, ["V7"])
    assert drop_leads(complete_case, leads).signal is None  # every lead: no ECG, the model's missing embedding
    assert not prepare_case(drop_leads(complete_case, leads), predictor.spec)["present"][2]


def test_striking_a_phrase_changes_the_note_exactly_at_the_offsets(complete_case):
    note = complete_case.note
    start, end = 5, 17
    edited = strike_phrase(complete_case, start, end)
    assert edited.note == note[:start] + note[end:]
    assert edits_of(edited) == [f"struck {note[start:end]!r} (characters {start}-{end})"]
    with pytest.raises(ValueError, match=r"0 <= start < end <= \d+ \(the note's length\), got start 10, end 10"):
        strike_phrase(complete_case, 10, 10)
    with pytest.raises(ValueError, match="got start 0, end 100000"):
        strike_phrase(complete_case, 0, 100000)


def test_negating_a_phrase_inserts_the_stated_negation(complete_case):
    note = "Reports orthopnea. Edema to the knees."
    case = dataclasses.replace(complete_case, note=note)
    mid = negate_phrase(case, note.index("orthopnea"), note.index("orthopnea") + 9)
    assert mid.note == "Reports no orthopnea. Edema to the knees."
    start = note.index("Edema")
    assert negate_phrase(case, start, len(note) - 1, "denies").note == "Reports orthopnea. Denies Edema to the knees."
    with pytest.raises(ValueError, match="'no orthopnea' is already negated; strike it"):
        negate_phrase(mid, mid.note.index("no "), mid.note.index("orthopnea") + 9)
    with pytest.raises(ValueError, match="negation must be one of no, denies, without"):
        negate_phrase(case, 0, 7, "never")


def test_dropping_a_window_flattens_it_to_each_leads_baseline(complete_case):
    signal = complete_case.signal
    edited = drop_window(complete_case, 1.0, 2.0)
    first, last = int(1.0 * signal.fs), int(2.0 * signal.fs)
    baseline = np.median(signal.data, axis=1)
    np.testing.assert_array_equal(edited.signal.data[:, first:last], np.repeat(baseline[:, None], last - first, 1))
    np.testing.assert_array_equal(edited.signal.data[:, :first], signal.data[:, :first])
    np.testing.assert_array_equal(edited.signal.data[:, last:], signal.data[:, last:])
    assert edited.signal.data.shape == signal.data.shape  # not cropped: later beats keep their times
    with pytest.raises(ValueError, match="the window must satisfy 0 <= start < end <="):
        drop_window(complete_case, 2.0, 1.0)
    with pytest.raises(ValueError, match="leaves a flat line, not a missing ECG"):
        drop_window(complete_case, 0.0, signal.duration_s)
    no_ecg = dataclasses.replace(complete_case, signal=None)
    with pytest.raises(ValueError, match="has no ECG to edit"):
        drop_window(no_ecg, 0.0, 1.0)
