"""The web ground's sequence path checks with the vehicle's parser and refuses what it cannot run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ground.server import GroundConfig, VehicleConfig
from ground.web.app import WebGround
from ground.web.serve import WebThread
from tests.link.fixtures import DICT
from tests.web.test_web_api import call

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def web(tmp_path: Path):
    (tmp_path / "dict.json").write_text(json.dumps(DICT))
    w = WebThread(WebGround(GroundConfig(archive=tmp_path / "a.db",
                                         vehicles=[VehicleConfig(66, "t", tmp_path / "dict.json", None)]))).start()
    yield w
    w.stop()


def test_check_knows_the_timeline_and_the_dictionary_channels(web) -> None:
    text = ("critical\ndeadline +600 contingency rescue\n@5..20 NAV_GOTO x_m=1 y_m=2 late=abort\n"
            "+0 until power.bus_v >= 12 within 60s else goto done\ndone:\n+1 NAV_STOP\n")
    status, body = call(web.url + "/api/seq/check", {"scid": 66, "text": text})
    assert status == 200 and body["ok"], body
    kinds = [(c["line"], c["kind"], c["late"]) for c in body["commands"]]
    assert kinds == [(3, "cmd", "abort"), (4, "until", "run"), (6, "cmd", "run")]
    assert body["deadline"] == {"relative": True, "time": 600.0} and body["contingency"] == "rescue"
    assert [n for n, _ in body["onboard_only"]] == [1, 2, 3, 4]
    status, body = call(web.url + "/api/seq/check", {"scid": 66, "text": "+0 until drill.depth_m > 2 within 5\n"
                                                                         "@9..3 NAV_STOP\n"})
    assert status == 200 and not body["ok"]
    assert body["errors"] == [[1, "unknown channel drill.depth_m"], [2, "window '@9..3' ends before it starts"]]


def test_run_refuses_what_only_the_vehicle_can_run_with_the_lines(web) -> None:
    text = "+0 NAV_STOP\n+0 until power.bus_v >= 12 within 60s else goto done\ndone:\n+1..5 NAV_STOP\n"
    status, body = call(web.url + "/api/seq/run", {"scid": 66, "text": text})
    assert status == 400 and not body["ok"]
    assert body["errors"] == [[2, "a wait (until power.bus_v >= 12)"], [4, "a window"]]
    assert body["error"].startswith("runs on board only (SEQ_RUN)") and "line 2: a wait" in body["error"]
    status, body = call(web.url + "/api/seq/run", {"scid": 66, "text": "+0 until nav.x > 1 within 5\n"})
    assert status == 400 and "unknown channel nav.x" in body["error"]
