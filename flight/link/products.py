"""Data products on the link: segmentation into chunks, reassembly, and segment lists.

A product (an encoded image, its thumbnail) is cut into ``n`` chunks of at most ``chunk_bytes``.
Each chunk travels in one space packet on the bulk virtual channel (APID 0x030 for thumbnails,
0x031 for full products) as the msgpack map ``{"pid", "idx", "n", "data", "meta"}``; ``meta`` is
the product's metadata on chunk 0 and ``None`` on the others. Chunk 0's metadata carries the
product's ``size`` and ``crc32`` so the ground can prove a reassembled product is whole.

:class:`ProductChunk` is the outbound item the imaging task queues; the comm component turns it
into a packet and the onboard recorder keeps it until the ground acknowledges it, so lost chunks
are recovered by the link's own NAK and resend. Chunks that never reached the recorder (dropped
by policy) are asked for again by product and segment list (:func:`format_segments`,
:func:`parse_segments`), e.g. ``"0-3,7,9-12"``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

PRIO_THUMB = 2  # same classes as flight.outbound and the recorder
PRIO_PRODUCT = 3
MAX_SEGMENTS = 65535
MAX_PID = 2**32 - 1


class ProductError(ValueError):
    """A chunk, segment list or product that is not well formed."""


@dataclass(frozen=True, slots=True)
class ProductChunk:
    """One segment of a product, queued for downlink (an outbound item)."""

    time_ns: int
    pid: int
    idx: int
    n: int
    data: bytes
    thumbnail: bool
    meta: dict[str, Any] | None = None
    #: set for a hosted payload's product: its own APID (flight.payload.ids) instead of 0x030/0x031
    apid: int | None = None
    kind = "chunk"

    @property
    def priority(self) -> int:
        return PRIO_THUMB if self.thumbnail else PRIO_PRODUCT

    def to_json(self, names: dict[int, str] | None = None) -> dict[str, Any]:
        return {"t": self.time_ns / 1e9, "kind": "chunk", "pid": self.pid, "idx": self.idx, "n": self.n,
                "thumb": self.thumbnail, "bytes": len(self.data)}


def segment(data: bytes, chunk_bytes: int) -> list[bytes]:
    """Cut ``data`` into pieces of at most ``chunk_bytes`` (an empty product is one empty piece)."""
    if chunk_bytes < 1:
        raise ProductError(f"chunk size {chunk_bytes} must be positive")
    pieces = [data[i : i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] or [b""]
    if len(pieces) > MAX_SEGMENTS:
        raise ProductError(f"{len(data)} bytes make {len(pieces)} chunks; at most {MAX_SEGMENTS}")
    return pieces


def product_chunks(time_ns: int, pid: int, data: bytes, meta: dict[str, Any], chunk_bytes: int,
                   thumbnail: bool, only: Iterable[int] | None = None) -> list[ProductChunk]:
    """Chunks of one product, chunk 0 carrying ``meta`` plus the product's size and CRC-32.

    ``only`` limits the result to those segment indices (a re-send); unknown indices are ignored.
    """
    if not 0 <= pid <= MAX_PID:
        raise ProductError(f"product id {pid} out of range")
    pieces = segment(data, chunk_bytes)
    n = len(pieces)
    head = dict(meta) | {"size": len(data), "crc32": zlib.crc32(data)}
    wanted = range(n) if only is None else sorted({i for i in only if 0 <= i < n})
    return [ProductChunk(time_ns, pid, i, n, pieces[i], thumbnail, head if i == 0 else None) for i in wanted]


def check_chunk(obj: Any) -> tuple[int, int, int, bytes, dict[str, Any] | None]:
    """Validate a decoded chunk map; returns (pid, idx, n, data, meta) or raises ProductError."""
    if not isinstance(obj, dict):
        raise ProductError("chunk is not a map")
    try:
        pid, idx, n, data, meta = obj["pid"], obj["idx"], obj["n"], obj["data"], obj.get("meta")
    except KeyError as exc:
        raise ProductError(f"chunk lacks {exc.args[0]!r}") from None
    for name, v in (("pid", pid), ("idx", idx), ("n", n)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ProductError(f"chunk {name} is not an integer")
    if not 0 <= pid <= MAX_PID:
        raise ProductError(f"chunk pid {pid} out of range")
    if not 1 <= n <= MAX_SEGMENTS or not 0 <= idx < n:
        raise ProductError(f"chunk index {idx} of {n} out of range")
    if not isinstance(data, bytes | bytearray):
        raise ProductError("chunk data is not bytes")
    if meta is not None and not isinstance(meta, dict):
        raise ProductError("chunk meta is not a map")
    return pid, idx, n, bytes(data), meta


class Reassembly:
    """The chunks of one product received so far; whole when every index is present."""

    def __init__(self, n: int) -> None:
        if not 1 <= n <= MAX_SEGMENTS:
            raise ProductError(f"segment count {n} out of range")
        self.n = n
        self.parts: dict[int, bytes] = {}
        self.meta: dict[str, Any] | None = None
        self.conflicts = 0

    def add(self, idx: int, n: int, data: bytes, meta: dict[str, Any] | None = None) -> bool:
        """Take one chunk; False (and counted) when it disagrees with what is already held."""
        if n != self.n or not 0 <= idx < n:
            self.conflicts += 1
            return False
        held = self.parts.get(idx)
        if held is not None and held != data:
            self.conflicts += 1
            return False
        self.parts[idx] = bytes(data)
        if meta is not None and self.meta is None:
            self.meta = dict(meta)
        return True

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.parts]

    @property
    def complete(self) -> bool:
        return len(self.parts) == self.n

    def data(self) -> bytes:
        """The product's bytes; raises ProductError when incomplete or failing its size or CRC."""
        if not self.complete:
            raise ProductError(f"missing segments {format_segments(self.missing)}")
        out = b"".join(self.parts[i] for i in range(self.n))
        if self.meta is not None:
            if "size" in self.meta and self.meta["size"] != len(out):
                raise ProductError(f"size {len(out)} differs from the {self.meta['size']} announced")
            if "crc32" in self.meta and self.meta["crc32"] != zlib.crc32(out):
                raise ProductError("CRC-32 of the reassembled product does not match")
        return out


def format_segments(indices: Iterable[int]) -> str:
    """``[0, 1, 2, 3, 7, 9, 10]`` -> ``"0-3,7,9-10"`` (sorted, duplicates removed)."""
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if i < 0:
            raise ProductError(f"segment index {i} is negative")
        if runs and runs[-1][1] + 1 == i:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def parse_segments(text: str, limit: int = MAX_SEGMENTS) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``; empty text is no segments. Raises ProductError."""
    out: set[int] = set()
    text = text.strip()
    if not text:
        return []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        try:
            a = int(first)
            b = int(last) if sep else a
        except ValueError:
            raise ProductError(f"segment range {part!r} is not N or N-M") from None
        if a < 0 or b < a or b >= limit:
            raise ProductError(f"segment range {part!r} out of order or beyond {limit - 1}")
        out.update(range(a, b + 1))
    return sorted(out)
