"""Onboard recorder: every downlink packet stays on disk until the ground acknowledges it.

Two files: ``recorder.db``, SQLite in WAL mode with ``synchronous=NORMAL``, the packets and
counters as of the last *checkpoint*; and ``recorder.db-log``, an append-only log of what changed
since (packets stored, sent, acknowledged, NAKed, evicted; counters). Durability costs what it
must, and no more:

- every change (a :meth:`Recorder.put` or :meth:`put_many`, a send, an ACK) is appended to the
  log with one ``write`` before the call returns: it survives kill -9 (the kernel holds what was
  written), and a recorder opened after one replays the log over the database;
- at least every ``sync_every_s`` seconds of the recorder's clock while anything changed (and when
  the log passes ``LOG_MAX_BYTES``, and at close), the changes are committed to the database in
  one transaction and its WAL is fsynced (:meth:`sync`); then the log starts again from its
  beginning under a new generation. Packets stored and acknowledged between two checkpoints
  never reach the database at all. A power loss costs at most the last ``sync_every_s``;
- sequence counts are never reused, not even after a power loss: a count is stored only inside
  a *window* reserved per APID (``SEQ_WINDOW`` counts ahead) that was fsynced first, so one fsync
  covers a window of packets, not each send. A recorder opened in the same boot as it was written
  (kill -9: the page cache survived) continues the counts exactly; one opened after a reboot
  that was not preceded by a clean close continues after each window's end, and the ground sees
  the unused rest of the window as a gap. A clean close shrinks the windows to the counts used.

So one rate-group cycle costs at most one small ``write`` and no fsync; the fsyncs follow the
recorder's clock and the counts, not the downlink (:attr:`Recorder.commits`,
:attr:`Recorder.syncs` count them). The log is overwritten in place from its start after each
checkpoint, so its few pages stay in the page cache and are rarely written to the disk again.

Each row: apid, seq, priority, time, bytes, state (queued or in flight), sent_count, sent_at.
:meth:`next_to_send` picks queued rows by priority then age; a packet in flight is not sent again
until its resend timeout passes or the ground NAKs it. :meth:`ack` deletes acknowledged rows by
per-APID inclusive sequence ranges (which may wrap past 16383); only rows already sent are matched.

Capacity is bounded in bytes. Drop policy when a new packet does not fit: evict the oldest packet
of the least important class present, considering only classes no more important than the new
packet's own; if that cannot make room, the new packet itself is dropped. So events and command
responses are never evicted while housekeeping or products are held, and a product never evicts an
event. Drops are counted per priority class (persisted) and handed out by :meth:`take_drops` so
the flight side can raise an event.

Checked at open: a file SQLite cannot read (garbled, half-truncated, not a database) is moved
aside (``recorder.db.corrupt-<time>``, with its log) and a fresh recorder starts;
:attr:`Recorder.problems` says what happened and how many packets were lost, for the flight
side's event. A log is replayed only over the database generation it was written after (a log
left from another database, or already committed, is ignored); a torn or garbled tail ends the
replay at the last whole record (:func:`decode_log`). How many packets were held is also kept in a
small sidecar (``recorder.db.held``, rewritten when the recorder goes from empty to holding or
back, when a window is reserved, and every few seconds of activity), so a recorder that comes
back empty (a 0-byte file, a deleted one) although it held packets is reported as a loss rather
than a silent fresh start; the sidecar's counts (each APID's reserved window end) let the
packetizer continue past every count that may have been used, so the ground sees the lost counts
as gaps. The files are 0600 in a 0700 directory.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from flight.link.packets import SEQ_MODULO, Apid, peek
from flight.logcount import worth_a_line
from flight.persist import boot_id, create_private_file, ensure_private_dir, move_aside

log = logging.getLogger(__name__)

class Priority(enum.IntEnum):
    """Downlink priority classes; a lower value goes first and is evicted last."""

    REALTIME = 0  # events and command responses
    HOUSEKEEPING = 1
    THUMBNAIL = 2
    PRODUCT = 3


PRIORITY_FOR_APID: dict[int, Priority] = {
    Apid.EVENT: Priority.REALTIME,
    Apid.CMD_RESPONSE: Priority.REALTIME,
    Apid.HOUSEKEEPING: Priority.HOUSEKEEPING,
    Apid.THUMBNAIL: Priority.THUMBNAIL,
    Apid.PRODUCT: Priority.PRODUCT,
}

QUEUED, IN_FLIGHT = 0, 1
# A commit rewrites every page it touches (the newest rows' leaf, index leaves, the counters):
# SQLite's smallest page keeps that near the bytes of the packets themselves.
PAGE_SIZE = 512
# Keep fewer than half the sequence space in flight per APID so an ack range is unambiguous.
MAX_IN_FLIGHT_PER_APID = SEQ_MODULO // 2 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS packets (
    -- not AUTOINCREMENT (its counter table is one more page in every commit): a new row still
    -- takes an id above every row held, so ids keep the arrival order the queue relies on
    id INTEGER PRIMARY KEY,
    apid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    time REAL NOT NULL,
    bytes BLOB NOT NULL,
    size INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    sent_count INTEGER NOT NULL DEFAULT 0,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS packets_queue ON packets(state, priority, id);
CREATE INDEX IF NOT EXISTS packets_apid_seq ON packets(apid, seq);
-- the counters: one b-tree (a rowid table would add a second one, its key index, to every commit)
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Stored:
    """A packet handed out for transmission."""

    apid: int
    seq: int
    priority: int
    data: bytes
    sent_count: int


@dataclass
class RecorderStats:
    packets: int = 0
    bytes: int = 0
    capacity_bytes: int = 0
    in_flight: int = 0
    by_priority: dict[int, int] = field(default_factory=dict)
    dropped: dict[int, int] = field(default_factory=dict)
    acked: int = 0
    naks: int = 0
    resent: int = 0



# -- the log: records of what changed since the last checkpoint -------------------------------

#: counts reserved ahead per APID by one fsync: what a power loss can make the packetizer skip
#: (the ground sees a gap), never reuse
SEQ_WINDOW = 1024
#: the log is folded into the database when it passes this, whatever the clock says
LOG_MAX_BYTES = 1 << 20
_LOG_MAGIC = b"MGRL"
_LOG_HEAD = struct.Struct(">4sQI")  # magic, generation, CRC-32 of magic and generation
_REC_HEAD = struct.Struct(">II")  # body length, CRC-32 of (generation, index, body)
_GEN_INDEX = struct.Struct(">QI")
_GEN_MASK = 2**62 - 1  # generations fit the meta table's signed 64-bit integers


def encode_log_header(gen: int) -> bytes:
    """The 16 bytes a log of generation ``gen`` starts with."""
    return _LOG_HEAD.pack(_LOG_MAGIC, gen, zlib.crc32(_LOG_MAGIC + gen.to_bytes(8, "big")))


def encode_log_record(gen: int, index: int, body: bytes) -> bytes:
    """Record ``index`` (0, 1, ...) of a log of generation ``gen``: its CRC covers both, so a
    record left over from an earlier generation, or out of place, never reads as valid."""
    crc = zlib.crc32(body, zlib.crc32(_GEN_INDEX.pack(gen, index)))
    return _REC_HEAD.pack(len(body), crc) + body


def decode_log(data: bytes) -> tuple[int | None, list[bytes]]:
    """(generation, record bodies) of a log's bytes: the records in order up to the first that is
    torn, garbled or not of this generation (None and nothing when the header is not a log's).
    Never raises on any input."""
    if len(data) < _LOG_HEAD.size:
        return None, []
    magic, gen, crc = _LOG_HEAD.unpack_from(data)
    if magic != _LOG_MAGIC or zlib.crc32(data[:12]) != crc:
        return None, []
    bodies: list[bytes] = []
    off = _LOG_HEAD.size
    while off + _REC_HEAD.size <= len(data):
        n, crc = _REC_HEAD.unpack_from(data, off)
        start, end = off + _REC_HEAD.size, off + _REC_HEAD.size + n
        if end > len(data):
            break
        body = bytes(data[start:end])
        if zlib.crc32(body, zlib.crc32(_GEN_INDEX.pack(gen, len(bodies)))) != crc:
            break
        bodies.append(body)
        off = end
    return gen, bodies


_INSERT = "INSERT INTO packets(id, apid, seq, priority, time, bytes, size) VALUES (?,?,?,?,?,?,?)"
_MARK_SENT = "UPDATE packets SET state = 1, sent_count = sent_count + 1, sent_at = ? WHERE id = ?"


class Recorder:
    """Bounded, crash-safe store of downlink packets awaiting acknowledgement.

    ``clock`` returns spacecraft seconds (pass ``clock.now`` of a flight Clock).
    """

    def __init__(
        self,
        path: str | Path,
        capacity_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
        resend_timeout_s: float = 30.0,
        sync_every_s: float = 10.0,
    ) -> None:
        """``sync_every_s``: the longest a change waits in the log for a checkpoint (a commit
        and an fsync), in seconds of ``clock``: what a power loss could cost."""
        self.path = Path(path)
        self.sync_every_s = sync_every_s
        #: checkpoints committed, and fsyncs of the WAL, since open; checkpoints that failed
        self.commits = 0
        self.syncs = 0
        self.sync_failures = 0
        self.capacity_bytes = capacity_bytes
        self.clock = clock
        self.resend_timeout_s = resend_timeout_s
        #: what was wrong with the stored recorder at open (empty when all was well)
        self.problems: list[str] = []
        #: packets known to have been held but not found at open (moved aside or emptied)
        self.lost_packets = 0
        #: log records replayed at open (changes a kill -9 kept from the database)
        self.replayed = 0
        self._sidecar = self.path.with_name(self.path.name + ".held")
        self._log_path = self.path.with_name(self.path.name + "-log")
        self._fx: list[list[Any]] | None = None  # the changes of the operation under way
        self._fx_meta: dict[str, int] | None = None
        self._dirty = False  # changes logged since the last checkpoint
        self._reserve_pending = False  # a window reserved but not yet fsynced: nothing is sent
        self._synced_at = clock()
        self._log_fd: int | None = None
        self._log_index, self._log_pos = 0, _LOG_HEAD.size
        prior = self._read_sidecar()
        ensure_private_dir(self.path.parent)
        was_empty = not self.path.exists() or (
            self.path.stat().st_size == 0 and not self.path.with_name(self.path.name + "-wal").exists()
        )
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            moved = move_aside(self.path)
            where = f", kept as {moved.name}" if moved else ""
            self.problems.append(f"recorder {self.path.name} unreadable ({exc}){where}; started empty")
            was_empty = True
            self._db = self._open()
        self._pending_drops: dict[int, int] = {}
        self._pending_meta: dict[str, int] = {}
        self._resync()
        self._db.execute("BEGIN IMMEDIATE")
        self._log_gen = self._replay()
        self._resync()
        if was_empty and prior.get("held", 0) > 0 and self._count == 0:
            self.lost_packets = int(prior["held"])
            self.problems.append(
                f"recorder {self.path.name} came back empty but held {self.lost_packets} packets; "
                "they are lost"
            )
        if not any(k.startswith("last_seq.") for k in self._counters) and prior.get("last_seqs"):
            for apid, seq in prior["last_seqs"].items():  # continue the counts: the loss is a gap
                self._set_meta(f"last_seq.{int(apid)}", int(seq) % SEQ_MODULO)
        boot = boot_id()
        if boot is None or self._counters.get("boot") != boot:
            # a reboot since the file was written, without a clean close: counts up to each
            # window's end may be on the ground although the file lost them
            for key, end in list(self._counters.items()):
                if key.startswith("reserve."):
                    self._set_meta("last_seq." + key[8:], int(end))
        self._checkpoint()
        self._noted_held: int | None = None
        self._noted_at = float("-inf")
        self._note_held(force=True)
        for problem in self.problems:
            log.warning("%s", problem)
        log.info("recorder %s opened: %d bytes held of %d", self.path, self._used, capacity_bytes)

    def _open(self) -> sqlite3.Connection:
        """Connect, set WAL and NORMAL sync (checkpoints fsync), create the schema, check integrity."""
        create_private_file(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # takes effect only on a new, empty file
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {verdict}")
            cols = {r[1] for r in db.execute("PRAGMA table_info(packets)")}
            if not {"apid", "seq", "priority", "bytes", "size", "state"} <= cols:
                raise sqlite3.DatabaseError("packets table has another layout")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _replay(self) -> int:
        """Open the log and apply what it holds over the database, if it was written after the
        database's last checkpoint (the same generation). Returns that generation (a new random
        one for a database without)."""
        if self._log_fd is None:
            create_private_file(self._log_path)
            self._log_fd = os.open(self._log_path, os.O_RDWR)
        gen_db = self._counters.get("log_gen")
        try:
            data = self._log_path.read_bytes()
        except OSError as exc:
            self.problems.append(f"recorder log {self._log_path.name} unreadable ({exc}); not replayed")
            data = b""
        gen, bodies = decode_log(data)
        if gen_db is None:
            return int.from_bytes(os.urandom(8), "big") & _GEN_MASK
        if gen == gen_db:
            for body in bodies:
                try:
                    self._db.execute("SAVEPOINT replay")
                    self._apply(msgpack.unpackb(body, raw=False))
                    self._db.execute("RELEASE replay")
                except (ValueError, TypeError, KeyError, IndexError, sqlite3.Error) as exc:
                    self._db.execute("ROLLBACK TO replay")
                    self._db.execute("RELEASE replay")
                    self.problems.append(f"recorder log {self._log_path.name}: record {self.replayed} "
                                         f"not applied ({exc}); the rest not replayed")
                    break
                self.replayed += 1
        return int(gen_db)

    def _apply(self, effects: list[Any]) -> None:
        """Apply one log record's changes (as :class:`_Op` collected them) to the database."""
        db = self._db
        for fx in effects:
            kind = fx[0]
            if kind == "i":
                db.executemany(_INSERT, [tuple(r) for r in fx[1]])
            elif kind == "d":
                db.executemany("DELETE FROM packets WHERE id = ?", [(int(i),) for i in fx[1]])
            elif kind == "s":
                db.executemany(_MARK_SENT, [(float(fx[1]), int(i)) for i in fx[2]])
            elif kind == "q":
                db.executemany("UPDATE packets SET state = 0 WHERE id = ?", [(int(i),) for i in fx[1]])
            elif kind == "m":
                for key, value in fx[1].items():
                    self._set_meta(str(key), int(value))
            else:
                raise ValueError(f"unknown change {kind!r}")

    def _read_sidecar(self) -> dict:
        try:
            doc = json.loads(self._sidecar.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(doc, dict) or not isinstance(doc.get("held", 0), int):
            return {}
        seqs = doc.get("last_seqs")
        if not isinstance(seqs, dict) or not all(
            isinstance(v, int) and str(k).isdigit() for k, v in seqs.items()
        ):
            doc["last_seqs"] = {}
        return doc

    def _note_held(self, force: bool = False) -> None:
        """Rewrite the sidecar when holding changes to or from nothing, or every few seconds.

        A rename without fsync: it must survive kill -9 (it does: the page cache does), and after
        a power loss it is at worst a few seconds behind.
        """
        now = time.monotonic()
        held = self._count
        changed = self._noted_held is None or (held > 0) != (self._noted_held > 0)
        if not (force or changed or (held != self._noted_held and now - self._noted_at >= 5.0)):
            return
        # each APID's reserved window end: counts up to it may be on the ground
        seqs = self.last_seqs()
        seqs.update({int(k[8:]): v for k, v in self._counters.items() if k.startswith("reserve.")})
        doc = {"held": held, "last_seqs": seqs}
        tmp = self._sidecar.with_name(self._sidecar.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(doc))
            os.replace(tmp, self._sidecar)
        except OSError as exc:
            log.warning("recorder sidecar %s not written: %s", self._sidecar, exc)
            return
        self._noted_held, self._noted_at = held, now

    # -- storing ---------------------------------------------------------------------------

    def put(
        self,
        packet_bytes: bytes,
        apid: int,
        seq: int,
        priority: int | None = None,
        time_s: float | None = None,
    ) -> bool:
        """Store one packet durably. False if the drop policy refused it (counted)."""
        return self.put_many([(packet_bytes, apid, seq, priority, time_s)])[0]

    def put_many(
        self, items: Iterable[tuple[bytes, int, int, int | None, float | None]]
    ) -> list[bool]:
        """Store several packets with one log record. Returns stored-or-dropped flags.

        In the log before it returns (kill -9 keeps them); a packet whose count leaves its APID's
        reserved window reserves the next one and is fsynced before it returns. Raises
        sqlite3.Error when nothing of the batch was stored (the disk)."""
        results: list[bool] = []
        now = self.clock()
        batch = items if isinstance(items, list) else list(items)
        reserve = False
        with self._op():
            rows = []
            last: dict[int, int] = {}
            size_all = 0
            for data, apid, seq, priority, time_s in batch:
                prio = int(
                    PRIORITY_FOR_APID.get(apid, Priority.PRODUCT) if priority is None else priority
                )
                size = len(data)
                size_all += size
                rows.append((apid, seq, prio, now if time_s is None else time_s,
                             data if type(data) is bytes else bytes(data), size))
                last[apid] = seq
            by_prio = self._by_prio
            fx = self._fx
            assert fx is not None
            if self._used + size_all <= self.capacity_bytes:  # the usual case: all fit, no drop policy
                first = self._next_id
                full = [(first + k, *row) for k, row in enumerate(rows)]
                self._next_id += len(full)
                self._db.executemany(_INSERT, full)
                fx.append(["i", full])
                self._used += size_all
                self._count += len(rows)
                self._queued += len(rows)
                for row in rows:
                    by_prio[row[2]] = by_prio.get(row[2], 0) + 1
                results = [True] * len(rows)
            else:
                last = {}
                for row in rows:
                    if not self._make_room(row[5], row[2]):
                        self._drop(row[2], 1)
                        results.append(False)
                        continue
                    one = (self._next_id, *row)
                    self._next_id += 1
                    self._db.execute(_INSERT, one)
                    if fx and fx[-1][0] == "i":
                        fx[-1][1].append(one)
                    else:
                        fx.append(["i", [one]])
                    self._used += row[5]
                    self._count += 1
                    self._queued += 1
                    by_prio[row[2]] = by_prio.get(row[2], 0) + 1
                    last[row[0]] = row[1]
                    results.append(True)
            counters = self._counters
            for apid, seq in last.items():
                self._set_meta(f"last_seq.{apid}", seq)
                end = counters.get(f"reserve.{apid}")
                if end is None or (end - seq) % SEQ_MODULO > SEQ_WINDOW:
                    self._set_meta(f"reserve.{apid}", (seq + SEQ_WINDOW) % SEQ_MODULO)
                    reserve = True
            for key, value in self._pending_meta.items():
                self._set_meta(key, value)
            self._pending_meta.clear()
        self._after_op(reserve)
        self._note_held(force=reserve)
        return results

    def _make_room(self, size: int, prio: int) -> bool:
        if size > self.capacity_bytes:
            return False
        while self._used + size > self.capacity_bytes:
            row = self._db.execute(
                "SELECT id, apid, priority, size, state FROM packets WHERE priority >= ? "
                "ORDER BY priority DESC, id ASC LIMIT 1",
                (prio,),
            ).fetchone()
            if row is None:
                return False
            self._db.execute("DELETE FROM packets WHERE id = ?", (row[0],))
            self._note(["d", [row[0]]])
            self._forget([row[1:]])
            self._drop(row[2], 1)
        return True

    def _drop(self, prio: int, n: int) -> None:
        self._pending_drops[prio] = self._pending_drops.get(prio, 0) + n
        self._bump(f"dropped.{prio}", n)

    def _note(self, change: list[Any]) -> None:
        if self._fx is not None:
            self._fx.append(change)

    def _set_meta(self, key: str, value: int) -> None:
        self._counters[key] = value
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))
        if self._fx_meta is not None:
            self._fx_meta[key] = value

    def _bump(self, key: str, n: int) -> None:
        self._set_meta(key, self._counters.get(key, 0) + n)

    def _op(self) -> _Op:
        """One operation's changes: applied inside the transaction left open since the last
        checkpoint, and appended to the log as one record when it ends."""
        return _Op(self)

    def _append_log(self, changes: list[Any]) -> None:
        assert self._log_fd is not None
        record = encode_log_record(self._log_gen, self._log_index,
                                   msgpack.packb(changes, use_bin_type=True))
        view = memoryview(record)
        pos = self._log_pos
        while view:
            n = os.pwrite(self._log_fd, view, pos)
            view, pos = view[n:], pos + n
        self._log_pos = pos
        self._log_index += 1

    def _after_op(self, reserve: bool = False) -> None:
        """Checkpoint when a window was reserved (before anything under it is sent), when the
        log is ``sync_every_s`` old or ``LOG_MAX_BYTES`` long. A failed checkpoint is counted
        and tried again at the next operation; the log still holds everything."""
        if reserve:
            self._reserve_pending = True
        if not (self._reserve_pending or (self._dirty and (
                self.clock() - self._synced_at >= self.sync_every_s or self._log_pos >= LOG_MAX_BYTES))):
            return
        try:
            self._checkpoint()
        except (sqlite3.Error, OSError) as exc:
            self.sync_failures += 1
            n = self.sync_failures
            if worth_a_line(n):
                log.warning("recorder %s: checkpoint failed (%s); %d so far", self.path, exc, n)

    def commit(self) -> None:
        """Checkpoint now (the same as :meth:`sync`)."""
        self.sync()

    def sync(self) -> None:
        """Make everything durable against power loss: commit the changes the log holds to the
        database, fsync its WAL, start the log again. Raises what the disk raised."""
        if self._db.in_transaction or self._dirty or self._reserve_pending:
            self._checkpoint()

    def _checkpoint(self) -> None:
        db = self._db
        gen = (self._log_gen + 1) & _GEN_MASK
        if not db.in_transaction:
            db.execute("BEGIN IMMEDIATE")
        try:
            self._set_meta("log_gen", gen)
            boot = boot_id()
            if boot is not None and self._counters.get("boot") != boot:
                self._set_meta("boot", boot)
            db.execute("COMMIT")
        except sqlite3.Error:
            # nothing since the last checkpoint reached the database; the log still holds it
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._resync()
            db.execute("BEGIN IMMEDIATE")
            self._replay()
            self._resync()
            raise
        self.commits += 1
        wal = self.path.with_name(self.path.name + "-wal")
        fd = os.open(wal if wal.exists() else self.path, os.O_RDONLY)  # no WAL: all checkpointed
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.syncs += 1
        assert self._log_fd is not None
        self._log_gen, self._log_index, self._log_pos = gen, 0, _LOG_HEAD.size
        if os.fstat(self._log_fd).st_size > 2 * LOG_MAX_BYTES:
            os.ftruncate(self._log_fd, _LOG_HEAD.size)  # a burst's log: give the room back
        os.pwrite(self._log_fd, encode_log_header(gen), 0)  # older records fail their CRC now
        self._dirty = self._reserve_pending = False
        self._synced_at = self.clock()

    def _resync(self) -> None:
        """At open and after a rollback, load what the in-memory copies mirror: the bytes and
        packets held, per priority, how many are queued and in flight per APID, and the earliest
        send time among those in flight (so a step with nothing due again reads nothing)."""
        db = self._db
        self._used = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM packets").fetchone()[0])
        self._next_id = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM packets").fetchone()[0]) + 1
        self._counters = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self._by_prio: dict[int, int] = {
            int(p): int(n)
            for p, n in db.execute("SELECT priority, COUNT(*) FROM packets GROUP BY priority")
        }
        self._count = sum(self._by_prio.values())
        self._in_flight: dict[int, int] = {
            int(a): int(n)
            for a, n in db.execute(
                "SELECT apid, COUNT(*) FROM packets WHERE state = ? GROUP BY apid", (IN_FLIGHT,)
            )
        }
        self._in_flight_total = sum(self._in_flight.values())
        self._queued = self._count - self._in_flight_total
        self._refresh_due_floor()

    def _refresh_due_floor(self) -> None:
        """The earliest ``sent_at`` among packets in flight (+inf when none): no packet can be
        due again before ``_due_floor + resend_timeout_s``. It only ever errs low (acks leave it
        where it was), which costs one look, never a missed resend."""
        if not self._in_flight_total:
            self._due_floor = float("inf")
            return
        low = self._db.execute(
            "SELECT MIN(sent_at) FROM packets WHERE state = ?", (IN_FLIGHT,)
        ).fetchone()[0]
        self._due_floor = float("-inf") if low is None else float(low)

    def _forget(self, rows: Iterable[tuple[int, int, int, int]]) -> None:
        """Take deleted rows ``(apid, priority, size, state)`` out of the in-memory copies."""
        for apid, prio, size, state in rows:
            self._used -= size
            self._count -= 1
            self._by_prio[prio] -= 1
            if state == IN_FLIGHT:
                self._in_flight[apid] -= 1
                self._in_flight_total -= 1
            else:
                self._queued -= 1

    # -- sending ---------------------------------------------------------------------------

    def next_to_send(self, budget_bytes: int, now_s: float | None = None) -> list[Stored]:
        """Packets to transmit now, highest priority then oldest, within ``budget_bytes``.

        They are marked in flight; each comes back only after the resend timeout or a NAK.
        Nothing is handed out while a reserved window waits for its fsync.
        """
        now = self.clock() if now_s is None else now_s
        out: list[Stored] = []
        if self._reserve_pending:
            self._after_op()
            if self._reserve_pending:
                return out
        due = now - self.resend_timeout_s
        resend = self._in_flight_total > 0 and due >= self._due_floor
        if not self._queued and not resend:  # most link steps: nothing queued, nothing due again
            if self._dirty:
                self._after_op()
            return out
        in_flight = self._in_flight
        with self._op():
            if resend:
                back = self._db.execute(
                    "SELECT id, apid FROM packets WHERE state = ? AND sent_at <= ?", (IN_FLIGHT, due)
                ).fetchall()
                if back:
                    self._db.executemany("UPDATE packets SET state = 0 WHERE id = ?", [(r[0],) for r in back])
                    self._note(["q", [r[0] for r in back]])
                    for _, apid in back:
                        in_flight[apid] -= 1
                    self._in_flight_total -= len(back)
                    self._queued += len(back)
                self._refresh_due_floor()
            if self._queued:
                self._choose(budget_bytes, now, out)
        self._after_op()
        return out

    def _choose(self, budget_bytes: int, now: float, out: list[Stored]) -> None:
        in_flight = self._in_flight
        full = [a for a, n in in_flight.items() if n >= MAX_IN_FLIGHT_PER_APID]
        skip = f" AND apid NOT IN ({','.join(str(int(a)) for a in full)})" if full else ""
        used = 0
        chosen: list[int] = []
        cursor = self._db.execute(
            "SELECT id, apid, seq, priority, bytes, size, sent_count FROM packets "
            f"WHERE state = ?{skip} ORDER BY priority, id",
            (QUEUED,),
        )
        resent = 0
        for row_id, apid, seq, prio, data, size, sent_count in cursor:
            if used + size > budget_bytes:
                break  # strict priority: nothing jumps ahead of a packet that does not fit
            n = in_flight.get(apid, 0)
            if n >= MAX_IN_FLIGHT_PER_APID:
                continue
            in_flight[apid] = n + 1
            used += size
            chosen.append(row_id)
            out.append(Stored(apid, seq, prio, bytes(data), sent_count + 1))
            if sent_count:
                resent += 1
        cursor.close()
        if resent:
            self._bump("resent", resent)
        if chosen:
            self._db.executemany(_MARK_SENT, [(now, i) for i in chosen])
            self._note(["s", now, chosen])
            self._in_flight_total += len(chosen)
            self._queued -= len(chosen)
            if now < self._due_floor:
                self._due_floor = now

    @staticmethod
    def _range_clause(first: int, last: int) -> tuple[str, tuple[int, ...]]:
        if first <= last:
            return "seq BETWEEN ? AND ?", (first, last)
        return "(seq >= ? OR seq <= ?)", (first, last)  # wrapped past 16383

    def ack(self, ranges: Iterable[tuple[int, int, int]]) -> int:
        """Release acknowledged ``[(apid, first_seq, last_seq), ...]``; returns the count."""
        released = 0
        with self._op():
            for apid, first, last in ranges:
                clause, args = self._range_clause(first % SEQ_MODULO, last % SEQ_MODULO)
                rows = self._db.execute(
                    "SELECT id, apid, priority, size, state FROM packets "
                    f"WHERE apid = ? AND sent_count > 0 AND {clause}",
                    (apid, *args),
                ).fetchall()
                if rows:
                    ids = [r[0] for r in rows]
                    self._db.executemany("DELETE FROM packets WHERE id = ?", [(i,) for i in ids])
                    self._note(["d", ids])
                    self._forget(r[1:] for r in rows)
                    released += len(rows)
            if released:
                self._bump("acked", released)
        self._after_op()
        if released:
            self._note_held()
        return released

    def nak(self, apid: int, seqs: Iterable[int]) -> int:
        """Queue the named packets for retransmission at once. Returns how many were found."""
        seq_list = [s % SEQ_MODULO for s in seqs]
        n = 0
        with self._op():
            for i in range(0, len(seq_list), 500):
                part = seq_list[i : i + 500]
                marks = ",".join("?" * len(part))
                found = self._db.execute(
                    f"SELECT id, state FROM packets WHERE apid = ? AND sent_count > 0 AND seq IN ({marks})",
                    (apid, *part),
                ).fetchall()
                if not found:
                    continue
                self._db.executemany("UPDATE packets SET state = 0 WHERE id = ?", [(r[0],) for r in found])
                self._note(["q", [r[0] for r in found]])
                n += len(found)
                back = sum(1 for r in found if r[1] == IN_FLIGHT)
                if back:
                    self._in_flight[apid] -= back
                    self._in_flight_total -= back
                    self._queued += back
            if n:
                self._bump("naks", n)
        self._after_op()
        return n

    # -- reporting -------------------------------------------------------------------------

    def remember_uplink(self, highs: dict[int, dict[int, int]]) -> None:
        """Keep a copy of the uplink verifier's counters, written with the next stored batch.

        Free (it rides on the next put, committed anyway and fsynced with it) and in another file than the
        counter state, so the vehicle still refuses old commands if that state is lost.
        """
        for kid, per_apid in highs.items():
            for apid, high in per_apid.items():
                key = f"uplink.{int(kid)}.{int(apid)}"
                if self._counters.get(key) != high and 0 <= high < 2**63:
                    self._pending_meta[key] = int(high)

    def uplink_floors(self) -> dict[int, dict[int, int]]:
        """The copy kept by :meth:`remember_uplink`: {key id: {apid: counter}}."""
        out: dict[int, dict[int, int]] = {}
        for k, v in self._counters.items():
            parts = k.split(".")
            if parts[0] == "uplink" and len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                out.setdefault(int(parts[1]), {})[int(parts[2])] = int(v)
        return out

    def remember(self, values: dict[str, int]) -> None:
        """Keep a copy of small counters that only grow (the frame security's sequence numbers),
        written with the next stored batch, like :meth:`remember_uplink`."""
        for name, value in values.items():
            key = f"keep.{name}"
            if self._counters.get(key) != value and 0 <= value < 2**63:
                self._pending_meta[key] = int(value)

    def remembered(self) -> dict[str, int]:
        """The copy kept by :meth:`remember`."""
        return {k[5:]: int(v) for k, v in self._counters.items() if k.startswith("keep.")}

    def take_drops(self) -> dict[int, int]:
        """Drops per priority since the last call (for the flight side to raise an event)."""
        drops, self._pending_drops = self._pending_drops, {}
        return drops

    def last_seqs(self) -> dict[int, int]:
        """Last stored sequence count per APID, to resume a Packetizer after a restart."""
        return {
            int(k.split(".", 1)[1]): v
            for k, v in self._counters.items()
            if k.startswith("last_seq.")
        }

    def stats(self) -> RecorderStats:
        """What is held, from the in-memory copies (no query: comm reports it every step)."""
        c = self._counters
        return RecorderStats(
            packets=self._count,
            bytes=self._used,
            capacity_bytes=self.capacity_bytes,
            in_flight=self._in_flight_total,
            by_priority={p: n for p, n in sorted(self._by_prio.items()) if n},
            dropped={int(k.split(".")[1]): v for k, v in c.items() if k.startswith("dropped.")},
            acked=c.get("acked", 0),
            naks=c.get("naks", 0),
            resent=c.get("resent", 0),
        )

    def contains(self, apid: int, seq: int) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM packets WHERE apid = ? AND seq = ? LIMIT 1", (apid, seq)
            ).fetchone()
            is not None
        )

    def held(self) -> list[tuple[int, int]]:
        """(apid, seq) of every packet held, in arrival order."""
        return [(int(a), int(s)) for a, s in self._db.execute("SELECT apid, seq FROM packets ORDER BY id")]

    def close(self) -> None:
        """Checkpoint what the log holds, with each reserved window shrunk to the counts used
        (nothing more goes out under them), then close: a clean stop loses nothing, and the next
        open continues the counts without a gap even after a reboot."""
        if self._log_fd is None:
            return
        shrunk = False
        try:
            with self._op():
                for key, end in list(self._counters.items()):
                    if key.startswith("reserve."):
                        used = self._counters.get("last_seq." + key[8:], end)
                        if used != end:
                            self._set_meta(key, used)
                            shrunk = True
            self.sync()
        except (sqlite3.Error, OSError) as exc:
            log.warning("recorder %s: final checkpoint failed: %s", self.path, exc)
            shrunk = False
        if shrunk or self._count != self._noted_held:
            self._note_held(force=True)
        os.close(self._log_fd)
        self._log_fd = None
        self._db.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Op:
    """Join the transaction left open since the last checkpoint (or begin it), under a savepoint;
    at the end append the changes collected to the log as one record. On an error, or when the
    log cannot be written, the operation's changes are rolled back and the in-memory copies
    reloaded (a log write that failed is raised as sqlite3.OperationalError: nothing was stored)."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec

    def __enter__(self) -> None:
        rec = self.rec
        if not rec._db.in_transaction:
            rec._db.execute("BEGIN IMMEDIATE")
        rec._db.execute("SAVEPOINT op")
        rec._fx, rec._fx_meta = [], {}

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        rec = self.rec
        changes, meta = rec._fx, rec._fx_meta
        rec._fx = rec._fx_meta = None
        assert changes is not None and meta is not None
        if exc_type is None:
            if meta:
                changes.append(["m", meta])
            try:
                if changes:
                    rec._append_log(changes)
            except OSError as err:
                self._undo()
                raise sqlite3.OperationalError(f"recorder log {rec._log_path.name}: {err}") from err
            rec._db.execute("RELEASE op")
            if changes:
                rec._dirty = True
            return
        self._undo()

    def _undo(self) -> None:
        rec = self.rec
        rec._db.execute("ROLLBACK TO op")
        rec._db.execute("RELEASE op")
        rec._resync()


def packet_identity(data: bytes) -> tuple[int, int]:
    """(apid, seq) of a packet's bytes."""
    apid, seq, _ = peek(data)
    return apid, seq
