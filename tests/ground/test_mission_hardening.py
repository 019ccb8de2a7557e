"""Whole lockstep missions (flight core + comm, relay model, ground): the adversarial cases.

A legal u64 argument, a retried command, a crash that garbles the recorder and loses the counter
file: the ground keeps archiving, the vehicle runs each command once, and nothing crash-loops.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import pytest

from flight.config import VehicleConfig
from flight.config import load as load_config
from flight.link.auth import Reject, Signer, load_key
from flight.link.layouts import HK_APIDS
from magpie.mission import LockstepMission

pytestmark = pytest.mark.timeout(120)


def core_config() -> VehicleConfig:
    return load_config(Path(str(resources.files("magpie.configs").joinpath("core_mission.toml"))))


def cid(m: LockstepMission, name: str) -> int:
    return m.station.vehicles[m.config.spacecraft_id].dictionary.channel_id(name)


def latest(m: LockstepMission, name: str):
    row = m.archive.latest(m.config.spacecraft_id, cid(m, name))
    return None if row is None else row[1]


def pongs(m: LockstepMission, key: int) -> int:
    return sum(1 for e in m.archive.events(m.config.spacecraft_id) if e.name == "Pong" and e.args == [key])


def tapped(m: LockstepMission) -> list[bytes]:
    sent: list[bytes] = []
    uplink = m.station.uplink
    assert uplink is not None
    m.station.uplink = lambda s, f: (sent.append(f), uplink(s, f))[1]
    return sent


def test_u64_command_arguments_reach_the_archive_and_overflow_costs_one_sample(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="ideal", seed=1)
    try:
        m.advance(5.0)
        rec = m.send("T0_RESET", {"value": 2**63})
        m.advance(15.0)
        assert rec.stage == "COMPLETED"
        assert latest(m, "t0.count") > 2**63  # stored as the exact integer, above SQLite's int64
        assert m.station.rejects.total() == 0
        # a count at the top of u64 steps past it on board: that one sample is dropped, not the packets
        m.send("T0_RESET", {"value": 2**64 - 1})
        m.advance(20.0)
        hk_before = m.archive.count("packets")
        m.advance(40.0)
        assert m.archive.count("packets") > hk_before + 15
        assert latest(m, "comm.hk_samples_dropped") > 0
        assert m.archive.latest(m.config.spacecraft_id, cid(m, "t1.count"))[0] > 35.0  # still arriving
    finally:
        m.close()


def test_a_retried_command_runs_once_and_is_answered_twice(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=2)
    sent = tapped(m)
    try:
        m.advance(10.0)
        n0 = len(sent)
        rec = m.send("CMD_PING", {"key": 77})
        frame = sent[n0]
        m.advance(20.0)
        assert rec.stage == "COMPLETED"
        m.station.send_signed(m.config.spacecraft_id, rec.tc)  # the commander's retry: the same TC
        m.relay.submit("up", frame, m.clock.now())  # and the same frame again
        m.advance(40.0)
        assert pongs(m, 77) == 1
        stages = sorted(r[0] for r in m.archive._query(
            "SELECT stage FROM responses WHERE seq = ?", (rec.counters[0],)))
        assert stages == ["ACCEPTED", "ACCEPTED", "COMPLETED", "COMPLETED"]  # first answer, then the retry's
        assert m.comm.retries_answered == 1 and latest(m, "comm.uplink_retries") == 1
        # the same frame again is refused by the frame window; the same TC in a new frame by the counter
        assert m.comm.verifier.rejected[Reject.REPLAY] == 1 and m.comm.endpoint.deframer.stats.replay == 1
    finally:
        m.close()


def test_impatient_retries_over_a_lossy_link_run_each_command_once(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=4,
                        relay_overrides={"loss": 0.15, "ber": 1e-5})
    m.commander.retry_interval_s = 2.0  # shorter than the 3.1 s round trip: retries cross responses
    try:
        m.advance(5.0)
        recs = []
        for k in range(12):
            recs.append(m.send("CMD_PING", {"key": 1000 + k}))
            m.advance(m.clock.now() + 4.0)
        m.advance(m.clock.now() + 120.0)
        assert m.drain(900.0)
        assert [pongs(m, 1000 + k) for k in range(12)] == [1] * 12
        assert all(r.stage == "COMPLETED" for r in recs)
        assert sum(r.attempts for r in recs) > len(recs)  # retries did happen
        assert m.comm.retries_answered > 0 and m.station.rejects["internal_error"] == 0
    finally:
        m.close()


def test_garbled_recorder_and_lost_counter_files_after_a_crash(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=6)
    sent = tapped(m)
    try:
        m.advance(10.0)
        pings = []
        for k in range(20):  # 20 captured commands
            n0 = len(sent)
            m.send("CMD_PING", {"key": 500 + k})
            pings.append(sent[n0])
            m.advance(m.clock.now() + 1.0)
        m.advance(m.clock.now() + 20.0)
        assert [pongs(m, 500 + k) for k in range(20)] == [1] * 20
        m.advance(m.clock.now() + 30.0)
        state = tmp_path / "state"
        # crash 1: both copies of the counter state and the command log gone, the link counters garbled
        m.crash_vehicle()
        for p in (state / "comm-uplink.json", state / "comm-uplink.json.mirror", state / "comm-commands.json"):
            p.unlink()
        (state / "comm-counters.json").write_text("{garbage")
        m.idle(5.0)
        m.restart_vehicle()  # no crash loop: it boots, refusing what the recorder's copy says was used
        for frame in pings:  # replay every captured command
            m.relay.submit("up", frame, m.clock.now())
        rec = m.send("CMD_PING", {"key": 999})
        m.advance(m.clock.now() + 60.0)
        assert [pongs(m, 500 + k) for k in range(20)] == [1] * 20  # 0 of 20 ran again
        assert rec.stage == "COMPLETED" and pongs(m, 999) == 1
        # crash 2: the recorder garbled
        m.crash_vehicle()
        with open(state / "recorder.db", "r+b") as f:
            f.write(os.urandom(8192))
        m.idle(5.0)
        m.restart_vehicle()
        for frame in pings:
            m.relay.submit("up", frame, m.clock.now())
        rec = m.send("CMD_PING", {"key": 1999})
        m.advance(m.clock.now() + 60.0)
        assert [pongs(m, 500 + k) for k in range(20)] == [1] * 20
        assert rec.stage == "COMPLETED" and pongs(m, 1999) == 1
        recovered = [e.args for e in m.archive.events(m.config.spacecraft_id) if e.name == "StoreRecovered"]
        stores = {a[0] for a in recovered}
        assert {"recorder", "uplink counters", "link counters"} <= stores
        assert list(state.glob("recorder.db.corrupt-*")) and list(state.glob("comm-counters.json.corrupt-*"))
        assert m.comm.recorder is not None
        assert max(seq for apid, seq in m.comm.recorder.last_seqs().items() if apid in HK_APIDS) > 0
    finally:
        m.close()


def test_ground_counter_state_lost_resyncs_and_the_command_runs_once(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=9)
    scid = m.config.spacecraft_id
    try:
        m.advance(10.0)
        first = m.send("CMD_PING", {"key": 1})
        m.advance(30.0)
        assert first.stage == "COMPLETED"
        # the ground's counter files are gone: a new signer starts again at counter 1
        m.station.vehicles[scid].signer = Signer(load_key(m.key_path, 1), tmp_path / "new-ground" / "s.json")
        second = m.send("CMD_PING", {"key": 2})
        assert second.counters == [1]  # a counter the vehicle already used for another command
        m.advance(m.clock.now() + 60.0)
        # the vehicle answered "not executed" for counter 1; the station had jumped past the vehicle's
        # reported counter, and the commander signed the command afresh: it ran once
        assert second.stage == "COMPLETED" and len(second.counters) == 2 and second.counters[1] > 1
        assert pongs(m, 1) == 1 and pongs(m, 2) == 1
        assert m.station.stats.resyncs >= 1 and m.comm.not_executed == 1
        reasons = [r[0] for r in m.archive._query("SELECT reason FROM responses WHERE seq = 1 AND stage = 'REJECTED'")]
        assert len(reasons) == 1 and reasons[0].startswith("not executed")
    finally:
        m.close()
