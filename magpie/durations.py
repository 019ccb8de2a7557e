"""Parsing durations typed by people: ``90``, ``90s``, ``15m``, ``1h30m``, ``2d``, ``29.5d``."""

from __future__ import annotations

import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


def parse_duration(text: str) -> float:
    """Seconds in a duration string; raises ValueError saying what is accepted."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m or (not m.group(2) and m.end() != len(s)):
            raise ValueError(f"bad duration {text!r}; use e.g. 90, 90s, 15m, 1h30m, 2d")
        total += float(m.group(1)) * _UNITS[m.group(2) or "s"]
        pos = m.end()
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return total


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"
