"""Sampling: the components of a sample-return lander that command its drill, arm, container and ascent.

Four components, one per mechanism, usually named ``drill``, ``arm``, ``container`` and
``ascent`` so their channels read as the timeline waits on them (``drill.depth_m``,
``container.sealed``). Each takes its device by contract (one sampling board may be all four:
``sim://sampling``, or the lander's MCU). Commands start an action and complete at once; the
channels and events say how it goes, so a timeline waits on telemetry (``until drill.state ...``)
rather than on a command that lasts minutes.

**The drill watches itself.** A *jam* is the device reporting JAMMED (the torque at its stall
limit with no progress, which the drill's controller judges at its own rate): the drill
raises ``DrillJammed``, stops the motor (a held bit heats the motor at its stall current) and,
with ``on_jam = "retract"`` (the default), pulls the bit up, which frees it and brings the partial
core to the container. An *overheat* is the motor temperature at or above ``drill.overheat_c``
(below the motor's own cut-out) or the device reporting its cut-out: ``DrillOverheat``, the drill
is stopped and, once the temperature is back to ``drill.resume_c``, ``DrillCooled`` and it
resumes toward its target. Both are counted (``drill.jams``, ``drill.overheats``) and the
channel ``drill.state`` says where the drill is (``DrillState``: 0 idle, 1 drilling,
2 retracting, 3 jammed, 4 overheated); ``drill.done`` is true once the commanded depth was
reached. Fault protection weighs the events (``event:drill.DrillJammed``) by the vehicle's own
monitors: on the sample-return lander (``magpie/configs/change5_lander.toml``) a jam inside the
critical sampling timeline goes to that timeline's contingency, outside one to SAFE.

A device error (a read or command that fails: link down, firmware without the mechanism) is
counted in ``<name>.device_errors`` and reported by a throttled event; a refusal by the
mechanism fails the command with its reason.
"""

from __future__ import annotations

import logging
from typing import Any

from flight.commands import CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Param, Severity, command
from hal.contracts import AscentInterface, Drill, DrillState, SampleArm, SampleContainer
from hal.errors import CommandRejectedError, HalError

log = logging.getLogger(__name__)

STATE_NAMES = {int(s): s.name for s in DrillState}


class _Mechanism(Component):
    """What the four share: device calls whose errors are counted and reported, never raised."""

    ROLE = ""
    CHANNELS = (Channel("device_errors", "u32", doc="device calls that failed", update="on_change"),)
    EVENTS = (
        Event("DeviceError", Severity.WARNING_HI, "{what}: {error}", (Arg("what", "str"), Arg("error", "str")),
              throttle=5, throttle_window_s=60.0),
    )

    def setup(self) -> None:
        self.dev: Any = self.devices[self.ROLE]
        self._errors = 0
        self.tlm("device_errors", 0)

    def _device_error(self, what: str, exc: HalError) -> None:
        self._errors += 1
        self.tlm("device_errors", self._errors)
        self.event("DeviceError", what=what, error=str(exc)[:200])

    def _read(self, method: str) -> Any:
        try:
            return getattr(self.dev, method)()
        except HalError as exc:
            self._device_error(method, exc)
            return None

    def _do(self, what: str, fn: Any, *args: Any) -> None:
        """Carry out a command on the device; CommandFailed says why not."""
        try:
            fn(*args)
        except CommandRejectedError as exc:
            raise CommandFailed(f"{what} refused: {exc}") from None
        except HalError as exc:  # the link, or a firmware without the mechanism (UnsupportedError)
            self._device_error(what, exc)
            raise CommandFailed(f"{what}: {exc}") from None
        except ValueError as exc:  # a value the wire cannot carry
            raise CommandFailed(f"{what}: {exc}") from None


class DrillControl(_Mechanism):
    """The sample drill (see the module docstring)."""

    ROLE = "drill"
    DEVICES = {"drill": Drill}
    OPTIONS = {"on_jam": "retract"}
    CHANNELS = _Mechanism.CHANNELS + (
        Channel("depth_m", "f32", "m", doc="depth of the bit below the surface"),
        Channel("target_m", "f32", "m", doc="commanded depth", update="on_change"),
        Channel("rate_mm_s", "f32", "mm/s", doc="penetration rate (negative while retracting)"),
        Channel("torque_nm", "f32", "N m", doc="drill torque",
                limits=Limits(yellow=(0.0, 45.0), red=(0.0, 55.0))),
        Channel("temp_c", "f32", "degC", doc="drill motor temperature",
                limits=Limits(yellow=(-40.0, 90.0), red=(-50.0, 110.0))),
        Channel("state", "u8", doc="0 idle, 1 drilling, 2 retracting, 3 jammed, 4 overheated", update="on_change"),
        Channel("state_name", "str", doc="drill state", update="on_change"),
        Channel("core_kg", "f32", "kg", doc="core in the drill's sample tube"),
        Channel("done", "bool", doc="the commanded depth was reached", update="on_change"),
        Channel("jams", "u32", doc="jams detected since boot", update="on_change"),
        Channel("overheats", "u32", doc="overheats detected since boot", update="on_change"),
    )
    EVENTS = _Mechanism.EVENTS + (
        Event("DrillStarted", Severity.ACTIVITY_HI, "drilling to {depth_m} m at {rate_mm_s} mm/s",
              (Arg("depth_m", "f32"), Arg("rate_mm_s", "f32"))),
        Event("DrillDepthReached", Severity.ACTIVITY_HI, "drill at {depth_m} m; core {core_kg} kg",
              (Arg("depth_m", "f32"), Arg("core_kg", "f32"))),
        Event("DrillStopped", Severity.ACTIVITY_HI, "drill stopped at {depth_m} m: {why}",
              (Arg("depth_m", "f32"), Arg("why", "str"))),
        Event("DrillRetracted", Severity.ACTIVITY_HI, "drill up; core handed to the container",
              doc="the bit is back at the surface"),
        Event("DrillJammed", Severity.WARNING_HI, "drill jammed at {depth_m} m ({torque_nm} N m); {action}",
              (Arg("depth_m", "f32"), Arg("torque_nm", "f32"), Arg("action", "str"))),
        Event("DrillOverheat", Severity.WARNING_HI, "drill motor at {temp_c} C at {depth_m} m; stopped to cool",
              (Arg("temp_c", "f32"), Arg("depth_m", "f32"))),
        Event("DrillCooled", Severity.ACTIVITY_HI, "drill motor cooled to {temp_c} C; {action}",
              (Arg("temp_c", "f32"), Arg("action", "str"))),
    )
    PARAMS = (
        Param("overheat_c", "f32", 110.0, "degC", min=0.0, max=200.0, doc="motor temperature that stops the drill"),
        Param("resume_c", "f32", 70.0, "degC", min=-50.0, max=200.0, doc="temperature at which it may resume"),
    )

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        if self.options["on_jam"] not in ("retract", "stop"):
            raise ValueError(f"on_jam: 'retract' or 'stop', not {self.options['on_jam']!r}")

    def setup(self) -> None:
        super().setup()
        self._jams = 0
        self._overheats = 0
        self._done = False
        self._target = 0.0
        self._rate = 0.0
        self._drilling = False  # commanded down and not yet at the target
        self._cooling = False
        self._was_state = int(DrillState.IDLE)
        self._was_depth = 0.0
        self._publish_counts()

    def _publish_counts(self) -> None:
        self.tlm("jams", self._jams)
        self.tlm("overheats", self._overheats)
        self.tlm("done", self._done)
        self.tlm("target_m", self._target)

    def step(self) -> None:
        st = self._read("read_drill")
        if st is None:
            return
        self.tlm("depth_m", st.depth_m)
        self.tlm("rate_mm_s", st.rate_mm_s)
        self.tlm("torque_nm", st.torque_nm)
        self.tlm("temp_c", st.temp_c)
        self.tlm("state", st.state)
        self.tlm("state_name", STATE_NAMES.get(st.state, f"STATE_{st.state}"))
        self.tlm("core_kg", st.core_kg)
        self.publish("status", st)
        prev, self._was_state = self._was_state, st.state
        self._was_depth = st.depth_m
        if self._cooling:
            self._cool_step(st)
        elif st.state == DrillState.OVERHEATED or (st.temp_c >= self.param("overheat_c") and st.torque_nm > 0):
            self._overheat(st)
        elif st.state == DrillState.JAMMED and prev != DrillState.JAMMED:
            self._jam(st)
        if self._drilling and st.state == DrillState.IDLE and st.depth_m >= self._target - 1e-3:
            self._drilling = False
            self._done = True
            self.tlm("done", True)
            self.event("DrillDepthReached", depth_m=round(st.depth_m, 4), core_kg=round(st.core_kg, 4))
        if prev == DrillState.RETRACTING and st.state == DrillState.IDLE and st.depth_m == 0.0:
            self.event("DrillRetracted")

    def _jam(self, st: Any) -> None:
        self._jams += 1
        self._drilling = False
        self.tlm("jams", self._jams)
        action = "retracting to free the bit" if self.options["on_jam"] == "retract" else "stopped"
        self.event("DrillJammed", depth_m=round(st.depth_m, 4), torque_nm=round(st.torque_nm, 2), action=action)
        self._quiet("stop_drill")
        if self.options["on_jam"] == "retract":
            self._quiet("retract_drill")

    def _overheat(self, st: Any) -> None:
        self._overheats += 1
        self._cooling = True
        self.tlm("overheats", self._overheats)
        self.event("DrillOverheat", temp_c=round(st.temp_c, 1), depth_m=round(st.depth_m, 4))
        self._quiet("stop_drill")

    def _cool_step(self, st: Any) -> None:
        if st.temp_c > self.param("resume_c") or st.state == DrillState.OVERHEATED:
            return
        self._cooling = False
        if self._drilling and st.state != DrillState.JAMMED:
            self.event("DrillCooled", temp_c=round(st.temp_c, 1), action=f"resuming to {self._target:g} m")
            try:
                self.dev.start_drill(self._target, self._rate)
            except HalError as exc:
                self._device_error("start_drill", exc)
                self._drilling = False
        else:
            self.event("DrillCooled", temp_c=round(st.temp_c, 1), action="idle")

    def _quiet(self, method: str) -> None:
        try:
            getattr(self.dev, method)()
        except HalError as exc:
            self._device_error(method, exc)

    @command("DRILL_START", Arg("depth_m", "f32", "m", 0.01, 2.5, doc="depth to drill to"),
             Arg("rate_mm_s", "f32", "mm/s", 0.5, 20.0, doc="penetration rate"))
    def drill_start(self, depth_m: float, rate_mm_s: float) -> None:
        """Drill down to a depth at a rate; completes once the drill has started (watch drill.state)."""
        if self._cooling:
            raise CommandFailed(f"the drill motor is cooling (to {self.param('resume_c'):g} C); it resumes by itself")
        self._do("DRILL_START", self.dev.start_drill, depth_m, rate_mm_s)
        self._target, self._rate = float(depth_m), float(rate_mm_s)
        self._drilling, self._done = True, False
        self._publish_counts()
        self.event("DrillStarted", depth_m=depth_m, rate_mm_s=rate_mm_s)

    @command("DRILL_STOP")
    def drill_stop(self) -> None:
        """Stop the drill where it is (a resume after cooling is cancelled too)."""
        self._drilling = self._cooling = False
        self._do("DRILL_STOP", self.dev.stop_drill)
        self.event("DrillStopped", depth_m=round(self._was_depth, 4), why="commanded")

    @command("DRILL_RETRACT")
    def drill_retract(self) -> None:
        """Pull the bit back to the surface; the core goes to the container when it is up."""
        self._drilling = False
        self._do("DRILL_RETRACT", self.dev.retract_drill)


class ArmControl(_Mechanism):
    """The scoop arm: joint moves, scoop, deposit into the container, with its force watched."""

    ROLE = "arm"
    DEVICES = {"arm": SampleArm}
    OPTIONS = {"stow_deg": [60.0, -150.0]}
    CHANNELS = _Mechanism.CHANNELS + (
        Channel("shoulder_deg", "f32", "deg"),
        Channel("elbow_deg", "f32", "deg"),
        Channel("force_n", "f32", "N", doc="scoop contact force", limits=Limits(yellow=(0.0, 150.0), red=(0.0, 190.0))),
        Channel("reach_m", "f32", "m", doc="horizontal reach of the scoop from the shoulder"),
        Channel("moving", "bool", update="on_change"),
        Channel("scooping", "bool", update="on_change"),
        Channel("holding_kg", "f32", "kg", doc="regolith in the scoop"),
    )
    EVENTS = _Mechanism.EVENTS + (
        Event("ArmMoving", Severity.ACTIVITY_LO, "arm to ({shoulder_deg}, {elbow_deg}) deg",
              (Arg("shoulder_deg", "f32"), Arg("elbow_deg", "f32"))),
        Event("ArmArrived", Severity.ACTIVITY_LO, "arm at ({shoulder_deg}, {elbow_deg}) deg, reach {reach_m} m",
              (Arg("shoulder_deg", "f32"), Arg("elbow_deg", "f32"), Arg("reach_m", "f32"))),
        Event("ArmBlocked", Severity.WARNING_LO, "arm stopped short at {force_n} N of contact force",
              (Arg("force_n", "f32"),)),
        Event("ArmScooped", Severity.ACTIVITY_HI, "scoop holds {kg} kg", (Arg("kg", "f32"),)),
        Event("ArmDeposited", Severity.ACTIVITY_HI, "scoop emptied into the container ({kg} kg)", (Arg("kg", "f32"),)),
    )

    def setup(self) -> None:
        super().setup()
        self._target: tuple[float, float] | None = None
        self._was_moving = False
        self._was_scooping = False
        self._holding = 0.0

    def step(self) -> None:
        st = self._read("read_arm")
        if st is None:
            return
        self.tlm("shoulder_deg", st.shoulder_deg)
        self.tlm("elbow_deg", st.elbow_deg)
        self.tlm("force_n", st.force_n)
        self.tlm("reach_m", st.reach_m)
        self.tlm("moving", st.moving)
        self.tlm("scooping", st.scooping)
        self.tlm("holding_kg", st.holding_kg)
        self._holding = st.holding_kg
        if self._target is not None and not st.moving:
            s, e = self._target
            if abs(st.shoulder_deg - s) < 0.05 and abs(st.elbow_deg - e) < 0.05:
                self.event("ArmArrived", shoulder_deg=round(st.shoulder_deg, 2), elbow_deg=round(st.elbow_deg, 2),
                           reach_m=round(st.reach_m, 3))
            else:
                self.event("ArmBlocked", force_n=round(st.force_n, 1))
            self._target = None
        if self._was_scooping and not st.scooping:
            self.event("ArmScooped", kg=round(st.holding_kg, 4))
        self._was_scooping = st.scooping

    def _move(self, shoulder_deg: float, elbow_deg: float) -> None:
        self._do("ARM_MOVE", self.dev.move_arm, shoulder_deg, elbow_deg)
        self._target = (float(shoulder_deg), float(elbow_deg))
        self.event("ArmMoving", shoulder_deg=shoulder_deg, elbow_deg=elbow_deg)

    @command("ARM_MOVE", Arg("shoulder_deg", "f32", "deg", -60.0, 90.0), Arg("elbow_deg", "f32", "deg", -160.0, 0.0))
    def arm_move(self, shoulder_deg: float, elbow_deg: float) -> None:
        """Move the arm's joints (both arrive together); watch arm.moving."""
        self._move(shoulder_deg, elbow_deg)

    @command("ARM_STOW")
    def arm_stow(self) -> None:
        """Move the arm to its stow pose, over the sample container."""
        s, e = (float(v) for v in self.options["stow_deg"])
        self._move(s, e)

    @command("ARM_SCOOP")
    def arm_scoop(self) -> None:
        """Close the scoop through the surface under it (the scoop must touch the surface)."""
        self._do("ARM_SCOOP", self.dev.scoop)

    @command("ARM_DEPOSIT")
    def arm_deposit(self) -> None:
        """Empty the scoop into the sample container (from the stow pose)."""
        kg = self._holding
        self._do("ARM_DEPOSIT", self.dev.deposit)
        self.event("ArmDeposited", kg=round(kg, 4))


class ContainerControl(_Mechanism):
    """The sample container: what it holds, and its seal."""

    ROLE = "container"
    DEVICES = {"container": SampleContainer}
    CHANNELS = _Mechanism.CHANNELS + (
        Channel("mass_kg", "f32", "kg", doc="sample mass in the container"),
        Channel("sealed", "bool", update="on_change"),
        Channel("sealing", "bool", update="on_change"),
    )
    EVENTS = _Mechanism.EVENTS + (
        Event("ContainerSealing", Severity.ACTIVITY_HI, "sealing the container with {mass_kg} kg",
              (Arg("mass_kg", "f32"),)),
        Event("ContainerSealed", Severity.ACTIVITY_HI, "container sealed with {mass_kg} kg", (Arg("mass_kg", "f32"),)),
    )

    def setup(self) -> None:
        super().setup()
        self._sealed = False
        self._mass = 0.0

    def step(self) -> None:
        st = self._read("read_container")
        if st is None:
            return
        self._mass = st.mass_kg
        self.tlm("mass_kg", st.mass_kg)
        self.tlm("sealed", st.sealed)
        self.tlm("sealing", st.sealing)
        if st.sealed and not self._sealed:
            self.event("ContainerSealed", mass_kg=round(st.mass_kg, 4))
        self._sealed = st.sealed

    @command("CONTAINER_SEAL")
    def container_seal(self) -> None:
        """Seal the container (final; it takes a little while: watch container.sealed)."""
        self._do("CONTAINER_SEAL", self.dev.seal_container)
        st = self._read("read_container")  # now: a deposit may have come since the last step
        self.event("ContainerSealing", mass_kg=round(st.mass_kg if st is not None else self._mass, 4))


class AscentControl(_Mechanism):
    """The interface to the ascent vehicle: reports ready, arms and safes it."""

    ROLE = "ascent"
    DEVICES = {"ascent": AscentInterface}
    CHANNELS = _Mechanism.CHANNELS + (
        Channel("ready", "bool", doc="sample sealed, drill up, arm stowed", update="on_change"),
        Channel("armed", "bool", update="on_change"),
    )
    EVENTS = _Mechanism.EVENTS + (
        Event("AscentReady", Severity.ACTIVITY_HI, "ready for ascent"),
        Event("AscentArmed", Severity.ACTIVITY_HI, "ascent armed"),
        Event("AscentSafed", Severity.ACTIVITY_HI, "ascent safed"),
    )

    def setup(self) -> None:
        super().setup()
        self._ready = False

    def step(self) -> None:
        st = self._read("read_ascent")
        if st is None:
            return
        self.tlm("ready", st.ready)
        self.tlm("armed", st.armed)
        if st.ready and not self._ready:
            self.event("AscentReady")
        self._ready = st.ready

    @command("ASCENT_ARM")
    def ascent_arm(self) -> None:
        """Arm the ascent vehicle's separation (refused unless ready)."""
        self._do("ASCENT_ARM", self.dev.arm_ascent, True)
        self.event("AscentArmed")

    @command("ASCENT_SAFE")
    def ascent_safe(self) -> None:
        """Safe the ascent vehicle's separation."""
        self._do("ASCENT_SAFE", self.dev.arm_ascent, False)
        self.event("AscentSafed")
