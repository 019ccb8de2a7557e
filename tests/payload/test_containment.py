"""Misbehaving payloads, each contained and reported, and never a slip of the vehicle's groups."""

from __future__ import annotations

from flight.clock import RealClock
from flight.link.products import ProductChunk
from flight.payload.host import State


def slips(v) -> dict[str, int]:
    return {g.name: g.slips for g in v.executive.groups}


def state(v, name: str) -> State:
    return State(v.fw.tlm.get(f"payhost.{name}.state"))


def test_hang_is_detected_in_the_cycle_killed_and_restarted_with_backoff(payload_vehicle):
    v, rec, host = payload_vehicle({"hang": {"kind": "Hang", "backoff_s": 2.0, "restarts_per_hour": 3},
                                    "good": {"kind": "Good"}}, host_options={"lockstep_wait_s": 1.0})
    v.run(until_s=20.0)
    hung = rec.events("PayloadHung")
    assert len(hung) == 4 and all("unanswered in 1 s" in e.text for e in hung)
    # the first step follows the start by a cycle; the third hangs and is caught in its own cycle
    starts = [e.time_ns for e in rec.events("PayloadStarted") if "hang" in e.text]
    assert [h.time_ns - s for s, h in zip(starts, hung, strict=False)] == [300_000_000] * 4
    delays = [e.args[1] for e in rec.events("PayloadRestartScheduled")]
    assert delays == [2.0, 4.0, 8.0]
    off = rec.events("PayloadSwitchedOff")
    assert len(off) == 1 and "3 restarts within an hour" in off[0].text
    assert state(v, "hang") is State.SWITCHED_OFF
    # the neighbour stepped every cycle of its 10 Hz group throughout (after the one it started in)
    assert v.fw.tlm.get("good.count") == v.executive.group("payload").cycles - 1 == 199
    assert slips(v) == {"fast": 0, "payload": 0, "hk": 0}


def test_crash_loop_is_bounded_by_restarts_per_hour_and_pay_on_brings_it_back(payload_vehicle):
    v, rec, host = payload_vehicle({"crash": {"kind": "CrashLoop", "backoff_s": 1.0, "restarts_per_hour": 3}})
    v.run(until_s=30.0)
    crashed = rec.texts("PayloadCrashed")
    assert len(crashed) == 4 and all("status 11" in t or "closed its channel" in t for t in crashed)
    assert [e.args[1] for e in rec.events("PayloadRestartScheduled")] == [1.0, 2.0, 4.0]
    assert state(v, "crash") is State.SWITCHED_OFF
    assert v.fw.tlm.get("payhost.crash.restarts") == 3
    v.fw.cmd.submit("PAY_ON", {"payload": "crash"})
    v.run(until_s=31.0)
    assert rec.stages("PAY_ON") == ["ACCEPTED", "COMPLETED"]
    assert len(rec.texts("PayloadCrashed")) == 5  # it ran, and crashed, again
    assert slips(v) == {"fast": 0, "payload": 0, "hk": 0}


def test_cpu_hog_is_throttled_then_switched_off(payload_vehicle):
    v, rec, host = payload_vehicle({"hog": {"kind": "CpuHog", "cpu_ms_per_step": 20.0, "strikes": 3,
                                            "throttle_div": 4}})
    v.run(until_s=3.0)
    throttled = rec.events("PayloadThrottled")
    assert len(throttled) == 1 and throttled[0].args[1] == "cpu"
    off = rec.texts("PayloadSwitchedOff")
    assert len(off) == 1 and "cpu budget" in off[0]
    # one step over budget throttles; three more (every 4th cycle) switch it off
    assert v.fw.tlm.get("payhost.hog.steps") == 4
    assert v.fw.tlm.get("payhost.hog.cpu_frac") >= 3.0
    assert state(v, "hog") is State.SWITCHED_OFF
    assert slips(v) == {"fast": 0, "payload": 0, "hk": 0}


def test_event_flood_is_cut_to_the_rate_budget_then_switched_off(payload_vehicle):
    v, rec, host = payload_vehicle({"flood": {"kind": "EventFlood", "events_per_min": 30}})
    v.run(until_s=5.0)
    ticks = [e for e in rec.events("Tick") if e.component == "flood"]
    assert len(ticks) == 30
    assert v.fw.tlm.get("payhost.flood.events_dropped") == 4 * 500 - 30
    assert [e.args[1] for e in rec.events("PayloadThrottled")] == ["event"]
    assert state(v, "flood") is State.SWITCHED_OFF
    assert "event budget" in rec.texts("PayloadSwitchedOff")[0]


def test_data_flood_is_held_to_its_volume_until_the_next_sol(payload_vehicle):
    v, rec, host = payload_vehicle({"blob": {"kind": "DataFlood", "data_bytes_per_sol": 200_000,
                                             "sol_s": 20.0, "max_product_bytes": 100_000}})
    v.run(until_s=10.0)
    chunks = [i for i in rec.items if isinstance(i, ProductChunk) and i.apid == host.session("blob").alloc.apid]
    assert sum(len(c.data) for c in chunks) == 180_000  # three whole products; the fourth is refused
    assert {c.apid for c in chunks} == {0x040}
    assert v.fw.tlm.get("payhost.blob.products_refused") == 4
    assert state(v, "blob") is State.SWITCHED_OFF
    assert "data budget" in rec.texts("PayloadSwitchedOff")[0]
    assert not list((v.fw.state_dir / "payloads" / "blob" / "products").iterdir())  # refused ones removed
    v.run(until_s=21.0)  # a new sol renews the budget and the payload comes back
    assert [e.time_ns for e in rec.events("PayloadNewSol")] == [20 * 10**9]
    assert rec.events("PayloadStarted")[-1].time_ns == 20 * 10**9
    assert state(v, "blob") in (State.RUNNING, State.THROTTLED)  # and at it again


def test_a_payload_cannot_command_the_vehicle(payload_vehicle):
    v, rec, host = payload_vehicle({"rogue": {"kind": "VehicleCommander", "max_violations": 6}})
    accepted = v.dispatcher.counts["accepted"]
    v.run(until_s=2.0)
    kinds = {e.args[1] for e in rec.events("PayloadViolation")}
    assert kinds == {"command"}
    assert v.dispatcher.counts["accepted"] == accepted  # nothing reached the dispatcher
    assert not rec.events("MemberDisabled") and v.executive.member("tlm").enabled
    assert state(v, "rogue") is State.SWITCHED_OFF
    assert "6 violations" in rec.texts("PayloadSwitchedOff")[0]


def test_a_payload_reads_only_granted_channels_and_writes_only_its_own(payload_vehicle):
    v, rec, host = payload_vehicle({"snoop": {"kind": "ChannelSnoop", "grants": ["sys.uptime_s"],
                                              "max_violations": 100}})
    v.run(until_s=1.0)
    assert v.fw.tlm.get("snoop.seen") == "denied"
    details = [e.args[2] for e in rec.events("PayloadViolation")]
    assert any("exec.cycles" in d for d in details)
    assert any("sys.boot_count" in d for d in details)
    assert v.fw.tlm.get("sys.boot_count") == 1
    assert state(v, "snoop") is State.RUNNING  # reported and refused, below its violation limit


def test_a_product_outside_the_payload_directory_is_refused(payload_vehicle):
    v, rec, host = payload_vehicle({"esc": {"kind": "PathEscape"}})
    v.run(until_s=1.0)
    assert {e.args[1] for e in rec.events("PayloadViolation")} == {"path"}
    assert (v.fw.state_dir / "boot.json").exists()
    assert not [i for i in rec.items if isinstance(i, ProductChunk)]


def test_real_time_hang_and_hog_never_slip_the_vehicle(payload_vehicle):
    clock = RealClock()
    v, rec, host = payload_vehicle(
        {"hang": {"kind": "Hang", "backoff_s": 0.5}, "hog": {"kind": "CpuHog", "cpu_ms_per_step": 20.0},
         "good": {"kind": "Good"}}, clock=clock, hz=5.0, fast_hz=5.0)
    v.run(until_s=clock.now() + 4.0, flush_every_s=0.5)
    hung = [e for e in rec.events("PayloadHung") if "payload hang" in e.text]
    assert hung and "unanswered after one cycle" in hung[0].text
    # 80 ms of CPU in a 200 ms cycle: over its CPU budget, or (on a busy machine) late and so hung
    hog = host.session("hog")
    assert hog.misses >= 1 or any("hog throttled: cpu" in t for t in rec.texts("PayloadThrottled"))
    assert v.fw.tlm.get("good.count") > 5
    # the host never waits on a payload: its own worst step is far inside the fastest period
    assert v.executive.member("payhost").max_ns < 50_000_000
    assert slips(v) == {"fast": 0, "payload": 0, "hk": 0}
