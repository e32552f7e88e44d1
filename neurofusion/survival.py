"""Everything a survival task needs outside the network: the time grid of the discrete-time hazard head,
survival at any horizon, survival metrics with bootstrap intervals (computed with scikit-survival),
Kaplan-Meier curves, the log-rank test and risk groups.

Why a discrete-time hazard model (``SurvivalHead``: one hazard logit per time bin) rather than a Cox model:
it gives every case a full survival curve directly (the dashboard draws it and reads 5-year survival off it),
its likelihood handles right censoring exactly (a censored case contributes the bins it survived and no event),
and prediction needs no baseline hazard estimated from the training cohort (a Cox model's absolute survival
needs a Breslow baseline saved beside the weights), so a checkpoint alone predicts survival at any horizon.

Conventions (times are in the grid's ``unit``, months by default):
- bin ``k`` is the interval ``(edges[k], edges[k + 1]]`` (bin 0 also holds time 0); the head's curve value
  ``curve[:, k]`` is ``S(edges[k + 1]) = P(T > edges[k + 1])``, and ``S(0) = 1``;
- between edges survival is interpolated linearly (constant event density within a bin);
- the risk score is ``1 - S(horizon)`` (60 months by default): the predicted probability of the event by the
  horizon, the same quantity the dashboard explains by default, so risk groups and explanations agree.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from sksurv.compare import compare_survival
from sksurv.exceptions import NoComparablePairException
from sksurv.metrics import concordance_index_censored, cumulative_dynamic_auc, integrated_brier_score
from sksurv.nonparametric import kaplan_meier_estimator
from sksurv.util import Surv

from neurofusion.metrics import Estimate, _percentile_interval

if TYPE_CHECKING:
    import torch

_CURVE_TOLERANCE = 1e-6
_IBS_GRID_POINTS = 100


@dataclass(frozen=True)
class SurvivalBins:
    """The time grid of a discrete-time survival head: ``edges`` (K + 1,) from 0, strictly increasing."""

    edges: tuple[float, ...] = tuple(float(m) for m in range(0, 121, 12))
    unit: str = "months"

    def __post_init__(self) -> None:
        edges = tuple(float(e) for e in self.edges)
        object.__setattr__(self, "edges", edges)
        if len(edges) < 2:
            raise ValueError(f"SurvivalBins.edges must hold at least 2 edges (one bin), got {list(edges)}")
        if not np.isfinite(edges).all():
            raise ValueError(f"SurvivalBins.edges must be finite, got {list(edges)}")
        if edges[0] != 0.0:
            raise ValueError(f"SurvivalBins.edges must start at 0 (time of diagnosis), got {edges[0]}")
        steps = np.diff(edges)
        if (steps <= 0).any():
            i = int(np.flatnonzero(steps <= 0)[0])
            raise ValueError(f"SurvivalBins.edges must be strictly increasing: edge {i + 1} ({edges[i + 1]}) is not "
                             f"above edge {i} ({edges[i]})")
        if not isinstance(self.unit, str) or not self.unit:
            raise ValueError(f"SurvivalBins.unit must name the time unit, e.g. 'months', got {self.unit!r}")

    @classmethod
    def uniform(cls, stop: float = 120.0, width: float = 12.0, unit: str = "months") -> SurvivalBins:
        """Bins of equal ``width`` from 0 to ``stop``, which must be a whole number of widths."""
        if not (np.isfinite(stop) and np.isfinite(width) and stop > 0 and width > 0):
            raise ValueError(f"stop and width must be positive, got stop={stop}, width={width}")
        n = round(stop / width)
        if n < 1 or abs(n * width - stop) > 1e-9 * stop:
            raise ValueError(f"stop ({stop}) must be a whole number of bin widths ({width})")
        return cls(tuple(width * k for k in range(n + 1)), unit)

    @property
    def num_bins(self) -> int:
        return len(self.edges) - 1

    def to_dict(self) -> dict:
        return {"edges": list(self.edges), "unit": self.unit}

    @classmethod
    def from_dict(cls, data: dict) -> SurvivalBins:
        unknown = sorted(set(data) - {"edges", "unit"})
        if unknown:
            raise ValueError(f"unknown SurvivalBins field(s) {unknown}; expected 'edges' and optionally 'unit'")
        if "edges" not in data:
            raise ValueError("SurvivalBins needs 'edges' (bin edges from 0), got fields " + str(sorted(data)))
        return cls(tuple(data["edges"]), data.get("unit", "months"))

    def encode(self, time: np.ndarray, event: np.ndarray) -> np.ndarray:
        """(N,) times and (N,) event flags (1 event, 0 censored) -> (N, 2) int64 ``(bin, event)`` for
        ``SurvivalHead.loss``.

        An event goes to the bin that holds its time. A censored case counts as surviving the bin where it was
        censored only if it was censored at or past the bin's midpoint, otherwise it survived the bins before
        it only: on average a censored case is then at risk for half its last bin, as in the actuarial life
        table. A time past the last edge (event or not) survived every bin: ``(K - 1, 0)``. Bin -1 adds
        nothing to the loss: a NaN time (outcome unknown; its event flag is ignored) or a case censored in
        the first half of bin 0.
        """
        t, e = _check_outcome(time, event, allow_unknown=True)
        known = ~np.isnan(t)
        edges = np.asarray(self.edges)
        last = self.num_bins - 1
        safe_t = np.where(known, t, 0.0)
        bins = np.clip(np.searchsorted(edges, safe_t, side="left") - 1, 0, None)  # (e_k, e_k+1] -> k
        beyond = safe_t > edges[-1]
        inner = np.minimum(bins, last)
        midpoint = (edges[inner] + edges[inner + 1]) / 2
        bins = np.where(~e & ~beyond & (safe_t < midpoint), bins - 1, bins)
        bins = np.where(beyond, last, bins)
        events = e & ~beyond
        bins = np.where(known, bins, -1)
        return np.stack([bins, np.where(known, events, False).astype(np.int64)], axis=1).astype(np.int64)

    def survival_at(self, curve: np.ndarray | torch.Tensor, horizon: float | np.ndarray) -> np.ndarray | torch.Tensor:
        """Survival at ``horizon`` (scalar -> (B,), or (H,) -> (B, H)) from curves (B, K), numpy or torch
        (differentiable), interpolating linearly between edges from ``S(0) = 1``."""
        if not hasattr(curve, "detach"):  # not a tensor
            curve = np.asarray(curve, dtype=float)
        if curve.ndim != 2 or curve.shape[1] != self.num_bins:
            raise ValueError(f"curve must be (cases, {self.num_bins} bins), got shape {tuple(curve.shape)}")
        horizons = np.atleast_1d(np.asarray(horizon, dtype=float))
        outside = ~((horizons >= 0) & (horizons <= self.edges[-1]))
        if horizons.ndim != 1 or outside.any():
            raise ValueError(f"horizon must lie in [0, {self.edges[-1]}] {self.unit} (the model predicts no "
                             f"survival beyond its last bin edge), got {np.asarray(horizon).tolist()}")
        edges = np.asarray(self.edges)
        columns = []
        for h in horizons:
            k = int(np.clip(np.searchsorted(edges, h, side="left") - 1, 0, self.num_bins - 1))
            weight = float((h - edges[k]) / (edges[k + 1] - edges[k]))
            before = curve[:, k - 1] if k > 0 else 1.0  # S(edges[k])
            columns.append(before + weight * (curve[:, k] - before))
        if np.ndim(horizon) == 0:
            return columns[0]
        if isinstance(curve, np.ndarray):
            return np.stack(columns, axis=1)
        import torch  # a tensor curve means torch is loaded already

        return torch.stack(columns, dim=1)

    def risk_score(self, curve: np.ndarray | torch.Tensor, horizon: float = 60.0) -> np.ndarray | torch.Tensor:
        """(B, K) curves -> (B,) predicted probability of the event by ``horizon``: ``1 - S(horizon)``."""
        return 1.0 - self.survival_at(curve, float(horizon))


def survival_curve(hazard_logits: np.ndarray) -> np.ndarray:
    """(B, K) hazard logits -> (B, K) ``S(edges[k + 1])``, as ``SurvivalHead.survival_curve`` in numpy."""
    logits = np.asarray(hazard_logits, dtype=float)
    if logits.ndim != 2:
        raise ValueError(f"hazard_logits must be (cases, bins), got shape {logits.shape}")
    return np.exp(np.cumsum(-np.logaddexp(0.0, logits), axis=1))  # log(1 - sigmoid(h)) = -softplus(h)


# ---------------------------------------------------------------- Kaplan-Meier, log-rank, risk groups


@dataclass(frozen=True)
class KaplanMeier:
    """Product-limit estimate at each distinct observed time (T,), with its pointwise log-log interval,
    the number at risk just before each time and the events at it."""

    time: np.ndarray
    survival: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    at_risk: np.ndarray
    events: np.ndarray

    def at(self, t: float) -> float | None:
        """S(t) (a step function, 1 before the first time); None past the last time unless S reached 0."""
        if t > self.time[-1] and self.survival[-1] > 0:
            return None
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        return 1.0 if i < 0 else float(self.survival[i])

    def to_dict(self) -> dict:
        return {name: getattr(self, name).tolist() for name in
                ("time", "survival", "ci_low", "ci_high", "at_risk", "events")}


def kaplan_meier(time: np.ndarray, event: np.ndarray, conf_level: float = 0.95) -> KaplanMeier:
    """Kaplan-Meier curve of (N,) times and event flags (scikit-survival, log-log interval)."""
    t, e = _check_outcome(time, event)
    times, survival, interval = kaplan_meier_estimator(e, t, conf_type="log-log", conf_level=conf_level)
    at_risk = len(t) - np.searchsorted(np.sort(t), times, side="left")
    event_times, counts = np.unique(t[e], return_counts=True)
    events = np.zeros(len(times), dtype=np.int64)
    events[np.searchsorted(times, event_times)] = counts
    return KaplanMeier(times, survival, interval[0], interval[1], at_risk.astype(np.int64), events)


@dataclass(frozen=True)
class LogRank:
    """Log-rank test of equal survival across groups: chi-square with ``df`` = groups - 1 and its p-value;
    None (with ``reason``) when the data cannot test it."""

    chi2: float | None
    df: int
    p_value: float | None
    reason: str | None = None


def logrank(time: np.ndarray, event: np.ndarray, groups: np.ndarray) -> LogRank:
    """Log-rank test of (N,) outcomes across (N,) group labels (scikit-survival ``compare_survival``)."""
    t, e = _check_outcome(time, event)
    labels = np.asarray(groups)
    if labels.shape != t.shape:
        raise ValueError(f"groups must be ({len(t)},) labels, one per case, got shape {labels.shape}")
    df = len(np.unique(labels)) - 1
    if df < 1:
        return LogRank(None, 0, None, "not defined: every case is in the same group")
    if not e.any():
        return LogRank(None, df, None, "not defined: no events, every case is censored")
    chi2, p_value = compare_survival(Surv.from_arrays(e, t), labels)
    return LogRank(float(chi2), df, float(p_value))


def risk_groups(scores: np.ndarray, n_groups: int = 3) -> np.ndarray:
    """(N,) risk scores -> (N,) labels by quantile: "low"/"medium"/"high" for 3 groups, "low"/"high" for 2,
    "Q1".."Qn" (Q1 lowest risk) otherwise. A score equal to a cut point goes to the lower group, so tied
    scores always share a group, and groups may differ in size (or be empty) when scores tie."""
    index = _quantile_groups(np.asarray(scores, dtype=float), n_groups, "scores")
    names = {2: ["low", "high"], 3: ["low", "medium", "high"]}.get(n_groups,
                                                                    [f"Q{i + 1}" for i in range(n_groups)])
    return np.asarray(names, dtype=object)[index]


def _quantile_groups(values: np.ndarray, n_groups: int, what: str) -> np.ndarray:
    if values.ndim != 1 or len(values) == 0 or not np.isfinite(values).all():
        raise ValueError(f"{what} must be a non-empty (N,) array of finite numbers, got shape {values.shape}")
    if n_groups < 2:
        raise ValueError(f"n_groups must be >= 2, got {n_groups}")
    cuts = np.quantile(values, np.arange(1, n_groups) / n_groups)
    return np.searchsorted(cuts, values, side="left")


# ---------------------------------------------------------------- metrics with bootstrap intervals


class _Undefined(Exception):
    """A metric the (resampled) data cannot define; ``reason`` says why in a reader's words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def concordance_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray, *, n_boot: int = 200, seed: int = 0,
                      ci: float = 0.95) -> Estimate:
    """Harrell's C-index of (N,) risk scores (higher = earlier event) for (N,) outcomes, with a percentile
    bootstrap interval over ``n_boot`` case resamples (scikit-survival ``concordance_index_censored``)."""
    t, e = _check_outcome(time, event)
    r = _check_scores(risk, len(t), "risk")

    def point(idx: np.ndarray) -> float:
        if not e[idx].any():
            raise _Undefined("no events, every case is censored")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # 0 / 0 when only tied times pair up
                c_index, concordant, discordant, tied_risk, _ = concordance_index_censored(e[idx], t[idx], r[idx])
        except NoComparablePairException:
            c_index, concordant, discordant, tied_risk = np.nan, 0, 0, 0
        if concordant + discordant + tied_risk == 0:
            raise _Undefined("no comparable pair (no event precedes another case's time)")
        return float(c_index)

    return _with_interval(point, len(t), n_boot, seed, ci)


def time_dependent_auc(time: np.ndarray, event: np.ndarray, risk: np.ndarray, *, train_time: np.ndarray,
                       train_event: np.ndarray, horizon: float = 60.0, n_boot: int = 200, seed: int = 0,
                       ci: float = 0.95) -> Estimate:
    """Cumulative/dynamic AUC at ``horizon`` of (N,) risk scores (cases: event by the horizon; controls:
    followed past it), censoring weighted by the Kaplan-Meier of the training outcomes (scikit-survival
    ``cumulative_dynamic_auc``); percentile bootstrap interval over test-case resamples."""
    t, e = _check_outcome(time, event)
    r = _check_scores(risk, len(t), "risk")
    train, why = _censoring_reference(train_time, train_event, horizon)
    if train is None:
        return Estimate(None, None, None, f"not defined: {why}")

    def point(idx: np.ndarray) -> float:
        ti, ei = t[idx], e[idx]
        if not (ei & (ti <= horizon)).any():
            raise _Undefined(f"no event by {horizon:g}")
        if not (ti > horizon).any():
            raise _Undefined(f"no case followed beyond {horizon:g}")
        # Events after the horizon are controls whatever their flag: censoring them there leaves AUC(horizon)
        # unchanged and keeps the censoring weights inside the training follow-up.
        test = Surv.from_arrays(ei & (ti <= horizon), ti)
        return float(cumulative_dynamic_auc(train, test, r[idx], [horizon])[0][0])

    return _with_interval(point, len(t), n_boot, seed, ci)


def integrated_brier(time: np.ndarray, event: np.ndarray, curves: np.ndarray, bins: SurvivalBins, *,
                     train_time: np.ndarray, train_event: np.ndarray, t_range: tuple[float, float] | None = None,
                     n_boot: int = 200, seed: int = 0, ci: float = 0.95) -> Estimate:
    """Integrated Brier score (scikit-survival, censoring weighted by the training outcomes) of the (N, K)
    predicted curves over ``t_range`` (default: the first to the second-last bin edge after 0, e.g. 12..108
    months), on 100 evenly spaced times; percentile bootstrap interval over test-case resamples."""
    t, e = _check_outcome(time, event)
    c = _check_curves(curves, len(t), bins)
    lo, hi = _ibs_range(bins, t_range)
    grid = np.linspace(lo, hi, _IBS_GRID_POINTS)
    predicted = bins.survival_at(c, grid)  # (N, G)
    train, why = _censoring_reference(train_time, train_event, hi)
    if train is None:
        return Estimate(None, None, None, f"not defined: {why}")
    end = np.nextafter(hi, np.inf)

    def point(idx: np.ndarray) -> float:
        ti, ei = t[idx], e[idx]
        if not (ti > hi).any():
            raise _Undefined(f"no case followed beyond {hi:g}")
        if ti.min() > lo:
            raise _Undefined(f"no case's follow-up ends by {lo:g}, the start of the range")
        # Follow-up cut just past the range end: no Brier score inside the range changes.
        test = Surv.from_arrays(ei & (ti <= end), np.minimum(ti, end))
        return float(integrated_brier_score(train, test, predicted[idx], grid))

    return _with_interval(point, len(t), n_boot, seed, ci)


@dataclass(frozen=True)
class Calibration:
    """Predicted vs Kaplan-Meier observed survival at ``horizon`` in quantile groups of predicted survival.

    ``groups``: one dict per non-empty group (n, mean predicted, observed with its log-log interval; observed
    None when the group's follow-up ends before the horizon). Summaries over groups with an observed value,
    each with a bootstrap interval: ``mean_abs_gap`` = size-weighted mean |predicted - observed| (a grouped
    form of the integrated calibration index; 0 = calibrated; absolute gaps only grow with resampling noise,
    so its interval tends to sit above it for small groups), and the size-weighted least-squares line
    observed = ``intercept`` + ``slope`` * predicted (calibrated: slope 1, intercept 0).
    """

    horizon: float
    n_groups: int
    groups: list[dict]
    mean_abs_gap: Estimate
    slope: Estimate
    intercept: Estimate

    def to_dict(self) -> dict:
        return {"horizon": self.horizon, "n_groups": self.n_groups, "groups": self.groups,
                **{name: getattr(self, name).to_dict() for name in ("mean_abs_gap", "slope", "intercept")}}


def calibration_at(time: np.ndarray, event: np.ndarray, predicted_survival: np.ndarray, *, horizon: float = 60.0,
                   n_groups: int = 10, n_boot: int = 200, seed: int = 0, ci: float = 0.95) -> Calibration:
    """Calibration of (N,) predicted survival at ``horizon`` against Kaplan-Meier survival in ``n_groups``
    quantile groups of the prediction (ties share a group), regrouped in every bootstrap resample."""
    t, e = _check_outcome(time, event)
    p = _check_scores(predicted_survival, len(t), "predicted_survival")
    if ((p < 0) | (p > 1)).any():
        raise ValueError(f"predicted_survival must lie in [0, 1], got values in [{p.min()}, {p.max()}]")

    def table(idx: np.ndarray) -> list[dict]:
        group = _quantile_groups(p[idx], n_groups, "predicted_survival")
        rows = []
        for g in np.unique(group):
            members = idx[group == g]
            km = kaplan_meier(t[members], e[members])
            observed = km.at(horizon)
            row = {"n": int(len(members)), "predicted": float(p[members].mean()), "observed": observed,
                   "observed_low": None, "observed_high": None}
            if observed is not None:
                i = int(np.searchsorted(km.time, horizon, side="right")) - 1
                row["observed_low"], row["observed_high"] = (None, None) if i < 0 else (
                    float(km.ci_low[i]), float(km.ci_high[i]))
            rows.append(row)
        return rows

    def summary(idx: np.ndarray) -> np.ndarray:
        rows = [row for row in table(idx) if row["observed"] is not None]
        if not rows:
            raise _Undefined(f"no group is followed up to {horizon:g}")
        n = np.array([row["n"] for row in rows], dtype=float)
        pred = np.array([row["predicted"] for row in rows])
        obs = np.array([row["observed"] for row in rows])
        gap = float(np.average(np.abs(pred - obs), weights=n))
        centred = pred - np.average(pred, weights=n)
        spread = float(np.sum(n * centred**2))
        if len(rows) < 2 or spread <= 1e-12:
            return np.array([gap, np.nan, np.nan])
        slope = float(np.sum(n * centred * obs) / spread)
        return np.array([gap, slope, np.average(obs, weights=n) - slope * np.average(pred, weights=n)])

    names = ("mean_abs_gap", "slope", "intercept")
    estimates = _with_interval(summary, len(t), n_boot, seed, ci, names=names,
                               partly_undefined="predictions do not vary across groups with an observed value")
    return Calibration(float(horizon), n_groups, table(np.arange(len(t))), *(estimates[name] for name in names))


def survival_metrics(time: np.ndarray, event: np.ndarray, curves: np.ndarray, bins: SurvivalBins, *,
                     train_time: np.ndarray, train_event: np.ndarray, horizon: float = 60.0,
                     ibs_range: tuple[float, float] | None = None, n_groups: int = 10, n_boot: int = 200,
                     seed: int = 0, ci: float = 0.95) -> dict:
    """Every survival metric of (N, K) predicted curves on (N,) test outcomes, JSON-ready: C-index and AUC of
    the risk score ``1 - S(horizon)``, the integrated Brier score, calibration at the horizon; each with a
    percentile bootstrap interval over the same seeded test-case resamples; ``train_*`` are the training
    outcomes (censoring weights)."""
    t, e = _check_outcome(time, event)
    c = _check_curves(curves, len(t), bins)
    risk = bins.risk_score(c, horizon)
    common = {"n_boot": n_boot, "seed": seed, "ci": ci}
    ipcw = {"train_time": train_time, "train_event": train_event}
    lo, hi = _ibs_range(bins, ibs_range)
    return {
        "n": int(len(t)), "n_events": int(e.sum()), "horizon": float(horizon), "unit": bins.unit,
        "risk_score": f"1 - S({horizon:g} {bins.unit})",
        "c_index": concordance_index(t, e, risk, **common).to_dict(),
        "auc_at_horizon": time_dependent_auc(t, e, risk, horizon=horizon, **ipcw, **common).to_dict(),
        "integrated_brier": {**integrated_brier(t, e, c, bins, t_range=(lo, hi), **ipcw, **common).to_dict(),
                             "range": [lo, hi]},
        "calibration_at_horizon": calibration_at(t, e, 1.0 - risk, horizon=horizon, n_groups=n_groups,
                                                 **common).to_dict(),
        "n_bootstrap": n_boot, "ci": ci,
    }


def _with_interval(point: Callable[[np.ndarray], float | np.ndarray], n: int, n_boot: int, seed: int, ci: float,
                   names: tuple[str, ...] | None = None, partly_undefined: str = ""):
    """The metric ``point(case indices)`` on all cases and on ``n_boot`` seeded resamples -> an Estimate (or
    {name: Estimate} when ``point`` returns one value per name, NaN where that one is not defined, for the
    reason ``partly_undefined``). ``point`` raises _Undefined when the data define none of them."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), e.g. 0.95, got {ci}")
    width = 1 if names is None else len(names)
    try:
        value = np.atleast_1d(np.asarray(point(np.arange(n)), dtype=float))
    except _Undefined as why:
        undefined = Estimate(None, None, None, f"not defined: {why.reason}")
        return undefined if names is None else dict.fromkeys(names, undefined)
    resampled, failures = np.full((n_boot, width), np.nan), Counter()
    rng = np.random.default_rng(seed)
    for b in range(n_boot):
        try:
            resampled[b] = point(rng.integers(0, n, size=n))
        except _Undefined as why:
            failures[why.reason] += 1
    out = {}
    for j, name in enumerate(names or ("value",)):
        if np.isnan(value[j]):
            out[name] = Estimate(None, None, None, f"not defined: {partly_undefined}")
            continue
        low, high = _percentile_interval(resampled[:, j], ci, n_boot)
        if np.isnan(low):
            usable = int(np.count_nonzero(~np.isnan(resampled[:, j])))
            common = f" (most often: {failures.most_common(1)[0][0]})" if failures else ""
            out[name] = Estimate(float(value[j]), None, None,
                                 f"interval not defined: only {usable} of {n_boot} resamples define it{common}")
        else:
            out[name] = Estimate(float(value[j]), low, high)
    return out["value"] if names is None else out


def _censoring_reference(train_time: np.ndarray, train_event: np.ndarray, until: float):
    """Training outcomes as scikit-survival wants them for censoring weights up to ``until``, or (None, why)."""
    t, e = _check_outcome(train_time, train_event)
    if t.max() <= until:
        return None, (f"the training outcomes (censoring weights) end at {t.max():g}, not beyond {until:g}")
    return Surv.from_arrays(e, t), None


def _ibs_range(bins: SurvivalBins, t_range: tuple[float, float] | None) -> tuple[float, float]:
    if t_range is None:
        if bins.num_bins < 3:
            raise ValueError(f"the integrated Brier score needs t_range with {bins.num_bins} bin(s): the default "
                             "(first to second-last bin edge after 0) needs at least 3 bins")
        return bins.edges[1], bins.edges[-2]
    lo, hi = (float(x) for x in t_range)
    if not 0 < lo < hi <= bins.edges[-1]:
        raise ValueError(f"t_range must satisfy 0 < start < end <= {bins.edges[-1]} ({bins.unit}), got {t_range}")
    return lo, hi


def _check_outcome(time, event, allow_unknown: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N,) times >= 0 and (N,) event flags (bool or 0/1) -> float times, bool events. NaN times only when
    ``allow_unknown`` (their event flag is then ignored)."""
    t = np.asarray(time, dtype=float)
    ev = np.asarray(event)
    if t.ndim != 1 or len(t) == 0:
        raise ValueError(f"time must be a non-empty (N,) array, got shape {t.shape}")
    if ev.shape != t.shape:
        raise ValueError(f"event must be ({len(t)},) flags, one per time, got shape {ev.shape}")
    known = ~np.isnan(t)
    if not allow_unknown and not known.all():
        raise ValueError(f"time holds NaN at position {int(np.flatnonzero(~known)[0])}; drop cases without outcome")
    bad = known & ~((t >= 0) & np.isfinite(t))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"time must be finite and >= 0, got {t[i]} at position {i}")
    try:
        flags = ev.astype(float)
    except (TypeError, ValueError):
        raise ValueError(f"event must hold 1 (event) or 0 (censored) flags, got {ev.tolist()[:5]}...") from None
    bad = known & ~np.isin(flags, [0.0, 1.0])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"event must be 1 (event) or 0 (censored), got {ev[i]!r} at position {i}")
    return t, known & (flags == 1.0)


def _check_scores(values, n: int, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.shape != (n,):
        raise ValueError(f"{name} must be ({n},), one value per case, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must be finite, got {v[~np.isfinite(v)][0]} at position "
                         f"{int(np.flatnonzero(~np.isfinite(v))[0])}")
    return v


def _check_curves(curves, n: int, bins: SurvivalBins) -> np.ndarray:
    c = np.asarray(curves, dtype=float)
    if c.shape != (n, bins.num_bins):
        raise ValueError(f"curves must be ({n} cases, {bins.num_bins} bins), got shape {c.shape}")
    if not np.isfinite(c).all() or (c < -_CURVE_TOLERANCE).any() or (c > 1 + _CURVE_TOLERANCE).any():
        raise ValueError("curves must hold survival probabilities in [0, 1]")
    rising = np.diff(c, axis=1) > _CURVE_TOLERANCE
    if rising.any():
        row, k = (int(x) for x in np.argwhere(rising)[0])
        raise ValueError(f"curves must be non-increasing in time: case {row} rises from bin {k} to bin {k + 1}")
    return np.clip(c, 0.0, 1.0)
