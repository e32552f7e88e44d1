"""Synthetic apical four-chamber (A4C) echocardiogram frames whose finding, its strength and its region are
known, so image saliency maps can be scored against the ground-truth region."""

from __future__ import annotations

import cmath
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from neurofusion.data.tasks import CARDIO_FINDINGS

# Sector (field of view) in image units (the image is the unit square): apex at the top centre.
_APEX = complex(0.5, 0.01)
_HALF_ANGLE = math.radians(45.0)
_DEPTH = 0.95

# Echo amplitude of each tissue relative to the pericardium (0 dB), and the displayed dynamic range.
_BLOOD, _MYOCARDIUM, _PERICARDIUM, _VALVE, _SURROUNDING = 0.009, 0.09, 1.0, 0.6, 0.021
_DYNAMIC_RANGE_DB = 42.0


@dataclass(frozen=True)
class EchoResult:
    """One rendered frame.

    image: float32 (size, size) in [0, 1]; roi: (x0, y0, x1, y1) pixel box of the strongest finding, end
    exclusive (``image[y0:y1, x0:x1]``), None for a normal heart; measurements: chamber sizes in pixels,
    LV shape, and the mean brightness of the mitral leaflets in the returned image.
    """

    image: np.ndarray
    roi: tuple[int, int, int, int] | None
    measurements: dict[str, float]


@dataclass(frozen=True)
class _Chamber:
    """An ellipse-based chamber in the heart frame (crux at 0, septum along x = 0, apex towards -y).

    Points are complex numbers x + iy. ``b`` is the semi-axis away from the valve plane, ``b_valve`` the
    one towards it (small for ventricles: it rounds the corners of the annulus); ``tilt`` > 0 tips the far
    end to the viewer's right; atria (``up`` False) point down, away from the valves.
    """

    centre: complex
    a: float
    b: float
    b_valve: float
    tilt: float
    wall: float
    up: bool = True

    def field(self, hx: np.ndarray, hy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Radial distance past the cavity boundary (negative inside), the elliptic angle from the far
        end (0 = far end, +pi/2 = lateral side of the base) and the coordinate along the axis; all (H, W)."""
        c, s = math.cos(self.tilt), math.sin(self.tilt)
        dx, dy = hx - self.centre.real, hy - self.centre.imag
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        if not self.up:
            ly = -ly
        ex, ey = lx / self.a, ly / np.where(ly < 0, self.b, self.b_valve)
        rho = np.maximum(np.sqrt(ex * ex + ey * ey), 1e-6)
        # r * (1 - 1/rho) is the distance past the ellipse along the ray from its centre: exact on the
        # axes and close elsewhere, enough to draw walls of a given thickness without solving for normals.
        return np.sqrt(lx * lx + ly * ly) * (1 - 1 / rho), np.arctan2(ex, -ey), ly

    def base_points(self, x_septal: float) -> tuple[complex, complex]:
        """Septal and lateral annulus hinge points, where the valve plane meets the septum and the wall."""
        axis = cmath.exp(1j * self.tilt)  # direction of the valve plane
        septal = complex(x_septal, self.centre.imag + (x_septal - self.centre.real) * axis.imag / axis.real)
        lateral = self.centre + math.copysign(self.a, self.centre.real) * axis
        return septal, lateral


@dataclass(frozen=True)
class _HeartFrame:
    """Places the heart frame in the image: p_image = origin + scale * rotate(rot) * p_heart (unit square)."""

    origin: complex
    scale: float
    rot: float
    size: int

    def to_image(self, p: complex) -> complex:
        return self.origin + self.scale * cmath.exp(1j * self.rot) * p

    def box(self, points: list[complex], margin: float) -> tuple[slice, slice]:
        """(rows, cols) pixel window holding the points plus ``margin`` (heart units) around them."""
        pix = [self.to_image(p) * self.size for p in points]
        m = margin * self.scale * self.size + 2
        lo = [max(int(min(getattr(p, k) for p in pix) - m), 0) for k in ("imag", "real")]
        hi = [min(int(max(getattr(p, k) for p in pix) + m) + 1, self.size) for k in ("imag", "real")]
        return slice(lo[0], max(hi[0], lo[0])), slice(lo[1], max(hi[1], lo[1]))


class _Drawn(NamedTuple):
    """A chamber as drawn in its pixel window: heart-frame coordinates, axial coordinate, soft masks."""

    window: tuple[slice, slice]
    x: np.ndarray
    y: np.ndarray
    ly: np.ndarray
    cavity: np.ndarray
    wall: np.ndarray
    thinning: np.ndarray | float  # fraction of the wall lost to a scar (LV only)


def _soft(x: np.ndarray, edge: float) -> np.ndarray:
    """A ramp from 0 (x < -edge) to 1 (x > edge): anti-aliased edges at the cost of one clip."""
    return np.clip(0.5 + x / (2 * edge), 0.0, 1.0)


@functools.lru_cache(maxsize=4)
def _sector_grid(size: int) -> tuple[np.ndarray, ...]:
    """Constants of one image size, each (size, size) float64 and read-only: pixel centres u (right) and v
    (down) in the unit square, their offsets su, sv from the sector apex, polar r, theta there, fan mask."""
    v, u = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size
    su, sv = u - _APEX.real, v - _APEX.imag
    r, theta = np.hypot(su, sv), np.arctan2(su, sv)
    fan = _soft(_HALF_ANGLE - abs(theta), 1 / size) * _soft(_DEPTH - r, 1 / size)
    for constant in (u, v, su, sv, r, theta, fan):
        constant.flags.writeable = False
    return u, v, su, sv, r, theta, fan


def _window(angle: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Raised-cosine bump in angle: 1 at ``centre``, 0 beyond ``half_width``."""
    off = np.minimum(np.abs(angle - centre) / half_width, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * off)


def _segment_distance(hx: np.ndarray, hy: np.ndarray, p0: complex, p1: complex) -> np.ndarray:
    """Distance from every pixel to the segment p0-p1 (heart frame); (H, W)."""
    d = p1 - p0
    px, py = hx - p0.real, hy - p0.imag
    t = np.clip((px * d.real + py * d.imag) / abs(d) ** 2, 0.0, 1.0)
    return np.hypot(px - t * d.real, py - t * d.imag)


def _bbox(size: int, *parts: tuple[np.ndarray, tuple[slice, slice]]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) pixel box, end exclusive, around (mask, window) parts; None if all are empty."""
    full = np.zeros((size, size), dtype=bool)
    for mask, window in parts:
        full[window] |= mask
    rows, cols = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1) if rows.size else None


def _beyond_plane(x: np.ndarray, y: np.ndarray, p0: complex, p1: complex, edge: float) -> np.ndarray:
    """Soft mask of the side of the valve plane p0-p1 away from the apex (the atrial side); (H, W)."""
    slope = (p1 - p0).imag / (p1 - p0).real
    return _soft(y - p0.imag - (x - p0.real) * slope, edge)


def _scan(refl: np.ndarray, noise: np.ndarray, specular: tuple[tuple[slice, slice], np.ndarray], *,
          gain: float, speckle: float) -> np.ndarray:
    """Echo amplitudes (H, W) -> log-compressed B-mode (H, W) in [0, 1], given (2, H, W) standard normals.

    The point-spread function blurs, more across the beam; fully developed speckle is the envelope of
    complex Gaussian scatter smoothed by it. ``specular`` (window, mask): mirror-like valves speckle less.
    """
    size = refl.shape[0]
    psf = (0.9 * size / 256, 2.0 * size / 256)
    refl = ndimage.gaussian_filter(refl, psf)
    envelope = np.hypot(ndimage.gaussian_filter(noise[0], psf), ndimage.gaussian_filter(noise[1], psf))
    envelope /= envelope.mean()
    # speckle scales the spread in dB; 0.6 because scanners smooth part of it away.
    grain = envelope ** (0.6 * speckle)
    window, mask = specular
    grain[window] = envelope[window] ** (0.6 * speckle * (1 - 0.7 * mask))
    level_db = 20 * np.log10(gain * refl * grain + 1e-6)
    x = np.maximum(1 + level_db / _DYNAMIC_RANGE_DB, 0)  # 0 dB (a head-on pericardium) -> 1
    return np.where(x < 0.85, x, 0.85 + 0.15 * np.tanh((x - 0.85) / 0.15))  # soft knee: keeps order, no ties


def _levels(findings: Mapping[str, float], size: int, gain: float, gamma: float, speckle: float) -> dict[str, float]:
    """Every finding's intensity (absent = 0), after checking all inputs."""
    unknown = sorted(set(findings) - set(CARDIO_FINDINGS))
    if unknown:
        raise ValueError(f"unknown echo finding(s) {unknown}; expected names from {CARDIO_FINDINGS}")
    levels = {name: float(findings.get(name, 0.0)) for name in CARDIO_FINDINGS}
    for name, level in levels.items():
        if not 0.0 <= level <= 1.0:  # also rejects NaN
            raise ValueError(f"intensity of finding {name!r} must be in [0, 1], got {findings[name]!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 64:
        raise ValueError(f"size must be an integer >= 64 pixels, got {size!r}")
    if not (gain > 0 and gamma > 0 and speckle >= 0):
        raise ValueError(f"need gain > 0, gamma > 0 and speckle >= 0, got {gain=}, {gamma=}, {speckle=}")
    return levels


def render_echo(
    rng: np.random.Generator, findings: Mapping[str, float], *,
    size: int = 256, gain: float = 1.0, gamma: float = 1.0, speckle: float = 1.0,
) -> EchoResult:
    """Render an A4C frame, float32 (size, size) in [0, 1], for findings {name: intensity in [0, 1]}.

    Absent findings are 0; several combine (their enlargements of a shared chamber multiply). The roi is
    that of the strongest finding (ties go to the earlier name in CARDIO_FINDINGS). gain, gamma and
    speckle model a site's acquisition settings. All randomness comes from ``rng``.

    The frame is computed in float64: CPUs differ in the last bits of vectorised exp, log, tanh and pow, and
    in float32 such a difference moves a stored 16-bit pixel across a rounding boundary in about one frame in
    four; in float64 it is some 2**29 times rarer (the roi thresholds likewise).
    """
    level = _levels(findings, size, gain, gamma, speckle)
    cad, hf, arr, valv = (level[k] for k in CARDIO_FINDINGS)

    # Per-case anatomy. Every draw happens whatever the findings, so one seed gives the same heart at every
    # intensity and the finding is the only thing that changes.
    scale = rng.uniform(0.93, 1.07)
    rot = math.radians(min(max(rng.normal(0.0, 4.0), -8.0), 8.0))
    origin = complex(0.5 + rng.uniform(-0.02, 0.02), 0.6 + rng.uniform(-0.02, 0.02))
    lv_a, lv_b, rv_a, rv_b, la_k, ra_k = rng.uniform(0.92, 1.08, size=6).tolist()
    wall_k, septum_k = rng.uniform(0.85, 1.15, size=2).tolist()
    valve_phase = rng.uniform()
    cad_centre = math.radians((0.0, -60.0, 60.0)[rng.integers(3)])  # apical, septal or lateral segment
    nodule_at = rng.uniform(0.3, 0.9, size=2).tolist()
    attenuation = rng.uniform(0.2, 0.6)
    coarse = rng.standard_normal((12, 12))
    noise = rng.standard_normal((2, size, size), dtype=np.float32).astype(np.float64)  # float32 draws: same stream

    # Heart failure dilates the LV (more in width: more spherical) and thins its walls; valve disease,
    # heart failure and atrial fibrillation enlarge the atria (area factors multiply).
    t_ivs, t_ias = 0.044 * septum_k * (1 - 0.3 * hf), 0.012
    w_lv = 0.044 * wall_k * (1 - 0.45 * hf)
    a_lv, b_lv = 0.118 * lv_a * (1 + 0.40 * hf), 0.41 * lv_b * (1 + 0.22 * hf)
    la_area = la_k * (1 + 0.8 * valv) * (1 + 0.3 * hf) * (1 + 0.3 * arr)
    ra_area = ra_k * (1 + 0.3 * arr)
    a_la, b_la = 0.100 * math.sqrt(la_area), 0.095 * math.sqrt(la_area)
    a_ra, b_ra = 0.090 * math.sqrt(ra_area), 0.092 * math.sqrt(ra_area)
    a_rv = 0.092 * rv_a
    # The apex stays under the probe, so a longer LV pushes the rest of the heart deeper.
    origin += 1j * scale * 0.8 * (b_lv - 0.41 * lv_b)

    # Heart frame: crux at the origin, septum on x = 0, valve planes near y = 0; (H, W) each.
    frame = _HeartFrame(origin, scale, rot, size)
    u, v, su, sv, r, theta, fan = _sector_grid(size)
    cr, sr = math.cos(rot), math.sin(rot)
    du, dv = u - origin.real, v - origin.imag
    hx, hy = (cr * du + sr * dv) / scale, (-sr * du + cr * dv) / scale
    edge = 0.9 / size / scale
    lv = _Chamber(complex(t_ivs / 2 + 0.75 * a_lv, 0), a_lv, b_lv, 0.03, math.radians(-7), w_lv)
    rv = _Chamber(complex(-t_ivs / 2 - 0.8 * a_rv, -0.02), a_rv, 0.25 * rv_b, 0.025, math.radians(9), 0.018 * wall_k)
    la = _Chamber(complex(t_ias / 2 + 0.85 * a_la, 0.45 * b_la), a_la, b_la, b_la, math.radians(8), 0.013, up=False)
    ra = _Chamber(complex(-t_ias / 2 - 0.85 * a_ra, 0.45 * b_ra - 0.02), a_ra, b_ra, b_ra, math.radians(-8), 0.013,
                  up=False)

    # Valves: leaflets hinge on the annulus and swing into the ventricles; the frame is at a random phase
    # between closed (systole) and open (diastole). Calcified mitral leaflets thicken and stiffen.
    opening = math.radians(15 + 60 * valve_phase)
    mv_opening = opening + (math.radians(30) - opening) * 0.7 * valv
    mv_sep, mv_lat = lv.base_points(t_ivs / 2)
    tv_sep, tv_lat = rv.base_points(-t_ivs / 2)
    mv_w, tv_w = abs(mv_lat - mv_sep), abs(tv_lat - tv_sep)
    mv_leaflets = ((mv_sep, mv_sep + 0.6 * mv_w * cmath.exp(-1j * mv_opening)),
                   (mv_lat, mv_lat - 0.42 * mv_w * cmath.exp(1j * mv_opening)))
    tv_leaflets = ((tv_sep, tv_sep - 0.55 * tv_w * cmath.exp(1j * opening)),
                   (tv_lat, tv_lat + 0.45 * tv_w * cmath.exp(-1j * opening)))
    vsl = frame.box([p for leaflet in mv_leaflets + tv_leaflets for p in leaflet], 0.04)
    x, y = hx[vsl], hy[vsl]
    mitral = _soft(0.004 + 0.011 * valv - np.minimum(*(_segment_distance(x, y, *s) for s in mv_leaflets)), edge)
    if valv > 0:  # calcific nodules on the annulus and along the leaflets, growing with intensity
        for frac, (p0, p1) in zip(nodule_at, mv_leaflets):
            for c in (p0, p0 + frac * (p1 - p0)):
                mitral = np.maximum(mitral, _soft(0.015 * valv - np.hypot(x - c.real, y - c.imag), edge))
    tricuspid = _soft(0.0035 - np.minimum(*(_segment_distance(x, y, *s) for s in tv_leaflets)), edge)

    # Chambers, each drawn in its own window: cavity (dark), wall (myocardium), pericardium (bright rim).
    # Coronary disease: a scarred, akinetic LV segment whose wall thins (the cavity bulges out) and dims.
    half_width = math.radians(22 + 20 * cad)
    cavity, wall, pericardium = (np.zeros((size, size)) for _ in range(3))
    myocardium = np.full((size, size), _MYOCARDIUM)
    drawn: dict[str, _Drawn] = {}
    for name, ch, septum_x in (("lv", lv, t_ivs / 2), ("rv", rv, -t_ivs / 2), ("la", la, t_ias / 2),
                               ("ra", ra, -t_ias / 2)):
        sl = frame.box([ch.centre], max(ch.a, ch.b) + ch.wall + 0.03)
        x, y = hx[sl], hy[sl]
        dist, psi, ly = ch.field(x, y)
        thinning = 0.7 * cad * _window(psi, cad_centre, half_width) if ch is lv else 0.0
        grow = thinning * ch.wall
        side = math.copysign(1.0, ch.centre.real)
        # The septum clips each cavity flat; a thinned septal segment moves the LV's clip into the septum.
        cav = _soft(grow - dist, edge) * _soft(side * (x - septum_x) + thinning * t_ivs, edge)
        own_wall = _soft(ch.wall + 0.15 * grow - dist, edge)
        np.maximum(cavity[sl], cav, out=cavity[sl])
        np.maximum(wall[sl], own_wall, out=wall[sl])
        np.maximum(pericardium[sl], _soft(ch.wall + 0.15 * grow + 0.012 - dist, edge), out=pericardium[sl])
        if ch is lv:
            myocardium[sl] *= 1 - thinning * own_wall  # scar is dimmer in this model
        drawn[name] = _Drawn(sl, x, y, ly, cav, own_wall, thinning)
    # Septa as bands: chamber walls alone leave a notch between the ventricles' apices and a gap at the crux.
    ssl = frame.box([complex(0, -0.8 * b_lv), complex(0, 1.6 * b_la)], 0.03)
    x, y = hx[ssl], hy[ssl]
    ivs = _soft(t_ivs / 2 - abs(x), edge) * _soft(y + 0.8 * b_lv, edge) * _soft(-y, edge)
    ias = _soft(t_ias / 2 + 0.004 - abs(x), edge) * _soft(y + 0.01, edge) * _soft(1.6 * b_la - y, edge)
    septum = np.maximum(ivs, ias)
    np.maximum(wall[ssl], septum, out=wall[ssl])
    np.maximum(pericardium[ssl], septum, out=pericardium[ssl])

    # Reflectivity: patchy dim tissue (a 12 x 12 random field, stretched bilinearly) with a bright chest
    # wall in the near field, then the heart.
    ramp = np.clip(1 - abs(np.linspace(0, 11, size)[:, None] - np.arange(12)), 0, 1)
    refl = _SURROUNDING * np.exp(0.5 * (ramp @ coarse @ ramp.T)) + 0.3 * _soft(0.08 - r, 0.03)
    # Tissue borders reflect specularly: bright where the beam meets them head-on (apex, atrial floor), faint
    # where it grazes them (septum, lateral wall), as in real A4C views. Only the heart's window is needed.
    windows = [d.window for d in drawn.values()] + [ssl]
    hs = tuple(slice(min(w[k].start for w in windows), max(w[k].stop for w in windows)) for k in (0, 1))
    gy, gx = np.gradient(ndimage.gaussian_filter(wall[hs], 2 * size / 256))
    incidence = abs(gx * su[hs] + gy * sv[hs]) / (np.hypot(gx, gy) * r[hs] + 1e-6)
    refl[hs] += (_PERICARDIUM * (0.08 + 0.92 * incidence**2) - refl[hs]) * pericardium[hs]
    refl += (myocardium - refl) * wall
    refl += (_BLOOD - refl) * cavity
    refl[vsl] += (_VALVE * (1 + 3.0 * valv) - refl[vsl]) * mitral
    refl[vsl] += (0.8 * _VALVE - refl[vsl]) * tricuspid
    if valv > 0:  # calcium blocks the beam: a shadow fans out below the mitral valve, along the scan lines
        hinges = [frame.to_image(p) - _APEX for p in (mv_sep, mv_lat)]
        lo, hi = sorted(math.atan2(p.real, p.imag) for p in hinges)
        depth = max(map(abs, hinges)) + 0.02
        refl *= 1 - 0.55 * valv * _soft(theta - lo, 0.01) * _soft(hi - theta, 0.01) * _soft(r - depth, 0.02)

    # Net depth attenuation left after time-gain compensation, and weaker beams at the sector's edges.
    tgc = np.exp(-attenuation * r) * (1 - 0.3 * np.minimum(abs(theta) / _HALF_ANGLE, 1) ** 4)
    image = ((_scan(refl * tgc, noise, (vsl, mitral), gain=gain, speckle=speckle) * fan) ** gamma).astype(np.float32)

    # The region each finding changes (valve planes split atria from ventricles); roi of the strongest.
    lv_, rv_, la_, ra_ = (drawn[k] for k in ("lv", "rv", "la", "ra"))
    lv_region = lv_.wall * _soft(lv_.x + t_ivs / 2, edge) * _soft(lv.b_valve - lv_.ly, edge)
    la_below = _beyond_plane(la_.x, la_.y, mv_sep, mv_lat, edge)
    ra_below = _beyond_plane(ra_.x, ra_.y, tv_sep, tv_lat, edge)
    la_region = la_.wall * la_below * _soft(la_.x + 0.004, edge) > 0.5
    ra_region = ra_.wall * ra_below * _soft(0.004 - ra_.x, edge) > 0.5
    regions = {
        "coronary_artery_disease": [((lv_.thinning > 0.2 * cad) & (lv_region > 0.5) & (lv_.cavity < 0.5), lv_.window)],
        "heart_failure": [(lv_region > 0.5, lv_.window)],
        "arrhythmia": [(la_region, la_.window), (ra_region, ra_.window)],
        "valvular_disease": [(mitral > 0.5, vsl), (la_region, la_.window)],
    }
    strongest = max(CARDIO_FINDINGS, key=level.__getitem__)  # max keeps the first of ties
    roi = _bbox(size, *regions[strongest]) if level[strongest] > 0 else None

    # Wall thickness along the LV from septal base to lateral base, as drawn (thinning and its bulge).
    px = size * scale
    profile = _window(np.linspace(-np.pi / 2, np.pi / 2, 181), cad_centre, half_width)
    measurements = {
        "lv_area_px": float((lv_.cavity * (lv_.ly < 0)).sum()),
        "lv_wall_thickness_px": float(w_lv * px * np.mean(1 - 0.85 * 0.7 * cad * profile)),
        "lv_length_px": b_lv * px,
        "lv_sphericity": 2 * a_lv / b_lv,
        "rv_area_px": float((rv_.cavity * (1 - _beyond_plane(rv_.x, rv_.y, tv_sep, tv_lat, edge))).sum()),
        "la_area_px": float((la_.cavity * la_below).sum()),
        "ra_area_px": float((ra_.cavity * ra_below).sum()),
        "valve_brightness": float(image[vsl][mitral > 0.5].mean()),
    }
    return EchoResult(image=image, roi=roi, measurements=measurements)
