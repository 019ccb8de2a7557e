"""A whole scenario on the real clock: ``magpie sim --realtime --scenario change4-farside``.

The world process holds the site (lander and rover on one terrain, each with its own MCU
emulator on a pty, camera server and watchdog FIFO), each vehicle has its own flight process,
one relay carries both through the scenario's link (one transponder) to one ground, and the web
ground serves both. The test checks, through the ground alone: both vehicles' telemetry in the
archive, a command to each reaching COMPLETED, both scenario plans started by the launcher at
their time, the web ground listing both vehicles, and a clean stop of every process. It asserts
nothing about how fast anything runs; every wait is bounded.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path

import pytest

from ground.client import GroundClient
from ground.server import read_token
from magpie.sitlrun import LiveMission, free_port

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def until(what: str, check, timeout_s: float = 60.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.2)  # polling real processes


def query(db: Path, sql: str, *params) -> list[tuple]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as con:
            return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:
        return []  # the ground has not made its tables yet


def test_a_scenario_flies_every_vehicle_as_its_own_process(tmp_path: Path) -> None:
    m = LiveMission(None, tmp_path / "run", seed=None, web_port=free_port(), mission="change4-farside", plans=True)
    assert [(c.process, c.scid) for c in m.crafts] == [("flight-change4", 70), ("flight-yutu2", 71)]
    db = m.out / "archive.db"
    try:
        m.start()
        sitl = json.loads((m.out / "sitl.json").read_text())
        assert set(sitl["vehicles"]) == {"change4", "yutu2"}
        assert "camera.navcam" in sitl["vehicles"]["yutu2"] and "camera.pancam" in sitl["vehicles"]["change4"]
        until("telemetry from both vehicles",
              lambda: {r[0] for r in query(db, "SELECT DISTINCT scid FROM packets")} >= {70, 71})
        with GroundClient(command_endpoint=f"tcp://127.0.0.1:{m.ports['commands']}",
                          token=read_token(m.out / "ground-state")) as client:
            for scid, key in ((70, 7070), (71, 7171)):
                rec = client.run_command(scid, "CMD_PING", {"key": key}, timeout_s=60)
                assert rec["stage"] == "COMPLETED", rec
        until("both plans sent", lambda: m.start_plans() is not None and len(m.plans_sent) == 2, timeout_s=30)
        started = until("both plans started on board", lambda: {r[0] for r in query(
            db, "SELECT scid FROM events WHERE name='SeqStarted'")} >= {70, 71} and query(
            db, "SELECT scid, text FROM events WHERE name='SeqStarted' ORDER BY scid"))
        assert "change4_lander.seq" in started[0][1] and "change4_rover.seq" in started[1][1]
        with urllib.request.urlopen(m.web_url + "api/config", timeout=10) as resp:
            cfg = json.loads(resp.read())
        assert {(v["scid"], v["name"]) for v in cfg["vehicles"]} == {(70, "change4"), (71, "yutu2")}
        # the map draws the lander where the scenario set it down, in the rover's navigation frame
        assert cfg["landmarks"] == [{"name": "change4", "kind": "lander", "x": 30.0, "y": 30.0}]
        assert "packets archived" in m.progress()
    finally:
        codes = m.stop()
    assert set(codes) == {"flight-change4", "flight-yutu2", "web", "ground", "relay", "world"}
    assert all(c in (0, 130) for c in codes.values()), codes
