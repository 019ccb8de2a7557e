"""Shared pieces for imaging tests: a small vehicle with a mast camera on a world we know."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from flight.clock import NS, SimClock
from flight.config import load as load_config
from flight.vehicle import Vehicle
from sim_hw.devices import SimCamera
from sim_hw.terrain import Rock, Terrain
from sim_hw.world import CameraSpec, World
from tests.recorder import Recorder

VEHICLE_TOML = """
[vehicle]
name = "imgtest"
spacecraft_id = 66
state_dir = "state"

[devices]
navcam = "sim://camera?name=navcam"  # handed in by the test, never opened from here

[components.img]
type = "imaging"
devices = {{ camera = "navcam" }}
{options}

[[rate_groups]]
name = "nav"
hz = 10
members = ["cmd"]

[[rate_groups]]
name = "imaging"
hz = 2
members = ["img"]

[[rate_groups]]
name = "hk"
hz = 1
members = ["sys", "tlm"]
"""


def rock_field(seed: int, n: int = 12, texture: float = 0.25) -> tuple[World, list[Rock]]:
    """A plane with ``n`` rocks 3-10 m ahead of the rover (at least 1.5 m apart), sun 20 deg up."""
    rng = np.random.default_rng(seed)
    ground = Terrain.plane(size_m=40.0, resolution_m=0.05, albedo=0.12, texture=texture, seed=seed)
    rocks: list[Rock] = []
    placed: list[tuple[float, float]] = []
    while len(placed) < n:
        d, a = rng.uniform(3.0, 10.0), math.radians(rng.uniform(-25.0, 25.0))
        x, y = 20.0 + d * math.cos(a), 20.0 + d * math.sin(a)
        if any(math.hypot(x - px, y - py) < 1.5 for px, py in placed):
            continue
        placed.append((x, y))
        r = rng.uniform(0.12, 0.35)
        rocks.append(ground.add_rock(x, y, radius=r, height=r * rng.uniform(0.7, 1.1), albedo=rng.uniform(0.06, 0.3)))
    world = World("moon", seed=seed, terrain=ground, start_x=20.0, start_y=20.0,
                  start_hours_after_sunrise=40.0, cameras={})
    return world, rocks


def camera(world: World, width: int = 320, height: int = 240, tilt_deg: float = -25.0) -> SimCamera:
    spec = CameraSpec(name="navcam", width=width, height=height, fov_deg=60.0, tilt_deg=tilt_deg, stereo=False)
    return SimCamera(world, spec, "sim://camera?name=navcam")


def build_vehicle(tmp: Path, world: World, cam: Any, options: str = "") -> tuple[Vehicle, SimClock]:
    path = tmp / "imgtest.toml"
    path.write_text(VEHICLE_TOML.format(options=options), encoding="utf-8")
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    vehicle = Vehicle(load_config(path), clock, devices={"navcam": cam})
    return vehicle, clock


def run_until(vehicle: Vehicle, clock: SimClock, done: Any, max_s: float = 120.0, step_s: float = 0.5) -> None:
    """Run the executive in short steps until ``done()`` or ``max_s`` of simulated time."""
    t_end = clock.now() + max_s
    while clock.now() < t_end:
        vehicle.run(until_s=clock.now() + step_s)
        if done():
            return
    raise AssertionError(f"not done after {max_s} s of simulated time")


#: The imaging tests' name for the shared recording sink.
Collect = Recorder
