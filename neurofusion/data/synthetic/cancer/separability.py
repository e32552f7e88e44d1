"""Linear probes on simple hand-made features of each cancer modality, alone and all together: the check that
the synthetic cancer cohort makes fusion matter (each single modality clearly below all four combined), and a
colour-based nuclear measurement of H&E tiles that reads the grade from pixels alone; and the probe that the
predictive-biomarker interactions (``interactions``) are what an additive model cannot fit."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy import ndimage
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from neurofusion.data.synthetic.cancer.clinical import STAGES
from neurofusion.data.synthetic.cancer.cohort import CANCER_MODALITIES, CancerCase, CasePlan
from neurofusion.data.synthetic.cancer.genomics import GENE_PANEL, PRIMARY_SITES
from neurofusion.data.synthetic.cancer.outcome import HORIZON_MONTHS


def nuclear_pixels(image: np.ndarray) -> np.ndarray:
    """Haematoxylin-dominated pixels of an RGB uint8 (H, W, 3) H&E image -> bool (H, W): blue at least 0.8 of
    red, green the lowest channel and clearly darker than stroma (which is pink: red > blue > green)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be RGB (H, W, 3), got shape {image.shape}")
    r, g, b = (image[..., k].astype(np.float64) for k in range(3))
    return (b >= 0.8 * r) & (r < 140) & (g < 110) & (b > g + 25)


def nuclear_measures(image: np.ndarray, roi: tuple[int, int, int, int] | None = None) -> dict[str, float]:
    """From pixels alone: nuclear area fraction, connected nuclear objects per 10,000 px, their mean area
    (px) and mean darkness (255 - mean RGB of nuclear pixels), inside ``roi`` (x0, y0, x1, y1) or the tile."""
    x0, y0, x1, y1 = roi if roi is not None else (0, 0, image.shape[1], image.shape[0])
    crop = image[y0:y1, x0:x1]
    mask = nuclear_pixels(crop)
    labels, count = ndimage.label(mask)
    areas = np.bincount(labels.ravel())[1:] if count else np.zeros(1)
    areas = areas[areas >= 4]  # single stray pixels are noise, not nuclei
    darkness = 255.0 - float(crop[mask].mean()) if mask.any() else 0.0
    return {"area_fraction": float(mask.mean()), "density": 1e4 * len(areas) / mask.size,
            "mean_area": float(areas.mean()) if len(areas) else 0.0, "darkness": darkness}


def histopathology_features(image: np.ndarray) -> np.ndarray:
    """Nuclear measures of the whole tile and of its darkest quarter (where nuclei crowd), + white fraction."""
    h, w = image.shape[:2]
    quarters = [(x, y, x + w // 2, y + h // 2) for y in (0, h // 2) for x in (0, w // 2)]
    crowded = max(quarters, key=lambda q: nuclear_measures(image, q)["area_fraction"])
    white = float((image.astype(np.float64).mean(axis=2) > 225).mean())
    return np.array([*nuclear_measures(image).values(), *nuclear_measures(image, crowded).values(), white])


def genomics_features(panel: dict[str, int]) -> np.ndarray:
    return np.array([float(panel[g]) for g in GENE_PANEL])


def clinical_features(row: dict[str, object]) -> np.ndarray:
    """Stage and primary one-hot, sex, age; ECOG and BMI with a missing indicator each (0 when missing)."""
    out = [float(row["stage"] == s) for s in STAGES] + [float(row["primary_site"] == p) for p in PRIMARY_SITES]
    out += [float(row["sex"] == "F"), float(row["age"])]  # type: ignore[arg-type]
    for column in ("ecog", "bmi"):
        value = float(row[column])  # type: ignore[arg-type]
        out += [0.0 if np.isnan(value) else value, float(np.isnan(value))]
    return np.array(out)


def five_year_death(cases: Sequence[CancerCase]) -> tuple[np.ndarray, np.ndarray]:
    """(known, died): whether each case's 5-year status is observed (death before 60 months, or follow-up
    reaching 60 months) and whether it died before 60 months; both bool (n,)."""
    time = np.array([c.time for c in cases])
    event = np.array([c.event for c in cases])
    died = event & (time < HORIZON_MONTHS)
    return died | (time >= HORIZON_MONTHS), died


def modality_probe_auc(cases: Sequence[CancerCase], *, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Cross-validated ROC AUC for 5-year death of a logistic-regression probe on each modality alone and of
    all four stacked (a logistic regression on the four probes' inner cross-validated log-odds). Every case's
    rendered values are used whether or not its cohort would keep them, so missing data cannot widen the gap;
    cases with unknown 5-year status are left out."""
    known, died = five_year_death(cases)
    cases = [c for c, k in zip(cases, known) if k]
    labels = died[known].astype(int)
    inputs = {
        "histopathology": np.stack([histopathology_features(c.histopathology) for c in cases]),
        "genomics": np.stack([genomics_features(c.genomics) for c in cases]),
        "treatment_notes": np.array([c.treatment_notes for c in cases], dtype=object),
        "clinical": np.stack([clinical_features(c.clinical) for c in cases]),
    }
    outer = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    inner = StratifiedKFold(n_splits=4, shuffle=True, random_state=seed + 1)
    scores: dict[str, np.ndarray] = {m: np.zeros(len(cases)) for m in (*CANCER_MODALITIES, "all")}
    for train, test in outer.split(np.zeros(len(cases)), labels):
        stacked_train, stacked_test = [], []
        for modality in CANCER_MODALITIES:
            x, probe = inputs[modality], _probe(modality)
            stacked_train.append(cross_val_predict(probe, x[train], labels[train], cv=inner,
                                                   method="decision_function"))
            scores[modality][test] = probe.fit(x[train], labels[train]).decision_function(x[test])
            stacked_test.append(scores[modality][test])
        combiner = LogisticRegression().fit(np.stack(stacked_train, axis=1), labels[train])
        scores["all"][test] = combiner.decision_function(np.stack(stacked_test, axis=1))
    return {name: float(roc_auc_score(labels, s)) for name, s in scores.items()}


def _probe(modality: str) -> Pipeline:
    """A fresh logistic-regression probe: on TF-IDF word 1-2-grams for the note, else on standardised features."""
    if modality == "treatment_notes":
        return make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                             LogisticRegression(C=1.0, max_iter=3000))
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=3000))


def pair_probe_auc(plans: Sequence[CasePlan], *, folds: int = 5, seed: int = 0) -> dict[str, float]:
    """Whether 5-year death is additive in the modalities: cross-validated ROC AUC of a logistic regression on
    per-modality features (each modality's true contribution without the biomarker rule, plus the rule's
    alteration A and therapy T, 0 where no rule decides) against one that adds every pairwise product of them
    (A * T among them). Scored on the rule-decided cases when there are any (at least 20), else on all; cases
    with unknown 5-year status are left out. -> {"additive", "products", "gap", "n_scored"}."""
    time = np.array([p.outcome.time for p in plans])
    event = np.array([p.outcome.event for p in plans])
    died = event & (time < HORIZON_MONTHS)
    known = died | (time >= HORIZON_MONTHS)
    rows = []
    for p in plans:
        rule = p.interaction.contribution if p.interaction is not None else {}
        pair = (p.interaction.alteration, p.interaction.therapy) if p.interaction is not None else (0, 0)
        rows.append([p.contribution[m] - rule.get(m, 0.0) for m in CANCER_MODALITIES] + list(pair))
    x, labels = np.array(rows, dtype=float)[known], died[known].astype(int)
    decided = np.array([p.interaction is not None for p in plans])[known]
    scored = decided if decided.sum() >= 20 else np.ones(len(labels), dtype=bool)
    products = np.stack([x[:, i] * x[:, j] for i, j in combinations(range(x.shape[1]), 2)], axis=1)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    auc = {}
    for name, inputs in (("additive", x), ("products", np.hstack([x, products]))):
        score = cross_val_predict(LogisticRegression(max_iter=2000), inputs, labels, cv=cv, method="decision_function")
        auc[name] = float(roc_auc_score(labels[scored], score[scored]))
    return {**auc, "gap": auc["products"] - auc["additive"], "n_scored": float(scored.sum())}
