"""The MCU suite: the reference firmware (or any board speaking the MCU protocol) on its port.

Checks: handshake and version, wheel command acknowledgement latency, sensor stream rate, the
motor watchdog (the motors stop when the host goes silent) and reconnection after the port
vanishes and returns. All but the watchdog check use the real host driver
(:class:`hal.mcu.driver.McuSerial`); the watchdog check speaks the protocol on the raw port,
because the driver, by design, never goes silent while it is open.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from hal.errors import DeviceTimeoutError, HalError, LinkDownError
from hal.mcu import protocol as p
from hal.mcu.driver import McuSerial
from hil.checks import CheckFailed, CheckResult, Measurement, TimingLimit, at_least, at_most, equals, info, within
from hil.ports import RigError, explain, open_port
from hil.rig import McuRig
from hil.trace import TracedPort, WireTrace

log = logging.getLogger(__name__)

# Timing limits: (a rig's, an emulated rig's). The emulated ones leave room for a loaded
# two-core CI machine (an emulated rig measures about 10 ms handshakes, 5 ms p99 ACKs, 0.05 s
# reconnects and a watchdog 2 to 10 ms late when the machine is quiet) and still catch a stall.
HANDSHAKE_LIMIT_MS = TimingLimit(1000.0, 2000.0)
ACK_P50_LIMIT_MS = TimingLimit(20.0, 50.0)
ACK_P99_LIMIT_MS = TimingLimit(50.0, 250.0)
STREAM_TOLERANCE = TimingLimit(0.15, 0.15)  # by the MCU's own clock
STREAM_SEEN_TOLERANCE = TimingLimit(0.15, 0.35)  # as the host's threads see it
WATCHDOG_SLACK_MS = TimingLimit(150.0, 400.0)  # beyond the timeout: a report period, scheduling, USB
RECONNECT_LIMIT_S = TimingLimit(2.0, 4.0)


class McuSession:
    """The real driver on a rig's port, recording its events, reports and wire trace."""

    def __init__(self, rig: McuRig, baud: int, trace: WireTrace, *, stream_hz: int = 50,
                 watchdog_ms: int = 500, timeout: float = 1.0) -> None:
        self.rig = rig
        self.trace = trace
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.reports: deque[tuple[float, p.SensorReport]] = deque(maxlen=20_000)
        self._cond = threading.Condition()
        t0 = time.monotonic()
        try:
            self.driver = McuSerial(rig.path, baud=baud, stream_hz=stream_hz,
                                    watchdog_ms=watchdog_ms, timeout=timeout,
                                    on_event=self._on_event, on_report=self._on_report,
                                    on_wire=trace.record)
        except DeviceTimeoutError as exc:
            raise _no_answer(rig, baud, trace, exc) from exc
        except LinkDownError as exc:
            cause = exc.__cause__
            raise (explain(rig.path, baud, cause) if cause is not None
                   else RigError("missing", str(exc))) from exc
        self.open_s = time.monotonic() - t0

    def _on_event(self, name: str, **fields: Any) -> None:
        with self._cond:
            self.events.append((time.monotonic(), name, fields))
            self._cond.notify_all()

    def _on_report(self, report: p.SensorReport) -> None:
        self.reports.append((time.monotonic(), report))

    def event_names(self) -> list[str]:
        with self._cond:
            return [n for _, n, _ in self.events]

    def wait_event(self, name: str, timeout: float, after: int = 0) -> bool:
        """Wait until event ``name`` appears at an index >= ``after``."""
        with self._cond:
            return self._cond.wait_for(
                lambda: any(n == name for _, n, _ in self.events[after:]), timeout)

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> McuSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _no_answer(rig: McuRig, baud: int, trace: WireTrace, exc: BaseException) -> RigError:
    if trace.total.get("rx", 0):
        return RigError("baud", f"{rig.path}: bytes arrived at {baud} baud but no valid VERSION "
                                f"frame ({trace.total['rx']} bytes); is the board's UART set to "
                                f"{baud} baud? (try --baud 115200 or 921600)")
    return RigError("no_answer", f"{rig.path}: no answer to HELLO at {baud} baud within the "
                                 f"handshake time ({exc}); is the Magpie firmware flashed and "
                                 "running, and is this its port?")


def _wait(pred: Callable[[], bool], timeout: float, step: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


# -- checks on the driver -----------------------------------------------------------------------


def handshake(s: McuSession) -> list[Measurement]:
    """HELLO answered by VERSION of our protocol; the time it took to come up."""
    v = s.driver.version
    if v is None:
        raise CheckFailed("the driver is up but holds no VERSION")
    return [
        equals("protocol version", v.protocol_version, p.PROTOCOL_VERSION),
        at_least("firmware major version", v.fw_major, 1, ""),
        info(f"firmware {v.firmware}, board 0x{v.board_id:04x}, capabilities", v.capabilities, "bits"),
        at_most("open + handshake + watchdog and stream set-up", s.open_s * 1000, HANDSHAKE_LIMIT_MS,
                "ms", emulated_rig=s.rig.emulated),
    ]


def ack_latency(s: McuSession, n: int = 200) -> list[Measurement]:
    """SET_WHEELS(0, 0) ``n`` times: the time from send to ACK, as the driver's caller sees it."""
    before = s.driver.counters
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        s.driver.set_wheels(0.0, 0.0)
        samples.append(time.perf_counter() - t0)
    after = s.driver.counters
    samples.sort()
    p50 = samples[len(samples) // 2] * 1000
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))] * 1000
    return [
        equals(f"timeouts in {n} commands", after.timeouts - before.timeouts, 0, "commands"),
        info("retries", after.retries - before.retries, "resends"),
        at_most("ack latency p50", p50, ACK_P50_LIMIT_MS, "ms", emulated_rig=s.rig.emulated),
        at_most("ack latency p99", p99, ACK_P99_LIMIT_MS, "ms", emulated_rig=s.rig.emulated),
        info("ack latency max", samples[-1] * 1000, "ms"),
    ]


def stream_rate(s: McuSession, hz: int = 100, window_s: float = 1.0) -> list[Measurement]:
    """SENSOR_REPORT at ``hz`` for ``window_s``: the rate the host sees, and the MCU's clock."""
    old = s.driver.stream_hz
    s.driver.set_stream_rate(hz)
    try:
        start = time.monotonic() + 0.1  # let the new rate settle
        end = start + window_s
        time.sleep(max(0.0, end - time.monotonic()) + 0.02)
        window = [r for t, r in list(s.reports) if start <= t < end]
    finally:
        s.driver.set_stream_rate(old)
    if len(window) < 2:
        raise CheckFailed(f"{len(window)} SENSOR_REPORTs in {window_s} s at {hz} Hz")
    rate = len(window) / window_s
    times = [r.mcu_time_ms for r in window]
    backwards = sum(1 for a, b in zip(times, times[1:], strict=False) if b < a)
    span_s = (times[-1] - times[0]) / 1000.0
    mcu_rate = (len(window) - 1) / span_s if span_s > 0 else 0.0
    emulated = s.rig.emulated
    return [
        within(f"stream rate seen by the host (set {hz} Hz)", rate, hz, STREAM_SEEN_TOLERANCE, "Hz", emulated),
        within("stream rate by the MCU's clock", mcu_rate, hz, STREAM_TOLERANCE, "Hz", emulated),
        equals("reports whose MCU time went backwards", backwards, 0, "reports"),
    ]


def reconnect(s: McuSession) -> list[Measurement]:
    """The port vanishes (USB unplug) and returns: the driver reports it and comes back by itself."""
    rig = s.rig
    if not rig.can_unplug:
        raise CheckFailed("this rig cannot be unplugged by software")
    d = s.driver
    d.set_wheels(0.1, 0.1)
    mark = len(s.events)
    s.trace.note("unplug")
    rig.unplug()
    down = s.wait_event("LinkDown", 3.0, mark)
    refused = 0
    if down:
        try:
            d.set_wheels(0.1, 0.1)
        except LinkDownError:
            refused = 1
    s.trace.note("plug back in")
    t0 = time.monotonic()
    rig.replug()
    up = _wait(lambda: d.link_up, 5.0)
    back_s = time.monotonic() - t0
    works = 0
    if up:
        d.set_wheels(0.0, 0.0)
        works = 1
    return [
        equals("LinkDown reported after the unplug", int(down), 1),
        equals("commands refused while the link is down", refused, 1),
        equals("link up again after the port returned", int(up), 1),
        at_most("time from the port's return to link up", back_s, RECONNECT_LIMIT_S, "s",
                emulated_rig=rig.emulated),
        equals("Reconnected reported", int("Reconnected" in s.event_names()[mark:]), 1),
        equals("commands accepted after the reconnect", works, 1),
    ]


# -- the watchdog, on the raw port ----------------------------------------------------------------


class RawMcu:
    """The host side of the protocol without the driver: for checks the driver cannot do."""

    def __init__(self, port: TracedPort) -> None:
        self.port = port
        self.seq = 0
        self.decoder = p.FrameDecoder()
        self.last_tx = time.monotonic()

    def send(self, msg: p.Message) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        self.port.write(p.encode(msg, self.seq))
        self.last_tx = time.monotonic()
        return self.seq

    def poll(self, timeout: float) -> list[tuple[float, p.Message]]:
        deadline = time.monotonic() + timeout
        out: list[tuple[float, p.Message]] = []
        while not out and time.monotonic() < deadline:
            data = self.port.read(max(1, self.port.in_waiting))
            if data:
                now = time.monotonic()
                out += [(now, item.msg) for item in self.decoder.feed(data)]
        return out

    def hello(self, timeout: float = 1.0) -> p.Version:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(p.Hello())
            for _, msg in self.poll(0.1):
                if isinstance(msg, p.Version):
                    return msg
        raise CheckFailed(f"no VERSION within {timeout} s")

    def command(self, msg: p.Message, timeout: float = 0.5) -> None:
        seq = self.send(msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, reply in self.poll(0.05):
                if isinstance(reply, p.Ack) and reply.acked_seq == seq:
                    return
                if isinstance(reply, p.Nack) and reply.nacked_seq == seq:
                    raise CheckFailed(f"{type(msg).__name__} refused: {reply.reason_name}")
        raise CheckFailed(f"no ACK to {type(msg).__name__} within {timeout} s")


def watchdog(rig: McuRig, baud: int, trace: WireTrace, timeout_ms: int = 100) -> list[Measurement]:
    """Drive, go silent, and watch the reports: WATCHDOG_STOP is raised and the wheels stop."""
    port = TracedPort(open_port(rig.path, baud), trace)
    raw = RawMcu(port)
    flagged = int(p.FaultFlags.WATCHDOG_STOP)
    try:
        raw.hello()
        raw.command(p.SetWatchdog(timeout_ms))
        raw.command(p.SetStreamRate(100))
        raw.command(p.SetWheels(200, 200))
        # Keep the link alive for a while and see the wheels turn.
        ticks: list[int] = []
        t_end = time.monotonic() + 0.3
        while time.monotonic() < t_end:
            if time.monotonic() - raw.last_tx > timeout_ms / 4000.0:
                raw.send(p.Heartbeat(0))
            ticks += [m.left_ticks for _, m in raw.poll(0.01) if isinstance(m, p.SensorReport)]
        turning = len(ticks) >= 2 and ticks[-1] > ticks[0]
        port.flush()
        silent_at = raw.last_tx
        trace.note(f"host silent from here (watchdog {timeout_ms} ms)")
        tripped_at = None
        deadline = silent_at + timeout_ms / 1000.0 + 2.0
        while tripped_at is None and time.monotonic() < deadline:
            for t, m in raw.poll(0.05):
                if isinstance(m, p.SensorReport) and m.fault_flags & flagged:
                    tripped_at = t
                    break
        # The wheels coast to a stop: encoder counts hold still over 100 ms of reports.
        stopped = False
        history: deque[tuple[float, int, int]] = deque()
        deadline = time.monotonic() + 2.0
        while tripped_at is not None and not stopped and time.monotonic() < deadline:
            for t, m in raw.poll(0.05):
                if isinstance(m, p.SensorReport):
                    history.append((t, m.left_ticks, m.right_ticks))
            while len(history) > 2 and history[-1][0] - history[1][0] >= 0.1:
                history.popleft()
            stopped = (len(history) >= 3 and history[-1][0] - history[0][0] >= 0.1
                       and len({(a, b) for _, a, b in history}) == 1)
        raw.hello()  # clears WATCHDOG_STOP
        raw.command(p.Stop())
        raw.command(p.SetStreamRate(0))
    finally:
        port.close()
    trip_ms = (tripped_at - silent_at) * 1000 if tripped_at is not None else float("inf")
    return [
        equals("wheels turning while the host talks", int(turning), 1),
        equals("WATCHDOG_STOP raised after silence", int(tripped_at is not None), 1),
        at_most(f"time to WATCHDOG_STOP (timeout {timeout_ms} ms)", trip_ms,
                TimingLimit(timeout_ms + WATCHDOG_SLACK_MS.hardware, timeout_ms + WATCHDOG_SLACK_MS.emulated),
                "ms", emulated_rig=rig.emulated),
        equals("wheels stopped (encoders still for 100 ms)", int(stopped), 1),
    ]


def run(rig: McuRig, baud: int, trace: WireTrace, *, interactive: bool = False,
        ask: Callable[[str], None] | None = None) -> list[CheckResult]:
    """The MCU suite. A real board is unplugged only with ``interactive`` (a person does it)."""
    results: list[CheckResult] = []

    def one(name: str, fn: Callable[[], list[Measurement]]) -> None:
        res = CheckResult(name)
        t0 = time.monotonic()
        trace.note(f"check: {name}")
        try:
            res.measurements = fn()
        except RigError:
            raise
        except (HalError, CheckFailed, OSError) as exc:
            log.debug("check %s failed", name, exc_info=True)
            res.error = str(exc) or repr(exc)
        res.seconds = time.monotonic() - t0
        results.append(res)

    session = McuSession(rig, baud, trace)
    try:
        one("handshake and version", lambda: handshake(session))
        one("wheel command ack latency", lambda: ack_latency(session))
        one("sensor stream rate", lambda: stream_rate(session))
        if rig.can_unplug:
            one("reconnect after the port vanishes", lambda: reconnect(session))
        elif interactive and ask is not None:
            one("reconnect after the port vanishes", lambda: _reconnect_by_hand(session, ask))
        else:
            results.append(CheckResult("reconnect after the port vanishes",
                                       skipped="needs a USB unplug; rerun with --replug and "
                                               "unplug the board when asked"))
    finally:
        session.close()
    one("motors stop when the link goes silent", lambda: watchdog(rig, baud, trace))
    return results


def _reconnect_by_hand(s: McuSession, ask: Callable[[str], None]) -> list[Measurement]:
    mark = len(s.events)
    ask("Unplug the board's USB cable now (waiting up to 30 s)...")
    down = s.wait_event("LinkDown", 30.0, mark)
    if not down:
        return [equals("LinkDown reported after the unplug", 0, 1)]
    ask("Plug it back in (waiting up to 30 s)...")
    up = _wait(lambda: s.driver.link_up, 30.0, 0.05)
    if up:
        s.driver.set_wheels(0.0, 0.0)
    return [equals("LinkDown reported after the unplug", 1, 1),
            equals("link up again after the board returned", int(up), 1)]
