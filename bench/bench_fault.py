"""Fault protection: a lunar day and night in fast mode, and what the monitors cost per cycle.

* Wall time to simulate one full lunar day and night (29.53 Earth days) of the far-side scenario
  with ``sim_lunar_day.toml`` in fast mode (target: under 30 minutes on a 2-core machine), beside
  the world alone integrating the same span (the floor: power and heat in 60 s steps).
  ``--quick`` simulates the first fifth (afternoon and dusk, the dearer part) and extrapolates;
  the row says so.
* The fault component's cost per cycle (every monitor evaluated, in DRIVE), beside a bare
  executive cycle (one no-op member) measured in the same run.
"""

from __future__ import annotations

import tempfile
import time
from importlib import resources
from pathlib import Path

from bench.common import Row
from flight.clock import NS, SimClock
from flight.component import Component
from flight.config import load, parse
from flight.vehicle import Vehicle
from magpie.simrun import FAST_FLUSH_S, FAST_WORLD, fast_config, fly
from sim_hw.world import World

LUNAR_DAY_S = 29.530589 * 86400.0
CONFIG = Path(str(resources.files("magpie.configs").joinpath("sim_lunar_day.toml")))


def lunar_day_wall_s(fraction: float) -> tuple[float, float, dict[str, int]]:
    """Wall seconds for ``fraction`` of a lunar day in fast mode, the world alone for the same span,
    and what happened (hibernations, wakes, cycles)."""
    cfg = fast_config(load(CONFIG))
    cfg = type(cfg)(**{**cfg.__dict__, "state_dir": Path(tempfile.mkdtemp(prefix="magpie-bench-"))})
    world = World.for_mission(seed=1, **FAST_WORLD)
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t: world.step_to(t / NS))
    span = fraction * LUNAR_DAY_S
    t0 = time.perf_counter()
    v = Vehicle(cfg, clock, device_context={"world": world})
    v = fly(v, clock.now() + span, {"world": world}, chunk_s=FAST_FLUSH_S, flush_every_s=FAST_FLUSH_S)
    v.shutdown()
    wall = time.perf_counter() - t0
    counts = {"cycles": sum(g.cycles for g in v.executive.groups)}
    bare = World.for_mission(seed=1, **FAST_WORLD)
    t0 = time.perf_counter()
    bare.step_to(span)
    return wall, time.perf_counter() - t0, counts


class _Noop(Component):
    def step(self) -> None:
        pass


def monitor_cost_us(calls: int) -> tuple[float, float, int]:
    """(fault step µs, bare executive cycle µs, monitors evaluated per step)."""
    tmp = Path(tempfile.mkdtemp(prefix="magpie-bench-"))
    world = World.for_mission(seed=1)
    clock = SimClock(start_s=world.time_s)
    doc = {
        "vehicle": {"state_dir": str(tmp / "a")},
        "devices": {"mcu": "sim://mcu", "wdog": "sim://watchdog?timeout=10"},
        "components": {
            "drive": {"type": "drive", "devices": {"drive": "mcu"}},
            "imu": {"type": "imu", "devices": {"imu": "mcu"}},
            "power": {"type": "power", "devices": {"power": "mcu"}},
            "thermal": {"type": "thermal", "devices": {"thermal": "mcu"}},
            "fault": {"type": "fault", "devices": {"watchdog": "wdog", "power": "mcu"}, "boot_mode": "DRIVE"},
        },
        "rate_groups": [{"name": "control", "hz": 50, "members": ["drive", "imu"]},
                        {"name": "hk", "hz": 1, "members": ["power", "thermal", "fault", "sys", "health", "tlm"]}],
    }
    v = Vehicle(parse(doc), clock, device_context={"world": world})
    v.run(until_s=clock.now() + 5.0)
    fault = v.by_name["fault"]
    evaluated = sum(1 for m in fault.monitors.values() if m.enabled and m.available)
    fault.step()
    t0 = time.perf_counter()
    for _ in range(calls):
        fault.step()
    fault_us = (time.perf_counter() - t0) / calls * 1e6
    v.shutdown()

    bare_doc = {"vehicle": {"state_dir": str(tmp / "b")},
                "rate_groups": [{"name": "g", "hz": 1000, "members": ["noop"]},
                                {"name": "hk", "hz": 0.001, "members": []}]}
    b = Vehicle(parse(bare_doc), SimClock(), extra_components=[_Noop("noop")])
    ex = b.executive
    ex.run(max_cycles=100)
    t0 = time.perf_counter()
    ex.run(max_cycles=calls)
    bare_us = (time.perf_counter() - t0) / calls * 1e6
    b.shutdown()
    return fault_us, bare_us, evaluated


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    fraction = 0.2 if quick else 1.0
    wall, world_only, _ = lunar_day_wall_s(fraction)
    scale = 1.0 / fraction
    label = " (first fifth, extrapolated x5)" if quick else ""
    rows.append(Row(f"lunar day+night, fast mode{label}", wall * scale / 60.0, "min",
                    world_only * scale / 60.0, "world alone, same span", target="< 30 min"))
    rows.append(Row(f"speed-up over real time{label}", fraction * LUNAR_DAY_S / wall, "x", better="higher"))
    fault_us, bare_us, n = monitor_cost_us(2000 if quick else 20000)
    rows.append(Row(f"fault step, {n} monitors", fault_us, "us/cycle", bare_us, "bare executive cycle"))
    rows.append(Row("per monitor", fault_us / max(1, n), "us", bare_us, "bare executive cycle"))
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
