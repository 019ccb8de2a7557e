"""The ground archive: one SQLite file (WAL) of raw packets, decoded values, events and commands.

Raw packets are stored exactly once: ``(time, scid, apid, seq)`` is unique, so a packet the
vehicle retransmits (its ack was lost, or a NAK crossed a late arrival) is recognised and its
decoded content is not stored again. Inserts are batched in one transaction per
:meth:`Archive.ingest` call.

Channel samples are stored in blocks: per commit, per run of packets with the same channel list
(a housekeeping layout, at least ``BLOCK_MIN`` packets), one ``sample_runs`` row holding the
packets' times and ids, and per channel one ``sample_blocks`` row holding that channel's values,
each a packed big-endian 64-bit array (:func:`pack_run`, :func:`pack_values`); the blocks'
``t_first``/``t_last`` are indexed, so a channel over a time range reads only the blocks that
overlap it and decodes them with numpy. A block holds one kind of value:
finite floats or 64-bit ints. The other samples (text, bytes, NaN, integers beyond 64 bits, a
channel whose values change kind within a commit, a run too short for blocks) are rows, as
before: appended to ``samples_recent`` and merged into ``samples_by_channel`` (clustered on
``(scid, channel, time, packet)``) every ``MERGE_ROWS`` rows and at close, or straight in with
``DENSE_SAMPLES`` or more a channel. The view ``samples`` is the union of the three, one row
per sample, for anyone reading the file with plain SQL: it unpacks the blocks in SQL (exactly:
a double is rebuilt from its bits with a table of powers of two, ``sample_scale``, and
``sample_slots`` numbers a block's entries), at some microseconds a sample, so a reader that
wants speed uses the methods here. They read the tables themselves and return what they did
when every sample was a row. An archive made with the two row tables only gains the block table
(and the view its third part) the first time it is opened for writing; an archive made with a
single ``samples`` table keeps that layout.

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
import itertools
import json
import logging
import math
import operator
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from flight.logcount import worth_a_line
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


# Samples of a new archive that are not in blocks (_BLOCKS): a table clustered on (scid, channel,
# time, packet) that takes them in large sorted merges, the recent ones appended in arrival order
# until the next merge. The view ``samples`` (_VIEW) is over these two and the blocks. An archive
# made before the staged layout has one ``samples`` table written at every commit, and keeps it.
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
"""
_MERGE = ("INSERT OR IGNORE INTO samples_by_channel SELECT scid, channel, time, packet, value "
          "FROM samples_recent ORDER BY scid, channel, time, packet")
#: most samples in one block: a longer run of packets is cut into several blocks
BLOCK_MAX = 4096
#: fewest: a shorter run (a trickle of commits) is rows, which pack closer than small blocks and
#: are merged by channel like any rows
BLOCK_MIN = 16
_F64, _I64 = np.dtype(">f8"), np.dtype(">i8")


_BYTES = "X'" + bytes(range(256)).hex().upper() + "'"  # instr(this, one byte) - 1 is the byte's value


def _hex_int(off: str, blob: str) -> str:
    """SQL for the big-endian int64 at byte ``off`` (an SQL expression, 0-based) of ``blob``:
    its eight bytes, each found in the 256 byte values by instr and placed by a shift (SQLite has
    no blob-to-integer function). The eight bytes are read from the block once."""
    parts = " | ".join(f"((instr(z, substr(w, {k + 1}, 1)) - 1) << {56 - 8 * k})" for k in range(8))
    return f"(SELECT {parts} FROM (SELECT substr({blob}, {off} + 1, 8) AS w, {_BYTES} AS z))"


def _hex_f64(off: str, blob: str) -> str:
    """SQL for the big-endian double at byte ``off`` of ``blob``, rebuilt exactly from its bits:
    sign, 53-bit significand (an exact integer) times 2**(exponent), looked up in sample_scale."""
    return (
        "(SELECT (CASE WHEN x < 0 THEN -1.0 ELSE 1.0 END) * ((x & 4503599627370495) + "
        "(CASE WHEN ((x >> 52) & 2047) = 0 THEN 0 ELSE 4503599627370496 END)) * "
        "(SELECT scale FROM sample_scale WHERE e = ((x >> 52) & 2047)) "
        f"FROM (SELECT {_hex_int(off, blob)} AS x))"
    )


_BLOCKS = """
CREATE TABLE IF NOT EXISTS sample_runs (
    id INTEGER PRIMARY KEY, n INTEGER NOT NULL, data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sample_blocks (
    id INTEGER PRIMARY KEY,
    scid INTEGER NOT NULL, channel INTEGER NOT NULL, t_first REAL NOT NULL, t_last REAL NOT NULL,
    n INTEGER NOT NULL, kind TEXT NOT NULL, run INTEGER NOT NULL REFERENCES sample_runs(id),
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS sample_blocks_range ON sample_blocks(scid, channel, t_last, t_first);
CREATE TABLE IF NOT EXISTS sample_slots (i INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS sample_scale (e INTEGER PRIMARY KEY, scale REAL NOT NULL);
"""
_VIEW = f"""
CREATE VIEW samples AS
    SELECT scid, channel, time, packet, value FROM samples_by_channel
    UNION ALL SELECT scid, channel, time, packet, value FROM samples_recent
    UNION ALL SELECT b.scid, b.channel, {_hex_f64("8 * s.i", "r.data")}, {_hex_int("8 * (b.n + s.i)", "r.data")},
        CASE b.kind WHEN 'i' THEN {_hex_int("8 * s.i", "b.data")} ELSE {_hex_f64("8 * s.i", "b.data")} END
    FROM sample_blocks b JOIN sample_runs r ON r.id = b.run JOIN sample_slots s ON s.i < b.n;
"""


def pack_run(times: Iterable[float], packets: Iterable[int]) -> bytes:
    """A run's ``data``, shared by its channels' blocks: n times (f8) then n packet ids (i8),
    big-endian."""
    t = np.asarray(times, dtype=_F64)
    p = np.asarray(packets, dtype=_I64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError("a run's times and packets differ in length")
    return t.tobytes() + p.tobytes()


def pack_values(values: Iterable[Any], kind: str) -> bytes:
    """A block's ``data``: n values, big-endian f8 for kind "f", i8 for "i"."""
    if kind not in ("f", "i"):
        raise ValueError(f"no block kind {kind!r}")
    v = np.asarray(values, dtype=_F64 if kind == "f" else _I64)
    if v.ndim != 1:
        raise ValueError("a block's values are one array")
    return v.tobytes()


def unpack_block(run: bytes, data: bytes, n: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(times, packet ids, values) of a block of ``n`` samples and its run, as numpy arrays in
    native byte order."""
    if len(run) != 16 * n or len(data) != 8 * n or kind not in ("f", "i"):
        raise ValueError(f"a block of {n} samples of kind {kind!r} cannot be {len(run)} + {len(data)} bytes")
    t = np.frombuffer(run, _F64, n, 0).astype(np.float64)
    p = np.frombuffer(run, _I64, n, 8 * n).astype(np.int64)
    v = np.frombuffer(data, _F64 if kind == "f" else _I64, n)
    return t, p, v.astype(np.float64 if kind == "f" else np.int64)


#: what a reader takes of a block (and its run): n, kind, the run's data, the block's data
_BLOCK_COLS = "b.n, b.kind, r.data, b.data FROM sample_blocks b JOIN sample_runs r ON r.id = b.run"
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


@dataclass(slots=True)
class Ingest:
    """One received packet and what the station decoded from it.

    Its channel samples come one of two ways: ``samples``, a sequence of ``(channel id, value)``
    pairs, or ``columns``, the same as two tuples of one length ``(channel ids, values)`` (what a
    station hands in when it checked a housekeeping list whole: no pairs are built). With
    ``columns`` set, ``samples`` is not read; :meth:`sample_pairs` gives either as pairs."""

    scid: int
    apid: int
    seq: int
    time: float
    raw: bytes
    samples: Sequence[tuple[int, Any]] = ()
    event: EventRecord | None = None
    response: ResponseRecord | None = None
    chunk: dict[str, Any] | None = None
    columns: tuple[tuple[Any, ...], tuple[Any, ...]] | None = None

    def sample_pairs(self) -> list[tuple[int, Any]]:
        """The samples as pairs, whichever way they came (ill-shaped columns: as far as they pair)."""
        if self.columns is None:
            return list(self.samples)
        try:
            chans, values = self.columns
            return list(zip(chans, values, strict=False))
        except (TypeError, ValueError):
            return []


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
        self.batches_refused = 0  # batches stored again item by item
        #: transactions committed by ingest, and fsyncs of the WAL (:meth:`sync`), since open
        self.commits = 0
        self.syncs = 0
        self._unsynced = False
        #: what was wrong with the file at open (empty when all was well)
        self.problems: list[str] = []
        self._staged = False  # samples in the staged layout (a view over two tables)
        self._blocks = False  # and in blocks (sample_blocks), the view over all three
        self._helpers = False  # sample_slots and sample_scale filled
        self._recent = 0  # rows in samples_recent, merged at MERGE_ROWS
        self.merges = 0
        if readonly:
            self._db = self._open_readonly()
            self._staged = self._samples_kind(self._db) == "view"
            self._blocks = self._staged and self._has_blocks(self._db)
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
            if kind is None:  # a new archive: the tables and the view made at once
                db.execute("BEGIN IMMEDIATE")
                for sql in (_SAMPLES_STAGED, _BLOCKS, _VIEW):
                    self._script(db, sql)
                db.execute("COMMIT")
                kind = "view"
            elif kind == "view" and not self._has_blocks(db):  # two row tables: add the blocks
                db.execute("BEGIN IMMEDIATE")
                self._script(db, _BLOCKS)
                db.execute("DROP VIEW samples")
                self._script(db, _VIEW)
                db.execute("COMMIT")
            self._staged = kind == "view"
            self._blocks = self._staged
            # the view's helper rows are written with the first block (none in an archive of rows)
            self._helpers = self._blocks and self._helpers_filled(db)
            self._check(db)
            self._recent = db.execute("SELECT COUNT(*) FROM samples_recent").fetchone()[0] if self._staged else 0
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    @staticmethod
    def _script(db: sqlite3.Connection, sql: str) -> None:
        """Run ``;``-separated DDL inside the caller's transaction (executescript would commit)."""
        for stmt in sql.split(";\n"):
            if stmt.strip():
                db.execute(stmt)

    @staticmethod
    def _helpers_filled(db: sqlite3.Connection) -> bool:
        return bool(db.execute("SELECT COUNT(*) FROM sample_slots").fetchone()[0] >= BLOCK_MAX)

    @staticmethod
    def _fill_helpers(db: sqlite3.Connection) -> None:
        """The view's helper rows: slot numbers 0 .. BLOCK_MAX - 1, and 2**(e - 1075) for every
        exponent field e of a double (2**-1074 for e = 0, the subnormals)."""
        db.executemany("INSERT OR IGNORE INTO sample_slots VALUES (?)", ((i,) for i in range(BLOCK_MAX)))
        db.executemany("INSERT OR IGNORE INTO sample_scale VALUES (?, ?)",
                       ((e, math.ldexp(1.0, max(e, 1) - 1075)) for e in range(2048)))

    @staticmethod
    def _has_blocks(db: sqlite3.Connection) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sample_runs'").fetchone() is not None

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
                self.batches_refused += 1
                n = self.batches_refused
                if worth_a_line(n):
                    log.warning("archive batch of %d refused (%s); storing item by item "
                                "(%d batches so far)", len(batch), exc, n)
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

    @staticmethod
    def _key_ok(it: Ingest) -> bool:
        scid, apid, seq, t = it.scid, it.apid, it.seq, it.time
        if (type(scid) is int and type(apid) is int and type(seq) is int and type(t) is float
                and type(it.raw) is bytes):  # what a station hands in: exact types, ranges only
            return 0 <= scid <= 0xFFFF and 0 <= apid <= 0x7FF and 0 <= seq <= 0x3FFF and 0 <= t <= 2.0**32
        return (
            _num(it.scid, 0, 0xFFFF) and isinstance(it.scid, int) and _num(it.apid, 0, 0x7FF)
            and isinstance(it.apid, int) and _num(it.seq, 0, 0x3FFF) and isinstance(it.seq, int)
            and _num(it.time, 0, 2.0**32) and isinstance(it.raw, bytes | bytearray)
        )

    def _ingest(self, items: list[Ingest], rx: float, raw_only: bool) -> list[bool]:
        samples: list[tuple[int, int, float, int, Any]] = []
        runs: dict[tuple[int, tuple[int, ...]], list[tuple[float, int, tuple[Any, ...]]]] | None = (
            {} if self._blocks else None)
        db = self._db
        db.execute("BEGIN")
        try:
            pids = self._store_packets(items, rx)
            for it, pid in zip(items, pids, strict=True):
                if pid is None or raw_only:
                    continue
                if it.samples or it.columns is not None:
                    self._sample_rows(it, pid, samples, runs)
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
            if runs:
                self._store_blocks(runs, samples)
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
            if self._blocks:  # helper rows written in this transaction are gone with it
                self._helpers = self._helpers_filled(db)
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

    def _store_blocks(self, runs: dict[tuple[int, tuple[int, ...]], list[tuple[float, int, tuple[Any, ...]]]],
                      rows: list[tuple[int, int, float, int, Any]]) -> None:
        """Store each run of packets with one channel list (sorted by time, then packet; cut at
        BLOCK_MAX) as its times and ids and a block of values per channel. A run shorter than
        BLOCK_MIN, and a channel whose values are not all finite floats or all 64-bit ints, go to
        ``rows`` instead, each value as :func:`_sql_value` stores it."""
        blocks: list[tuple[Any, ...]] = []
        for (scid, chans), entries in runs.items():
            if not entries:  # None: a channel list that is not one (rows, pair by pair)
                continue
            if len(entries) < BLOCK_MIN:
                for t, pid, vals in entries:
                    rows.extend(zip(repeat(scid), chans, repeat(t), repeat(pid), map(_sql_value, vals)))
                continue
            if any(map(operator.gt, (e[0] for e in entries), (e[0] for e in entries[1:]))):
                entries.sort(key=operator.itemgetter(0, 1))  # ids rise within a commit: (time, id) order
            for start in range(0, len(entries), BLOCK_MAX):
                ts, pids, vals = zip(*entries[start : start + BLOCK_MAX], strict=True)
                packed = self._pack_columns(chans, vals)
                for ch, col, (kind, _) in zip(chans, zip(*vals, strict=True), packed, strict=True):
                    if kind is None:
                        rows.extend(zip(repeat(scid), repeat(ch), ts, pids, map(_sql_value, col)))
                if any(kind is not None for kind, _ in packed):
                    if not self._helpers:  # in the same transaction as the first blocks
                        self._fill_helpers(self._db)
                        self._helpers = True
                    n, t_first, t_last = len(ts), float(ts[0]), float(ts[-1])
                    run = self._db.execute("INSERT INTO sample_runs(n, data) VALUES (?, ?)",
                                           (n, pack_run(ts, pids))).lastrowid
                    blocks += [(scid, ch, t_first, t_last, n, kind, run, data)
                               for ch, (kind, data) in zip(chans, packed, strict=True) if kind is not None]
        if blocks:
            self._db.executemany(
                "INSERT INTO sample_blocks(scid, channel, t_first, t_last, n, kind, run, data) "
                "VALUES (?,?,?,?,?,?,?,?)", blocks)

    @staticmethod
    def _pack_columns(chans: tuple[int, ...], vals: tuple[tuple[Any, ...], ...]) -> list[tuple[str | None, bytes]]:
        """(kind, packed values) per channel of a run, kind None for a channel a block cannot
        hold. A run of floats only (the usual housekeeping) is packed as one array."""
        if set(map(type, itertools.chain.from_iterable(vals))) == _FLOAT_ONLY:
            grid = np.array(vals, np.float64)
            finite = np.isfinite(grid).all(axis=0).tolist()
            columns = np.ascontiguousarray(grid.T, dtype=_F64)
            return [("f", columns[j].tobytes()) if finite[j] else (None, b"") for j in range(len(chans))]
        out: list[tuple[str | None, bytes]] = []
        for col in zip(*vals, strict=True):
            kinds = set(map(type, col))
            packed: tuple[str | None, bytes] = (None, b"")
            if kinds == _FLOAT_ONLY:
                arr = np.array(col, _F64)
                if np.isfinite(arr).all():
                    packed = ("f", arr.tobytes())
            elif kinds == _INT_ONLY:
                try:
                    packed = ("i", np.array(col, _I64).tobytes())
                except OverflowError:  # beyond 64 bits: tagged rows
                    pass
            out.append(packed)
        return out

    @staticmethod
    def _sample_rows(it: Ingest, pid: int, out: list[tuple[int, int, float, int, Any]],
                     runs: dict[tuple[int, tuple[int, ...]], list[tuple[float, int, tuple[Any, ...]]]] | None = None,
                     ) -> None:
        """Append the rows of ``it``'s samples to ``out``. Its ``columns``, or a list of [int
        channel, float, str or 64-bit int] pairs, is taken whole, in a few C-level passes, and
        with ``runs`` given, kept there for blocks (by scid and channel list) instead of rows;
        anything else pair by pair: ill-shaped pairs skipped, other values stored tagged, a channel
        named twice kept once (the first). With ``runs``, the values' kinds are checked a
        channel at a time by :meth:`_store_blocks`, and a channel list once a commit."""
        pairs = it.samples
        cols = it.columns
        whole = False
        if cols is not None:  # two tuples of one length, or taken pair by pair as far as they pair
            whole = type(cols) is tuple and len(cols) == 2 and type(cols[0]) is tuple and (
                type(cols[1]) is tuple and len(cols[0]) == len(cols[1]))
            if whole:
                chans, values = cols
            else:
                pairs = it.sample_pairs()
        elif type(pairs) is list and set(map(type, pairs)) <= _PAIR_TYPES:
            whole = True
            try:
                chans, values = zip(*pairs, strict=True)
            except ValueError:
                chans = values = ()
        if whole:
            if runs is not None and chans and set(map(type, chans)) == _INT_ONLY:  # a hashable key
                key = (it.scid, chans)
                run = runs.get(key, False)
                if run is False:  # a channel list not seen yet this commit
                    ok = (set(map(type, chans)) == _INT_ONLY and len(set(chans)) == len(chans)
                          and INT64[0] <= min(chans) and max(chans) <= INT64[1])
                    run = runs[key] = [] if ok else None
                if run is not None:
                    run.append((it.time, pid, values))
                    return
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
            if cols is not None:
                pairs = it.sample_pairs()
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
                blocks = self._db.execute(
                    f"SELECT {_BLOCK_COLS} WHERE b.scid=? AND b.channel=? AND b.t_last >= ? "
                    "AND b.t_first <= ? ORDER BY b.t_first, b.id", args).fetchall() if self._blocks else []
            both = kept + recent if not kept or not recent or kept[-1] <= recent[0] else sorted(kept + recent)
            if blocks:
                t, p, v = self._decode_blocks(blocks, since, until)
                if not both:
                    return list(zip(t.tolist(), v, strict=True))
                both = sorted(both + list(zip(t.tolist(), p.tolist(), v, strict=True)), key=operator.itemgetter(0, 1))
            rows = [(t, v) for t, _, v in both]
        return [(t, from_sql(v)) if type(v) is bytes else (t, v) for t, v in rows]

    @staticmethod
    def _decode_blocks(blocks: list[tuple[int, str, bytes, bytes]], since: float = -math.inf,
                       until: float = math.inf,
                       ) -> tuple[np.ndarray, np.ndarray, list[Any]]:
        """(times, packet ids, values as Python numbers) of the blocks' samples within [since,
        until], in (time, packet) order."""
        ts, ps, vs = [], [], []
        for n, kind, run, data in blocks:
            t, p, v = unpack_block(run, data, n, kind)
            if n and (t[0] < since or t[-1] > until):
                keep = (t >= since) & (t <= until)
                t, p, v = t[keep], p[keep], v[keep]
            ts.append(t)
            ps.append(p)
            vs += v.tolist()
        t, p = np.concatenate(ts), np.concatenate(ps)
        if len(t) > 1 and not ((t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (p[1:] > p[:-1]))).all():
            order = np.lexsort((p, t))
            t, p = t[order], p[order]
            vs = [vs[i] for i in order.tolist()]
        return t, p, vs

    def latest(self, scid: int, channel: int) -> tuple[float, Any] | None:
        last = "WHERE scid=? AND channel=? ORDER BY time DESC, packet DESC LIMIT 1"
        tables = ("samples_by_channel", "samples_recent") if self._staged else ("samples",)
        rows = [r for table in tables for r in self._query(f"SELECT time, packet, value FROM {table} {last}",
                                                             (scid, channel))]
        if self._blocks:
            blocks = self._query(
                f"SELECT {_BLOCK_COLS} WHERE b.scid=? AND b.channel=? AND b.t_last = "
                "(SELECT MAX(t_last) FROM sample_blocks WHERE scid=? AND channel=?)", (scid, channel) * 2)
            if blocks:
                t, p, v = self._decode_blocks(blocks)
                rows.append((float(t[-1]), int(p[-1]), v[-1]))
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
        if table == "samples" and self._blocks:  # the view would unpack every block to count them
            return int(self._query(
                "SELECT (SELECT COUNT(*) FROM samples_by_channel) + (SELECT COUNT(*) FROM samples_recent) "
                "+ (SELECT COALESCE(SUM(n), 0) FROM sample_blocks)")[0][0])
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    def iter_samples(self, scid: int | None = None) -> Iterator[tuple[int, int, float, Any]]:
        """Every sample (scid, channel, time, value), for export, by scid, channel, time, packet."""
        sql = ("SELECT scid, channel, time, packet, value FROM {} WHERE (? IS NULL OR scid=?) "
               "ORDER BY scid, channel, time, packet")
        tables = ("samples_by_channel", "samples_recent") if self._staged else ("samples",)
        sources: list[Iterable[tuple[Any, ...]]] = [self._db.execute(sql.format(table), (scid, scid))
                                                    for table in tables]
        if self._blocks:
            sources.append(self._iter_blocks(scid))
        for scid_, ch, t, _, v in heapq.merge(*sources, key=lambda r: r[:4]):
            yield scid_, ch, t, from_sql(v)

    def _iter_blocks(self, scid: int | None) -> Iterator[tuple[int, int, float, int, Any]]:
        """The blocks' samples (scid, channel, time, packet, value) by scid, channel, time, packet:
        one channel decoded at a time."""
        cur = self._db.execute(f"SELECT b.scid, b.channel, {_BLOCK_COLS} WHERE (? IS NULL OR b.scid=?) "
                               "ORDER BY b.scid, b.channel", (scid, scid))
        for (scid_, ch), group in itertools.groupby(cur, key=operator.itemgetter(0, 1)):
            t, p, v = self._decode_blocks([r[2:] for r in group])
            yield from zip(repeat(scid_), repeat(ch), t.tolist(), p.tolist(), v)

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
