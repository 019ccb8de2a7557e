"""Packet codec: round trips, wrap of sequence counts, garbage never escapes as another error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.ccsds.spacepacket import (
    PacketId,
    PacketType,
    SequenceFlags,
    SpacePacketHeader,
    parse_space_packets,
)

from flight.link.packets import (
    SEQ_MODULO,
    Apid,
    PacketError,
    Packetizer,
    SequenceCounter,
    decode_link_control,
    decode_packet,
    decode_time,
    encode_link_control,
    encode_packet,
    encode_time,
    encode_tm,
    pack_payload,
    peek,
    seq_diff,
    seqs_to_ranges,
    split_packets,
)

pytestmark = pytest.mark.timeout(60)

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text(max_size=20)
    | st.binary(max_size=40)
    | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


@given(
    apid=st.integers(0, 0x7FF),
    seq=st.integers(0, SEQ_MODULO - 1),
    ticks=st.integers(0, 2**48 - 1),
    obj=values,
)
@settings(max_examples=200)
def test_tm_round_trip(apid: int, seq: int, ticks: int, obj: object) -> None:
    time_s = ticks / 65536
    data = encode_tm(apid, seq, time_s, obj)
    pkt = decode_packet(data)
    assert (pkt.apid, pkt.seq, pkt.time_s, pkt.telecommand) == (apid, seq, time_s, False)
    assert pkt.value() == obj


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_arbitrary_bytes_raise_only_packet_error(data: bytes) -> None:
    try:
        pkt = decode_packet(data)
    except PacketError:
        return
    try:
        pkt.value()
    except PacketError:
        pass
    try:
        split_packets(data)
    except PacketError:
        pass


@given(
    first=st.integers(0, 0x1FFF) | st.integers(0, 0xFFFF),  # version 0, or any
    count=st.integers(0xC000, 0xFFFF) | st.integers(0, 0xFFFF),  # unsegmented, or any
    rest=st.binary(min_size=6, max_size=30),
    fit=st.booleans(),
    other_len=st.integers(0, 0xFFFF),
)
@settings(max_examples=500)
def test_header_parse_agrees_with_spacepackets(first: int, count: int, rest: bytes, fit: bool, other_len: int) -> None:
    """peek and decode_packet read the primary header as spacepackets does, field by field, and
    refuse exactly the headers Magpie does not use."""
    data_len = len(rest) - 1 if fit else other_len
    head = first.to_bytes(2, "big") + count.to_bytes(2, "big") + data_len.to_bytes(2, "big")
    ref = SpacePacketHeader.unpack(head)
    data = head + rest
    assert peek(data) == (ref.apid, ref.seq_count, ref.packet_len)
    usable = (
        ref.ccsds_version == 0
        and ref.sec_header_flag
        and ref.seq_flags == SequenceFlags.UNSEGMENTED
        and ref.packet_len == len(data)
    )
    try:
        pkt = decode_packet(data)
    except PacketError:
        assert not usable
        return
    assert usable
    assert (pkt.apid, pkt.seq, pkt.telecommand) == (ref.apid, ref.seq_count, ref.packet_type == PacketType.TC)
    assert pkt.time_s == decode_time(data, 6) and pkt.payload == data[12:]


def test_time_header_is_coarse_and_fine() -> None:
    assert encode_time(1.5) == b"\x00\x00\x00\x01\x80\x00"
    assert decode_time(encode_time(123456.25)) == 123456.25
    with pytest.raises(PacketError):
        encode_time(-1.0)


def test_sequence_counts_wrap_per_apid() -> None:
    c = SequenceCounter({Apid.EVENT: SEQ_MODULO - 2})
    assert [c.next(Apid.EVENT) for _ in range(3)] == [SEQ_MODULO - 1, 0, 1]
    assert c.next(Apid.HOUSEKEEPING) == 0
    assert seq_diff(0, SEQ_MODULO - 1) == 1
    assert seq_diff(SEQ_MODULO - 1, 0) == -1


def test_out_of_range_fields_raise_packet_error() -> None:
    with pytest.raises(PacketError):
        encode_packet(0x800, 0, 0.0, b"x")
    with pytest.raises(PacketError):
        encode_packet(1, SEQ_MODULO, 0.0, b"x")
    with pytest.raises(PacketError):
        encode_packet(1, 0, 0.0, bytes(70000))


def test_split_and_spacepackets_parser_agree() -> None:
    p = Packetizer()
    pkts = [p.event(1.0, 7, "ACTIVITY_HI", "hello", [1])[1], p.housekeeping(2.0, [(1, 3.5)])[1]]
    joined = b"".join(pkts)
    assert split_packets(joined) == pkts
    ids = [
        PacketId(PacketType.TM, True, Apid.EVENT),
        PacketId(PacketType.TM, True, Apid.HOUSEKEEPING),
    ]
    assert [bytes(b) for b in parse_space_packets(joined, ids).tm_list] == pkts


def test_link_control_round_trip_and_ranges() -> None:
    acks = [(Apid.EVENT, 16380, 3), (Apid.HOUSEKEEPING, 0, 10)]
    naks = [(Apid.PRODUCT, [5, 6, 9])]
    assert decode_link_control(encode_link_control(acks, naks)) == (acks, naks)
    assert seqs_to_ranges([1, 2, 3, 7, 16382, 16383, 0]) == [(16382, 3), (7, 7)]
    with pytest.raises(PacketError):
        decode_link_control(b"\x93\x01\x02")


@given(
    apid=st.integers(0, 0x7FF),
    seq=st.integers(0, SEQ_MODULO - 1),
    ticks=st.integers(0, 2**48 - 1) | st.floats(0.0, 2**32, exclude_max=True).map(lambda t: round(t * 65536)),
    payload=st.binary(max_size=300),
    telecommand=st.booleans(),
)
@settings(max_examples=500)
def test_packet_encoding_agrees_with_spacepackets(apid: int, seq: int, ticks: int, payload: bytes,
                                                  telecommand: bool) -> None:
    """encode_packet packs its headers with one precompiled format: byte for byte what
    spacepackets' SpacePacket packs from the same fields and time header."""
    from spacepackets.ccsds.spacepacket import SpacePacket

    time_s = min(ticks / 65536, 2**32 - 1e-6)
    header = SpacePacketHeader(packet_type=PacketType.TC if telecommand else PacketType.TM, apid=apid,
                               seq_count=seq, data_len=6 + len(payload) - 1, sec_header_flag=True,
                               seq_flags=SequenceFlags.UNSEGMENTED)
    ref = bytes(SpacePacket(header, encode_time(time_s), payload).pack())
    assert encode_packet(apid, seq, time_s, payload, telecommand=telecommand) == ref


_leaf = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8)
         | st.binary(max_size=8) | st.just(object()))
_payload = st.recursive(_leaf, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=3) | st.integers(), inner, max_size=4), max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.lists(_payload, min_size=1, max_size=6))
def test_payloads_pack_as_msgpack_packb_does_and_a_failure_leaves_nothing_behind(objs: list) -> None:
    import msgpack

    for obj in objs:  # one packer reused: a pack that fails must not leak into the next
        try:
            want = msgpack.packb(obj, use_bin_type=True)
        except (TypeError, ValueError, OverflowError):
            with pytest.raises(PacketError, match="cannot be packed"):
                pack_payload(obj)
            continue
        assert pack_payload(obj) == want
