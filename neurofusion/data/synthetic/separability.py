"""Linear probes on simple hand-made features, per modality and all together: the check that a synthetic
cohort makes fusion matter (each single modality clearly below all four combined), and that its planted
cross-modal interactions need a fusion that can combine modalities (an additive probe over per-modality
scores falls short of one that may combine them)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.signal import butter, find_peaks, sosfiltfilt
from sklearn.ensemble import RandomForestClassifier
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


def modality_scores(
    cases: Sequence[Case], features: Sequence[FeatureSpec], classes: Sequence[str], *, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold class probabilities of a logistic-regression probe on each modality alone.

    Returns (scores, present): scores (N, M, K) in MODALITIES order, each case's from a probe fitted on the
    folds without it, and the class prior of all cases where the modality is missing; present (N, M) bool.
    """
    if len(cases) < 2 * folds:
        raise ValueError(f"need at least {2 * folds} cases for {folds}-fold scores, got {len(cases)}")
    labels = np.array([classes.index(c.label) for c in cases])
    present = np.array([[c.available[m] for m in MODALITIES] for c in cases])
    prior = np.bincount(labels, minlength=len(classes)) / len(labels)
    scores = np.tile(prior, (len(cases), len(MODALITIES), 1))
    readers = {"image": image_features, "signal": signal_features,
               "tabular": lambda case: tabular_features(case, features)}
    for j, modality in enumerate(MODALITIES):
        rows = np.flatnonzero(present[:, j])
        if modality == "text":
            inputs: list = [cases[i].note for i in rows]
        else:
            inputs = [readers[modality](cases[i]) for i in rows]
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for train, test in splitter.split(rows, labels[rows]):
            if modality == "text":
                tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
                x_train = tfidf.fit_transform([inputs[i] for i in train]).toarray()
                x_test = tfidf.transform([inputs[i] for i in test]).toarray()
            else:
                x_train, x_test = np.stack([inputs[i] for i in train]), np.stack([inputs[i] for i in test])
            log_proba = _probe(x_train, labels[rows[train]], x_test)
            # A fold may lack a rare class; its columns stay at 0 probability.
            full = np.zeros((len(test), len(classes)))
            full[:, np.unique(labels[rows[train]])] = np.exp(log_proba)
            scores[rows[test], j] = full
    return scores, present


def additive_and_interaction_probes(
    scores: np.ndarray, present: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0
) -> dict[str, np.ndarray]:
    """Cross-validated correctness per case of two fusion probes over per-modality class scores.

    additive: logistic regression over the stacked log scores and presence flags, a sum of per-modality
    terms in the log-odds (what late fusion and any additive model can do). interaction: a small random
    forest over the same inputs, free to combine modalities. scores (N, M, K) and present (N, M) from
    :func:`modality_scores`; labels (N,) class indices. Returns {"additive": (N,) bool, "interaction": (N,)
    bool}.
    """
    n = len(labels)
    if scores.shape[0] != n or present.shape != scores.shape[:2]:
        raise ValueError(f"scores (N, M, K) and present (N, M) must match labels (N,); got {scores.shape}, "
                         f"{present.shape}, {labels.shape}")
    flags = present.astype(float)
    additive_inputs = np.concatenate([np.log(scores + 1e-4).reshape(n, -1), flags], axis=1)
    interaction_inputs = np.concatenate([scores.reshape(n, -1), flags], axis=1)
    correct = {"additive": np.zeros(n, bool), "interaction": np.zeros(n, bool)}
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(additive_inputs, labels):
        additive = make_pipeline(StandardScaler(), LogisticRegression(C=0.03, max_iter=5000))
        additive.fit(additive_inputs[train], labels[train])
        correct["additive"][test] = additive.predict(additive_inputs[test]) == labels[test]
        forest = RandomForestClassifier(n_estimators=200, min_samples_leaf=3, random_state=seed, n_jobs=1)
        forest.fit(interaction_inputs[train], labels[train])
        correct["interaction"][test] = forest.predict(interaction_inputs[test]) == labels[test]
    return correct
