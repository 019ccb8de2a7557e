"""The NAV_WAYPOINTS argument: ``"x1,y1; x2,y2; ..."`` in metres (world frame).

A command argument is one string of at most 255 bytes, so waypoints travel as text: pairs
separated by ``;``, coordinates by ``,``, spaces ignored. :func:`parse_waypoints` rejects
anything else with a reason; :func:`format_waypoints` writes what it reads.
"""

from __future__ import annotations

import math

MAX_WAYPOINTS = 16


def parse_waypoints(text: str, limit_m: float = 1e4) -> list[tuple[float, float]]:
    """Waypoints from text; raises ValueError saying what is wrong."""
    body = text.replace(" ", "").strip(";")
    if not body:
        raise ValueError("no waypoints given")
    out: list[tuple[float, float]] = []
    for i, part in enumerate(body.split(";"), start=1):
        fields = part.split(",")
        if len(fields) != 2:
            raise ValueError(f"waypoint {i} ({part!r}) is not 'x,y'")
        try:
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            raise ValueError(f"waypoint {i} ({part!r}) is not two numbers") from None
        if not (math.isfinite(x) and math.isfinite(y)) or max(abs(x), abs(y)) > limit_m:
            raise ValueError(f"waypoint {i} ({part!r}) is outside +/-{limit_m:g} m")
        out.append((x, y))
    if len(out) > MAX_WAYPOINTS:
        raise ValueError(f"{len(out)} waypoints; at most {MAX_WAYPOINTS}")
    return out


def format_waypoints(points: list[tuple[float, float]], digits: int = 3) -> str:
    """Text for NAV_WAYPOINTS (coordinates rounded to ``digits`` decimals)."""
    return ";".join(f"{x:.{digits}f},{y:.{digits}f}" for x, y in points)
