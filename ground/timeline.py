"""The sequence timeline from the archive: planned against actual, step by step, engine by engine.

The vehicle's sequencer reports every finished statement in a ``SeqStep`` event (planned start,
the end of its window, actual start and end, outcome) and every switch to a contingency in a
``SeqContingency`` event. This module reads those back from the archive and lays them out, so an
operator sees where a timeline slipped, which commands ran late or were skipped, and when it left
for its contingency. ``magpie timeline`` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: SeqStep's arguments in the order the vehicle declares them (checked against the flight
#: dictionary by the tests).
STEP_ARGS = ("engine", "name", "line", "step", "planned_s", "latest_s", "start_s", "end_s", "outcome")
#: The events besides SeqStep that mark the timeline, with the argument naming the engine.
MARKERS = {"SeqStarted": 2, "SeqCompleted": 1, "SeqFailed": 3, "SeqCancelled": 2, "SeqContingency": 0,
           "SeqLate": None}


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the timeline: a finished step, or a marker (start, switch, stop) when ``step`` is ''."""

    time: float
    engine: str
    file: str = ""
    line: int = 0
    step: str = ""
    planned_s: float | None = None
    latest_s: float | None = None
    start_s: float | None = None
    end_s: float | None = None
    outcome: str = ""

    @property
    def slip_s(self) -> float | None:
        """How much later than planned the step started."""
        if self.planned_s is None or self.start_s is None:
            return None
        return self.start_s - self.planned_s


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def rows_from_events(events: Iterable[Any], engine: str | None = None) -> list[Row]:
    """Timeline rows from archived events (objects with ``name``, ``text``, ``args``, ``time``)."""
    out: list[Row] = []
    for e in events:
        args = list(e.args) if isinstance(e.args, list | tuple) else []
        if e.name == "SeqStep" and len(args) == len(STEP_ARGS):
            d = dict(zip(STEP_ARGS, args, strict=True))
            latest = _num(d["latest_s"])
            row = Row(float(e.time), str(d["engine"]), str(d["name"]), int(_num(d["line"]) or 0), str(d["step"]),
                      _num(d["planned_s"]), None if latest is None or latest < 0 else latest,
                      _num(d["start_s"]), _num(d["end_s"]), str(d["outcome"]))
        elif e.name in MARKERS and e.name != "SeqLate":
            at = MARKERS[e.name]
            eng = str(args[at]) if at is not None and len(args) > at else "?"
            row = Row(float(e.time), eng, outcome=f"{e.name}: {e.text}")
        else:
            continue
        if engine is None or row.engine == engine:
            out.append(row)
    return out


def _t(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def format_rows(rows: list[Row]) -> list[str]:
    """The timeline as text lines: a header, then engine by engine (in the order they first appear,
    a blank line between) one line per step or marker, in time order."""
    order: dict[str, int] = {}
    for r in rows:
        order.setdefault(r.engine, len(order))
    rows = sorted(rows, key=lambda r: order[r.engine])  # stable: time order within an engine
    lines = [f"{'engine':<10} {'file:line':<22} {'step':<28} {'planned':>9} {'window':>9} {'start':>9} "
             f"{'end':>9} {'slip':>8}  outcome"]
    previous = None
    for r in rows:
        if previous is not None and r.engine != previous:
            lines.append("")
        previous = r.engine
        if not r.step:
            lines.append(f"{r.engine:<10} {'':<22} {'--':<28} {'':>9} {'':>9} {_t(r.time):>9} {'':>9} {'':>8}  "
                         f"{r.outcome}")
            continue
        slip = r.slip_s
        lines.append(f"{r.engine:<10} {f'{r.file}:{r.line}':<22.22} {r.step:<28.28} {_t(r.planned_s):>9} "
                     f"{_t(r.latest_s):>9} {_t(r.start_s):>9} {_t(r.end_s):>9} "
                     f"{'-' if slip is None else f'{slip:+.1f}':>8}  {r.outcome}")
    return lines
