"""What the station acknowledges is in the archive, durably: after kill -9 of the station process,
and fsynced before the ACK leaves (so a power cut cannot lose it either); commits batched."""

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

from flight.link.frames import VC
from flight.link.packets import Apid, encode_tm
from ground.archive import Archive
from ground.station import Station, Vehicle
from tests.link.fixtures import (
    SCID,
    dictionary,
    ground_signer,
    link_controls,
    vehicle_framer,
)

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]


def _acked(frames: list[bytes], tmp: Path) -> list[tuple[int, int, int]]:
    return [ack for acks, _ in link_controls(frames, tmp / "v.json") for ack in acks]


def test_ack_leaves_only_after_the_archive_is_fsynced(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "g.db")
    at_ack: list[bool] = []
    uplinked: list[bytes] = []

    def uplink(scid: int, frame: bytes) -> None:
        at_ack.append(archive.unsynced)
        uplinked.append(frame)

    st = Station(archive, [Vehicle(SCID, dictionary(), ground_signer(tmp_path))], uplink=uplink,
                 ack_interval_s=1.0)
    framer = vehicle_framer()
    seq = 0
    for step in range(100):  # 10 s at 10 Hz, a frame of housekeeping every second
        now = step / 10
        if step % 10 == 0:
            pkts = [encode_tm(Apid.HOUSEKEEPING, seq + i, now, {"s": [[1, 12.0]]}) for i in range(3)]
            seq += 3
            for frame in framer.pack(VC.HOUSEKEEPING, pkts):
                st.receive(frame, now)
        st.poll(now)
    assert at_ack and not any(at_ack), "an ACK went out before the archive was fsynced"
    acked = _acked(uplinked, tmp_path)
    assert sorted({s for _, a, b in acked for s in range(a, b + 1)}) == list(range(30))
    # one commit a poll with something to store, one fsync an ACK; none for polls with nothing
    assert archive.commits == 10 and archive.syncs == len(uplinked) == 10
    archive.close()


def test_commit_every_s_batches_commits_and_acks_follow_them(tmp_path: Path) -> None:
    archive = Archive(tmp_path / "g.db")
    uplinked: list[bytes] = []
    st = Station(archive, [Vehicle(SCID, dictionary(), ground_signer(tmp_path))],
                 uplink=lambda s, f: uplinked.append(f), ack_interval_s=1.0, link_timeout_s=100.0,
                 commit_every_s=10.0)
    framer = vehicle_framer()
    for step in range(600):  # one simulated minute at 10 Hz, a frame every second
        now = step / 10
        if step % 10 == 0:
            s = step // 10
            for frame in framer.pack(VC.HOUSEKEEPING, [encode_tm(Apid.HOUSEKEEPING, s, now, {"s": [[1, 1.0]]})]):
                st.receive(frame, now)
        st.poll(now)
    st.close()
    assert archive.count("packets") == 60  # the clean stop committed the last ones
    assert archive.commits <= 7 and archive.syncs <= 6
    acked = {s for _, a, b in _acked(uplinked, tmp_path) for s in range(a, b + 1)}
    assert acked == set(range(51))  # what was committed by the last ACK; the rest goes again
    archive.close()


STATION = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from flight.link.frames import VC
    from flight.link.packets import Apid, encode_tm
    from ground.archive import Archive
    from ground.station import Station, Vehicle
    from tests.link.fixtures import SCID, dictionary, ground_signer, vehicle_framer

    tmp = Path(sys.argv[2])
    archive = Archive(sys.argv[1])
    start = int(max((row[3] for row in archive.packets()), default=-1)) + 1
    acked = []
    st = Station(archive, [Vehicle(SCID, dictionary(), ground_signer(tmp))],
                 uplink=lambda s, f: acked.append(True), ack_interval_s=0.0, commit_every_s=0.0)
    framer = vehicle_framer()
    n = start
    while True:
        pkts = [encode_tm(Apid.HOUSEKEEPING, (n + i) % 16384, float(n + i), {"s": [[1, 1.0]]})
                for i in range(4)]
        for frame in framer.pack(VC.HOUSEKEEPING, pkts):
            st.receive(frame, float(n))
        before = len(acked)
        st.poll(float(n))
        if len(acked) > before:
            sys.stdout.write(" ".join(str(n + i) for i in range(4)) + "\\n")
            sys.stdout.flush()
        n += 4
    """
)


def test_nothing_acknowledged_is_lost_to_kill_9_of_the_station(tmp_path: Path) -> None:
    db = tmp_path / "archive.db"
    script = tmp_path / "station.py"
    script.write_text(STATION)
    rng = random.Random(3)
    acked: set[int] = set()
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, str(script), str(db), str(tmp_path), str(ROOT)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for _ in range(rng.randrange(3, 60)):
            line = proc.stdout.readline()
            if not line:
                break
            acked.update(int(x) for x in line.split())
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        con = sqlite3.connect(db)
        times = {int(t) for (t,) in con.execute("SELECT time FROM packets")}
        con.close()
        missing = acked - times
        assert not missing, f"acknowledged packets lost by kill -9: {sorted(missing)[:5]}"
    assert len(acked) >= 4 * 3 * 4
