"""Pure pursuit path following for a skid-steer rover.

The follower steers toward the point of the path one lookahead distance ahead of the rover: the
arc through it has curvature ``2 sin(alpha) / L`` (alpha, the bearing of the point off the
heading). The outer wheel runs at the speed allowed (the maximum, scaled down on costly
terrain), the inner one slower for the arc. A point more than ``turn_in_place_deg`` off the
heading is faced first by turning on the spot, which a skid-steer vehicle can do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flight.nav.geometry import wrap


@dataclass(frozen=True, slots=True)
class WheelCommand:
    left: float
    right: float
    done: bool = False


def densify(points: list[tuple[float, float]], spacing: float = 0.05) -> np.ndarray:
    """A polyline resampled at ``spacing`` metres (always keeps the last point)."""
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:], strict=False):
        n = max(1, int(math.ceil(float(np.hypot(*(b - a))) / spacing)))
        t = np.arange(1, n + 1)[:, None] / n
        out.extend(a + (b - a) * t)
    return np.asarray(out)


class PurePursuit:
    """Follows one path to its end; :meth:`step` gives the wheel speeds for a pose."""

    def __init__(self, path: list[tuple[float, float]], tolerance_m: float, track_m: float,
                 lookahead_m: float = 0.8, turn_in_place_deg: float = 50.0) -> None:
        self.path = densify(path)
        seg = np.hypot(*np.diff(self.path, axis=0).T) if len(self.path) > 1 else np.zeros(0)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.length_m = float(self.cum[-1])
        self.tolerance_m = tolerance_m
        self.track_m = track_m
        self.lookahead_m = lookahead_m
        self.turn_in_place = math.radians(turn_in_place_deg)
        self.index = 0

    @property
    def goal(self) -> tuple[float, float]:
        return float(self.path[-1, 0]), float(self.path[-1, 1])

    def progress(self) -> float:
        """Fraction of the path's length behind the rover (0..1)."""
        return 1.0 if self.length_m <= 0 else float(self.cum[self.index]) / self.length_m

    def remaining_m(self) -> float:
        return self.length_m - float(self.cum[self.index])

    def lookahead_point(self, x: float, y: float) -> tuple[float, float]:
        window = self.path[self.index : self.index + 200]
        d = np.hypot(window[:, 0] - x, window[:, 1] - y)
        self.index += int(np.argmin(d))
        ahead = self.path[self.index :]
        far = np.flatnonzero(np.hypot(ahead[:, 0] - x, ahead[:, 1] - y) >= self.lookahead_m)
        p = ahead[far[0]] if far.size else ahead[-1]
        return float(p[0]), float(p[1])

    def step(self, x: float, y: float, yaw: float, speed: float) -> WheelCommand:
        gx, gy = self.goal
        if math.hypot(gx - x, gy - y) <= self.tolerance_m and self.remaining_m() <= self.lookahead_m + self.tolerance_m:
            return WheelCommand(0.0, 0.0, done=True)
        tx, ty = self.lookahead_point(x, y)
        dist = math.hypot(tx - x, ty - y)
        alpha = wrap(math.atan2(ty - y, tx - x) - yaw)
        if abs(alpha) > self.turn_in_place:
            spin = math.copysign(speed * 0.6, alpha)
            return WheelCommand(-spin, spin)
        kappa = 2.0 * math.sin(alpha) / max(dist, 1e-3)
        half = 0.5 * kappa * self.track_m
        left, right = 1.0 - half, 1.0 + half
        scale = speed / max(abs(left), abs(right))
        return WheelCommand(left * scale, right * scale)


def arc_wheels(speed: float, curvature: float, track_m: float) -> tuple[float, float]:
    """Wheel speeds for an arc of ``curvature`` (1/m, + left) with the outer wheel at ``speed``."""
    half = 0.5 * curvature * track_m
    left, right = 1.0 - half, 1.0 + half
    scale = abs(speed) / max(abs(left), abs(right))
    sign = 1.0 if speed >= 0 else -1.0
    return sign * left * scale, sign * right * scale
