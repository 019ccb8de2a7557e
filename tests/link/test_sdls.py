"""Frame security (SDLS layout): forged, replayed and misdirected frames are refused and counted;
the window survives restarts; garbage never raises anything but the codec's own error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.link.auth import Key
from flight.link.frames import VC, Deframer, FrameError, Framer, decode_frame, fecf
from flight.link.packets import Apid, encode_tm
from flight.link.sdls import MAC_LEN, SH_LEN, WINDOW, LinkSecurity, direction_key, mac

pytestmark = pytest.mark.timeout(60)

KEY = Key(7, bytes(range(40, 72)))
SCID = 66


def link(tmp_path, key: Key = KEY) -> tuple[LinkSecurity, LinkSecurity]:
    """(vehicle, ground); ``tmp_path`` None: nothing persisted (each hypothesis example fresh)."""
    return (LinkSecurity.for_vehicle(key, None, tmp_path / "v-sdls.json" if tmp_path else None),
            LinkSecurity.for_ground(key, None, tmp_path / "g-sdls.json" if tmp_path else None))


def downlink(vehicle: LinkSecurity, n: int, max_frame: int = 4096) -> list[bytes]:
    f = Framer(SCID, max_frame, security=vehicle.tx)
    return [f.pack(VC.REALTIME, [encode_tm(Apid.EVENT, i, 1.0, {"i": i})])[0] for i in range(n)]


def test_keys_per_direction_differ_and_come_from_the_key_file_key() -> None:
    up, down = direction_key(KEY, "uplink"), direction_key(KEY, "downlink")
    assert len({up.tag(b"x"), down.tag(b"x"), KEY.tag(b"x")}) == 3
    assert up.tag(b"x") == direction_key(Key(7, bytes(range(40, 72))), "uplink").tag(b"x")
    assert "secret" in repr(up) and bytes(range(40, 72)).hex() not in repr(up)


def test_protected_frames_round_trip_and_carry_spi_and_sequence_number(tmp_path) -> None:
    vehicle, ground = link(tmp_path)
    d = Deframer([SCID], security={SCID: ground.rx})
    frames = downlink(vehicle, 5)
    got = [d.accept_frame(fr) for fr in frames]
    assert [(f.spi, f.sn) for f in got] == [(7, sn) for sn in range(1, 6)]
    assert d.stats.frames_ok == 5 and ground.rx.high == 5


def test_forged_replayed_and_misdirected_frames_are_refused_and_counted(tmp_path) -> None:
    vehicle, ground = link(tmp_path)
    d = Deframer([SCID], security={SCID: ground.rx})
    frames = downlink(vehicle, 3)
    assert d.accept_frame(frames[0]) is not None
    forged = Framer(SCID, security=LinkSecurity.for_vehicle(Key(7, b"a guessed key, 32 bytes long!!!!"), None,
                                                             tmp_path / "evil.json").tx)
    assert d.accept_frame(forged.pack(VC.REALTIME, [encode_tm(Apid.EVENT, 1, 1.0, {})])[0]) is None
    plain = Framer(SCID).pack(VC.REALTIME, [encode_tm(Apid.EVENT, 1, 1.0, {})])[0]
    assert d.accept_frame(plain) is None  # no security header at all (too short for one: malformed)
    assert d.accept_frame(frames[0]) is None  # replay
    # an uplink frame (the ground's own key) sent back down: the directions have their own keys
    up = Framer(SCID, uplink=True, security=ground.tx).pack(VC.UPLINK, [encode_tm(Apid.EVENT, 1, 1.0, {})])[0]
    assert d.accept_frame(up) is None
    # one byte of a packet changed and the FECF recomputed: the MAC still says no
    tampered = bytearray(frames[1][:-2])
    tampered[30] ^= 1
    assert d.accept_frame(bytes(tampered) + fecf(bytes(tampered)).to_bytes(2, "big")) is None
    assert d.accept_frame(frames[2]) is not None and d.accept_frame(frames[1]) is not None  # reordered: fine
    s = d.stats
    assert (s.frames_ok, s.bad_mac + s.unknown_spi, s.replay, s.malformed) == (3, 3, 1, 1)
    assert ground.rx.stats.accepted == 3 and sum(ground.rx.stats.rejected.values()) == 4


def test_anti_replay_window_accepts_reordering_inside_it_only(tmp_path) -> None:
    vehicle, ground = link(tmp_path)
    d = Deframer([SCID], security={SCID: ground.rx})
    frames = downlink(vehicle, WINDOW + 10)
    assert d.accept_frame(frames[-1]) is not None
    assert d.accept_frame(frames[-WINDOW]) is not None  # within the window, not seen
    assert d.accept_frame(frames[-WINDOW - 1]) is None  # fell out of the window
    assert d.stats.replay == 1


def test_window_and_sequence_numbers_survive_restarts(tmp_path) -> None:
    vehicle, ground = link(tmp_path)
    d = Deframer([SCID], security={SCID: ground.rx})
    old = downlink(vehicle, 3)
    for fr in old:
        d.accept_frame(fr)
    vehicle2, ground2 = link(tmp_path)  # both ends restarted from their files
    d2 = Deframer([SCID], security={SCID: ground2.rx})
    # the ground persists its window behind what it saw (every `reserve` numbers): the first frame
    # it had seen is refused again; later ones since the last save may be taken once more (their
    # packets are already archived), and the restarted vehicle's next frame is taken at once
    assert d2.accept_frame(old[0]) is None and d2.stats.replay == 1
    new = downlink(vehicle2, 1)[0]
    assert decode_frame(new, ground2.rx).sn > 3  # a restarted sender never reuses a number
    assert d2.accept_frame(new) is not None
    assert ground2.rx.floor > ground.rx.high
    # the vehicle's uplink floor is reserved ahead and reported; the ground's sender jumps past it
    v_rx = vehicle2.rx
    assert ground2.tx.resync(v_rx.floor + 5) and ground2.tx.next_sn == v_rx.floor + 6


def test_losing_one_copy_of_the_state_costs_nothing(tmp_path) -> None:
    vehicle, _ = link(tmp_path)
    downlink(vehicle, 2)
    reserved = vehicle.store.get("tx.downlink.7")
    (tmp_path / "v-sdls.json").write_bytes(b"garbage")
    again, _ = link(tmp_path)
    assert again.tx.next_sn == reserved and again.store.problems and not again.store.lost


def test_the_grounds_downlink_floor_is_saved_without_a_sync_and_a_lost_copy_costs_no_refusal(
        tmp_path, monkeypatch) -> None:
    import os

    from flight.link import sdls

    vehicle, ground = link(tmp_path)
    sa = sdls.RxSA(ground.rx.key, ground.store, reserve=4, name="downlink", ahead=False)
    d = Deframer([SCID], security={SCID: sa})
    syncs: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd))[1])
    frames = downlink(vehicle, 20)
    syncs.clear()  # the vehicle's reservations ahead are synced; what follows is the ground's
    for fr in frames[:10]:
        assert d.accept_frame(fr) is not None
    assert ground.store.writes >= 2 and syncs == []  # the floor moved, nothing synced
    uplink_reserved = ground.tx.next_sn  # the uplink reservation: durable, in both copies
    ground.tx.header()
    assert syncs, "a reservation ahead is synced"
    reserved = ground.store.get(ground.tx._name)
    # a power cut that took the unsynced first copy: the mirror still holds the reservation and
    # an older floor, still behind what the ground had seen
    (tmp_path / "g-sdls.json").write_bytes(b"")
    again = LinkSecurity.for_ground(KEY, None, tmp_path / "g-sdls.json")
    assert again.store.get(ground.tx._name) == reserved >= uplink_reserved and not again.store.lost
    after = sdls.RxSA(again.rx.key, again.store, reserve=4, name="downlink", ahead=False)
    assert after.floor <= sa.high
    d2 = Deframer([SCID], security={SCID: after})
    assert all(d2.accept_frame(fr) is not None for fr in frames[10:])  # the vehicle's next frames: taken


frame_bytes = st.binary(max_size=300)


@given(data=frame_bytes)
@settings(max_examples=500)
def test_garbage_into_a_protected_link_raises_only_frame_error(data: bytes) -> None:
    _, ground = link(None)
    for raw in (data, data + fecf(data).to_bytes(2, "big"),
                bytes.fromhex("c0042000") + data + fecf(bytes.fromhex("c0042000") + data).to_bytes(2, "big")):
        try:
            decode_frame(raw, ground.rx)
        except FrameError:
            pass
        d = Deframer(security={SCID: ground.rx})
        assert d.accept_frame(raw) is None  # without the key nothing passes as authentic
        assert d.stats.crc_errors + d.stats.malformed + d.stats.rejected_security == 1
    assert ground.rx.stats.accepted == 0 and ground.rx.high == 0


@given(pkts=st.lists(st.binary(min_size=0, max_size=120), min_size=1, max_size=6),
       vcid=st.integers(0, 63), uplink=st.booleans())
@settings(max_examples=150)
def test_protected_round_trip_property(pkts: list[bytes], vcid: int, uplink: bool) -> None:
    vehicle, ground = link(None)
    tx, rx = (ground.tx, vehicle.rx) if uplink else (vehicle.tx, ground.rx)
    packets = [encode_tm(Apid.HOUSEKEEPING, i, 9.0, p) for i, p in enumerate(pkts)]
    raw = Framer(SCID, security=tx, uplink=uplink).pack(vcid, packets)
    frames = [Deframer(security={SCID: rx}).accept_frame(fr) for fr in raw]
    assert [p for f in frames for p in f.packets] == packets
    # the layout: security header after the 11-byte primary header, MAC before the FECF
    spi, first = int.from_bytes(raw[0][11:13], "big"), raw[0]
    assert spi == KEY.key_id and SH_LEN == 10
    assert first[-2 - MAC_LEN : -2] == mac(tx.key, first[: -2 - MAC_LEN])
