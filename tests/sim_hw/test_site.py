"""Several vehicles on one site: a static lander kind, shared terrain, each seen by the others."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_hw.lander import Lander, LanderConfig
from sim_hw.objects import Box, draw_boxes
from sim_hw.render import CameraPose, camera_model
from sim_hw.scenario import Scenario
from sim_hw.site import Site, SiteVehicle


def _site(body: str = "moon") -> Site:
    sc = Scenario(name="t", preset=body, seed=3, terrain_size_m=30.0, relief_rms_m=0.05, clear_radius_m=3.0)
    return Site(sc, [SiteVehicle("lander", "lander", 15.0, 15.0, 0.0, LanderConfig(tilt_pitch_deg=2.0)),
                     SiteVehicle("rover", "rover", 21.0, 15.0, 180.0)])


def test_a_lander_stands_tilted_and_ignores_drive_commands() -> None:
    site = _site()
    lander = site["lander"]
    assert isinstance(lander.vehicle, Lander) and lander.kind == "lander"
    pitch0 = lander.truth()["pitch"]
    assert abs(math.degrees(pitch0)) > 1.0  # the landing tilt on top of the ground's slope
    lander.vehicle.set_wheels(0.2, 0.2)
    site.step_to(20.0)
    t = lander.truth()
    assert (t["x"], t["y"], t["pitch"]) == (15.0, 15.0, pitch0)
    assert t["refused_drive_commands"] == 1
    # the IMU feels the tilt: gravity is not straight down the body's z axis
    acc = np.array(lander.read_imu().accel_mps2)
    assert np.linalg.norm(acc) == pytest.approx(1.62, rel=0.05) and abs(acc[0]) > 0.02
    with pytest.raises(ValueError):
        LanderConfig(tilt_roll_deg=45.0)


def test_body_sets_gravity_and_vehicles_share_one_terrain() -> None:
    moon, mars = _site("moon"), _site("mars")
    assert moon["rover"].terrain is moon["lander"].terrain
    g_moon = np.linalg.norm(moon["rover"].read_imu().accel_mps2)
    g_mars = np.linalg.norm(mars["rover"].read_imu().accel_mps2)
    assert g_moon == pytest.approx(1.62, rel=0.05) and g_mars == pytest.approx(3.71, rel=0.05)
    assert mars["rover"].body.day_length_s > moon["rover"].body.day_length_s / 40  # a sol, not a lunar day
    with pytest.raises(ValueError, match="off the 30 m map"):
        Site(Scenario(terrain_size_m=30.0), [SiteVehicle("far", x=40.0, y=1.0)])
    with pytest.raises(ValueError, match="two vehicles with one name"):
        Site(Scenario(terrain_size_m=30.0), [SiteVehicle("a", x=5.0, y=5.0), SiteVehicle("a", x=9.0, y=9.0)])


def test_each_vehicle_sees_the_other_in_its_camera() -> None:
    site = _site()
    rover, lander = site["rover"], site["lander"]
    img_with, _ = rover.capture("navcam")
    neighbours, rover.neighbours = rover.neighbours, []
    img_without = rover.render_view(rover.cameras["navcam"], rover.camera_pose("navcam"))
    rover.neighbours = neighbours
    changed = np.abs(img_with.astype(int) - img_without.astype(int)) > 20
    assert changed.sum() > 500  # the lander, 6 m ahead, fills part of the frame
    # where the box is drawn the image is flat-shaded
    ys, xs = np.nonzero(changed)
    assert np.std(img_with[ys, xs].astype(float)) < 40
    assert lander.neighbours == [rover]


def test_boxes_hide_behind_nearer_terrain() -> None:
    model = camera_model(64, 48, 60.0)
    pose = CameraPose.look_at((0.0, 0.0, 1.0), (10.0, 0.0, 1.0))
    img = np.zeros((48, 64), np.uint8)
    far = np.full((48, 64), 100.0)
    box = Box(5.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 0.5)
    assert draw_boxes(img, far, model, pose, [box], np.array([0.0, -0.5, 0.866]), 0.2) > 20
    img2 = np.zeros((48, 64), np.uint8)
    near = np.full((48, 64), 2.0)  # terrain at 2 m hides a box at 4.5 m
    assert draw_boxes(img2, near, model, pose, [box], np.array([0.0, -0.5, 0.866]), 0.2) == 0
    behind = Box(-5.0, 0.0, 0.0, 0.0, 1.0, 1.0, 2.0, 0.5)
    assert draw_boxes(img2, far, model, pose, [behind], np.array([0.0, 0.0, 1.0]), 0.2) == 0
