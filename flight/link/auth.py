"""Uplink authentication: HMAC-SHA256 with a key id and a counter that never repeats.

An authenticated TC is a space packet (``Apid.TC_COMMAND`` or ``Apid.TC_LINK``) whose payload is::

    key id u16 | counter u64 | body (command bytes or link control) | tag (32 bytes)

and the tag is HMAC-SHA256 over every byte before it, the CCSDS and time headers included, so
neither the APID (command vs. link control) nor the counter can be altered. Commands and link
control have separate counter spaces. The ground's :class:`Signer` hands out counters in blocks it
has already persisted; the vehicle's :class:`Verifier` accepts a counter above the highest seen
or, within a 64-counter window below it, one not yet seen, and persists before it reports
acceptance (commands exactly, link control in reserved windows). Both write their state
atomically (temporary file, fsync, rename, fsync of the directory) to a file and a mirror, so
after a crash, a power loss or the loss of one copy the signer never reuses a counter and the
verifier never re-accepts one; an unreadable copy is moved aside, never a crash.

Keys live in files (hex text or raw bytes, at least 16 bytes) that must not be readable by group
or others; a key never appears in a repr, a log line or telemetry.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import os
import secrets
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from flight.link.packets import (
    HEADER_LEN,
    SEQ_MODULO,
    TC_APIDS,
    Apid,
    PacketError,
    decode_packet,
    encode_packet,
)
from flight.persist import ensure_private_dir, move_aside

log = logging.getLogger(__name__)

AUTH_HEADER = struct.Struct(">HQ")
TAG_LEN = 32
MIN_KEY_LEN = 16
WINDOW = 64


class KeyFileError(PermissionError):
    """A key file is missing, unreadable, too permissive or does not hold a usable key."""


class Key:
    """A secret key; its bytes never appear in repr or str."""

    __slots__ = ("_secret", "key_id")

    def __init__(self, key_id: int, secret: bytes) -> None:
        if not 0 <= key_id <= 0xFFFF:
            raise ValueError(f"key id {key_id} does not fit 16 bits")
        if len(secret) < MIN_KEY_LEN:
            raise ValueError(
                f"key {key_id} is {len(secret)} bytes; at least {MIN_KEY_LEN} required"
            )
        self.key_id = key_id
        self._secret = bytes(secret)

    def tag(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"<Key id={self.key_id} (secret hidden)>"

    __str__ = __repr__

    def __reduce__(self) -> None:  # refuse pickling, which would copy the secret around
        raise TypeError("keys are not picklable")


def load_key(path: str | os.PathLike[str], key_id: int) -> Key:
    """Read a key file (hex text or raw bytes). Refuses a file group or others can access."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise KeyFileError(f"key file {p}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"key file {p} is not a regular file")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"key file {p} has mode {stat.S_IMODE(st.st_mode):04o}; it must be readable by its "
            f"owner only (chmod 600 {p})"
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"key file {p}: {exc.strerror}") from None
    text = raw.strip()
    secret = raw
    try:
        if text and len(text) % 2 == 0:
            secret = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        secret = raw
    try:
        return Key(key_id, secret)
    except ValueError as exc:
        raise KeyFileError(f"key file {p}: {exc}") from None


def write_key_file(path: str | os.PathLike[str], secret: bytes | None = None) -> None:
    """Create a new key file (hex, mode 0600). Generates 32 random bytes unless given a secret."""
    secret = secret if secret is not None else secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content."""
    p = Path(path)
    if not p.parent.is_dir():
        ensure_private_dir(p.parent)
    tmp = p.with_name(f".{p.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
    dfd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


STATE_FORMAT = "magpie-uplink/2"
LINK_RESERVE = 256  # link-control counters the verifier reserves ahead per write


def _load_state(path: Path, problems: list[str]) -> tuple[dict, bool]:
    """The newest readable copy of a counter state (the file and its ``.mirror``).

    Both copies are written on every persist, so losing or garbling one costs nothing. An
    unreadable copy is moved aside (``<name>.corrupt-<time>``) and named in ``problems``. Returns
    (state, lost): ``lost`` is true when some copy existed but none could be read.
    """
    best: dict | None = None
    seen_any = False
    for p in (path, _mirror(path)):
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"counter state {p.name} unreadable ({exc.strerror})")
            seen_any = True
            continue
        seen_any = True
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            _check_state_shape(doc)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            moved = move_aside(p)
            problems.append(
                f"counter state {p.name} corrupt ({exc}); kept as {moved.name if moved else '?'}"
            )
            continue
        if best is None or int(doc.get("generation", 0)) > int(best.get("generation", 0)):
            best = doc
    return (best or {}), (best is None and seen_any)


def _check_state_shape(doc: dict) -> None:
    """Raise ValueError unless every number in a counter state is a sane non-negative int."""

    def num(v: object) -> int:
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**64:
            raise ValueError(f"bad counter value {v!r}")
        return v

    if "reserved_until" in doc:
        num(doc["reserved_until"])
    for k, v in dict(doc.get("reserved") or {}).items():
        if not str(k).isdigit():
            raise ValueError(f"bad APID {k!r}")
        num(v)
    for k, entry in dict(doc.get("keys") or {}).items():
        if not str(k).isdigit() or not isinstance(entry, dict):
            raise ValueError(f"bad key entry {k!r}")
        for v in entry.values():
            if isinstance(v, dict):
                for x in v.values():
                    num(x)
            else:
                num(v)
    if "generation" in doc:
        num(doc["generation"])


def _mirror(path: Path) -> Path:
    return path.with_name(path.name + ".mirror")


class Signer:
    """Ground side: signs TCs with one key and persisted, strictly increasing counters.

    Commands and link control count separately (each APID has its own counter space, as the
    verifier keeps its own window per APID), so a burst of ACKs never pushes a command that is
    being retried out of the vehicle's replay window. Counters are handed out from blocks already
    persisted (file and mirror). When the vehicle reports a higher accepted counter than ours
    (after our state was lost, or another signer used the key), :meth:`resync` jumps past it.
    """

    def __init__(self, key: Key, state_path: str | os.PathLike[str], block: int = 64) -> None:
        self.key = key
        self.state_path = Path(state_path)
        self.block = max(1, block)
        self.problems: list[str] = []
        state, self.state_lost = _load_state(self.state_path, self.problems)
        for problem in self.problems:
            log.warning("signer: %s", problem)
        legacy = max(1, int(state.get("reserved_until", 1)))
        reserved = state.get("reserved") or {}
        self._generation = int(state.get("generation", 0))
        self._next = {int(a): max(1, int(reserved.get(str(int(a)), legacy))) for a in TC_APIDS}
        self._reserved_until = dict(self._next)
        self.fsyncs = 0
        if state and not (self.state_path.exists() and _mirror(self.state_path).exists()):
            self._reserve(int(Apid.TC_COMMAND))  # one copy was lost or garbled: write both again

    @property
    def next_counter(self) -> int:
        """The counter the next command will carry."""
        return self._next[Apid.TC_COMMAND]

    def next_for(self, apid: int) -> int:
        return self._next[int(apid)]

    def _reserve(self, apid: int) -> None:
        until = dict(self._reserved_until)
        until[apid] = self._next[apid] + self.block
        self._generation += 1
        doc = {
            "format": STATE_FORMAT,
            "generation": self._generation,
            "key_id": self.key.key_id,
            "reserved": {str(a): v for a, v in until.items()},
        }
        data = json.dumps(doc).encode()
        atomic_write(self.state_path, data)
        atomic_write(_mirror(self.state_path), data)
        self.fsyncs += 2
        self._reserved_until = until

    def resync(self, apid: int, vehicle_high: int) -> bool:
        """Jump past a counter the vehicle reports having accepted; True if we jumped."""
        apid = int(apid)
        if apid not in self._next or not 0 <= vehicle_high < 2**62 or vehicle_high < self._next[apid]:
            return False
        log.warning(
            "signer key %d APID 0x%03x: vehicle accepted counter %d, ours was at %d; jumping past it",
            self.key.key_id, apid, vehicle_high, self._next[apid],
        )
        self._next[apid] = vehicle_high + 1
        self._reserve(apid)
        return True

    def sign_counted(self, apid: int, body: bytes, time_s: float = 0.0) -> tuple[int, bytes]:
        """(counter, authenticated TC packet carrying ``body`` on ``apid``)."""
        if apid not in TC_APIDS:
            raise ValueError(f"APID 0x{apid:03x} is not an uplink APID")
        apid = int(apid)
        if self._next[apid] >= self._reserved_until[apid]:
            self._reserve(apid)
        counter = self._next[apid]
        self._next[apid] += 1
        payload = AUTH_HEADER.pack(self.key.key_id, counter) + body
        unsigned = encode_packet(apid, counter % SEQ_MODULO, time_s, payload + bytes(TAG_LEN), True)
        signed_part = unsigned[:-TAG_LEN]
        return counter, signed_part + self.key.tag(signed_part)

    def sign(self, apid: int, body: bytes, time_s: float = 0.0) -> bytes:
        """One authenticated TC packet carrying ``body`` on ``apid``."""
        return self.sign_counted(apid, body, time_s)[1]

    def __repr__(self) -> str:
        return f"<Signer key_id={self.key.key_id} next={self._next}>"


class Reject(enum.Enum):
    """Why an uplink packet was refused."""

    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    WRONG_APID = "wrong_apid"
    UNKNOWN_KEY = "unknown_key"
    BAD_TAG = "bad_tag"
    REPLAY = "replay"


@dataclass(frozen=True, slots=True)
class Verified:
    """An accepted TC: what to execute and where it came from."""

    apid: int
    body: bytes
    key_id: int
    counter: int
    time_s: float


class AuthError(ValueError):
    def __init__(self, reason: Reject, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        #: for a replay of an authentic TC: what it carried (never executed again)
        self.verified: Verified | None = None


class Verifier:
    """Vehicle side: checks tag, key and counter; counts rejections by reason.

    Each key has a window per TC APID. Command counters are persisted exactly, before the command
    is reported accepted (commands are rare; one write each). Link-control counters (an ACK every
    second or so) are persisted in reserved windows: a write stores ``high + link_reserve`` and
    after a restart everything up to that is treated as seen, so a write happens once per
    ``link_reserve`` ACKs instead of once per ACK; the ground learns the new floor from the
    ``uplink_counter_*`` telemetry and jumps past it. The state is written to the file and its
    ``.mirror``; if both are lost or unreadable, ``floors`` (kept by the caller elsewhere, e.g.
    in the recorder) gives the counters below which nothing is accepted.

    A TC whose tag is good but whose counter was already used is a replay; it is refused, but
    kept in :attr:`replays` (bounded) so the command layer can recognise a retry of a command it
    already executed and answer it again without executing it.
    """

    def __init__(
        self,
        keys: list[Key] | dict[int, Key],
        state_path: str | os.PathLike[str],
        link_reserve: int = LINK_RESERVE,
        floors: dict[int, dict[int, int]] | None = None,
    ) -> None:
        keylist = list(keys.values()) if isinstance(keys, dict) else list(keys)
        self._keys = {k.key_id: k for k in keylist}
        self.state_path = Path(state_path)
        self.link_reserve = max(1, link_reserve)
        self.problems: list[str] = []
        state, self.state_lost = _load_state(self.state_path, self.problems)
        self._generation = int(state.get("generation", 0))
        full = (1 << WINDOW) - 1
        self._high: dict[tuple[int, int], int] = {}
        self._mask: dict[tuple[int, int], int] = {}
        self._reserved: dict[tuple[int, int], int] = {}
        for k, v in (state.get("keys") or {}).items():
            kid = int(k)
            if "high" in v:  # the first layout: one counter space for both APIDs
                for apid in TC_APIDS:
                    self._high[(kid, apid)], self._mask[(kid, apid)] = int(v["high"]), full
                continue
            cmd = v.get("cmd") or {}
            if cmd:
                key = (kid, int(Apid.TC_COMMAND))
                self._high[key], self._mask[key] = int(cmd.get("high", 0)), int(cmd.get("mask", 0))
            link = v.get("link") or {}
            if link:
                key = (kid, int(Apid.TC_LINK))
                self._high[key] = self._reserved[key] = int(link.get("reserved", 0))
                self._mask[key] = full  # everything up to the reservation counts as seen
        if not state and (floors or self.state_lost):
            if floors:
                for kid, per_apid in floors.items():
                    for apid, high in per_apid.items():
                        key = (int(kid), int(apid))
                        extra = self.link_reserve if apid == Apid.TC_LINK else 0
                        self._high[key] = max(self._high.get(key, 0), int(high) + extra)
                        self._mask[key] = full
                self.problems.append(
                    "counter state missing or unreadable; counters at or below the recorder's copy are refused"
                )
                self.state_lost = True
            else:
                self.problems.append(
                    "counter state lost and no other copy; replay protection restarts (rotate the key)"
                )
        for problem in self.problems:
            log.warning("verifier: %s", problem)
        self.rejected: dict[Reject, int] = {r: 0 for r in Reject}
        self.accepted = 0
        self.fsyncs = 0
        self.replays: list[Verified] = []
        if self.problems or not (self.state_path.exists() and _mirror(self.state_path).exists()):
            self._persist()  # a fresh, readable pair of copies from now on

    def high(self, key_id: int, apid: int) -> int:
        """Highest counter accepted (or reserved, for link control) for a key and APID."""
        return self._high.get((key_id, int(apid)), 0)

    def highs(self) -> dict[int, dict[int, int]]:
        out: dict[int, dict[int, int]] = {}
        for (kid, apid), h in self._high.items():
            out.setdefault(kid, {})[apid] = h
        return out

    @property
    def keys(self) -> list[Key]:
        """The keys this verifier accepts, in the order given."""
        return list(self._keys.values())

    def _persist(self) -> None:
        keys: dict[str, dict] = {}
        for (kid, apid), high in self._high.items():
            entry = keys.setdefault(str(kid), {})
            if apid == Apid.TC_COMMAND:
                entry["cmd"] = {"high": high, "mask": self._mask.get((kid, apid), 0)}
            else:
                entry["link"] = {"reserved": max(high, self._reserved.get((kid, apid), 0))}
        self._generation += 1
        data = json.dumps({"format": STATE_FORMAT, "generation": self._generation, "keys": keys}).encode()
        atomic_write(self.state_path, data)
        atomic_write(_mirror(self.state_path), data)
        self.fsyncs += 2

    def _check(self, data: bytes) -> Verified:
        if len(data) < HEADER_LEN + AUTH_HEADER.size + TAG_LEN:
            raise AuthError(Reject.TRUNCATED, f"{len(data)} bytes")
        try:
            pkt = decode_packet(data)
        except PacketError as exc:
            reason = Reject.TRUNCATED if "length field" in str(exc) else Reject.MALFORMED
            raise AuthError(reason, str(exc)) from None
        if not pkt.telecommand or pkt.apid not in TC_APIDS:
            raise AuthError(Reject.WRONG_APID, f"APID 0x{pkt.apid:03x}")
        key_id, counter = AUTH_HEADER.unpack_from(pkt.payload, 0)
        key = self._keys.get(key_id)
        if key is None:
            raise AuthError(Reject.UNKNOWN_KEY, f"key id {key_id}")
        if not hmac.compare_digest(key.tag(data[:-TAG_LEN]), data[-TAG_LEN:]):
            raise AuthError(Reject.BAD_TAG, f"key id {key_id}")
        if counter % SEQ_MODULO != pkt.seq:
            raise AuthError(Reject.MALFORMED, "sequence count disagrees with counter")
        body = pkt.payload[AUTH_HEADER.size : -TAG_LEN]
        verified = Verified(pkt.apid, body, key_id, counter, pkt.time_s)
        slot = (key_id, int(pkt.apid))
        high = self._high.get(slot, 0)
        mask = self._mask.get(slot, 0)
        if counter > high:
            shift = counter - high
            mask = ((mask << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            high = counter
        else:
            back = high - counter
            if back >= WINDOW or mask & (1 << back):
                err = AuthError(Reject.REPLAY, f"counter {counter}, highest {high}")
                err.verified = verified
                raise err
            mask |= 1 << back
        self._high[slot], self._mask[slot] = high, mask
        # before anything executes: a crash now cannot re-open this counter
        if pkt.apid == Apid.TC_COMMAND:
            self._persist()
        elif high > self._reserved.get(slot, 0):
            self._reserved[slot] = high + self.link_reserve
            self._persist()
        return verified

    def verify(self, data: bytes) -> Verified | None:
        """The accepted TC, or None (counted by reason, logged without secrets)."""
        try:
            result = self._check(bytes(data))
        except AuthError as exc:
            self._rejected(exc)
            log.warning("uplink packet rejected: %s", exc)
            return None
        self.accepted += 1
        return result

    def _rejected(self, exc: AuthError) -> None:
        self.rejected[exc.reason] += 1
        if exc.verified is not None and len(self.replays) < 256:
            self.replays.append(exc.verified)

    def take_replays(self) -> list[Verified]:
        """Authentic TCs refused as replays since the last call (to answer retries)."""
        out, self.replays = self.replays, []
        return out

    def verify_or_raise(self, data: bytes) -> Verified:
        """Like :meth:`verify` but raises AuthError (still counted)."""
        try:
            result = self._check(bytes(data))
        except AuthError as exc:
            self._rejected(exc)
            raise
        self.accepted += 1
        return result

    def stats(self) -> dict[str, int]:
        out = {f"rejected_{r.value}": n for r, n in self.rejected.items()}
        out["accepted"] = self.accepted
        return out

    def __repr__(self) -> str:
        return f"<Verifier keys={sorted(self._keys)} accepted={self.accepted}>"


__all__ = [
    "Apid",
    "AuthError",
    "Key",
    "KeyFileError",
    "Reject",
    "Signer",
    "Verified",
    "Verifier",
    "atomic_write",
    "load_key",
    "write_key_file",
]
