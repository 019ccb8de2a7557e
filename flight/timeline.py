"""The timeline language: time-tagged commands with windows, late policies, deadlines and waits.

One statement a line; ``#`` starts a comment. A full description with examples is in
``docs/SEQUENCES.md``; in short::

    critical                                  # fault protection protects this sequence
    deadline @7200 contingency scoop_only     # done by t=7200 s, else run scoop_only.seq
    contingency scoop_only                    # (without a deadline) where faults and failures go
    +0          MODE_SET mode=SAMPLING
    @600..900   DRILL_START rate_mmps=5 late=skip   # a window: not before 600 s, not after 900 s
    +0          until drill.depth_m >= 2.0 within 600s else goto retract
    retract:                                  # a label names the statement after it
    +5..30      DRILL_RETRACT late=abort

**Time tags.** ``+T`` counts from the end of the previous statement (the first from the start of
the sequence), ``@T`` is spacecraft time (seconds) or an ISO-8601 UTC time through the mission
epoch. ``T`` is seconds or ``[HH:]MM:SS[.fff]``. A window ``+T1..T2`` / ``@T1..T2`` says the
statement may start from T1 and must start by T2.

**Late policy** (``late=run|skip|abort``, a pseudo-argument removed before the command is sent):
what to do when a statement cannot start in time (after its window, or for a plain ``@T`` after
the engine's tolerance). Default ``run`` for a plain tag and ``skip`` for a window (a window says
the command means nothing outside it). Every late statement is reported, whatever the policy.

**Waits.** ``TAG until CHANNEL OP VALUE within DURATION [else goto LABEL | else contingency NAME]``
waits until the channel satisfies the comparison (``< <= > >= == !=``, VALUE a number or
true/false), for at most DURATION (``600``, ``600s``, ``10m``, ``2h``, ``00:10:00``). Without
``else`` a timeout fails the sequence.

**Deadlines and contingencies.** ``deadline TAG contingency NAME`` (``+T`` from the start of the
sequence or ``@T``): when the deadline is missed, or the rest of the sequence can be seen not to
fit before it, the engine switches to the contingency sequence NAME (``NAME`` or ``NAME.seq`` in
the same directory). ``contingency NAME`` alone names where failures and faults go.

Parsing never raises anything but :class:`SequenceError`, which lists every error with its line.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flight.cmdcodec import CommandCodecError, check_args

MAX_LINES = 10_000
#: Contingencies of contingencies are checked (and switched to) this many levels deep, no further.
MAX_CONTINGENCY_DEPTH = 4
LATE_POLICIES = ("run", "skip", "abort")
OPS = ("<=", ">=", "==", "!=", "<", ">")

_NUM = r"\d+(?:\.\d+)?"
_HMS = rf"(?:(?:\d+:)?\d+:)?{_NUM}"
_TAG = re.compile(rf"^([+@])({_HMS})(?:\.\.({_HMS}))?$")
_ISO_WINDOW = re.compile(r"^@(\d{4}-\S+?)(?:\.\.(\d{4}-\S+))?$")
_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_LABEL = re.compile(r"^([a-z_][a-z0-9_]{0,39}):$")
_LABEL_REF = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")
_SEQ_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}$")
_CHANNEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_COND = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)\s*(<=|>=|==|!=|<|>)\s*(\S+)$")
_DURATION = re.compile(rf"^({_NUM})(s|m|h)?$")


class SequenceError(ValueError):
    """A sequence that cannot run; ``errors`` lists (line number, message)."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"line {n}: {m}" for n, m in errors))


@dataclass(frozen=True, slots=True)
class Condition:
    """``channel op value``: what an ``until`` waits for."""

    channel: str
    op: str
    value: float

    def holds(self, v: float) -> bool:
        op, a = self.op, self.value
        return (v < a if op == "<" else v <= a if op == "<=" else v > a if op == ">" else
                v >= a if op == ">=" else v == a if op == "==" else v != a)

    def __str__(self) -> str:
        return f"{self.channel} {self.op} {self.value:g}"


@dataclass(frozen=True, slots=True)
class Step:
    """One timed statement: a command (``kind == "cmd"``) or a wait (``kind == "until"``).

    ``time_s`` is the earliest start (an offset for relative tags, spacecraft seconds for absolute
    ones); ``latest_s`` the end of its window in the same basis, None without a window.
    """

    line: int
    relative: bool
    time_s: float
    name: str
    args: dict[str, str]
    latest_s: float | None = None
    late: str = "run"
    kind: str = "cmd"
    cond: Condition | None = None
    within_s: float = 0.0
    on_timeout: str = "fail"  # fail | goto | contingency
    target: str = ""

    @property
    def what(self) -> str:
        """The statement in a few words (events, the ground's timeline)."""
        return self.name if self.kind == "cmd" else f"until {self.cond}"


@dataclass(frozen=True, slots=True)
class Timeline:
    """A parsed sequence: its steps in order, labels (name -> step index) and directives."""

    steps: tuple[Step, ...]
    labels: dict[str, int] = field(default_factory=dict)
    deadline: tuple[bool, float] | None = None  # (relative to the start, seconds)
    deadline_line: int = 0
    contingency: str = ""
    contingency_line: int = 0
    critical: bool = False
    critical_line: int = 0

    def contingencies(self) -> list[tuple[int, str]]:
        """Every (line, sequence name) this timeline may switch to."""
        out = [(self.contingency_line, self.contingency)] if self.contingency else []
        return out + [(s.line, s.target) for s in self.steps if s.on_timeout == "contingency"]


def _seconds(text: str) -> float:
    parts = text.split(":")
    if len(parts) > 3:
        raise ValueError(f"bad time {text!r}")
    secs = float(parts[-1])
    if len(parts) > 1 and secs >= 60:
        raise ValueError(f"seconds field of {text!r} must be below 60")
    if len(parts) == 3 and int(parts[1]) >= 60:
        raise ValueError(f"minutes field of {text!r} must be below 60")
    try:
        total = secs + sum(int(p) * 60 ** (len(parts) - 1 - i) for i, p in enumerate(parts[:-1]))
    except OverflowError:
        raise ValueError(f"time {text!r} is out of range") from None
    if not math.isfinite(total) or total > 1e12:
        raise ValueError(f"time {text!r} is out of range")
    return total


def _iso(text: str, epoch: datetime | None) -> float:
    if epoch is None:
        raise ValueError("UTC time tags need a mission epoch in the configuration")
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"bad absolute time {text!r}; use @SECONDS or @YYYY-MM-DDTHH:MM:SSZ") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - epoch).total_seconds()


def parse_tag(tag: str, epoch: datetime | None = None) -> tuple[bool, float, float | None]:
    """(relative, earliest, latest or None) of a time tag; ValueError says what is wrong."""
    m = _TAG.match(tag)
    if m:
        sign, t1, t2 = m.groups()
        lo = _seconds(t1)
        hi = None if t2 is None else _seconds(t2)
        if hi is not None and hi < lo:
            raise ValueError(f"window {tag!r} ends before it starts")
        return sign == "+", lo, hi
    m = _ISO_WINDOW.match(tag)
    if m:
        lo = _iso(m.group(1), epoch)
        hi = None if m.group(2) is None else _iso(m.group(2), epoch)
        if hi is not None and hi < lo:
            raise ValueError(f"window {tag!r} ends before it starts")
        return False, lo, hi
    raise ValueError(f"bad time tag {tag!r}; use +SECONDS, +HH:MM:SS, @SECONDS, @UTC or a window T1..T2")


def parse_duration(text: str) -> float:
    """``600``, ``600s``, ``10m``, ``2h`` or ``[HH:]MM:SS``, in seconds; ValueError if not."""
    m = _DURATION.match(text)
    if m:
        v = float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    elif re.match(rf"^{_HMS}$", text):
        v = _seconds(text)
    else:
        raise ValueError(f"bad duration {text!r}; use 600, 600s, 10m, 2h or HH:MM:SS")
    if not math.isfinite(v) or v > 1e9:
        raise ValueError(f"duration {text!r} is out of range")
    return v


def _value(tok: str) -> float:
    low = tok.lower()
    if low in ("true", "false"):
        return 1.0 if low == "true" else 0.0
    try:
        v = float(tok)
    except ValueError:
        raise ValueError(f"{tok!r} is not a number (or true/false)") from None
    if not math.isfinite(v):
        raise ValueError(f"{tok!r} is not a finite number")
    return v


def _until(n: int, relative: bool, t: float, hi: float | None, late: str, words: list[str]) -> Step:
    """The words after ``until``: ``COND within DURATION [else goto LABEL | else contingency NAME]``."""
    try:
        w = words.index("within")
    except ValueError:
        raise ValueError("until needs 'within DURATION' (a wait always has a timeout)") from None
    m = _COND.match(" ".join(words[:w]))
    if not m:
        raise ValueError(f"expected 'CHANNEL OP VALUE' (OP one of {' '.join(OPS)}) after until")
    cond = Condition(m.group(1), m.group(2), _value(m.group(3)))
    rest = words[w + 1:]
    if not rest:
        raise ValueError("within needs a duration")
    within = parse_duration(rest[0])
    on, target = "fail", ""
    if len(rest) > 1:
        if rest[1] != "else" or len(rest) != 4 or rest[2] not in ("goto", "contingency"):
            raise ValueError("after the duration expected 'else goto LABEL' or 'else contingency NAME'")
        on, target = rest[2], rest[3]
        if on == "goto" and not _LABEL_REF.match(target):
            raise ValueError(f"{target!r} is not a label (lower case, digits and _)")
        if on == "contingency" and not _SEQ_NAME.match(target):
            raise ValueError(f"{target!r} is not a sequence name")
    return Step(n, relative, t, "", {}, hi, late, "until", cond, within, on, target)


def parse(text: str, epoch: datetime | None = None) -> Timeline:
    """Parse a timeline; raises SequenceError listing every syntax error with its line."""
    tl, errors = parse_collect(text, epoch)
    if errors:
        raise SequenceError(errors)
    return tl


def parse_collect(text: str, epoch: datetime | None = None) -> tuple[Timeline, list[tuple[int, str]]]:
    """Parse as far as possible: (timeline of the good statements, every (line, error))."""
    steps: list[Step] = []
    errors: list[tuple[int, str]] = []
    labels: dict[str, int] = {}
    label_refs: list[tuple[int, str]] = []
    pending_labels: list[tuple[int, str]] = []
    deadline: tuple[bool, float] | None = None
    deadline_line = 0
    contingency, contingency_line = "", 0
    critical, critical_line = False, 0
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
        try:
            head = words[0]
            lm = _LABEL.match(head)
            if lm and len(words) == 1:
                name = lm.group(1)
                if name in labels or any(name == p for _, p in pending_labels):
                    raise ValueError(f"label {name!r} defined twice")
                pending_labels.append((n, name))
                continue
            if head == "critical":
                if len(words) != 1:
                    raise ValueError("'critical' takes nothing after it")
                critical, critical_line = True, n
                continue
            if head == "deadline":
                if deadline is not None:
                    raise ValueError(f"a second deadline (the first is on line {deadline_line})")
                if len(words) != 4 or words[2] != "contingency":
                    raise ValueError("expected 'deadline TAG contingency NAME'")
                rel, t, hi = parse_tag(words[1], epoch)
                if hi is not None:
                    raise ValueError("a deadline is one time, not a window")
                if rel and t <= 0:
                    raise ValueError("a relative deadline must be after the start (+T with T > 0)")
                _contingency_name(words[3])
                if contingency and contingency != words[3]:
                    raise ValueError(f"contingency {words[3]!r} differs from {contingency!r} on line "
                                     f"{contingency_line}")
                deadline, deadline_line = (rel, t), n
                contingency, contingency_line = words[3], n
                continue
            if head == "contingency":
                if len(words) != 2:
                    raise ValueError("expected 'contingency NAME'")
                _contingency_name(words[1])
                if contingency and contingency != words[1]:
                    raise ValueError(f"contingency {words[1]!r} differs from {contingency!r} on line "
                                     f"{contingency_line}")
                contingency, contingency_line = words[1], n
                continue
            if len(words) < 2:
                raise ValueError("expected a time tag and a command name (or until)")
            relative, t, hi = parse_tag(head, epoch)
            late = "run" if hi is None else "skip"
            body = words[1:]
            kept = [w for w in body if not w.startswith("late=")]
            for w in body:
                if w.startswith("late="):
                    if len(body) - len(kept) > 1:
                        raise ValueError("late= given twice")
                    late = w[5:]
                    if late not in LATE_POLICIES:
                        raise ValueError(f"late={late!r}: expected late=run, late=skip or late=abort")
            if kept and kept[0] == "until":
                step = _until(n, relative, t, hi, late, kept[1:])
                if step.on_timeout == "goto":
                    label_refs.append((n, step.target))
            else:
                if not kept or not _NAME.match(kept[0]):
                    raise ValueError(f"{kept[0] if kept else ''!r} is not a command name (UPPER_SNAKE) or until")
                args: dict[str, str] = {}
                for word in kept[1:]:
                    key, sep, value = word.partition("=")
                    if not sep or not key:
                        raise ValueError(f"argument {word!r} is not name=value")
                    if key in args:
                        raise ValueError(f"argument {key!r} given twice")
                    args[key] = value
                step = Step(n, relative, t, kept[0], args, hi, late)
            if not relative:
                if last_abs is not None and t < last_abs:
                    raise ValueError("absolute time is earlier than a previous absolute time")
                last_abs = t
        except ValueError as exc:
            errors.append((n, str(exc)))
            continue
        for _, name in pending_labels:
            labels[name] = len(steps)
        pending_labels.clear()
        steps.append(step)
    for _, name in pending_labels:
        labels[name] = len(steps)  # a label at the end: jumping there ends the sequence
    for n, name in label_refs:
        if name not in labels:
            errors.append((n, f"unknown label {name!r}"))
    tl = Timeline(tuple(steps), labels, deadline, deadline_line, contingency, contingency_line, critical,
                  critical_line)
    if deadline is not None:
        errors.extend(_deadline_problems(tl))
    return tl, sorted(errors)


def _contingency_name(name: str) -> None:
    if not _SEQ_NAME.match(name) or ".." in name:
        raise ValueError(f"{name!r} is not a sequence name (letters, digits, _ . -; in the same directory)")


def _deadline_problems(tl: Timeline) -> list[tuple[int, str]]:
    """A deadline before the sequence can start, or one its nominal path cannot meet."""
    assert tl.deadline is not None
    rel, d = tl.deadline
    n = tl.deadline_line
    if not rel:
        for s in tl.steps:
            if not s.relative and s.time_s > d:
                return [(n, f"deadline @{d:g} is before line {s.line} may start (@{s.time_s:g})")]
        return []
    total = 0.0
    for s in tl.steps:
        if not s.relative:
            return []  # from here the path depends on when the sequence starts
        total += s.time_s
        if total > d:
            return [(n, f"deadline +{d:g} cannot be met: line {s.line} starts no earlier than +{total:g}")]
    return []


def check(tl: Timeline, commands: Callable[[str], Mapping[str, Any] | None],
          channels: Container[str] | None = None) -> list[tuple[int, str]]:
    """Check a parsed timeline against the dictionary: commands, their arguments and (when
    ``channels`` is given) the channels conditions read. Returns every (line, error)."""
    errors = []
    for s in tl.steps:
        if s.kind == "until":
            assert s.cond is not None
            if channels is not None and s.cond.channel not in channels:
                errors.append((s.line, f"unknown channel {s.cond.channel}"))
            continue
        entry = commands(s.name)
        if entry is None:
            errors.append((s.line, f"unknown command {s.name}"))
            continue
        try:
            check_args(entry, s.args)
        except CommandCodecError as exc:
            errors.append((s.line, str(exc)))
    return errors


def load(text: str, commands: Callable[[str], Mapping[str, Any] | None],
         channels: Container[str] | None = None, epoch: datetime | None = None,
         contingency: Callable[[str], str | None] | None = None) -> Timeline:
    """Parse and check; raises SequenceError with every error found, in line order.

    ``contingency(name)`` returns None when that contingency sequence exists and checks, else
    why not; without it contingency names are not looked up.
    """
    tl, errors = parse_collect(text, epoch)
    errors = errors + check(tl, commands, channels)
    if contingency is not None:
        for n, name in tl.contingencies():
            problem = contingency(name)
            if problem:
                errors.append((n, f"contingency {name}: {problem}"))
    if errors:
        raise SequenceError(sorted(errors))
    return tl


def contingency_file(name: str) -> list[str]:
    """The file names a contingency NAME may be stored under, in the order they are tried."""
    return [name] if name.endswith(".seq") else [f"{name}.seq", name]


def load_file(path: Path, commands: Callable[[str], Mapping[str, Any] | None],
              channels: Container[str] | None = None, epoch: datetime | None = None,
              _seen: frozenset[Path] = frozenset()) -> Timeline:
    """Read, parse and check a sequence file and every contingency it names (looked for beside
    it, see :func:`contingency_file`). Raises SequenceError (every error with its line) or OSError
    / UnicodeDecodeError when the file itself cannot be read."""
    text = path.read_text(encoding="utf-8")
    seen = _seen | {path.resolve()}

    def contingency(name: str) -> str | None:
        for fname in contingency_file(name):
            found = path.parent / fname
            if found.is_file():
                break
        else:
            return f"no file {' or '.join(contingency_file(name))} beside {path.name}"
        if found.resolve() in seen or len(seen) > MAX_CONTINGENCY_DEPTH:
            return None  # a loop back is allowed, and deeper than the engine goes is not needed
        try:
            load_file(found, commands, channels, epoch, seen)
        except SequenceError as exc:
            return f"{len(exc.errors)} error(s): {exc}"[:200]
        except (OSError, UnicodeDecodeError) as exc:
            return f"cannot read {found}: {exc}"
        return None

    return load(text, commands, channels, epoch, contingency)


def plan_files(path: Path) -> list[Path]:
    """A plan and every contingency it names, found beside it (recursively, as deep as the engine
    goes): the files to put on board together. Unreadable or missing ones are left out; the
    vehicle's check reports them."""
    out: list[Path] = [path]
    todo = [(path, 0)]
    while todo:
        current, depth = todo.pop()
        try:
            tl, _ = parse_collect(current.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        for _, name in tl.contingencies():
            for fname in contingency_file(name):
                found = current.parent / fname
                if found.is_file():
                    if found not in out and depth < MAX_CONTINGENCY_DEPTH:
                        out.append(found)
                        todo.append((found, depth + 1))
                    break
    return out
