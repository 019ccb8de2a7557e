"""The onboard product catalogue: which images exist, where, and whether they are whole.

One SQLite file (WAL, ``synchronous=FULL``) beside a directory of product files. A product's
life: :meth:`Catalogue.reserve` inserts a ``pending`` row (its id is never reused, even after a
delete or a reboot); the encoded files are written with :func:`flight.persist.write_atomic`
(temporary file, fsync, rename); :meth:`Catalogue.commit` then marks the row ``ready`` with each
file's size and CRC-32 in one transaction. A kill -9 at any point leaves either a pending row
(failed at the next start, its files removed) or a ready row whose files are whole.

:meth:`Catalogue.open` checks the database (``PRAGMA quick_check``); a file that is not a
catalogue or fails the check is moved aside as ``*.corrupt-<n>`` and a new one is started, and
the product files it described are kept as orphans and reported. Reconciliation at start: pending
rows become ``failed``; ready rows whose file is missing or fails its CRC become ``lost``; files
that no row names are removed.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flight.persist import create_private_file, ensure_private_dir

log = logging.getLogger(__name__)

PENDING, READY, FAILED, LOST = "pending", "ready", "failed", "lost"
KINDS = ("full", "thumb")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS products (
    pid INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    format TEXT NOT NULL,
    quality INTEGER NOT NULL DEFAULT 0,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    full_size INTEGER NOT NULL DEFAULT 0,
    full_crc INTEGER NOT NULL DEFAULT 0,
    thumb_size INTEGER NOT NULL DEFAULT 0,
    thumb_crc INTEGER NOT NULL DEFAULT 0,
    downlinks INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class CatalogueError(Exception):
    """The catalogue refused an operation (unknown product, wrong state)."""


@dataclass(frozen=True, slots=True)
class Product:
    pid: int
    state: str
    created: float
    priority: int
    format: str
    quality: int
    width: int
    height: int
    full_size: int
    full_crc: int
    thumb_size: int
    thumb_crc: int
    downlinks: int
    reason: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ext(self) -> str:
        return "jpg" if self.format == "jpeg" else "png"

    @property
    def bytes(self) -> int:
        return self.full_size + self.thumb_size


@dataclass
class Recovery:
    """What :meth:`Catalogue.open` found and repaired."""

    failed_pending: int = 0
    lost: int = 0
    orphans_removed: int = 0
    corrupt_moved: str = ""


class Quota:
    """Bytes the product store may hold; reserved by the encoder thread before it writes."""

    def __init__(self, limit: int, used: int = 0) -> None:
        self.limit = int(limit)
        self.used = int(used)
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> bool:
        with self._lock:
            if self.used + nbytes > self.limit:
                return False
            self.used += nbytes
            return True

    def release(self, nbytes: int) -> None:
        with self._lock:
            self.used = max(0, self.used - int(nbytes))


class Catalogue:
    """See the module docstring. Used from one thread (the executive's)."""

    def __init__(self, db_path: Path, files_dir: Path, db: sqlite3.Connection, recovery: Recovery) -> None:
        self.path = db_path
        self.files_dir = files_dir
        self._db = db
        self.recovery = recovery

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, db_path: str | os.PathLike[str], files_dir: str | os.PathLike[str]) -> Catalogue:
        db_path, files_dir = Path(db_path), Path(files_dir)
        ensure_private_dir(files_dir)  # 0700, like every state directory
        recovery = Recovery()
        db = cls._connect(db_path)
        if db is None:
            n = 0
            while (aside := db_path.with_name(f"{db_path.name}.corrupt-{n}")).exists():
                n += 1
            for suffix in ("", "-wal", "-shm"):
                p = Path(f"{db_path}{suffix}")
                if p.exists():
                    os.replace(p, Path(f"{aside}{suffix}"))
            recovery.corrupt_moved = str(aside)
            log.error("catalogue %s is corrupt; moved aside to %s and started anew", db_path, aside)
            db = cls._connect(db_path)
            if db is None:  # pragma: no cover - a fresh file always opens
                raise CatalogueError(f"cannot create the catalogue {db_path}")
        cat = cls(db_path, files_dir, db, recovery)
        cat._reconcile()
        return cat

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection | None:
        try:
            ensure_private_dir(path.parent)
            create_private_file(path)  # 0600 before SQLite writes to it (its -wal/-shm follow)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                db.close()
                return None
            db.executescript(_SCHEMA)
            return db
        except sqlite3.DatabaseError as exc:
            log.warning("catalogue %s does not open: %s", path, exc)
            return None

    def _reconcile(self) -> None:
        rec = self.recovery
        with self._tx():
            for (pid,) in self._db.execute("SELECT pid FROM products WHERE state = ?", (PENDING,)).fetchall():
                self._db.execute("UPDATE products SET state = ?, reason = ? WHERE pid = ?",
                                 (FAILED, "interrupted before it was stored (restart)", pid))
                rec.failed_pending += 1
            for p in self.list(states=(READY,)):
                for kind, size, crc in (("full", p.full_size, p.full_crc), ("thumb", p.thumb_size, p.thumb_crc)):
                    try:
                        data = self.file(p, kind).read_bytes()
                    except OSError:
                        data = None
                    if data is None or len(data) != size or zlib.crc32(data) != crc:
                        self._db.execute("UPDATE products SET state = ?, reason = ? WHERE pid = ?",
                                         (LOST, f"{kind} file missing or damaged at restart", p.pid))
                        rec.lost += 1
                        break
        keep = {self.file(p, k).name for p in self.list(states=(READY,)) for k in KINDS}
        for f in self.files_dir.iterdir():
            if f.is_file() and f.name not in keep:
                try:
                    f.unlink()
                    rec.orphans_removed += 1
                except OSError as exc:
                    log.warning("cannot remove orphan product file %s: %s", f, exc)
        if rec.failed_pending or rec.lost or rec.orphans_removed:
            log.warning("catalogue %s: %d interrupted product(s) failed, %d lost, %d orphan file(s) removed",
                        self.path, rec.failed_pending, rec.lost, rec.orphans_removed)

    # -- products --------------------------------------------------------------------------

    def _tx(self) -> _Tx:
        return _Tx(self._db)

    def _next_pid(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'next_pid'").fetchone()
        top = self._db.execute("SELECT COALESCE(MAX(pid), 0) FROM products").fetchone()[0]
        return max(int(row[0]) if row else 1, int(top) + 1)

    def reserve(self, now_s: float, fmt: str, quality: int, priority: int, meta: dict[str, Any]) -> int:
        """Insert a pending product; returns its id (never reused)."""
        with self._tx():
            pid = self._next_pid()
            self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('next_pid', ?)", (pid + 1,))
            self._db.execute(
                "INSERT INTO products(pid, state, created, priority, format, quality, meta) VALUES (?,?,?,?,?,?,?)",
                (pid, PENDING, now_s, priority, fmt, quality, json.dumps(meta, sort_keys=True)),
            )
        return pid

    def commit(self, pid: int, width: int, height: int, full: bytes, thumb: bytes,
               meta: dict[str, Any] | None = None) -> Product:
        """Mark a pending product ready once its files are on disk (one transaction)."""
        with self._tx():
            p = self._get(pid)
            if p.state != PENDING:
                raise CatalogueError(f"product {pid} is {p.state}, not pending")
            self._db.execute(
                "UPDATE products SET state = ?, width = ?, height = ?, full_size = ?, full_crc = ?, "
                "thumb_size = ?, thumb_crc = ?, meta = ? WHERE pid = ?",
                (READY, width, height, len(full), zlib.crc32(full), len(thumb), zlib.crc32(thumb),
                 json.dumps(meta if meta is not None else p.meta, sort_keys=True), pid),
            )
        return self.get(pid)

    def fail(self, pid: int, reason: str) -> None:
        """Mark a product failed and remove whatever files it left."""
        with self._tx():
            self._db.execute("UPDATE products SET state = ?, reason = ? WHERE pid = ?", (FAILED, reason[:200], pid))
        for kind in KINDS:
            for f in self.files_dir.glob(f"{pid:08d}.{kind}.*"):
                f.unlink(missing_ok=True)

    def delete(self, pid: int) -> Product:
        """Remove a product's row and files; raises CatalogueError when unknown or being made."""
        p = self.get(pid)
        if p.state == PENDING:
            raise CatalogueError(f"product {pid} is still being made")
        with self._tx():
            self._db.execute("DELETE FROM products WHERE pid = ?", (pid,))
        for kind in KINDS:
            self.file(p, kind).unlink(missing_ok=True)
        return p

    def mark_downlinked(self, pid: int) -> None:
        with self._tx():
            self._db.execute("UPDATE products SET downlinks = downlinks + 1 WHERE pid = ?", (pid,))

    def file(self, p: Product | int, kind: str) -> Path:
        if isinstance(p, int):
            p = self.get(p)
        return self.files_dir / f"{p.pid:08d}.{kind}.{p.ext}"

    def read(self, pid: int, kind: str) -> bytes:
        """A ready product's file, checked against its CRC; raises CatalogueError otherwise."""
        p = self.get(pid)
        if p.state != READY:
            raise CatalogueError(f"product {pid} is {p.state}{': ' + p.reason if p.reason else ''}")
        size, crc = (p.full_size, p.full_crc) if kind == "full" else (p.thumb_size, p.thumb_crc)
        try:
            data = self.file(p, kind).read_bytes()
        except OSError as exc:
            raise CatalogueError(f"product {pid} {kind} file unreadable: {exc}") from None
        if len(data) != size or zlib.crc32(data) != crc:
            raise CatalogueError(f"product {pid} {kind} file fails its CRC")
        return data

    def _get(self, pid: int) -> Product:
        row = self._db.execute(f"SELECT {_COLS} FROM products WHERE pid = ?", (pid,)).fetchone()
        if row is None:
            raise CatalogueError(f"no product {pid}")
        return _product(row)

    def get(self, pid: int) -> Product:
        return self._get(pid)

    def list(self, states: tuple[str, ...] | None = None) -> list[Product]:
        if states:
            marks = ",".join("?" * len(states))
            rows = self._db.execute(f"SELECT {_COLS} FROM products WHERE state IN ({marks}) ORDER BY pid",
                                    states).fetchall()
        else:
            rows = self._db.execute(f"SELECT {_COLS} FROM products ORDER BY pid").fetchall()
        return [_product(r) for r in rows]

    def used_bytes(self) -> int:
        row = self._db.execute("SELECT COALESCE(SUM(full_size + thumb_size), 0) FROM products WHERE state = ?",
                               (READY,)).fetchone()
        return int(row[0])

    def counts(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT state, COUNT(*) FROM products GROUP BY state").fetchall())

    def close(self) -> None:
        self._db.close()


_COLS = ("pid, state, created, priority, format, quality, width, height, full_size, full_crc, "
         "thumb_size, thumb_crc, downlinks, reason, meta")


def _product(row: tuple[Any, ...]) -> Product:
    try:
        meta = json.loads(row[14])
    except (TypeError, ValueError):
        meta = {}
    return Product(*row[:14], meta=meta if isinstance(meta, dict) else {})


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")
