"""Synthetic H&E histopathology tiles whose tumour grade, how clearly it shows and where the tumour lies are
known, so image saliency can be scored against the tumour region and a grade read from the pixels can be
checked against the grade that was planted.

Colour follows the Beer-Lambert model behind colour deconvolution: each pixel's optical density is
haematoxylin density times the haematoxylin stain vector plus eosin density times the eosin vector (default
vectors: haematoxylin from Ruifrok and Johnston 2001, eosin from Macenko et al. 2009's reference matrix), so
nuclei come out purple-blue, stroma and cytoplasm pink and empty space (lumen, fat) white. A site's staining
is a shift of those vectors and of the stain amounts.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

GRADES: tuple[int, ...] = (1, 2, 3)
GRADE_PRIOR: tuple[float, ...] = (0.25, 0.45, 0.30)
# The grade a strength-0 tile shows: the cohort's mean grade under GRADE_PRIOR.
COHORT_MEAN_GRADE = float(np.dot(GRADES, GRADE_PRIOR))

# Tumour-cell morphology at 256 px (about 0.5 um per pixel), linear in the shown grade g in [1, 3]:
# value = base + slope * (g - 1). Nuclei grow, vary more in size and outline, sit closer together, stain
# darker and divide more often as differentiation is lost; glands (lumens) disappear.
_RADIUS = (2.9, 0.85)  # mean nuclear radius, px
_SIZE_CV = (0.08, 0.09)  # coefficient of variation of nuclear radius (pleomorphism in size)
_OUTLINE = (0.03, 0.06)  # amplitude of the outline's 2nd-4th harmonics (pleomorphism in shape)
_SPACING = (13.0, -1.6)  # mean distance between tumour nuclei, px (density)
_HAEM = (0.6, 0.12)  # nuclear haematoxylin density (hyperchromasia)
_MITOSES = (0.3, 2.2)  # expected mitotic figures per tumour region at 256 px
_GLANDS = (5.0, -2.5)  # expected gland lumens per tumour region


@dataclass(frozen=True)
class StainSpec:
    """A site's H&E staining: optical-density vectors (R, G, B) of haematoxylin and eosin and how much of
    each the protocol deposits."""

    haematoxylin: tuple[float, float, float] = (0.65, 0.70, 0.29)
    eosin: tuple[float, float, float] = (0.2159, 0.8012, 0.5581)
    haematoxylin_amount: float = 1.0
    eosin_amount: float = 1.0

    def __post_init__(self) -> None:
        for name in ("haematoxylin", "eosin"):
            vector = getattr(self, name)
            if len(vector) != 3 or not all(0.0 <= v <= 1.5 for v in vector):
                raise ValueError(f"{name} stain vector must be three optical densities in [0, 1.5], got {vector}")
        if not (0.3 <= self.haematoxylin_amount <= 2.0 and 0.3 <= self.eosin_amount <= 2.0):
            raise ValueError("stain amounts must be in [0.3, 2.0], got "
                             f"{self.haematoxylin_amount} and {self.eosin_amount}")


@dataclass(frozen=True)
class TileResult:
    """One rendered tile.

    image: uint8 (size, size, 3) RGB. tissue: uint8 (size, size) class of each pixel: 0 empty space (lumen,
    fat, glass), 1 stroma, 2 tumour-cell cytoplasm, 3 nucleus. roi: (x0, y0, x1, y1) pixel box of the tumour
    region, end exclusive (``image[y0:y1, x0:x1]``). shown_grade: the grade whose morphology the tumour
    shows (COHORT_MEAN_GRADE + strength * (grade - COHORT_MEAN_GRADE)). nuclear_count, mean_nuclear_area
    (px) and mitotic_count: of the tumour nuclei as drawn.
    """

    image: np.ndarray
    tissue: np.ndarray
    roi: tuple[int, int, int, int]
    shown_grade: float
    nuclear_count: int
    mean_nuclear_area: float
    mitotic_count: int


@functools.lru_cache(maxsize=4)
def _offsets(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (dy, dx) of a (2 half + 1)^2 patch, each flattened to (P,)."""
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1]
    return dy.ravel().astype(np.float64), dx.ravel().astype(np.float64)


def _linear(coefficients: tuple[float, float], grade: float) -> float:
    return coefficients[0] + coefficients[1] * (grade - 1.0)


def _smooth_noise(rng: np.random.Generator, size: int, sigma: tuple[float, float] | float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation; (size, size) float64."""
    field = ndimage.gaussian_filter(rng.standard_normal((size, size)), sigma, mode="wrap")
    return field / max(float(field.std()), 1e-9)


def _splat(size: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum ``values`` (N, P) at pixel (rows, cols) (N, P) into a (size, size) map, dropping off-tile pixels."""
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
    flat = (rows[inside] * size + cols[inside]).astype(np.int64)
    return np.bincount(flat, weights=values[inside], minlength=size * size).reshape(size, size)


def _nuclei(
    centres: np.ndarray, radius: np.ndarray, aspect: np.ndarray, angle: np.ndarray, harmonics: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft masks of N nuclei drawn in one vectorised pass.

    centres (N, 2) float (row, col); radius, aspect, angle (N,); harmonics (N, 3, 2) cosine and sine
    amplitudes of the outline's 2nd-4th harmonics. Returns rows, cols (N, P) int and mask (N, P) in [0, 1].
    """
    a = radius * np.sqrt(aspect)  # semi-axes along and across the long axis
    b = radius / np.sqrt(aspect)
    # The outline factor is capped at 1.3, so no nucleus reaches beyond 1.3 long semi-axes.
    half = int(math.ceil(float(a.max(initial=1.0)) * 1.3)) + 1
    dy, dx = _offsets(half)
    base = np.floor(centres).astype(np.int64)
    fy = dy[None, :] + base[:, :1] + 0.5 - centres[:, :1]  # (N, P) offsets from the true centre
    fx = dx[None, :] + base[:, 1:] + 0.5 - centres[:, 1:]
    c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
    u, v = (c * fx + s * fy) / a[:, None], (-s * fx + c * fy) / b[:, None]
    rho = np.maximum(np.sqrt(u * u + v * v), 1e-9)
    # cos(k phi), sin(k phi) of the elliptic angle by complex powers: no trigonometry per pixel.
    w = (u + 1j * v) / rho
    wk = w * w
    outline = np.ones_like(rho)
    for k in range(3):
        outline += harmonics[:, k, :1] * wk.real + harmonics[:, k, 1:] * wk.imag
        wk = wk * w
    # Distance inside the outline in pixels, approximately; a one-pixel ramp anti-aliases the edge.
    depth = (np.minimum(outline, 1.3) - rho) * radius[:, None]
    mask = np.clip(depth + 0.5, 0.0, 1.0)
    return dy[None, :].astype(np.int64) + base[:, :1], dx[None, :].astype(np.int64) + base[:, 1:], mask


class _Layout(NamedTuple):
    """A tile's tissue layout; every map (size, size). box: (x0, y0, w, h) of the tumour's bounding ellipse."""

    tumour: np.ndarray  # bool: tumour region (glands included)
    lumen: np.ndarray  # bool: gland lumens inside the tumour
    empty: np.ndarray  # bool: lumens and fat, no stain
    fibres: np.ndarray  # float: stroma fibre texture, unit variance
    cytoplasm: np.ndarray  # float: tumour cytoplasm texture
    chromatin: np.ndarray  # float: fine nuclear chromatin texture
    box: tuple[float, float, float, float]


def _draw_layout(rng: np.random.Generator, size: int, shown: float) -> _Layout:
    """The tumour region (an irregular blob inside a random box), stroma fibres, fat and gland lumens; the
    number of lumens falls with the shown grade, the random draws do not depend on it."""
    scale = size / 256.0
    box_w, box_h = rng.uniform(0.45, 0.7, size=2) * size
    x0, y0 = rng.uniform(0.04, 0.96 - box_w / size) * size, rng.uniform(0.04, 0.96 - box_h / size) * size
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    cx, cy = x0 + box_w / 2, y0 + box_h / 2
    boundary = _smooth_noise(rng, size, 12 * scale)
    tumour = (np.hypot((xx - cx) / (box_w / 2), (yy - cy) / (box_h / 2)) + 0.08 * boundary) < 0.97
    fibres = _smooth_noise(rng, size, (1.2 * scale, 7 * scale) if rng.random() < 0.5 else (7 * scale, 1.2 * scale))
    fat = _smooth_noise(rng, size, 9 * scale) > 1.5
    cytoplasm = _smooth_noise(rng, size, 1.5 * scale)
    chromatin = _smooth_noise(rng, size, 0.8 * scale)
    # Well-differentiated tumours form glands; solid high-grade ones do not.
    n_gland_max = 8
    gland_draw = rng.uniform(size=n_gland_max)
    gland_at = rng.uniform(-0.6, 0.6, size=(n_gland_max, 2))
    gland_r = rng.uniform(5, 10, size=n_gland_max) * scale
    n_glands = int(np.sum(gland_draw < max(_linear(_GLANDS, shown), 0.0) / n_gland_max))
    lumen = np.zeros((size, size), dtype=bool)
    for (gx, gy), r in zip(gland_at[:n_glands], gland_r[:n_glands]):
        lumen |= np.hypot(xx - (cx + box_w / 2 * gx), yy - (cy + box_h / 2 * gy)) < r
    lumen &= tumour
    empty = (fat & ~tumour) | lumen
    return _Layout(tumour, lumen, empty, fibres, cytoplasm, chromatin, (x0, y0, box_w, box_h))


class _Nuclei(NamedTuple):
    haematoxylin: np.ndarray  # (size, size) summed nuclear haematoxylin density
    mask: np.ndarray  # (size, size) nuclear coverage in [0, 1]
    count: int
    mean_area: float  # px, resting (non-mitotic) nuclei
    mitoses: int


def _tumour_nuclei(rng: np.random.Generator, layout: _Layout, size: int, shown: float) -> _Nuclei:
    """Tumour nuclei on a jittered grid of the shown grade's spacing (candidates in lumens or outside the
    tumour dropped), sized, shaped, stained and dividing as the shown grade has them. The per-nucleus draws
    are made for the densest grid the tile can hold, so they do not depend on the grade."""
    scale = size / 256.0
    per_side = int(math.ceil(size / (_linear(_SPACING, 3.0) * scale))) + 1
    n_max = per_side * per_side
    jitter = rng.uniform(-0.45, 0.45, size=(n_max, 2))
    z_size, z_aspect, angle = rng.standard_normal(n_max), rng.uniform(size=n_max), rng.uniform(0, np.pi, n_max)
    z_outline = rng.standard_normal((n_max, 3, 2))
    z_dark = rng.standard_normal(n_max)
    mitosis_draw = rng.uniform(size=n_max)

    spacing = _linear(_SPACING, shown) * scale
    n_side = int(math.ceil(size / spacing)) + 1
    grid = np.stack(np.meshgrid(np.arange(n_side), np.arange(n_side), indexing="ij"), -1).reshape(-1, 2)
    centres = (grid + 0.5 + jitter[: len(grid)]) * spacing  # (n, 2) row, col
    idx = np.flatnonzero(np.all((centres >= 0) & (centres < size), axis=1))
    pixel = centres[idx].astype(np.int64)
    inside = layout.tumour[pixel[:, 0], pixel[:, 1]] & ~layout.lumen[pixel[:, 0], pixel[:, 1]]
    idx, centres = idx[inside], centres[idx[inside]]

    radius = _linear(_RADIUS, shown) * scale * np.exp(_linear(_SIZE_CV, shown) * np.clip(z_size[idx], -2.5, 2.5))
    aspect = 1.0 + 0.5 * z_aspect[idx]
    harmonics = _linear(_OUTLINE, shown) * z_outline[idx]
    # Mitotic figures: a condensed, very dark, ragged chromosome clump in place of a resting nucleus.
    mitotic = mitosis_draw[idx] < _linear(_MITOSES, shown) * scale * scale / max(len(idx), 1)
    radius = np.where(mitotic, radius * 0.8, radius)
    aspect = np.where(mitotic, 2.2, aspect)
    harmonics = np.where(mitotic[:, None, None], 0.25 * np.sign(z_outline[idx]) + 0.1 * z_outline[idx], harmonics)
    rows, cols, mask = _nuclei(centres, radius, aspect, angle[idx], harmonics)
    darkness = _linear(_HAEM, shown) * np.exp(0.08 * z_dark[idx]) * np.where(mitotic, 1.9, 1.0)
    areas = mask.sum(axis=1)
    resting = ~mitotic
    return _Nuclei(
        haematoxylin=_splat(size, rows, cols, mask * darkness[:, None]),
        mask=np.clip(_splat(size, rows, cols, mask), 0.0, 1.0), count=int(len(idx)),
        mean_area=float(areas[resting].mean()) if resting.any() else 0.0, mitoses=int(mitotic.sum()),
    )


def _stromal_nuclei(rng: np.random.Generator, layout: _Layout, size: int) -> np.ndarray:
    """Coverage (size, size) of few, small, spindle-shaped fibroblast nuclei in the stroma."""
    scale = size / 256.0
    at = rng.uniform(0, size, size=(int(60 * scale * scale), 2))
    angle = rng.uniform(0, np.pi, size=len(at))
    keep = ~layout.tumour[at[:, 0].astype(int), at[:, 1].astype(int)]
    keep &= ~layout.empty[at[:, 0].astype(int), at[:, 1].astype(int)]
    at, angle = at[keep], angle[keep]
    rows, cols, mask = _nuclei(at, np.full(len(at), 2.2 * scale), np.full(len(at), 4.0), angle,
                               np.zeros((len(at), 3, 2)))
    return np.clip(_splat(size, rows, cols, mask), 0.0, 1.0)


def render_tile(
    rng: np.random.Generator, grade: int, strength: float, size: int = 256, stain: StainSpec | None = None,
) -> TileResult:
    """Render an H&E tile, uint8 (size, size, 3), of a tumour of ``grade`` (1-3) shown at ``strength``.

    strength in [0, 1] scales how clearly the grade's morphology shows: the tumour is drawn at the shown
    grade COHORT_MEAN_GRADE + strength * (grade - COHORT_MEAN_GRADE), so a strength-0 tile looks like the
    cohort average whatever the grade. Every random draw happens whatever the grade and strength, so one
    ``rng`` state gives the same tissue layout at every grade and strength 0 gives the same tile for every
    grade. Computed in float64 so the uint8 pixels do not depend on the CPU's vectorised exp.
    """
    if grade not in GRADES:
        raise ValueError(f"grade must be one of {GRADES}, got {grade!r}")
    if not 0.0 <= strength <= 1.0:  # also rejects NaN
        raise ValueError(f"strength must be in [0, 1], got {strength!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 256:
        raise ValueError(f"size must be an integer >= 256 pixels, got {size!r}")
    stain = stain or StainSpec()
    shown = COHORT_MEAN_GRADE + strength * (grade - COHORT_MEAN_GRADE)
    layout = _draw_layout(rng, size, shown)
    tumour_nuclei = _tumour_nuclei(rng, layout, size, shown)
    stromal = _stromal_nuclei(rng, layout, size)
    pixel_noise = rng.normal(0.0, 1.6, size=(size, size, 3))

    tumour, empty = layout.tumour, layout.empty
    nucleus = np.clip(tumour_nuclei.mask + stromal, 0.0, 1.0)
    haem = np.clip(tumour_nuclei.haematoxylin, 0.0, 2.0) * (1.0 + 0.18 * layout.chromatin) + 0.62 * stromal
    haem += np.where(tumour, 0.09, 0.03)  # faint basophilia of cytoplasm and matrix
    eosin = np.where(tumour, 0.2 + 0.04 * layout.cytoplasm, 0.24 + 0.07 * layout.fibres)
    eosin = np.clip(eosin, 0.05, None) * (1.0 - 0.5 * nucleus)
    haem = np.where(empty, 0.0, haem)
    eosin = np.where(empty, 0.0, eosin)
    # Beer-Lambert: optical density (size, size, 3) -> transmitted light.
    od = (stain.haematoxylin_amount * haem[..., None] * np.asarray(stain.haematoxylin)
          + stain.eosin_amount * eosin[..., None] * np.asarray(stain.eosin) + 0.02)
    image = np.clip(np.rint(250.0 * np.power(10.0, -od) + pixel_noise), 0, 255).astype(np.uint8)

    tissue = np.where(empty, 0, np.where(tumour, 2, 1)).astype(np.uint8)
    tissue[nucleus >= 0.5] = 3
    region = tumour & ~layout.lumen
    r_idx, c_idx = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    roi = (int(c_idx[0]), int(r_idx[0]), int(c_idx[-1]) + 1, int(r_idx[-1]) + 1)
    return TileResult(
        image=image, tissue=tissue, roi=roi, shown_grade=float(shown), nuclear_count=tumour_nuclei.count,
        mean_nuclear_area=tumour_nuclei.mean_area, mitotic_count=tumour_nuclei.mitoses,
    )
