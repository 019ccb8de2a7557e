"""Outcomes of a scenario read from the ground archive alone (what an operator could check)."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flight.link.packets import Apid
from ground.archive import Archive
from ground.images import collect
from hal.contracts import CameraModel
from hal.geometry import body_to_world
from sim_hw.render import CameraPose, project


def gaps(archive: Archive, scid: int) -> dict[int, list[int]]:
    """Missing sequence counts per APID between the first and last archived packet."""
    seqs: dict[int, set[int]] = defaultdict(set)
    for _, apid, seq, *_ in archive.packets(scid):
        seqs[int(apid)].add(int(seq))
    return {apid: sorted(set(range(min(s), max(s) + 1)) - s) for apid, s in seqs.items()
            if set(range(min(s), max(s) + 1)) - s}


def complete_images(archive: Archive, scid: int) -> list[tuple[np.ndarray, dict[str, Any]]]:
    """The complete full-frame products of one vehicle, decoded, with their metadata."""
    out = []
    for view in collect(archive, scid=scid):
        if view.status != "complete" or view.meta.get("kind") != "full":
            continue
        data = view.data
        assert data is not None
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
        out.append((img, view.meta))
    return out


def flat_regions(img: np.ndarray, min_area: int = 120, min_fill: float = 0.55) -> list[tuple[int, int, int, int]]:
    """Bounding boxes (x, y, w, h) of flat-shaded, box-like regions: how a spacecraft body shows
    against the textured, noisy regolith in the simulated cameras."""
    g = img.astype(np.float32)
    mean = cv2.blur(g, (5, 5))
    sd = np.sqrt(np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0.0))
    mask = ((sd < 2.0) & (g > 20)).astype(np.uint8)
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h, a in stats[1:]
            if a >= min_area and a >= min_fill * w * h]


def sees(img: np.ndarray, meta: dict[str, Any], camera_xy: tuple[float, float], yaw_deg: float, mast_m: float,
         target_xy: tuple[float, float], target_height_m: float, margin_px: int = 25) -> bool:
    """Does the image show a spacecraft body where the other vehicle stands?

    The camera's pose comes from what the ground knows (the imaging vehicle's position and
    heading, its mast height, and the pan, tilt and camera model in the product's metadata);
    the other vehicle's position likewise. The body must be a flat-shaded region around the
    point where the target projects."""
    m = meta["model"]
    model = CameraModel(width=m["width"], height=m["height"], fx=m["fx"], fy=m["fy"], cx=m["cx"], cy=m["cy"])
    rot = body_to_world(math.radians(yaw_deg), 0.0, 0.0)
    pose = CameraPose.from_mount(np.array([camera_xy[0], camera_xy[1], mast_m]), rot, meta["pan_deg"],
                                 meta["tilt_deg"])
    u, v = project(np.array([[target_xy[0], target_xy[1], target_height_m / 2]]), model, pose)[0]
    if not (np.isfinite(u) and np.isfinite(v)):
        return False
    for x, y, w, h in flat_regions(img):
        if x - margin_px <= u <= x + w + margin_px and y - margin_px <= v <= y + h + margin_px:
            return True
    return False


def open_archive(out: Path) -> Archive:
    return Archive(out / "archive.db", readonly=True)


PRODUCT_APIDS = (int(Apid.PRODUCT), int(Apid.THUMBNAIL))
