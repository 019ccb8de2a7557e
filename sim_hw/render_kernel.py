"""Compiled ray casting for :class:`sim_hw.render.Renderer`: one exact ray per pixel, in numba.

Each ray walks the heightmap's grid cell by cell (:func:`_walk`) and is solved against each
cell's bilinear patch in closed form, so it finds the first crossing of the same surface the
numpy reference marches over (:mod:`sim_hw.render_reference`), exactly, and never steps over
a bump however thin. Whole columns are cheap because each ray of a column starts where the ray
below it was known clear (the column coherence of :func:`_column_rays`): a column walks the
terrain front to back about once, filling its pixels from the bottom up. A cell under the ray is
passed with one comparison of its highest corner, and well above the ground the ray jumps by the
reference's max-height pyramid. The shading of the hits (radiance per grid node, the seeded
detail texture) follows in the same call, column by column.

numba earns its place in ``sim_hw`` (never on the vehicle: the flight side does not import it):
the work is an irregular loop per ray whose length depends on the terrain, which is exactly what
array programming does badly and a loop compiler does well; it keeps the renderer in Python and
caches the compiled kernel on disk (``cache=True``), so only the first run on a machine pays the
compilation (a few seconds). The kernels release the GIL and a frame's columns go to one
thread per core in blocks, each thread taking the next block as it finishes one, so the load
stays even when other work slows a core; a worker thread's background capture runs on that
thread alone.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

#: An index the code has already clamped into the array, as an unsigned integer: numba then
#: skips the wrap-around of negative indices (a compare and a select on every subscript),
#: which the compiler cannot drop by itself where the clamp was made a loop iteration before
#: or the bound is an array's shape. The values read are the same.
_u = np.uintp

# Helpers take and return scalars only. An array handed to a numba function, even one inlined,
# has its reference count raised and lowered around the call, an atomic operation through a
# function call each way: once a ray for five arrays, that was most of a frame. So arrays are
# indexed only in the loops that own them, once a column.


@njit(cache=True, inline="always", error_model="numpy")
def _bilinear_at(nx: int, ny: int, x: float, y: float) -> tuple[int, int, float, float]:
    """Cell and weights of a bilinear sample at (x, y), edges replicated (as BORDER_REPLICATE)."""
    x = min(max(x, 0.0), nx - 1.0)
    y = min(max(y, 0.0), ny - 1.0)
    x0 = min(int(x), nx - 2)
    y0 = min(int(y), ny - 2)
    return x0, y0, x - x0, y - y0


@njit(cache=True, inline="always", error_model="numpy")
def _nearest_at(nx: int, ny: int, x: float, y: float) -> tuple[int, int]:
    ix = min(max(int(math.floor(x + 0.5)), 0), nx - 1)
    iy = min(max(int(math.floor(y + 0.5)), 0), ny - 1)
    return ix, iy


@njit(cache=True, error_model="numpy")
def _walk(h, lv0, lv1, lv2, radii, hmax, res, ox, oy, oz, rays, n):
    """Depth of the first ground hit of rays ``0..n-1`` of ``rays`` into ``rays[5]``; inf for sky.

    ``rays`` holds a ray a column: world direction x, y, z (unit depth), its horizontal rate
    and ``ratio`` (row 4): where ``ratio >= 0`` the ray is known clear up to ``ratio`` times the
    depth the ray before it was known clear to (see :func:`_column_rays`), else nothing is
    known. ``(ox, oy)`` is the origin in grid units, ``oz`` in metres. Rows 6-9 hold the hit
    cell's quadratic until its root is solved, after the walk.

    Each ray walks the grid cell by cell; a cell whose highest corner is under the ray is passed
    at once, otherwise the ray is solved against the cell's bilinear patch (a quadratic in
    depth), so the crossing is exact and nothing is stepped over. Well above the ground it jumps
    by the max-height pyramid. A hit ray is known clear up to the entry of its cell: known before
    the solve, so the next ray need not wait for this one's square root and divisions.
    """
    ny, nx = h.shape
    inf = np.inf
    inv_res = 1.0 / res
    # what a ray's walk needs that does not hang on the ray before it, for all rays first, with
    # no branch on the data (so the compiler may do several at once and nothing in the walk
    # waits on these divisions): the span of depths inside the map's box (grid units) and under
    # the terrain's ceiling, and how the ray stands (row 5, until its depth goes there): 0 it
    # walks, 1 it misses the map, 2 it rises from above the ceiling. Rows 6-9 until the walk.
    for j in range(n):
        dx = rays[0, j] * inv_res
        dy = rays[1, j] * inv_res
        dz = rays[2, j]
        inv_x = 1.0 / dx if dx != 0.0 else inf
        inv_y = 1.0 / dy if dy != 0.0 else inf
        ta = (0.0 - ox) * inv_x
        tb = (nx - 1.0 - ox) * inv_x
        t0 = max(0.05, min(ta, tb) if dx != 0.0 else -inf)
        t1 = max(ta, tb) if dx != 0.0 else inf
        ta = (0.0 - oy) * inv_y
        tb = (ny - 1.0 - oy) * inv_y
        t0 = max(t0, min(ta, tb) if dy != 0.0 else -inf)
        t1 = min(t1, max(ta, tb) if dy != 0.0 else inf)
        off = (dx == 0.0 and not 0.0 <= ox <= nx - 1.0) or (dy == 0.0 and not 0.0 <= oy <= ny - 1.0)
        above = oz > hmax and not off
        t_top = (hmax - oz) / dz
        t0 = max(t0, t_top) if above and dz < 0.0 else t0
        rays[5, j] = 1.0 if off else (2.0 if above and dz >= 0.0 else 0.0)
        rays[6, j] = t0
        rays[7, j] = t1
        rays[8, j] = inv_x
        rays[9, j] = inv_y
    t_free = 0.0
    for j in range(n):
        dx = rays[0, j] * inv_res
        dy = rays[1, j] * inv_res
        dz = rays[2, j]
        dxy = rays[3, j] + 1e-6
        ratio = rays[4, j]
        t_start = t_free * ratio if ratio >= 0.0 else 0.0
        hit = inf
        stands = rays[5, j]
        t0 = rays[6, j]
        t1 = rays[7, j]
        inv_x = rays[8, j]
        inv_y = rays[9, j]
        go = stands == 0.0
        t_free = inf if stands == 2.0 else 0.0
        if go:
            t0 = max(t0, t_start)
            if not t0 < t1:
                go = False
                t_free = t0
        if go:
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
            t_free = t
            for _ in range(1 << 22):
                if locate:  # the cell the ray is in at depth t, and the depths where it leaves it
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
                cy0 = _u(iy)
                cx0 = _u(ix)
                cy1 = _u(iy + 1)
                cx1 = _u(ix + 1)
                h00 = h[cy0, cx0]
                h10 = h[cy0, cx1]
                h01 = h[cy1, cx0]
                h11 = h[cy1, cx1]
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
                    if c <= 0.0:  # already under at the entry: a root at once (span 0, see below)
                        hit = t
                        rays[6, j] = 0.0
                        rays[7, j] = 0.0
                        rays[8, j] = 0.0
                        rays[9, j] = 0.0
                        t_free = t
                        break
                    b = dz - (ex * dx + ey * dy + k * (fx0 * dy + fy0 * dx))
                    a = -k * dx * dy
                    span = t_exit - t
                    # whether the ray goes under in this cell, from products and signs alone (so
                    # the loop's exit is settled before any square root or division): under at
                    # the far edge, or dipping in and out between (convex gap, vertex inside,
                    # below 0); the root itself is solved after the walk
                    disc = b * b - 4.0 * a * c
                    under = c + span * (b + a * span) <= 0.0
                    dips = (a > 0.0) & (b < 0.0) & (-b < 2.0 * a * span) & (disc > 0.0)
                    if under | dips:
                        hit = t
                        rays[6, j] = a
                        rays[7, j] = b
                        rays[8, j] = c
                        rays[9, j] = span
                        t_free = t
                        break
                if t_exit >= t1 or (rising and zb > hmax):
                    t_free = t_exit
                    break
                jump = 0.0
                if low - top > 0.2:  # well above the ground: the largest radius whose ceiling it clears
                    inv_dd = 1.0 / dxy
                    inv_down = 1.0 / max(-dz, 1e-6)
                    jx, jy = _nearest_at(nx, ny, ox + t_exit * dx, oy + t_exit * dy)
                    room = zb - lv0[_u(jy), _u(jx)]
                    if room > 0.0:
                        jump = min(radii[0] * inv_dd, room * inv_down)
                        room = zb - lv1[_u(jy), _u(jx)]
                        if room > 0.0:
                            jump = max(jump, min(radii[1] * inv_dd, room * inv_down))
                            room = zb - lv2[_u(jy), _u(jx)]
                            if room > 0.0:
                                jump = max(jump, min(radii[2] * inv_dd, room * inv_down))
                if jump * dxy > 2.0 * res:  # a jump shorter than two cells is walked instead
                    t = t_exit + jump
                    if t >= t1:
                        t_free = t1
                        break
                    locate = True
                elif tx <= ty:
                    t = t_exit
                    ix += sx
                    tx += tdx
                    if ix < 0 or ix > nx - 2:
                        t_free = t
                        break
                else:
                    t = t_exit
                    iy += sy
                    ty += tdy
                    if iy < 0 or iy > ny - 2:
                        t_free = t
                        break
                t_free = t
        rays[5, j] = hit
    # the first positive root in each hit cell, apart from the walk so nothing there waits on a
    # square root or a division: the stable pair q / a and c / q (c / q is the linear root when
    # a = 0); a ray already under at its cell's entry has span 0, so its root is the entry
    for j in range(n):
        t = rays[5, j]
        if t < inf:
            a = rays[6, j]
            b = rays[7, j]
            c = rays[8, j]
            span = rays[9, j]
            q = -0.5 * (b + math.copysign(math.sqrt(max(b * b - 4.0 * a * c, 0.0)), b))
            r1 = q / a
            r2 = c / q
            rays[5, j] = t + min(r1 if r1 > 0.0 else inf, r2 if r2 > 0.0 else inf, span)


# Explicit signatures compile (or load from the cache) at import, so the first frame is not the
# one that pays, and a test's timeout never includes the compilation.
_A2 = "float32[:, ::1]"
_CAST_SIG = (f"void(int64[::1], float64[:, ::1], float64[::1], float64[::1], float64, {_A2}, {_A2}, {_A2}, {_A2}, "
             "float64[::1], float64, float32[::1])")
_A3 = "float32[:, :, ::1]"
_IMAGE_SIG = (f"void(int64[::1], float64[:, ::1], float64[:, ::1], float64, float64, float64, float64, int64, "
              f"float64[::1], float64, {_A2}, {_A2}, {_A2}, {_A2}, float64[::1], float64, float64, boolean, {_A2}, "
              f"{_A2}, float64, float64, float64, {_A3}, {_A3})")


@njit(_CAST_SIG, cache=True, nogil=True, error_model="numpy")
def cast_rays(idx, dirs, origin, grid_origin, res, h, lv0, lv1, lv2, radii, hmax, out):
    """Depth of the first hit of rays ``origin + t * dirs[i]`` (``i`` in ``idx``) into ``out``."""
    n = idx.shape[0]
    rays = np.empty((10, n), np.float64)
    for k in range(n):
        i = idx[k]
        rays[0, k] = dirs[i, 0]
        rays[1, k] = dirs[i, 1]
        rays[2, k] = dirs[i, 2]
        rays[3, k] = math.sqrt(dirs[i, 0] * dirs[i, 0] + dirs[i, 1] * dirs[i, 1])
        rays[4, k] = -1.0  # unrelated rays: each walks from the camera
    _walk(h, lv0, lv1, lv2, radii, hmax, res, (origin[0] - grid_origin[0]) / res, (origin[1] - grid_origin[1]) / res,
          origin[2], rays, n)
    for k in range(n):
        out[idx[k]] = rays[5, k]


@njit(cache=True, inline="always", error_model="numpy")
def _column_rays(u, rot, fx, fy, cx, cy, height, lipschitz, rays):
    """The rays of image column ``u``, bottom up, into ``rays`` (x, y, z, horizontal rate, ratio).

    ``rot`` has the camera axes as columns. A pixel's direction is ``rot @ ((u - cx) / fx,
    (v - cy) / fy, 1)``, so its depth is the ray parameter, exactly as in the reference.

    **Column coherence.** A column is cast from the bottom up, and each ray starts where the
    ray below it was known clear of the ground, when that is provably safe: with ``s`` the
    horizontal distance, two rays from one origin are ``s * dphi`` apart sideways (``dphi`` the
    difference of their azimuths) and ``s * (tan e1 - tan e0)`` apart in height; the ground
    rises no faster than ``lipschitz`` (its steepest slope), so if ``tan e1 - tan e0 >=
    lipschitz * dphi`` the upper ray is above the ground wherever the lower one was. So each
    column walks the terrain front to back about once, whatever its height in pixels. That
    holds for any camera roll up to about ``atan(1 / lipschitz)``; beyond it a ray starts from
    the camera. The test depends on the directions alone, so it is made here: ``ratio`` turns a
    depth on the ray below into the depth on this ray at the same horizontal distance, and is
    -1 where the ray may not start there.
    """
    inv_fy = 1.0 / fy
    xn = (u - cx) / fx
    # two passes with no value carried from one ray to the next inside either, so the compiler
    # can do several rays at once: the directions (and, in rows 6 and 7 for now, the reciprocal
    # horizontal rate and the elevation's tangent), then each ray's test against the one below
    a0 = rot[0, 0] * xn
    a1 = rot[1, 0] * xn
    a2 = rot[2, 0] * xn
    b0, b1, b2 = rot[0, 1], rot[1, 1], rot[2, 1]
    c0, c1, c2 = rot[0, 2], rot[1, 2], rot[2, 2]
    for j in range(height):
        yn = (height - 1 - j - cy) * inv_fy
        wx = a0 + b0 * yn + c0
        wy = a1 + b1 * yn + c1
        wz = a2 + b2 * yn + c2
        hxy = math.sqrt(wx * wx + wy * wy)
        flat = hxy > 1e-9
        inv_hxy = 1.0 / hxy
        rays[0, j] = wx
        rays[1, j] = wy
        rays[2, j] = wz
        rays[3, j] = hxy
        rays[6, j] = inv_hxy if flat else 0.0
        rays[7, j] = wz * inv_hxy if flat else np.inf
    rays[4, 0] = -1.0
    for j in range(1, height):
        wx = rays[0, j]
        wy = rays[1, j]
        bx = rays[0, j - 1]
        by = rays[1, j - 1]
        inv_hxy = rays[6, j]
        inv_bxy = rays[6, j - 1]
        # |sin dphi| from the cross product; asin(x) <= x (1 + x^2) for x <= 0.5
        x = abs(bx * wy - by * wx) * inv_bxy * inv_hxy
        safe = ((inv_hxy > 0.0) & (inv_bxy > 0.0) & (bx * wx + by * wy > 0.0) & (x < 0.5)
                & (rays[7, j] - rays[7, j - 1] >= lipschitz * x * (1.0 + x * x) * 1.01 + 1e-12))
        rays[4, j] = rays[3, j - 1] * inv_hxy * (1.0 - 1e-6) if safe else -1.0


@njit(_IMAGE_SIG, cache=True, nogil=True, error_model="numpy")
def render_image(cols, rot, origins, fx, fy, cx, cy, height, grid_origin, res, h, lv0, lv1, lv2, radii, hmax,
                 lipschitz, shade, rad, tile, detail, detail_scale, gain, depth_out, lum_out):
    """Depth and (with ``shade``) brightness in DN, relative brightness times ``gain`` times 255, of
    the columns in ``cols``, for each eye: one row of ``origins`` an eye, all of one rotation.

    ``depth_out[e]`` and ``lum_out[e]`` are eye ``e``'s images stored transposed (one image
    column a row), so a column's pixels are at consecutive addresses. Per column: its rays
    (:func:`_column_rays`, made once for all the eyes: a ray's direction and its coherence test
    depend on the rotation alone), then for each eye the walks (:func:`_walk`, the only serial
    part) and the shading of the hits, apart from the walks so no branch there waits on them:
    Lambertian radiance per grid node, times a seeded sub-grid detail texture that fades as a
    pixel's footprint outgrows it. The eyes of a stereo pair take turns column by column, so
    the second walks the cells the first has just brought into the cache. Runs without the
    GIL, from several threads at once on disjoint column sets (:func:`run_threads`), or from one
    worker thread alone for a background capture.
    """
    n_eyes = origins.shape[0]
    inv_res = 1.0 / res
    inv_scale = 1.0 / detail_scale
    fade = 0.25 * inv_scale / fx
    rny, rnx = rad.shape
    tny, tnx = tile.shape
    mx = tnx - 1  # the tile's sides are powers of two: wrapping is a mask, not a division
    my = tny - 1
    rays = np.empty((10, height), np.float64)
    for k in range(cols.shape[0]):
        u = cols[k]
        _column_rays(u, rot, fx, fy, cx, cy, height, lipschitz, rays)
        col = _u(u)
        for e in range(n_eyes):
            px0 = origins[e, 0]
            py0 = origins[e, 1]
            # the walk leaves rows 0-4 (the column's rays) as they were, for the next eye
            _walk(h, lv0, lv1, lv2, radii, hmax, res, (px0 - grid_origin[0]) / res, (py0 - grid_origin[1]) / res,
                  origins[e, 2], rays, height)
            for j in range(height):
                v = _u(height - 1 - j)
                t = rays[5, j]
                depth_out[e, col, v] = t
                if not shade:
                    continue
                if t == np.inf:
                    lum_out[e, col, v] = 0.0
                    continue
                px = px0 + rays[0, j] * t
                py = py0 + rays[1, j] * t
                x0, y0, wx, wy = _bilinear_at(rnx, rny, (px - grid_origin[0]) * inv_res,
                                              (py - grid_origin[1]) * inv_res)
                qy0 = _u(y0)
                qx0 = _u(x0)
                qy1 = _u(y0 + 1)
                qx1 = _u(x0 + 1)
                top = rad[qy0, qx0] + wx * (rad[qy0, qx1] - rad[qy0, qx0])
                bot = rad[qy1, qx0] + wx * (rad[qy1, qx1] - rad[qy1, qx0])
                val = top + wy * (bot - top)
                wgt = min(max(1.0 - t * fade, 0.0), 1.0) * detail
                if wgt > 0.0:  # the texture fades out where a pixel's footprint outgrows it
                    sxf = px * inv_scale
                    syf = py * inv_scale
                    fx0 = math.floor(sxf)
                    fy0 = math.floor(syf)
                    ax = sxf - fx0
                    ay = syf - fy0
                    a0 = _u(int(fx0) & mx)
                    b0 = _u(int(fy0) & my)
                    a1 = _u((int(fx0) + 1) & mx)
                    b1 = _u((int(fy0) + 1) & my)
                    top = tile[b0, a0] + ax * (tile[b0, a1] - tile[b0, a0])
                    bot = tile[b1, a0] + ax * (tile[b1, a1] - tile[b1, a0])
                    det = top + ay * (bot - top)
                    val *= min(max(1.0 + wgt * det, 0.2), 2.0)
                lum_out[e, col, v] = np.float32(val * gain) * np.float32(255.0)  # as float32, rounded twice


def threads() -> int:
    """How many threads a frame is split over: one per core."""
    return max(1, os.cpu_count() or 1)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def run_threads(kernel, n_items: int, parallel: bool, *args) -> None:
    """Run ``kernel(items, *args)`` over ``range(n_items)``, in blocks shared out across the cores.

    The kernels release the GIL, so plain threads run them in parallel. Each thread takes the
    next block of consecutive items until none is left, so a core that other work slows down
    simply takes fewer blocks (a fixed split would make the frame wait for it), and neighbouring
    columns, which walk much the same cells, run on one core. Which thread runs a block does not
    change its result. With ``parallel`` False the calling thread does all of it (a worker's
    background capture uses one core, leaving the other to the control loop).
    """
    n = threads() if parallel else 1
    if n == 1 or n_items < 2 * n:
        kernel(np.arange(n_items, dtype=np.int64), *args)
        return
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="render")
    # about 16 blocks a thread: small enough to even out, large enough that a call's few
    # microseconds of dispatch stay negligible
    blocks = np.array_split(np.arange(n_items, dtype=np.int64), min(n_items, 16 * n))
    taken = itertools.count()  # next() on it is atomic under the GIL

    def work() -> None:
        for i in iter(taken.__next__, -1):
            if i >= len(blocks):
                return
            kernel(blocks[i], *args)

    futures = [_pool.submit(work) for _ in range(n - 1)]
    work()
    for f in futures:
        f.result()
