"""Science targets in navigation images: find rock candidates, rank them by written criteria.

**Finding.** A rock on regolith shows as a patch that departs from its surroundings: a sunlit
face brighter than the ground, a cast shadow darker, often both side by side. The frame is
smoothed (texture finer than a few pixels is not a rock); the ground's brightness at each row
(range sets it) is the row's median; pixels departing from it by more than ``k`` robust standard
deviations of their row (1.4826 x the median absolute deviation, so texture sets its own
threshold at every range) are
kept, lit and shadowed parts are joined by a small closing, speckle is removed by an opening,
and each remaining contour of at least ``min_area_px`` is a candidate. Black sky (DN 0) and the
frame's border are ignored.

Given the camera model, a blob must also measure at least ``min_size_m`` across at its
flat-ground range (magnified near-field texture is not a rock).

**Ranking.** Each candidate gets four scores in 0..1 and a weighted sum (weights in
:data:`WEIGHTS`):

* size: apparent area, saturating at 2 % of the frame (bigger rocks are better targets);
* contrast: mean departure from the background over the background, saturating at 1.0;
* range: flat-ground distance from the mast height and the depression angle of the candidate's
  lowest point; 1 inside ``near_m``, falling linearly to 0 at ``far_m`` (close targets image
  with more detail and are reachable);
* novelty: angular distance from every target already imaged, saturating at 10 degrees (do not
  image the same rock twice).

:func:`explain` spells out a candidate's score for the ``TargetChosen`` event.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

WEIGHTS = {"size": 0.35, "contrast": 0.25, "range": 0.25, "novelty": 0.15}


@dataclass(frozen=True, slots=True)
class Candidate:
    u: float  # centroid, pixels
    v: float
    area_px: int
    contrast: float
    bottom_v: float  # lowest image row of the blob (where it meets the ground)
    bbox: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class Target:
    candidate: Candidate
    score: float
    parts: dict[str, float]
    range_m: float
    novelty: float
    pan_deg: float
    tilt_deg: float

    @property
    def area_px(self) -> int:
        return self.candidate.area_px

    @property
    def contrast(self) -> float:
        return self.candidate.contrast


def find_candidates(image: np.ndarray, model: Any = None, tilt_deg: float = 0.0, mast_height_m: float = 1.0,
                    k: float = 2.5, min_area_px: int = 60, smooth_px: float = 2.5,
                    min_size_m: float = 0.15) -> list[Candidate]:
    """Rock candidates in a grey or BGR uint8 frame (see the module docstring).

    With the camera ``model`` (and the mast's tilt and height) a blob must also be at least
    ``min_size_m`` across at its flat-ground range, so near-field texture is not taken for rocks.
    """
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    h, w = grey.shape
    scale = max(1, round(max(h, w) / 640))
    valid = (grey > 0).astype(np.uint8)
    valid = cv2.erode(valid, np.ones((5 * scale, 5 * scale), np.uint8))
    smooth = cv2.GaussianBlur(grey, (0, 0), smooth_px * scale)
    # The background: brightness of the ground at each image row (range sets it, rocks are a
    # minority of any row), as a masked row median smoothed over neighbouring rows.
    masked = np.where(valid > 0, smooth.astype(np.float32), np.nan)
    if np.count_nonzero(valid) < 100:
        return []
    background = _row_profile(masked, scale)
    diff = smooth.astype(np.float32) - background[:, None]
    # texture contrast changes with range too: a robust spread per row (1.4826 x MAD)
    sigma = np.maximum(1.0, 1.4826 * _row_profile(np.abs(np.where(valid > 0, diff, np.nan)), scale))[:, None]
    mask = ((np.abs(diff) > k * sigma) & (valid > 0)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2 * scale + 1, 2 * scale + 1), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5 * scale, 5 * scale), np.uint8))
    border = 3 * scale
    mask[:border] = 0
    mask[-border:] = 0
    mask[:, :border] = 0
    mask[:, -border:] = 0
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = []
    min_area = min_area_px * scale * scale
    for i in range(1, n):
        x, y, bw, bh, area = (int(s) for s in stats[i])
        if area < min_area:
            continue
        sel = labels[y : y + bh, x : x + bw] == i
        d = np.abs(diff[y : y + bh, x : x + bw][sel])
        bg = np.broadcast_to(background[y : y + bh, None], sel.shape)[sel]
        contrast = float(d.mean() / max(1.0, float(bg.mean())))
        if model is not None:
            rng = ground_range(model, tilt_deg, float(y + bh - 1), mast_height_m)
            if math.isfinite(rng) and math.sqrt(area) * rng / model.fx < min_size_m:
                continue
        out.append(Candidate(float(centroids[i][0]), float(centroids[i][1]), area, contrast, float(y + bh - 1),
                             (x, y, bw, bh)))
    return out


def _row_profile(masked: np.ndarray, scale: int) -> np.ndarray:
    """Median of each row's finite values, gaps filled from neighbours, smoothed over rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = np.nanmedian(masked, axis=1)
    good = np.isfinite(rows)
    if not good.any():
        return np.zeros(masked.shape[0], np.float32)
    idx = np.arange(rows.size)
    rows = np.interp(idx, idx[good], rows[good]).astype(np.float32)
    return cv2.GaussianBlur(rows.reshape(-1, 1), (1, 0), sigmaX=0.1, sigmaY=2.0 * scale).reshape(-1)


def pointing_to(model: Any, pan_deg: float, tilt_deg: float, u: float, v: float) -> tuple[float, float]:
    """Mast (pan, tilt) that centres pixel (u, v) of a frame taken at (pan, tilt)."""
    return (pan_deg - math.degrees(math.atan2(u - model.cx, model.fx)),
            tilt_deg - math.degrees(math.atan2(v - model.cy, model.fy)))


def ground_range(model: Any, tilt_deg: float, v: float, mast_height_m: float) -> float:
    """Flat-ground distance to the point seen at image row ``v`` (inf at or above the horizon)."""
    depression = -math.radians(tilt_deg) + math.atan2(v - model.cy, model.fy)
    if depression <= 1e-3:
        return math.inf
    return mast_height_m / math.tan(depression)


def rank(candidates: list[Candidate], model: Any, pan_deg: float, tilt_deg: float, mast_height_m: float,
         imaged: list[tuple[float, float]] | None = None, near_m: float = 3.0, far_m: float = 15.0) -> list[Target]:
    """Score and sort candidates, best first (see the module docstring for the criteria)."""
    if model is None or not candidates:
        return []
    frame_area = float(model.width * model.height)
    out = []
    for c in candidates:
        pan, tilt = pointing_to(model, pan_deg, tilt_deg, c.u, c.v)
        rng = ground_range(model, tilt_deg, c.bottom_v, mast_height_m)
        size = min(1.0, c.area_px / (0.02 * frame_area))
        contrast = min(1.0, c.contrast)
        if not math.isfinite(rng):
            closeness = 0.0
        else:
            closeness = 1.0 if rng <= near_m else max(0.0, 1.0 - (rng - near_m) / (far_m - near_m))
        gaps = [math.hypot(pan - p, tilt - t) for p, t in (imaged or [])]
        novelty = min(1.0, min(gaps) / 10.0) if gaps else 1.0
        parts = {"size": size, "contrast": contrast, "range": closeness, "novelty": novelty}
        score = sum(WEIGHTS[k] * v for k, v in parts.items())
        out.append(Target(c, score, parts, rng, novelty, pan, tilt))
    out.sort(key=lambda t: -t.score)
    return out


def explain(t: Target) -> str:
    """The weighted parts of a target's score, in words."""
    p = t.parts
    return (f"size {WEIGHTS['size']:.2f}x{p['size']:.2f} ({t.area_px} px) + contrast "
            f"{WEIGHTS['contrast']:.2f}x{p['contrast']:.2f} + range {WEIGHTS['range']:.2f}x{p['range']:.2f} "
            f"({t.range_m:.1f} m) + novelty {WEIGHTS['novelty']:.2f}x{p['novelty']:.2f}")
