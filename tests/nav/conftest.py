"""A rover with navigation in lockstep with a small simulated world."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from campaign.traverse import _Sink, nav_config, run_for
from flight.clock import NS, SimClock
from flight.outbound import CommandResponse, EventRecord
from flight.vehicle import Vehicle
from sim_hw.terrain import Terrain
from sim_hw.world import CameraSpec, World


@dataclass
class Rover:
    vehicle: Vehicle
    world: World
    sink: _Sink
    clock: SimClock

    def cmd(self, command: str, /, **args: Any) -> None:
        self.vehicle.dispatcher.submit(command, args)

    def run(self, seconds: float) -> None:
        run_for(self.vehicle, seconds)

    def run_until_done(self, name: str, limit_s: float) -> CommandResponse | None:
        end = self.clock.now() + limit_s
        while self.clock.now() < end:
            self.run(0.2)
            done = [r for r in self.responses(name) if r.stage in ("COMPLETED", "FAILED")]
            if done:
                return done[-1]
        return None

    def responses(self, name: str) -> list[CommandResponse]:
        return [i for i in self.sink.items if isinstance(i, CommandResponse) and i.name == name]

    def events(self, name: str) -> list[EventRecord]:
        return [i for i in self.sink.items if isinstance(i, EventRecord) and i.name == name]

    def tlm(self, name: str) -> Any:
        return self.vehicle.fw.tlm.get(name)


@pytest.fixture
def make_rover(tmp_path: Path):
    made: list[Vehicle] = []

    def factory(terrain: Terrain | None = None, state_dir: Path | None = None, reset: bool = True,
                nav_options: dict[str, Any] | None = None, **world_kw: Any) -> Rover:
        ter = terrain or Terrain.plane(size_m=30.0, seed=3)
        world = World("moon", seed=5, terrain=ter, start_hours_after_sunrise=72.0,
                      cameras={"navcam": CameraSpec(width=320, height=240)}, **world_kw)
        clock = SimClock(start_s=world.time_s)
        clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
        v = Vehicle(nav_config(state_dir or tmp_path / "state", nav_options=nav_options), clock,
                    device_context={"world": world})
        sink = _Sink()
        v.add_sink(sink)
        made.append(v)
        rover = Rover(v, world, sink, clock)
        if reset:
            t = world.truth()
            rover.cmd("NAV_RESET_POSE", x=t["x"], y=t["y"], yaw_deg=0.0)
        rover.run(1.0)
        return rover

    yield factory
    for v in made:
        try:
            v.shutdown()
        except Exception:  # noqa: BLE001 - a test may have closed devices already
            pass
