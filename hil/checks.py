"""Results of rig checks: measurements beside their limits, per check and per run.

A check returns :class:`Measurement` objects. Each has a limit and says whether it met it;
``timing`` marks figures that depend on the machine's speed and load (goodput, latency, rates).

Every limit is enforced, on hardware and on emulated rigs alike, so a regression fails where it
shows. A timing figure has two limits (:class:`TimingLimit`): the rig's, which a real board or
adapter must meet, and a looser one for an emulated rig, which shares a loaded CI machine with
everything else (two cores, other jobs) yet still meets it with a wide margin; a driver that
grew a 100 ms stall per command, a pacing loop that lost half the line, or a watchdog that
fires late fails either way. The limit applied is the one a measurement shows (``emulated``
marks the looser kind). Figures an emulated line cannot mean anything for (goodput on an
unpaced pty) are reported without a limit.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Measurement:
    """One figure: ``value`` in ``unit`` against ``limit`` (text such as ``>= 0.70``)."""

    name: str
    value: float
    unit: str
    limit: str
    ok: bool
    timing: bool = False
    emulated: bool = False  # the limit is the emulated rig's (see TimingLimit)

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        value = f"{self.value:.4g}" if isinstance(self.value, float) else str(self.value)
        kind = ""
        if self.timing and self.limit != "reported":
            kind = " (timing, emulated-rig limit)" if self.emulated else " (timing)"
        return f"    {mark} {self.name}: {value} {self.unit}   limit {self.limit}{kind}"


@dataclass(frozen=True, slots=True)
class TimingLimit:
    """A timing limit for a rig (``hardware``) and the looser one an emulated rig is held to."""

    hardware: float
    emulated: float

    def pick(self, emulated_rig: bool) -> float:
        return self.emulated if emulated_rig else self.hardware


def at_least(name: str, value: float, limit: float | TimingLimit, unit: str, timing: bool = False,
             emulated_rig: bool = False) -> Measurement:
    """``value >= limit``; a :class:`TimingLimit` picks by ``emulated_rig`` and marks it timing."""
    emulated = isinstance(limit, TimingLimit) and emulated_rig
    bound = limit.pick(emulated_rig) if isinstance(limit, TimingLimit) else limit
    return Measurement(name, value, unit, f">= {bound:g}", value >= bound,
                       timing or isinstance(limit, TimingLimit), emulated)


def at_most(name: str, value: float, limit: float | TimingLimit, unit: str, timing: bool = False,
            emulated_rig: bool = False) -> Measurement:
    """``value <= limit``; a :class:`TimingLimit` picks by ``emulated_rig`` and marks it timing."""
    emulated = isinstance(limit, TimingLimit) and emulated_rig
    bound = limit.pick(emulated_rig) if isinstance(limit, TimingLimit) else limit
    return Measurement(name, value, unit, f"<= {bound:g}", value <= bound,
                       timing or isinstance(limit, TimingLimit), emulated)


def within(name: str, value: float, centre: float, tolerance: TimingLimit, unit: str,
           emulated_rig: bool = False) -> Measurement:
    """``value`` within ``centre`` times (1 +- tolerance), the tolerance picked by the rig."""
    tol = tolerance.pick(emulated_rig)
    lo, hi = centre * (1 - tol), centre * (1 + tol)
    return Measurement(name, value, unit, f"{lo:g}..{hi:g}", lo <= value <= hi, True, emulated_rig)


def equals(name: str, value: float, want: float, unit: str = "") -> Measurement:
    return Measurement(name, value, unit, f"== {want:g}", value == want, False)


def info(name: str, value: float, unit: str) -> Measurement:
    """A figure reported for the record, with no limit."""
    return Measurement(name, value, unit, "reported", True, False)


class CheckFailed(AssertionError):
    """A check could not complete (no answer, wrong data); the message says what was seen."""


@dataclass(slots=True)
class CheckResult:
    """The outcome of one check."""

    name: str
    measurements: list[Measurement] = field(default_factory=list)
    error: str = ""
    skipped: str = ""
    seconds: float = 0.0

    def passed(self, enforce_timing: bool = True) -> bool:
        if self.error:
            return False
        return all(m.ok for m in self.measurements if enforce_timing or not m.timing)


@dataclass(slots=True)
class Report:
    """A whole rig check: what was tested, where, and every result."""

    target: str
    port: str
    rig: str
    emulated: bool
    baud: list[int]
    results: list[CheckResult] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    host: str = field(default_factory=platform.node)

    @property
    def passed(self) -> bool:
        return all(r.passed() for r in self.results if not r.skipped)

    def text(self) -> str:
        lines = [f"magpie hil check: {self.target} rig {self.rig}",
                 f"  port {self.port}, baud {', '.join(map(str, self.baud))}, host {self.host}, "
                 f"{self.started}"]
        if self.emulated:
            lines.append("  NOTE: no --port given; this ran against the EMULATOR on a "
                         "pseudo-terminal, not hardware")
        for r in self.results:
            if r.skipped:
                lines.append(f"  SKIP {r.name}: {r.skipped}")
                continue
            lines.append(f"  {'PASS' if r.passed() else 'FAIL'} {r.name} ({r.seconds:.2f} s)")
            lines += [m.line() for m in r.measurements]
            if r.error:
                lines.append(f"    error: {r.error}")
        done = [r for r in self.results if not r.skipped]
        failed = [r for r in done if not r.passed()]
        lines.append(f"  {'PASSED' if not failed else 'FAILED'}: {len(done) - len(failed)} of "
                     f"{len(done)} checks passed"
                     + (f", {len(self.results) - len(done)} skipped" if len(done) < len(self.results)
                        else ""))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = self.passed
        for r, res in zip(doc["results"], self.results, strict=True):
            r["passed"] = res.passed() if not res.skipped else None
        return doc

    def write_json(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path
