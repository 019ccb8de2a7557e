"""Durability cost: bytes written to disk by a whole ``magpie sim`` run per byte it keeps.

``magpie sim --duration 10m --seed 1`` (the simulated rover, moon-farside relay, ground archive)
runs in a child process; what it wrote is the kernel's block-output count for the child
(``getrusage(RUSAGE_CHILDREN).ru_oublock``, the ``write_bytes`` of ``/proc/<pid>/io`` in
512-byte units: every page the process dirtied on its way to the disk, WAL frames, checkpoints,
state files, the telemetry log). What it keeps ("stored") is the size of the ground archive and
the onboard recorder files at the end (``archive.db``, ``state/recorder.db`` and any WAL left
beside them). Target: at most 3x.
"""

from __future__ import annotations

import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Row

_FILES = ("archive.db", "state/recorder.db")


def _held(out: Path) -> int:
    total = 0
    for name in _FILES:
        for suffix in ("", "-wal"):
            p = out / (name + suffix)
            if p.exists():
                total += p.stat().st_size
    return total


def _free(out: Path) -> int:
    """Bytes of free pages (freelist) inside the held files: room, not data."""
    total = 0
    for name in _FILES:
        p = out / name
        if p.exists():
            db = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
            try:
                pages = db.execute("PRAGMA freelist_count").fetchone()[0]
                total += pages * db.execute("PRAGMA page_size").fetchone()[0]
            finally:
                db.close()
    return total


def sim_run(out: Path, duration: str) -> tuple[float, int, float]:
    """(bytes written, bytes held at the end, wall seconds) of one ``magpie sim`` child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    cmd = [sys.executable, "-c", "import sys; from magpie.cli import main; sys.exit(main())",
           "sim", "--duration", duration, "--seed", "1", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"magpie sim failed ({proc.returncode}): {proc.stderr[-400:]}")
    written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - before) * 512
    return float(written), _held(out), wall


def run(quick: bool) -> list[Row]:
    duration = "10m"  # the run the figure is quoted for; about 20-40 s of wall time
    with tempfile.TemporaryDirectory(prefix="magpie-bench-io-") as d:
        written, held, wall = sim_run(Path(d) / "run", duration)
        free = _free(Path(d) / "run")
    mb = 1e6
    return [
        Row(f"bytes written to disk, magpie sim {duration} seed 1", written / mb, "MB", held / mb,
            "MB the archive and recorder hold at the end", target="<= 3x"),
        Row("  of what is held, free pages (room left by merged samples)", free / mb, "MB"),
        Row(f"magpie sim {duration} wall time", wall, "s"),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        ratio = f"  x{row.ratio:.2f} of {row.baseline_name}" if row.ratio else ""
        print(f"{row.name}: {row.value:,.2f} {row.unit}{ratio}  {row.target}")
