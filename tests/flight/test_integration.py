"""One simulated hour at 50/10/1 Hz in lockstep, and byte-identical repeat runs."""

import json
from importlib import resources
from pathlib import Path

import pytest

from flight.clock import SimClock
from flight.config import VehicleConfig, load
from flight.outbound import EventRecord, JsonLinesSink, TlmPacket
from flight.vehicle import Vehicle

CORE = Path(str(resources.files("magpie.configs").joinpath("core.toml")))


@pytest.mark.timeout(120)
def test_one_simulated_hour_in_lockstep(tmp_path):
    cfg = load(CORE)
    cfg = VehicleConfig(**{**cfg.__dict__, "state_dir": tmp_path / "state"})
    v = Vehicle(cfg, SimClock())
    (tmp_path / "state" / "sequences").mkdir()
    (tmp_path / "state" / "sequences" / "hour.seq").write_text(
        "+60 CMD_PING key=1\n+600 PRM_SET name=t3.gain value=0.5\n@1800 CMD_PING key=2\n+10 PRM_SAVE\n")
    items = []
    v.add_sink(type("S", (), {"write": lambda self, i: items.extend(i), "close": lambda self: None})())
    v.dispatcher.submit("SEQ_RUN", {"file": "hour.seq"})
    v.run(until_s=3600)  # how fast is bench_executive's to say, not this test's
    v.shutdown()
    groups = {g.name: g for g in v.executive.groups}
    assert (groups["control"].cycles, groups["nav"].cycles, groups["hk"].cycles) == (180_000, 36_000, 3_600)
    assert all(g.slips == 0 for g in groups.values())
    packets = [i for i in items if isinstance(i, TlmPacket)]
    assert len(packets) == 3600
    names = v.fw.tlm.id_to_name()
    last = {names[cid]: val for cid, val in packets[-1].samples}
    assert last["t0.count"] == 180_000 - 50 + 1  # sampled at t=3599 s, after its 50 Hz step
    assert last["sys.uptime_s"] == 3599.0
    events = [i for i in items if isinstance(i, EventRecord)]
    names_seen = [e.name for e in events]
    assert names_seen[:2] == ["Boot", "ExecStarted"] or "Boot" in names_seen
    assert [e.text for e in events if e.name == "Pong"] == ["ping 1", "ping 2"]
    pong_times = [e.time_ns / 1e9 for e in events if e.name == "Pong"]
    assert 60 <= pong_times[0] < 61 and 1800 <= pong_times[1] < 1801
    assert "SeqCompleted" in names_seen and "ParamsSaved" in names_seen
    assert not [e for e in events if e.severity <= 1]  # nothing FATAL or WARNING_HI
    assert v.fw.params.get("t3.gain") == 0.5
    saved = json.loads((tmp_path / "state" / "params.json").read_text())
    assert saved["body"]["values"] == {"t3.gain": 0.5}
    assert v.fw.outbound.total_dropped == 0


def run_once(out: Path) -> bytes:
    cfg = load(CORE)
    cfg = VehicleConfig(**{**cfg.__dict__, "state_dir": out / "state"})
    v = Vehicle(cfg, SimClock(start_s=1000.0))
    v.add_sink(JsonLinesSink(str(out / "tlm.jsonl"), v.fw.tlm.id_to_name()))
    v.dispatcher.submit("CMD_PING", {"key": 3})
    v.dispatcher.submit("T1_RESET", {"value": 99})
    v.run(until_s=1000 + 120)
    v.shutdown()
    return (out / "tlm.jsonl").read_bytes()


@pytest.mark.timeout(60)
def test_same_configuration_gives_byte_identical_output(tmp_path):
    a = run_once(tmp_path / "a")
    b = run_once(tmp_path / "b")
    assert len(a) > 10_000
    assert a == b
