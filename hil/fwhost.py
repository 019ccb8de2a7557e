"""Run the shipped MicroPython firmware core under CPython, behind a pseudo-terminal.

:class:`FirmwareHost` plays the part of the Pico's ``main.py``: it feeds the bytes arriving on
the pty to :class:`magpie_fw.Firmware`, calls its ``tick`` every couple of milliseconds and
binds its board to a :class:`sim_hw.plant.SimplePlant` (rim speeds in m/s; the firmware speaks
mm/s). The firmware module is loaded from ``hil/firmware/magpie_fw.py``, the very file a team
copies to the board. Like the emulator, the port can vanish and return under the same
stable path.

Two boards: ``plant`` (:class:`PlantBoard`) reports everything the plant simulates; ``pico``
(:class:`PicoBoard`) reports what the reference Pico board of ``hil/firmware/main.py`` measures
and nothing more: encoders and the chip's temperature, zeros elsewhere, and capability bits
that say so. ``python -m hil.fwhost --link PATH`` (or ``magpie hil firmware``) runs one as a
process, standing in for a Pico on a Raspberry Pi rover.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import select
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from sim_hw.plant import SimplePlant
from sim_hw.ptylink import close_at, open_at

log = logging.getLogger(__name__)

FIRMWARE_DIR = Path(__file__).resolve().parent / "firmware"
_TICK_S = 0.002


def load_firmware() -> ModuleType:
    """Import ``hil/firmware/magpie_fw.py`` by path, as the Pico's filesystem would hold it."""
    name = "magpie_fw"
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None) == str(FIRMWARE_DIR / "magpie_fw.py"):
        return module
    spec = importlib.util.spec_from_file_location(name, FIRMWARE_DIR / "magpie_fw.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class PlantBoard:
    """The firmware's board interface over a SimplePlant."""

    max_speed_mm_s = 2000
    capabilities = 0x0F  # encoders, IMU, power, thermal

    def __init__(self, plant: SimplePlant) -> None:
        self.plant = plant

    def set_wheels(self, left_mm_s: int, right_mm_s: int) -> None:
        self.plant.set_wheels(left_mm_s / 1000.0, right_mm_s / 1000.0)

    def stop(self) -> None:
        self.plant.stop()

    def reset_encoders(self) -> None:
        self.plant.reset_encoders()

    def sensors(self) -> tuple[Any, ...]:
        s = self.plant.sensors()
        t = s.temps_c
        return (s.left_ticks, s.right_ticks, s.left_current_a, s.right_current_a, *s.accel_mps2,
                *s.gyro_rads, s.imu_temp_c, s.bus_v, s.current_a, s.soc, s.solar_w,
                t.get("motor_left", 0.0), t.get("motor_right", 0.0), t.get("battery", 0.0),
                t.get("board", 0.0), s.fault_flags)


class PicoBoard(PlantBoard):
    """The reference Pico board (``hil/firmware/main.py``): wheels and encoders over the plant,
    the RP2040's temperature as ``board`` and IMU temperature, and zero for the IMU, motor
    currents, power and the other temperatures, which that board does not measure."""

    max_speed_mm_s = 1000  # main.py's MAX_MM_S
    capabilities = 0x01 | 0x08  # ENCODERS | THERMAL, as main.py's Board

    def sensors(self) -> tuple[Any, ...]:
        s = self.plant.sensors()
        board_c = s.temps_c.get("board", 25.0)
        return (s.left_ticks, s.right_ticks, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                board_c, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, board_c, 0)


BOARDS: dict[str, type[PlantBoard]] = {"plant": PlantBoard, "pico": PicoBoard}


class FirmwareHost:
    """The firmware core on a thread, talking through a pty at :attr:`path` (a stable symlink).

    ``path`` names the stable link (default: one in a fresh temporary directory); ``board`` is
    ``plant`` or ``pico`` (see the module docstring)."""

    def __init__(self, seed: int = 0, plant: SimplePlant | None = None, path: str | None = None,
                 board: str = "plant") -> None:
        if board not in BOARDS:
            raise ValueError(f"unknown board {board!r}; boards: {', '.join(BOARDS)}")
        self.fw_module = load_firmware()
        self.plant = plant if plant is not None else SimplePlant(seed=seed)
        self.firmware = self.fw_module.Firmware(BOARDS[board](self.plant), self._write)
        self._dir = tempfile.TemporaryDirectory(prefix="magpie-fw-")
        self.path = path if path is not None else os.path.join(self._dir.name, "ttyPICO")
        self._master: int | None = None
        self._slave: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        #: Exceptions the firmware core raised (it must never raise; tests check this is 0).
        self.errors = 0
        self._open()
        self._thread = threading.Thread(target=self._run, name="fw-host", daemon=True)
        self._thread.start()

    def _now_ms(self) -> int:
        return int((time.monotonic() - self._t0) * 1000.0)

    def _open(self) -> None:
        self._master, self._slave, _ = open_at(self.path)

    def _close_pty(self) -> None:
        close_at(self.path, self._master, self._slave)
        self._master = self._slave = None

    def vanish(self) -> None:
        """USB unplug: the pty closes and the stable path disappears; the firmware runs on."""
        with self._lock:
            self._close_pty()

    def reappear(self) -> None:
        with self._lock:
            if self._master is None:
                self._open()

    def _write(self, frame: bytes) -> None:
        with self._lock:
            if self._master is None:
                raise OSError("port gone")
            os.write(self._master, frame)

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.is_set():
            data = b""
            with self._lock:
                fd = self._master
            if fd is None:
                self._stop.wait(_TICK_S)
            else:
                try:
                    if select.select([fd], [], [], _TICK_S)[0]:
                        data = os.read(fd, 4096)
                except (BlockingIOError, InterruptedError, ValueError):
                    pass
                except OSError:  # EIO while no host has the port open, or closed under us
                    self._stop.wait(_TICK_S)
            now = time.monotonic()
            self.plant.step(now - last)
            last = now
            now_ms = self._now_ms()
            try:
                if data:
                    self.firmware.feed(data, now_ms)
                self.firmware.tick(now_ms)
            except Exception:  # the board must keep running; a bug here is a test failure
                self.errors += 1
                log.exception("firmware core raised")

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(2.0)
        with self._lock:
            self._close_pty()
        self._dir.cleanup()


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="python -m hil.fwhost")
    p.description = ("Run the reference firmware core (hil/firmware/magpie_fw.py) on a pseudo-terminal "
                     "behind a stable path, standing in for a Pico: point the rover's devices.mcu at "
                     "mcu+serial://PATH.")
    p.add_argument("--link", required=True, help="the stable path to create, e.g. /tmp/magpie-mcu")
    p.add_argument("--board", choices=sorted(BOARDS), default="pico",
                   help="pico: what the reference board measures (encoders, temperature); plant: the "
                        "simulated plant's power, IMU and currents too (default %(default)s)")
    p.add_argument("--soc", type=float, default=None, help="plant board: starting state of charge 0..1")
    p.add_argument("--solar-w", type=float, default=0.0, help="plant board: solar input in watts")
    p.add_argument("--bus-v", type=float, default=14.8, help="plant board: nominal bus voltage")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Serve the firmware until SIGTERM/SIGINT or ``--duration``; one line when ready."""
    if args.soc is not None and not 0.0 <= args.soc <= 1.0:
        print(f"error: --soc {args.soc} is outside 0..1", file=sys.stderr)
        return 2
    link = os.path.abspath(args.link)
    if not os.path.isdir(os.path.dirname(link)):
        print(f"error: --link {args.link}: no directory {os.path.dirname(link)}", file=sys.stderr)
        return 2
    plant = SimplePlant(seed=args.seed, solar_w=args.solar_w, bus_nominal_v=args.bus_v)
    if args.soc is not None:
        plant.energy_wh = plant.capacity_wh * args.soc
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    host = FirmwareHost(seed=args.seed, plant=plant, path=link, board=args.board)
    try:
        print(f"firmware: {args.board} board on {link} -> {os.path.realpath(link)}", flush=True)
        stop.wait(args.duration)
    finally:
        host.close()
        for s, h in old.items():
            signal.signal(s, h)
    print(f"firmware: stopped ({host.firmware.counters['frames']} frames in, "
          f"{host.firmware.counters['reports']} reports out, {host.errors} errors)", flush=True)
    return 0 if host.errors == 0 else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
