"""Training augmentation: identity at zero strength, presence and lead masks respected, geometry of the
image rotation, period change of the time warp, and synonym swaps that keep negations and numbers."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from neurofusion.data.augment import (
    CLINICAL_SYNONYMS,
    AugmentConfig,
    _PATTERN,
    _rotate_translate,
    _time_warp,
    augment_batch,
    replace_synonyms,
)
from neurofusion.data.dataset import Batch

NOTES_DIR = Path(__file__).resolve().parents[3] / "sample_data" / "cardio" / "notes"
NEGATION = re.compile(r"\b(?:no|not|denies|without|negative)\b", re.IGNORECASE)
ZERO = AugmentConfig(0, 0, 0, 0, 0, 0)
FS = 250.0

_GROUP = {p.lower(): {q.lower() for q in group} for group in CLINICAL_SYNONYMS.values() for p in group}


def _batch(b: int = 6, s: int = 24, n_leads: int = 12, t: int = 500, seed: int = 0) -> Batch:
    """Cases with every modality, except case 1 (no image, no note) and case 2 (no signal); case 3 lacks
    leads 9-11. Missing slots are zero-filled as the collate does."""
    g = torch.Generator().manual_seed(seed)
    present = torch.ones(b, 4, dtype=torch.bool)
    present[1, [0, 1]] = False
    present[2, 2] = False
    image = torch.rand(b, 1, s, s, generator=g)
    image[1] = 0
    lead_mask = torch.ones(b, n_leads, dtype=torch.bool)
    lead_mask[2] = False
    lead_mask[3, 9:] = False
    signal = torch.randn(b, n_leads, t, generator=g) * lead_mask[:, :, None]
    notes = [f"Case {i}: h/o HTN and DM2, denies SOB. Heart: RRR, no m/r/g. BP 130/80." for i in range(b)]
    notes[1] = None
    return Batch(
        case_ids=[f"C{i}" for i in range(b)], present=present, image=image, signal=signal, lead_mask=lead_mask,
        numeric=torch.zeros(b, 2), numeric_mask=torch.zeros(b, 2, dtype=torch.bool),
        categorical=torch.zeros(b, 1, dtype=torch.long), notes=notes, labels=torch.arange(b),
    )


def _centroid(image: torch.Tensor) -> tuple[float, float]:
    """(S, S) -> intensity-weighted (row, col)."""
    rows, cols = torch.meshgrid(torch.arange(image.shape[0]), torch.arange(image.shape[1]), indexing="ij")
    mass = image.sum()
    return float((rows * image).sum() / mass), float((cols * image).sum() / mass)


def _dot_image(s: int, row: float, col: float) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    return torch.exp(-((rows - row) ** 2 + (cols - col) ** 2) / (2 * 1.2**2))[None, None]  # (1, 1, S, S)


def _period(x: np.ndarray) -> float:
    """Period in samples of a sine, from its linearly interpolated rising zero crossings."""
    k = np.flatnonzero((x[:-1] < 0) & (x[1:] >= 0))
    crossings = k + x[k] / (x[k] - x[k + 1])
    return float((crossings[-1] - crossings[0]) / (len(crossings) - 1))


def _sine_batch(b: int, t: int = 2500, hz: float = 5.0) -> Batch:
    batch = _batch(b=b, t=t)
    sine = torch.sin(2 * math.pi * hz * torch.arange(t) / FS + 0.3)
    batch.signal = (sine.expand(b, 12, t) * batch.lead_mask[:, :, None]).contiguous()
    return batch


# --------------------------------------------------------------------------- batch-level invariants


def test_zero_config_is_identity():
    batch = _batch()
    out = augment_batch(batch, ZERO, np.random.default_rng(0))
    assert torch.equal(out.image, batch.image) and torch.equal(out.signal, batch.signal)
    assert all(a is b for a, b in zip(out.notes, batch.notes)) and out.notes is not batch.notes


def test_input_batch_is_not_mutated():
    batch = _batch()
    image, signal, notes = batch.image.clone(), batch.signal.clone(), list(batch.notes)
    out = augment_batch(batch, AugmentConfig(text_synonym_p=1.0), np.random.default_rng(0))
    assert torch.equal(batch.image, image) and torch.equal(batch.signal, signal) and batch.notes == notes
    assert not torch.equal(out.image, image) and not torch.equal(out.signal, signal) and out.notes != notes


def test_missing_modalities_and_unrecorded_leads_are_untouched():
    batch = _batch()
    out = augment_batch(batch, AugmentConfig(text_synonym_p=1.0), np.random.default_rng(1))
    assert torch.equal(out.image[1], batch.image[1]) and out.image[1].abs().sum() == 0
    assert out.notes[1] is None
    assert torch.equal(out.signal[2], batch.signal[2])  # signal missing although its slot exists
    assert out.signal[3, 9:].abs().sum() == 0 and out.signal[3, :9].abs().sum() > 0
    assert torch.equal(out.present, batch.present) and torch.equal(out.lead_mask, batch.lead_mask)


def test_missing_slots_are_kept_even_when_not_zero():
    batch = _batch()
    batch.image[1] = 0.5  # whatever a missing slot holds, the model never reads it and augmentation never writes it
    batch.signal[2] = 1.0
    batch.lead_mask[2] = True
    out = augment_batch(batch, AugmentConfig(), np.random.default_rng(1))
    assert torch.equal(out.image[1], batch.image[1]) and torch.equal(out.signal[2], batch.signal[2])


def test_shapes_dtypes_and_image_range():
    batch = _batch()
    extreme = AugmentConfig(image_rotation_deg=180, image_translation=0.5, image_intensity=0.9)
    out = augment_batch(batch, extreme, np.random.default_rng(2))
    for name in ("image", "signal"):
        assert getattr(out, name).shape == getattr(batch, name).shape
        assert getattr(out, name).dtype == getattr(batch, name).dtype
    assert out.image.min() >= 0 and out.image.max() <= 1 and torch.isfinite(out.signal).all()


def test_seed_reproduces_a_batch_and_seeds_differ():
    batch, config = _batch(), AugmentConfig(text_synonym_p=0.5)
    a, b = (augment_batch(batch, config, np.random.default_rng(7)) for _ in range(2))
    c = augment_batch(batch, config, np.random.default_rng(8))
    assert torch.equal(a.image, b.image) and torch.equal(a.signal, b.signal) and a.notes == b.notes
    assert not torch.equal(a.image, c.image) and not torch.equal(a.signal, c.signal) and a.notes != c.notes


def test_bad_config_and_tokenised_batch_are_rejected():
    with pytest.raises(ValueError, match="signal_amplitude"):
        AugmentConfig(signal_amplitude=-0.1)
    with pytest.raises(ValueError, match="image_intensity"):
        AugmentConfig(image_intensity=1.0)
    batch = _batch()
    batch.tokens = {"input_ids": torch.zeros(6, 4, dtype=torch.long)}
    with pytest.raises(ValueError, match="before tokenisation"):
        augment_batch(batch, AugmentConfig(), np.random.default_rng(0))
    assert augment_batch(batch, replace(AugmentConfig(), text_synonym_p=0), np.random.default_rng(0)).tokens


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("angle", [90.0, 30.0, -45.0])
def test_rotation_moves_a_dot_by_the_angle(angle):
    s, d = 33, 10.0
    centre = (s - 1) / 2
    image = _dot_image(s, centre, centre + d)  # right of the centre
    out = _rotate_translate(image, np.array([angle]), np.zeros((1, 2)))[0, 0]
    rad = math.radians(angle)  # counter-clockwise on screen, where rows grow downwards
    expected = (centre - d * math.sin(rad), centre + d * math.cos(rad))
    assert np.allclose(_centroid(out), expected, atol=0.25)


def test_translation_moves_a_dot_by_the_fraction_of_the_side():
    s = 40
    out = _rotate_translate(_dot_image(s, 20.0, 20.0), np.array([0.0]), np.array([[0.1, -0.05]]))[0, 0]
    assert np.allclose(_centroid(out), (20.0 - 2.0, 20.0 + 4.0), atol=0.1)


def test_random_rotation_keeps_the_radius_and_stays_within_the_bound():
    s, d, bound = 33, 10.0, 20.0
    centre = (s - 1) / 2
    batch = _batch(b=8, s=s)
    batch.image = _dot_image(s, centre, centre + d).expand(8, 1, s, s).clone()
    out = augment_batch(batch, AugmentConfig(bound, 0, 0, 0, 0, 0), np.random.default_rng(3))
    angles = []
    for i in (0, 2, 3, 4, 5, 6, 7):
        row, col = _centroid(out.image[i, 0])
        assert math.hypot(row - centre, col - centre) == pytest.approx(d, abs=0.25)
        angles.append(math.degrees(math.atan2(centre - row, col - centre)))
    assert max(abs(a) for a in angles) <= bound + 1.0 and np.std(angles) > 2.0


def test_intensity_gain_and_gamma_bounds():
    batch = _batch()
    batch.image = torch.full_like(batch.image, 0.5)
    out = augment_batch(batch, AugmentConfig(0, 0, 0.15, 0, 0, 0), np.random.default_rng(4))
    values = out.image[[0, 2, 3, 4, 5]]
    assert (values.amax(dim=(1, 2, 3)) == values.amin(dim=(1, 2, 3))).all()  # one gain and gamma per case
    assert values.min() >= 0.85 * 0.5**1.15 - 1e-6 and values.max() <= 1.15 * 0.5**0.85 + 1e-6
    assert values.std() > 0


# --------------------------------------------------------------------------- signals


@pytest.mark.parametrize("factor", [1.1, 0.9, 1.03])
def test_time_warp_scales_the_period_of_a_sine(factor):
    t = 2500
    signal = torch.sin(2 * math.pi * 5.0 * torch.arange(t) / FS + 0.3).expand(1, 2, t).contiguous()
    out = _time_warp(signal, np.array([factor]))[0, 0].numpy()
    centre = out[t // 4: 3 * t // 4]  # away from the zero padding
    expected = round(t * factor) / t * FS / 5.0
    assert _period(centre) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("factor", [1.08, 0.92])
def test_time_warp_stretches_about_the_centre(factor):
    t, offset, split = 1000, 200, 600
    times = torch.arange(t, dtype=torch.float32)
    middle = (t - 1) / 2
    pulses = torch.exp(-((times - middle) ** 2) / 50) + torch.exp(-((times - middle - offset) ** 2) / 50)
    out = _time_warp(pulses.expand(1, 1, t), np.array([factor]))[0, 0]
    peak = lambda a, b: float((out[a:b] * times[a:b]).sum() / out[a:b].sum())  # noqa: E731
    assert peak(0, split) == pytest.approx(middle, abs=1.0)  # the centre stays put
    assert peak(split, t) == pytest.approx(middle + offset * factor, abs=1.0)


def test_random_time_warp_stays_within_the_bound_and_varies():
    batch, a = _sine_batch(b=8), 0.08
    out = augment_batch(batch, AugmentConfig(0, 0, 0, a, 0, 0), np.random.default_rng(5))
    ratios = [_period(out.signal[i, 0, 625:1875].numpy()) / (FS / 5.0) for i in (0, 1, 3, 4, 5, 6, 7)]
    assert all(1 - a - 1e-3 <= r <= 1 + a + 1e-3 for r in ratios) and np.std(ratios) > 0.01


def test_per_lead_gain_bounds():
    batch = _batch(b=8)
    batch.signal = batch.lead_mask[:, :, None].float().expand(-1, -1, 500).contiguous()
    out = augment_batch(batch, AugmentConfig(0, 0, 0, 0, 0.15, 0), np.random.default_rng(6))
    recorded = batch.lead_mask & batch.present[:, 2:3]
    gains = out.signal[recorded]  # (N, T): one constant gain per lead
    assert (gains.amax(1) == gains.amin(1)).all()
    assert gains.min() >= 0.85 and gains.max() <= 1.15 and gains[:, 0].std() > 0.03
    assert out.signal[~recorded].abs().sum() == 0


# --------------------------------------------------------------------------- synonyms


def test_dictionary_is_well_formed():
    phrases = [p.lower() for group in CLINICAL_SYNONYMS.values() for p in group]
    assert len(phrases) == len(set(phrases)), "a phrase belongs to two groups"
    assert 30 <= len(CLINICAL_SYNONYMS) <= 50 and all(len(g) >= 2 for g in CLINICAL_SYNONYMS.values())
    assert not [p for p in phrases if NEGATION.search(p)], "a phrase holds a negation cue"
    assert not [p for p in phrases if re.fullmatch(r"[\d\s./%-]+|mg|mg/dl|mmol/l|ng/l|pg/ml|mcg|kg", p)]


def test_p1_swaps_every_phrase_within_its_group():
    phrases = [p for group in CLINICAL_SYNONYMS.values() for p in group]
    note = " | ".join(phrases)
    out = replace_synonyms(note, np.random.default_rng(0), 1.0).split(" | ")
    assert len(out) == len(phrases)
    for before, after in zip(phrases, out):
        assert after.lower() in _GROUP[before.lower()] and after.lower() != before.lower(), (before, after)


def test_whole_words_only():
    note = "SOBER patient, HTNs, preHTN, bilaterally, echoes, AFibs, x-ECG, h/o/x, mEF, DM23"
    assert replace_synonyms(note, np.random.default_rng(0), 1.0) == note


def test_negation_cues_and_numbers_are_kept():
    note = "Denies SOB; no HTN, not on CPAP, without JVD, troponin negative. EF 25-30%, BP 128/70, HbA1c 7.1."
    out = replace_synonyms(note, np.random.default_rng(0), 1.0)
    assert out != note
    assert [m.lower() for m in NEGATION.findall(out)] == ["denies", "no", "not", "without", "negative"]
    assert re.findall(r"(?<!\w)\d+(?:[-/.]\d+)*%?", out) == ["25-30%", "128/70", "7.1"]


def test_capitalisation_is_kept():
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    assert replace_synonyms("She has HTN.", rng(), 1.0) == "She has hypertension."
    assert replace_synonyms("HTN is controlled.", rng(), 1.0) == "Hypertension is controlled."
    assert replace_synonyms("Hypertension is controlled.", rng(), 1.0) == "HTN is controlled."
    assert replace_synonyms("She has hypertension.", rng(), 1.0) == "She has HTN."
    assert replace_synonyms("Notes.\nHPI: chest pain.", rng(), 1.0) == "Notes.\nHistory of present illness: chest pain."
    assert replace_synonyms("REVIEW OF SYSTEMS:", rng(), 1.0) == "ROS:"
    assert replace_synonyms("Heart: RRR.", rng(), 1.0) == "Heart: regular rate and rhythm."
    for seed in range(20):  # any synonym of a capitalised word starts with a capital
        out = replace_synonyms("Shortness of breath at night.", np.random.default_rng(seed), 1.0)
        assert out[0].isupper() and out.split(" at ")[0].lower() in _GROUP["sob"]


def test_p0_returns_the_note_itself_and_seeds_reproduce():
    note = "h/o HTN, DM2 and AF; SOB and DOE; RRR; CTAB; follow up with PCP; BP goal; s/p PCI; r/o ACS."
    assert replace_synonyms(note, np.random.default_rng(0), 0.0) is note
    outs = [replace_synonyms(note, np.random.default_rng(seed), 0.5) for seed in (1, 1, 2, 3)]
    assert outs[0] == outs[1] and len(set(outs[1:])) == 3
    with pytest.raises(ValueError, match="p must be"):
        replace_synonyms(note, np.random.default_rng(0), 1.5)


def test_sample_notes_keep_negations_and_numbers():
    paths = sorted(NOTES_DIR.glob("*.txt"))
    assert len(paths) >= 150
    rng = np.random.default_rng(0)
    changed = 0
    numbers = lambda text: re.findall(r"\d+(?:[./-]\d+)*", _PATTERN.sub("#", text))  # noqa: E731
    for path in paths:
        note = path.read_text()
        for p in (0.3, 1.0):
            out = replace_synonyms(note, rng, p)
            changed += out != note
            assert [m.lower() for m in NEGATION.findall(out)] == [m.lower() for m in NEGATION.findall(note)], path
            assert numbers(out) == numbers(note), path
    assert changed >= 1.5 * len(paths)
