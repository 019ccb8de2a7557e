"""The reference firmware as a process (``python -m hil.fwhost`` / ``magpie hil firmware``) and
its Pico board, which reports only what the reference board measures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from hal.mcu import protocol as p
from hil.fwhost import FirmwareHost
from hil.mcu import McuSession
from hil.rig import McuRig
from hil.trace import WireTrace
from magpie.cli import main

pytestmark = pytest.mark.timeout(60)


def test_the_pico_board_says_what_it_measures_and_reports_zeros_elsewhere(tmp_path: Path) -> None:
    host = FirmwareHost(path=str(tmp_path / "ttyPICO"), board="pico")
    try:
        with McuSession(McuRig(host.path), 115200, WireTrace()) as session:
            caps = p.Capability(session.driver.version.capabilities)  # type: ignore[union-attr]
            assert caps == p.Capability.ENCODERS | p.Capability.THERMAL
            session.driver.set_wheels(0.2, 0.2)
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and (not session.reports or session.reports[-1][1].left_ticks <= 0):
                time.sleep(0.02)
            report = session.reports[-1][1]
            session.driver.stop()
        assert report.left_ticks > 0  # the wheels turn and the encoders count
        power = (report.bus_v, report.soc, report.solar_w, report.current_a)
        assert power == (0.0, 0.0, 0.0, 0.0) and report.accel_mps2 == (0.0, 0.0, 0.0)
        assert report.temp_board_c > 0.0
        assert host.errors == 0
    finally:
        host.close()


def test_the_firmware_process_serves_a_stable_path_and_stops_on_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "magpie-mcu"
    proc = subprocess.Popen([sys.executable, "-m", "hil.fwhost", "--link", str(link), "--board", "plant",
                             "--soc", "0.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"firmware: plant board on {link} -> /dev/pts/"), first
        with McuSession(McuRig(str(link)), 115200, WireTrace()) as session:
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and not session.reports:
                time.sleep(0.02)
            assert 0.45 < session.reports[-1][1].soc < 0.55
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0 and "0 errors" in out
    assert not link.exists()  # the port is gone with the board


def test_bad_arguments_are_one_line_and_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hil", "firmware", "--link", str(tmp_path / "x"), "--soc", "2"]) == 2
    assert main(["hil", "firmware", "--link", str(tmp_path / "no" / "such" / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "outside 0..1" in err[0] and "no directory" in err[1]
