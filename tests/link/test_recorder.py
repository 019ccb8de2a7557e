"""Onboard recorder: priority order, in-flight tracking, ack/nak, drop policy, crash safety."""

from __future__ import annotations

import itertools
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flight.link.packets import SEQ_MODULO, Apid, encode_tm
from flight.link.recorder import (
    SEQ_WINDOW,
    Priority,
    Recorder,
    decode_log,
    encode_log_header,
    encode_log_record,
)

pytestmark = pytest.mark.timeout(60)


class FakeTime:
    """A stepped clock for the recorder (seconds)."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def pkt(apid: int, seq: int, size: int = 40) -> bytes:
    return encode_tm(apid, seq, 1.0, {"pad": bytes(size)})


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def rec(tmp_path: Path, clock: FakeTime) -> Recorder:
    r = Recorder(tmp_path / "rec.db", capacity_bytes=1_000_000, clock=clock, resend_timeout_s=10)
    yield r
    r.close()


def test_priority_then_age_and_in_flight_not_resent(rec: Recorder, clock: FakeTime) -> None:
    rec.put(pkt(Apid.PRODUCT, 0), Apid.PRODUCT, 0)
    rec.put(pkt(Apid.HOUSEKEEPING, 0), Apid.HOUSEKEEPING, 0)
    rec.put(pkt(Apid.THUMBNAIL, 0), Apid.THUMBNAIL, 0)
    rec.put(pkt(Apid.EVENT, 0), Apid.EVENT, 0)
    rec.put(pkt(Apid.CMD_RESPONSE, 0), Apid.CMD_RESPONSE, 0)
    rec.put(pkt(Apid.HOUSEKEEPING, 1), Apid.HOUSEKEEPING, 1)
    order = [(s.apid, s.seq) for s in rec.next_to_send(10_000)]
    assert order == [
        (Apid.EVENT, 0),
        (Apid.CMD_RESPONSE, 0),
        (Apid.HOUSEKEEPING, 0),
        (Apid.HOUSEKEEPING, 1),
        (Apid.THUMBNAIL, 0),
        (Apid.PRODUCT, 0),
    ]
    assert rec.next_to_send(10_000) == []  # all in flight
    clock.t = 5
    assert rec.next_to_send(10_000) == []
    clock.t = 10
    again = rec.next_to_send(10_000)
    assert len(again) == 6 and all(s.sent_count == 2 for s in again)
    assert rec.stats().resent == 6


def test_budget_limits_what_goes(rec: Recorder) -> None:
    for i in range(10):
        rec.put(pkt(Apid.HOUSEKEEPING, i), Apid.HOUSEKEEPING, i)
    size = len(pkt(Apid.HOUSEKEEPING, 0))
    assert len(rec.next_to_send(size * 3 + 1)) == 3
    assert [s.seq for s in rec.next_to_send(size * 100)] == list(range(3, 10))


def test_ack_ranges_with_wrap_and_nak(rec: Recorder, clock: FakeTime) -> None:
    seqs = [SEQ_MODULO - 3, SEQ_MODULO - 2, SEQ_MODULO - 1, 0, 1, 2]
    for s in seqs:
        rec.put(pkt(Apid.EVENT, s), Apid.EVENT, s)
    rec.put(pkt(Apid.HOUSEKEEPING, 0), Apid.HOUSEKEEPING, 0)
    assert rec.ack([(Apid.EVENT, SEQ_MODULO - 3, 2)]) == 0  # never sent: not acked
    rec.next_to_send(100_000)
    assert rec.ack([(Apid.EVENT, SEQ_MODULO - 2, 0)]) == 3
    assert rec.nak(Apid.EVENT, [1, 2, 99]) == 2
    assert [(s.apid, s.seq) for s in rec.next_to_send(100_000)] == [
        (Apid.EVENT, 1),
        (Apid.EVENT, 2),
    ]
    assert rec.ack([(Apid.EVENT, 0, 5), (Apid.HOUSEKEEPING, 0, 0)]) == 3
    st = rec.stats()
    assert st.packets == 1 and st.acked == 6 and st.naks == 2
    assert rec.contains(Apid.EVENT, SEQ_MODULO - 3)


def test_drop_policy_lowest_priority_oldest_first(tmp_path: Path, clock: FakeTime) -> None:
    size = len(pkt(Apid.EVENT, 0))
    rec = Recorder(tmp_path / "small.db", capacity_bytes=size * 6, clock=clock)
    rec.put(pkt(Apid.EVENT, 0), Apid.EVENT, 0)
    rec.put(pkt(Apid.HOUSEKEEPING, 0), Apid.HOUSEKEEPING, 0)
    for i in range(4):
        assert rec.put(pkt(Apid.PRODUCT, i), Apid.PRODUCT, i)
    # full: a new housekeeping packet evicts the oldest product
    assert rec.put(pkt(Apid.HOUSEKEEPING, 1), Apid.HOUSEKEEPING, 1)
    assert not rec.contains(Apid.PRODUCT, 0) and rec.contains(Apid.PRODUCT, 1)
    # events push out every product before any housekeeping, never an event
    for i in range(1, 5):
        assert rec.put(pkt(Apid.EVENT, i), Apid.EVENT, i)
    assert rec.stats().by_priority == {Priority.REALTIME: 5, Priority.HOUSEKEEPING: 1}
    # a product cannot evict anything more important: it is dropped itself
    assert not rec.put(pkt(Apid.PRODUCT, 9), Apid.PRODUCT, 9)
    drops = rec.take_drops()
    assert drops == {Priority.PRODUCT: 5, Priority.HOUSEKEEPING: 1}
    assert rec.take_drops() == {}
    assert rec.stats().dropped == drops
    held_bytes = rec.stats().bytes
    assert held_bytes <= size * 6
    rec.close()
    reopened = Recorder(tmp_path / "small.db", capacity_bytes=size * 6, clock=clock)
    assert reopened.stats().dropped == drops and reopened.stats().bytes == held_bytes
    reopened.close()


def test_wal_mode_and_resume_counters(tmp_path: Path, clock: FakeTime) -> None:
    r = Recorder(tmp_path / "r.db", clock=clock)
    r.put_many([(pkt(Apid.EVENT, i), Apid.EVENT, i, None, None) for i in range(5)])
    r.close()
    db = sqlite3.connect(tmp_path / "r.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()
    r = Recorder(tmp_path / "r.db", clock=clock)
    assert r.last_seqs() == {Apid.EVENT: 4}
    r.close()


WRITER = textwrap.dedent(
    """
    import sys
    from flight.link.packets import Apid, SequenceCounter, encode_tm
    from flight.link.recorder import Recorder
    rec = Recorder(sys.argv[1], capacity_bytes=50_000_000, resend_timeout_s=0.0)
    counters = SequenceCounter(rec.last_seqs())
    n = 0
    while True:
        batch = []
        for _ in range(1 + n % 7):
            apid = (Apid.EVENT, Apid.HOUSEKEEPING, Apid.PRODUCT)[n % 3]
            seq = counters.next(apid)
            batch.append((encode_tm(apid, seq, n, {"n": n}), apid, seq, None, float(n)))
            n += 1
        rec.put_many(batch)
        sys.stdout.write(" ".join(f"{a}:{s}" for _, a, s, _, _ in batch) + "\\n")
        sys.stdout.flush()
        if n % 5 == 0:
            sent = rec.next_to_send(4000)
            sys.stdout.write("acking " + " ".join(f"{s.apid}:{s.seq}" for s in sent[:2]) + "\\n")
            sys.stdout.flush()
            rec.ack([(s.apid, s.seq, s.seq) for s in sent[:2]])
            sys.stdout.write("acked\\n")
            sys.stdout.flush()
    """
)


def test_survives_kill_9_repeatedly(tmp_path: Path) -> None:
    """Whatever put_many and ack returned is kept through kill -9 (the log, replayed at open):
    no stored packet lost, no acknowledged one back, and the counts continue without a gap."""
    db = tmp_path / "crash.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(1)
    stored: set[str] = set()
    acked: set[str] = set()  # acknowledgements that returned
    acking: set[str] = set()
    maybe: set[str] = set()  # acknowledgements under way when the kill came: either may be true
    seen: set[str] = set()  # every count the recorder ever held, whether or not its line was read
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        lines = []
        for _ in range(rng.randrange(5, 120)):  # the kill comes at a random point of the run
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # every line the writer got out before the kill (some still in the pipe) is a fact
        with proc.stdout:
            lines += proc.stdout.read().splitlines()
        for line in lines:
            if line.startswith("acking"):
                acking = set(line.split()[1:])
            elif line.startswith("acked"):
                acked |= acking
                acking = set()
            else:
                stored.update(line.split())
        maybe |= acking  # an acknowledgement under way when the kill came
        acking = set()
        with Recorder(db) as rec:
            held = [f"{a}:{s}" for a, s in rec.held()]
        seen.update(held)
        assert len(held) == len(set(held)), "a packet is held twice"
        missing = stored - acked - maybe - set(held)
        assert not missing, f"stored packets lost by kill -9: {sorted(missing)[:5]}"
        assert not (acked & set(held)), "an acknowledged packet came back"
    by_apid: dict[int, list[int]] = {}
    for key in stored | seen:
        apid, seq = map(int, key.split(":"))
        by_apid.setdefault(apid, []).append(seq)
    for apid, seqs in by_apid.items():  # kill -9 is not a reboot: the counts go on exactly
        assert sorted(seqs) == list(range(len(seqs))), hex(apid)


def _reader_commits(reader: sqlite3.Connection, last: list[int]) -> int:
    """1 if another connection committed since the last call (SQLite's data_version), else 0."""
    v = reader.execute("PRAGMA data_version").fetchone()[0]
    changed = int(v != last[0])
    last[0] = v
    return changed


def test_a_checkpoint_every_sync_every_s_not_per_put_or_send(tmp_path: Path, clock: FakeTime) -> None:
    """A 10 Hz link step that stores, sends and applies ACKs writes a log record and nothing
    else: the database sees a commit (and the WAL an fsync) every ``sync_every_s``, and when a
    count leaves its reserved window, never per put or per send."""
    rec = Recorder(tmp_path / "r.db", clock=clock, resend_timeout_s=1e9, sync_every_s=10.0)
    reader = sqlite3.connect(tmp_path / "r.db")
    last = [reader.execute("PRAGMA data_version").fetchone()[0]]
    seq = 0
    commits_seen = 0
    commits, syncs = rec.commits, rec.syncs
    for cycle in range(600):  # one simulated minute at 10 Hz, a put every second
        clock.t = cycle / 10
        if cycle % 10 == 0:
            batch = [(pkt(Apid.HOUSEKEEPING, seq + i), Apid.HOUSEKEEPING, seq + i, None, None) for i in range(5)]
            seq += 5
            rec.put_many(batch)
        assert len(rec.next_to_send(100_000)) == (5 if cycle % 10 == 0 else 0)
        if cycle % 10 == 5:
            rec.ack([(Apid.HOUSEKEEPING, 0, (seq - 1) % SEQ_MODULO)])
        commits_seen += _reader_commits(reader, last)
    # the first put reserved a window (a checkpoint at 0 s), then one every 10 s (10 ... 50 s)
    assert rec.commits - commits == rec.syncs - syncs == commits_seen == 6
    assert rec.stats().packets == 0 and rec.stats().acked == 300
    # a blackout: puts go on, nothing is sent; still a checkpoint every sync_every_s
    syncs = rec.syncs
    for cycle in range(600, 1200):
        clock.t = cycle / 10
        if cycle % 10 == 0:
            rec.put_many([(pkt(Apid.HOUSEKEEPING, seq), Apid.HOUSEKEEPING, seq, None, None)])
            seq += 1
    assert rec.syncs - syncs == 6
    rec.close()
    reader.close()
    # what was acknowledged stayed deleted, everything else is there after a reopen
    again = Recorder(tmp_path / "r.db", clock=clock)
    assert again.stats().packets == 60 and again.stats().acked == 300
    again.close()


def test_a_count_beyond_its_window_is_fsynced_before_the_put_returns(tmp_path: Path, clock: FakeTime) -> None:
    rec = Recorder(tmp_path / "r.db", clock=clock, sync_every_s=1e9)
    syncs = rec.syncs
    for s in range(SEQ_WINDOW + 1):  # the first count reserves [0, SEQ_WINDOW]: one fsync
        rec.put(pkt(Apid.PRODUCT, s), Apid.PRODUCT, s)
    assert rec.syncs == syncs + 1
    rec.put(pkt(Apid.PRODUCT, SEQ_WINDOW + 1), Apid.PRODUCT, SEQ_WINDOW + 1)  # the next window
    assert rec.syncs == syncs + 2
    reader = sqlite3.connect(tmp_path / "r.db")
    reserved = reader.execute("SELECT value FROM meta WHERE key = ?", (f"reserve.{Apid.PRODUCT}",)).fetchone()[0]
    assert reserved == 2 * SEQ_WINDOW + 1  # committed, not only in the log
    reader.close()
    rec.close()


def _power_cut(src: Path, dst: Path) -> None:
    """What a disk holds after a power cut at this moment, at worst: the files as of the last
    fsync, taken earlier by :func:`_durable_copy`, moved into place."""
    for p in src.iterdir():
        os.replace(p, dst / p.name)


def _durable_copy(rec: Recorder, dst: Path) -> None:
    """Right after a sync: the database and its WAL are what a power cut would leave, and the
    log holds no record yet."""
    import shutil

    rec.sync()
    dst.mkdir(exist_ok=True)
    for suffix in ("", "-wal", "-log"):
        p = rec.path.with_name(rec.path.name + suffix)
        if p.exists():
            shutil.copyfile(p, dst / p.name)


def test_after_a_power_cut_no_count_is_used_twice(tmp_path: Path, clock: FakeTime, monkeypatch) -> None:
    """Packets stored and sent after the last fsync are lost with the power; the counts they
    went down under are not given out again: a recorder opened in another boot continues past
    each reserved window. Opened in the same boot (kill -9) it continues exactly."""
    import flight.link.recorder as recorder_mod
    from flight.link.packets import SequenceCounter

    path = tmp_path / "live" / "r.db"
    rec = Recorder(path, clock=clock, sync_every_s=10.0)
    counter = SequenceCounter(rec.last_seqs())
    for _ in range(3):
        s = counter.next(Apid.HOUSEKEEPING)
        rec.put(pkt(Apid.HOUSEKEEPING, s), Apid.HOUSEKEEPING, s)
    _durable_copy(rec, tmp_path / "disk")
    on_the_wire = []
    for _ in range(40):  # stored, logged and sent, never fsynced (all within the window)
        s = counter.next(Apid.HOUSEKEEPING)
        rec.put(pkt(Apid.HOUSEKEEPING, s), Apid.HOUSEKEEPING, s)
        on_the_wire += [p.seq for p in rec.next_to_send(10_000)]
    assert max(on_the_wire) == 42
    rec._db.close()  # the power goes: nothing more reaches the files
    os.close(rec._log_fd)
    _power_cut(tmp_path / "disk", path.parent)
    monkeypatch.setattr(recorder_mod, "boot_id", lambda: 12345)  # the machine booted again
    after = Recorder(path, clock=clock)
    assert after.stats().packets == 3  # what the last fsync held
    resumed = SequenceCounter(after.last_seqs()).next(Apid.HOUSEKEEPING)
    assert resumed == SEQ_WINDOW + 1 and resumed not in on_the_wire  # reserved at count 0
    after.close()
    # a clean close shrank the window: the next boot continues where the counts are
    monkeypatch.setattr(recorder_mod, "boot_id", lambda: 67890)
    again = Recorder(path, clock=clock)
    assert again.last_seqs() == {Apid.HOUSEKEEPING: resumed - 1}
    again.close()


def test_the_log_is_replayed_only_over_its_own_generation(tmp_path: Path, clock: FakeTime) -> None:
    """A crash right after a checkpoint's commit, before the log starts again: the records are
    in the database already and are not applied twice. A log beside another database is not
    applied at all."""
    path = tmp_path / "r.db"
    rec = Recorder(path, clock=clock)
    rec.put_many([(pkt(Apid.EVENT, i), Apid.EVENT, i, None, None) for i in range(4)])
    rec.next_to_send(10_000)
    rec.ack([(Apid.EVENT, 0, 1)])
    stale = path.with_name("r.db-log").read_bytes()  # the log before the checkpoint
    rec.sync()
    rec._db.close()
    os.close(rec._log_fd)
    path.with_name("r.db-log").write_bytes(stale)
    again = Recorder(path, clock=clock)
    assert again.replayed == 0 and sorted(s for _, s in again.held()) == [2, 3]
    again.close()
    other = tmp_path / "other.db"
    Recorder(other, clock=clock).close()
    other.with_name("other.db-log").write_bytes(stale)
    fresh = Recorder(other, clock=clock)
    assert fresh.replayed == 0 and fresh.held() == []
    fresh.close()


def _crash(r: Recorder) -> None:
    """Stop as kill -9 would: no commit, no checkpoint; the kernel keeps what was written."""
    r._db.close()
    os.close(r._log_fd)
    r._log_fd = None


def _truth(r: Recorder) -> tuple:
    """What the file holds, counted by SQL, in the shape of the recorder's own figures."""
    db = r._db
    by_prio = dict(db.execute("SELECT priority, COUNT(*) FROM packets GROUP BY priority").fetchall())
    in_flight = db.execute("SELECT COUNT(*) FROM packets WHERE state = 1").fetchone()[0]
    used = db.execute("SELECT COALESCE(SUM(size), 0) FROM packets").fetchone()[0]
    return sum(by_prio.values()), used, in_flight, by_prio


_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from([Apid.EVENT, Apid.HOUSEKEEPING, Apid.PRODUCT]),
                  st.integers(1, 6), st.integers(0, 300)),
        st.tuples(st.just("send"), st.integers(0, 2_000)),
        st.tuples(st.just("ack"), st.sampled_from([Apid.EVENT, Apid.HOUSEKEEPING, Apid.PRODUCT]),
                  st.integers(0, 40), st.integers(0, 40)),
        st.tuples(st.just("nak"), st.sampled_from([Apid.EVENT, Apid.HOUSEKEEPING, Apid.PRODUCT]),
                  st.lists(st.integers(0, 40), max_size=5)),
        st.tuples(st.just("wait"), st.floats(0.0, 25.0)),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
@example(ops=[("put", Apid.EVENT, 2, 10), ("send", 2_000), ("wait", 11.0), ("send", 60),
              ("nak", Apid.EVENT, [1]), ("send", 2_000), ("ack", Apid.EVENT, 0, 1)])
def test_held_and_in_flight_figures_match_the_file(tmp_path_factory, monkeypatch, ops) -> None:
    """The recorder keeps what it holds, per priority and in flight, in memory (stats() and the
    send path read no table): after any sequence of stores, sends, acks, NAKs, resend timeouts
    and evictions they equal what the file holds, and a reopened recorder finds the same."""
    import flight.link.recorder as recorder_mod

    monkeypatch.setattr(recorder_mod, "MAX_IN_FLIGHT_PER_APID", 3)  # reach the per-APID limit
    path = tmp_path_factory.mktemp("rec") / "rec.db"
    t = FakeTime()
    r = Recorder(path, capacity_bytes=2_500, clock=t, resend_timeout_s=10)  # small: evictions
    seqs = {a: 0 for a in (Apid.EVENT, Apid.HOUSEKEEPING, Apid.PRODUCT)}
    try:
        for op in ops:
            if op[0] == "put":
                _, apid, n, size = op
                items = []
                for _ in range(n):
                    items.append((pkt(apid, seqs[apid], size), apid, seqs[apid], None, None))
                    seqs[apid] = (seqs[apid] + 1) % SEQ_MODULO
                r.put_many(items)
            elif op[0] == "send":
                sent = r.next_to_send(op[1])
                assert sum(len(s.data) for s in sent) <= op[1]
            elif op[0] == "ack":
                r.ack([(op[1], op[2], op[3])])
            elif op[0] == "nak":
                r.nak(op[1], op[2])
            else:
                t.t += op[1]
            st_ = r.stats()
            count, used, in_flight, by_prio = _truth(r)
            assert (st_.packets, st_.bytes, st_.in_flight, st_.by_priority) == (
                count, used, in_flight, by_prio), op
            # and the send path's own figures: what is queued, and no resend due before the floor
            queued, low = r._db.execute(
                "SELECT SUM(state = 0), MIN(CASE WHEN state = 1 THEN sent_at END) FROM packets"
            ).fetchone()
            assert r._queued == (queued or 0), op
            assert low is None or r._due_floor <= low, op
        before = _state(r)
        _crash(r)  # kill -9: the log replayed over the last checkpoint gives the same recorder
        r = Recorder(path, capacity_bytes=2_500, clock=t, resend_timeout_s=10)
        assert _state(r) == before
        r.close()  # a clean stop: the same, with each window shrunk to the counts used
        r = Recorder(path, capacity_bytes=2_500, clock=t, resend_timeout_s=10)
        windows = {k[8:]: v for k, v in r._counters.items() if k.startswith("reserve.")}
        assert windows == {k[9:]: v for k, v in r._counters.items() if k.startswith("last_seq.")}
        assert _state(r, windows=False) == _state(r, windows=False, counters=before[1])
    finally:
        r.close()


def _state(r: Recorder, windows: bool = True, counters: dict | None = None) -> tuple:
    """Every row as stored, the counters (but the log's generation and the boot; the reserved
    windows only with ``windows``) and the figures."""
    rows = r._db.execute("SELECT id, apid, seq, priority, time, bytes, size, state, sent_count, sent_at "
                         "FROM packets ORDER BY id").fetchall()
    counters = {k: v for k, v in (r._counters if counters is None else counters).items()
                if k not in ("log_gen", "boot") and (windows or not k.startswith("reserve."))}
    st_ = r.stats()
    return rows, counters, (st_.packets, st_.bytes, st_.in_flight, st_.by_priority), r.last_seqs()


_BODIES = st.lists(st.binary(max_size=300), max_size=12)


@settings(max_examples=200, deadline=None)
@given(gen=st.integers(0, 2**62 - 1), bodies=_BODIES, data=st.data())
def test_log_records_round_trip_and_damage_leaves_a_prefix(gen: int, bodies: list[bytes], data) -> None:
    blob = encode_log_header(gen) + b"".join(encode_log_record(gen, i, b) for i, b in enumerate(bodies))
    assert decode_log(blob) == (gen, bodies)
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    g, got = decode_log(blob[:cut])  # torn at any byte: the whole records before the tear
    assert g == (gen if cut >= 16 else None) and got == bodies[: len(got)]
    assert cut == len(blob) or len(got) < len(bodies) or not bodies
    at = data.draw(st.integers(0, len(blob) - 1), label="at")
    damaged = bytearray(blob)
    damaged[at] ^= data.draw(st.integers(1, 255), label="flip")
    g, got = decode_log(bytes(damaged))
    assert got == bodies[: len(got)]
    if at < 16:
        assert g is None and got == []
    else:  # the damaged record and those after it are not read
        ends = list(itertools.accumulate(8 + len(b) for b in bodies))
        hit = next(i for i, end in enumerate(ends) if at < 16 + end)
        assert len(got) <= hit
    # a record of another generation (left over past a new header) is never read
    assert decode_log(encode_log_header(gen ^ 1) + blob[16:]) == (gen ^ 1, [])


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=400))
@example(blob=encode_log_header(7) + b"\xff\xff\xff\xff\x00\x00\x00\x00")
def test_any_bytes_decode_as_a_log_without_raising(blob: bytes) -> None:
    gen, bodies = decode_log(blob)
    assert gen is None or isinstance(gen, int)
    assert all(isinstance(b, bytes) for b in bodies)
    assert sum(8 + len(b) for b in bodies) <= max(0, len(blob) - 16)


def test_a_garbled_log_record_is_a_problem_not_a_crash(tmp_path: Path, clock: FakeTime) -> None:
    """A record whose CRC holds but whose content is not the recorder's (a bug, another
    program) stops the replay with a problem reported; the recorder opens and works."""
    import msgpack

    path = tmp_path / "r.db"
    rec = Recorder(path, clock=clock)
    rec.put_many([(pkt(Apid.EVENT, 0), Apid.EVENT, 0, None, None)])  # the window: checkpointed
    rec.put_many([(pkt(Apid.EVENT, 1), Apid.EVENT, 1, None, None)])  # only in the log
    gen, index = rec._log_gen, rec._log_index
    with open(path.with_name("r.db-log"), "r+b") as f:
        f.seek(rec._log_pos)
        f.write(encode_log_record(gen, index, msgpack.packb([["z", 1]])))
    _crash(rec)
    again = Recorder(path, clock=clock)
    assert again.replayed == 1 and [s for _, s in again.held()] == [0, 1]
    assert "not applied" in again.problems[0]
    assert again.put(pkt(Apid.EVENT, 2), Apid.EVENT, 2)
    again.close()
