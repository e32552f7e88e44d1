"""The tabular normalisers of a federated model, fitted from the sites' aggregate statistics instead of their values.

Each site sends, per numeric feature of each tabular modality, the count of measured values, their sums of powers 1
to 3, whether they are all >= 0, and the sums of powers 1 and 2 of ``log1p`` of them: sums and counts, never a
case's value. The server combines them into the statistics ``FeatureNormaliser.fit`` would have computed on the
pooled values (mean, unbiased standard deviation, and the log scale for strongly right-skewed positive features:
skewness > 2), up to float rounding.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from neurofusion.models.encoders import FeatureNormaliser

# per feature: measured count, sums of x, x^2, x^3, all-non-negative flag, sums of log1p(x) and its square
STATISTICS = ("count", "sum", "sum2", "sum3", "nonnegative", "log_sum", "log_sum2")


def feature_statistics(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], n_features: int) -> dict[str, np.ndarray]:
    """Sums and counts of one tabular modality's numeric values, accumulated over ``(numeric, mask)`` batches of
    shape (B, F): a dict of (F,) float64 arrays, one per name in STATISTICS."""
    totals = {name: np.zeros(n_features) for name in STATISTICS}
    totals["nonnegative"][:] = 1.0
    for numeric, mask in batches:
        if numeric.shape[-1] != n_features:
            raise ValueError(f"numeric values must be (B, {n_features}), got {tuple(numeric.shape)}")
        values = numeric.double().numpy()
        measured = mask.bool().numpy()
        x = np.where(measured, values, 0.0)
        totals["count"] += measured.sum(0)
        totals["sum"] += x.sum(0)
        totals["sum2"] += (x**2).sum(0)
        totals["sum3"] += (x**3).sum(0)
        negative = (measured & (values < 0)).any(0)
        totals["nonnegative"] = np.where(negative, 0.0, totals["nonnegative"])
        logs = np.where(measured, np.log1p(np.clip(values, 0.0, None)), 0.0)
        totals["log_sum"] += logs.sum(0)
        totals["log_sum2"] += (logs**2).sum(0)
    return totals


def combine_statistics(sites: Iterable[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The pooled statistics of several sites: sums add, the non-negative flags must all hold."""
    sites = list(sites)
    if not sites:
        raise ValueError("no site statistics to combine")
    missing = [name for name in STATISTICS if any(name not in site for site in sites)]
    if missing:
        raise ValueError(f"site statistics lack {', '.join(missing)}")
    combined = {name: np.sum([np.asarray(site[name], dtype=np.float64) for site in sites], axis=0)
                for name in STATISTICS if name != "nonnegative"}
    combined["nonnegative"] = np.min([np.asarray(site["nonnegative"]) for site in sites], axis=0)
    return combined


@torch.no_grad()
def set_normaliser(normaliser: FeatureNormaliser, statistics: Mapping[str, np.ndarray]) -> None:
    """Set a normaliser's buffers from pooled statistics, as ``FeatureNormaliser.fit`` sets them from the values
    (a feature with fewer than 2 measured values keeps mean 0, std 1, no log scale)."""
    count = statistics["count"]
    if count.shape != normaliser.mean.shape:
        raise ValueError(f"statistics are for {count.shape[0]} features, the normaliser has {normaliser.mean.shape[0]}")
    for j in range(len(count)):
        n = count[j]
        if n < 2:
            continue
        mean = statistics["sum"][j] / n
        m2 = max(statistics["sum2"][j] / n - mean**2, 0.0)
        m3 = statistics["sum3"][j] / n - 3 * mean * statistics["sum2"][j] / n + 2 * mean**3
        skewness = m3 / max(m2, 1e-12) ** 1.5
        skewed = bool(statistics["nonnegative"][j]) and bool(skewness > 2.0)
        s1, s2 = (statistics["log_sum"][j], statistics["log_sum2"][j]) if skewed else (
            statistics["sum"][j], statistics["sum2"][j])
        mean = s1 / n
        variance = max(s2 - n * mean**2, 0.0) / (n - 1)
        normaliser.log_scale[j] = skewed
        normaliser.mean[j] = mean
        normaliser.std[j] = max(float(np.sqrt(variance)), 1e-6)
