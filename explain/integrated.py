"""The Integrated Gradients engine behind every attribution panel: several modalities' paths integrated
together, each step's rows of every path through one fusion pass, the number of steps chosen from the
completeness error, optional bfloat16 encoders, and cancellation between passes.

A path is one modality's input moving from its baseline to the case's value; only that modality's encoder
(or, for a note attributed at a higher BERT layer, only the layers above it) runs on the path, the other
modalities keep the case's encodings (:class:`explain._forward.ModalityForward`). An encoder that starts
with an affine map (an image ResNet's first convolution and batch norm) has it computed at the path's two
ends only (``IntegrationPath.lift``). Attributions are
``(x - baseline) * sum_k w_k * grad f(baseline + a_k (x - baseline))`` with the quadrature nodes ``a_k`` and
weights ``w_k`` of ``method``: ``gausslegendre`` (Captum's default, same nodes and weights) or
``riemann_trapezoid`` (the trapezoid rule on an even grid, whose nodes at n steps are among those at 2n - 1,
so refining it reuses every gradient already taken; Captum's own trapezoid weights sum to (n - 1) / n, these
to 1).

Completeness: IG attributions add up to ``f(x) - f(baseline)``; the difference is Captum's convergence
delta. The relative error reported beside each map is ``|delta| / max(|f(x) - f(baseline)|, min_gap)``
(``min_gap`` keeps a path whose output barely changes from asking for exactness in noise). With a
``tolerance`` the steps double from ``start_steps`` until the error is within it, or ``max_steps`` is reached
(then ``converged`` is False and the map says so).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from explain._forward import ModalityForward, attribution_mode, model_lock

METHODS = ("gausslegendre", "riemann_trapezoid", "gauss_then_trapezoid")
# gauss_then_trapezoid: Gauss-Legendre for the first round (exact for a smooth path at few steps), then nested
# trapezoid grids from 2 x start - 1 steps (a path with kinks converges slowly under either; the nested grids
# reuse every gradient where doubling Gauss-Legendre recomputes them all)
ADAPTIVE_PASS_STEPS = 32  # steps per pass of an adaptive round when internal_batch_size is not given
Cancel = threading.Event | Callable[[], bool] | None


class ExplanationCancelled(RuntimeError):
    """The caller asked to stop (its cancel event was set) before the explanation finished; nothing partial
    is returned."""


def cancelled(cancel: Cancel) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def check_cancel(cancel: Cancel, what: str = "explanation") -> None:
    if cancelled(cancel):
        raise ExplanationCancelled(f"the {what} was cancelled before it finished")


@dataclass(frozen=True)
class Integration:
    """How each path is integrated. ``tolerance`` None: exactly ``n_steps`` (today's behaviour); a number:
    adaptive, from ``start_steps`` doubling to at most ``max_steps``. ``internal_batch_size``: path steps per
    pass (per path; default all of a round's steps at once, at most ADAPTIVE_PASS_STEPS in an adaptive round).
    ``reduced_precision``: modality kinds whose encoder runs in bfloat16 on the path (the fusion, the end
    points, a path's lift and the error stay float32)."""

    n_steps: int = 50
    method: str = "gausslegendre"
    tolerance: float | None = None
    start_steps: int = 8
    max_steps: int = 128
    min_gap: float = 1e-2
    internal_batch_size: int | None = None
    joint: bool = False  # True: every path's rows of a pass through one fusion pass
    reduced_precision: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"integration method must be one of {METHODS}, got {self.method!r}")
        if self.n_steps < 2 or self.start_steps < 2:
            raise ValueError(f"n_steps and start_steps must be at least 2, got {self.n_steps}, {self.start_steps}")
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ValueError(f"tolerance is a relative completeness error in (0, 1), got {self.tolerance}")
        if self.max_steps < self.start_steps:
            raise ValueError(f"max_steps ({self.max_steps}) must be at least start_steps ({self.start_steps})")
        if self.internal_batch_size is not None and self.internal_batch_size < 1:
            raise ValueError(f"internal_batch_size must be at least 1, got {self.internal_batch_size}")
        unknown = set(self.reduced_precision) - {"image", "text", "signal", "tabular"}
        if unknown:
            raise ValueError("reduced_precision names modality kinds (image, text, signal, tabular), "
                             f"got {sorted(unknown)}")

    def schedule(self) -> list[int]:
        """Steps of each round: [n_steps] fixed; adaptive doubling (trapezoid: 2n - 1, nested grids)."""
        if self.tolerance is None:
            return [self.n_steps]
        steps = [self.start_steps]
        while steps[-1] < self.max_steps:
            following = 2 * steps[-1] - 1 if self.round_method(len(steps)) == "riemann_trapezoid" else 2 * steps[-1]
            steps.append(min(following, self.max_steps))
        return steps

    def round_method(self, k: int) -> str:
        """The quadrature rule of round ``k`` (0 = the first)."""
        if self.method != "gauss_then_trapezoid":
            return self.method
        return "gausslegendre" if k == 0 or self.tolerance is None else "riemann_trapezoid"


@dataclass
class Completeness:
    """How well a map adds up: ``delta`` = sum(attributions) - (f(x) - f(baseline)) (Captum's convergence
    delta), ``relative_error`` = |delta| / max(|gap|, min_gap). ``converged``: within ``tolerance`` (None
    when no tolerance was asked for). ``rounds``: (steps, relative error) of each round tried."""

    method: str
    n_steps: int
    delta: float
    gap: float
    relative_error: float
    tolerance: float | None
    converged: bool | None
    precision: str = "float32"
    rounds: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class IntegrationPath:
    """One modality's path: ``inputs`` and ``baseline`` (1, ...) in the space attributed (pixels, samples,
    values, or a note's word embeddings / hidden states), ``embed`` maps (n, ...) points of it to the
    modality's encoder embedding (n, d).

    ``lift`` (optional): an affine map A the encoder starts with (e.g. a first convolution and its eval-mode
    batch norm); ``embed`` then maps A's outputs, not inputs, to the embedding. A is affine, so A of the
    path's point at a is A(baseline) + a (A(x) - A(baseline)): the engine computes A at the two ends once,
    steps in A's output space, and takes the weighted sum of the gradients back to the input through A's
    transpose once (one vector-Jacobian product), instead of A forward and backward at every step. The
    attributions are the same up to float rounding; A must be affine in its input (no ReLU, no batch
    statistics)."""

    modality: str
    kind: str
    inputs: torch.Tensor
    baseline: torch.Tensor
    embed: Callable[[torch.Tensor], torch.Tensor]
    lift: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class Prepared:
    """A panel waiting for its integral: the path (None: nothing to integrate, ``finish(None, None)``), and
    ``finish(attributions, completeness)`` -> the panel."""

    path: IntegrationPath | None
    finish: Callable[[torch.Tensor, Completeness], object]


@lru_cache(maxsize=64)
def nodes(method: str, n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(alphas, weights) of ``n`` quadrature nodes on [0, 1]."""
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return tuple(float(a) for a in (x + 1) / 2), tuple(float(b) for b in w / 2)
    if method == "riemann_trapezoid":
        alphas = [k / (n - 1) for k in range(n)]
        weights = [1 / (n - 1)] * n
        weights[0] = weights[-1] = 1 / (2 * (n - 1))
        return tuple(alphas), tuple(weights)
    raise ValueError(f"integration method must be one of {METHODS}, got {method!r}")


def integrate(forward: ModalityForward, paths: Sequence[IntegrationPath], target: int,
              settings: Integration = Integration(), cancel: Cancel = None,
              ) -> Iterator[tuple[IntegrationPath, torch.Tensor, Completeness]]:
    """Integrate every path; yield (path, attributions (1, ...) like its inputs, completeness) as each
    finishes (joint: paths that converge early come first; otherwise in the given order). ``cancel`` is
    checked before every pass: ExplanationCancelled, and nothing more is yielded."""
    if not paths:
        return
    groups = [list(paths)] if settings.joint else [[p] for p in paths]
    for group in groups:
        yield from _integrate_group(forward, group, target, settings, cancel)


def _integrate_group(forward: ModalityForward, paths: list[IntegrationPath], target: int, settings: Integration,
                     cancel: Cancel) -> Iterator[tuple[IntegrationPath, torch.Tensor, Completeness]]:
    check_cancel(cancel)
    ends = _ends(forward, paths)
    gaps = _gaps(forward, paths, ends, target)
    # alpha -> gradient (1, ...) per path (in the lifted space of a path with a lift), so a nested grid
    # (trapezoid) never recomputes a node
    gradients: list[dict[float, torch.Tensor]] = [{} for _ in paths]
    rounds: list[list[tuple[int, float]]] = [[] for _ in paths]
    waiting = list(range(len(paths)))
    for k, n in enumerate(settings.schedule()):
        method = settings.round_method(k)
        alphas, weights = nodes(method, n)
        needed = {i: [a for a in alphas if a not in gradients[i]] for i in waiting}
        _gradients(forward, [paths[i] for i in waiting], [ends[i] for i in waiting], [needed[i] for i in waiting],
                   [gradients[i] for i in waiting], target, settings, cancel)
        still = []
        for i in waiting:
            path = paths[i]
            total = sum(w * gradients[i][a] for a, w in zip(alphas, weights))
            if path.lift is not None:  # back to the input space: A's transpose, once for every step
                total = _through_lift(forward, path, total)
            attributions = (path.inputs - path.baseline) * total
            delta = float(attributions.double().sum()) - gaps[i]
            error = abs(delta) / max(abs(gaps[i]), settings.min_gap)
            rounds[i].append((n, error))
            done = settings.tolerance is None or error <= settings.tolerance or n >= settings.max_steps
            if not done:
                still.append(i)
                continue
            converged = None if settings.tolerance is None else error <= settings.tolerance
            precision = "bfloat16" if path.kind in settings.reduced_precision else "float32"
            yield path, attributions.detach(), Completeness(method, n, delta, gaps[i], error,
                                                              settings.tolerance, converged, precision, rounds[i])
            gradients[i].clear()
        waiting = still
        if not waiting:
            return


@torch.no_grad()
def _ends(forward: ModalityForward, paths: list[IntegrationPath]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(end, start) of each path where its steps are taken: the inputs and the baseline, or their lifts."""
    ends = []
    with model_lock(forward.model):
        for p in paths:
            if p.lift is None:
                ends.append((p.inputs, p.baseline))
            else:
                lifted = p.lift(torch.cat([p.inputs, p.baseline]))
                ends.append((lifted[:1], lifted[1:]))
    return ends


@torch.no_grad()
def _gaps(forward: ModalityForward, paths: list[IntegrationPath], ends: list[tuple[torch.Tensor, torch.Tensor]],
          target: int) -> list[float]:
    """f(x) - f(baseline) of each path in float32: one pass over the end points of every path."""
    with model_lock(forward.model):
        parts = [(p.modality, p.embed(torch.cat(end))) for p, end in zip(paths, ends)]
        scores = forward.with_embeddings(parts)[:, target].double()  # (2 x paths,)
    return [float(scores[2 * k] - scores[2 * k + 1]) for k in range(len(paths))]


def _through_lift(forward: ModalityForward, path: IntegrationPath, total: torch.Tensor) -> torch.Tensor:
    """The summed gradient in the lifted space (1, ...) -> in the input space (1, ...) like ``path.inputs``:
    the vector-Jacobian product of the affine lift (its Jacobian is the same at every point)."""
    with attribution_mode(forward.model):
        point = path.inputs.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(path.lift(point), point, grad_outputs=total.to(point.dtype))
    return grad.detach()


def _gradients(forward: ModalityForward, paths: list[IntegrationPath], ends: list[tuple[torch.Tensor, torch.Tensor]],
               alphas: list[list[float]], stores: list[dict[float, torch.Tensor]], target: int, settings: Integration,
               cancel: Cancel) -> None:
    """Gradients of the explained score at each path's ``alphas`` (with respect to the path's points between
    its ``ends``: inputs, or their lifts), written into ``stores``: each pass takes up to internal_batch_size
    steps of every path, all through one fusion pass."""
    size = settings.internal_batch_size or max((len(a) for a in alphas), default=1)
    if settings.internal_batch_size is None and settings.tolerance is not None:
        size = min(size, ADAPTIVE_PASS_STEPS)  # a late round (up to max_steps) would hold every step's activations
    chunks = max((math.ceil(len(a) / size) for a in alphas), default=0)
    for c in range(chunks):
        check_cancel(cancel)
        taken = [a[c * size:(c + 1) * size] for a in alphas]
        rows = [(p, end, t) for p, end, t in zip(paths, ends, taken) if t]
        with attribution_mode(forward.model):
            points = []
            for _, (end, start), chunk in rows:
                alpha = torch.tensor(chunk, dtype=end.dtype, device=end.device)
                alpha = alpha.view(-1, *([1] * (end.dim() - 1)))
                point = (start + alpha * (end - start)).requires_grad_(True)
                points.append(point)
            parts = []
            for (path, _, _), point in zip(rows, points):
                reduced = path.kind in settings.reduced_precision
                autocast = torch.autocast(point.device.type, dtype=torch.bfloat16) if reduced else nullcontext()
                with autocast:
                    parts.append((path.modality, path.embed(point)))
            scores = forward.with_embeddings(parts)[:, target]
            grads = torch.autograd.grad(scores.sum(), points)
        for (_, _, chunk), grad, store in zip(rows, grads, [s for s, t in zip(stores, taken) if t]):
            for k, a in enumerate(chunk):
                store[a] = grad[k:k + 1].detach().float()
