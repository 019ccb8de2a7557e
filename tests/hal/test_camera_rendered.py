"""The OpenCV camera driver reading frames the world rendered, through a real video file."""

import cv2
import numpy as np
import pytest

from hal import open_device
from hal.errors import HalError
from sim_hw.world import CameraSpec, World

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def rendered():
    world = World("moon", seed=5, cameras={"navcam": CameraSpec(width=320, height=240, stereo=False)})
    frames = []
    for _ in range(6):
        world.vehicle.set_wheels(0.15, 0.1)
        world.step_to(world.time_s + 1.0)
        img, _ = world.capture("navcam")
        frames.append(img)
    return frames


def write_video(path, frames):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (320, 240), isColor=False)
    for img in frames:
        writer.write(img)
    writer.release()


def test_rendered_frames_round_trip_through_a_video_file(tmp_path, rendered):
    path = tmp_path / "nav.avi"
    write_video(path, rendered)
    cam = open_device(f"camera+opencv://{path}?grey=1&fov_deg=60")
    try:
        got = [cam.capture(timeout_s=2.0) for _ in rendered]
        for src, frame in zip(rendered, got, strict=True):
            assert frame.image.shape == (240, 320)
            assert frame.model is not None and frame.model.width == 320
            # lossy MJPG: the rendered scene survives within a few grey levels on average
            assert float(np.mean(np.abs(frame.image.astype(int) - src.astype(int)))) < 6.0
        assert [f.seq for f in got] == sorted(f.seq for f in got)
        with pytest.raises(HalError):
            cam.capture(timeout_s=1.0)  # the file ended: a clear error, not a hang
    finally:
        cam.close()


def test_truncated_video_of_rendered_frames_fails_cleanly(tmp_path, rendered):
    path = tmp_path / "cut.avi"
    write_video(path, rendered)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    cam = open_device(f"camera+opencv://{path}?grey=1")
    got = 0
    try:
        with pytest.raises(HalError):
            for _ in range(len(rendered) + 1):
                cam.capture(timeout_s=1.0)
                got += 1
    finally:
        cam.close()
    assert 1 <= got < len(rendered)
