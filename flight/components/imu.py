"""IMU monitor: rates, accelerations and the tilt they imply.

Tilt comes from the gravity vector, which the accelerometer sees mixed with the vehicle's own
accelerations; in lunar gravity (1.6 m/s^2) starting a wheel step is enough to fake a 30 degree
tilt for a moment. The gravity estimate is therefore low-pass filtered (time constant
``imu.tilt_tau_s``) before roll, pitch and tilt are computed.
"""

from __future__ import annotations

import math

from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Param, Severity
from hal.contracts import Imu
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

    def step(self) -> None:
        try:
            r = self._dev.read_imu()
        except HalError as exc:
            self.event("ImuReadError", error=str(exc))
            return
        if self._g is None or self._last_t is None:
            self._g = list(r.accel_mps2)
        else:
            dt = max(0.0, r.time_s - self._last_t)
            tau = self.param("tilt_tau_s")
            k = 1.0 if tau <= 0 else dt / (tau + dt)
            self._g = [g + k * (a - g) for g, a in zip(self._g, r.accel_mps2, strict=True)]
        self._last_t = r.time_s
        ax, ay, az = self._g
        g = math.sqrt(ax * ax + ay * ay + az * az) or 1.0
        roll = math.degrees(math.atan2(ay, az))
        pitch = math.degrees(math.atan2(-ax, math.hypot(ay, az)))
        tilt = math.degrees(math.acos(max(-1.0, min(1.0, az / g))))
        self.publish("reading", r)
        self.publish("tilt_deg", tilt)
        for name, v in zip(("ax_mps2", "ay_mps2", "az_mps2"), r.accel_mps2, strict=True):
            self.tlm(name, v)
        for name, v in zip(("gx_rads", "gy_rads", "gz_rads"), r.gyro_rads, strict=True):
            self.tlm(name, v)
        self.tlm("roll_deg", roll)
        self.tlm("pitch_deg", pitch)
        self.tlm("tilt_deg", tilt)
        self.tlm("temp_c", r.temp_c)
