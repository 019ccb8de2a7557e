"""Frames and rotations the navigation code shares.

World: x east, y north, z up. Body: x forward, y left, z up; attitude is yaw about z, pitch
nose-up, roll left-side-up (``R = Rz(yaw) Ry(-pitch) Rx(roll)``). Camera: OpenCV's (x right, y
down, z forward). The mast camera is panned about the body's up axis, then tilted (positive up).
"""

from __future__ import annotations

import math

import numpy as np

from hal.geometry import rot_y, rot_z

#: Columns: camera x (right), y (down), z (forward) in the body frame.
R_BODY_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def wrap(a: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def body_to_camera_rotation(pan_deg: float, tilt_deg: float) -> np.ndarray:
    """Rotation whose columns are the camera axes in the body frame."""
    return rot_z(math.radians(pan_deg)) @ rot_y(-math.radians(tilt_deg)) @ R_BODY_CAM


def attitude_from_gravity(g: tuple[float, float, float]) -> tuple[float, float]:
    """(pitch, roll) in radians from a low-passed accelerometer (specific force) vector."""
    fx, fy, fz = g
    return math.atan2(fx, math.hypot(fy, fz)), math.atan2(fy, fz)


def yaw_rate_from_body(w: np.ndarray | tuple[float, float, float], pitch: float, roll: float) -> float:
    """Rate of the heading (the yaw of ``body_to_world``) from body angular rates (gyro).

    Euler kinematics for yaw, then pitch, then roll: ``yaw' = (w_y sin(roll) + w_z cos(roll)) /
    cos(pitch)``. (The world-z component of the body rate is not the heading's rate on tilted,
    rocking ground; their difference integrates into a heading error.)
    """
    c = max(math.cos(pitch), 0.2)
    return float((w[1] * math.sin(roll) + w[2] * math.cos(roll)) / c)
