"""Declarations a component makes about itself: commands, channels, events, parameters.

These dataclasses are the single source of the dictionary. A component lists them on its class
(``CHANNELS``, ``EVENTS``, ``PARAMS``) and marks command handlers with :func:`command`; the
dictionary generator reads nothing else. Identifiers are ``id_base`` of the component instance
plus the declaration's index, so two instances of one class get distinct ids.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flight import types


class Severity(enum.IntEnum):
    """Event severities, most severe first (F Prime's seven)."""

    FATAL = 0
    WARNING_HI = 1
    WARNING_LO = 2
    COMMAND = 3
    ACTIVITY_HI = 4
    ACTIVITY_LO = 5
    DIAGNOSTIC = 6


@dataclass(frozen=True, slots=True)
class Arg:
    """A typed argument of a command or an event."""

    name: str
    type: str
    units: str = ""
    min: float | None = None
    max: float | None = None
    enum: dict[str, int] | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        types.spec(self.type)
        if self.type == "enum" and not self.enum:
            raise ValueError(f"enum argument {self.name!r} needs its labels")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "units": self.units, "min": self.min,
            "max": self.max, "enum": dict(self.enum) if self.enum else None, "doc": self.doc,
        }


@dataclass(frozen=True, slots=True)
class Limits:
    """Red/yellow limits: a value outside ``yellow`` is yellow, outside ``red`` is red."""

    yellow: tuple[float, float] | None = None
    red: tuple[float, float] | None = None

    def state(self, value: Any) -> str:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return "ok"
        if self.red and not self.red[0] <= value <= self.red[1]:
            return "red"
        if self.yellow and not self.yellow[0] <= value <= self.yellow[1]:
            return "yellow"
        return "ok"


@dataclass(frozen=True, slots=True)
class Channel:
    """A telemetry channel. ``update`` is "always" (every housekeeping sample) or "on_change"."""

    name: str
    type: str
    units: str = ""
    doc: str = ""
    limits: Limits = field(default_factory=Limits)
    update: str = "always"

    def __post_init__(self) -> None:
        types.spec(self.type)
        if self.update not in ("always", "on_change"):
            raise ValueError(f"channel {self.name!r}: update must be 'always' or 'on_change'")


@dataclass(frozen=True, slots=True)
class Event:
    """An event: severity, a ``str.format`` template over its arguments, and throttling.

    ``throttle`` is how many times the event may be emitted within ``throttle_window_s`` of
    spacecraft time (0 = never throttled); suppressed occurrences are counted and reported with
    the next one that gets through.
    """

    name: str
    severity: Severity
    format: str
    args: tuple[Arg, ...] = ()
    doc: str = ""
    throttle: int = 0
    throttle_window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter: typed, a default in code, an optional range; settable and saved by command."""

    name: str
    type: str
    default: Any
    units: str = ""
    min: float | None = None
    max: float | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        self.check(self.default)

    def check(self, value: Any) -> Any:
        """Coerce and range-check a value; raises ValueError with the reason."""
        value = types.coerce(self.type, value)
        if self.min is not None and value < self.min:
            raise ValueError(f"{value} is below the minimum {self.min}")
        if self.max is not None and value > self.max:
            raise ValueError(f"{value} is above the maximum {self.max}")
        return value


@dataclass(frozen=True, slots=True)
class CommandDef:
    name: str
    args: tuple[Arg, ...]
    doc: str


COMMAND_ATTR = "_magpie_command"


def command(name: str, *args: Arg, doc: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a component method as the handler of command ``name`` with typed ``args``.

    The handler is called with the checked values as keyword arguments. It returns None when
    the command is complete, returns :data:`flight.commands.PENDING` when it will complete later,
    or raises :class:`flight.commands.CommandFailed` with the reason.
    """

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, COMMAND_ATTR, CommandDef(name, tuple(args), doc or (fn.__doc__ or "").strip()))
        return fn

    return mark
