"""The onboard catalogue: atomic products, repair at start, kill -9 in the middle of writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from flight.imaging.catalogue import FAILED, LOST, READY, Catalogue, CatalogueError, Quota
from flight.imaging.products import (
    Format,
    ProductFailure,
    ProductJob,
    encode,
    finish_product,
    make_product,
    prepare_product,
)

pytestmark = pytest.mark.timeout(60)
ROOT = Path(__file__).resolve().parents[2]


def make(cat: Catalogue, quota: Quota, seed: int = 0, fmt: Format = Format.PNG) -> int:
    img = np.random.default_rng(seed).integers(0, 255, (48, 64), dtype=np.uint8)
    pid = cat.reserve(1.0, fmt.label, 90, 1, {"seed": seed})
    p = cat.get(pid)
    made = make_product(ProductJob(pid, img, fmt, 90, cat.file(p, "full"), cat.file(p, "thumb"), {}), quota)
    cat.commit(pid, made.width, made.height, made.full, made.thumb)
    return pid


def test_products_survive_reopen_and_ids_are_never_reused(tmp_path: Path) -> None:
    cat = Catalogue.open(tmp_path / "c.db", tmp_path / "files")
    quota = Quota(10**7)
    a, b = make(cat, quota, 1), make(cat, quota, 2, Format.JPEG)
    full_a = cat.read(a, "full")
    cat.delete(b)
    cat.close()
    cat = Catalogue.open(tmp_path / "c.db", tmp_path / "files")
    assert [p.pid for p in cat.list()] == [a]
    assert cat.read(a, "full") == full_a
    assert make(cat, Quota(10**7), 3) == b + 1  # b's id is not handed out again
    with pytest.raises(CatalogueError, match="no product 999"):
        cat.read(999, "full")
    with pytest.raises(CatalogueError):
        cat.delete(999)


def test_start_repairs_interrupted_damaged_and_orphaned_products(tmp_path: Path) -> None:
    cat = Catalogue.open(tmp_path / "c.db", tmp_path / "files")
    quota = Quota(10**7)
    good, damaged = make(cat, quota, 1), make(cat, quota, 2)
    pending = cat.reserve(2.0, "png", 0, 0, {})
    (tmp_path / "files" / f"{pending:08d}.full.png").write_bytes(b"half a png")
    (tmp_path / "files" / "stray.tmp").write_bytes(b"x")
    f = cat.file(damaged, "full")
    f.write_bytes(f.read_bytes()[:-10])
    cat.close()
    cat = Catalogue.open(tmp_path / "c.db", tmp_path / "files")
    states = {p.pid: p.state for p in cat.list()}
    assert states == {good: READY, damaged: LOST, pending: FAILED}
    assert cat.recovery.failed_pending == 1 and cat.recovery.lost == 1 and cat.recovery.orphans_removed >= 3
    assert sorted(x.name for x in (tmp_path / "files").iterdir()) == sorted(
        cat.file(good, k).name for k in ("full", "thumb"))
    with pytest.raises(CatalogueError, match="lost"):
        cat.read(damaged, "full")


def test_truncated_catalogue_is_moved_aside_not_trusted(tmp_path: Path) -> None:
    cat = Catalogue.open(tmp_path / "c.db", tmp_path / "files")
    make(cat, Quota(10**7), 1)
    cat.close()
    db = tmp_path / "c.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    db.write_bytes(db.read_bytes()[:700])
    cat = Catalogue.open(db, tmp_path / "files")
    assert cat.recovery.corrupt_moved.endswith(".corrupt-0")
    assert Path(cat.recovery.corrupt_moved).exists() and cat.list() == []
    assert make(cat, Quota(10**7), 2) >= 1


def test_quota_refuses_a_product_and_leaves_nothing_behind(tmp_path: Path) -> None:
    cat = Catalogue.open(tmp_path / "c.db", tmp_path / "files")
    quota = Quota(500)
    with pytest.raises(ProductFailure, match="disk full"):
        make(cat, quota, 1)
    assert quota.used == 0 and list((tmp_path / "files").iterdir()) == []


def test_a_write_that_fails_in_the_second_stage_gives_everything_back(tmp_path: Path) -> None:
    # the imaging worker encodes on one thread and waits for the store on the next: a store that
    # fails (here the products directory is a file) removes what it wrote and returns the quota
    img = np.random.default_rng(3).integers(0, 255, (48, 64), dtype=np.uint8)
    quota = Quota(10**7)
    (tmp_path / "files").write_bytes(b"not a directory")
    job = ProductJob(1, img, Format.JPEG, 90, tmp_path / "files" / "1.full.jpg", tmp_path / "1.thumb.jpg", {})
    pending = prepare_product(job, quota)
    with pytest.raises(ProductFailure, match="write failed"):
        finish_product(pending)
    assert quota.used == 0 and not job.thumb_path.exists()
    assert (tmp_path / "files").read_bytes() == b"not a directory"


def test_a_thumbnail_that_cannot_be_written_takes_the_full_frame_with_it(tmp_path: Path) -> None:
    # the full frame is written first and whole; the thumbnail's directory is a file
    img = np.random.default_rng(4).integers(0, 255, (48, 64), dtype=np.uint8)
    quota = Quota(10**7)
    (tmp_path / "thumbs").write_bytes(b"not a directory")
    job = ProductJob(1, img, Format.PNG, 0, tmp_path / "files" / "1.full.png", tmp_path / "thumbs" / "1.png", {})
    pending = prepare_product(job, quota)
    with pytest.raises(ProductFailure, match="write failed"):
        finish_product(pending)
    assert quota.used == 0 and not job.full_path.exists()


def test_the_store_starts_in_the_first_stage(tmp_path: Path) -> None:
    # a burst runs at the encoder's rate because a product's thumbnail is made and its files
    # written and synced while the next full frame is encoded: they are on disk once the store is
    # done, before the second stage has looked at them, and the second stage returns what it stored
    rng = np.random.default_rng(5)
    quota = Quota(10**7)
    jobs = [ProductJob(i, rng.integers(0, 255, (48, 64), dtype=np.uint8), Format.JPEG, 80,
                       tmp_path / "files" / f"{i}.full.jpg", tmp_path / "files" / f"{i}.thumb.jpg", {})
            for i in range(1, 4)]
    pending = [prepare_product(job, quota) for job in jobs]
    for p in pending:
        stored = p.stored.result(timeout=30)
        assert p.job.full_path.read_bytes() == stored.full == encode(p.job.image, Format.JPEG, 80)
        assert p.job.thumb_path.read_bytes() == stored.thumb == encode(p.job.image[::8, ::8], Format.JPEG, 80)
    made = [finish_product(p) for p in pending]
    assert [(m.pid, m.width, m.height) for m in made] == [(1, 64, 48), (2, 64, 48), (3, 64, 48)]
    assert quota.used == sum(len(m.full) + len(m.thumb) for m in made)


def test_a_product_the_quota_refuses_is_failed_by_the_second_stage(tmp_path: Path) -> None:
    img = np.random.default_rng(6).integers(0, 255, (48, 64), dtype=np.uint8)
    quota = Quota(100)
    job = ProductJob(1, img, Format.PNG, 0, tmp_path / "1.full.png", tmp_path / "1.thumb.png", {})
    pending = prepare_product(job, quota)
    with pytest.raises(ProductFailure, match="disk full"):
        finish_product(pending)
    assert quota.used == 0 and not job.full_path.exists() and not job.thumb_path.exists()


@pytest.mark.parametrize("after", [3, 11, 25])
def test_kill_9_while_writing_leaves_the_catalogue_intact(tmp_path: Path, after: int) -> None:
    """A real child process making products is killed with SIGKILL; the catalogue must hold."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "tests.imaging.catalogue_writer", str(tmp_path), str(after)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None
    committed = []
    try:
        while len(committed) < after:
            line = child.stdout.readline()
            assert line, child.stderr.read().decode() if child.stderr else "child ended"
            committed.append(int(line))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    # on a loaded machine the child runs ahead of this reader: what it printed before the kill
    # is still in the pipe, and counts as reported stored too
    committed += [int(line) for line in child.stdout.read().split()]
    assert committed == list(range(1, len(committed) + 1))
    cat = Catalogue.open(tmp_path / "products.db", tmp_path / "products")
    assert cat.recovery.corrupt_moved == ""
    products = {p.pid: p for p in cat.list()}
    # the child deletes pid - 3 before it prints pid: the product after the last one printed may
    # have done its delete before the kill
    deleted = {pid - 3 for pid in range(1, len(committed) + 2) if pid % 7 == 0}
    for pid in committed:  # every product reported stored is still there, whole
        if pid in deleted:
            continue
        assert products[pid].state == READY
        for kind in ("full", "thumb"):
            data = cat.read(pid, kind)
            assert zlib.crc32(data) == (products[pid].full_crc if kind == "full" else products[pid].thumb_crc)
    assert all(p.state in (READY, FAILED) for p in products.values())
    ready_files = {cat.file(p, k).name for p in products.values() if p.state == READY for k in ("full", "thumb")}
    assert {f.name for f in (tmp_path / "products").iterdir()} == ready_files
