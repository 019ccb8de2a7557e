"""The shipped Raspberry Pi rover, deployed as INSTALL.md says, on one machine.

The reference firmware core stands in for the Pico on a pty (``python -m hil.fwhost``), a
video file written here stands in for the USB camera, and relay, flight and ground run as
separate processes on 127.0.0.1 (:class:`hil.testbed.Testbed`). The operator's side is the
``magpie`` command line (the archive is read in-process to check what arrived).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from flight.cmdcodec import check_args
from ground.dictionary import Dictionary
from ground.server import load_config
from hil.testbed import DEPLOY, Testbed, with_power_sensing

pytestmark = pytest.mark.timeout(60)


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (320, 240)) -> Path:
    """A short MJPG video with a bright bar that moves frame to frame."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (w, h))
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((h, w, 3), 40, np.uint8)
        x = (i * 17) % (w - 40)
        img[:, x:x + 40] = (230, 230, 230)
        img[h // 2:, :, 2] = 120
        writer.write(img)
    writer.release()
    return path


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Testbed]:
    tb = Testbed(tmp_path, video=write_video(tmp_path / "navcam.avi"))
    try:
        yield tb
    finally:
        tb.close()


def cmd(tb: Testbed, *words: str, timeout_s: float = 25.0) -> tuple[int, str]:
    r = tb.magpie("cmd", *words, "--wait", "--timeout", str(timeout_s), timeout_s=timeout_s + 15)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, (r.stdout + r.stderr).strip()


def test_the_shipped_rover_drives_takes_a_picture_and_the_laptop_exports_it(bench: Testbed) -> None:
    tb = bench
    tb.start()
    # a first boot is STANDBY: motion is refused, with the reason, until MODE_SET DRIVE (asked
    # through the client API, which `magpie cmd` uses, to spare a process start)
    with tb.client() as client:
        rec = client.wait_command(client.send_command(66, "DRIVE_ARC", {"distance": 0.3, "curvature": 0.0},
                                                      timeout_s=25.0)["id"], timeout_s=25.0)
    assert rec["stage"] == "REJECTED" and "not allowed in STANDBY" in rec["reason"], str(rec) + tb.tails()
    rc, out = cmd(tb, "MODE_SET", "mode=DRIVE")
    assert rc == 0 and "COMPLETED" in out, out + tb.tails()
    rc, out = cmd(tb, "DRIVE_ARC", "distance=0.3", "curvature=0")
    assert rc == 0 and "COMPLETED" in out, out + tb.tails()
    rc, out = cmd(tb, "IMG_CAPTURE", "format=JPEG", "quality=85", "priority=5")
    assert rc == 0 and "COMPLETED" in out, out + tb.tails()
    rc, out = cmd(tb, "IMG_DOWNLINK", "pid=1", "what=FULL")
    assert rc == 0 and "COMPLETED" in out, out + tb.tails()

    tb.wait_for("the full image on the ground", lambda: tb.products().get((1, "full")) == "complete", 30.0,
                poll_s=0.2)
    out_dir = tb.ground_dir / "export"
    r = tb.magpie("images", "export", "--out", str(out_dir))
    assert r.returncode == 0, r.stderr
    images = sorted(p for p in out_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert images, r.stdout + str(list(out_dir.rglob("*")))
    full = [cv2.imread(str(p)) for p in images]
    assert any(img is not None and img.shape == (240, 320, 3) for img in full)
    sidecars = [json.loads(p.read_text()) for p in out_dir.rglob("*.json")]
    assert sidecars and all(s.get("scid", 66) == 66 for s in sidecars)

    events = "\n".join(tb.archived_events())
    assert "ModeChanged: mode STANDBY -> DRIVE: commanded" in events
    assert "ArcDone" in events and "ProductReady: product 1 stored: jpeg 320x240" in events
    # the bench profile measures no power: nothing acted on zeros
    assert "MonitorTripped" not in events and "SAFE" not in events, events
    odometry = [float(v) for _, v in tb.archived_channel("nav.distance_m")]  # type: ignore[arg-type]
    assert odometry and max(odometry) > 0.25
    check_the_guide_against(tb)


def typed_value(text: str) -> object:
    """A value as `magpie cmd` reads it: JSON, or else an enum label."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_the_guide_against(tb: Testbed) -> None:
    """INSTALL.md taken literally: its ground.toml loads, and every `magpie cmd` it tells an
    operator to type is a command of the shipped rover's dictionary with valid arguments."""
    guide = (DEPLOY / "INSTALL.md").read_text()
    block = re.search(r"```toml\n(.*?)```", guide, re.S)
    assert block is not None
    cfg_path = tb.root / "guide-ground.toml"
    cfg_path.write_text(block.group(1))
    cfg = load_config(cfg_path)
    assert cfg.vehicles[0].scid == 66 and cfg.vehicles[0].key_file == tb.root / "keys" / "uplink.key"
    assert cfg.archive == tb.root / "archive.db"  # beside the configuration, not in the source tree
    dictionary = Dictionary.load(tb.var / "dictionary.json")
    typed = [shlex.split(line.split("magpie cmd", 1)[1]) for line in guide.splitlines()
             if "magpie cmd --config" in line]
    assert len(typed) >= 5
    for words in typed:
        words = [w for w in words if not w.startswith("--") and not w.endswith("ground.toml")]
        name, args = words[0], dict(w.split("=", 1) for w in words[1:])
        check_args(dictionary.command(name), {k: typed_value(v) for k, v in args.items()})
    for name in ("MODE_SET", "DRIVE_ARC", "NAV_GOTO", "NAV_STOP", "IMG_CAPTURE", "IMG_DOWNLINK"):
        assert f"{name}" in guide and dictionary.command(name)


def test_a_rover_that_hibernates_tells_the_ground_why_before_it_goes_silent(tmp_path: Path) -> None:
    config = tmp_path / "rover-power.toml"
    config.write_text(with_power_sensing((DEPLOY / "rover.toml").read_text()))
    # a board that senses power, with the battery nearly empty: battery_critical hibernates
    tb = Testbed(tmp_path, config=config, board="plant", firmware_args=["--soc", "0.1"],
                 video=write_video(tmp_path / "navcam.avi"))
    try:
        tb.start(ground_first=True)
        tb.wait_for("the ground to show the hibernation", lambda: "hibernating until" in tb.log_text("ground"),
                    30.0, poll_s=0.2)
        ground_says = tb.log_text("ground")
        assert re.search(r"pirover \(66\) hibernating until solar input reaches 12 W .*battery_critical",
                         ground_says), ground_says
        events = "\n".join(tb.archived_events())
        assert "GoingSilent: hibernating until solar input reaches 12 W" in events
        assert events.index("ModeChanged: mode STANDBY -> HIBERNATE") < events.index("GoingSilent")
        # the operator's next command is told so at once, not after its 50 s timeout
        rc, out = cmd(tb, "CMD_PING", "key=7", timeout_s=50.0)
        assert rc == 1 and "UNREACHABLE" in out and "hibernating until" in out, out
        assert tb.procs["flight"].poll() is None  # hibernating, not gone
    finally:
        tb.close()
