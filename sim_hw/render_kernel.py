"""Compiled ray casting for :class:`sim_hw.render.Renderer`: one ray per pixel, in numba.

The algorithm is the reference renderer's (:mod:`sim_hw.render_reference`), step for step: the
max-height pyramid to cross open ground, the Lipschitz step near it, the secant step where it is
smooth, the bracket search for the first crossing and three Illinois regula falsi steps. What
changes is where it runs. The numpy version pays ~100 ns a ray-step in array passes and
compaction; here each ray is a scalar loop with exact bilinear lookups (the reference uses
OpenCV's 1/32-cell fixed-point weights) and the shading of the hit is done in the same pass, so
a 640x480 frame costs a few milliseconds of arithmetic on each core.

numba earns its place in ``sim_hw`` (never on the vehicle: the flight side does not import it):
the work is an irregular loop per ray whose length depends on the terrain, which is exactly what
array programming does badly and a loop compiler does well; it keeps the renderer in Python and
caches the compiled kernel on disk (``cache=True``), so only the first run on a machine pays the
compilation (a few seconds). The kernels release the GIL and a frame's columns are dealt out
to one thread per core, interleaved, so the load is even; a worker thread's background capture
runs on that thread alone.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

_TINY = 1e-9


@njit(cache=True, inline="always", error_model="numpy")
def _bilinear(img: np.ndarray, x: float, y: float) -> float:
    """Bilinear sample at (x, y) pixel coordinates, edges replicated (as BORDER_REPLICATE)."""
    ny, nx = img.shape
    if x < 0.0:
        x = 0.0
    elif x > nx - 1.0:
        x = nx - 1.0
    if y < 0.0:
        y = 0.0
    elif y > ny - 1.0:
        y = ny - 1.0
    x0 = min(int(x), nx - 2)
    y0 = min(int(y), ny - 2)
    fx = x - x0
    fy = y - y0
    a = img[y0, x0] + fx * (img[y0, x0 + 1] - img[y0, x0])
    b = img[y0 + 1, x0] + fx * (img[y0 + 1, x0 + 1] - img[y0 + 1, x0])
    return a + fy * (b - a)


@njit(cache=True, inline="always", error_model="numpy")
def _nearest(img: np.ndarray, x: float, y: float) -> float:
    ny, nx = img.shape
    ix = int(math.floor(x + 0.5))
    iy = int(math.floor(y + 0.5))
    ix = min(max(ix, 0), nx - 1)
    iy = min(max(iy, 0), ny - 1)
    return img[iy, ix]


@njit(cache=True, inline="always", error_model="numpy")
def _bilinear_wrap(tile: np.ndarray, x: float, y: float) -> float:
    """Bilinear sample of a periodic tile (the detail texture repeats without seams).

    The tile's sides are powers of two, so wrapping is a mask (an integer modulo would cost
    four divisions a pixel).
    """
    ny, nx = tile.shape
    fx0 = math.floor(x)
    fy0 = math.floor(y)
    fx = x - fx0
    fy = y - fy0
    mx = nx - 1
    my = ny - 1
    x0 = int(fx0) & mx
    y0 = int(fy0) & my
    x1 = (x0 + 1) & mx
    y1 = (y0 + 1) & my
    a = tile[y0, x0] + fx * (tile[y0, x1] - tile[y0, x0])
    b = tile[y1, x0] + fx * (tile[y1, x1] - tile[y1, x0])
    return a + fy * (b - a)


@njit(cache=True, inline="always", error_model="numpy")
def _trace(h, lv0, lv1, lv2, radii, ox, oy, oz, dx, dy, dz, dxy, hmax, res, t_start):
    """Depth of the first ground hit of one ray (grid units across, metres up), and how far it
    is known to be clear of the ground (as a depth): ``(inf, t)`` for sky.

    ``(dx, dy)`` are the ray's horizontal rates in cells per unit depth, ``dz`` its vertical
    rate in metres, ``dxy`` its horizontal rate in metres. ``t_start`` is a depth up to which
    the ray is already known to be clear (0 if nothing is known). The ray walks the grid cell by
    cell; a cell whose highest corner is under the ray is passed at once, otherwise the ray is
    solved against the cell's bilinear patch (a quadratic in depth), so the crossing is exact
    and nothing is stepped over. Well above the ground it jumps by the max-height pyramid.
    Inlined into its callers: a call boundary would count references on every array for every
    ray.
    """
    ny, nx = h.shape
    inf = np.inf
    t0 = 0.05
    t1 = inf
    # reciprocals once a ray: divisions are what a ray's set-up would otherwise wait on
    inv_x = 1.0 / dx if dx != 0.0 else inf
    inv_y = 1.0 / dy if dy != 0.0 else inf
    if dx != 0.0:
        ta = (0.0 - ox) * inv_x
        tb = (nx - 1.0 - ox) * inv_x
        t0 = max(t0, min(ta, tb))
        t1 = min(t1, max(ta, tb))
    elif not (0.0 <= ox <= nx - 1.0):
        return inf, 0.0
    if dy != 0.0:
        ta = (0.0 - oy) * inv_y
        tb = (ny - 1.0 - oy) * inv_y
        t0 = max(t0, min(ta, tb))
        t1 = min(t1, max(ta, tb))
    elif not (0.0 <= oy <= ny - 1.0):
        return inf, 0.0
    if oz > hmax:
        if dz < 0.0:
            t0 = max(t0, (hmax - oz) / dz)
        else:
            return inf, inf
    t0 = max(t0, t_start)
    if not t0 < t1:
        return inf, t0
    rising = dz >= 0.0
    sx = 1 if dx > 0.0 else -1
    sy = 1 if dy > 0.0 else -1
    tdx = abs(inv_x)
    tdy = abs(inv_y)
    t = t0
    ix = 0
    iy = 0
    tx = inf
    ty = inf
    locate = True
    for _ in range(1 << 22):
        if locate:  # the cell the ray is in at depth t, and the depths where it leaves it across x and y
            gx = ox + t * dx
            gy = oy + t * dy
            ix = int(math.floor(gx))
            if sx < 0 and ix == gx:
                ix -= 1
            ix = min(max(ix, 0), nx - 2)
            iy = int(math.floor(gy))
            if sy < 0 and iy == gy:
                iy -= 1
            iy = min(max(iy, 0), ny - 2)
            tx = ((ix + (1 if sx > 0 else 0)) - ox) * inv_x if dx != 0.0 else inf
            ty = ((iy + (1 if sy > 0 else 0)) - oy) * inv_y if dy != 0.0 else inf
            locate = False
        t_exit = max(min(tx, ty, t1), t)
        h00 = h[iy, ix]
        h10 = h[iy, ix + 1]
        h01 = h[iy + 1, ix]
        h11 = h[iy + 1, ix + 1]
        top = max(max(h00, h10), max(h01, h11))
        za = oz + t * dz
        zb = oz + t_exit * dz
        low = min(za, zb)
        if low <= top:
            # the ray against this cell's bilinear patch: gap(tau) = c + b tau + a tau^2
            fx0 = ox + t * dx - ix
            fy0 = oy + t * dy - iy
            ex = h10 - h00
            ey = h01 - h00
            k = h11 - h10 - h01 + h00
            c = za - (h00 + ex * fx0 + ey * fy0 + k * fx0 * fy0)
            if c <= 0.0:
                return t, t
            b = dz - (ex * dx + ey * dy + k * (fx0 * dy + fy0 * dx))
            a = -k * dx * dy
            span = t_exit - t
            # the first positive root, without branches (they would be mispredicted): the
            # stable pair q / a and c / q, where c / q is the linear root when a vanishes
            disc = b * b - 4.0 * a * c
            q = -0.5 * (b + math.copysign(math.sqrt(max(disc, 0.0)), b))
            r1 = q / a
            r2 = c / q
            tau = min(r1 if r1 > 0.0 else inf, r2 if r2 > 0.0 else inf)
            tau = tau if disc >= 0.0 else inf
            if c + span * (b + a * span) <= 0.0:
                tau = min(tau, span)  # the crossing is on the far edge when rounding lost it
            if tau <= span:
                # clear up to the cell's entry: known before the solve, so the next ray of a
                # column need not wait for this one's square root and divisions
                return t + tau, t
        if t_exit >= t1 or (rising and zb > hmax):
            return inf, t_exit
        jump = 0.0
        if low - top > 0.2:  # well above the ground: the largest radius whose ceiling the ray clears
            inv_dd = 1.0 / dxy
            inv_down = 1.0 / max(-dz, 1e-6)
            gx = ox + t_exit * dx
            gy = oy + t_exit * dy
            room = zb - _nearest(lv0, gx, gy)
            if room > 0.0:
                jump = min(radii[0] * inv_dd, room * inv_down)
                room = zb - _nearest(lv1, gx, gy)
                if room > 0.0:
                    jump = max(jump, min(radii[1] * inv_dd, room * inv_down))
                    room = zb - _nearest(lv2, gx, gy)
                    if room > 0.0:
                        jump = max(jump, min(radii[2] * inv_dd, room * inv_down))
        if jump * dxy > 2.0 * res:  # a jump shorter than two cells is walked instead
            t = t_exit + jump
            if t >= t1:
                return inf, t1
            locate = True
        elif tx <= ty:
            t = t_exit
            ix += sx
            tx += tdx
            if ix < 0 or ix > nx - 2:
                return inf, t
        else:
            t = t_exit
            iy += sy
            ty += tdy
            if iy < 0 or iy > ny - 2:
                return inf, t
    return inf, t


# Explicit signatures compile (or load from the cache) at import, so the first frame is not the
# one that pays, and a test's timeout never includes the compilation.
_A2 = "float32[:, ::1]"
_CAST_SIG = (f"void(int64[::1], float64[:, ::1], float64[::1], float64[::1], float64, {_A2}, {_A2}, {_A2}, {_A2}, "
             "float64[::1], float64, float32[::1])")
_IMAGE_SIG = (f"void(int64[::1], float64[:, ::1], float64[::1], float64, float64, float64, float64, int64, "
              f"float64[::1], float64, {_A2}, {_A2}, {_A2}, {_A2}, float64[::1], float64, float64, boolean, {_A2}, "
              f"{_A2}, float64, float64, float64, {_A2}, {_A2})")


@njit(_CAST_SIG, cache=True, nogil=True, error_model="numpy")
def cast_rays(idx, dirs, origin, grid_origin, res, h, lv0, lv1, lv2, radii, hmax, out):
    """Depth of the first hit of rays ``origin + t * dirs[i]`` (``i`` in ``idx``) into ``out``."""
    ox = (origin[0] - grid_origin[0]) / res
    oy = (origin[1] - grid_origin[1]) / res
    oz = origin[2]
    for k in range(idx.shape[0]):
        i = idx[k]
        dxm = dirs[i, 0]
        dym = dirs[i, 1]
        out[i] = _trace(h, lv0, lv1, lv2, radii, ox, oy, oz, dxm / res, dym / res, dirs[i, 2],
                        math.sqrt(dxm * dxm + dym * dym) + 1e-6, hmax, res, 0.0)[0]


@njit(cache=True, inline="always", error_model="numpy")
def _render_column(u, rot, origin, fx, fy, cx, cy, height, grid_origin, res, h, lv0, lv1, lv2, radii, hmax,
                   lipschitz, shade, rad, tile, detail, detail_scale, gain, depth_out, lum_out, scratch):
    """Depth and relative brightness (times ``gain``) of the pixels of image column ``u``.

    ``rot`` has the camera axes as columns; with ``shade`` false only the depth is written. A
    pixel's direction is ``rot @ ((u - cx) / fx, (v - cy) / fy, 1)``, so its depth is the ray
    parameter, exactly as in the reference. ``depth_out`` and ``lum_out`` are stored transposed
    (one image column a row), so a column's pixels are written to consecutive addresses.

    **Column coherence.** A column is cast from the bottom up, and each ray starts where the
    ray below it was known clear of the ground (its hit: the walk finds the first crossing
    exactly), when that is provably safe: with ``s`` the horizontal distance, two rays from one
    origin are ``s * dphi`` apart sideways (``dphi`` the difference of their azimuths) and
    ``s * (tan e1 - tan e0)`` apart in height; the ground rises no faster than ``lipschitz`` (its
    steepest slope), so if ``tan e1 - tan e0 >= lipschitz * dphi`` the upper ray is above the
    ground wherever the lower one was. So each column walks the terrain front to back about
    once, whatever its height in pixels. That holds for any camera roll up to about
    ``atan(1 / lipschitz)``; beyond it a ray starts from the camera.
    """
    ox = (origin[0] - grid_origin[0]) / res
    oy = (origin[1] - grid_origin[1]) / res
    oz = origin[2]
    inv_fx = 1.0 / fx
    inv_fy = 1.0 / fy
    inv_res = 1.0 / res
    inv_scale = 1.0 / detail_scale
    xn = (u - cx) * inv_fx
    # 1. the rays, and whether each may start where the one below it was known clear (this
    # depends on the directions alone); ratio: the depth on this ray at the horizontal distance
    # of a depth on the ray below, -1 where it may not
    bx = 0.0
    by = 0.0
    inv_bxy = 0.0
    tan_b = -np.inf
    hxy_b = 0.0
    for j in range(height):
        v = height - 1 - j
        yn = (v - cy) * inv_fy
        wx = rot[0, 0] * xn + rot[0, 1] * yn + rot[0, 2]
        wy = rot[1, 0] * xn + rot[1, 1] * yn + rot[1, 2]
        wz = rot[2, 0] * xn + rot[2, 1] * yn + rot[2, 2]
        hxy = math.sqrt(wx * wx + wy * wy)
        inv_hxy = 1.0 / hxy if hxy > 1e-9 else 0.0
        tan_e = wz * inv_hxy if hxy > 1e-9 else np.inf
        ratio = -1.0
        if hxy > 1e-9 and inv_bxy > 0.0 and bx * wx + by * wy > 0.0:
            # |sin dphi| from the cross product; asin(x) <= x (1 + x^2) for x <= 0.5
            x = abs(bx * wy - by * wx) * inv_bxy * inv_hxy
            if x < 0.5 and tan_e - tan_b >= lipschitz * x * (1.0 + x * x) * 1.01 + 1e-12:
                ratio = hxy_b * inv_hxy * (1.0 - 1e-6)
        scratch[0, j] = wx
        scratch[1, j] = wy
        scratch[2, j] = wz
        scratch[3, j] = hxy
        scratch[4, j] = ratio
        bx = wx
        by = wy
        inv_bxy = inv_hxy
        tan_b = tan_e
        hxy_b = hxy
    # 2. the walks, bottom up, each from where the one below left off: the only serial part
    t_free = 0.0
    for j in range(height):
        ratio = scratch[4, j]
        t_start = t_free * ratio if ratio >= 0.0 else 0.0
        t, t_free = _trace(h, lv0, lv1, lv2, radii, ox, oy, oz, scratch[0, j] * inv_res, scratch[1, j] * inv_res,
                           scratch[2, j], scratch[3, j] + 1e-6, hmax, res, t_start)
        depth_out[u, height - 1 - j] = t
    if not shade:
        return
    # 3. shading, apart from the walks: no branch here waits on them, so it runs at full rate
    for j in range(height):
        v = height - 1 - j
        t = depth_out[u, v]
        if t == np.inf:
            lum_out[u, v] = 0.0
            continue
        px = origin[0] + scratch[0, j] * t
        py = origin[1] + scratch[1, j] * t
        val = _bilinear(rad, (px - grid_origin[0]) * inv_res, (py - grid_origin[1]) * inv_res)
        wgt = min(max(1.0 - t * inv_fx * 0.25 * inv_scale, 0.0), 1.0) * detail
        if wgt > 0.0:  # the texture fades out where a pixel's footprint outgrows it
            det = _bilinear_wrap(tile, px * inv_scale, py * inv_scale)
            val *= min(max(1.0 + wgt * det, 0.2), 2.0)
        lum_out[u, v] = val * gain


@njit(_IMAGE_SIG, cache=True, nogil=True, error_model="numpy")
def render_image(cols, rot, origin, fx, fy, cx, cy, height, grid_origin, res, h, lv0, lv1, lv2, radii, hmax,
                 lipschitz, shade, rad, tile, detail, detail_scale, gain, depth_out, lum_out):
    """The image columns listed in ``cols`` (see :func:`_render_column`), without the GIL.

    Called from several threads at once on disjoint column sets (:func:`run_threads`), or from
    one worker thread alone for a background capture.
    """
    scratch = np.empty((5, height), np.float64)
    for k in range(cols.shape[0]):
        _render_column(cols[k], rot, origin, fx, fy, cx, cy, height, grid_origin, res, h, lv0, lv1, lv2, radii,
                       hmax, lipschitz, shade, rad, tile, detail, detail_scale, gain, depth_out, lum_out, scratch)


def threads() -> int:
    """How many threads a frame is split over: one per core."""
    return max(1, os.cpu_count() or 1)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def run_threads(kernel, n_items: int, parallel: bool, *args) -> None:
    """Run ``kernel(items, *args)`` over ``range(n_items)``, interleaved across the cores.

    The kernels release the GIL, so plain threads run them in parallel; with ``parallel`` False
    the calling thread does all of it (a worker's background capture uses one core, leaving the
    other to the control loop).
    """
    n = threads() if parallel else 1
    if n == 1 or n_items < 2 * n:
        kernel(np.arange(n_items, dtype=np.int64), *args)
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="render")
    futures = [_pool.submit(kernel, np.arange(i, n_items, n, dtype=np.int64), *args) for i in range(1, n)]
    kernel(np.arange(0, n_items, n, dtype=np.int64), *args)
    for f in futures:
        f.result()
