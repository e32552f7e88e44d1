"""Binary risk metrics (AUROC, AUPRC, Brier score, calibration) with bootstrap intervals that resample stays,
overall and per prediction hour, returned as a JSON-ready dict (the ICU task's evaluation, issue 12).

Several samples of one stay (the stay as of hour 0, 6, 12, ...) share a patient and are correlated, so the
intervals resample stays with replacement and take all of a drawn stay's samples; resampling samples would
treat them as independent and give intervals that are too narrow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from neurofusion.metrics import Estimate, _ovr_auroc, _percentile_interval, _resample_counts

# Resamples are drawn in chunks so that at most this many (resample, sample) cells sit in memory at once.
_MAX_CELLS_PER_CHUNK = 4_000_000
_METRICS = ("auroc", "auprc", "brier", "ece")


def risk_metrics(
    y: np.ndarray,
    p: np.ndarray,
    groups: np.ndarray,
    hours: np.ndarray | None = None,
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    n_bins: int = 10,
) -> dict:
    """AUROC, AUPRC, Brier score, ECE and a calibration table of a binary risk, with stay-level bootstrap CIs.

    ``y`` is (N,) 0/1 (the event within the horizon), ``p`` is (N,) the predicted probability of the event,
    ``groups`` is (N,) the stay of each sample (any hashable ids), ``hours`` is (N,) the prediction hour of
    each sample or None. Point values are scikit-learn's (``roc_auc_score``, ``average_precision_score``,
    ``brier_score_loss``) on all samples; each interval is the ``ci`` percentile interval over
    ``n_bootstrap`` resamples that draw as many stays as there are, with replacement (seeded), each with all
    its samples. ECE is ``sum_b n_b / N * |observed_b - mean_predicted_b|`` over ``n_bins`` equal-width bins
    of ``p``, bins ``(lo, hi]`` with 0 in the first, as in scikit-learn's ``calibration_curve``; it sums
    absolute gaps, so resampling noise only adds to it and on few samples its interval sits above the value.

    With ``hours``, ``by_hour`` holds the same metrics for the samples of each hour, keyed ``f"{hour:g}"``;
    each subset is resampled over its own stays with a generator seeded by ``seed``, so a subset's result
    equals ``risk_metrics`` on that subset alone. AUROC and AUPRC of samples holding one class only are not
    defined (null with a reason); a resample holding one class is left out of their interval, which is null
    with a reason when fewer than half of the resamples define the metric.
    """
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, (int, np.integer)) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be an integer >= 1, got {n_bootstrap!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.95, got {ci}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    y_arr, p_arr, stay, hour_arr = _check_inputs(y, p, groups, hours)
    settings = {"n_bootstrap": int(n_bootstrap), "seed": seed, "ci": ci, "n_bins": int(n_bins)}
    result = _summary(y_arr, p_arr, stay, what="samples", **settings)
    if hour_arr is not None:
        by_hour = {}
        for hour in np.unique(hour_arr):
            key = f"{hour:g}"
            if key in by_hour:
                raise ValueError(f"hours {hour.item()!r} and another hour both print as {key!r}; round the hours so "
                                 "that distinct prediction hours have distinct keys")
            at = hour_arr == hour
            by_hour[key] = _summary(y_arr[at], p_arr[at], stay[at], what=f"samples at hour {key}", **settings)
        result["by_hour"] = by_hour
    result.update(ci=ci, n_bootstrap=int(n_bootstrap), n_bins=int(n_bins))
    return result


def risk_metrics_table(metrics: dict) -> pd.DataFrame:
    """One row for all samples ("all") and one per prediction hour of a ``risk_metrics`` result.

    Columns: hour, n_samples, n_stays, prevalence, then for each of auroc, auprc, brier, ece the value and
    ``<metric>_ci_low`` / ``<metric>_ci_high`` (NaN where not defined), and ``notes`` joining the reasons.
    """
    if not isinstance(metrics, dict):
        raise TypeError(f"metrics must be the dict that risk_metrics returns, got {type(metrics).__name__}")
    rows = [("all", metrics)] + list(metrics.get("by_hour", {}).items())
    records = []
    for hour, block in rows:
        missing = [key for key in ("n_samples", "n_stays", "prevalence", *_METRICS) if key not in block]
        if missing:
            where = "the overall metrics" if hour == "all" else f"by_hour[{hour!r}]"
            raise ValueError(f"{where} lack {missing}: metrics must be the dict that risk_metrics returns")
        record = {"hour": hour, "n_samples": block["n_samples"], "n_stays": block["n_stays"],
                  "prevalence": block["prevalence"]}
        notes = []
        for name in _METRICS:
            estimate = block[name]
            for field, column in (("value", name), ("ci_low", f"{name}_ci_low"), ("ci_high", f"{name}_ci_high")):
                record[column] = np.nan if estimate[field] is None else float(estimate[field])
            if estimate.get("reason"):
                notes.append(f"{name}: {estimate['reason']}")
        record["notes"] = "; ".join(notes)
        records.append(record)
    return pd.DataFrame.from_records(records)


def _check_inputs(y, p, groups, hours) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(N,) labels as float 0/1, probabilities, stay codes 0..S-1 and hours (or None), validated."""
    y_arr, p_arr = np.asarray(y), np.asarray(p)
    if y_arr.ndim != 1:
        raise ValueError(f"y must be (N,) 0/1 labels, got shape {y_arr.shape}")
    n = len(y_arr)
    if n == 0:
        raise ValueError("y is empty: risk metrics need at least one sample")
    for name, arr in (("p", p_arr), ("groups", np.asarray(groups, dtype=object)),
                      ("hours", None if hours is None else np.asarray(hours))):
        if arr is not None and arr.shape != (n,):
            raise ValueError(f"{name} must be (N,) = ({n},) to match y, got shape {arr.shape}")
    if not (y_arr.dtype == bool or np.issubdtype(y_arr.dtype, np.number)):
        raise ValueError(f"y must hold 0/1 labels as numbers or booleans, got dtype {y_arr.dtype}")
    y_float = y_arr.astype(float)
    bad = ~np.isin(y_float, (0.0, 1.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"y must hold only 0 and 1, got {y_arr[i].item()!r} at position {i}")
    if p_arr.dtype == bool or not np.issubdtype(p_arr.dtype, np.number):
        raise ValueError(f"p must hold probabilities as floats, got dtype {p_arr.dtype}")
    p_float = p_arr.astype(float)
    bad = ~np.isfinite(p_float) | (p_float < 0) | (p_float > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"p must hold finite probabilities in [0, 1], got {p_arr[i].item()!r} at position {i}")
    group_arr = np.asarray(groups, dtype=object)
    # Sorted codes order the stays the same way in any subset, so a subset resamples as it would alone.
    stay, _ = pd.factorize(pd.Series(group_arr), sort=True)
    if (stay < 0).any():
        i = int(np.flatnonzero(stay < 0)[0])
        raise ValueError(f"groups must name the stay of every sample, position {i} is missing ({group_arr[i]!r})")
    hour_arr = None
    if hours is not None:
        hour_arr = np.asarray(hours)
        if hour_arr.dtype == bool or not np.issubdtype(hour_arr.dtype, np.number):
            raise ValueError(f"hours must hold prediction hours as numbers, got dtype {hour_arr.dtype}")
        hour_arr = hour_arr.astype(float)
        bad = ~np.isfinite(hour_arr)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"hours must be finite, got {hour_arr[i].item()!r} at position {i}")
    return y_float, p_float, stay, hour_arr


def _summary(y: np.ndarray, p: np.ndarray, stay: np.ndarray, *, what: str, n_bootstrap: int, seed: int,
             ci: float, n_bins: int) -> dict:
    """Every metric of one set of samples (no ``by_hour``); ``stay`` may be any integer codes."""
    n = len(y)
    stays, stay_index = np.unique(stay, return_inverse=True)
    n_events = int(y.sum())
    both_classes = 0 < n_events < n
    boot = _bootstrap(y, p, stay_index, len(stays), both_classes, n_bootstrap=n_bootstrap, seed=seed, n_bins=n_bins)

    def estimate(value: float, name: str, what_defines: str) -> dict:
        low, high = _percentile_interval(boot[name], ci, n_bootstrap)
        if np.isnan(low):
            usable = int(np.count_nonzero(~np.isnan(boot[name])))
            return Estimate(float(value), None, None, f"interval not defined: only {usable} of {n_bootstrap} "
                                                      f"stay resamples {what_defines}").to_dict()
        return Estimate(float(value), low, high).to_dict()

    if both_classes:
        defines = "hold both an event and a non-event, which the metric needs"
        auroc = estimate(roc_auc_score(y, p), "auroc", defines)
        auprc = estimate(average_precision_score(y, p), "auprc", defines)
    else:
        only = "an event" if n_events == n else "a non-event"
        reason = f"not defined: every one of the {n} {what} is {only}, so none ranks against the other class"
        auroc = auprc = Estimate(None, None, None, reason).to_dict()
    gaps = _calibration_gaps(y, p, n_bins)
    return {
        "n_samples": n,
        "n_stays": len(stays),
        "n_events": n_events,
        "prevalence": n_events / n,
        "auroc": auroc,
        "auprc": auprc,
        "brier": estimate(brier_score_loss(y, p), "brier", "give a Brier score"),
        "ece": estimate(np.abs(gaps.sum(axis=0)).sum() / n, "ece", "give an ECE"),
        "calibration": {"bins": _calibration_bins(y, p, n_bins)},
    }


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    """(N,) equal-width bin of each probability, bins ``(lo, hi]`` with 0 in the first (calibration_curve's)."""
    return np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], p, side="left")


def _calibration_gaps(y: np.ndarray, p: np.ndarray, n_bins: int) -> np.ndarray:
    """(N, n_bins): each sample's ``y - p`` in the column of its bin, so a weighted column sum is
    ``n_b * (observed_b - mean_predicted_b)`` for the full data and any resample alike."""
    gaps = np.zeros((len(y), n_bins))
    gaps[np.arange(len(y)), _bin_index(p, n_bins)] = y - p
    return gaps


def _calibration_bins(y: np.ndarray, p: np.ndarray, n_bins: int) -> list[dict]:
    """Every equal-width bin with its count, mean prediction and observed event rate (nulls when empty)."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = _bin_index(p, n_bins)
    bins = []
    for b in range(n_bins):
        inside = index == b
        count = int(inside.sum())
        bins.append({
            "lo": float(edges[b]),
            "hi": float(edges[b + 1]),
            "n": count,
            "mean_predicted": float(p[inside].mean()) if count else None,
            "observed": float(y[inside].mean()) if count else None,
        })
    return bins


def _bootstrap(y: np.ndarray, p: np.ndarray, stay_index: np.ndarray, n_stays: int, both_classes: bool, *,
               n_bootstrap: int, seed: int, n_bins: int) -> dict[str, np.ndarray]:
    """(B,) each metric on ``n_bootstrap`` stay resamples; NaN where a resample does not define it."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS_PER_CHUNK // len(y))
    gaps = _calibration_gaps(y, p, n_bins)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in _METRICS}
    for start in range(0, n_bootstrap, chunk):
        stay_counts = _resample_counts(rng, n_stays, min(chunk, n_bootstrap - start))  # (B, S)
        weights = stay_counts[:, stay_index]  # (B, S) -> (B, N): a sample counts as often as its stay is drawn
        total = weights.sum(axis=1)
        parts["brier"].append(weights @ (p - y) ** 2 / total)
        parts["ece"].append(np.abs(weights @ gaps).sum(axis=1) / total)
        if both_classes:
            parts["auroc"].append(_ovr_auroc(weights, p, y == 1))  # NaN where a resample lacks a class
            has_negative = weights @ (1 - y) > 0  # AP of events alone is 1 whatever p says: not defined
            parts["auprc"].append(np.where(has_negative, _weighted_average_precision(weights, p, y), np.nan))
        else:
            parts["auroc"].append(np.full(len(weights), np.nan))
            parts["auprc"].append(np.full(len(weights), np.nan))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _weighted_average_precision(weights: np.ndarray, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(B,) average precision of ``scores`` for ``y == 1`` with sample weights (B, N), scikit-learn's step sum.

    AP = sum over distinct thresholds, high to low, of (recall gain) * precision at that threshold; tied scores
    form one threshold. NaN where a resample holds no positive.
    """
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    tie_starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    is_pos = y[order] == 1
    # (B, N) -> (B, G): weight of positives and negatives at each distinct score, in decreasing order
    pos = np.add.reduceat(w * is_pos, tie_starts, axis=1)
    neg = np.add.reduceat(w * ~is_pos, tie_starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    n_pos = tp[:, -1]
    ap = (pos * precision).sum(axis=1)
    return np.divide(ap, n_pos, out=np.full(len(w), np.nan), where=n_pos > 0)
