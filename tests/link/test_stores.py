"""Persistent stores checked at open: garbled, truncated, emptied; moved aside, reported, private."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from flight.link.packets import Apid, Packetizer
from flight.link.recorder import Recorder
from flight.model import Param
from flight.params import ParamStore
from flight.persist import write_checked_json

pytestmark = pytest.mark.timeout(60)


def filled(path: Path, n: int = 50) -> Recorder:
    rec = Recorder(path, clock=lambda: 0.0)
    pk = Packetizer()
    rec.put_many([(data, Apid.HOUSEKEEPING, seq, None, 1.0)
                  for seq, data in (pk.housekeeping(float(i), [(1, float(i))]) for i in range(n))])
    return rec


@pytest.mark.parametrize("damage", ["garble", "truncate"])
def test_unreadable_recorder_is_moved_aside_and_the_loss_reported(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "state" / "recorder.db"
    filled(path, 400).close()
    if damage == "garble":
        with open(path, "r+b") as f:
            f.seek(0)
            f.write(os.urandom(4096))
    else:
        with open(path, "r+b") as f:
            f.truncate(path.stat().st_size // 2)
    rec = Recorder(path, clock=lambda: 0.0)
    assert rec.stats().packets == 0
    assert "unreadable" in rec.problems[0] and rec.lost_packets == 400
    assert list(path.parent.glob("recorder.db.corrupt-*"))
    assert rec.last_seqs() == {Apid.HOUSEKEEPING: 399}  # counts continue: the ground sees the gap
    assert rec.put(b"x" * 20, Apid.EVENT, 0)  # and it works
    rec.close()


def test_zero_byte_recorder_that_held_packets_is_a_reported_loss(tmp_path: Path) -> None:
    path = tmp_path / "recorder.db"
    filled(path, 30).close()
    path.write_bytes(b"")
    rec = Recorder(path, clock=lambda: 0.0)
    assert rec.lost_packets == 30 and "came back empty" in rec.problems[0]
    rec.close()
    # an emptied recorder that held nothing (all acknowledged) is no loss
    rec = Recorder(path, clock=lambda: 0.0)
    assert rec.problems == [] and rec.lost_packets == 0
    rec.close()


def test_a_recorder_lost_after_a_crash_continues_past_its_windows(tmp_path: Path) -> None:
    """The files gone after a crash (no clean close): the sidecar's counts are the reserved
    windows' ends, so no count that may be on the ground is used again."""
    from flight.link.recorder import SEQ_WINDOW

    path = tmp_path / "recorder.db"
    rec = filled(path, 30)
    rec._db.close()  # the crash: no close, no checkpoint of its own
    os.close(rec._log_fd)
    for suffix in ("", "-wal", "-log"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    again = Recorder(path, clock=lambda: 0.0)
    assert again.lost_packets == 30
    assert again.last_seqs() == {Apid.HOUSEKEEPING: 29 + SEQ_WINDOW}  # reserved at the batch's last count
    again.close()


def test_recorder_files_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        rec = filled(tmp_path / "st" / "recorder.db", 3)
    finally:
        os.umask(old)
    try:
        for p in (tmp_path / "st" / "recorder.db", tmp_path / "st" / "recorder.db-wal",
                  tmp_path / "st" / "recorder.db-log",
                  tmp_path / "st" / "recorder.db.held"):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert stat.S_IMODE((tmp_path / "st").stat().st_mode) == 0o700
    finally:
        rec.close()


def test_corrupt_parameter_file_is_moved_aside_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "params.json"
    store = ParamStore(path)
    store.declare(1, "nav.gain", Param("gain", "f64", 0.5, min=0.0, max=1.0), lambda n, v: None)
    store.set("nav.gain", 0.25, notify=False)
    store.save()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_bytes(path.read_bytes()[:20])  # truncated
    again = ParamStore(path)
    again.declare(1, "nav.gain", Param("gain", "f64", 0.5, min=0.0, max=1.0), lambda n, v: None)
    problems = again.load()
    assert problems and "kept as params.json.corrupt-" in problems[0]
    assert again.get("nav.gain") == 0.5 and not path.exists()
    write_checked_json(path, "magpie-params/1", {"values": {"nav.gain": 0.75}})
    third = ParamStore(path)  # a fresh file is read again
    third.declare(1, "nav.gain", Param("gain", "f64", 0.5, min=0.0, max=1.0), lambda n, v: None)
    assert third.load() == [] and third.get("nav.gain") == 0.75
