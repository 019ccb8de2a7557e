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

The table is deliberately narrow: from SAFE the only ways out are STANDBY (the ground says all
is well) and HIBERNATE (energy), DRIVE and SCIENCE pass through STANDBY, and HIBERNATE ends in
SAFE so a vehicle that slept always waits for the ground before it moves again.
"""

from __future__ import annotations

import enum


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
