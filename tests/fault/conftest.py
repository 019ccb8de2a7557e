"""Fixtures for fault-protection tests: a rover in the simulated world on the simulated clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flight.clock import NS, SimClock
from flight.component import Component
from flight.config import parse
from flight.vehicle import Vehicle
from magpie.simrun import fly
from sim_hw.world import World
from tests.recorder import Recorder

#: The fault tests' name for the shared recording sink.
Sink = Recorder


def rover_doc(state_dir: Path, fault: dict | None = None, extra_members: list[str] | None = None,
              devices: dict | None = None, components: dict | None = None,
              nav_members: list[str] | None = None) -> dict:
    return {
        "vehicle": {"state_dir": str(state_dir), "epoch": "2026-01-01T00:00:00Z"},
        "devices": {"mcu": "sim://mcu", "wdog": "sim://watchdog?timeout=10", **(devices or {})},
        "components": {
            "drive": {"type": "drive", "devices": {"drive": "mcu"}},
            "imu": {"type": "imu", "devices": {"imu": "mcu"}},
            "power": {"type": "power", "devices": {"power": "mcu"}},
            "thermal": {"type": "thermal", "devices": {"thermal": "mcu"},
                        "sensors": ["board", "battery", "motor_left", "motor_right"]},
            "fault": {"type": "fault", "devices": {"watchdog": "wdog", "power": "mcu"}, "boot_mode": "DRIVE",
                      **(fault or {})},
            **(components or {}),
        },
        "rate_groups": [
            {"name": "control", "hz": 50, "members": ["drive", "imu", *(extra_members or [])]},
            {"name": "nav", "hz": 10, "members": [*(nav_members or []), "cmd", "seq"]},
            {"name": "hk", "hz": 1, "members": ["power", "thermal", "fault", "sys", "health", "tlm"]},
        ],
    }


@dataclass
class Rig:
    vehicle: Vehicle
    world: World
    clock: SimClock
    sink: Sink
    doc: dict
    extra: list[Component]

    def run(self, seconds: float) -> None:
        self.vehicle = fly(self.vehicle, self.clock.now() + seconds, {"world": self.world}, chunk_s=1.0)

    def cmd(self, command: str, /, **args: Any) -> None:
        self.vehicle.dispatcher.submit(command, args, source="test")

    def tlm(self, name: str) -> Any:
        return self.vehicle.fw.tlm.get(name)

    @property
    def mode(self) -> str:
        return str(self.tlm("fault.mode_name"))

    def reboot(self) -> Vehicle:
        """A new vehicle over the same state directory, world and clock (after a crash or stop)."""
        self.vehicle = Vehicle(parse(self.doc), self.clock, device_context={"world": self.world},
                               extra_components=self.extra)
        self.vehicle.add_sink(self.sink)
        self.vehicle.flush()
        return self.vehicle


RigFactory = Callable[..., Rig]


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[RigFactory]:
    made: list[Rig] = []

    def factory(world: World | None = None, fault: dict | None = None, extra: list[Component] | None = None,
                devices: dict | None = None, components: dict | None = None, state_dir: Path | None = None,
                nav_members: list[str] | None = None) -> Rig:
        w = world if world is not None else World.for_mission(seed=1)
        clock = SimClock(start_s=w.time_s)
        clock.on_advance(lambda t: w.step_to(t / NS))
        doc = rover_doc(state_dir or tmp_path / "state", fault, [c.name for c in extra or []], devices, components,
                        nav_members)
        v = Vehicle(parse(doc), clock, device_context={"world": w}, extra_components=extra)
        sink = Sink()
        v.add_sink(sink)
        rig = Rig(v, w, clock, sink, doc, list(extra or []))
        made.append(rig)
        return rig

    yield factory
    for rig in made:
        rig.vehicle.executive.stop_workers()
