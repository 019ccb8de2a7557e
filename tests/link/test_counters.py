"""Uplink counter state: lost, garbled or overtaken counter files never crash and never reopen replay."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from flight.link.auth import Key, Reject, Signer, Verifier
from flight.link.once import CommandLog
from flight.link.packets import Apid
from tests.link.fixtures import SECRET

pytestmark = pytest.mark.timeout(60)

KEY = Key(1, SECRET)


def garble(path: Path) -> None:
    path.write_bytes(b'{"keys": {"1": {"cmd": {"high": "ten"')


def captured(tmp: Path, n: int = 20) -> tuple[Signer, Verifier, list[bytes]]:
    signer = Signer(KEY, tmp / "ground.json")
    verifier = Verifier([KEY], tmp / "vehicle.json")
    tcs = [signer.sign(Apid.TC_COMMAND, b"cmd %d" % i) for i in range(n)]
    assert all(verifier.verify(tc) for tc in tcs)
    return signer, verifier, tcs


@pytest.mark.parametrize("damage", ["garble", "delete"])
def test_losing_one_copy_of_the_vehicle_state_costs_nothing(tmp_path: Path, damage: str) -> None:
    _, _, tcs = captured(tmp_path)
    state = tmp_path / "vehicle.json"
    garble(state) if damage == "garble" else state.unlink()
    v2 = Verifier([KEY], state)
    assert sum(v2.verify(tc) is not None for tc in tcs) == 0  # 0 of 20 old commands run again
    assert v2.rejected[Reject.REPLAY] == 20
    if damage == "garble":
        assert list(tmp_path.glob("vehicle.json.corrupt-*")) and "corrupt" in v2.problems[0]
    assert stat.S_IMODE(state.stat().st_mode) == 0o600  # rewritten, readable again


def test_losing_both_copies_falls_back_to_the_recorders_copy(tmp_path: Path) -> None:
    _, verifier, tcs = captured(tmp_path)
    floors = verifier.highs()  # what Comm keeps in the recorder's meta table
    for p in (tmp_path / "vehicle.json", tmp_path / "vehicle.json.mirror"):
        garble(p)
    v2 = Verifier([KEY], tmp_path / "vehicle.json", floors=floors)
    assert v2.state_lost and v2.problems
    assert sum(v2.verify(tc) is not None for tc in tcs) == 0
    # with no copy anywhere the verifier says so plainly (the operator rotates the key)
    for p in (tmp_path / "vehicle.json", tmp_path / "vehicle.json.mirror"):
        garble(p)
    v3 = Verifier([KEY], tmp_path / "vehicle.json")
    assert any("rotate the key" in p for p in v3.problems)


def test_ground_state_lost_resynchronises_from_the_vehicles_counter(tmp_path: Path) -> None:
    signer, verifier, _ = captured(tmp_path)
    for p in (tmp_path / "ground.json", tmp_path / "ground.json.mirror"):
        garble(p)
    fresh = Signer(KEY, tmp_path / "ground.json")
    assert fresh.state_lost and fresh.next_counter == 1
    assert verifier.verify(fresh.sign(Apid.TC_COMMAND, b"refused")) is None  # counter 1: a replay
    # the vehicle's uplink_counter_cmd telemetry reaches the station, which calls resync
    assert fresh.resync(Apid.TC_COMMAND, verifier.high(1, Apid.TC_COMMAND))
    assert verifier.verify(fresh.sign(Apid.TC_COMMAND, b"accepted")) is not None


def test_a_second_signer_using_the_key_once_is_overtaken(tmp_path: Path) -> None:
    signer, verifier, _ = captured(tmp_path, n=3)
    rogue = Signer(KEY, tmp_path / "other-ground.json")
    rogue.resync(Apid.TC_COMMAND, 10_000)
    assert verifier.verify(rogue.sign(Apid.TC_COMMAND, b"from elsewhere"))
    assert verifier.verify(signer.sign(Apid.TC_COMMAND, b"ours")) is None  # far below: refused
    assert signer.resync(Apid.TC_COMMAND, verifier.high(1, Apid.TC_COMMAND))
    assert verifier.verify(signer.sign(Apid.TC_COMMAND, b"ours again")) is not None


def test_link_control_counters_persist_in_reserved_windows(tmp_path: Path) -> None:
    signer = Signer(KEY, tmp_path / "g.json", block=512)
    verifier = Verifier([KEY], tmp_path / "v.json", link_reserve=256)
    acks = [signer.sign(Apid.TC_LINK, b"ack %d" % i) for i in range(1000)]
    assert all(verifier.verify(a) for a in acks)
    # one write (file and mirror) per 256 ACKs, not one per ACK; the signer one per 512
    assert verifier.fsyncs == 2 * (1 + 4) and signer.fsyncs == 2 * 2  # (+1: the first write at start)
    # after a crash everything up to the reservation counts as seen: no replay reopens
    v2 = Verifier([KEY], tmp_path / "v.json", link_reserve=256)
    assert sum(v2.verify(a) is not None for a in acks) == 0
    assert v2.high(1, Apid.TC_LINK) == 772 + 256  # the last reservation, made at counter 772
    # commands have their own counter space: a burst of ACKs never pushes a command out of its window
    cmd = signer.sign(Apid.TC_COMMAND, b"pending")
    assert v2.verify(cmd) is not None


def test_legacy_single_counter_state_is_read(tmp_path: Path) -> None:
    (tmp_path / "v.json").write_text(json.dumps({"keys": {"1": {"high": 50, "mask": 1}}}))
    (tmp_path / "g.json").write_text(json.dumps({"key_id": 1, "reserved_until": 51}))
    v = Verifier([KEY], tmp_path / "v.json")
    s = Signer(KEY, tmp_path / "g.json")
    assert v.high(1, Apid.TC_COMMAND) == 50 and s.next_for(Apid.TC_LINK) == 51
    assert v.verify(s.sign(Apid.TC_COMMAND, b"x")) is not None


def test_command_log_survives_restart_and_corruption(tmp_path: Path) -> None:
    signer = Signer(KEY, tmp_path / "g.json")
    verifier = Verifier([KEY], tmp_path / "v.json")
    log = CommandLog(tmp_path / "log.json")
    first = verifier.verify(signer.sign(Apid.TC_COMMAND, b"\x00\x01run"))
    assert first is not None
    log.accepted(first)
    log.respond(first.counter, 1, "X", "COMPLETED", "")
    log.flush()
    again = CommandLog(tmp_path / "log.json")
    assert again.lookup(first) == [(1, "X", "COMPLETED", "")]
    (tmp_path / "log.json").write_text("{not json")
    moved = CommandLog(tmp_path / "log.json", since={1: verifier.high(1, Apid.TC_COMMAND)})
    assert moved.problems and moved.lookup(first) is None
    assert not moved.can_tell(first)  # older than the log: it cannot say the command never ran
