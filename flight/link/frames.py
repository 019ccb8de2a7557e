"""Transfer frames: CCSDS USLP (732.1-B) frames of variable length, with SDLS authentication.

The primary header is packed and read with one precompiled format, held byte for byte to
``spacepackets``' ``uslp`` packing and reading by the tests; the data field header, the SDLS
fields and the FECF are ours (spacepackets computes the FECF the same way, CRC-16/CCITT-FALSE,
and knows no SDLS).

Layout (big-endian), every field in CCSDS bit order::

    primary header, 11 bytes: TFVN 4 bits (=12) | SCID 16 | source/destination 1 (0 downlink,
        1 uplink) | VCID 6 | MAP ID 4 (=0) | end of primary header 1 (=0) | frame length 16
        (total - 1) | bypass 1 (=1, expedited: no COP) | protocol control 1 (=0) | spare 2 |
        OCF flag 1 (=0) | VCF count length 3 (=4) | VCF count 32 (per SCID and VC, wraps)
    security header (protected frames, ``sdls``): SPI u16 | sequence number u64
    data field header, 1 byte: construction rule 3 bits | protocol id 5 bits (=0, space packets)
    data zone: one or more whole space packets (rule 111), or one segment of a packet
        too long for one frame (rules 100 first, 101 continuing, 110 last)
    MAC, 16 bytes (protected frames): HMAC-SHA-256 of every byte before it, truncated
    FECF u16: CRC-16/CCITT-FALSE of every byte before it (the USLP frame error control field)

The layout is the link's managed parameters: whether a spacecraft's frames are protected is
configured on both ends, not signalled in the frame. A frame is bounded (``max_frame_len``,
default 4096 bytes). Checks on receipt, in order: the FECF (``crc_errors``), the header
(``malformed``), the spacecraft (``wrong_scid``), then for protected frames SPI, MAC and
anti-replay (``unknown_spi``, ``bad_mac``, ``replay``), then the packets (``malformed``). Only a
frame that passes every check is counted for the frame-count gaps and handed on.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from fastcrc import crc16
from spacepackets.uslp.header import BypassSequenceControlFlag, ProtocolCommandFlag, SourceOrDestField

from flight.link import sdls
from flight.link.layouts import HK_APIDS
from flight.link.packets import MAX_PACKET_LEN, Apid, PacketError, peek, split_packets

log = logging.getLogger(__name__)

FRAME_VERSION = 0b1100  # USLP transfer frame version number
VCF_COUNT_LEN = 4
HEADER_LEN = 7 + VCF_COUNT_LEN
TFDF_HEADER_LEN = 1
FECF_LEN = 2
PLAIN_OVERHEAD = HEADER_LEN + TFDF_HEADER_LEN + FECF_LEN
SECURITY_OVERHEAD = sdls.SH_LEN + sdls.MAC_LEN
#: the most a frame adds to the packets it carries (protected frames)
OVERHEAD = PLAIN_OVERHEAD + SECURITY_OVERHEAD
DEFAULT_MAX_FRAME = 4096
MAX_FRAME = 65536
COUNT_MODULO = 1 << (8 * VCF_COUNT_LEN)
UPID_SPACE_PACKETS = 0


class Rule(enum.IntEnum):
    """TFDZ construction rules used here (CCSDS 732.1-B, variable-length data zones)."""

    FIRST_SEGMENT = 0b100
    CONTINUING_SEGMENT = 0b101
    LAST_SEGMENT = 0b110
    WHOLE = 0b111  # no segmentation: one or more complete packets


_RULES = frozenset(Rule)  # checked for every frame built or read


class FrameError(ValueError):
    """Bytes that are not a valid frame."""


class CrcError(FrameError):
    """The frame's error control field does not match: corrupted in transit."""


class FrameSecurityError(FrameError):
    """A protected frame that failed security processing; ``reason`` says which check."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class VC(enum.IntEnum):
    """Virtual channels."""

    REALTIME = 0  # events and command responses
    HOUSEKEEPING = 1
    BULK = 2  # thumbnails and full products
    STORED = 3  # playback: packets sent again from the recorder (NAKed or timed out)
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
    rule: int = Rule.WHOLE
    #: the data zone of a segment frame (packets is then empty until the last segment)
    segment: bytes = b""
    uplink: bool = False
    spi: int | None = None
    sn: int | None = None


def fecf(data: bytes | memoryview) -> int:
    return crc16.ibm_3740(bytes(data))


# The primary header (CCSDS 732.1 USLP, the fields spacepackets' ``PrimaryHeader`` packs: MAP 0,
# not truncated, no OCF, a 4-byte frame count) with one precompiled format: the version, SCID,
# direction, VCID, MAP and truncation flag in one 32-bit word, the frame length, the flags byte,
# the count. tests/link/test_frames.py holds both ways to spacepackets' own packing and reading.
_HEAD = struct.Struct(">IHBI")
_FLAGS = (int(BypassSequenceControlFlag.EXPEDITED_QOS) << 7) | (int(ProtocolCommandFlag.USER_DATA) << 6) | VCF_COUNT_LEN
_DEST = int(SourceOrDestField.DEST)


def _header(scid: int, vcid: int, count: int, total: int, uplink: bool) -> bytes:
    """The primary header of a frame of ``total`` bytes (the caller checks the ranges)."""
    word = (FRAME_VERSION << 28) | (scid << 12) | ((_DEST if uplink else 0) << 11) | (vcid << 5)
    return _HEAD.pack(word, total - 1, _FLAGS, count % COUNT_MODULO)


class Header(NamedTuple):
    """The primary header's fields as read (:func:`parse_header`)."""

    version: int
    scid: int
    uplink: bool
    vcid: int
    map_id: int
    truncated: bool
    frame_len: int
    bypass: int
    prot_ctrl: int
    op_ctrl_flag: bool
    vcf_count_len: int
    vcf_count: int  # read as 4 bytes (what this link uses; the length field is checked after)


def parse_header(data: bytes) -> Header:
    """The fields of the first HEADER_LEN bytes of ``data``. Raises FrameError when shorter."""
    if len(data) < HEADER_LEN:
        raise FrameError(f"{len(data)} bytes is shorter than a frame header")
    word, frame_len, flags, count = _HEAD.unpack_from(data)
    return Header(word >> 28, (word >> 12) & 0xFFFF, bool((word >> 11) & 1), (word >> 5) & 0x3F, (word >> 1) & 0xF,
                  bool(word & 1), frame_len, flags >> 7, (flags >> 6) & 1, bool((flags >> 3) & 1), flags & 0b111,
                  count)


def encode_frame(
    scid: int,
    vcid: int,
    count: int,
    packets: Iterable[bytes],
    *,
    uplink: bool = False,
    rule: int = Rule.WHOLE,
    security: sdls.TxSA | None = None,
) -> bytes:
    """Build one frame around ``packets`` (a segment's bytes for the segment rules).
    Raises FrameError if a field does not fit."""
    data = b"".join(packets)
    if not 0 <= scid <= 0xFFFF or not 0 <= vcid <= 0x3F:
        raise FrameError(f"scid {scid} or vcid {vcid} out of range")
    if rule not in _RULES:
        raise FrameError(f"construction rule {rule} is not one Magpie uses")
    total = len(data) + (OVERHEAD if security is not None else PLAIN_OVERHEAD)
    if not data or total > MAX_FRAME:
        raise FrameError(f"frame data of {len(data)} bytes (must be 1..{MAX_FRAME - OVERHEAD})")
    head = _header(scid, vcid, count, total, uplink)
    tfdf = bytes([(int(rule) << 5) | UPID_SPACE_PACKETS]) + data
    if security is None:
        body = head + tfdf
    else:
        _, sh = security.header()
        covered = head + sh + tfdf
        body = covered + sdls.mac(security.key, covered)
    return body + struct.pack(">H", fecf(body))


def check_crc(data: bytes) -> bool:
    if len(data) < PLAIN_OVERHEAD:
        return False
    return fecf(memoryview(data)[: len(data) - FECF_LEN]) == int.from_bytes(data[-FECF_LEN:], "big")


def decode_frame(data: bytes, security: sdls.RxSA | Mapping[int, sdls.RxSA] | None = None) -> Frame:
    """Check the FECF, the header, the security (if the spacecraft's frames are protected), then
    cut the packets. Raises CrcError, FrameSecurityError or FrameError. The anti-replay window is
    not moved: the caller calls ``accept(sn)`` on the SA once it takes the frame."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FrameError(f"frame must be bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < PLAIN_OVERHEAD + 1:
        raise FrameError(f"{len(data)} bytes is shorter than a frame")
    if not check_crc(data):
        raise CrcError("frame error control field mismatch")
    header = parse_header(data)
    if header.version != FRAME_VERSION:
        raise FrameError(f"frame version {header.version} is not {FRAME_VERSION} (USLP)")
    if header.truncated:
        raise FrameError("bad frame header: a truncated primary header (this link sends whole ones)")
    scid, vcid, count, uplink = header.scid, header.vcid, header.vcf_count, header.uplink
    if header.map_id or header.op_ctrl_flag or header.vcf_count_len != VCF_COUNT_LEN:
        raise FrameError("frame header uses options this link does not (MAP, OCF, count length)")
    if header.frame_len + 1 != len(data):
        raise FrameError(f"frame length field {header.frame_len} disagrees with frame size {len(data)}")
    sa = security.get(scid) if isinstance(security, Mapping) else security
    pos, end_data, spi, sn = HEADER_LEN, len(data) - FECF_LEN, None, None
    if sa is not None:
        if len(data) < OVERHEAD + 1:
            raise FrameError(f"{len(data)} bytes is shorter than a protected frame")
        spi, sn = sdls.SECURITY_HEADER.unpack_from(data, pos)
        end_data -= sdls.MAC_LEN
        try:
            sa.check(spi, sn, data[:end_data], data[end_data : end_data + sdls.MAC_LEN])
        except sdls.SecurityError as exc:
            raise FrameSecurityError(exc.reason, f"scid {scid}: {exc}") from None
        pos += sdls.SH_LEN
    tfdf_head = data[pos]
    rule, upid = tfdf_head >> 5, tfdf_head & 0x1F
    zone = data[pos + TFDF_HEADER_LEN : end_data]
    if upid != UPID_SPACE_PACKETS or rule not in _RULES:
        raise FrameError(f"data field rule {rule:03b} / protocol {upid} is not space packets")
    if not zone:
        raise FrameError("empty data zone")
    if rule != Rule.WHOLE:
        return Frame(scid, vcid, count, (), rule, zone, uplink, spi, sn)
    try:
        packets = split_packets(zone)
    except PacketError as exc:
        raise FrameError(f"frame data is not whole packets: {exc}") from None
    return Frame(scid, vcid, count, tuple(packets), rule, b"", uplink, spi, sn)


class Framer:
    """Packs packets into bounded frames, one frame count sequence per virtual channel.

    With ``security`` every frame is protected (SDLS); ``uplink`` sets the frames' direction bit.
    A packet longer than a frame's data zone is cut into segments on consecutive frames.
    """

    def __init__(self, scid: int, max_frame_len: int = DEFAULT_MAX_FRAME, *, uplink: bool = False,
                 security: sdls.TxSA | None = None) -> None:
        if not OVERHEAD + 16 <= max_frame_len <= MAX_FRAME:
            raise ValueError(f"max_frame_len {max_frame_len} out of range")
        self.scid = scid
        self.max_frame_len = max_frame_len
        self.uplink = uplink
        self.security = security
        self._counts: dict[int, int] = {}

    @property
    def max_packet_len(self) -> int:
        """The longest packet one frame holds whole (longer ones are segmented)."""
        return self.max_frame_len - (OVERHEAD if self.security is not None else PLAIN_OVERHEAD)

    def _frame(self, vcid: int, packets: list[bytes], rule: int = Rule.WHOLE) -> bytes:
        count = self._counts.get(vcid, 0)
        self._counts[vcid] = (count + 1) % COUNT_MODULO
        return encode_frame(self.scid, vcid, count, packets, uplink=self.uplink, rule=rule,
                            security=self.security)

    def _segments(self, vcid: int, pkt: bytes) -> list[bytes]:
        n = self.max_packet_len
        parts = [pkt[i : i + n] for i in range(0, len(pkt), n)]
        rules = [Rule.FIRST_SEGMENT] + [Rule.CONTINUING_SEGMENT] * (len(parts) - 2) + [Rule.LAST_SEGMENT]
        return [self._frame(vcid, [part], rule) for part, rule in zip(parts, rules, strict=True)]

    def pack(self, vcid: int, packets: Iterable[bytes]) -> list[bytes]:
        """Frames holding ``packets`` in order, each as full as fits; a packet longer than a
        frame goes alone, in segments. A packet longer than a space packet can be raises."""
        frames: list[bytes] = []
        batch: list[bytes] = []
        size = 0
        for pkt in packets:
            if len(pkt) > MAX_PACKET_LEN:
                raise FrameError(f"packet of {len(pkt)} bytes is longer than a space packet can be")
            if size + len(pkt) > self.max_packet_len and batch:
                frames.append(self._frame(vcid, batch))
                batch, size = [], 0
            if len(pkt) > self.max_packet_len:
                frames.extend(self._segments(vcid, pkt))
                continue
            batch.append(pkt)
            size += len(pkt)
        if batch:
            frames.append(self._frame(vcid, batch))
        return frames

    def pack_by_apid(self, packets: Iterable[bytes], stored: Iterable[bytes] = ()) -> list[bytes]:
        """Frames for mixed packets, each on its APID's virtual channel (order kept per VC);
        ``stored`` (packets sent again from the recorder) go on the stored-data channel."""
        by_vc: dict[int, list[bytes]] = {}
        for pkt in packets:
            apid = peek(pkt)[0]
            vc = VC_FOR_APID.get(apid, VC.HOUSEKEEPING if apid in HK_APIDS else VC.BULK)
            by_vc.setdefault(vc, []).append(pkt)
        for pkt in stored:
            by_vc.setdefault(VC.STORED, []).append(pkt)
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
    unknown_spi: int = 0
    bad_mac: int = 0
    replay: int = 0
    frame_gaps: int = 0  # frames missing by frame count (per scid+vcid)
    segments_dropped: int = 0  # packets in segments that never completed (a frame lost between)
    packets: int = 0
    by_vc: dict[int, int] = field(default_factory=dict)

    @property
    def rejected_security(self) -> int:
        return self.unknown_spi + self.bad_mac + self.replay


class Deframer:
    """Receives frames: counts and drops the bad, returns the good, notices missing frame counts,
    puts segmented packets back together.

    ``security`` maps a spacecraft id to the SA that checks its frames; a spacecraft in it sends
    only protected frames (an unprotected one fails its MAC), one not in it only plain ones.
    """

    MAX_SEGMENTED = MAX_PACKET_LEN

    def __init__(self, accept_scids: Iterable[int] | None = None,
                 security: Mapping[int, sdls.RxSA] | None = None) -> None:
        self.accept = None if accept_scids is None else frozenset(accept_scids)
        self.security: dict[int, sdls.RxSA] = dict(security or {})
        self.stats = DeframerStats()
        self._next_count: dict[tuple[int, int], int] = {}
        self._partial: dict[tuple[int, int], bytearray] = {}
        self._orphan: set[tuple[int, int]] = set()  # the rest of a packet already counted as dropped

    def accept_frame(self, data: bytes) -> Frame | None:
        if not isinstance(data, bytes | bytearray | memoryview):
            self.stats.malformed += 1
            return None
        data = bytes(data)
        scid = (int.from_bytes(data[:3], "big") >> 4) & 0xFFFF if len(data) >= 3 else None
        if self.accept is not None and scid is not None and scid not in self.accept and check_crc(data):
            self.stats.wrong_scid += 1
            return None
        try:
            frame = decode_frame(data, self.security)
        except CrcError:
            self.stats.crc_errors += 1
            return None
        except FrameSecurityError as exc:
            setattr(self.stats, exc.reason, getattr(self.stats, exc.reason, 0) + 1)
            sa = self.security.get(scid) if scid is not None else None
            if sa is not None:
                sa.rejected(exc.reason)
            log.debug("dropped frame: %s", exc)
            return None
        except FrameError as exc:
            self.stats.malformed += 1
            log.debug("dropped malformed frame: %s", exc)
            return None
        sa = self.security.get(frame.scid)
        if sa is not None and frame.sn is not None:
            sa.accept(frame.sn)
        key = (frame.scid, frame.vcid)
        expected = self._next_count.get(key)
        if expected is not None and frame.count != expected:
            gap = (frame.count - expected) % COUNT_MODULO
            if gap < COUNT_MODULO // 2:
                self.stats.frame_gaps += gap
        self._next_count[key] = (frame.count + 1) % COUNT_MODULO
        self.stats.frames_ok += 1
        self.stats.by_vc[frame.vcid] = self.stats.by_vc.get(frame.vcid, 0) + 1
        frame = self._reassemble(key, frame, expected)
        self.stats.packets += len(frame.packets)
        return frame

    def _reassemble(self, key: tuple[int, int], frame: Frame, expected: int | None) -> Frame:
        """Segments of one packet come on consecutive frames of one VC; a packet missing one is
        dropped (counted once in ``segments_dropped``) and recovered by the packet-level NAK."""
        partial = self._partial.pop(key, None)
        orphan = key in self._orphan
        self._orphan.discard(key)
        in_order = expected is None or frame.count == expected
        if partial is not None and (frame.rule in (Rule.WHOLE, Rule.FIRST_SEGMENT) or not in_order):
            self.stats.segments_dropped += 1
            partial = None
            orphan = True
        if frame.rule == Rule.WHOLE:
            return frame
        if frame.rule == Rule.FIRST_SEGMENT:
            self._partial[key] = bytearray(frame.segment)
            return frame
        if partial is None or len(partial) + len(frame.segment) > self.MAX_SEGMENTED:
            if partial is not None or not orphan:
                self.stats.segments_dropped += 1
            if frame.rule == Rule.CONTINUING_SEGMENT:
                self._orphan.add(key)
            return frame
        partial += frame.segment
        if frame.rule == Rule.CONTINUING_SEGMENT:
            self._partial[key] = partial
            return frame
        try:
            packets = split_packets(bytes(partial))
        except PacketError as exc:
            self.stats.malformed += 1
            log.debug("dropped a segmented packet: %s", exc)
            return frame
        if len(packets) != 1:
            self.stats.malformed += 1
            return frame
        return Frame(frame.scid, frame.vcid, frame.count, tuple(packets), frame.rule, b"", frame.uplink,
                     frame.spi, frame.sn)
