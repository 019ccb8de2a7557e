"""MCU link benchmarks: codec time per frame, wire efficiency, command round trip over a pty.

Each figure stands beside a baseline from the same run: bare COBS encode+decode of the same
bytes for the codec (timed in turns with it, the fastest batch and the median batch both
shown), and a raw pyserial write/read echo over a pty for the driver round trip.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import threading
import time
import tty
from collections.abc import Callable

import numpy as np
import serial
from cobs import cobs

from bench.common import Row, percentiles, time_per_call
from hal.mcu import protocol as p

log = logging.getLogger(__name__)

BAUDS = (115200, 921600)
SIZES = (64, 250)


def _payload(size: int) -> bytes:
    return bytes((i * 37 + 11) % 256 for i in range(size))


def _taking_turns(fns: dict[str, Callable[[], object]], batch: int, span_s: float,
                  pause_s: float = 0.002) -> dict[str, np.ndarray]:
    """Per-call seconds of each of ``fns`` in batches of ``batch`` calls, sorted, over ``span_s``.

    The functions take turns batch by batch, so each figure and its baseline see the same state
    of the machine, and the rounds are spread over the span with a short pause between them. On
    this shared machine the speed of plain Python code comes and goes in phases of a few tenths
    of a second to seconds, the same for every function measured (the bare library calls too)
    and in any process: a measurement that fits in one phase (the former one took about 10 ms a
    figure) gives either figure depending on when it ran. The garbage collector is off while timing
    (a collection inside a batch is not the codec's cost).
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    enabled = gc.isenabled()
    gc.disable()
    try:
        end = time.perf_counter() + span_s
        while time.perf_counter() < end:
            for name, fn in fns.items():
                t0 = time.perf_counter()
                for _ in range(batch):
                    fn()
                times[name].append((time.perf_counter() - t0) / batch)
            time.sleep(pause_s)
    finally:
        if enabled:
            gc.enable()
    return {name: np.sort(np.asarray(v)) for name, v in times.items()}


def _codec_rows(span_s: float, repeat: int) -> list[Row]:
    """Codec figures from batches taken in turns with their baselines over ``span_s`` (see
    :func:`_taking_turns`): the fastest batch (the code's own cost, least disturbed by other
    load) with the target, and the median batch beside the baseline's median (what the machine
    gave while the bench ran), with the share of batches in slow phases, so neither is hidden.
    """
    fns: dict[str, Callable[[], object]] = {}
    for size in SIZES:
        payload = _payload(size)

        def frame_round_trip(payload: bytes = payload) -> None:
            frame = p.encode_frame(0x7F, 1, payload)
            p.decode_frame(frame[:-1])

        body = p.HEADER.pack(1, 0x7F, 1) + payload + b"\x00\x00"

        def cobs_only(body: bytes = body) -> None:
            cobs.decode(cobs.encode(body))

        fns[f"frame{size}"] = frame_round_trip
        fns[f"cobs{size}"] = cobs_only
    report = p.SensorReport(1234, 10, -10, 0.5, 0.5, (0.0, 0.0, 9.81), (0.0, 0.0, 0.1), 25.0,
                            12.0, 1.0, 0.9, 0.0, 30.0, 30.0, 20.0, 35.0, 0)
    dec = p.FrameDecoder()

    def report_round_trip() -> None:
        dec.feed(p.encode(report, 5))

    values = p.SensorReport.LAYOUT.unpack(report.pack())
    layout = p.SensorReport.LAYOUT

    def struct_and_cobs_only() -> None:  # the layout and the framing's C parts, no message objects
        layout.unpack(cobs.decode(cobs.encode(layout.pack(*values)))[:84])

    fns["report"] = report_round_trip
    fns["struct"] = struct_and_cobs_only
    t = _taking_turns(fns, 50, span_s)
    n = len(t["report"])
    how = f"{n} batches of 50 over {span_s:.0f} s, taking turns"

    def pair(name: str, ours: str, base: str, base_name: str, target: str) -> list[Row]:
        best, base_best = t[ours][0], t[base][0]
        slow = float(np.mean(t[ours] > 1.5 * best))
        return [
            Row(name, best * 1e6, "us", base_best * 1e6, f"{base_name} (fastest of {how})", target),
            Row(f"{name}, median batch", float(np.median(t[ours])) * 1e6, "us", float(np.median(t[base])) * 1e6,
                f"{base_name} median; {slow:.0%} of batches over 1.5x the fastest"),
        ]

    rows = []
    for size in SIZES:
        rows += pair(f"mcu frame encode+decode {size} B payload", f"frame{size}", f"cobs{size}",
                     "bare cobs encode+decode", "<= 3 us" if size == 250 else "")
        payload = _payload(size)

        def table_round_trip(payload: bytes = payload) -> None:
            body = p.HEADER.pack(1, 0x7F, 1) + payload
            frame = cobs.encode(body + p.CRC.pack(p.crc16_table(body)))
            back = cobs.decode(frame)
            p.crc16_table(back[:-2])

        rows.append(Row(f"mcu frame encode+decode {size} B, pure-Python table CRC",
                        time_per_call(table_round_trip, max(100, repeat // 10)) * 1e6, "us",
                        float(np.median(t[f"cobs{size}"])) * 1e6, "bare cobs encode+decode median", "reference only"))
    rows += pair("SENSOR_REPORT pack+frame+decoder feed+unpack (84 B)", "report", "struct",
                 "struct pack+unpack and bare cobs", "<= 10 us")
    return rows


def _wire_rows() -> list[Row]:
    rows = []
    for size in SIZES:
        line_bytes = len(p.encode_frame(0x7F, 1, _payload(size)))  # incl. header, CRC, 0x00
        rows.append(Row(f"wire efficiency {size} B: payload / frame bytes", size / line_bytes,
                        "ratio", target=">= 0.95 at 250 B", better="higher"))
        rows.append(Row(f"wire efficiency {size} B: payload bits / UART line bits (8N1)",
                        size * 8 / (line_bytes * 10), "ratio",
                        target="at most 0.8 with start+stop bits", better="higher"))
        for baud in BAUDS:
            rows.append(Row(f"goodput {size} B frames at {baud} baud 8N1",
                            baud / 10 * size / line_bytes, "B/s", baud / 10,
                            "line byte rate", better="higher"))
    return rows


def _echo_baseline(n: int, size: int) -> list[float]:
    """Raw pyserial on a pty slave; a thread echoes on the master."""
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.write(master, os.read(master, 4096))
                except OSError:
                    return

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    port = serial.Serial(os.ttyname(slave), timeout=1.0)
    data = _payload(size).replace(b"\x00", b"\x01")
    samples = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            port.write(data)
            got = port.read(len(data))
            samples.append(time.perf_counter() - t0)
            if len(got) != len(data):
                log.warning("echo baseline lost bytes")
    finally:
        stop.set()
        thread.join(1.0)
        port.close()
        os.close(master)
        os.close(slave)
    return samples


def _round_trip_rows(n: int) -> list[Row]:
    from hal.registry import open_device  # the emulator pulls in sim_hw only when measured

    samples = []
    with open_device("mcu+pty://?stream_hz=0&ack_timeout=0.5") as dev:
        for i in range(n):
            t0 = time.perf_counter()
            dev.set_wheels(0.001 * (i % 100), 0.0)  # type: ignore[attr-defined]
            samples.append(time.perf_counter() - t0)
    frame_len = len(p.encode(p.SetWheels(1, 0), 1))
    base = percentiles(_echo_baseline(n, frame_len))
    ours = percentiles(samples)
    return [
        Row("SET_WHEELS->ACK round trip over pty, p50", ours["p50"], "us", base["p50"],
            "raw pyserial echo over pty p50"),
        Row("SET_WHEELS->ACK round trip over pty, p99", ours["p99"], "us", base["p99"],
            "raw pyserial echo over pty p99"),
    ]


def run(quick: bool) -> list[Row]:
    repeat = 2000 if quick else 20000
    n = 200 if quick else 2000
    return _codec_rows(1.0 if quick else 4.0, repeat) + _wire_rows() + _round_trip_rows(n)
