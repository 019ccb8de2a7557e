"""The lockstep mission: how fast vehicle + relay model + ground station run on the simulated clock.

The same vehicle (the flight core with three tickers, magpie/configs/core_mission.toml) runs
alone (no comm component, no radio) and then as a whole mission through the moon-farside relay
model into the ground archive; both figures are simulated seconds per wall second, measured in
the same run, so the ratio is what the link and the ground cost.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from importlib import resources
from pathlib import Path

from bench.common import Row
from flight.clock import SimClock
from flight.config import VehicleConfig, load
from flight.vehicle import Vehicle
from magpie.mission import LockstepMission

CONFIG = Path(str(resources.files("magpie.configs").joinpath("core_mission.toml")))


def _without_link(cfg: VehicleConfig, state_dir: Path) -> VehicleConfig:
    comm = {c.name for c in cfg.components if c.type == "comm"}
    groups = tuple(dataclasses.replace(g, members=tuple(m for m in g.members if m not in comm))
                   for g in cfg.rate_groups)
    return dataclasses.replace(cfg, state_dir=state_dir, devices={},
                               components=tuple(c for c in cfg.components if c.name not in comm),
                               rate_groups=groups)


def vehicle_alone(cfg: VehicleConfig, sim_s: float, tmp: Path) -> float:
    """Simulated seconds per wall second of the vehicle without link or ground."""
    vehicle = Vehicle(_without_link(cfg, tmp / "alone"), SimClock())
    t0 = time.perf_counter()
    vehicle.run(until_s=sim_s, flush_every_s=1.0)
    wall = time.perf_counter() - t0
    vehicle.shutdown()
    return sim_s / wall


def mission(cfg: VehicleConfig, sim_s: float, tmp: Path, preset: str) -> tuple[float, int]:
    """(simulated seconds per wall second, packets archived) of the whole lockstep mission."""
    m = LockstepMission(cfg, tmp / f"mission-{preset}", preset=preset, plan=[(10.0, "CMD_NOOP", {})])
    try:
        t0 = time.perf_counter()
        m.advance(sim_s)
        wall = time.perf_counter() - t0
        m.drain(600.0)
        return sim_s / wall, m.summary().packets_archived
    finally:
        m.close()


def run(quick: bool) -> list[Row]:
    sim_s = 60.0 if quick else 600.0
    cfg = load(CONFIG)
    with tempfile.TemporaryDirectory(prefix="magpie-bench-mission-") as tmp:
        base = Path(tmp)
        alone = vehicle_alone(cfg, sim_s, base)
        moon, packets = mission(cfg, sim_s, base, "moon-farside")
        ideal, _ = mission(cfg, sim_s, base, "ideal")
    name = "vehicle alone, same components"
    return [
        Row(f"lockstep mission, moon-farside ({sim_s:.0f} s simulated)", moon, "x real", alone, name,
            better="higher"),
        Row("lockstep mission, ideal link", ideal, "x real", alone, name, better="higher"),
        Row("packets archived in the moon-farside run", packets, "count", None, "", "all stored"),
    ]
