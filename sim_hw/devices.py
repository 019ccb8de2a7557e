"""In-process devices on the simulated world, opened as ``sim://`` URLs.

They implement the same contracts as the real drivers, read the world at its current simulated
time (as an MCU samples its sensors) and never advance it: whoever owns the world (a lockstep
executive, a test) steps it. ``hal.open_device(url, world=w)`` reaches :func:`open_sim_device`
through the ``magpie.devices`` entry point.

URL forms::

    sim://mcu
        drive train + IMU + power monitor + thermal sensors in one device, like the MCU;
        ``?loads=payload.spec:2.5`` adds switched rails (name:watts) to its power board
    sim://camera?name=navcam&width=640&height=480&fov_deg=60&stereo=1&baseline=0.2
        a mast camera (also pan, tilt, noise, bgr); options left out keep the world's
        camera of that name, or the defaults for a new one
    sim://watchdog?timeout=10
        records kicks on world time and says whether (and when) it would have bitten
    sim://sampling[?jam_at_m=0.9]
        a sample-return lander's drill, scoop arm, sample container and ascent interface in one
        device (sim_hw.sampling), added to the world on first open; ``jam_at_m`` buries a rock
        the drill cannot pass at that depth (a seeded jam)
"""

from __future__ import annotations

import dataclasses
import logging
import zlib
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from hal.contracts import (
    ArmStatus,
    AscentInterface,
    AscentStatus,
    Camera,
    ContainerStatus,
    Drill,
    DrillStatus,
    DriveStatus,
    DriveTrain,
    Exposure,
    Frame,
    Imu,
    ImuReading,
    PowerMonitor,
    PowerReading,
    SampleArm,
    SampleContainer,
    StereoPair,
    ThermalReading,
    ThermalSensors,
    Watchdog,
)
from hal.errors import CommandRejectedError, DeviceUrlError, HalError
from hal.registry import parse_bool, parse_options
from sim_hw import blocking
from sim_hw.sampling import SamplingRefused, SamplingSystem
from sim_hw.world import CameraSpec, World

log = logging.getLogger(__name__)

MCU_FORM = "sim://mcu[?loads=payload.spec:2.5,payload.other:1]"
CAMERA_FORM = (
    "sim://camera?name=navcam&width=640&height=480&fov_deg=60&stereo=1&baseline=0.2"
    "[&pan=0&tilt=-20&noise=1&bgr=0]"
)
WATCHDOG_FORM = "sim://watchdog?timeout=10"
SAMPLING_FORM = "sim://sampling[?jam_at_m=0.9]"
FORMS = f"{MCU_FORM} | {CAMERA_FORM} | {WATCHDOG_FORM} | {SAMPLING_FORM}"


def _positive_int(text: str) -> int:
    v = int(text)
    if v <= 0:
        raise ValueError("must be positive")
    return v


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise ValueError("must be positive")
    return v


class SimMcu(DriveTrain, Imu, PowerMonitor, ThermalSensors):
    """The vehicle's microcontroller, in process: wheels, encoders, IMU, power and temperatures."""

    def __init__(self, world: World, url: str = MCU_FORM) -> None:
        super().__init__(url)
        self.world = world
        cfg = world.vehicle.config
        self.wheel_radius_m = cfg.wheel_radius_m
        self.track_width_m = cfg.track_width_m
        self.ticks_per_rev = cfg.ticks_per_rev

    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        self._check_open("set_wheels")
        self.world.vehicle.set_wheels(left_mps, right_mps)

    def stop(self) -> None:
        self._check_open("stop")
        self.world.vehicle.stop()

    def read_drive(self) -> DriveStatus:
        if self._closed:  # read every control cycle: the check is made only when it would raise
            self._check_open("read_drive")
        return self.world.read_drive()

    def reset_encoders(self) -> None:
        self._check_open("reset_encoders")
        self.world.vehicle.reset_encoders()

    def read_imu(self) -> ImuReading:
        if self._closed:  # read every control cycle: the check is made only when it would raise
            self._check_open("read_imu")
        return self.world.read_imu()

    def read_power(self) -> PowerReading:
        self._check_open("read_power")
        return self.world.read_power()

    LOADS = ("avionics", "heaters")

    def switch_load(self, load: str, on: bool) -> None:
        self._check_open("switch_load")
        try:
            self.world.switch_load(load, on)
        except ValueError as exc:
            raise HalError(str(exc)) from None

    def set_heater_setpoint(self, on_below_c: float | None, off_above_c: float | None) -> None:
        self._check_open("set_heater_setpoint")
        self.world.thermal.set_setpoint(on_below_c, off_above_c)

    def read_thermal(self) -> ThermalReading:
        self._check_open("read_thermal")
        return self.world.read_thermal()

    def _close(self) -> None:
        # like the real MCU when its host goes away: the motors stop
        self.world.vehicle.stop()


class SimCamera(Camera):
    """A mast camera rendering the world at its current time from the vehicle's pose.

    The mast pans and tilts (:meth:`point`, within ``PAN_LIMITS_DEG`` and ``TILT_LIMITS_DEG``) and
    the exposure is settable: the renderer's radiance is scaled by ``exposure_ms / NOMINAL_MS *
    gain`` before the sensor clips it, so an over-long exposure saturates as a real one does. At
    the nominal exposure and unit gain a frame is exactly what :meth:`World.capture` renders.
    """

    NOMINAL_MS = 10.0
    #: Modelled time a real camera holds its caller per megapixel (readout and image pipeline:
    #: about 0.3 s for a 1280x960 frame), charged to the calling thread (:mod:`sim_hw.blocking`).
    READOUT_S_PER_MPIX = 0.25
    PAN_LIMITS_DEG = (-170.0, 170.0)
    TILT_LIMITS_DEG = (-80.0, 60.0)
    EXPOSURE_LIMITS_MS = (0.05, 2000.0)
    GAIN_LIMITS = (1.0, 16.0)

    def __init__(self, world: World, spec: CameraSpec, url: str = "") -> None:
        super().__init__(url)
        self.world = world
        self.spec = spec
        self.name = spec.name
        world.add_camera(spec)
        self._seq = 0
        self.exposure_ms = self.NOMINAL_MS
        self.gain = 1.0

    @property
    def has_stereo(self) -> bool:
        return self.spec.stereo

    @property
    def has_mast(self) -> bool:
        return True

    @property
    def pointing(self) -> tuple[float, float]:
        return (self.spec.pan_deg, self.spec.tilt_deg)

    def point(self, pan_deg: float, tilt_deg: float) -> None:
        """Move the mast (instantaneous in simulation); outside the limits raises ValueError."""
        self._check_open("point")
        lo, hi = self.PAN_LIMITS_DEG
        tlo, thi = self.TILT_LIMITS_DEG
        if not (lo <= pan_deg <= hi and tlo <= tilt_deg <= thi):
            raise ValueError(f"pointing ({pan_deg:.1f}, {tilt_deg:.1f}) deg is outside the mast limits "
                             f"pan {lo:g}..{hi:g}, tilt {tlo:g}..{thi:g}")
        self.spec = dataclasses.replace(self.spec, pan_deg=float(pan_deg), tilt_deg=float(tilt_deg))
        self.world.add_camera(self.spec)

    @property
    def has_exposure_control(self) -> bool:
        return True

    def set_exposure(self, exposure_ms: float, gain: float = 1.0) -> None:
        self._check_open("set_exposure")
        elo, ehi = self.EXPOSURE_LIMITS_MS
        glo, ghi = self.GAIN_LIMITS
        if not (elo <= exposure_ms <= ehi and glo <= gain <= ghi):
            raise ValueError(f"exposure {exposure_ms} ms / gain {gain} outside {elo}..{ehi} ms, {glo}..{ghi}")
        self.exposure_ms = float(exposure_ms)
        self.gain = float(gain)

    def _render(self, eye: str | None) -> tuple[Any, dict[str, Any]]:
        scale = self.exposure_ms / self.NOMINAL_MS * self.gain
        if abs(scale - 1.0) < 1e-12:
            return self.world.capture(self.name, eye)
        w = self.world
        spec = self.spec
        pose = w.camera_pose(self.name)
        if eye is not None:
            pose = pose.stereo(spec.baseline_m)[0 if eye == "left" else 1]
        key = f"{self.name}/{eye or 'mono'}/exp"
        rng = np.random.default_rng([w.seed, zlib.crc32(key.encode()), self._seq])
        img = w.render_view(spec, pose, exposure=scale, rng=rng)
        meta = {"pose": pose.as_dict(), "pan_deg": spec.pan_deg, "tilt_deg": spec.tilt_deg,
                "eye": eye or "mono", "sun_elevation_deg": w.sun_elevation_deg(), "seq": self._seq}
        return img, meta

    def _readout_s(self) -> float:
        return self.READOUT_S_PER_MPIX * self.spec.width * self.spec.height / 1e6

    def _frame(self, eye: str | None) -> Frame:
        image, meta = self._render(eye)
        blocking.charge(self._readout_s())
        seq = self._seq
        self._seq += 1
        return Frame(
            image=image,
            time_s=self.world.time_s,
            seq=seq,
            camera=self.name if eye is None else f"{self.name}/{eye}",
            exposure_ms=self.exposure_ms,
            gain=self.gain,
            model=self.spec.model(),
            meta=meta,
        )

    def capture(self, timeout_s: float = 2.0) -> Frame:
        """One frame from the mast centre (rendering is synchronous; the timeout never runs out)."""
        self._check_open("capture")
        return self._frame(None)

    def expose(self, timeout_s: float = 2.0) -> Exposure:
        """Fix the frame's instant now (pose, sun, sequence, noise seed); render it on develop.

        Developing renders on the calling thread alone (a worker's), from what was fixed here, so
        the image does not depend on when the worker gets to it; at the camera's own exposure it
        is the frame :meth:`capture` would have returned at this instant.
        """
        self._check_open("expose")
        w = self.world
        spec = self.spec
        pose = w.camera_pose(self.name)
        sun = w.sun_vector()
        boxes = w.neighbour_boxes()
        key = f"{self.name}/mono"
        world_seq = w._frame_seq.get(key, 0)
        w._frame_seq[key] = world_seq + 1
        seq = self._seq
        self._seq += 1
        time_s = w.time_s
        s = w.vehicle.state
        meta = {"pose": pose.as_dict(),
                "vehicle": {"x": s.x, "y": s.y, "z": s.z, "yaw": s.yaw, "pitch": s.pitch, "roll": s.roll},
                "pan_deg": spec.pan_deg, "tilt_deg": spec.tilt_deg, "eye": "mono",
                "sun_elevation_deg": w.sun_elevation_deg(), "seq": seq}
        exposure0, gain0 = self.exposure_ms, self.gain
        readout_s = self._readout_s()
        name = self.name

        def develop(exposure_ms: float | None = None, gain: float | None = None) -> Frame:
            e = exposure0 if exposure_ms is None else float(exposure_ms)
            g = gain0 if gain is None else float(gain)
            elo, ehi = self.EXPOSURE_LIMITS_MS
            glo, ghi = self.GAIN_LIMITS
            if not (elo <= e <= ehi and glo <= g <= ghi):
                raise ValueError(f"exposure {e} ms / gain {g} outside {elo}..{ehi} ms, {glo}..{ghi}")
            scale = e / self.NOMINAL_MS * g
            if abs(scale - 1.0) < 1e-12:  # the noise World.capture would have drawn
                rng = np.random.default_rng([w.seed, zlib.crc32(key.encode()), world_seq])
            else:
                rng = np.random.default_rng([w.seed, zlib.crc32(f"{key}/exp".encode()), seq])
            img = w.render_view(spec, pose, exposure=scale, rng=rng, sun=sun, boxes=boxes, parallel=False)
            blocking.charge(readout_s)
            return Frame(image=img, time_s=time_s, seq=seq, camera=name, exposure_ms=e, gain=g,
                         model=spec.model(), meta=dict(meta))

        return Exposure(name, develop)

    def capture_stereo(self, timeout_s: float = 2.0) -> StereoPair:
        """A rectified pair: both eyes at the same instant, ``baseline_m`` apart."""
        self._check_open("capture_stereo")
        if not self.spec.stereo:
            return super().capture_stereo(timeout_s)
        return StereoPair(self._frame("left"), self._frame("right"), self.spec.baseline_m)


class SimWatchdog(Watchdog):
    """A watchdog on world time: it never resets anything, it records what it would have done.

    ``suspend()`` / ``resume()`` (hibernation: the computer is off) are recorded too; no bite
    is counted while suspended, and the timeout runs again from the resume.
    """

    def __init__(self, world: World, timeout_s: float = 10.0, url: str = WATCHDOG_FORM) -> None:
        super().__init__(url)
        self.world = world
        self.timeout_s = float(timeout_s)
        self.opened_s = world.time_s
        self.kicks: list[float] = []
        self.suspensions: list[tuple[float, float | None]] = []  # (from, to or None while suspended)

    def kick(self) -> None:
        self._check_open("kick")
        if self.suspended:
            raise HalError("sim watchdog is suspended; resume() it before kicking")
        self.kicks.append(self.world.time_s)

    @property
    def suspended(self) -> bool:
        return bool(self.suspensions) and self.suspensions[-1][1] is None

    def suspend(self) -> None:
        self._check_open("suspend")
        if not self.suspended:
            self.suspensions.append((self.world.time_s, None))

    def resume(self) -> None:
        self._check_open("resume")
        if self.suspended:
            self.suspensions[-1] = (self.suspensions[-1][0], self.world.time_s)

    @property
    def last_kick_s(self) -> float:
        marks = [self.opened_s, *self.kicks, *(b for _, b in self.suspensions if b is not None)]
        return max(marks)

    @property
    def would_bite(self) -> bool:
        """True if, at the world's time now, the last kick is older than the timeout."""
        return not self.suspended and self.world.time_s - self.last_kick_s > self.timeout_s

    def bites(self) -> list[float]:
        """World times at which it would have bitten, from the kick history up to now."""
        marks = [(t, "kick") for t in self.kicks]
        for a, b in self.suspensions:
            marks.append((a, "suspend"))
            if b is not None:
                marks.append((b, "resume"))
        marks.sort(key=lambda m: (m[0], m[1] != "resume"))
        out = []
        prev: float | None = self.opened_s
        for t, kind in [*marks, (self.world.time_s, "now")]:
            if prev is not None and t - prev > self.timeout_s:
                out.append(prev + self.timeout_s)
            prev = None if kind == "suspend" else t
        return out


class SimSampling(Drill, SampleArm, SampleContainer, AscentInterface):
    """The lander's sampling mechanisms in process: readings at the world's time, commands applied
    at once; a command the mechanism refuses raises CommandRejectedError with its reason."""

    def __init__(self, world: World, system: SamplingSystem, url: str = SAMPLING_FORM) -> None:
        super().__init__(url)
        self.world = world
        self.system = system
        self.max_depth_m = system.config.drill.max_depth_m

    def _do(self, method: str, fn: Any, *args: Any) -> None:
        self._check_open(method)
        try:
            fn(*args)
        except SamplingRefused as exc:
            raise CommandRejectedError(f"{method}: {exc}") from None

    def start_drill(self, target_depth_m: float, rate_mm_s: float) -> None:
        self._do("start_drill", self.system.drill.start, target_depth_m, rate_mm_s)

    def stop_drill(self) -> None:
        self._do("stop_drill", self.system.drill.stop)

    def retract_drill(self) -> None:
        self._do("retract_drill", self.system.drill.retract)

    def read_drill(self) -> DrillStatus:
        self._check_open("read_drill")
        return self.system.read_drill()

    def move_arm(self, shoulder_deg: float, elbow_deg: float) -> None:
        self._do("move_arm", self.system.arm.move, shoulder_deg, elbow_deg)

    def scoop(self) -> None:
        self._do("scoop", self.system.arm.scoop)

    def deposit(self) -> None:
        self._do("deposit", self.system.deposit)

    def read_arm(self) -> ArmStatus:
        self._check_open("read_arm")
        return self.system.read_arm()

    def seal_container(self) -> None:
        self._do("seal_container", self.system.seal)

    def read_container(self) -> ContainerStatus:
        self._check_open("read_container")
        return self.system.read_container()

    def arm_ascent(self, armed: bool) -> None:
        self._do("arm_ascent", self.system.arm_ascent, armed)

    def read_ascent(self) -> AscentStatus:
        self._check_open("read_ascent")
        return self.system.read_ascent()

    def _close(self) -> None:
        # like the sampling board when its host goes away: the motors stop where they are
        self.system.drill.stop()


def _parse_loads(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        name, _, watts = part.partition(":")
        w = float(watts)
        if not name or not 0 <= w <= 1000:
            raise ValueError(part)
        out[name] = w
    return out


def open_sim_device(url: str, **context: Any) -> SimMcu | SimCamera | SimWatchdog | SimSampling:
    """Open a ``sim://`` device on the world passed as ``world=`` (see the module docstring)."""
    world = context.get("world")
    if not isinstance(world, World):
        raise HalError(f"{url!r}: sim:// devices need the in-process world, as open_device(url, world=...)")
    parts = urlsplit(url)
    host = parts.netloc.lower()
    if parts.scheme.lower() != "sim" or parts.path not in ("", "/"):
        raise DeviceUrlError(f"malformed sim URL {url!r}; accepted forms: {FORMS}")
    if host == "mcu":
        opts = parse_options(url, {"loads": _parse_loads}, MCU_FORM)
        world.switched_loads.update(opts.get("loads", {}))
        return SimMcu(world, url)
    if host == "camera":
        opts = parse_options(
            url,
            {"name": str, "width": _positive_int, "height": _positive_int, "fov_deg": _positive_float,
             "stereo": parse_bool, "baseline": _positive_float, "pan": float, "tilt": float,
             "noise": float, "bgr": parse_bool},
            CAMERA_FORM,
        )
        name = opts.pop("name", "navcam")
        base = world.cameras.get(name, CameraSpec(name=name))
        renames = {"baseline": "baseline_m", "pan": "pan_deg", "tilt": "tilt_deg", "noise": "noise_dn"}
        changes = {renames.get(k, k): v for k, v in opts.items()}
        try:
            spec = dataclasses.replace(base, **changes)
            spec.model()
        except ValueError as exc:
            raise DeviceUrlError(f"bad camera geometry in {url!r}: {exc}; form: {CAMERA_FORM}") from exc
        return SimCamera(world, spec, url)
    if host == "watchdog":
        opts = parse_options(url, {"timeout": _positive_float}, WATCHDOG_FORM)
        return SimWatchdog(world, opts.get("timeout", 10.0), url)
    if host == "sampling":
        opts = parse_options(url, {"jam_at_m": _positive_float}, SAMPLING_FORM)
        system = world.add_sampling()
        if "jam_at_m" in opts:
            system.inject("drill-jam", opts["jam_at_m"])
        return SimSampling(world, system, url)
    raise DeviceUrlError(f"unknown sim device {host!r} in {url!r}; accepted forms: {FORMS}")
