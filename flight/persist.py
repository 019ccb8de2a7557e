"""Atomic files: what must survive a reboot is written whole or not at all.

``write_atomic`` writes to a temporary file in the same directory, fsyncs it, renames it over
the target and fsyncs the directory, so after a crash or power loss the file holds either the
old content or the new, never a mix.

State is private: directories made here are 0700 and files 0600 (the downlink, counters and
parameters are nobody else's business on a shared machine). A store found unreadable at open is
not deleted but moved aside (:func:`move_aside`) so an operator can still examine what was lost.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def ensure_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) if needed and make it 0700; returns it as a Path."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    try:
        if p.stat().st_mode & 0o777 != DIR_MODE:
            os.chmod(p, DIR_MODE)
    except OSError as exc:  # not ours to change (a shared parent); say so once, carry on
        log.warning("cannot make %s private: %s", p, exc)
    return p


def create_private_file(path: str | os.PathLike[str]) -> None:
    """Make sure ``path`` exists with mode 0600 (before SQLite opens it, so it never was 0644)."""
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    os.close(fd)
    try:
        if p.stat().st_mode & 0o777 != FILE_MODE:
            os.chmod(p, FILE_MODE)
    except OSError as exc:
        log.warning("cannot make %s private: %s", p, exc)


def move_aside(path: str | os.PathLike[str], why: str = "corrupt") -> Path | None:
    """Rename an unusable store (and its SQLite side files) to ``<name>.<why>-<stamp>``.

    Returns the new path of the main file, or None if there was nothing to move. Nothing is
    deleted: what was lost can still be examined.
    """
    p = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    target = p.with_name(f"{p.name}.{why}-{stamp}")
    n = 1
    while target.exists():
        target = p.with_name(f"{p.name}.{why}-{stamp}-{n}")
        n += 1
    moved = None
    for suffix in ("", "-wal", "-shm", "-journal", "-log"):
        src = p.with_name(p.name + suffix)
        if src.exists():
            os.replace(src, target.with_name(target.name + suffix))
            if suffix == "":
                moved = target
    return moved


def boot_id() -> int | None:
    """This boot of the machine as a number (the kernel's random boot id), None where there is none.

    A file written in the same boot survived whatever stopped its writer, even kill -9 (the page
    cache still holds it); a different boot means a power loss or a reboot came in between, so
    only what was fsynced can be trusted."""
    try:
        text = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return int(text.replace("-", "")[:15], 16)
    except (OSError, ValueError):
        return None


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = FILE_MODE, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` by a rename: a reader or a kill -9 sees the old file or the
    new one, never a mix. ``sync`` (the default) also fsyncs the file and its directory, so the
    new one survives a power cut; without it a power cut may leave the old one."""
    path = Path(path)
    if not path.parent.is_dir():
        ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if not sync:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class CorruptFileError(ValueError):
    """A persisted file exists but cannot be trusted (truncated, bad checksum, wrong format)."""


def write_checked_json(path: str | os.PathLike[str], fmt: str, body: dict[str, Any], sync: bool = True) -> None:
    """Write ``body`` atomically as JSON with a format tag and a CRC-32 of its canonical form
    (``sync``: see :func:`write_atomic`)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    doc = {"format": fmt, "crc32": zlib.crc32(canonical.encode()), "body": body}
    write_atomic(path, (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode(), sync=sync)


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
