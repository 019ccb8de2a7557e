"""One vehicle flown without the link: the world, the fast-mode switches, restarts in place.

``magpie sim`` without a comm component (and the fault and benchmark harnesses) fly a vehicle
this way: :func:`assemble` builds the vehicle on a simulated clock stepping the world,
:func:`fly` runs it to a time and restarts it when fault protection asks.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from flight.clock import NS, Clock, SimClock
from flight.config import ConfigError, VehicleConfig
from flight.vehicle import Vehicle

log = logging.getLogger(__name__)


#: World overrides of fast mode: power and heat are slow processes, a minute is a fine step.
FAST_WORLD = {"slow_dt_s": 60.0}
#: Spacecraft seconds between outbound flushes (and progress reports) in fast mode.
FAST_FLUSH_S = 600.0


def _world_for(config: VehicleConfig, seed: int, fast: bool = False) -> Any | None:
    """The simulated world, when the configuration uses sim:// devices."""
    if not any(url.startswith(("sim://", "mcu+pty://")) for url in config.devices.values()):
        return None
    from sim_hw.world import World

    return World.for_mission(seed=seed, **(FAST_WORLD if fast else {}))


def fast_config(config: VehicleConfig) -> VehicleConfig:
    """``config`` with fast mode switched on in its fault component (ConfigError if it has none)."""
    faults = [c for c in config.components if c.type == "fault"]
    if not faults:
        raise ConfigError(f"{config.source}: --fast needs a fault component (type = \"fault\"); "
                          "it is what slows the vehicle while idle or hibernating")
    comps = tuple(dataclasses.replace(c, options={**c.options, "fast": True}) if c.type == "fault" else c
                  for c in config.components)
    return dataclasses.replace(config, components=comps)


def reboot(vehicle: Vehicle, context: dict[str, Any]) -> Vehicle:
    """Restart the flight process in place, as fault protection asked: a clean stop, then a new
    vehicle from the persisted state on the same clock and world, with the same sinks."""
    log.warning("restarting the flight process: %s", vehicle.restart_requested)
    sinks = list(vehicle.sinks)
    vehicle.shutdown(close_sinks=False)
    new = Vehicle(vehicle.config, vehicle.clock, device_context=context)
    for sink in sinks:
        new.add_sink(sink)
    return new


def fly(vehicle: Vehicle, until_s: float, context: dict[str, Any], chunk_s: float = 10.0,
        flush_every_s: float = 1.0, report: Any = None) -> Vehicle:
    """Run a vehicle (no link) to spacecraft time ``until_s``, restarting it when fault
    protection asks; returns the vehicle in charge at the end."""
    while vehicle.clock.now() < until_s:
        vehicle.run(until_s=min(until_s, vehicle.clock.now() + chunk_s), flush_every_s=flush_every_s)
        if report is not None:
            report(vehicle.clock.now())
        if vehicle.executive.stopping:
            if not vehicle.restart_requested:
                break
            vehicle = reboot(vehicle, context)
    return vehicle


def assemble(config: VehicleConfig, seed: int, clock: Clock | None = None,
             fast: bool = False) -> tuple[Vehicle, Any]:
    world = _world_for(config, seed, fast)
    if clock is None:
        start = world.time_s if world is not None else 0.0
        clock = SimClock(start_s=start)
    if world is not None and isinstance(clock, SimClock):
        clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    context: dict[str, Any] = {"world": world} if world is not None else {}
    if world is not None and any(url.startswith("mcu+pty://") for url in config.devices.values()):
        # the emulator on the pty drives the world's vehicle and advances it in real time
        context["plant"] = world.mcu_plant()
    return Vehicle(config, clock, device_context=context), world


