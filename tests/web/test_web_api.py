"""The web ground's JSON API and websocket against a real ground on 127.0.0.1 (no browser)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import websockets
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from ground.server import load_config
from ground.web.app import LinkInfo, WebGround, decimate
from ground.web.serve import WebThread

pytestmark = pytest.mark.timeout(60)

def _form_checker() -> WebGround:
    """A WebGround over the test dictionary, for checking forms (nothing is started)."""
    import tempfile

    from ground.server import GroundConfig, VehicleConfig
    from tests.link.fixtures import DICT

    d = Path(tempfile.mkdtemp(prefix="magpie-web-form-"))
    (d / "dict.json").write_text(json.dumps(DICT))
    return WebGround(GroundConfig(archive=d / "a.db", vehicles=[VehicleConfig(66, "t", d / "dict.json", None)]))


FORM_CHECKER = _form_checker()


def call(url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def web(live_ground):
    tmp, ground = live_ground
    (tmp / "link.json").write_text(json.dumps({"light_time_s": 0.02, "windows": None}))
    w = WebThread(WebGround(load_config(tmp / "ground.toml"), link=LinkInfo.load(tmp / "link.json"))).start()
    yield w, tmp
    w.stop()


def wait_for(pred, timeout_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        out = pred()
        if out:
            return out
        time.sleep(0.1)  # polling real processes
    raise AssertionError(f"no {what} within {timeout_s} s")


def test_api_serves_page_history_and_checks_commands(web) -> None:
    w, _ = web
    with urllib.request.urlopen(w.url + "/", timeout=10) as resp:
        assert b"Magpie ground" in resp.read()
    with urllib.request.urlopen(w.url + "/static/app.js", timeout=10) as resp:
        assert b"connect()" in resp.read()
    status, cfg = call(w.url + "/api/config")
    assert status == 200 and cfg["vehicles"][0]["scid"] == 66 and cfg["may_command"]
    wait_for(lambda: call(w.url + "/api/tlm/66/power.bus_v")[1]["points"], what="archived samples")
    status, body = call(w.url + "/api/tlm/66/no.such_channel")
    assert status == 404 and "no channel 'no.such_channel'" in body["error"]
    status, body = call(w.url + "/api/tlm/99/power.bus_v")
    assert status == 404 and "no spacecraft 99" in body["error"]
    status, body = call(w.url + "/api/tlm/66/power.bus_v?since=soon")
    assert status == 400 and "not a number" in body["error"]
    status, body = call(w.url + "/api/command", b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    status, body = call(w.url + "/api/command", {"scid": 66, "name": "NAV_GOTO", "args": {"x_m": 500, "y_m": 0}})
    assert status == 400 and "above the maximum" in body["error"]
    status, body = call(w.url + "/api/command", {"scid": 66, "name": "NAV_JUMP", "args": {}})
    assert status == 400 and "NAV_JUMP" in body["error"]
    status, body = call(w.url + "/api/seq/check", {"scid": 66, "text": "+1 NAV_GOTO x_m=1 y_m=2\n+2 NAV_FLY\n"})
    assert status == 200 and not body["ok"] and body["errors"][0][0] == 2
    status, body = call(w.url + "/api/seq/check", {"scid": 66, "text": "+1 NAV_STOP\n"})
    assert status == 200 and body["ok"] and body["commands"][0]["name"] == "NAV_STOP"
    status, body = call(w.url + "/api/events/66?severity=LOUD")
    assert status == 400 and "LOUD" in body["error"]
    status, body = call(w.url + "/nowhere")
    assert status == 404 and "nothing at /nowhere" in body["error"]


def test_websocket_streams_samples_and_command_stages(web) -> None:
    w, _ = web

    async def scenario() -> dict[str, Any]:
        seen: dict[str, Any] = {"tlm": set(), "stages": [], "status": None}
        async with websockets.connect(w.url.replace("http", "ws") + "/ws") as ws:
            sent = False
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                items = msg.get("items", []) if msg.get("t") == "batch" else [msg]
                for s in msg.get("tlm", []):
                    seen["tlm"].add(s[1])
                for it in items:
                    if it["t"] == "status":
                        seen["status"] = it
                    if it["t"] == "command":
                        seen["stages"].append(it["rec"]["stage"])
                if seen["tlm"] and not sent:
                    status, body = await asyncio.to_thread(
                        call, w.url + "/api/command", {"scid": 66, "name": "NAV_GOTO", "args": {"x_m": 1, "y_m": 2}})
                    assert status == 200, body
                    sent = True
                if "COMPLETED" in seen["stages"] and seen["status"]:
                    return seen
        raise AssertionError(f"saw {seen}")

    seen = asyncio.run(scenario())
    assert {"power.bus_v", "nav.heading_deg"} <= seen["tlm"]
    assert seen["stages"][0] == "SENT" and seen["stages"][-1] == "COMPLETED"
    assert seen["status"]["link"]["one_way_s"] == pytest.approx(0.02)


def _request(host: str, headers: dict[str, str] | None = None) -> Request:
    hdrs = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "client": (host, 1234), "headers": hdrs, "method": "POST", "path": "/"})


def test_commanding_from_another_address_needs_the_token(live_ground) -> None:
    tmp, _ = live_ground
    open_web = WebGround(load_config(tmp / "ground.toml"))
    assert open_web.may_command(_request("127.0.0.1")) is None
    assert "no token" in open_web.may_command(_request("192.168.1.20"))
    guarded = WebGround(load_config(tmp / "ground.toml"), token="s3cret")
    assert "needs the token" in guarded.may_command(_request("192.168.1.20", {"X-Magpie-Token": "nope"}))
    assert guarded.may_command(_request("192.168.1.20", {"X-Magpie-Token": "s3cret"})) is None


def test_link_schedule_and_decimation() -> None:
    link = LinkInfo(light_time_s=1.28, hop_delay_s=0.1, windows={"period_s": 100.0, "up_s": 60.0}, t0_unix=1000.0)
    up = link.state(1030.0)
    assert up["in_view"] and up["pass_left_s"] == pytest.approx(30.0) and up["one_way_s"] == pytest.approx(1.38)
    down = link.state(1080.0)
    assert not down["in_view"] and down["next_pass_in_s"] == pytest.approx(20.0)
    rows = [(float(i), float(i % 17)) for i in range(10_000)]
    small = decimate(rows, 300)
    assert len(small) <= 310 and max(v for _, v in small) == 16.0 and min(v for _, v in small) == 0.0
    assert decimate(rows[:10], 300) == rows[:10]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12)


@given(body=st.one_of(_json, st.fixed_dictionaries({"scid": st.sampled_from([66, "66", None, 7]),
                                                    "name": st.sampled_from(["NAV_GOTO", "CAM_MODE", "X", 3]),
                                                    "args": _json})))
@settings(max_examples=300, deadline=None)
def test_a_command_form_is_checked_or_refused_with_a_reason(body: Any) -> None:
    try:
        scid, name, args = FORM_CHECKER.check_command(body)
    except ValueError as exc:
        assert str(exc)
        return
    assert scid == 66 and name in ("NAV_GOTO", "CAM_MODE") and isinstance(args, dict)


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_a_link_description_loads_or_says_why(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("link") / "link.json"
    path.write_bytes(data)
    try:
        info = LinkInfo.load(path)
    except ValueError as exc:
        assert "link description" in str(exc)
        return
    state = info.state(1000.0)  # what loaded is usable: the status loop never fails on it
    assert state["in_view"] in (True, False, None)


@given(st.dictionaries(st.sampled_from(["light_time_s", "hop_delay_s", "windows", "t0_unix", "landmarks", "x"]), _json,
                       max_size=5))
@settings(max_examples=300, deadline=None)
def test_a_link_description_of_any_shape(tmp_path_factory, doc: Any) -> None:
    path = tmp_path_factory.mktemp("link") / "link.json"
    path.write_text(json.dumps(doc))
    try:
        info = LinkInfo.load(path)
    except ValueError as exc:
        assert "link description" in str(exc)
        return
    assert info.state(1000.0)["in_view"] in (True, False, None)


def test_web_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from magpie.cli import main

    assert main(["web", "--config", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("magpie web: ground config")
    (tmp_path / "link.json").write_text("{not json")
    (tmp_path / "g.toml").write_text('archive = "a.db"\n')
    assert main(["web", "--config", str(tmp_path / "g.toml"), "--link", str(tmp_path / "link.json")]) == 2
    assert "link description" in capsys.readouterr().err


def test_landmarks_load_or_are_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "link.json"
    path.write_text(json.dumps({"landmarks": [{"name": "change4", "kind": "lander", "x": 30, "y": 30.5}]}))
    assert LinkInfo.load(path).landmarks == [{"name": "change4", "kind": "lander", "x": 30.0, "y": 30.5}]
    for bad, why in (({"landmarks": {"a": 1}}, "landmarks must be a list"),
                     ({"landmarks": [{"x": 1, "y": 2}]}, "needs a name"),
                     ({"landmarks": [{"name": "l", "x": "nan", "y": 0}]}, "must be finite")):
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=why):
            LinkInfo.load(path)
