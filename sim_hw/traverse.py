"""Traverse evaluation, world side: terrains of graded difficulty, goals, and the truth monitor.

A harness (``campaign/traverse.py``) flies the navigation software against these worlds; this
module knows only the world. :func:`build_world` makes a seeded world of a named difficulty,
:func:`pick_goals` chooses reachable-looking goals from the truth (flat, clear of rocks), and
:class:`TruthMonitor`, sampled as the run goes, counts rock contacts and over-limit tilt and
measures distance, speed and localization error against the truth. Flight code never sees any
of this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sim_hw.terrain import Footprint, TerrainConfig, safe_start, stance_at

if TYPE_CHECKING:  # the world (and its renderer) load when a traverse is built, not on import
    from sim_hw.world import World

#: name -> (relief RMS m, crater density, rock abundance)
LEVELS: dict[str, tuple[float, float, float]] = {
    "easy": (0.08, 0.004, 0.002),
    "moderate": (0.15, 0.01, 0.01),
    "hard": (0.25, 0.02, 0.03),
}


def level_config(level: str, size_m: float = 60.0) -> TerrainConfig:
    """The terrain configuration of a named difficulty; ``ValueError`` names the levels."""
    try:
        relief, craters, rocks = LEVELS[level]
    except KeyError:
        raise ValueError(f"unknown level {level!r}; levels: {', '.join(LEVELS)}") from None
    return TerrainConfig(size_m=size_m, relief_rms_m=relief, crater_density=craters, rock_abundance=rocks,
                         clear_radius_m=2.0, crater_max_d_m=12.0)


def build_world(level: str, seed: int, *, size_m: float = 60.0, camera_width: int = 320,
                camera_height: int = 240) -> World:
    """A lunar world of the named difficulty with a stereo navigation camera.

    The rover starts at the map centre when it can stand there, else at the nearest place it can
    (:func:`sim_hw.terrain.safe_start`: tilt under the limit with margin at every heading, no rock
    under it), so no run begins beyond the vehicle's own limits.
    """
    tc = level_config(level, size_m)
    from sim_hw.world import CameraSpec, World

    cam = CameraSpec(name="navcam", width=camera_width, height=camera_height)
    kw = {"start_hours_after_sunrise": 72.0, "cameras": {"navcam": cam}}
    world = World("moon", seed=seed, terrain_config=tc, **kw)
    stance = safe_start(world.terrain, footprint=Footprint.for_vehicle(world.vehicle.config))
    if stance.moved_m > 0.0:
        world = World("moon", seed=seed, terrain=world.terrain, start_x=stance.x, start_y=stance.y, **kw)
    return world


def pick_goals(world: World, count: int = 3, distance_m: float = 8.0, seed: int = 0,
               within_m: float = 15.0) -> list[tuple[float, float]]:
    """Goals ``distance_m`` apart in a chain from the start, all within ``within_m`` of it:
    flat spots clear of rocks where the vehicle can stand (:func:`sim_hw.terrain.stance_at`).

    A goal wants a metre clear of every rock around the vehicle's own footprint; on rocky ground
    where 400 tries find no such spot, a metre clear of the rocks it could not climb (taller than
    its step) will do, the smaller ones being the footprint's concern. Where even that finds
    none, the chain ends there: fewer goals than asked are returned (never an exception), and
    the caller records the rest as not found.
    """
    rng = np.random.default_rng(seed)
    ter = world.terrain
    rocks = ter.rocks_array()
    footprint = Footprint.for_vehicle(world.vehicle.config)
    tall = rocks[rocks[:, 3] > footprint.max_step_m] if rocks.size else rocks
    t = world.truth()
    here = (t["x"], t["y"])
    start = here
    heading = t["yaw"]
    goals: list[tuple[float, float]] = []
    x0, x1, y0, y1 = ter.bounds
    for _ in range(count):
        found = None
        for attempt in range(800):
            ang = heading + rng.uniform(-1.2, 1.2) if attempt % 400 < 200 else rng.uniform(-math.pi, math.pi)
            gx, gy = here[0] + distance_m * math.cos(ang), here[1] + distance_m * math.sin(ang)
            if not (x0 + 5 < gx < x1 - 5 and y0 + 5 < gy < y1 - 5):
                continue
            if math.hypot(gx - start[0], gy - start[1]) > within_m:
                continue
            near = rocks if attempt < 400 else tall
            if near.size and np.any(np.hypot(near[:, 0] - gx, near[:, 1] - gy) < near[:, 2] + 1.0):
                continue
            if ter.slope_deg_at(gx, gy) > 10.0:
                continue
            if stance_at(ter, gx, gy, footprint, rocks) is None:
                continue
            found = (float(gx), float(gy))
            break
        if found is None:
            break
        goals.append(found)
        heading = math.atan2(found[1] - here[1], found[0] - here[0])
        here = found
    return goals


@dataclass
class TruthMonitor:
    """Samples the truth during a run: contacts, tilt, distance, time and localization error."""

    world: World
    tilt_limit_deg: float = 20.0
    contacts: set[int] = field(default_factory=set)
    tilt_over: int = 0
    max_tilt_deg: float = 0.0
    stalls: int = 0
    samples: int = 0

    def __post_init__(self) -> None:
        self._rocks = self.world.terrain.rocks_array()
        cfg = self.world.vehicle.config
        big = self._rocks[:, 3] > cfg.max_step_m if self._rocks.size else np.zeros(0, bool)
        self._ids = np.flatnonzero(big)
        self._half_len = cfg.wheelbase_m / 2 + cfg.wheel_radius_m
        self._half_wid = cfg.track_width_m / 2 + 0.05
        self._was_stalled = False

    def sample(self) -> None:
        t = self.world.truth()
        self.samples += 1
        tilt = math.degrees(math.acos(max(-1.0, min(1.0, math.cos(t["pitch"]) * math.cos(t["roll"])))))
        self.max_tilt_deg = max(self.max_tilt_deg, tilt)
        if tilt > self.tilt_limit_deg:
            self.tilt_over += 1
        if t["stalled"] and not self._was_stalled:
            self.stalls += 1
        self._was_stalled = bool(t["stalled"])
        if self._ids.size:
            r = self._rocks[self._ids]
            c, s = math.cos(t["yaw"]), math.sin(t["yaw"])
            dx, dy = r[:, 0] - t["x"], r[:, 1] - t["y"]
            fx, fy = c * dx + s * dy, -s * dx + c * dy
            ex = np.maximum(np.abs(fx) - self._half_len, 0.0)
            ey = np.maximum(np.abs(fy) - self._half_wid, 0.0)
            hit = np.hypot(ex, ey) < r[:, 2] * 0.8  # dome rocks: the outer rim is low
            for i in self._ids[hit]:
                self.contacts.add(int(i))

    def pose(self) -> tuple[float, float, float]:
        t = self.world.truth()
        return t["x"], t["y"], t["yaw"]

    @property
    def distance_m(self) -> float:
        return float(self.world.truth()["distance_m"])
