"""Drive: wheel commands to the drive train, encoder odometry and stall reporting.

This is the low-level drive service. Navigation commands it through the data store: the
component named by the ``nav`` option publishes ``<nav>.wheel_cmd`` as ``(epoch, seq, left,
right)`` and the drive applies each new one whose epoch matches its stop epoch. Every stop
(commanded, stall) starts a new epoch (``drive.stop_epoch``, with ``drive.stop_reason``), so a
wheel command issued before a stop can never restart the wheels after it; navigation sees the
new epoch and ends its goal. The ground can command wheel speeds directly for tests and recovery.
"""

from __future__ import annotations

import math

from flight.commands import CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Param, Severity, command
from hal.contracts import DriveStatus, DriveTrain
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
    OPTIONS = {"nav": "nav"}

    def setup(self) -> None:
        self._dev: DriveTrain = self.devices["drive"]
        self._epoch = 0
        self._nav_seq: int | None = None
        nav = self.options["nav"]
        self._nav_key = f"{nav}.wheel_cmd" if nav else ""
        self.publish("stop_epoch", 0)
        self.publish("stop_reason", "")
        self._device_ok = True
        self.publish("device_ok", True)
        self._stalled_published: object = False
        self.publish("stalled", False)
        self._ticks_key = f"{self.name}.ticks"
        self._stalled_key = f"{self.name}.stalled"
        self.publish("geometry", (self._dev.wheel_radius_m, self._dev.track_width_m, self._dev.ticks_per_rev))
        self._last: tuple[int, int] | None = None
        self._odo = 0.0
        self._errors = 0
        self._cmd = (0.0, 0.0)
        self._was_stalled = False
        # counts, odometer and the stall flag are sampled from the last reading; the currents
        # have limits and are put every cycle
        self._status: DriveStatus | None = None
        self.provide("left_ticks", lambda: None if self._status is None else self._status.left_ticks)
        self.provide("right_ticks", lambda: None if self._status is None else self._status.right_ticks)
        self.provide("odometer_m", lambda: None if self._status is None else self._odo)
        self.provide("stalled", lambda: None if self._status is None else self._status.stalled)
        self._left_current = self.tlm_slot("left_current_a")
        self._right_current = self.tlm_slot("right_current_a")

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
            self._publish_device_ok(False)
            return
        store = self._datastore
        if self._device_ok is not True:
            self._publish_device_ok(True)
        if self._nav_key:
            self._apply_nav(store.get(self._nav_key))  # type: ignore[union-attr]
        lt, rt = st.left_ticks, st.right_ticks
        last = self._last
        if last is not None:
            d_left, d_right = lt - last[0], rt - last[1]
            if d_left or d_right:  # standing still adds nothing (0.0) to the odometer
                dl = self._dev.ticks_to_m(d_left)
                dr = self._dev.ticks_to_m(d_right)
                self._odo += abs(dl + dr) / 2.0
        self._last = (lt, rt)
        store[self._ticks_key] = (st.time_s, lt, rt)  # type: ignore[index]
        self._status = st
        self._left_current.put(st.left_current_a)
        self._right_current.put(st.right_current_a)
        stalled = st.stalled
        if stalled is not self._stalled_published:  # the store keeps the last value published
            store[self._stalled_key] = self._stalled_published = stalled  # type: ignore[index]
        if stalled and not self._was_stalled:
            self.event("WheelStall")
            self._stop("wheel stall")
        self._was_stalled = stalled

    def _publish_device_ok(self, ok: bool) -> None:
        self._device_ok = ok
        self.publish("device_ok", ok)

    def _apply_nav(self, cmd: tuple[int, int, float, float] | None) -> None:
        """Apply navigation's latest wheel command if it is new and issued in this stop epoch."""
        if cmd is None:
            return
        epoch, seq, left, right = cmd
        if seq == self._nav_seq:
            return
        self._nav_seq = seq
        if epoch != self._epoch:
            return
        limit = self.param("max_speed_mps")
        left = max(-limit, min(limit, float(left)))
        right = max(-limit, min(limit, float(right)))
        try:
            self._set(left, right)
        except HalError as exc:
            self._errors += 1
            self.tlm("device_errors", self._errors)
            self.event("DriveDeviceError", error=str(exc))

    def _stop(self, why: str) -> None:
        self._epoch += 1
        self.publish("stop_epoch", self._epoch)
        self.publish("stop_reason", why)
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
