"""Archive layout: numbers go to blocks; the other samples (text here) are appended and merged
into the channel-clustered table in large sorted batches; every reader sees one set of rows
whichever side they are on."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from ground import archive as archive_mod
from ground.archive import Archive, Ingest

pytestmark = pytest.mark.timeout(60)

SCID = 66


def items(first: int, n: int, channels: int = 3, text: bool = True) -> list[Ingest]:
    """Packets of ``channels`` channels (text values: rows; else floats: blocks) and channel 9."""
    return [Ingest(SCID, 0x20, i % 16384, i * 0.5, b"p%d" % i,
                   samples=[(c, f"{i * 10 + c}" if text else float(i * 10 + c)) for c in range(channels)]
                   + [(9, f"s{i}")])
            for i in range(first, first + n)]


def rows(db_path: Path) -> list[tuple]:
    with sqlite3.connect(db_path) as db:
        return db.execute("SELECT * FROM samples ORDER BY scid, channel, time, packet").fetchall()


def test_readers_see_the_same_rows_before_and_after_a_merge(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_mod, "MERGE_ROWS", 40)
    a = Archive(tmp_path / "a.db")
    a.ingest(items(0, 12), received_at=0.0)  # 48 rows: merged in the same transaction
    assert a.merges == 1
    a.ingest(items(12, 5), received_at=0.0)  # 20 rows wait in samples_recent
    assert a.merges == 1
    with sqlite3.connect(tmp_path / "a.db") as db:  # another process's view of the file
        recent = db.execute("SELECT COUNT(*) FROM samples_recent").fetchone()[0]
        kept = db.execute("SELECT COUNT(*) FROM samples_by_channel").fetchone()[0]
    assert (kept, recent) == (48, 20)
    before = rows(tmp_path / "a.db")
    assert len(before) == 68 and a.count("samples") == 68
    assert a.channel(SCID, 1) == [(i * 0.5, f"{i * 10 + 1}") for i in range(17)]
    assert a.channel(SCID, 2, since=5.0, until=7.0) == [(i * 0.5, f"{i * 10 + 2}") for i in range(10, 15)]
    assert a.latest(SCID, 9) == (8.0, "s16")
    exported = list(a.iter_samples(SCID))
    assert exported == sorted(exported, key=lambda r: (r[0], r[1], r[2])) and len(exported) == 68
    a.close()  # merges the rest
    assert rows(tmp_path / "a.db") == before
    with sqlite3.connect(tmp_path / "a.db") as db:
        assert db.execute("SELECT COUNT(*) FROM samples_recent").fetchone()[0] == 0
    ro = Archive(tmp_path / "a.db", readonly=True)
    assert ro.channel(SCID, 1) == [(i * 0.5, f"{i * 10 + 1}") for i in range(17)]
    assert list(ro.iter_samples(SCID)) == exported
    ro.close()


def test_a_late_packet_sorts_into_place_across_both_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_mod, "MERGE_ROWS", 8)
    monkeypatch.setattr(archive_mod, "BLOCK_MIN", 1)
    a = Archive(tmp_path / "a.db")
    a.ingest(items(10, 4, channels=1), received_at=0.0)  # 8 rows, merged: times 5.0 .. 6.5
    a.ingest(items(14, 1, channels=1, text=False), received_at=0.0)  # a number: in a block, at 7.0
    late = Ingest(SCID, 0x20, 3, 1.5, b"late", samples=[(0, "-1"), (0, "-2"), (7, math.nan)])
    a.ingest([late], received_at=0.0)  # recent: a retransmission older than what is kept
    assert a.merges == 1 and a._recent == 3
    assert [t for t, _ in a.channel(SCID, 0)] == [1.5, 5.0, 5.5, 6.0, 6.5, 7.0]
    assert a.channel(SCID, 0)[0] == (1.5, "-1")  # a channel twice in one packet: the first is kept
    assert math.isnan(a.latest(SCID, 7)[1])
    assert a.latest(SCID, 0) == (7.0, 140.0)
    assert a.channel(SCID, 0, 6.5, 7.0) == [(6.5, "130"), (7.0, 140.0)]
    a.close()


def test_an_archive_made_with_one_samples_table_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE samples (scid INTEGER NOT NULL, channel INTEGER NOT NULL, time REAL NOT NULL, "
                   "packet INTEGER NOT NULL, value, PRIMARY KEY (scid, channel, time, packet)) WITHOUT ROWID")
        db.execute("INSERT INTO samples VALUES (66, 1, 0.25, 1, 4.5)")
    a = Archive(path)
    a.ingest(items(0, 3, text=False), received_at=0.0)
    assert a.channel(SCID, 1) == [(0.0, 1.0), (0.25, 4.5), (0.5, 11.0), (1.0, 21.0)]
    assert a.latest(SCID, 1) == (1.0, 21.0)
    a.close()
    with sqlite3.connect(path) as db:
        kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE name LIKE 'samples%'").fetchall())
    assert kinds == {"samples": "table"}


def test_a_dense_commit_goes_straight_to_the_clustered_table(tmp_path: Path) -> None:
    """A backlog (many samples a channel in one commit) skips samples_recent; a trickle waits
    there; both read back as one set of rows."""
    a = Archive(tmp_path / "a.db")
    a.ingest(items(0, 40), received_at=0.0)  # 40 samples a channel
    assert a._recent == 0 and a.merges == 0
    a.ingest(items(40, 2), received_at=0.0)  # 2 a channel
    assert a._recent == 8
    assert a.channel(SCID, 0) == [(i * 0.5, f"{i * 10}") for i in range(42)]
    a.close()
    assert len(rows(tmp_path / "a.db")) == 42 * 4


def test_numbers_go_to_blocks_and_text_to_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_mod, "BLOCK_MIN", 5)
    a = Archive(tmp_path / "a.db")
    a.ingest(items(0, 5, text=False), received_at=0.0)  # channels 0-2 floats, 9 text
    with sqlite3.connect(tmp_path / "a.db") as db:
        blocks = db.execute("SELECT channel, n, kind FROM sample_blocks ORDER BY channel").fetchall()
        kept = db.execute("SELECT COUNT(*) FROM samples_recent").fetchone()[0]
    assert blocks == [(0, 5, "f"), (1, 5, "f"), (2, 5, "f")] and kept == 5
    assert a.count("samples") == 20 and len(rows(tmp_path / "a.db")) == 20
    assert a.channel(SCID, 1) == [(i * 0.5, float(i * 10 + 1)) for i in range(5)]
    a.close()
