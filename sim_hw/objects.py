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


def camera_rays(model: CameraModel, pose: CameraPose) -> np.ndarray:
    """World ray directions (H*W, 3) with unit depth along the optical axis, row by row."""
    uu, vv = np.meshgrid(np.arange(model.width, dtype=np.float64), np.arange(model.height, dtype=np.float64))
    cam = np.stack([(uu - model.cx) / model.fx, (vv - model.cy) / model.fy, np.ones_like(uu)], axis=-1)
    return cam.reshape(-1, 3) @ pose.rotation.T


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
               sun: np.ndarray, albedo_ref: float, tint_bgr: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> int:
    """Paint ``boxes`` into ``img`` (grey or BGR, in place) where they are nearer than the terrain.

    Returns the number of pixels painted. Brightness follows the renderer's exposure rule, so a
    box sits in the image with the terrain's gain.
    """
    if not boxes:
        return 0
    dirs = camera_rays(model, pose)
    terrain_depth = np.where(np.isfinite(depth.reshape(-1)), depth.reshape(-1), np.inf)
    sun = np.asarray(sun, dtype=float)
    gain = 1.0 / (2.2 * albedo_ref * max(float(sun[2]), 0.25))
    painted = 0
    flat = img.reshape(model.height * model.width, -1)
    for box in boxes:
        d, normals = box_hits(box, pose.position, dirs)
        show = d < terrain_depth
        if not show.any():
            continue
        cos = np.clip(normals[show] @ sun, 0.0, None) if sun[2] > 0 else np.zeros(int(show.sum()))
        lum = 255.0 * gain * box.albedo * (0.08 + 0.92 * cos)
        vals = np.clip(lum[:, None] * np.asarray(tint_bgr if flat.shape[1] == 3 else (1.0,)), 0, 255)
        flat[show] = vals.astype(img.dtype)
        terrain_depth = np.where(show, d, terrain_depth)
        painted += int(show.sum())
    return painted
