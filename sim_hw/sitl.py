"""The simulated world as its own process on the real clock (software in the loop, SITL).

``python -m sim_hw.sitl --out DIR [--seed N] [--speed N] [--camera NAME=OPTIONS]`` builds the
world, starts the MCU emulator on a pseudo-terminal with the world as its plant (the real MCU
protocol: COBS frames, CRC, hello, streamed sensor reports, the link watchdog) and serves the
world's cameras over ZeroMQ on 127.0.0.1, and offers the vehicle computer's watchdog as a FIFO
the real Linux watchdog driver writes to. It writes ``DIR/sitl.json`` with the device URLs a
flight process uses instead of ``sim://``::

    {"mcu": "mcu+serial:///tmp/magpie-mcu-.../ttyMCU?stream_hz=50",
     "watchdog": "watchdog+linux:///tmp/magpie-sitl-.../watchdog?timeout=10",
     "camera.navcam": "camera+sitl://tcp://127.0.0.1:PORT?name=navcam"}

(with ``--mission SCENARIO``, the whole site of a mission scenario: ``{"vehicles": {NAME: {...}}}``
with those URLs per vehicle), so ``magpie flight --device mcu=... --device navcam=...`` flies
the same vehicle TOML against the world that it flies against hardware with
``mcu+serial:///dev/ttyACM0``. The world advances
with the wall clock times ``--speed`` (the emulator steps it by the time that passed); every use
of the world (physics step, render) holds one lock, because the emulator and the camera server
run on their own threads.

``camera+sitl://tcp://HOST:PORT?name=navcam&timeout=5`` is the flight-side driver: a
:class:`hal.contracts.Camera` whose frames come from the world process (msgpack over a ZeroMQ
REQ socket). A world that does not answer within ``timeout`` is a DeviceTimeoutError, and the
socket is rebuilt for the next call.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import msgpack
import numpy as np
import zmq

from hal.contracts import Camera, CameraModel, Frame, StereoPair
from hal.errors import DeviceTimeoutError, DeviceUrlError, HalError
from hal.registry import parse_options

log = logging.getLogger(__name__)

CAMERA_FORM = "camera+sitl://tcp://127.0.0.1:PORT?name=navcam&timeout=5"
_CAM_OPTIONS = {"name": str, "timeout": float}
_CAMERA_KEYS = ("width", "height", "fov_deg", "stereo", "baseline", "pan", "tilt", "noise", "bgr")


# -- flight side: the camera driver ------------------------------------------------------------

def _frame(d: dict[str, Any]) -> Frame:
    img = np.frombuffer(d["image"], dtype=np.uint8).reshape(d["shape"])
    m = d.get("model")
    model = CameraModel(**m) if m else None
    return Frame(image=img.copy(), time_s=float(d["time_s"]), seq=int(d["seq"]), camera=str(d["camera"]),
                 exposure_ms=float(d.get("exposure_ms", 0.0)), gain=float(d.get("gain", 1.0)), model=model,
                 meta=dict(d.get("meta") or {}))


class SitlCamera(Camera):
    """A camera in the SITL world process, reached over ZeroMQ (see the module docstring)."""

    def __init__(self, endpoint: str, name: str = "navcam", timeout_s: float = 5.0, url: str = "") -> None:
        super().__init__(url or f"camera+sitl://{endpoint}?name={name}")
        self.endpoint = endpoint
        self.name = name
        self.timeout_s = timeout_s
        self._ctx = zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._lock = threading.Lock()
        self._info = self._call("info", timeout_s=timeout_s)

    def _call(self, op: str, timeout_s: float | None = None, **args: Any) -> Any:
        with self._lock:
            if self._sock is None:
                self._sock = self._ctx.socket(zmq.REQ)
                self._sock.setsockopt(zmq.LINGER, 0)
                self._sock.connect(self.endpoint)
            try:
                self._sock.send(msgpack.packb({"op": op, "name": self.name, **args}, use_bin_type=True))
                if not self._sock.poll(int(1000 * (timeout_s or self.timeout_s))):
                    self._sock.close(0)
                    self._sock = None  # a REQ socket that lost its answer cannot be used again
                    raise DeviceTimeoutError(f"{self.url}: the world did not answer {op} within "
                                             f"{timeout_s or self.timeout_s} s")
                reply = msgpack.unpackb(self._sock.recv(), raw=False)
            except zmq.ZMQError as exc:
                raise HalError(f"{self.url}: {exc}") from exc
        if not reply.get("ok"):
            err = str(reply.get("error", "refused"))
            if reply.get("kind") == "value":
                raise ValueError(err)
            raise HalError(f"{self.url}: {err}")
        return reply.get("value")

    def capture(self, timeout_s: float = 2.0) -> Frame:
        self._check_open("capture")
        return _frame(self._call("capture", timeout_s=max(timeout_s, self.timeout_s)))

    def capture_stereo(self, timeout_s: float = 2.0) -> StereoPair:
        self._check_open("capture_stereo")
        d = self._call("capture_stereo", timeout_s=max(timeout_s, self.timeout_s))
        return StereoPair(_frame(d["left"]), _frame(d["right"]), float(d["baseline_m"]))

    @property
    def has_stereo(self) -> bool:
        return bool(self._info["has_stereo"])

    @property
    def has_mast(self) -> bool:
        return bool(self._info["has_mast"])

    @property
    def pointing(self) -> tuple[float, float]:
        pan, tilt = self._call("pointing")
        return (float(pan), float(tilt))

    def point(self, pan_deg: float, tilt_deg: float) -> None:
        self._check_open("point")
        self._call("point", pan_deg=float(pan_deg), tilt_deg=float(tilt_deg))

    @property
    def has_exposure_control(self) -> bool:
        return bool(self._info["has_exposure_control"])

    def set_exposure(self, exposure_ms: float, gain: float = 1.0) -> None:
        self._check_open("set_exposure")
        self._call("set_exposure", exposure_ms=float(exposure_ms), gain=float(gain))

    def _close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close(0)
                self._sock = None


def open_sitl_camera(url: str, **_context: Any) -> SitlCamera:
    """Registry opener for ``camera+sitl://tcp://HOST:PORT?name=...``."""
    if not url.lower().startswith("camera+sitl://"):
        raise DeviceUrlError(f"{url!r} is not a camera+sitl URL; form: {CAMERA_FORM}")
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("tcp://") and not rest.startswith("ipc://"):
        raise DeviceUrlError(f"{url!r}: expected a tcp:// or ipc:// endpoint; form: {CAMERA_FORM}")
    opts = parse_options(url, _CAM_OPTIONS, CAMERA_FORM)
    return SitlCamera(rest, name=opts.get("name", "navcam"), timeout_s=opts.get("timeout", 5.0), url=url)


# -- world side ---------------------------------------------------------------------------------

def _frame_dict(f: Frame) -> dict[str, Any]:
    img = np.ascontiguousarray(f.image, dtype=np.uint8)
    m = f.model
    return {"image": img.tobytes(), "shape": list(img.shape), "time_s": f.time_s, "seq": f.seq, "camera": f.camera,
            "exposure_ms": f.exposure_ms, "gain": f.gain, "meta": json.loads(json.dumps(f.meta, default=str)),
            "model": None if m is None else {"width": m.width, "height": m.height, "fx": m.fx, "fy": m.fy,
                                             "cx": m.cx, "cy": m.cy}}


class ScaledPlant:
    """The world as the MCU emulator's plant, under the world lock, with time scaled by ``speed``."""

    def __init__(self, plant: Any, lock: threading.Lock, speed: float) -> None:
        self.plant, self.lock, self.speed = plant, lock, speed

    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        with self.lock:
            self.plant.set_wheels(left_mps, right_mps)

    def stop(self) -> None:
        with self.lock:
            self.plant.stop()

    def step(self, dt_s: float) -> None:
        with self.lock:
            self.plant.step(dt_s * self.speed)

    def sensors(self) -> Any:
        with self.lock:
            return self.plant.sensors()

    def reset_encoders(self) -> None:
        with self.lock:
            self.plant.reset_encoders()

    @property
    def sampling(self) -> Any:
        """A sample-return lander's sampling board, every call under the world lock (None on a rover)."""
        system = getattr(self.plant, "sampling", None)
        return None if system is None else _Locked(system, self.lock)


class _Locked:
    """Calls on an object under a lock: the emulator's thread and the world's stepping never meet."""

    def __init__(self, target: Any, lock: threading.Lock) -> None:
        self._target, self._lock = target, lock

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call


class CameraServer:
    """Serves the world's cameras on a ZeroMQ REP socket (one request at a time, under the lock)."""

    def __init__(self, world: Any, lock: threading.Lock, cameras: dict[str, str], endpoint: str) -> None:
        from sim_hw.devices import open_sim_device

        self.world, self.lock = world, lock
        with lock:
            self.cameras = {name: open_sim_device(url, world=world) for name, url in cameras.items()}
        self.sock = zmq.Context.instance().socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.stop = threading.Event()
        self.served = 0
        self.thread = threading.Thread(target=self._run, name="sitl-cameras", daemon=True)

    def _answer(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a map"}
        cam = self.cameras.get(str(req.get("name")))
        if cam is None:
            return {"ok": False, "error": f"no camera {req.get('name')!r} (have {', '.join(self.cameras)})"}
        op = req.get("op")
        try:
            with self.lock:
                if op == "info":
                    return {"ok": True, "value": {"has_stereo": cam.has_stereo, "has_mast": cam.has_mast,
                                                  "has_exposure_control": cam.has_exposure_control}}
                if op == "capture":
                    return {"ok": True, "value": _frame_dict(cam.capture())}
                if op == "capture_stereo":
                    pair = cam.capture_stereo()
                    return {"ok": True, "value": {"left": _frame_dict(pair.left), "right": _frame_dict(pair.right),
                                                  "baseline_m": pair.baseline_m}}
                if op == "pointing":
                    return {"ok": True, "value": list(cam.pointing)}
                if op == "point":
                    cam.point(float(req["pan_deg"]), float(req["tilt_deg"]))
                    return {"ok": True}
                if op == "set_exposure":
                    cam.set_exposure(float(req["exposure_ms"]), float(req.get("gain", 1.0)))
                    return {"ok": True}
        except (ValueError, KeyError, TypeError) as exc:
            return {"ok": False, "error": str(exc), "kind": "value"}
        except HalError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _run(self) -> None:
        while not self.stop.is_set():
            if not self.sock.poll(100):
                continue
            try:
                req = msgpack.unpackb(self.sock.recv(), raw=False)
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
                req = None
            self.sock.send(msgpack.packb(self._answer(req), use_bin_type=True))
            self.served += 1

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close(0)


def _parse_camera(text: str) -> tuple[str, str]:
    name, sep, opts = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--camera {text!r}: expected NAME=OPTIONS, e.g. navcam=width=640&stereo=0")
    return name, f"sim://camera?name={name}&{opts}" if opts else f"sim://camera?name={name}"


class WatchdogPipe:
    """The vehicle computer's watchdog as the flight sees ``/dev/watchdog``: a FIFO it writes to.

    The flight opens it with the real Linux driver (``watchdog+linux:///.../watchdog``): a zero
    byte is a kick, ``V`` a magic close (disarm). The first kick arms it; ``timeout_s`` of wall time
    without one is a bite, counted and reported (a world cannot power-cycle another process; the
    launcher decides what a bite means).
    """

    def __init__(self, directory: str, timeout_s: float = 10.0) -> None:
        import os

        self.path = os.path.join(directory, "watchdog")
        os.mkfifo(self.path, 0o600)
        # read-write: the FIFO never reports end-of-file between two flight processes
        self._fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self.timeout_s = timeout_s
        self.kicks = 0
        self.bites = 0
        self.armed = False
        self.last_kick = 0.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sitl-watchdog", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import os
        import select

        while not self._stop.is_set():
            ready, _, _ = select.select([self._fd], [], [], 0.1)
            now = time.monotonic()
            if ready:
                try:
                    data = os.read(self._fd, 4096)
                except BlockingIOError:
                    data = b""
                for byte in data:
                    if byte == ord("V"):
                        self.armed = False
                    else:
                        self.kicks += 1
                        self.armed = True
                        self.last_kick = now
            if self.armed and now - self.last_kick > self.timeout_s:
                self.bites += 1
                self.armed = False
                log.warning("watchdog bit: no kick for %.1f s (%d bites)", self.timeout_s, self.bites)

    def close(self) -> None:
        import os

        self._stop.set()
        self.thread.join(2)
        os.close(self._fd)
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class SitlWorld:
    """World + MCU emulator on a pty + camera server; :meth:`devices` are the URLs for the flight side."""

    def __init__(self, seed: int = 1, speed: float = 1.0, cameras: dict[str, str] | None = None,
                 scenario: str = "moon-farside", stream_hz: int = 50, watchdog_s: float = 10.0,
                 world: Any = None, lock: threading.Lock | None = None) -> None:
        from sim_hw.mcu_emulator import McuEmulator
        from sim_hw.world import World

        if not speed > 0:
            raise ValueError("speed must be positive")
        self.world = World.for_mission(seed=seed, scenario=scenario) if world is None else world
        self.lock = threading.Lock() if lock is None else lock
        self.speed = speed
        self.stream_hz = stream_hz
        self.emulator = McuEmulator(ScaledPlant(self.world.mcu_plant(), self.lock, speed), seed=seed)
        self.cameras = CameraServer(self.world, self.lock, cameras or {}, "tcp://127.0.0.1:*")
        self.cameras.thread.start()
        self._dir = tempfile.TemporaryDirectory(prefix="magpie-sitl-")
        self.watchdog = WatchdogPipe(self._dir.name, watchdog_s)

    def devices(self) -> dict[str, str]:
        out = {"mcu": f"mcu+serial://{self.emulator.path}?stream_hz={self.stream_hz}",
               "watchdog": f"watchdog+linux://{self.watchdog.path}?timeout={self.watchdog.timeout_s:g}"}
        for name in self.cameras.cameras:
            out[f"camera.{name}"] = f"camera+sitl://{self.cameras.endpoint}?name={name}"
        return out

    def truth(self) -> dict[str, Any]:
        with self.lock:
            return self.world.truth()

    def close(self) -> None:
        self.cameras.close()
        self.emulator.close()
        self.watchdog.close()
        self._dir.cleanup()


def camera_options(devices: dict[str, str]) -> dict[str, str]:
    """Camera device name -> the world camera options (``sim://camera`` query) it stands for.

    A vehicle TOML names its cameras ``sim://camera?...`` (lockstep) or ``camera+...`` (real
    time); the world process serves each under its device name with the same geometry."""
    out = {}
    for name, url in devices.items():
        if url.startswith(("sim://camera", "camera+")):
            q = dict(parse_qsl(urlsplit(url).query))
            opts = {k: v for k, v in q.items() if k in _CAMERA_KEYS}
            opts.setdefault("stereo", "0")
            opts.setdefault("tilt", "-25")
            out[name] = "&".join(f"{k}={v}" for k, v in opts.items())
    return out


def _watchdog_s(devices: dict[str, str], default: float = 10.0) -> float:
    for url in devices.values():
        if url.startswith(("sim://watchdog", "watchdog+")):
            try:
                return float(dict(parse_qsl(urlsplit(url).query)).get("timeout", default))
            except ValueError:
                return default
    return default


class SitlSite:
    """A whole mission scenario's site on the real clock: one terrain, one world per vehicle (each
    drawn in the others' cameras), and per vehicle its own MCU emulator, camera server and
    watchdog FIFO. All worlds share one lock, so a camera never sees a neighbour mid-step."""

    def __init__(self, mission: Any, seed: int | None = None, speed: float = 1.0, stream_hz: int = 50) -> None:
        from sim_hw.site import Site

        if not speed > 0:
            raise ValueError("speed must be positive")
        self.mission = mission
        self.site = Site(mission.world, [p.site_vehicle() for p in mission.vehicles], seed=seed)
        self.lock = threading.Lock()
        self.units: dict[str, SitlWorld] = {}
        try:
            for i, plan in enumerate(mission.vehicles):
                devices = plan.config.devices
                cams = {n: f"sim://camera?name={n}&{o}" for n, o in camera_options(devices).items()}
                self.units[plan.name] = SitlWorld(seed=self.site.seed + i, speed=speed, cameras=cams,
                                                  stream_hz=stream_hz, watchdog_s=_watchdog_s(devices),
                                                  world=self.site[plan.name], lock=self.lock)
        except BaseException:
            self.close()
            raise

    def devices(self) -> dict[str, Any]:
        """``{"vehicles": {name: {device URLs}}}``: what each vehicle's flight process flies on."""
        return {"vehicles": {name: unit.devices() for name, unit in self.units.items()}}

    def truth(self) -> dict[str, dict[str, Any]]:
        with self.lock:
            return {name: unit.world.truth() for name, unit in self.units.items()}

    @property
    def served(self) -> int:
        return sum(u.cameras.served for u in self.units.values())

    def close(self) -> None:
        for unit in self.units.values():
            unit.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m sim_hw.sitl", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="directory for sitl.json (the device URLs)")
    ap.add_argument("--seed", type=int, default=None,
                    help="world seed (default 1; with --mission, the scenario's own seed)")
    ap.add_argument("--speed", type=float, default=1.0, help="world seconds per wall second (default 1)")
    ap.add_argument("--scenario", default="moon-farside", help="world scenario (sim_hw.scenario)")
    ap.add_argument("--mission", default=None, metavar="SCENARIO",
                    help="a mission scenario (mission/scenarios, or a TOML file): every vehicle of it on one "
                         "site, each with its own MCU, cameras and watchdog; sitl.json then lists the "
                         "devices per vehicle")
    ap.add_argument("--camera", action="append", type=_parse_camera, default=[], metavar="NAME=OPTIONS",
                    help="a mast camera to serve, with sim://camera options (repeatable; not with --mission)")
    ap.add_argument("--duration", type=float, default=None, help="stop after this many wall seconds")
    ap.add_argument("--truth-every", type=float, default=0.0,
                    help="print the world's truth every N wall seconds (default never)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    sitl: SitlWorld | SitlSite
    try:
        if args.mission is not None:
            from mission.scenario import ScenarioError, load

            try:
                mission = load(args.mission)
            except ScenarioError as exc:
                raise ValueError(str(exc)) from None
            sitl = SitlSite(mission, seed=args.seed, speed=args.speed)
        else:
            sitl = SitlWorld(seed=1 if args.seed is None else args.seed, speed=args.speed,
                             cameras=dict(args.camera), scenario=args.scenario)
    except (ValueError, KeyError, HalError) as exc:
        print(f"sitl: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "sitl.json.tmp"
    tmp.write_text(json.dumps(sitl.devices(), indent=1), encoding="utf-8")
    tmp.replace(args.out / "sitl.json")
    print(f"sitl: world up at {args.speed:g}x; devices {json.dumps(sitl.devices())}", flush=True)
    t0 = time.monotonic()
    next_truth = t0 + args.truth_every if args.truth_every > 0 else float("inf")
    try:
        while not stop.wait(0.2):  # the main thread only watches for the end
            now = time.monotonic()
            if args.duration is not None and now - t0 >= args.duration:
                break
            if now >= next_truth:
                truths = sitl.truth() if isinstance(sitl, SitlSite) else {"vehicle": sitl.truth()}
                for name, t in truths.items():
                    print(f"sitl: {name} t={t['time_s']:.1f} s x={t['x']:.2f} y={t['y']:.2f} m", flush=True)
                next_truth = now + args.truth_every
    finally:
        sitl.close()
        (args.out / "sitl.json").unlink(missing_ok=True)
    served = sitl.served if isinstance(sitl, SitlSite) else sitl.cameras.served
    print(f"sitl: stopped after {time.monotonic() - t0:.1f} s, {served} camera requests", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
