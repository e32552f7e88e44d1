"""Tests for the synthetic A4C echo renderer: contract, determinism, and that each finding changes what and
where it claims to."""

from __future__ import annotations

import numpy as np
import pytest

from neurofusion.data.synthetic.echo import EchoResult, render_echo
from neurofusion.data.tasks import CARDIO_FINDINGS

SEEDS = range(3)
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _render(seed: int, findings: dict[str, float] | None = None, **kwargs: float) -> EchoResult:
    return render_echo(np.random.default_rng(seed), findings or {}, **kwargs)


def _mean_measurement(finding: str, key: str, level: float) -> float:
    return float(np.mean([_render(s, {finding: level}).measurements[key] for s in SEEDS]))


def _crop(image: np.ndarray, roi: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = roi
    return image[y0:y1, x0:x1]


@pytest.mark.parametrize("size", [64, 100, 256])
def test_image_is_float32_square_in_unit_range(size: int) -> None:
    result = _render(0, {"heart_failure": 0.7, "arrhythmia": 0.2}, size=size)
    assert result.image.shape == (size, size)
    assert result.image.dtype == np.float32
    assert np.isfinite(result.image).all()
    assert result.image.min() >= 0.0 and result.image.max() <= 1.0
    assert result.image.max() > 0.5  # something bright was drawn


# Renders frames as a site stores them (16-bit levels) and prints them with their rois, in a child process.
_STORED_FRAMES = """
import sys, numpy as np
from neurofusion.data.synthetic.echo import render_echo
from neurofusion.data.tasks import CARDIO_FINDINGS
for seed in range(8):
    findings = {CARDIO_FINDINGS[seed % 4]: 0.2 + 0.05 * seed}
    r = render_echo(np.random.default_rng(seed), findings, gain=0.85, gamma=1.35, speckle=0.8)
    sys.stdout.write(f"{seed} {r.roi} {np.round(r.image.astype(np.float64) * 65535).astype(np.int64).tobytes().hex()}\\n")
"""


def test_stored_frames_do_not_depend_on_the_cpus_vector_instructions() -> None:
    """numpy picks exp/log/tanh/pow loops by CPU (AVX-512, AVX2, SSE); the frames a cohort stores must not
    change with them. A second process with the wider instruction sets switched off stands in for an older
    CPU. (In float32 one frame in four moved a 16-bit level this way; the renderer now works in float64.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[3])

    def frames(**env: str) -> list[str]:
        run = subprocess.run([sys.executable, "-c", _STORED_FRAMES], capture_output=True, text=True, check=True,
                             cwd=root, env={**os.environ, "PYTHONPATH": root, **env})
        return run.stdout.splitlines()

    here = frames()
    # Disabling a group the CPU lacks is harmless; one it has makes numpy fall back to the narrower loops.
    narrower = frames(NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL", OPENBLAS_CORETYPE="Nehalem")
    assert len(here) == len(narrower) == 8
    differing = [a.split()[0] for a, b in zip(here, narrower) if a != b]
    assert not differing, f"frames {differing} change with the CPU's vector instructions"


def test_same_seed_same_frame_other_seed_other_frame() -> None:
    findings = {"valvular_disease": 0.8, "coronary_artery_disease": 0.3}
    a, b, c = _render(7, findings), _render(7, findings), _render(8, findings)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.roi == b.roi and a.measurements == b.measurements
    assert np.abs(a.image - c.image).mean() > 0.02
    assert a.measurements["lv_area_px"] != c.measurements["lv_area_px"]  # anatomy varies per case


def test_normals_vary_in_anatomy() -> None:
    areas = [_render(s).measurements["lv_area_px"] for s in range(6)]
    assert np.std(areas) / np.mean(areas) > 0.03


@pytest.mark.parametrize(
    ("findings", "kwargs", "message"),
    [
        ({"stroke": 0.5}, {}, "unknown echo finding"),
        ({"heart_failure": 1.5}, {}, "must be in \\[0, 1\\]"),
        ({"heart_failure": -0.1}, {}, "must be in \\[0, 1\\]"),
        ({"arrhythmia": float("nan")}, {}, "must be in \\[0, 1\\]"),
        ({}, {"size": 63}, "size must be"),
        ({}, {"size": 128.0}, "size must be"),
        ({}, {"gain": 0.0}, "gain > 0"),
        ({}, {"gamma": -1.0}, "gamma > 0"),
        ({}, {"speckle": -0.5}, "speckle >= 0"),
    ],
)
def test_bad_input_is_rejected_with_a_specific_message(findings: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_echo(np.random.default_rng(0), findings, **kwargs)


def test_outside_the_sector_is_black() -> None:
    image = _render(1, {"heart_failure": 1.0}, gain=2.0).image
    for corner in (image[:20, :20], image[:20, -20:], image[-8:, :8], image[-8:, -8:]):
        assert corner.max() == 0.0
    assert image[:5, 120:136].max() > 0.0  # the apex of the fan is at the top centre


def test_zero_intensity_is_a_normal_heart() -> None:
    normal = _render(2)
    for finding in CARDIO_FINDINGS:
        result = _render(2, {finding: 0.0})
        np.testing.assert_array_equal(result.image, normal.image)
        assert result.roi is None
    assert normal.roi is None


@pytest.mark.parametrize(
    ("finding", "key", "direction"),
    [
        ("heart_failure", "lv_area_px", +1),
        ("heart_failure", "lv_wall_thickness_px", -1),
        ("heart_failure", "la_area_px", +1),
        ("valvular_disease", "la_area_px", +1),
        ("valvular_disease", "valve_brightness", +1),
        ("coronary_artery_disease", "lv_wall_thickness_px", -1),
        ("arrhythmia", "la_area_px", +1),
        ("arrhythmia", "ra_area_px", +1),
    ],
)
def test_measurements_move_monotonically_with_intensity(finding: str, key: str, direction: int) -> None:
    values = np.array([_mean_measurement(finding, key, level) for level in LEVELS])
    assert (direction * np.diff(values) > 0).all(), values


@pytest.mark.parametrize(
    ("finding", "key", "low", "high"),
    [
        ("heart_failure", "lv_area_px", 1.55, 1.9),  # dilated LV
        ("heart_failure", "lv_sphericity", 1.08, 1.3),  # rounder
        ("valvular_disease", "la_area_px", 1.6, 2.0),
        ("arrhythmia", "la_area_px", 1.15, 1.4),  # kept weak: AF is an ECG diagnosis
        ("coronary_artery_disease", "lv_area_px", 1.0, 1.2),  # regional, not global
    ],
)
def test_florid_finding_has_the_intended_size(finding: str, key: str, low: float, high: float) -> None:
    ratio = _mean_measurement(finding, key, 1.0) / _mean_measurement(finding, key, 0.0)
    assert low < ratio < high


def test_heart_failure_roi_holds_a_bigger_dark_cavity() -> None:
    for seed in SEEDS:
        failing, normal = _render(seed, {"heart_failure": 1.0}), _render(seed)
        assert _crop(failing.image, failing.roi).mean() < 0.9 * _crop(normal.image, failing.roi).mean()


def test_calcified_mitral_valve_holds_the_brightest_pixels() -> None:
    for seed in SEEDS:
        result = _render(seed, {"valvular_disease": 1.0})
        brightest = result.image >= np.quantile(result.image, 0.995)
        assert _crop(brightest, result.roi).sum() / brightest.sum() > 0.8


def test_scarred_segment_roi_is_dimmer_than_the_healthy_wall() -> None:
    for seed in SEEDS:
        scarred, normal = _render(seed, {"coronary_artery_disease": 1.0}, speckle=0.0), _render(seed, speckle=0.0)
        assert _crop(scarred.image, scarred.roi).mean() < _crop(normal.image, scarred.roi).mean()


@pytest.mark.parametrize("finding", CARDIO_FINDINGS)
@pytest.mark.parametrize("size", [64, 256])
def test_roi_is_a_box_inside_the_image(finding: str, size: int) -> None:
    for seed in SEEDS:
        x0, y0, x1, y1 = _render(seed, {finding: 0.6}, size=size).roi
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        assert (x1 - x0) * (y1 - y0) < 0.4 * size * size  # a region, not the whole frame


def test_rois_sit_where_the_anatomy_is() -> None:
    boxes = {f: _render(0, {f: 1.0}).roi for f in CARDIO_FINDINGS}
    lv, atria = boxes["heart_failure"], boxes["arrhythmia"]
    assert lv[0] > 100 and (lv[0] + lv[2]) / 2 > 128  # LV on the viewer's right, septum near the midline
    assert (atria[1] + atria[3]) / 2 > (lv[1] + lv[3]) / 2  # atria below the ventricles
    assert atria[0] < 128 < atria[2]  # both atria
    assert boxes["valvular_disease"][0] > atria[0]  # mitral valve + LA: the left heart only


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return w * h / (area(a) + area(b) - w * h)


def test_roi_follows_the_strongest_of_several_findings() -> None:
    mixed = _render(4, {"heart_failure": 0.3, "valvular_disease": 0.9}).roi
    valvular, failing = _render(4, {"valvular_disease": 0.9}).roi, _render(4, {"heart_failure": 0.3}).roi
    assert _iou(mixed, valvular) > 0.7 > _iou(mixed, failing)


def test_gain_brightens_and_gamma_reshapes_the_contrast() -> None:
    means = {k: _render(5, **{k[0]: k[1]}).image.mean() for k in
             [("gain", 0.7), ("gain", 1.0), ("gain", 1.5), ("gamma", 0.6), ("gamma", 1.6)]}
    assert means[("gain", 0.7)] < means[("gain", 1.0)] < means[("gain", 1.5)]
    assert means[("gamma", 1.6)] < means[("gain", 1.0)] < means[("gamma", 0.6)]
    # gamma is a display curve: the brightness ranking of pixels does not change.
    base, curved = _render(5).image, _render(5, gamma=1.6).image
    np.testing.assert_allclose(curved, base**1.6, atol=1e-5)


def test_texture_is_ultrasound_speckle() -> None:
    cvs = {}
    for speckle in (0.5, 1.0, 1.5):
        values = []
        for seed in SEEDS:
            clean = _render(seed, speckle=0.0).image
            image = _render(seed, speckle=speckle).image
            myocardium = (clean > 0.45) & (clean < 0.6)  # mid-grey tissue in the speckle-free frame
            assert myocardium.sum() > 500
            values.append(image[myocardium].std() / image[myocardium].mean())
            # Speckle grains are elongated across the beam: correlated further sideways than in depth.
            grain = np.where(clean > 0.3, image / np.maximum(clean, 1e-3) - 1, 0.0)
            sideways = np.corrcoef(grain[:, :-1].ravel(), grain[:, 1:].ravel())[0, 1]
            in_depth = np.corrcoef(grain[:-1].ravel(), grain[1:].ravel())[0, 1]
            assert sideways > in_depth + 0.15
        cvs[speckle] = float(np.mean(values))
    assert 0.1 < cvs[1.0] < 0.35  # log-compressed B-mode myocardium
    assert cvs[0.5] < cvs[1.0] < cvs[1.5]
