"""Other vehicles in a camera's view: boxes drawn over a rendered terrain image.

The terrain renderer knows only the heightmap; on a site with several vehicles each one's
cameras must also see the others (a rover imaging its lander, the lander imaging the rover).
A vehicle is drawn as an oriented box (its body's length, width and height, standing on the
ground at its pose), shaded by the sun like a bright, flat-faced spacecraft, and hidden where
the terrain is nearer to the camera than the box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hal.contracts import CameraModel
from sim_hw.render import CameraPose


@dataclass(frozen=True)
class Box:
    """An upright box: centre of its base (world, m), yaw (rad), size (m) and albedo."""

    x: float
    y: float
    z: float
    yaw: float
    length_m: float
    width_m: float
    height_m: float
    albedo: float = 0.6


def camera_rays(model: CameraModel, pose: CameraPose, cols: slice | None = None,
                rows: slice | None = None) -> np.ndarray:
    """World ray directions (N, 3) with unit depth along the optical axis, row by row, for the
    pixels in ``rows`` x ``cols`` (default: the whole image)."""
    us = np.arange(model.width, dtype=np.float64)[cols or slice(None)]
    vs = np.arange(model.height, dtype=np.float64)[rows or slice(None)]
    uu, vv = np.meshgrid(us, vs)
    cam = np.stack([(uu - model.cx) / model.fx, (vv - model.cy) / model.fy, np.ones_like(uu)], axis=-1)
    return cam.reshape(-1, 3) @ pose.rotation.T


def corners(box: Box) -> np.ndarray:
    """The eight corners of a box (world, m)."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    out = []
    for dx in (-0.5, 0.5):
        for dy in (-0.5, 0.5):
            for z in (0.0, box.height_m):
                lx, ly = dx * box.length_m, dy * box.width_m
                out.append((box.x + c * lx - s * ly, box.y + s * lx + c * ly, box.z + z))
    return np.array(out)


def pixel_window(box: Box, model: CameraModel, pose: CameraPose) -> tuple[slice, slice] | None:
    """The image rows and columns the box can cover (None when it is out of view or behind)."""
    pc = (corners(box) - pose.position) @ pose.rotation
    if np.all(pc[:, 2] <= 1e-6):
        return None
    if np.any(pc[:, 2] <= 1e-6):  # straddles the camera plane: search the whole image
        return slice(0, model.height), slice(0, model.width)
    u = model.fx * pc[:, 0] / pc[:, 2] + model.cx
    v = model.fy * pc[:, 1] / pc[:, 2] + model.cy
    u0, u1 = max(0, int(np.floor(u.min()))), min(model.width, int(np.ceil(u.max())) + 1)
    v0, v1 = max(0, int(np.floor(v.min()))), min(model.height, int(np.ceil(v.max())) + 1)
    if u0 >= u1 or v0 >= v1:
        return None
    return slice(v0, v1), slice(u0, u1)


def box_hits(box: Box, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Depth of the first hit on ``box`` for each ray (inf for a miss) and the hit face's world normal."""
    c, s = np.cos(box.yaw), np.sin(box.yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # box to world
    centre = np.array([box.x, box.y, box.z + box.height_m / 2.0])
    half = np.array([box.length_m, box.width_m, box.height_m]) / 2.0
    o = (origin - centre) @ rot
    d = dirs @ rot
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (-half - o) * inv
        t2 = (half - o) * inv
    tmin = np.minimum(t1, t2)
    tmax = np.maximum(t1, t2)
    tmin = np.nan_to_num(tmin, nan=-np.inf)
    tmax = np.nan_to_num(tmax, nan=np.inf)
    near = tmin.max(axis=1)
    far = tmax.min(axis=1)
    hit = (near <= far) & (far > 0) & (near > 0)
    axis = tmin.argmax(axis=1)
    sign = -np.sign(np.take_along_axis(d, axis[:, None], axis=1)[:, 0])
    normals_box = np.zeros_like(d)
    normals_box[np.arange(len(d)), axis] = sign
    depth = np.where(hit, near, np.inf)
    return depth, normals_box @ rot.T


def draw_boxes(img: np.ndarray, depth: np.ndarray, model: CameraModel, pose: CameraPose, boxes: list[Box],
               sun: np.ndarray, albedo_ref: float, tint_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0),
               exposure: float = 1.0) -> int:
    """Paint ``boxes`` into ``img`` (grey or BGR, in place) where they are nearer than the terrain.

    Returns the number of pixels painted. Brightness follows the renderer's exposure rule, so a
    box sits in the image with the terrain's gain.
    """
    if not boxes:
        return 0
    sun = np.asarray(sun, dtype=float)
    gain = exposure / (2.2 * albedo_ref * max(float(sun[2]), 0.25))
    painted = 0
    nearest = np.where(np.isfinite(depth), depth, np.inf).astype(np.float64)
    channels = img.shape[2] if img.ndim == 3 else 1
    tint = np.asarray(tint_bgr if channels == 3 else (1.0,))
    for box in boxes:
        win = pixel_window(box, model, pose)
        if win is None:
            continue
        rows, cols = win
        dirs = camera_rays(model, pose, cols, rows)
        d, normals = box_hits(box, pose.position, dirs)
        here = nearest[rows, cols]
        d = d.reshape(here.shape)
        show = d < here
        if not show.any():
            continue
        cos = np.clip(normals.reshape(*here.shape, 3)[show] @ sun, 0.0, None) if sun[2] > 0 else 0.0
        lum = 255.0 * gain * box.albedo * (0.08 + 0.92 * cos)
        vals = np.clip(np.asarray(lum, dtype=np.float64).reshape(-1, 1) * tint, 0, 255).astype(img.dtype)
        patch = img[rows, cols]
        if channels == 3:
            patch[show] = vals
        else:
            patch[show] = vals[:, 0]
        here[show] = d[show]
        painted += int(show.sum())
    return painted
