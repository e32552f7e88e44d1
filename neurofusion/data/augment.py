"""Training augmentation of a collated :class:`Batch`, before tokenisation: echo images are rotated, shifted
and re-exposed, ECGs time-warped and re-scaled per lead, consult notes reworded with clinical synonyms.

Only present modalities change (a missing modality's zero slot and ``None`` note are left as they are),
and everything random comes from one ``np.random.Generator``, so a seed reproduces a batch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from neurofusion.data.dataset import Batch


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths; all 0 is the identity."""

    image_rotation_deg: float = 10.0  # max |angle|, degrees
    image_translation: float = 0.06  # max shift per axis, as a fraction of the side
    image_intensity: float = 0.15  # gain in [1-a, 1+a], gamma in [1-a, 1+a]
    signal_time_warp: float = 0.08  # time-axis stretch factor in [1-a, 1+a]
    signal_amplitude: float = 0.15  # per-lead gain in [1-a, 1+a]
    text_synonym_p: float = 0.3  # chance each replaceable phrase is swapped for a synonym

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"AugmentConfig.{f.name} must be a finite number >= 0, got {value!r}")
        if self.image_rotation_deg > 180:
            raise ValueError(f"image_rotation_deg must be at most 180, got {self.image_rotation_deg}")
        for name in ("image_intensity", "signal_time_warp", "signal_amplitude"):
            if getattr(self, name) >= 1:  # a gain, gamma or stretch of 1 - a must stay positive
                raise ValueError(f"{name} must be below 1, got {getattr(self, name)}")
        if self.image_translation > 1 or self.text_synonym_p > 1:
            raise ValueError("image_translation and text_synonym_p must be at most 1, got "
                             f"{self.image_translation} and {self.text_synonym_p}")


def augment_batch(batch: Batch, config: AugmentConfig, rng: np.random.Generator) -> Batch:
    """A new, augmented copy of ``batch`` (whose tensors and lists are left untouched).

    Every declared modality of its kind: image (B, C, S, S): one random rotation + translation per case
    (bilinear, zeros outside), then ``gain * x**gamma`` clamped to [0, 1]. signal (B, L, T): one time-warp
    factor per case (linear resampling of the whole (L, T), centre-cropped or zero-padded back to T) and
    one gain per lead; leads not recorded keep their (zero) values. notes: :func:`replace_synonyms` on each
    present note. Tensors that augmentation does not touch (labels, tabular tensors) are shared with
    ``batch``.
    """
    present = {m: batch.present[:, k].bool() for k, m in enumerate(batch.names)}
    inputs = {name: dict(tensors) for name, tensors in batch.inputs.items()}
    texts = {name: list(notes) for name, notes in batch.texts.items()}
    for spec in batch.modalities:
        slot = inputs.setdefault(spec.name, {})
        if spec.kind == "image":
            image = slot["image"]
            if image.ndim != 4 or image.shape[2] != image.shape[3]:
                raise ValueError(f"{spec.name}: image must be (B, C, S, S), got {tuple(image.shape)}")
            slot["image"] = _augment_images(image, present[spec.name], config, rng)
        elif spec.kind == "signal":
            signal, lead_mask = slot["signal"], slot["lead_mask"]
            if signal.ndim != 3 or lead_mask.shape != signal.shape[:2]:
                raise ValueError(f"{spec.name}: signal must be (B, L, T) with lead_mask (B, L), got "
                                 f"{tuple(signal.shape)} and {tuple(lead_mask.shape)}")
            slot["signal"] = _augment_signals(signal, present[spec.name][:, None] & lead_mask.bool(), config, rng)
        elif spec.kind == "text":
            if slot and config.text_synonym_p > 0:
                raise ValueError("augment_batch rewrites notes, so it must run before tokenisation; "
                                 "got a batch that already has tokens (augment first, then tokenize)")
            notes = texts.get(spec.name, [None] * len(batch.case_ids))
            texts[spec.name] = [replace_synonyms(note, rng, config.text_synonym_p) if note is not None and ok else note
                                for note, ok in zip(notes, present[spec.name].tolist())]
    return Batch(list(batch.case_ids), batch.present, batch.labels, inputs, texts, batch.modalities, batch.outcomes)


def _augment_images(image: torch.Tensor, present: torch.Tensor, config: AugmentConfig,
                    rng: np.random.Generator) -> torch.Tensor:
    b = image.shape[0]
    out = image
    if config.image_rotation_deg or config.image_translation:
        angles = rng.uniform(-config.image_rotation_deg, config.image_rotation_deg, b)
        shifts = rng.uniform(-config.image_translation, config.image_translation, (b, 2))
        out = _rotate_translate(out, angles, shifts)
    if config.image_intensity:
        a = config.image_intensity
        gain = torch.as_tensor(rng.uniform(1 - a, 1 + a, b), dtype=image.dtype, device=image.device)
        gamma = torch.as_tensor(rng.uniform(1 - a, 1 + a, b), dtype=image.dtype, device=image.device)
        out = (gain.view(b, 1, 1, 1) * out.clamp(0, 1).pow(gamma.view(b, 1, 1, 1))).clamp(0, 1)
    return torch.where(present.view(b, 1, 1, 1), out, image)


def _rotate_translate(image: torch.Tensor, angles_deg: np.ndarray, shifts: np.ndarray) -> torch.Tensor:
    """(B, C, S, S) -> (B, C, S, S): content rotated about the centre by ``angles_deg`` (B,) (positive =
    counter-clockwise as displayed, row 0 at the top), then moved by ``shifts`` (B, 2) = (right, down) as
    fractions of the side."""
    theta = np.deg2rad(angles_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    # grid_sample reads output pixel q from input A (q - t), A the inverse rotation; normalised
    # coordinates span 2 per side, and a square image keeps them isotropic.
    a = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (B, 2, 2)
    t = 2.0 * np.asarray(shifts, dtype=np.float64)  # (B, 2)
    affine = np.concatenate([a, -(a @ t[:, :, None])], axis=2)  # (B, 2, 3)
    affine = torch.as_tensor(affine, dtype=image.dtype, device=image.device)
    grid = F.affine_grid(affine, list(image.shape), align_corners=False)  # (B, S, S, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _augment_signals(signal: torch.Tensor, recorded: torch.Tensor, config: AugmentConfig,
                     rng: np.random.Generator) -> torch.Tensor:
    b, n_leads, _ = signal.shape
    out = signal
    if config.signal_time_warp:
        a = config.signal_time_warp
        out = _time_warp(out, rng.uniform(1 - a, 1 + a, b))
    if config.signal_amplitude:
        a = config.signal_amplitude
        gain = torch.as_tensor(rng.uniform(1 - a, 1 + a, (b, n_leads)), dtype=signal.dtype, device=signal.device)
        out = out * gain[:, :, None]
    return torch.where(recorded[:, :, None], out, signal)


def _time_warp(signal: torch.Tensor, factors: np.ndarray) -> torch.Tensor:
    """(B, L, T) -> (B, L, T): case i stretched in time by factors[i] (> 1 = slower), then centre-cropped or
    zero-padded back to T samples."""
    n_samples = signal.shape[2]
    rows = []
    for row, factor in zip(signal, factors):
        length = max(2, int(round(n_samples * float(factor))))
        if length == n_samples:
            rows.append(row)
            continue
        warped = F.interpolate(row[None], size=length, mode="linear", align_corners=False)[0]  # (L, T) -> (L, T')
        if length > n_samples:
            start = (length - n_samples) // 2
            rows.append(warped[:, start:start + n_samples])
        else:
            left = (n_samples - length) // 2
            rows.append(F.pad(warped, (left, n_samples - length - left)))
    return torch.stack(rows)


# Phrases that mean the same thing in a cardiology consult note. Left out on purpose: anything holding a
# negation cue ("no acute distress"/NAD, "no known drug allergies"/NKDA), near-synonyms ("chest pain" vs
# "chest discomfort"), and abbreviations that collide case-insensitively with words or other meanings
# (AS = "as", LAD = left axis deviation, PE = pulmonary embolism, RA, RR, PT, ED).
CLINICAL_SYNONYMS: dict[str, tuple[str, ...]] = {
    "shortness of breath": ("shortness of breath", "SOB", "dyspnea", "breathlessness"),
    "dyspnea on exertion": ("dyspnea on exertion", "DOE", "exertional dyspnea"),
    "paroxysmal nocturnal dyspnea": ("paroxysmal nocturnal dyspnea", "PND"),
    "presyncope": ("presyncope", "near-syncope", "near syncope"),
    "hypertension": ("hypertension", "HTN"),
    "hyperlipidemia": ("hyperlipidemia", "HLD"),
    "type 2 diabetes": ("type 2 diabetes", "type 2 diabetes mellitus", "diabetes mellitus type 2", "DM2", "T2DM"),
    "heart failure": ("heart failure", "HF"),
    "heart failure with reduced ejection fraction": ("heart failure with reduced ejection fraction", "HFrEF"),
    "atrial fibrillation": ("atrial fibrillation", "AF", "AFib"),
    "ejection fraction": ("ejection fraction", "EF"),
    "coronary artery disease": ("coronary artery disease", "CAD"),
    "myocardial infarction": ("myocardial infarction", "MI", "heart attack"),
    "non-ST-elevation myocardial infarction": ("non-ST-elevation myocardial infarction", "NSTEMI"),
    "acute coronary syndrome": ("acute coronary syndrome", "ACS"),
    "percutaneous coronary intervention": ("percutaneous coronary intervention", "PCI"),
    "premature ventricular contractions": ("premature ventricular contractions", "PVCs"),
    "supraventricular tachycardia": ("supraventricular tachycardia", "SVT"),
    "obstructive sleep apnea": ("obstructive sleep apnea", "OSA"),
    "continuous positive airway pressure": ("continuous positive airway pressure", "CPAP"),
    "gastroesophageal reflux disease": ("gastroesophageal reflux disease", "GERD"),
    "jugular venous distension": ("jugular venous distension", "jugular venous distention", "JVD"),
    "jugular venous pressure": ("jugular venous pressure", "JVP"),
    "regular rate and rhythm": ("regular rate and rhythm", "RRR"),
    "clear to auscultation bilaterally": ("clear to auscultation bilaterally", "CTAB"),
    "murmurs, rubs or gallops": ("murmurs, rubs or gallops", "murmurs, rubs, or gallops", "m/r/g"),
    "blood pressure": ("blood pressure", "BP"),
    "electrocardiogram": ("electrocardiogram", "ECG", "EKG"),
    "echocardiogram": ("echocardiogram", "echo"),
    "transthoracic echocardiogram": ("transthoracic echocardiogram", "TTE"),
    "bilateral": ("bilateral", "bilat"),
    "history of": ("history of", "h/o"),
    "history of present illness": ("history of present illness", "HPI"),
    "past medical history": ("past medical history", "PMH"),
    "review of systems": ("review of systems", "ROS"),
    "status post": ("status post", "s/p"),
    "rule out": ("rule out", "r/o"),
    "activities of daily living": ("activities of daily living", "ADLs"),
    "primary care physician": ("primary care physician", "primary care provider", "PCP"),
    "medications": ("medications", "meds"),
    "twice daily": ("twice daily", "twice a day", "BID"),
    "as needed": ("as needed", "PRN"),
    "follow up": ("follow up", "follow-up"),
}

# lower-cased phrase -> (phrase as written in the dictionary, its group)
_PHRASES: dict[str, tuple[str, tuple[str, ...]]] = {
    phrase.lower(): (phrase, group) for group in CLINICAL_SYNONYMS.values() for phrase in group
}
# Longest first, so a phrase wins over one it contains ("heart failure with reduced ejection fraction" over
# "heart failure"); a phrase must not touch a letter, digit, "/" or "-" on either side ("SOB" in "SOBER").
_PATTERN = re.compile(
    r"(?<![\w/-])(?:" + "|".join(re.escape(p) for p in sorted(_PHRASES, key=len, reverse=True)) + r")(?![\w/-])",
    re.IGNORECASE,
)


def replace_synonyms(note: str, rng: np.random.Generator, p: float) -> str:
    """``note`` with each phrase of :data:`CLINICAL_SYNONYMS` swapped, with probability ``p``, for another
    phrase of its group. Matches are whole words, case-insensitive, longest first and never overlap; the
    capital of a sentence start or heading is kept. Negation cues, numbers and units are never part of a
    phrase, so they are never touched. ``p == 0`` returns ``note`` itself."""
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if p == 0:
        return note

    def swap(match: re.Match) -> str:
        written = match.group(0)
        canonical, group = _PHRASES[written.lower()]
        if rng.random() >= p:
            return written
        others = [phrase for phrase in group if phrase != canonical]
        choice = others[int(rng.integers(len(others)))]
        return _match_case(written, canonical, choice, _starts_sentence(note, match.start()))

    return _PATTERN.sub(swap, note)


def _match_case(written: str, canonical: str, replacement: str, sentence_start: bool) -> str:
    """Carry the capitalisation of ``written`` (an occurrence of ``canonical``) over to ``replacement``."""
    if canonical[0].islower() and len(written) > 1 and written.isupper():  # a heading in capitals
        return replacement.upper()
    if written[0].isupper() and (canonical[0].islower() or sentence_start):
        return replacement[0].upper() + replacement[1:]
    return replacement  # mid-sentence abbreviations and lower-case words keep the dictionary's spelling


def _starts_sentence(text: str, start: int) -> bool:
    k = start - 1
    while k >= 0 and text[k] in " \t":
        k -= 1
    return k < 0 or text[k] in ".!?\n"
