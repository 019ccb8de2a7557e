"""Fixed housekeeping layouts: generated from declarations, packed and unpacked value for value."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight import types
from flight.link.layouts import (
    HK_APIDS,
    MAX_CHANGES,
    MAX_PAYLOAD,
    Group,
    Layouts,
    apid_of,
    legal_name,
    packet_definitions,
)
from flight.link.packets import PacketError

pytestmark = pytest.mark.timeout(60)

TYPE_NAMES = sorted(n for n in types.TYPES if n != "enum")


def _channels(specs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"id": 0x100 + i, "name": f"c{i % 3}.sub.ch{i}", "type": t, "update": u}
            for i, (t, u) in enumerate(specs)]


def _value(type_name: str) -> st.SearchStrategy[Any]:
    ts = types.spec(type_name)
    if ts.kind == "int":
        return st.integers(int(ts.lo), int(ts.hi))  # type: ignore[arg-type]
    if ts.kind == "bool":
        return st.booleans()
    if ts.kind == "str":
        return st.text(max_size=40)
    if type_name == "f32":  # values an f32 holds exactly, so the round trip is exact
        return st.floats(width=32, allow_nan=False)
    return st.floats(allow_nan=False)


@st.composite
def dictionaries_and_samples(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[tuple[int, Any]]]]:
    specs = draw(st.lists(st.tuples(st.sampled_from(TYPE_NAMES), st.sampled_from(["always", "on_change"])),
                          min_size=1, max_size=40))
    chans = _channels(specs)
    cycles = []
    for _ in range(draw(st.integers(1, 4))):
        chosen = draw(st.lists(st.sampled_from(chans), unique_by=lambda c: c["id"], max_size=len(chans)))
        cycles.append([(c["id"], draw(_value(c["type"]))) for c in chosen])
    return chans, cycles


@settings(max_examples=150, deadline=None)
@given(dictionaries_and_samples())
def test_every_sample_comes_back_from_its_fixed_packet(case: tuple[list[dict[str, Any]], list[Any]]) -> None:
    chans, cycles = case
    defs = packet_definitions(chans, [Group("control", 50.0, ("c0",)), Group("hk", 1.0, ("c1", "tlm"))])
    ctypes = {c["id"]: c["type"] for c in chans}
    tx, rx = Layouts(defs, ctypes), Layouts(defs, ctypes)
    for samples in cycles:
        payloads, dropped = tx.encode(samples)
        assert dropped == []
        got: dict[int, Any] = {}
        ids = []
        for apid, p in payloads:
            pid, values = rx.decode(p, apid)
            ids.append(pid)
            assert p[:2] == struct.pack(">H", pid) and apid == apid_of(pid) and apid in HK_APIDS
            got.update(values)
        assert ids == sorted(set(ids))  # one packet per layout due, in id order
        want = dict(samples)
        assert got.keys() == want.keys()
        for cid, v in want.items():
            t = ctypes[cid]
            if t == "str":
                assert got[cid] == v
            elif t == "f32":
                assert got[cid] == struct.unpack(">f", struct.pack(">f", v))[0]
            else:
                assert got[cid] == v and type(got[cid]) is type(v)
        # only layouts with a sample due went down
        assert set(ids) == {tx.packet_of[cid] for cid in want}


def test_definitions_follow_rate_groups_and_components() -> None:
    chans = [
        {"id": 1, "name": "drive.speed_mps", "type": "f32", "update": "always"},
        {"id": 2, "name": "drive.faults", "type": "u32", "update": "on_change"},
        {"id": 3, "name": "power.bus_v", "type": "f32", "update": "always"},
        {"id": 4, "name": "exec.control.slips", "type": "u32", "update": "always"},
    ] + [{"id": 100 + i, "name": f"comm.count_{i}", "type": "u32", "update": "on_change"} for i in range(30)]
    groups = [Group("control", 50.0, ("drive",)), Group("hk", 1.0, ("power", "tlm"))]
    defs = packet_definitions(chans, groups)
    by_name = {d["name"]: d for d in defs}
    assert by_name["control"]["channels"] == [1] and by_name["control"]["hz"] == 50.0
    # exec is in no rate group: it is sampled with the housekeeping member
    assert by_name["hk"]["channels"] == [3, 4] and by_name["hk"]["rate_group"] == "hk"
    assert by_name["drive_changes"]["channels"] == [2]
    comm = [d for d in defs if d["name"].startswith("comm_changes")]
    assert [len(d["channels"]) for d in comm] == [MAX_CHANGES, MAX_CHANGES, 30 - 2 * MAX_CHANGES]
    assert [d["id"] for d in defs] == list(range(1, len(defs) + 1))
    assert all(legal_name(d["name"]) == d["name"] for d in defs)


def test_a_definition_never_outgrows_its_bound() -> None:
    chans = [{"id": i, "name": f"log.line_{i}", "type": "str", "update": "always"} for i in range(40)]
    defs = packet_definitions(chans)
    assert len(defs) > 1
    for d in defs:
        assert 2 + (len(d["channels"]) + 7) // 8 + 256 * len(d["channels"]) <= MAX_PAYLOAD


def test_on_change_fields_repeat_the_last_value_with_the_bit_clear() -> None:
    chans = [{"id": 1, "name": "a.x", "type": "u32", "update": "on_change"},
             {"id": 2, "name": "a.y", "type": "f64", "update": "on_change"}]
    lay = Layouts(packet_definitions(chans), {1: "u32", 2: "f64"})
    ((_, first),), _ = lay.encode([(1, 7), (2, 2.5)])
    ((apid, second),), _ = lay.encode([(2, 3.5)])
    assert Layouts(packet_definitions(chans), {1: "u32", 2: "f64"}).decode(second)[1] == [(2, 3.5)]
    assert second[2] == 0x40 and second[3:7] == first[3:7] == struct.pack(">I", 7)


def _field_by_field(lay: Layouts) -> Layouts:
    """The same layouts with the one-call formats taken away: every packet field by field."""
    import dataclasses

    slow = Layouts([], {})
    slow.by_id = {pid: dataclasses.replace(x, fields=None) for pid, x in lay.by_id.items()}
    slow.packet_of = dict(lay.packet_of)
    return slow


_ANY = (st.integers(-(2**70), 2**70) | st.floats() | st.booleans() | st.text(max_size=3) | st.none()
        | st.sampled_from([2.0, -0.0, 3.5e38, 3.4028235e38, -3.4028234663852886e38, 1e300, 255, 256, -1, 2**63, 2**64]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([t for t in TYPE_NAMES if t != "str"] + ["bool", "f32", "u8"]), min_size=1,
                max_size=20), st.booleans(), st.data())
def test_packing_all_fields_in_one_call_gives_the_bytes_of_field_by_field(names: list[str], text: bool,
                                                                         data: st.DataObject) -> None:
    names = names + ["str"] * text  # a layout with a string goes field by field both ways
    chans = [{"id": 1 + i, "name": f"a.ch{i}", "type": t, "update": "always"} for i, t in enumerate(names)]
    ctypes = {c["id"]: c["type"] for c in chans}
    fast = Layouts(packet_definitions(chans), ctypes)
    slow = _field_by_field(fast)
    for _ in range(3):  # several cycles: what a dropped field repeats is the last value sent
        odd = data.draw(st.sampled_from([0, 0, 1, 3]))  # fields with any value at all (0: all fit)
        samples = [(c["id"], data.draw(_ANY if i < odd else _value(c["type"]))) for i, c in enumerate(chans)]
        samples = data.draw(st.permutations(samples))
        got, want = fast.encode(samples), slow.encode(samples)
        assert got == want
        for apid, payload in got[0]:
            assert repr(fast.decode(payload, apid)) == repr(slow.decode(payload, apid))  # NaN as NaN
    # and any bytes read alike, or are refused alike
    pid = next(iter(fast.by_id))
    fresh = fast.by_id[pid].all_fresh  # the one-call reading is for packets with every bit set
    junk = struct.pack(">H", pid) + data.draw(st.sampled_from([fresh, b""])) + data.draw(st.binary(max_size=200))
    outcome = []
    for lay in (fast, slow):
        try:
            outcome.append(repr(lay.decode(junk)))
        except PacketError:
            outcome.append("refused")
    assert outcome[0] == outcome[1]


@pytest.mark.parametrize("edge", [3.4028235e38, -3.4028235e38, 1e39, math.inf, -math.inf, math.nan, True, 7])
def test_an_f32_at_its_edge_packs_as_it_does_field_by_field(edge: Any) -> None:
    # 3.4028235e38 is beyond the largest f32 but rounds to it: it is dropped, never sent rounded
    chans = [{"id": 1, "name": "a.v", "type": "f32", "update": "always"},
             {"id": 2, "name": "a.n", "type": "u8", "update": "always"}]
    fast = Layouts(packet_definitions(chans), {1: "f32", 2: "u8"})
    assert fast.by_id[1].fields is not None
    got, want = fast.encode([(1, edge), (2, 3)]), _field_by_field(fast).encode([(1, edge), (2, 3)])
    assert got == want
    assert (got[1] == [1]) == (isinstance(edge, float) and math.isfinite(edge) and abs(edge) > 3.4028234663852886e38)


def test_values_that_do_not_fit_are_dropped_alone() -> None:
    chans = [{"id": 1, "name": "a.n", "type": "u8", "update": "always"},
             {"id": 2, "name": "a.v", "type": "f32", "update": "always"},
             {"id": 3, "name": "a.ok", "type": "u16", "update": "always"}]
    lay = Layouts(packet_definitions(chans), {1: "u8", 2: "f32", 3: "u16"})
    ((apid, payload),), dropped = lay.encode([(1, 300), (2, 1e300), (3, 5), (99, 1)])
    assert sorted(dropped) == [1, 2, 99]
    assert lay.decode(payload, apid)[1] == [(3, 5)]
    with pytest.raises(PacketError, match="arrived on APID"):
        lay.decode(payload, apid + 1)
    ((_, payload),), _ = lay.encode([(2, math.inf)])
    assert lay.decode(payload)[1] == [(2, math.inf)]


@given(st.binary(max_size=64))
def test_garbage_raises_packet_error_only(data: bytes) -> None:
    chans = [{"id": 1, "name": "a.s", "type": "str", "update": "always"},
             {"id": 2, "name": "a.b", "type": "bool", "update": "always"}]
    lay = Layouts(packet_definitions(chans), {1: "str", 2: "bool"})
    try:
        pid, values = lay.decode(data)
    except PacketError:
        return
    assert pid == 1 and all(cid in (1, 2) for cid, _ in values)


def test_bad_definitions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown channel"):
        Layouts([{"id": 1, "name": "p", "channels": [5]}], {1: "u8"})
    with pytest.raises(ValueError, match="two housekeeping packets"):
        Layouts([{"id": 1, "channels": [1]}, {"id": 2, "channels": [1]}], {1: "u8"})
    assert Layouts.from_dictionary({"channels": []}) is None


@st.composite
def events_and_values(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int, list[Any], str]:
    arg_types = draw(st.lists(st.sampled_from(TYPE_NAMES), max_size=9))
    events = [{"id": 0x200, "name": "Other", "args": []},
              {"id": 0x201, "name": "Tested", "args": [{"name": f"a{i}", "type": t} for i, t in enumerate(arg_types)]}]
    values = [draw(st.none() | _value(t)) for t in arg_types]
    return events, 0x201, values, draw(st.text(max_size=600))


@settings(max_examples=150, deadline=None)
@given(events_and_values())
def test_every_event_argument_comes_back_from_its_fixed_layout(case: tuple[Any, int, list[Any], str]) -> None:
    events, eid, values, text = case
    lay = Layouts([], {}, events)
    got_id, name, args, got_text = lay.decode_event(lay.encode_event(eid, values, text))
    assert (got_id, name) == (eid, "Tested") and got_text == text[: len(got_text)]
    assert len(got_text.encode()) <= 2048 and (got_text == text or len(text.encode()) > 2048)
    for t, sent, back in zip([a["type"] for a in events[1]["args"]], values, args, strict=True):
        if sent is None:
            assert back is None
        elif t == "f32":
            assert back == struct.unpack(">f", struct.pack(">f", sent))[0]
        else:
            assert back == sent


def test_event_arguments_that_do_not_fit_arrive_as_null() -> None:
    lay = Layouts([], {}, [{"id": 7, "name": "E", "args": [{"name": "n", "type": "u8"}, {"name": "s", "type": "str"},
                                                            {"name": "x", "type": "f32"}]}])
    _, _, args, text = lay.decode_event(lay.encode_event(7, [999, 42, "x"], "text"))
    assert args == [None, "42", None] and text == "text"
    with pytest.raises(PacketError, match="not in the dictionary"):
        lay.encode_event(8, [], "")
    payload = lay.encode_event(7, [1, "a", 1.0], "ok")
    for cut in range(len(payload)):
        with pytest.raises(PacketError):
            lay.decode_event(payload[:cut])
    with pytest.raises(PacketError):
        lay.decode_event(payload + b"\x00")
