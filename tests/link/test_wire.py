"""The link on the wire, from a real lockstep run (flight core + comm, relay model, ground):
captured frames read by spacepackets' own USLP and space packet parsers, and the downlink
attack that used to work (forged telemetry reusing the sequence count of a lost packet, which
made the ground ACK it and the vehicle delete the real one) refused before anything is ACKed."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path

import pytest
from spacepackets.ccsds.spacepacket import PacketId, PacketType, parse_space_packets
from spacepackets.uslp.defs import UslpChecksumError
from spacepackets.uslp.frame import FrameType, TfdzConstructionRules, TransferFrame, VarFrameProperties
from spacepackets.uslp.header import SourceOrDestField

from flight.config import load as load_config
from flight.link.auth import Key, load_key
from flight.link.frames import VC, Deframer, Framer
from flight.link.layouts import HK_APIDS
from flight.link.packets import PAYLOAD_APIDS, TC_APIDS, Apid, decode_link_control, decode_packet, encode_tm, peek
from flight.link.sdls import MAC_LEN, SH_LEN, LinkSecurity
from magpie.mission import LockstepMission
from mission.lockstep import KEY_ID

pytestmark = pytest.mark.timeout(120)

PROTECTED = VarFrameProperties(has_insert_zone=True, insert_zone_len=SH_LEN, has_fecf=True, truncated_frame_len=0)
TM_IDS = [PacketId(PacketType.TM, True, int(a)) for a in [*Apid, *PAYLOAD_APIDS, *HK_APIDS] if a not in TC_APIDS]
TC_IDS = [PacketId(PacketType.TC, True, int(a)) for a in TC_APIDS]


def core_config():
    return load_config(Path(str(resources.files("magpie.configs").joinpath("core_mission.toml"))))


def tap_relay(m: LockstepMission, keep: list, drop=None) -> None:
    """Record every frame offered to the relay (direction, time, bytes); ``drop(direction, frame)``
    true: the frame is lost on the way (never reaches the relay)."""
    submit = m.relay.submit

    def tapped(direction: str, frame: bytes, now_s: float) -> bool:
        keep.append((direction, now_s, bytes(frame)))
        if drop is not None and drop(direction, frame):
            return True
        return submit(direction, frame, now_s)

    m.relay.submit = tapped


def test_captured_frames_decode_with_spacepackets_uslp_parser(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=21, relay_overrides={"loss": 0.0})
    scid = m.config.spacecraft_id
    captured: list[tuple[str, float, bytes]] = []
    tap_relay(m, captured)
    try:
        m.advance(30.0)
        rec = m.send("CMD_PING", {"key": 5})
        m.advance(90.0)
        assert m.drain(600.0) and rec.stage == "COMPLETED"
        down: list[bytes] = []
        up: list[bytes] = []
        vcids = Counter()
        for direction, _, frame in captured:
            parsed = TransferFrame.unpack(frame, FrameType.VARIABLE, PROTECTED)  # checks the FECF too
            h = parsed.header
            assert (h.scid, h.map_id, h.vcf_count_len, h.frame_len + 1) == (scid, 0, 4, len(frame))
            assert h.src_dest == (SourceOrDestField.SOURCE if direction == "down" else SourceOrDestField.DEST)
            assert int.from_bytes(parsed.insert_zone[:2], "big") == KEY_ID  # the security header's SPI
            assert parsed.tfdf.uslp_ident == 0  # space packets
            assert parsed.tfdf.tfdz_contr_rules == TfdzConstructionRules.VpNoSegmentation
            zone = bytes(parsed.tfdf.tfdz[:-MAC_LEN])
            result = parse_space_packets(bytearray(zone), TM_IDS if direction == "down" else TC_IDS)
            assert not result.skipped_ranges and result.scanned_bytes == len(zone)
            (down if direction == "down" else up).extend(bytes(p) for p in result.tm_list)
            vcids[(direction, h.vcid)] += 1
            # one flipped bit and spacepackets' own FECF check refuses the frame
            bad = bytearray(frame)
            bad[len(bad) // 2] ^= 0x04
            with pytest.raises(UslpChecksumError):
                TransferFrame.unpack(bytes(bad), FrameType.VARIABLE, PROTECTED)
        # the packets extracted are the ones the vehicle stored and the ground sent, byte for byte
        assert set(down) == set(m.stored_packets) and len(down) >= len(m.stored_packets) > 50
        assert rec.tc in up and all(peek(p)[0] in TC_APIDS for p in up)
        assert {vc for d, vc in vcids if d == "down"} >= {VC.REALTIME, VC.HOUSEKEEPING}
        assert {vc for d, vc in vcids if d == "up"} == {VC.UPLINK}
        # and each VC's frame counts run on without a hole (no loss on this link)
        for direction, vcid in vcids:
            counts = [TransferFrame.unpack(f, FrameType.VARIABLE, PROTECTED).header.vcf_count
                      for d, _, f in captured if d == direction
                      and TransferFrame.unpack(f, FrameType.VARIABLE, PROTECTED).header.vcid == vcid]
            assert counts == list(range(len(counts)))
    finally:
        m.close()


def test_forged_and_replayed_downlink_frames_are_refused_and_never_acked(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=22, relay_overrides={"loss": 0.0})
    scid = m.config.spacecraft_id
    station = m.station
    key, down_key = load_key(m.key_path, KEY_ID), load_key(m.downlink_key_path, KEY_ID)  # a key per direction
    reader = Deframer([scid], security={scid: LinkSecurity.for_ground(key, down_key, None).rx})  # the test's eyes
    lost: dict[str, object] = {}

    def drop(direction: str, frame: bytes) -> bool:
        """Lose the first housekeeping frame after 20 s, once (the vehicle keeps its packets)."""
        if direction != "down" or lost or m.clock.now() < 20.0:
            return False
        fr = reader.accept_frame(frame)
        hk = [p for p in (fr.packets if fr else ()) if peek(p)[0] in (Apid.HOUSEKEEPING, *HK_APIDS)]
        if fr is None or fr.vcid != VC.HOUSEKEEPING or not hk:
            return False
        lost.update(packet=hk[0], frame=frame)
        return True

    captured: list[tuple[str, float, bytes]] = []
    tap_relay(m, captured, drop)
    received: list[tuple[float, bytes]] = []  # what the ground took in, as its own reader sees it
    receive = station.receive
    ground_reader = Deframer([scid], security={scid: LinkSecurity.for_ground(key, down_key, None).rx})

    def taken(frame: bytes, now_s: float) -> int:
        n = receive(frame, now_s)
        if n:
            fr = ground_reader.accept_frame(frame)
            received.extend((now_s, p) for p in (fr.packets if fr else ()))
        return n

    station.receive = taken
    try:
        m.advance(22.0)
        assert lost, "no housekeeping frame was lost"
        real = lost["packet"]
        apid, seq, _ = peek(real)
        t_real = decode_packet(real).time_s
        # the attack: the same APID, sequence count and time, other values
        forged_pkt = encode_tm(apid, seq, t_real, {"s": [[1, 99.0]]})
        plain = Framer(scid).pack(VC.HOUSEKEEPING, [forged_pkt])[0]
        # signed with the uplink key (the one the ground holds for commanding) or a guessed one
        guessed = LinkSecurity.for_vehicle(Key(KEY_ID, b"a guessed downlink key, 32 bytes"), None, None)
        up_key_frame = Framer(scid, security=LinkSecurity.for_vehicle(key, None, None).tx).pack(
            VC.HOUSEKEEPING, [forged_pkt])[0]
        wrong_key = Framer(scid, security=guessed.tx).pack(VC.HOUSEKEEPING, [forged_pkt])[0]
        replayed = next(f for d, _, f in captured if d == "down" and f != lost["frame"])  # an authentic old frame
        now = m.clock.now()
        st = station.deframer.stats
        before = (st.bad_mac + st.unknown_spi + st.malformed, st.replay)
        for frame in (plain, wrong_key, up_key_frame, replayed):
            m.relay.submit("down", frame, now)
        m.advance(now + 5.0)  # they have arrived (1.3 s light time + hop), the ground has polled
        assert (st.bad_mac + st.unknown_spi + st.malformed - before[0], st.replay - before[1]) == (3, 1)
        assert station.rejects["frame_replay"] == 1
        m.advance(now + 90.0)
        assert m.drain(600.0)
        # the vehicle kept the real packet and sent it again; the archive holds it, not the forgery
        rows = [r for r in m.archive.packets(scid) if (r[1], r[2], r[3]) == (apid, seq, t_real)]
        assert [bytes(r[4]) for r in rows] == [real]
        assert forged_pkt not in {p for _, p in received}
        t_in = min(t for t, p in received if p == real)
        # and no ACK covered that count before the real packet had reached the ground
        acks_for_seq = []
        for direction, t, frame in captured:
            if direction != "up":
                continue
            fr = Deframer([scid], security={scid: LinkSecurity.for_vehicle(key, down_key, None).rx})
            for raw in fr.accept_frame(frame).packets:
                pkt = decode_packet(raw)
                if pkt.apid != Apid.TC_LINK:
                    continue
                acks, _ = decode_link_control(pkt.payload[10:-32])
                if any(a == apid and (lo <= seq <= hi if lo <= hi else seq >= lo or seq <= hi) for a, lo, hi in acks):
                    acks_for_seq.append(t)
        assert acks_for_seq and min(acks_for_seq) >= t_in
        assert Counter(bytes(r[4]) for r in m.archive.packets(scid)) == Counter(m.stored_packets)
    finally:
        m.close()


def test_frame_security_state_lost_with_the_vehicle_restarts_from_the_recorders_copy(tmp_path: Path) -> None:
    m = LockstepMission(core_config(), tmp_path, preset="moon-farside", seed=23, relay_overrides={"loss": 0.0})
    scid = m.config.spacecraft_id
    try:
        m.advance(40.0)
        used = m.comm.endpoint.security.tx.next_sn
        m.crash_vehicle()
        for p in (tmp_path / "state").glob("comm-sdls.json*"):
            p.unlink()  # both copies of the frame security state gone
        m.idle(5.0)
        m.restart_vehicle()
        assert m.comm.endpoint.security.tx.next_sn >= used  # no sequence number is used twice
        rec = m.send("CMD_PING", {"key": 8})
        m.advance(m.clock.now() + 120.0)
        assert m.drain(600.0) and rec.stage == "COMPLETED"
        rows = m.archive.packets(scid)
        assert Counter(bytes(r[4]) for r in rows) == Counter(m.stored_packets)  # 0 lost, 0 duplicated
        assert m.station.deframer.stats.replay == 0
        recovered = [e.args for e in m.archive.events(scid) if e.name == "StoreRecovered"]
        assert any(a[0] == "frame security" and "recorder" in a[1] for a in recovered)
    finally:
        m.close()
