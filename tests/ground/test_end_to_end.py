"""End to end on a simulated clock: vehicle recorder -> lossy relay -> station -> archive.

10% frame loss, a bit error rate of 1e-5 and blackout windows; the ACK/NAK loop runs until the
recorder is empty. Every packet must reach the archive exactly once and uncorrupted.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from spacepackets.ccsds.spacepacket import PacketId, PacketType, parse_space_packets

from flight.link.packets import Apid
from ground.archive import Archive
from ground.station import Station, Vehicle
from hal.radio import open_loop_radio
from sim_hw.relay import RelayLink, RelayParams, Schedule
from tests.link.fixtures import SCID, LockstepVehicle, dictionary, ground_signer

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def build(tmp_path: Path, params: RelayParams, name: str):
    clock = Clock()
    relay = RelayLink(params, seed=11)
    veh = LockstepVehicle(tmp_path, relay, clock, name)
    ground_radio = open_loop_radio(f"radio+loop://{name}?side=ground")
    archive = Archive(tmp_path / "ground.db")
    station = Station(
        archive,
        [Vehicle(SCID, dictionary(), ground_signer(tmp_path))],
        uplink=lambda scid, frame: ground_radio.send(frame),
        ack_interval_s=1.0,
        link_timeout_s=3.0,
        nak_retry_s=4.0,
    )
    return clock, relay, veh, ground_radio, archive, station


def run_until_drained(clock, veh, ground_radio, station, until: float, produce_s: int, dt: float = 0.1) -> None:
    """Step everything on the simulated clock; the vehicle produces for ``produce_s`` seconds."""
    next_second = 0
    while clock.t < until:
        clock.t = round(clock.t + dt, 6)
        while next_second < produce_s and next_second <= clock.t:
            produce_second(veh, next_second)
            next_second += 1
        veh.endpoint.step(clock.t)
        while (frame := ground_radio.recv()) is not None:
            station.receive(frame, clock.t)
        station.poll(clock.t)
        if veh.recorder.stats().packets == 0 and next_second >= produce_s:
            return
    raise AssertionError(f"not drained by t={until}: {veh.recorder.stats()}")


def produce_second(veh: LockstepVehicle, s: int) -> None:
    t = float(s)
    veh.emit("housekeeping", t, [(1, 12.0 + s * 0.01), (2, float(s % 360)), (3, s // 10)])
    if s % 3 == 0:
        veh.emit("event", t, 10, "WARNING_LO", f"slip {s}", [s])
    if s % 7 == 0:
        veh.emit("response", t, 0x0102, "NAV_STOP", s, "COMPLETED", "")
    if s % 2 == 0:
        veh.emit("chunk", t, s, 0, 1, bytes(range(256)) * 12, {"w": 32}, s % 10 == 0)


def check_archive(archive: Archive, veh: LockstepVehicle) -> None:
    rows = archive.packets(SCID)
    got = {(apid, seq, t): raw for _, apid, seq, t, raw, _ in rows}
    assert len(rows) == len(got), "a packet was archived twice"
    assert got.keys() == veh.produced.keys()
    assert all(got[k] == veh.produced[k] for k in got), "an archived packet differs"


def test_lossy_link_with_blackouts_delivers_everything_once(tmp_path: Path) -> None:
    windows = Schedule(intervals=((0, 40), (55, 90), (100, 1000)))
    params = RelayParams(
        light_time_s=0.6,
        hop_delay_s=0.2,
        loss=0.10,
        ber=1e-5,
        rate_bps={"down": 400_000.0, "up": 64_000.0},
        windows=windows,
    )
    clock, relay, veh, ground_radio, archive, station = build(tmp_path, params, "e2e-lossy")
    run_until_drained(clock, veh, ground_radio, station, until=600, produce_s=120)
    check_archive(archive, veh)
    st = relay.stats
    assert st["down"].lost > 0 and st["down"].corrupted > 0 and st["down"].blocked > 0
    assert station.deframer.stats.crc_errors == st["down"].corrupted
    assert station.stats.naks_sent > 0 and station.stats.duplicates >= 0
    assert veh.recorder.stats().naks > 0
    # corrupted uplink frames die at the frame CRC; nothing reaches the verifier to be refused
    assert veh.endpoint.deframer.stats.crc_errors == st["up"].corrupted
    assert sum(veh.verifier.rejected.values()) == 0 and veh.verifier.accepted > 0
    # decoded content archived once
    assert archive.count("samples") == 3 * 120
    assert archive.count("events") == 40
    heading = archive.channel(SCID, 2, 10, 19)
    assert [v for _, v in heading] == [float(s) for s in range(10, 20)]


def test_archive_packets_parse_with_spacepackets(tmp_path: Path) -> None:
    clock, relay, veh, ground_radio, archive, station = build(tmp_path, RelayParams(light_time_s=0.1), "e2e-interop")
    run_until_drained(clock, veh, ground_radio, station, until=60, produce_s=20)
    raws = [raw for *_, raw, _ in archive.packets(SCID)]
    ids = [PacketId(PacketType.TM, True, a) for a in Apid if a < 0x80]
    parsed = parse_space_packets(b"".join(raws), ids)
    assert [bytes(p) for p in parsed.tm_list] == raws
    assert not parsed.skipped_ranges


def test_moon_farside_preset_through_a_station_keeping_gap(tmp_path: Path) -> None:
    # move the preset's 20-minute gap to start at t = 60 s
    params = RelayParams.preset(
        "moon-farside", windows={"period_s": 21600.0, "up_s": 20400.0, "phase_s": -20340.0}
    )
    assert params.windows.visible(59) and not params.windows.visible(61)
    assert params.windows.visible(1261)
    clock, relay, veh, ground_radio, archive, station = build(tmp_path, params, "e2e-moon")
    veh.recorder.resend_timeout_s = 8.0
    run_until_drained(clock, veh, ground_radio, station, until=2000, produce_s=300, dt=0.5)
    check_archive(archive, veh)
    assert relay.stats["down"].blocked > 0
    assert clock.t > 1260  # data made during the gap waited on board for the relay
