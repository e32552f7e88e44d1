"""Evaluation metrics for a multi-class classifier (scikit-learn's definitions), each with a bootstrap
percentile confidence interval, returned as a JSON-ready dict."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

_ROW_SUM_TOLERANCE = 1e-4
_ECE_BINS = 15
# Resamples are drawn in chunks so that at most this many (resample, case) cells sit in memory at once.
_MAX_CELLS_PER_CHUNK = 4_000_000


@dataclass(frozen=True)
class Estimate:
    """A metric on the full data with its bootstrap percentile interval.

    ``value`` is None when the metric is not defined on the data (a class with no cases has no F1), the
    bounds are None when fewer than half of the resamples could compute it; ``reason`` then says why, in
    words a reader of the report understands. ``to_dict`` gives JSON nulls (never NaN) and the reason.
    """

    value: float | None
    ci_low: float | None
    ci_high: float | None
    reason: str | None = None

    def to_dict(self) -> dict:
        out = {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


def expected_calibration_error(y_true: np.ndarray, proba: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: sum over equal-width bins ``(lo, hi]`` of the top probability of ``n_b / N * |acc_b - conf_b|``.

    ``y_true`` is (N,) class indices, ``proba`` is (N, C) with rows summing to 1.
    """
    y, p = _check_inputs(y_true, proba)
    gaps = _calibration_gaps(y, p, n_bins)
    return float(np.abs(gaps.sum(axis=0)).sum() / len(y))


def classification_metrics(
    y_true: np.ndarray,
    proba: np.ndarray,
    class_names: Sequence[str],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    split: str | None = None,
) -> dict:
    """Accuracy, macro F1, ECE, one-vs-rest AUROC (macro and per class) and the confusion matrix.

    ``y_true`` is (N,) int class indices in ``[0, C)``; ``proba`` is (N, C) with rows summing to 1 and
    ``C == len(class_names)``; predictions are its row-wise argmax. Every metric is scikit-learn's on the full
    data, with a percentile interval from ``n_bootstrap`` resamples of cases (with replacement, seeded).
    ``split`` only names the data in the reasons ("no test cases of class X").

    A metric that the data cannot define is reported as not defined (value None with a ``reason``), never as
    0 or NaN: a class's F1 when the data hold none of its cases (it measures how well the class is found);
    a class's AUROC when the data hold only that class or none of it. The macro averages are taken over the
    classes whose metric is defined, named in ``classes``, the others listed in ``excluded`` with the reason.
    In a resample that lacks a class (or holds only it), that class's F1 (AUROC) is not defined either: its
    interval uses the resamples where it is, and is not defined when fewer than half are; the macro average
    of a resample is taken over its classes of the macro set whose metric it defines. ECE sums absolute gaps,
    so resampling noise only adds to it: for small N its interval tends to sit above the point estimate.
    """
    n_classes = len(class_names)
    if n_classes < 2:
        raise ValueError(f"class_names must name at least 2 classes, got {list(class_names)}")
    if len(set(class_names)) != n_classes:
        duplicates = sorted({name for name in class_names if list(class_names).count(name) > 1})
        raise ValueError(f"class_names must be unique, got duplicates {duplicates}")
    if n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be >= 1, got {n_bootstrap}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.95, got {ci}")
    y, p = _check_inputs(y_true, proba, n_classes)
    n = len(y)
    pred = p.argmax(axis=1)
    labels = list(range(n_classes))
    support = np.bincount(y, minlength=n_classes)
    cases = f"{split} cases" if split else "cases"

    auroc_classes = [c for c in labels if 0 < support[c] < n]
    boot = _bootstrap(y, p, auroc_classes, n_bootstrap=n_bootstrap, seed=seed)
    boot_f1 = np.where(boot["support"] > 0, boot["f1"], np.nan)  # a class absent from a resample has no F1 there

    def estimate(value: float, resampled: np.ndarray, what: str) -> Estimate:
        low, high = _percentile_interval(resampled, ci, n_bootstrap)
        if np.isnan(low):
            usable = int(np.count_nonzero(~np.isnan(resampled)))
            return Estimate(float(value), None, None, f"interval not defined: only {usable} of {n_bootstrap} "
                                                      f"resamples define {what}")
        return Estimate(float(value), low, high)

    def not_defined(c: int) -> str:
        name = class_names[c]
        if support[c] == 0:
            predicted = int(np.count_nonzero(pred == c))
            also = f" ({predicted} predicted as {name})" if predicted else ""
            return f"not defined: no {cases} of class {name}{also}"
        return f"not defined: every one of the {n} {cases} is class {name}, so none ranks against it"

    f1_classes = [c for c in labels if support[c] > 0]
    per_class_f1 = f1_score(y, pred, labels=labels, average=None, zero_division=0)
    f1 = {c: estimate(per_class_f1[c], boot_f1[:, c], f"the F1 of {class_names[c]} (hold a case of it)")
          if c in f1_classes else Estimate(None, None, None, not_defined(c)) for c in labels}
    auroc = {c: estimate(roc_auc_score(y == c, p[:, c]), boot["auroc"][:, c],
                         f"the AUROC of {class_names[c]} (hold it and another class)")
             if c in auroc_classes else Estimate(None, None, None, not_defined(c)) for c in labels}

    return {
        "n": n,
        "accuracy": estimate(accuracy_score(y, pred), boot["accuracy"], "accuracy").to_dict(),
        "macro_f1": _macro(f1, f1_classes, boot_f1, class_names, estimate, "macro F1"),
        "ece": estimate(expected_calibration_error(y, p, _ECE_BINS), boot["ece"], "the ECE").to_dict(),
        "macro_auroc": _macro(auroc, auroc_classes, boot["auroc"], class_names, estimate, "macro AUROC"),
        "per_class": {
            name: {"f1": f1[c].to_dict(), "auroc": auroc[c].to_dict(), "support": int(support[c])}
            for c, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "class_names": list(class_names),
        "ci": ci,
        "n_bootstrap": n_bootstrap,
    }


def _macro(per_class: dict[int, Estimate], defined: list[int], resampled: np.ndarray, class_names: Sequence[str],
           estimate, what: str) -> dict:
    """The mean over the ``defined`` classes, saying which classes it is taken over and why others are not."""
    excluded = {class_names[c]: e.reason for c, e in per_class.items() if c not in defined}
    if not defined:
        result = Estimate(None, None, None, f"not defined: no class has a defined {what.split()[-1]}").to_dict()
    else:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples: "mean of empty slice"
            per_resample = np.nanmean(resampled[:, defined], axis=1)
        value = float(np.mean([per_class[c].value for c in defined]))
        result = estimate(value, per_resample, what).to_dict()
    result["classes"] = [class_names[c] for c in defined]
    if excluded:
        result["excluded"] = excluded
    return result


def _check_inputs(y_true: np.ndarray, proba: np.ndarray, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true), np.asarray(proba)
    if y.ndim != 1:
        raise ValueError(f"y_true must be (N,) class indices, got shape {y.shape}")
    n = len(y)
    if n == 0:
        raise ValueError("y_true is empty: metrics need at least one case")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class indices, got dtype {y.dtype}")
    if n_classes is None:
        if p.ndim != 2 or p.shape[0] != n:
            raise ValueError(f"proba must be ({n}, C) to match y_true, got {p.shape}")
        n_classes = p.shape[1]
    elif p.shape != (n, n_classes):
        raise ValueError(f"proba must be ({n}, {n_classes}) to match y_true and class_names, got {p.shape}")
    if p.dtype == bool or not np.issubdtype(p.dtype, np.number):
        raise ValueError(f"proba must hold probabilities as floats, got dtype {p.dtype}")
    p = p.astype(float)
    if not np.isfinite(p).all():
        row = int(np.flatnonzero(~np.isfinite(p).all(axis=1))[0])
        raise ValueError(f"proba must be finite, row {row} holds NaN or inf: {p[row].tolist()}")
    if (p < 0).any() or (p > 1).any():
        row = int(np.flatnonzero(((p < 0) | (p > 1)).any(axis=1))[0])
        raise ValueError(f"proba must lie in [0, 1], row {row} is {p[row].tolist()}")
    off = np.abs(p.sum(axis=1) - 1) > _ROW_SUM_TOLERANCE
    if off.any():
        row = int(np.flatnonzero(off)[0])
        total = p[row].sum()
        raise ValueError(f"proba rows must sum to 1 (within {_ROW_SUM_TOLERANCE}), row {row} sums to {total:.6g}")
    bad = (y < 0) | (y >= n_classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"y_true must hold class indices in [0, {n_classes}), got {y[i]} at position {i}")
    return y.astype(np.int64), p


def _calibration_gaps(y: np.ndarray, proba: np.ndarray, n_bins: int) -> np.ndarray:
    """(N, n_bins): each case's ``correct - confidence`` in the column of its confidence bin, zero elsewhere.

    Summing a column over cases gives ``n_b * (acc_b - conf_b)``, so ECE is ``sum_b |column sum| / N`` for the
    full data and for any resample weighting of the cases alike.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    confidence = proba.max(axis=1)
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bins = np.searchsorted(inner_edges, confidence, side="left")  # bins are (lo, hi]: 1.0 falls in the last one
    gaps = np.zeros((len(y), n_bins))
    gaps[np.arange(len(y)), bins] = (proba.argmax(axis=1) == y) - confidence
    return gaps


def _percentile_interval(resampled: np.ndarray, ci: float, n_bootstrap: int) -> tuple[float, float]:
    """Percentile interval over the resamples that define the metric (not NaN); NaN bounds when fewer than
    half do."""
    usable = resampled[~np.isnan(resampled)]
    if 2 * len(usable) < n_bootstrap:
        return float("nan"), float("nan")
    low, high = np.quantile(usable, [(1 - ci) / 2, (1 + ci) / 2])
    return float(low), float(high)


def _bootstrap(
    y: np.ndarray, proba: np.ndarray, auroc_classes: list[int], *, n_bootstrap: int, seed: int
) -> dict[str, np.ndarray]:
    """Every metric on each of ``n_bootstrap`` case resamples: accuracy and ECE (B,), F1 and AUROC (B, C)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    chunk = max(1, _MAX_CELLS_PER_CHUNK // n)
    parts = []
    for start in range(0, n_bootstrap, chunk):
        counts = _resample_counts(rng, n, min(chunk, n_bootstrap - start))
        parts.append(_resampled_metrics(counts, y, proba, auroc_classes, _ECE_BINS))
    return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}


def _resample_counts(rng: np.random.Generator, n: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n) how many times each case is drawn into each resample of n cases with replacement."""
    drawn = rng.integers(0, n, size=(n_resamples, n)) + n * np.arange(n_resamples)[:, None]
    return np.bincount(drawn.ravel(), minlength=n_resamples * n).reshape(n_resamples, n).astype(float)


def _resampled_metrics(
    counts: np.ndarray, y: np.ndarray, proba: np.ndarray, auroc_classes: list[int], n_bins: int
) -> dict[str, np.ndarray]:
    """Metrics of the resampled data sets given as case counts (B, N), without materialising them.

    Calling scikit-learn once per resample and metric takes seconds for 1000 resamples; these vectorised forms
    give the same numbers (the tests check them against scikit-learn on resampled data).
    """
    n_resamples, n = counts.shape
    n_classes = proba.shape[1]
    pred = proba.argmax(axis=1)
    # One confusion matrix per resample: (B, N) @ (N, C*C) -> (B, C, C), rows true, columns predicted.
    pair = np.eye(n_classes * n_classes)[y * n_classes + pred]
    cm = (counts @ pair).reshape(n_resamples, n_classes, n_classes)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    true_plus_pred = cm.sum(axis=2) + cm.sum(axis=1)  # = 2 tp + fn + fp
    f1 = np.divide(2 * tp, true_plus_pred, out=np.zeros_like(tp), where=true_plus_pred > 0)  # zero_division=0
    auroc = np.full((n_resamples, n_classes), np.nan)
    for c in auroc_classes:
        auroc[:, c] = _ovr_auroc(counts, proba[:, c], y == c)
    return {
        "accuracy": tp.sum(axis=1) / n,
        "f1": f1,
        "support": cm.sum(axis=2),  # (B, C) cases of each class in each resample
        "ece": np.abs(counts @ _calibration_gaps(y, proba, n_bins)).sum(axis=1) / n,
        "auroc": auroc,
    }


def _ovr_auroc(counts: np.ndarray, scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """(B,) AUROC of ``scores`` for ``positive`` vs the rest in each resample given as case counts (B, N).

    Mann-Whitney with tie-averaged ranks: each positive scores the number of negatives below it plus half those
    tied with it, over n_pos * n_neg. NaN where a resample lacks positives or negatives.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    tie_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    weights = counts[:, order]
    is_pos = positive[order]
    # (B, N) -> (B, G): counts of positives and negatives at each distinct score, in increasing order
    pos = np.add.reduceat(weights * is_pos, tie_starts, axis=1)
    neg = np.add.reduceat(weights * ~is_pos, tie_starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pairs = pos.sum(axis=1) * neg.sum(axis=1)
    wins = (pos * (neg_below + 0.5 * neg)).sum(axis=1)
    return np.divide(wins, n_pairs, out=np.full(len(counts), np.nan), where=n_pairs > 0)
