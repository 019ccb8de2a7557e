"""Shared shape of a benchmark result row and small timing helpers.

A benchmark module ``bench/bench_<area>.py`` exposes ``run(quick: bool) -> list[Row]``; the
runner (``python -m bench``) imports each, prints one table and never asserts anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Row:
    """One measured figure, optionally beside a baseline measured in the same run."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    # "lower" when a smaller figure is better (latency), "higher" when larger is (throughput)
    better: str = "lower"

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline


def percentiles(samples_s: list[float] | np.ndarray, scale: float = 1e6) -> dict[str, float]:
    """p50, p99 and max of a list of durations in seconds, scaled (default: to microseconds)."""
    arr = np.asarray(samples_s, dtype=float) * scale
    if arr.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "p50": float(np.percentile(arr, 50)),
        "p99": float(np.percentile(arr, 99)),
        "max": float(arr.max()),
    }


def time_per_call(fn, repeat: int, *args) -> float:
    """Mean wall seconds per call of fn(*args) over ``repeat`` calls (after one warm-up call)."""
    fn(*args)
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(*args)
    return (time.perf_counter() - t0) / repeat


def best_time_per_call(fn, repeat: int, batches: int = 7) -> float:
    """Wall seconds per call of fn() in the fastest of ``batches`` batches of ``repeat`` calls.

    For microsecond figures on a shared machine: the fastest batch is the one other load
    disturbed least, and a baseline measured the same way in the same run stays comparable.
    """
    fn()
    best = float("inf")
    for _ in range(batches):
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - t0) / repeat)
    return best


def drive_beside_world(vehicle, sim_s: float) -> tuple[float, float]:
    """Simulated seconds per wall second of ``vehicle`` (a lockstep vehicle with the world in
    its loop) driving for ``sim_s``, and of the world alone stepped over the same span with the
    same wheel command. The vehicle is shut down after."""
    from sim_hw.world import World

    vehicle.dispatcher.submit("DRIVE_SET_WHEELS", {"left": 0.1, "right": 0.12})
    t0 = time.perf_counter()
    vehicle.run(until_s=vehicle.clock.now() + sim_s)
    full = sim_s / (time.perf_counter() - t0)
    vehicle.shutdown()
    alone = World.for_mission(seed=1)
    alone.vehicle.set_wheels(0.1, 0.12)
    t0 = time.perf_counter()
    alone.step_to(alone.time_s + sim_s)
    return full, sim_s / (time.perf_counter() - t0)
