"""Stereo vision for navigation: disparity, terrain points and visual odometry.

:class:`StereoVision` turns one rectified pair into

* a disparity image (OpenCV semi-global block matching, ``cv2.StereoSGBM``);
* terrain points in the world (every ``stride``-th valid pixel out to ``max_range_m``),
  placed with the pose the rover believed it had when the pair was taken;
* the motion since the previous pair (visual odometry): FAST corners of the previous left image
  with valid disparity are triangulated, tracked into the present left image (pyramidal
  Lucas-Kanade), and the present camera pose is recovered from the 3-D to 2-D matches with
  ``cv2.solvePnPRansac``; the camera motion is turned into the body's motion on the ground
  (x forward, y left, yaw) in the previous pose's heading frame.

It keeps the previous frame between calls, so one instance serves one stream of pairs in order
(a worker's jobs run one at a time).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

from flight.nav.geometry import body_to_camera_rotation
from hal.contracts import CameraModel
from hal.geometry import body_to_world

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Mount:
    """Where the stereo head sits on the body: the mast head and the camera's pan and tilt."""

    forward_m: float = 0.1
    height_m: float = 1.2
    pan_deg: float = 0.0
    tilt_deg: float = -20.0


@dataclass(frozen=True, slots=True)
class Capture:
    """A stereo pair and the pose the filter held when it was taken."""

    left: np.ndarray
    right: np.ndarray
    model: CameraModel
    baseline_m: float
    frame_id: int
    pose: tuple[float, float, float, float, float, float]  # x, y, z, yaw, pitch, roll


@dataclass(frozen=True, slots=True)
class VisionResult:
    frame_id: int
    points: np.ndarray  # (N, 3) world points
    motion: tuple[int, float, float, float, int] | None  # prev frame id, dx, dy, dyaw, inliers
    valid_frac: float


class StereoVision:
    def __init__(self, mount: Mount | None = None, max_range_m: float = 5.0, stride: int = 2,
                 vo: bool = True, dark_dn: int = 6) -> None:
        self.mount = mount or Mount()
        self.dark_dn = dark_dn
        self.max_range_m = max_range_m
        self.stride = stride
        self.vo = vo
        self._matcher: cv2.StereoSGBM | None = None
        self._matcher_key: tuple[int, int] | None = None
        self._prev: tuple[int, np.ndarray, np.ndarray, np.ndarray, tuple] | None = None
        self._r_bc = body_to_camera_rotation(self.mount.pan_deg, self.mount.tilt_deg)

    def reset(self) -> None:
        self._prev = None

    def disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Disparity in pixels (float32); zero or less where there is no match."""
        key = left.shape[:2]
        if self._matcher is None or self._matcher_key != key:
            nd = max(32, int(math.ceil(left.shape[1] / 5 / 16)) * 16)
            bs = 5
            self._matcher = cv2.StereoSGBM_create(
                minDisparity=0, numDisparities=nd, blockSize=bs, P1=8 * bs * bs, P2=32 * bs * bs,
                disp12MaxDiff=1, uniquenessRatio=10, speckleWindowSize=50, speckleRange=2,
                mode=cv2.STEREO_SGBM_MODE_SGBM_3WAY)
            self._matcher_key = key
        return self._matcher.compute(left, right).astype(np.float32) / 16.0

    def _left_eye_in_body(self, baseline_m: float) -> np.ndarray:
        m = self.mount
        return np.array([m.forward_m, 0.0, m.height_m]) - self._r_bc[:, 0] * (baseline_m / 2.0)

    def camera_points(self, disp: np.ndarray, model: CameraModel, baseline_m: float,
                      stride: int = 1, image: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(points in the left camera frame (N, 3), pixel coordinates (N, 2)) of valid disparities.

        With the left ``image``, pixels at or near black (the sky, deep shadow) are left out: the
        matcher invents disparities there, and a sky pixel's invented point floats at mast height.
        """
        if image is not None:
            grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
            dark = cv2.dilate((grey <= self.dark_dn).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
            disp = np.where(dark, 0.0, disp)
        d = disp[::stride, ::stride]
        vv, uu = np.mgrid[0 : disp.shape[0] : stride, 0 : disp.shape[1] : stride]
        ok = d > 0.5
        z = model.fx * baseline_m / d[ok]
        near = z <= self.max_range_m / 0.8
        z = z[near]
        u = uu[ok][near].astype(np.float64)
        v = vv[ok][near].astype(np.float64)
        pts = np.stack([(u - model.cx) * z / model.fx, (v - model.cy) * z / model.fy, z], axis=1)
        return pts, np.stack([u, v], axis=1)

    def to_body(self, pts_cam: np.ndarray, baseline_m: float) -> np.ndarray:
        return pts_cam @ self._r_bc.T + self._left_eye_in_body(baseline_m)

    def process(self, cap: Capture) -> VisionResult:
        disp = self.disparity(cap.left, cap.right)
        pts_cam, _ = self.camera_points(disp, cap.model, cap.baseline_m, self.stride, cap.left)
        body = self.to_body(pts_cam, cap.baseline_m)
        horiz = np.hypot(body[:, 0], body[:, 1])
        body = body[horiz <= self.max_range_m]
        x, y, z, yaw, pitch, roll = cap.pose
        world = body @ body_to_world(yaw, pitch, roll).T + np.array([x, y, z])
        motion = self._odometry(cap, disp) if self.vo else None
        valid = float(np.mean(disp > 0.5))
        return VisionResult(cap.frame_id, world, motion, valid)

    def _odometry(self, cap: Capture, disp: np.ndarray) -> tuple[int, float, float, float, int] | None:
        prev = self._prev
        fast = cv2.FastFeatureDetector_create(threshold=12, nonmaxSuppression=True)
        kps = fast.detect(cap.left, None)
        kps = sorted(kps, key=lambda k: -k.response)[:600]
        corners = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
        self._prev = (cap.frame_id, cap.left, disp, corners, cap.pose)
        if prev is None or len(corners) == 0:
            return None
        pid, pleft, pdisp, pcorners, ppose = prev
        if len(pcorners) < 12:
            return None
        ui = np.clip(np.rint(pcorners[:, 0]).astype(int), 0, pdisp.shape[1] - 1)
        vi = np.clip(np.rint(pcorners[:, 1]).astype(int), 0, pdisp.shape[0] - 1)
        d = pdisp[vi, ui]
        ok = d > 1.0
        m = cap.model
        z = m.fx * cap.baseline_m / np.maximum(d, 1e-3)
        ok &= z < self.max_range_m * 1.5
        if ok.sum() < 12:
            return None
        p2 = pcorners[ok]
        z = z[ok]
        obj = np.stack([(p2[:, 0] - m.cx) * z / m.fx, (p2[:, 1] - m.cy) * z / m.fy, z], axis=1)
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(pleft, cap.left, p2.reshape(-1, 1, 2), None,
                                                  winSize=(21, 21), maxLevel=3)
        good = status.reshape(-1) == 1
        if good.sum() < 12:
            return None
        obj, img = obj[good], nxt.reshape(-1, 2)[good]
        ok_pnp, rvec, tvec, inliers = cv2.solvePnPRansac(
            obj, img.astype(np.float64), m.matrix(), None, reprojectionError=1.0, iterationsCount=100,
            confidence=0.999, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok_pnp or inliers is None or len(inliers) < 10:
            return None
        R, _ = cv2.Rodrigues(rvec)  # prev camera frame -> present camera frame
        # present camera pose in the previous camera frame, then in the previous body frame
        r_pc = R.T
        t_pc = -R.T @ tvec.reshape(3)
        eye = self._left_eye_in_body(cap.baseline_m)
        r_body = self._r_bc @ r_pc @ self._r_bc.T
        t_body = self._r_bc @ t_pc + eye - r_body @ eye
        _, _, _, _, pitch, roll = ppose
        level = body_to_world(0.0, pitch, roll)
        t_h = level @ t_body
        r_h = level @ r_body
        dyaw = math.atan2(r_h[1, 0], r_h[0, 0])
        return pid, float(t_h[0]), float(t_h[1]), float(dyaw), int(len(inliers))
