"""The mission as three processes on real time (relay, ground, flight) over 127.0.0.1.

Waits are bounded polls on what the processes wrote (the archive), never sleeps for a fixed time
to pass. The flight process is killed with SIGKILL mid-pass and restarted over the same state:
the archive must hold every stored packet once.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections import defaultdict
from importlib import resources
from pathlib import Path

import pytest

from flight.link.recorder import Recorder
from flight.persist import read_checked_json
from flight.system import BOOT_FORMAT
from magpie.mission import RealtimeMission, run_realtime_mission

pytestmark = pytest.mark.timeout(120)

CONFIG = Path(str(resources.files("magpie.configs").joinpath("core_mission.toml")))


def archived(out: Path) -> list[tuple[int, int, float]]:
    if not (out / "archive.db").exists():
        return []
    with sqlite3.connect(f"file:{out / 'archive.db'}?mode=ro", uri=True) as db:
        try:
            return db.execute("SELECT apid, seq, time FROM packets").fetchall()
        except sqlite3.OperationalError:  # the ground has not created its tables yet
            return []


def wait_archived(out: Path, count: int, proc, timeout_s: float = 30.0) -> bool:
    """Poll (bounded) the archive the ground process writes until it holds ``count`` packets."""
    deadline = time.monotonic() + timeout_s
    while len(archived(out)) < count and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)  # real processes on real time: a short poll, not a wait for time to pass
    return len(archived(out)) >= count


def check_once(out: Path) -> None:
    rows = archived(out)
    assert rows and len(rows) == len({(a, s) for a, s, _ in rows}), "a packet was archived twice"
    rec = Recorder(out / "state" / "recorder.db")
    try:
        last = rec.last_seqs()
        by_apid: dict[int, set[int]] = defaultdict(set)
        for a, s, _ in rows:
            by_apid[a].add(s)
        for apid, last_seq in last.items():
            missing = [s for s in range(last_seq + 1) if s not in by_apid[apid]]
            # what the ground lacks is still on board (the tail after the flight stopped)
            assert all(rec.contains(apid, s) for s in missing), (hex(apid), missing)
            assert max(by_apid[apid], default=-1) <= last_seq
    finally:
        rec.close()


def test_realtime_mission_runs_and_stops_by_itself(tmp_path: Path) -> None:
    result = run_realtime_mission(CONFIG, tmp_path, duration_s=3.0, preset="ideal", settle_s=6.0)
    assert result.returncodes == {"relay": 0, "ground": 0, "flight": 0}, result.lines()
    # how many packets a 3 s run makes depends on how fast the processes start on this machine;
    # that some arrived, none twice, and that whatever is missing is still on board does not
    assert sum(result.archived.values()) >= 1 and result.duplicates_in_archive == 0
    check_once(tmp_path)
    assert "flight: stopped" in (tmp_path / "flight.log").read_text()


def test_flight_killed_mid_pass_then_restarted(tmp_path: Path) -> None:
    m = RealtimeMission(CONFIG, tmp_path, preset="ideal")
    try:
        m.start_link(15.0)
        first = m.start_flight(12.0)
        assert wait_archived(tmp_path, 4, first), (tmp_path / "flight.log").read_text()
        os.kill(first.pid, signal.SIGKILL)
        assert first.wait(10) == -signal.SIGKILL
        before = len(archived(tmp_path))
        second = m.start_flight(4.0)
        assert second.wait(30) == 0, (tmp_path / "flight.log").read_text()
        codes = m.wait(30.0)
        assert codes["relay"] == 0 and codes["ground"] == 0
    finally:
        m.terminate()
    assert len(archived(tmp_path)) > before
    check_once(tmp_path)
    assert read_checked_json(tmp_path / "state" / "boot.json", BOOT_FORMAT)["count"] == 2


def test_ground_killed_mid_pass_then_restarted(tmp_path: Path) -> None:
    m = RealtimeMission(CONFIG, tmp_path, preset="ideal")
    try:
        m.start_link(16.0)
        flight = m.start_flight(10.0)
        assert wait_archived(tmp_path, 4, flight), (tmp_path / "ground.log").read_text()
        ground = m.procs["ground"]
        os.kill(ground.pid, signal.SIGKILL)
        assert ground.wait(10) == -signal.SIGKILL
        before = len(archived(tmp_path))
        m.start_ground(10.0)
        assert flight.wait(30) == 0, (tmp_path / "flight.log").read_text()
        codes = m.wait(30.0)
        assert codes["relay"] == 0 and codes["ground"] == 0, codes
    finally:
        m.terminate()
    assert len(archived(tmp_path)) > before
    check_once(tmp_path)
