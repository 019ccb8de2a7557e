"""IMU monitor: rates, accelerations and the tilt they imply.

Tilt comes from the gravity vector, which the accelerometer sees mixed with the vehicle's own
accelerations; in lunar gravity (1.6 m/s^2) starting a wheel step is enough to fake a 30 degree
tilt for a moment. The gravity estimate is therefore low-pass filtered (time constant
``imu.tilt_tau_s``) before roll, pitch and tilt are computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Param, Severity
from hal.contracts import Imu, ImuReading
from hal.errors import HalError


class ImuMonitor(Component):
    DEVICES = {"imu": Imu}
    CHANNELS = (
        Channel("ax_mps2", "f32", "m/s^2"), Channel("ay_mps2", "f32", "m/s^2"),
        Channel("az_mps2", "f32", "m/s^2"),
        Channel("gx_rads", "f32", "rad/s"), Channel("gy_rads", "f32", "rad/s"),
        Channel("gz_rads", "f32", "rad/s"),
        Channel("roll_deg", "f32", "deg", doc="roll from the gravity vector"),
        Channel("pitch_deg", "f32", "deg", doc="pitch from the gravity vector"),
        Channel("tilt_deg", "f32", "deg", doc="angle of the body z axis from vertical",
                limits=Limits(yellow=(0.0, 20.0), red=(0.0, 30.0))),
        Channel("temp_c", "f32", "degC"),
    )
    EVENTS = (
        Event("ImuReadError", Severity.WARNING_HI, "IMU: {error}", (Arg("error", "str"),),
              throttle=5, throttle_window_s=60.0),
    )

    PARAMS = (Param("tilt_tau_s", "f32", 0.5, "s", min=0.0, max=60.0,
                    doc="time constant of the gravity low-pass filter behind tilt"),)

    def setup(self) -> None:
        self._dev: Imu = self.devices["imu"]
        self._g: list[float] | None = None
        self._last_t: float | None = None
        self._reading: ImuReading | None = None
        self._attitude: tuple[float, float] | None = None
        # Rates, accelerations, roll, pitch and temperature change every cycle and are looked at
        # once a second: they are sampled from the last reading. Tilt has limits and is put.
        for i, axis in enumerate("xyz"):
            self.provide(f"a{axis}_mps2", self._sampled(lambda r, a, i=i: r.accel_mps2[i]))
            self.provide(f"g{axis}_rads", self._sampled(lambda r, a, i=i: r.gyro_rads[i]))
        self.provide("roll_deg", self._sampled(lambda r, a: a[0]))
        self.provide("pitch_deg", self._sampled(lambda r, a: a[1]))
        self.provide("temp_c", self._sampled(lambda r, a: r.temp_c))
        self._tilt = self.tlm_slot("tilt_deg")

    def _sampled(self, pick: Callable[[ImuReading, tuple[float, float]], float]) -> Callable[[], float | None]:
        """A provider of one value of the last reading (or of its roll and pitch); None before it."""
        def value() -> float | None:
            if self._reading is None or self._attitude is None:
                return None
            return pick(self._reading, self._attitude)
        return value

    def step(self) -> None:
        try:
            r = self._dev.read_imu()
        except HalError as exc:
            self.event("ImuReadError", error=str(exc))
            return
        ax, ay, az = r.accel_mps2
        if self._g is None or self._last_t is None:
            self._g = [ax, ay, az]
        else:
            dt = max(0.0, r.time_s - self._last_t)
            tau = self.param("tilt_tau_s")
            k = 1.0 if tau <= 0 else dt / (tau + dt)
            gx, gy, gz = self._g
            self._g = [gx + k * (ax - gx), gy + k * (ay - gy), gz + k * (az - gz)]
        self._last_t = r.time_s
        ax, ay, az = self._g
        g = math.sqrt(ax * ax + ay * ay + az * az) or 1.0
        roll = math.degrees(math.atan2(ay, az))
        pitch = math.degrees(math.atan2(-ax, math.hypot(ay, az)))
        tilt = math.degrees(math.acos(max(-1.0, min(1.0, az / g))))
        self.publish("reading", r)
        self.publish("tilt_deg", tilt)
        self._reading = r
        self._attitude = (roll, pitch)
        self._tilt.put(tilt)
