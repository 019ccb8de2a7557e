"""Onboard recorder: priority order, in-flight tracking, ack/nak, drop policy, crash safety."""

from __future__ import annotations

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
from flight.link.recorder import Priority, Recorder

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
            rec.ack([(s.apid, s.seq, s.seq) for s in sent[:2]])
            sys.stdout.write("acked " + " ".join(f"{s.apid}:{s.seq}" for s in sent[:2]) + "\\n")
            sys.stdout.flush()
    """
)


def test_survives_kill_9_repeatedly(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = random.Random(1)
    stored: set[str] = set()
    acked: set[str] = set()  # acknowledgements committed: a put came after them
    for _ in range(5):
        proc = subprocess.Popen(
            [sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        pending: list[str] = []  # acknowledged, riding on the next put's commit
        for _ in range(rng.randrange(5, 120)):
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("acked"):
                pending += line.split()[1:]
            else:
                stored.update(line.split())
                acked.update(pending)
                pending = []
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        con = sqlite3.connect(db)
        rows = con.execute("SELECT apid, seq FROM packets").fetchall()
        con.close()
        held = [f"{a}:{s}" for a, s in rows]
        assert len(held) == len(set(held)), "a packet is held twice"
        missing = stored - acked - set(pending) - set(held)
        assert not missing, f"stored packets lost by kill -9: {sorted(missing)[:5]}"
        # an acknowledgement not yet committed may be lost (the packet is sent again); one a
        # later put committed never is
        assert not (acked & set(held)), "an acknowledged packet came back"
    rec = Recorder(db)
    assert rec.stats().packets >= len(stored - acked)
    rec.close()


def _commits_seen(reader: sqlite3.Connection, last: list[int]) -> int:
    """1 if another connection committed since the last call (SQLite's data_version), else 0."""
    v = reader.execute("PRAGMA data_version").fetchone()[0]
    changed = int(v != last[0])
    last[0] = v
    return changed


def test_one_commit_a_cycle_and_fsyncs_follow_the_downlink(tmp_path: Path, clock: FakeTime) -> None:
    """A 10 Hz link step that sends and applies ACKs writes nothing of its own: its bookkeeping
    rides on the next put. Fsyncs come only when new packets go on the wire, or every
    ``sync_every_s`` while nothing is sent."""
    rec = Recorder(tmp_path / "r.db", clock=clock, resend_timeout_s=1e9, sync_every_s=10.0)
    reader = sqlite3.connect(tmp_path / "r.db")
    last = [reader.execute("PRAGMA data_version").fetchone()[0]]
    seq = 0
    cycles_with_commit = 0
    puts = sends_with_new = 0
    for cycle in range(600):  # one simulated minute at 10 Hz, a put every second
        clock.t = cycle / 10
        if cycle % 10 == 0:
            batch = [(pkt(Apid.HOUSEKEEPING, seq + i), Apid.HOUSEKEEPING, seq + i, None, None) for i in range(5)]
            seq += 5
            rec.put_many(batch)
            puts += 1
        syncs = rec.syncs
        sent = rec.next_to_send(100_000)
        if sent:
            sends_with_new += 1
            assert rec.syncs == syncs + 1, "packets went out before they were fsynced"
        if cycle % 10 == 5:
            rec.ack([(Apid.HOUSEKEEPING, 0, (seq - 1) % SEQ_MODULO)])
        cycles_with_commit += _commits_seen(reader, last)
    assert puts == 60 and sends_with_new == 60
    assert rec.commits == 60 and cycles_with_commit == 60  # one transaction per put, none per step
    assert rec.syncs == 60
    assert rec.stats().packets == 0 and rec.stats().acked == 300
    # a blackout: puts go on, nothing is sent; the WAL is fsynced every sync_every_s
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


def test_bookkeeping_is_committed_within_commit_every_s(tmp_path: Path, clock: FakeTime) -> None:
    rec = Recorder(tmp_path / "r.db", clock=clock, commit_every_s=5.0)
    rec.put_many([(pkt(Apid.EVENT, 0), Apid.EVENT, 0, None, None)])
    commits = rec.commits
    assert [s.seq for s in rec.next_to_send(10_000)] == [0]
    assert rec.commits == commits  # the send mark waits for the next put
    clock.t = 5.0
    rec.ack([(Apid.EVENT, 0, 0)])
    assert rec.commits == commits + 1  # ... or for commit_every_s
    reader = sqlite3.connect(tmp_path / "r.db")
    assert reader.execute("SELECT COUNT(*) FROM packets").fetchone()[0] == 0
    reader.close()
    rec.close()


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
        before = r.stats()
        r.close()
        r = Recorder(path, capacity_bytes=2_500, clock=t, resend_timeout_s=10)
        after = r.stats()
        assert (after.packets, after.bytes, after.in_flight, after.by_priority) == (
            before.packets, before.bytes, before.in_flight, before.by_priority)
    finally:
        r.close()
