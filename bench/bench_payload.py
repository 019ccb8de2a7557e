"""The payload host: its cost per payload step against an in-process component doing the same work.

The work is the ticker's (a filtered sine and an integer checksum, two channels written). The
baseline is :class:`flight.components.ticker.Ticker` stepped in process; the figures are the same
work done by a payload in its own process, seen from the rate group's thread:

* lockstep (simulated clock): the host sends the step, waits for the answer and handles it, so
  the figure is the whole round trip through the socket pair and the other process;
* real time: the host handles the answer to the previous step and sends the next without
  waiting, which is what a real-time rate group pays per payload per cycle. Steps are paced
  2 ms apart (the payload answers meanwhile), and so is this row's baseline: a call after a
  sleep runs on a cold cache, which would otherwise be charged to the host alone.
"""

from __future__ import annotations

import math
import select
import tempfile
import time
from pathlib import Path

from bench.common import Row
from flight.clock import RealClock, SimClock
from flight.components.ticker import Ticker
from flight.config import parse
from flight.payload.host import PayloadHost, State
from flight.payload.sdk import Channel, Payload
from flight.vehicle import Vehicle

WORK = 20


class TickerPayload(Payload):
    """The ticker's per-step work, as a hosted payload."""

    CHANNELS = (Channel("count", "u64"), Channel("filtered", "f64"))

    def setup(self) -> None:
        self._count = 0
        self._y = 0.0

    def step(self) -> None:
        self._count += 1
        x = math.sin(self._count * 0.01)
        acc = 0
        for i in range(WORK):
            acc = (acc * 31 + i) & 0xFFFF
        self._y += 0.1 * (x - self._y) + acc * 0.0
        self.tlm("count", self._count)
        self.tlm("filtered", self._y)


def _vehicle(clock, with_host: bool) -> tuple[Vehicle, PayloadHost | Ticker]:
    tmp = Path(tempfile.mkdtemp(prefix="magpie-bench-payload-"))
    if with_host:
        comp: PayloadHost | Ticker = PayloadHost(
            "payhost", kinds={"ticker": "bench.bench_payload:TickerPayload"},
            payload={"tick": {"kind": "ticker", "cpu_ms_per_step": 1000.0}})
    else:
        comp = Ticker("ticker", work=WORK)
    doc = {"vehicle": {"state_dir": str(tmp)},
           "rate_groups": [{"name": "g", "hz": 100, "members": [comp.name, "cmd", "tlm"]}]}
    return Vehicle(parse(doc), clock, extra_components=[comp]), comp


def in_process_us(n: int, pace_s: float = 0.0) -> float:
    """Median µs of the ticker's step in process; ``pace_s`` sleeps before each, as a cycle would."""
    v, comp = _vehicle(SimClock(), with_host=False)
    comp.step()
    samples = []
    for _ in range(n):
        if pace_s:
            time.sleep(pace_s)
        t0 = time.perf_counter()
        comp.step()
        samples.append(time.perf_counter() - t0)
    v.shutdown()
    samples.sort()
    return samples[len(samples) // 2] * 1e6


def _started(v: Vehicle, host: PayloadHost, pace_s: float) -> None:
    deadline = time.monotonic() + 15.0
    while host.sessions[0].state != State.RUNNING and time.monotonic() < deadline:
        host.step()
        time.sleep(pace_s)
    if host.sessions[0].state != State.RUNNING:
        raise RuntimeError("the benchmark payload did not start")


def lockstep_us(n: int) -> float:
    clock = SimClock()
    v, host = _vehicle(clock, with_host=True)
    assert isinstance(host, PayloadHost)
    _started(v, host, 0.0)
    samples = []
    for _ in range(n):
        clock.advance(0.01)
        t0 = time.perf_counter()
        host.step()
        samples.append(time.perf_counter() - t0)
    steps = host.sessions[0].steps
    v.shutdown()
    if steps < n:
        raise RuntimeError(f"only {steps} of {n} steps answered")
    samples.sort()
    return samples[len(samples) // 2] * 1e6


def realtime_us(n: int, pace_s: float = 0.002) -> float:
    v, host = _vehicle(RealClock(), with_host=True)
    assert isinstance(host, PayloadHost)
    _started(v, host, 0.01)
    samples = []
    session = host.sessions[0]
    for _ in range(n):
        time.sleep(pace_s)  # the rest of the cycle: the payload answers meanwhile
        if session.sock is not None:  # on a loaded machine it may need longer; that is not the host's cost
            select.select([session.sock], [], [], 1.0)
        t0 = time.perf_counter()
        host.step()
        samples.append(time.perf_counter() - t0)
    misses = host.sessions[0].misses
    v.shutdown()
    if misses:
        raise RuntimeError(f"{misses} steps missed while pacing at {pace_s * 1e3:g} ms")
    samples.sort()
    return samples[len(samples) // 2] * 1e6


def run(quick: bool) -> list[Row]:
    n = 300 if quick else 2000
    m = n // 2 if quick else n // 4
    base = in_process_us(n * 10)
    lock = lockstep_us(n)
    base_paced = in_process_us(m, pace_s=0.002)
    real = realtime_us(m, pace_s=0.002)
    return [
        Row("payload step, lockstep round trip", lock, "us/step", base, "in-process component, same work",
            "host cost per payload step (median)"),
        Row("payload step, real-time host side", real, "us/step", base_paced,
            "in-process component, same work, same 2 ms pacing", "what a rate group pays per payload (median)"),
    ]
