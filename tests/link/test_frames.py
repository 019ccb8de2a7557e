"""Frame codec: round trips, CRC catches corruption, garbage never decodes."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.link.frames import (
    OVERHEAD,
    VC,
    CrcError,
    Deframer,
    FrameError,
    Framer,
    check_crc,
    decode_frame,
    encode_frame,
)
from flight.link.packets import Apid, encode_tm

pytestmark = pytest.mark.timeout(60)

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


@given(
    scid=st.integers(0, 0xFFFF),
    vcid=st.integers(0, 255),
    count=st.integers(0, 2**32 - 1),
    pkts=packets,
)
@settings(max_examples=200)
def test_frame_round_trip(scid: int, vcid: int, count: int, pkts: list[bytes]) -> None:
    frame = decode_frame(encode_frame(scid, vcid, count, pkts))
    assert (frame.scid, frame.vcid, frame.count, list(frame.packets)) == (scid, vcid, count, pkts)


@given(st.binary(max_size=400))
@settings(max_examples=1000)
def test_arbitrary_bytes_never_decode_unless_crc_matches(data: bytes) -> None:
    try:
        decode_frame(data)
    except FrameError:
        return
    assert check_crc(data)


@given(pkts=packets, bit=st.integers(0, 10_000))
@settings(max_examples=300)
def test_any_single_bit_flip_is_caught(pkts: list[bytes], bit: int) -> None:
    data = bytearray(encode_frame(66, 0, 1, pkts))
    bit %= len(data) * 8
    data[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(CrcError):
        decode_frame(bytes(data))


def test_valid_crc_over_garbage_is_malformed_not_decoded() -> None:
    body = bytes([1, 0, 66, 0, 0, 0, 0, 0, 0, 5]) + b"\x01\x02\x03\x04\x05"
    data = body + zlib.crc32(body).to_bytes(4, "big")
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
    with pytest.raises(FrameError):
        f.pack(VC.BULK, [encode_tm(Apid.PRODUCT, 0, 0.0, bytes(600))])
    assert OVERHEAD == 14


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
    assert (d.stats.crc_errors, d.stats.frame_gaps, d.stats.wrong_scid, d.stats.frames_ok) == (
        1,
        2,
        1,
        2,
    )
