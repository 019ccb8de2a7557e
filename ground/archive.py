"""The ground archive: one SQLite file (WAL) of raw packets, decoded values, events and commands.

Raw packets are stored exactly once: ``(time, scid, apid, seq)`` is unique, so a packet the
vehicle retransmits (its ack was lost, or a NAK crossed a late arrival) is recognised and its
decoded content is not stored again. Inserts are batched in one transaction per
:meth:`Archive.ingest` call.

Channel samples are read from a table clustered on ``(scid, channel, time, packet)``, so a
channel over a time range is one index range scan. A commit writing there would rewrite one leaf
per channel that got a sample, a page for a few samples; so a new archive appends a commit's
samples to ``samples_recent`` (a few pages, in arrival order) and merges them into
``samples_by_channel`` in one sorted insert every ``MERGE_ROWS`` rows and at close; a commit
with ``DENSE_SAMPLES`` or more a channel (a pass's backlog) goes straight in. The view
``samples`` is the union of the two, for anyone reading the file; the reading methods query
both. An archive made before with a single ``samples`` table keeps that layout.

The archive commits with ``synchronous=NORMAL`` (a commit survives a crash of the station, not
a power loss) and is made durable by :meth:`Archive.sync` (an fsync of the WAL) only when
something depends on it: the station syncs before it sends an ACK, and the vehicle deletes only
what was acknowledged, so a power cut can only lose commits nobody acknowledged, which the
vehicle still holds and sends again. New archives use 512-byte pages (SQLite's smallest: a
commit rewrites the partly filled last page of each table it appends to), and the WAL is
checkpointed only every ``WAL_CHECKPOINT_PAGES`` pages, so a page is copied into the file about
once rather than once per thousand pages of WAL (:attr:`Archive.commits`, :attr:`Archive.syncs`
and :attr:`Archive.merges` count what it cost).

Any value is stored without loss: integers beyond SQLite's signed 64 bits (a u64 above 2**63 - 1)
and NaN (which SQLite would turn into NULL) are stored as tagged blobs and come back as the same
Python value from every reading method. A batch that SQLite refuses is stored item by item, and
an item whose decoded content cannot be stored keeps at least its raw packet, so nothing a
station hands in makes ingest raise (except a failing disk).

Checked at open: a file SQLite cannot read is moved aside (``archive.db.corrupt-<time>``), a
fresh archive starts, and an ``ArchiveRecovered`` event (scid 0) in the new one says what
happened (:attr:`Archive.problems`). Opened read-only (the CLI), a missing, empty or unreadable
archive raises :class:`ArchiveError` with one line. The file is created 0600.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any

from flight.persist import create_private_file, move_aside

log = logging.getLogger(__name__)

INT64 = (-(2**63), 2**63 - 1)
_TAG = b"\x00magpie:"  # tagged blobs: values SQLite cannot hold as they are
PAGE_SIZE = 512
_PAIR_TYPES = frozenset({list, tuple})
_INT_ONLY = {int}
_FLOAT_ONLY = {float}
_PLAIN_KINDS = frozenset({float, str, int})
# WAL pages between checkpoints. A checkpoint copies the newest version of every page in the WAL
# into the file, so each one copies again every channel's newest leaf: rare checkpoints copy
# each page about once. A 10-minute mission's archive never reaches it before close.
WAL_CHECKPOINT_PAGES = 16384
_LIGHT_CHECK_BYTES = 256 * 1024 * 1024  # above this, open checks the schema, not every page


class ArchiveError(OSError):
    """The archive cannot be opened (missing, empty, not a database); the message says which."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    id INTEGER PRIMARY KEY,
    scid INTEGER NOT NULL, apid INTEGER NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL,
    bytes BLOB NOT NULL, received_at REAL NOT NULL,
    -- time first: packets arrive about in spacecraft-time order, so a commit's keys go to the
    -- newest leaf or two, where (scid, apid, ...) first touched a leaf per APID
    UNIQUE (time, scid, apid, seq)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    scid INTEGER NOT NULL, event_id INTEGER NOT NULL, name TEXT, severity TEXT, text TEXT,
    args TEXT, time REAL NOT NULL, packet INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(scid, time);
CREATE TABLE IF NOT EXISTS responses (
    id INTEGER PRIMARY KEY,
    scid INTEGER NOT NULL, opcode INTEGER, name TEXT, seq INTEGER, stage TEXT, reason TEXT,
    time REAL NOT NULL, packet INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS product_chunks (
    scid INTEGER NOT NULL, apid INTEGER NOT NULL, pid INTEGER NOT NULL, idx INTEGER NOT NULL,
    n INTEGER NOT NULL, data BLOB, meta TEXT, time REAL NOT NULL,
    PRIMARY KEY (scid, apid, pid, idx)
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY,
    scid INTEGER NOT NULL, name TEXT NOT NULL, opcode INTEGER NOT NULL, args TEXT NOT NULL,
    stage TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0,
    counters TEXT NOT NULL DEFAULT '[]', created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_scid ON commands(scid, id);
CREATE TABLE IF NOT EXISTS channel_names (
    scid INTEGER NOT NULL, id INTEGER NOT NULL, name TEXT NOT NULL, PRIMARY KEY (scid, id)
);
"""


# Samples of a new archive: a table clustered on (scid, channel, time, packet) that takes them in
# large sorted merges, the recent ones appended in arrival order until the next merge, and the
# view ``samples`` over both (what readers of the file query). An archive made before has one
# ``samples`` table written at every commit, and keeps it.
_SAMPLES_STAGED = """
CREATE TABLE samples_by_channel (
    scid INTEGER NOT NULL, channel INTEGER NOT NULL, time REAL NOT NULL, packet INTEGER NOT NULL,
    value,
    PRIMARY KEY (scid, channel, time, packet)
) WITHOUT ROWID;
CREATE TABLE samples_recent (
    scid INTEGER NOT NULL, channel INTEGER NOT NULL, time REAL NOT NULL, packet INTEGER NOT NULL,
    value
);
CREATE VIEW samples AS
    SELECT scid, channel, time, packet, value FROM samples_by_channel
    UNION ALL SELECT scid, channel, time, packet, value FROM samples_recent;
"""
_MERGE = ("INSERT OR IGNORE INTO samples_by_channel SELECT scid, channel, time, packet, value "
          "FROM samples_recent ORDER BY scid, channel, time, packet")
#: recent samples that make a merge: each merge rewrites about one leaf per channel, so more
#: rows per merge is fewer bytes written per row; readers scan at most this many unindexed rows
MERGE_ROWS = 16384
#: samples a channel in one commit from which they go straight to the clustered table (about a
#: page of them: the leaf rewritten is mostly new rows, and the merge's second copy is saved)
DENSE_SAMPLES = 16


@dataclass(frozen=True, slots=True)
class Sample:
    scid: int
    channel: int
    time: float
    value: Any
    name: str = ""


@dataclass(frozen=True, slots=True)
class EventRecord:
    scid: int
    event_id: int
    name: str
    severity: str
    text: str
    args: list[Any]
    time: float


@dataclass(frozen=True, slots=True)
class ResponseRecord:
    scid: int
    opcode: int
    name: str
    seq: int
    stage: str
    reason: str
    time: float


@dataclass
class Ingest:
    """One received packet and what the station decoded from it."""

    scid: int
    apid: int
    seq: int
    time: float
    raw: bytes
    samples: list[tuple[int, Any]] = field(default_factory=list)
    event: EventRecord | None = None
    response: ResponseRecord | None = None
    chunk: dict[str, Any] | None = None


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, bytes | bytearray):
        return bytes(v).hex()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)  # msgpack extension types and anything else: readable, never an error


def _json(v: Any) -> str:
    return json.dumps(_jsonable(v))


def _sql_value(v: Any) -> Any:
    """Channel values as SQLite stores them: numbers and text as they are, the rest tagged or JSON."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v if INT64[0] <= v <= INT64[1] else _TAG + b"int:" + str(v).encode()
    if isinstance(v, float):
        return _TAG + b"nan" if math.isnan(v) else v
    if isinstance(v, bytes):
        return v
    return _json(v)


def from_sql(v: Any) -> Any:
    """A stored value back as the Python value that was stored (tagged blobs decoded)."""
    if type(v) is bytes and v.startswith(_TAG):
        body = v[len(_TAG) :]
        if body.startswith(b"int:"):
            return int(body[4:])
        if body == b"nan":
            return math.nan
    return v


def _num(v: Any, lo: float, hi: float) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and lo <= v <= hi


class Archive:
    """The ground archive. Thread-safe for one writer and readers on separate connections."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.duplicates = 0
        self.stored = 0
        self.refused = 0  # items whose decoded content could not be stored (raw kept)
        #: transactions committed by ingest, and fsyncs of the WAL (:meth:`sync`), since open
        self.commits = 0
        self.syncs = 0
        self._unsynced = False
        #: what was wrong with the file at open (empty when all was well)
        self.problems: list[str] = []
        self._staged = False  # samples in the staged layout (a view over two tables)
        self._recent = 0  # rows in samples_recent, merged at MERGE_ROWS
        self.merges = 0
        if readonly:
            self._db = self._open_readonly()
            self._staged = self._samples_kind(self._db) == "view"
            return
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            moved = move_aside(self.path)
            where = f"; kept as {moved.name}" if moved else ""
            self.problems.append(f"archive {self.path.name} unreadable ({exc}){where}; a fresh archive started")
            log.warning("%s", self.problems[-1])
            self._db = self._open()
            self._db.execute(
                "INSERT INTO events(scid, event_id, name, severity, text, args, time, packet) "
                "VALUES (0, 0, 'ArchiveRecovered', 'WARNING_HI', ?, '[]', 0, 0)",
                (self.problems[-1],),
            )

    def _open(self) -> sqlite3.Connection:
        if not self.path.parent.is_dir():
            raise ArchiveError(f"archive {self.path}: directory {self.path.parent} does not exist")
        create_private_file(self.path)
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only on a new, empty file
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            db.executescript(_SCHEMA)
            kind = self._samples_kind(db)
            if kind is None:  # a new archive: the three made at once
                db.executescript("BEGIN IMMEDIATE;" + _SAMPLES_STAGED + "COMMIT;")
                kind = "view"
            self._staged = kind == "view"
            self._check(db)
            self._recent = db.execute("SELECT COUNT(*) FROM samples_recent").fetchone()[0] if self._staged else 0
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @staticmethod
    def _samples_kind(db: sqlite3.Connection) -> str | None:
        """"view" (the staged layout), "table" (one table, an archive made before) or None."""
        row = db.execute("SELECT type FROM sqlite_master WHERE name = 'samples'").fetchone()
        return None if row is None else str(row[0])

    def _check(self, db: sqlite3.Connection) -> None:
        """Raise sqlite3.DatabaseError unless the file reads as a Magpie archive."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if size <= _LIGHT_CHECK_BYTES:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {verdict}")
        for table in ("packets", "samples", "events", "responses", "commands", "channel_names"):
            db.execute(f"SELECT * FROM {table} LIMIT 1").fetchall()

    def _open_readonly(self) -> sqlite3.Connection:
        p = self.path
        if not p.exists():
            raise ArchiveError(f"no archive at {p}")
        if p.stat().st_size == 0 and not p.with_name(p.name + "-wal").exists():
            raise ArchiveError(f"archive {p} is empty (0 bytes)")
        try:
            db = sqlite3.connect(f"file:{p}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ArchiveError(f"archive {p}: {exc}") from None
        try:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")}
            if "packets" not in tables or "samples" not in tables:
                raise sqlite3.DatabaseError("not a Magpie archive (no packets or samples table)")
            db.execute("SELECT * FROM samples LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            db.close()
            raise ArchiveError(f"archive {p} is unreadable: {exc}") from None
        return db

    # -- writing ---------------------------------------------------------------------------

    def ingest(self, items: Iterable[Ingest], received_at: float | None = None) -> list[bool]:
        """Store a batch in one transaction; True per item that was new (not a duplicate).

        Items whose key fields are ill-typed are refused (False, counted). If SQLite refuses the
        batch, it is stored again item by item, each keeping at least its raw packet.
        """
        rx = time.time() if received_at is None else received_at
        batch = list(items)
        with self._lock:
            try:
                flags = self._ingest(batch, rx, raw_only=False)
            except (sqlite3.InterfaceError, sqlite3.IntegrityError, sqlite3.ProgrammingError,
                    sqlite3.DataError, OverflowError, TypeError, ValueError) as exc:
                log.warning("archive batch of %d refused (%s); storing item by item", len(batch), exc)
                flags = []
                for it in batch:
                    try:
                        flags += self._ingest([it], rx, raw_only=False)
                    except (sqlite3.InterfaceError, sqlite3.IntegrityError, sqlite3.ProgrammingError,
                            sqlite3.DataError, OverflowError, TypeError, ValueError):
                        self.refused += 1
                        flags += self._ingest([it], rx, raw_only=True)
        n_new = sum(flags)
        self._unsynced = True
        self.stored += n_new
        self.duplicates += len(flags) - n_new
        return flags

    def _key_ok(self, it: Ingest) -> bool:
        return (
            _num(it.scid, 0, 0xFFFF) and isinstance(it.scid, int) and _num(it.apid, 0, 0x7FF)
            and isinstance(it.apid, int) and _num(it.seq, 0, 0x3FFF) and isinstance(it.seq, int)
            and _num(it.time, 0, 2.0**32) and isinstance(it.raw, bytes | bytearray)
        )

    def _ingest(self, items: list[Ingest], rx: float, raw_only: bool) -> list[bool]:
        samples: list[tuple[int, int, float, int, Any]] = []
        db = self._db
        db.execute("BEGIN")
        try:
            pids = self._store_packets(items, rx)
            for it, pid in zip(items, pids, strict=True):
                if pid is None or raw_only:
                    continue
                if it.samples:
                    self._sample_rows(it, pid, samples)
                if it.event is not None:
                    e = it.event
                    db.execute(
                        "INSERT INTO events(scid, event_id, name, severity, text, args, time, "
                        "packet) VALUES (?,?,?,?,?,?,?,?)",
                        (e.scid, e.event_id, str(e.name), str(e.severity), str(e.text), _json(e.args),
                         e.time, pid),
                    )
                if it.response is not None:
                    r = it.response
                    db.execute(
                        "INSERT INTO responses(scid, opcode, name, seq, stage, reason, time, "
                        "packet) VALUES (?,?,?,?,?,?,?,?)",
                        (r.scid, r.opcode, str(r.name), r.seq, str(r.stage), str(r.reason), r.time, pid),
                    )
                if it.chunk is not None:
                    c = it.chunk
                    db.execute(
                        "INSERT OR IGNORE INTO product_chunks VALUES (?,?,?,?,?,?,?,?)",
                        (it.scid, it.apid, c["pid"], c["idx"], c["n"], c["data"], _json(c.get("meta")), it.time),
                    )
            recent = self._recent
            if samples and self._staged and len(samples) >= DENSE_SAMPLES * len(
                {(r[0], r[1]) for r in samples}
            ):  # many samples a channel: its leaves fill up, so they may as well go in now
                db.executemany("INSERT OR IGNORE INTO samples_by_channel VALUES (?,?,?,?,?)", samples)
            elif samples and self._staged:
                db.executemany("INSERT INTO samples_recent VALUES (?,?,?,?,?)", samples)
                recent += len(samples)
                if recent >= MERGE_ROWS:
                    self._merge(db)
                    recent = 0
            elif samples:
                db.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?)", samples)
            db.execute("COMMIT")
            self.commits += 1
            self._recent = recent
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return [pid is not None for pid in pids]

    def _merge(self, db: sqlite3.Connection) -> None:
        """Move the recent samples into the clustered table (inside the caller's transaction)."""
        db.execute(_MERGE)
        db.execute("DELETE FROM samples_recent")
        self.merges += 1

    def _store_packets(self, items: list[Ingest], rx: float) -> list[int | None]:
        """Insert the raw packets; the row id of each new one, None for a duplicate or a refusal.

        The usual batch (every key good, none seen before) is one ``executemany`` with the ids
        SQLite would have given one by one (the next after the largest); if any row is ignored
        as a duplicate, that is undone and the batch goes row by row, so the ids are the same."""
        db = self._db
        if items and all(map(self._key_ok, items)):
            base = db.execute("SELECT COALESCE(MAX(id), 0) FROM packets").fetchone()[0]
            rows = [(base + k, it.scid, it.apid, it.seq, float(it.time), bytes(it.raw), rx)
                    for k, it in enumerate(items, 1)]
            db.execute("SAVEPOINT packets_batch")
            before = db.total_changes
            db.executemany(
                "INSERT OR IGNORE INTO packets(id, scid, apid, seq, time, bytes, received_at) "
                "VALUES (?,?,?,?,?,?,?)",
                rows,
            )
            if db.total_changes - before == len(rows):
                db.execute("RELEASE packets_batch")
                return [row[0] for row in rows]
            db.execute("ROLLBACK TO packets_batch")
            db.execute("RELEASE packets_batch")
        pids: list[int | None] = []
        for it in items:
            if not self._key_ok(it):
                self.refused += 1
                pids.append(None)
                continue
            cur = db.execute(
                "INSERT OR IGNORE INTO packets(scid, apid, seq, time, bytes, received_at) VALUES (?,?,?,?,?,?)",
                (it.scid, it.apid, it.seq, float(it.time), bytes(it.raw), rx),
            )
            pids.append(cur.lastrowid if cur.rowcount == 1 else None)
        return pids

    @staticmethod
    def _sample_rows(it: Ingest, pid: int, out: list[tuple[int, int, float, int, Any]]) -> None:
        """Append the rows of ``it``'s samples to ``out``. A list of [int channel, float, str or
        64-bit int] pairs (what a station hands in) is taken whole, in a few C-level passes;
        anything else pair by pair: ill-shaped pairs skipped, other values stored tagged, a channel
        named twice kept once (the first)."""
        pairs = it.samples
        if type(pairs) is list and set(map(type, pairs)) <= _PAIR_TYPES:
            try:
                chans, values = zip(*pairs, strict=True)
            except ValueError:
                chans = values = ()
            kinds = set(map(type, values))
            if (chans and set(map(type, chans)) == _INT_ONLY and len(set(chans)) == len(chans)
                    and INT64[0] <= min(chans)
                    and max(chans) <= INT64[1] and kinds <= _PLAIN_KINDS):
                floats = values if kinds == _FLOAT_ONLY else [v for v in values if type(v) is float]
                ints = () if int not in kinds else [v for v in values if type(v) is int]
                if not (floats and math.isnan(sum(floats))) and not (
                    ints and (min(ints) < INT64[0] or max(ints) > INT64[1])
                ):
                    scid, t = it.scid, it.time
                    out.extend(zip(repeat(scid), chans, repeat(t), repeat(pid), values))
                    return
        seen: set[int] = set()  # a channel twice in one packet: the first is kept (the key's rule)
        for pair in pairs:
            try:
                ch, value = pair
            except (TypeError, ValueError):
                continue  # an ill-shaped sample; the raw packet keeps it
            if not isinstance(ch, int) or not INT64[0] <= ch <= INT64[1] or ch in seen:
                continue
            seen.add(ch)
            kind = type(value)
            if kind is not float and kind is not str and not (
                kind is int and INT64[0] <= value <= INT64[1]
            ):
                value = _sql_value(value)
            elif kind is float and value != value:
                value = _sql_value(value)
            out.append((it.scid, ch, it.time, pid, value))

    @property
    def unsynced(self) -> bool:
        """True when a commit since the last :meth:`sync` could still be lost to a power cut."""
        return self._unsynced

    def sync(self) -> bool:
        """Make every commit so far durable against power loss (fsync of the WAL); before an ACK.
        Returns True if there was anything to sync."""
        with self._lock:
            if not self._unsynced:
                return False
            wal = self.path.with_name(self.path.name + "-wal")
            fd = os.open(wal if wal.exists() else self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            self._unsynced = False
            self.syncs += 1
            return True

    def add_product_chunks(self, scid: int, apid: int, rows: Iterable[tuple[int, int, int, bytes, Any, float]]) -> int:
        """Store a product that came by another transfer (CFDP, :mod:`ground.files`) as chunk rows
        ``(pid, idx, n, data, meta, time)``, so the image tools read it like any other; exactly
        once per (scid, apid, pid, idx). Returns the rows that were new."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                new = 0
                for pid, idx, n, data, meta, t in rows:
                    cur = db.execute("INSERT OR IGNORE INTO product_chunks VALUES (?,?,?,?,?,?,?,?)",
                                     (scid, apid, pid, idx, n, bytes(data), _json(meta), float(t)))
                    new += cur.rowcount
                db.execute("COMMIT")
                self._unsynced = True
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return new

    def add_command(self, scid: int, name: str, opcode: int, args: dict[str, Any], now: float) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO commands(scid, name, opcode, args, stage, created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                (scid, name, opcode, _json(args), "CREATED", now, now),
            )
            return int(cur.lastrowid)

    def update_command(
        self, cmd_id: int, stage: str, reason: str, attempts: int, counters: list[int], now: float
    ) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE commands SET stage=?, reason=?, attempts=?, counters=?, updated_at=? WHERE id=?",
                (stage, reason, attempts, json.dumps(counters), now, cmd_id),
            )

    def register_channels(self, scid: int, channels: Iterable[tuple[int, str]]) -> None:
        """Record channel names so the archive can be queried by name without the dictionary."""
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO channel_names VALUES (?,?,?)",
                [(scid, int(i), str(n)) for i, n in channels],
            )
            self._db.execute("COMMIT")

    def channel_id(self, scid: int, name_or_id: str | int) -> int | None:
        if isinstance(name_or_id, int):
            return name_or_id
        rows = self._query("SELECT id FROM channel_names WHERE scid=? AND name=?", (scid, name_or_id))
        return int(rows[0][0]) if rows else None

    def channel_names(self, scid: int) -> dict[int, str]:
        return dict(self._query("SELECT id, name FROM channel_names WHERE scid=?", (scid,)))

    # -- reading ---------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def channel(
        self, scid: int, channel: int, since: float = float("-inf"), until: float = float("inf")
    ) -> list[tuple[float, Any]]:
        """(time, value) of one channel over [since, until], oldest first (by time, then packet)."""
        where = "WHERE scid=? AND channel=? AND time BETWEEN ? AND ? ORDER BY time, packet"
        args = (scid, channel, since, until)
        if not self._staged:
            rows = self._query(f"SELECT time, value FROM samples {where}", args)
        else:
            with self._lock:
                kept = self._db.execute(f"SELECT time, packet, value FROM samples_by_channel {where}", args).fetchall()
                recent = self._db.execute(f"SELECT time, packet, value FROM samples_recent {where}", args).fetchall()
            both = kept + recent if not kept or not recent or kept[-1] <= recent[0] else sorted(kept + recent)
            rows = [(t, v) for t, _, v in both]
        return [(t, from_sql(v)) if type(v) is bytes else (t, v) for t, v in rows]

    def latest(self, scid: int, channel: int) -> tuple[float, Any] | None:
        last = "WHERE scid=? AND channel=? ORDER BY time DESC, packet DESC LIMIT 1"
        tables = ("samples_by_channel", "samples_recent") if self._staged else ("samples",)
        rows = [r for table in tables for r in self._query(f"SELECT time, packet, value FROM {table} {last}",
                                                             (scid, channel))]
        if not rows:
            return None
        t, _, v = max(rows, key=lambda r: (r[0], r[1]))
        return t, from_sql(v)

    def events(
        self, scid: int | None = None, since: float = float("-inf"), until: float = float("inf")
    ) -> list[EventRecord]:
        rows = self._query(
            "SELECT scid, event_id, name, severity, text, args, time FROM events "
            "WHERE (? IS NULL OR scid=?) AND time BETWEEN ? AND ? ORDER BY time, id",
            (scid, scid, since, until),
        )
        return [EventRecord(s, i, n, sev, t, json.loads(a), tm) for s, i, n, sev, t, a, tm in rows]

    def packets(self, scid: int | None = None, apid: int | None = None) -> list[tuple[Any, ...]]:
        """Raw packets: (scid, apid, seq, time, bytes, received_at)."""
        return self._query(
            "SELECT scid, apid, seq, time, bytes, received_at FROM packets "
            "WHERE (? IS NULL OR scid=?) AND (? IS NULL OR apid=?) ORDER BY id",
            (scid, scid, apid, apid),
        )

    def product_chunks(self, scid: int | None = None, pid: int | None = None) -> list[tuple[Any, ...]]:
        """(scid, apid, pid, idx, n, data, meta JSON, time) of archived product chunks, in order."""
        sql = "SELECT scid, apid, pid, idx, n, data, meta, time FROM product_chunks"
        where, args = [], []
        if scid is not None:
            where.append("scid = ?")
            args.append(scid)
        if pid is not None:
            where.append("pid = ?")
            args.append(pid)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self._query(sql + " ORDER BY scid, pid, apid, idx", tuple(args))

    def commands(self, scid: int | None = None) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT id, scid, name, opcode, args, stage, reason, attempts, counters, created_at, "
            "updated_at FROM commands WHERE (? IS NULL OR scid=?) ORDER BY id",
            (scid, scid),
        )
        keys = (
            "id",
            "scid",
            "name",
            "opcode",
            "args",
            "stage",
            "reason",
            "attempts",
            "counters",
            "created_at",
            "updated_at",
        )
        out = []
        for row in rows:
            d = dict(zip(keys, row, strict=True))
            d["args"] = json.loads(d["args"])
            d["counters"] = json.loads(d["counters"])
            out.append(d)
        return out

    def count(self, table: str) -> int:
        if table not in ("packets", "samples", "events", "responses", "commands", "product_chunks"):
            raise ValueError(f"no table {table!r}")
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    def iter_samples(self, scid: int | None = None) -> Iterator[tuple[int, int, float, Any]]:
        """Every sample (scid, channel, time, value), for export, by scid, channel, time, packet."""
        sql = ("SELECT scid, channel, time, packet, value FROM {} WHERE (? IS NULL OR scid=?) "
               "ORDER BY scid, channel, time, packet")
        tables = ("samples_by_channel", "samples_recent") if self._staged else ("samples",)
        cursors = [self._db.execute(sql.format(table), (scid, scid)) for table in tables]
        for scid_, ch, t, _, v in heapq.merge(*cursors, key=lambda r: r[:4]):
            yield scid_, ch, t, from_sql(v)

    def close(self) -> None:
        """Merge the recent samples (a closed archive is all in the clustered table), then close."""
        with self._lock:
            if self._staged and self._recent:
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    self._merge(self._db)
                    self._db.execute("COMMIT")
                    self._recent = 0
                except sqlite3.Error as exc:  # they stay where they are, readable as before
                    log.warning("archive %s: samples not merged at close: %s", self.path, exc)
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
            self._db.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
