"""Start placement: no vehicle begins (and no goal lies) where it cannot stand.

The checks read the vehicle model itself (its pitch and roll from the wheel contacts) and the
terrain's ground-truth rocks, not the placement code's own figures.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim_hw.terrain import Footprint, Terrain, safe_start, stance_at
from sim_hw.traverse import LEVELS, build_world, level_config, pick_goals
from sim_hw.vehicle import Vehicle, VehicleConfig

pytestmark = pytest.mark.timeout(60)

VEHICLE = VehicleConfig()
FOOTPRINT = Footprint.for_vehicle(VEHICLE)
#: what the vehicle model must read at a start: the tilt limit less the margin
MAX_TILT_DEG = FOOTPRINT.tilt_limit_deg - FOOTPRINT.margin_deg


def _model_tilt_deg(terrain: Terrain, x: float, y: float, yaw_deg: float) -> float:
    s = Vehicle(terrain, VEHICLE, x, y, yaw_deg).state
    return math.degrees(math.acos(math.cos(s.pitch) * math.cos(s.roll)))


def _assert_can_stand(terrain: Terrain, x: float, y: float) -> None:
    worst = max(_model_tilt_deg(terrain, x, y, h) for h in range(0, 360, 15))
    assert worst <= MAX_TILT_DEG + 1e-6, f"tilt {worst:.1f} deg at ({x:.2f}, {y:.2f})"
    rocks = terrain.rocks_array()
    if rocks.size:
        gap = np.hypot(rocks[:, 0] - x, rocks[:, 1] - y) - rocks[:, 2]
        assert gap.min() > FOOTPRINT.body_radius_m, f"rock {gap.min():.2f} m from the body centre"


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(level=st.sampled_from(sorted(LEVELS)), seed=st.integers(0, 2**32 - 1))
def test_every_level_and_seed_gives_a_start_the_vehicle_can_stand_on(level: str, seed: int) -> None:
    terrain = Terrain.generate(level_config(level), seed=seed)
    stance = safe_start(terrain, footprint=FOOTPRINT)
    _assert_can_stand(terrain, stance.x, stance.y)
    assert safe_start(terrain, footprint=FOOTPRINT) == stance  # a seed always gives the same start
    cx, cy = terrain.center
    assert math.hypot(stance.x - cx, stance.y - cy) == pytest.approx(stance.moved_m)


@pytest.mark.parametrize("level", sorted(LEVELS))
@pytest.mark.parametrize("seed", range(6))
def test_sweep_of_seeds_per_level(level: str, seed: int) -> None:
    terrain = Terrain.generate(level_config(level), seed=seed)
    stance = safe_start(terrain, footprint=FOOTPRINT)
    _assert_can_stand(terrain, stance.x, stance.y)


def test_the_hard_seed_that_started_tilted_now_starts_level() -> None:
    """Hard seed 2 put the rover 28 degrees over at the map centre; it now starts beside it."""
    world = build_world("hard", 2)
    cx, cy = world.terrain.center
    assert _model_tilt_deg(world.terrain, cx, cy, 0.0) > FOOTPRINT.tilt_limit_deg  # the old start
    t = world.truth()
    assert math.degrees(math.acos(math.cos(t["pitch"]) * math.cos(t["roll"]))) <= MAX_TILT_DEG
    _assert_can_stand(world.terrain, t["x"], t["y"])
    assert math.hypot(t["x"] - cx, t["y"] - cy) < 2.0
    assert (build_world("hard", 2).truth()["x"], build_world("hard", 2).truth()["y"]) == (t["x"], t["y"])


def test_goals_are_places_the_vehicle_can_stand() -> None:
    world = build_world("hard", 9)
    for gx, gy in pick_goals(world, 3, 8.0, seed=9):
        _assert_can_stand(world.terrain, gx, gy)


def test_a_safe_centre_is_kept_exactly() -> None:
    terrain = Terrain.plane(size_m=20.0, slope_deg=8.0)
    assert safe_start(terrain, footprint=FOOTPRINT) == pytest.approx(
        safe_start(terrain, 10.0, 10.0, FOOTPRINT))
    assert safe_start(terrain, footprint=FOOTPRINT).moved_m == 0.0


def test_a_rock_under_the_start_moves_it_off_the_rock() -> None:
    terrain = Terrain.plane(size_m=20.0)
    terrain.add_rock(10.0, 10.0, 0.3, 0.15)
    stance = safe_start(terrain, footprint=FOOTPRINT)
    assert stance.moved_m > 0.0
    _assert_can_stand(terrain, stance.x, stance.y)
    assert stance_at(terrain, 10.0, 10.0, FOOTPRINT) is None


def test_a_tilt_just_over_the_margin_is_refused_and_one_under_accepted() -> None:
    steep = Terrain.plane(size_m=20.0, slope_deg=MAX_TILT_DEG + 0.5)
    gentle = Terrain.plane(size_m=20.0, slope_deg=MAX_TILT_DEG - 0.5)
    assert stance_at(steep, 10.0, 10.0, FOOTPRINT) is None
    assert stance_at(gentle, 10.0, 10.0, FOOTPRINT) is not None


def test_no_place_to_stand_is_a_clear_error() -> None:
    cliff = Terrain.plane(size_m=20.0, slope_deg=30.0)
    with pytest.raises(ValueError, match="no place to stand"):
        safe_start(cliff, footprint=FOOTPRINT, search_radius_m=3.0)


def test_no_goal_found_is_fewer_goals_not_an_exception() -> None:
    """On a 20 m map no point 8 m from the centre lies 5 m inside the edge: the picker says so by
    returning no goals, and a campaign records it instead of crashing."""
    from sim_hw.world import World

    world = World("moon", 1, terrain=Terrain.plane(size_m=20.0), start_x=10.0, start_y=10.0, cameras={})
    assert pick_goals(world, 3, 8.0, seed=1) == []
    assert len(pick_goals(world, 3, 4.0, seed=1)) == 3


def test_a_goal_on_rocky_ground_needs_clearance_only_from_rocks_the_wheels_cannot_climb() -> None:
    """A lattice of pebbles (lower than the step) a metre apart leaves no spot a metre from every
    rock; the picker then takes one clear of the tall rocks and still standable."""
    from sim_hw.world import World

    terrain = Terrain.plane(size_m=30.0)
    for gx in np.arange(1.0, 30.0, 1.0):
        for gy in np.arange(1.0, 30.0, 1.0):
            if math.hypot(gx - 15.0, gy - 15.0) > 1.5:
                terrain.add_rock(float(gx), float(gy), 0.05, 0.03)
    world = World("moon", 1, terrain=terrain, start_x=15.0, start_y=15.0, cameras={})
    goals = pick_goals(world, 2, 6.0, seed=3)
    assert len(goals) == 2
    for gx, gy in goals:
        _assert_can_stand(terrain, gx, gy)
