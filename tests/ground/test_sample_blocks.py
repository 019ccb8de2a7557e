"""Block sample store: every reader returns what an archive of one row per sample returns.

The reference is an archive made with a single ``samples`` table (the old layout, which stores
each sample as a row); the same batches go into it and into a new archive, and every reading
method, and the ``samples`` view read with plain SQL, must agree value for value and in order.
"""

from __future__ import annotations

import math
import sqlite3
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ground import archive as archive_mod
from ground.archive import Archive, Ingest, from_sql, pack_run, pack_values, unpack_block

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(autouse=True)
def _short_runs_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks from a single packet up, so that small examples exercise them."""
    monkeypatch.setattr(archive_mod, "BLOCK_MIN", 1)

SCID = 66
_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _bits(x: float) -> bytes:
    return struct.pack(">d", x)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type; floats compared by their bits (NaN, -0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return _bits(a) == _bits(b)
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


def _old_archive(path: Path) -> Archive:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE samples (scid INTEGER NOT NULL, channel INTEGER NOT NULL, time REAL NOT NULL, "
                   "packet INTEGER NOT NULL, value, PRIMARY KEY (scid, channel, time, packet)) WITHOUT ROWID")
    return Archive(path)


def _view(path: Path) -> list[tuple[Any, ...]]:
    """The ``samples`` view as another process reads it (no Magpie code on the connection)."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT scid, channel, time, packet, value FROM samples "
                          "ORDER BY scid, channel, time, packet").fetchall()


_finite = st.floats(allow_nan=False, allow_infinity=False)
_value = (_finite | st.floats() | st.integers(-(2**63), 2**63 - 1) | st.integers(-(2**70), 2**70)
          | st.text(max_size=4) | st.booleans())
_times = st.sampled_from([0.0, 0.5, 1.0, 1.0, 2.5, 3.0, 7.25]) | st.floats(0, 2.0**32) | st.integers(0, 100)


@st.composite
def _batches(draw: st.DrawFn) -> list[list[Ingest]]:
    """Batches of housekeeping-like packets: a few channel lists, values mostly of one kind a
    channel, times often repeated or out of order, some packets sent twice."""
    layouts = draw(st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=4, unique=True), min_size=1, max_size=3))
    kinds = {c: draw(st.sampled_from(["f", "i", "s", "any"])) for c in range(7)}
    by_kind = {"f": _finite, "i": st.integers(-(2**63), 2**63 - 1), "s": st.text(max_size=3), "any": _value}
    sent: list[Ingest] = []
    batches = []
    seq = 0
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        for _ in range(draw(st.integers(0, 12))):
            if sent and draw(st.integers(0, 9)) == 0:
                batch.append(draw(st.sampled_from(sent)))  # a retransmission
                continue
            chans = draw(st.sampled_from(layouts))
            samples = [(c, draw(by_kind[kinds[c]] if draw(st.integers(0, 7)) else _value)) for c in chans]
            seq += 1
            it = Ingest(SCID if draw(st.integers(0, 5)) else SCID + 1, 0x20, seq % 16384, draw(_times),
                        b"p%d" % seq, samples=samples)
            sent.append(it)
            batch.append(it)
        batches.append(batch)
    return batches


def _compare(old: Archive, new: Archive, old_path: Path, new_path: Path) -> None:
    channels = {(s, c) for s, c, _, _ in old.iter_samples()}
    for scid, ch in sorted(channels | {(SCID, 99)}):
        assert _same(new.channel(scid, ch), old.channel(scid, ch))
        assert _same(new.channel(scid, ch, 0.75, 3.0), old.channel(scid, ch, 0.75, 3.0))
        assert _same(new.latest(scid, ch), old.latest(scid, ch))
    for scid in (None, SCID, SCID + 1):
        assert _same(list(new.iter_samples(scid)), list(old.iter_samples(scid)))
    assert new.count("samples") == old.count("samples")
    got, want = _view(new_path), _view(old_path)
    assert _same(got, want)


def _as_columns(it: Ingest, kind: type) -> Ingest:
    """The same packet with its samples as ``columns`` (tuples, as a station hands them in; lists
    are ill-shaped columns, taken pair by pair)."""
    chans, values = kind(c for c, _ in it.samples), kind(v for _, v in it.samples)
    return Ingest(it.scid, it.apid, it.seq, it.time, it.raw, columns=(chans, values))


@pytest.mark.parametrize("block_min", [1, 3])
@pytest.mark.parametrize("given_as", ["pairs", "columns", "ill-shaped columns"])
@_SETTINGS
@given(batches=_batches())
def test_every_reader_returns_what_one_row_a_sample_returned(tmp_path_factory: pytest.TempPathFactory,
                                                             monkeypatch: pytest.MonkeyPatch, block_min: int,
                                                             given_as: str, batches: list[list[Ingest]]) -> None:
    monkeypatch.setattr(archive_mod, "BLOCK_MIN", block_min)  # 3: runs of 1 or 2 packets are rows
    d = tmp_path_factory.mktemp("blocks")
    old, new = _old_archive(d / "old.db"), Archive(d / "new.db")
    if given_as != "pairs":  # the same objects (a retransmission is the same packet again)
        kind = tuple if given_as == "columns" else list
        cols = {id(it): _as_columns(it, kind) for batch in batches for it in batch}
        new_batches = [[cols[id(it)] for it in batch] for batch in batches]
    else:
        new_batches = batches
    try:
        for batch, new_batch in zip(batches, new_batches, strict=True):
            assert new.ingest(new_batch, received_at=0.0) == old.ingest(batch, received_at=0.0)
        _compare(old, new, d / "old.db", d / "new.db")
        new.close()
        new = Archive(d / "new.db", readonly=True)  # after the close's merge, read-only
        _compare(old, new, d / "old.db", d / "new.db")
    finally:
        old.close()
        new.close()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 2.0**32), st.integers(-(2**63), 2**63 - 1), _finite), max_size=50),
       st.booleans())
def test_a_block_round_trips(samples: list[tuple[float, int, float]], ints: bool) -> None:
    ts = [t for t, _, _ in samples]
    ps = [p for _, p, _ in samples]
    vs = [p if ints else v for _, p, v in samples]
    kind = "i" if ints else "f"
    run, data = pack_run(ts, ps), pack_values(vs, kind)
    assert len(run) == 16 * len(samples) and len(data) == 8 * len(samples)
    t, p, v = unpack_block(run, data, len(samples), kind)
    assert _same(t.tolist(), [float(x) for x in ts]) and p.tolist() == ps and _same(v.tolist(), vs)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=100), st.binary(max_size=50), st.integers(0, 10), st.sampled_from(["f", "i", "x", ""]))
def test_unpack_block_refuses_what_is_not_a_block(run: bytes, data: bytes, n: int, kind: str) -> None:
    if len(run) == 16 * n and len(data) == 8 * n and kind in ("f", "i"):
        t, p, v = unpack_block(run, data, n, kind)
        assert len(t) == len(p) == len(v) == n
    else:
        with pytest.raises(ValueError):
            unpack_block(run, data, n, kind)


def test_packing_refuses_what_does_not_fit() -> None:
    with pytest.raises(ValueError):
        pack_run([1.0, 2.0], [1])
    with pytest.raises(ValueError):
        pack_values([1.0], "s")
    with pytest.raises(OverflowError):
        pack_values([2**64], "i")


def test_the_view_rebuilds_every_double_exactly(tmp_path: Path) -> None:
    """Subnormals, the largest double, -0.0, powers of two and random bit patterns: the view's
    SQL decoding gives the same bits as numpy's."""
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**64, 20000, dtype=np.uint64).view(np.float64)
    special = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
               1.7976931348623157e308, -1.7976931348623157e308, 1.0, 0.1, 1 / 3, 2.0**-1022, 2.0**1023]
    values = special + [float(x) for x in bits if math.isfinite(x)]
    a = Archive(tmp_path / "a.db")
    items = [Ingest(SCID, 0x20, i % 16384, i * 0.001, b"r", samples=[(1, v), (2, i - 2**62)])
             for i, v in enumerate(values)]
    for k in range(0, len(items), 5000):
        a.ingest(items[k : k + 5000], received_at=0.0)
    assert a._db.execute("SELECT COUNT(*) FROM sample_blocks").fetchone()[0] >= 8  # they went to blocks
    assert a._db.execute("SELECT COUNT(*) FROM sample_runs").fetchone()[0] * 2 == a._db.execute(
        "SELECT COUNT(*) FROM sample_blocks").fetchone()[0]  # one run of times for both channels
    assert _same([v for _, v in a.channel(SCID, 1)], values)
    view = _view(tmp_path / "a.db")
    assert _same([r[4] for r in view if r[1] == 1], values)
    assert [r[4] for r in view if r[1] == 2] == [i - 2**62 for i in range(len(values))]
    assert _same([r[2] for r in view if r[1] == 1], [i * 0.001 for i in range(len(values))])
    a.close()


def test_a_long_run_is_cut_into_blocks_and_reads_as_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_mod, "BLOCK_MAX", 7)
    a = Archive(tmp_path / "a.db")
    a.ingest([Ingest(SCID, 0x20, i, 30.0 - i, b"r", samples=[(3, float(i))]) for i in range(30)], received_at=0.0)
    blocks = a._db.execute("SELECT n, t_first, t_last FROM sample_blocks ORDER BY t_first").fetchall()
    assert [n for n, _, _ in blocks] == [7, 7, 7, 7, 2]
    assert all(t0 <= t1 for _, t0, t1 in blocks)  # each block sorted by time
    assert a.channel(SCID, 3) == [(30.0 - i, float(i)) for i in reversed(range(30))]
    assert a.channel(SCID, 3, 10.0, 12.0) == [(10.0, 20.0), (11.0, 19.0), (12.0, 18.0)]
    assert a.latest(SCID, 3) == (30.0, 0.0)
    a.close()


def test_a_channel_query_reads_only_the_blocks_it_overlaps(tmp_path: Path) -> None:
    a = Archive(tmp_path / "a.db")
    for k in range(10):
        a.ingest([Ingest(SCID, 0x20, k * 10 + i, k * 10.0 + i, b"r", samples=[(1, float(i)), (2, k)])
                  for i in range(10)], received_at=0.0)
    plan = " ".join(str(r[-1]) for r in a._db.execute(
        "EXPLAIN QUERY PLAN SELECT n, kind, data FROM sample_blocks WHERE scid=? AND channel=? AND t_last >= ? "
        "AND t_first <= ? ORDER BY t_first, id", (SCID, 1, 35.0, 52.0)))
    assert "sample_blocks_range" in plan
    overlapping = a._db.execute("SELECT COUNT(*) FROM sample_blocks WHERE scid=? AND channel=? AND t_last >= ? "
                                "AND t_first <= ?", (SCID, 1, 35.0, 52.0)).fetchone()[0]
    assert overlapping == 3
    assert a.channel(SCID, 2, 35.0, 52.0) == [(t, int(t) // 10) for t in np.arange(35.0, 53.0).tolist()]
    a.close()


def test_an_archive_with_two_row_tables_gains_blocks_and_keeps_its_rows(tmp_path: Path) -> None:
    """An archive made before the blocks (samples_by_channel, samples_recent, a view over them)
    opens, reads its rows as before, and new samples go to blocks; the view shows both."""
    path = tmp_path / "staged.db"
    with sqlite3.connect(path) as db:
        db.executescript(archive_mod._SCHEMA + """
        CREATE TABLE samples_by_channel (scid INTEGER NOT NULL, channel INTEGER NOT NULL, time REAL NOT NULL,
            packet INTEGER NOT NULL, value, PRIMARY KEY (scid, channel, time, packet)) WITHOUT ROWID;
        CREATE TABLE samples_recent (scid INTEGER NOT NULL, channel INTEGER NOT NULL, time REAL NOT NULL,
            packet INTEGER NOT NULL, value);
        CREATE VIEW samples AS SELECT scid, channel, time, packet, value FROM samples_by_channel
            UNION ALL SELECT scid, channel, time, packet, value FROM samples_recent;
        INSERT INTO samples_by_channel VALUES (66, 1, 0.25, 1, 4.5), (66, 1, 9.0, 2, 8.5);
        INSERT INTO samples_recent VALUES (66, 1, 0.75, 3, 'x');
        """)
    ro = Archive(path, readonly=True)  # read-only: no blocks table, read as it is
    assert ro.channel(SCID, 1) == [(0.25, 4.5), (0.75, "x"), (9.0, 8.5)]
    ro.close()
    a = Archive(path)
    a.ingest([Ingest(SCID, 0x20, i, i * 0.5, b"r", samples=[(1, float(i))]) for i in range(4)], received_at=0.0)
    assert a._db.execute("SELECT COUNT(*) FROM sample_blocks").fetchone()[0] == 1
    want = [(0.0, 0.0), (0.25, 4.5), (0.5, 1.0), (0.75, "x"), (1.0, 2.0), (1.5, 3.0), (9.0, 8.5)]
    assert a.channel(SCID, 1) == want
    assert a.latest(SCID, 1) == (9.0, 8.5) and a.count("samples") == 7
    a.close()
    assert [(r[2], from_sql(r[4])) for r in _view(path)] == want


@pytest.mark.parametrize("odd", [math.inf, -math.inf, math.nan, 2**64, True, None, b"\x00magpie:nan", [1, 2], "t"])
def test_a_run_with_one_odd_channel_keeps_the_others_in_blocks(tmp_path: Path, odd: Any) -> None:
    """A value a block cannot hold, in an otherwise all-float run: its channel is rows (stored
    as before: tagged, JSON or as it is), the others blocks, and every reader agrees."""
    old, new = _old_archive(tmp_path / "old.db"), Archive(tmp_path / "new.db")
    batch = [Ingest(SCID, 0x20, i, 10.0 - i, b"r", samples=[(0, float(i)), (1, odd if i == 2 else 0.5 * i), (2, -0.0)])
             for i in range(5)]
    assert new.ingest(batch, received_at=0.0) == old.ingest(batch, received_at=0.0)
    kinds = dict(new._db.execute("SELECT channel, kind FROM sample_blocks").fetchall())
    assert kinds == {0: "f", 2: "f"}
    _compare(old, new, tmp_path / "old.db", tmp_path / "new.db")
    old.close()
    new.close()


def test_a_short_run_is_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer than BLOCK_MIN packets of a channel list (a trickle of commits) are rows, which a
    merge packs by channel; as many or more are blocks."""
    monkeypatch.setattr(archive_mod, "BLOCK_MIN", 16)
    a = Archive(tmp_path / "a.db")
    a.ingest([Ingest(SCID, 0x20, i, i * 1.0, b"r", samples=[(1, float(i)), (2, i)]) for i in range(15)],
             received_at=0.0)
    assert a._db.execute("SELECT COUNT(*) FROM sample_blocks").fetchone()[0] == 0 and a._recent == 30
    a.ingest([Ingest(SCID, 0x20, i, i * 1.0, b"r", samples=[(1, float(i)), (2, i)]) for i in range(15, 31)],
             received_at=0.0)
    assert a._db.execute("SELECT channel, n, kind FROM sample_blocks ORDER BY channel").fetchall() == [
        (1, 16, "f"), (2, 16, "i")]
    assert a.channel(SCID, 1) == [(i * 1.0, float(i)) for i in range(31)]
    assert a.channel(SCID, 2) == [(i * 1.0, i) for i in range(31)] and a.count("samples") == 62
    a.close()


def test_a_run_with_no_channel_for_blocks_stores_no_times(tmp_path: Path) -> None:
    a = Archive(tmp_path / "a.db")
    a.ingest([Ingest(SCID, 0x20, i, i * 1.0, b"r", samples=[(1, f"m{i}"), (2, None)]) for i in range(5)],
             received_at=0.0)
    assert a._db.execute("SELECT COUNT(*) FROM sample_runs").fetchone()[0] == 0
    assert a.channel(SCID, 1) == [(i * 1.0, f"m{i}") for i in range(5)] and a.count("samples") == 10
    a.close()


def test_the_view_helpers_come_with_the_first_block_and_go_with_its_rollback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An archive of rows only holds no helper rows; a commit that fails after its first blocks
    takes them back, and the next commit writes them again, so the view still shows every block."""
    a = Archive(tmp_path / "a.db")
    a.ingest([Ingest(SCID, 0x20, 1, 1.0, b"r", samples=[(1, "text")])], received_at=0.0)
    assert a._db.execute("SELECT COUNT(*) FROM sample_slots").fetchone()[0] == 0

    def refuse(db: sqlite3.Connection) -> None:
        raise sqlite3.DataError("refused after the blocks were written")

    merge = Archive._merge
    monkeypatch.setattr(archive_mod, "MERGE_ROWS", 1)
    monkeypatch.setattr(Archive, "_merge", staticmethod(refuse))
    assert a.ingest([Ingest(SCID, 0x20, 2, 2.0, b"r", samples=[(1, 2.5), (2, "row")])], received_at=0.0) == [True]
    assert a._db.execute("SELECT COUNT(*) FROM sample_blocks").fetchone()[0] == 0  # kept raw only
    assert a._db.execute("SELECT COUNT(*) FROM sample_slots").fetchone()[0] == 0 and not a._helpers
    monkeypatch.setattr(Archive, "_merge", merge)
    a.ingest([Ingest(SCID, 0x20, 3, 3.0, b"r", samples=[(1, 4.5)])], received_at=0.0)
    assert a._db.execute("SELECT COUNT(*) FROM sample_slots").fetchone()[0] == archive_mod.BLOCK_MAX
    a.close()
    assert [(r[2], r[4]) for r in _view(tmp_path / "a.db")] == [(1.0, "text"), (3.0, 4.5)]


@pytest.mark.parametrize("channel", [[1, 2], {"a": 1}, 1.5, "x"])
def test_an_ill_typed_channel_id_costs_its_pairs_not_the_batch(tmp_path: Path, channel: Any,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """A channel id that is not an integer (a list, a map: garbage a forged packet can carry) is
    refused pair by pair as in the row store; the batch is not refused and stored again item by
    item, and the good packets' samples still go in blocks."""
    old, new = _old_archive(tmp_path / "old.db"), Archive(tmp_path / "new.db")
    batch = [Ingest(SCID, 0x20, i, float(i), b"r", samples=[(0, float(i)), (1, 2.0 * i)]) for i in range(4)]
    batch.insert(2, Ingest(SCID, 0x20, 9, 9.0, b"g", samples=[(channel, 1.0), (0, 7.0)]))
    with caplog.at_level("WARNING", logger="ground.archive"):
        assert new.ingest(batch, received_at=0.0) == old.ingest(batch, received_at=0.0)
    assert not [r for r in caplog.records if "item by item" in r.getMessage()]
    assert new._db.execute("SELECT COUNT(*) FROM sample_blocks").fetchone()[0] == 2
    _compare(old, new, tmp_path / "old.db", tmp_path / "new.db")
    old.close()
    new.close()
