"""Linear probes on simple hand-made features, per modality and all together: the check that a synthetic
cohort makes fusion matter (each single modality clearly below all four combined)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofusion.data.dataset import prepare_image, resample
from neurofusion.data.features import FeatureSpec
from neurofusion.data.schema import MODALITIES, STANDARD_LEADS, Case

_FS = 250.0
_BEAT = (-0.3, 0.5)  # seconds around each R peak: P wave through T wave


def image_features(case: Case) -> np.ndarray:
    """8x8 block means of a 64x64 view + a 16-bin intensity histogram (cavity size shows as dark mass)."""
    small = prepare_image(case.image, 64)[0].numpy()  # (64, 64)
    blocks = small.reshape(8, 8, 8, 8).mean(axis=(1, 3)).ravel()
    hist = np.histogram(small[small > 0.02], bins=16, range=(0, 1))[0] / max(1, (small > 0.02).sum())
    return np.concatenate([blocks, hist])


def signal_features(case: Case) -> np.ndarray:
    """Rate and rhythm from lead II R peaks, plus the mean beat of every lead sampled at 25 Hz."""
    n_template = int((_BEAT[1] - _BEAT[0]) * 25)
    by_name = {c: i for i, c in enumerate(case.signal.channels)}
    data = resample(case.signal.data, case.signal.fs, _FS)
    data = sosfiltfilt(butter(2, [0.5, 40], btype="band", fs=_FS, output="sos"), data, axis=1)
    lead = data[by_name.get("II", 0)]
    energy = np.abs(np.gradient(lead))
    peaks, _ = find_peaks(energy, distance=int(0.3 * _FS), height=np.percentile(energy, 98) * 0.4)
    peaks = peaks[(peaks + _BEAT[0] * _FS >= 0) & (peaks + _BEAT[1] * _FS < data.shape[1])]
    rr = np.diff(peaks) / _FS if len(peaks) > 2 else np.array([1.0, 1.0])
    rhythm = [60 / rr.mean(), rr.std() / rr.mean(), np.abs(np.diff(rr)).mean() if len(rr) > 1 else 0, len(peaks)]
    offsets = np.arange(int(_BEAT[0] * _FS), int(_BEAT[1] * _FS), int(_FS / 25))[:n_template]
    templates = []
    for name in STANDARD_LEADS:
        row = data[by_name[name]] if name in by_name else np.zeros(data.shape[1])
        beats = row[peaks[:, None] + offsets[None, :]] if len(peaks) else np.zeros((1, n_template))
        templates.append(np.concatenate([beats.mean(axis=0), [row.std()]]))
    return np.concatenate([rhythm, np.concatenate(templates)])


def tabular_features(case: Case, features: Sequence[FeatureSpec]) -> np.ndarray:
    """Numeric values (0 when missing) with a missing indicator each; categorical one-hot."""
    out = []
    for feature in features:
        value = case.tabular.get(feature.name)
        if feature.kind == "categorical":
            out.extend(float(value == c) for c in feature.categories)
        else:
            missing = value is None or np.isnan(value)
            out.extend([0.0 if missing else np.log1p(max(float(value), 0.0)), float(missing)])
    return np.asarray(out)


def modality_probe_accuracy(
    cases: Sequence[Case], features: Sequence[FeatureSpec], classes: Sequence[str], *, folds: int = 5, seed: int = 0
) -> dict[str, float]:
    """Cross-validated accuracy of a logistic-regression probe on each modality alone and of their late
    fusion (summed log-odds) on all four, over the complete cases only, so that missing data cannot widen
    the gap."""
    cases = [c for c in cases if all(c.available.values())]
    labels = np.array([classes.index(c.label) for c in cases])
    dense = {
        "image": np.stack([image_features(c) for c in cases]),
        "signal": np.stack([signal_features(c) for c in cases]),
        "tabular": np.stack([tabular_features(c, features) for c in cases]),
    }
    notes = [c.note or "" for c in cases]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores: dict[str, list[float]] = {m: [] for m in (*MODALITIES, "all")}
    for train, test in splitter.split(notes, labels):
        tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        text_train = tfidf.fit_transform([notes[i] for i in train]).toarray()
        text_test = tfidf.transform([notes[i] for i in test]).toarray()
        blocks = {**{m: (x[train], x[test]) for m, x in dense.items()}, "text": (text_train, text_test)}
        log_odds = np.zeros((len(test), len(classes)))
        prior = np.log(np.bincount(labels[train], minlength=len(classes)) / len(train) + 1e-9)
        for modality, (x_train, x_test) in blocks.items():
            log_proba = _probe(x_train, labels[train], x_test)
            scores[modality].append(float((log_proba.argmax(axis=1) == labels[test]).mean()))
            log_odds += log_proba - prior
        # Late fusion: modalities as independent evidence, p(y | all) ~ p(y) * prod_m p(y | m) / p(y).
        scores["all"].append(float(((log_odds + prior).argmax(axis=1) == labels[test]).mean()))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def _probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Standardised logistic regression -> (n_test, n_classes) log-probabilities."""
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))
    model.fit(x_train, y_train)
    return model.predict_log_proba(x_test)
