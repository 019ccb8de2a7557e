"""Health: pings that prove workers and rate groups are still being served.

Every cycle the health member sends each worker a ping through its job queue; the answer comes
back only if the worker thread is taking work. A worker (or a rate group that has not run) that
stays silent past the warning timeout raises a WARNING_HI event, past the fatal timeout a FATAL
event, and fault listeners are told. Recovery is reported too.

A rate group that fault protection slowed is given three of its own periods on top of the
timeouts, and a suspended group (hibernation) is not expected to run at all. How many items are
fatally silent right now is published in the data store as ``health.fatal_active``: fault
protection kicks the hardware watchdog only while it is zero.
"""

from __future__ import annotations

from flight.clock import NS
from flight.component import Component
from flight.model import Arg, Channel, Event, Param, Severity


class Health(Component):
    CHANNELS = (
        Channel("pings", "u32", doc="health pings sent", update="on_change"),
        Channel("warnings", "u32", doc="health warnings raised", update="on_change"),
        Channel("fatals", "u32", doc="health fatal timeouts", update="on_change"),
        Channel("fatal_active", "u16", doc="items silent past the fatal timeout now", update="on_change"),
    )
    EVENTS = (
        Event("HealthWarning", Severity.WARNING_HI, "{what} silent for {silent_s} s",
              (Arg("what", "str"), Arg("silent_s", "f32"))),
        Event("HealthFatal", Severity.FATAL, "{what} silent for {silent_s} s",
              (Arg("what", "str"), Arg("silent_s", "f32"))),
        Event("HealthRecovered", Severity.ACTIVITY_HI, "{what} answering again", (Arg("what", "str"),)),
    )
    PARAMS = (
        Param("warn_s", "f32", 5.0, "s", min=0.1, max=3600, doc="silence before a warning"),
        Param("fatal_s", "f32", 20.0, "s", min=0.1, max=36000, doc="silence before a fatal event"),
    )

    def setup(self) -> None:
        self._key = 0
        self._warnings = 0
        self._fatals = 0
        now = self.fw.clock.now_ns()
        self._last_seen: dict[str, int] = {}
        self._state: dict[str, int] = {}
        ex = self.fw.executive
        for w in ex.workers:
            self._last_seen[f"worker {w.name}"] = now
        for g in ex.groups:
            self._last_seen[f"rate group {g.name}"] = now

    def step(self) -> None:
        clock = self.fw.clock
        now = clock.now_ns()
        ex = self.fw.executive
        self._key += 1
        for w in ex.workers:
            if clock.simulated:
                # Lockstep: answer now, so the outcome never depends on host speed. A worker busy
                # with a job is covered by the executive's deterministic delivery of that job.
                if w.depth and w.alive or w.ping_wait(self._key, timeout_s=1.0):
                    self._last_seen[f"worker {w.name}"] = now
                continue
            if w.pongs():
                self._last_seen[f"worker {w.name}"] = now
            w.ping(self._key)
        slack: dict[str, int] = {}
        for g in ex.groups:
            key = f"rate group {g.name}"
            if g.suspended:
                self._last_seen[key] = now  # not expected to run
                continue
            if g.last_release_ns >= 0:
                self._last_seen[key] = max(self._last_seen[key], g.last_release_ns)
            if g.current_hz != g.hz:
                slack[key] = 3 * g.period_ns
        warn_ns = self.param("warn_s") * NS
        fatal_ns = self.param("fatal_s") * NS
        for what, seen in self._last_seen.items():
            silent = now - seen - slack.get(what, 0)
            level = 2 if silent > fatal_ns else 1 if silent > warn_ns else 0
            previous = self._state.get(what, 0)
            if level == previous:
                continue
            self._state[what] = level
            if level == 1 and previous == 0:
                self._warnings += 1
                self.event("HealthWarning", what=what, silent_s=round(silent / NS, 3))
            elif level == 2:
                self._fatals += 1
                self.event("HealthFatal", what=what, silent_s=round(silent / NS, 3))
                ex._notify_fault("health", what, f"silent {silent / NS:.1f} s")
            elif level == 0:
                self.event("HealthRecovered", what=what)
        active = sum(1 for level in self._state.values() if level == 2)
        self.publish("fatal_active", active)
        self.tlm("fatal_active", active)
        self.tlm("pings", self._key)
        self.tlm("warnings", self._warnings)
        self.tlm("fatals", self._fatals)
