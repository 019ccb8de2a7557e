"""The OpenCV camera driver: USB (UVC) cameras by index, and video files or image sequences.

URL forms::

    camera+opencv://0?width=1280&height=960&fps=15&exposure=20&gain=2&grey=1&fov_deg=62
    camera+opencv:///data/run3/left.avi
    camera+opencv:///data/run3/left.avi?loop=1         (rewinds at the end: a bench camera)
    camera+opencv:///data/run3/frame_%04d.png          (an image sequence)

The path is used verbatim (not percent-decoded) so printf-style sequence patterns survive.
Options: ``width``, ``height``, ``fps``, ``exposure`` (ms; set through the V4L2 convention of
100 us units with manual auto-exposure), ``gain``, ``grey`` (0/1), ``fov_deg`` (horizontal field
of view for the pinhole model, default 60), ``name``, ``timeout`` (s, default for capture and
open), ``reopen`` (attempts after a failed live read, default 3), ``loop`` (0/1, files only:
start again from the first frame at the end instead of raising end-of-stream, so a recorded
video can stand in for a camera on a bench for as long as the rover runs).

``cv2.VideoCapture`` can block forever on a wedged device, so every call into it runs on one
helper thread and the caller waits with a deadline: a read that does not return in time raises
:class:`~hal.errors.DeviceTimeoutError`. A live camera whose read fails is reopened (bounded,
counted). A file or sequence that ends, or is cut short, raises :class:`CameraEndOfStream`.

Two cameras side by side (a stereo pair, for ``type = "nav"``)::

    camera+opencv-stereo://0,2?baseline=0.12&width=640&height=480&fps=15&name=navcam
    camera+opencv-stereo:///data/run3/left.avi,/data/run3/right.avi?baseline=0.12&loop=1

LEFT,RIGHT are device indices or absolute paths (no commas in the paths); ``baseline`` (m,
required) is the distance between the optical centres; every other option applies to both
eyes. ``capture_stereo`` reads the left eye then the right, each on its own helper thread; two
USB cameras without a shared trigger are a few milliseconds apart, which is what the stereo
matcher tolerates on a rover at walking pace.

Raspberry Pi camera modules: picamera2 is an OS package (``apt install python3-picamera2``),
not a pip dependency of Magpie. Two ways in without changing this file:

1. libcamera's V4L2 compatibility layer: run the flight service under ``libcamerify`` (from
   ``libcamera-tools``), and the module appears as a V4L2 device that ``camera+opencv://0``
   opens like a USB camera.
2. A small driver implementing :class:`hal.contracts.Camera` with ``picamera2.Picamera2``
   (``capture_array()`` gives the image, ``capture_metadata()`` the ``ExposureTime`` and
   ``AnalogueGain``), registered under a scheme such as ``camera+picamera2`` through the
   ``magpie.devices`` entry-point group; the venv must be created with
   ``--system-site-packages`` to see the OS package.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from hal.contracts import Camera, CameraModel, Frame, StereoPair
from hal.errors import DeviceTimeoutError, DeviceUrlError, HalError
from hal.registry import parse_options

log = logging.getLogger(__name__)

FORM = (
    "camera+opencv://INDEX?width=W&height=H&fps=F&exposure=MS&gain=G&grey=0|1&fov_deg=60"
    "&name=N&timeout=S&reopen=N  or  camera+opencv:///path/video.avi | /path/frame_%04d.png"
    " (files also take loop=0|1)"
)


class CameraEndOfStream(HalError):
    """A video file or image sequence has no more frames (it ended or was cut short)."""


@dataclass(slots=True)
class CameraCounters:
    frames: int = 0
    timeouts: int = 0
    read_failures: int = 0
    reopens: int = 0
    rewinds: int = 0


def pinhole_model(width: int, height: int, fov_deg: float) -> CameraModel:
    """Square pixels, principal point at the centre, horizontal field of view ``fov_deg``."""
    fx = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return CameraModel(width, height, fx, fx, width / 2.0, height / 2.0)


class OpenCvCamera(Camera):
    """A Camera over ``cv2.VideoCapture`` (device index, video file or image sequence)."""

    def __init__(
        self,
        source: int | str,
        *,
        url: str = "",
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        exposure_ms: float | None = None,
        gain: float | None = None,
        grey: bool = False,
        fov_deg: float = 60.0,
        name: str = "camera",
        timeout_s: float = 2.0,
        reopen: int = 3,
        loop: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(url or f"camera+opencv://{source}")
        self.source = source
        self.is_file = isinstance(source, str)
        self.width, self.height, self.fps = width, height, fps
        self.exposure_ms, self.gain = exposure_ms, gain
        self.grey = grey
        self.fov_deg = fov_deg
        self.name = name
        self.timeout_s = timeout_s
        self.reopen = reopen
        self.loop = loop and isinstance(source, str)
        self.clock = clock
        self.counters = CameraCounters()
        self._seq = 0
        self._cap: Any = None
        self._lock = threading.Lock()
        if self.is_file and "%" not in str(source) and not os.path.isfile(str(source)):
            self._closed = True
            raise HalError(f"camera source {source} does not exist")
        self._worker = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cam-{name}")
        try:
            self._call(self._open, timeout_s, "open")
        except BaseException:
            self._closed = True
            self._worker.shutdown(wait=False, cancel_futures=True)
            raise

    # -- helper thread ------------------------------------------------------------------------

    def _call(self, fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
        future = self._worker.submit(fn)
        try:
            return future.result(timeout=timeout_s)
        except cf.TimeoutError as exc:
            self.counters.timeouts += 1
            raise DeviceTimeoutError(f"{self.name}: {what} did not finish within {timeout_s} s "
                                     f"({self.url})") from exc
        except cv2.error as exc:
            raise HalError(f"{self.name}: OpenCV failed to {what}: {exc}") from exc

    def _open(self) -> None:
        """Runs on the helper thread."""
        if self._cap is not None:
            self._cap.release()
        cap = cv2.VideoCapture(self.source)
        if not cap.isOpened():
            cap.release()
            raise HalError(f"{self.name}: cannot open camera source {self.source!r}")
        props = [(cv2.CAP_PROP_FRAME_WIDTH, self.width), (cv2.CAP_PROP_FRAME_HEIGHT, self.height),
                 (cv2.CAP_PROP_FPS, self.fps), (cv2.CAP_PROP_GAIN, self.gain)]
        if self.exposure_ms is not None:
            props += [(cv2.CAP_PROP_AUTO_EXPOSURE, 1), (cv2.CAP_PROP_EXPOSURE,
                                                        self.exposure_ms * 10.0)]
        for prop, value in props:
            if value is not None and not self.is_file and not cap.set(prop, float(value)):
                log.warning("%s: camera ignored property %s=%s", self.name, prop, value)
        self._cap = cap

    def _read(self) -> tuple[np.ndarray, dict[str, Any]]:
        """Runs on the helper thread: one frame, reopening a live camera when a read fails and
        rewinding a looping file at its end."""
        for attempt in range(self.reopen + 1):
            ok, image = self._cap.read()
            if not ok and self.is_file and self.loop and self._seq > 0:
                # the end of a looping file: start again from its first frame (once per read,
                # so a file that yields nothing at all still ends)
                self.counters.rewinds += 1
                self._open()
                ok, image = self._cap.read()
            if ok and image is not None:
                meta = {"source": str(self.source), "backend": self._cap.getBackendName(),
                        "pos_ms": float(self._cap.get(cv2.CAP_PROP_POS_MSEC)),
                        "exposure_raw": float(self._cap.get(cv2.CAP_PROP_EXPOSURE))}
                return image, meta
            self.counters.read_failures += 1
            if self.is_file:
                raise CameraEndOfStream(f"{self.name}: {self.source} has no more frames after "
                                        f"{self._seq} (ended or truncated)")
            if attempt < self.reopen:
                self.counters.reopens += 1
                log.warning("%s: read failed, reopening (%d/%d)", self.name, attempt + 1,
                            self.reopen)
                self._open()
        raise HalError(f"{self.name}: no frame from {self.source} after {self.reopen} reopens")

    # -- contract -----------------------------------------------------------------------------

    def capture(self, timeout_s: float | None = None) -> Frame:
        self._check_open("capture")
        with self._lock:
            image, meta = self._call(self._read, timeout_s or self.timeout_s, "read a frame")
            t = self.clock()
            if self.grey and image.ndim == 3:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            h, w = image.shape[:2]
            frame = Frame(
                image=image, time_s=t, seq=self._seq, camera=self.name,
                exposure_ms=float(self.exposure_ms or 0.0),
                gain=float(self.gain if self.gain is not None else 1.0),
                model=pinhole_model(w, h, self.fov_deg), meta=meta,
            )
            self._seq += 1
            self.counters.frames += 1
            return frame

    def _close(self) -> None:
        cap = self._cap
        if cap is not None:
            try:
                self._call(cap.release, 1.0, "release")
            except HalError:
                log.warning("%s: release did not finish; abandoning the capture", self.name)
        self._worker.shutdown(wait=False, cancel_futures=True)


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError(raw)
    return low in ("1", "true", "yes")


_OPTIONS: dict[str, Callable[[str], Any]] = {
    "width": int, "height": int, "fps": float, "exposure": float, "gain": float, "grey": _bool,
    "fov_deg": float, "name": str, "timeout": float, "reopen": int, "loop": _bool,
}


def parse_url(url: str) -> tuple[int | str, dict[str, Any]]:
    """``camera+opencv://...`` -> (device index or path, typed options); DeviceUrlError.

    Checks a configuration without opening the camera (``magpie flight --check``).
    """
    if not url.lower().startswith("camera+opencv://"):
        raise DeviceUrlError(f"{url!r} is not a camera+opencv URL; form: {FORM}")
    rest = url.split("://", 1)[1]
    target = rest.split("?", 1)[0]  # verbatim: '%04d' must not be percent-decoded
    opts = parse_options(url, _OPTIONS, FORM)
    if target.startswith("/"):
        return target, opts
    if "loop" in opts:
        raise DeviceUrlError(f"{url!r}: loop applies to a video file or image sequence, not a device; "
                             f"form: {FORM}")
    if target.isascii() and target.isdigit():
        return int(target), opts
    raise DeviceUrlError(f"{url!r}: expected a device index or an absolute path; form: {FORM}")


def open_opencv_camera(url: str, **context: Any) -> OpenCvCamera:
    """Registry opener for ``camera+opencv``; ``context`` may carry ``clock``."""
    source, opts = parse_url(url)
    return OpenCvCamera(
        source, url=url, width=opts.get("width"), height=opts.get("height"),
        fps=opts.get("fps"), exposure_ms=opts.get("exposure"), gain=opts.get("gain"),
        grey=opts.get("grey", False), fov_deg=opts.get("fov_deg", 60.0),
        name=opts.get("name", "camera"), timeout_s=opts.get("timeout", 2.0),
        reopen=opts.get("reopen", 3), loop=opts.get("loop", False),
        clock=context.get("clock", time.monotonic),
    )


STEREO_FORM = ("camera+opencv-stereo://LEFT,RIGHT?baseline=M&width=W&height=H&fps=F&exposure=MS&gain=G"
               "&grey=0|1&fov_deg=60&name=N&timeout=S&reopen=N&loop=0|1  (LEFT, RIGHT: an index or "
               "an absolute path)")


class OpenCvStereoCamera(Camera):
    """Two :class:`OpenCvCamera` eyes as one stereo camera; ``capture`` gives the left eye."""

    def __init__(self, left: OpenCvCamera, right: OpenCvCamera, baseline_m: float, *, url: str = "",
                 name: str = "camera") -> None:
        super().__init__(url or f"camera+opencv-stereo://{left.source},{right.source}?baseline={baseline_m}")
        self.left, self.right = left, right
        self.baseline_m = baseline_m
        self.name = name

    @property
    def has_stereo(self) -> bool:
        return True

    def capture(self, timeout_s: float = 2.0) -> Frame:
        self._check_open("capture")
        return self.left.capture(timeout_s)

    def capture_stereo(self, timeout_s: float = 2.0) -> StereoPair:
        self._check_open("capture_stereo")
        left = self.left.capture(timeout_s)
        right = self.right.capture(timeout_s)
        return StereoPair(left=left, right=right, baseline_m=self.baseline_m)

    def _close(self) -> None:
        for eye in (self.left, self.right):
            try:
                eye.close()
            except HalError as exc:
                log.warning("%s: closing an eye failed: %s", self.name, exc)


def parse_stereo_url(url: str) -> tuple[tuple[int | str, int | str], dict[str, Any]]:
    """``camera+opencv-stereo://...`` -> ((left, right), typed options); DeviceUrlError."""
    if not url.lower().startswith("camera+opencv-stereo://"):
        raise DeviceUrlError(f"{url!r} is not a camera+opencv-stereo URL; form: {STEREO_FORM}")
    target = url.split("://", 1)[1].split("?", 1)[0]
    opts = parse_options(url, {**_OPTIONS, "baseline": float}, STEREO_FORM)
    eyes = target.split(",")
    if len(eyes) != 2 or not all(eyes):
        raise DeviceUrlError(f"{url!r}: expected two sources, LEFT,RIGHT; form: {STEREO_FORM}")
    sources: list[int | str] = []
    for eye in eyes:
        if eye.startswith("/"):
            sources.append(eye)
        elif eye.isascii() and eye.isdigit():
            sources.append(int(eye))
        else:
            raise DeviceUrlError(f"{url!r}: {eye!r} is not a device index or an absolute path; form: {STEREO_FORM}")
    if "loop" in opts and not all(isinstance(e, str) for e in sources):
        raise DeviceUrlError(f"{url!r}: loop applies to video files, not devices; form: {STEREO_FORM}")
    baseline = opts.get("baseline")
    if baseline is None or not 0.01 <= baseline <= 5.0:
        raise DeviceUrlError(f"{url!r}: baseline (m, 0.01 to 5) is required; form: {STEREO_FORM}")
    return (sources[0], sources[1]), opts


def open_opencv_stereo(url: str, **context: Any) -> OpenCvStereoCamera:
    """Registry opener for ``camera+opencv-stereo``; ``context`` may carry ``clock``."""
    (left_src, right_src), opts = parse_stereo_url(url)
    name = opts.get("name", "camera")

    def eye(source: int | str, side: str) -> OpenCvCamera:
        return OpenCvCamera(
            source, url=f"{url}#{side}", width=opts.get("width"), height=opts.get("height"),
            fps=opts.get("fps"), exposure_ms=opts.get("exposure"), gain=opts.get("gain"),
            grey=opts.get("grey", False), fov_deg=opts.get("fov_deg", 60.0), name=f"{name}-{side}",
            timeout_s=opts.get("timeout", 2.0), reopen=opts.get("reopen", 3), loop=opts.get("loop", False),
            clock=context.get("clock", time.monotonic),
        )

    left = eye(left_src, "left")
    try:
        right = eye(right_src, "right")
    except BaseException:
        left.close()
        raise
    return OpenCvStereoCamera(left, right, float(opts["baseline"]), url=url, name=name)
