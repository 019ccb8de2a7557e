"""Fault injections change the world they are asked to, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from campaign.faults import FAULTS, apply_fault
from sim_hw.traverse import build_world

pytestmark = pytest.mark.timeout(60)


def test_each_fault_degrades_its_part_of_the_world() -> None:
    base = build_world("easy", 5)
    for name in FAULTS:
        w = build_world("easy", 5)
        apply_fault(w, name)
        slip = w.vehicle.config.slip_base / base.vehicle.config.slip_base
        gyro = w.imu.config.gyro_noise_rads / base.imu.config.gyro_noise_rads
        accel = np.linalg.norm(w.imu.accel_bias) / np.linalg.norm(base.imu.accel_bias)
        want = {"none": (1, 1, 1), "slip": (5, 1, 1), "gyro-noise": (1, 5, 1), "accel-bias": (1, 1, 10)}[name]
        assert (slip, gyro, accel) == pytest.approx(want), name
        assert w.truth()["x"] == base.truth()["x"] and np.array_equal(w.terrain.heights, base.terrain.heights)


def test_an_unknown_fault_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="faults: none, slip"):
        apply_fault(build_world("easy", 5), "meteor")
