"""Traverse harness: the flight navigation software driving goals in a simulated world.

Shared by ``tests/nav``, ``bench/bench_nav.py`` and ``magpie campaign``. The vehicle is assembled from a small
configuration (drive, IMU and navigation on 50 Hz, a 320x240 stereo navigation camera) in
lockstep with a world of the named difficulty (:mod:`sim_hw.traverse`). The harness tells the
rover where it starts (NAV_RESET_POSE, as operators would from orbital imagery), sends the
goals one by one, and scores the run from the truth the flight software never sees.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.clock import NS, SimClock
from flight.config import parse
from flight.outbound import CommandResponse, EventRecord
from flight.vehicle import Vehicle
from sim_hw.traverse import TruthMonitor, build_world, pick_goals

log = logging.getLogger(__name__)


class _Sink:
    def __init__(self) -> None:
        self.items: list[Any] = []

    def write(self, items: list[Any]) -> None:
        self.items.extend(i for i in items if isinstance(i, EventRecord | CommandResponse))

    def close(self) -> None:
        pass


def run_for(v: Vehicle, seconds: float) -> None:
    """Run the vehicle for ``seconds`` of spacecraft time and flush what it sent.

    (Runs the executive directly: ``Vehicle.run(until_s=...)`` can spin when ``until_s`` is a
    float a hair above the nanosecond grid.)
    """
    v.executive.run(until_s=v.clock.now() + seconds)
    v.flush()


def nav_config(state_dir: Path, camera_width: int = 320, camera_height: int = 240, mode: str = "autonav",
               image_period_s: float = 1.0, nav_options: dict[str, Any] | None = None) -> Any:
    cam = f"sim://camera?name=navcam&width={camera_width}&height={camera_height}&stereo=1&baseline=0.2"
    return parse({
        "vehicle": {"name": "rover", "state_dir": str(state_dir), "epoch": "2026-01-01T00:00:00Z"},
        "devices": {"mcu": "sim://mcu", "camera": cam},
        "components": {
            "drive": {"type": "drive", "devices": {"drive": "mcu"}},
            "imu": {"type": "imu", "devices": {"imu": "mcu"}},
            "nav": {"type": "nav", "devices": {"camera": "camera"}, **(nav_options or {})},
        },
        "rate_groups": [
            {"name": "control", "hz": 50, "members": ["drive", "imu", "nav"]},
            {"name": "nav", "hz": 10, "members": ["cmd", "seq"]},
            {"name": "hk", "hz": 1, "members": ["sys", "health", "tlm"]},
        ],
    })


@dataclass
class TraverseReport:
    level: str
    seed: int
    goals: int
    reached: int = 0
    collisions: int = 0
    tilt_over: int = 0
    max_tilt_deg: float = 0.0
    stalls: int = 0
    distance_m: float = 0.0
    drive_time_s: float = 0.0
    max_speed_mps: float = 0.2
    loc_errors: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stops: list[str] = field(default_factory=list)
    vo_updates: int = 0
    plans: int = 0

    @property
    def mean_speed_frac(self) -> float:
        if self.drive_time_s <= 0:
            return 0.0
        return self.distance_m / self.drive_time_s / self.max_speed_mps

    @property
    def loc_error_frac(self) -> float:
        """Worst localization error at a goal over the distance driven to it."""
        return max(self.loc_errors, default=0.0)

    def line(self) -> str:
        return (f"{self.level} seed {self.seed}: goals {self.reached}/{self.goals}, collisions {self.collisions}, "
                f"tilt over limit {self.tilt_over} (max {self.max_tilt_deg:.1f} deg), "
                f"mean speed {100 * self.mean_speed_frac:.0f}% of max, "
                f"localization error {100 * self.loc_error_frac:.2f}% of distance, "
                f"driven {self.distance_m:.1f} m in {self.drive_time_s:.0f} s, VO updates {self.vo_updates}, "
                f"plans {self.plans}")


def run_traverse(level: str, seed: int, state_dir: Path, *, goals: int = 3, goal_distance_m: float = 8.0,
                 timeout_per_goal_s: float = 150.0, mode: str = "autonav", tolerance_m: float = 0.3,
                 camera_width: int = 320, camera_height: int = 240,
                 world_hook: Callable[[Any], None] | None = None) -> TraverseReport:
    """Drive ``goals`` goals in a world of ``level`` and score the run (see the module docstring).

    ``world_hook(world)``, when given, is called on the world once it is built, before the
    vehicle starts (a campaign's fault injection).
    """
    world = build_world(level, seed, camera_width=camera_width, camera_height=camera_height)
    if world_hook is not None:
        world_hook(world)
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    v = Vehicle(nav_config(state_dir, camera_width, camera_height), clock, device_context={"world": world})
    sink = _Sink()
    v.add_sink(sink)
    mon = TruthMonitor(world)
    targets = pick_goals(world, goals, goal_distance_m, seed=seed)
    rep = TraverseReport(level, seed, goals, max_speed_mps=world.vehicle.config.max_wheel_mps)
    # goals the picker found no place for are not reached: recorded, not raised
    rep.failures.extend(["no suitable goal found"] * (goals - len(targets)))
    try:
        x, y, yaw = mon.pose()
        if mode != "autonav":
            v.dispatcher.submit("NAV_MODE", {"mode": mode})
        v.dispatcher.submit("NAV_RESET_POSE", {"x": x, "y": y, "yaw_deg": math.degrees(yaw)})
        run_for(v, 3.0)  # settle; the gyro bias is learnt at rest
        for gx, gy in targets:
            n_before = len(sink.items)
            v.dispatcher.submit("NAV_GOTO", {"x": gx, "y": gy, "tolerance": tolerance_m})
            t0 = clock.now()
            d0 = mon.distance_m
            outcome = None
            while clock.now() - t0 < timeout_per_goal_s and outcome is None:
                run_for(v, 0.1)
                mon.sample()
                for item in sink.items[n_before:]:
                    if isinstance(item, CommandResponse) and item.name == "NAV_GOTO" and item.stage in (
                            "COMPLETED", "FAILED"):
                        outcome = item
            rep.drive_time_s += clock.now() - t0
            rep.distance_m += mon.distance_m - d0
            tx, ty, _ = mon.pose()
            ex, ey = v.fw.tlm.get("nav.x_m"), v.fw.tlm.get("nav.y_m")
            if outcome is not None and outcome.stage == "COMPLETED":
                rep.reached += 1
            else:
                rep.failures.append(outcome.reason if outcome is not None else "timed out")
                v.dispatcher.submit("NAV_STOP")
                run_for(v, 1.0)
            driven = max(mon.distance_m, 1e-6)
            rep.loc_errors.append(math.hypot(ex - tx, ey - ty) / driven)
        v.flush()
        rep.stops = [e.text for e in sink.items
                     if isinstance(e, EventRecord) and e.name == "SafetyStop"]
        rep.vo_updates = int(v.fw.tlm.get("nav.vo_updates") or 0)
        rep.plans = int(v.fw.tlm.get("nav.plans") or 0)
    finally:
        v.shutdown()
    rep.collisions = len(mon.contacts)
    rep.tilt_over = mon.tilt_over
    rep.max_tilt_deg = mon.max_tilt_deg
    rep.stalls = mon.stalls
    log.info("%s", rep.line())
    return rep
