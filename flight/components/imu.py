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
        self._g: tuple[float, float, float] | None = None
        self._last_t: float | None = None
        self._tau = self.param("tilt_tau_s")
        self._reading: ImuReading | None = None
        # the filtered gravity of the last reading, and the roll and pitch worked out from it
        self._gravity: tuple[float, float, float] | None = None
        self._attitude_of: tuple[float, float, float] | None = None
        self._attitude: tuple[float, float] | None = None
        self._reading_key = f"{self.name}.reading"
        self._tilt_key = f"{self.name}.tilt_deg"
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
            attitude = self._attitude_now()
            if self._reading is None or attitude is None:
                return None
            return pick(self._reading, attitude)
        return value

    def on_param(self, name: str, value: float) -> None:
        if name == "tilt_tau_s":
            self._tau = value

    def step(self) -> None:
        try:
            r = self._dev.read_imu()
        except HalError as exc:
            self.event("ImuReadError", error=str(exc))
            return
        ax, ay, az = r.accel_mps2
        t = r.time_s
        last_t = self._last_t
        if self._g is None or last_t is None:
            gx, gy, gz = ax, ay, az
        else:
            dt = t - last_t
            if not dt > 0.0:
                dt = 0.0
            tau = self._tau
            k = 1.0 if tau <= 0 else dt / (tau + dt)
            gx, gy, gz = self._g
            gx, gy, gz = gx + k * (ax - gx), gy + k * (ay - gy), gz + k * (az - gz)
        self._g = (gx, gy, gz)
        self._last_t = t
        g = math.sqrt(gx * gx + gy * gy + gz * gz) or 1.0
        c = gz / g
        c = c if c < 1.0 else 1.0  # max(-1, min(1, c)) unrolled, NaN included (it gives 1)
        tilt = math.degrees(math.acos(c if c > -1.0 else -1.0))
        store = self._datastore
        store[self._reading_key] = r
        store[self._tilt_key] = tilt
        self._reading = r
        self._gravity = (gx, gy, gz)
        self._tilt.put(tilt)

    def _attitude_now(self) -> tuple[float, float] | None:
        """Roll and pitch (deg) from the filtered gravity of the last reading; None before one.
        Computed when sampled: only tilt, which has limits, is needed every cycle."""
        grav = self._gravity
        if grav is None:
            return None
        if grav is not self._attitude_of:
            gx, gy, gz = grav
            self._attitude = (math.degrees(math.atan2(gy, gz)),
                              math.degrees(math.atan2(-gx, math.hypot(gy, gz))))
            self._attitude_of = grav
        return self._attitude
