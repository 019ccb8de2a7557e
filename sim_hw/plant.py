"""What the MCU emulator drives: the ``McuPlant`` protocol and a small standalone ``SimplePlant``.

The emulator (``sim_hw.mcu_emulator``) is only the microcontroller: protocol, watchdog, stream
timing. The physics behind its motor drivers and sensors is a *plant*. ``SimplePlant`` is enough
for protocol and driver tests; the simulated world implements ``McuPlant`` on its vehicle so the
flight software, talking to a pty, drives a rover on terrain.

Units: wheel speeds are rim speeds in m/s; ``sensors()`` returns an :class:`McuSensors` whose
fields are exactly what a SENSOR_REPORT carries (except the MCU's clock and fault bits the
emulator owns, though a plant may add its own faults such as stalls).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

Vec3 = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class McuSensors:
    """One snapshot of everything the MCU measures, in SI units."""

    left_ticks: int = 0
    right_ticks: int = 0
    left_current_a: float = 0.0
    right_current_a: float = 0.0
    accel_mps2: Vec3 = (0.0, 0.0, 9.81)
    gyro_rads: Vec3 = (0.0, 0.0, 0.0)
    imu_temp_c: float = 20.0
    bus_v: float = 12.0
    current_a: float = 0.0  # positive = discharging
    soc: float = 1.0
    solar_w: float = 0.0
    # keys: motor_left, motor_right, battery, board
    temps_c: dict[str, float] = field(default_factory=dict)
    fault_flags: int = 0  # plant-side faults (stall, undervoltage...), FaultFlags bits


@runtime_checkable
class McuPlant(Protocol):
    """The physics an MCU emulator drives. Called from the emulator's thread only.

    - ``set_wheels(left_mps, right_mps)``: new motor set-points (rim speeds, m/s).
    - ``stop()``: set-points to zero (the watchdog and STOP use it).
    - ``step(dt_s)``: advance the physics by ``dt_s`` seconds of real or simulated time.
    - ``sensors()``: the current :class:`McuSensors`.
    - ``reset_encoders()``: zero both encoder counts.
    """

    def set_wheels(self, left_mps: float, right_mps: float) -> None: ...

    def stop(self) -> None: ...

    def step(self, dt_s: float) -> None: ...

    def sensors(self) -> McuSensors: ...

    def reset_encoders(self) -> None: ...


class SimplePlant:
    """A minimal rover: first-order wheels, encoders, a draining battery, noisy IMU.

    Deterministic for a given seed and sequence of calls. ``command`` and ``speed`` expose the
    set-points and actual wheel speeds for tests.
    """

    def __init__(
        self,
        seed: int = 0,
        wheel_radius_m: float = 0.1,
        track_width_m: float = 0.5,
        ticks_per_rev: int = 4096,
        time_constant_s: float = 0.1,
        capacity_wh: float = 100.0,
        bus_nominal_v: float = 12.0,
        idle_current_a: float = 0.3,
        current_per_mps_a: float = 2.0,
        accel_noise: float = 0.02,
        gyro_noise: float = 0.002,
        solar_w: float = 0.0,
        sampling: Any = None,
    ) -> None:
        #: a lander's sampling board (a sim_hw.sampling.SamplingSystem), stepped with the plant
        self.sampling = sampling
        self.wheel_radius_m = wheel_radius_m
        self.track_width_m = track_width_m
        self.ticks_per_rev = ticks_per_rev
        self.time_constant_s = time_constant_s
        self.capacity_wh = capacity_wh
        self.bus_nominal_v = bus_nominal_v
        self.idle_current_a = idle_current_a
        self.current_per_mps_a = current_per_mps_a
        self.accel_noise = accel_noise
        self.gyro_noise = gyro_noise
        self.solar_w = solar_w
        self.rng = np.random.default_rng(seed)
        self.command = [0.0, 0.0]
        self.speed = [0.0, 0.0]
        self._ticks_f = [0.0, 0.0]
        self.energy_wh = capacity_wh
        self.time_s = 0.0
        self._yaw_rate = 0.0

    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        self.command = [float(left_mps), float(right_mps)]

    def stop(self) -> None:
        self.command = [0.0, 0.0]

    def reset_encoders(self) -> None:
        self._ticks_f = [0.0, 0.0]

    def step(self, dt_s: float) -> None:
        if dt_s <= 0:
            return
        alpha = 1.0 - math.exp(-dt_s / self.time_constant_s)
        ticks_per_m = self.ticks_per_rev / (2.0 * math.pi * self.wheel_radius_m)
        for i in (0, 1):
            self.speed[i] += (self.command[i] - self.speed[i]) * alpha
            self._ticks_f[i] += self.speed[i] * dt_s * ticks_per_m
        self._yaw_rate = (self.speed[1] - self.speed[0]) / self.track_width_m
        net_w = self.bus_nominal_v * self._load_current() - self.solar_w
        self.energy_wh = min(self.capacity_wh, max(0.0, self.energy_wh - net_w * dt_s / 3600.0))
        self.time_s += dt_s
        if self.sampling is not None:
            self.sampling.step_to(self.time_s)

    def _motor_current(self, i: int) -> float:
        return abs(self.speed[i]) * self.current_per_mps_a

    def _load_current(self) -> float:
        return self.idle_current_a + self._motor_current(0) + self._motor_current(1)

    def sensors(self) -> McuSensors:
        soc = self.energy_wh / self.capacity_wh
        accel = self.rng.normal(0.0, self.accel_noise, 3) + (0.0, 0.0, 9.81)
        gyro = self.rng.normal(0.0, self.gyro_noise, 3) + (0.0, 0.0, self._yaw_rate)
        load = self._load_current()
        return McuSensors(
            left_ticks=int(self._ticks_f[0]),
            right_ticks=int(self._ticks_f[1]),
            left_current_a=self._motor_current(0),
            right_current_a=self._motor_current(1),
            accel_mps2=(float(accel[0]), float(accel[1]), float(accel[2])),
            gyro_rads=(float(gyro[0]), float(gyro[1]), float(gyro[2])),
            imu_temp_c=25.0,
            bus_v=self.bus_nominal_v * (0.85 + 0.15 * soc) - 0.05 * load,
            current_a=load - self.solar_w / self.bus_nominal_v,
            soc=soc,
            solar_w=self.solar_w,
            temps_c={"motor_left": 30.0, "motor_right": 30.0, "battery": 20.0, "board": 35.0},
        )
