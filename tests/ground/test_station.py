"""Station and archive pieces: gaps across the wrap, duplicates, garbage in, acks out."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight.link.auth import Key
from flight.link.frames import VC, Framer
from flight.link.packets import Apid, encode_tm
from flight.link.sdls import LinkSecurity
from ground.archive import Archive
from ground.station import GapTracker, Station, Vehicle
from tests.link.fixtures import (
    SCID,
    dictionary,
    ground_signer,
    link_controls,
    vehicle_framer,
)

pytestmark = pytest.mark.timeout(60)


def test_gap_tracker_across_wrap_and_give_up() -> None:
    g = GapTracker(nak_retry_s=5, max_naks=2)
    for s in (16381, 16382, 1, 2, 16383):
        g.saw(s)
    assert sorted(g.missing) == [0]
    assert g.due(0.0, 10) == [0]
    assert g.due(1.0, 10) == []
    assert g.due(5.0, 10) == [0]
    assert g.due(10.0, 10) == [] and g.given_up == 1 and not g.missing


@pytest.fixture
def station(tmp_path: Path):
    uplinked: list[bytes] = []
    archive = Archive(tmp_path / "g.db")
    st_ = Station(
        archive,
        [Vehicle(SCID, dictionary(), ground_signer(tmp_path))],
        uplink=lambda scid, f: uplinked.append(f),
        ack_interval_s=1.0,
    )
    yield st_, uplinked, archive
    archive.close()


def test_duplicates_stored_once_but_acked_again_and_gaps_naked(station, tmp_path: Path) -> None:
    st_, uplinked, archive = station
    framer = vehicle_framer()
    pkts = [encode_tm(Apid.HOUSEKEEPING, s, float(s), {"s": [[1, float(s)]]}) for s in range(6)]
    for frame in framer.pack(VC.HOUSEKEEPING, [pkts[0], pkts[1], pkts[4]]):
        st_.receive(frame, 0.0)
    st_.poll(1.0)
    for frame in framer.pack(VC.HOUSEKEEPING, [pkts[1], pkts[2]]):  # a duplicate and a repair
        st_.receive(frame, 1.5)
    st_.poll(2.5)
    assert archive.count("packets") == 4 and archive.count("samples") == 4
    assert st_.stats.duplicates == 1
    (acks1, naks1), (acks2, naks2) = link_controls(uplinked, tmp_path / "v.json")
    assert acks1 == [(Apid.HOUSEKEEPING, 0, 1), (Apid.HOUSEKEEPING, 4, 4)]
    assert naks1 == [(Apid.HOUSEKEEPING, [2, 3])]
    assert acks2 == [(Apid.HOUSEKEEPING, 1, 2)]
    assert naks2 == []  # 3 is still missing but not due for another NAK yet


def test_a_checked_housekeeping_list_reaches_the_archive_and_listeners_as_columns(station) -> None:
    st_, _, archive = station
    got: list[tuple[int, float]] = []
    st_.listeners.append(lambda kind, scid, rec: got.append((rec["id"], rec["value"])))
    pkts = [encode_tm(Apid.HOUSEKEEPING, s, float(s), {"s": [[1, float(s)], [2, -float(s)]]}) for s in range(3)]
    for frame in vehicle_framer().pack(VC.HOUSEKEEPING, pkts):
        st_.receive(frame, 0.0)
    pending = list(st_._pending)
    assert [it.columns for it in pending] == [((1, 2), (float(s), -float(s))) for s in range(3)]
    assert all(it.samples == () for it in pending)  # no pairs built on the way
    st_.flush(0.0)
    assert [v for _, v in archive.channel(SCID, 2)] == [0.0, -1.0, -2.0]
    assert got == [(c, v) for s in range(3) for c, v in ((1, float(s)), (2, -float(s)))]


def test_ill_shaped_payloads_are_archived_raw_and_do_not_stop_the_station(station) -> None:
    st_, _, archive = station
    received = []
    st_.listeners.append(lambda kind, scid, rec: received.append(kind))
    pkts = [
        encode_tm(Apid.HOUSEKEEPING, 0, 1.0, {"s": [[1, 2.0], "junk", [2]]}),
        encode_tm(Apid.HOUSEKEEPING, 1, 1.0, {"s": 5}),
        encode_tm(Apid.EVENT, 0, 1.0, {"id": "x"}),
        encode_tm(Apid.CMD_RESPONSE, 0, 1.0, [1, 2]),
        encode_tm(Apid.PRODUCT, 0, 1.0, b"\xc1"),
        encode_tm(Apid.EVENT, 1, 1.0, {"id": 10, "sev": "DIAGNOSTIC", "text": "ok", "args": []}),
    ]
    for frame in vehicle_framer().pack(VC.REALTIME, pkts):
        st_.receive(frame, 0.0)
    st_.flush(0.0)
    assert archive.count("packets") == 6 and archive.count("samples") == 1
    assert st_.stats.bad_packets == 4
    assert received == ["tlm", "evt"]
    assert archive.events(SCID)[0].name == "CycleSlip"


@given(st.lists(st.binary(max_size=120), max_size=20))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_frames_never_crash_the_station(station, frames: list[bytes]) -> None:
    st_, _, archive = station
    before = archive.count("packets")
    for f in frames:
        assert st_.receive(f, 0.0) == 0
    st_.poll(10.0)
    assert archive.count("packets") == before


def test_with_ack_repeats_each_packet_is_acknowledged_in_successive_acks(tmp_path: Path) -> None:
    # on a pass-limited link a lost ACK frame would leave its packets on board for passes: with
    # ack_repeats=3 the next two ACKs carry them again, and then the station stops
    uplinked: list[bytes] = []
    archive = Archive(tmp_path / "g.db")
    st_ = Station(archive, [Vehicle(SCID, dictionary(), ground_signer(tmp_path))],
                  uplink=lambda scid, f: uplinked.append(f), ack_interval_s=1.0, link_timeout_s=100.0,
                  ack_repeats=3, received_on_clock=True)
    framer = vehicle_framer()
    pkts = [encode_tm(Apid.HOUSEKEEPING, s, float(s), {"s": [[1, float(s)]]}) for s in range(4)]
    for t, batch in ((0.0, pkts[:2]), (1.0, pkts[2:])):
        for frame in framer.pack(VC.HOUSEKEEPING, batch):
            st_.receive(frame, t)
        st_.poll(t + 0.5)
    for t in (2.5, 3.5, 4.5, 5.5):
        st_.poll(t)
    archive_rows = archive.packets(SCID)
    archive.close()
    assert sorted(float(r[5]) for r in archive_rows) == [0.5, 0.5, 1.5, 1.5]  # ground time, not the wall clock
    acks = [a for a, _ in link_controls(uplinked, tmp_path / "v.json")]
    hk = Apid.HOUSEKEEPING
    assert acks == [[(hk, 0, 1)], [(hk, 0, 3)], [(hk, 0, 3)], [(hk, 2, 3)]]


def test_forged_and_replayed_downlink_frames_are_refused_counted_and_never_acked(station, tmp_path: Path) -> None:
    st_, uplinked, archive = station
    framer = vehicle_framer()
    good = framer.pack(VC.HOUSEKEEPING, [encode_tm(Apid.HOUSEKEEPING, 0, 1.0, {"s": [[1, 12.0]]})])[0]
    forged_pkt = encode_tm(Apid.HOUSEKEEPING, 1, 2.0, {"s": [[1, 99.0]]})
    evil = LinkSecurity.for_vehicle(Key(1, b"a key that is not the mission's!"), None, None)
    forged = [Framer(SCID).pack(VC.HOUSEKEEPING, [forged_pkt] * 3)[0],  # no authentication at all
              Framer(SCID, security=evil.tx).pack(VC.HOUSEKEEPING, [forged_pkt])[0]]
    for frame in (good, *forged, good):  # the last: a replay of the good one
        st_.receive(frame, 0.0)
    st_.poll(1.0)
    assert archive.count("packets") == 1 and st_.stats.duplicates == 0
    assert (st_.rejects["frame_bad_mac"] + st_.rejects["frame_unknown_spi"], st_.rejects["frame_replay"]) == (2, 1)
    assert st_.deframer.stats.rejected_security == 3
    acks = [a for a, _ in link_controls(uplinked, tmp_path / "v.json")]
    assert acks == [[(Apid.HOUSEKEEPING, 0, 0)]]  # the authentic packet only, once


def test_naks_of_many_apids_at_once_stay_inside_one_frame(tmp_path: Path) -> None:
    # a blackout leaves gaps on every housekeeping layout's APID at once: one poll NAKs at most 512
    # counts in all, so the link-control TC still fits a frame, and the rest follow in later polls
    from flight.link.layouts import HK_APIDS

    uplinked: list[bytes] = []
    archive = Archive(tmp_path / "g.db")
    st_ = Station(archive, [Vehicle(SCID, dictionary(), ground_signer(tmp_path))],
                  uplink=lambda scid, f: uplinked.append(f), ack_interval_s=1.0, link_timeout_s=1000.0,
                  nak_retry_s=100.0)
    framer = vehicle_framer()
    apids = list(HK_APIDS[:30])
    for seq in (0, 400):
        pkts = [encode_tm(a, seq, float(seq), {"s": []}) for a in apids]
        for frame in framer.pack(VC.HOUSEKEEPING, pkts):
            st_.receive(frame, 1.0)
    nacked: list[int] = []
    for t in (2.0, 4.0, 6.0):
        uplinked.clear()
        st_.poll(t)
        assert uplinked and all(len(f) <= framer.max_frame_len for f in uplinked)
        controls = link_controls(uplinked, tmp_path / f"v{t}.json")
        nacked.append(sum(len(seqs) for _, naks in controls for _, seqs in naks))
    archive.close()
    assert nacked == [512, 512, 512]
