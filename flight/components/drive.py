"""Drive: wheel commands to the drive train, encoder odometry and stall reporting.

This is the low-level drive service (navigation, later, commands it through the data store);
the ground can command wheel speeds directly for tests and recovery.
"""

from __future__ import annotations

import math

from flight.commands import CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Param, Severity, command
from hal.contracts import DriveTrain
from hal.errors import HalError


class Drive(Component):
    DEVICES = {"drive": DriveTrain}
    CHANNELS = (
        Channel("left_cmd_mps", "f32", "m/s", doc="commanded left wheel speed"),
        Channel("right_cmd_mps", "f32", "m/s", doc="commanded right wheel speed"),
        Channel("left_ticks", "i64", doc="left encoder count"),
        Channel("right_ticks", "i64", doc="right encoder count"),
        Channel("odometer_m", "f64", "m", doc="distance driven by wheel odometry"),
        Channel("left_current_a", "f32", "A", limits=Limits(yellow=(-3, 3), red=(-5, 5))),
        Channel("right_current_a", "f32", "A", limits=Limits(yellow=(-3, 3), red=(-5, 5))),
        Channel("stalled", "bool", doc="a wheel is stalled", update="on_change"),
        Channel("device_errors", "u32", doc="drive device calls that failed", update="on_change"),
    )
    EVENTS = (
        Event("WheelsSet", Severity.ACTIVITY_LO, "wheels {left} / {right} m/s",
              (Arg("left", "f32"), Arg("right", "f32"))),
        Event("DriveStopped", Severity.ACTIVITY_HI, "drive stopped: {why}", (Arg("why", "str"),)),
        Event("WheelStall", Severity.WARNING_HI, "wheel stall detected; drive stopped"),
        Event("DriveDeviceError", Severity.WARNING_HI, "drive device error: {error}",
              (Arg("error", "str"),), throttle=5, throttle_window_s=60.0),
    )
    PARAMS = (Param("max_speed_mps", "f32", 0.2, "m/s", min=0.0, max=2.0, doc="wheel speed limit"),)

    def setup(self) -> None:
        self._dev: DriveTrain = self.devices["drive"]
        self._last: tuple[int, int] | None = None
        self._odo = 0.0
        self._errors = 0
        self._cmd = (0.0, 0.0)
        self._was_stalled = False

    def _set(self, left: float, right: float) -> None:
        self._dev.set_wheels(left, right)
        self._cmd = (left, right)
        self.tlm("left_cmd_mps", left)
        self.tlm("right_cmd_mps", right)

    def step(self) -> None:
        try:
            st = self._dev.read_drive()
        except HalError as exc:
            self._errors += 1
            self.tlm("device_errors", self._errors)
            self.event("DriveDeviceError", error=str(exc))
            return
        if self._last is not None:
            dl = self._dev.ticks_to_m(st.left_ticks - self._last[0])
            dr = self._dev.ticks_to_m(st.right_ticks - self._last[1])
            self._odo += abs(dl + dr) / 2.0
        self._last = (st.left_ticks, st.right_ticks)
        self.publish("ticks", (st.time_s, st.left_ticks, st.right_ticks))
        self.tlm("left_ticks", st.left_ticks)
        self.tlm("right_ticks", st.right_ticks)
        self.tlm("odometer_m", self._odo)
        self.tlm("left_current_a", st.left_current_a)
        self.tlm("right_current_a", st.right_current_a)
        self.tlm("stalled", st.stalled)
        if st.stalled and not self._was_stalled:
            self.event("WheelStall")
            self._stop("wheel stall")
        self._was_stalled = st.stalled

    def _stop(self, why: str) -> None:
        try:
            self._dev.stop()
        except HalError as exc:
            self.event("DriveDeviceError", error=str(exc))
        self._cmd = (0.0, 0.0)
        self.tlm("left_cmd_mps", 0.0)
        self.tlm("right_cmd_mps", 0.0)
        self.event("DriveStopped", why=why)

    @command("DRIVE_SET_WHEELS", Arg("left", "f32", "m/s", -2.0, 2.0), Arg("right", "f32", "m/s", -2.0, 2.0))
    def drive_set_wheels(self, left: float, right: float) -> None:
        """Command the left and right wheel speeds directly (no hazard checks)."""
        limit = self.param("max_speed_mps")
        if max(abs(left), abs(right)) > limit + 1e-9:
            raise CommandFailed(f"speed above the {limit} m/s limit (drive.max_speed_mps)")
        if not all(math.isfinite(v) for v in (left, right)):
            raise CommandFailed("speeds must be finite")
        try:
            self._set(left, right)
        except HalError as exc:
            raise CommandFailed(f"drive device: {exc}") from None
        self.event("WheelsSet", left=left, right=right)

    @command("DRIVE_STOP")
    def drive_stop(self) -> None:
        """Stop both sides now."""
        self._stop("commanded")
