"""The map window that scrolls with the rover and remembers the tiles it leaves."""

import numpy as np
import pytest

from flight.nav.costmap import ElevationMap

pytestmark = pytest.mark.timeout(30)


def _patch(m: ElevationMap, x: float, y: float, z: float) -> None:
    xs, ys = np.meshgrid(np.arange(x - 0.5, x + 0.5, 0.05), np.arange(y - 0.5, y + 0.5, 0.05))
    pts = np.column_stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)])
    box = m.fuse(pts)
    m.update_cost(box)


def test_first_window_is_centred_where_navigation_starts():
    m = ElevationMap((3.0, -2.0), size_m=40.0, resolution_m=0.1)
    assert m.n == 400 and m.tile == 100
    assert m.origin == pytest.approx((-17.0, -22.0))
    assert m.contains(3.0 + 19.5, -2.0) and not m.contains(3.0 + 20.5, -2.0)


def test_window_scrolls_by_whole_tiles_and_gives_back_what_it_saw():
    m = ElevationMap((0.0, 0.0), size_m=40.0, resolution_m=0.1)
    _patch(m, -15.0, 0.0, 0.3)
    seen = float(m.height[m.cell(-15.0, 0.0)])
    assert seen == pytest.approx(0.3, abs=1e-6)
    assert not m.follow(7.0, 0.0)  # within three quarters of a tile of the middle: no move
    assert m.follow(30.0, 0.0)
    assert m.scrolls == 1 and m.stored_tiles > 0
    assert not m.contains(-15.0, 0.0) and m.contains(45.0, 0.0)
    # cells on the lattice: the window moved by whole tiles (10 m)
    assert (m.origin[0] + 20.0) % 10.0 == pytest.approx(0.0, abs=1e-9)
    assert np.isnan(m.height[m.cell(45.0, 0.0)])  # new ground is unknown
    assert m.follow(0.0, 0.0)
    assert m.origin == pytest.approx((-20.0, -20.0))
    assert float(m.height[m.cell(-15.0, 0.0)]) == pytest.approx(seen)
    assert float(m.cost[m.cell(-15.0, 0.0)]) == pytest.approx(1.0, abs=0.5)


def test_a_rover_on_a_tile_edge_does_not_make_the_window_thrash():
    m = ElevationMap((0.0, 0.0), size_m=40.0, resolution_m=0.1)
    assert m.follow(8.0, 0.0)
    moves = sum(m.follow(x, 0.0) for x in np.linspace(4.0, 12.0, 200))
    assert moves == 0


def test_toward_gives_the_goal_or_the_last_point_inside_the_window():
    m = ElevationMap((0.0, 0.0), size_m=20.0, resolution_m=0.1)
    assert m.toward(0.0, 0.0, 5.0, 1.0, margin_m=1.0) == (5.0, 1.0)
    sx, sy = m.toward(0.0, 0.0, 100.0, 0.0, margin_m=1.0)
    assert 8.5 < sx < 9.0 and sy == pytest.approx(0.0)
    assert m.contains(sx, sy, margin_m=1.0)


def test_two_looks_with_a_drifted_height_meet_without_a_false_step():
    """A second look at neighbouring flat ground, placed 40 cm high (the rover's height estimate
    drifted), is shifted onto the map where they overlap: no step, no hazard."""
    m = ElevationMap((0.0, 0.0), size_m=20.0, resolution_m=0.1)
    xs, ys = np.meshgrid(np.arange(-2.0, 1.0, 0.03), np.arange(-1.5, 1.5, 0.03))
    first = np.column_stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)])
    m.update_cost(m.fuse(first))
    second = first + np.array([2.0, 0.0, 0.40])  # overlaps the first from x = 0 to 1
    m.update_cost(m.fuse(second))
    assert m.datum_offset_m == pytest.approx(0.40, abs=1e-3)
    assert not m.hazard.any()
    assert abs(float(m.height[m.cell(2.5, 0.0)])) < 0.01
    # without the alignment the same looks make a step the map calls a hazard
    raw = ElevationMap((0.0, 0.0), size_m=20.0, resolution_m=0.1)
    raw.update_cost(raw.fuse(first, align=False))
    raw.update_cost(raw.fuse(second, align=False))
    assert raw.hazard.any()


def _ground_with_rock(m: ElevationMap, rx: float, ry: float, radius: float, height: float) -> None:
    xs, ys = np.meshgrid(np.arange(-2.0, 2.0, 0.02), np.arange(-2.0, 2.0, 0.02))
    q = np.clip(np.hypot(xs - rx, ys - ry) / radius, 0.0, 1.0)
    z = np.where(q < 1.0, height * np.sqrt(1.0 - q * q), 0.0)
    m.update_cost(m.fuse(np.column_stack([xs.ravel(), ys.ravel(), z.ravel()])))


def test_a_rock_two_cells_across_is_a_hazard_and_flat_ground_is_not():
    """A rock of 0.2 m across stands out of the ground around it though the 3x3 median and the
    rover-sized plane smooth it away."""
    m = ElevationMap((0.0, 0.0), size_m=20.0, resolution_m=0.1)
    _ground_with_rock(m, 0.55, 0.05, 0.1, 0.12)
    assert m.hazard[m.cell(0.55, 0.05)]
    assert not m.hazard[m.cell(-1.0, -1.0)]
    assert not np.isfinite(m.cost_at(0.55, 0.55))  # grown by the rover's half-width
    flat = ElevationMap((0.0, 0.0), size_m=20.0, resolution_m=0.1)
    _ground_with_rock(flat, 0.55, 0.05, 0.1, 0.04)  # a pebble a wheel rolls over
    assert not flat.hazard.any()


def test_marked_ground_stays_a_hazard_through_updates_and_scrolls():
    m = ElevationMap((0.0, 0.0), size_m=40.0, resolution_m=0.1)
    _patch(m, 3.0, 0.0, 0.0)
    assert not m.hazard.any()
    assert m.mark(3.0, 0.0, 0.12) > 0
    assert m.hazard[m.cell(3.0, 0.0)] and not np.isfinite(m.cost_at(3.0, 0.4))
    _patch(m, 3.0, 0.0, 0.0)  # another look at the same flat ground does not clear the mark
    assert m.hazard[m.cell(3.0, 0.0)]
    assert m.follow(40.0, 0.0) and m.follow(0.0, 0.0)
    assert m.hazard[m.cell(3.0, 0.0)] and m.marked[m.cell(3.0, 0.0)]
