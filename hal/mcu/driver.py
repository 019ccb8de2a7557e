"""The serial microcontroller driver: one MCU is the drive train, IMU, power and thermal sensors.

URL form (see :data:`FORM`)::

    mcu+serial:///dev/ttyACM0?baud=921600            a port by path
    mcu+serial://?usb=2e8a:000a[:SERIAL]             a port found by USB VID:PID[:serial]
    mcu+socket://host:7777?stream_hz=20              any pyserial URL handler (loop, socket...)

A reader thread owns the receive side: it decodes frames, caches the latest SENSOR_REPORT,
matches ACK/NACK to waiting commands and sends HEARTBEATs so the MCU's watchdog stays fed. When
the port fails (USB unplug: ``SerialException``, ``OSError``, ``termios.error``) or the MCU goes
silent, it closes the port, reports ``LinkDown``, and keeps reopening it (by path or USB id) with
a short bounded backoff; each reopen redoes HELLO/VERSION and restores the watchdog and stream
rate before reporting ``Reconnected`` and ``LinkUp``. Callers never restart anything: commands
raise :class:`~hal.errors.LinkDownError` while the link is down and work again once it is up.
Readings keep returning the latest report while the link is down (its ``time_s`` is the MCU's
clock); ``link_up`` and ``report_age_s`` say how fresh it is.

Events passed to ``on_event(name, **fields)``: ``LinkUp(port, firmware, board_id)``,
``LinkDown(port, reason)``, ``Reconnected(port, attempts, down_s)``,
``CommandRetry(command, seq, attempt)``, ``CommandTimeout(command, seq)``,
``CommandRejected(command, seq, reason)``, ``FaultFlags(flags, raised, cleared)``,
``Unsupported(method, ability, firmware)``.

A lander's MCU also drives its sampling board (drill, scoop arm, container, ascent interface):
:mod:`hal.mcu.sampling`, a mixin of this class, so one device is all of it; the firmware's
capability bits say which of those exist.
"""

from __future__ import annotations

import itertools
import logging
import termios
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import serial
import serial.tools.list_ports

from hal.contracts import (
    DriveStatus,
    DriveTrain,
    Imu,
    ImuReading,
    PowerMonitor,
    PowerReading,
    ThermalReading,
    ThermalSensors,
)
from hal.errors import (
    CommandRejectedError,
    DeviceTimeoutError,
    DeviceUrlError,
    HalError,
    LinkDownError,
)
from hal.mcu import protocol as p
from hal.mcu.sampling import McuSampling
from hal.registry import parse_bool, parse_options

log = logging.getLogger(__name__)

FORM = (
    "mcu+serial:///dev/PORT?baud=115200&timeout=1.0&stream_hz=50&watchdog_ms=500&retries=3"
    "&ack_timeout=0.1&usb=VID:PID[:SERIAL]&exclusive=1 (or mcu+<pyserial scheme>://...)"
)

#: What a failing port throws; all of it means "the link is down".
PORT_ERRORS: tuple[type[BaseException], ...] = (serial.SerialException, OSError, termios.error)

_READ_TICK_S = 0.02  # reader thread's longest block on the port; bounds close() latency
_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 0.5

EventCallback = Callable[..., None]


@dataclass(slots=True)
class McuCounters:
    """Link statistics; ``McuSerial.counters`` returns a snapshot."""

    frames_rx: int = 0
    frames_tx: int = 0
    bytes_rx: int = 0
    bytes_tx: int = 0
    crc_errors: int = 0
    decode_errors: int = 0  # COBS, length, unknown id, version, oversize
    nacks: int = 0
    retries: int = 0
    timeouts: int = 0
    link_downs: int = 0
    reconnects: int = 0
    unsupported: int = 0  # calls for an ability the firmware does not have


def parse_usb_id(spec: str) -> tuple[int, int, str | None]:
    """``"2e8a:000a"`` or ``"2e8a:000a:E6614C309F"`` -> (vid, pid, serial or None)."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        raise ValueError(f"USB id {spec!r} is not VID:PID[:SERIAL]")
    return int(parts[0], 16), int(parts[1], 16), (parts[2] if len(parts) == 3 else None)


def find_usb_port(vid: int, pid: int, serial_number: str | None = None) -> str:
    """The device path of the one USB serial port with this id; LinkDownError if none or many."""
    found = [
        info.device for info in serial.tools.list_ports.comports()
        if info.vid == vid and info.pid == pid
        and (serial_number is None or info.serial_number == serial_number)
    ]
    name = f"{vid:04x}:{pid:04x}" + (f":{serial_number}" if serial_number else "")
    if not found:
        raise LinkDownError(f"no USB serial port with id {name}")
    if len(found) > 1:
        raise LinkDownError(f"USB id {name} is ambiguous ({', '.join(found)}); add the serial")
    return found[0]


class _Pending:
    __slots__ = ("msg_id", "done", "reply", "error")

    def __init__(self, msg_id: int) -> None:
        self.msg_id = msg_id
        self.done = threading.Event()
        self.reply: p.Message | None = None
        self.error: HalError | None = None


class McuSerial(DriveTrain, Imu, PowerMonitor, ThermalSensors, McuSampling):
    """A microcontroller on a serial port speaking the Magpie MCU protocol (``PROTOCOL.md``)."""

    def __init__(
        self,
        port: str | None = None,
        *,
        url: str = "",
        usb: str | None = None,
        baud: int = 115200,
        timeout: float = 1.0,
        stream_hz: int = 50,
        watchdog_ms: int = 500,
        retries: int = 3,
        ack_timeout: float = 0.1,
        exclusive: bool = True,
        host_id: int = 0,
        on_event: EventCallback | None = None,
        on_report: Callable[[p.SensorReport], None] | None = None,
        on_wire: Callable[[str, bytes], None] | None = None,
    ) -> None:
        super().__init__(url or port or f"usb:{usb}")
        if port is None and usb is None:
            raise DeviceUrlError(f"no port path or usb id given; form: {FORM}")
        self.port = port
        self.usb = parse_usb_id(usb) if usb else None
        self.baud = baud
        self.timeout = timeout
        self.stream_hz = stream_hz
        self.watchdog_ms = watchdog_ms
        self.retries = retries
        self.ack_timeout = ack_timeout
        self.exclusive = exclusive
        self.host_id = host_id
        self.on_event = on_event
        self.on_report = on_report
        #: ``on_wire("tx" | "rx", data)`` sees every byte written and read (wire traces).
        self.on_wire = on_wire
        self.heartbeat_s = max(0.02, watchdog_ms / 4000.0)
        self.silence_s = max(1.0, 4.0 * self.heartbeat_s)

        self._decoder = p.FrameDecoder()
        self._counters = McuCounters()
        self._seq = itertools.count(1)
        self._seq_lock = threading.Lock()
        self._port_lock = threading.Lock()  # guards self._port and writes to it
        self._cmd_lock = threading.Lock()  # one command in flight keeps ordering simple
        self._pending: dict[int, _Pending] = {}
        self._stop = threading.Event()
        self._first_report = threading.Event()
        self._port: serial.SerialBase | None = None
        self._port_name = ""
        self._link_up = False
        self._version: p.Version | None = None
        self._report: p.SensorReport | None = None
        self._report_time_s = 0.0
        self._report_host_t = 0.0
        self._time_wraps = 0
        self._last_rx = 0.0
        self._last_hb = 0.0
        self._down_since = 0.0
        self._attempts = 0
        self._init_sampling()

        port_obj = self._open_port()
        try:
            self._start_link(port_obj)
        except BaseException:
            _quiet_close(port_obj)
            raise
        self._thread = threading.Thread(target=self._run, name=f"mcu-reader {self.url}",
                                        daemon=True)
        self._thread.start()

    # -- public state -------------------------------------------------------------------------

    @property
    def link_up(self) -> bool:
        return self._link_up and not self._closed

    @property
    def version(self) -> p.Version | None:
        """The VERSION the MCU sent at the last handshake."""
        return self._version

    @property
    def counters(self) -> McuCounters:
        dec = self._decoder.counters
        return replace(self._counters, crc_errors=dec.crc, decode_errors=dec.dropped - dec.crc,
                       bytes_rx=dec.bytes)

    @property
    def report_age_s(self) -> float:
        """Host seconds since the latest SENSOR_REPORT arrived (inf before the first)."""
        if self._report is None:
            return float("inf")
        return time.monotonic() - self._report_host_t

    @property
    def latest_report(self) -> p.SensorReport | None:
        return self._report

    # -- commands -----------------------------------------------------------------------------

    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        self._check_open("set_wheels")
        self._command(p.SetWheels.from_mps(left_mps, right_mps))

    def stop(self) -> None:
        self._check_open("stop")
        self._command(p.Stop())

    def reset_encoders(self) -> None:
        self._check_open("reset_encoders")
        self._command(p.ResetEncoders())

    def set_stream_rate(self, hz: int) -> None:
        """Change the SENSOR_REPORT rate; it is restored after every reconnect."""
        self._check_open("set_stream_rate")
        self._command(p.SetStreamRate(hz))
        self.stream_hz = hz

    def set_watchdog(self, timeout_ms: int) -> None:
        """Change the MCU's silence timeout; it is restored after every reconnect."""
        self._check_open("set_watchdog")
        self._command(p.SetWatchdog(timeout_ms))
        self.watchdog_ms = timeout_ms
        self.heartbeat_s = max(0.02, timeout_ms / 4000.0)

    # -- readings -----------------------------------------------------------------------------

    def _latest(self, method: str) -> tuple[p.SensorReport, float]:
        self._check_open(method)
        if self._report is None and not self._first_report.wait(self.timeout):
            raise DeviceTimeoutError(f"{method}: no SENSOR_REPORT from {self.url} within "
                                     f"{self.timeout} s (stream_hz={self.stream_hz})")
        report, t = self._report, self._report_time_s
        assert report is not None
        return report, t

    def read_drive(self) -> DriveStatus:
        r, t = self._latest("read_drive")
        stall = p.FaultFlags.STALL_LEFT | p.FaultFlags.STALL_RIGHT
        return DriveStatus(t, r.left_ticks, r.right_ticks, r.left_current_a, r.right_current_a,
                           bool(r.fault_flags & stall), r.fault_flags)

    def read_imu(self) -> ImuReading:
        r, t = self._latest("read_imu")
        return ImuReading(t, r.accel_mps2, r.gyro_rads, r.imu_temp_c)

    def read_power(self) -> PowerReading:
        r, t = self._latest("read_power")
        return PowerReading(t, r.bus_v, r.current_a, r.soc, r.solar_w)

    def read_thermal(self) -> ThermalReading:
        r, t = self._latest("read_thermal")
        return ThermalReading(t, r.temps())

    # -- internals: sending -------------------------------------------------------------------

    def _next_seq(self) -> int:
        with self._seq_lock:
            return next(self._seq) & 0xFFFF

    def _emit(self, name: str, **fields: Any) -> None:
        log.info("%s %s %s", self.url, name, fields)
        if self.on_event is not None:
            try:
                self.on_event(name, **fields)
            except Exception:
                log.exception("on_event listener failed on %s", name)

    def _write(self, frame: bytes, port: serial.SerialBase | None = None) -> None:
        with self._port_lock:
            target = port if port is not None else self._port
            if target is None:
                raise LinkDownError(f"link to {self.url} is down")
            try:
                target.write(frame)
            except serial.SerialTimeoutException as exc:
                raise DeviceTimeoutError(f"write to {self._port_name} timed out") from exc
            except PORT_ERRORS as exc:
                raise LinkDownError(f"write to {self._port_name} failed: {exc}") from exc
        self._counters.frames_tx += 1
        self._counters.bytes_tx += len(frame)
        if self.on_wire is not None:
            self._tap("tx", frame)

    def _tap(self, direction: str, data: bytes) -> None:
        try:
            self.on_wire(direction, data)  # type: ignore[misc]
        except Exception:  # a tracer's bug must not take the link down
            log.exception("on_wire listener failed")

    def _command(self, msg: p.Message) -> None:
        """Send an acknowledged command with bounded retries; translate the outcome."""
        name = type(msg).__name__
        if not self._link_up:
            raise LinkDownError(f"{name}: link to {self.url} is down")
        with self._cmd_lock:
            seq = self._next_seq()
            pending = _Pending(msg.MSG_ID)
            self._pending[seq] = pending
            frame = p.encode(msg, seq)
            try:
                for attempt in range(self.retries + 1):
                    if attempt:
                        self._counters.retries += 1
                        self._emit("CommandRetry", command=name, seq=seq, attempt=attempt)
                    self._write(frame)
                    if pending.done.wait(self.ack_timeout):
                        break
                else:
                    self._counters.timeouts += 1
                    self._emit("CommandTimeout", command=name, seq=seq)
                    raise DeviceTimeoutError(
                        f"{name} seq {seq}: no ACK from {self.url} after {self.retries + 1} "
                        f"tries of {self.ack_timeout} s")
            finally:
                self._pending.pop(seq, None)
        self._check_reply(name, seq, pending)

    def _check_reply(self, name: str, seq: int, pending: _Pending) -> None:
        if pending.error is not None:
            raise pending.error
        if isinstance(pending.reply, p.Nack):
            self._counters.nacks += 1
            reason = pending.reply.reason_name
            if pending.reply.reason == p.NackReason.UNSUPPORTED:
                raise self._unsupported(name, name)
            self._emit("CommandRejected", command=name, seq=seq, reason=reason)
            raise CommandRejectedError(f"{name} seq {seq} refused by the MCU: {reason}")

    # -- internals: link set-up ---------------------------------------------------------------

    def _open_port(self) -> serial.SerialBase:
        try:
            path = find_usb_port(*self.usb) if self.usb else self.port
        except LinkDownError:
            raise
        assert path is not None
        try:
            port = serial.serial_for_url(
                path, baudrate=self.baud, timeout=_READ_TICK_S, write_timeout=self.timeout,
                exclusive=self.exclusive,
            )
        except (ValueError, *PORT_ERRORS) as exc:
            raise LinkDownError(f"cannot open {path}: {exc}") from exc
        self._port_name = path
        return port

    def _pump(self, port: serial.SerialBase, until: Callable[[], bool], deadline: float) -> bool:
        """Read and handle frames on this thread until ``until()`` or the deadline."""
        while not until():
            if time.monotonic() >= deadline or self._stop.is_set():
                return False
            data = port.read(max(1, port.in_waiting))
            if data:
                if self.on_wire is not None:
                    self._tap("rx", data)
                self._ingest(data, time.monotonic())
        return True

    def _transact_inline(self, port: serial.SerialBase, msg: p.Message) -> None:
        """An acknowledged command pumped on this thread (handshake: no reader running yet)."""
        seq = self._next_seq()
        pending = _Pending(msg.MSG_ID)
        self._pending[seq] = pending
        try:
            for _ in range(self.retries + 1):
                self._write(p.encode(msg, seq), port)
                deadline = time.monotonic() + self.ack_timeout
                if self._pump(port, pending.done.is_set, deadline):
                    break
            else:
                raise DeviceTimeoutError(f"{type(msg).__name__}: no ACK during handshake")
        finally:
            self._pending.pop(seq, None)
        self._check_reply(type(msg).__name__, seq, pending)

    def _start_link(self, port: serial.SerialBase) -> None:
        """HELLO until VERSION, then restore watchdog and stream rate; raises HalError."""
        self._decoder.reset()
        self._version = None
        deadline = time.monotonic() + self.timeout
        hello = p.Hello(p.PROTOCOL_VERSION, self.host_id)
        while self._version is None:
            if time.monotonic() >= deadline:
                raise DeviceTimeoutError(f"no VERSION from {self._port_name} within "
                                         f"{self.timeout} s (is an MCU there?)")
            self._write(p.encode(hello, self._next_seq()), port)
            step = min(deadline, time.monotonic() + max(self.ack_timeout, 0.05))
            self._pump(port, lambda: self._version is not None, step)
        if self._version.protocol_version != p.PROTOCOL_VERSION:
            raise p.FrameError("version", f"MCU speaks protocol {self._version.protocol_version}")
        self._transact_inline(port, p.SetWatchdog(self.watchdog_ms))
        self._transact_inline(port, p.SetStreamRate(self.stream_hz))
        now = time.monotonic()
        self._last_rx = self._last_hb = now
        with self._port_lock:
            self._port = port
        self._link_up = True
        v = self._version
        self._emit("LinkUp", port=self._port_name, firmware=v.firmware, board_id=v.board_id)

    # -- internals: receiving -----------------------------------------------------------------

    def _ingest(self, data: bytes, now: float) -> None:
        for item in self._decoder.feed(data):
            self._last_rx = now
            self._counters.frames_rx += 1
            msg = item.msg
            if isinstance(msg, p.SensorReport):
                self._take_report(msg, now)
            elif isinstance(msg, p.SamplingReport):
                self._take_sampling(msg)
            elif isinstance(msg, p.Ack | p.Nack):
                seq, mid = (msg.acked_seq, msg.acked_id) if isinstance(msg, p.Ack) else (
                    msg.nacked_seq, msg.nacked_id)
                pending = self._pending.get(seq)
                if pending is not None and pending.msg_id == mid and not pending.done.is_set():
                    pending.reply = msg
                    pending.done.set()
            elif isinstance(msg, p.Version):
                self._version = msg

    def _take_report(self, r: p.SensorReport, now: float) -> None:
        prev = self._report
        if prev is not None and r.mcu_time_ms + (1 << 31) < prev.mcu_time_ms:
            self._time_wraps += 1  # u32 milliseconds wrap after 49.7 days
        self._report_time_s = (r.mcu_time_ms + (self._time_wraps << 32)) / 1000.0
        self._report = r
        self._report_host_t = now
        self._first_report.set()
        old = prev.fault_flags if prev is not None else 0
        if r.fault_flags != old:
            self._emit("FaultFlags", flags=r.fault_flags, raised=r.fault_flags & ~old,
                       cleared=old & ~r.fault_flags)
        if self.on_report is not None:
            try:
                self.on_report(r)
            except Exception:
                log.exception("on_report listener failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            port = self._port
            if port is None:
                self._reconnect_once()
                continue
            try:
                data = port.read(max(1, port.in_waiting))
                now = time.monotonic()
                if data:
                    if self.on_wire is not None:
                        self._tap("rx", data)
                    self._ingest(data, now)
                if now - self._last_hb >= self.heartbeat_s:
                    self._last_hb = now
                    self._write(p.encode(p.Heartbeat(int(now * 1000) & 0xFFFFFFFF),
                                         self._next_seq()), port)
                if now - self._last_rx > self.silence_s:
                    self._link_lost(port, f"no frame for {now - self._last_rx:.2f} s")
            except (HalError, *PORT_ERRORS) as exc:
                self._link_lost(port, str(exc))
            except Exception as exc:  # keep the reader alive whatever happens
                log.exception("reader error on %s", self.url)
                self._link_lost(port, f"reader error: {exc!r}")

    def _link_lost(self, port: serial.SerialBase, reason: str) -> None:
        with self._port_lock:
            if self._port is not port:
                return
            self._port = None
        _quiet_close(port)
        if self._stop.is_set():
            return
        was_up, self._link_up = self._link_up, False
        for pending in list(self._pending.values()):
            pending.error = LinkDownError(f"link to {self.url} went down: {reason}")
            pending.done.set()
        if was_up:
            self._counters.link_downs += 1
            self._down_since = time.monotonic()
            self._attempts = 0
            self._emit("LinkDown", port=self._port_name, reason=reason)

    def _reconnect_once(self) -> None:
        delay = min(_BACKOFF_MAX_S, _BACKOFF_MIN_S * (2 ** min(self._attempts, 8)))
        if self._stop.wait(delay):
            return
        self._attempts += 1
        try:
            port = self._open_port()
        except HalError as exc:
            log.debug("reopen %s failed: %s", self.url, exc)
            return
        try:
            self._start_link(port)
        except (HalError, *PORT_ERRORS) as exc:
            log.debug("handshake on %s failed: %s", self._port_name, exc)
            _quiet_close(port)
            return
        self._counters.reconnects += 1
        self._emit("Reconnected", port=self._port_name, attempts=self._attempts,
                   down_s=round(time.monotonic() - self._down_since, 3))

    # -- lifecycle ----------------------------------------------------------------------------

    def _close(self) -> None:
        self._stop.set()
        port = self._port
        if port is not None:
            try:  # best effort: the MCU's watchdog stops the motors anyway
                self._write(p.encode(p.Stop(), self._next_seq()), port)
            except HalError:
                pass
            try:
                port.cancel_read()
            except (AttributeError, *PORT_ERRORS):
                pass
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        with self._port_lock:
            port, self._port = self._port, None
        if port is not None:
            _quiet_close(port)
        self._link_up = False
        for pending in list(self._pending.values()):
            pending.error = LinkDownError(f"{self.url} closed")
            pending.done.set()


McuLink = McuSerial


def _quiet_close(port: serial.SerialBase) -> None:
    try:
        port.close()
    except Exception:  # closing a vanished port may fail in many ways; it is gone either way
        log.debug("close of %s failed", getattr(port, "port", port), exc_info=True)


ALLOWED: dict[str, Callable[[str], Any]] = {
    "baud": int, "timeout": float, "stream_hz": int, "watchdog_ms": int, "retries": int,
    "ack_timeout": float, "usb": str, "exclusive": parse_bool,
}


def split_url(url: str) -> tuple[str | None, dict[str, Any]]:
    """``mcu+...`` URL -> (pyserial port or path, typed options). Raises DeviceUrlError."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not scheme.startswith("mcu+"):
        raise DeviceUrlError(f"{url!r} is not an mcu+ URL; form: {FORM}")
    opts = parse_options(url, ALLOWED, FORM)
    if "usb" in opts:
        try:
            parse_usb_id(opts["usb"])
        except ValueError as exc:
            raise DeviceUrlError(f"{exc} in {url!r}; form: {FORM}") from exc
    if scheme == "mcu+serial":
        port = parts.path or None
        if port is None and "usb" not in opts:
            raise DeviceUrlError(f"{url!r} names no port path and no usb id; form: {FORM}")
    else:
        port = f"{scheme[4:]}://{parts.netloc}{parts.path}"
    return port, opts


def open_serial_mcu(url: str, **context: Any) -> McuSerial:
    """Registry opener for ``mcu+serial`` and ``mcu+<pyserial scheme>`` URLs.

    ``context`` may carry ``on_event``, ``on_report``, ``on_wire`` and ``host_id``.
    """
    port, opts = split_url(url)
    extra = {k: context[k] for k in ("on_event", "on_report", "on_wire", "host_id") if k in context}
    return McuSerial(port, url=url, **opts, **extra)
