"""Frame codec (USLP): round trips, the FECF catches corruption, garbage never decodes,
packets span frames in segments, and spacepackets' own USLP parser reads what we write."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.uslp.frame import FrameType, TransferFrame, VarFrameProperties
from spacepackets.uslp.header import (
    BypassSequenceControlFlag,
    PrimaryHeader,
    ProtocolCommandFlag,
    SourceOrDestField,
)

from flight.link import frames as frames_mod
from flight.link.auth import Key
from flight.link.frames import (
    OVERHEAD,
    PLAIN_OVERHEAD,
    VC,
    CrcError,
    Deframer,
    FrameError,
    Framer,
    Rule,
    check_crc,
    decode_frame,
    encode_frame,
    fecf,
)
from flight.link.packets import Apid, encode_tm
from flight.link.sdls import LinkSecurity

pytestmark = pytest.mark.timeout(60)

KEY = Key(1, bytes(range(32)))

packets = st.lists(
    st.builds(
        lambda apid, seq, b: encode_tm(apid, seq, 1.0, b),
        st.sampled_from(list(Apid)),
        st.integers(0, 16383),
        st.binary(max_size=200),
    ),
    min_size=1,
    max_size=8,
)


def pair(tmp_path) -> tuple[LinkSecurity, LinkSecurity]:
    """(vehicle, ground) security for one link, state in ``tmp_path``."""
    return (LinkSecurity.for_vehicle(KEY, None, tmp_path / "v-sdls.json"),
            LinkSecurity.for_ground(KEY, None, tmp_path / "g-sdls.json"))


@given(
    scid=st.integers(0, 0xFFFF),
    vcid=st.integers(0, 63),
    count=st.integers(0, 2**32 - 1),
    pkts=packets,
    uplink=st.booleans(),
)
@settings(max_examples=200)
def test_frame_round_trip(scid: int, vcid: int, count: int, pkts: list[bytes], uplink: bool) -> None:
    frame = decode_frame(encode_frame(scid, vcid, count, pkts, uplink=uplink))
    assert (frame.scid, frame.vcid, frame.count, list(frame.packets), frame.uplink) == (
        scid, vcid, count, pkts, uplink)
    assert frame.rule == Rule.WHOLE and frame.sn is None


@given(st.binary(max_size=400))
@settings(max_examples=1000)
def test_arbitrary_bytes_never_decode_unless_fecf_matches(data: bytes) -> None:
    try:
        decode_frame(data)
    except FrameError:
        return
    assert check_crc(data)


@given(st.binary(max_size=400), st.binary(max_size=60))
@settings(max_examples=500)
def test_garbage_with_a_good_fecf_raises_only_frame_error(body: bytes, head: bytes) -> None:
    """Past the FECF: a valid header over garbage, or garbage over everything."""
    for raw in (head + body, bytes.fromhex("c0042000") + body):
        data = raw + fecf(raw).to_bytes(2, "big")
        try:
            decode_frame(data)
        except FrameError:
            pass
        d = Deframer()
        d.accept_frame(data)  # never raises
        assert d.stats.frames_ok + d.stats.malformed + d.stats.crc_errors == 1


@given(pkts=packets, bit=st.integers(0, 10_000))
@settings(max_examples=300)
def test_any_single_bit_flip_is_caught(pkts: list[bytes], bit: int) -> None:
    data = bytearray(encode_frame(66, 0, 1, pkts))
    bit %= len(data) * 8
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CrcError):
        decode_frame(bytes(data))


def test_valid_fecf_over_garbage_is_malformed_not_decoded() -> None:
    good = encode_frame(66, 0, 0, [encode_tm(Apid.EVENT, 0, 0.0, {})])
    body = bytearray(good[:-2])
    body[11] = 0xFF  # data field header: rule 111, protocol 31 (idle data): not space packets
    data = bytes(body) + fecf(bytes(body)).to_bytes(2, "big")
    d = Deframer()
    assert d.accept_frame(data) is None
    assert d.stats.malformed == 1 and d.stats.frames_ok == 0


def test_framer_bounds_size_and_counts_per_vc() -> None:
    f = Framer(66, max_frame_len=512)
    pkts = [encode_tm(Apid.HOUSEKEEPING, i, 0.0, bytes(100)) for i in range(20)]
    frames = f.pack(VC.HOUSEKEEPING, pkts)
    assert all(len(fr) <= 512 for fr in frames) and len(frames) > 1
    d = Deframer(accept_scids=[66])
    out = [d.accept_frame(fr) for fr in frames]
    assert [fr.count for fr in out if fr] == list(range(len(frames)))
    assert [p for fr in out if fr for p in fr.packets] == pkts
    assert f.pack(VC.REALTIME, pkts[:1])[0] == encode_frame(66, VC.REALTIME, 0, pkts[:1])
    assert (PLAIN_OVERHEAD, OVERHEAD) == (14, 40)


@given(size=st.integers(600, 9000), max_frame=st.integers(80, 700))
@settings(max_examples=60)
def test_a_packet_longer_than_a_frame_spans_frames_in_segments(size: int, max_frame: int) -> None:
    f = Framer(66, max_frame_len=max_frame)
    big = encode_tm(Apid.PRODUCT, 5, 2.0, bytes(range(256)) * (size // 256 + 1))
    small = [encode_tm(Apid.PRODUCT, i, 2.0, b"x") for i in (4, 6)]
    frames = f.pack(VC.BULK, [small[0], big, small[1]])
    assert all(len(fr) <= max_frame for fr in frames)
    rules = [decode_frame(fr).rule for fr in frames]
    assert rules[0] == Rule.WHOLE and rules[1] == Rule.FIRST_SEGMENT and rules[-2] == Rule.LAST_SEGMENT
    d = Deframer()
    got = [p for fr in frames for p in d.accept_frame(fr).packets]
    assert got == [small[0], big, small[1]]
    assert d.stats.segments_dropped == 0


def test_a_lost_segment_drops_that_packet_only_and_is_counted() -> None:
    f = Framer(66, max_frame_len=200)
    big = encode_tm(Apid.PRODUCT, 1, 2.0, bytes(1000))
    after = encode_tm(Apid.PRODUCT, 2, 2.0, b"next")
    frames = f.pack(VC.BULK, [big]) + f.pack(VC.BULK, [after])
    d = Deframer()
    got = [p for i, fr in enumerate(frames) if i != 2 for p in (d.accept_frame(fr) or ()).packets]
    assert got == [after]
    assert d.stats.segments_dropped == 1 and d.stats.frame_gaps == 1


def test_deframer_counts_crc_errors_gaps_and_foreign_scids() -> None:
    f = Framer(66)
    frames = [f.pack(VC.REALTIME, [encode_tm(Apid.EVENT, i, 0.0, {})])[0] for i in range(5)]
    d = Deframer(accept_scids=[66])
    bad = bytearray(frames[1])
    bad[12] ^= 0x10
    d.accept_frame(frames[0])
    assert d.accept_frame(bytes(bad)) is None
    d.accept_frame(frames[3])
    assert d.accept_frame(Framer(99).pack(0, [encode_tm(Apid.EVENT, 0, 0.0, {})])[0]) is None
    assert (d.stats.crc_errors, d.stats.frame_gaps, d.stats.wrong_scid, d.stats.frames_ok) == (1, 2, 1, 2)


def _uslp(frame: bytes, protected: bool) -> TransferFrame:
    """spacepackets' USLP parser. It knows no SDLS: the security header is passed as an insert
    zone of its length (where 732.1-B puts it) and the MAC stays at the end of the data zone."""
    props = VarFrameProperties(has_insert_zone=protected, has_fecf=True, truncated_frame_len=0,
                               insert_zone_len=10 if protected else None)
    return TransferFrame.unpack(frame, FrameType.VARIABLE, props)


@pytest.mark.parametrize("protected", [False, True])
def test_spacepackets_parses_our_frames_and_we_parse_theirs(tmp_path, protected: bool) -> None:
    from spacepackets.ccsds.spacepacket import PacketId, PacketType, parse_space_packets
    from spacepackets.uslp.frame import TfdzConstructionRules, TransferFrameDataField, UslpProtocolIdentifier
    from spacepackets.uslp.header import BypassSequenceControlFlag, PrimaryHeader

    vehicle, ground = pair(tmp_path)
    pkts = [encode_tm(Apid.EVENT, i, 3.5, {"id": i}) for i in range(3)]
    frame = Framer(0x1234, security=vehicle.tx if protected else None).pack(VC.REALTIME, pkts)[0]
    parsed = _uslp(frame, protected)
    h = parsed.header
    assert (h.scid, h.vcid, h.map_id, h.src_dest, h.vcf_count_len, h.vcf_count, h.frame_len) == (
        0x1234, VC.REALTIME, 0, SourceOrDestField.SOURCE, 4, 0, len(frame) - 1)
    assert parsed.tfdf.tfdz_contr_rules == TfdzConstructionRules.VpNoSegmentation
    zone = parsed.tfdf.tfdz[:-16] if protected else parsed.tfdf.tfdz
    ids = [PacketId(PacketType.TM, True, Apid.EVENT)]
    assert [bytes(p) for p in parse_space_packets(bytearray(zone), ids).tm_list] == pkts

    # a frame spacepackets builds (plain: it has no SDLS) is one we read
    theirs = TransferFrame(
        PrimaryHeader(scid=0x1234, src_dest=SourceOrDestField.SOURCE, vcid=1, map_id=0, frame_len=0,
                      bypass_seq_ctrl_flag=BypassSequenceControlFlag.EXPEDITED_QOS, vcf_count_len=4, vcf_count=9),
        TransferFrameDataField(TfdzConstructionRules.VpNoSegmentation,
                               UslpProtocolIdentifier.SPACE_PACKETS_ENCAPSULATION_PACKETS, b"".join(pkts)),
    )
    theirs.set_frame_len_in_header()
    ours = decode_frame(bytes(theirs.pack()))
    assert (ours.scid, ours.vcid, ours.count, list(ours.packets)) == (0x1234, 1, 9, pkts)


def test_spacepackets_reads_the_segments_of_a_packet_spanning_frames() -> None:
    big = encode_tm(Apid.PRODUCT, 3, 4.0, bytes(range(256)) * 12)
    frames = Framer(66, max_frame_len=1024).pack(VC.BULK, [big])
    parsed = [_uslp(fr, False) for fr in frames]
    rules = [p.tfdf.tfdz_contr_rules for p in parsed]
    assert len(frames) == 4 and rules[0] == Rule.FIRST_SEGMENT and rules[-1] == Rule.LAST_SEGMENT
    assert set(rules[1:-1]) == {Rule.CONTINUING_SEGMENT}
    assert [p.header.vcf_count for p in parsed] == [0, 1, 2, 3]
    assert b"".join(bytes(p.tfdf.tfdz) for p in parsed) == big


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 0x3F), st.integers(0, 2**40), st.integers(16, 65536), st.booleans())
def test_our_primary_header_is_the_one_spacepackets_packs(scid: int, vcid: int, count: int, total: int,
                                                          uplink: bool) -> None:
    theirs = PrimaryHeader(
        scid=scid, src_dest=SourceOrDestField.DEST if uplink else SourceOrDestField.SOURCE, vcid=vcid, map_id=0,
        frame_len=total - 1, bypass_seq_ctrl_flag=BypassSequenceControlFlag.EXPEDITED_QOS,
        prot_ctrl_cmd_flag=ProtocolCommandFlag.USER_DATA, op_ctrl_flag=False, vcf_count_len=4,
        vcf_count=count % 2**32,
    ).pack()
    assert frames_mod._header(scid, vcid, count, total, uplink) == bytes(theirs)


@settings(max_examples=1000, deadline=None)
@given(st.binary(min_size=11, max_size=16))
def test_we_read_any_primary_header_as_spacepackets_does(data: bytes) -> None:
    ours = frames_mod.parse_header(data)
    if ours.version != 0b1100 or ours.truncated or ours.vcf_count_len > len(data) - 7:
        # spacepackets refuses these; decode_frame refuses them too (and any count length but 4)
        with pytest.raises(Exception):  # noqa: B017 - its own exception classes
            PrimaryHeader.unpack(data)
        return
    theirs = PrimaryHeader.unpack(data)
    assert (ours.scid, ours.uplink, ours.vcid, ours.map_id, ours.frame_len, ours.bypass, ours.prot_ctrl,
            ours.op_ctrl_flag, ours.vcf_count_len) == (
        theirs.scid, theirs.src_dest == SourceOrDestField.DEST, theirs.vcid, theirs.map_id, theirs.frame_len,
        int(theirs.bypass_seq_ctrl_flag), int(theirs.prot_ctrl_cmd_flag), bool(theirs.op_ctrl_flag),
        theirs.vcf_count_len)
    if ours.vcf_count_len == 4:  # the only count length this link reads
        assert ours.vcf_count == theirs.vcf_count
