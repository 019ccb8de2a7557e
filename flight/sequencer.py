"""Stored sequences: timelines of time-tagged commands, checked before they run, on named engines.

The language (windows, late policies, deadlines with contingencies, waits on telemetry, labels)
is :mod:`flight.timeline` and ``docs/SEQUENCES.md``; the oldest form still holds::

    # A comment; blank lines are ignored.
    +0          CMD_NOOP
    +5          CMD_PING key=7              # 5 s after the previous command completed
    @3600       CMD_NOOP                    # at spacecraft time 3600 s
    @2026-11-21T12:00:00Z CMD_NOOP          # at a UTC time, through the mission epoch

**Engines.** One component (instance ``seq``) runs one engine per name in the vehicle's
``[vehicle] sequences`` list (default: one engine, ``main``), so sampling, comm and thermal
timelines can run side by side. ``SEQ_START``/``SEQ_STOP``/``SEQ_CONTINGENCY`` take the engine;
``SEQ_RUN``/``SEQ_CANCEL`` act on the first engine, as they always did. The ``seq.*`` channels
describe the first engine (``seq.state`` is the busiest engine's state, so "is anything running"
stays one channel); with named engines each also has ``seq.<engine>.*``.

**Checking.** Before a sequence starts every line is parsed and checked against the dictionary
(commands, arguments, condition channels) and every contingency it names is found and checked
too, so a contingency is known good before the moment it is needed. Every error is reported with
its line number and nothing starts.

**Running.** Each step reports a ``SeqStep`` event with its planned and actual start, its end and
its outcome: the timeline the ground prints (``magpie timeline``). A step that cannot start in
time follows its late policy with a ``SeqLate`` event; a missed deadline (or one the rest of the
sequence is seen not to fit before) switches to the contingency with ``SeqContingency``; a
command that is rejected, fails or does not complete, and a wait that times out without ``else``,
fail the sequence: to its contingency when it has one, else a ``SeqFailed`` stop.

**Critical sequences** (``critical`` in the file) are protected by fault protection: it sends a
fault the sequence can handle to the engine's contingency (``seq.contingency`` in the data store)
instead of SAFE. ``seq.critical`` in the data store lists the engines running one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from flight.clock import NS
from flight.commands import CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Param, Severity, command
from flight.outbound import CommandResponse
from flight.timeline import MAX_CONTINGENCY_DEPTH, MAX_LINES, SequenceError, Step, Timeline, contingency_file
from flight.timeline import check as check_timeline
from flight.timeline import load as load_timeline
from flight.timeline import parse_collect as _parse_timeline

log = logging.getLogger(__name__)

__all__ = ["MAX_LINES", "SeqLine", "SequenceError", "Sequencer", "check", "load", "parse"]

#: A parsed statement (the name older code knows).
SeqLine = Step

IDLE, WAITING, EXECUTING, WAITING_COND = 0, 1, 2, 3
STATE_NAMES = {IDLE: "idle", WAITING: "waiting", EXECUTING: "executing", WAITING_COND: "waiting on a condition"}
DEFAULT_ENGINE = "main"


def parse(text: str, epoch: datetime | None = None) -> list[SeqLine]:
    """Parse a sequence into its commands; raises SequenceError listing every error with its line."""
    tl, errors = _parse_timeline(text, epoch)
    if errors:
        raise SequenceError(errors)
    return [s for s in tl.steps if s.kind == "cmd"]


def check(lines: list[SeqLine], lookup: Any) -> list[tuple[int, str]]:
    """Check parsed commands against the dictionary; returns every (line, error)."""
    return check_timeline(Timeline(tuple(lines)), lookup)


def load(text: str, lookup: Any, epoch: datetime | None = None) -> list[SeqLine]:
    """Parse and check; raises SequenceError with every error found, in line order."""
    tl, errors = _parse_timeline(text, epoch)
    errors = sorted(errors + check_timeline(tl, lookup))
    if errors:
        raise SequenceError(errors)
    return [s for s in tl.steps if s.kind == "cmd"]


class _Engine:
    """One named engine's run state; the Sequencer component drives it and speaks for it."""

    def __init__(self, name: str, prefix: str) -> None:
        self.name = name
        self.prefix = prefix  # telemetry prefix: "" for the legacy channels only, "<name>." otherwise
        self.tl = Timeline(())
        self.file = ""
        self.state = IDLE
        self.idx = 0
        self.depth = 0
        self.start_ns = 0
        self.mark_ns = 0
        self.due_ns = 0
        self.latest_ns: int | None = None
        self.deadline_ns: int | None = None
        self.step_start_ns = 0
        self.step_reported = True  # the started step's SeqStep has been sent
        self.late_note = ""
        self.cmd_deadline_ns = 0
        self.wait_end_ns = 0
        self.seq_no = 0
        self.result: CommandResponse | None = None
        self.runs = 0
        self.failures = 0
        self.late = 0
        self.contingencies = 0

    @property
    def step(self) -> Step:
        return self.tl.steps[self.idx]

    @property
    def critical(self) -> bool:
        return self.state != IDLE and self.tl.critical


class Sequencer(Component):
    """Runs stored timelines on one or more named engines (instance name ``seq``)."""

    OPTIONS = {"dir": "", "engines": []}
    CHANNELS = (
        Channel("state", "u8", doc="0 idle, 1 waiting for a time tag, 2 executing a command, 3 waiting on a "
                "condition (the busiest engine)", update="on_change"),
        Channel("name", "str", doc="sequence running or last run (first engine)", update="on_change"),
        Channel("line", "u32", doc="line of the current statement (first engine)", update="on_change"),
        Channel("done", "u32", doc="statements finished in this run (first engine)", update="on_change"),
        Channel("total", "u32", doc="statements in this run (first engine)", update="on_change"),
        Channel("runs", "u32", doc="sequences started (first engine)", update="on_change"),
        Channel("failures", "u32", doc="sequences stopped by an error (first engine)", update="on_change"),
        Channel("late", "u32", doc="statements that could not start in time, every engine", update="on_change"),
        Channel("contingencies", "u32", doc="switches to a contingency, every engine", update="on_change"),
        Channel("active", "u8", doc="engines running a sequence", update="on_change"),
    )
    _ENGINE_CHANNELS = (
        ("state", "u8", "0 idle, 1 waiting for a time tag, 2 executing, 3 waiting on a condition"),
        ("file", "str", "sequence running or last run"),
        ("line", "u32", "line of the current statement"),
        ("done", "u32", "statements finished in this run"),
        ("runs", "u32", "sequences started"),
        ("failures", "u32", "sequences stopped by an error"),
        ("late", "u32", "statements that could not start in time"),
        ("contingencies", "u32", "switches to a contingency"),
        ("critical", "bool", "a critical sequence is running"),
    )
    EVENTS = (
        Event("SeqStarted", Severity.ACTIVITY_HI, "sequence {name} started on {engine} ({total} commands)",
              (Arg("name", "str"), Arg("total", "u32"), Arg("engine", "str"))),
        Event("SeqCompleted", Severity.ACTIVITY_HI, "sequence {name} completed on {engine}",
              (Arg("name", "str"), Arg("engine", "str"))),
        Event("SeqFailed", Severity.WARNING_HI, "sequence {name} stopped at line {line}: {reason}",
              (Arg("name", "str"), Arg("line", "u32"), Arg("reason", "str"), Arg("engine", "str"))),
        Event("SeqCancelled", Severity.ACTIVITY_HI, "sequence {name} cancelled at line {line}",
              (Arg("name", "str"), Arg("line", "u32"), Arg("engine", "str"))),
        Event("SeqLineError", Severity.WARNING_LO, "{name} line {line}: {error}",
              (Arg("name", "str"), Arg("line", "u32"), Arg("error", "str")),
              throttle=20, throttle_window_s=10.0),
        Event("SeqStatus", Severity.ACTIVITY_HI, "{status}", (Arg("status", "str"),)),
        Event("SeqStep", Severity.ACTIVITY_LO,
              "{engine} {name}:{line} {step}: planned {planned_s} s, started {start_s} s, ended {end_s} s: "
              "{outcome}",
              (Arg("engine", "str"), Arg("name", "str"), Arg("line", "u32"), Arg("step", "str"),
               Arg("planned_s", "f64", "s"), Arg("latest_s", "f64", "s"), Arg("start_s", "f64", "s"),
               Arg("end_s", "f64", "s"), Arg("outcome", "str")),
              throttle=200, throttle_window_s=60.0,
              doc="one finished statement: planned start (latest_s -1 without a window), actual start and end"),
        Event("SeqLate", Severity.WARNING_LO,
              "{engine} {name}:{line} {step} late by {late_s} s: {policy}",
              (Arg("engine", "str"), Arg("name", "str"), Arg("line", "u32"), Arg("step", "str"),
               Arg("late_s", "f64", "s"), Arg("policy", "str")), throttle=50, throttle_window_s=60.0),
        Event("SeqContingency", Severity.WARNING_HI,
              "{engine}: {name} -> contingency {contingency}: {reason}",
              (Arg("engine", "str"), Arg("name", "str"), Arg("contingency", "str"), Arg("reason", "str"))),
        Event("SeqWaitTimeout", Severity.WARNING_LO,
              "{engine} {name}:{line} until {condition} timed out after {within_s} s (last {value}): {then}",
              (Arg("engine", "str"), Arg("name", "str"), Arg("line", "u32"), Arg("condition", "str"),
               Arg("within_s", "f64", "s"), Arg("value", "str"), Arg("then", "str")),
              throttle=50, throttle_window_s=60.0),
    )
    PARAMS = (
        Param("cmd_timeout_s", "f32", 60.0, "s", min=0.1, max=86400,
              doc="how long a sequence waits for one command to complete"),
        Param("late_tolerance_s", "f32", 1.0, "s", min=0.0, max=86400,
              doc="how far past its time a step without a window may start before it counts as late"),
    )

    def __init__(self, name: str = "seq", **options: Any) -> None:
        super().__init__(name, **options)
        names = [str(e) for e in self.options["engines"]] or [DEFAULT_ENGINE]
        bad = [e for e in names if not e.isidentifier() or not e.islower() or len(e) > 20]
        if bad:
            raise ValueError(f"vehicle.sequences: {bad[0]!r} is not an engine name (lower case, digits, _)")
        if len(set(names)) != len(names):
            raise ValueError("vehicle.sequences: engine names must be unique")
        named = bool(self.options["engines"])
        self.engines: dict[str, _Engine] = {n: _Engine(n, f"{n}." if named else "") for n in names}
        self._first = self.engines[names[0]]
        self._seq_no = 0  # one count for every engine, so a response finds the engine that sent it

    def channels(self) -> tuple[Channel, ...]:
        out = list(self.CHANNELS)
        for eng in self.engines.values():
            if eng.prefix:
                out += [Channel(f"{eng.prefix}{n}", t, doc=f"{d} (engine {eng.name})", update="on_change")
                        for n, t, d in self._ENGINE_CHANNELS]
        return tuple(out)

    def setup(self) -> None:
        d = self.options["dir"]
        self.dir = Path(d) if d else self.fw.state_dir / "sequences"
        self.fw.cmd.listeners.append(self._on_response)
        self.fw.store["seq.contingency"] = self.contingency_for_fault
        self._publish()

    # -- telemetry ------------------------------------------------------------------------------

    def _publish(self) -> None:
        engines = list(self.engines.values())
        first = self._first
        self.tlm("state", max(e.state for e in engines))
        self.tlm("name", first.file)
        self.tlm("line", first.step.line if first.state and first.idx < len(first.tl.steps) else 0)
        self.tlm("done", first.idx if first.state else 0)
        self.tlm("total", len(first.tl.steps))
        self.tlm("runs", first.runs)
        self.tlm("failures", first.failures)
        self.tlm("late", sum(e.late for e in engines))
        self.tlm("contingencies", sum(e.contingencies for e in engines))
        self.tlm("active", sum(1 for e in engines if e.state))
        for e in engines:
            if e.prefix:
                p = e.prefix
                self.tlm(p + "state", e.state)
                self.tlm(p + "file", e.file)
                self.tlm(p + "line", e.step.line if e.state and e.idx < len(e.tl.steps) else 0)
                self.tlm(p + "done", e.idx if e.state else 0)
                self.tlm(p + "runs", e.runs)
                self.tlm(p + "failures", e.failures)
                self.tlm(p + "late", e.late)
                self.tlm(p + "contingencies", e.contingencies)
                self.tlm(p + "critical", e.critical)
        self.publish("critical", [e.name for e in engines if e.critical])

    # -- loading --------------------------------------------------------------------------------

    def _resolve(self, file: str) -> Path:
        rel = Path(file)
        if rel.is_absolute() or ".." in rel.parts or not file:
            raise CommandFailed(f"sequence name {file!r} must be a relative path inside {self.dir}")
        return self.dir / rel

    def _contingency_path(self, base: str, name: str) -> Path | None:
        folder = Path(base).parent
        for fname in contingency_file(name):
            path = self.dir / folder / fname
            if path.is_file():
                return path
        return None

    def _load(self, file: str, seen: frozenset[str] = frozenset()) -> Timeline:
        """Read, parse and check ``file`` and (recursively) its contingencies; SequenceError if not."""
        path = self._resolve(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandFailed(f"cannot read {path}: {exc}") from None
        seen = seen | {file}

        def contingency(name: str) -> str | None:
            found = self._contingency_path(file, name)
            if found is None:
                return f"no file {' or '.join(contingency_file(name))} beside {file}"
            rel = str(found.relative_to(self.dir))
            if rel in seen or len(seen) > MAX_CONTINGENCY_DEPTH:
                return None  # a loop back is allowed, and deeper than the engine goes is not needed
            try:
                self._load(rel, seen)
            except SequenceError as exc:
                return f"{len(exc.errors)} error(s): {exc}"[:200]
            except CommandFailed as exc:
                return str(exc)
            return None

        return load_timeline(text, self.fw.cmd.entry, set(self.fw.tlm.names()), self.fw.epoch, contingency)

    def check_text(self, text: str) -> Timeline:
        """Parse and check a sequence without running it (raises SequenceError)."""
        return load_timeline(text, self.fw.cmd.entry, set(self.fw.tlm.names()), self.fw.epoch)

    def _engine(self, name: str) -> _Engine:
        eng = self.engines.get(name)
        if eng is None:
            raise CommandFailed(f"no sequence engine {name!r}; engines: {', '.join(self.engines)}")
        return eng

    # -- commands -------------------------------------------------------------------------------

    def _start(self, eng: _Engine, file: str) -> None:
        if eng.state != IDLE:
            raise CommandFailed(f"sequence {eng.file} is still running on {eng.name}; stop it first")
        try:
            tl = self._load(file)
        except SequenceError as exc:
            for n, msg in exc.errors:
                self.event("SeqLineError", name=file, line=n, error=msg)
            raise CommandFailed(f"{file}: {len(exc.errors)} error(s): {exc}") from None
        if not tl.steps:
            raise CommandFailed(f"{file} holds no commands")
        eng.depth = 0
        self._begin(eng, file, tl)

    def _begin(self, eng: _Engine, file: str, tl: Timeline) -> None:
        now = self.fw.clock.now_ns()
        eng.tl, eng.file, eng.idx = tl, file, 0
        eng.runs += 1
        eng.start_ns = eng.mark_ns = now
        eng.deadline_ns = None
        if tl.deadline is not None:
            rel, d = tl.deadline
            eng.deadline_ns = now + int(d * NS) if rel else int(d * NS)
        self.event("SeqStarted", name=file, total=len(tl.steps), engine=eng.name)
        busy = self.fw.store.get("fault.busy")
        if callable(busy):
            busy()  # fast idle (simulation) ends now, not at fault protection's next slow cycle
        self._arm(eng)
        self._publish()

    @command("SEQ_RUN", Arg("file", "str", doc="sequence file, relative to the sequence directory"))
    def seq_run(self, file: str) -> None:
        """Check a sequence against the dictionary and start it on the first engine."""
        self._start(self._first, file)

    @command("SEQ_START", Arg("engine", "str", doc="engine name (vehicle.sequences)"),
             Arg("file", "str", doc="sequence file, relative to the sequence directory"))
    def seq_start(self, engine: str, file: str) -> None:
        """Check a sequence against the dictionary and start it on the named engine."""
        self._start(self._engine(engine), file)

    def _stop(self, eng: _Engine) -> None:
        if eng.state == IDLE:
            raise CommandFailed(f"no sequence is running on {eng.name}")
        line = eng.step.line if eng.idx < len(eng.tl.steps) else 0
        self._report_unfinished(eng, "cancelled")
        eng.state = IDLE
        self.event("SeqCancelled", name=eng.file, line=line, engine=eng.name)
        self._publish()

    @command("SEQ_CANCEL")
    def seq_cancel(self) -> None:
        """Stop the sequence running on the first engine."""
        self._stop(self._first)

    @command("SEQ_STOP", Arg("engine", "str", doc="engine name (vehicle.sequences)"))
    def seq_stop(self, engine: str) -> None:
        """Stop the sequence running on the named engine."""
        self._stop(self._engine(engine))

    @command("SEQ_CONTINGENCY", Arg("engine", "str", doc="engine name (vehicle.sequences)"))
    def seq_contingency(self, engine: str) -> None:
        """Switch the named engine's running sequence to its contingency now."""
        eng = self._engine(engine)
        if eng.state == IDLE:
            raise CommandFailed(f"no sequence is running on {eng.name}")
        if not eng.tl.contingency:
            raise CommandFailed(f"{eng.file} names no contingency")
        self._switch(eng, eng.tl.contingency, "commanded")

    @command("SEQ_STATUS")
    def seq_status(self) -> None:
        """Report each engine's state in an event."""
        for eng in self.engines.values():
            head = f"{eng.name}: " if eng.prefix else ""
            if eng.state == IDLE:
                status = (f"{head}idle; last: {eng.file or 'none'}; runs {eng.runs}, failures {eng.failures}, "
                          f"late {eng.late}, contingencies {eng.contingencies}")
            else:
                s = eng.step
                status = (f"{head}{eng.file}: command {eng.idx + 1}/{len(eng.tl.steps)} "
                          f"({s.what}, line {s.line}) {STATE_NAMES[eng.state]}")
                if eng.deadline_ns is not None:
                    status += f"; deadline t={eng.deadline_ns / NS:.1f} s"
            self.event("SeqStatus", status=status[:200])

    # -- fault protection's door ----------------------------------------------------------------

    def contingency_for_fault(self, engine: str, cause: str) -> bool:
        """Switch a running critical sequence to its contingency for a fault (fault protection
        calls this through ``seq.contingency``); False when there is none to switch to."""
        eng = self.engines.get(engine)
        if eng is None or not eng.critical or not eng.tl.contingency or eng.depth >= MAX_CONTINGENCY_DEPTH:
            return False
        return self._switch(eng, eng.tl.contingency, f"fault: {cause}")

    # -- running --------------------------------------------------------------------------------

    def _arm(self, eng: _Engine) -> None:
        s = eng.step
        base = eng.mark_ns if s.relative else 0
        eng.due_ns = base + int(s.time_s * NS)
        if s.latest_s is not None:
            eng.latest_ns = base + int(s.latest_s * NS)
        else:
            eng.latest_ns = eng.due_ns + int(float(self.param("late_tolerance_s")) * NS)
        eng.state = WAITING
        if eng.deadline_ns is not None:
            finish = self._earliest_finish(eng)
            if finish > eng.deadline_ns:
                self._switch(eng, eng.tl.contingency,
                             f"deadline t={eng.deadline_ns / NS:.1f} s cannot be met (line "
                             f"{s.line} onwards needs until t={finish / NS:.1f} s)")

    def _earliest_finish(self, eng: _Engine) -> int:
        """The earliest time the rest of the nominal path can have started its last step."""
        t = max(eng.mark_ns, self.fw.clock.now_ns())
        for s in eng.tl.steps[eng.idx:]:
            t = t + int(s.time_s * NS) if s.relative else max(t, int(s.time_s * NS))
        return t

    def _on_response(self, resp: CommandResponse) -> None:
        if resp.source != "seq" or resp.stage not in ("COMPLETED", "FAILED", "REJECTED"):
            return
        for eng in self.engines.values():
            if eng.state == EXECUTING and resp.seq == eng.seq_no:
                eng.result = resp

    def _step_event(self, eng: _Engine, outcome: str, start_ns: int | None = None) -> None:
        s = eng.step
        base = eng.mark_ns if s.relative else 0
        now = self.fw.clock.now_ns()
        eng.step_reported = True
        self.event("SeqStep", engine=eng.name, name=eng.file, line=s.line, step=s.what[:80],
                   planned_s=round(eng.due_ns / NS, 3),
                   latest_s=-1.0 if s.latest_s is None else round((base + int(s.latest_s * NS)) / NS, 3),
                   start_s=round((now if start_ns is None else start_ns) / NS, 3), end_s=round(now / NS, 3),
                   outcome=(eng.late_note + outcome)[:120])

    def _report_unfinished(self, eng: _Engine, outcome: str) -> None:
        """A step that started and is left unfinished still gets its SeqStep (the timeline's row)."""
        if eng.state in (EXECUTING, WAITING_COND) and not eng.step_reported and eng.idx < len(eng.tl.steps):
            self._step_event(eng, outcome, eng.step_start_ns)

    def _fail(self, eng: _Engine, reason: str) -> None:
        if eng.tl.contingency and eng.depth < MAX_CONTINGENCY_DEPTH:
            self._switch(eng, eng.tl.contingency, reason)
            return
        eng.failures += 1
        line = eng.step.line if eng.idx < len(eng.tl.steps) else 0
        self.event("SeqFailed", name=eng.file, line=line, reason=reason[:200], engine=eng.name)
        eng.state = IDLE
        self._publish()

    def _switch(self, eng: _Engine, name: str, reason: str) -> bool:
        """Leave the running sequence for the contingency ``name``; False (and a stop) if it cannot run."""
        self._report_unfinished(eng, f"interrupted: {reason}")
        self.event("SeqContingency", engine=eng.name, name=eng.file, contingency=name, reason=reason[:200])
        eng.contingencies += 1
        path = self._contingency_path(eng.file, name)
        tl: Timeline | None = None
        problem = ""
        if eng.depth >= MAX_CONTINGENCY_DEPTH:
            problem = f"contingency depth {MAX_CONTINGENCY_DEPTH} reached"
        elif path is None:
            problem = f"contingency {name} not found"
        else:
            try:
                tl = self._load(str(path.relative_to(self.dir)))
            except (SequenceError, CommandFailed) as exc:
                problem = f"contingency {name} cannot run: {exc}"
        if tl is None or path is None or not tl.steps:
            eng.failures += 1
            line = eng.step.line if eng.idx < len(eng.tl.steps) else 0
            self.event("SeqFailed", name=eng.file, line=line, reason=(problem or f"{name} is empty")[:200],
                       engine=eng.name)
            eng.state = IDLE
            self._publish()
            return False
        eng.late_note = ""
        eng.depth += 1
        self._begin(eng, str(path.relative_to(self.dir)), tl)
        return True

    def _advance(self, eng: _Engine, to: int | None = None) -> None:
        eng.late_note = ""
        eng.idx = eng.idx + 1 if to is None else to
        if eng.idx >= len(eng.tl.steps):
            eng.state = IDLE
            self.event("SeqCompleted", name=eng.file, engine=eng.name)
        else:
            eng.mark_ns = self.fw.clock.now_ns()
            self._arm(eng)
        self._publish()

    def step(self) -> None:
        for eng in self.engines.values():
            if eng.state != IDLE:
                self._step_engine(eng)

    def _step_engine(self, eng: _Engine) -> None:
        now = self.fw.clock.now_ns()
        if eng.deadline_ns is not None and now > eng.deadline_ns:
            self._switch(eng, eng.tl.contingency, f"deadline t={eng.deadline_ns / NS:.1f} s missed at line "
                         f"{eng.step.line}")
            return
        s = eng.step
        if eng.state == WAITING:
            if now < eng.due_ns:
                return
            if eng.latest_ns is not None and now > eng.latest_ns:
                eng.late += 1
                late_s = round((now - eng.latest_ns) / NS, 3)
                policy = {"run": "running it", "skip": "skipped", "abort": "aborting the sequence"}[s.late]
                self.event("SeqLate", engine=eng.name, name=eng.file, line=s.line, step=s.what[:80],
                           late_s=late_s, policy=policy)
                if s.late == "skip":
                    self._step_event(eng, "skipped (late)")
                    self._advance(eng)
                    return
                if s.late == "abort":
                    self._step_event(eng, "aborted (late)")
                    self._fail(eng, f"line {s.line} {s.what} late by {late_s} s")
                    return
                eng.late_note = f"late by {late_s} s, "
            eng.step_start_ns = now
            eng.step_reported = False
            if s.kind == "until":
                eng.state = WAITING_COND
                eng.wait_end_ns = now + int(s.within_s * NS)
                self._publish()
                self._check_wait(eng, now)
                return
            self._seq_no += 1
            eng.seq_no = self._seq_no
            eng.result = None
            if not self.fw.cmd.submit(s.name, s.args, source="seq", seq=eng.seq_no):
                self._fail(eng, "command queue full")
                return
            eng.state = EXECUTING
            eng.cmd_deadline_ns = now + int(float(self.param("cmd_timeout_s")) * NS)
            self._publish()
            return
        if eng.state == WAITING_COND:
            self._check_wait(eng, now)
            return
        if eng.state == EXECUTING:
            result = eng.result
            if result is None:
                if now > eng.cmd_deadline_ns:
                    self._step_event(eng, "timed out", eng.step_start_ns)
                    self._fail(eng, f"{s.name} did not complete in time")
                return
            if result.stage != "COMPLETED":
                self._step_event(eng, result.stage.lower(), eng.step_start_ns)
                self._fail(eng, f"{result.name} {result.stage.lower()}: {result.reason}")
                return
            self._step_event(eng, "completed", eng.step_start_ns)
            self._advance(eng)

    def _check_wait(self, eng: _Engine, now: int) -> None:
        s = eng.step
        assert s.cond is not None
        value = self.fw.tlm.get(s.cond.channel)
        number = _number(value)
        if number is not None and s.cond.holds(number):
            self._step_event(eng, f"met ({s.cond.channel} = {number:g})", eng.step_start_ns)
            self._advance(eng)
            return
        if now < eng.wait_end_ns:
            return
        last = "none" if number is None else f"{number:g}"
        then = {"goto": f"goto {s.target}", "contingency": f"contingency {s.target}",
                "fail": "the sequence fails"}[s.on_timeout]
        self.event("SeqWaitTimeout", engine=eng.name, name=eng.file, line=s.line, condition=str(s.cond),
                   within_s=s.within_s, value=last, then=then)
        self._step_event(eng, f"timed out ({then})", eng.step_start_ns)
        if s.on_timeout == "goto":
            self._advance(eng, eng.tl.labels[s.target])
        elif s.on_timeout == "contingency":
            self._switch(eng, s.target, f"line {s.line}: until {s.cond} timed out after {s.within_s:g} s")
        else:
            self._fail(eng, f"until {s.cond} timed out after {s.within_s:g} s")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        f = float(value)
        return f if f == f else None
    return None

