"""Rigs: the serial port a HIL suite runs on, real or emulated.

A rig is either a **loopback** (TX wired to RX on a USB-serial adapter) or an **MCU** (the
reference firmware or any board speaking the MCU protocol). With a port given it is real
hardware; without one the suites run the same code against an emulated rig:

=================  =============================================================================
backend            what sits behind the port
=================  =============================================================================
``port``           real hardware at ``--hil-port`` (``magpie hil check --port``)
``pty``            loopback: a pty whose master echoes every byte back, paced at the baud the
                   host set on the port (it reads the pty's termios speed), so goodput figures
                   mean what they mean on a UART
``socat``          loopback: ``socat PTY,... PIPE`` (unpaced: the pty moves bytes at memory
                   speed)
``emulator-pty``   MCU: :class:`sim_hw.mcu_emulator.McuEmulator` on its pty
``emulator-socat`` MCU: the emulator on one end of a socat pty pair, the host on the other
``firmware-pty``   MCU: the shipped MicroPython firmware core (``hil/firmware/magpie_fw.py``)
                   running under CPython on a pty
=================  =============================================================================

Emulated MCU rigs can be unplugged and plugged back (:meth:`McuRig.unplug`/:meth:`McuRig.replug`):
the port vanishes like a USB device and comes back under the same stable path.
"""

from __future__ import annotations

import logging
import os
import random
import select
import shutil
import signal
import subprocess
import tempfile
import termios
import threading
import time
import tty
from collections.abc import Callable

log = logging.getLogger(__name__)

LOOPBACK_BACKENDS = ("pty", "socat")
MCU_BACKENDS = ("emulator-pty", "emulator-socat", "firmware-pty")

# termios speed code -> baud, for pacing an emulated line at the rate the host set.
_SPEEDS = {getattr(termios, f"B{b}"): b for b in (
    9600, 19200, 38400, 57600, 115200, 230400, 460800, 500000, 576000, 921600, 1000000,
    1152000, 1500000, 2000000, 3000000, 4000000) if hasattr(termios, f"B{b}")}


def socat_path() -> str | None:
    """The socat executable, or None where it is not installed."""
    return shutil.which("socat")


def _pty_baud(fd: int) -> int:
    """The line rate the slave side was set to (the master sees the slave's termios)."""
    try:
        return _SPEEDS.get(termios.tcgetattr(fd)[5], 0)
    except termios.error:
        return 0


class Rig:
    """Base: a named port path a host opens; ``close()`` releases whatever backs it."""

    target = ""
    backend = "port"
    emulated = False
    paced = True  # does the line carry bytes at the baud rate (real UARTs and paced ptys do)

    def __init__(self, path: str) -> None:
        self.path = path

    @property
    def description(self) -> str:
        kind = "emulated " if self.emulated else ""
        return f"{kind}{self.target} rig ({self.backend}) at {self.path}"

    def close(self) -> None:
        """Release the rig; idempotent."""

    def __enter__(self) -> Rig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- loopback ----------------------------------------------------------------------------------


class LoopbackRig(Rig):
    """A real loopback adapter: bytes written come back on the same port."""

    target = "loopback"

    def after_break(self) -> None:
        """Called after the host sent a break; a wired loopback needs nothing."""


class PtyLoopback(LoopbackRig):
    """An emulated loopback: a thread echoes the pty master back at the line rate.

    A UART receiver reports a break condition as one 0x00 byte (8N1 framing error); a pty cannot
    carry a break, so :meth:`after_break` puts that byte on the emulated line. ``corrupt`` flips
    one bit in that fraction of the bytes (seeded), for a line with errors.
    """

    backend = "pty"
    emulated = True

    def __init__(self, paced: bool = True, corrupt: float = 0.0, seed: int = 0) -> None:
        self.corrupt = corrupt
        self._rng = random.Random(seed)
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self.paced = paced
        super().__init__(os.ttyname(slave))
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hil-loopback", daemon=True)
        self._thread.start()

    def after_break(self) -> None:
        with self._lock:
            self._pending += b"\x00"

    def _run(self) -> None:
        line_free = 0.0  # when the emulated line finishes the byte it is sending
        while not self._stop.is_set():
            with self._lock:
                busy = bool(self._pending)
            timeout = 0.001 if busy else 0.01
            try:
                ready = select.select([self._master], [], [], timeout)[0]
                if ready:
                    data = os.read(self._master, 65536)
                    with self._lock:
                        if not self._pending and line_free < time.monotonic():
                            line_free = time.monotonic()
                        self._pending += data
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:  # EIO: the slave is closed while the rig shuts down
                self._stop.wait(0.01)
                continue
            line_free = self._release(line_free)

    def _release(self, line_free: float) -> float:
        """Write back the bytes the emulated line has finished carrying by now."""
        with self._lock:
            if not self._pending:
                return line_free
            baud = _pty_baud(self._master) if self.paced else 0
            now = time.monotonic()
            if baud <= 0:
                n = len(self._pending)
            else:
                byte_s = 10.0 / baud
                n = min(len(self._pending), int((now - line_free) / byte_s))
            if n <= 0:
                return line_free
            out = bytearray(self._pending[:n])
            if self.corrupt > 0:
                for i in range(n):
                    if self._rng.random() < self.corrupt:
                        out[i] ^= 1 << self._rng.randrange(8)
            try:
                written = os.write(self._master, bytes(out))
            except (BlockingIOError, OSError):
                return line_free  # the host is not reading; the line waits (no flow control)
            del self._pending[:written]
            if baud > 0:
                line_free += written * 10.0 / baud
            return line_free

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(2.0)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class _Socat:
    """A socat process whose pty ends appear as symlinks in a private directory."""

    def __init__(self, *addresses: str, links: tuple[str, ...]) -> None:
        exe = socat_path()
        if exe is None:
            raise FileNotFoundError("socat is not installed (apt-get install socat)")
        self.exe = exe
        self.addresses = addresses
        self.links = links
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        for link in self.links:
            if os.path.lexists(link):
                os.unlink(link)
        self.proc = subprocess.Popen([self.exe, *self.addresses], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 5.0
        while not all(os.path.exists(link) for link in self.links):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise OSError(f"socat exited with {self.proc.returncode}: {err.strip()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("socat did not create its ptys within 5 s")
            time.sleep(0.005)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(2.0)
        if proc.stderr is not None:
            proc.stderr.close()
        for link in self.links:
            if os.path.lexists(link):
                os.unlink(link)


class SocatLoopback(LoopbackRig):
    """An emulated loopback through ``socat PTY PIPE`` (an echo at memory speed, unpaced)."""

    backend = "socat"
    emulated = True
    paced = False

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="magpie-hil-")
        link = os.path.join(self._dir.name, "ttyLOOP")
        self._socat = _Socat(f"PTY,link={link},rawer", "PIPE", links=(link,))
        super().__init__(link)
        self._closed = False

    def after_break(self) -> None:
        with open(self.path, "wb", buffering=0) as fh:  # a break arrives as one NUL byte
            fh.write(b"\x00")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._socat.stop()
        self._dir.cleanup()


# -- MCU ---------------------------------------------------------------------------------------


class McuRig(Rig):
    """A microcontroller on a port. Real boards cannot be unplugged by software."""

    target = "mcu"
    can_unplug = False

    def unplug(self) -> None:
        raise NotImplementedError(f"{self.description} cannot be unplugged by software")

    def replug(self) -> None:
        raise NotImplementedError(f"{self.description} cannot be plugged back by software")


class EmulatorRig(McuRig):
    """The MCU emulator on its own pty (``backend='emulator-pty'``) or behind socat."""

    emulated = True
    can_unplug = True

    def __init__(self, socat: bool = False, pace_baud: int = 0, seed: int = 0) -> None:
        from sim_hw.mcu_emulator import McuEmulator

        self._socat: _Socat | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        if socat:
            self.backend = "emulator-socat"
            self._dir = tempfile.TemporaryDirectory(prefix="magpie-hil-")
            emu_end = os.path.join(self._dir.name, "ttyEMU")
            host_end = os.path.join(self._dir.name, "ttyHOST")
            self._socat = _Socat(f"PTY,link={emu_end},rawer", f"PTY,link={host_end},rawer",
                                 links=(emu_end, host_end))
            self.emulator = McuEmulator(port_url=emu_end, pace_baud=pace_baud, seed=seed)
            super().__init__(host_end)
        else:
            self.backend = "emulator-pty"
            self.emulator = McuEmulator(pace_baud=pace_baud, seed=seed)
            super().__init__(self.emulator.path)
        self._closed = False

    def unplug(self) -> None:
        if self._socat is not None:
            self._socat.stop()
        else:
            self.emulator.vanish()

    def replug(self) -> None:
        if self._socat is not None:
            self._socat.start()
        else:
            self.emulator.reappear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.emulator.close()
        if self._socat is not None:
            self._socat.stop()
        if self._dir is not None:
            self._dir.cleanup()


class FirmwareRig(McuRig):
    """The shipped firmware core under CPython on a pty (see :mod:`hil.fwhost`)."""

    backend = "firmware-pty"
    emulated = True
    can_unplug = True

    def __init__(self, seed: int = 0) -> None:
        from hil.fwhost import FirmwareHost

        self.host = FirmwareHost(seed=seed)
        super().__init__(self.host.path)

    def unplug(self) -> None:
        self.host.vanish()

    def replug(self) -> None:
        self.host.reappear()

    def close(self) -> None:
        self.host.close()


def make_rig(target: str, backend: str, port: str | None = None) -> Rig:
    """A rig for ``target`` (loopback|mcu): the real ``port``, or an emulated ``backend``."""
    if target not in ("loopback", "mcu"):
        raise ValueError(f"unknown rig target {target!r}; expected loopback or mcu")
    if port is not None:
        rig: Rig = LoopbackRig(port) if target == "loopback" else McuRig(port)
        rig.target = target
        return rig
    factories: dict[str, Callable[[], Rig]] = {
        "pty": PtyLoopback, "socat": SocatLoopback,
        "emulator-pty": EmulatorRig, "emulator-socat": lambda: EmulatorRig(socat=True),
        "firmware-pty": FirmwareRig,
    }
    allowed = LOOPBACK_BACKENDS if target == "loopback" else MCU_BACKENDS
    if backend not in allowed:
        raise ValueError(f"backend {backend!r} does not emulate a {target} rig "
                         f"(choose from {', '.join(allowed)})")
    return factories[backend]()


def available_backends(target: str) -> list[tuple[str, str | None]]:
    """(backend, reason it cannot run here or None) for every emulated backend of ``target``."""
    names = LOOPBACK_BACKENDS if target == "loopback" else MCU_BACKENDS
    missing = None if socat_path() else "socat is not installed (apt-get install socat)"
    return [(n, missing if "socat" in n else None) for n in names]
