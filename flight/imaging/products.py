"""Making a product from a frame: encode, thumbnail, check the quota, write atomically.

:func:`make_product` is the job the imaging worker runs off the control loop, in two stages on
two threads (:mod:`flight.worker`'s two stages): :func:`prepare_product` encodes the full frame
and hands the product to the product store, which encodes the thumbnail, reserves the quota and
writes and syncs both files; :func:`finish_product` waits until the store has them durably on
disk. It returns the encoded bytes stored; the executive-side code then commits the product to
the catalogue. Anything that stops a product (an encoder refusing the image, the quota, a write
error) raises :class:`ProductFailure` with the reason, after removing what was written and giving
back what was reserved.

**Why the store starts in the first stage.** In a burst the first stage sets the rate, and the
full frame's encoder is the only part of a product that has to be on it. A product's files cost
a journal commit to sync (one or two milliseconds on an idle disk, several when other work on
the machine syncs too), about as long as the encoder takes over a 1280x960 JPEG. Written and
synced by the second stage alone, one product after another, the syncs set a burst's rate
whenever the disk is slower than the encoder; handed to the store (:func:`_store_pool`, two
products at a time) as soon as the full frame is encoded, the next product's sync starts while
this one's is still in the journal, so the two share commits. The thumbnail (a tenth of a
millisecond) is encoded there too, beside the next full frame. The second stage is left with the
wait, and with whatever its caller does after it (packetizing).
"""

from __future__ import annotations

import enum
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from flight.imaging.catalogue import Quota

THUMB_FACTOR = 8


class Format(enum.IntEnum):
    JPEG = 0
    PNG = 1

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def ext(self) -> str:
        return ".jpg" if self is Format.JPEG else ".png"


class ProductFailure(Exception):
    """A product could not be made; the message is the reason sent to the ground."""


def encode(image: np.ndarray, fmt: Format, quality: int = 90) -> bytes:
    """JPEG at ``quality`` (1..100) or lossless PNG (compression level 3)."""
    if fmt is Format.JPEG:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(fmt.ext, image, params)
    if not ok:
        raise ProductFailure(f"{fmt.label} encoder refused a {image.shape} {image.dtype} image")
    return buf.tobytes()


def thumbnail(image: np.ndarray, factor: int = THUMB_FACTOR) -> np.ndarray:
    """Every ``factor``-th pixel in each direction (the 8x subsampled thumbnail)."""
    return np.ascontiguousarray(image[::factor, ::factor])


@dataclass(frozen=True, slots=True)
class ProductJob:
    pid: int
    image: np.ndarray
    fmt: Format
    quality: int
    full_path: Path
    thumb_path: Path
    meta: dict[str, Any]
    thumb_quality: int = 80


@dataclass(frozen=True, slots=True)
class MadeProduct:
    pid: int
    width: int
    height: int
    full: bytes
    thumb: bytes


def _sync_fd(fd: int) -> None:
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: products the store writes and syncs at once (each with its own sync threads, below)
STORE_PRODUCTS = 2

_sync_pool: ThreadPoolExecutor | None = None
_store: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pools() -> None:
    """In a forked child: the pools' threads stayed in the parent, so new ones are made on use."""
    global _sync_pool, _store, _pool_lock
    _sync_pool = _store = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def _store_pool() -> ThreadPoolExecutor:
    """The threads that finish what :func:`prepare_product` hands on (:func:`_store_product`:
    the thumbnail, the quota, the files written and synced); made on first use."""
    global _store
    with _pool_lock:
        if _store is None:
            _store = ThreadPoolExecutor(max_workers=STORE_PRODUCTS, thread_name_prefix="product-store")
        return _store


def _sync_all(fds: list[int]) -> None:
    """fsync and close every descriptor, all at once: the journal commits them together.

    On ext4 three fsyncs one after another cost three journal commits (about 6 ms measured on
    the bench machine); issued together from threads they share one (about 1.5 ms).
    """
    global _sync_pool
    if len(fds) == 1:
        _sync_fd(fds[0])
        return
    with _pool_lock:
        if _sync_pool is None:
            # two more descriptors than the one this thread syncs, for each product in the store
            _sync_pool = ThreadPoolExecutor(max_workers=2 * STORE_PRODUCTS, thread_name_prefix="product-sync")
    futures = [_sync_pool.submit(_sync_fd, fd) for fd in fds[1:]]
    err: OSError | None = None
    try:
        _sync_fd(fds[0])
    except OSError as exc:
        err = exc
    for f in futures:
        try:
            f.result()
        except OSError as exc:
            err = err or exc
    if err is not None:
        raise err


_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def write_atomic_files(files: list[tuple[Path, bytes]]) -> None:
    """Write several new files durably: every file and its directory synced before returning.

    The files are written at their own names and then the files and their directories are
    synced together (one journal commit instead of one per file and one per directory). That is
    atomic for a catalogue product: its row is ``pending`` until the caller commits it after
    this returns, and a restart fails a pending row and removes every file no ready row names,
    so a file cut short by a crash is never taken for a product. Product names are never
    reused, so nothing whole is ever overwritten.
    """
    fds: list[int] = []
    dirs: dict[Path, None] = {}
    try:
        for path, data in files:
            try:
                fd = os.open(path, _CREATE, 0o644)
            except FileNotFoundError:  # the first product in its directory
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, _CREATE, 0o644)
            fds.append(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            dirs[path.parent] = None
        for d in dirs:
            fds.append(os.open(d, os.O_RDONLY))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise
    _sync_all(fds)


@dataclass(frozen=True, slots=True)
class PendingProduct:
    """A product whose full frame is encoded and handed to the store (``stored``: its
    :class:`MadeProduct` once the thumbnail is made and both files are durably on disk, or the
    :class:`ProductFailure` that stopped it): :func:`finish_product` waits for it."""

    job: ProductJob
    stored: Future[MadeProduct]


def _unwind(job: ProductJob, quota: Quota, need: int, exc: OSError) -> ProductFailure:
    quota.release(need)
    for p in (job.full_path, job.thumb_path):
        try:
            Path(p).unlink(missing_ok=True)
        except OSError:  # nothing there to remove (its directory is not one)
            pass
    return ProductFailure(f"write failed: {exc.strerror or exc}")


def make_product(job: ProductJob, quota: Quota) -> MadeProduct:
    """Encode, reserve quota, write both files atomically. See the module docstring."""
    return finish_product(prepare_product(job, quota))


def finish_product(pending: PendingProduct) -> MadeProduct:
    """Wait until the store has a prepared product's files durably on disk; raises its
    :class:`ProductFailure` (what it wrote removed, what it reserved given back)."""
    return pending.stored.result()


def prepare_product(job: ProductJob, quota: Quota) -> PendingProduct:
    """Encode the full frame and hand the rest to the store (:func:`_store_product`): the
    thumbnail, the quota and both files. :func:`finish_product` waits for it."""
    img = job.image
    if img is None or img.size == 0 or img.dtype != np.uint8:
        raise ProductFailure("camera returned no usable image")
    full = encode(img, job.fmt, job.quality)
    try:
        stored = _store_pool().submit(_store_product, job, full, quota)
    except RuntimeError as exc:  # the interpreter is shutting down: nothing was written
        raise ProductFailure(f"product store unavailable: {exc}") from None
    return PendingProduct(job, stored)


def _store_product(job: ProductJob, full: bytes, quota: Quota) -> MadeProduct:
    """In the store, while the next frame is encoded: encode the thumbnail, reserve the quota
    for both files and write them atomically (:func:`write_atomic_files`). On a write error
    everything written is removed and the reservation given back."""
    img = job.image
    thumb = encode(thumbnail(img), job.fmt, min(job.quality, job.thumb_quality))
    need = len(full) + len(thumb)
    if not quota.reserve(need):
        raise ProductFailure(f"disk full: product needs {need} B, store holds {quota.used} of {quota.limit} B")
    try:
        write_atomic_files([(Path(job.full_path), full), (Path(job.thumb_path), thumb)])
    except OSError as exc:
        raise _unwind(job, quota, need, exc) from None
    return MadeProduct(job.pid, int(img.shape[1]), int(img.shape[0]), full, thumb)
