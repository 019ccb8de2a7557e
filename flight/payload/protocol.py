"""The message protocol between the payload host and a payload process.

Transport: one ``AF_UNIX`` stream socket pair per payload; the host keeps one end, the payload
process inherits the other (its file descriptor number is on its command line). Each message is a
frame: a 4-byte big-endian length, then that many bytes of msgpack encoding one map whose ``"t"``
names the kind. A frame longer than :data:`MAX_FRAME` or one that does not decode to a map with a
string ``"t"`` is a :class:`ProtocolError`; the host treats it as a violation, never a crash.

Host to payload::

    init  {"name", "kind", "grants": [channel...], "product_dir", "options", "params", "time_ns"}
    step  {"n", "time_ns", "ch": {granted channel: value}, "power": {"on", "energy_wh", "budget_wh"},
           "cmds": [[token, name, args]], "prm": {name: value}}
    stop  {}

Payload to host::

    hello {"kind", "sdk"}                    once, as soon as the process runs
    ready {}                                 after init and the payload's setup()
    done  {"n", "cpu_ns", "tlm": {channel: value}, "ev": [[event, args]],
           "prod": [[file name, meta]], "res": [[token, ok, reason]], "error": str | None}

Anything else the payload sends (a command for the vehicle, a read of a channel it was not
granted) has no handler on the host: it is counted and reported as a violation, and dropped.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

SDK_VERSION = 1
MAX_FRAME = 1 << 20
_LEN = struct.Struct(">I")

HOST_KINDS = frozenset({"init", "step", "stop"})
PAYLOAD_KINDS = frozenset({"hello", "ready", "done"})


class ProtocolError(ValueError):
    """Bytes that are not a well-formed payload protocol frame."""


def encode(msg: dict[str, Any]) -> bytes:
    """One frame for a message map (which must carry a string ``"t"``)."""
    if not isinstance(msg.get("t"), str):
        raise ProtocolError("a message needs a string 't'")
    body = msgpack.packb(msg, use_bin_type=True)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"message of {len(body)} bytes exceeds {MAX_FRAME}")
    return _LEN.pack(len(body)) + body


class FrameReader:
    """Reassembles frames from a byte stream fed in arbitrary pieces."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Messages completed by ``data``; raises ProtocolError on the first bad frame."""
        self._buf += data
        out: list[dict[str, Any]] = []
        while len(self._buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self._buf)
            if n > self.max_frame:
                self._buf.clear()
                raise ProtocolError(f"frame of {n} bytes exceeds {self.max_frame}")
            if len(self._buf) < _LEN.size + n:
                break
            body = bytes(self._buf[_LEN.size : _LEN.size + n])
            del self._buf[: _LEN.size + n]
            out.append(decode_body(body))
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several types for bad input
        raise ProtocolError(f"undecodable frame: {type(exc).__name__}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        raise ProtocolError("a frame must hold a map with a string 't'")
    return msg
