"""Vehicle modes and the transitions allowed between them.

=========  ==============================================================================
BOOT       the flight software is starting; it leaves BOOT for the mode the boot decides
SAFE       a fault happened or the boot was unclean: motion and science stopped, link kept,
           waiting for the ground; only the ground (or hibernation) takes the vehicle out
STANDBY    healthy and idle: commands accepted, nothing moving
DRIVE      driving permitted (motion commands are gated to this mode)
SCIENCE    instruments working, wheels still
HIBERNATE  loads shed for the lunar night or an empty battery; wakes into SAFE
=========  ==============================================================================

That is the rover's table. Another vehicle kind configures its own (:func:`build_table`, the fault
component's ``mode_table`` option): a lander keeps BOOT, SAFE, STANDBY and HIBERNATE and adds its
working modes (SURFACE, SAMPLING, ASCENT_PREP), each reachable from STANDBY and able to fall back
to STANDBY, SAFE and HIBERNATE.

The table is deliberately narrow: from SAFE the only ways out are STANDBY (the ground says all
is well) and HIBERNATE (energy), DRIVE and SCIENCE pass through STANDBY, and HIBERNATE ends in
SAFE so a vehicle that slept always waits for the ground before it moves again.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class Mode(enum.IntEnum):
    BOOT = 0
    SAFE = 1
    STANDBY = 2
    DRIVE = 3
    SCIENCE = 4
    HIBERNATE = 5


TRANSITIONS: dict[Mode, frozenset[Mode]] = {
    Mode.BOOT: frozenset({Mode.SAFE, Mode.STANDBY, Mode.DRIVE, Mode.SCIENCE, Mode.HIBERNATE}),
    Mode.SAFE: frozenset({Mode.STANDBY, Mode.HIBERNATE}),
    Mode.STANDBY: frozenset({Mode.SAFE, Mode.DRIVE, Mode.SCIENCE, Mode.HIBERNATE}),
    Mode.DRIVE: frozenset({Mode.STANDBY, Mode.SAFE, Mode.HIBERNATE}),
    Mode.SCIENCE: frozenset({Mode.STANDBY, Mode.SAFE, Mode.HIBERNATE}),
    Mode.HIBERNATE: frozenset({Mode.SAFE}),
}

#: How protective a mode is: fault responses only ever move the vehicle up this ladder.
SAFETY: dict[Mode, int] = {
    Mode.DRIVE: 0, Mode.SCIENCE: 0, Mode.BOOT: 1, Mode.STANDBY: 1, Mode.SAFE: 2, Mode.HIBERNATE: 3,
}

LABELS: dict[str, int] = {m.name: int(m) for m in Mode}


def parse_mode(text: str | int) -> Mode:
    """A mode from its name (any case) or number; ValueError naming the known modes."""
    if isinstance(text, int) and not isinstance(text, bool):
        try:
            return Mode(text)
        except ValueError:
            pass
    elif isinstance(text, str) and text.strip().upper() in Mode.__members__:
        return Mode[text.strip().upper()]
    raise ValueError(f"unknown mode {text!r}; modes: {', '.join(Mode.__members__)}")


def transition_problem(current: Mode, target: Mode) -> str | None:
    """None when ``current -> target`` is allowed, else the reason it is not."""
    if target == current:
        return f"already in {current.name}"
    allowed = TRANSITIONS[current]
    if target in allowed:
        return None
    names = ", ".join(m.name for m in sorted(allowed))
    return f"{current.name} -> {target.name} is not allowed (from {current.name}: {names})"


CORE_MODES = ("BOOT", "SAFE", "STANDBY", "HIBERNATE")
_MODE_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,19}$")


@dataclass(frozen=True)
class ModeTable:
    """One vehicle kind's modes: the enum, the transitions allowed and the safety ladder."""

    modes: Any  # an IntEnum class; core modes keep the numbers of :class:`Mode`
    transitions: Mapping[Any, frozenset[Any]]
    safety: Mapping[Any, int]

    @property
    def labels(self) -> dict[str, int]:
        return {m.name: int(m) for m in self.modes}

    def parse(self, text: str | int) -> Any:
        """A mode from its name (any case) or number; ValueError naming this table's modes."""
        members = self.modes.__members__
        if isinstance(text, int) and not isinstance(text, bool):
            try:
                return self.modes(text)
            except ValueError:
                pass
        elif isinstance(text, str) and text.strip().upper() in members:
            return members[text.strip().upper()]
        raise ValueError(f"unknown mode {text!r}; modes: {', '.join(members)}")

    def problem(self, current: Any, target: Any) -> str | None:
        """None when ``current -> target`` is allowed, else the reason it is not."""
        if target == current:
            return f"already in {current.name}"
        allowed = self.transitions[current]
        if target in allowed:
            return None
        names = ", ".join(m.name for m in sorted(allowed))
        return f"{current.name} -> {target.name} is not allowed (from {current.name}: {names})"

    def working(self, mode: Any) -> bool:
        """A mode the vehicle does its work in (the lowest rung of the safety ladder)."""
        return self.safety[mode] == 0


DEFAULT_TABLE = ModeTable(Mode, TRANSITIONS, SAFETY)


def build_table(spec: Mapping[str, Any] | None, where: str = "mode_table") -> ModeTable:
    """The rover's table, or one a vehicle configures; ValueError names the offending key.

    ``spec`` maps ``keep`` to the rover working modes to keep (default both DRIVE and SCIENCE) and
    each new mode's NAME to ``{to = [...], safety = 0|1}``: a new mode is entered from BOOT and
    STANDBY, leaves to STANDBY, SAFE, HIBERNATE and the modes in ``to``; ``safety`` 0 is a working
    mode (the default), 1 an idle one like STANDBY.
    """
    if not spec:
        return DEFAULT_TABLE
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: expected a table of modes")
    keep = spec.get("keep", ["DRIVE", "SCIENCE"])
    if not isinstance(keep, list) or any(k not in ("DRIVE", "SCIENCE") for k in keep):
        raise ValueError(f"{where}.keep: expected a list of DRIVE and/or SCIENCE")
    names = [*CORE_MODES, *keep]
    extra: dict[str, Mapping[str, Any]] = {}
    for name, body in spec.items():
        if name == "keep":
            continue
        at = f"{where}.{name}"
        if not isinstance(name, str) or not _MODE_NAME.match(name):
            raise ValueError(f"{at}: a mode name is UPPER_SNAKE, at most 20 characters")
        if name in Mode.__members__:
            raise ValueError(f"{at}: {name} is a built-in mode; only new modes are configured")
        if not isinstance(body, Mapping):
            raise ValueError(f"{at}: expected a table with to and safety")
        unknown = sorted(set(body) - {"to", "safety", "doc"})
        if unknown:
            raise ValueError(f"{at}.{unknown[0]}: unknown key; accepted: doc, safety, to")
        extra[name] = body
    values = {m.name: int(m) for m in Mode if m.name in names}
    for i, name in enumerate(extra):
        values[name] = len(Mode) + i
    modes: Any = enum.IntEnum("Mode", values)  # type: ignore[misc]
    m = modes.__members__
    transitions: dict[Any, set[Any]] = {mode: set() for mode in modes}
    for mode in modes:
        if mode.name in Mode.__members__:
            transitions[mode] = {m[t.name] for t in TRANSITIONS[Mode[mode.name]] if t.name in m}
    safety = {mode: SAFETY[Mode[mode.name]] for mode in modes if mode.name in Mode.__members__}
    for name, body in extra.items():
        at = f"{where}.{name}"
        level = body.get("safety", 0)
        if level not in (0, 1) or isinstance(level, bool):
            raise ValueError(f"{at}.safety: 0 (a working mode) or 1 (an idle mode), got {level!r}")
        safety[m[name]] = int(level)
        to = body.get("to", [])
        if not isinstance(to, list):
            raise ValueError(f"{at}.to: expected a list of mode names")
        dests = {m["STANDBY"], m["SAFE"], m["HIBERNATE"]}
        for t in to:
            if not isinstance(t, str) or t.upper() not in m or t.upper() in ("BOOT", name):
                raise ValueError(f"{at}.to: {t!r} is not another mode of this table ({', '.join(m)})")
            dests.add(m[t.upper()])
        transitions[m[name]] = dests
        transitions[m["BOOT"]].add(m[name])
        transitions[m["STANDBY"]].add(m[name])
    return ModeTable(modes, {k: frozenset(v) for k, v in transitions.items()}, safety)
