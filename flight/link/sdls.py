"""Frame security in the layout of CCSDS SDLS (355.0-B): authentication of every transfer frame.

A protected frame carries, after its primary header, a security header and, after its data
field, a MAC trailer::

    primary header | SPI u16 | sequence number u64 | data field | MAC (16 bytes) | FECF

The MAC is HMAC-SHA-256 truncated to its first 128 bits (``MAC_LEN``), over every byte from the
primary header to the end of the data field, so neither the spacecraft, the virtual channel, the
frame count, the SPI, the sequence number nor any packet can be altered or forged. There is no
initialisation vector (authentication only, no encryption) and no padding.

A security association (SA) is one direction of one link: the uplink and the downlink each have
their own key (:func:`direction_key`, derived from the mission's key files, so a frame captured
in one direction is no good in the other) and their own sequence numbers. The sender
(:class:`TxSA`) hands out sequence numbers that strictly increase and never repeat, from blocks
it has persisted first, so a restart skips a few but never reuses one. The receiver
(:class:`RxSA`) keeps an anti-replay window: a number above the highest seen is accepted, one
within ``WINDOW`` below it only if not yet seen; on the vehicle it persists a reserved floor
(``high + reserve``) before it accepts past the last one, so after a restart nothing at or below
the floor is accepted again (an honest sender's frames below it are refused too, until the sender
passes it or resynchronises: the vehicle reports its uplink floor in telemetry and the ground
jumps past it). The ground persists its downlink window behind what it has seen instead (see
:meth:`LinkSecurity.for_ground`): a restarted ground never refuses the vehicle's frames.

The order of checks on receipt (after the frame error control field): SPI known
(``unknown_spi``), MAC (``bad_mac``, constant-time compare), sequence number (``replay``). Only a
frame that passes all three moves the window. Malformed input raises :class:`SecurityError` and
nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from flight.link.auth import Key
from flight.persist import CorruptFileError, move_aside, read_checked_json, write_checked_json

log = logging.getLogger(__name__)

SECURITY_HEADER = struct.Struct(">HQ")  # SPI, sequence number
SH_LEN = SECURITY_HEADER.size
MAC_LEN = 16
SN_MAX = 2**64 - 1
WINDOW = 64
RESERVE = 256
STATE_FORMAT = "magpie-sdls/1"
UP = "uplink"
DOWN = "downlink"


class SecurityError(ValueError):
    """A frame that fails security processing; ``reason`` is its counting key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def direction_key(key: Key, direction: str) -> Key:
    """The frame key of one direction, derived from a key file's key (HKDF-SHA-256, RFC 5869)."""
    if direction not in (UP, DOWN):
        raise ValueError(f"direction {direction!r} is not {UP!r} or {DOWN!r}")
    prk = key.tag(b"magpie-sdls-v1")  # extract: HMAC(key, salt) with the key as the secret
    okm = hmac.new(prk, f"frames {direction}".encode() + b"\x01", hashlib.sha256).digest()
    return Key(key.key_id, okm)


def mac(key: Key, data: bytes) -> bytes:
    return key.tag(data)[:MAC_LEN]


class SaStore:
    """The persisted state of a link's SAs: one checked JSON file and its ``.mirror``.

    Both copies are written every time; on load the higher value of each field wins (every value
    only grows), so losing or garbling one copy costs nothing. A copy that cannot be read is
    moved aside and named in :attr:`problems`; ``lost`` is true when a copy existed but none
    could be read.
    """

    def __init__(self, path: str | os.PathLike[str] | None, fallback: dict[str, int] | None = None) -> None:
        """``fallback``: a copy kept elsewhere (the recorder's); each value is the higher of the two."""
        self.path = Path(path) if path is not None else None
        self.values: dict[str, int] = {}
        self.problems: list[str] = []
        self.lost = False
        self.writes = 0
        if self.path is None:
            return
        seen = good = 0
        for p in (self.path, self.path.with_name(self.path.name + ".mirror")):
            try:
                body = read_checked_json(p, STATE_FORMAT)
            except CorruptFileError as exc:
                seen += 1
                moved = move_aside(p)
                self.problems.append(f"{p.name} unreadable ({exc}); kept as {moved.name if moved else '?'}")
                continue
            if body is None:
                continue
            seen += 1
            good += 1
            for k, v in dict(body.get("values") or {}).items():
                if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= SN_MAX:
                    self.values[str(k)] = max(self.values.get(str(k), 0), v)
        self.lost = seen > 0 and good == 0
        restored = False
        for k, v in (fallback or {}).items():
            if isinstance(v, int) and 0 <= v <= SN_MAX and v > self.values.get(k, 0):
                self.values[k] = v
                restored = True
        if restored and (self.lost or good == 0):
            self.problems.append("both copies gone; sequence numbers restored from the recorder's copy")
        for problem in self.problems:
            log.warning("frame security state: %s", problem)

    def get(self, name: str) -> int:
        return self.values.get(name, 0)

    def set(self, name: str, value: int, durable: bool = True) -> None:
        """Record ``value``. ``durable`` (the default) writes both copies and fsyncs them: a
        reservation ahead of what is used must survive a power cut. A floor kept behind what was
        seen (the ground's downlink window) need not: it rewrites the first copy only, without a
        sync. A power cut then leaves that copy as it was or unreadable, and the mirror still
        holds every durable value with an older floor, which is still behind: it costs the
        frames taken again, never a refusal."""
        self.values[name] = value
        if self.path is None:
            return
        copies = (self.path, self.path.with_name(self.path.name + ".mirror")) if durable else (self.path,)
        for p in copies:
            write_checked_json(p, STATE_FORMAT, {"values": dict(self.values)}, sync=durable)
        self.writes += 1


class TxSA:
    """Sending side of an SA: protects frames with strictly increasing sequence numbers."""

    def __init__(self, key: Key, store: SaStore, block: int = RESERVE, name: str = "") -> None:
        self.key = key
        self.spi = key.key_id
        self.store = store
        self.block = max(1, block)
        self._name = f"tx.{name or 'sa'}.{self.spi}"
        self.next_sn = max(1, store.get(self._name))
        self._reserved = self.next_sn

    def _take(self) -> int:
        if self.next_sn >= self._reserved:
            self._reserved = min(SN_MAX, self.next_sn + self.block)
            self.store.set(self._name, self._reserved)  # before the first of the block is used
        sn = self.next_sn
        if sn >= SN_MAX:
            raise SecurityError("sn_exhausted", f"SPI {self.spi}: rotate the key")
        self.next_sn += 1
        return sn

    def header(self) -> tuple[int, bytes]:
        """(sequence number, security header) for the next frame."""
        sn = self._take()
        return sn, SECURITY_HEADER.pack(self.spi, sn)

    def resync(self, receiver_floor: int) -> bool:
        """Jump past a sequence number the receiver reports as used; True if we jumped."""
        if not isinstance(receiver_floor, int) or not self.next_sn <= receiver_floor < SN_MAX - self.block:
            return False
        log.warning("frame SA %s: receiver is at %d, we were at %d; jumping past it",
                    self._name, receiver_floor, self.next_sn)
        self.next_sn = receiver_floor + 1
        self._reserved = self.next_sn + self.block
        self.store.set(self._name, self._reserved)
        return True


@dataclass
class RxStats:
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=lambda: {"unknown_spi": 0, "bad_mac": 0, "replay": 0})


class RxSA:
    """Receiving side of an SA: checks SPI, MAC and sequence number (see the module docstring)."""

    def __init__(self, key: Key, store: SaStore, reserve: int = RESERVE, name: str = "",
                 ahead: bool = True) -> None:
        self.key = key
        self.spi = key.key_id
        self.store = store
        self.reserve = max(1, reserve)
        #: True: persist a floor ``reserve`` ahead of what was seen (nothing seen is ever taken
        #: again; an honest sender below the floor must resynchronise). False: persist what was
        #: seen, every ``reserve`` numbers (a restart takes again at most that many frames it had
        #: seen, and never refuses an honest sender; for the downlink, where the ground cannot
        #: make the vehicle jump and what a replayed frame carries is already archived).
        self.ahead = ahead
        self._name = f"rx.{name or 'sa'}.{self.spi}"
        floor = store.get(self._name)
        #: everything at or below ``high`` whose bit is set in ``mask`` has been seen
        self.high = floor
        self.mask = (1 << WINDOW) - 1 if floor else 0
        self._reserved = floor
        self.stats = RxStats()

    @property
    def floor(self) -> int:
        """The highest sequence number accepted, or after a restart the reserved floor: what a
        sender must jump past (reported in telemetry; the reservation ahead of it is not)."""
        return self.high

    def check(self, spi: int, sn: int, covered: bytes, tag: bytes) -> None:
        """Raise SecurityError unless the frame is authentic and new. Does not move the window."""
        if spi != self.spi:
            raise SecurityError("unknown_spi", f"SPI {spi}")
        if not hmac.compare_digest(mac(self.key, covered), tag):
            raise SecurityError("bad_mac", f"SPI {spi}")
        if sn <= self.high:
            back = self.high - sn
            if back >= WINDOW or self.mask & (1 << back):
                raise SecurityError("replay", f"SPI {spi} sequence number {sn}, highest {self.high}")

    def accept(self, sn: int) -> None:
        """Move the window to include ``sn`` (after :meth:`check` and every other check passed)."""
        if sn > self.high:
            shift = sn - self.high
            self.mask = ((self.mask << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            self.high = sn
            if sn > self._reserved:
                self._reserved = min(SN_MAX, sn + self.reserve)
                self.store.set(self._name, self._reserved if self.ahead else sn, durable=self.ahead)
        else:
            self.mask |= 1 << (self.high - sn)
        self.stats.accepted += 1

    def rejected(self, reason: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1


@dataclass
class LinkSecurity:
    """The two SAs one end of a link holds: it protects what it sends and checks what it gets."""

    tx: TxSA
    rx: RxSA
    store: SaStore

    @classmethod
    def for_vehicle(cls, uplink_key: Key, downlink_key: Key | None, state_path: Path | None,
                    reserve: int = RESERVE, fallback: dict[str, int] | None = None) -> LinkSecurity:
        """The vehicle sends downlink and receives uplink. ``fallback``: see :class:`SaStore`."""
        store = SaStore(state_path, fallback)
        down = direction_key(downlink_key or uplink_key, DOWN)
        return cls(TxSA(down, store, reserve, DOWN), RxSA(direction_key(uplink_key, UP), store, reserve, UP), store)

    @classmethod
    def for_ground(cls, uplink_key: Key, downlink_key: Key | None, state_path: Path | None,
                   reserve: int = 64) -> LinkSecurity:
        """The ground sends uplink and receives downlink. Its receive window is persisted behind
        what it has seen, every ``reserve`` numbers: a ground restart never refuses the vehicle's
        honest frames (the vehicle cannot be told to jump), and the few frames it could take again
        carry packets the archive already holds (counted as duplicates, ACKed as before)."""
        store = SaStore(state_path)
        down = direction_key(downlink_key or uplink_key, DOWN)
        return cls(TxSA(direction_key(uplink_key, UP), store, 64, UP), RxSA(down, store, reserve, DOWN, ahead=False),
                   store)
