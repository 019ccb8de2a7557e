"""Imaging benchmarks: capture, compress and packetize, beside ``cv2.imencode`` alone.

For 640x480 and 1280x960 frames of the simulated mast camera:

* the whole chain (render a frame, encode it and its thumbnail, write both files atomically,
  segment into chunks and build the space packets), in images/s;
* the product chain without the render (encode, thumbnail, write, packetize), in images/s, one
  product at a time, and as the imaging worker runs a burst: its two stages on two threads
  (encode the full frame, then wait for the product store and packetize), the product store
  making the thumbnail and writing and syncing the files while the next frame is encoded;
* the baseline: ``cv2.imencode`` of the same frame in the same format, alone, in the same run
  (taken in turns with the product chain; each figure is the median of its calls);
* bytes per image at each setting (JPEG quality 50, 75, 90 and PNG), with the thumbnail's;
* what a capture costs the control thread now that the frame is made in the worker (the
  camera's ``expose()``: the instant, the pose and the seed), beside ``cv2.imencode`` alone.

The product chain writes both files durably (the two files and their directory synced together,
one journal commit a product); on a disk where a commit costs milliseconds that, beside the
encoder, sets the chain's rate.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from bench.common import Row
from flight.imaging.catalogue import Quota
from flight.imaging.products import (
    Format,
    MadeProduct,
    ProductJob,
    encode,
    finish_product,
    make_product,
    prepare_product,
)
from flight.link.packets import Packetizer
from flight.link.products import product_chunks
from flight.worker import Worker
from sim_hw.devices import SimCamera
from sim_hw.world import CameraSpec, World

SIZES = ((640, 480), (1280, 960))
SETTINGS = ((Format.JPEG, 50), (Format.JPEG, 75), (Format.JPEG, 90), (Format.PNG, 0))


def _product(tmp: Path, i: int, image, fmt: Format, quality: int, quota: Quota, pk: Packetizer) -> int:
    job = ProductJob(i, image, fmt, quality, tmp / f"{i}.full{fmt.ext}", tmp / f"{i}.thumb{fmt.ext}", {})
    return _packetize(make_product(job, quota), fmt, pk)


def _packetize(made: MadeProduct, fmt: Format, pk: Packetizer) -> int:
    packets = 0
    for data, thumb in ((made.thumb, True), (made.full, False)):
        for c in product_chunks(0, made.pid, data, {"format": fmt.label}, 3000, thumb):
            pk.chunk(1.0, c.pid, c.idx, c.n, c.data, c.meta, c.thumbnail)
            packets += 1
    return packets


def _burst(tmp: Path, first: int, n: int, image, fmt: Format, quality: int, quota: Quota, pk: Packetizer,
           stage_cpu: list[float] | None = None) -> float:
    """Wall seconds for ``n`` products through a two-stage worker, as the imaging component runs
    them: encode on one thread, wait for the stored files and packetize on the next.
    ``stage_cpu`` gets the first stage's CPU seconds (its thread's time) for each product."""

    def first_stage(job: ProductJob):
        c0 = time.thread_time()
        pending = prepare_product(job, quota)
        if stage_cpu is not None:
            stage_cpu.append(time.thread_time() - c0)
        return pending

    w = Worker("bench-img", first_stage, lambda r: None, queue_size=n,
               finish=lambda pending: _packetize(finish_product(pending), fmt, pk))
    w.start()
    try:
        t0 = time.perf_counter()
        for i in range(first, first + n):
            w.submit(ProductJob(i, image, fmt, quality, tmp / f"{i}.full{fmt.ext}", tmp / f"{i}.thumb{fmt.ext}", {}), 0)
        results = w.deliver(0, lockstep=True)  # waits for each in order
        secs = time.perf_counter() - t0
    finally:
        w.stop()
    if len(results) != n or not all(r.ok for r in results):
        raise RuntimeError(f"burst: {[r.error for r in results if not r.ok][:1]}")
    return secs


def run(quick: bool) -> list[Row]:
    rows: list[Row] = []
    world = World.for_mission(seed=1)
    frames_n = 2 if quick else 6
    reps = 5 if quick else 20
    with tempfile.TemporaryDirectory(prefix="magpie-bench-img-") as tmpdir:
        tmp = Path(tmpdir)
        quota = Quota(1 << 40)
        pk = Packetizer()
        i = 0
        for w, h in SIZES:
            cam = SimCamera(world, CameraSpec(name=f"cam{w}", width=w, height=h, stereo=False, tilt_deg=-20.0))
            frame = cam.capture()
            tag = f"{w}x{h}"
            for fmt, quality in ((Format.JPEG, 75), (Format.PNG, 0)):
                label = f"{fmt.label}{quality or ''}"
                params = [cv2.IMWRITE_JPEG_QUALITY, quality] if fmt is Format.JPEG else [cv2.IMWRITE_PNG_COMPRESSION, 3]
                shot, made, alone = [], [], []
                for _ in range(frames_n):
                    i += 1
                    t0 = time.perf_counter()
                    _product(tmp, i, cam.capture().image, fmt, quality, quota, pk)
                    shot.append(time.perf_counter() - t0)
                # the product chain and the encoder alone in turns, so a burst of other load
                # falls on both; the median of each is the figure
                for _ in range(reps):
                    i += 1
                    t0 = time.perf_counter()
                    _product(tmp, i, frame.image, fmt, quality, quota, pk)
                    made.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    cv2.imencode(fmt.ext, frame.image, params)
                    alone.append(time.perf_counter() - t0)
                burst_n = 8
                bursts, encoded, stage_cpu, encoded_cpu = [], [], [], []
                for _ in range(3):  # a burst, then the encoder alone as often, in turns
                    bursts.append(_burst(tmp, i + 1, burst_n, frame.image, fmt, quality, quota, pk, stage_cpu))
                    i += burst_n
                    t0, c0 = time.perf_counter(), time.thread_time()
                    for _ in range(burst_n):
                        cv2.imencode(fmt.ext, frame.image, params)
                    encoded.append(time.perf_counter() - t0)
                    encoded_cpu.append((time.thread_time() - c0) / burst_n)
                chain = 1.0 / float(np.median(shot))
                products = 1.0 / float(np.median(made))
                base = 1.0 / float(np.median(alone))
                rows.append(Row(f"capture+compress+packetize {tag} {label}", chain, "img/s", base,
                                "cv2.imencode alone", better="higher"))
                rows.append(Row(f"compress+packetize (no render) {tag} {label}", products, "img/s", base,
                                "cv2.imencode alone", better="higher"))
                rows.append(Row(f"compress+packetize (no render) {tag} {label}, burst of {burst_n}, two stages",
                                burst_n / float(np.median(bursts)), "img/s", burst_n / float(np.median(encoded)),
                                f"cv2.imencode alone, {burst_n} in a row", ">= 0.8x" if tag == "1280x960" else "",
                                better="higher"))
                # diagnostic: the work on the burst's critical path, in CPU time (a machine shared
                # with other work moves the wall figures above, much less this one)
                rows.append(Row(f"compress+packetize (no render) {tag} {label}, burst, first stage CPU per product",
                                float(np.median(stage_cpu)) * 1e3, "ms CPU", float(np.median(encoded_cpu)) * 1e3,
                                "cv2.imencode alone, CPU per image"))
            t0 = time.perf_counter()
            for _ in range(reps * 10):
                cam.expose()
            expose_s = (time.perf_counter() - t0) / (reps * 10)
            t0 = time.perf_counter()
            for _ in range(reps):
                cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, 75])
            jpeg_s = (time.perf_counter() - t0) / reps
            rows.append(Row(f"capture on the control thread (expose) {tag}", expose_s * 1e3, "ms", jpeg_s * 1e3,
                            "cv2.imencode jpeg75 alone", target="<< one 50 Hz cycle (20 ms)"))
            for fmt, quality in SETTINGS:
                full = encode(frame.image, fmt, quality)
                thumb = encode(frame.image[::8, ::8], fmt, min(quality, 80) if fmt is Format.JPEG else 0)
                label = f"{fmt.label}{quality or ''}"
                raw = frame.image.nbytes
                rows.append(Row(f"bytes/image {tag} {label}", float(len(full)), "B", float(raw), "raw frame",
                                target=f"thumbnail {len(thumb)} B"))
    return rows
