"""Channels, housekeeping sampling, limits, events, the outbound queue, the dictionary."""

import pytest

from flight import dictionary
from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Severity
from flight.outbound import PRIO_EVENT, PRIO_HK, CommandResponse, OutboundQueue, TlmPacket

pytestmark = pytest.mark.timeout(30)


class Battery(Component):
    CHANNELS = (
        Channel("soc", "f32", limits=Limits(yellow=(0.3, 1.0), red=(0.15, 1.0))),
        Channel("mode", "u8", update="on_change"),
    )
    EVENTS = (Event("Chatty", Severity.DIAGNOSTIC, "n={n}", (Arg("n", "u32"),), throttle=3,
                    throttle_window_s=10.0),
              Event("Broken", Severity.WARNING_LO, "{missing} here", (Arg("n", "u32"),)))

    def setup(self):
        self.soc = 0.5
        self.n = 0

    def step(self):
        self.n += 1
        self.soc -= 0.1
        self.tlm("soc", max(self.soc, 0.0))
        self.tlm("mode", 1 if self.n < 3 else 2)
        self.event("Chatty", n=self.n)


def test_housekeeping_limits_on_change_and_throttle(make_vehicle):
    b = Battery("bat")
    v, rec = make_vehicle([b], groups=[{"name": "hk", "hz": 1, "members": ["bat", "tlm", "cmd"]}])
    v.run(until_s=6)
    v.flush()
    packets = [i for i in rec.items if isinstance(i, TlmPacket)]
    names = v.fw.tlm.id_to_name()
    soc_id = next(k for k, n in names.items() if n == "bat.soc")
    mode_id = next(k for k, n in names.items() if n == "bat.mode")
    assert sum(1 for p in packets for cid, _ in p.samples if cid == soc_id) == len(packets)
    assert [val for p in packets for cid, val in p.samples if cid == mode_id] == [1, 2]
    crossings = [e.text for e in rec.events("LimitCrossed")]
    assert crossings[0].startswith("bat.soc is yellow at 0.3") or crossings[0].startswith("bat.soc is yellow")
    assert any("is red" in t for t in crossings)
    assert v.fw.tlm.limit_state("bat.soc") == "red"
    chatty = rec.events("Chatty")
    assert [e.text for e in chatty] == ["n=1", "n=2", "n=3"]  # 3 per 10 s window
    v.run(until_s=12)
    v.flush()
    later = rec.events("Chatty")[3]
    assert "earlier suppressed" in later.text


def test_unformattable_event_still_goes_out(make_vehicle):
    b = Battery("bat")
    v, rec = make_vehicle([b])
    b.event("Broken", n=3)
    v.flush()
    (ev,) = rec.events("Broken")
    assert "unformattable" in ev.text and "'n': 3" in ev.text


def test_outbound_queue_drops_least_important_oldest_first():
    q = OutboundQueue(capacity=3)
    hk = [TlmPacket(i, ()) for i in range(3)]
    for p in hk:
        q.put(p)
    ev = CommandResponse(10, 1, "X", 1, "t", "ACCEPTED")
    q.put(ev)
    assert q.dropped == {PRIO_HK: 1}
    q.put(CommandResponse(11, 1, "X", 2, "t", "COMPLETED"))
    q.put(CommandResponse(12, 1, "X", 3, "t", "COMPLETED"))
    q.put(TlmPacket(99, ()))  # less important than all that is queued: refused
    assert q.dropped == {PRIO_HK: 4}
    q.put(CommandResponse(13, 1, "X", 4, "t", "COMPLETED"))
    assert q.dropped == {PRIO_HK: 4, PRIO_EVENT: 1}
    out = q.drain()
    assert [i.seq for i in out] == [2, 3, 4] and len(q) == 0
    assert q.total_dropped == 5


def test_dictionary_is_generated_hashed_and_verifiable(make_vehicle):
    b = Battery("bat")
    v, _ = make_vehicle([b])
    doc = v.dictionary
    dictionary.verify(doc)
    soc = next(c for c in doc["channels"] if c["name"] == "bat.soc")
    assert soc["limits"] == {"yellow": [0.3, 1.0], "red": [0.15, 1.0]} and soc["type"] == "f32"
    ping = next(c for c in doc["commands"] if c["name"] == "CMD_PING")
    assert ping["args"][0]["type"] == "u32"
    sevs = {e["name"]: e["severity"] for e in doc["events"]}
    assert sevs["CycleSlip"] == "WARNING_HI" and sevs["Chatty"] == "DIAGNOSTIC"
    # the same declarations give the same hash; a change in them changes it
    v2, _ = make_vehicle([Battery("bat")], state_dir=v.fw.state_dir.parent / "other")
    assert v2.dictionary["hash"] == doc["hash"]
    tampered = dict(doc, channels=doc["channels"][:-1])
    with pytest.raises(ValueError, match="hash"):
        dictionary.verify(tampered)


def test_duplicate_names_are_a_configuration_error(make_vehicle):
    from flight.config import ConfigError

    with pytest.raises(ConfigError, match="already taken"):
        make_vehicle([Battery("cmd")], groups=[{"name": "hk", "hz": 1, "members": []}])


class Spiky(Component):
    """Puts a current every cycle that leaves its limits for one cycle between two samples, and
    provides a counter that is only read when sampled."""

    CHANNELS = (
        Channel("current_a", "f32", "A", limits=Limits(yellow=(-3, 3), red=(-5, 5))),
        Channel("count", "u32"),
        Channel("late", "f32", doc="no value until the fifth step"),
    )

    def setup(self):
        self.n = 0
        self.reads = 0
        self.slot = self.tlm_slot("current_a")
        self.provide("count", self._count)
        self.provide("late", lambda: None if self.n < 5 else self.n * 0.5)

    def _count(self):
        self.reads += 1
        return self.n

    def step(self):
        self.n += 1
        self.slot.put(6 if self.n == 7 else 1)  # an int into an f32 channel: stored as a float


def test_slots_check_every_put_and_providers_are_read_only_when_sampled(make_vehicle):
    s = Spiky("sp")
    v, rec = make_vehicle([s], groups=[{"name": "fast", "hz": 10, "members": ["sp"]},
                                       {"name": "hk", "hz": 1, "members": ["tlm", "cmd"]}])
    v.run(until_s=3)
    v.flush()
    # the excursion lasted one 0.1 s cycle, between two 1 s samples, and was still reported
    texts = [e.text for e in rec.events("LimitCrossed")]
    assert texts == ["sp.current_a is red at 6", "sp.current_a is ok at 1"]
    names = {n: k for k, n in v.fw.tlm.id_to_name().items()}
    packets = [dict(p.samples) for p in rec.items if isinstance(p, TlmPacket)]
    assert len(packets) == 3
    # sampled values are the latest ones, cast to the channel's kind
    assert [p[names["sp.current_a"]] for p in packets] == [1.0, 1.0, 1.0]
    assert all(type(p[names["sp.current_a"]]) is float for p in packets)
    # at a common release the faster group runs first: each sample sees that cycle's step
    assert [p[names["sp.count"]] for p in packets] == [1, 11, 21]
    assert s.reads == 3  # once per sample, never per step
    # a provider returning None means no value yet: the channel is left out until it has one
    assert names["sp.late"] not in packets[0]
    assert [p[names["sp.late"]] for p in packets[1:]] == [5.5, 10.5]
    assert v.fw.tlm.get("sp.count") == 30 and v.fw.tlm.get("sp.late") == 15.0


def test_a_channel_with_limits_cannot_be_provided_and_unknown_slots_are_named(make_vehicle):
    s = Spiky("sp")
    make_vehicle([s])
    with pytest.raises(ValueError, match="has limits"):
        s.provide("current_a", lambda: 0.0)
    with pytest.raises(KeyError, match="sp.nope"):
        s.tlm("nope", 1.0)


def _hk_values(rec, v, channel):
    """(time s, value) of every housekeeping sample of ``channel`` the vehicle sent."""
    names = v.fw.tlm.id_to_name()
    return [(p.time_ns / 1e9, val) for p in rec.items if isinstance(p, TlmPacket)
            for cid, val in p.samples if names[cid] == channel]


def test_ticker_channels_are_sampled_from_its_state_and_its_gain_follows_prm_set(make_vehicle):
    import math

    from flight.components.ticker import Ticker

    t = Ticker("t0", work=3)
    late = Ticker("late")  # stepped only at 1 Hz, after housekeeping: nothing to sample at first
    v, rec = make_vehicle([t, late], groups=[
        {"name": "control", "hz": 50, "members": ["t0"]},
        {"name": "nav", "hz": 10, "members": ["cmd", "seq"]},
        {"name": "hk", "hz": 1, "members": ["sys", "health", "tlm", "late"]},
    ])
    v.run(until_s=2.5)
    v.flush()
    # the control group runs first at t = 0, 1, 2 s: 1, 51 and 101 steps are taken when sampled
    assert _hk_values(rec, v, "t0.count") == [(0.0, 1), (1.0, 51), (2.0, 101)]
    y = 0.0
    for k in range(1, 102):
        y += 0.1 * (math.sin(k * 0.01) - y)
    assert _hk_values(rec, v, "t0.filtered")[-1] == (2.0, y)
    assert _hk_values(rec, v, "late.count") == [(1.0, 1), (2.0, 2)]
    assert v.fw.tlm.get("t0.count") == t._count == 125  # steps at 0, 0.02 ... 2.48 s
    # gain 0: the filter holds its value from the next step on
    v.dispatcher.submit("PRM_SET", {"name": "t0.gain", "value": "0"})
    v.run(until_s=3.5)
    held = v.fw.tlm.get("t0.filtered")
    v.run(until_s=5.0)
    assert v.fw.tlm.get("t0.filtered") == held and v.fw.tlm.get("t0.count") == t._count
