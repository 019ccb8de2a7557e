"""The imaging task on a vehicle in lockstep with a world: captures, exposure, failures, requests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from flight.imaging.catalogue import FAILED, READY
from flight.link.products import ProductChunk
from tests.imaging.helpers import Collect, build_vehicle, camera, rock_field, run_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture()
def rig(tmp_path: Path):
    world, _ = rock_field(2, n=6)
    cam = camera(world)
    vehicle, clock = build_vehicle(tmp_path, world, cam, 'quota_bytes = 3000000\nencode_cost_s = 0.3')
    sink = Collect()
    vehicle.add_sink(sink)
    img = vehicle.by_name["img"]
    yield vehicle, clock, img, sink, cam
    vehicle.shutdown()


def finished(sink: Collect, name: str, n: int = 1):
    return lambda: len([r for r in sink.responses(name) if r.stage in ("COMPLETED", "FAILED")]) >= n


def test_capture_burst_and_panorama_make_products_with_metadata(rig) -> None:
    vehicle, clock, img, sink, cam = rig
    cmd = vehicle.fw.cmd
    cmd.submit("IMG_CAPTURE", {"format": "PNG", "quality": 90, "priority": 5})
    cmd.submit("IMG_BURST", {"count": 3, "format": "JPEG", "quality": 70, "priority": 1})
    cmd.submit("IMG_PANORAMA", {"pan_start_deg": -20, "pan_step_deg": 20, "pan_count": 3, "tilt_start_deg": -30,
                                "tilt_step_deg": 10, "tilt_count": 2, "format": "JPEG", "quality": 50,
                                "priority": 2})
    run_until(vehicle, clock, finished(sink, "IMG_PANORAMA"))
    for name in ("IMG_CAPTURE", "IMG_BURST", "IMG_PANORAMA"):
        assert [r.stage for r in sink.responses(name)][-1] == "COMPLETED"
    products = img.catalogue.list()
    assert len(products) == 10 and all(p.state == READY for p in products)
    pano = products[4:]
    assert [(p.meta["pan_deg"], p.meta["tilt_deg"]) for p in pano] == [
        (-20, -30), (0, -30), (20, -30), (20, -20), (0, -20), (-20, -20)]
    first = products[0]
    m = first.meta
    assert m["camera"] == "navcam" and m["format"] == "png" and m["model"]["width"] == 320
    assert {"time_s", "exposure_ms", "gain", "seq", "pan_deg", "tilt_deg"} <= set(m)
    full = cv2.imdecode(np.frombuffer(img.catalogue.read(first.pid, "full"), np.uint8), cv2.IMREAD_UNCHANGED)
    thumb = cv2.imdecode(np.frombuffer(img.catalogue.read(first.pid, "thumb"), np.uint8), cv2.IMREAD_UNCHANGED)
    assert full.shape == (240, 320) and thumb.shape == (30, 40)
    assert np.array_equal(thumb, full[::8, ::8])  # PNG: the thumbnail is exactly every 8th pixel
    # auto-exposure brought the mean near its target
    assert abs(float(full[60:180, 80:240].mean()) - 110.0) < 0.2 * 110.0
    assert sink.events("ExposureSet")
    # thumbnails were queued for downlink as each product was stored, full frames were not
    chunks = [i for i in sink.items if isinstance(i, ProductChunk)]
    assert chunks and all(c.thumbnail for c in chunks)
    assert {c.pid for c in chunks} == {p.pid for p in products}


def test_disk_full_and_camera_fault_fail_cleanly(rig) -> None:
    vehicle, clock, img, sink, cam = rig
    cmd = vehicle.fw.cmd
    img.quota.limit = img.quota.used + 2000  # a tiny quota: the next product cannot be stored
    cmd.submit("IMG_CAPTURE", {"format": "PNG", "quality": 90, "priority": 1})
    run_until(vehicle, clock, finished(sink, "IMG_CAPTURE"))
    resp = sink.responses("IMG_CAPTURE")[-1]
    assert resp.stage == "FAILED" and "disk full" in resp.reason
    [failed] = img.catalogue.list()
    assert failed.state == FAILED and "disk full" in failed.reason
    assert list(img.catalogue.files_dir.iterdir()) == []
    assert any("disk full" in e.text for e in sink.events("ProductFailed"))

    cam.close()  # the camera is gone: a capture raises DeviceClosedError
    cmd.submit("IMG_BURST", {"count": 2, "format": "JPEG", "quality": 80, "priority": 1})
    run_until(vehicle, clock, finished(sink, "IMG_BURST"))
    resp = sink.responses("IMG_BURST")[-1]
    assert resp.stage == "FAILED" and "camera fault" in resp.reason
    assert len(sink.events("CaptureFailed")) >= 1
    assert len(img.catalogue.list()) == 1  # nothing half-made was added


def test_bad_product_requests_are_refused_counted_and_harmless(rig) -> None:
    vehicle, clock, img, sink, cam = rig
    cmd = vehicle.fw.cmd
    cmd.submit("IMG_CAPTURE", {"format": "JPEG", "quality": 80, "priority": 1})
    run_until(vehicle, clock, finished(sink, "IMG_CAPTURE"))
    [p] = img.catalogue.list()
    before = img.catalogue.read(p.pid, "full")
    cmd.submit("IMG_DOWNLINK", {"pid": 999, "what": "BOTH"})
    cmd.submit("IMG_RESEND", {"pid": p.pid, "what": "FULL", "segments": "9-2"})
    cmd.submit("IMG_DELETE", {"pid": 12345})
    cmd.submit("IMG_RESEND", {"pid": p.pid, "what": "FULL", "segments": "0,40000"})  # out of range: ignored
    run_until(vehicle, clock, finished(sink, "IMG_DELETE"))
    vehicle.run(until_s=clock.now() + 1.0)
    assert [r.stage for r in sink.responses("IMG_DOWNLINK")] == ["ACCEPTED", "FAILED"]
    assert "no product 999" in sink.responses("IMG_DOWNLINK")[-1].reason
    assert sink.responses("IMG_RESEND")[1].stage == "FAILED"
    assert sink.responses("IMG_DELETE")[-1].stage == "FAILED"
    assert img.bad_requests == 3
    assert img.catalogue.read(p.pid, "full") == before
    resent = [i for i in sink.items if isinstance(i, ProductChunk) and not i.thumbnail]
    assert [c.idx for c in resent] == [0]


def test_list_downlink_by_priority_and_delete(rig) -> None:
    vehicle, clock, img, sink, cam = rig
    cmd = vehicle.fw.cmd
    for prio in (1, 9, 5):
        cmd.submit("IMG_CAPTURE", {"format": "JPEG", "quality": 60, "priority": prio})
    run_until(vehicle, clock, finished(sink, "IMG_CAPTURE", 3))
    pids = [p.pid for p in img.catalogue.list()]
    cmd.submit("IMG_DOWNLINK_PRIO", {"min_priority": 5, "max_products": 10, "what": "FULL"})
    cmd.submit("IMG_LIST", {"max": 10})
    cmd.submit("IMG_DELETE", {"pid": pids[0]})
    run_until(vehicle, clock, finished(sink, "IMG_DELETE"))
    full = [i for i in sink.items if isinstance(i, ProductChunk) and not i.thumbnail]
    order = list(dict.fromkeys(c.pid for c in full))
    assert order == [pids[1], pids[2]]  # priority 9 first, then 5; priority 1 stays on board
    assert len(sink.events("ProductListed")) == 3
    assert [p.pid for p in img.catalogue.list()] == pids[1:]
    assert img.quota.used == img.catalogue.used_bytes()


def test_metadata_carries_the_navigation_pose(tmp_path: Path) -> None:
    """With a navigation component aboard, every image records the pose it was taken from."""
    world, _ = rock_field(3, n=4)
    cam = camera(world)
    options = """
[components.nav]
type = "nav_odometry"

[[rate_groups]]
name = "pose"
hz = 10
members = ["nav"]
"""
    vehicle, clock = build_vehicle(tmp_path, world, cam, options)
    sink = Collect()
    vehicle.add_sink(sink)
    try:
        vehicle.fw.cmd.submit("NAV_RESET_POSE", {"x": 3.5, "y": -2.0, "yaw_deg": 30.0})
        vehicle.run(until_s=clock.now() + 1.0)
        vehicle.fw.cmd.submit("IMG_CAPTURE", {"format": "JPEG", "quality": 80, "priority": 3})
        run_until(vehicle, clock, finished(sink, "IMG_CAPTURE"))
        (product,) = vehicle.by_name["img"].catalogue.list()
        pose = product.meta["pose"]
        assert pose["nav.x_m"] == pytest.approx(3.5) and pose["nav.y_m"] == pytest.approx(-2.0)
        assert pose["nav.yaw_deg"] == pytest.approx(30.0, abs=0.01)
    finally:
        vehicle.shutdown()
