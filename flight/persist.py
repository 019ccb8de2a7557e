"""Atomic files: what must survive a reboot is written whole or not at all.

``write_atomic`` writes to a temporary file in the same directory, fsyncs it, renames it over
the target and fsyncs the directory, so after a crash or power loss the file holds either the
old content or the new, never a mix.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CorruptFileError(ValueError):
    """A persisted file exists but cannot be trusted (truncated, bad checksum, wrong format)."""


def write_checked_json(path: str | os.PathLike[str], fmt: str, body: dict[str, Any]) -> None:
    """Write ``body`` atomically as JSON with a format tag and a CRC-32 of its canonical form."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    doc = {"format": fmt, "crc32": zlib.crc32(canonical.encode()), "body": body}
    write_atomic(path, (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode())


def read_checked_json(path: str | os.PathLike[str], fmt: str) -> dict[str, Any] | None:
    """Read a file written by :func:`write_checked_json`.

    Returns None when the file does not exist; raises CorruptFileError when it exists but is
    truncated, not JSON, of another format, or fails its checksum.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CorruptFileError(f"{path}: cannot read: {exc}") from exc
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt or not isinstance(doc.get("body"), dict):
        raise CorruptFileError(f"{path}: not a {fmt} file")
    canonical = json.dumps(doc["body"], sort_keys=True, separators=(",", ":"))
    if zlib.crc32(canonical.encode()) != doc.get("crc32"):
        raise CorruptFileError(f"{path}: checksum mismatch")
    return doc["body"]
