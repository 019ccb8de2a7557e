"""A microcontroller emulator that speaks the MCU protocol as a real peer behind a pseudo-terminal.

The emulator is the firmware's behaviour in Python: it answers HELLO with VERSION, ACKs or NACKs
commands, applies SET_WHEELS to a plant (:mod:`sim_hw.plant`), streams SENSOR_REPORT at the rate
the host sets, and stops the motors (raising the WATCHDOG_STOP fault bit) when no valid frame
arrives for the watchdog time. It runs on its own thread in real time.

Faults can be injected while it runs: bit flips on outgoing bytes at a seeded rate, dropped
frames, added latency, pacing to a UART line rate (a virtual line clock releases each frame no
sooner than 10 bits per byte after the previous one ended, so the long-run byte rate is exactly
``pace_baud / 10``), and ``vanish()``/``reappear()``, which close
the pty (the host's port fails like a USB unplug) and open a new one. The host opens
:attr:`McuEmulator.path`, a symlink re-pointed at each new pty slave, the way a udev stable name
follows a re-enumerated device. On a pyserial URL (``port_url``, e.g. one end of a socat pty
pair) a port error closes the port and the emulator keeps trying to reopen it, as firmware on a
USB CDC port waits for the host to come back.

``open_pty_mcu("mcu+pty://?stream_hz=50&corrupt=0.001&seed=1")`` starts an emulator and returns
the connected driver; closing the driver stops the emulator.

**Sampling.** A plant with a ``sampling`` attribute (a :class:`~sim_hw.sampling.SamplingSystem`:
the world's plant of a sample-return lander, or ``SimplePlant(sampling=...)``) is a lander's MCU
with a sampling board: VERSION reports DRILL, SAMPLE_ARM, SAMPLE_CONTAINER and ASCENT, the
sampling commands are applied to it (a refusal is NACK REFUSED or OUT_OF_RANGE) and a
SAMPLING_REPORT follows each SENSOR_REPORT. Without one, those commands are NACK UNSUPPORTED,
as a rover's firmware answers them.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import serial

from hal.errors import DeviceUrlError
from hal.mcu import protocol as p
from hal.mcu.driver import McuSerial
from hal.mcu.sampling import report_from
from hal.registry import parse_options
from sim_hw.plant import McuPlant, SimplePlant
from sim_hw.ptylink import close_at, open_at
from sim_hw.sampling import SamplingRefused

log = logging.getLogger(__name__)

MAX_SPEED_MM_S = 2000  # SET_WHEELS beyond this is NACKed OUT_OF_RANGE
MAX_STREAM_HZ = 1000
WATCHDOG_RANGE_MS = (20, 60000)
_TICK_S = 0.002
_REOPEN_S = 0.05  # serial-URL mode: retry period after the port failed
# A paced line that went idle for less than this is treated as still busy, so the loop's own
# wake-up jitter does not leak into the line rate of back-to-back frames.
_PACE_SLACK_S = 0.005


@dataclass(slots=True)
class EmulatorCounters:
    frames_rx: int = 0
    frames_tx: int = 0
    acks: int = 0
    nacks: int = 0
    reports: int = 0
    corrupted_bytes: int = 0
    dropped_frames: int = 0
    overflow_frames: int = 0  # nobody reading the port: the write would block, frame lost
    watchdog_trips: int = 0
    unsupported: int = 0  # sampling commands to firmware without a sampling board
    sampling_reports: int = 0


class McuEmulator:
    """The firmware's behaviour on a thread, over a pty (default) or any pyserial URL."""

    def __init__(
        self,
        plant: McuPlant | None = None,
        *,
        port_url: str | None = None,
        watchdog_ms: int = 500,
        seed: int = 0,
        corrupt: float = 0.0,
        drop: float = 0.0,
        delay_s: float = 0.0,
        pace_baud: int = 0,
        firmware: tuple[int, int, int] = (1, 0, 0),
        board_id: int = 0x4D50,
    ) -> None:
        self.plant: McuPlant = plant if plant is not None else SimplePlant(seed=seed)
        self.watchdog_ms = watchdog_ms
        self.corrupt = corrupt
        self.drop = drop
        self.delay_s = delay_s
        self.pace_baud = pace_baud
        self.firmware = firmware
        self.board_id = board_id
        self.counters = EmulatorCounters()
        self.stream_hz = 0
        self.faults = p.FaultFlags.NONE
        self.ready = False  # a HELLO has been seen
        #: Payloads of every SENSOR_REPORT written (before corruption), for tests to compare.
        self.sent_reports: collections.deque[bytes] = collections.deque(maxlen=100_000)
        self._rng = np.random.default_rng(seed)
        self._decoder = p.FrameDecoder(on_reject=self._on_reject)
        self._seq = 0
        self._outbox: collections.deque[tuple[float, bytes]] = collections.deque()
        self._io_lock = threading.Lock()
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._last_valid_rx = 0.0
        self._armed = False
        self._master: int | None = None
        self._slave: int | None = None
        self._serial: serial.SerialBase | None = None
        self._port_url = port_url
        self._reopen_at = 0.0
        self._line_free = 0.0  # pacing: when the virtual UART finishes the last frame
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.slave_path = ""
        if port_url is None:
            self._dir = tempfile.TemporaryDirectory(prefix="magpie-mcu-")
            self.path = os.path.join(self._dir.name, "ttyMCU")
            self._open_pty()
        else:
            self.path = port_url
            self._serial = serial.serial_for_url(port_url, timeout=_TICK_S)
        self._thread = threading.Thread(target=self._run, name="mcu-emulator", daemon=True)
        self._thread.start()

    # -- fault injection ----------------------------------------------------------------------

    def set_faults(self, *, corrupt: float | None = None, drop: float | None = None,
                   delay_s: float | None = None, pace_baud: int | None = None) -> None:
        """Change injected faults at run time (``None`` keeps a setting)."""
        if corrupt is not None:
            self.corrupt = corrupt
        if drop is not None:
            self.drop = drop
        if delay_s is not None:
            self.delay_s = delay_s
        if pace_baud is not None:
            self.pace_baud = pace_baud

    @property
    def present(self) -> bool:
        return self._master is not None or self._serial is not None

    def vanish(self) -> None:
        """Unplug: close the pty and remove the stable path; the MCU itself keeps running."""
        if self._port_url is not None:
            raise RuntimeError("vanish() needs a pty emulator")
        with self._io_lock:
            self._close_pty()

    def reappear(self) -> None:
        """Plug back in: a new pty, and the stable path re-pointed at its slave."""
        if self._port_url is not None:
            raise RuntimeError("reappear() needs a pty emulator")
        with self._io_lock:
            if self._master is None:
                self._open_pty()

    def _open_pty(self) -> None:
        self._master, self._slave, self.slave_path = open_at(self.path)
        log.debug("emulator on %s -> %s", self.path, self.slave_path)

    def _close_pty(self) -> None:
        close_at(self.path, self._master, self._slave)
        self._master = self._slave = None

    # -- the firmware loop --------------------------------------------------------------------

    def _now_ms(self, now: float) -> int:
        return int((now - self._t0) * 1000.0) & 0xFFFFFFFF

    def _read_url(self, timeout: float) -> bytes:
        """Serial-URL mode: read, or after a port error keep reopening it every 50 ms."""
        port = self._serial
        if port is None:
            now = time.monotonic()
            if now < self._reopen_at:
                self._stop.wait(min(timeout, self._reopen_at - now))
                return b""
            self._reopen_at = now + _REOPEN_S
            try:
                port = serial.serial_for_url(self._port_url, timeout=_TICK_S)
            except (serial.SerialException, OSError, ValueError):
                return b""
            log.info("emulator reopened %s", self._port_url)
            self._serial = port
        try:
            port.timeout = timeout
            return port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            log.info("emulator port %s failed (%s); reopening", self._port_url, exc)
            self._serial = None
            self._reopen_at = time.monotonic() + _REOPEN_S
            try:
                port.close()
            except Exception:  # a vanished port may fail to close; it is gone either way
                log.debug("close failed", exc_info=True)
            return b""

    def _read(self, timeout: float) -> bytes:
        if self._port_url is not None:
            return self._read_url(timeout)
        with self._io_lock:
            fd = self._master
            if fd is None:
                ready = False
            else:
                ready = bool(select.select([fd], [], [], timeout)[0])
            if ready:
                try:
                    return os.read(fd, 4096)
                except (BlockingIOError, InterruptedError):
                    return b""
                except OSError:  # EIO: no slave side open right now
                    pass
        if fd is None or not ready:
            if fd is None:
                self._stop.wait(timeout)
        return b""

    def _run(self) -> None:
        last = time.monotonic()
        next_report = last
        while not self._stop.is_set():
            try:
                wait = _TICK_S
                if self.stream_hz > 0:
                    wait = min(wait, max(0.0, next_report - time.monotonic()))
                if self.pace_baud > 0 and self._outbox:
                    wait = min(wait, max(0.0, self._line_free - time.monotonic()))
                data = self._read(wait)
                now = time.monotonic()
                self.plant.step(now - last)
                last = now
                if data:
                    for item in self._decoder.feed(data):
                        self._handle(item, now)
                if self._armed and now - self._last_valid_rx > self.watchdog_ms / 1000.0:
                    self._armed = False
                    self.plant.stop()
                    self.faults |= p.FaultFlags.WATCHDOG_STOP
                    self.counters.watchdog_trips += 1
                    log.info("emulator watchdog: %d ms silent, motors stopped", self.watchdog_ms)
                # Every report that has come due (a loop tick may span several at high rates),
                # each stamped with its own time; a stall longer than one period is not replayed.
                if self.stream_hz > 0:
                    period = 1.0 / self.stream_hz
                    next_report = max(next_report, now - period)
                    while now >= next_report:
                        self._send_report(next_report)
                        next_report += period
                else:
                    next_report = now
                self._flush(time.monotonic())
            except Exception:  # the firmware never dies; log and carry on
                log.exception("emulator loop error")

    def _handle(self, item: p.Decoded, now: float) -> None:
        if self.drop and self._rng.random() < self.drop:
            self.counters.dropped_frames += 1
            return
        self.counters.frames_rx += 1
        self._last_valid_rx = now
        self._armed = True
        msg, seq = item.msg, item.seq
        if isinstance(msg, p.Hello):
            if msg.protocol_version != p.PROTOCOL_VERSION:
                self._nack(seq, msg.MSG_ID, p.NackReason.BAD_VERSION)
                return
            self.ready = True
            self.faults &= ~p.FaultFlags.WATCHDOG_STOP
            major, minor, patch = self.firmware
            self._send(p.Version(p.PROTOCOL_VERSION, major, minor, patch, self.board_id,
                                 int(self.capabilities)))
        elif isinstance(msg, p.Heartbeat):
            self._send(p.Heartbeat(self._now_ms(now)))
        elif msg.MSG_ID not in p.ACKED:
            self._nack(seq, msg.MSG_ID, p.NackReason.UNKNOWN_MESSAGE)
        elif not self.ready:
            self._nack(seq, msg.MSG_ID, p.NackReason.NOT_READY)
        else:
            reason = self._command(msg)
            if reason is None:
                self.counters.acks += 1
                self._send(p.Ack(seq, msg.MSG_ID))
            else:
                self._nack(seq, msg.MSG_ID, reason)

    @property
    def sampling(self) -> Any:
        """The plant's sampling system, or None: a rover's MCU has no sampling board."""
        return getattr(self.plant, "sampling", None)

    @property
    def capabilities(self) -> p.Capability:
        caps = p.Capability.ENCODERS | p.Capability.IMU | p.Capability.POWER | p.Capability.THERMAL
        if self.sampling is not None:
            caps |= p.Capability.sampling()
        return caps

    def _sampling_command(self, msg: p.Message) -> p.NackReason | None:
        system = self.sampling
        if system is None:
            self.counters.unsupported += 1
            return p.NackReason.UNSUPPORTED
        try:
            if isinstance(msg, p.DrillStart):
                system.start_drill(msg.target_mm / 1000.0, msg.rate_um_s / 1000.0)
            elif isinstance(msg, p.DrillStop):
                system.stop_drill()
            elif isinstance(msg, p.DrillRetract):
                system.retract_drill()
            elif isinstance(msg, p.ArmMove):
                system.move_arm(msg.shoulder_cdeg / 100.0, msg.elbow_cdeg / 100.0)
            elif isinstance(msg, p.ArmScoop):
                system.scoop()
            elif isinstance(msg, p.ArmDeposit):
                system.deposit()
            elif isinstance(msg, p.ContainerSeal):
                system.seal()
            elif isinstance(msg, p.AscentArm):
                if msg.armed not in (0, 1):
                    return p.NackReason.OUT_OF_RANGE
                system.arm_ascent(bool(msg.armed))
        except SamplingRefused as exc:
            log.info("emulator: %s refused: %s", type(msg).__name__, exc)
            return p.NackReason.OUT_OF_RANGE if exc.kind == "range" else p.NackReason.REFUSED
        return None

    def _command(self, msg: p.Message) -> p.NackReason | None:
        if msg.MSG_ID in p.SAMPLING_COMMANDS:
            return self._sampling_command(msg)
        if isinstance(msg, p.SetWheels):
            if max(abs(msg.left_mm_s), abs(msg.right_mm_s)) > MAX_SPEED_MM_S:
                return p.NackReason.OUT_OF_RANGE
            self.plant.set_wheels(msg.left_mm_s / 1000.0, msg.right_mm_s / 1000.0)
            self.faults &= ~p.FaultFlags.WATCHDOG_STOP
        elif isinstance(msg, p.Stop):
            self.plant.stop()
        elif isinstance(msg, p.SetStreamRate):
            if msg.rate_hz > MAX_STREAM_HZ:
                return p.NackReason.OUT_OF_RANGE
            self.stream_hz = msg.rate_hz
        elif isinstance(msg, p.ResetEncoders):
            self.plant.reset_encoders()
        elif isinstance(msg, p.SetWatchdog):
            lo, hi = WATCHDOG_RANGE_MS
            if not lo <= msg.timeout_ms <= hi:
                return p.NackReason.OUT_OF_RANGE
            self.watchdog_ms = msg.timeout_ms
        return None

    def _on_reject(self, kind: str, packet: p.Packet) -> None:
        reason = {"unknown_id": p.NackReason.UNKNOWN_MESSAGE, "bad_length": p.NackReason.BAD_LENGTH,
                  "version": p.NackReason.BAD_VERSION}.get(kind)
        if reason is not None:
            self._nack(packet.seq, packet.msg_id, reason)

    def _nack(self, seq: int, msg_id: int, reason: p.NackReason) -> None:
        self.counters.nacks += 1
        self._send(p.Nack(seq, msg_id, int(reason)))

    def _send_report(self, now: float) -> None:
        s = self.plant.sensors()
        t = s.temps_c
        report = p.SensorReport(
            self._now_ms(now), s.left_ticks, s.right_ticks, s.left_current_a, s.right_current_a,
            s.accel_mps2, s.gyro_rads, s.imu_temp_c, s.bus_v, s.current_a, s.soc, s.solar_w,
            t.get("motor_left", 0.0), t.get("motor_right", 0.0), t.get("battery", 0.0),
            t.get("board", 0.0), int(self.faults) | int(s.fault_flags),
        )
        self.counters.reports += 1
        self._send(report, record=True)
        system = self.sampling
        if system is not None:
            self.counters.sampling_reports += 1
            self._send(report_from(system, report.mcu_time_ms))

    def _send(self, msg: p.Message, record: bool = False) -> None:
        if self.drop and self._rng.random() < self.drop:
            self.counters.dropped_frames += 1
            return
        self._seq = (self._seq + 1) & 0xFFFF
        payload = msg.pack()
        if record:
            self.sent_reports.append(payload)
        frame = p.encode_frame(msg.MSG_ID, self._seq, payload)
        if self.corrupt > 0:
            frame = self._corrupt(frame)
        self._outbox.append((time.monotonic() + self.delay_s, frame))

    def _corrupt(self, frame: bytes) -> bytes:
        n = int(self._rng.binomial(len(frame), self.corrupt))
        if n == 0:
            return frame
        buf = bytearray(frame)
        for pos, bit in zip(self._rng.integers(0, len(buf), n), self._rng.integers(0, 8, n),
                            strict=True):
            buf[pos] ^= 1 << int(bit)
        self.counters.corrupted_bytes += n
        return bytes(buf)

    def _flush(self, now: float) -> None:
        while self._outbox and self._outbox[0][0] <= now:
            if self.pace_baud > 0:
                # The line carries 10 bits per byte (8N1); a frame starts when the previous one
                # has finished on the virtual line, never earlier.
                if now < self._line_free:
                    return
                start = self._line_free if self._line_free >= now - _PACE_SLACK_S else now
                _, frame = self._outbox.popleft()
                self._line_free = start + len(frame) * 10.0 / self.pace_baud
            else:
                _, frame = self._outbox.popleft()
            self._write(frame)

    def _write(self, frame: bytes) -> None:
        if self._port_url is not None:
            port = self._serial
            if port is None:
                self.counters.overflow_frames += 1
                return
            try:
                port.write(frame)
                self.counters.frames_tx += 1
            except (serial.SerialException, OSError):
                self.counters.overflow_frames += 1
            return
        with self._io_lock:
            fd = self._master
            if fd is None:
                self.counters.overflow_frames += 1
                return
            try:
                os.write(fd, frame)
                self.counters.frames_tx += 1
            except (BlockingIOError, OSError):
                self.counters.overflow_frames += 1

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the thread and release the pty. Safe to call more than once."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._io_lock:
            if self._port_url is not None:
                if self._serial is not None:
                    self._serial.close()
            else:
                self._close_pty()
        if self._dir is not None:
            self._dir.cleanup()

    def __enter__(self) -> McuEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PtyMcu(McuSerial):
    """The serial driver connected to its own emulator; closing it stops the emulator too."""

    def __init__(self, emulator: McuEmulator, **kwargs: Any) -> None:
        self.emulator = emulator
        super().__init__(emulator.path, **kwargs)

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self.emulator.close()


PTY_FORM = (
    "mcu+pty://?stream_hz=50&watchdog_ms=500&corrupt=0&drop=0&delay_ms=0&pace_baud=0&seed=0"
    "&timeout=1.0&retries=3&ack_timeout=0.1"
)


def _rate(raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError("rate outside 0..1")
    return value


def _nonneg(conv: Any) -> Any:
    def parse(raw: str) -> Any:
        value = conv(raw)
        if value < 0:
            raise ValueError("negative")
        return value
    return parse


_PTY_OPTIONS = {
    "stream_hz": _nonneg(int), "watchdog_ms": _nonneg(int), "corrupt": _rate, "drop": _rate,
    "delay_ms": _nonneg(float), "pace_baud": _nonneg(int), "seed": int,
    "timeout": _nonneg(float), "retries": _nonneg(int), "ack_timeout": _nonneg(float),
}


def open_pty_mcu(url: str, **context: Any) -> PtyMcu:
    """Registry opener for ``mcu+pty://``: an emulator on a fresh pty and the driver on it.

    ``context`` may carry ``plant`` (an :class:`McuPlant`, default a seeded SimplePlant) and the
    driver's ``on_event``, ``on_report``, ``on_wire`` and ``host_id``. The emulator is
    ``driver.emulator``.
    """
    if not url.lower().startswith("mcu+pty://"):
        raise DeviceUrlError(f"{url!r} is not an mcu+pty URL; form: {PTY_FORM}")
    opts = parse_options(url, _PTY_OPTIONS, PTY_FORM)
    emulator = McuEmulator(
        context.get("plant"), watchdog_ms=opts.get("watchdog_ms", 500), seed=opts.get("seed", 0),
        corrupt=opts.get("corrupt", 0.0), drop=opts.get("drop", 0.0),
        delay_s=opts.get("delay_ms", 0.0) / 1000.0, pace_baud=opts.get("pace_baud", 0),
    )
    driver_opts = {k: opts[k] for k in ("stream_hz", "watchdog_ms", "timeout", "retries",
                                        "ack_timeout") if k in opts}
    extra = {k: context[k] for k in ("on_event", "on_report", "on_wire", "host_id") if k in context}
    try:
        return PtyMcu(emulator, url=url, **driver_opts, **extra)
    except BaseException:
        emulator.close()
        raise
