"""The executive: release lateness on the real clock, dispatch overhead, lockstep speed."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from bench.common import Row, drive_beside_world, percentiles
from flight.clock import NS, RealClock, SimClock
from flight.component import Component
from flight.config import VehicleConfig, load, parse
from flight.vehicle import Vehicle

CORE = Path(str(resources.files("magpie.configs").joinpath("core.toml")))


def _vehicle(cfg: VehicleConfig, clock) -> Vehicle:
    tmp = tempfile.mkdtemp(prefix="magpie-bench-")
    return Vehicle(VehicleConfig(**{**cfg.__dict__, "state_dir": Path(tmp)}), clock)


def bare_loop_lateness(hz: float, seconds: float) -> list[int]:
    """A bare absolute-deadline sleep loop: the best a Python thread can do on this machine."""
    clock = RealClock()
    period = int(NS / hz)
    t = clock.now_ns()
    late = []
    for _ in range(int(seconds * hz)):
        t += period
        clock.sleep_until(t)
        late.append(clock.now_ns() - t)
    return late


def executive_lateness(seconds: float) -> tuple[list[int], int]:
    v = _vehicle(load(CORE), RealClock())
    control = v.executive.groups[0]
    control.lateness_log = []
    v.run(until_s=v.clock.now() + seconds, flush_every_s=1.0)
    slips = sum(g.slips for g in v.executive.groups)
    v.shutdown()
    return control.lateness_log[1:], slips


class _Noop(Component):
    def step(self) -> None:
        pass


def dispatch_overhead_us(cycles: int = 20_000) -> tuple[float, float]:
    """Executive cost per member call beyond the call itself, and the bare call cost (µs)."""

    def timed(n_members: int) -> float:
        doc = {"vehicle": {"state_dir": tempfile.mkdtemp()},
               "rate_groups": [{"name": "g", "hz": 1000, "members": [f"n{i}" for i in range(n_members)]},
                               {"name": "hk", "hz": 1, "members": []}]}
        extra = [_Noop(f"n{i}") for i in range(n_members)]
        v = Vehicle(parse(doc), SimClock(), extra_components=extra)
        t0 = time.perf_counter()
        v.executive.run(until_s=cycles / 1000)
        return time.perf_counter() - t0

    empty = timed(0)
    full = timed(10)
    per_member = (full - empty) / (cycles * 10) * 1e6
    noop = _Noop("x")
    t0 = time.perf_counter()
    for _ in range(cycles * 10):
        noop.step()
    bare = (time.perf_counter() - t0) / (cycles * 10) * 1e6
    return per_member, bare


def _core(work: int | None = None) -> VehicleConfig:
    """The core set; ``work``: the tickers' integer loop length instead of their configured one."""
    cfg = load(CORE)
    if work is None:
        return cfg
    comps = tuple(dataclasses.replace(c, options={**c.options, "work": work}) for c in cfg.components)
    return dataclasses.replace(cfg, components=comps)


def lockstep_speed(sim_seconds: float, work: int | None = None) -> tuple[float, float, float]:
    """Simulated seconds per wall second for the 50/10/1 Hz core set, for empty groups, and
    the bound the members' own work sets: their steps called in a bare loop as often.
    ``work=0`` takes the tickers' integer loop out, leaving what the stack itself costs."""
    v = _vehicle(_core(work), SimClock())
    t0 = time.perf_counter()
    v.run(until_s=sim_seconds)
    full = sim_seconds / (time.perf_counter() - t0)
    control = v.executive.group("control")
    steps = [m.component.step for m in control.members]
    t0 = time.perf_counter()
    for _ in range(int(sim_seconds * control.hz)):
        for step in steps:
            step()
    bound = sim_seconds / (time.perf_counter() - t0)
    doc = {"vehicle": {"state_dir": tempfile.mkdtemp()},
           "rate_groups": [{"name": "control", "hz": 50, "members": []},
                           {"name": "nav", "hz": 10, "members": ["cmd", "seq"]},
                           {"name": "hk", "hz": 1, "members": ["sys", "health", "tlm"]}]}
    e = Vehicle(parse(doc), SimClock())
    t0 = time.perf_counter()
    e.run(until_s=sim_seconds)
    empty = sim_seconds / (time.perf_counter() - t0)
    return full, empty, bound


def lockstep_with_world(sim_seconds: float) -> tuple[float, float]:
    """`magpie sim`'s vehicle (drive, IMU, power, thermal on sim://) with the world in the loop,
    driving; beside the world alone stepped over the same time with the same wheel command."""
    from magpie.simrun import assemble

    rover = Path(str(resources.files("magpie.configs").joinpath("sim_rover.toml")))
    cfg = load(rover)
    cfg = VehicleConfig(**{**cfg.__dict__, "state_dir": Path(tempfile.mkdtemp(prefix="magpie-bench-"))})
    v, _world = assemble(cfg, seed=1)
    return drive_beside_world(v, sim_seconds)


def run(quick: bool) -> list[Row]:
    seconds = 5.0 if quick else 20.0
    bare = percentiles(np.array(bare_loop_lateness(50, seconds)) / NS)
    ex_late, slips = executive_lateness(seconds)
    ex = percentiles(np.array(ex_late) / NS)
    per_member, bare_call = dispatch_overhead_us(5_000 if quick else 20_000)
    speed, empty_speed, members_bound = lockstep_speed(120.0 if quick else 600.0)
    bare_speed, _, bare_bound = lockstep_speed(120.0 if quick else 600.0, work=0)
    with_world, world_alone = lockstep_with_world(60.0 if quick else 300.0)
    base = "bare absolute-deadline sleep loop, same run"
    return [
        Row("50 Hz release lateness p50", ex["p50"], "us", bare["p50"], base),
        Row("50 Hz release lateness p99", ex["p99"], "us", bare["p99"], base, "p99 <= 1.5x bare loop"),
        Row("50 Hz release lateness max", ex["max"], "us", bare["max"], base),
        Row("cycle slips in the real-time run", slips, "count", None, "", "0"),
        Row("dispatch overhead per member", per_member, "us", bare_call, "bare Python call of step()",
            "<= 20 us"),
        Row("lockstep speed 50/10/1 Hz, 10 members", speed, "x real", empty_speed,
            "same rate groups, no members", ">= 2,000x", better="higher"),
        Row("lockstep speed 50/10/1 Hz, 10 members (vs their own steps)", speed, "x real", members_bound,
            "the members' steps alone in a bare loop", better="higher"),
        Row("lockstep speed 50/10/1 Hz, 10 members without their integer loop", bare_speed, "x real",
            bare_bound, "the same steps alone in a bare loop", better="higher"),
        Row("magpie sim lockstep, world in the loop, driving", with_world, "x real", world_alone,
            "the world alone, same drive", ">= 400x", better="higher"),
    ]
