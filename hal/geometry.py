"""Rotation matrices in the body frame convention every part of Magpie shares.

World axes are x east, y north, z up; a body's x points forward, y left, z up. Yaw turns about z
(counter-clockwise from east), pitch is nose-up, roll is left-side-up. The flight software
(navigation) and the simulated world both use these, so they live with the device contracts.
"""

from __future__ import annotations

import math

import numpy as np


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def body_to_world(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Rotation taking body vectors to world vectors (pitch nose-up, roll left-side-up)."""
    return rot_z(yaw) @ rot_y(-pitch) @ rot_x(roll)
