"""The real-time world (SITL): the MCU over the real serial protocol on a pty, cameras over ZeroMQ.

The world runs in threads here (its process form is exercised by tests/web/test_browser.py);
the flight-side devices are opened by URL exactly as ``magpie flight`` opens them. Waits are
bounded polls of a world that runs on the wall clock.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from flight.config import load as load_config
from hal.errors import DeviceUrlError
from hal.registry import open_device
from magpie.sitlrun import default_config, device_overrides, wants_world, world_cameras
from sim_hw.sitl import SitlWorld

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sitl():
    w = SitlWorld(seed=3, speed=4.0, cameras={"navcam": "sim://camera?name=navcam&width=160&height=120&stereo=0"})
    yield w
    w.close()


def test_the_serial_driver_drives_the_world(sitl: SitlWorld) -> None:
    urls = sitl.devices()
    assert urls["mcu"].startswith("mcu+serial:///") and urls["camera.navcam"].startswith("camera+sitl://tcp://")
    mcu = open_device(urls["mcu"])
    try:
        start = mcu.read_drive()
        x0 = sitl.truth()["x"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            mcu.set_wheels(0.2, 0.2)  # re-sent like the drive component does every cycle
            if mcu.read_drive().left_ticks - start.left_ticks > 200:
                break
            time.sleep(0.05)  # the world runs on the wall clock
        moved = sitl.truth()["x"] - x0
        mcu.stop()
    finally:
        mcu.close()
    assert moved > 0.02, moved


def test_the_camera_comes_from_the_world_process(sitl: SitlWorld) -> None:
    cam = open_device(sitl.devices()["camera.navcam"])
    try:
        f1 = cam.capture()
        assert f1.image.shape[:2] == (120, 160) and f1.image.dtype == np.uint8 and f1.image.std() > 0
        assert f1.model is not None and f1.model.width == 160
        assert cam.has_mast and not cam.has_stereo
        cam.point(30.0, -10.0)
        assert cam.pointing == (30.0, -10.0)
        with pytest.raises(ValueError, match="outside the mast limits"):
            cam.point(500.0, 0.0)
        f2 = cam.capture()
        assert f2.seq == f1.seq + 1 and not np.array_equal(f1.image, f2.image)
    finally:
        cam.close()
    with pytest.raises(DeviceUrlError, match="tcp:// or ipc://"):
        open_device("camera+sitl://127.0.0.1:5?name=navcam")
    with pytest.raises(DeviceUrlError):
        open_device(sitl.devices()["camera.navcam"] + "&colour=1")


def test_the_rover_toml_changes_only_its_device_urls() -> None:
    cfg = load_config(default_config())
    assert wants_world(cfg)
    assert world_cameras(cfg) == {"navcam": "width=320&height=240&stereo=0&tilt=-25"}
    sitl = {"mcu": "mcu+serial:///tmp/x/ttyMCU?stream_hz=50", "camera.navcam": "camera+sitl://tcp://127.0.0.1:9?name=navcam",
            "watchdog": "watchdog+linux:///tmp/x/watchdog?timeout=10"}
    over = device_overrides(cfg, sitl, "radio+zmq://tcp://127.0.0.1:8?scid=66")
    assert over["mcu"] == sitl["mcu"] and over["navcam"] == sitl["camera.navcam"]
    assert over["radio"] == "radio+zmq://tcp://127.0.0.1:8?scid=66" and over["watchdog"] == sitl["watchdog"]
    assert set(over) == set(cfg.devices)  # every device is replaced, nothing else changes


def test_the_watchdog_is_a_fifo_the_linux_driver_writes(sitl: SitlWorld) -> None:
    wd = open_device(sitl.devices()["watchdog"])
    try:
        for _ in range(3):
            wd.kick()
        deadline = time.monotonic() + 10
        while sitl.watchdog.kicks < 3 and time.monotonic() < deadline:
            time.sleep(0.02)  # the world reads the FIFO on its own thread
        assert sitl.watchdog.kicks == 3 and sitl.watchdog.armed
    finally:
        wd.close()  # the magic close disarms it
    deadline = time.monotonic() + 10
    while sitl.watchdog.armed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sitl.watchdog.armed and sitl.watchdog.bites == 0
