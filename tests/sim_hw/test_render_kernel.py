"""The compiled renderer against the numpy reference: the same depths and the same images.

The compiled walk meets the bilinear ground exactly; the reference marches safe steps over the
same surface, so they agree except where a ray grazes a bump thinner than a pixel footprint
(the reference may step over it); the bounds below leave room for those few pixels and for the
reference's 1/32-cell fixed-point interpolation, nothing more. Against a reference with five
times finer steps, the compiled one errs on no more pixels than the reference, and rock
silhouettes and image edges fall where the reference puts them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from hal.geometry import body_to_world
from sim_hw.render import CameraPose, Renderer, camera_model
from sim_hw.terrain import Terrain
from sim_hw.world import World

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def world() -> World:
    return World("moon", seed=1, start_hours_after_sunrise=72.0)


def _compare(world: World, pose: CameraPose, sun: np.ndarray, **kw) -> None:
    model = camera_model(320, 240, 60.0)
    r = world.renderer
    img, depth = r.render(model, pose, sun, return_depth=True, **kw)
    ref, ref_depth = r.render_reference(model, pose, sun, return_depth=True, **kw)
    assert img.shape == ref.shape and img.dtype == ref.dtype
    # the same pixels see the sky
    assert np.mean(np.isfinite(depth) != np.isfinite(ref_depth)) < 5e-4
    both = np.isfinite(depth) & np.isfinite(ref_depth)
    assert both.mean() > 0.3
    rel = np.abs(depth[both] - ref_depth[both]) / ref_depth[both]
    assert np.median(rel) < 1e-4  # sub-millimetre at a few metres
    assert np.mean(rel > 0.01) < 5e-3  # only grazing silhouettes differ by more than 1 %
    diff = np.abs(img.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() < 0.5
    assert np.percentile(diff, 99) <= 3
    # render_depth is the same pass as render
    assert np.array_equal(r.render_depth(model, pose), depth)


def test_mast_camera_matches_the_reference(world) -> None:
    _compare(world, world.camera_pose("navcam"), world.sun_vector())


def test_no_more_depth_errors_than_the_reference(world) -> None:
    """Depth against a reference with five times finer steps (the closest to exact we have)."""
    model = camera_model(320, 240, 60.0)
    pose = world.camera_pose("navcam").stereo(0.2)[0]
    fine = Renderer(world.renderer.terrain, min_step_px=0.2, max_step_cells=0.2)
    dirs, shape = fine._rays(model, pose)
    truth = fine.reference.raycast(pose.position, dirs, 1.0 / model.fx).reshape(shape)

    def wrong(depth: np.ndarray) -> int:
        sky = np.isfinite(depth) != np.isfinite(truth)
        both = np.isfinite(depth) & np.isfinite(truth)
        return int(sky.sum() + np.sum(np.abs(depth[both] - truth[both]) > 0.01 * truth[both]))

    ours = wrong(world.renderer.render_depth(model, pose))
    ref = wrong(world.renderer.reference.render_depth(model, pose))
    assert ours <= ref * 1.1 + 5
    assert ref < 0.01 * truth.size


def test_stereo_eyes_match_the_reference(world) -> None:
    left, right = world.camera_pose("navcam").stereo(0.2)
    _compare(world, left, world.sun_vector())
    _compare(world, right, world.sun_vector(), bgr=True)


def test_rolled_and_panned_cameras_match_the_reference(world) -> None:
    """Roll beyond the column-coherence bound (the kernel then marches each ray from the camera)
    and a panned camera looking along the map's other axis, under a low sun with long shadows."""
    t = world.truth()
    low_sun = np.array([0.3, -0.9, 0.3]) / np.linalg.norm([0.3, -0.9, 0.3])
    for roll_deg, pan_deg in ((35.0, 0.0), (8.0, 100.0)):
        mount = np.array([t["x"], t["y"], t["z"] + 1.1])
        rot = body_to_world(0.3, 0.05, math.radians(roll_deg))
        _compare(world, CameraPose.from_mount(mount, rot, pan_deg, -25.0), low_sun, exposure=1.3)


def test_raycast_matches_the_reference(world) -> None:
    """Arbitrary rays (not an image) through the public ray-casting call."""
    rng = np.random.default_rng(3)
    t = world.truth()
    origin = np.array([t["x"], t["y"], t["z"] + 1.5])
    dirs = np.column_stack([rng.normal(size=500), rng.normal(size=500), -np.abs(rng.normal(size=500)) * 0.5])
    fast = world.renderer.raycast(origin, dirs, 1e-3)
    ref = world.renderer.reference.raycast(origin, dirs, 1e-3)
    assert np.array_equal(np.isfinite(fast), np.isfinite(ref))
    hit = np.isfinite(ref)
    assert hit.mean() > 0.5
    assert np.mean(np.abs(fast[hit] - ref[hit]) / ref[hit] > 1e-3) < 0.01


def _within(a: np.ndarray, b: np.ndarray, px: int) -> float:
    """Fraction of the set pixels of ``a`` that have a set pixel of ``b`` within ``px``."""
    near = cv2.dilate(b.astype(np.uint8), np.ones((2 * px + 1, 2 * px + 1), np.uint8)) > 0
    return float(near[a].mean())


def test_rock_edges_are_where_the_reference_puts_them() -> None:
    """Silhouettes (depth jumps) and image edges (Canny on the grey image) of rocks on a plane:
    the walk puts them where the reference's march does, to a pixel."""
    ground = Terrain.plane(size_m=30.0, resolution_m=0.05, albedo=0.12, texture=0.1, seed=3)
    rng = np.random.default_rng(5)
    for _ in range(25):
        ground.add_rock(float(rng.uniform(12.0, 22.0)), float(rng.uniform(10.0, 20.0)),
                        radius=float(rng.uniform(0.1, 0.35)), height=float(rng.uniform(0.08, 0.3)), albedo=0.45)
    r = Renderer(ground, seed=1, detail=0.0)
    model = camera_model(640, 480, 60.0)
    pose = CameraPose.from_mount(np.array([10.0, 15.0, 1.2]), body_to_world(0.0, 0.0, 0.0), 0.0, -15.0)
    sun = np.array([-0.35, -0.25, 0.9]) / np.linalg.norm([-0.35, -0.25, 0.9])
    img, depth = r.render(model, pose, sun, return_depth=True)
    ref, ref_depth = r.render_reference(model, pose, sun, return_depth=True)

    def silhouettes(d: np.ndarray) -> np.ndarray:
        z = np.where(np.isfinite(d), d, 1e3).astype(np.float32)
        jump = np.abs(np.diff(z, axis=0, prepend=z[:1])) / z
        return jump > 0.05

    ours, theirs = silhouettes(depth), silhouettes(ref_depth)
    assert theirs.sum() > 500  # the rocks stand out
    assert _within(theirs, ours, 1) > 0.97
    assert _within(ours, theirs, 1) > 0.97
    e_ours = cv2.Canny(img, 40, 120) > 0
    e_ref = cv2.Canny(ref, 40, 120) > 0
    assert e_ref.sum() > 500
    assert _within(e_ref, e_ours, 1) > 0.95
    assert _within(e_ours, e_ref, 1) > 0.95
    diff = np.abs(img.astype(np.int16) - ref.astype(np.int16))
    assert diff.mean() < 0.5
