"""The spectrometer payload: its science, its commands and its products, as the host drives it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from magpie_spectrometer import Spectrometer, decode_product, encode_product, reflectance

from flight.payload import protocol
from flight.payload.child import Channel, run_step, serve

METHODS = {cdef.name: attr for attr, cdef in Spectrometer.declared_commands()}


def make(tmp_path: Path, grants: tuple[str, ...] = (), **options) -> Spectrometer:
    p = Spectrometer()
    p.name = "spec"
    p.options = {**Spectrometer.OPTIONS, **options}
    p.product_dir = tmp_path
    p.grants = frozenset(grants)
    p.setup()
    return p


def step(p: Spectrometer, n: int, cmds=(), ch=None) -> dict:
    return run_step(p, METHODS, {"n": n, "time_ns": n * 10**9, "ch": ch or {}, "cmds": list(cmds), "prm": {}})


def test_readings_become_products_with_the_pyroxene_band(tmp_path):
    p = make(tmp_path, readings_per_product=5)
    replies = [step(p, n) for n in range(1, 11)]
    files = [f for r in replies for f, _meta in r["prod"]]
    assert files == ["spectrum-00001.bin", "spectrum-00002.bin"]
    head, rows = decode_product((tmp_path / files[0]).read_bytes())
    assert head["readings"] == len(rows) == 5 and head["times"] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(len(r) == 128 for r in rows)
    assert 0.08 < replies[-1]["tlm"]["band_depth"] < 0.25  # the 950 nm absorption is seen
    assert reflectance(950.0) < 0.9 * 0.5 * (reflectance(750.0) + reflectance(995.0))


def test_same_seed_same_spectra(tmp_path):
    a, b = make(tmp_path / "a", seed=3), make(tmp_path / "b", seed=3)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for n in range(1, 11):
        assert step(a, n)["tlm"] == step(b, n)["tlm"]
    assert (tmp_path / "a" / "spectrum-00001.bin").read_bytes() == (tmp_path / "b" / "spectrum-00001.bin").read_bytes()


def test_commands_take_dark_and_flush(tmp_path):
    p = make(tmp_path, readings_per_product=100)
    r = step(p, 1, cmds=[[1, "DARK", {}], [2, "TAKE", {"count": 3}], [3, "FLUSH", {}]])
    assert [x[:2] for x in r["res"]] == [[1, True], [2, True], [3, False]]  # nothing held yet to flush
    assert r["res"][2][2] == "no readings held"
    assert [e[0] for e in r["ev"]] == ["DarkTaken"] and 35 < r["tlm"]["dark_counts"] < 45
    for n in range(2, 5):
        r = step(p, n)
    assert r["tlm"]["readings"] == 4 + 3  # one a step on the cadence, plus the three taken
    r = step(p, 5, cmds=[[4, "FLUSH", {}]])
    assert r["res"] == [[4, True, ""]] and len(r["prod"]) == 1


def test_low_battery_pauses_readings(tmp_path):
    p = make(tmp_path, grants=("power.soc",), min_soc=0.3)
    r = step(p, 1, ch={"power.soc": 0.25})
    assert r["tlm"] == {"paused": True} and [e[0] for e in r["ev"]] == ["LowPowerPause"]
    r = step(p, 2, cmds=[[1, "TAKE", {"count": 1}]], ch={"power.soc": 0.25})
    assert r["res"][0][:2] == [1, False]
    r = step(p, 3, ch={"power.soc": 0.8})
    assert r["tlm"]["readings"] == 1 and r["tlm"]["paused"] is False


def test_it_speaks_the_host_protocol_over_a_socket(tmp_path):
    host, child = socket.socketpair()
    import threading

    t = threading.Thread(target=serve, args=(Channel(child), Spectrometer), daemon=True)
    t.start()
    reader = protocol.FrameReader()

    def recv() -> dict:
        while True:
            msgs = reader.feed(host.recv(65536))
            if msgs:
                return msgs[0]

    assert recv()["t"] == "hello"
    host.sendall(protocol.encode({"t": "init", "name": "spec", "product_dir": str(tmp_path), "options": {},
                                  "params": {"integration_ms": 100.0}, "grants": []}))
    assert recv()["t"] == "ready"
    host.sendall(protocol.encode({"t": "step", "n": 1, "time_ns": 0, "cmds": []}))
    done = recv()
    assert done["t"] == "done" and done["n"] == 1 and done["tlm"]["readings"] == 1 and done["error"] is None
    host.sendall(protocol.encode({"t": "stop"}))
    t.join(timeout=5)
    assert not t.is_alive()
    host.close()
    child.close()


@given(st.integers(1, 16), st.lists(st.integers(0, 65535), max_size=64))
def test_product_codec_round_trips(bins, flat):
    rows = [flat[i:i + bins] for i in range(0, len(flat) - len(flat) % bins, bins)]
    head, back = decode_product(encode_product({"bins": bins, "times": []}, rows))
    assert back == rows and head["readings"] == len(rows)


@given(st.binary(max_size=100))
def test_garbage_is_not_a_product(data):
    with pytest.raises(ValueError):
        decode_product(b'{"format":"magpie-spectrum/1","bins":4,"readings":2}\n' + data[:15])
    try:
        decode_product(data)
    except ValueError:
        pass
