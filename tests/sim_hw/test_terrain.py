"""Procedural terrain: determinism, rock and crater statistics, lookups."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_hw.terrain import (
    Terrain,
    TerrainConfig,
    expected_crater_count,
    golombek_area_fraction,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def rocky() -> Terrain:
    cfg = TerrainConfig(size_m=60.0, resolution_m=0.1, rock_abundance=0.06, crater_density=0.02)
    return Terrain.generate(cfg, seed=11)


def test_same_seed_same_terrain_other_seed_other_terrain() -> None:
    cfg = TerrainConfig(size_m=30.0, resolution_m=0.1, rock_abundance=0.05)
    a = Terrain.generate(cfg, seed=5)
    b = Terrain.generate(cfg, seed=5)
    c = Terrain.generate(cfg, seed=6)
    assert np.array_equal(a.heights, b.heights)
    assert np.array_equal(a.albedo, b.albedo)
    assert a.rocks == b.rocks and a.craters == b.craters
    assert not np.allclose(a.heights, c.heights)
    assert a.rocks != c.rocks


def test_rock_sizes_many_small_few_big(rocky: Terrain) -> None:
    d = rocky.rocks_array()[:, 2] * 2.0
    counts, _ = np.histogram(d, bins=[0.15, 0.3, 0.5, 0.8, 2.0])
    assert counts[0] > 200
    assert counts[0] > counts[1] > counts[2] > counts[3]
    # rocks are domes about half as tall as they are wide
    h = rocky.rocks_array()[:, 3]
    assert np.all((h > 0.3 * d) & (h < 0.65 * d))


def test_rock_cover_follows_golombek_model(rocky: Terrain) -> None:
    arr = rocky.rocks_array()
    d = arr[:, 2] * 2.0
    area = rocky.size_m[0] * rocky.size_m[1]
    for dmin in (0.2, 0.4):
        covered = np.sum(np.pi * d[d >= dmin] ** 2 / 4.0) / area
        expected = golombek_area_fraction(0.06, dmin) - golombek_area_fraction(0.06, 2.0)
        assert covered == pytest.approx(expected, rel=0.35), dmin


def test_crater_count_matches_power_law(rocky: Terrain) -> None:
    mean = expected_crater_count(0.02, 2.0, 60.0 * 60.0, 1.0, 25.0)
    n = len(rocky.craters)
    assert abs(n - mean) < 4.0 * math.sqrt(mean)
    diam = np.array([c.diameter for c in rocky.craters])
    assert diam.min() >= 1.0 and diam.max() <= 25.0
    # a power law: far more small craters than large ones
    assert np.sum(diam < 2.0) > 3 * np.sum(diam > 4.0)


def test_crater_is_a_bowl_with_a_raised_rim() -> None:
    flat = Terrain.plane(size_m=30.0, resolution_m=0.1)
    flat._stamp_crater(15.0, 15.0, 8.0, 1.2, 0.9)
    assert flat.height_at(15.0, 15.0) == pytest.approx(-1.2, abs=0.02)
    assert flat.height_at(19.0, 15.0) == pytest.approx(0.24, abs=0.03)  # rim: 0.2 x depth
    assert flat.height_at(15.0, 15.0 + 11.9) < 0.02  # blanket fades out by 3 R
    assert flat.albedo_at(15.0, 15.0) < flat.albedo_at(28.0, 28.0) * 1.2


def test_plane_slope_height_and_normal() -> None:
    t = Terrain.plane(size_m=20.0, resolution_m=0.1, slope_deg=15.0, uphill_azimuth_deg=90.0)
    x = np.array([5.03, 10.0, 14.77])
    y = np.array([3.0, 10.0, 17.31])
    expected = math.tan(math.radians(15.0)) * (x - 10.0)
    assert np.allclose(t.height_at(x, y), expected, atol=1e-5)
    n = t.normal_at(10.0, 10.0)
    assert n[2] == pytest.approx(math.cos(math.radians(15.0)), abs=1e-5)
    assert n[0] == pytest.approx(-math.sin(math.radians(15.0)), abs=1e-5)
    assert t.slope_deg_at(7.3, 12.1) == pytest.approx(15.0, abs=1e-3)
    assert t.height_at_fast(14.77, 17.31) == pytest.approx(float(expected[2]), abs=1e-5)


def test_add_rock_is_ground_truth_and_relief() -> None:
    t = Terrain.plane(size_m=10.0, resolution_m=0.05)
    rock = t.add_rock(4.0, 6.0, radius=0.3, height=0.25, albedo=0.5)
    assert t.rocks == [rock]
    assert t.height_at(4.0, 6.0) == pytest.approx(0.25, abs=1e-3)
    assert t.height_at(4.5, 6.0) == pytest.approx(0.0, abs=1e-6)
    assert t.albedo_at(4.0, 6.0) == pytest.approx(0.5)
    assert t.rocks_array().tolist() == [[4.0, 6.0, 0.3, 0.25]]


@pytest.mark.parametrize(("x", "y"), [(5.0, 5.0), (5.04, 5.03), (5.05, 5.05), (4.97, 5.02)])
def test_a_rock_narrower_than_two_cells_stands_at_its_full_height(x: float, y: float) -> None:
    """A rock 0.16 m across on 0.1 m cells: wherever its centre falls between the nodes, the map
    holds its top at its height above the ground it rests on (here a 10 deg slope), so the wheels
    and the cameras meet what the truth says is there."""
    t = Terrain.plane(size_m=10.0, resolution_m=0.1, slope_deg=10.0, uphill_azimuth_deg=90.0)
    ground = t.heights.copy()
    rock = t.add_rock(x, y, radius=0.08, height=0.09)
    rise = t.heights - ground
    assert float(rise.max()) == pytest.approx(0.09, abs=1e-5)
    # the top stands the height above the plane under the rock's centre, its bed
    assert rock.z_base == pytest.approx(float(ground[50, 50] + math.tan(math.radians(10.0)) * (x - 5.0)), abs=1e-5)
    # and the rock covers no node farther than its radius and half a cell from its centre
    jj, ii = np.nonzero(rise > 0.0)
    reach = np.hypot(np.maximum(np.abs(ii * 0.1 - x) - 0.05, 0.0), np.maximum(np.abs(jj * 0.1 - y) - 0.05, 0.0))
    assert float(reach.max()) < 0.08


def test_a_rock_rests_on_the_ground_not_draped_over_a_hollow() -> None:
    """A hollow of one cell under a rock's centre does not sink the rock's top into it."""
    t = Terrain.plane(size_m=10.0, resolution_m=0.1)
    t.heights[50, 50] -= 0.04
    t.add_rock(5.0, 5.0, radius=0.3, height=0.15)
    # the bed is the plane fitted to the ground under the rock and a cell around
    assert float(t.heights[50, 50]) == pytest.approx(0.15 - 0.04 / 81, abs=1e-4)
