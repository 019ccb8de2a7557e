"""Property tests of the MCU wire format: CRC, message layouts, framing and the stream decoder."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.mcu import protocol as p

pytestmark = pytest.mark.timeout(60)

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i16 = st.integers(-0x8000, 0x7FFF)
i32 = st.integers(-0x80000000, 0x7FFFFFFF)
f32 = st.floats(width=32, allow_nan=False)
vec3 = st.tuples(f32, f32, f32)

MESSAGE_STRATEGIES = {
    p.Hello: st.builds(p.Hello, u8, u32),
    p.Version: st.builds(p.Version, u8, u8, u8, u8, u16, u32),
    p.Ack: st.builds(p.Ack, u16, u8),
    p.Nack: st.builds(p.Nack, u16, u8, u8),
    p.SetWheels: st.builds(p.SetWheels, i16, i16),
    p.Stop: st.just(p.Stop()),
    p.SetStreamRate: st.builds(p.SetStreamRate, u16),
    p.ResetEncoders: st.just(p.ResetEncoders()),
    p.SetWatchdog: st.builds(p.SetWatchdog, u16),
    p.Heartbeat: st.builds(p.Heartbeat, u32),
    p.SensorReport: st.builds(p.SensorReport, u32, i32, i32, f32, f32, vec3, vec3, f32, f32,
                              f32, f32, f32, f32, f32, f32, f32, u32),
    p.DrillStart: st.builds(p.DrillStart, u16, u16),
    p.DrillStop: st.just(p.DrillStop()),
    p.DrillRetract: st.just(p.DrillRetract()),
    p.ArmMove: st.builds(p.ArmMove, i16, i16),
    p.ArmScoop: st.just(p.ArmScoop()),
    p.ArmDeposit: st.just(p.ArmDeposit()),
    p.ContainerSeal: st.just(p.ContainerSeal()),
    p.AscentArm: st.builds(p.AscentArm, u8),
    p.SamplingReport: st.builds(p.SamplingReport, u32, f32, f32, f32, f32, u8, f32, f32, f32, f32, f32, f32,
                                f32, f32, u16),
}
any_message = st.one_of(*MESSAGE_STRATEGIES.values())


def test_catalogue_is_complete() -> None:
    assert set(MESSAGE_STRATEGIES) == set(p.MESSAGES.values())
    assert p.SensorReport.LAYOUT.size == 84
    assert p.SamplingReport.LAYOUT.size == 55


def test_crc_check_value_and_table() -> None:
    assert p.crc16(b"123456789") == 0x29B1
    assert p.crc16_table(b"123456789") == 0x29B1
    assert len(p.CRC16_TABLE) == 256 and p.CRC16_TABLE[1] == 0x1021


@given(st.binary(max_size=600))
def test_fast_crc_equals_table_crc(data: bytes) -> None:
    assert p.crc16(data) == p.crc16_table(data)


@given(st.integers(p.CRC_SHORT - 3, p.CRC_SHORT + 2).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
       st.integers(0, 0xFFFF))
def test_crc_is_the_same_either_side_of_the_short_data_switch(data: bytes, start: int) -> None:
    assert p.crc16(data) == p.crc16_table(data)
    assert p.crc16(data, start) == p.crc16_table(data, start)


@pytest.mark.parametrize("rest", [b"", b"\x01\x7f\x01\x00", bytes(range(250))])
def test_residue_check_accepts_exactly_the_right_crc(rest: bytes) -> None:
    """Of all 65536 values in a frame's CRC field, the check accepts the CRC of the rest alone, and
    the tables are what running the CRC on over a value's own two bytes gives."""
    accepted = [r for r in range(0x10000) if p.residue_ok(rest + bytes((r & 0xFF, r >> 8)))]
    assert accepted == [p.crc16_table(rest)]
    for r in range(0, 0x10000, 257):
        assert p.crc16_table(bytes((r & 0xFF, r >> 8)), r) == p.RESIDUE_LO[r & 0xFF] ^ p.RESIDUE_HI[r >> 8]


@given(st.binary(max_size=p.MAX_FRAME))
def test_residue_ok_is_the_crc_of_all_but_the_last_two_bytes(body: bytes) -> None:
    body = body.rjust(2, b"\x00")
    assert p.residue_ok(body) == (p.crc16_table(body[:-2]) == body[-2] | body[-1] << 8)


@settings(max_examples=300)
@given(st.binary(max_size=p.MAX_PAYLOAD), u8, u16, st.data())
def test_every_burst_of_up_to_16_bits_is_caught_and_counted(payload: bytes, msg_id: int, seq: int,
                                                             data: st.DataObject) -> None:
    """A CRC-16 detects every error burst no longer than 16 bits: spoil the decoded frame so
    (header, payload or CRC), frame it again, and it is rejected as a CRC error, by decode_frame
    with FrameError alone and by the stream decoder with its crc counter."""
    body = bytearray(cobs.decode(p.encode_frame(msg_id, seq, payload)[:-1]))
    start = data.draw(st.integers(0, len(body) * 8 - 1), label="first bit")
    length = data.draw(st.integers(1, min(16, len(body) * 8 - start)), label="burst length")
    pattern = data.draw(st.integers(0, (1 << length) - 1), label="pattern") | 1 | (1 << (length - 1))
    for k in range(length):
        if pattern >> k & 1:
            bit = start + k
            body[bit // 8] ^= 0x80 >> (bit % 8)
    spoiled = cobs.encode(bytes(body))
    with pytest.raises(p.FrameError) as err:
        p.decode_frame(spoiled)
    assert err.value.kind == "crc"
    dec = p.FrameDecoder()
    assert dec.feed(spoiled + b"\x00") == []
    assert dec.counters.crc == 1 and dec.counters.dropped == 1 and dec.counters.frames == 0


@settings(max_examples=300)
@given(st.binary(max_size=p.MAX_ENCODED + 8))
def test_decode_frame_raises_only_frame_error(data: bytes) -> None:
    """decode_frame's one documented failure is FrameError, with the kind a counter is named by."""
    try:
        packet = p.decode_frame(data)
    except p.FrameError as exc:
        assert exc.kind in ("cobs", "crc")
        assert hasattr(p.DecoderCounters(), exc.kind)
    else:
        assert p.encode_frame(packet.msg_id, packet.seq, packet.payload, packet.version)[:-1] == data \
            or len(packet.payload) > p.MAX_PAYLOAD


@given(st.binary(max_size=p.MAX_PAYLOAD), st.integers(0, 255), st.integers(0, 0xFFFF), st.integers(0, 255))
def test_fast_framing_is_byte_identical_to_the_reference(payload: bytes, msg_id: int, seq: int, version: int) -> None:
    """The hot path's frame equals one built step by step from the format's definition."""
    body = struct.pack("<BBH", version, msg_id, seq) + payload
    want = cobs.encode(body + struct.pack("<H", p.crc16_table(body))) + b"\x00"
    frame = p.encode_frame(msg_id, seq, payload, version=version)
    assert frame == want
    packet = p.decode_frame(frame[:-1])
    assert (packet.version, packet.msg_id, packet.seq, packet.payload) == (version, msg_id, seq, payload)


@given(any_message, u16)
def test_every_message_round_trips(msg: p.Message, seq: int) -> None:
    payload = msg.pack()
    assert len(payload) == msg.LAYOUT.size
    assert type(msg).unpack(payload) == msg
    frame = p.encode(msg, seq)
    assert frame.endswith(b"\x00") and b"\x00" not in frame[:-1]
    out = p.FrameDecoder().feed(frame)
    assert out == [p.Decoded(seq, msg)]


def test_pack_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError):
        p.SetWheels(40000, 0).pack()
    with pytest.raises(ValueError):
        p.SetWheels.from_mps(33.0, 0.0)
    with pytest.raises(ValueError):
        p.SetWheels.from_mps(float("nan"), 0.0)
    assert p.SetWheels.from_mps(0.5, -1.2345) == p.SetWheels(500, -1234)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=400), max_size=8))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    dec = p.FrameDecoder()
    for chunk in chunks:
        for item in dec.feed(chunk):
            assert isinstance(item.msg, p.Message)
        assert len(dec._buf) <= dec.max_encoded


@settings(max_examples=200)
@given(st.lists(st.tuples(any_message, u16), min_size=1, max_size=12), st.data())
def test_any_split_of_a_valid_stream_decodes_exactly(sent: list, data: st.DataObject) -> None:
    stream = b"".join(p.encode(m, s) for m, s in sent)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    dec = p.FrameDecoder()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += dec.feed(stream[a:b])
    assert [(d.msg, d.seq) for d in got] == sent
    assert dec.counters.dropped == 0


@settings(max_examples=200)
@given(st.lists(st.tuples(any_message, u16), min_size=1, max_size=8),
       st.lists(st.binary(min_size=1, max_size=300), max_size=8), st.data())
def test_noise_between_frames_never_yields_unsent_messages(sent, noise, data) -> None:
    pieces = [p.encode(m, s) for m, s in sent] + [n + b"\x00" for n in noise]
    order = data.draw(st.permutations(pieces))
    stream = b"".join(order)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    dec = p.FrameDecoder()
    got = []
    for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += dec.feed(stream[a:b])
    for item in got:
        assert (item.msg, item.seq) in sent


def _raw_frame(version: int, msg_id: int, seq: int, payload: bytes, crc_delta: int = 0) -> bytes:
    body = struct.pack("<BBH", version, msg_id, seq) + payload
    return cobs.encode(body + struct.pack("<H", p.crc16(body) ^ crc_delta)) + b"\x00"


def test_each_kind_of_bad_frame_is_counted_and_dropped() -> None:
    rejected = []
    dec = p.FrameDecoder(on_reject=lambda kind, pkt: rejected.append((kind, pkt.msg_id)))
    good = p.encode(p.Heartbeat(7), 1)
    stream = b"".join([
        _raw_frame(1, p.Heartbeat.MSG_ID, 2, b"\x01\x02\x03\x04", crc_delta=1),  # crc
        _raw_frame(1, p.Heartbeat.MSG_ID, 3, b"\x01\x02"),  # bad length
        _raw_frame(1, 0x7E, 4, b""),  # unknown id
        _raw_frame(9, p.Heartbeat.MSG_ID, 5, b"\x01\x02\x03\x04"),  # wrong version
        b"\x05\x01\x00",  # COBS code byte promises more than the frame holds
        b"\x02\x01\x00",  # decodes to one byte: shorter than header + crc
        b"\xff" * 5000 + b"\x00",  # oversize
        good,
    ])
    out = dec.feed(stream)
    assert out == [p.Decoded(1, p.Heartbeat(7))]
    c = dec.counters
    assert (c.crc, c.bad_length, c.unknown_id, c.version, c.cobs, c.oversize) == (1, 1, 1, 1, 2, 1)
    assert c.frames == 1 and c.dropped == 7
    assert rejected == [("bad_length", p.Heartbeat.MSG_ID), ("unknown_id", 0x7E),
                        ("version", p.Heartbeat.MSG_ID)]


def test_garbage_without_delimiter_never_grows_memory() -> None:
    dec = p.FrameDecoder()
    for _ in range(100):
        assert dec.feed(b"\x11" * 1000) == []
        assert len(dec._buf) <= p.MAX_ENCODED
    assert dec.counters.oversize == 1
    # the next delimiter ends the discarded run; the frame after it decodes
    assert dec.feed(b"\x00" + p.encode(p.Stop(), 9)) == [p.Decoded(9, p.Stop())]


def test_largest_payload_fits_the_decoder() -> None:
    frame = p.encode_frame(0x7F, 1, bytes(range(250)))
    assert len(frame) - 1 <= p.MAX_ENCODED
    pkt = p.decode_frame(frame[:-1])
    assert pkt.payload == bytes(range(250))
    with pytest.raises(ValueError):
        p.encode_frame(0x7F, 1, bytes(251))


def _reference(frame: bytes, version: int = p.PROTOCOL_VERSION) -> tuple[str, p.Decoded | None]:
    """What a frame should give, by the step-by-step definition: ("ok", decoded) or (kind, None)."""
    try:
        body = cobs.decode(frame)
    except cobs.DecodeError:
        return "cobs", None
    if len(body) < 6:
        return "cobs", None
    if p.crc16_table(body[:-2]) != struct.unpack("<H", body[-2:])[0]:
        return "crc", None
    got_version, msg_id, seq = struct.unpack("<BBH", body[:4])
    if got_version != version:
        return "version", None
    cls = p.MESSAGES.get(msg_id)
    if cls is None:
        return "unknown_id", None
    payload = body[4:-2]
    if len(payload) != cls.LAYOUT.size:
        return "bad_length", None
    return "ok", p.Decoded(seq, cls.unpack(payload))


frame_bodies = st.one_of(
    # well-formed messages, then the same with one field of the frame spoiled
    st.tuples(any_message, u16).map(lambda ms: p.encode(*ms)[:-1]),
    st.tuples(u8, u8, u16, st.binary(max_size=p.MAX_PAYLOAD), st.integers(0, 0xFFFF)).map(
        lambda f: _raw_frame(f[0] % 3, f[1], f[2], f[3], f[4] if f[4] % 4 == 0 else 0)[:-1]),
    st.binary(min_size=1, max_size=p.MAX_ENCODED).map(lambda b: b.replace(b"\x00", b"\x01")),
)


@settings(max_examples=500)
@given(frame_bodies)
def test_decoder_fast_path_agrees_with_the_definition(frame: bytes) -> None:
    """The decoder's fused path and its checked path give what the format defines, frame by frame."""
    kind, want = _reference(frame)
    dec = p.FrameDecoder()
    got = dec.feed(frame + b"\x00")
    c = dec.counters
    if kind == "ok":
        assert got == [want] and c.frames == 1 and c.dropped == 0
    else:
        assert got == [] and c.frames == 0 and c.dropped == 1
        assert getattr(c, kind) == 1


def test_frames_longer_than_the_protocol_are_classified_not_lost() -> None:
    """A decoder allowed longer frames checks their CRC and rejects them as it would any other."""
    rejected = []
    dec = p.FrameDecoder(max_encoded=2000, on_reject=lambda kind, pkt: rejected.append((kind, len(pkt.payload))))
    assert dec.feed(_raw_frame(1, p.Heartbeat.MSG_ID, 1, bytes(400))) == []
    assert dec.feed(_raw_frame(1, p.Heartbeat.MSG_ID, 2, bytes(400), crc_delta=4)) == []
    assert (dec.counters.bad_length, dec.counters.crc) == (1, 1)
    assert rejected == [("bad_length", 400)]


@given(any_message)
def test_compiled_field_access_matches_the_dataclass(msg: p.Message) -> None:
    """The generated value spreader and builder agree with the dataclass's own fields and init."""
    flat: list = []
    for f in dataclasses.fields(msg):
        v = getattr(msg, f.name)
        flat += list(v) if isinstance(v, tuple) else [v]
    assert tuple(flat) == type(msg)._values(msg)
    values = type(msg).LAYOUT.unpack(msg.pack())
    built = type(msg)._build(values)
    by_init = type(msg)(**{f.name: getattr(built, f.name) for f in dataclasses.fields(msg)})
    assert type(built) is type(msg) and built == by_init and hash(built) == hash(by_init)
    for f in dataclasses.fields(msg)[:1]:  # built instances stay frozen
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(built, f.name, 0)
