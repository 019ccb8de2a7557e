"""Raspberry Pi deployment: the example configuration, sd_notify, the unit file and udev rule."""

from __future__ import annotations

import configparser
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from flight.config import ConfigError, load
from hil.sdnotify import Notifier
from magpie.flightrun import check_config, prepare

pytestmark = pytest.mark.timeout(60)

DEPLOY = Path(__file__).resolve().parents[2] / "hil" / "deploy"


def test_example_rover_configuration_validates() -> None:
    config = prepare(DEPLOY / "rover.toml", None, [])
    check_config(config)
    assert config.devices["mcu"].startswith("mcu+serial:///dev/magpie-mcu?baud=921600")
    assert config.devices["camera"].startswith("camera+opencv://0")
    assert config.devices["radio"].startswith("radio+zmq://tcp://")
    # the bench profile: no power or IMU component on a board that measures neither
    assert {c.type for c in config.components} == {"drive", "link", "thermal", "nav_odometry", "imaging",
                                                   "comm", "fault"}


def test_the_stereo_variant_the_comments_describe_validates(tmp_path: Path) -> None:
    text = (DEPLOY / "rover.toml").read_text()
    stereo = "camera+opencv-stereo://0,2?baseline=0.12&width=640&height=480&fps=15&name=navcam"
    assert stereo in text and 'devices = { camera = "stereo" }' in text
    variant = tmp_path / "rover-stereo.toml"
    variant.write_text(text.replace('type = "nav_odometry"', 'type = "nav"\ndevices = { camera = "stereo" }')
                       .replace("[devices]\n", f'[devices]\nstereo = "{stereo}"\n'))
    config = prepare(variant, None, [])
    check_config(config)
    assert {c.type for c in config.components} >= {"nav", "imaging"}
    broken = tmp_path / "rover-stereo-broken.toml"
    broken.write_text(variant.read_text().replace("baseline=0.12&", ""))
    with pytest.raises(ConfigError, match="devices.stereo: .*baseline"):
        check_config(prepare(broken, None, []))


@pytest.mark.parametrize(("old", "new", "key"), [
    ("baud=921600", "baudrate=921600", "devices.mcu: unknown option 'baudrate'"),
    ("?scid=66", "?scidd=66", "devices.radio: unknown option 'scidd'"),
    ("width=1280", "width=wide", "devices.camera: bad value 'wide' for option 'width'"),
    ('type = "thermal"', 'type = "thermal9"', "components.thermal.type: unknown component type 'thermal9'"),
    ("hz = 50", "hz = 5000", "rate_groups[0].hz"),
    ('devices = { drive = "mcu" }', 'devices = { drive = "mcu2" }', "components.drive.devices.drive"),
    ("key_id = 1", "key_idx = 1", "unknown option(s) key_idx"),
    ('members = ["drive", "nav"]', 'members = ["drive", "nav", "imu"]', "rate_groups[0].members[2]"),
])
def test_a_broken_copy_names_the_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    text = (DEPLOY / "rover.toml").read_text()
    assert old in text
    broken = tmp_path / "rover.toml"
    broken.write_text(text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        check_config(load(broken))
    assert key in str(info.value)
    proc = subprocess.run([sys.executable, "-m", "magpie.cli", "flight", "--config", str(broken),
                           "--check"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and key in proc.stderr


def test_sd_notify_speaks_the_datagram_protocol(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(2.0)
        now = [100.0]
        n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000",
                      "WATCHDOG_PID": str(os.getpid())}, clock=lambda: now[0])
        assert n.enabled and n.watchdog_s == 2.0
        assert n.ready("flying")
        assert sock.recv(256).decode().split("\n") == ["READY=1", f"MAINPID={os.getpid()}",
                                                       "STATUS=flying"]
        assert n.watchdog() and sock.recv(64) == b"WATCHDOG=1"
        now[0] += 0.5
        assert not n.watchdog()  # rate-limited to twice per interval
        now[0] += 0.6
        assert n.watchdog() and sock.recv(64) == b"WATCHDOG=1"
        assert n.stopping() and sock.recv(64) == b"STOPPING=1"
        n.close()


def test_sd_notify_abstract_socket_and_absence() -> None:
    name = f"magpie-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.status("ok") and sock.recv(64) == b"STATUS=ok"
        assert not n.watchdog()  # no WATCHDOG_USEC: no pings
        n.close()
    assert not Notifier({}).ready()  # outside systemd: a no-op
    other = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": "1000000",
                      "WATCHDOG_PID": "1"})
    assert other.watchdog_s is None  # the watchdog is another process's
    assert not other.ready() and other.failures == 1  # counted, never raised
    other.close()


def test_flight_on_the_example_config_notifies_systemd(tmp_path: Path) -> None:
    """The example rover flown for real (MCU emulator on a pty, a video file for the camera, a
    ZeroMQ radio), under a NOTIFY_SOCKET as systemd would give it."""
    import cv2
    import numpy as np

    from flight.link.auth import write_key_file

    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), i * 40, np.uint8))
    writer.release()
    (tmp_path / "keys").mkdir()
    write_key_file(tmp_path / "keys" / "uplink.key")
    notify = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(notify)
        sock.settimeout(20.0)
        env = {**os.environ, "NOTIFY_SOCKET": notify, "WATCHDOG_USEC": "400000"}
        env.pop("WATCHDOG_PID", None)
        proc = subprocess.Popen(
            [sys.executable, "-m", "magpie.cli", "flight", "--config", str(DEPLOY / "rover.toml"),
             "--state-dir", str(tmp_path / "state"), "--duration", "1.5",
             "--dict-out", str(tmp_path / "dictionary.json"),
             "--device", "mcu=mcu+pty://?stream_hz=50",
             "--device", f"camera=camera+opencv://{video}",
             "--device", "radio=radio+zmq://tcp://127.0.0.1:1?scid=66",
             "--device", "watchdog=watchdog+null://?timeout=10"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        got: list[str] = []
        try:
            while not any(m.startswith("STOPPING=1") for m in got):
                got.append(sock.recv(512).decode())
        finally:
            out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert got[0].startswith("READY=1\nMAINPID=")
    assert got.count("WATCHDOG=1") >= 2  # pinged from the main loop while the executive ran
    assert (tmp_path / "dictionary.json").read_text().startswith("{")


def test_unit_file_and_udev_rule() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(DEPLOY / "magpie-flight.service")
    svc = unit["Service"]
    assert svc["Type"] == "notify" and svc["Restart"] == "on-failure" and svc["WatchdogSec"]
    assert svc["User"] == "magpie" and set(svc["SupplementaryGroups"].split()) == {"dialout", "video"}
    assert svc["CPUSchedulingPolicy"] in ("fifo", "rr") and int(svc["CPUSchedulingPriority"]) < 50
    assert "--config /etc/magpie/rover.toml" in svc["ExecStart"]
    assert svc["ExecStartPre"].endswith("--check")
    rules = (DEPLOY / "99-magpie.rules").read_text()
    assert 'SYMLINK+="magpie-mcu"' in rules and 'ATTRS{idVendor}=="2e8a"' in rules
    assert "/dev/magpie-mcu" in (DEPLOY / "rover.toml").read_text()
    guide = (DEPLOY / "INSTALL.md").read_text()
    for step in ("magpie hil check", "magpie relay", "magpie ground", "magpie tlm",
                 "systemctl enable --now magpie-flight", "usermod", "99-magpie.rules"):
        assert step in guide, step
