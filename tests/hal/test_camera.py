"""The OpenCV camera driver, exercised for real on video files and image sequences it wrote."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal import open_device
from hal.camera import CameraEndOfStream, OpenCvCamera, pinhole_model
from hal.errors import DeviceClosedError, DeviceUrlError, HalError

pytestmark = pytest.mark.timeout(60)

W, H, N = 160, 120, 24


def synthetic(i: int) -> np.ndarray:
    """A frame with a bar that moves 5 px per frame and a brightness ramp."""
    img = np.zeros((H, W, 3), np.uint8)
    x = (i * 5) % (W - 20)
    img[:, x:x + 20] = (255, 255, 255)
    img[H // 3: 2 * H // 3, :, 1] = (i * 9) % 256
    return img


def similar(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.mean(np.abs(a.astype(float) - b.astype(float)))) < 6.0


@pytest.fixture
def avi(tmp_path: Path) -> Path:
    path = tmp_path / "drive.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    assert writer.isOpened()
    for i in range(N):
        writer.write(synthetic(i))
    writer.release()
    return path


@pytest.fixture
def pngs(tmp_path: Path) -> str:
    for i in range(N):
        cv2.imwrite(str(tmp_path / f"frame_{i:04d}.png"), synthetic(i))
    return str(tmp_path / "frame_%04d.png")


def read_all(cam: OpenCvCamera) -> tuple[list, Exception]:
    frames = []
    for _ in range(N + 5):
        try:
            frames.append(cam.capture(timeout_s=5.0))
        except HalError as exc:
            return frames, exc
    pytest.fail("the stream never ended")


def test_video_file_frames_and_metadata(avi: Path) -> None:
    ticks = itertools.count()
    cam = open_device(f"camera+opencv://{avi}?fov_deg=90&name=navcam",
                      clock=lambda: float(next(ticks)))
    assert isinstance(cam, OpenCvCamera)
    with cam:
        frames, end = read_all(cam)
    assert isinstance(end, CameraEndOfStream) and "24" in str(end)
    assert len(frames) == N
    assert [f.seq for f in frames] == list(range(N))
    assert [f.time_s for f in frames] == [float(i) for i in range(N)]
    for i, f in enumerate(frames):
        assert f.image.shape == (H, W, 3) and f.camera == "navcam"
        assert similar(f.image, synthetic(i))
    model = frames[0].model
    assert model == pinhole_model(W, H, 90.0)
    assert model is not None and abs(model.fx - W / 2) < 1e-9 and model.cx == W / 2
    assert frames[0].meta["backend"] and frames[0].meta["source"] == str(avi)


def test_image_sequence_grey(pngs: str) -> None:
    with open_device(f"camera+opencv://{pngs}?grey=1") as cam:
        frames, end = read_all(cam)  # type: ignore[arg-type]
    assert isinstance(end, CameraEndOfStream)
    assert len(frames) == N
    for i, f in enumerate(frames):
        assert f.image.shape == (H, W)
        assert similar(f.image, cv2.cvtColor(synthetic(i), cv2.COLOR_BGR2GRAY))


def test_truncated_file_gives_frames_up_to_the_cut_then_an_error(avi: Path,
                                                                  tmp_path: Path) -> None:
    cut = tmp_path / "cut.avi"
    data = avi.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with open_device(f"camera+opencv://{cut}") as cam:
        frames, end = read_all(cam)  # type: ignore[arg-type]
    assert isinstance(end, HalError)
    assert 1 < len(frames) < N
    # the frame the cut went through may decode partially; every one before it is intact
    for i, f in enumerate(frames[:-1]):
        assert similar(f.image, synthetic(i))


def test_errors_are_clear(tmp_path: Path, avi: Path) -> None:
    with pytest.raises(HalError, match="does not exist"):
        open_device(f"camera+opencv://{tmp_path}/missing.avi")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(HalError):
        cam = open_device(f"camera+opencv://{junk}")
        cam.capture(timeout_s=2.0)  # type: ignore[attr-defined]
    with pytest.raises(DeviceUrlError, match="camera\\+opencv://INDEX"):
        open_device(f"camera+opencv://{avi}?zoom=2")
    with pytest.raises(DeviceUrlError, match="device index or an absolute path"):
        open_device("camera+opencv://front")
    cam = open_device(f"camera+opencv://{avi}")
    cam.close()
    cam.close()
    with pytest.raises(DeviceClosedError, match=r"capture\(\)"):
        cam.capture()  # type: ignore[attr-defined]


def test_a_looping_file_starts_again_and_says_it_did(avi: Path) -> None:
    """``loop=1``: a recorded video stands in for a camera for as long as the rover runs."""
    with open_device(f"camera+opencv://{avi}?loop=1") as cam:
        frames = [cam.capture(timeout_s=5.0) for _ in range(2 * N + 3)]  # type: ignore[attr-defined]
        assert cam.counters.rewinds == 2  # type: ignore[attr-defined]
    assert [f.seq for f in frames] == list(range(2 * N + 3))
    for i, f in enumerate(frames):
        assert similar(f.image, synthetic(i % N))
    with pytest.raises(DeviceUrlError, match="loop applies to a video file"):
        open_device("camera+opencv://0?loop=1")


def test_a_looping_file_that_holds_nothing_still_ends(tmp_path: Path) -> None:
    cut = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(cut), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    writer.release()
    with open_device(f"camera+opencv://{cut}?loop=1") as cam, pytest.raises(CameraEndOfStream):
        cam.capture(timeout_s=5.0)  # type: ignore[attr-defined]


def test_a_stereo_pair_from_two_videos(tmp_path: Path) -> None:
    """``camera+opencv-stereo``: two eyes read as one camera with a baseline."""
    paths = []
    for side, shift in (("left", 0), ("right", 8)):
        path = tmp_path / f"{side}.avi"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
        for i in range(4):
            writer.write(np.roll(synthetic(i), -shift, axis=1))
        writer.release()
        paths.append(path)
    url = f"camera+opencv-stereo://{paths[0]},{paths[1]}?baseline=0.12&loop=1&name=navcam&fov_deg=70"
    with open_device(url) as cam:
        assert cam.has_stereo  # type: ignore[attr-defined]
        pairs = [cam.capture_stereo(timeout_s=5.0) for _ in range(6)]  # type: ignore[attr-defined]
        single = cam.capture(timeout_s=5.0)  # type: ignore[attr-defined]
    assert cam.closed
    assert all(p.baseline_m == 0.12 for p in pairs)
    for i, pair in enumerate(pairs):
        assert pair.left.camera == "navcam-left" and pair.right.camera == "navcam-right"
        assert similar(pair.left.image, synthetic(i % 4))
        assert similar(pair.right.image, np.roll(synthetic(i % 4), -8, axis=1))
        assert pair.left.model == pinhole_model(W, H, 70.0)
    assert single.camera == "navcam-left"
    for bad, why in ((f"camera+opencv-stereo://{paths[0]}?baseline=0.1", "two sources"),
                     (f"camera+opencv-stereo://{paths[0]},{paths[1]}", "baseline"),
                     ("camera+opencv-stereo://0,front?baseline=0.1", "not a device index"),
                     ("camera+opencv-stereo://0,1?baseline=0.1&loop=1", "loop applies"),
                     ("camera+opencv-stereo://0,1?baseline=0.1&zoom=2", "unknown option")):
        with pytest.raises(DeviceUrlError, match=why):
            open_device(bad)
    with pytest.raises(HalError, match="does not exist"):
        open_device(f"camera+opencv-stereo://{paths[0]},{tmp_path}/none.avi?baseline=0.1")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_camera_urls_either_parse_or_say_why(tail: str) -> None:
    """Any text after either scheme: a parsed URL or a DeviceUrlError, never another exception."""
    from hal.camera import parse_stereo_url, parse_url

    for parse, scheme in ((parse_url, "camera+opencv://"), (parse_stereo_url, "camera+opencv-stereo://")):
        try:
            parse(scheme + tail)  # type: ignore[operator]
        except DeviceUrlError as exc:
            assert str(exc)
