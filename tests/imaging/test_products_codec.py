"""Product segmentation and reassembly, segment lists and chunk checks: properties and bad input."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.link.packets import Apid, Packetizer, decode_packet
from flight.link.products import (
    ProductError,
    Reassembly,
    check_chunk,
    format_segments,
    parse_segments,
    product_chunks,
    segment,
)

pytestmark = pytest.mark.timeout(60)


@given(data=st.binary(max_size=20_000), chunk=st.integers(1, 4000), seed=st.integers(0, 2**32 - 1),
       dup=st.integers(0, 5))
@settings(max_examples=150, deadline=None)
def test_any_order_and_duplicates_reassemble_bit_identical(data: bytes, chunk: int, seed: int, dup: int) -> None:
    chunks = product_chunks(0, 7, data, {"format": "png"}, chunk, thumbnail=False)
    assert all(len(c.data) <= chunk for c in chunks)
    order = chunks + random.Random(seed).choices(chunks, k=dup)
    random.Random(seed).shuffle(order)
    asm = Reassembly(chunks[0].n)
    for c in order:
        assert asm.add(c.idx, c.n, c.data, c.meta)
    assert asm.complete and asm.missing == []
    assert asm.data() == data
    assert asm.meta is not None and asm.meta["size"] == len(data)


@given(data=st.binary(min_size=2, max_size=5000), chunk=st.integers(1, 500), drop=st.data())
@settings(max_examples=100, deadline=None)
def test_missing_segments_are_named_and_data_refused(data: bytes, chunk: int, drop: st.DataObject) -> None:
    chunks = product_chunks(0, 1, data, {}, chunk, thumbnail=True)
    lost = drop.draw(st.sets(st.integers(0, len(chunks) - 1), min_size=1))
    asm = Reassembly(chunks[0].n)
    for c in chunks:
        if c.idx not in lost:
            asm.add(c.idx, c.n, c.data, c.meta)
    assert asm.missing == sorted(lost)
    assert parse_segments(format_segments(asm.missing)) == sorted(lost)
    with pytest.raises(ProductError, match="missing"):
        asm.data()
    # a re-send of exactly the named segments completes it
    for c in product_chunks(0, 1, data, {}, chunk, thumbnail=True, only=parse_segments(format_segments(lost))):
        asm.add(c.idx, c.n, c.data, c.meta)
    assert asm.data() == data


@given(st.sets(st.integers(0, 70_000), max_size=200))
def test_segment_lists_round_trip(indices: set[int]) -> None:
    text = format_segments(indices)
    assert parse_segments(text, limit=70_001) == sorted(indices)
    assert len(text) <= 12 * max(1, len(indices))


@given(st.text(max_size=40))
def test_segment_list_parser_never_crashes(text: str) -> None:
    try:
        out = parse_segments(text)
    except ProductError:
        return
    assert out == sorted(set(out)) and all(0 <= i < 65535 for i in out)


def test_corrupted_piece_fails_the_crc_and_conflicts_are_counted() -> None:
    data = bytes(range(256)) * 10
    chunks = product_chunks(0, 3, data, {}, 700, thumbnail=False)
    asm = Reassembly(chunks[0].n)
    bad = bytearray(chunks[1].data)
    bad[5] ^= 0xFF
    for c in chunks:
        asm.add(c.idx, c.n, bytes(bad) if c.idx == 1 else c.data, c.meta)
    with pytest.raises(ProductError, match="CRC"):
        asm.data()
    assert not asm.add(1, chunks[0].n, chunks[1].data)  # disagrees with what is held
    assert not asm.add(0, chunks[0].n + 1, chunks[0].data)  # another segment count
    assert asm.conflicts == 2


@given(st.one_of(st.none(), st.integers(), st.text(), st.binary(),
                 st.dictionaries(st.sampled_from(["pid", "idx", "n", "data", "meta"]),
                                 st.one_of(st.integers(-5, 70_000), st.binary(max_size=8), st.text(max_size=4),
                                           st.none(), st.booleans()))))
def test_chunk_check_accepts_only_well_formed_maps(obj: object) -> None:
    try:
        pid, idx, n, data, meta = check_chunk(obj)
    except ProductError:
        return
    assert 0 <= idx < n and isinstance(data, bytes) and (meta is None or isinstance(meta, dict))


def test_chunk_packets_decode_to_what_was_segmented() -> None:
    data = bytes(random.Random(1).randbytes(9000))
    pk = Packetizer()
    for c in product_chunks(5_000_000_000 // 10**9, 12, data, {"format": "jpeg"}, 3000, thumbnail=True):
        _, raw = pk.chunk(1.0, c.pid, c.idx, c.n, c.data, c.meta, c.thumbnail)
        pkt = decode_packet(raw)
        assert pkt.apid == Apid.THUMBNAIL
        assert check_chunk(pkt.value())[:4] == (12, c.idx, c.n, c.data)


def test_segment_refuses_nonsense() -> None:
    with pytest.raises(ProductError):
        segment(b"abc", 0)
    with pytest.raises(ProductError):
        product_chunks(0, -1, b"x", {}, 10, thumbnail=False)
    for text in ("3-1", "a", "1-", "-4", "1,,2", "70000"):
        with pytest.raises(ProductError):
            parse_segments(text)
