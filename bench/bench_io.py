"""Durability cost: bytes written to disk by a whole ``magpie sim`` run per byte it keeps.

``magpie sim --duration 10m --seed 1`` (the simulated rover, moon-farside relay, ground archive)
runs in a child process; what it wrote is the kernel's block-output count for the child
(``getrusage(RUSAGE_CHILDREN).ru_oublock``, the ``write_bytes`` of ``/proc/<pid>/io`` in
512-byte units: every page the process dirtied on its way to the disk, WAL frames, checkpoints,
state files, the telemetry log). What it keeps ("stored") is the size of the ground archive and
the onboard recorder files at the end (``archive.db``, ``state/recorder.db`` and any WAL left
beside them; the recorder's change log too). Target: at most 3x.

Where the bytes go (rows "of which ..."): when ``strace`` is on the machine the run is repeated
under it and every ``write``/``pwrite64`` and ``fsync`` is replayed through a model of the page
cache (a 4 KiB page costs 4 KiB when a write dirties it while clean; an fsync cleans the file's
pages), attributed by file. The model leaves out what is written through ``mmap`` (SQLite's
``-shm``) and background writeback, so its total is close to, not equal to, the main figure.
"""

from __future__ import annotations

import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import Row

_FILES = ("archive.db", "state/recorder.db")
_PAGE = 4096
# file name -> writer, first match wins
_WRITERS = (
    (r"archive\.db-wal$", "ground archive WAL"),
    (r"archive\.db$", "ground archive (checkpoints)"),
    (r"archive\.db-journal$", "ground archive (other)"),
    (r"recorder\.db-wal$", "onboard recorder WAL"),
    (r"recorder\.db$", "onboard recorder (checkpoints)"),
    (r"recorder\.db-log$", "onboard recorder change log"),
    (r"telemetry\.jsonl$", "telemetry.jsonl"),
    (r"dictionary\.json$", "dictionary.json"),
    (r"/ground-state/", "ground state files (signer, frame counters)"),
    (r"/state/", "vehicle state files (counters, modes, sidecar)"),
)
_CALL = re.compile(r"^(\d+) (\w+)\((\d+)<([^>]*)>(.*)\) = (-?\d+)")
_OPEN = re.compile(r"^(\d+) openat\(.*\) = (\d+)<([^>]*)>")


def _held(out: Path) -> int:
    total = 0
    for name in _FILES:
        for suffix in ("", "-wal", "-log"):
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


def _writer(path: str, out: str) -> str | None:
    if not path.startswith(out):
        return None  # the interpreter's caches, the terminal: not the run's
    for pattern, name in _WRITERS:
        if re.search(pattern, path):
            return name
    return "other files of the run"


def by_writer(trace: str, out: Path) -> Counter[str]:
    """Bytes per writer of an ``strace -f -y`` log, through the page-cache model above."""
    dirty: dict[str, set[int]] = {}
    pos: dict[tuple[str, int], int] = {}
    cost: Counter[str] = Counter()
    root = str(out.resolve())
    for line in trace.splitlines():
        m = _OPEN.match(line)
        if m:
            pos[(m.group(1), int(m.group(2)))] = 0
            if "O_TRUNC" in line:
                dirty[m.group(3)] = set()
            continue
        m = _CALL.match(line)
        if not m:
            continue
        pid, call, fd, path, rest = m.group(1), m.group(2), int(m.group(3)), m.group(4), m.group(5)
        ret = int(m.group(6))
        who = _writer(path, root)
        if who is None:
            continue
        if call in ("fsync", "fdatasync"):
            dirty[path] = set()
            continue
        if call == "write":
            off = pos.get((pid, fd), 0)
            pos[(pid, fd)] = off + max(ret, 0)
        elif call == "pwrite64":
            off = int(rest.rsplit(",", 1)[1])
        else:
            continue
        if ret <= 0:
            continue
        pages = dirty.setdefault(path, set())
        for page in range(off // _PAGE, (off + ret - 1) // _PAGE + 1):
            if page not in pages:
                pages.add(page)
                cost[who] += _PAGE
    return cost


def traced_run(out: Path, duration: str) -> Counter[str] | None:
    """The same run under strace, its bytes by writer; None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    log = out.with_name(out.name + ".strace")
    cmd = [strace, "-f", "-y", "-qq", "-s", "0", "-o", str(log),
           "-e", "trace=openat,write,pwrite64,fsync,fdatasync",
           sys.executable, "-c", "import sys; from magpie.cli import main; sys.exit(main())",
           "sim", "--duration", duration, "--seed", "1", "--out", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        return None
    return by_writer(log.read_text(errors="replace"), out)


def run(quick: bool) -> list[Row]:
    duration = "10m"  # the run the figure is quoted for; about 5-40 s of wall time
    with tempfile.TemporaryDirectory(prefix="magpie-bench-io-") as d:
        written, held, wall = sim_run(Path(d) / "run", duration)
        free = _free(Path(d) / "run")
        writers = traced_run(Path(d) / "traced", duration)
    mb = 1e6
    rows = [
        Row(f"bytes written to disk, magpie sim {duration} seed 1", written / mb, "MB", held / mb,
            "MB the archive and recorder hold at the end", target="<= 3x"),
        Row("  of what is held, free pages (room left by merged samples)", free / mb, "MB"),
    ]
    if writers is not None:
        total = sum(writers.values())
        rows.append(Row("  written, page-cache model of the run under strace", total / mb, "MB", held / mb,
                        "MB held"))
        rows += [Row(f"    of which {name}", n / mb, "MB") for name, n in writers.most_common()]
    rows.append(Row(f"magpie sim {duration} wall time", wall, "s"))
    return rows


if __name__ == "__main__":
    for row in run(quick=True):
        ratio = f"  x{row.ratio:.2f} of {row.baseline_name}" if row.ratio else ""
        print(f"{row.name}: {row.value:,.2f} {row.unit}{ratio}  {row.target}")
