"""The local elevation map and its traversability cost (GESTALT-style).

The map is a world-fixed grid centred on the rover's pose when navigation starts (or its pose
is reset), ``size_m`` a side. Stereo points fuse into it as a per-cell weighted mean of height.
Stereo height error grows steeply with range, so a look weighs ``(near_weight_m / range)**2``
(full weight inside ``near_weight_m``): a cell seen again from closer is all but replaced. Each
cell also keeps the shortest range it was seen from. Unknown cells are NaN.

Cost per cell comes from a plane fitted over a rover-sized disc around it (box-filtered moments,
all cells at once): **slope** of the plane, **roughness** (RMS residual), and **step** (the
largest height difference in a wheel-sized neighbourhood, less what the slope explains), and
**rise**: how far a cell stands above the ground around it (the median of a
``2 ground_m`` window), which finds the rocks of a cell or two that the median and the plane
smooth away. A cell keeps its **top** too, the highest point of the closest look at it (the
third-highest, so that a stray match or two does not count): a small
rock fills only part of a cell, so the cell's mean holds part of its height while a wheel meets
all of it; where the top was seen from within ``top_range_m`` it is what the rise measures. Each is
divided by its limit; any ratio at or above 1 makes the cell a hazard **once it has been seen
from within** ``confirm_range_m``. Seen only from farther, where a few centimetres of stereo
noise look like a step, it is a suspect: costly (``1 + gain + 1``) but passable, so the planner
steers around it when it can and drives closer to look again when it cannot; the rover sees every
cell it approaches from close range well before it gets there. Hazards are grown by the rover's
half-width so the planner can treat the rover as a point. Ground the rover found it could not
cross (a wheel stalled there) is marked (:meth:`ElevationMap.mark`) and stays a hazard whatever
the heights say. Hazards that stand out of the ground (rocks, and the marks of stalls) are also kept as
**solid**: what the body can strike, which a rover leaving a hazard margin must not turn closer
to. Passable cells cost
``1 + gain * worst ratio`` (plus 1 beside a hazard); unknown cells ``unknown_cost``; hazards are
infinite.

**A map that grows.** The grid in memory is a window of whole tiles (``tile_m`` a side) that
scrolls with the rover (:meth:`ElevationMap.follow`): tiles that leave the window are kept, and
come back as they were when the rover returns, so what was seen anywhere along a traverse is
remembered and the window's size only bounds what one plan looks at. Cells stay on one lattice
in the world frame, so a scroll never resamples anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class CostLimits:
    slope_deg: float = 18.0
    roughness_m: float = 0.04
    step_m: float = 0.07
    footprint_m: float = 0.3  # radius of the plane-fit disc
    ground_m: float = 0.3  # half the side of the window whose median is the ground a rock stands on
    protrusion_m: float = 0.08  # a cell this far above that ground is a rock a wheel may stall on
    top_range_m: float = 2.5  # a cell's top (its highest point) counts when seen from this close
    inflate_m: float = 0.45  # hazards grown by this for planning (rover half-diagonal and a margin)
    core_m: float = 0.3  # and by this for the stop check on the path ahead
    gain: float = 3.0
    unknown_cost: float = 1.2
    confirm_range_m: float = 3.5  # a hazard must be seen from this close to block
    near_weight_m: float = 2.0  # looks from within this range weigh fully


def median3_nan(h: np.ndarray) -> np.ndarray:
    """3x3 median of the known cells around each cell (see :func:`median_nan`)."""
    return median_nan(h, 3)


def median_nan(h: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` median of the known cells around each cell (NaN where a cell is unknown).

    Unknown neighbours are left out rather than read as zero height: at the edge of what has
    been seen, a median over stand-in zeros would fake a step as tall as the terrain's height
    above the datum, a wall of false hazards along the whole frontier.
    """
    rows, cols = h.shape
    e = size // 2
    p = np.pad(h, e, constant_values=np.nan)
    stack = np.stack([p[i : i + rows, j : j + cols] for i in range(size) for j in range(size)])
    stack.sort(axis=0)  # NaN sorts last
    n = np.sum(~np.isnan(stack), axis=0)
    lo = np.take_along_axis(stack, np.maximum((n - 1) // 2, 0)[None], axis=0)[0]
    hi = np.take_along_axis(stack, (n // 2)[None], axis=0)[0]
    return np.where(np.isnan(h), np.nan, 0.5 * (lo + hi))


#: the per-cell layers, with the value of a cell never seen
_LAYERS: tuple[tuple[str, type, float | bool], ...] = (
    ("height", np.float32, np.nan), ("weight", np.float32, 0.0), ("near", np.float32, np.inf),
    ("top", np.float32, np.nan), ("top_range", np.float32, np.inf),
    ("cost", np.float32, np.nan), ("hazard", bool, False), ("core", bool, False), ("marked", bool, False),
    ("solid", bool, False), ("struck", bool, False))


class ElevationMap:
    def __init__(self, center: tuple[float, float], size_m: float = 40.0, resolution_m: float = 0.1,
                 tile_m: float = 10.0) -> None:
        self.resolution_m = float(resolution_m)
        self.limits = CostLimits()
        cells = max(2, int(round(size_m / self.resolution_m)))
        tiles = max(2, int(round(size_m / tile_m)))
        tile = max(1, int(round(cells / tiles)))
        self.tile = tile  # cells a tile side
        self.tiles = tiles  # tiles a window side
        self.n = tile * tiles
        # tiles lie on a lattice in the world frame anchored so that the first window is centred
        # on ``center``; ``_t0`` is the window's first tile (row, col) on it
        half = 0.5 * self.n * self.resolution_m
        self._anchor = (center[0] - half, center[1] - half)
        self._t0 = (0, 0)
        self.origin = self._anchor
        self._stored: dict[tuple[int, int], tuple[np.ndarray, ...]] = {}
        for name, dtype, _ in _LAYERS:
            setattr(self, name, np.empty((self.n, self.n), dtype))
        self._blank(slice(None), slice(None))
        self.scrolls = 0
        self.datum_offset_m = 0.0  # the height shift of the last look fused (see _datum_offset)

    def _fill(self, name: str, value: float | bool) -> float | bool:
        return self.limits.unknown_cost if name == "cost" else value

    def _blank(self, rows: slice, cols: slice) -> None:
        for name, _, value in _LAYERS:
            getattr(self, name)[rows, cols] = self._fill(name, value)

    def _first_tile_for(self, center: tuple[float, float]) -> tuple[int, int]:
        span = self.tile * self.resolution_m
        tr = int(math.floor((center[1] - self._anchor[1]) / span - 0.5 * self.tiles + 0.5))
        tc = int(math.floor((center[0] - self._anchor[0]) / span - 0.5 * self.tiles + 0.5))
        return tr, tc

    @property
    def stored_tiles(self) -> int:
        """Tiles remembered outside the window."""
        return len(self._stored)

    def follow(self, x: float, y: float) -> bool:
        """Scroll the window by whole tiles so that (x, y) is near its middle; True if it moved.

        Tiles leaving the window are stored; tiles entering it come from the store, or unknown.
        The window moves only once (x, y) is three quarters of a tile off its middle, so a rover
        driving along a tile's edge does not make it scroll back and forth.
        """
        span = self.tile * self.resolution_m
        half = 0.5 * self.n * self.resolution_m
        if max(abs(x - self.origin[0] - half), abs(y - self.origin[1] - half)) <= 0.75 * span:
            return False
        t0 = self._first_tile_for((x, y))
        if t0 == self._t0:
            return False
        old = self._t0
        k = self.tile
        keep = {}
        for i in range(self.tiles):
            for j in range(self.tiles):
                key = (old[0] + i, old[1] + j)
                sl = (slice(i * k, (i + 1) * k), slice(j * k, (j + 1) * k))
                keep[key] = tuple(getattr(self, name)[sl].copy() for name, _, _ in _LAYERS)
        self._stored.update(keep)
        self._t0 = t0
        self.origin = (self._anchor[0] + t0[1] * span, self._anchor[1] + t0[0] * span)
        for i in range(self.tiles):
            for j in range(self.tiles):
                key = (t0[0] + i, t0[1] + j)
                rows, cols = slice(i * k, (i + 1) * k), slice(j * k, (j + 1) * k)
                saved = self._stored.pop(key, None)
                if saved is None:
                    self._blank(rows, cols)
                else:
                    for (name, _, _), layer in zip(_LAYERS, saved, strict=True):
                        getattr(self, name)[rows, cols] = layer
        self.scrolls += 1
        return True

    def toward(self, x: float, y: float, gx: float, gy: float, margin_m: float) -> tuple[float, float]:
        """The goal if it lies inside the window by ``margin_m``; else the last point of the line
        from (x, y) to it that does (a subgoal on the way)."""
        if self.contains(gx, gy, margin_m):
            return gx, gy
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if self.contains(x + mid * (gx - x), y + mid * (gy - y), margin_m):
                lo = mid
            else:
                hi = mid
        return x + lo * (gx - x), y + lo * (gy - y)

    # -- geometry --------------------------------------------------------------------------------

    def cell(self, x: float, y: float) -> tuple[int, int]:
        """(row, col) of a world point (may be off the map)."""
        return (int(math.floor((y - self.origin[1]) / self.resolution_m)),
                int(math.floor((x - self.origin[0]) / self.resolution_m)))

    def center_of(self, r: float, c: float) -> tuple[float, float]:
        return (self.origin[0] + (c + 0.5) * self.resolution_m, self.origin[1] + (r + 0.5) * self.resolution_m)

    def contains(self, x: float, y: float, margin_m: float = 0.0) -> bool:
        r, c = self.cell(x, y)
        m = int(math.ceil(margin_m / self.resolution_m))
        return m <= r < self.n - m and m <= c < self.n - m

    # -- fusion ----------------------------------------------------------------------------------

    def _datum_offset(self, rr: np.ndarray, cc: np.ndarray, z: np.ndarray) -> float:
        """How far a new look's heights sit above the map where the two overlap (median).

        The rover's height comes from integrating its pitch over the distance driven, which
        drifts by centimetres a metre; two looks at neighbouring ground taken metres apart would
        otherwise meet in a false step as tall as the drift, a hazard that is not there. The
        ground does not move, so the overlap's median difference is the drift, and the look is
        shifted by it before it is fused.
        """
        h = self.height[rr, cc]
        known = ~np.isnan(h) & (self.weight[rr, cc] >= 2.0)
        if int(known.sum()) < 50:
            return 0.0
        offset = float(np.median(z[known] - h[known]))
        self.datum_offset_m = offset
        return offset

    def fuse(self, points: np.ndarray, viewpoint: tuple[float, float] | None = None,
             min_points: int = 2, align: bool = True) -> tuple[int, int, int, int] | None:
        """Fuse world points (N, 3) seen from ``viewpoint`` (x, y; None: from close range);
        returns the touched box (r0, r1, c0, c1) or None. With ``align`` a look that overlaps
        the map is first shifted in height to meet it (:meth:`_datum_offset`)."""
        if points.size == 0:
            return None
        if viewpoint is None:
            rng = np.zeros(len(points))
        else:
            rng = np.hypot(points[:, 0] - viewpoint[0], points[:, 1] - viewpoint[1])
        rr = np.floor((points[:, 1] - self.origin[1]) / self.resolution_m).astype(np.int64)
        cc = np.floor((points[:, 0] - self.origin[0]) / self.resolution_m).astype(np.int64)
        ok = (rr >= 0) & (rr < self.n) & (cc >= 0) & (cc < self.n)
        if not ok.any():
            return None
        rr, cc, z, rng = rr[ok], cc[ok], points[ok, 2], rng[ok]
        if align:
            z = z - self._datum_offset(rr, cc, z)
        r0, r1, c0, c1 = int(rr.min()), int(rr.max()) + 1, int(cc.min()), int(cc.max()) + 1
        w = c1 - c0
        idx = (rr - r0) * w + (cc - c0)
        shape = (r1 - r0, w)
        cnt = np.bincount(idx, minlength=shape[0] * w).reshape(shape)
        # each cell's top: its third-highest point (its highest of four), so that a stray
        # stereo match or two is not taken for a rock
        order = np.lexsort((z, idx))
        n_cell = cnt.ravel()
        last = np.cumsum(n_cell) - 1
        pick = np.maximum(last - np.minimum(2, n_cell // 4), 0)
        zmax = z[order][pick].reshape(shape).astype(np.float32)
        zsum = np.bincount(idx, weights=z, minlength=shape[0] * w).reshape(shape)
        rsum = np.bincount(idx, weights=rng, minlength=shape[0] * w).reshape(shape)
        seen = cnt >= min_points
        zmean = np.where(seen, zsum / np.maximum(cnt, 1), 0.0).astype(np.float32)

        rmean = rsum / np.maximum(cnt, 1)
        hv = self.height[r0:r1, c0:c1]
        wv = self.weight[r0:r1, c0:c1]
        nv = self.near[r0:r1, c0:c1]
        near_w = self.limits.near_weight_m
        new_w = (np.minimum(cnt, 20) * (near_w / np.maximum(rmean, near_w)) ** 2).astype(np.float32)
        old = np.where(np.isnan(hv), 0.0, hv)
        wt_old = np.where(np.isnan(hv), 0.0, np.minimum(wv, 20.0))
        fused = (old * wt_old + zmean * new_w) / np.maximum(wt_old + new_w, 1e-6)
        hv[seen] = fused[seen]

        wv[seen] = np.minimum(wt_old + new_w, 40.0)[seen]
        nv[seen] = np.minimum(nv, rmean)[seen]
        # the top: the highest point of the closest look (a later look from about as close, or
        # closer, replaces it; tops are not piled up look on look, which would pile up noise)
        tv = self.top[r0:r1, c0:c1]
        trv = self.top_range[r0:r1, c0:c1]
        closer = seen & (cnt >= 4) & (rmean <= trv + 0.3)
        tv[closer] = zmax[closer]
        trv[closer] = np.minimum(trv, rmean)[closer]
        return r0, r1, c0, c1

    # -- cost ------------------------------------------------------------------------------------

    def update_cost(self, box: tuple[int, int, int, int] | None = None) -> int:
        """Recompute cost inside ``box`` (grown by the filter reach); returns hazard cells there."""
        lim = self.limits
        res = self.resolution_m
        k = max(1, int(round(lim.footprint_m / res)))
        kin = max(1, int(math.ceil(lim.inflate_m / res)))
        kg = max(1, int(round(lim.ground_m / res)))
        pad = 2 * (kg + kin) + 2
        if box is None:
            box = (0, self.n, 0, self.n)
        r0, r1 = max(0, box[0] - pad), min(self.n, box[1] + pad)
        c0, c1 = max(0, box[2] - pad), min(self.n, box[3] + pad)
        h = self.height[r0:r1, c0:c1].astype(np.float64)
        valid = ~np.isnan(h)
        v = valid.astype(np.float64)
        z = np.where(valid, median3_nan(h), 0.0)
        ys, xs = np.mgrid[0 : h.shape[0], 0 : h.shape[1]].astype(np.float64)
        ksz = (2 * k + 1, 2 * k + 1)

        def box_sum(a: np.ndarray) -> np.ndarray:
            return cv2.boxFilter(a, -1, ksz, normalize=False, borderType=cv2.BORDER_CONSTANT)

        n = box_sum(v)
        enough = n >= 0.4 * ksz[0] * ksz[1]
        nn = np.maximum(n, 1.0)
        mx, my, mz = box_sum(v * xs) / nn, box_sum(v * ys) / nn, box_sum(z) / nn
        sxx = box_sum(v * xs * xs) / nn - mx * mx
        syy = box_sum(v * ys * ys) / nn - my * my
        sxy = box_sum(v * xs * ys) / nn - mx * my
        sxz = box_sum(xs * z) / nn - mx * mz
        syz = box_sum(ys * z) / nn - my * mz
        szz = box_sum(z * z) / nn - mz * mz
        det = sxx * syy - sxy * sxy
        det = np.where(np.abs(det) < 1e-9, 1e-9, det)
        a = (sxz * syy - syz * sxy) / det
        b = (syz * sxx - sxz * sxy) / det
        grad = np.hypot(a, b) / res
        slope = np.degrees(np.arctan(grad))
        rough = np.sqrt(np.maximum(0.0, szz - a * sxz - b * syz))
        hi = cv2.dilate(np.where(valid, z, -1e9).astype(np.float32), np.ones((3, 3), np.uint8))
        lo = cv2.erode(np.where(valid, z, 1e9).astype(np.float32), np.ones((3, 3), np.uint8))
        step = np.where(valid & (hi > -1e8) & (lo < 1e8), hi - lo, 0.0) - grad * 2.0 * res * math.sqrt(2.0)
        # a rock a wheel can hit is two or three cells across: the 3x3 median above erases it,
        # and the plane over a rover-sized disc tilts toward it and hides its face. So each
        # cell's own height is also compared with the ground around it (the median of a wider
        # window, which a small rock cannot move), and a cell standing out of it by more than
        # ``protrusion_m``, or beside one that does, is a hazard
        ground = median_nan(h, 2 * kg + 1)
        # a rock of a cell or two is what a wheel meets at its top, and a cell's mean height
        # can hold half of it: where the cell was seen from close by, its highest point counts
        top = self.top[r0:r1, c0:c1].astype(np.float64)
        top_ok = valid & ~np.isnan(top) & (self.top_range[r0:r1, c0:c1] <= lim.top_range_m)
        peak = np.where(top_ok, np.maximum(h, top), h)
        rise = np.where(valid & ~np.isnan(ground), peak - ground, 0.0).astype(np.float32)
        rise = cv2.dilate(rise, np.ones((3, 3), np.uint8))
        ratio = np.maximum.reduce([slope / lim.slope_deg, rough / lim.roughness_m, step / lim.step_m,
                                   rise / lim.protrusion_m])
        ratio = np.where(enough, ratio, np.nan)
        over = np.nan_to_num(ratio, nan=0.0) >= 1.0
        close = self.near[r0:r1, c0:c1] <= lim.confirm_range_m
        hazard = (over & close) | self.marked[r0:r1, c0:c1]
        # what the body can strike, as opposed to ground too steep or rough to drive: a rock
        # standing out of the ground, or ground the rover was stopped at
        solid = ((np.nan_to_num(rise / lim.protrusion_m, nan=0.0) >= 1.0) & enough & close) | self.struck[r0:r1, c0:c1]
        suspect = over & ~close
        grown = cv2.dilate(hazard.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * kin + 1, 2 * kin + 1))) > 0
        near = cv2.dilate(hazard.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (4 * kin + 1, 4 * kin + 1))) > 0
        cost = np.where(np.isnan(ratio), lim.unknown_cost, 1.0 + lim.gain * np.clip(np.nan_to_num(ratio), 0, 1))
        kc = max(1, int(math.ceil(lim.core_m / res)))
        core = cv2.dilate(hazard.astype(np.uint8), cv2.getStructuringElement(
            cv2.MORPH_ELLIPSE, (2 * kc + 1, 2 * kc + 1))) > 0
        cost = np.where(near | suspect, cost + 1.0, cost)
        cost = np.where(grown, np.inf, cost).astype(np.float32)
        # write back only the inner box (the border lacked its neighbours)
        ir0, ir1 = max(0, box[0] - (kg + kin)), min(self.n, box[1] + (kg + kin))
        ic0, ic1 = max(0, box[2] - (kg + kin)), min(self.n, box[3] + (kg + kin))
        sl = (slice(ir0 - r0, ir1 - r0), slice(ic0 - c0, ic1 - c0))
        self.cost[ir0:ir1, ic0:ic1] = cost[sl]
        self.hazard[ir0:ir1, ic0:ic1] = hazard[sl]
        self.core[ir0:ir1, ic0:ic1] = core[sl]
        self.solid[ir0:ir1, ic0:ic1] = solid[sl]
        return int(hazard[sl].sum())

    def mark(self, x: float, y: float, radius_m: float, solid: bool = True) -> int:
        """Mark a disc as a hazard whatever its heights say (ground the rover found it could not
        cross, such as where a wheel stalled); returns the cells marked. The mark is kept in the
        map like a seen hazard and grown the same way; ``solid`` says it is something the body
        can strike (a wheel stalled there), not ground that tipped the rover too far."""
        r, c = self.cell(x, y)
        k = int(math.ceil(radius_m / self.resolution_m))
        r0, r1, c0, c1 = max(0, r - k), min(self.n, r + k + 1), max(0, c - k), min(self.n, c + k + 1)
        if r0 >= r1 or c0 >= c1:
            return 0
        rr, cc = np.mgrid[r0:r1, c0:c1]
        cx, cy = self.center_of(rr, cc)
        disc = np.hypot(cx - x, cy - y) <= radius_m
        self.marked[r0:r1, c0:c1] |= disc
        if solid:
            self.struck[r0:r1, c0:c1] |= disc
        self.update_cost((r0, r1, c0, c1))
        return int(disc.sum())

    def cost_at(self, x: float, y: float) -> float:
        r, c = self.cell(x, y)
        if 0 <= r < self.n and 0 <= c < self.n:
            return float(self.cost[r, c])
        return float(self.limits.unknown_cost)

    def blocked_along(self, pts: np.ndarray, core: bool = False) -> tuple[float, float] | None:
        """First point (x, y) of a polyline sample in an impassable cell (``core``: within the
        rover's half-width of a hazard), or None."""
        if pts.size == 0:
            return None
        rr = np.floor((pts[:, 1] - self.origin[1]) / self.resolution_m).astype(np.int64)
        cc = np.floor((pts[:, 0] - self.origin[0]) / self.resolution_m).astype(np.int64)
        ok = (rr >= 0) & (rr < self.n) & (cc >= 0) & (cc < self.n)
        bad = np.zeros(len(pts), bool)
        bad[ok] = self.core[rr[ok], cc[ok]] if core else ~np.isfinite(self.cost[rr[ok], cc[ok]])
        hit = np.flatnonzero(bad)
        if hit.size == 0:
            return None
        return float(pts[hit[0], 0]), float(pts[hit[0], 1])
