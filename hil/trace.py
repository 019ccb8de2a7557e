"""Wire traces: every byte both ways, time-stamped, printed as a hex dump in pyserial's spy style.

A test or a rig check records into a :class:`WireTrace` (the MCU driver's ``on_wire`` hook, or a
:class:`TracedPort` around a raw port); when something fails the dump shows exactly what crossed
the wire. The trace is bounded: it keeps the newest ``max_bytes`` in each direction.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import Any

import serial


class WireTrace:
    """A bounded, thread-safe record of (time, direction, bytes) chunks."""

    def __init__(self, max_bytes: int = 256 * 1024) -> None:
        self.max_bytes = max_bytes
        self.t0 = time.monotonic()
        self.total = {"tx": 0, "rx": 0}
        self.notes: list[tuple[float, str]] = []
        self._chunks: dict[str, collections.deque[tuple[float, bytes]]] = {
            "tx": collections.deque(), "rx": collections.deque()}
        self._held = {"tx": 0, "rx": 0}
        self._lock = threading.Lock()

    def record(self, direction: str, data: bytes) -> None:
        """Add one chunk; ``direction`` is ``"tx"`` (host to peer) or ``"rx"``."""
        if not data:
            return
        t = time.monotonic() - self.t0
        if direction not in self._chunks:
            raise ValueError(f"direction {direction!r} is not 'tx' or 'rx'")
        with self._lock:
            chunks = self._chunks[direction]
            chunks.append((t, bytes(data)))
            self.total[direction] += len(data)
            self._held[direction] += len(data)
            while self._held[direction] > self.max_bytes and len(chunks) > 1:
                _, old = chunks.popleft()
                self._held[direction] -= len(old)

    def note(self, text: str) -> None:
        """A line of context in the dump (``--- unplug ---``)."""
        with self._lock:
            self.notes.append((time.monotonic() - self.t0, text))

    def dump(self) -> str:
        """The trace as text: one hex-dump block per chunk, like ``spy://``'s hexdump format."""
        with self._lock:
            chunks = [(t, d, b) for d, q in self._chunks.items() for t, b in q]
            notes = list(self.notes)
            total = dict(self.total)
        lines = [f"# wire trace: {total.get('tx', 0)} bytes TX, {total.get('rx', 0)} bytes RX "
                 f"(newest {self.max_bytes} bytes per direction kept)"]
        events: list[tuple[float, int, Any]] = [(t, 0, n) for t, n in notes]
        events += [(t, 1, (d, b)) for t, d, b in chunks]
        events.sort(key=lambda e: (e[0], e[1]))
        for t, kind, item in events:
            if kind == 0:
                lines.append(f"{t:10.6f} --- {item}")
                continue
            direction, data = item
            label = "TX" if direction == "tx" else "RX"
            for offset in range(0, len(data), 16):
                row = data[offset:offset + 16]
                hexes = " ".join(f"{b:02X}" for b in row)
                text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
                lines.append(f"{t:10.6f} {label} {offset:04X}  {hexes:<47}  {text}")
        return "\n".join(lines) + "\n"

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.dump(), encoding="utf-8")
        return path


class TracedPort:
    """A pyserial port whose reads and writes are also recorded in a :class:`WireTrace`."""

    _OWN = ("port", "trace")

    def __init__(self, port: serial.SerialBase, trace: WireTrace) -> None:
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "trace", trace)

    def write(self, data: bytes) -> int | None:
        n = self.port.write(data)
        self.trace.record("tx", data)
        return n

    def read(self, size: int = 1) -> bytes:
        data = self.port.read(size)
        self.trace.record("rx", data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.port, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._OWN:
            object.__setattr__(self, name, value)
        else:  # port settings (baudrate, timeout) go to the port itself
            setattr(self.port, name, value)
