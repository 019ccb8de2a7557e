"""Camera images of the terrain: pinhole ray casting over the heightmap, compiled.

**Camera model.** A pinhole with the intrinsics of :class:`hal.contracts.CameraModel`; the
camera frame is OpenCV's (x right, y down, z forward). A :class:`CameraPose` holds the centre of
projection in the world and the rotation whose columns are the camera axes in world
coordinates. :func:`project` maps world points to pixels with exactly the model the renderer
uses, so tests and target checks can say where something must appear.

**Ray casting and shading.** :class:`Renderer` casts one ray per pixel, ``p(t) = o + t * D``
with ``D = R (xn, yn, 1)`` (so ``t`` is the pixel's depth along the optical axis), compiled with
numba (:mod:`sim_hw.render_kernel`): each ray walks the grid cell by cell and meets the
bilinear ground exactly, each column's rays start where the ray below left off (so a column
walks the terrain about once), and the hits are shaded in the same call: Lambertian radiance
per grid node under the sun (with cast shadows), a seeded sub-grid detail texture that fades
with the pixel footprint, auto-exposure on flat ground of the mean albedo. The sky is black.
A rectified stereo pair is one pass (:meth:`Renderer.render_stereo`): the eyes share each column's
ray directions and take turns column by column, and each eye's image is byte for byte its own
single render. The numpy reference renderer (:mod:`sim_hw.render_reference`, a safe-step march) stays
available (:meth:`Renderer.render_reference`) and the tests hold the two to the same images,
depths and rock edges.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from hal.contracts import CameraModel
from hal.geometry import rot_y, rot_z
from sim_hw.render_reference import ReferenceRenderer
from sim_hw.terrain import Terrain

log = logging.getLogger(__name__)

# Columns: camera x (right), y (down), z (forward) expressed in the body frame (x fwd, y left, z up).
R_BODY_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_model(width: int, height: int, fov_deg: float) -> CameraModel:
    """Square-pixel pinhole with a horizontal field of view and a centred principal point."""
    if width <= 0 or height <= 0 or not 1.0 <= fov_deg < 179.0:
        raise ValueError(f"bad camera geometry {width}x{height} fov {fov_deg}")
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2.0)
    return CameraModel(width=width, height=height, fx=f, fy=f, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0)


@dataclass(frozen=True)
class CameraPose:
    """Centre of projection (world, m) and rotation with the camera axes as columns."""

    position: np.ndarray
    rotation: np.ndarray

    @classmethod
    def look_at(cls, eye: np.ndarray | tuple, target: np.ndarray | tuple) -> CameraPose:
        """Camera at ``eye`` looking at ``target`` with the image's up as close to world up as can be."""
        eye = np.asarray(eye, dtype=float)
        z = np.asarray(target, dtype=float) - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, [0.0, 0.0, 1.0])
        if np.linalg.norm(x) < 1e-9:
            x = np.array([1.0, 0.0, 0.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        return cls(eye, np.stack([x, y, z], axis=1))

    @classmethod
    def from_mount(
        cls, mount: np.ndarray, body_to_world: np.ndarray, pan_deg: float = 0.0, tilt_deg: float = 0.0
    ) -> CameraPose:
        """A mast head camera: pan about the body's up axis, then tilt (positive looks up)."""
        rot = body_to_world @ rot_z(math.radians(pan_deg)) @ rot_y(-math.radians(tilt_deg)) @ R_BODY_CAM
        return cls(np.asarray(mount, dtype=float), rot)

    def shifted(self, right_m: float) -> CameraPose:
        """The same orientation moved along the camera's own x axis (for a stereo eye)."""
        return CameraPose(self.position + self.rotation[:, 0] * right_m, self.rotation)

    def stereo(self, baseline_m: float) -> tuple[CameraPose, CameraPose]:
        """Left and right eyes, rectified (parallel axes), centred on this pose."""
        return self.shifted(-baseline_m / 2.0), self.shifted(baseline_m / 2.0)

    def as_dict(self) -> dict[str, list]:
        return {"position": self.position.tolist(), "rotation": self.rotation.tolist()}


def project(points_world: np.ndarray, model: CameraModel, pose: CameraPose) -> np.ndarray:
    """Pixel coordinates (N, 2) of world points; NaN for points behind the camera."""
    pts = np.atleast_2d(np.asarray(points_world, dtype=float))
    pc = (pts - pose.position) @ pose.rotation
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = model.fx * pc[:, 0] / z + model.cx
        v = model.fy * pc[:, 1] / z + model.cy
    bad = z <= 1e-9
    u[bad] = np.nan
    v[bad] = np.nan
    return np.stack([u, v], axis=1)


def depth_of(points_world: np.ndarray, pose: CameraPose) -> np.ndarray:
    """Depth along the optical axis of world points."""
    pts = np.atleast_2d(np.asarray(points_world, dtype=float))
    return (pts - pose.position) @ pose.rotation[:, 2]


_local = threading.local()


def _scratch(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The calling thread's two float32 buffers of ``shape`` for the kernel's depth and brightness.

    They are the same memory frame after frame (grown when a larger frame needs it): the kernel
    writing fresh pages pays the system a page fault on each, about 3 ms of CPU for a 640x480
    pair, a tenth of the pair. Every caller copies what it returns out of them before the thread
    renders again.
    """
    n = shape[0] * shape[1] * shape[2]
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < 2 * n:
        buf = _local.buf = np.empty(2 * n, np.float32)
    return buf[:n].reshape(shape), buf[n:2 * n].reshape(shape)


class Renderer:
    """Renders one terrain with the compiled kernel; the caches are the reference renderer's.

    The keyword arguments are the reference renderer's (see
    :class:`sim_hw.render_reference.ReferenceRenderer`), and so is everything cached per terrain
    version and per sun direction. Rendering from two threads at once is safe (an imaging worker
    and the control thread): the caches are filled under a lock and the kernel reads only the
    arrays it was handed.
    """

    def __init__(self, terrain: Terrain, **kw: Any) -> None:
        self.reference = ReferenceRenderer(terrain, **kw)
        self._lock = threading.Lock()
        self._lip = math.inf
        self._lip_version = -1
        self._albedo_mean = 0.0
        self._albedo_version = -1

    @property
    def terrain(self) -> Terrain:
        return self.reference.terrain

    def radiance_grid(self, sun: np.ndarray) -> np.ndarray:
        """Albedo times Lambertian shading at every grid node for a unit sun vector."""
        with self._lock:
            return self.reference.radiance_grid(sun)

    def _rays(self, model: CameraModel, pose: CameraPose, step: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
        return self.reference._rays(model, pose, step)

    def _trace_args(self) -> tuple:
        ref = self.reference
        ref._prepare()
        ter = ref.terrain
        levels = [mx for mx, _ in ref._levels]
        radii = np.array([r for _, r in ref._levels], dtype=np.float64)
        return (np.ascontiguousarray(ter.origin[:2], dtype=np.float64), float(ter.resolution_m), ref._h,
                levels[0], levels[1], levels[2], radii, float(ref._hmax))

    def raycast(self, origin: np.ndarray, dirs: np.ndarray, pixel_angle: float) -> np.ndarray:
        """Depth (t) of the first ground hit along each ray ``origin + t * dirs``; inf for sky.

        ``pixel_angle`` is the reference's shortest step (the footprint of a pixel); the compiled
        walk is exact and does not need it, so it is accepted for the same signature and unused.
        """
        from sim_hw import render_kernel  # numba loads at the first render, not with the world

        d = np.ascontiguousarray(dirs, dtype=np.float64).reshape(-1, 3)
        out = np.empty(d.shape[0], np.float32)
        with self._lock:
            args = self._trace_args()
        render_kernel.run_threads(render_kernel.cast_rays, d.shape[0], True, d,
                                  np.ascontiguousarray(origin, dtype=np.float64), *args, out)
        return out

    def _lipschitz(self) -> float:
        """The steepest slope of the bilinear ground anywhere (a bound on how fast it rises)."""
        ref = self.reference
        ref._prepare()
        if self._lip_version != ref.terrain.version:
            h = ref._h.astype(np.float64)
            res = ref.terrain.resolution_m
            gx = float(np.abs(np.diff(h, axis=1)).max(initial=0.0)) / res
            gy = float(np.abs(np.diff(h, axis=0)).max(initial=0.0)) / res
            self._lip = math.hypot(gx, gy)
            self._lip_version = ref.terrain.version
        return self._lip

    def _gain(self, sun: np.ndarray, exposure: float) -> float:
        # auto-exposure on flat ground of the mean albedo under the present sun; the mean is kept
        # per terrain version, like the other caches (a third of a millisecond on a 100 m map)
        ter = self.terrain
        if self._albedo_version != ter.version:
            self._albedo_mean = float(np.mean(ter.albedo))
            self._albedo_version = ter.version
        return exposure / (2.2 * self._albedo_mean * max(float(sun[2]), 0.25))

    def _images(self, model: CameraModel, poses: list[CameraPose], sun: np.ndarray | None, exposure: float = 1.0,
                parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Depth (inf for sky) and brightness in DN (unclipped) of every pixel of each eye, one compiled pass.

        The eyes share one rotation (a rectified stereo pair), so a column's rays are made once for
        all of them. Both come back as (E, H, W) views of arrays stored one image column a row,
        the kernel's layout, in the calling thread's scratch (:func:`_scratch`); a caller copies
        what it returns. With ``sun`` None only the depth is computed (the brightness is left
        undefined); ``parallel`` False renders on the calling thread alone.
        """
        rot = np.ascontiguousarray(poses[0].rotation, dtype=np.float64)
        if any(not np.array_equal(p.rotation, rot) for p in poses[1:]):
            raise ValueError("the eyes of one pass must share one rotation")
        origins = np.array([p.position for p in poses], dtype=np.float64).reshape(len(poses), 3)
        ref = self.reference
        with self._lock:
            if sun is None:
                shade = False
                ref._prepare()
                rad = ref._h  # not read
                gain = 0.0
            else:
                shade = True
                sun = np.asarray(sun, dtype=float)
                rad = ref.radiance_grid(sun)  # prepares the caches too
                gain = self._gain(sun, exposure)
            args = self._trace_args()
            lip = self._lipschitz()
        tile = ref._detail_tile
        if any(n & (n - 1) for n in tile.shape):
            raise ValueError(f"the detail tile's sides must be powers of two, not {tile.shape}")
        from sim_hw import render_kernel  # numba loads at the first render, not with the world

        # the kernel writes one image column per row (consecutive addresses down a column)
        depth, lum = _scratch((len(poses), model.width, model.height))
        render_kernel.run_threads(
            render_kernel.render_image, model.width, parallel, rot, origins, float(model.fx), float(model.fy),
            float(model.cx), float(model.cy), int(model.height), *args, lip, shade, rad, tile, float(ref.detail),
            float(ref.detail_scale_m), gain, depth, lum)
        return depth.transpose(0, 2, 1), lum.transpose(0, 2, 1)

    def _image(self, model: CameraModel, pose: CameraPose, sun: np.ndarray | None, exposure: float = 1.0,
               parallel: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_images` of one eye: (H, W) views of the calling thread's scratch."""
        depth, lum = self._images(model, [pose], sun, exposure, parallel)
        return depth[0], lum[0]

    def render_depth(self, model: CameraModel, pose: CameraPose) -> np.ndarray:
        """Depth image (H, W) float32 along the optical axis; inf where the ray sees sky.

        The same pass as :meth:`render` without the shading, so an image and its depth agree
        pixel for pixel.
        """
        return np.array(self._image(model, pose, None)[0], order="C")  # a copy out of the scratch

    def shade(
        self, model: CameraModel, pose: CameraPose, depth: np.ndarray, sun: np.ndarray,
        exposure: float = 1.0,
    ) -> np.ndarray:
        """Relative brightness (H, W) float32 of the ground seen at each pixel's depth."""
        with self._lock:
            return self.reference.shade(model, pose, depth, sun, exposure)

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
        parallel: bool = True,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """A uint8 image (grey HxW or BGR HxWx3) of the terrain from a pose under a sun vector.

        ``parallel`` False renders on the calling thread alone (a worker's background capture).
        """
        return self._render_eyes(model, [pose], sun, exposure, bgr, noise_dn, rng, return_depth, parallel)[0]

    def render_stereo(
        self, model: CameraModel, pose: CameraPose, sun: np.ndarray, baseline_m: float, **kw: Any
    ) -> tuple[Any, Any]:
        """Rectified left and right images from eyes ``baseline_m`` apart about ``pose``.

        One pass renders both eyes (their rays share a direction column by column), and each
        image is byte for byte what :meth:`render` gives for that eye with the same keywords; a
        generator given as ``rng`` draws the left eye's noise first, as two calls would.
        """
        left, right = pose.stereo(baseline_m)
        return self.render_pair(model, left, right, sun, **kw)

    def render_pair(
        self, model: CameraModel, left: CameraPose, right: CameraPose, sun: np.ndarray, *, exposure: float = 1.0,
        bgr: bool = False, noise_dn: float = 0.0, rng: np.random.Generator | None = None,
        return_depth: bool = False, parallel: bool = True,
    ) -> tuple[Any, Any]:
        """Two eyes, each as :meth:`render` gives it; in one pass when they share a rotation (rectified)."""
        kw = dict(exposure=exposure, bgr=bgr, noise_dn=noise_dn, rng=rng, return_depth=return_depth, parallel=parallel)
        if not np.array_equal(left.rotation, right.rotation):
            return self.render(model, left, sun, **kw), self.render(model, right, sun, **kw)  # type: ignore[arg-type]
        a, b = self._render_eyes(model, [left, right], sun, exposure, bgr, noise_dn, rng, return_depth, parallel)
        return a, b

    def _render_eyes(self, model: CameraModel, poses: list[CameraPose], sun: np.ndarray, exposure: float,
                     bgr: bool, noise_dn: float, rng: np.random.Generator | None, return_depth: bool,
                     parallel: bool) -> list:
        depths, lums = self._images(model, poses, sun, exposure, parallel)
        tint = np.asarray(self.reference.tint_bgr, np.float32) if bgr else None
        out = []
        for depth, lum in zip(depths, lums, strict=True):
            if noise_dn > 0:
                gen = rng if rng is not None else np.random.default_rng(0)
                lum += gen.standard_normal(lum.shape, dtype=np.float32) * np.float32(noise_dn)
            # the cast to uint8 turns the kernel's layout to (H, W) in the same pass
            if tint is not None:
                img = np.clip(lum[..., None] * tint, 0, 255).astype(np.uint8, order="C")
            else:
                img = np.clip(lum, 0, 255, out=lum).astype(np.uint8, order="C")
            out.append((img, np.array(depth, order="C")) if return_depth else img)  # copies out of the scratch
        return out

    def render_reference(self, model: CameraModel, pose: CameraPose, sun: np.ndarray, **kw: Any
                         ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """The same image by the numpy reference renderer (for tests and the bench)."""
        with self._lock:
            return self.reference.render(model, pose, sun, **kw)
