"""A pseudo-terminal behind a stable path: the USB serial port of an emulated board.

Opening makes a raw pty and points ``path`` (a symlink, swapped atomically) at its slave, as udev
points ``/dev/magpie-mcu`` at a ``ttyACM``; closing removes the path and both ends, which is what
the host sees when a cable is pulled.
"""

from __future__ import annotations

import os
import tty


def open_at(path: str) -> tuple[int, int, str]:
    """A raw pty whose slave ``path`` now names: (master fd, non-blocking; slave fd; slave name)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    slave_path = os.ttyname(slave)
    tmp = path + ".new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(slave_path, tmp)
    os.replace(tmp, path)
    return master, slave, slave_path


def close_at(path: str, *fds: int | None) -> None:
    """Remove ``path`` and close the pty's ends (None entries are skipped)."""
    if os.path.lexists(path):
        os.unlink(path)
    for fd in fds:
        if fd is not None:
            os.close(fd)
