"""CCSDS Space Packets for the Magpie link: primary header, time header, payload.

A packet is the CCSDS primary header (6 bytes, built and parsed by the ``spacepackets``
library), a 6-byte time secondary header, and a payload. Downlink (TM) payloads are msgpack
maps; uplink (TC) payloads are authenticated command or link-control bytes (see
:mod:`flight.link.auth`).

Time secondary header (CUC-style, big-endian): ``coarse`` u32 whole seconds since the mission
epoch, then ``fine`` u16 in units of 2**-16 s (about 15.3 us). Spacecraft time before the epoch
or past 2**32 s is refused.

Sequence counts are 14 bits per APID and wrap from 16383 to 0 (:class:`SequenceCounter`).
Anything malformed raises :class:`PacketError` and nothing else.
"""

from __future__ import annotations

import enum
import struct
import threading
from typing import Any, NamedTuple

import msgpack
from spacepackets.ccsds.spacepacket import (
    SequenceFlags,
)

PRIMARY_HEADER_LEN = 6
TIME_HEADER_LEN = 6
HEADER_LEN = PRIMARY_HEADER_LEN + TIME_HEADER_LEN
SEQ_MODULO = 1 << 14
MAX_PACKET_LEN = PRIMARY_HEADER_LEN + 65536  # data length field + 1
FINE_PER_S = 1 << 16


class PacketError(ValueError):
    """Bytes that are not a well-formed Magpie space packet."""


class Apid(enum.IntEnum):
    """One application process id per packet kind."""

    EVENT = 0x010
    CMD_RESPONSE = 0x011
    HOUSEKEEPING = 0x020
    THUMBNAIL = 0x030
    PRODUCT = 0x031
    TC_COMMAND = 0x080  # ground -> vehicle, authenticated command
    TC_LINK = 0x081  # ground -> vehicle, authenticated ACK/NAK link control


TM_APIDS = frozenset(
    {Apid.EVENT, Apid.CMD_RESPONSE, Apid.HOUSEKEEPING, Apid.THUMBNAIL, Apid.PRODUCT}
)
TC_APIDS = frozenset({Apid.TC_COMMAND, Apid.TC_LINK})
#: hosted payloads' data products, one APID per payload slot (flight.payload.ids); chunk maps
PAYLOAD_APIDS = range(0x040, 0x060)


def _time_fields(time_s: float) -> tuple[int, int]:
    """(coarse, fine) of the time header: spacecraft seconds rounded to the nearest fine tick."""
    if not 0.0 <= time_s < 2**32:
        raise PacketError(f"time {time_s!r} s is outside the time header's range [0, 2**32)")
    coarse, fine = divmod(round(time_s * FINE_PER_S), FINE_PER_S)
    if coarse >= 2**32:
        coarse, fine = 2**32 - 1, FINE_PER_S - 1
    return coarse, fine


def encode_time(time_s: float) -> bytes:
    """Spacecraft seconds -> 6-byte CUC-style time header (rounded to the nearest fine tick)."""
    return struct.pack(">IH", *_time_fields(time_s))


def decode_time(data: bytes, offset: int = 0) -> float:
    """6-byte time header -> spacecraft seconds (exact: coarse + fine / 65536)."""
    if len(data) - offset < TIME_HEADER_LEN:
        raise PacketError("time header truncated")
    coarse, fine = struct.unpack_from(">IH", data, offset)
    return coarse + fine / FINE_PER_S


class Packet(NamedTuple):
    """A parsed packet: header fields, spacecraft time and the raw payload bytes (a named tuple:
    one is made for every packet the ground reads)."""

    apid: int
    seq: int
    time_s: float
    payload: bytes
    telecommand: bool = False

    def value(self) -> Any:
        """The payload decoded as msgpack (TM packets). Raises PacketError if it is not."""
        return unpack_payload(self.payload)


def encode_packet(
    apid: int, seq: int, time_s: float, payload: bytes, telecommand: bool = False
) -> bytes:
    """Build one packet. Raises PacketError for an out-of-range field or oversized payload.

    The primary and time headers are packed with one precompiled format (``_HEADERS``, the fields
    spacepackets' ``SpacePacketHeader`` packs: version 0, the type, a secondary header, unsegmented);
    tests/link/test_packets.py holds every field to spacepackets' own packing."""
    if not 0 <= apid <= 0x7FF:
        raise PacketError(f"APID {apid} does not fit 11 bits")
    if not 0 <= seq < SEQ_MODULO:
        raise PacketError(f"sequence count {seq} does not fit 14 bits")
    data_len = TIME_HEADER_LEN + len(payload) - 1
    if data_len > 0xFFFF:
        raise PacketError(f"payload of {len(payload)} bytes is too long for one packet")
    coarse, fine = _time_fields(time_s)
    ident = (_TC_BIT if telecommand else 0) | _SEC_HEADER_BIT | apid
    return _HEADERS.pack(ident, _UNSEGMENTED_BITS | seq, data_len, coarse, fine) + bytes(payload)


_PACKERS = threading.local()  # one msgpack Packer a thread, reused (packb makes one a call)


def pack_payload(obj: Any) -> bytes:
    """msgpack with binary kept as bytes and str as str (the bytes of ``msgpack.packb``)."""
    packer = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    try:
        return packer.pack(obj)  # a failed pack leaves the packer empty for the next
    except (TypeError, ValueError, OverflowError) as exc:
        raise PacketError(f"payload cannot be packed: {exc}") from exc


def unpack_payload(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise PacketError(f"payload is not msgpack: {type(exc).__name__}") from None


def encode_tm(apid: int, seq: int, time_s: float, obj: Any) -> bytes:
    """A telemetry packet whose payload is ``obj`` as msgpack."""
    return encode_packet(apid, seq, time_s, pack_payload(obj))


# Parsing reads the primary and time headers with one precompiled format (the fields are the
# ones spacepackets builds in encode_packet; tests/link/test_packets.py checks the two agree).
_PRIMARY = struct.Struct(">HHH")
_HEADERS = struct.Struct(">HHHIH")
_TC_BIT, _SEC_HEADER_BIT = 0x1000, 0x0800
_UNSEGMENTED = int(SequenceFlags.UNSEGMENTED)
_UNSEGMENTED_BITS = _UNSEGMENTED << 14


def peek(data: bytes) -> tuple[int, int, int]:
    """(apid, seq, total length) from a primary header, without checking the rest."""
    if len(data) < PRIMARY_HEADER_LEN:
        raise PacketError(f"{len(data)} bytes is shorter than a primary header")
    ident, count, data_len = _PRIMARY.unpack_from(data)
    return ident & 0x7FF, count & 0x3FFF, data_len + PRIMARY_HEADER_LEN + 1


def apid_of(data: bytes) -> int:
    """The APID of a packet Magpie just built (no length check: :func:`peek` checks)."""
    return ((data[0] << 8) | data[1]) & 0x7FF


def decode_packet(data: bytes) -> Packet:
    """Parse exactly one packet (no trailing bytes). Raises PacketError if malformed."""
    if len(data) < HEADER_LEN:
        raise PacketError(f"{len(data)} bytes is shorter than the packet headers")
    ident, count, data_len, coarse, fine = _HEADERS.unpack_from(data)
    if ident >> 13:
        raise PacketError(f"packet version {ident >> 13} is not 0")
    if not ident & _SEC_HEADER_BIT:
        raise PacketError("secondary header flag is clear; Magpie packets carry a time header")
    if count >> 14 != _UNSEGMENTED:
        raise PacketError("segmented packets are not used on this link")
    if data_len + PRIMARY_HEADER_LEN + 1 != len(data):
        raise PacketError(f"length field says {data_len + PRIMARY_HEADER_LEN + 1} bytes, got {len(data)}")
    return Packet(
        apid=ident & 0x7FF,
        seq=count & 0x3FFF,
        time_s=coarse + fine / FINE_PER_S,
        payload=bytes(data[HEADER_LEN:]),
        telecommand=bool(ident & _TC_BIT),
    )


def split_packets(data: bytes) -> list[bytes]:
    """Cut a concatenation of whole packets apart by their length fields."""
    out: list[bytes] = []
    offset = 0
    view = memoryview(data)
    while offset < len(data):
        _, _, length = peek(view[offset : offset + PRIMARY_HEADER_LEN])
        if length < HEADER_LEN or offset + length > len(data):
            raise PacketError(f"packet at byte {offset} runs past the end ({length} bytes)")
        out.append(bytes(view[offset : offset + length]))
        offset += length
    return out


def seq_add(seq: int, n: int) -> int:
    return (seq + n) % SEQ_MODULO


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b on the 14-bit circle, in [-8192, 8191]."""
    d = (a - b) % SEQ_MODULO
    return d - SEQ_MODULO if d >= SEQ_MODULO // 2 else d


class SequenceCounter:
    """Per-APID 14-bit source sequence counts that wrap. ``resume`` continues after a restart."""

    def __init__(self, start: dict[int, int] | None = None) -> None:
        self._next: dict[int, int] = {}
        for apid, last in (start or {}).items():
            self._next[int(apid)] = seq_add(int(last), 1)

    def next(self, apid: int) -> int:
        seq = self._next.get(apid, 0)
        self._next[apid] = seq_add(seq, 1)
        return seq

    def peek(self, apid: int) -> int:
        return self._next.get(apid, 0)


class Packetizer:
    """Turns the flight software's outbound items into numbered TM packets."""

    def __init__(self, counters: SequenceCounter | None = None) -> None:
        self.counters = counters or SequenceCounter()

    def packet(self, apid: int, time_s: float, obj: Any) -> tuple[int, bytes]:
        """(seq, packet bytes) for one item on ``apid``."""
        seq = self.counters.next(apid)
        return seq, encode_tm(apid, seq, time_s, obj)

    def event(
        self, time_s: float, id: int, sev: str, text: str, args: list[Any]
    ) -> tuple[int, bytes]:
        return self.packet(
            Apid.EVENT, time_s, {"id": id, "sev": sev, "text": text, "args": list(args)}
        )

    def response(
        self, time_s: float, op: int, name: str, seq: int, stage: str, reason: str = ""
    ) -> tuple[int, bytes]:
        item = {"op": op, "name": name, "seq": seq, "stage": stage, "reason": reason}
        return self.packet(Apid.CMD_RESPONSE, time_s, item)

    def housekeeping(self, time_s: float, samples: list[tuple[int, Any]]) -> tuple[int, bytes]:
        # msgpack writes a tuple as the array it writes for a list: a list of (id, value) pairs
        # goes as it is (the same bytes, no copies)
        pairs = samples if type(samples) is list else [list(s) for s in samples]
        return self.packet(Apid.HOUSEKEEPING, time_s, {"s": pairs})

    def chunk(
        self,
        time_s: float,
        pid: int,
        idx: int,
        n: int,
        data: bytes,
        meta: dict | None,
        thumbnail: bool,
    ) -> tuple[int, bytes]:
        apid = Apid.THUMBNAIL if thumbnail else Apid.PRODUCT
        return self.packet(
            apid, time_s, {"pid": pid, "idx": idx, "n": n, "data": data, "meta": meta}
        )


# --------------------------------------------------------------------------------------------
# Link control (ground -> vehicle, inside an authenticated TC on Apid.TC_LINK).

AckRange = tuple[int, int, int]  # (apid, first_seq, last_seq), inclusive, may wrap


def encode_link_control(
    acks: list[AckRange], naks: list[tuple[int, list[int]]] | None = None
) -> bytes:
    """msgpack ``{"ack": [[apid, first, last], ...], "nak": [[apid, [seq, ...]], ...]}``."""
    return pack_payload(
        {"ack": [list(r) for r in acks], "nak": [[a, list(s)] for a, s in (naks or [])]}
    )


def decode_link_control(body: bytes) -> tuple[list[AckRange], list[tuple[int, list[int]]]]:
    """Inverse of :func:`encode_link_control`; anything ill-shaped raises PacketError."""
    obj = unpack_payload(body)
    try:
        acks = [(int(a), int(f), int(last)) for a, f, last in obj.get("ack", [])]
        naks = [(int(a), [int(s) for s in seqs]) for a, seqs in obj.get("nak", [])]
    except (AttributeError, TypeError, ValueError) as exc:
        raise PacketError(f"link control is ill-shaped: {exc}") from None
    for apid, first, last in acks:
        if not (0 <= apid <= 0x7FF and 0 <= first < SEQ_MODULO and 0 <= last < SEQ_MODULO):
            raise PacketError(f"ack range {(apid, first, last)} out of range")
    for apid, seqs in naks:
        if not 0 <= apid <= 0x7FF or any(not 0 <= s < SEQ_MODULO for s in seqs):
            raise PacketError(f"nak for APID {apid} out of range")
    return acks, naks


def seqs_to_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Collapse sequence counts (in arrival order, may wrap) into inclusive (first, last) runs."""
    out: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if out and out[-1][1] + 1 == s:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    # join a run ending at 16383 with one starting at 0
    if len(out) > 1 and out[-1][1] == SEQ_MODULO - 1 and out[0][0] == 0:
        first = out.pop()
        out[0] = (first[0], out[0][1])
    return out
