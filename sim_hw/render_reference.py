"""The reference renderer: pinhole ray casting over the heightmap, vectorised in numpy and OpenCV.

This is the renderer Magpie used before :mod:`sim_hw.render_kernel`; it stays as the reference
the compiled one is held to (``tests/sim_hw/test_render_kernel.py``) and as the bench's
baseline. :class:`sim_hw.render.Renderer` shares its caches (the max-height pyramid, the
Lipschitz slope map, the shaded radiance per sun and the detail tile).

**Ray casting.** Every pixel's ray is ``p(t) = o + t * D`` with ``D = R (xn, yn, 1)``, so the
parameter ``t`` *is* the pixel's depth along the optical axis. Rays march over the heightmap
with steps chosen to be safe:

* a small pyramid of max-filtered heightmaps says how high the ground can be within a radius;
  while the ray is above that ceiling it may jump to the edge of the radius (or down to the
  ceiling), which crosses open ground in a few steps;
* near the ground a Lipschitz step: a map of the steepest slope within a small radius bounds
  how fast the ground can rise, so ``gap / (slope * horizontal + descent)`` cannot overshoot;
  where the ground is smooth a secant step on the gap may go further, but never more than a cell
  (or two pixel footprints) sideways, and no step is shorter than one pixel footprint;
* once a sample is below the ground, a bracket wider than a cell is sampled for the first
  crossing (a grazing ray may cut through a bump and out again), then regula falsi pins the
  crossing to well under a millimetre.

Rays are kept in compacted arrays (finished rays drop out, by integer gathers), so the work
follows the rays still marching; height lookups use ``cv2.remap``. Ray directions are rotated
with ``einsum`` rather than ``@``: a (N, 3) x (3, 3) product through multithreaded BLAS gives
the same numbers but pays thread hand-offs that cost more than the arithmetic (14-47 % of a
frame measured), and fights the other processes for the cores.

**Shading.** Lambertian: radiance = albedo * (ambient + (1 - ambient) * max(0, n . s) * lit),
computed once per sun direction on the whole grid (with a cast-shadow mask when shadows are on)
and then sampled at each hit. A seeded fine-detail texture, anchored to the ground, modulates
the albedo below the grid resolution, fading with distance as a pixel's footprint grows, so near
field images carry texture for stereo matching. The sky is black.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import cv2
import numpy as np

from hal.contracts import CameraModel
from sim_hw.terrain import Terrain

if TYPE_CHECKING:
    from sim_hw.render import CameraPose

log = logging.getLogger(__name__)


def _remap(img: np.ndarray, gx: np.ndarray, gy: np.ndarray, interp: int) -> np.ndarray:
    """Sample an image at arbitrary (x, y) pixel coordinates of any 1-D length.

    ``cv2.remap`` wants 2-D maps narrower than 32767, so the bulk goes as a (rows, 1024) view
    without copying and the remainder as one short row.
    """
    n = gx.size
    cols = 1024
    bulk = n - n % cols
    gx = np.ascontiguousarray(gx, dtype=np.float32)
    gy = np.ascontiguousarray(gy, dtype=np.float32)
    parts = []
    if bulk:
        parts.append(cv2.remap(img, gx[:bulk].reshape(-1, cols), gy[:bulk].reshape(-1, cols), interp,
                               borderMode=cv2.BORDER_REPLICATE).reshape(-1))
    if n > bulk:
        parts.append(cv2.remap(img, gx[bulk:].reshape(1, -1), gy[bulk:].reshape(1, -1), interp,
                               borderMode=cv2.BORDER_REPLICATE).reshape(-1))
    if not parts:
        return np.zeros(0, dtype=img.dtype)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _blur_periodic(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a tile that wraps around, so the tile repeats without seams."""
    pad = int(math.ceil(4 * sigma))
    big = np.pad(img, pad, mode="wrap")
    return cv2.GaussianBlur(big, (0, 0), sigma)[pad:-pad, pad:-pad]


class ReferenceRenderer:
    """Renders one terrain (the numpy reference). Caches the max-height pyramid and the shaded radiance per sun.

    ``max_step_cells`` and ``min_step_px`` trade exactness for speed: the defaults find every
    feature a pixel could show; larger values step over sub-pixel bumps on grazing rays.
    ``shadows`` adds cast shadows (computed once per sun direction, about 0.1-0.3 s on a 100 m
    map); ``detail`` is the strength of the sub-grid texture.
    """

    def __init__(
        self,
        terrain: Terrain,
        *,
        ambient: float = 0.03,
        shadows: bool = True,
        detail: float = 0.35,
        detail_scale_m: float = 0.01,
        max_step_cells: float = 1.0,
        min_step_px: float = 1.0,
        seed: int = 0,
        tint_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> None:
        self.terrain = terrain
        self.ambient = float(ambient)
        self.shadows = bool(shadows)
        self.detail = float(detail)
        self.detail_scale_m = float(detail_scale_m)
        self.max_step_cells = float(max_step_cells)
        self.cap_px = 2.0 * max(1.0, min_step_px)
        self.min_step_px = float(min_step_px)
        self.tint_bgr = tint_bgr
        self._version = -1
        self._radiance_key: tuple | None = None
        self._radiance: np.ndarray | None = None
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xDE7A]))
        tile = rng.standard_normal((512, 512)).astype(np.float32)
        fine = _blur_periodic(tile, 1.2)
        mid = _blur_periodic(tile[::-1].copy(), 4.0)
        tex = fine / (fine.std() + 1e-9) + 0.7 * mid / (mid.std() + 1e-9)
        self._detail_tile = (tex / tex.std()).astype(np.float32)
        self._prepare()

    # ------------------------------------------------------------------ caches

    def _prepare(self) -> None:
        t = self.terrain
        if self._version == t.version:
            return
        self._h = t.heights.astype(np.float32)
        self._hmax = float(self._h.max())
        self._levels: list[tuple[np.ndarray, float]] = []
        cur = self._h
        k_total = 0
        for k in (4, 12, 48):  # cumulative half-widths 4, 16, 64 cells
            kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
            cur = cv2.dilate(cur, kernel, borderType=cv2.BORDER_REPLICATE)
            k_total += k
            self._levels.append((cur, (k_total - 1.5) * t.resolution_m))
        # Lipschitz bound: the steepest bilinear slope anywhere within a small radius of a node
        h64 = self._h.astype(np.float64)
        gx = np.abs(np.diff(h64, axis=1)) / t.resolution_m
        gy = np.abs(np.diff(h64, axis=0)) / t.resolution_m
        gx_node = np.maximum(np.pad(gx, ((0, 0), (1, 0)), mode="edge"), np.pad(gx, ((0, 0), (0, 1)), mode="edge"))
        gy_node = np.maximum(np.pad(gy, ((1, 0), (0, 0)), mode="edge"), np.pad(gy, ((0, 1), (0, 0)), mode="edge"))
        k = 6
        kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
        self._slope = cv2.dilate(np.hypot(gx_node, gy_node).astype(np.float32), kernel,
                                 borderType=cv2.BORDER_REPLICATE)
        self._slope_radius = (k - 1.5) * t.resolution_m
        self._version = t.version
        self._radiance_key = None

    def _shadow_mask(self, sun: np.ndarray) -> np.ndarray:
        """1 where a grid node sees the sun, 0 where terrain toward the sun blocks it."""
        t = self.terrain
        h = self._h
        horiz = math.hypot(sun[0], sun[1])
        ny, nx = h.shape
        if horiz < 1e-6:
            return np.ones_like(h)
        tan_el = sun[2] / horiz
        ux, uy = sun[0] / horiz, sun[1] / horiz
        gx, gy = np.meshgrid(np.arange(nx, dtype=np.float32), np.arange(ny, dtype=np.float32))
        excess = np.full_like(h, -np.inf)
        d = t.resolution_m
        reach = min(max(t.size_m), (self._hmax - float(h.min())) / max(tan_el, 1e-3))
        while d <= reach:
            cells = d / t.resolution_m
            hq = cv2.remap(h, gx + np.float32(ux * cells), gy + np.float32(uy * cells), cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            np.maximum(excess, hq - h - np.float32(d * tan_el), out=excess)
            d += max(t.resolution_m, 0.05 * d)  # one cell near, 5 % of the distance far
        # soft edge over a couple of centimetres so shadow borders are not stair-stepped
        lit = np.clip(1.0 - excess / 0.02, 0.0, 1.0).astype(np.float32)
        return cv2.GaussianBlur(lit, (3, 3), 0)

    def radiance_grid(self, sun: np.ndarray) -> np.ndarray:
        """Albedo times Lambertian shading at every grid node for a unit sun vector."""
        self._prepare()
        sun = np.asarray(sun, dtype=float)
        # a new sun direction every ~0.2 deg: the Moon's sun moves that far in ~25 min
        key = (self.terrain.version, *np.round(sun / 0.004).tolist(), self.shadows)
        if self._radiance_key == key and self._radiance is not None:
            return self._radiance
        n = self.terrain.normal_grid()
        cos_i = np.clip(n @ sun.astype(np.float32), 0.0, None) if sun[2] > 0 else np.zeros(n.shape[:2], np.float32)
        if self.shadows and sun[2] > 0:
            cos_i = cos_i * self._shadow_mask(sun)
        rad = self.terrain.albedo * (self.ambient + (1.0 - self.ambient) * cos_i)
        self._radiance = rad.astype(np.float32)
        self._radiance_key = key
        return self._radiance

    # ------------------------------------------------------------------ ray casting

    def _rays(self, model: CameraModel, pose: CameraPose, step: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
        off = (step - 1) / 2.0
        us = np.arange(0, model.width, step, dtype=np.float64)[: (model.width + step - 1) // step] + off
        vs = np.arange(0, model.height, step, dtype=np.float64)[: (model.height + step - 1) // step] + off
        uu, vv = np.meshgrid(us, vs)
        cam = np.stack([(uu - model.cx) / model.fx, (vv - model.cy) / model.fy, np.ones_like(uu)], axis=-1)
        # einsum, not @: see the module docstring (BLAS threads cost more than they save here)
        return np.einsum("nj,ij->ni", cam.reshape(-1, 3), pose.rotation), uu.shape  # type: ignore[return-value]

    def raycast(
        self, origin: np.ndarray, dirs: np.ndarray, pixel_angle: float
    ) -> np.ndarray:
        """Depth (t) of the first ground hit along each ray ``origin + t * dirs``; inf for sky.

        ``pixel_angle`` (radians, about 1 / fx) sets the shortest step: the footprint of a pixel.
        """
        self._prepare()
        ter = self.terrain
        res = ter.resolution_m
        ny, nx = self._h.shape
        n = dirs.shape[0]
        dx = (dirs[:, 0] / res).astype(np.float32)
        dy = (dirs[:, 1] / res).astype(np.float32)
        dz = dirs[:, 2].astype(np.float32)
        dxy = np.hypot(dirs[:, 0], dirs[:, 1]).astype(np.float32) + np.float32(1e-6)
        ox = np.float32((origin[0] - ter.origin[0]) / res)
        oy = np.float32((origin[1] - ter.origin[1]) / res)
        oz = np.float32(origin[2])

        # slab intersection with the map's box (grid units) and the ceiling of the terrain
        t0 = np.full(n, 0.05, np.float32)
        t1 = np.full(n, np.inf, np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            for o, d, hi in ((ox, dx, nx - 1.0), (oy, dy, ny - 1.0)):
                ta = (0.0 - o) / d
                tb = (hi - o) / d
                lo_t = np.where(d != 0, np.minimum(ta, tb), np.where((o >= 0) & (o <= hi), -np.inf, np.inf))
                hi_t = np.where(d != 0, np.maximum(ta, tb), np.where((o >= 0) & (o <= hi), np.inf, -np.inf))
                t0 = np.maximum(t0, lo_t)
                t1 = np.minimum(t1, hi_t)
            if oz > self._hmax:
                t_ceiling = np.where(dz < 0, (self._hmax - oz) / dz, np.inf)
                t0 = np.maximum(t0, t_ceiling)
        t0 = t0.astype(np.float32)
        t1 = t1.astype(np.float32)
        depth = np.full(n, np.inf, np.float32)

        idx = np.flatnonzero(t0 < t1)
        t = t0[idx]
        t_prev = t.copy()
        gap_prev = np.full(t.size, np.inf, np.float32)
        # per-ray constants, compacted along with the rays
        inv_dd = np.float32(1.0) / dxy[idx]
        ddx, ddy, ddz, tend = dx[idx], dy[idx], dz[idx], t1[idx]
        down = np.maximum(-ddz, np.float32(0.0))
        rising = ddz >= 0
        hits_i: list[np.ndarray] = []
        hits_lo: list[np.ndarray] = []
        hits_hi: list[np.ndarray] = []
        hits_glo: list[np.ndarray] = []
        hits_ghi: list[np.ndarray] = []
        pa_min = np.float32(pixel_angle * self.min_step_px)
        pa_cap = np.float32(pixel_angle * self.cap_px)
        cell = np.float32(res * self.max_step_cells)
        slope_r = np.float32(self._slope_radius)
        hmax = np.float32(self._hmax)
        tiny = np.float32(1e-9)
        for _ in range(1000):
            if idx.size == 0:
                break
            gx = ox + t * ddx
            gy = oy + t * ddy
            pz = oz + t * ddz
            gap = pz - _remap(self._h, gx, gy, cv2.INTER_LINEAR)
            hitm = gap <= 0.0
            hit = np.flatnonzero(hitm)
            if hit.size:
                hits_i.append(idx[hit])
                hits_lo.append(t_prev[hit])
                hits_hi.append(t[hit])
                hits_glo.append(gap_prev[hit])
                hits_ghi.append(gap[hit])
            # near the ground: the Lipschitz step (the ground within the slope map's radius cannot
            # rise faster than its steepest slope, so the ray cannot reach it sooner), or a secant
            # step on the gap where the ground is locally smooth, limited to a cell (or two pixel
            # footprints) sideways so nothing a pixel could show is stepped over
            slope = _remap(self._slope, gx, gy, cv2.INTER_NEAREST)
            safe = np.minimum(gap / (slope + down * inv_dd + tiny) * inv_dd, slope_r * inv_dd)
            closing = (gap_prev - gap) / np.maximum(t - t_prev, tiny)
            secant = np.where(closing > 0, gap / np.maximum(closing, tiny), np.float32(0.0))
            step = np.maximum(safe, np.minimum(secant, np.maximum(cell * inv_dd, pa_cap * t)))
            # well above the ground: jump by the largest radius whose ceiling the ray clears
            far = np.flatnonzero(gap > np.float32(0.2))
            if far.size:
                fgx, fgy, fpz, finv = gx[far], gy[far], pz[far], inv_dd[far]
                fstep = step[far]
                inv_down = np.float32(1.0) / np.maximum(down[far], np.float32(1e-6))
                for mx, radius in self._levels:
                    room = fpz - _remap(mx, fgx, fgy, cv2.INTER_NEAREST)
                    s_l = np.minimum(np.float32(radius) * finv, room * inv_down)
                    fstep = np.where(room > 0, np.maximum(fstep, s_l), fstep)
                step[far] = fstep
            t_new = t + np.maximum(step, pa_min * t)
            cont = ~(hitm | (t_new >= tend) | (rising & (pz > hmax)))
            sel = np.flatnonzero(cont)
            if sel.size < idx.size:  # integer gathers: much cheaper than boolean compaction
                idx, ddx, ddy, ddz, tend = idx[sel], ddx[sel], ddy[sel], ddz[sel], tend[sel]
                inv_dd, down, rising = inv_dd[sel], down[sel], rising[sel]
                t_prev, gap_prev, t = t[sel], gap[sel], t_new[sel]
            else:
                t_prev, gap_prev, t = t, gap, t_new

        if hits_i:
            hi_idx = np.concatenate(hits_i)
            lo = np.concatenate(hits_lo)
            hi = np.concatenate(hits_hi)
            glo = np.concatenate(hits_glo)
            ghi = np.concatenate(hits_ghi)
            ddx, ddy, ddz = dx[hi_idx], dy[hi_idx], dz[hi_idx]
            glo = np.where(glo < np.float32(1e6), glo, np.float32(1.0))
            # a bracket wider than a cell may hold several crossings (a ray grazing a bump):
            # sample inside it and keep the first sub-interval where the ray goes under
            wide = np.flatnonzero((hi - lo) * dxy[hi_idx] > np.float32(res))
            if wide.size:
                wl, wh = lo[wide], hi[wide]
                k = 5
                fr = np.arange(1, k, dtype=np.float32) / np.float32(k)
                ts = wl[:, None] + (wh - wl)[:, None] * fr[None, :]
                wx, wy, wz = ddx[wide, None], ddy[wide, None], ddz[wide, None]
                g = (oz + ts * wz - _remap(self._h, (ox + ts * wx).ravel(), (oy + ts * wy).ravel(),
                                          cv2.INTER_LINEAR).reshape(ts.shape))
                ts = np.concatenate([wl[:, None], ts, wh[:, None]], axis=1)
                g = np.concatenate([glo[wide, None], g, ghi[wide, None]], axis=1)
                first = np.argmax(g[:, 1:] <= 0.0, axis=1) + 1
                rows = np.arange(wide.size)
                lo[wide], hi[wide] = ts[rows, first - 1], ts[rows, first]
                glo[wide], ghi[wide] = g[rows, first - 1], g[rows, first]
            # regula falsi between the last sample above and the first below (Illinois variant)
            for _ in range(3):
                w = glo / np.maximum(glo - ghi, np.float32(1e-9))
                mid = lo + np.clip(w, 0.02, 0.98) * (hi - lo)
                g = oz + mid * ddz - _remap(self._h, ox + mid * ddx, oy + mid * ddy, cv2.INTER_LINEAR)
                below = g <= 0.0
                hi = np.where(below, mid, hi)
                ghi = np.where(below, g, ghi * np.float32(0.5))
                lo = np.where(below, lo, mid)
                glo = np.where(below, glo * np.float32(0.5), g)
            w = glo / np.maximum(glo - ghi, np.float32(1e-9))
            depth[hi_idx] = lo + np.clip(w, 0.0, 1.0) * (hi - lo)
        return depth

    def render_depth(self, model: CameraModel, pose: CameraPose) -> np.ndarray:
        """Depth image (H, W) float32 along the optical axis; inf where the ray sees sky."""
        dirs, shape = self._rays(model, pose, 1)
        return self.raycast(pose.position, dirs, 1.0 / model.fx).reshape(shape)

    # ------------------------------------------------------------------ images

    def shade(
        self, model: CameraModel, pose: CameraPose, depth: np.ndarray, sun: np.ndarray,
        exposure: float = 1.0,
    ) -> np.ndarray:
        """Relative brightness (H, W) float32 of the ground seen at each pixel's depth."""
        ter = self.terrain
        rad = self.radiance_grid(sun)
        dirs, _ = self._rays(model, pose, 1)
        d = depth.reshape(-1)
        ok = np.isfinite(d)
        out = np.zeros(d.size, np.float32)
        if ok.any():
            p = pose.position + dirs[ok] * d[ok, None]
            gx = (p[:, 0] - ter.origin[0]) / ter.resolution_m
            gy = (p[:, 1] - ter.origin[1]) / ter.resolution_m
            val = _remap(rad, gx, gy, cv2.INTER_LINEAR)
            if self.detail > 0:
                s = self.detail_scale_m
                tile = self._detail_tile
                tx = np.mod(p[:, 0] / s, tile.shape[1])
                ty = np.mod(p[:, 1] / s, tile.shape[0])
                det = _remap(tile, tx, ty, cv2.INTER_LINEAR)
                footprint = d[ok] / model.fx
                w = np.clip(1.0 - footprint / (4.0 * s), 0.0, 1.0) * self.detail
                val = val * np.clip(1.0 + w * det, 0.2, 2.0)
            out[ok] = val
        # auto-exposure on flat ground of the mean albedo under the present sun
        albedo_ref = float(np.mean(ter.albedo))
        gain = exposure / (2.2 * albedo_ref * max(float(sun[2]), 0.25))
        return (out * gain).reshape(depth.shape)

    def render(
        self,
        model: CameraModel,
        pose: CameraPose,
        sun: np.ndarray,
        *,
        exposure: float = 1.0,
        bgr: bool = False,
        noise_dn: float = 0.0,
        rng: np.random.Generator | None = None,
        return_depth: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """A uint8 image (grey HxW or BGR HxWx3) of the terrain from a pose under a sun vector."""
        depth = self.render_depth(model, pose)
        lum = self.shade(model, pose, depth, np.asarray(sun, dtype=float), exposure) * 255.0
        if noise_dn > 0:
            gen = rng if rng is not None else np.random.default_rng(0)
            lum = lum + gen.standard_normal(lum.shape).astype(np.float32) * np.float32(noise_dn)
        if bgr:
            tint = np.asarray(self.tint_bgr, np.float32)
            img = np.clip(lum[..., None] * tint, 0, 255).astype(np.uint8)
        else:
            img = np.clip(lum, 0, 255).astype(np.uint8)
        return (img, depth) if return_depth else img

    def render_stereo(
        self, model: CameraModel, pose: CameraPose, sun: np.ndarray, baseline_m: float, **kw
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rectified left and right images from eyes ``baseline_m`` apart about ``pose``."""
        left, right = pose.stereo(baseline_m)
        return self.render(model, left, sun, **kw), self.render(model, right, sun, **kw)  # type: ignore[return-value]
