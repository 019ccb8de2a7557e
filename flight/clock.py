"""Spacecraft time.

One contract, two clocks. Spacecraft time (SCLK) is seconds since the mission epoch, kept in
integer nanoseconds so that a simulated run is exact and repeatable.

* :class:`RealClock` follows the monotonic clock from a start SCLK; it sleeps to absolute
  deadlines, so lateness does not accumulate from cycle to cycle.
* :class:`SimClock` advances only when the executive (or a test) steps it. Listeners registered
  with :meth:`SimClock.on_advance` are told each new time, which is how the simulated world stays
  in lockstep with the flight software without flight code knowing the world exists.

Member execution time is measured with :meth:`Clock.cpu_ns`: real elapsed time on the real clock,
and on the simulated clock the simulated time a member consumed (see :meth:`SimClock.consume`),
so telemetry stays byte-identical between runs of the same seed.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable

NS = 1_000_000_000


class Clock(abc.ABC):
    """Time as the flight software sees it."""

    @abc.abstractmethod
    def now_ns(self) -> int:
        """Spacecraft time in nanoseconds since the mission epoch."""

    @abc.abstractmethod
    def sleep_until(self, deadline_ns: int) -> None:
        """Return at (not before) the absolute spacecraft time ``deadline_ns``."""

    @abc.abstractmethod
    def cpu_ns(self) -> int:
        """A counter for measuring how long code ran (see the module docstring)."""

    @property
    @abc.abstractmethod
    def simulated(self) -> bool:
        """True when time advances only when stepped."""

    def now(self) -> float:
        """Spacecraft time in seconds."""
        return self.now_ns() / NS


class RealClock(Clock):
    """Monotonic time offset to start at ``start_s`` of spacecraft time."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._offset = int(start_s * NS) - time.monotonic_ns()
        self._wake = threading.Event()

    def now_ns(self) -> int:
        return time.monotonic_ns() + self._offset

    def sleep_until(self, deadline_ns: int) -> None:
        # time.sleep on Linux sleeps with clock_nanosleep against CLOCK_MONOTONIC; computing the
        # remaining span from the absolute deadline each time keeps errors from accumulating.
        while True:
            remaining = deadline_ns - self.now_ns()
            if remaining <= 0:
                return
            if self._wake.wait(remaining / NS):
                self._wake.clear()
                return

    def interrupt(self) -> None:
        """Cut a sleep short (used by signal handlers to stop promptly)."""
        self._wake.set()

    def cpu_ns(self) -> int:
        return time.perf_counter_ns()

    @property
    def simulated(self) -> bool:
        return False


class SimClock(Clock):
    """A clock that moves only when told to; deterministic."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = int(round(start_s * NS))
        self._listeners: list[Callable[[int], None]] = []

    def now_ns(self) -> int:
        return self._now

    def on_advance(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(now_ns)`` every time the clock moves forward."""
        self._listeners.append(listener)

    def advance_to(self, t_ns: int) -> None:
        if t_ns <= self._now:
            return
        self._now = t_ns
        for listener in self._listeners:
            listener(t_ns)

    def advance(self, dt_s: float) -> None:
        self.advance_to(self._now + int(round(dt_s * NS)))

    def sleep_until(self, deadline_ns: int) -> None:
        self.advance_to(deadline_ns)

    def consume(self, dt_s: float) -> None:
        """Model ``dt_s`` of execution time spent by the code now running (moves the clock)."""
        self.advance(dt_s)

    def cpu_ns(self) -> int:
        return self._now

    @property
    def simulated(self) -> bool:
        return True
