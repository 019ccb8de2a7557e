"""The rover on known ground: tilt seen by the IMU, slip seen by the encoders, stalls, current."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hal.mcu.protocol import FaultFlags
from sim_hw.sensors import EncoderConfig, ImuConfig, attitude_from_accel
from sim_hw.terrain import Terrain
from sim_hw.vehicle import Vehicle, VehicleConfig
from sim_hw.world import World

pytestmark = pytest.mark.timeout(60)

TICKS_TO_M = 2.0 * math.pi * 0.1 / 4096


def slope_world(slope_deg: float, yaw_deg: float, seed: int = 1, **kw) -> World:
    ground = Terrain.plane(size_m=30.0, resolution_m=0.1, slope_deg=slope_deg, uphill_azimuth_deg=90.0)
    return World("moon", seed, terrain=ground, start_yaw_deg=yaw_deg, cameras={}, **kw)


def mean_accel(world: World, n: int = 50) -> np.ndarray:
    return np.mean([world.read_imu().accel_mps2 for _ in range(n)], axis=0)


def test_imu_sees_the_slope_as_pitch_when_facing_uphill() -> None:
    w = slope_world(15.0, 0.0)  # yaw 0 faces east, which is uphill
    pitch, roll = attitude_from_accel(mean_accel(w))
    assert math.degrees(pitch) == pytest.approx(15.0, abs=0.5)
    assert math.degrees(roll) == pytest.approx(0.0, abs=0.5)
    assert math.degrees(w.truth()["pitch"]) == pytest.approx(15.0, abs=1e-3)
    assert np.linalg.norm(mean_accel(w)) == pytest.approx(1.62, abs=0.02)


def test_imu_sees_the_slope_as_roll_when_facing_across_it() -> None:
    w = slope_world(15.0, 90.0)  # facing north: the left side is west, downhill
    pitch, roll = attitude_from_accel(mean_accel(w))
    assert math.degrees(roll) == pytest.approx(-15.0, abs=0.5)
    assert math.degrees(pitch) == pytest.approx(0.0, abs=0.5)


def drive(world: World, left: float, right: float, seconds: float) -> tuple[float, dict]:
    """Drive, then stop and settle; return encoder distance (mean of sides) and the truth."""
    d0 = world.read_drive()
    world.vehicle.set_wheels(left, right)
    world.step(seconds)
    world.vehicle.stop()
    world.step(2.0)
    d1 = world.read_drive()
    enc = 0.5 * ((d1.left_ticks - d0.left_ticks) + (d1.right_ticks - d0.right_ticks)) * TICKS_TO_M
    return enc, world.truth()


@pytest.mark.parametrize("slope", [0.0, 10.0, 15.0, 20.0])
def test_uphill_slip_matches_the_model(slope: float) -> None:
    w = slope_world(slope, 0.0, seed=3)
    enc, truth = drive(w, 0.15, 0.15, 40.0)
    slip = 1.0 - truth["distance_m"] / enc
    expected = w.vehicle.slip_model(math.radians(slope))
    assert slip == pytest.approx(expected, abs=0.04)
    # climbing: z rose by the true distance along the slope times sin(slope)
    assert truth["z"] == pytest.approx(truth["distance_m"] * math.sin(math.radians(slope)), abs=0.02)


def test_slip_reaches_total_on_steep_slopes() -> None:
    v = Vehicle(Terrain.plane(size_m=10.0), VehicleConfig())
    assert v.slip_model(math.radians(27.0)) == pytest.approx(1.0)
    assert v.slip_model(math.radians(5.0)) < v.slip_model(math.radians(15.0)) < v.slip_model(math.radians(25.0))
    assert v.slip_model(math.radians(-15.0)) < 0.0  # downhill the vehicle runs ahead of its wheels
    w = slope_world(28.0, 0.0)
    enc, truth = drive(w, 0.15, 0.15, 20.0)
    assert enc > 2.0 and truth["distance_m"] < 0.1


def test_downhill_the_ground_runs_ahead_of_the_encoders() -> None:
    w = slope_world(15.0, 180.0, seed=4)  # facing west: downhill
    enc, truth = drive(w, 0.15, 0.15, 30.0)
    assert truth["distance_m"] > enc


def test_an_encoder_scale_error_set_during_a_run_counts_from_then_on() -> None:
    # a fault campaign may swap the encoder configuration mid-run: the next read uses it
    w = slope_world(0.0, 0.0, seed=6)
    w.vehicle.set_wheels(0.1, 0.1)
    w.step(5.0)
    left, right = w.read_drive().left_ticks, w.read_drive().right_ticks
    assert left == right > 0
    w.encoders.config = EncoderConfig(scale_error_left=0.02)
    d = w.read_drive()
    assert d.right_ticks == right
    assert d.left_ticks == math.floor(w.vehicle.state.angle_left * 4096 / (2 * math.pi) * 1.02) > left


def test_turn_in_place_and_straight_line_on_flat_ground() -> None:
    w = slope_world(0.0, 0.0, seed=5)
    _, truth = drive(w, -0.1, 0.1, 10.0)
    # spinning in place: yaw rate (v_r - v_l) / track = 0.4 rad/s less slip, for ~10 s
    assert 3.0 < truth["yaw"] % (2 * math.pi) < 4.2
    assert math.hypot(truth["x"] - 15.0, truth["y"] - 15.0) < 0.05


def test_stall_against_a_tall_rock_and_back_off() -> None:
    ground = Terrain.plane(size_m=20.0, resolution_m=0.05)
    ground.add_rock(13.0, 10.0, radius=0.35, height=0.3)
    w = World("moon", 2, terrain=ground, start_x=10.0, start_y=10.0, cameras={})
    w.vehicle.set_wheels(0.15, 0.15)
    w.step(30.0)
    t = w.truth()
    d = w.read_drive()
    assert t["stalled"] and d.stalled
    assert d.fault_flags == FaultFlags.STALL_LEFT | FaultFlags.STALL_RIGHT
    # the front wheels (0.2 m ahead of the body) stopped at the rock's foot
    assert 13.0 - 0.35 - 0.2 - 0.15 < t["x"] < 13.0 - 0.35 - 0.2 + 0.02
    assert d.left_current_a == pytest.approx(3.0) and d.right_current_a == pytest.approx(3.0)
    ticks = d.left_ticks
    w.step(5.0)
    assert w.read_drive().left_ticks == ticks  # the wheels do not turn
    w.vehicle.set_wheels(-0.1, -0.1)
    w.step(5.0)
    t2 = w.truth()
    assert not t2["stalled"] and t2["x"] < t["x"] - 0.3


def test_a_small_rock_is_climbed_and_tilts_the_vehicle() -> None:
    ground = Terrain.plane(size_m=20.0, resolution_m=0.05)
    ground.add_rock(12.0, 10.25, radius=0.2, height=0.05)  # under the left wheels' track
    w = World("moon", 2, terrain=ground, start_x=10.0, start_y=10.0, cameras={})
    w.vehicle.set_wheels(0.15, 0.15)
    rolls = []
    for _ in range(200):
        w.step(0.1)
        rolls.append(w.truth()["roll"])
    assert w.truth()["x"] > 12.5 and not w.truth()["stalled"]
    assert max(rolls) > math.radians(2.0)  # left side lifted


def test_current_rises_with_grade() -> None:
    flat = slope_world(0.0, 0.0)
    hill = slope_world(15.0, 0.0)
    for w in (flat, hill):
        w.vehicle.set_wheels(0.15, 0.15)
        w.step(5.0)
    i_flat = flat.read_drive().left_current_a
    i_hill = hill.read_drive().left_current_a
    assert 0.2 < i_flat < i_hill < 3.0
    idle = slope_world(15.0, 0.0)
    idle.step(5.0)
    assert idle.read_drive().left_current_a == 0.0


def test_same_seed_same_drive_other_seed_other_slip() -> None:
    runs = []
    for seed in (7, 7, 8):
        w = slope_world(10.0, 30.0, seed=seed)
        w.vehicle.set_wheels(0.15, 0.12)
        w.step(20.0)
        runs.append((w.truth()["x"], w.truth()["y"], w.read_drive().left_ticks))
    assert runs[0] == runs[1]
    assert runs[0][:2] != runs[2][:2]


def test_gyro_has_bias_and_noise_but_no_motion_at_rest() -> None:
    w = slope_world(0.0, 0.0, seed=9, imu=ImuConfig(gyro_bias_rads=0.001))
    g = np.array([w.read_imu().gyro_rads for _ in range(500)])
    assert np.all(np.abs(g.mean(axis=0)) < 0.005)
    assert np.any(np.abs(g.mean(axis=0)) > 1e-4)  # the bias shows
    assert np.all(g.std(axis=0) > 1e-4)


@pytest.mark.parametrize("attitude", [(0.3, 0.2, 0.25), (-1.0, -0.3, 0.17), (2.0, 0.05, -0.3)])
def test_ideal_gyro_is_the_body_rate_of_the_attitude_change(attitude) -> None:
    """The ideal gyro reads the angular velocity that turns the attitude as its Euler angles
    change (the skew part of R^T dR/dt), including the pitch rate while rolled, so a heading
    integrated from it by Euler kinematics does not drift on rocking ground."""
    from hal.geometry import body_to_world

    v = Vehicle(Terrain.plane(size_m=20.0), VehicleConfig())
    yaw, pitch, roll = attitude
    rates = (0.2, -0.15, 0.3)  # yaw, pitch, roll rates, rad/s
    s = v.state
    s.yaw, s.pitch, s.roll = yaw, pitch, roll
    s.yaw_rate, s.pitch_rate, s.roll_rate = rates
    h = 1e-6
    r0 = body_to_world(yaw - h * rates[0], pitch - h * rates[1], roll - h * rates[2])
    r1 = body_to_world(yaw + h * rates[0], pitch + h * rates[1], roll + h * rates[2])
    omega = body_to_world(yaw, pitch, roll).T @ (r1 - r0) / (2 * h)
    expected = np.array([omega[2, 1], omega[0, 2], omega[1, 0]])
    assert np.allclose(v.angular_rate_body(), expected, atol=1e-7)
