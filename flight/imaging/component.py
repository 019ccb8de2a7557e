"""Imaging: captures on command, products in a worker, the onboard catalogue and its downlink.

**Requests.** ``IMG_CAPTURE`` (one frame), ``IMG_BURST`` (frames at a fixed step of the
imaging rate group) and ``IMG_PANORAMA`` (a pan x tilt grid on the mast) become a job of shots
queued in order. One shot is started per cycle of the component's rate group, in the executive's
thread, by :meth:`~hal.contracts.Camera.expose`: that fixes the frame's instant (pointing, and in
simulation the pose, sun and noise seed) and costs next to nothing. The frame is made (read out,
or rendered in simulation), metered, encoded and written by the worker, so a capture never holds
up the control loop. The command completes when every product of its job is stored, or fails
naming what went wrong.

**Exposure.** With ``auto_exposure`` on and a camera that has exposure control, the first shot of
a job is metered, in the worker: the mean of the central half of the image is brought to
``ae_target_dn`` (the exposure scales linearly; saturation above 2 % of the pixels halves it), at
most ``ae_max_iter`` metering frames. The job's next shots wait for that result; the exposure is
then set on the camera and stays locked for the rest of the job so a burst or a panorama's
frames match.

**Products.** Each frame is encoded (JPEG at a quality, or lossless PNG) with an 8x subsampled
thumbnail in the same format, by the worker (:mod:`flight.imaging.products`); the files are
written atomically and then committed to the catalogue (:mod:`flight.imaging.catalogue`).
Metadata goes with every product: spacecraft time, camera, intrinsics, exposure, gain, mast
pointing, the frame's sequence number, and the vehicle's pose when pose channels exist.

**Downlink.** Thumbnails are queued for downlink as soon as a product is stored (``auto_thumbs``);
full frames stay on board until ``IMG_DOWNLINK`` (one product) or ``IMG_DOWNLINK_PRIO`` (every
product at or above a priority, most important first; thumbnails, full frames or both). Chunks
go out on the bulk virtual channel; the recorder sends thumbnails ahead of full frames. ``IMG_RESEND`` re-queues named
segments of a product the ground holds only in part. With the option ``downlink = "cfdp"`` a
product goes instead as one CFDP class 2 transaction (:mod:`flight.link.cfdp`, by Comm), which
recovers what the link loses on its own; ``IMG_RESEND`` then sends the whole product again.

**Science autonomy.** ``IMG_SURVEY`` takes a navigation frame, finds rock candidates
(:mod:`flight.imaging.targets`), ranks them and reports each in a ``TargetCandidate`` event;
when the ``autonomy`` parameter is on, the best ``autonomy_targets`` are imaged (mast pointed at
each) and every choice is explained in a ``TargetChosen`` event.
"""

from __future__ import annotations

import logging
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flight.commands import PENDING, CommandFailed
from flight.component import Component
from flight.config import ConfigError
from flight.imaging import targets as tg
from flight.imaging.catalogue import READY, Catalogue, CatalogueError, Quota
from flight.imaging.products import (
    Format,
    MadeProduct,
    PendingProduct,
    ProductFailure,
    ProductJob,
    finish_product,
    prepare_product,
)
from flight.link.cfdp import FilePut
from flight.link.products import PRIO_PRODUCT, PRIO_THUMB, ProductError, parse_segments, product_chunks
from flight.model import Arg, Channel, Event, Param, Severity, command
from flight.worker import JobResult
from hal.contracts import Camera, Exposure, Frame
from hal.errors import HalError

log = logging.getLogger(__name__)

FORMATS = {"JPEG": 0, "PNG": 1}
WHAT = {"BOTH": 0, "THUMB": 1, "FULL": 2}
_FMT_ARGS = (Arg("format", "enum", enum=FORMATS, doc="JPEG (lossy) or PNG (lossless)"),
             Arg("quality", "u8", min=1, max=100, doc="JPEG quality (ignored for PNG)"),
             Arg("priority", "u8", doc="downlink priority, higher goes first"))


@dataclass
class Shot:
    pan_deg: float | None = None
    tilt_deg: float | None = None
    note: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    command: str | None  # the command to complete, None for autonomous work
    shots: deque[Shot]
    fmt: Format
    quality: int
    priority: int
    total: int = 0
    done: int = 0
    failed: list[str] = field(default_factory=list)
    metered: bool = False
    metering: bool = False  # the metered first shot is with the worker; the next shots wait for it


@dataclass(frozen=True, slots=True)
class Metering:
    """Auto-exposure settings handed to the worker with a job's first shot."""

    target_dn: float
    max_iter: int
    limits_ms: tuple[float, float]


@dataclass(frozen=True, slots=True)
class CaptureJob:
    """A shot for the worker: develop the exposure (metering first if asked), then the product."""

    pid: int
    exposure: Exposure
    metering: Metering | None
    fmt: Format
    quality: int
    full_path: Any
    thumb_path: Any
    meta: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Captured:
    """What the worker made of a shot: the frame's facts, the metering and the stored product
    (``pending`` between the worker's two stages, ``made`` once its files are synced)."""

    frame: Frame
    mean_dn: float
    metering_frames: int
    made: MadeProduct | None = None
    pending: PendingProduct | None = None


class Imaging(Component):
    """See the module docstring."""

    DEVICES = {"camera": Camera}
    OPTIONS = {
        "catalogue_file": "products.db",  # in the state directory
        "products_dir": "products",  # in the state directory
        "quota_bytes": 256 * 1024 * 1024,
        "chunk_bytes": 3000,
        "worker_queue": 4,
        "encode_cost_s": 0.5,  # modelled encode time per product on the simulated clock
        "pose_channels": ["nav.x_m", "nav.y_m", "nav.yaw_deg"],
        "mast_height_m": 1.0,  # camera height above the ground, for target ranges
        "max_list": 20,
        "downlink": "chunks",  # "chunks" (the link's own transfer) or "cfdp" (CFDP class 2 by Comm)
    }
    PARAMS = (
        Param("auto_exposure", "bool", True, doc="meter the first frame of each job"),
        Param("ae_target_dn", "f32", 110.0, "DN", min=10.0, max=240.0, doc="mean brightness AE aims at"),
        Param("ae_max_iter", "u8", 3, min=1, max=8, doc="metering frames at most per job"),
        Param("auto_thumbs", "bool", True, doc="downlink each thumbnail as soon as its product is stored"),
        Param("autonomy", "bool", False, doc="image the best survey targets without waiting for the ground"),
        Param("autonomy_targets", "u8", 2, min=0, max=10, doc="targets imaged per survey"),
        Param("min_target_score", "f32", 0.3, min=0.0, max=1.0, doc="targets scoring less are not imaged"),
    )
    CHANNELS = (
        Channel("products", "u32", doc="products ready in the catalogue", update="on_change"),
        Channel("store_bytes", "u64", "B", doc="bytes of product files held"),
        Channel("store_fill_pct", "f32", "%", doc="product store fill against the quota"),
        Channel("captures", "u32", doc="frames captured since boot", update="on_change"),
        Channel("failures", "u32", doc="products that could not be made since boot", update="on_change"),
        Channel("queued_shots", "u16", doc="shots waiting to be taken", update="on_change"),
        Channel("exposure_ms", "f32", "ms", doc="exposure of the last frame", update="on_change"),
        Channel("gain", "f32", doc="analogue gain of the last frame", update="on_change"),
        Channel("last_mean_dn", "f32", "DN", doc="mean brightness of the last frame", update="on_change"),
        Channel("last_pid", "u32", doc="id of the last product stored", update="on_change"),
        Channel("chunks_queued", "u32", doc="product chunks queued for downlink since boot", update="on_change"),
        Channel("bad_requests", "u32", doc="refused product requests (unknown id, bad segments) since boot",
                update="on_change"),
        Channel("targets_found", "u16", doc="candidates in the last survey", update="on_change"),
        Channel("targets_imaged", "u32", doc="targets imaged autonomously since boot", update="on_change"),
    )
    EVENTS = (
        Event("CatalogueOpened", Severity.ACTIVITY_HI,
              "catalogue: {ready} products ready ({bytes} B); repaired {failed} interrupted, {lost} lost, "
              "{orphans} orphan files{note}",
              (Arg("ready", "u32"), Arg("bytes", "u64", "B"), Arg("failed", "u32"), Arg("lost", "u32"),
               Arg("orphans", "u32"), Arg("note", "str"))),
        Event("ImageCaptured", Severity.ACTIVITY_LO,
              "product {pid}: frame {seq} at pan {pan_deg} tilt {tilt_deg} deg, {exposure_ms} ms x{gain}",
              (Arg("pid", "u32"), Arg("seq", "u32"), Arg("pan_deg", "f32", "deg"), Arg("tilt_deg", "f32", "deg"),
               Arg("exposure_ms", "f32", "ms"), Arg("gain", "f32"))),
        Event("ProductReady", Severity.ACTIVITY_HI,
              "product {pid} stored: {format} {width}x{height}, {full_bytes} B + thumbnail {thumb_bytes} B",
              (Arg("pid", "u32"), Arg("format", "str"), Arg("width", "u16"), Arg("height", "u16"),
               Arg("full_bytes", "u32", "B"), Arg("thumb_bytes", "u32", "B"))),
        Event("ProductFailed", Severity.WARNING_HI, "product {pid} failed: {reason}",
              (Arg("pid", "u32"), Arg("reason", "str")), throttle=10, throttle_window_s=60.0),
        Event("CaptureFailed", Severity.WARNING_HI, "camera capture failed: {reason}", (Arg("reason", "str"),),
              throttle=10, throttle_window_s=60.0),
        Event("ExposureSet", Severity.ACTIVITY_LO,
              "auto-exposure: {exposure_ms} ms x{gain} after {frames} metering frame(s), mean {mean_dn} DN",
              (Arg("exposure_ms", "f32", "ms"), Arg("gain", "f32"), Arg("frames", "u8"), Arg("mean_dn", "f32"))),
        Event("ProductListed", Severity.ACTIVITY_LO,
              "product {pid} {state} prio {priority} {format} {width}x{height} {bytes} B, sent {downlinks}x",
              (Arg("pid", "u32"), Arg("state", "str"), Arg("priority", "u8"), Arg("format", "str"),
               Arg("width", "u16"), Arg("height", "u16"), Arg("bytes", "u32", "B"), Arg("downlinks", "u16"))),
        Event("DownlinkQueued", Severity.ACTIVITY_LO, "product {pid} {what}: {chunks} chunks queued for downlink",
              (Arg("pid", "u32"), Arg("what", "str"), Arg("chunks", "u32"))),
        Event("ProductDeleted", Severity.ACTIVITY_HI, "product {pid} deleted ({bytes} B freed)",
              (Arg("pid", "u32"), Arg("bytes", "u32", "B"))),
        Event("BadProductRequest", Severity.WARNING_LO, "product request refused: {reason} ({count} so far)",
              (Arg("reason", "str"), Arg("count", "u32")), throttle=5, throttle_window_s=60.0),
        Event("TargetCandidate", Severity.ACTIVITY_LO,
              "candidate {rank}: score {score} (size {size_px} px, contrast {contrast}, range {range_m} m, "
              "novelty {novelty}) at pan {pan_deg} tilt {tilt_deg}",
              (Arg("rank", "u8"), Arg("score", "f32"), Arg("size_px", "u32"), Arg("contrast", "f32"),
               Arg("range_m", "f32", "m"), Arg("novelty", "f32"), Arg("pan_deg", "f32", "deg"),
               Arg("tilt_deg", "f32", "deg")), throttle=20, throttle_window_s=60.0),
        Event("TargetChosen", Severity.ACTIVITY_HI, "imaging target {rank}: {why}",
              (Arg("rank", "u8"), Arg("why", "str"))),
        Event("SurveyDone", Severity.ACTIVITY_HI,
              "survey: {found} candidates, {chosen} chosen for imaging ({reason})",
              (Arg("found", "u16"), Arg("chosen", "u8"), Arg("reason", "str"))),
    )

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.catalogue: Catalogue | None = None
        self.quota: Quota | None = None
        self.jobs: deque[Job] = deque()
        self._inflight: dict[int, tuple[Job, dict[str, Any]]] = {}
        self.captures = 0
        self.failures = 0
        self.chunks_queued = 0
        self.bad_requests = 0
        self.targets_imaged = 0
        self.imaged_targets: list[tuple[float, float]] = []  # (pan, tilt) already imaged, for novelty
        self.last_survey: list[tg.Target] = []
        self._worker: Any = None

    # -- life cycle --------------------------------------------------------------------------

    def bind(self, fw: Any) -> None:
        super().bind(fw)
        self._worker = fw.executive.add_worker(
            self.name, self._work, self._on_result, queue_size=int(self.options["worker_queue"]),
            sim_cost_s=float(self.options["encode_cost_s"]), finish=self._sync)

    def setup(self) -> None:
        sd = self.fw.state_dir
        if self.options["downlink"] not in ("chunks", "cfdp"):
            raise ConfigError(f"components.{self.name}.downlink: {self.options['downlink']!r}; "
                              "one of \"chunks\", \"cfdp\"")
        self.catalogue = Catalogue.open(sd / str(self.options["catalogue_file"]),
                                        sd / str(self.options["products_dir"]))
        self.quota = Quota(int(self.options["quota_bytes"]), self.catalogue.used_bytes())
        self.camera: Camera = self.devices["camera"]
        rec = self.catalogue.recovery
        note = f"; corrupt catalogue moved to {rec.corrupt_moved}" if rec.corrupt_moved else ""
        self.event("CatalogueOpened", ready=self.catalogue.counts().get(READY, 0), bytes=self.quota.used,
                   failed=rec.failed_pending, lost=rec.lost, orphans=rec.orphans_removed, note=note)
        self._telemetry()

    def shutdown(self) -> None:
        if self.catalogue is not None:
            self.catalogue.close()
            self.catalogue = None

    @property
    def cat(self) -> Catalogue:
        if self.catalogue is None:
            raise CommandFailed("the catalogue is closed")
        return self.catalogue

    # -- stepping ----------------------------------------------------------------------------

    def step(self) -> None:
        if self.jobs and not self.jobs[0].metering and self._worker.depth < self._worker.queue_size:
            job = self.jobs[0]
            shot = job.shots.popleft()
            self._take(job, shot)
            if not job.shots:
                self.jobs.popleft()
                self._maybe_finish(job)
        self.tlm("queued_shots", sum(len(j.shots) for j in self.jobs))

    def _take(self, job: Job, shot: Shot) -> None:
        cam = self.camera
        try:
            if shot.pan_deg is not None and cam.has_mast:
                cam.point(shot.pan_deg, shot.tilt_deg if shot.tilt_deg is not None else cam.pointing[1])
            exposure = cam.expose()
        except (HalError, ValueError, NotImplementedError) as exc:
            reason = f"camera fault: {type(exc).__name__}: {exc}"
            self.failures += 1
            job.failed.append(reason)
            job.done += 1
            self.event("CaptureFailed", reason=reason[:200])
            self._telemetry()
            return
        metering = None
        if not job.metered:
            job.metered = True
            if self.param("auto_exposure") and cam.has_exposure_control:
                metering = Metering(float(self.param("ae_target_dn")), int(self.param("ae_max_iter")),
                                    tuple(getattr(cam, "EXPOSURE_LIMITS_MS", (0.05, 2000.0))))
        self.captures += 1
        self._store(job, shot, exposure, metering)

    def _pose(self) -> dict[str, float] | None:
        tlm = self.fw.tlm
        names = set(tlm.names())
        chans = [c for c in self.options["pose_channels"] if c in names]
        if not chans:
            return None
        out = {}
        for c in chans:
            v = tlm.get(c)
            if isinstance(v, int | float):
                out[c] = float(v)
        return out or None

    def _store(self, job: Job, shot: Shot, exposure: Exposure, metering: Metering | None) -> None:
        cat = self.cat
        pan, tilt = self.camera.pointing
        meta: dict[str, Any] = {
            "time_s": round(self.now(), 6), "camera": exposure.camera,
            "pan_deg": pan, "tilt_deg": tilt, "format": job.fmt.label,
            "quality": job.quality if job.fmt is Format.JPEG else 0, "priority": job.priority,
            "source": job.command or "autonomy",
        }
        pose = self._pose()
        if pose is not None:
            meta["pose"] = pose
        if shot.note:
            meta["target"] = shot.note
        try:
            pid = cat.reserve(self.now(), job.fmt.label, meta["quality"], job.priority, meta)
        except Exception as exc:  # sqlite3 errors and the like: the catalogue stays as it was
            self._fail_job(job, 0, f"catalogue write failed: {exc}")
            return
        meta["pid"] = pid
        p = cat.get(pid)
        item = CaptureJob(pid, exposure, metering, job.fmt, job.quality, cat.file(p, "full"), cat.file(p, "thumb"),
                          meta)
        if not self._worker.submit(item, self.fw.clock.now_ns()):
            cat.fail(pid, "encoder queue full")
            self._fail_job(job, pid, "encoder queue full")
            return
        if metering is not None:
            job.metering = True
        self._inflight[pid] = (job, meta)

    # -- the worker --------------------------------------------------------------------------

    def _work(self, job: CaptureJob) -> Captured:
        """On the worker's thread: make the frame (metering it first if asked), encode the
        product and hand its files to the product store; the worker's second stage
        (:meth:`_sync`) waits until they are on disk."""
        assert self.quota is not None
        try:
            if job.metering is not None:
                frame, frames = auto_expose(job.exposure, job.metering)
            else:
                frame, frames = job.exposure.develop(None, None), 0
        except (HalError, ValueError, NotImplementedError) as exc:
            raise ProductFailure(f"camera fault: {type(exc).__name__}: {exc}") from None
        mean, _ = meter(frame.image)
        pending = prepare_product(ProductJob(job.pid, frame.image, job.fmt, job.quality, job.full_path,
                                             job.thumb_path, job.meta), self.quota)
        return Captured(frame, mean, frames, pending=pending)

    def _sync(self, got: Captured) -> Captured:
        """The worker's second stage: the product's files durable (stored while the next is encoded)."""
        assert self.quota is not None and got.pending is not None
        return Captured(got.frame, got.mean_dn, got.metering_frames, made=finish_product(got.pending))

    def _on_result(self, result: JobResult) -> None:
        cj: CaptureJob = result.payload
        job, meta = self._inflight.pop(cj.pid, (None, cj.meta))
        if job is not None and cj.metering is not None:
            job.metering = False  # the job's next shots may go
        if self.catalogue is None:
            return
        if not result.ok:
            reason = result.error.split(": ", 1)[1] if result.error.startswith("ProductFailure") else result.error
            if reason.startswith("camera fault"):
                self.event("CaptureFailed", reason=reason[:200])
            self.catalogue.fail(cj.pid, reason)
            self._fail_job(job, cj.pid, reason)
            return
        got: Captured = result.value
        frame, made = got.frame, got.made
        assert made is not None  # the second stage ran
        if cj.metering is not None:
            self.event("ExposureSet", exposure_ms=round(frame.exposure_ms, 3), gain=round(frame.gain, 2),
                       frames=got.metering_frames, mean_dn=round(got.mean_dn, 1))
            try:  # lock the metered exposure for the rest of the job
                self.camera.set_exposure(frame.exposure_ms, frame.gain)
            except (HalError, ValueError, NotImplementedError) as exc:
                self.event("CaptureFailed", reason=f"exposure not set: {exc}"[:200])
        meta = dict(meta) | {"frame_time_s": frame.time_s, "camera": frame.camera, "seq": frame.seq,
                             "exposure_ms": frame.exposure_ms, "gain": frame.gain}
        m = frame.model
        if m is not None:
            meta["model"] = {"width": m.width, "height": m.height, "fx": m.fx, "fy": m.fy, "cx": m.cx, "cy": m.cy}
        self.tlm("exposure_ms", frame.exposure_ms)
        self.tlm("gain", frame.gain)
        self.tlm("last_mean_dn", got.mean_dn)
        self.event("ImageCaptured", pid=cj.pid, seq=frame.seq, pan_deg=round(float(meta["pan_deg"]), 2),
                   tilt_deg=round(float(meta["tilt_deg"]), 2), exposure_ms=round(frame.exposure_ms, 3),
                   gain=round(frame.gain, 2))
        try:
            p = self.catalogue.commit(cj.pid, made.width, made.height, made.full, made.thumb, meta)
        except Exception as exc:
            assert self.quota is not None
            self.quota.release(len(made.full) + len(made.thumb))
            self.catalogue.fail(cj.pid, f"catalogue commit failed: {exc}")
            self._fail_job(job, cj.pid, f"catalogue commit failed: {exc}")
            return
        self.event("ProductReady", pid=p.pid, format=p.format, width=p.width, height=p.height,
                   full_bytes=p.full_size, thumb_bytes=p.thumb_size)
        self.tlm("last_pid", p.pid)
        if self.param("auto_thumbs"):
            self._queue(p.pid, thumb=True)
        if job is not None:
            job.done += 1
            self._maybe_finish(job)
        self._telemetry()

    def _fail_job(self, job: Job | None, pid: int, reason: str) -> None:
        self.failures += 1
        self.event("ProductFailed", pid=pid, reason=reason[:200])
        if job is not None:
            job.failed.append(reason)
            job.done += 1
            self._maybe_finish(job)
        self._telemetry()

    def _maybe_finish(self, job: Job) -> None:
        if job.shots or job.done < job.total or job.command is None:
            return
        name, job.command = job.command, None
        if job.failed:
            self.fw.cmd.complete(name, False, f"{len(job.failed)} of {job.total} products failed: {job.failed[0]}")
        else:
            self.fw.cmd.complete(name, True)

    def _telemetry(self) -> None:
        if self.catalogue is None or self.quota is None:
            return
        self.tlm("products", self.catalogue.counts().get(READY, 0))
        self.tlm("store_bytes", self.quota.used)
        self.tlm("store_fill_pct", 100.0 * self.quota.used / max(1, self.quota.limit))
        self.tlm("captures", self.captures)
        self.tlm("failures", self.failures)
        self.tlm("chunks_queued", self.chunks_queued)
        self.tlm("bad_requests", self.bad_requests)
        self.tlm("targets_imaged", self.targets_imaged)

    # -- downlink ----------------------------------------------------------------------------

    def _queue(self, pid: int, thumb: bool, segments: list[int] | None = None) -> int:
        """Queue chunks of one product for downlink; returns how many."""
        cat = self.cat
        p = cat.get(pid)
        data = cat.read(pid, "thumb" if thumb else "full")
        meta = dict(p.meta) | {"kind": "thumb" if thumb else "full", "pid": pid,
                               "width": p.width if not thumb else len(range(0, p.width, 8)),
                               "height": p.height if not thumb else len(range(0, p.height, 8))}
        if self.options["downlink"] == "cfdp":
            return self._queue_file(p, thumb, meta | {"size": len(data), "crc32": zlib.crc32(data)})
        chunks = product_chunks(self.fw.clock.now_ns(), pid, data, meta, int(self.options["chunk_bytes"]),
                                thumbnail=thumb, only=segments)
        for c in chunks:
            self.fw.outbound.put(c)
        self.chunks_queued += len(chunks)
        if not thumb and segments is None:
            cat.mark_downlinked(pid)
        self.event("DownlinkQueued", pid=pid, what="thumbnail" if thumb else "full frame", chunks=len(chunks))
        self._telemetry()
        return len(chunks)

    def _queue_file(self, p: Any, thumb: bool, meta: dict[str, Any]) -> int:
        """Queue one product file for CFDP (Comm sends it as one transaction); returns 1."""
        kind = "thumb" if thumb else "full"
        try:
            source = self.cat.file(p, kind).relative_to(self.fw.state_dir)
        except ValueError:
            raise ProductError("products_dir must be inside the state directory for CFDP downlink") from None
        self.fw.outbound.put(FilePut(self.fw.clock.now_ns(), source.as_posix(), f"products/{p.pid:08d}.{kind}.{p.ext}",
                                     meta, priority=PRIO_THUMB if thumb else PRIO_PRODUCT))
        self.chunks_queued += 1
        if not thumb:
            self.cat.mark_downlinked(p.pid)
        self.event("DownlinkQueued", pid=p.pid, what=f"{'thumbnail' if thumb else 'full frame'} by CFDP", chunks=1)
        self._telemetry()
        return 1

    def _bad(self, reason: str) -> None:
        self.bad_requests += 1
        self.event("BadProductRequest", reason=reason[:200], count=self.bad_requests)
        self.tlm("bad_requests", self.bad_requests)
        raise CommandFailed(reason)

    # -- commands ----------------------------------------------------------------------------

    def _submit(self, name: str, shots: list[Shot], fmt: int, quality: int, priority: int) -> Any:
        job = Job(name, deque(shots), Format(fmt), int(quality), int(priority), total=len(shots))
        self.jobs.append(job)
        self.tlm("queued_shots", sum(len(j.shots) for j in self.jobs))
        return PENDING

    @command("IMG_CAPTURE", *_FMT_ARGS)
    def img_capture(self, format: int, quality: int, priority: int) -> Any:
        """Take one frame where the mast points now and store it as a product."""
        return self._submit("IMG_CAPTURE", [Shot()], format, quality, priority)

    @command("IMG_BURST", Arg("count", "u16", min=1, max=100, doc="frames"), *_FMT_ARGS)
    def img_burst(self, count: int, format: int, quality: int, priority: int) -> Any:
        """Take ``count`` frames, one per cycle of the imaging rate group, with locked exposure."""
        return self._submit("IMG_BURST", [Shot() for _ in range(count)], format, quality, priority)

    @command("IMG_PANORAMA",
             Arg("pan_start_deg", "f32", "deg", min=-170, max=170), Arg("pan_step_deg", "f32", "deg", min=1, max=90),
             Arg("pan_count", "u8", min=1, max=36),
             Arg("tilt_start_deg", "f32", "deg", min=-80, max=60), Arg("tilt_step_deg", "f32", "deg", min=0, max=60),
             Arg("tilt_count", "u8", min=1, max=10), *_FMT_ARGS)
    def img_panorama(self, pan_start_deg: float, pan_step_deg: float, pan_count: int, tilt_start_deg: float,
                     tilt_step_deg: float, tilt_count: int, format: int, quality: int, priority: int) -> Any:
        """A panorama plan: rows of tilt, each a sweep of pan, exposure locked from the first frame."""
        if not self.camera.has_mast:
            raise CommandFailed(f"camera {self.camera.name!r} has no pan/tilt mast")
        shots = []
        for r in range(tilt_count):
            tilt = tilt_start_deg + r * tilt_step_deg
            pans = [pan_start_deg + c * pan_step_deg for c in range(pan_count)]
            for c, pan in enumerate(pans if r % 2 == 0 else reversed(pans)):  # serpentine: short slews
                shots.append(Shot(pan, tilt, {"row": r, "col": c if r % 2 == 0 else pan_count - 1 - c}))
        return self._submit("IMG_PANORAMA", shots, format, quality, priority)

    @command("IMG_POINT", Arg("pan_deg", "f32", "deg", min=-170, max=170),
             Arg("tilt_deg", "f32", "deg", min=-80, max=60))
    def img_point(self, pan_deg: float, tilt_deg: float) -> None:
        """Point the mast."""
        try:
            self.camera.point(pan_deg, tilt_deg)
        except (HalError, ValueError, NotImplementedError) as exc:
            raise CommandFailed(str(exc)) from None

    @command("IMG_LIST", Arg("max", "u16", min=1, max=1000, doc="newest products to list"))
    def img_list(self, max: int) -> None:
        """One ProductListed event per product, newest first (at most ``max``)."""
        for p in list(reversed(self.cat.list()))[:max]:
            self.event("ProductListed", pid=p.pid, state=p.state, priority=p.priority, format=p.format,
                       width=p.width, height=p.height, bytes=p.bytes, downlinks=p.downlinks)

    @command("IMG_DOWNLINK", Arg("pid", "u32"), Arg("what", "enum", enum=WHAT))
    def img_downlink(self, pid: int, what: int) -> None:
        """Queue one product for downlink: thumbnail, full frame, or both."""
        try:
            if what in (WHAT["BOTH"], WHAT["THUMB"]):
                self._queue(pid, thumb=True)
            if what in (WHAT["BOTH"], WHAT["FULL"]):
                self._queue(pid, thumb=False)
        except (CatalogueError, ProductError) as exc:
            self._bad(str(exc))

    @command("IMG_DOWNLINK_PRIO", Arg("min_priority", "u8"), Arg("max_products", "u16", min=1, max=1000),
             Arg("what", "enum", enum=WHAT))
    def img_downlink_prio(self, min_priority: int, max_products: int, what: int) -> None:
        """Queue ready products at or above a priority (highest, then oldest, first).

        Full frames are queued before thumbnails on purpose: the order of queueing does not
        matter, the recorder sends every thumbnail ahead of any full frame.
        """
        ready = [p for p in self.cat.list(states=(READY,)) if p.priority >= min_priority]
        ready.sort(key=lambda p: (-p.priority, p.pid))
        kinds = [False] if what == WHAT["FULL"] else [True] if what == WHAT["THUMB"] else [False, True]
        for thumb in kinds:
            for p in ready[:max_products]:
                try:
                    self._queue(p.pid, thumb=thumb)
                except (CatalogueError, ProductError) as exc:
                    self.bad_requests += 1
                    self.event("BadProductRequest", reason=str(exc)[:200], count=self.bad_requests)

    @command("IMG_RESEND", Arg("pid", "u32"), Arg("what", "enum", enum={"THUMB": 1, "FULL": 2}),
             Arg("segments", "str", doc='segment list, e.g. "0-3,7"; empty for all'))
    def img_resend(self, pid: int, what: int, segments: str) -> None:
        """Queue named segments of a product again (the ground holds it only in part)."""
        try:
            segs = parse_segments(segments) if segments.strip() else None
            self._queue(pid, thumb=what == 1, segments=segs)
        except (CatalogueError, ProductError) as exc:
            self._bad(str(exc))

    @command("IMG_DELETE", Arg("pid", "u32"))
    def img_delete(self, pid: int) -> None:
        """Delete a product and its files from the onboard store."""
        try:
            p = self.cat.delete(pid)
        except CatalogueError as exc:
            self._bad(str(exc))
            return
        if p.state == READY and self.quota is not None:
            self.quota.release(p.bytes)
        self.event("ProductDeleted", pid=pid, bytes=p.bytes)
        self._telemetry()

    @command("IMG_SURVEY", Arg("pan_deg", "f32", "deg", min=-170, max=170),
             Arg("tilt_deg", "f32", "deg", min=-80, max=60))
    def img_survey(self, pan_deg: float, tilt_deg: float) -> None:
        """Take a navigation frame at (pan, tilt), find and rank rock targets, image the best if allowed."""
        cam = self.camera
        try:
            if cam.has_mast:
                cam.point(pan_deg, tilt_deg)
            frame = cam.capture()
        except (HalError, ValueError, NotImplementedError) as exc:
            self.event("CaptureFailed", reason=f"survey: {exc}"[:200])
            raise CommandFailed(f"camera fault: {exc}") from None
        self.captures += 1
        self.survey(frame)

    def survey(self, frame: Frame) -> list[tg.Target]:
        """Find and rank targets in a navigation frame; queue the best for imaging when allowed."""
        pan, tilt = self.camera.pointing
        height = float(self.options["mast_height_m"])
        found = tg.find_candidates(frame.image, frame.model, tilt, height)
        ranked = tg.rank(found, frame.model, pan, tilt, height, self.imaged_targets)
        self.last_survey = ranked
        self.tlm("targets_found", len(ranked))
        for i, t in enumerate(ranked[:10]):
            self.event("TargetCandidate", rank=i + 1, score=round(t.score, 3), size_px=t.area_px,
                       contrast=round(t.contrast, 3), range_m=round(t.range_m, 2), novelty=round(t.novelty, 2),
                       pan_deg=round(t.pan_deg, 2), tilt_deg=round(t.tilt_deg, 2))
        allowed = bool(self.param("autonomy"))
        n = int(self.param("autonomy_targets"))
        floor = float(self.param("min_target_score"))
        chosen = [t for t in ranked if t.score >= floor][:n] if allowed else []
        if not allowed:
            reason = "autonomy is off; candidates reported only"
        elif not chosen:
            reason = f"no candidate scores {floor:.2f} or more"
        else:
            reason = f"best {len(chosen)} at or above {floor:.2f}"
        self.event("SurveyDone", found=len(ranked), chosen=len(chosen), reason=reason)
        if chosen:
            shots = []
            for i, t in enumerate(chosen):
                why = (f"score {t.score:.2f} = {tg.explain(t)}; pointing pan {t.pan_deg:.1f} tilt {t.tilt_deg:.1f}")
                self.event("TargetChosen", rank=i + 1, why=why[:250])
                self.imaged_targets.append((t.pan_deg, t.tilt_deg))
                shots.append(Shot(t.pan_deg, t.tilt_deg, {"rank": i + 1, "score": round(t.score, 3),
                                                          "range_m": round(t.range_m, 2)}))
            self.targets_imaged += len(shots)
            self.jobs.append(Job(None, deque(shots), Format.PNG, 0, 200, total=len(shots)))
            self._telemetry()
        return ranked


def auto_expose(exposure: Exposure, m: Metering) -> tuple[Frame, int]:
    """Develop an exposure until its central mean is near ``m.target_dn`` (see the module docstring).

    Returns the frame kept and how many metering frames were looked at.
    """
    frame = exposure.develop(None, None)
    exp_ms, gain = frame.exposure_ms, frame.gain
    frames = 0
    lo, hi = m.limits_ms
    for _ in range(m.max_iter):
        frames += 1
        mean, saturated = meter(frame.image)
        if saturated <= 0.02 and abs(mean - m.target_dn) <= 0.12 * m.target_dn:
            break
        factor = 0.5 if saturated > 0.02 and mean >= m.target_dn else m.target_dn / max(mean, 1.0)
        factor = min(8.0, max(0.125, factor))
        want = exp_ms * factor
        new_exp = min(hi, max(lo, want))
        new_gain = min(16.0, max(1.0, gain * want / new_exp)) if want > hi else 1.0
        if abs(new_exp - exp_ms) < 1e-9 and abs(new_gain - gain) < 1e-9:
            break
        exp_ms, gain = new_exp, new_gain
        frame = exposure.develop(exp_ms, gain)
    return frame, frames


def meter(image: np.ndarray) -> tuple[float, float]:
    """(mean DN of the central half, fraction of saturated pixels) of a frame."""
    h, w = image.shape[:2]
    centre = image[h // 4 : h - h // 4, w // 4 : w - w // 4]
    mean = float(centre.mean()) if centre.size else 0.0
    sat = float(np.count_nonzero(image >= 250)) / max(1, image.size)
    return mean, sat

