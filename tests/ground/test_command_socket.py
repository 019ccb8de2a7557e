"""The ground's command socket: authorised local clients only, every request checked."""

from __future__ import annotations

import json
import math
import stat
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight.link.auth import write_key_file
from ground.client import CommandError, GroundClient
from ground.server import GroundServer, load_config, read_token
from tests.link.fixtures import DICT, SECRET

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("sock")
    (tmp / "dict.json").write_text(json.dumps(DICT))
    write_key_file(tmp / "66.key", SECRET)
    (tmp / "ground.toml").write_text(
        'archive = "ground.db"\nrelay = "ipc://' + str(tmp / "relay.sock") + '"\n'
        'pub = "ipc://' + str(tmp / "pub.sock") + '"\ncommands = "ipc://' + str(tmp / "cmd" / "c.sock") + '"\n'
        'state_dir = "state"\n[[vehicle]]\nscid = 66\ndictionary = "dict.json"\nkey_file = "66.key"\n'
    )
    srv = GroundServer(load_config(tmp / "ground.toml"))
    yield tmp, srv
    srv.close()


def ask(srv: GroundServer, req: Any) -> dict[str, Any]:
    return srv.handle(msgpack.packb(req, use_bin_type=True))


def test_token_file_and_socket_directory_are_private(server) -> None:
    tmp, srv = server
    token_file = tmp / "state" / "command.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp / "cmd").stat().st_mode) == 0o700
    assert read_token(tmp / "state") == srv.token and len(srv.token) == 64


def test_requests_without_the_token_are_refused(server) -> None:
    _, srv = server
    for req in ({"op": "send", "scid": 66, "name": "NAV_STOP", "args": {}},
                {"op": "send", "scid": 66, "name": "NAV_STOP", "args": {}, "token": "0" * 64},
                {"op": "status", "id": 1, "token": 12}):
        answer = ask(srv, req)
        assert answer["ok"] is False and "not authorised" in answer["error"]
    assert not srv.commander.commands  # nothing was signed


def test_status_with_infinite_id_and_other_bad_requests_get_an_answer(server) -> None:
    _, srv = server
    tok = srv.token
    bad = [
        {"op": "status", "id": math.inf, "token": tok},
        {"op": "status", "id": 2**64 - 1, "token": tok},
        {"op": "status", "id": [1], "token": tok},
        {"op": "send", "scid": math.inf, "name": "NAV_STOP", "token": tok},
        {"op": "send", "scid": 66, "name": "NAV_GOTO", "args": {"x_m": math.nan, "y_m": 0}, "token": tok},
        {"op": "send", "scid": 66, "name": "NAV_STOP", "args": [], "token": tok},
        {"op": "send", "scid": 66, "name": "NAV_STOP", "timeout_s": -1, "token": tok},
        {"op": "send", "scid": 66, "name": "NO_SUCH", "token": tok},
        {"op": ["send"], "token": tok},
        [1, 2, 3],
    ]
    for req in bad:
        answer = ask(srv, req)
        assert answer["ok"] is False and answer["error"], req
    assert srv.handle(b"\xc1 garbage")["ok"] is False
    assert srv.request_errors["internal_error"] == 0
    good = ask(srv, {"op": "send", "scid": 66, "name": "NAV_STOP", "args": {}, "token": tok})
    assert good["ok"] and ask(srv, {"op": "status", "id": good["command"]["id"], "token": tok})["ok"]


_any = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(req=st.fixed_dictionaries({}, optional={"op": st.sampled_from(["send", "status"]) | _any, "id": _any,
                                               "scid": _any, "name": _any, "args": _any, "timeout_s": _any})
       | _any, with_token=st.booleans(), raw=st.binary(max_size=64))
def test_any_request_gets_an_answer(server, req: Any, with_token: bool, raw: bytes) -> None:
    _, srv = server
    if with_token and isinstance(req, dict):
        req = {**req, "token": srv.token}
    assert isinstance(ask(srv, req)["ok"], bool)
    assert isinstance(srv.handle(raw)["ok"], bool)
    assert srv.request_errors["internal_error"] == 0


def test_real_socket_round_trip_with_and_without_token(server) -> None:
    tmp, srv = server
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(srv.command_endpoint)
    try:
        for req, ok in (({"op": "status", "id": math.inf}, False),
                        ({"op": "status", "id": math.inf, "token": srv.token}, False)):
            sock.send(msgpack.packb(req))
            for _ in range(100):  # serve by hand: the server loop is one call per request
                srv._serve_request()
                if sock.poll(20):
                    break
            assert msgpack.unpackb(sock.recv())["ok"] is ok
    finally:
        sock.close()
    client = GroundClient(command_endpoint=srv.command_endpoint, token="wrong")
    import threading

    t = threading.Thread(target=lambda: [srv._serve_request() or srv.rep.poll(20) for _ in range(100)])
    t.start()
    with pytest.raises(CommandError, match="not authorised"):
        client.command_status(1)
    t.join()
    client.close()


def test_put_file_queues_a_file_for_the_vehicle_by_cfdp(server) -> None:
    tmp, srv = server
    bad = [{"name": "../x", "data": b"1"}, {"name": "/etc/x", "data": b"1"}, {"name": "x", "data": "text"},
           {"name": "x", "data": b"1", "scid": 99}]
    for extra in bad:
        req = {"op": "put_file", "scid": 66, "token": srv.token} | extra
        assert ask(srv, req)["ok"] is False
    req = {"op": "put_file", "scid": 66, "name": "plans/drive.seq", "data": b"NAV_STOP\n", "token": srv.token}
    reply = ask(srv, req)
    assert reply["ok"], reply
    assert reply["command"]["name"] == "uplink/plans/drive.seq" and reply["command"]["queued"] == 1
    entity = srv.files.entities[66]
    [put] = list(entity.queue)
    assert (entity.root / put.source).read_bytes() == b"NAV_STOP\n"
    assert (tmp / "state" / "cfdp-66.json").exists()  # the queue survives a ground restart


def test_put_file_through_the_real_socket_with_the_client(server, tmp_path) -> None:
    tmp, srv = server
    src = tmp_path / "table.bin"
    src.write_bytes(bytes(range(256)) * 8)
    import threading

    t = threading.Thread(target=lambda: [srv._serve_request() or srv.rep.poll(20) for _ in range(100)])
    t.start()
    with GroundClient(command_endpoint=srv.command_endpoint, token=srv.token) as client:
        got = client.put_file(66, src, "tables/t.bin")
    t.join()
    assert got["bytes"] == 2048 and got["name"] == "uplink/tables/t.bin"
    assert any(p.name == "uplink/tables/t.bin" for p in srv.files.entities[66].queue)
