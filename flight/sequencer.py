"""Stored sequences: a text file of time-tagged commands, checked before it runs.

The format, one command a line::

    # A comment; blank lines are ignored.
    +0          CMD_NOOP
    +5          CMD_PING key=7              # 5 s after the previous command completed
    +00:01:30   PRM_SET name=health.warn_s value=8
    @3600       CMD_NOOP                    # at spacecraft time 3600 s
    @2026-11-21T12:00:00Z CMD_NOOP          # at a UTC time, through the mission epoch

Relative tags (``+SECONDS`` or ``+[HH:]MM:SS[.fff]``) count from the completion of the previous
command (the first from the start of the sequence); absolute tags (``@SECONDS`` of spacecraft
time, or an ISO-8601 UTC time) wait until then. Arguments are ``name=value`` pairs; quote values
with spaces (``value="a b"``). Before a sequence starts every line is parsed and checked against
the dictionary (command names, argument names, types, ranges) and every error is reported with
its line number. While it runs, a command that is rejected, fails or does not complete within the
timeout stops the sequence with an event.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flight.clock import NS
from flight.cmdcodec import CommandCodecError, check_args
from flight.commands import CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Param, Severity, command
from flight.outbound import CommandResponse

_REL = re.compile(r"^\+(?:(?:(\d+):)?(\d+):)?(\d+(?:\.\d+)?)$")
_ABS_SCLK = re.compile(r"^@(\d+(?:\.\d+)?)$")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
MAX_LINES = 10_000


@dataclass(frozen=True, slots=True)
class SeqLine:
    line: int
    relative: bool
    time_s: float  # offset for relative tags, spacecraft seconds for absolute ones
    name: str
    args: dict[str, str]


class SequenceError(ValueError):
    """A sequence that cannot run; ``errors`` lists (line number, message)."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"line {n}: {m}" for n, m in errors))


def _parse_tag(tag: str, epoch: datetime | None) -> tuple[bool, float]:
    m = _REL.match(tag)
    if m:
        h, mnt, s = m.groups()
        if (h or mnt) and float(s) >= 60:
            raise ValueError(f"seconds field of {tag!r} must be below 60")
        return True, int(h or 0) * 3600 + int(mnt or 0) * 60 + float(s)
    m = _ABS_SCLK.match(tag)
    if m:
        return False, float(m.group(1))
    if tag.startswith("@"):
        if epoch is None:
            raise ValueError("UTC time tags need a mission epoch in the configuration")
        try:
            when = datetime.fromisoformat(tag[1:].replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"bad absolute time {tag!r}; use @SECONDS or @YYYY-MM-DDTHH:MM:SSZ") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return False, (when - epoch).total_seconds()
    raise ValueError(f"bad time tag {tag!r}; use +SECONDS, +HH:MM:SS, @SECONDS or @UTC")


def parse(text: str, epoch: datetime | None = None) -> list[SeqLine]:
    """Parse a sequence; raises SequenceError listing every syntax error with its line."""
    lines, errors = _parse(text, epoch)
    if errors:
        raise SequenceError(errors)
    return lines


def _parse(text: str, epoch: datetime | None) -> tuple[list[SeqLine], list[tuple[int, str]]]:
    lines: list[SeqLine] = []
    errors: list[tuple[int, str]] = []
    last_abs: float | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        if n > MAX_LINES:
            errors.append((n, f"sequence longer than {MAX_LINES} lines"))
            break
        try:
            words = shlex.split(raw, comments=True)
        except ValueError as exc:
            errors.append((n, f"cannot split line: {exc}"))
            continue
        if not words:
            continue
        if len(words) < 2:
            errors.append((n, "expected a time tag and a command name"))
            continue
        try:
            relative, t = _parse_tag(words[0], epoch)
        except ValueError as exc:
            errors.append((n, str(exc)))
            continue
        name = words[1]
        if not _NAME.match(name):
            errors.append((n, f"{name!r} is not a command name (UPPER_SNAKE)"))
            continue
        args: dict[str, str] = {}
        for word in words[2:]:
            key, sep, value = word.partition("=")
            if not sep or not key:
                errors.append((n, f"argument {word!r} is not name=value"))
                break
            if key in args:
                errors.append((n, f"argument {key!r} given twice"))
                break
            args[key] = value
        else:
            if not relative:
                if last_abs is not None and t < last_abs:
                    errors.append((n, "absolute time is earlier than a previous absolute time"))
                last_abs = t
            lines.append(SeqLine(n, relative, t, name, args))
    return lines, errors


def check(lines: list[SeqLine], lookup: Callable[[str], Mapping[str, Any] | None]) -> list[tuple[int, str]]:
    """Check parsed lines against the dictionary; returns every (line, error)."""
    errors = []
    for ln in lines:
        entry = lookup(ln.name)
        if entry is None:
            errors.append((ln.line, f"unknown command {ln.name}"))
            continue
        try:
            check_args(entry, ln.args)
        except CommandCodecError as exc:
            errors.append((ln.line, str(exc)))
    return errors


def load(text: str, lookup: Callable[[str], Mapping[str, Any] | None],
         epoch: datetime | None = None) -> list[SeqLine]:
    """Parse and check; raises SequenceError with every error found, in line order."""
    lines, errors = _parse(text, epoch)
    errors = sorted(errors + check(lines, lookup))
    if errors:
        raise SequenceError(errors)
    return lines


IDLE, WAITING, EXECUTING = 0, 1, 2


class Sequencer(Component):
    """Runs one stored sequence at a time from the sequence directory (instance name ``seq``)."""

    OPTIONS = {"dir": ""}
    CHANNELS = (
        Channel("state", "u8", doc="0 idle, 1 waiting for a time tag, 2 executing a command",
                update="on_change"),
        Channel("name", "str", doc="sequence running or last run", update="on_change"),
        Channel("line", "u32", doc="line of the current command", update="on_change"),
        Channel("done", "u32", doc="commands completed in this run", update="on_change"),
        Channel("total", "u32", doc="commands in this run", update="on_change"),
        Channel("runs", "u32", doc="sequences started", update="on_change"),
        Channel("failures", "u32", doc="sequences stopped by an error", update="on_change"),
    )
    EVENTS = (
        Event("SeqStarted", Severity.ACTIVITY_HI, "sequence {name} started ({total} commands)",
              (Arg("name", "str"), Arg("total", "u32"))),
        Event("SeqCompleted", Severity.ACTIVITY_HI, "sequence {name} completed", (Arg("name", "str"),)),
        Event("SeqFailed", Severity.WARNING_HI, "sequence {name} stopped at line {line}: {reason}",
              (Arg("name", "str"), Arg("line", "u32"), Arg("reason", "str"))),
        Event("SeqCancelled", Severity.ACTIVITY_HI, "sequence {name} cancelled at line {line}",
              (Arg("name", "str"), Arg("line", "u32"))),
        Event("SeqLineError", Severity.WARNING_LO, "{name} line {line}: {error}",
              (Arg("name", "str"), Arg("line", "u32"), Arg("error", "str")),
              throttle=20, throttle_window_s=10.0),
        Event("SeqStatus", Severity.ACTIVITY_HI, "{status}", (Arg("status", "str"),)),
    )
    PARAMS = (
        Param("cmd_timeout_s", "f32", 60.0, "s", min=0.1, max=86400,
              doc="how long a sequence waits for one command to complete"),
    )

    def setup(self) -> None:
        d = self.options["dir"]
        self.dir = Path(d) if d else self.fw.state_dir / "sequences"
        self._lines: list[SeqLine] = []
        self._state = IDLE
        self._idx = 0
        self._due_ns = 0
        self._deadline_ns = 0
        self._mark_ns = 0
        self._seq_no = 0
        self._name = ""
        self._runs = 0
        self._failures = 0
        self._result: CommandResponse | None = None
        self.fw.cmd.listeners.append(self._on_response)
        self._publish()

    def _publish(self) -> None:
        self.tlm("state", self._state)
        self.tlm("name", self._name)
        self.tlm("line", self._lines[self._idx].line if self._state and self._idx < len(self._lines) else 0)
        self.tlm("done", self._idx if self._state else 0)
        self.tlm("total", len(self._lines))
        self.tlm("runs", self._runs)
        self.tlm("failures", self._failures)

    def _resolve(self, file: str) -> Path:
        rel = Path(file)
        if rel.is_absolute() or ".." in rel.parts or not file:
            raise CommandFailed(f"sequence name {file!r} must be a relative path inside {self.dir}")
        return self.dir / rel

    @command("SEQ_RUN", Arg("file", "str", doc="sequence file, relative to the sequence directory"))
    def seq_run(self, file: str) -> None:
        """Check a sequence against the dictionary and start it."""
        if self._state != IDLE:
            raise CommandFailed(f"sequence {self._name} is still running; SEQ_CANCEL it first")
        path = self._resolve(file)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandFailed(f"cannot read {path}: {exc}") from None
        try:
            lines = load(text, self.fw.cmd.entry, self.fw.epoch)
        except SequenceError as exc:
            for n, msg in exc.errors:
                self.event("SeqLineError", name=file, line=n, error=msg)
            raise CommandFailed(f"{file}: {len(exc.errors)} error(s): {exc}") from None
        if not lines:
            raise CommandFailed(f"{file} holds no commands")
        self._lines = lines
        self._name = file
        self._idx = 0
        self._runs += 1
        self._mark_ns = self.fw.clock.now_ns()
        self._arm()
        self.event("SeqStarted", name=file, total=len(lines))
        self._publish()

    @command("SEQ_CANCEL")
    def seq_cancel(self) -> None:
        """Stop the running sequence."""
        if self._state == IDLE:
            raise CommandFailed("no sequence is running")
        line = self._lines[self._idx].line
        self._state = IDLE
        self.event("SeqCancelled", name=self._name, line=line)
        self._publish()

    @command("SEQ_STATUS")
    def seq_status(self) -> None:
        """Report the sequencer's state in an event."""
        if self._state == IDLE:
            status = f"idle; last: {self._name or 'none'}; runs {self._runs}, failures {self._failures}"
        else:
            ln = self._lines[self._idx]
            status = (f"{self._name}: command {self._idx + 1}/{len(self._lines)} "
                      f"({ln.name}, line {ln.line}) {'executing' if self._state == EXECUTING else 'waiting'}")
        self.event("SeqStatus", status=status)

    def check_text(self, text: str) -> list[SeqLine]:
        """Parse and check a sequence without running it (raises SequenceError)."""
        return load(text, self.fw.cmd.entry, self.fw.epoch)

    # -- running ------------------------------------------------------------------------------

    def _arm(self) -> None:
        ln = self._lines[self._idx]
        self._due_ns = self._mark_ns + int(ln.time_s * NS) if ln.relative else int(ln.time_s * NS)
        self._state = WAITING

    def _on_response(self, resp: CommandResponse) -> None:
        if self._state == EXECUTING and resp.source == "seq" and resp.seq == self._seq_no:
            if resp.stage in ("COMPLETED", "FAILED", "REJECTED"):
                self._result = resp

    def _fail(self, reason: str) -> None:
        self._failures += 1
        self.event("SeqFailed", name=self._name, line=self._lines[self._idx].line, reason=reason)
        self._state = IDLE
        self._publish()

    def step(self) -> None:
        if self._state == IDLE:
            return
        now = self.fw.clock.now_ns()
        if self._state == WAITING and now >= self._due_ns:
            ln = self._lines[self._idx]
            self._seq_no += 1
            self._result = None
            if not self.fw.cmd.submit(ln.name, ln.args, source="seq", seq=self._seq_no):
                self._fail("command queue full")
                return
            self._state = EXECUTING
            self._deadline_ns = now + int(self.param("cmd_timeout_s") * NS)
            self._publish()
            return
        if self._state == EXECUTING:
            result = self._result
            if result is None:
                if now > self._deadline_ns:
                    self._fail(f"{self._lines[self._idx].name} did not complete in time")
                return
            if result.stage != "COMPLETED":
                self._fail(f"{result.name} {result.stage.lower()}: {result.reason}")
                return
            self._idx += 1
            if self._idx >= len(self._lines):
                self._state = IDLE
                self.event("SeqCompleted", name=self._name)
            else:
                self._mark_ns = now
                self._arm()
            self._publish()
