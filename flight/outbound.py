"""What the vehicle sends home, before the space link: items, the bounded queue, and sinks.

Every item carries spacecraft time. The queue is bounded; when full it drops the oldest item of
the least important class present (housekeeping before events and command responses), counts
every drop by class, and never blocks the executive. Sinks take drained items: a JSON-lines file
and the console now; the onboard recorder of the space link later.
"""

from __future__ import annotations

import heapq
import json
import logging
import sys
from collections import deque
from dataclasses import dataclass
from typing import IO, Any, Protocol

from flight.model import Severity

log = logging.getLogger(__name__)

# Priority classes: lower is more important.
PRIO_EVENT = 0
PRIO_HK = 1
PRIO_THUMB = 2
PRIO_PRODUCT = 3


@dataclass(frozen=True, slots=True)
class EventRecord:
    time_ns: int
    id: int
    name: str
    component: str
    severity: Severity
    text: str
    args: tuple[Any, ...]
    kind = "event"
    priority = PRIO_EVENT

    def to_json(self) -> dict[str, Any]:
        return {"t": self.time_ns / 1e9, "kind": "event", "id": self.id, "name": self.name,
                "component": self.component, "severity": self.severity.name, "text": self.text}


@dataclass(frozen=True, slots=True)
class CommandResponse:
    time_ns: int
    opcode: int
    name: str
    seq: int
    source: str
    stage: str  # ACCEPTED, REJECTED, COMPLETED, FAILED
    reason: str = ""
    kind = "response"
    priority = PRIO_EVENT

    def to_json(self) -> dict[str, Any]:
        return {"t": self.time_ns / 1e9, "kind": "response", "opcode": self.opcode,
                "name": self.name, "seq": self.seq, "source": self.source, "stage": self.stage,
                "reason": self.reason}


@dataclass(frozen=True, slots=True)
class TlmPacket:
    time_ns: int
    samples: tuple[tuple[int, Any], ...]  # (channel id, value)
    kind = "tlm"
    priority = PRIO_HK

    def to_json(self, names: dict[int, str] | None = None) -> dict[str, Any]:
        names = names or {}
        return {"t": self.time_ns / 1e9, "kind": "tlm",
                "samples": {names.get(cid, str(cid)): v for cid, v in self.samples}}


Item = EventRecord | CommandResponse | TlmPacket


class Sink(Protocol):
    def write(self, items: list[Any]) -> None: ...
    def close(self) -> None: ...


class OutboundQueue:
    """Bounded multi-class queue; see the module docstring for the drop policy."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("outbound capacity must be at least 1")
        self.capacity = capacity
        self._classes: dict[int, deque[tuple[int, Any]]] = {}
        self._size = 0
        self._seq = 0
        self.enqueued = 0
        self.dropped: dict[int, int] = {}

    def __len__(self) -> int:
        return self._size

    def put(self, item: Any) -> None:
        prio = item.priority
        if self._size >= self.capacity:
            worst = max((p for p, q in self._classes.items() if q), default=prio)
            if prio > worst or not self._classes.get(worst):
                self.dropped[prio] = self.dropped.get(prio, 0) + 1
                return
            self._classes[worst].popleft()
            self._size -= 1
            self.dropped[worst] = self.dropped.get(worst, 0) + 1
        self._seq += 1
        self._classes.setdefault(prio, deque()).append((self._seq, item))
        self._size += 1
        self.enqueued += 1

    @property
    def total_dropped(self) -> int:
        return sum(self.dropped.values())

    def drain(self) -> list[Any]:
        """Everything queued, in the order it was put."""
        merged = [item for _, item in heapq.merge(*self._classes.values(), key=lambda e: e[0])]
        for q in self._classes.values():
            q.clear()
        self._size = 0
        return merged


class JsonLinesSink:
    """Writes each item as one JSON line; with the simulated clock the file is reproducible."""

    def __init__(self, path: str, channel_names: dict[int, str]) -> None:
        self.path = path
        self._names = channel_names
        self._fh: IO[str] | None = open(path, "w", encoding="utf-8")  # noqa: SIM115

    def write(self, items: list[Any]) -> None:
        if self._fh is None:
            return
        for item in items:
            doc = item.to_json(self._names) if isinstance(item, TlmPacket) else item.to_json()
            self._fh.write(json.dumps(doc, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            self._fh.close()
            self._fh = None


class ConsoleSink:
    """Prints events at or above a severity (and rejected/failed commands) for a person to read."""

    def __init__(self, stream: IO[str] | None = None, min_severity: Severity = Severity.ACTIVITY_HI):
        self.stream = stream or sys.stdout
        self.min_severity = min_severity

    def write(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, EventRecord) and item.severity <= self.min_severity:
                self.stream.write(f"[{item.time_ns / 1e9:12.3f}] {item.severity.name:<11} "
                                  f"{item.component}.{item.name}: {item.text}\n")
            elif isinstance(item, CommandResponse) and item.stage in ("REJECTED", "FAILED"):
                self.stream.write(f"[{item.time_ns / 1e9:12.3f}] {item.stage:<11} {item.name}"
                                  f" (seq {item.seq}): {item.reason}\n")

    def close(self) -> None:
        try:
            self.stream.flush()
        except ValueError:
            pass
