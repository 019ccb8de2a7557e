"""Event emission: format, throttle, time-stamp and queue for downlink.

Formatting never raises: an event whose arguments do not fit its format string is still sent,
with its raw arguments, so a bug in a message never hides the fact that something happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flight.clock import NS, Clock
from flight.model import Event, Severity
from flight.outbound import EventRecord, OutboundQueue

log = logging.getLogger("flight.events")

_LOG_LEVEL = {
    Severity.FATAL: logging.CRITICAL,
    Severity.WARNING_HI: logging.WARNING,
    Severity.WARNING_LO: logging.WARNING,
    Severity.COMMAND: logging.INFO,
    Severity.ACTIVITY_HI: logging.INFO,
    Severity.ACTIVITY_LO: logging.DEBUG,
    Severity.DIAGNOSTIC: logging.DEBUG,
}


@dataclass(slots=True)
class _Decl:
    id: int
    component: str
    event: Event
    window_start_ns: int = -1
    count: int = 0
    suppressed: int = 0


class EventLog:
    def __init__(self, clock: Clock, outbound: OutboundQueue) -> None:
        self.clock = clock
        self.outbound = outbound
        self._decls: dict[tuple[str, str], _Decl] = {}
        self.emitted = 0
        self.throttled = 0
        self.by_severity: dict[Severity, int] = {s: 0 for s in Severity}
        self.listeners: list[Any] = []

    def declare(self, eid: int, component: str, event: Event) -> None:
        key = (component, event.name)
        if key in self._decls:
            raise ValueError(f"event {component}.{event.name} declared twice")
        self._decls[key] = _Decl(eid, component, event)

    def emit(self, component: str, name: str, args: dict[str, Any]) -> EventRecord | None:
        decl = self._decls.get((component, name))
        if decl is None:
            raise KeyError(f"component {component!r} declares no event {name!r}")
        ev = decl.event
        now = self.clock.now_ns()
        if ev.throttle:
            if decl.window_start_ns < 0 or now - decl.window_start_ns >= ev.throttle_window_s * NS:
                decl.window_start_ns = now
                decl.count = 0
            if decl.count >= ev.throttle:
                decl.suppressed += 1
                self.throttled += 1
                return None
            decl.count += 1
        try:
            text = ev.format.format(**args)
        except (KeyError, IndexError, ValueError, TypeError, AttributeError):
            text = f"{name} (unformattable) {args!r}"
        if decl.suppressed:
            text += f" [{decl.suppressed} earlier suppressed]"
            decl.suppressed = 0
        values = tuple(args.get(a.name) for a in ev.args) if ev.args else tuple(args.values())
        rec = EventRecord(now, decl.id, name, component, ev.severity, text, values)
        self.emitted += 1
        self.by_severity[ev.severity] += 1
        self.outbound.put(rec)
        log.log(_LOG_LEVEL[ev.severity], "%s.%s: %s", component, name, text)
        for listener in self.listeners:
            listener(rec)
        return rec
