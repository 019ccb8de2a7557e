"""Transfer frames: whole packets on a virtual channel, with a frame count and a CRC-32.

Layout (big-endian), ``HEADER_LEN`` = 10 bytes before the data and 4 after::

    version u8 (=1) | scid u16 | vcid u8 | frame count u32 (per scid+vcid, wraps) |
    data length u16 | data: one or more whole space packets | CRC-32 u32 (zlib.crc32 of all before)

A frame is bounded (``max_frame_len``, default 4096 bytes, at most 65549). A frame whose CRC
fails is counted and dropped before any field past the CRC check is trusted; a frame that passes
the CRC but does not hold whole packets is counted as malformed and dropped whole.
"""

from __future__ import annotations

import enum
import logging
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from flight.link.layouts import HK_APIDS
from flight.link.packets import Apid, PacketError, peek, split_packets

log = logging.getLogger(__name__)

FRAME_VERSION = 1
HEADER = struct.Struct(">BHBIH")
HEADER_LEN = HEADER.size
CRC_LEN = 4
OVERHEAD = HEADER_LEN + CRC_LEN
DEFAULT_MAX_FRAME = 4096
COUNT_MODULO = 1 << 32


class FrameError(ValueError):
    """Bytes that are not a valid frame."""


class CrcError(FrameError):
    """The frame's CRC does not match: corrupted in transit."""


class VC(enum.IntEnum):
    """Virtual channels."""

    REALTIME = 0  # events and command responses
    HOUSEKEEPING = 1
    BULK = 2  # thumbnails and full products
    UPLINK = 7  # commands and link control


VC_FOR_APID: dict[int, int] = {
    Apid.EVENT: VC.REALTIME,
    Apid.CMD_RESPONSE: VC.REALTIME,
    Apid.HOUSEKEEPING: VC.HOUSEKEEPING,
    Apid.THUMBNAIL: VC.BULK,
    Apid.PRODUCT: VC.BULK,
    Apid.TC_COMMAND: VC.UPLINK,
    Apid.TC_LINK: VC.UPLINK,
}


@dataclass(frozen=True, slots=True)
class Frame:
    scid: int
    vcid: int
    count: int
    packets: tuple[bytes, ...]


def encode_frame(scid: int, vcid: int, count: int, packets: Iterable[bytes]) -> bytes:
    """Build one frame from whole packets. Raises FrameError if a field does not fit."""
    data = b"".join(packets)
    if not 0 <= scid <= 0xFFFF or not 0 <= vcid <= 0xFF:
        raise FrameError(f"scid {scid} or vcid {vcid} out of range")
    if not data or len(data) > 0xFFFF:
        raise FrameError(f"frame data of {len(data)} bytes (must be 1..65535)")
    body = HEADER.pack(FRAME_VERSION, scid, vcid, count % COUNT_MODULO, len(data)) + data
    return body + struct.pack(">I", zlib.crc32(body))


def check_crc(data: bytes) -> bool:
    if len(data) < OVERHEAD:
        return False
    (crc,) = struct.unpack_from(">I", data, len(data) - CRC_LEN)
    return zlib.crc32(memoryview(data)[: len(data) - CRC_LEN]) == crc


def decode_frame(data: bytes) -> Frame:
    """Check the CRC, then the header, then cut the packets. Raises CrcError or FrameError."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FrameError(f"frame must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < OVERHEAD + 1:
        raise FrameError(f"{len(data)} bytes is shorter than a frame")
    if not check_crc(data):
        raise CrcError("frame CRC mismatch")
    version, scid, vcid, count, length = HEADER.unpack_from(data, 0)
    if version != FRAME_VERSION:
        raise FrameError(f"frame version {version} is not {FRAME_VERSION}")
    if length != len(data) - OVERHEAD:
        raise FrameError(f"data length field {length} disagrees with frame size {len(data)}")
    try:
        packets = split_packets(data[HEADER_LEN : HEADER_LEN + length])
    except PacketError as exc:
        raise FrameError(f"frame data is not whole packets: {exc}") from None
    return Frame(scid, vcid, count, tuple(packets))


class Framer:
    """Packs packets into bounded frames, one frame count sequence per virtual channel."""

    def __init__(self, scid: int, max_frame_len: int = DEFAULT_MAX_FRAME) -> None:
        if not OVERHEAD + 16 <= max_frame_len <= OVERHEAD + 0xFFFF:
            raise ValueError(f"max_frame_len {max_frame_len} out of range")
        self.scid = scid
        self.max_frame_len = max_frame_len
        self._counts: dict[int, int] = {}

    @property
    def max_packet_len(self) -> int:
        return self.max_frame_len - OVERHEAD

    def _frame(self, vcid: int, packets: list[bytes]) -> bytes:
        count = self._counts.get(vcid, 0)
        self._counts[vcid] = (count + 1) % COUNT_MODULO
        return encode_frame(self.scid, vcid, count, packets)

    def pack(self, vcid: int, packets: Iterable[bytes]) -> list[bytes]:
        """Frames holding ``packets`` in order, each as full as fits. An oversized packet raises."""
        frames: list[bytes] = []
        batch: list[bytes] = []
        size = 0
        for pkt in packets:
            if len(pkt) > self.max_packet_len:
                raise FrameError(
                    f"packet of {len(pkt)} bytes exceeds the frame limit {self.max_packet_len}"
                )
            if size + len(pkt) > self.max_packet_len:
                frames.append(self._frame(vcid, batch))
                batch, size = [], 0
            batch.append(pkt)
            size += len(pkt)
        if batch:
            frames.append(self._frame(vcid, batch))
        return frames

    def pack_by_apid(self, packets: Iterable[bytes]) -> list[bytes]:
        """Frames for mixed packets, each on its APID's virtual channel (order kept per VC)."""
        by_vc: dict[int, list[bytes]] = {}
        for pkt in packets:
            apid = peek(pkt)[0]
            vc = VC_FOR_APID.get(apid, VC.HOUSEKEEPING if apid in HK_APIDS else VC.BULK)
            by_vc.setdefault(vc, []).append(pkt)
        out: list[bytes] = []
        for vcid in sorted(by_vc):
            out.extend(self.pack(vcid, by_vc[vcid]))
        return out


@dataclass
class DeframerStats:
    frames_ok: int = 0
    crc_errors: int = 0
    malformed: int = 0
    wrong_scid: int = 0
    frame_gaps: int = 0  # frames missing by frame count (per scid+vcid)
    packets: int = 0
    by_vc: dict[int, int] = field(default_factory=dict)


class Deframer:
    """Receives frames: counts and drops the bad, returns the good, notices missing frame counts."""

    def __init__(self, accept_scids: Iterable[int] | None = None) -> None:
        self.accept = None if accept_scids is None else frozenset(accept_scids)
        self.stats = DeframerStats()
        self._next_count: dict[tuple[int, int], int] = {}

    def accept_frame(self, data: bytes) -> Frame | None:
        try:
            frame = decode_frame(data)
        except CrcError:
            self.stats.crc_errors += 1
            return None
        except FrameError as exc:
            self.stats.malformed += 1
            log.debug("dropped malformed frame: %s", exc)
            return None
        if self.accept is not None and frame.scid not in self.accept:
            self.stats.wrong_scid += 1
            return None
        key = (frame.scid, frame.vcid)
        expected = self._next_count.get(key)
        if expected is not None and frame.count != expected:
            gap = (frame.count - expected) % COUNT_MODULO
            if gap < COUNT_MODULO // 2:
                self.stats.frame_gaps += gap
        self._next_count[key] = (frame.count + 1) % COUNT_MODULO
        self.stats.frames_ok += 1
        self.stats.packets += len(frame.packets)
        self.stats.by_vc[frame.vcid] = self.stats.by_vc.get(frame.vcid, 0) + 1
        return frame
