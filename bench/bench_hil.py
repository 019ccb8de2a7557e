"""HIL link benchmarks: goodput against the line rate over paced ptys, command ACK latency, and
host CPU per received frame.

Baselines from the same run: the protocol's ideal payload fraction for each frame size (what a
perfect UART would give), a raw pyserial echo over a pty for the ACK round trip, and the bare
codec (FrameDecoder.feed) for CPU per frame.
"""

from __future__ import annotations

import logging
import threading
import time

from bench.bench_mcu import _echo_baseline
from bench.common import Row, percentiles
from hal.mcu import protocol as p
from hil import loopback
from hil.ports import STANDARD_BAUDS
from hil.rig import EmulatorRig, PtyLoopback
from hil.trace import WireTrace

log = logging.getLogger(__name__)


def _loopback_rows(seconds: float) -> list[Row]:
    """250-byte frames through the paced pty loopback at each baud."""
    rows = []
    ideal = p.MAX_PAYLOAD / len(p.encode_frame(loopback.TEST_ID, 1, b"\x01" * p.MAX_PAYLOAD))
    with PtyLoopback() as rig:
        port = loopback.open_loopback(rig, STANDARD_BAUDS[0], WireTrace(max_bytes=1024))
        try:
            for baud in STANDARD_BAUDS:
                ms = loopback.goodput(port, rig, baud, seconds=seconds)
                frac = next(m.value for m in ms if m.name.endswith("line byte rate"))
                rows.append(Row(f"loopback goodput, 250 B frames, {baud} baud (paced pty)", frac,
                                "of baud/10", ideal, "ideal 250 B / frame bytes", better="higher"))
        finally:
            port.close()
    return rows


def _stream_rows(seconds: float) -> list[Row]:
    """SENSOR_REPORT at 1000 Hz from the emulator paced at each baud, into the real driver."""
    from hal.mcu.driver import McuSerial

    rows = []
    ideal = p.SensorReport.LAYOUT.size / len(p.encode(p.SensorReport(), 1))
    for baud in STANDARD_BAUDS:
        with EmulatorRig(pace_baud=baud) as rig:
            count = [0]

            def on_report(_r: p.SensorReport, count: list[int] = count) -> None:
                count[0] += 1

            drv = McuSerial(rig.path, baud=baud, stream_hz=1000, on_report=on_report)
            try:
                time.sleep(0.2)
                n0, t0 = count[0], time.monotonic()
                time.sleep(seconds)
                n, dt = count[0] - n0, time.monotonic() - t0
            finally:
                drv.close()
        offered = min(1000.0, baud / 10 / len(p.encode(p.SensorReport(), 1)))
        frac = n * p.SensorReport.LAYOUT.size / dt / (baud / 10)
        rows.append(Row(f"sensor stream goodput, 1000 Hz asked, {baud} baud (paced emulator)",
                        frac, "of baud/10", ideal * offered * len(p.encode(p.SensorReport(), 1))
                        / (baud / 10), "line-limited ideal", better="higher"))
    return rows


def _latency_rows(n: int) -> list[Row]:
    from hal.mcu.driver import McuSerial

    samples = []
    with EmulatorRig() as rig:
        drv = McuSerial(rig.path, stream_hz=50)
        try:
            for _ in range(n):
                t0 = time.perf_counter()
                drv.set_wheels(0.0, 0.0)
                samples.append(time.perf_counter() - t0)
        finally:
            drv.close()
    ours = percentiles(samples)
    base = percentiles(_echo_baseline(n, len(p.encode(p.SetWheels(), 1))))
    return [Row("SET_WHEELS ACK latency p50 (emulator on pty)", ours["p50"], "us", base["p50"],
                "raw pyserial echo p50"),
            Row("SET_WHEELS ACK latency p99 (emulator on pty)", ours["p99"], "us", base["p99"],
                "raw pyserial echo p99")]


def _cpu_rows(seconds: float) -> list[Row]:
    """CPU seconds the driver's reader thread spends per received frame, at 1000 Hz."""
    from hal.mcu.driver import McuSerial

    with EmulatorRig() as rig:
        drv = McuSerial(rig.path, stream_hz=1000)
        try:
            clock = time.pthread_getcpuclockid(drv._thread.ident)  # type: ignore[arg-type]
            time.sleep(0.2)
            c0, f0 = time.clock_gettime(clock), drv.counters.frames_rx
            time.sleep(seconds)
            c1, f1 = time.clock_gettime(clock), drv.counters.frames_rx
        finally:
            drv.close()
    per_frame = (c1 - c0) / max(1, f1 - f0) * 1e6
    frame = p.encode(p.SensorReport(mcu_time_ms=1), 1)
    dec = p.FrameDecoder()
    reps = 5000
    t0 = time.thread_time()
    for _ in range(reps):
        dec.feed(frame)
    codec = (time.thread_time() - t0) / reps * 1e6
    return [Row("host CPU per received frame (driver reader thread, 1000 Hz stream)", per_frame,
                "us", codec, "FrameDecoder.feed alone")]


def run(quick: bool) -> list[Row]:
    seconds = 0.3 if quick else 1.5
    n = 200 if quick else 2000
    threading.current_thread().name = "bench-hil"
    return (_loopback_rows(seconds) + _stream_rows(seconds) + _latency_rows(n)
            + _cpu_rows(seconds * 2))
