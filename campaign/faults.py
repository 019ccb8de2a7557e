"""Fault injections a campaign can add to a run's world: cheap, seeded, named.

Each is applied to the world after it is built and before the flight software starts, so the
run stays deterministic for its seed. They degrade what the navigation relies on without
touching flight code:

* ``none``: the world as built;
* ``slip``: five times the base wheel slip and three times its noise (the wheels' odometry
  overstates the distance driven, as on loose regolith);
* ``gyro-noise``: five times the gyro's white noise (a worn or hot IMU);
* ``accel-bias``: ten times the accelerometers' bias (tilt read wrongly from gravity).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this to list the faults; the world loads when a run starts
    from sim_hw.world import World


def _slip(world: World) -> None:
    cfg = world.vehicle.config
    world.vehicle.config = replace(cfg, slip_base=5.0 * cfg.slip_base, slip_noise_sigma=3.0 * cfg.slip_noise_sigma)


def _gyro_noise(world: World) -> None:
    world.imu.config = replace(world.imu.config, gyro_noise_rads=5.0 * world.imu.config.gyro_noise_rads)


def _accel_bias(world: World) -> None:
    world.imu.accel_bias = 10.0 * world.imu.accel_bias


FAULTS: dict[str, Callable[[World], None] | None] = {
    "none": None,
    "slip": _slip,
    "gyro-noise": _gyro_noise,
    "accel-bias": _accel_bias,
}


def apply_fault(world: World, name: str) -> None:
    """Inject the named fault into ``world``; ``ValueError`` names the known ones."""
    try:
        fn = FAULTS[name]
    except KeyError:
        raise ValueError(f"unknown fault {name!r}; faults: {', '.join(FAULTS)}") from None
    if fn is not None:
        fn(world)
