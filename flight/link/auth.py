"""Uplink authentication: HMAC-SHA256 with a key id and a counter that never repeats.

An authenticated TC is a space packet (``Apid.TC_COMMAND`` or ``Apid.TC_LINK``) whose payload is::

    key id u16 | counter u64 | body (command bytes or link control) | tag (32 bytes)

and the tag is HMAC-SHA256 over every byte before it, the CCSDS and time headers included, so
neither the APID (command vs. link control) nor the counter can be altered. The ground's
:class:`Signer` hands out counters in blocks it has already persisted; the vehicle's
:class:`Verifier` accepts a counter above the highest seen or, within a 64-counter window below
it, one not yet seen, and persists the new state before it reports acceptance. Both write their
state atomically (temporary file, fsync, rename, fsync of the directory), so after a crash or power
loss the signer never reuses a counter and the verifier never re-accepts one.

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


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        # A corrupt state file must not silently restart counters at zero.
        raise RuntimeError(f"counter state {path} is unreadable: {exc}") from exc


class Signer:
    """Ground side: signs TCs with one key and a persisted, strictly increasing counter."""

    def __init__(self, key: Key, state_path: str | os.PathLike[str], block: int = 64) -> None:
        self.key = key
        self.state_path = Path(state_path)
        self.block = max(1, block)
        state = _read_json(self.state_path)
        self._next = max(1, int(state.get("reserved_until", 1)))
        self._reserved_until = self._next

    @property
    def next_counter(self) -> int:
        return self._next

    def _reserve(self) -> None:
        until = self._next + self.block
        atomic_write(
            self.state_path,
            json.dumps({"key_id": self.key.key_id, "reserved_until": until}).encode(),
        )
        self._reserved_until = until

    def sign(self, apid: int, body: bytes, time_s: float = 0.0) -> bytes:
        """One authenticated TC packet carrying ``body`` on ``apid``."""
        if apid not in TC_APIDS:
            raise ValueError(f"APID 0x{apid:03x} is not an uplink APID")
        if self._next >= self._reserved_until:
            self._reserve()
        counter = self._next
        self._next += 1
        payload = AUTH_HEADER.pack(self.key.key_id, counter) + body
        unsigned = encode_packet(apid, counter % SEQ_MODULO, time_s, payload + bytes(TAG_LEN), True)
        signed_part = unsigned[:-TAG_LEN]
        return signed_part + self.key.tag(signed_part)

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


class Verifier:
    """Vehicle side: checks tag, key and counter; counts rejections by reason."""

    def __init__(
        self, keys: list[Key] | dict[int, Key], state_path: str | os.PathLike[str]
    ) -> None:
        keylist = list(keys.values()) if isinstance(keys, dict) else list(keys)
        self._keys = {k.key_id: k for k in keylist}
        self.state_path = Path(state_path)
        state = _read_json(self.state_path)
        self._high: dict[int, int] = {
            int(k): int(v["high"]) for k, v in state.get("keys", {}).items()
        }
        self._mask: dict[int, int] = {
            int(k): int(v["mask"]) for k, v in state.get("keys", {}).items()
        }
        self.rejected: dict[Reject, int] = {r: 0 for r in Reject}
        self.accepted = 0

    def _persist(self) -> None:
        keys = {str(k): {"high": self._high[k], "mask": self._mask.get(k, 0)} for k in self._high}
        atomic_write(self.state_path, json.dumps({"keys": keys}).encode())

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
        high = self._high.get(key_id, 0)
        mask = self._mask.get(key_id, 0)
        if counter > high:
            shift = counter - high
            mask = ((mask << shift) | 1) & ((1 << WINDOW) - 1) if shift < WINDOW else 1
            high = counter
        else:
            back = high - counter
            if back >= WINDOW or mask & (1 << back):
                raise AuthError(Reject.REPLAY, f"counter {counter}, highest {high}")
            mask |= 1 << back
        self._high[key_id], self._mask[key_id] = high, mask
        self._persist()  # before anything executes: a crash now cannot re-open this counter
        body = pkt.payload[AUTH_HEADER.size : -TAG_LEN]
        return Verified(pkt.apid, body, key_id, counter, pkt.time_s)

    def verify(self, data: bytes) -> Verified | None:
        """The accepted TC, or None (counted by reason, logged without secrets)."""
        try:
            result = self._check(bytes(data))
        except AuthError as exc:
            self.rejected[exc.reason] += 1
            log.warning("uplink packet rejected: %s", exc)
            return None
        self.accepted += 1
        return result

    def verify_or_raise(self, data: bytes) -> Verified:
        """Like :meth:`verify` but raises AuthError (still counted)."""
        try:
            result = self._check(bytes(data))
        except AuthError as exc:
            self.rejected[exc.reason] += 1
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
