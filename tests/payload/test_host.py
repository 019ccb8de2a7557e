"""The host's commands, energy budget, configuration checks and id allocation; the protocol codec."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.clock import SimClock
from flight.config import ConfigError, parse
from flight.payload import protocol
from flight.payload.config import parse_payloads
from flight.payload.host import PayloadHost, State
from flight.payload.ids import ID_BASE, allocate
from flight.vehicle import Vehicle
from tests.payload.conftest import BAD


def test_payload_commands_ride_on_its_steps_and_fail_when_it_is_off(payload_vehicle):
    v, rec, host = payload_vehicle({"good": {"kind": "Good"}})
    v.run(until_s=0.5)
    v.fw.cmd.submit("GOOD_ECHO", {"n": 7})
    v.run(until_s=1.0)
    assert rec.stages("GOOD_ECHO") == ["ACCEPTED", "COMPLETED"]
    assert [e.args for e in rec.events("Tick")] == [(7,)]
    v.fw.cmd.submit("PAY_OFF", {"payload": "good"})
    v.run(until_s=1.5)
    assert host.session("good").state is State.OFF and not host.session("good").power_on
    v.fw.cmd.submit("GOOD_ECHO", {"n": 8})
    v.fw.cmd.submit("PAY_OFF", {"payload": "nope"})
    v.run(until_s=2.0)
    assert rec.stages("GOOD_ECHO")[-1] == "FAILED"
    assert "no payload 'nope'" in rec.responses("PAY_OFF")[-1].reason
    v.fw.cmd.submit("PAY_ON", {"payload": "good"})
    v.run(until_s=3.0)
    assert host.session("good").state is State.RUNNING
    assert len(rec.events("PayloadStarted")) == 2


def test_energy_budget_throttles_then_switches_off_until_the_next_sol(payload_vehicle):
    # 36 W for a 0.1 Wh budget: 10 s of rail time, throttled from 9 s (90 %), a sol of 20 s
    v, rec, host = payload_vehicle({"good": {"kind": "Good", "power_w": 36.0, "energy_wh_per_sol": 0.1,
                                             "sol_s": 20.0}})
    v.run(until_s=12.0)
    assert [(e.args[1], e.time_ns // 10**8) for e in rec.events("PayloadThrottled")] == [("energy", 90)]
    off = rec.events("PayloadSwitchedOff")
    assert len(off) == 1 and "energy budget" in off[0].text and off[0].time_ns == 10 * 10**9
    assert v.fw.tlm.get("payhost.good.energy_frac") == pytest.approx(1.0)
    v.run(until_s=20.5)
    assert host.session("good").state is State.RUNNING and v.fw.tlm.get("payhost.good.energy_wh") < 0.01


def test_two_partners_get_disjoint_ids_and_apids(payload_vehicle):
    v, rec, host = payload_vehicle({"alpha": {"kind": "Good", "slot": 3}, "beta": {"kind": "Good"}})
    by_comp: dict[str, list[int]] = {}
    for kind in ("commands", "channels", "events"):
        for item in v.dictionary[kind]:
            by_comp.setdefault(item["component"] if "component" in item else item["name"].split(".")[0],
                               []).append(item.get("id", item.get("opcode")))
    assert all(ID_BASE + 0x300 <= i < ID_BASE + 0x400 for i in by_comp["alpha"])
    assert all(ID_BASE <= i < ID_BASE + 0x100 for i in by_comp["beta"])
    assert {s.alloc.apid for s in host.sessions} == {0x043, 0x040}
    assert [c["name"] for c in v.dictionary["commands"] if c["component"] in ("alpha", "beta")] == [
        "ALPHA_ECHO", "BETA_ECHO"]


@pytest.mark.parametrize("payloads, message", [
    ({"x": {"kind": "Good", "cpu_ms_per_step": "lots"}}, "payload.x.cpu_ms_per_step: expected a number"),
    ({"x": {"kind": "Good", "colour": 1}}, "payload.x.colour: unknown key"),
    ({"x": {"kind": "nothing"}}, "payload.x.kind: unknown payload kind 'nothing'"),
    ({"x": {"kind": "Good", "slot": 1}, "y": {"kind": "Good", "slot": 1}}, "slot 1 is already 'x'"),
    ({"x": {"kind": "Good", "slot": 40}}, "slot 40 is outside 0..31"),
    ({"x": {"kind": "Good", "options": {"speed": 2}}}, "payload.x.options.speed: unknown option"),
    ({"Bad-Name": {"kind": "Good"}}, "lower-case letters"),
])
def test_configuration_errors_name_the_key(payloads, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PayloadHost("payhost", kinds=BAD, payload=payloads)


def test_a_grant_of_a_missing_channel_is_refused_at_assembly(tmp_path):
    host = PayloadHost("payhost", kinds=BAD, payload={"x": {"kind": "Good", "grants": ["nav.x_m"]}})
    doc = {"vehicle": {"state_dir": str(tmp_path)},
           "rate_groups": [{"name": "g", "hz": 10, "members": ["payhost", "cmd", "sys", "tlm"]}]}
    with pytest.raises(ConfigError, match=r"payload.x.grants: no channel 'nav.x_m'"):
        Vehicle(parse(doc), SimClock(), extra_components=[host])


def test_slots_fill_the_lowest_free_in_order():
    cfgs = parse_payloads({"a": {"kind": "k"}, "b": {"kind": "k", "slot": 0}, "c": {"kind": "k"}})
    assert [(c.name, c.slot) for c in cfgs] == [("a", 1), ("b", 0), ("c", 2)]
    assert allocate("spec", 2).prefix == "SPEC_" and allocate("spec", 2).id_base == 0x8200


_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
                       | st.text(max_size=20) | st.binary(max_size=40),
                       lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                   max_size=3), max_leaves=5)


@settings(max_examples=40)
@given(st.lists(st.dictionaries(st.text(max_size=8), _values, max_size=4), min_size=1, max_size=5),
       st.lists(st.integers(1, 64), max_size=20))
def test_frames_survive_any_split(maps, cuts):
    msgs = [{**m, "t": "done"} for m in maps]
    stream = b"".join(protocol.encode(m) for m in msgs)
    reader, out, pos = protocol.FrameReader(), [], 0
    for c in cuts + [len(stream)]:
        out += reader.feed(stream[pos:pos + c])
        pos += c
    out += reader.feed(stream[pos:])
    assert out == msgs and reader.buffered == 0


@given(st.binary(max_size=200))
def test_garbage_is_a_protocol_error_or_nothing(data):
    reader = protocol.FrameReader(max_frame=1024)
    try:
        for msg in reader.feed(data):
            assert isinstance(msg, dict) and isinstance(msg["t"], str)
    except protocol.ProtocolError:
        pass


def test_oversized_frames_are_refused():
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.FrameReader(max_frame=16).feed((1000).to_bytes(4, "big") + b"x")
    with pytest.raises(protocol.ProtocolError, match="string 't'"):
        protocol.encode({"n": 1})


def test_ground_sets_a_payload_parameter_and_it_arrives_with_the_next_step(payload_vehicle):
    v, rec, host = payload_vehicle({"spec": {"kind": "spectrometer", "options": {"readings_per_product": 1000}}})
    v.run(until_s=1.0)
    bright = v.fw.tlm.get("spec.peak_counts")
    v.fw.cmd.submit("PRM_SET", {"name": "spec.integration_ms", "value": "50"})
    v.run(until_s=2.0)
    assert rec.stages("PRM_SET") == ["ACCEPTED", "COMPLETED"]
    assert v.fw.tlm.get("spec.peak_counts") < bright / 2  # a quarter of the integration time
    v.fw.cmd.submit("PRM_SET", {"name": "spec.integration_ms", "value": "0"})  # below its minimum
    v.run(until_s=2.5)
    assert rec.stages("PRM_SET")[-1] == "FAILED"


_junk = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=3), max_leaves=6)
_fields = st.fixed_dictionaries({}, optional={
    "cpu_ns": _junk, "tlm": _junk | st.dictionaries(st.sampled_from(["count", "x"]), _junk, max_size=2),
    "ev": _junk | st.lists(st.tuples(st.sampled_from(["Tick", "Nope", 3]), _junk).map(list), max_size=3),
    "prod": _junk, "res": _junk, "error": _junk})


def test_any_answer_from_a_payload_is_handled_without_raising(payload_vehicle):
    # budgets out of reach, so every answer is judged and none switches the payload off
    v, rec, host = payload_vehicle({"good": {"kind": "Good", "max_violations": 10**5, "strikes": 1000,
                                             "cpu_ms_per_step": 60000.0, "events_per_min": 100000}})
    v.run(until_s=0.3)
    s = host.session("good")

    @settings(max_examples=150, deadline=None)
    @given(_fields, st.sampled_from(["done", "hello", "ready", "cmd", "read", "weird"]))
    def check(fields, kind):
        s.awaiting = 10**6
        host._handle(s, {**fields, "t": kind, "n": 10**6})
        assert s.alive

    check()
    v.flush()  # whatever was accepted can be downlinked
    assert v.fw.tlm.get("payhost.good.violations") > 0


@settings(max_examples=60)
@given(st.dictionaries(st.text(max_size=10), _junk | st.dictionaries(st.text(max_size=10), _junk, max_size=6),
                       max_size=4))
def test_any_payload_table_parses_or_names_what_is_wrong(table):
    try:
        parse_payloads(table)
    except ValueError as exc:
        assert str(exc).startswith("payload")
