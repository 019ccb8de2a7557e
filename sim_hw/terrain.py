"""Seeded procedural terrain: a heightmap with craters and rocks, and an albedo map.

The map is a regular grid (``heights[j, i]`` is the surface height at
``x = origin_x + i * resolution``, ``y = origin_y + j * resolution``; x east, y north, z up).
It is built in layers, each from its own seeded random stream so a seed always gives the same
ground:

1. **Fractal base** by spectral synthesis: white noise filtered to a power spectrum
   ``P(f) ~ f^-beta`` (beta about 3 gives the self-affine roughness of planetary regolith
   plains), scaled to a chosen RMS relief.
2. **Craters** with a power-law size-frequency distribution, ``N(>D) = c * D^-b`` per square
   metre (b = 2 is the lunar equilibrium slope): a parabolic bowl of depth ~0.1-0.2 D and a
   raised rim that falls off as ``(R/r)^3`` outside.
3. **Rocks** after Golombek & Rapp (1997): the cumulative fractional area covered by rocks of
   diameter >= D is ``F_k(D) = k * exp(-q(k) * D)`` with ``q = 1.79 + 0.152 / k``; rock height is
   about half the diameter. This gives few large rocks and many small ones. Rocks are domes in
   the heightmap and also kept as ground truth (x, y, radius, height). A node holds the highest
   point of a rock within its cell, so even a rock narrower than two cells reaches its full
   height in the map: the ground the wheels, the cameras and the truth see is the same.

The albedo map is seeded noise around the body's mean albedo, darker in crater interiors and on
rocks, so a rendered image has texture for stereo matching and feature tracking.
"""

from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass, replace

import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rock:
    """Ground truth of one rock: centre (m), base radius (m), height above the ground (m)."""

    x: float
    y: float
    radius: float
    height: float
    z_base: float = 0.0

    @property
    def diameter(self) -> float:
        return 2.0 * self.radius


@dataclass(frozen=True, slots=True)
class Crater:
    """Ground truth of one crater: centre, rim diameter and bowl depth (m)."""

    x: float
    y: float
    diameter: float
    depth: float


def golombek_q(k: float) -> float:
    """Exponent of the Golombek model for rock abundance k (fraction of area covered by rocks)."""
    return 1.79 + 0.152 / k


def golombek_area_fraction(k: float, diameter_m: float | np.ndarray) -> float | np.ndarray:
    """Cumulative fractional area covered by rocks of diameter >= D (Golombek & Rapp 1997)."""
    return k * np.exp(-golombek_q(k) * np.asarray(diameter_m, dtype=float))


def sample_rock_diameters(
    rng: np.random.Generator, k: float, area_m2: float, d_min: float, d_max: float
) -> np.ndarray:
    """Draw rock diameters for an area from the Golombek model.

    The number density of rocks per unit diameter is ``n(D) = -dF_k/dD / (pi D^2 / 4)``: the
    fractional area they cover divided by the area of one rock. Its integral over
    ``[d_min, d_max]`` times the area is the expected count; the count is Poisson and diameters
    are drawn by inverting the numerical cumulative distribution.
    """
    if k <= 0.0 or d_max <= d_min:
        return np.zeros(0)
    q = golombek_q(k)
    d = np.geomspace(d_min, d_max, 4000)
    n = k * q * np.exp(-q * d) * 4.0 / (np.pi * d * d)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (n[1:] + n[:-1]) * np.diff(d))])
    expected = cdf[-1] * area_m2
    count = int(rng.poisson(expected))
    u = rng.random(count) * cdf[-1]
    return np.interp(u, cdf, d)


def sample_crater_diameters(
    rng: np.random.Generator, density: float, slope: float, area_m2: float, d_min: float, d_max: float
) -> np.ndarray:
    """Draw crater diameters from a truncated power law ``N(>D) = density * D^-slope`` per m^2."""
    if density <= 0.0 or d_max <= d_min:
        return np.zeros(0)
    expected = density * area_m2 * (d_min**-slope - d_max**-slope)
    count = int(rng.poisson(expected))
    u = rng.random(count)
    # inverse CDF of the truncated Pareto law
    lo, hi = d_min**-slope, d_max**-slope
    return (lo - u * (lo - hi)) ** (-1.0 / slope)


def expected_crater_count(density: float, slope: float, area_m2: float, d_min: float, d_max: float) -> float:
    """Mean number of craters the power law puts on an area between two diameters."""
    return density * area_m2 * (d_min**-slope - d_max**-slope)


def fractal_surface(
    rng: np.random.Generator, shape: tuple[int, int], resolution_m: float, beta: float, rms_m: float,
    min_wavelength_m: float = 0.0,
) -> np.ndarray:
    """Zero-mean random surface with power spectrum ~ f^-beta and the given RMS, by FFT filtering."""
    ny, nx = shape
    noise = rng.standard_normal((ny, nx))
    spec = np.fft.rfft2(noise)
    fy = np.fft.fftfreq(ny, d=resolution_m)[:, None]
    fx = np.fft.rfftfreq(nx, d=resolution_m)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = np.inf
    filt = f ** (-beta / 2.0)
    if min_wavelength_m > 0.0:
        filt = filt * np.exp(-((f * min_wavelength_m) ** 2))
    surf = np.fft.irfft2(spec * filt, s=(ny, nx))
    surf -= surf.mean()
    std = surf.std()
    if std > 0:
        surf *= rms_m / std
    return surf


@dataclass
class TerrainConfig:
    """How to build a terrain; every field has a sensible default for a small-rover site."""

    size_m: float = 100.0
    resolution_m: float = 0.1
    relief_rms_m: float = 0.25
    spectral_beta: float = 3.0
    crater_density: float = 0.02  # c in N(>D) = c D^-b per m^2 (D in m)
    crater_slope: float = 2.0
    crater_min_d_m: float = 1.0
    crater_max_d_m: float = 25.0
    rock_abundance: float = 0.01  # Golombek k
    rock_min_d_m: float = 0.15
    rock_max_d_m: float = 2.0
    max_rocks: int = 50000
    albedo: float = 0.12
    albedo_variation: float = 0.25  # relative RMS of the albedo noise
    rock_albedo_factor: float = 0.75
    crater_albedo_factor: float = 0.9
    clear_radius_m: float = 0.0  # keep a disc free of rocks (the landing site)
    clear_center: tuple[float, float] | None = None  # default: the map centre
    also_clear: tuple[tuple[float, float], ...] = ()  # more rock-free discs (other vehicles' sites)


class Terrain:
    """A heightmap with albedo, ground-truth rocks and craters, and bilinear lookups.

    Build one with :meth:`generate` (procedural) or :meth:`plane` (flat or sloped, for tests),
    then optionally :meth:`add_rock` at known places.
    """

    def __init__(
        self,
        heights: np.ndarray,
        resolution_m: float,
        albedo: np.ndarray | None = None,
        origin: tuple[float, float] = (0.0, 0.0),
        rocks: list[Rock] | None = None,
        craters: list[Crater] | None = None,
        seed: int = 0,
    ) -> None:
        heights = np.ascontiguousarray(heights, dtype=np.float32)
        if heights.ndim != 2 or min(heights.shape) < 2:
            raise ValueError("heights must be a 2-D array of at least 2 x 2")
        if resolution_m <= 0:
            raise ValueError("resolution_m must be positive")
        self.heights = heights
        self.resolution_m = float(resolution_m)
        self.origin = (float(origin[0]), float(origin[1]))
        if albedo is None:
            albedo = np.full_like(heights, 0.12)
        self.albedo = np.ascontiguousarray(albedo, dtype=np.float32)
        if self.albedo.shape != heights.shape:
            raise ValueError("albedo must have the same shape as heights")
        self.rocks: list[Rock] = list(rocks or [])
        self.craters: list[Crater] = list(craters or [])
        self.seed = seed
        self.version = 0  # bumped on every edit so renderers can refresh their caches
        self._lookup: tuple[memoryview, float, float, float, float, float, int, int] | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def generate(cls, config: TerrainConfig | None = None, seed: int = 0) -> Terrain:
        """Procedural terrain: fractal base, power-law craters and Golombek rocks, all seeded."""
        cfg = config or TerrainConfig()
        res = cfg.resolution_m
        n = int(round(cfg.size_m / res)) + 1
        ss = np.random.SeedSequence(seed)
        rng_base, rng_crater, rng_rock, rng_alb = (np.random.default_rng(s) for s in ss.spawn(4))

        heights = fractal_surface(rng_base, (n, n), res, cfg.spectral_beta, cfg.relief_rms_m)
        alb_rel = fractal_surface(rng_alb, (n, n), res, 1.6, 1.0)
        alb_fine = rng_alb.standard_normal((n, n)) * 0.5
        albedo = cfg.albedo * np.clip(1.0 + cfg.albedo_variation * (alb_rel + alb_fine), 0.3, 2.5)
        terrain = cls(heights, res, albedo, seed=seed)
        area = cfg.size_m * cfg.size_m

        diam = sample_crater_diameters(
            rng_crater, cfg.crater_density, cfg.crater_slope, area, cfg.crater_min_d_m, cfg.crater_max_d_m
        )
        diam = np.sort(diam)[::-1]  # big first, so small fresh craters overprint them
        cx = rng_crater.random(diam.size) * cfg.size_m
        cy = rng_crater.random(diam.size) * cfg.size_m
        depth_ratio = rng_crater.uniform(0.08, 0.2, diam.size)
        for x, y, d, r in zip(cx, cy, diam, depth_ratio, strict=True):
            terrain._stamp_crater(float(x), float(y), float(d), float(d * r), cfg.crater_albedo_factor)

        base = terrain.heights.copy()
        diam = sample_rock_diameters(rng_rock, cfg.rock_abundance, area, cfg.rock_min_d_m, cfg.rock_max_d_m)
        if diam.size > cfg.max_rocks:
            log.warning("terrain: %d rocks drawn, keeping the largest %d", diam.size, cfg.max_rocks)
            diam = np.sort(diam)[-cfg.max_rocks :]
        rx = rng_rock.random(diam.size) * cfg.size_m
        ry = rng_rock.random(diam.size) * cfg.size_m
        h_ratio = rng_rock.uniform(0.35, 0.6, diam.size)
        alb = cfg.rock_albedo_factor * rng_rock.uniform(0.8, 1.2, diam.size)
        if cfg.clear_radius_m > 0:
            cx0, cy0 = cfg.clear_center or (cfg.size_m / 2, cfg.size_m / 2)
            keep = np.hypot(rx - cx0, ry - cy0) > cfg.clear_radius_m + diam / 2
            for ax, ay in cfg.also_clear:
                keep &= np.hypot(rx - ax, ry - ay) > cfg.clear_radius_m + diam / 2
            diam, rx, ry, h_ratio, alb = diam[keep], rx[keep], ry[keep], h_ratio[keep], alb[keep]
        for x, y, d, hr, a in zip(rx, ry, diam, h_ratio, alb, strict=True):
            terrain._stamp_rock(base, float(x), float(y), float(d / 2), float(d * hr), albedo_factor=float(a))
        log.info(
            "terrain seed=%d: %dx%d cells at %.3f m, %d craters, %d rocks",
            seed, n, n, res, len(terrain.craters), len(terrain.rocks),
        )
        return terrain

    @classmethod
    def plane(
        cls,
        size_m: float = 20.0,
        resolution_m: float = 0.1,
        slope_deg: float = 0.0,
        uphill_azimuth_deg: float = 0.0,
        albedo: float = 0.12,
        texture: float = 0.25,
        seed: int = 0,
    ) -> Terrain:
        """A flat or uniformly sloped plane (uphill toward the azimuth, clockwise from north).

        It carries the same kind of albedo texture as generated terrain, so cameras can match on
        it, but no relief: tests know its geometry exactly.
        """
        n = int(round(size_m / resolution_m)) + 1
        coords = np.arange(n) * resolution_m
        xx, yy = np.meshgrid(coords, coords)
        az = math.radians(uphill_azimuth_deg)
        grade = math.tan(math.radians(slope_deg))
        c = size_m / 2.0
        heights = grade * ((xx - c) * math.sin(az) + (yy - c) * math.cos(az))
        rng = np.random.default_rng(seed)
        rel = fractal_surface(rng, (n, n), resolution_m, 1.6, 1.0) + 0.5 * rng.standard_normal((n, n))
        alb = albedo * np.clip(1.0 + texture * rel, 0.3, 2.5)
        return cls(heights, resolution_m, alb, seed=seed)

    # ------------------------------------------------------------------ editing

    def _window(self, x: float, y: float, radius: float) -> tuple[slice, slice, np.ndarray, np.ndarray]:
        res = self.resolution_m
        ny, nx = self.heights.shape
        i0 = max(0, int(math.floor((x - radius - self.origin[0]) / res)))
        i1 = min(nx, int(math.ceil((x + radius - self.origin[0]) / res)) + 1)
        j0 = max(0, int(math.floor((y - radius - self.origin[1]) / res)))
        j1 = min(ny, int(math.ceil((y + radius - self.origin[1]) / res)) + 1)
        xs = self.origin[0] + np.arange(i0, i1) * res - x
        ys = self.origin[1] + np.arange(j0, j1) * res - y
        r = np.hypot(xs[None, :], ys[:, None])
        return slice(j0, j1), slice(i0, i1), r, xs

    def _stamp_crater(self, x: float, y: float, d: float, depth: float, albedo_factor: float) -> None:
        radius = d / 2.0
        rows, cols, r, _ = self._window(x, y, 3.0 * radius)
        if r.size == 0:
            return
        rim = 0.2 * depth
        q = r / radius
        inside = q < 1.0
        # bowl from -depth at the centre up to the rim height at r = R, then an ejecta blanket
        profile = np.where(inside, -depth + (depth + rim) * q * q, rim * np.maximum(1.0, q) ** -3 * (q < 3.0))
        # the bowl replaces local relief in proportion; the blanket adds to it
        self.heights[rows, cols] += profile.astype(np.float32)
        self.albedo[rows, cols] *= np.where(inside, albedo_factor, 1.0).astype(np.float32)
        self.craters.append(Crater(x, y, d, depth))
        self.version += 1

    def _stamp_rock(
        self, base: np.ndarray | None, x: float, y: float, radius: float, height: float,
        albedo_factor: float | None = None, albedo: float | None = None,
    ) -> Rock:
        res = self.resolution_m
        rows, cols, _, xs = self._window(x, y, radius + res)
        ys = self.origin[1] + np.arange(rows.start, rows.stop) * res - y
        z_base = float(self.height_at(x, y))
        if xs.size >= 2 and ys.size >= 2:
            # the rock rests on the ground, it is not draped over it: its bed is the plane fitted
            # to the ground under it and a cell around, so the top stands ``height`` above that
            # plane, not above whatever hollow or bump of the fine relief lies under its centre
            ground = (base if base is not None else self.heights)[rows, cols].astype(np.float64)
            gx, gy = np.broadcast_arrays(xs[None, :], ys[:, None])
            a = np.column_stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
            coef, *_ = np.linalg.lstsq(a, ground.ravel(), rcond=None)
            z_base = float(coef[2])
            # each node takes the highest point of the dome within its cell (the square of one
            # resolution around it): the distance from the rock's centre to the nearest point of
            # that square, not to the node. A node samples the rock at its top, so a rock a cell
            # or two across stands in the map at its full height (sampled at the nodes alone it
            # could lose half of it between them), and wheels and cameras meet what the truth holds
            ex = np.maximum(np.abs(xs) - 0.5 * res, 0.0)[None, :]
            ey = np.maximum(np.abs(ys) - 0.5 * res, 0.0)[:, None]
            r = np.hypot(ex, ey)
            q = np.clip(r / radius, 0.0, 1.0)
            bed = coef[0] * gx + coef[1] * gy + coef[2]
            top = (bed + height * np.sqrt(1.0 - q * q)).astype(np.float32)
            on = r < radius
            here = self.heights[rows, cols]
            self.heights[rows, cols] = np.where(on, np.maximum(here, top), here)
            alb = self.albedo[rows, cols]
            if albedo is not None:
                self.albedo[rows, cols] = np.where(on, np.float32(albedo), alb)
            elif albedo_factor is not None:
                self.albedo[rows, cols] = np.where(on, alb * np.float32(albedo_factor), alb)
        rock = Rock(x, y, radius, height, z_base)
        self.rocks.append(rock)
        self.version += 1
        return rock

    def add_rock(
        self, x: float, y: float, radius: float, height: float, albedo: float | None = None
    ) -> Rock:
        """Place a dome-shaped rock at (x, y); ``albedo`` sets its surface brightness (0..1)."""
        if radius <= 0 or height <= 0:
            raise ValueError("rock radius and height must be positive")
        return self._stamp_rock(None, x, y, radius, height, albedo=albedo)

    # ------------------------------------------------------------------ geometry

    @property
    def shape(self) -> tuple[int, int]:
        return self.heights.shape  # type: ignore[return-value]

    @property
    def size_m(self) -> tuple[float, float]:
        """Extent (x, y) in metres."""
        ny, nx = self.heights.shape
        return ((nx - 1) * self.resolution_m, (ny - 1) * self.resolution_m)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(x_min, x_max, y_min, y_max)."""
        sx, sy = self.size_m
        return (self.origin[0], self.origin[0] + sx, self.origin[1], self.origin[1] + sy)

    @property
    def center(self) -> tuple[float, float]:
        x0, x1, y0, y1 = self.bounds
        return (0.5 * (x0 + x1), 0.5 * (y0 + y1))

    def contains(self, x: float, y: float) -> bool:
        x0, x1, y0, y1 = self.bounds
        return x0 <= x <= x1 and y0 <= y <= y1

    def rocks_array(self) -> np.ndarray:
        """Rocks as an (N, 4) array of x, y, radius, height."""
        if not self.rocks:
            return np.zeros((0, 4))
        return np.array([(r.x, r.y, r.radius, r.height) for r in self.rocks], dtype=float)

    def _bilinear(self, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        ny, nx = grid.shape
        u = np.clip((np.asarray(x, dtype=float) - self.origin[0]) / self.resolution_m, 0.0, nx - 1.0)
        v = np.clip((np.asarray(y, dtype=float) - self.origin[1]) / self.resolution_m, 0.0, ny - 1.0)
        i0 = np.minimum(np.floor(u).astype(np.intp), nx - 2)
        j0 = np.minimum(np.floor(v).astype(np.intp), ny - 2)
        fu = u - i0
        fv = v - j0
        g00 = grid[j0, i0]
        g01 = grid[j0, i0 + 1]
        g10 = grid[j0 + 1, i0]
        g11 = grid[j0 + 1, i0 + 1]
        return (g00 * (1 - fu) + g01 * fu) * (1 - fv) + (g10 * (1 - fu) + g11 * fu) * fv

    def height_at(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        """Bilinear height at (x, y); points off the map take the nearest edge height."""
        out = self._bilinear(self.heights, x, y)
        return float(out) if np.ndim(out) == 0 else out

    def height_at_fast(self, x: float, y: float) -> float:
        """Scalar bilinear lookup in plain Python (several times faster than numpy for one point)."""
        lookup = self._lookup
        if lookup is None or lookup[0].obj is not self.heights:
            lookup = self._lookup = self._fast_lookup()
        view, ox, oy, res, umax, vmax, imax, jmax = lookup
        u = (x - ox) / res
        v = (y - oy) / res
        u = 0.0 if u < 0.0 else (umax if u > umax else u)
        v = 0.0 if v < 0.0 else (vmax if v > vmax else v)
        i = int(u)
        if i > imax:
            i = imax
        j = int(v)
        if j > jmax:
            j = jmax
        fu = u - i
        fv = v - j
        a = view[j, i]
        b = view[j, i + 1]
        c = view[j + 1, i]
        d = view[j + 1, i + 1]
        return (a + (b - a) * fu) * (1.0 - fv) + (c + (d - c) * fu) * fv

    def _fast_lookup(self) -> tuple[memoryview, float, float, float, float, float, int, int]:
        """What :meth:`height_at_fast` needs, taken once: a memoryview of the heights (it reads
        one float without numpy's overhead and sees edits made in place), the origin, the
        resolution and the clamps."""
        ny, nx = self.heights.shape
        return (memoryview(self.heights), self.origin[0], self.origin[1], self.resolution_m,
                nx - 1.0, ny - 1.0, nx - 2, ny - 2)

    def albedo_at(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        out = self._bilinear(self.albedo, x, y)
        return float(out) if np.ndim(out) == 0 else out

    def normal_at(self, x: float | np.ndarray, y: float | np.ndarray, step_m: float | None = None) -> np.ndarray:
        """Unit surface normal (..., 3) from central differences of the bilinear height."""
        e = step_m or self.resolution_m
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        dzdx = (self._bilinear(self.heights, x + e, y) - self._bilinear(self.heights, x - e, y)) / (2 * e)
        dzdy = (self._bilinear(self.heights, x, y + e) - self._bilinear(self.heights, x, y - e)) / (2 * e)
        n = np.stack(np.broadcast_arrays(-dzdx, -dzdy, np.ones_like(dzdx)), axis=-1)
        return n / np.linalg.norm(n, axis=-1, keepdims=True)

    def slope_deg_at(self, x: float | np.ndarray, y: float | np.ndarray) -> float | np.ndarray:
        n = self.normal_at(x, y)
        out = np.degrees(np.arccos(np.clip(n[..., 2], -1.0, 1.0)))
        return float(out) if np.ndim(out) == 0 else out

    def normal_grid(self) -> np.ndarray:
        """Unit normals at every grid node, shape (ny, nx, 3), float32."""
        gy, gx = np.gradient(self.heights.astype(np.float64), self.resolution_m)
        n = np.stack([-gx, -gy, np.ones_like(gx)], axis=-1)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        return n.astype(np.float32)


# ---------------------------------------------------------------------- where a vehicle can stand


@dataclass(frozen=True, slots=True)
class Footprint:
    """What the ground under a vehicle must offer for it to stand there safely.

    ``half_length_m`` and ``half_width_m`` place the four wheel contacts (as the vehicle model
    does: half the wheelbase and half the track); ``body_radius_m`` is the disc the whole vehicle
    covers, which must be clear of rocks by ``rock_clearance_m``. The tilt the four contacts give,
    at any heading (the vehicle turns on the spot before it drives), and the slope of the plane
    fitted under the body must stay ``margin_deg`` below ``tilt_limit_deg``; no point under the body
    may rise more than ``max_step_m`` above its grid neighbour beyond that plane (a step the wheels
    could not climb).
    """

    half_length_m: float = 0.2
    half_width_m: float = 0.25
    body_radius_m: float = 0.45
    tilt_limit_deg: float = 20.0
    margin_deg: float = 5.0
    max_step_m: float = 0.08
    rock_clearance_m: float = 0.1
    headings: int = 12

    @classmethod
    def for_vehicle(cls, config: object, **overrides: float) -> Footprint:
        """The footprint of a vehicle configuration (anything with the ``VehicleConfig`` fields)."""
        wheelbase = float(config.wheelbase_m)  # type: ignore[attr-defined]
        track = float(config.track_width_m)  # type: ignore[attr-defined]
        wheel = float(config.wheel_radius_m)  # type: ignore[attr-defined]
        kw: dict = {
            "half_length_m": wheelbase / 2.0,
            "half_width_m": track / 2.0,
            "body_radius_m": math.hypot(wheelbase / 2.0 + wheel, track / 2.0 + 0.05),
            "max_step_m": float(getattr(config, "max_step_m", 0.08)),
        }
        kw.update(overrides)
        return cls(**kw)

    @property
    def max_tilt_deg(self) -> float:
        """The steepest tilt accepted: the limit less the margin."""
        return self.tilt_limit_deg - self.margin_deg


@dataclass(frozen=True, slots=True)
class Stance:
    """A place a vehicle can stand: where, the worst tilt over headings, the plane's slope, the
    largest step between grid neighbours, and how far it is from the place asked for."""

    x: float
    y: float
    max_tilt_deg: float
    slope_deg: float
    step_m: float
    moved_m: float


def contact_tilt_deg(terrain: Terrain, x: float, y: float, yaw: float, half_length_m: float,
                     half_width_m: float) -> float:
    """Tilt (deg from level) of a body resting on four contacts at (x, y) facing ``yaw`` (rad).

    The same pitch and roll the vehicle model computes from its wheel contacts.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    h = terrain.height_at_fast

    def at(fwd: float, left: float) -> float:
        return h(x + c * fwd - s * left, y + s * fwd + c * left)

    fl, fr = at(half_length_m, half_width_m), at(half_length_m, -half_width_m)
    rl, rr = at(-half_length_m, half_width_m), at(-half_length_m, -half_width_m)
    pitch = math.atan2(0.5 * (fl + fr - rl - rr), 2.0 * half_length_m)
    roll = math.atan2(0.5 * (fl + rl - fr - rr), 2.0 * half_width_m)
    return math.degrees(math.acos(max(-1.0, min(1.0, math.cos(pitch) * math.cos(roll)))))


def _rocks_near(rocks: np.ndarray, x: float, y: float, reach_m: float) -> bool:
    if not rocks.size:
        return False
    return bool(np.any(np.hypot(rocks[:, 0] - x, rocks[:, 1] - y) < rocks[:, 2] + reach_m))


def stance_at(terrain: Terrain, x: float, y: float, footprint: Footprint | None = None,
              rocks: np.ndarray | None = None) -> Stance | None:
    """The stance at (x, y), or None when a vehicle of that footprint cannot stand there."""
    fp = footprint or Footprint()
    rocks = terrain.rocks_array() if rocks is None else rocks
    x0, x1, y0, y1 = terrain.bounds
    r = fp.body_radius_m
    if not (x0 + r <= x <= x1 - r and y0 + r <= y <= y1 - r):
        return None
    if _rocks_near(rocks, x, y, fp.body_radius_m + fp.rock_clearance_m):
        return None
    # plane fitted to every grid node under the body disc: its slope, and the largest rise from one
    # node to its neighbour beyond what that plane explains (a step a wheel would meet)
    rows, cols, dist, _ = terrain._window(x, y, r)
    z = terrain.heights[rows, cols].astype(np.float64)
    on = dist <= r
    res = terrain.resolution_m
    gx = (terrain.origin[0] + np.arange(cols.start, cols.stop) * res - x)[None, :] * np.ones_like(z)
    gy = (terrain.origin[1] + np.arange(rows.start, rows.stop) * res - y)[:, None] * np.ones_like(z)
    a = np.column_stack([gx[on], gy[on], np.ones(int(on.sum()))])
    coef, *_ = np.linalg.lstsq(a, z[on], rcond=None)
    slope = math.degrees(math.atan(math.hypot(coef[0], coef[1])))
    flat = z - (coef[0] * gx + coef[1] * gy)
    step_x = np.abs(np.diff(flat, axis=1))[on[:, 1:] & on[:, :-1]]
    step_y = np.abs(np.diff(flat, axis=0))[on[1:, :] & on[:-1, :]]
    step = float(max(step_x.max(initial=0.0), step_y.max(initial=0.0)))
    if slope > fp.max_tilt_deg or step > fp.max_step_m:
        return None
    # contact tilt over headings on half a turn (a heading and its reverse tilt alike)
    tilt = max(contact_tilt_deg(terrain, x, y, math.pi * k / fp.headings, fp.half_length_m, fp.half_width_m)
               for k in range(fp.headings))
    if tilt > fp.max_tilt_deg:
        return None
    return Stance(float(x), float(y), tilt, slope, step, 0.0)


def safe_start(terrain: Terrain, x: float | None = None, y: float | None = None,
               footprint: Footprint | None = None, *, search_radius_m: float = 12.0,
               step_m: float = 0.25, escape_m: float = 10.0, escape_margin_deg: float = 2.0) -> Stance:
    """The nearest place to (x, y) (default: the map centre) where a vehicle can stand, and from
    which it can drive away.

    Candidates lie on a square lattice ``step_m`` apart around the place asked for, visited
    nearest first (ties broken by angle, then position), so the answer depends only on the
    terrain and the arguments: the same seed always gives the same start, and a start that was
    already safe is kept exactly. A place to stand on the floor of a crater whose walls are all
    steeper than the vehicle may drive is a trap, not a start: a candidate must also join, by
    lattice neighbours where the vehicle can stand within ``escape_margin_deg`` of its tilt limit
    (rocks it could climb left out), ground ``escape_m`` away (or as far as the map allows); where
    no place within ``search_radius_m`` does, the nearest place to stand is the start. Raises
    ``ValueError`` when nothing within ``search_radius_m`` will do."""
    fp = footprint or Footprint()
    cx, cy = terrain.center
    px = cx if x is None else float(x)
    py = cy if y is None else float(y)
    rocks = terrain.rocks_array()
    # the way out is judged on tilt alone: a step between two grid nodes is the stance's concern,
    # and rough ground is full of them where the wheels still roll
    drive = replace(fp, margin_deg=min(fp.margin_deg, escape_margin_deg), rock_clearance_m=0.0,
                    max_step_m=math.inf)
    tall = rocks[rocks[:, 3] > fp.max_step_m] if rocks.size else rocks
    x0, x1, y0, y1 = terrain.bounds
    standable: dict[tuple[int, int], bool] = {}
    trapped: set[tuple[int, int]] = set()

    def can_stand(i: int, j: int) -> bool:
        key = (i, j)
        if key not in standable:
            standable[key] = stance_at(terrain, px + i * step_m, py + j * step_m, drive, tall) is not None
        return standable[key]

    def escapes(i0: int, j0: int) -> bool:
        # best-first outward (farthest first): on open ground a straight run of nodes, in a trap
        # the trap's floor and no more; a trap's nodes are remembered for the candidates after
        qx, qy = px + i0 * step_m, py + j0 * step_m
        room = min(qx - x0, x1 - qx, qy - y0, y1 - qy) - fp.body_radius_m
        reach = min(escape_m, 0.8 * room)
        if (i0, j0) in trapped:
            return False
        heap = [(0.0, i0, j0)]
        seen = {(i0, j0)}
        while heap:
            neg, i, j = heapq.heappop(heap)
            if -neg >= reach:
                return True
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
                n = (i + di, j + dj)
                if n in seen or n in trapped:
                    continue
                seen.add(n)
                if can_stand(*n):
                    heapq.heappush(heap, (-math.hypot(n[0] - i0, n[1] - j0) * step_m, n[0], n[1]))
        trapped.update(seen)
        return False

    n = int(math.ceil(search_radius_m / step_m))
    ii, jj = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    ii, jj = ii.ravel(), jj.ravel()
    d2 = ii * ii + jj * jj
    keep = d2 * step_m * step_m <= search_radius_m * search_radius_m
    ii, jj, d2 = ii[keep], jj[keep], d2[keep]
    order = np.lexsort((jj, ii, np.arctan2(jj, ii), d2))
    first: Stance | None = None
    for k in order:
        qx, qy = px + float(ii[k]) * step_m, py + float(jj[k]) * step_m
        st = stance_at(terrain, qx, qy, fp, rocks)
        if st is None:
            continue
        moved = math.hypot(qx - px, qy - py)
        st = Stance(st.x, st.y, st.max_tilt_deg, st.slope_deg, st.step_m, moved)
        first = first or st
        if escapes(int(ii[k]), int(jj[k])):
            if moved > 0.0:
                log.info("start moved %.2f m to (%.2f, %.2f): tilt %.1f deg, slope %.1f deg",
                         moved, qx, qy, st.max_tilt_deg, st.slope_deg)
            return st
    if first is not None:
        # nowhere within reach is a way out: the nearest place to stand, as before
        log.info("no start within %.0f m joins ground %.0f m away; starting at (%.2f, %.2f)",
                 search_radius_m, escape_m, first.x, first.y)
        return first
    raise ValueError(f"no place to stand within {search_radius_m:g} m of ({px:.2f}, {py:.2f}): "
                     f"tilt limit {fp.tilt_limit_deg:g} deg less {fp.margin_deg:g} deg margin")
