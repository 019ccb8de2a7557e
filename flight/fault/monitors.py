"""Declarative monitors: a channel, a condition, a persistence count and a response.

A monitor samples one telemetry channel each time fault protection runs (its rate group's
rate). The *condition* is a short expression over the sampled value::

    < 0.3   <= 12.4   > 30   >= 2.5   == true   != 0
    outside -40 60        (value below the first or above the second)
    inside 10 20          (within both, inclusive)
    delta > 0             (the increase since the previous sample: counters, slips)

When the condition holds on ``persistence`` consecutive samples the monitor *trips* and asks for
its response once; it stays tripped (latched) until the condition is false again. A value that
is missing or not a number leaves the count where it was, it neither trips nor clears.

The channel may be a pattern (``thermal.*_c``): the condition holds when it holds for any
matching channel. ``event:component.EventName`` is a virtual channel counting occurrences of an
event since boot, for faults that are over before a sample could see them (a wheel stall, which
the drive itself stops in the same cycle): ``event:drive.WheelStall`` with ``delta > 0``.

Monitors come from the built-in table below, changed or extended by the ``monitors`` table of
the fault component's configuration, and every key is checked once at start-up
(:func:`parse_monitors`); errors name the key (``monitors.tilt.persistence: ...``). A monitor
whose channel does not exist on this vehicle (no comm, no MCU link) is *unavailable* and
reported as such, never an error, so one table serves every vehicle.

Each monitor also says how its fault weighs against a critical sequence (``critical``, see
:data:`CRITICALITY`): power, thermal, tilt and a silent executive are ``survival`` (the default for
a new monitor); a stalled motor, an isolated member or a lost MCU link are ``sequence`` (the
sequence's contingency handles them); cycle slips, a full recorder and a quiet uplink ``defer``.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flight.fault.modes import Mode, parse_mode
from flight.fault.responses import Response, parse_response

_OPS = ("<=", ">=", "==", "!=", "<", ">")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CHANNEL = re.compile(r"^(event:)?[A-Za-z0-9_.*?\[\]-]+$")


class ConditionError(ValueError):
    """A condition expression could not be parsed; the message says what was expected."""


def _number(tok: str, text: str) -> float:
    low = tok.lower()
    if low == "true":
        return 1.0
    if low == "false":
        return 0.0
    try:
        v = float(tok)
    except ValueError:
        raise ConditionError(f"{text!r}: {tok!r} is not a number (or true/false)") from None
    if not math.isfinite(v):
        raise ConditionError(f"{text!r}: {tok!r} is not a finite number")
    return v


@dataclass(frozen=True, slots=True)
class Condition:
    """A parsed condition; :meth:`holds` tests one value (and the previous one, for ``delta``)."""

    op: str  # one of _OPS, "outside", "inside"
    a: float
    b: float = 0.0
    delta: bool = False
    text: str = ""

    def holds(self, value: float, previous: float | None = None) -> bool:
        if self.delta:
            if previous is None:
                return False
            value = value - previous
        op, a = self.op, self.a
        if op == "<":
            return value < a
        if op == "<=":
            return value <= a
        if op == ">":
            return value > a
        if op == ">=":
            return value >= a
        if op == "==":
            return value == a
        if op == "!=":
            return value != a
        if op == "outside":
            return value < a or value > self.b
        return a <= value <= self.b  # inside


def parse_condition(text: str) -> Condition:
    """Parse a condition (see the module docstring); ConditionError says what is wrong."""
    if not isinstance(text, str):
        raise ConditionError(f"expected a condition string like '< 0.3', got {text!r}")
    toks = text.split()
    if not toks:
        raise ConditionError("empty condition; expected e.g. '< 0.3', 'outside -40 60', 'delta > 0'")
    delta = False
    if toks[0].lower() == "delta":
        delta = True
        toks = toks[1:]
        if not toks:
            raise ConditionError(f"{text!r}: 'delta' needs a comparison after it, e.g. 'delta > 0'")
    head = toks[0].lower()
    if head in ("outside", "inside"):
        if delta:
            raise ConditionError(f"{text!r}: 'delta' takes a comparison, not a range")
        if len(toks) != 3:
            raise ConditionError(f"{text!r}: '{head}' takes two numbers, low and high")
        lo, hi = _number(toks[1], text), _number(toks[2], text)
        if lo > hi:
            raise ConditionError(f"{text!r}: the low bound {lo:g} is above the high bound {hi:g}")
        return Condition(head, lo, hi, False, text.strip())
    op = next((o for o in _OPS if toks[0].startswith(o)), None)
    if op is None:
        raise ConditionError(f"{text!r}: expected one of {' '.join(_OPS)}, outside, inside or delta")
    rest = toks[0][len(op):]
    args = ([rest] if rest else []) + toks[1:]
    if len(args) != 1:
        raise ConditionError(f"{text!r}: '{op}' takes exactly one number")
    return Condition(op, _number(args[0], text), 0.0, delta, text.strip())


#: Modes in which a monitor runs unless its configuration says otherwise.
ACTIVE_MODES: frozenset[Mode] = frozenset({Mode.SAFE, Mode.STANDBY, Mode.DRIVE, Mode.SCIENCE})


@dataclass(frozen=True, slots=True)
class MonitorSpec:
    name: str
    channel: str
    condition: Condition
    persistence: int = 1
    response: Response = Response.REPORT
    enabled: bool = True
    modes: frozenset[Mode] = field(default_factory=lambda: ACTIVE_MODES)
    doc: str = ""
    critical: str = "survival"


#: How a fault weighs against a critical sequence (see flight.fault.protection): ``sequence`` the
#: sequence's contingency handles it, ``defer`` it waits until the sequence ends, ``survival`` it
#: threatens the vehicle and is answered at once, sequence or not.
CRITICALITY = ("sequence", "defer", "survival")


def _spec(name: str, channel: str, cond: str, persistence: int, response: Response, doc: str,
          modes: frozenset[Mode] = ACTIVE_MODES, critical: str = "survival") -> MonitorSpec:
    return MonitorSpec(name, channel, parse_condition(cond), persistence, response, True, modes, doc, critical)


#: The built-in monitors (persistence in samples of the fault component's rate group, 1 Hz).
BUILTIN: tuple[MonitorSpec, ...] = (
    _spec("battery_low", "power.soc", "< 0.3", 5, Response.SAFE,
          "battery state of charge low: stop and wait in SAFE"),
    _spec("battery_critical", "power.soc", "< 0.15", 3, Response.HIBERNATE,
          "battery nearly empty: shed loads until the sun returns"),
    _spec("bus_undervoltage", "power.bus_v", "< 12.4", 3, Response.SAFE, "bus below its red limit"),
    _spec("tilt", "imu.tilt_deg", "> 30", 2, Response.SAFE, "tilted past 30 degrees"),
    _spec("motor_overcurrent", "drive.*_current_a", "outside -2.8 2.8", 3, Response.STOP_DRIVE,
          "a motor draws near its stall current", critical="sequence"),
    _spec("wheel_stall", "event:drive.WheelStall", "delta > 0", 1, Response.STOP_DRIVE,
          "the drive reported a stalled wheel", critical="sequence"),
    _spec("temperature", "thermal.*_c", "outside -40 60", 3, Response.SAFE,
          "a temperature outside its red limits"),
    _spec("comm_loss", "comm.uplink_silence_s", "> 86400", 1, Response.SAFE,
          "no authenticated uplink for a day", critical="defer"),
    _spec("cycle_slips", "exec.*.slips", "delta > 0", 5, Response.SAFE,
          "a rate group slipped on five samples in a row", critical="defer"),
    _spec("member_faulted", "exec.*.state", "== 2", 1, Response.SAFE, "an executive member is isolated",
          critical="sequence"),
    _spec("health_fatal", "health.fatal_active", "> 0", 3, Response.RESTART,
          "a worker or rate group silent past the fatal timeout"),
    _spec("mcu_link_down", "link.up", "== false", 5, Response.SAFE, "the microcontroller link is down",
          critical="sequence"),
    _spec("recorder_full", "comm.rec_fill_pct", "> 90", 3, Response.STANDBY,
          "the onboard recorder is nearly full: stop producing data", critical="defer"),
    _spec("dusk", "power.solar_w", "< 3", 30, Response.HIBERNATE,
          "no solar input while idle: the night has come", frozenset({Mode.SAFE, Mode.STANDBY})),
)

_KEYS = {"channel", "condition", "persistence", "response", "enabled", "modes", "doc", "critical"}


def parse_monitors(table: Mapping[str, Any] | None, builtins: bool = True,
                   where: str = "monitors", parse_mode: Callable[[Any], Any] = parse_mode) -> list[MonitorSpec]:
    """The built-in monitors (unless ``builtins`` is false) changed and extended by ``table``.

    ``table`` maps a monitor name to its keys; a built-in's name changes only the keys given.
    Raises ValueError naming the offending key.
    """
    specs: dict[str, MonitorSpec] = {s.name: s for s in BUILTIN} if builtins else {}
    if table is None:
        table = {}
    if not isinstance(table, Mapping):
        raise ValueError(f"{where}: expected a table of monitors, got {type(table).__name__}")
    for name, body in table.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{at}: a monitor name is lower case letters, digits and _, "
                             f"starting with a letter, at most 40 characters")
        if not isinstance(body, Mapping):
            raise ValueError(f"{at}: expected a table with channel, condition, persistence, response")
        unknown = sorted(set(body) - _KEYS)
        if unknown:
            raise ValueError(f"{at}.{unknown[0]}: unknown key; accepted: {', '.join(sorted(_KEYS))}")
        base = specs.get(name)
        if base is None:
            missing = [k for k in ("channel", "condition", "response") if k not in body]
            if missing:
                raise ValueError(f"{at}.{missing[0]}: required for a new monitor")
            base = MonitorSpec(name, "", parse_condition("> 0"))
        changes: dict[str, Any] = {}
        if "channel" in body:
            ch = body["channel"]
            if not isinstance(ch, str) or not _CHANNEL.match(ch):
                raise ValueError(f"{at}.channel: expected a channel name or pattern, got {ch!r}")
            changes["channel"] = ch
        if "condition" in body:
            try:
                changes["condition"] = parse_condition(body["condition"])
            except ConditionError as exc:
                raise ValueError(f"{at}.condition: {exc}") from None
        if "persistence" in body:
            n = body["persistence"]
            if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 100_000:
                raise ValueError(f"{at}.persistence: expected an integer from 1 to 100000, got {n!r}")
            changes["persistence"] = n
        if "response" in body:
            try:
                changes["response"] = parse_response(body["response"])
            except ValueError as exc:
                raise ValueError(f"{at}.response: {exc}") from None
        if "enabled" in body:
            if not isinstance(body["enabled"], bool):
                raise ValueError(f"{at}.enabled: expected true or false, got {body['enabled']!r}")
            changes["enabled"] = body["enabled"]
        if "modes" in body:
            modes = body["modes"]
            if not isinstance(modes, list) or not modes:
                raise ValueError(f"{at}.modes: expected a non-empty list of mode names")
            try:
                parsed = frozenset(parse_mode(m) for m in modes)
            except ValueError as exc:
                raise ValueError(f"{at}.modes: {exc}") from None
            if any(m.name in ("BOOT", "HIBERNATE") for m in parsed):
                raise ValueError(f"{at}.modes: monitors do not run in BOOT or HIBERNATE")
            changes["modes"] = parsed
        if "doc" in body:
            changes["doc"] = str(body["doc"])
        if "critical" in body:
            if body["critical"] not in CRITICALITY:
                raise ValueError(f"{at}.critical: expected one of {', '.join(CRITICALITY)}, got {body['critical']!r}")
            changes["critical"] = body["critical"]
        specs[name] = replace(base, **changes)
    return list(specs.values())


class MonitorState(enum.IntEnum):
    DISABLED = 0
    OK = 1
    COUNTING = 2
    TRIPPED = 3
    UNAVAILABLE = 4  # its channel does not exist on this vehicle
    IDLE = 5  # not evaluated in the present mode


class Monitor:
    """One monitor's run-time state: consecutive count, latch, trips."""

    __slots__ = ("spec", "channels", "enabled", "count", "tripped", "trips", "previous", "last_value",
                 "state", "reader")

    def __init__(self, spec: MonitorSpec, channels: list[str]) -> None:
        self.spec = spec
        self.channels = channels
        self.enabled = spec.enabled
        self.count = 0
        self.tripped = False
        self.trips = 0
        self.previous: dict[str, float] = {}
        self.last_value: float | None = None
        self.state = MonitorState.OK if channels else MonitorState.UNAVAILABLE
        if not self.enabled and channels:
            self.state = MonitorState.DISABLED

    @property
    def available(self) -> bool:
        return bool(self.channels)

    def reset(self) -> None:
        self.count = 0
        self.tripped = False
        self.previous.clear()

    def evaluate(self, values: list[tuple[str, Any]]) -> bool | None:
        """Feed one sample of each channel; True when the monitor trips now.

        Returns None when no channel had a numeric value (the count is left alone).
        """
        cond = self.spec.condition
        holds = False
        seen = False
        for name, raw in values:
            if raw is None or isinstance(raw, str):
                continue
            v = float(raw)
            if not math.isfinite(v):
                continue
            seen = True
            prev = self.previous.get(name)
            self.previous[name] = v
            if cond.holds(v, prev):
                if not holds:
                    self.last_value = v
                holds = True
        if not seen:
            return None
        if not holds:
            self.count = 0
            self.tripped = False
            self.state = MonitorState.OK
            return False
        self.count += 1
        if self.tripped:
            return False
        if self.count >= self.spec.persistence:
            self.tripped = True
            self.trips += 1
            self.state = MonitorState.TRIPPED
            return True
        self.state = MonitorState.COUNTING
        return False
