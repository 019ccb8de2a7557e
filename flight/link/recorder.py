"""Onboard recorder: every downlink packet stays on disk until the ground acknowledges it.

One SQLite file in WAL mode with ``synchronous=NORMAL`` and explicit sync points. Durability
costs what it must, and no more:

- a :meth:`Recorder.put` (or :meth:`put_many`) commits before it returns: the packet is in the
  WAL, so it survives kill -9 (the kernel holds what was written);
- before a packet stored since the last sync is handed out for transmission
  (:meth:`next_to_send`), and at least every ``sync_every_s`` seconds of the recorder's clock
  while packets are stored, the WAL is fsynced (:meth:`sync`): what went on the wire, and its
  sequence count, survives power loss too, so a restarted vehicle never sends another packet
  under a count the ground may already hold;
- bookkeeping that only costs a retransmission if lost (ACKed packets deleted, NAKs requeued,
  packets marked in flight) is not committed on its own: it rides on the next put's transaction
  (or is committed within ``commit_every_s``), so a step that only sends and acknowledges writes
  nothing. Lost to a crash, it means packets are sent again and the ground discards the copies.

So one rate-group cycle costs at most one commit, and the fsyncs follow the downlink, not the
cycle rate (:attr:`Recorder.commits`, :attr:`Recorder.syncs` count them).

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
aside (``recorder.db.corrupt-<time>``) and a fresh recorder starts; :attr:`Recorder.problems`
says what happened and how many packets were lost, for the flight side's event. How many packets
were held is also kept in a small sidecar (``recorder.db.held``, rewritten when the recorder goes
from empty to holding or back, and every few seconds of activity), so a recorder that comes back
empty (a 0-byte file, a deleted one) although it held packets is reported as a loss rather than
a silent fresh start; the sidecar's last sequence counts let the packetizer continue, so the
ground sees the lost counts as gaps. The file and sidecar are 0600 in a 0700 directory.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from flight.link.packets import SEQ_MODULO, Apid, peek
from flight.persist import create_private_file, ensure_private_dir, move_aside

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

_INSERT = "INSERT INTO packets(apid, seq, priority, time, bytes, size) VALUES (?,?,?,?,?,?)"

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
        commit_every_s: float = 5.0,
    ) -> None:
        """``sync_every_s``: the longest stored packets wait for an fsync when nothing is sent
        (what a power loss could cost); ``commit_every_s``: the longest acknowledgements and
        send marks wait for a commit (what a crash could make the vehicle send again). Both in
        seconds of ``clock``."""
        self.path = Path(path)
        self.sync_every_s = sync_every_s
        self.commit_every_s = commit_every_s
        #: transactions committed, and fsyncs of the WAL (:meth:`sync`), since open
        self.commits = 0
        self.syncs = 0
        self._open_since: float | None = None  # a transaction holding bookkeeping is open since
        self._unsynced = False  # packets committed since the last sync
        self._synced_at = clock()
        self.capacity_bytes = capacity_bytes
        self.clock = clock
        self.resend_timeout_s = resend_timeout_s
        #: what was wrong with the stored recorder at open (empty when all was well)
        self.problems: list[str] = []
        #: packets known to have been held but not found at open (moved aside or emptied)
        self.lost_packets = 0
        self._sidecar = self.path.with_name(self.path.name + ".held")
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
        if was_empty and prior.get("held", 0) > 0 and self._count == 0:
            self.lost_packets = int(prior["held"])
            self.problems.append(
                f"recorder {self.path.name} came back empty but held {self.lost_packets} packets; "
                "they are lost"
            )
        if not any(k.startswith("last_seq.") for k in self._counters) and prior.get("last_seqs"):
            with self._tx(commit=True):  # continue the counts, so the ground sees the loss as gaps
                for apid, seq in prior["last_seqs"].items():
                    self._set_meta(f"last_seq.{int(apid)}", int(seq) % SEQ_MODULO)
        self._noted_held: int | None = None
        self._noted_at = float("-inf")
        self._note_held(force=True)
        for problem in self.problems:
            log.warning("%s", problem)
        log.info("recorder %s opened: %d bytes held of %d", self.path, self._used, capacity_bytes)

    def _open(self) -> sqlite3.Connection:
        """Connect, set WAL and NORMAL sync (:meth:`sync` fsyncs), create the schema, check integrity."""
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
        doc = {"held": held, "last_seqs": self.last_seqs()}
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
        """Store several packets in one committed transaction. Returns stored-or-dropped flags.

        Committed, not yet fsynced: see the module docstring for when :meth:`sync` runs."""
        results: list[bool] = []
        now = self.clock()
        batch = items if isinstance(items, list) else list(items)
        with self._tx(commit=True):
            rows = []
            last: dict[int, int] = {}
            size_all = 0
            for data, apid, seq, priority, time_s in batch:
                prio = int(
                    PRIORITY_FOR_APID.get(apid, Priority.PRODUCT) if priority is None else priority
                )
                size = len(data)
                size_all += size
                rows.append((apid, seq, prio, now if time_s is None else time_s, data, size))
                last[apid] = seq
            by_prio = self._by_prio
            if self._used + size_all <= self.capacity_bytes:  # the usual case: all fit, no drop policy
                self._db.executemany(_INSERT, rows)
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
                    self._db.execute(_INSERT, row)
                    self._used += row[5]
                    self._count += 1
                    self._queued += 1
                    by_prio[row[2]] = by_prio.get(row[2], 0) + 1
                    last[row[0]] = row[1]
                    results.append(True)
            for apid, seq in last.items():
                self._set_meta(f"last_seq.{apid}", seq)
            for key, value in self._pending_meta.items():
                self._set_meta(key, value)
            self._pending_meta.clear()
        if any(results):
            self._unsynced = True
        if now - self._synced_at >= self.sync_every_s:
            self._sync_stored()
        self._note_held()
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
            self._forget([row[1:]])
            self._drop(row[2], 1)
        return True

    def _drop(self, prio: int, n: int) -> None:
        self._pending_drops[prio] = self._pending_drops.get(prio, 0) + n
        self._bump(f"dropped.{prio}", n)

    def _set_meta(self, key: str, value: int) -> None:
        self._counters[key] = value
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _bump(self, key: str, n: int) -> None:
        self._set_meta(key, self._counters.get(key, 0) + n)

    def _tx(self, commit: bool = False) -> _Tx:
        """A transaction: ``commit`` ends it (with any bookkeeping before it); otherwise it stays
        open for the next put to commit, or for :meth:`commit` within ``commit_every_s``."""
        return _Tx(self, commit)

    def commit(self) -> None:
        """Commit bookkeeping that waits for the next put (acknowledgements, send marks)."""
        if self._open_since is not None:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error:  # the disk: nothing since the last commit was stored
                self._open_since = None
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._resync()
                raise
            self._open_since = None
            self.commits += 1

    def sync(self) -> None:
        """Make everything durable against power loss: commit, then fsync the WAL."""
        self.commit()
        self._sync_stored()

    def _sync_stored(self) -> None:
        """Fsync the WAL if packets were committed since the last sync. Bookkeeping still open
        stays open: it is not in the WAL yet, and it needs no power-loss durability."""
        self._synced_at = self.clock()
        if not self._unsynced:
            return
        wal = self.path.with_name(self.path.name + "-wal")
        target = wal if wal.exists() else self.path  # no WAL: a checkpoint synced it all
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.syncs += 1
        self._unsynced = False

    def _resync(self) -> None:
        """At open and after a rollback, load what the in-memory copies mirror: the bytes and
        packets held, per priority, how many are queued and in flight per APID, and the earliest
        send time among those in flight (so a step with nothing due again reads nothing)."""
        db = self._db
        self._used = int(db.execute("SELECT COALESCE(SUM(size), 0) FROM packets").fetchone()[0])
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
        """
        now = self.clock() if now_s is None else now_s
        out: list[Stored] = []
        due = now - self.resend_timeout_s
        resend = self._in_flight_total > 0 and due >= self._due_floor
        if not self._queued and not resend:  # most link steps: nothing queued, nothing due again
            return out
        in_flight = self._in_flight
        with self._tx():
            if resend:
                back = self._db.execute(
                    "SELECT apid, COUNT(*) FROM packets WHERE state = ? AND sent_at <= ? "
                    "GROUP BY apid",
                    (IN_FLIGHT, due),
                ).fetchall()
                if back:
                    self._db.execute(
                        "UPDATE packets SET state = ? WHERE state = ? AND sent_at <= ?",
                        (QUEUED, IN_FLIGHT, due),
                    )
                    for apid, n in back:
                        in_flight[apid] -= n
                        self._in_flight_total -= n
                        self._queued += n
                self._refresh_due_floor()
            if not self._queued:
                return out
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
                self._db.executemany(
                    "UPDATE packets SET state = ?, sent_count = sent_count + 1, sent_at = ? "
                    "WHERE id = ?",
                    [(IN_FLIGHT, now, i) for i in chosen],
                )
                self._in_flight_total += len(chosen)
                self._queued -= len(chosen)
                if now < self._due_floor:
                    self._due_floor = now
        if out and self._unsynced:
            self._sync_stored()  # the wire now depends on these packets and their sequence counts
        return out

    @staticmethod
    def _range_clause(first: int, last: int) -> tuple[str, tuple[int, ...]]:
        if first <= last:
            return "seq BETWEEN ? AND ?", (first, last)
        return "(seq >= ? OR seq <= ?)", (first, last)  # wrapped past 16383

    def ack(self, ranges: Iterable[tuple[int, int, int]]) -> int:
        """Release acknowledged ``[(apid, first_seq, last_seq), ...]``; returns the count."""
        released = 0
        with self._tx():
            for apid, first, last in ranges:
                clause, args = self._range_clause(first % SEQ_MODULO, last % SEQ_MODULO)
                rows = self._db.execute(
                    "SELECT id, apid, priority, size, state FROM packets "
                    f"WHERE apid = ? AND sent_count > 0 AND {clause}",
                    (apid, *args),
                ).fetchall()
                if rows:
                    self._db.executemany(
                        "DELETE FROM packets WHERE id = ?", [(r[0],) for r in rows]
                    )
                    self._forget(r[1:] for r in rows)
                    released += len(rows)
            if released:
                self._bump("acked", released)
        if released:
            self._note_held()
        return released

    def nak(self, apid: int, seqs: Iterable[int]) -> int:
        """Queue the named packets for retransmission at once. Returns how many were found."""
        seq_list = [s % SEQ_MODULO for s in seqs]
        n = 0
        with self._tx():
            for i in range(0, len(seq_list), 500):
                part = seq_list[i : i + 500]
                marks = ",".join("?" * len(part))
                where = f"apid = ? AND sent_count > 0 AND seq IN ({marks})"
                found = self._db.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(state = {IN_FLIGHT}), 0) FROM packets "
                    f"WHERE {where}",
                    (apid, *part),
                ).fetchone()
                if not found[0]:
                    continue
                self._db.execute(f"UPDATE packets SET state = ? WHERE {where}", (QUEUED, apid, *part))
                n += int(found[0])
                back = int(found[1])
                if back:
                    self._in_flight[apid] -= back
                    self._in_flight_total -= back
                    self._queued += back
            if n:
                self._bump("naks", n)
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

    def close(self) -> None:
        """Commit and sync what is pending, then close (a clean stop loses nothing)."""
        try:
            self.sync()
        except sqlite3.Error as exc:
            log.warning("recorder %s: final commit failed: %s", self.path, exc)
        if self._count != self._noted_held:
            self._note_held(force=True)
        self._db.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Tx:
    """BEGIN IMMEDIATE (or join the transaction left open), then COMMIT or leave it open; on error
    everything since the last commit is rolled back and the in-memory copies reloaded."""

    def __init__(self, rec: Recorder, commit: bool) -> None:
        self.rec = rec
        self.do_commit = commit

    def __enter__(self) -> None:
        rec = self.rec
        if rec._open_since is None:
            rec._db.execute("BEGIN IMMEDIATE")
            rec._open_since = rec.clock()

    def __exit__(self, exc_type: object, *rest: object) -> None:
        rec = self.rec
        if exc_type is not None:
            rec._open_since = None
            rec._db.execute("ROLLBACK")
            rec._resync()
            return
        assert rec._open_since is not None
        if self.do_commit or rec.clock() - rec._open_since >= rec.commit_every_s:
            rec.commit()


def packet_identity(data: bytes) -> tuple[int, int]:
    """(apid, seq) of a packet's bytes."""
    apid, seq, _ = peek(data)
    return apid, seq
