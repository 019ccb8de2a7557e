"""Opening a rig's serial port, with errors a technician can act on.

pyserial reports a missing adapter, a port another process holds, a missing ``dialout``
membership and an unusable baud rate as a handful of ``SerialException``/``OSError``/``ValueError``
shapes. :func:`explain` turns each into a :class:`RigError` whose ``kind`` a program can test and
whose message says what to do.
"""

from __future__ import annotations

import errno
import grp
import logging
import os

import serial

log = logging.getLogger(__name__)

#: The rates the loopback suite exercises; 921600 is the MCU link's recommended rate on a UART.
STANDARD_BAUDS = (115200, 460800, 921600)


class RigError(Exception):
    """The rig cannot be used; ``kind`` is missing, in_use, permission, baud or io."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _group_hint(path: str) -> str:
    try:
        group = grp.getgrgid(os.stat(path).st_gid).gr_name
    except (OSError, KeyError):
        group = "dialout"
    return (f"add yourself to the {group!r} group (sudo usermod -aG {group} $USER), then log out "
            f"and in again (or run: newgrp {group})")


def explain(path: str, baud: int, exc: BaseException) -> RigError:
    """Translate an error from opening ``path`` at ``baud`` into a :class:`RigError`."""
    text = str(exc)
    code = getattr(exc, "errno", None)
    if isinstance(exc, ValueError) or "baud" in text.lower():
        return RigError("baud", f"{path}: the port refused {baud} baud ({text}); use a rate the "
                                f"adapter supports, e.g. {', '.join(map(str, STANDARD_BAUDS))}")
    if code in (errno.ENOENT, errno.ENODEV, errno.ENXIO) or "No such file" in text:
        return RigError("missing", f"{path}: no such port. Is the adapter plugged in? "
                                   "List ports with: ls -l /dev/serial/by-id/ (or python -m "
                                   "serial.tools.list_ports)")
    if code in (errno.EACCES, errno.EPERM) or "Permission denied" in text:
        return RigError("permission", f"{path}: permission denied; {_group_hint(path)}")
    if code in (errno.EBUSY, errno.EAGAIN, errno.EWOULDBLOCK) or "exclusively lock" in text:
        return RigError("in_use", f"{path}: the port is in use by another process (find it with: "
                                  f"fuser -v {path}); stop it (e.g. systemctl stop magpie-flight, "
                                  "ModemManager) and try again")
    return RigError("io", f"{path}: cannot open the port: {text}")


def open_port(path: str, baud: int, timeout: float = 0.05) -> serial.SerialBase:
    """Open ``path`` (a device path or pyserial URL) exclusively at ``baud``; raises RigError."""
    if baud <= 0:
        raise RigError("baud", f"{path}: baud rate {baud} is not positive")
    try:
        port = serial.serial_for_url(path, baudrate=baud, timeout=timeout, write_timeout=5.0,
                                     exclusive=True)
    except (serial.SerialException, OSError, ValueError) as exc:
        raise explain(path, baud, exc) from exc
    log.debug("opened %s at %d baud", path, baud)
    return port


def set_baud(port: serial.SerialBase, baud: int) -> None:
    """Change an open port's rate; raises RigError(kind='baud')."""
    try:
        port.baudrate = baud
    except (serial.SerialException, OSError, ValueError) as exc:
        raise explain(port.portstr or "port", baud, exc) from exc
