"""Watchdog drivers: the Linux kernel watchdog device and a null one that only counts kicks.

URL forms::

    watchdog+linux:///dev/watchdog?timeout=15&magic_close=1
    watchdog+linux://?path=/dev/watchdog1&timeout=15
    watchdog+null://?timeout=10

The Linux driver opens the device for writing (which arms the hardware), kicks by writing one
zero byte, and on ``close()`` writes the magic character ``'V'`` first so a kernel built without
``nowayout`` disarms instead of resetting the vehicle. Kicks never contain ``'V'``. The timeout is
set with the ``WDIOC_SETTIMEOUT`` ioctl when the path is a character device; anything else (a
regular file standing in for tests) just receives the bytes.

``suspend()`` (before hibernation powers the computer down) is a magic close that keeps the
device object; ``resume()`` opens the device again, which re-arms it. A kernel built with
``nowayout`` cannot be disarmed: there hibernation must cut the computer's power.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import struct
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from hal.contracts import Watchdog
from hal.errors import DeviceUrlError, HalError
from hal.registry import parse_options

log = logging.getLogger(__name__)

LINUX_FORM = "watchdog+linux:///dev/watchdog?timeout=SECONDS&magic_close=1 (or ?path=PATH)"
NULL_FORM = "watchdog+null://?timeout=SECONDS"

# _IOWR('W', 6, int): set the timeout in seconds, the driver writes back what it applied.
WDIOC_SETTIMEOUT = 0xC0045706
KICK = b"\x00"
MAGIC_CLOSE = b"V"


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low not in ("0", "1", "true", "false", "yes", "no"):
        raise ValueError(raw)
    return low in ("1", "true", "yes")


class LinuxWatchdog(Watchdog):
    """``/dev/watchdog``: kick by writing, magic close on ``close()``."""

    def __init__(self, path: str = "/dev/watchdog", timeout_s: float | None = None,
                 magic_close: bool = True, url: str = "") -> None:
        super().__init__(url or f"watchdog+linux://{path}")
        self.path = path
        self.magic_close = magic_close
        self.kicks = 0
        self.suspended = False
        self._fd = -1
        self._open()
        if timeout_s is not None:
            self.timeout_s = float(timeout_s)
            if stat.S_ISCHR(os.fstat(self._fd).st_mode):
                try:
                    raw = fcntl.ioctl(self._fd, WDIOC_SETTIMEOUT, struct.pack("i", int(timeout_s)))
                    self.timeout_s = float(struct.unpack("i", raw)[0])
                except OSError as exc:
                    log.warning("watchdog %s refused timeout %s s: %s", path, timeout_s, exc)

    def _open(self) -> None:
        path = self.path
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            self._closed = True
            raise HalError(f"watchdog device {path} does not exist (is the watchdog driver "
                           f"loaded? on a Raspberry Pi: dtparam=watchdog=on)") from exc
        except PermissionError as exc:
            self._closed = True
            raise HalError(f"no permission to open watchdog {path} (run as root or grant the "
                           f"service write access with a udev rule)") from exc
        except OSError as exc:
            self._closed = True
            raise HalError(f"cannot open watchdog {path}: {exc}") from exc

    def kick(self) -> None:
        self._check_open("kick")
        if self.suspended:
            raise HalError(f"watchdog {self.path} is suspended; resume() it before kicking")
        try:
            os.write(self._fd, KICK)
        except OSError as exc:
            raise HalError(f"watchdog kick on {self.path} failed: {exc}") from exc
        self.kicks += 1

    def suspend(self) -> None:
        self._check_open("suspend")
        if self.suspended:
            return
        try:
            os.write(self._fd, MAGIC_CLOSE)
        except OSError as exc:
            raise HalError(f"watchdog {self.path} could not be disarmed: {exc}") from exc
        finally:
            os.close(self._fd)
            self._fd = -1
        self.suspended = True

    def resume(self) -> None:
        self._check_open("resume")
        if not self.suspended:
            return
        self._open()
        self._closed = False
        self.suspended = False

    def _close(self) -> None:
        if self._fd < 0:
            return
        try:
            if self.magic_close:
                os.write(self._fd, MAGIC_CLOSE)
        except OSError as exc:
            log.warning("magic close on %s failed: %s", self.path, exc)
        finally:
            os.close(self._fd)


class NullWatchdog(Watchdog):
    """A watchdog that resets nothing and counts kicks (emulator runs, tests)."""

    def __init__(self, timeout_s: float = 10.0, url: str = "watchdog+null://") -> None:
        super().__init__(url)
        self.timeout_s = timeout_s
        self.kicks = 0

    def kick(self) -> None:
        self._check_open("kick")
        self.kicks += 1

    def suspend(self) -> None:
        self._check_open("suspend")

    def resume(self) -> None:
        self._check_open("resume")


def open_linux_watchdog(url: str, **context: Any) -> LinuxWatchdog:
    allowed: dict[str, Callable[[str], Any]] = {"timeout": float, "path": str,
                                                "magic_close": _bool}
    opts = parse_options(url, allowed, LINUX_FORM)
    url_path = urlsplit(url).path
    if url_path and "path" in opts and url_path != opts["path"]:
        raise DeviceUrlError(f"{url!r} gives two paths; form: {LINUX_FORM}")
    path = opts.get("path") or url_path or "/dev/watchdog"
    return LinuxWatchdog(path, opts.get("timeout"), opts.get("magic_close", True), url=url)


def open_null_watchdog(url: str, **context: Any) -> NullWatchdog:
    opts = parse_options(url, {"timeout": float}, NULL_FORM)
    return NullWatchdog(opts.get("timeout", 10.0), url=url)
