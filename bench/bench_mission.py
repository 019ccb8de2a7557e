"""The lockstep mission: how fast vehicle + relay model + ground station run on the simulated clock.

The same vehicle (the flight core with three tickers, magpie/configs/core_mission.toml) runs
alone (no comm component, no radio) and then as a whole mission through the moon-farside relay
model into the ground archive; both figures are simulated seconds per wall second, measured in
the same run, so the ratio is what the link and the ground cost. The same pair per CPU second
(process time) leaves out what the process waited for (fsync, other work on a shared machine).

The figures of the speed issue's table come after: ``magpie sim --duration 10m --seed 1`` as a
user runs it (the speed it prints, beside the same command flying the built-in rover without
a link), and the default vehicle with the world in the loop and no link, driving, beside the
world alone stepped over the same time with the same wheel command.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

from bench.common import Row, drive_beside_world
from flight.clock import SimClock
from flight.config import VehicleConfig, load
from flight.vehicle import Vehicle
from magpie.mission import LockstepMission

CONFIG = Path(str(resources.files("magpie.configs").joinpath("core_mission.toml")))
SIM_CONFIG = Path(str(resources.files("magpie.configs").joinpath("sim_mission.toml")))
NO_LINK_CONFIG = Path(str(resources.files("magpie.configs").joinpath("sim_rover.toml")))
_PRINTED = re.compile(r"Magpie sim: .* simulated in [0-9.]+ s wall \(([0-9.]+)x real time\)")


def _without_link(cfg: VehicleConfig, state_dir: Path) -> VehicleConfig:
    comm = {c.name for c in cfg.components if c.type == "comm"}
    groups = tuple(dataclasses.replace(g, members=tuple(m for m in g.members if m not in comm))
                   for g in cfg.rate_groups)
    return dataclasses.replace(cfg, state_dir=state_dir, devices={},
                               components=tuple(c for c in cfg.components if c.name not in comm),
                               rate_groups=groups)


def vehicle_alone(cfg: VehicleConfig, sim_s: float, tmp: Path) -> tuple[float, float]:
    """Simulated seconds per wall second and per CPU second of the vehicle without link or ground."""
    vehicle = Vehicle(_without_link(cfg, tmp / "alone"), SimClock())
    t0, c0 = time.perf_counter(), time.process_time()
    vehicle.run(until_s=sim_s, flush_every_s=1.0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    vehicle.shutdown()
    return sim_s / wall, sim_s / max(cpu, 1e-9)


def mission(cfg: VehicleConfig, sim_s: float, tmp: Path, preset: str) -> tuple[float, float, int]:
    """(simulated seconds per wall second, per CPU second, packets archived) of the whole
    lockstep mission. The CPU figure leaves out the waits (fsync, a machine shared with other
    work), so on a loaded machine it shows what the link's own work costs."""
    m = LockstepMission(cfg, tmp / f"mission-{preset}", preset=preset, plan=[(10.0, "CMD_NOOP", {})])
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        m.advance(sim_s)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        m.drain(600.0)
        return sim_s / wall, sim_s / max(cpu, 1e-9), m.summary().packets_archived
    finally:
        m.close()


def printed_speed(out: Path, *extra: str) -> float:
    """``magpie sim --duration 10m --seed 1`` in a fresh interpreter: the speed its summary prints."""
    code = "import sys; from magpie.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", code, "sim", "--duration", "10m", "--seed", "1", "--out", str(out),
           "--quiet", *extra]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)  # this checkout's magpie, not an installed one
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800, check=False)
    found = _PRINTED.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"magpie sim exited {done.returncode}: {(done.stderr or done.stdout)[-400:]}")
    return float(found.group(1))


def world_in_the_loop(sim_s: float, tmp: Path) -> tuple[float, float]:
    """The default vehicle without its link (no comm component, no radio) with the world in the
    loop, driving; beside the world alone stepped over the same time with the same wheel command."""
    from mission.solo import assemble

    full_cfg = load(SIM_CONFIG)
    radios = {n for n, u in full_cfg.devices.items() if u.startswith("radio")}
    cfg = dataclasses.replace(_without_link(full_cfg, tmp / "world-no-link"),
                              devices={n: u for n, u in full_cfg.devices.items() if n not in radios})
    vehicle, _ = assemble(cfg, seed=1)
    return drive_beside_world(vehicle, sim_s)


def run(quick: bool) -> list[Row]:
    sim_s = 60.0 if quick else 600.0
    cfg = load(CONFIG)
    with tempfile.TemporaryDirectory(prefix="magpie-bench-mission-") as tmp:
        base = Path(tmp)
        alone, alone_cpu = vehicle_alone(cfg, sim_s, base)
        moon, moon_cpu, packets = mission(cfg, sim_s, base, "moon-farside")
        ideal, _, _ = mission(cfg, sim_s, base, "ideal")
        printed = printed_speed(base / "sim-default")
        printed_no_link = printed_speed(base / "sim-no-link", "--config", str(NO_LINK_CONFIG))
        in_loop, world_alone = world_in_the_loop(sim_s, base)
    name = "vehicle alone, same components"
    return [
        Row(f"lockstep mission, moon-farside ({sim_s:.0f} s simulated)", moon, "x real", alone, name,
            better="higher"),
        Row("lockstep mission, ideal link", ideal, "x real", alone, name, better="higher"),
        Row("lockstep mission, moon-farside, per CPU second", moon_cpu, "x real CPU", alone_cpu,
            "vehicle alone, per CPU second", better="higher"),
        Row("packets archived in the moon-farside run", packets, "count", None, "", "all stored"),
        Row("magpie sim --duration 10m --seed 1, printed speed", printed, "x real", printed_no_link,
            "the same with --config sim_rover.toml (no link), printed", ">= 300x", better="higher"),
        Row("vehicle with the world in the loop, no link", in_loop, "x real", world_alone,
            "world alone, same drive", ">= 400x", better="higher"),
    ]
