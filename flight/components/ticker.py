"""A small component with realistic per-cycle arithmetic: a filtered counter and a checksum.

Used by the benchmarks and tests as a stand-in for a control-loop member, and handy on a bench
rig to prove the executive is running without any hardware attached.
"""

from __future__ import annotations

import math

from flight.component import Component
from flight.model import Arg, Channel, Param, command


class Ticker(Component):
    OPTIONS = {"work": 20}
    CHANNELS = (
        Channel("count", "u64", doc="steps taken"),
        Channel("filtered", "f64", doc="low-pass filtered sine of the step count"),
    )
    PARAMS = (Param("gain", "f64", 0.1, min=0.0, max=1.0, doc="filter gain"),)

    def setup(self) -> None:
        self._count = 0
        self._y = 0.0
        self._ran = False
        self._work = int(self.options["work"])
        self._gain = self.param("gain")
        # both channels change every step and are downlinked at the housekeeping rate: they are
        # read when sampled (None, nothing to report, until the first step)
        self.provide("count", lambda: self._count if self._ran else None)
        self.provide("filtered", lambda: self._y if self._ran else None)

    def on_param(self, name: str, value: float) -> None:
        if name == "gain":
            self._gain = value

    def step(self) -> None:
        self._count += 1
        x = math.sin(self._count * 0.01)
        acc = 0
        for i in range(self._work):  # a few microseconds of integer work, like a small filter bank
            acc = (acc * 31 + i) & 0xFFFF
        self._y += self._gain * (x - self._y) + acc * 0.0
        self._ran = True

    @command("{NAME}_RESET", Arg("value", "u64", doc="new count"))
    def tick_reset(self, value: int) -> None:
        """Set the step counter."""
        self._count = value
