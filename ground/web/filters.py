"""The live-view filters shared by the CLI tails (``magpie tlm``, ``magpie events``) and the page.

One definition, so an operator who filters the page's event stream by severity and text gets the
same lines from ``magpie events --severity ... --search ...``. Nothing here imports a web library.

Channel patterns are exact names or shell globs (``power.*``, ``nav.?_m``). ZeroMQ subscriptions
match topic *prefixes* (``tlm.66.power.soc`` also matches ``tlm.66.power.soc_min``), so a
subscription only narrows what arrives; :meth:`ChannelFilter.match` decides.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Event severities, most severe first (flight.model.Severity's names, which the ground receives).
SEVERITIES: tuple[str, ...] = (
    "FATAL", "WARNING_HI", "WARNING_LO", "COMMAND", "ACTIVITY_HI", "ACTIVITY_LO", "DIAGNOSTIC",
)


class FilterError(ValueError):
    """A filter argument is malformed; the message names it and the accepted values."""


def _is_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


@dataclass(frozen=True)
class ChannelFilter:
    """Channel names or globs; empty means every channel."""

    patterns: tuple[str, ...] = ()

    def match(self, name: str) -> bool:
        if not self.patterns:
            return True
        return any(fnmatch.fnmatchcase(name, p) if _is_glob(p) else name == p for p in self.patterns)

    def topics(self, scid: int) -> list[str]:
        """ZeroMQ subscription prefixes that cover the patterns (a glob subscribes to its stem)."""
        if not self.patterns:
            return [f"tlm.{scid}."]
        out = []
        for p in self.patterns:
            stem = p
            for i, ch in enumerate(p):
                if ch in "*?[":
                    stem = p[:i]
                    break
            out.append(f"tlm.{scid}.{stem}")
        return out


def parse_severities(values: Iterable[str] | None) -> frozenset[str]:
    """``WARNING_HI``, ``warning_lo,fatal``, or ``>=WARNING_LO`` (that one and every more severe)."""
    out: set[str] = set()
    for value in values or ():
        for part in str(value).split(","):
            part = part.strip().upper()
            if not part:
                continue
            at_least = part.startswith(">=")
            name = part[2:] if at_least else part
            if name not in SEVERITIES:
                raise FilterError(f"severity {part!r}: expected one of {', '.join(SEVERITIES)} "
                                  "(or >=NAME for that and above)")
            if at_least:
                out.update(SEVERITIES[: SEVERITIES.index(name) + 1])
            else:
                out.add(name)
    return frozenset(out)


@dataclass(frozen=True)
class EventFilter:
    """Severities (empty: all), an exact event name, and a case-insensitive text search."""

    severities: frozenset[str] = frozenset()
    name: str | None = None
    search: str = ""

    def match(self, rec: Mapping[str, Any]) -> bool:
        if self.severities and str(rec.get("severity", "")) not in self.severities:
            return False
        if self.name is not None and rec.get("name") != self.name:
            return False
        if self.search:
            hay = f"{rec.get('name', '')} {rec.get('text', '')}".lower()
            if self.search.lower() not in hay:
                return False
        return True

    @classmethod
    def from_query(cls, severity: Iterable[str] | None, name: str | None, search: str | None) -> EventFilter:
        return cls(parse_severities(severity), name or None, search or "")
