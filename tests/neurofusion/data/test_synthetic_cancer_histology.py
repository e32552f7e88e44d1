"""Synthetic H&E tiles: they look like H&E (purple nuclei, pink stroma, white space), the grade shows in
nuclear size, density and mitoses as strongly as asked, strength 0 looks like the cohort average, the tumour
region is where the tumour is, and sites stain differently."""

from __future__ import annotations

import numpy as np
import pytest

from neurofusion.data.synthetic.cancer import COHORT_MEAN_GRADE, GRADES, SITES, StainSpec, render_tile
from neurofusion.data.synthetic.cancer.histology import GRADE_PRIOR
from neurofusion.data.synthetic.cancer.separability import nuclear_measures

SEEDS = range(24)


def _tile(seed: int, grade: int, strength: float, **kwargs):
    return render_tile(np.random.default_rng([seed, 99]), grade, strength, **kwargs)


def _measures(tile) -> dict[str, float]:
    """Grade read from the tile: recorded mean nuclear area and nuclei per 10,000 px of tumour region, and
    the nuclear pixel fraction of the region measured from colour alone."""
    x0, y0, x1, y1 = tile.roi
    return {"area": tile.mean_nuclear_area, "density": 1e4 * tile.nuclear_count / ((x1 - x0) * (y1 - y0)),
            "pixel_fraction": nuclear_measures(tile.image, tile.roi)["area_fraction"],
            "mitoses": float(tile.mitotic_count)}


@pytest.fixture(scope="module")
def by_grade() -> dict[int, list[dict[str, float]]]:
    return {g: [_measures(_tile(s, g, 1.0)) for s in SEEDS] for g in GRADES}


def test_tile_is_rgb_uint8_with_a_tumour_box_inside():
    for size in (256, 384):
        tile = _tile(0, 2, 0.7, size=size)
        assert tile.image.shape == (size, size, 3) and tile.image.dtype == np.uint8
        assert tile.tissue.shape == (size, size) and set(np.unique(tile.tissue)) <= {0, 1, 2, 3}
        x0, y0, x1, y1 = tile.roi
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
        assert (x1 - x0) * (y1 - y0) >= 0.1 * size * size


def test_colours_are_those_of_h_and_e():
    """Nuclei purple-blue (B > 0.8 R, G lowest), stroma pink (R > B > G), empty space near white, at every site."""
    for seed in range(6):
        for site in SITES:
            tile = _tile(seed, GRADES[seed % 3], 1.0, stain=site.stain)
            rgb = tile.image.astype(float)
            r, g, b = rgb[tile.tissue == 3].mean(axis=0)
            assert b > 0.8 * r and g < 0.9 * r and g < 0.75 * b, (site.name, r, g, b)
            r, g, b = rgb[tile.tissue == 1].mean(axis=0)
            assert r > b > g + 10, (site.name, r, g, b)
            assert (rgb[tile.tissue == 0].mean(axis=0) > 225).all()
            assert r > 160  # stroma is a light pink, not dark


def test_nuclear_pixels_found_by_colour_are_the_drawn_nuclei():
    tile = _tile(3, 3, 1.0)
    found = nuclear_measures(tile.image)["area_fraction"]
    drawn = float((tile.tissue == 3).mean())
    assert found == pytest.approx(drawn, rel=0.25)


def test_tumour_region_holds_the_tumour():
    for seed in range(8):
        tile = _tile(seed, 3, 1.0)
        x0, y0, x1, y1 = tile.roi
        inside = np.zeros(tile.tissue.shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        assert not ((tile.tissue == 2) & ~inside).any()  # all tumour cytoplasm lies in the box
        nuclear = nuclear_measures(tile.image)["area_fraction"] * tile.tissue.size
        in_box = nuclear_measures(tile.image, tile.roi)["area_fraction"] * (x1 - x0) * (y1 - y0)
        assert in_box >= 0.85 * nuclear  # the crowded dark nuclei are the tumour's


def test_grade_shows_in_nuclear_size_density_and_mitoses(by_grade):
    means = {g: {k: np.mean([m[k] for m in ms]) for k in ms[0]} for g, ms in by_grade.items()}
    for key in ("area", "density", "pixel_fraction", "mitoses"):
        assert means[1][key] < means[2][key] < means[3][key], (key, means)
    assert means[3]["area"] > 2.0 * means[1]["area"]
    # Monotone tile by tile too: the same seed at a higher grade has larger nuclei covering more of the tumour.
    for s in range(len(SEEDS)):
        assert by_grade[1][s]["area"] < by_grade[2][s]["area"] < by_grade[3][s]["area"]
        assert by_grade[1][s]["pixel_fraction"] < by_grade[3][s]["pixel_fraction"]


def test_strength_zero_is_the_cohort_average_whatever_the_grade(by_grade):
    for seed in range(4):
        tiles = [_tile(seed, g, 0.0) for g in GRADES]
        assert all(np.array_equal(tiles[0].image, t.image) for t in tiles[1:])
        assert tiles[0].shown_grade == pytest.approx(COHORT_MEAN_GRADE)
    zero = [_measures(_tile(s, 2, 0.0)) for s in SEEDS]
    for key in ("area", "density", "pixel_fraction"):
        cohort = sum(p * np.mean([m[key] for m in by_grade[g]]) for g, p in zip(GRADES, GRADE_PRIOR))
        assert np.mean([m[key] for m in zero]) == pytest.approx(cohort, rel=0.08), key


def test_strength_scales_how_clearly_the_grade_shows():
    for grade, sign in ((1, -1), (3, 1)):
        areas = [np.mean([_tile(s, grade, strength).mean_nuclear_area for s in range(8)])
                 for strength in (0.0, 0.5, 1.0)]
        assert sign * areas[0] < sign * areas[1] < sign * areas[2], (grade, areas)


def test_sites_stain_differently_on_the_same_tissue():
    tiles = [_tile(5, 2, 0.8, stain=site.stain) for site in SITES]
    assert all(np.array_equal(tiles[0].tissue, t.tissue) for t in tiles[1:])
    nuclei = [t.image[t.tissue == 3].astype(float).mean(axis=0) for t in tiles]
    stroma = [t.image[t.tissue == 1].astype(float).mean(axis=0) for t in tiles]
    for i in range(len(SITES)):
        for j in range(i + 1, len(SITES)):
            assert np.abs(nuclei[i] - nuclei[j]).max() > 8 or np.abs(stroma[i] - stroma[j]).max() > 8


def test_same_generator_state_gives_the_same_tile():
    a, b = _tile(11, 3, 0.6), _tile(11, 3, 0.6)
    assert np.array_equal(a.image, b.image) and a.roi == b.roi
    assert not np.array_equal(a.image, _tile(12, 3, 0.6).image)


@pytest.mark.parametrize("grade, strength, size, match", [
    (0, 0.5, 256, "grade"), (4, 0.5, 256, "grade"), (2, 1.5, 256, "strength"), (2, float("nan"), 256, "strength"),
    (2, 0.5, 128, "size"), (2, 0.5, 256.0, "size"),
])
def test_rejects_bad_arguments(grade, strength, size, match):
    with pytest.raises(ValueError, match=match):
        render_tile(np.random.default_rng(0), grade, strength, size=size)


def test_rejects_a_bad_stain():
    with pytest.raises(ValueError, match="stain vector"):
        StainSpec(haematoxylin=(0.6, 0.7))
    with pytest.raises(ValueError, match="amounts"):
        StainSpec(eosin_amount=5.0)
