"""Each built-in scenario flown whole, against its world alone, in the same run.

The figure is simulated seconds per wall second of the scenario flown as ``magpie sim
--scenario`` flies it (every vehicle's flight software, the shared relay, the ground station
and archive; fast mode where the scenario asks for it); the baseline is the same scenario's
site (one world per vehicle on the shared terrain) stepped alone over the same span, so the
ratio is what flight software, link and ground cost on top of the physics.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from bench.common import Row
from mission.fleet import FAST_WORLD, FleetMission
from mission.scenario import builtin_names, load
from sim_hw.site import Site

#: simulated seconds per scenario (quick, full): the interesting part of each plan
SPANS = {"change4-farside": (300.0, 1800.0), "zhurong-utopia": (3600.0, 88775.0),
         "ilrs-southpole": (300.0, 1800.0), "lunar-day": (3600.0, 86400.0), "imaging-demo": (60.0, 180.0),
         "change5-sample-return": (400.0, 900.0)}


def world_alone(name: str, span_s: float) -> float:
    """Simulated seconds per wall second of the scenario's site stepped with no flight software."""
    sc = load(name)
    site = Site(sc.world, [v.site_vehicle() for v in sc.vehicles], **(FAST_WORLD if sc.fast else {}))
    t0 = time.perf_counter()
    start = site.time_s
    step = 0.1
    t = start
    while t < start + span_s:
        t += step
        site.step_to(t)
    return span_s / max(time.perf_counter() - t0, 1e-9)


def scenario(name: str, span_s: float, tmp: Path) -> tuple[float, int]:
    """(simulated seconds per wall second, packets archived) of the whole scenario."""
    sc = load(name)
    m = FleetMission(sc, tmp / name, fast=sc.fast)
    try:
        t0 = time.perf_counter()
        m.advance(m.start_s + span_s)
        wall = time.perf_counter() - t0
        return span_s / max(wall, 1e-9), sum(len(m.archive.packets(c.scid)) for c in m.crafts.values())
    finally:
        m.close()


def run(quick: bool) -> list[Row]:
    logging.getLogger("flight").setLevel(logging.ERROR)
    rows = []
    with tempfile.TemporaryDirectory(prefix="magpie-bench-scenarios-") as tmp:
        for name in builtin_names():
            span = SPANS.get(name, (120.0, 600.0))[0 if quick else 1]
            alone = world_alone(name, span)
            speed, packets = scenario(name, span, Path(tmp))
            rows.append(Row(f"scenario {name} ({span:.0f} s simulated, {packets} packets archived)", speed,
                            "x real", alone, "its world alone, same span", better="higher"))
    return rows
