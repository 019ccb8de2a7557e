"""Rendered images: geometry agrees with the camera model, rocks appear where they should,
and a rendered stereo pair gives OpenCV the disparity f * B / Z."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from hal.geometry import body_to_world
from sim_hw.render import CameraPose, Renderer, camera_model, depth_of, project
from sim_hw.terrain import Terrain
from sim_hw.world import CameraSpec, World

pytestmark = pytest.mark.timeout(60)

SUN = np.array([-0.35, -0.25, 0.9]) / np.linalg.norm([-0.35, -0.25, 0.9])  # high, behind the camera


@pytest.fixture(scope="module")
def scene() -> tuple[Terrain, Renderer]:
    ground = Terrain.plane(size_m=30.0, resolution_m=0.05, albedo=0.12, texture=0.1, seed=3)
    ground.add_rock(15.0, 15.0, radius=0.25, height=0.2, albedo=0.6)  # bright
    ground.add_rock(14.0, 16.3, radius=0.3, height=0.2, albedo=0.015)  # dark
    return ground, Renderer(ground, shadows=True, seed=1)


def mast_pose(tilt_deg: float = -15.0) -> CameraPose:
    return CameraPose.from_mount(np.array([10.0, 15.0, 1.2]), body_to_world(0.0, 0.0, 0.0), 0.0, tilt_deg)


def test_projection_of_the_optical_axis_and_behind() -> None:
    model = camera_model(640, 480, 60.0)
    assert model.fx == pytest.approx(320.0 / math.tan(math.radians(30.0)))
    pose = CameraPose.look_at((0.0, 0.0, 1.0), (5.0, 0.0, 1.0))
    uv = project(np.array([[5.0, 0.0, 1.0], [-5.0, 0.0, 1.0], [5.0, 1.0, 1.0]]), model, pose)
    assert uv[0] == pytest.approx([model.cx, model.cy])
    assert np.isnan(uv[1]).all()
    assert uv[2, 0] < model.cx  # +y (north, left of an east-looking camera) is left in the image
    assert depth_of(np.array([[5.0, 3.0, 0.0]]), pose)[0] == pytest.approx(5.0)


def test_depth_of_flat_ground_matches_the_ray_plane_intersection(scene) -> None:
    ground, renderer = scene
    flat = Renderer(Terrain.plane(size_m=30.0, resolution_m=0.05))
    model = camera_model(320, 240, 60.0)
    pose = mast_pose(-20.0)
    depth = flat.render_depth(model, pose)
    dirs, _ = flat._rays(model, pose)
    t = (-pose.position[2] / dirs[:, 2]).reshape(depth.shape)
    seen = np.isfinite(depth)
    assert seen.mean() > 0.5
    assert np.all(np.isinf(depth[0]))  # the top row sees sky
    assert np.allclose(depth[seen], t[seen], rtol=1e-3, atol=1e-3)


def test_rocks_appear_where_the_camera_projects_them(scene) -> None:
    ground, renderer = scene
    model = camera_model(640, 480, 60.0)
    pose = mast_pose()
    img = renderer.render(model, pose, SUN)
    ground_level = float(np.median(img[img > 0]))

    top = project(np.array([[15.0, 15.0, 0.18]]), model, pose)[0]
    u, v = int(round(top[0])), int(round(top[1]))
    assert img[v, u] > 2.0 * ground_level

    bright = (img > 2.0 * ground_level).astype(np.uint8)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(bright)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    centre = project(np.array([[15.0, 15.0, 0.1]]), model, pose)[0]
    assert np.hypot(*(centroids[biggest] - centre)) < 4.0
    assert stats[biggest, cv2.CC_STAT_AREA] > 200

    dark_top = project(np.array([[14.0, 16.3, 0.18]]), model, pose)[0]
    patch = img[int(dark_top[1]) - 2 : int(dark_top[1]) + 3, int(dark_top[0]) - 2 : int(dark_top[0]) + 3]
    assert patch.mean() < 0.4 * ground_level
    # the largest dark blob, once texture speckle is opened away, is that rock
    dark = cv2.morphologyEx(((img > 0) & (img < 0.4 * ground_level)).astype(np.uint8),
                            cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(dark)
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    centre = project(np.array([[14.0, 16.3, 0.1]]), model, pose)[0]
    assert np.hypot(*(centroids[biggest] - centre)) < 5.0


def test_rock_casts_a_shadow_away_from_the_sun(scene) -> None:
    ground, renderer = scene
    low_sun = np.array([0.0, -1.0, 0.35]) / np.linalg.norm([0.0, -1.0, 0.35])  # from the south
    model = camera_model(640, 480, 60.0)
    pose = mast_pose()
    img = renderer.render(model, pose, low_sun)
    north = project(np.array([[15.0, 15.55, 0.0]]), model, pose)[0]  # in the shadow
    south = project(np.array([[15.0, 14.45, 0.0]]), model, pose)[0]  # lit
    lum = cv2.GaussianBlur(img, (5, 5), 0).astype(float)
    assert lum[int(north[1]), int(north[0])] < 0.5 * lum[int(south[1]), int(south[0])]


def test_render_is_deterministic(scene) -> None:
    _, renderer = scene
    model = camera_model(160, 120, 60.0)
    a = renderer.render(model, mast_pose(), SUN, noise_dn=2.0, rng=np.random.default_rng(4))
    b = renderer.render(model, mast_pose(), SUN, noise_dn=2.0, rng=np.random.default_rng(4))
    assert a.dtype == np.uint8 and a.shape == (120, 160)
    assert np.array_equal(a, b)
    colour = renderer.render(model, mast_pose(), SUN, bgr=True)
    assert colour.shape == (120, 160, 3)


def test_stereo_disparity_matches_f_b_over_z() -> None:
    ground = Terrain.plane(size_m=30.0, resolution_m=0.05, albedo=0.12, seed=8)
    renderer = Renderer(ground, seed=2)
    model = camera_model(640, 480, 60.0)
    baseline = 0.2
    centre = mast_pose(-35.0)
    left_pose, right_pose = centre.stereo(baseline)
    left = renderer.render(model, left_pose, SUN, noise_dn=1.0, rng=np.random.default_rng(1))
    right = renderer.render(model, right_pose, SUN, noise_dn=1.0, rng=np.random.default_rng(2))
    depth = renderer.render_depth(model, left_pose)

    sgbm = cv2.StereoSGBM_create(minDisparity=0, numDisparities=128, blockSize=7,
                                 P1=8 * 49, P2=32 * 49, uniquenessRatio=10,
                                 speckleWindowSize=100, speckleRange=2)
    disp = sgbm.compute(left, right).astype(np.float32) / 16.0
    expected = model.fx * baseline / depth
    valid = (disp > 0) & np.isfinite(depth)
    valid[:, :140] = False  # no match possible left of the largest disparity
    assert valid.mean() > 0.4
    rel = np.abs(disp[valid] - expected[valid]) / expected[valid]
    assert np.median(rel) < 0.03
    assert np.percentile(rel, 90) < 0.1
    # a known range: the ground point straight ahead at the image centre
    z = float(depth[240, 320])
    assert disp[240, 320] == pytest.approx(model.fx * baseline / z, rel=0.05)


def test_world_camera_follows_the_vehicle() -> None:
    ground = Terrain.plane(size_m=20.0, resolution_m=0.05)
    rock = ground.add_rock(14.0, 10.0, radius=0.3, height=0.25, albedo=0.6)
    cam = CameraSpec(name="navcam", width=320, height=240, tilt_deg=-15.0, noise_dn=0.0)
    w = World("moon", 3, terrain=ground, start_x=10.0, start_y=10.0, start_time_s=29.53 * 86400 / 2,
              cameras={"navcam": cam})
    img, meta = w.capture("navcam")
    pose = w.camera_pose("navcam")
    uv = project(np.array([[rock.x, rock.y, rock.height * 0.9]]), cam.model(), pose)[0]
    assert img[int(round(uv[1])), int(round(uv[0]))] > 2 * np.median(img[img > 0])
    assert meta["pose"]["position"][2] == pytest.approx(1.2, abs=0.01)
    left, _ = w.capture("navcam", "left")
    assert not np.array_equal(left, img)


def test_image_does_not_depend_on_how_columns_are_shared_out(scene) -> None:
    """The threads take blocks of columns as they free up; one thread alone gives the same bytes."""
    _, renderer = scene
    model = camera_model(333, 250, 60.0)  # an odd width: blocks of unequal size
    shared, depth = renderer.render(model, mast_pose(), SUN, return_depth=True)
    alone, depth_alone = renderer.render(model, mast_pose(), SUN, return_depth=True, parallel=False)
    assert np.array_equal(shared, alone)
    assert np.array_equal(depth, depth_alone, equal_nan=True)
    assert shared.flags.c_contiguous and depth.flags.c_contiguous and depth.shape == (250, 333)


def test_caches_follow_an_edit_of_the_terrain() -> None:
    """After a bright rock goes down, the renderer that drew the ground before draws what a new one does
    (the exposure follows the map's mean albedo)."""
    ground = Terrain.plane(size_m=20.0, resolution_m=0.05, albedo=0.12, seed=4)
    renderer = Renderer(ground, seed=1)
    model = camera_model(160, 120, 60.0)
    pose = mast_pose()
    before = renderer.render(model, pose, SUN)
    ground.add_rock(15.0, 15.0, radius=3.0, height=0.3, albedo=0.9)
    after = renderer.render(model, pose, SUN)
    assert not np.array_equal(before, after)
    assert np.array_equal(after, Renderer(ground, seed=1).render(model, pose, SUN))


@pytest.mark.parametrize("kw", [
    {},
    {"bgr": True},
    {"noise_dn": 2.0},  # no generator: each eye's noise from a fresh seeded one, as in two calls
    {"return_depth": True, "parallel": False},
], ids=["grey", "bgr", "noise", "depth-serial"])
def test_stereo_pair_is_two_single_renders_byte_for_byte(scene, kw) -> None:
    """One pass renders both eyes; each image (and depth) is what render gives for that eye."""
    _, renderer = scene
    model = camera_model(333, 250, 60.0)
    centre = mast_pose(-20.0)
    left_pose, right_pose = centre.stereo(0.3)
    left, right = renderer.render_stereo(model, centre, SUN, 0.3, **kw)
    for got, pose in ((left, left_pose), (right, right_pose)):
        want = renderer.render(model, pose, SUN, **kw)
        for g, w in zip(got, want, strict=True) if kw.get("return_depth") else ((got, want),):
            assert g.dtype == w.dtype and g.shape == w.shape and g.flags.c_contiguous
            assert g.tobytes() == w.tobytes()


def test_stereo_pair_draws_the_left_eyes_noise_first(scene) -> None:
    _, renderer = scene
    model = camera_model(160, 120, 60.0)
    left_pose, right_pose = mast_pose().stereo(0.2)
    pair = renderer.render_pair(model, left_pose, right_pose, SUN, noise_dn=3.0, rng=np.random.default_rng(7))
    gen = np.random.default_rng(7)
    singles = [renderer.render(model, p, SUN, noise_dn=3.0, rng=gen) for p in (left_pose, right_pose)]
    assert all(a.tobytes() == b.tobytes() for a, b in zip(pair, singles, strict=True))
    assert pair[0].tobytes() != pair[1].tobytes()


def test_a_pair_of_different_rotations_is_rendered_eye_by_eye(scene) -> None:
    _, renderer = scene
    model = camera_model(160, 120, 60.0)
    a, b = mast_pose(-10.0), mast_pose(-25.0)
    pair = renderer.render_pair(model, a, b, SUN)
    assert pair[0].tobytes() == renderer.render(model, a, SUN).tobytes()
    assert pair[1].tobytes() == renderer.render(model, b, SUN).tobytes()


def test_what_a_render_returns_is_its_own_after_the_next_render(scene) -> None:
    """The kernel's buffers are reused frame to frame; images and depths handed out are copies."""
    _, renderer = scene
    model = camera_model(160, 120, 60.0)
    img, depth = renderer.render(model, mast_pose(), SUN, return_depth=True)
    only_depth = renderer.render_depth(model, mast_pose())
    kept = img.copy(), depth.copy(), only_depth.copy()
    renderer.render_stereo(camera_model(320, 240, 60.0), mast_pose(-30.0), SUN, 0.2, return_depth=True)
    renderer.render(model, mast_pose(-40.0), SUN, return_depth=True)
    assert np.array_equal(img, kept[0])
    assert np.array_equal(depth, kept[1]) and np.array_equal(only_depth, kept[2])
    column = renderer.render_depth(camera_model(1, 120, 60.0), mast_pose())  # one pixel wide: contiguous as is
    kept_column = column.copy()
    renderer.render_depth(camera_model(1, 120, 60.0), mast_pose(-40.0))
    assert np.array_equal(column, kept_column)
