"""Device contracts: the small interfaces the flight software is written against.

A real driver, the in-process simulated world and the emulator behind a pseudo-terminal all
implement these, so the same flight code runs on a Raspberry Pi, against a pty or in lockstep.
One device object may implement several contracts (an MCU is a drive train, an IMU, a power
monitor and a thermal sensor at once).

Lifecycle: ``close()`` is idempotent, devices are context managers, and any call on a closed
device raises :class:`~hal.errors.DeviceClosedError` naming the method.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hal.errors import DeviceClosedError

Vec3 = tuple[float, float, float]


class Device(abc.ABC):  # noqa: B024 - the base of every contract; subclasses are abstract
    """Base of every device: URL, explicit lifecycle, context manager."""

    url: str = ""

    def __init__(self, url: str = "") -> None:
        self.url = url
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self, method: str) -> None:
        if self._closed:
            where = self.url or "no url"
            raise DeviceClosedError(f"{type(self).__name__}.{method}() called on a closed device ({where})")

    def close(self) -> None:
        """Release the device. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._close()

    def _close(self) -> None:
        """Drivers release their resources here; called once. The base holds none."""
        return None

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.url!r} {state}>"


# --------------------------------------------------------------------------------------------
# Readings: immutable snapshots with the device time they were taken at.


@dataclass(frozen=True, slots=True)
class DriveStatus:
    """Encoder counts (cumulative, signed), motor currents and faults of a skid-steer drive."""

    time_s: float
    left_ticks: int
    right_ticks: int
    left_current_a: float = 0.0
    right_current_a: float = 0.0
    stalled: bool = False
    fault_flags: int = 0


@dataclass(frozen=True, slots=True)
class ImuReading:
    time_s: float
    accel_mps2: Vec3
    gyro_rads: Vec3
    temp_c: float


@dataclass(frozen=True, slots=True)
class PowerReading:
    time_s: float
    bus_v: float
    current_a: float  # positive = discharging
    soc: float  # state of charge, 0..1
    solar_w: float


@dataclass(frozen=True, slots=True)
class ThermalReading:
    time_s: float
    temps_c: dict[str, float] = field(default_factory=dict)


class DrillState(enum.IntEnum):
    """What a sample drill is doing (``DrillStatus.state``)."""

    IDLE = 0  # stopped, anywhere from the surface to the bottom of its stroke
    DRILLING = 1
    RETRACTING = 2
    JAMMED = 3  # the bit is held: torque at the stall limit, no progress; retract to free it
    OVERHEATED = 4  # the motor tripped its thermal cut-out; it may restart once cool


@dataclass(frozen=True, slots=True)
class DrillStatus:
    """A rotary-percussive sample drill: depth of the bit, rate, torque, motor temperature."""

    time_s: float
    depth_m: float
    rate_mm_s: float  # penetration rate now (negative while retracting)
    torque_nm: float
    temp_c: float
    state: int = DrillState.IDLE
    core_kg: float = 0.0  # core collected in the drill's sample tube
    target_m: float = 0.0


@dataclass(frozen=True, slots=True)
class ArmStatus:
    """A two-joint scoop arm: joint angles, the scoop's contact force and the horizontal reach."""

    time_s: float
    shoulder_deg: float
    elbow_deg: float
    force_n: float
    reach_m: float
    moving: bool = False
    scooping: bool = False
    holding_kg: float = 0.0  # regolith in the scoop


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    """The sample container: what it holds and whether its lid is sealed."""

    time_s: float
    mass_kg: float
    sealed: bool = False
    sealing: bool = False


@dataclass(frozen=True, slots=True)
class AscentStatus:
    """The interface to the ascent vehicle: ready (container sealed and stowed), armed."""

    time_s: float
    ready: bool = False
    armed: bool = False


@dataclass(frozen=True, slots=True)
class CameraModel:
    """Pinhole intrinsics: focal lengths and principal point in pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True, slots=True)
class Frame:
    """One image with the metadata a product needs."""

    image: np.ndarray  # HxW (grey) or HxWx3 (BGR), uint8
    time_s: float
    seq: int
    camera: str
    exposure_ms: float = 0.0
    gain: float = 1.0
    model: CameraModel | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Exposure:
    """A frame whose instant is fixed but whose image is not made yet (see :meth:`Camera.expose`).

    ``develop(exposure_ms, gain)`` makes the :class:`Frame` (``None`` keeps the camera's own
    setting); it may be slow (a sensor readout, a render) and is meant for a worker thread, and
    it may be called again with another exposure while metering.
    """

    camera: str
    develop: Callable[[float | None, float | None], Frame]


@dataclass(frozen=True, slots=True)
class StereoPair:
    left: Frame
    right: Frame
    baseline_m: float


# --------------------------------------------------------------------------------------------
# Contracts.


class DriveTrain(Device):
    """A skid-steer drive: left and right wheel speeds, stop, encoders and odometry geometry."""

    wheel_radius_m: float = 0.1
    track_width_m: float = 0.5
    ticks_per_rev: int = 4096

    @abc.abstractmethod
    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        """Command left and right wheel rim speeds in m/s."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop both sides now."""

    @abc.abstractmethod
    def read_drive(self) -> DriveStatus:
        """Latest encoder counts, currents and fault flags."""

    def reset_encoders(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot reset its encoders")

    def ticks_to_m(self, ticks: int) -> float:
        return ticks * (2.0 * np.pi * self.wheel_radius_m) / self.ticks_per_rev


class Imu(Device):
    @abc.abstractmethod
    def read_imu(self) -> ImuReading:
        """Latest accelerations (m/s^2, body frame), angular rates (rad/s) and temperature."""


class PowerMonitor(Device):
    """Battery and solar readings; a power board with switched rails also sheds loads.

    Load switching is optional (a monitor-only device keeps these defaults, which raise
    NotImplementedError): ``switch_load("avionics", False)`` leaves only the wake circuit powered
    (hibernation), ``switch_load("heaters", False)`` turns the survival heaters off, and
    ``set_heater_setpoint`` moves their thermostat (``None, None`` restores the defaults).
    """

    LOADS: tuple[str, ...] = ()

    @abc.abstractmethod
    def read_power(self) -> PowerReading:
        """Latest bus voltage, current, state of charge and solar input."""

    def switch_load(self, load: str, on: bool) -> None:
        """Switch a load rail (one of ``LOADS``) on or off."""
        raise NotImplementedError(f"{type(self).__name__} cannot switch loads")

    def set_heater_setpoint(self, on_below_c: float | None, off_above_c: float | None) -> None:
        """Heater thermostat: on below ``on_below_c``, off above ``off_above_c``; None restores."""
        raise NotImplementedError(f"{type(self).__name__} has no heater control")


class ThermalSensors(Device):
    @abc.abstractmethod
    def read_thermal(self) -> ThermalReading:
        """Latest named temperatures in degrees Celsius."""


class Camera(Device):
    name: str = "camera"

    @abc.abstractmethod
    def capture(self, timeout_s: float = 2.0) -> Frame:
        """Take one frame; raise DeviceTimeoutError past the timeout."""

    def expose(self, timeout_s: float = 2.0) -> Exposure:
        """Start a frame now and make it later, off the control thread.

        The default defers the whole capture to whoever develops it (a worker): a driver whose
        readout can be split from the trigger overrides this to fix the instant here. Raises
        now if the camera is closed.
        """
        self._check_open("expose")

        def develop(exposure_ms: float | None = None, gain: float | None = None) -> Frame:
            if exposure_ms is not None and self.has_exposure_control:
                self.set_exposure(exposure_ms, 1.0 if gain is None else gain)
            return self.capture(timeout_s)

        return Exposure(self.name, develop)

    def capture_stereo(self, timeout_s: float = 2.0) -> StereoPair:
        raise NotImplementedError(f"{type(self).__name__} has one eye; it cannot take stereo pairs")

    @property
    def has_stereo(self) -> bool:
        return False

    # Optional abilities: a pan/tilt mast and exposure control. A camera without them keeps
    # these defaults; imaging code asks ``has_mast`` / ``has_exposure_control`` first.

    @property
    def has_mast(self) -> bool:
        return False

    @property
    def pointing(self) -> tuple[float, float]:
        """(pan, tilt) in degrees; pan positive to the left, tilt positive up."""
        return (0.0, 0.0)

    def point(self, pan_deg: float, tilt_deg: float) -> None:
        """Move the mast to (pan, tilt) degrees; limits are the driver's to enforce."""
        raise NotImplementedError(f"{type(self).__name__} has no pan/tilt mast")

    @property
    def has_exposure_control(self) -> bool:
        return False

    def set_exposure(self, exposure_ms: float, gain: float = 1.0) -> None:
        """Set the exposure time and analogue gain of the next frames."""
        raise NotImplementedError(f"{type(self).__name__} has no exposure control")


class Radio(Device):
    """Sends and receives opaque link frames."""

    @abc.abstractmethod
    def send(self, frame: bytes) -> None:
        """Queue one frame for transmission."""

    @abc.abstractmethod
    def recv(self, timeout_s: float = 0.0) -> bytes | None:
        """One received frame, or None when none arrived within the timeout."""


class Watchdog(Device):
    """A hardware watchdog. ``suspend``/``resume`` bracket a time when no kicks can come (the
    computer is about to be powered down for hibernation); a driver that cannot disarm raises."""

    timeout_s: float = 10.0

    @abc.abstractmethod
    def kick(self) -> None:
        """Prove the software is alive; the hardware resets the vehicle if kicks stop."""

    def suspend(self) -> None:
        """Stop expecting kicks until :meth:`resume`."""
        raise NotImplementedError(f"{type(self).__name__} cannot be suspended")

    def resume(self) -> None:
        """Expect kicks again (the first one is due within the timeout)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be suspended")


# --------------------------------------------------------------------------------------------
# Sampling: a sample-return lander's drill, scoop arm, sample container and ascent interface.
# One device may be all four (the sampling board of an MCU); commands start an action and
# return, the reading says how it goes. A device refuses what it cannot do now (a seal with
# the lid already sealed is fine; arming the ascent with the container open is not) with
# CommandRejectedError, and what it cannot do at all with UnsupportedError.


class Drill(Device):
    """A sample drill: drill down to a depth at a rate, stop, retract (which frees a jammed bit
    and hands the core to the sample container)."""

    max_depth_m: float = 2.5

    @abc.abstractmethod
    def start_drill(self, target_depth_m: float, rate_mm_s: float) -> None:
        """Drill down to ``target_depth_m`` at ``rate_mm_s`` (the rate the regolith allows)."""

    @abc.abstractmethod
    def stop_drill(self) -> None:
        """Stop the drill where it is."""

    @abc.abstractmethod
    def retract_drill(self) -> None:
        """Pull the bit back to the surface."""

    @abc.abstractmethod
    def read_drill(self) -> DrillStatus:
        """Latest depth, rate, torque, temperature and state."""


class SampleArm(Device):
    """A scoop on a two-joint arm: move the joints, scoop where the scoop touches the surface,
    deposit what it holds into the container (from the stow pose)."""

    @abc.abstractmethod
    def move_arm(self, shoulder_deg: float, elbow_deg: float) -> None:
        """Move the joints to these angles (at the arm's own rate)."""

    @abc.abstractmethod
    def scoop(self) -> None:
        """Close the scoop through the surface under it."""

    @abc.abstractmethod
    def deposit(self) -> None:
        """Empty the scoop into the sample container."""

    @abc.abstractmethod
    def read_arm(self) -> ArmStatus:
        """Latest joint angles, force and reach."""


class SampleContainer(Device):
    @abc.abstractmethod
    def seal_container(self) -> None:
        """Close and seal the lid; sealing takes a little while and cannot be undone."""

    @abc.abstractmethod
    def read_container(self) -> ContainerStatus:
        """Latest mass held and seal state."""


class AscentInterface(Device):
    @abc.abstractmethod
    def arm_ascent(self, armed: bool) -> None:
        """Arm (or safe) the ascent vehicle's separation; arming needs it ready."""

    @abc.abstractmethod
    def read_ascent(self) -> AscentStatus:
        """Whether the ascent vehicle is ready and armed."""
