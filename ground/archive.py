"""The ground archive: one SQLite file (WAL) of raw packets, decoded values, events and commands.

Raw packets are stored exactly once: ``(scid, apid, seq, time)`` is unique, so a packet the
vehicle retransmits (its ack was lost, or a NAK crossed a late arrival) is recognised and its
decoded content is not stored again. Inserts are batched in one transaction per
:meth:`Archive.ingest` call. Channel samples sit in a table clustered on
``(scid, channel, time)``, so a channel over a time range is one index range scan.

The archive commits with ``synchronous=NORMAL``: on power loss the last transactions may be lost,
which costs nothing because the vehicle only releases what the ground acknowledged, and the
station acknowledges only after :meth:`ingest` has committed.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    id INTEGER PRIMARY KEY,
    scid INTEGER NOT NULL, apid INTEGER NOT NULL, seq INTEGER NOT NULL, time REAL NOT NULL,
    bytes BLOB NOT NULL, received_at REAL NOT NULL,
    UNIQUE (scid, apid, seq, time)
);
CREATE INDEX IF NOT EXISTS packets_time ON packets(scid, apid, time);
CREATE TABLE IF NOT EXISTS samples (
    scid INTEGER NOT NULL, channel INTEGER NOT NULL, time REAL NOT NULL, packet INTEGER NOT NULL,
    value,
    PRIMARY KEY (scid, channel, time, packet)
) WITHOUT ROWID;
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
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def _sql_value(v: Any) -> Any:
    """Channel values as SQLite stores them: numbers and text as they are, the rest as JSON."""
    if v is None or isinstance(v, int | float | str | bytes):
        return int(v) if isinstance(v, bool) else v
    return json.dumps(_jsonable(v))


class Archive:
    """The ground archive. Thread-safe for one writer and readers on separate connections."""

    def __init__(self, path: str | Path, readonly: bool = False) -> None:
        self.path = Path(path)
        uri = f"file:{self.path}?mode=ro" if readonly else str(self.path)
        self._db = sqlite3.connect(uri, uri=readonly, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        if not readonly:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self.duplicates = 0
        self.stored = 0

    # -- writing ---------------------------------------------------------------------------

    def ingest(self, items: Iterable[Ingest], received_at: float | None = None) -> list[bool]:
        """Store a batch in one transaction; True per item that was new (not a duplicate)."""
        rx = time.time() if received_at is None else received_at
        new_flags: list[bool] = []
        samples: list[tuple[int, int, float, int, Any]] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for it in items:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO packets(scid, apid, seq, time, bytes, received_at) VALUES (?,?,?,?,?,?)",
                        (it.scid, it.apid, it.seq, it.time, it.raw, rx),
                    )
                    if cur.rowcount != 1:
                        new_flags.append(False)
                        continue
                    new_flags.append(True)
                    pid = cur.lastrowid
                    for pair in it.samples:
                        try:
                            ch, value = pair
                        except (TypeError, ValueError):
                            continue  # an ill-shaped sample; the raw packet keeps it
                        kind = type(value)
                        if kind is not float and kind is not int and kind is not str:
                            value = _sql_value(value)
                        samples.append((it.scid, ch, it.time, pid, value))
                    if it.event is not None:
                        e = it.event
                        db.execute(
                            "INSERT INTO events(scid, event_id, name, severity, text, args, time, "
                            "packet) VALUES (?,?,?,?,?,?,?,?)",
                            (
                                e.scid,
                                e.event_id,
                                e.name,
                                e.severity,
                                e.text,
                                json.dumps(_jsonable(e.args)),
                                e.time,
                                pid,
                            ),
                        )
                    if it.response is not None:
                        r = it.response
                        db.execute(
                            "INSERT INTO responses(scid, opcode, name, seq, stage, reason, time, "
                            "packet) VALUES (?,?,?,?,?,?,?,?)",
                            (r.scid, r.opcode, r.name, r.seq, r.stage, r.reason, r.time, pid),
                        )
                    if it.chunk is not None:
                        c = it.chunk
                        db.execute(
                            "INSERT OR IGNORE INTO product_chunks VALUES (?,?,?,?,?,?,?,?)",
                            (
                                it.scid,
                                it.apid,
                                c["pid"],
                                c["idx"],
                                c["n"],
                                c["data"],
                                json.dumps(_jsonable(c.get("meta"))),
                                it.time,
                            ),
                        )
                if samples:
                    db.executemany("INSERT OR IGNORE INTO samples VALUES (?,?,?,?,?)", samples)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        n_new = sum(new_flags)
        self.stored += n_new
        self.duplicates += len(new_flags) - n_new
        return new_flags

    def add_command(self, scid: int, name: str, opcode: int, args: dict[str, Any], now: float) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO commands(scid, name, opcode, args, stage, created_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                (scid, name, opcode, json.dumps(_jsonable(args)), "CREATED", now, now),
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
        """(time, value) of one channel over [since, until], oldest first."""
        return self._query(
            "SELECT time, value FROM samples WHERE scid=? AND channel=? AND time BETWEEN ? AND ? ORDER BY time",
            (scid, channel, since, until),
        )

    def latest(self, scid: int, channel: int) -> tuple[float, Any] | None:
        rows = self._query(
            "SELECT time, value FROM samples WHERE scid=? AND channel=? ORDER BY time DESC LIMIT 1",
            (scid, channel),
        )
        return rows[0] if rows else None

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
        """Every sample (scid, channel, time, value), for export."""
        cur = self._db.execute(
            "SELECT scid, channel, time, value FROM samples WHERE (? IS NULL OR scid=?) ORDER BY scid, channel, time",
            (scid, scid),
        )
        yield from cur

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
