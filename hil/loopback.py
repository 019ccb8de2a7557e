"""The loopback suite: a USB-serial adapter with TX wired to RX, checked with Magpie's framing.

Every check writes MCU-protocol frames (COBS, CRC-16, message id 0x7F, which no MCU uses) and
reads them back through the real codec in ``hal.mcu.protocol``. A writer thread sends while the
caller reads, as a UART is full duplex; reads are bounded by a deadline from the line rate.

Checks: frame integrity at each baud, goodput against the line's byte rate (baud/10 on 8N1),
recovery after garbage, partial and oversize frames, a break condition, and a bounded soak.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hal.mcu import protocol as p
from hil.checks import CheckFailed, CheckResult, Measurement, TimingLimit, at_least, equals, info
from hil.ports import RigError, open_port, set_baud
from hil.rig import LoopbackRig
from hil.trace import TracedPort, WireTrace

log = logging.getLogger(__name__)

TEST_ID = 0x7F  # a message id no MCU uses: frames for the loopback only
# of the line byte rate; 250-byte frames can reach 250/259 = 0.965. A paced pty measures about
# 0.93 on a quiet machine; its limit leaves room for a loaded one and still catches a line that
# lost half its rate.
GOODPUT_LIMIT = TimingLimit(0.85, 0.5)


@dataclass(slots=True)
class FrameReader:
    """Splits a byte stream at 0x00 and checks each frame with the protocol's own decoder."""

    max_encoded: int = p.MAX_ENCODED
    good: int = 0
    bad: int = 0
    oversize: int = 0
    bytes: int = 0
    _buf: bytearray = field(default_factory=bytearray)
    _discarding: bool = False

    def feed(self, data: bytes) -> list[p.Packet]:
        out = []
        self.bytes += len(data)
        parts = data.split(b"\x00")
        for chunk in parts[:-1]:  # each of these was ended by a delimiter
            if self._discarding:
                self._discarding = False
                continue
            self._buf += chunk
            frame, self._buf = bytes(self._buf), bytearray()
            if not frame:
                continue  # idle line
            if len(frame) > self.max_encoded:
                self.oversize += 1
                continue
            try:
                out.append(p.decode_frame(frame))
                self.good += 1
            except p.FrameError:
                self.bad += 1
        if not self._discarding:
            self._buf += parts[-1]
            if len(self._buf) > self.max_encoded:
                self.oversize += 1
                self._buf.clear()
                self._discarding = True
        return out


def _payload(rng: random.Random, size: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(size))


def exchange(port: TracedPort, frames: list[bytes], expect: int, timeout_s: float,
             reader: FrameReader | None = None) -> tuple[list[p.Packet], float, FrameReader]:
    """Write ``frames`` on a thread while reading; stop at ``expect`` packets or the deadline.

    Returns the packets, the seconds from the first write to the last packet, and the reader.
    """
    reader = reader or FrameReader()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for frame in frames:
                port.write(frame)
        except Exception as exc:  # reported to the caller below
            errors.append(exc)

    got: list[p.Packet] = []
    t0 = time.monotonic()
    last = t0
    writer = threading.Thread(target=write, name="hil-loopback-writer", daemon=True)
    writer.start()
    deadline = t0 + timeout_s
    while len(got) < expect and time.monotonic() < deadline:
        data = port.read(max(1, port.in_waiting))
        if data:
            packets = reader.feed(data)
            if packets:
                got += packets
                last = time.monotonic()
    writer.join(max(0.1, deadline - time.monotonic()))
    if errors:
        raise CheckFailed(f"writing to the port failed: {errors[0]!r}")
    return got, last - t0, reader


def _line_time(frames: list[bytes], baud: int) -> float:
    return sum(map(len, frames)) * 10.0 / baud


def _timeout(frames: list[bytes], baud: int) -> float:
    return 2.0 + 3.0 * _line_time(frames, baud)


def _intact(sent: list[tuple[int, bytes]], got: list[p.Packet]) -> int:
    want = {seq: payload for seq, payload in sent}
    return sum(1 for pk in got if pk.msg_id == TEST_ID and want.get(pk.seq) == pk.payload)


def frame_integrity(port: TracedPort, rig: LoopbackRig, baud: int, seconds: float = 0.2) -> list[Measurement]:
    """Frames of every size from 0 to 250 bytes, random contents (zeros too), all come back whole."""
    set_baud(port, baud)
    port.reset_input_buffer()
    rng = random.Random(baud)
    sizes = [0, 1, 2, 247, 248, 249, p.MAX_PAYLOAD]  # 248: a 254-byte COBS block
    budget = max(4000, int(seconds * baud / 10))
    sent: list[tuple[int, bytes]] = []
    frames: list[bytes] = []
    while sum(map(len, frames)) < budget or len(frames) < 20:
        size = sizes[len(frames)] if len(frames) < len(sizes) else rng.randrange(p.MAX_PAYLOAD + 1)
        payload = _payload(rng, size)
        seq = len(frames) + 1
        sent.append((seq, payload))
        frames.append(p.encode_frame(TEST_ID, seq, payload))
    got, elapsed, reader = exchange(port, frames, len(frames), _timeout(frames, baud))
    n = _intact(sent, got)
    return [
        equals(f"{baud} baud: frames intact of {len(frames)}", n, len(frames), "frames"),
        equals(f"{baud} baud: frames dropped by the decoder", reader.bad + reader.oversize, 0, "frames"),
        info(f"{baud} baud: bytes looped", reader.bytes, "B"),
    ]


def goodput(port: TracedPort, rig: LoopbackRig, baud: int, seconds: float = 0.25) -> list[Measurement]:
    """250-byte payloads back to back: payload bytes per second against the line's baud/10."""
    set_baud(port, baud)
    port.reset_input_buffer()
    rng = random.Random(7)
    count = max(10, int(seconds * baud / 10 / 260))
    sent = [(i + 1, _payload(rng, p.MAX_PAYLOAD)) for i in range(count)]
    frames = [p.encode_frame(TEST_ID, seq, payload) for seq, payload in sent]
    got, elapsed, _ = exchange(port, frames, count, _timeout(frames, baud))
    n = _intact(sent, got)
    rate = n * p.MAX_PAYLOAD / elapsed if elapsed > 0 else 0.0
    frac = rate / (baud / 10.0)
    name = f"{baud} baud: goodput / line byte rate"
    out = [equals(f"{baud} baud: frames intact of {count}", n, count, "frames")]
    if rig.paced:
        out.append(at_least(name, frac, GOODPUT_LIMIT, "ratio", emulated_rig=rig.emulated))
    else:  # an unpaced pty moves bytes at memory speed: a figure, not a line rate
        out.append(info(name + " (unpaced line)", frac, "ratio"))
    out.append(info(f"{baud} baud: goodput", rate, "B/s"))
    return out


def garbage_recovery(port: TracedPort, rig: LoopbackRig, baud: int) -> list[Measurement]:
    """Garbage, partial frames and an oversize run cost only themselves: later frames all arrive."""
    set_baud(port, baud)
    port.reset_input_buffer()
    rng = random.Random(11)
    sent: list[tuple[int, bytes]] = []

    def good(n: int) -> bytes:
        out = b""
        for _ in range(n):
            seq = 1000 + len(sent)
            payload = _payload(rng, rng.randrange(1, 120))
            sent.append((seq, payload))
            out += p.encode_frame(TEST_ID, seq, payload)
        return out

    partial = p.encode_frame(TEST_ID, 5, _payload(rng, 100))[:40]
    stream = (_payload(rng, 300) + partial + b"\x00" + good(10)
              + bytes(rng.randrange(1, 256) for _ in range(600)) + b"\x00" + good(10)
              + partial + b"\x00" + good(10))
    # Split the stream into uneven writes, as a noisy line would deliver it.
    chunks, i = [], 0
    while i < len(stream):
        step = rng.randrange(1, 97)
        chunks.append(stream[i:i + step])
        i += step
    got, _, reader = exchange(port, chunks, len(sent), _timeout(chunks, baud))
    ours = [pk for pk in got if pk.msg_id == TEST_ID and pk.seq >= 1000]
    recovered = sum(1 for pk, (seq, payload) in zip(ours, sent, strict=False)
                    if pk.seq == seq and pk.payload == payload)
    return [
        equals("good frames recovered after garbage", recovered, len(sent), "frames"),
        at_least("damaged frames and oversize runs counted and dropped", reader.bad + reader.oversize,
                 3, "frames"),
        at_least("of which oversize runs", reader.oversize, 1, "runs"),
    ]


def break_condition(port: TracedPort, rig: LoopbackRig, baud: int) -> list[Measurement]:
    """A 50 ms break between frames: a receiver sees at most idle line, and framing carries on."""
    set_baud(port, baud)
    port.reset_input_buffer()
    rng = random.Random(13)
    before = [(i + 1, _payload(rng, 64)) for i in range(5)]
    frames = [p.encode_frame(TEST_ID, s, pl) for s, pl in before]
    got, _, reader = exchange(port, frames, len(frames), _timeout(frames, baud))
    n_before = _intact(before, got)
    port.flush()
    try:
        port.send_break(0.05)
    except Exception as exc:
        raise CheckFailed(f"the port refused to send a break: {exc!r}") from exc
    port.trace.note("break sent (50 ms)")
    rig.after_break()
    after = [(100 + i, _payload(rng, 64)) for i in range(10)]
    frames = [p.encode_frame(TEST_ID, s, pl) for s, pl in after]
    bad_before = reader.bad
    got, _, reader = exchange(port, frames, len(frames), _timeout(frames, baud), reader)
    return [
        equals("frames intact before the break", n_before, len(before), "frames"),
        equals("frames intact after the break", _intact(after, got), len(after), "frames"),
        info("frames dropped around the break", reader.bad - bad_before, "frames"),
    ]


def soak(port: TracedPort, rig: LoopbackRig, baud: int, seconds: float = 2.0) -> list[Measurement]:
    """Mixed frames for a bounded time: not one lost or damaged."""
    set_baud(port, baud)
    port.reset_input_buffer()
    rng = random.Random(17)
    deadline = time.monotonic() + seconds
    sent_total = intact_total = 0
    reader = FrameReader()
    batch_bytes = max(2000, baud // 10 // 10)  # about 0.1 s of line per batch
    seq = 0
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        sent, frames = [], []
        while sum(map(len, frames)) < batch_bytes:
            seq = (seq + 1) & 0xFFFF
            payload = _payload(rng, rng.randrange(p.MAX_PAYLOAD + 1))
            sent.append((seq, payload))
            frames.append(p.encode_frame(TEST_ID, seq, payload))
        got, _, reader = exchange(port, frames, len(frames), _timeout(frames, baud), reader)
        sent_total += len(sent)
        intact_total += _intact(sent, got)
        if intact_total < sent_total:
            break  # the first loss ends the soak; the trace shows where
    elapsed = time.monotonic() - t0
    return [
        equals(f"soak {seconds:g} s: frames lost or damaged", sent_total - intact_total, 0, "frames"),
        info("soak frames", sent_total, "frames"),
        info("soak bytes looped", reader.bytes, "B"),
        info("soak duration", elapsed, "s"),
    ]


Check = Callable[..., list[Measurement]]


def checks(bauds: list[int], soak_s: float) -> list[tuple[str, Callable[[TracedPort, LoopbackRig], list[Measurement]]]]:
    """The suite in order: (name, function of port and rig)."""
    top = max(bauds)
    out: list[tuple[str, Callable[[TracedPort, LoopbackRig], list[Measurement]]]] = []
    for b in bauds:
        out.append((f"frame integrity at {b} baud", lambda port, rig, b=b: frame_integrity(port, rig, b)))
    for b in bauds:
        out.append((f"goodput at {b} baud", lambda port, rig, b=b: goodput(port, rig, b)))
    out.append(("recovery after garbage and partial frames",
                lambda port, rig: garbage_recovery(port, rig, top)))
    out.append(("break condition", lambda port, rig: break_condition(port, rig, top)))
    out.append((f"soak ({soak_s:g} s at {top} baud)", lambda port, rig: soak(port, rig, top, soak_s)))
    return out


def open_loopback(rig: LoopbackRig, baud: int, trace: WireTrace) -> TracedPort:
    """The rig's port, opened exclusively and traced; raises RigError."""
    return TracedPort(open_port(rig.path, baud), trace)


def probe(port: TracedPort, timeout_s: float = 0.5) -> None:
    """Raise RigError unless what is written comes back (TX wired to RX)."""
    port.reset_input_buffer()
    marker = b"\x00magpie-loopback-probe\x00"
    port.write(marker)
    got = b""
    deadline = time.monotonic() + timeout_s
    while marker not in got and time.monotonic() < deadline:
        got += port.read(max(1, port.in_waiting))
    if marker not in got:
        what = f"{len(got)} other bytes came back" if got else "nothing came back"
        raise RigError("no_loopback", f"{port.portstr}: {what} within {timeout_s} s; is TX wired to "
                                      "RX (and is this an adapter, not an MCU: --target mcu)?")


def run(rig: LoopbackRig, bauds: list[int], soak_s: float, trace: WireTrace) -> list[CheckResult]:
    """Every loopback check on one open port; port problems raise RigError before any runs."""
    results = []
    port = open_loopback(rig, bauds[0], trace)
    try:
        probe(port)
        for name, fn in checks(bauds, soak_s):
            res = CheckResult(name)
            t0 = time.monotonic()
            trace.note(f"check: {name}")
            try:
                res.measurements = fn(port, rig)
            except Exception as exc:  # one check's failure must not hide the others
                log.debug("check %s failed", name, exc_info=True)
                res.error = str(exc) or repr(exc)
            res.seconds = time.monotonic() - t0
            results.append(res)
    finally:
        port.close()
    return results
