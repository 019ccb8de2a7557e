"""Simulated world: camera rendering, physics step cost and simulated time per wall second.

Each figure sits beside a baseline measured in the same run:

* a rendered grey frame against ``cv2.remap`` of an image of the same size (the cost of a
  plain image warp, the least any renderer that touches every pixel must pay), and against the
  numpy reference renderer on the same image; renders are the best of several runs, so other
  load on the machine disturbs them least;
* one physics step of a driving vehicle against a bare Python call (the loop overhead floor);
* simulated seconds per wall second, driving (every 20 ms step integrated) and parked (the
  world skips to the next power/thermal step).
"""

from __future__ import annotations

import logging
import math
import time

import cv2
import numpy as np

from bench.common import Row, time_per_call
from sim_hw.render import camera_model
from sim_hw.world import World

log = logging.getLogger(__name__)


def _warp_baseline(width: int, height: int) -> float:
    img = np.random.default_rng(0).integers(0, 255, (height, width), dtype=np.uint8)
    c, s = math.cos(0.1), math.sin(0.1)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    mx = (c * (xs - width / 2) - s * (ys - height / 2) + width / 2).astype(np.float32)
    my = (s * (xs - width / 2) + c * (ys - height / 2) + height / 2).astype(np.float32)
    return time_per_call(lambda: cv2.remap(img, mx, my, cv2.INTER_LINEAR), 20)


def _noop() -> None:
    return None


def _best_of(fn, repeat: int) -> float:
    """Fastest of ``repeat`` timed calls after a warm-up: the figure least disturbed by other load."""
    fn()
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    t0 = time.perf_counter()
    world = World("moon", seed=1, start_hours_after_sunrise=72.0)
    rows.append(Row("world build (100 m map at 0.1 m, terrain + caches)", time.perf_counter() - t0, "s"))

    repeat = 3 if quick else 8
    pose = world.camera_pose("navcam")
    sun = world.sun_vector()
    for width, height, target in ((640, 480, "<= 15 ms"), (1280, 960, "<= 50 ms")):
        model = camera_model(width, height, 60.0)
        secs = _best_of(lambda m=model: world.renderer.render(m, pose, sun), repeat)
        base = _warp_baseline(width, height)
        rows.append(Row(f"render {width}x{height} grey", secs * 1e3, "ms", base * 1e3,
                        "cv2.remap same size", target))
        ref = _best_of(lambda m=model: world.renderer.render_reference(m, pose, sun), 1 if quick else 2)
        rows.append(Row(f"render {width}x{height} grey vs the numpy reference", secs * 1e3, "ms", ref * 1e3,
                        "reference renderer same image"))
    model = camera_model(640, 480, 60.0)
    left, right = pose.stereo(0.2)
    # the pair in one pass (what a stereo capture does), beside the same two eyes rendered one
    # after the other: the bytes are the same, the difference is what the shared pass saves
    secs = _best_of(lambda: world.renderer.render_stereo(model, pose, sun, 0.2), repeat)
    two = _best_of(lambda: (world.renderer.render(model, left, sun), world.renderer.render(model, right, sun)), repeat)
    rows.append(Row("render 640x480 stereo pair", secs * 1e3, "ms", two * 1e3, "two single renders of the eyes",
                    "<= 30 ms"))

    steps = 2000 if quick else 20000
    world.vehicle.set_wheels(0.15, 0.12)
    dt = world.physics_dt_s
    t0 = time.perf_counter()
    world.step(steps * dt)
    per_step = (time.perf_counter() - t0) / steps
    t0 = time.perf_counter()
    for _ in range(steps):
        _noop()
    bare = (time.perf_counter() - t0) / steps
    rows.append(Row("world physics step (driving)", per_step * 1e6, "us", bare * 1e6, "bare Python call"))
    rows.append(Row("simulated s per wall s (driving)", dt / per_step, "x", better="higher"))

    world.vehicle.stop()
    world.step(5.0)
    span = (1.0 if quick else 7.0) * 86400.0
    t0 = time.perf_counter()
    world.step(span)
    wall = time.perf_counter() - t0
    rows.append(Row("simulated s per wall s (parked, 10 s power/thermal step)", span / wall, "x", better="higher"))
    for r in rows:
        log.info("%s: %.3g %s", r.name, r.value, r.unit)
    return rows


if __name__ == "__main__":  # pragma: no cover - manual run
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for row in run(quick=True):
        ratio = f" ({row.ratio:.1f}x {row.baseline_name})" if row.ratio is not None else ""
        logging.getLogger("bench").info("%-60s %10.3f %s%s", row.name, row.value, row.unit, ratio)
