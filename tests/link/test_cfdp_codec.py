"""Property tests for CFDP carriage: PDUs in TM packets (APID 0x032) and in TC bodies, metadata."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spacepackets.cfdp import CrcFlag, Direction, LargeFileFlag, PduConfig, TransmissionMode
from spacepackets.cfdp.pdu import FileDataPdu, PduFactory
from spacepackets.cfdp.pdu.file_data import FileDataParams
from spacepackets.util import UnsignedByteField

from flight.clock import SimClock
from flight.link.cfdp import (
    APID_CFDP,
    TC_PREFIX,
    CfdpEntity,
    CfdpError,
    from_tc_body,
    meta_from_messages,
    meta_messages,
    parse_pdu,
    pdu_packet,
    safe_name,
    tc_body,
)
from flight.link.packets import PacketError, Packetizer, SequenceCounter, decode_packet

pytestmark = pytest.mark.timeout(60)


def file_data_pdu(src: int, dst: int, seq: int, offset: int, data: bytes, crc: bool) -> bytes:
    conf = PduConfig(source_entity_id=UnsignedByteField(src, 2), dest_entity_id=UnsignedByteField(dst, 2),
                     transaction_seq_num=UnsignedByteField(seq, 4), trans_mode=TransmissionMode.ACKNOWLEDGED,
                     file_flag=LargeFileFlag.NORMAL, crc_flag=CrcFlag.WITH_CRC if crc else CrcFlag.NO_CRC,
                     direction=Direction.TOWARDS_RECEIVER)
    return bytes(FileDataPdu(conf, FileDataParams(file_data=data, offset=offset)).pack())


# at least one byte of file data: spacepackets 0.32 packs an empty File Data PDU it cannot parse back
# (cfdp-py never makes one; an empty file is Metadata and EOF only)
pdus = st.builds(file_data_pdu, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 2**32 - 1),
                 st.integers(0, 2**32 - 1), st.binary(min_size=1, max_size=1500), st.booleans())


@settings(max_examples=150, deadline=None)
@given(pdu=pdus, start=st.integers(0, 16383), time_s=st.floats(0, 2**31, allow_nan=False))
def test_pdu_in_a_tm_packet_round_trips(pdu: bytes, start: int, time_s: float) -> None:
    pk = Packetizer(SequenceCounter({APID_CFDP: start}))
    seq, raw = pdu_packet(pk, time_s, pdu)
    pkt = decode_packet(raw)
    assert (pkt.apid, pkt.seq, pkt.telecommand) == (APID_CFDP, seq, False)
    assert pkt.payload == pdu
    back = parse_pdu(pkt.payload)
    orig = PduFactory.from_raw(pdu)
    assert (back.offset, back.file_data) == (orig.offset, orig.file_data)
    assert back.transaction_seq_num.value == orig.transaction_seq_num.value


def test_an_empty_or_oversized_pdu_spends_no_sequence_count() -> None:
    pk = Packetizer()
    for bad in (b"", b"x" * 70_000):
        with pytest.raises(PacketError):
            pdu_packet(pk, 1.0, bad)
    assert pk.counters.peek(APID_CFDP) == 0


@settings(max_examples=200, deadline=None)
@given(pdu=st.binary(min_size=1, max_size=2000))
def test_tc_body_round_trips(pdu: bytes) -> None:
    body = tc_body(pdu)
    assert body.startswith(TC_PREFIX)
    assert from_tc_body(body) == pdu


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=64))
def test_an_ordinary_command_body_is_not_taken_for_cfdp(body: bytes) -> None:
    got = from_tc_body(body)
    assert got is None or (body.startswith(TC_PREFIX) and got == body[len(TC_PREFIX):] and got)


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=300))
def test_garbage_is_refused_only_as_cfdp_error(data: bytes) -> None:
    try:
        parse_pdu(data)
    except CfdpError:
        pass


@settings(max_examples=100, deadline=None)
@given(meta=st.dictionaries(st.text(max_size=12), st.one_of(st.integers(-2**53, 2**53), st.text(max_size=200),
                                                             st.booleans(), st.none()), max_size=12))
def test_product_metadata_in_messages_to_user_round_trips(meta: dict) -> None:
    msgs = meta_messages(meta)
    assert all(len(m.value) <= 255 for m in msgs)
    assert meta_from_messages(msgs) == (meta or None)


@settings(max_examples=300, deadline=None)
@given(name=st.text(max_size=40))
def test_safe_names_stay_below_the_root(name: str) -> None:
    if safe_name(name):
        root = Path("/r")
        p = (root / name).resolve() if "\x00" not in name else None
        assert p is not None and root in (p, *p.parents)


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=200), pdus))
def test_any_bytes_into_an_entity_are_counted_never_raised(tmp_path_factory: pytest.TempPathFactory,
                                                            data: bytes) -> None:
    root = tmp_path_factory.mktemp("cfdp")
    sent: list[bytes] = []
    e = CfdpEntity(66, [7], root, SimClock(start_s=5.0).now, lambda r, p: sent.append(p))
    took = e.receive(data, remote=7)
    assert took or sum(e.rejects.values()) + e.stats.ignored == 1
