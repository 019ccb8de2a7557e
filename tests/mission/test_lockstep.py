"""Whole missions in lockstep on the simulated clock: flight core + comm, relay model, ground.

The vehicle is the flight core with tickers and the comm component (no simulated world), so the
tests depend only on the link and the ground. Every packet the vehicle stored must reach the
archive exactly once, byte for byte, through loss, bit errors, blackouts and a crash.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from collections import Counter
from importlib import resources
from pathlib import Path

import pytest

from flight.cmdcodec import encode_command
from flight.config import ConfigError, VehicleConfig
from flight.config import load as load_config
from flight.link.auth import Key, Reject, Signer
from flight.link.frames import VC, Framer
from flight.link.layouts import HK_APIDS, Layouts
from flight.link.packets import Apid, decode_packet
from flight.link.sdls import LinkSecurity
from magpie.mission import LockstepMission, run_mission
from sim_hw.relay import Schedule

pytestmark = pytest.mark.timeout(120)

# lossy, with two blackouts inside the run
LOSSY = {"loss": 0.10, "ber": 1e-5, "windows": Schedule(intervals=((0, 150), (210, 380), (420, 1e9)))}


def core_config() -> VehicleConfig:
    return load_config(Path(str(resources.files("magpie.configs").joinpath("core_mission.toml"))))


def archived_rows(m: LockstepMission) -> list[tuple]:
    return m.archive.packets(m.config.spacecraft_id)


def check_exactly_once(m: LockstepMission) -> None:
    """The archive holds every packet the vehicle stored, once, unaltered; nothing else."""
    rows = archived_rows(m)
    keys = [(apid, seq, t) for _, apid, seq, t, _, _ in rows]
    assert len(keys) == len(set(keys)), "a packet was archived twice"
    assert Counter(raw for *_, raw, _ in rows) == Counter(m.stored_packets), "archive differs from the recorder"
    # per APID the sequence counts run 0..last with no hole and no repeat
    last = m.comm.recorder.last_seqs()
    for apid, last_seq in last.items():
        seqs = sorted(seq for _, a, seq, *_ in rows if a == apid)
        assert seqs == list(range(last_seq + 1)), f"APID 0x{apid:03x}"
    layouts = Layouts.from_dictionary(m.station.vehicles[m.config.spacecraft_id].dictionary.raw)
    assert layouts is not None
    for *_, raw, _ in rows:
        pkt = decode_packet(raw)
        if pkt.apid in HK_APIDS:
            layouts.decode(pkt.payload, pkt.apid)
        elif pkt.apid == Apid.EVENT:
            layouts.decode_event(pkt.payload)
        else:
            pkt.value()


def channel_id(m: LockstepMission, name: str) -> int:
    return m.station.vehicles[m.config.spacecraft_id].dictionary.channel_id(name)


def pongs(m: LockstepMission, key: int) -> int:
    return sum(1 for e in m.archive.events(m.config.spacecraft_id) if e.name == "Pong" and e.args == [key])


def forged_frame(m: LockstepMission, tmp: Path, name: str, args: dict, key_id: int = 1,
                 frame_key: bool = False) -> bytes:
    """A command signed with a key that is not the mission's. ``frame_key``: in a frame
    protected with that key too (refused by frame authentication); otherwise inside a frame the
    ground really protected (as if the frame key had leaked), so the packet HMAC must refuse it."""
    scid = m.config.spacecraft_id
    entry = m.station.vehicles[scid].dictionary.commands_by_name[name]
    evil_key = Key(key_id, b"not-the-mission-key-at-all-00000")
    evil = Signer(evil_key, tmp / f"evil-{key_id}.json")
    tc = evil.sign(Apid.TC_COMMAND, encode_command(entry, args), time_s=m.clock.now())
    if frame_key:
        sa = LinkSecurity.for_ground(evil_key, None, None).tx
        return Framer(scid, uplink=True, security=sa).pack(VC.UPLINK, [tc])[0]
    return m.station.vehicles[scid].framer.pack(VC.UPLINK, [tc])[0]


def test_lossy_moon_farside_mission_archives_everything_once(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", relay_overrides=LOSSY, seed=3,
                        plan=[(30.0, "CMD_PING", {"key": 4242}), (250.0, "CMD_NOOP", {})])
    try:
        m.advance(600.0)
        assert m.drain(1800.0), m.summary().lines()
        check_exactly_once(m)
        down, up = m.relay.stats["down"], m.relay.stats["up"]
        assert down.lost > 0 and down.corrupted > 0 and down.blocked > 0 and up.lost > 0
        assert m.station.deframer.stats.crc_errors == down.corrupted
        assert m.station.stats.naks_sent > 0 and m.station.stats.bad_packets == 0
        # the command went up through the relay, ran once, and both stages came home
        assert pongs(m, 4242) == 1
        with sqlite3.connect(tmp_path / "archive.db") as db:
            rows = db.execute("SELECT stage FROM responses WHERE name = 'CMD_PING'").fetchall()
        assert sorted(r[0] for r in rows) == ["ACCEPTED", "COMPLETED"]
        recs = {r["name"]: r for r in (c.as_dict() for c in m.commander.commands.values())}
        assert recs["CMD_PING"]["stage"] == "COMPLETED" and recs["CMD_NOOP"]["stage"] == "COMPLETED"
        s = m.summary()
        assert s.packets_archived == sum(s.stored.values()) and s.held_on_board == 0 and s.boots == 1
        assert s.gaps_given_up == 0 and s.uplink_rejected == 0
    finally:
        m.close()


def test_forged_and_replayed_uplink_is_rejected_and_counted(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=5)
    scid = m.config.spacecraft_id
    sent: list[bytes] = []
    uplink = m.station.uplink
    assert uplink is not None

    def tap(s: int, frame: bytes) -> None:
        sent.append(frame)
        uplink(s, frame)

    m.station.uplink = tap
    try:
        m.advance(10.0)
        n0 = len(sent)
        rec = m.send("CMD_PING", {"key": 7})
        ping_frame = sent[n0]
        m.advance(20.0)
        assert rec.stage == "COMPLETED" and pongs(m, 7) == 1
        now = m.clock.now()
        m.relay.submit("up", ping_frame, now)  # replay of a good frame: the frame window refuses it
        m.station.send_signed(scid, rec.tc)  # the good command again in a fresh frame: a packet replay
        m.relay.submit("up", forged_frame(m, tmp_path, "CMD_PING", {"key": 666}), now)  # wrong key
        m.relay.submit("up", forged_frame(m, tmp_path, "CMD_PING", {"key": 667}, key_id=9), now)  # no such key
        m.relay.submit("up", forged_frame(m, tmp_path, "CMD_PING", {"key": 668}, frame_key=True), now)
        m.relay.submit("up", forged_frame(m, tmp_path, "CMD_PING", {"key": 669}, 9, frame_key=True), now)
        m.relay.submit("up", b"\x01garbage that is not a frame", now)
        m.advance(60.0)
        assert m.drain(600.0)
        check_exactly_once(m)
        assert pongs(m, 7) == 1 and all(pongs(m, k) == 0 for k in (666, 667, 668, 669))
        rejected = {name: m.archive.latest(scid, channel_id(m, f"comm.{name}"))[1]
                    for name in ("rej_replay", "rej_bad_tag", "rej_unknown_key", "uplink_rejected",
                                 "frame_malformed", "frame_crc_errors", "frame_bad_mac", "frame_replay")}
        assert rejected["frame_bad_mac"] == 2 and rejected["frame_replay"] == 1
        frame_reasons = {e.args[0] for e in m.archive.events(scid) if e.name == "UplinkFrameRejected"}
        assert frame_reasons == {"bad_mac", "unknown_spi", "replay"}
        assert rejected["rej_replay"] == 1 and rejected["rej_bad_tag"] == 1 and rejected["rej_unknown_key"] == 1
        assert rejected["uplink_rejected"] == 3
        assert rejected["frame_malformed"] + rejected["frame_crc_errors"] == 1
        reasons = {e.args[0] for e in m.archive.events(scid) if e.name == "UplinkRejected"}
        assert reasons == {"replay", "bad_tag", "unknown_key"}
        assert m.summary().uplink_rejected == 3
    finally:
        m.close()


def test_crash_and_restart_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=8,
                        relay_overrides={"loss": 0.05, "ber": 1e-6})
    scid = m.config.spacecraft_id
    sent: list[bytes] = []
    uplink = m.station.uplink
    assert uplink is not None
    m.station.uplink = lambda s, f: (sent.append(f), uplink(s, f))[1]
    try:
        m.advance(40.0)
        m.send("CMD_PING", {"key": 1})
        m.advance(60.0)
        for _ in range(3):  # the link loses some frames; three forged ones make at least one arrive
            m.relay.submit("up", forged_frame(m, tmp_path, "CMD_NOOP", {}), m.clock.now())
            m.relay.submit("up", forged_frame(m, tmp_path, "CMD_NOOP", {}, frame_key=True), m.clock.now())
        m.advance(90.0)
        bad_tags = m.comm.verifier.rejected[Reject.BAD_TAG]
        assert bad_tags >= 1 and m.comm.endpoint.deframer.stats.bad_mac >= 1
        old_frames = list(sent)
        assert m.comm.recorder.stats().in_flight > 0, "the crash should come mid-pass"
        m.crash_vehicle()
        m.idle(15.0)  # frames in transit land; the ground's ACKs wait in the radio
        m.restart_vehicle()
        assert m.vehicle.fw.tlm.get("sys.boot_count") == 2
        for frame in old_frames[-5:]:  # replays of frames accepted before the crash
            m.relay.submit("up", frame, m.clock.now())
        m.send("CMD_PING", {"key": 2})
        m.advance(m.clock.now() + 90.0)
        assert m.drain(1200.0)
        check_exactly_once(m)
        assert pongs(m, 1) == 1 and pongs(m, 2) == 1
        # after a crash the vehicle refuses frame sequence numbers and link-control counters up to
        # its reserved windows (it persists them ahead, not per frame or ACK): the old frames and
        # the ground's frames sent before it resynchronised from the vehicle's uplink_frame_sn and
        # uplink_counter_link telemetry are refused as replays, then the ground jumps past both
        replays = m.comm.verifier.rejected[Reject.REPLAY]
        assert m.comm.endpoint.deframer.stats.replay >= 1 and m.station.stats.resyncs >= 1
        # the bad-tag count from before the crash survived the restart
        assert m.comm.verifier.rejected[Reject.BAD_TAG] == 0
        assert m.archive.latest(scid, channel_id(m, "comm.rej_bad_tag"))[1] == bad_tags
        assert m.archive.latest(scid, channel_id(m, "comm.rej_replay"))[1] == replays
        s = m.summary()
        assert s.boots == 2 and s.packets_archived == sum(s.stored.values())
        assert m.station.stats.duplicates > 0  # the restarted vehicle resent what was in flight
    finally:
        m.close()


def test_durability_costs_a_checkpoint_per_sync_interval_not_per_flush(tmp_path: Path) -> None:
    """A simulated minute at 10 Hz: the recorder logs each outbound flush and checkpoints (one
    commit, one fsync) every sync_every_s and when a count leaves its reserved window, not per
    flush nor per send; the archive commits every commit_every_s and fsyncs before the ACKs that
    follow. Everything stored still arrives exactly once."""
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=2, commit_every_s=10.0)
    try:
        m.advance(60.0)  # 600 steps of 0.1 s, 60 flushes
        rec = m.comm.recorder
        assert rec.commits == rec.syncs <= 12, (rec.commits, rec.syncs)  # 6 by the clock, the windows
        # every 10 s, and at once for events and command responses (a few in this minute)
        assert 5 <= m.archive.commits <= 12 and m.archive.syncs <= m.archive.commits
        assert m.drain(600.0)
        check_exactly_once(m)
    finally:
        m.close()


def test_run_mission_summary_and_second_run_over_the_same_output(tmp_path: Path) -> None:
    first = run_mission(core_config(), tmp_path, duration_s=90.0, preset="ideal")
    assert first.drained and first.packets_archived == sum(first.stored.values()) > 90
    assert [c["stage"] for c in first.commands] == ["COMPLETED"] * 3
    key = tmp_path / "keys" / "uplink.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_bytes()
    second = run_mission(core_config(), tmp_path, duration_s=30.0, preset="ideal", plan=())
    assert key.read_bytes() == secret  # written once
    # the first run's shutdown events waited on board and came down in the second
    assert second.carried_over > 0
    assert second.drained and second.packets_archived == sum(second.stored.values()) + second.carried_over
    assert any("Downlink" in line for line in second.lines())
    json.dumps(second.link)


def test_same_seed_same_archive(tmp_path: Path) -> None:
    def run(out: Path) -> list[tuple]:
        m = LockstepMission(core_config(), out, preset="moon-farside", relay_overrides=LOSSY, seed=2,
                            plan=[(5.0, "CMD_NOOP", {})])
        try:
            m.advance(60.0)
            m.drain(600.0)
            return [(a, s, t, raw) for _, a, s, t, raw, _ in archived_rows(m)]
        finally:
            m.close()

    # a fresh key per output directory signs differently, so share one
    a, b = tmp_path / "a", tmp_path / "b"
    run(a)
    (b / "keys").mkdir(parents=True)
    (b / "keys" / "uplink.key").write_bytes((a / "keys" / "uplink.key").read_bytes())
    (b / "keys" / "uplink.key").chmod(0o600)
    import shutil

    shutil.rmtree(a / "state")
    shutil.rmtree(a / "ground-state")
    (a / "archive.db").unlink()
    for extra in a.glob("archive.db-*"):
        extra.unlink()
    assert run(a) == run(b)


@pytest.mark.parametrize("mode", [None, 0o644])
def test_comm_refuses_a_missing_or_open_key(tmp_path: Path, mode: int | None) -> None:
    import dataclasses

    from flight.clock import SimClock
    from flight.vehicle import Vehicle

    cfg = core_config()
    key = tmp_path / "keys" / "uplink.key"
    if mode is not None:
        key.parent.mkdir()
        key.write_text("00" * 32)
        key.chmod(mode)
    cfg = dataclasses.replace(cfg, state_dir=tmp_path / "state")
    with pytest.raises(ConfigError, match="key_file") as err:
        Vehicle(cfg, SimClock())
    if mode is not None:
        assert "chmod 600" in str(err.value)


def test_comm_refuses_an_open_downlink_key(tmp_path: Path) -> None:
    import dataclasses

    from flight.clock import SimClock
    from flight.vehicle import Vehicle
    from mission.lockstep import comm_config

    cfg = core_config()
    keys = tmp_path / "keys"
    keys.mkdir()
    for name, mode in (("uplink.key", 0o600), ("downlink.key", 0o640)):
        (keys / name).write_text("11" * 32)
        (keys / name).chmod(mode)
    cc = comm_config(cfg)
    options = {**cc.options, "downlink_key_file": "keys/downlink.key"}
    comps = tuple(dataclasses.replace(c, options=options) if c is cc else c for c in cfg.components)
    cfg = dataclasses.replace(cfg, state_dir=tmp_path / "state", components=comps)
    with pytest.raises(ConfigError, match="downlink_key_file") as err:
        Vehicle(cfg, SimClock())
    assert "chmod 600" in str(err.value)
