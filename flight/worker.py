"""Worker components: work longer than a cycle, on a thread, handed back through the executive.

A worker owns a bounded queue and one thread. ``submit`` never blocks the executive: a full
queue refuses the job and counts it. Results are delivered by the executive, in its own thread,
in submission order, by calling the owner's ``on_result``.

Determinism on the simulated clock: each job carries a modelled duration (``sim_cost_s``). The
executive delivers a job's result at the first cycle at or after ``submit time + sim_cost_s``,
waiting for the thread if it has not finished yet, so the simulated timeline never depends on
how fast the host happened to be. On the real clock results are delivered as soon as they exist.

A job that raises gives a failed result. A thread that dies (a job that raised SystemExit, a
crash in the loop) is noticed by the executive, its job is failed, and the thread is restarted.

**Two stages.** A worker may be given a ``finish`` stage: ``handler`` runs on the worker's thread
and hands its value to ``finish``, which runs on a second thread, and the job is done (and its
result is ``finish``'s value) when both have run. While ``finish`` works on one job ``handler``
already works on the next, so a stage that mostly waits (the imaging products' disk syncs) costs
nothing beside one that computes (the encoder): a burst runs at the rate of the slower stage, not
of their sum. Results are still delivered in submission order, and on the simulated clock still at
``submit time + sim_cost_s``, so nothing about the timeline changes. A health ping passes through
both stages, so its answer proves both threads are serving.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flight.clock import NS
from flight.logcount import worth_a_line

log = logging.getLogger(__name__)


@dataclass(slots=True)
class JobResult:
    job_id: int
    payload: Any
    ok: bool
    value: Any = None
    error: str = ""


@dataclass(slots=True)
class _Job:
    job_id: int
    payload: Any
    ready_ns: int
    result: JobResult | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Worker:
    """One thread and a bounded queue serving one component."""

    def __init__(
        self,
        name: str,
        handler: Callable[[Any], Any],
        on_result: Callable[[JobResult], None],
        queue_size: int = 4,
        sim_cost_s: float = 0.0,
        job_timeout_s: float = 60.0,
        finish: Callable[[Any], Any] | None = None,
    ) -> None:
        self.name = name
        self.handler = handler
        self.finish = finish
        self.on_result = on_result
        self.queue_size = queue_size
        self.sim_cost_s = sim_cost_s
        self.job_timeout_s = job_timeout_s
        self._q: queue.Queue[_Job | tuple[str, int] | None] = queue.Queue(maxsize=queue_size + 8)
        self._inflight: deque[_Job] = deque()
        self._pongs: queue.Queue[int] = queue.Queue()
        self._next_id = 0
        self._thread: threading.Thread | None = None
        self._current: _Job | None = None
        # the finish stage: its own queue (unbounded: it never holds more than the jobs in
        # flight, which submit bounds) and thread, and the job it is on
        self._q2: queue.Queue[tuple[_Job, Any] | tuple[str, int] | None] = queue.Queue()
        self._thread2: threading.Thread | None = None
        self._current2: _Job | None = None
        self._stopping = False
        self.submitted = 0
        self.refused = 0
        self.failures = 0
        self._raised = itertools.count(1)  # jobs whose function raised, for the log's rate limit
        self.restarts = 0
        self.last_pong = -1
        self._deaths: list[str] = []

    # -- thread -----------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = self._spawn(self._loop, "")
        if self.finish is not None and not self._alive2:
            self._thread2 = self._spawn(self._finish_loop, "-finish")

    def _spawn(self, target: Callable[[], None], suffix: str) -> threading.Thread:
        t = threading.Thread(target=target, name=f"worker-{self.name}{suffix}", daemon=True)
        t.start()
        return t

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and (self.finish is None or self._alive2)

    @property
    def _alive2(self) -> bool:
        return self._thread2 is not None and self._thread2.is_alive()

    def _run(self, job: _Job, fn: Callable[[Any], Any], arg: Any) -> tuple[bool, Any]:
        """(True, value) of ``fn(arg)``, or (False, None) with the job failed and done."""
        try:
            return True, fn(arg)
        except Exception as exc:
            n = next(self._raised)  # both stages' threads count here (next() on a count is atomic)
            if worth_a_line(n):  # each failure is a result; the log line is rate-limited
                log.warning("worker %s job %d raised %s: %s (%d jobs raised so far)", self.name, job.job_id,
                            type(exc).__name__, exc, n)
            job.result = JobResult(job.job_id, job.payload, False, error=f"{type(exc).__name__}: {exc}")
            job.done.set()
            return False, None

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:  # stop (the finish stage is stopped by stop() once this has ended)
                return
            if isinstance(item, tuple):  # a health ping: answered by the last stage
                if self.finish is not None:
                    self._q2.put(item)
                else:
                    self._pongs.put(item[1])
                continue
            self._current = item
            ok, value = self._run(item, self.handler, item.payload)
            self._current = None
            if not ok:
                continue
            if self.finish is not None:
                self._q2.put((item, value))
                continue
            item.result = JobResult(item.job_id, item.payload, True, value)
            item.done.set()

    def _finish_loop(self) -> None:
        assert self.finish is not None
        while True:
            item = self._q2.get()
            if item is None:
                return
            job, value = item
            if not isinstance(job, _Job):  # a health ping that has passed the first stage
                self._pongs.put(value)
                continue
            self._current2 = job
            ok, value = self._run(job, self.finish, value)
            self._current2 = None
            if ok:
                job.result = JobResult(job.job_id, job.payload, True, value)
                job.done.set()

    # -- executive side -----------------------------------------------------------------------

    def submit(self, payload: Any, now_ns: int, sim_cost_s: float | None = None) -> bool:
        """Queue a job; False (and counted) when the worker already holds ``queue_size`` jobs."""
        if len(self._inflight) >= self.queue_size:
            self.refused += 1
            return False
        self._next_id += 1
        cost = self.sim_cost_s if sim_cost_s is None else sim_cost_s
        job = _Job(self._next_id, payload, now_ns + int(cost * NS))
        self._inflight.append(job)
        self._q.put_nowait(job)
        self.submitted += 1
        return True

    def ping(self, key: int) -> None:
        """Send a health ping through the job queue; the answer proves the thread is serving it."""
        try:
            self._q.put_nowait(("ping", key))
        except queue.Full:
            pass

    def ping_wait(self, key: int, timeout_s: float) -> bool:
        """Ping and wait (bounded) for the answer; used on the simulated clock."""
        if not self.alive:
            return False
        self.ping(key)
        deadline = timeout_s
        while deadline > 0:
            try:
                if self._pongs.get(timeout=min(0.05, deadline)) == key:
                    self.last_pong = key
                    return True
            except queue.Empty:
                if not self.alive:
                    return False
            deadline -= 0.05
        return False

    def pongs(self) -> list[int]:
        out = []
        while True:
            try:
                out.append(self._pongs.get_nowait())
            except queue.Empty:
                break
        if out:
            self.last_pong = out[-1]
        return out

    def check_alive(self) -> str | None:
        """Restart a dead thread; returns a description of what died, or None."""
        if self._thread is None or self._stopping or self.alive:
            return None
        first = not self._thread.is_alive()
        job = self._current if first else self._current2
        if first:
            self._current = None
        else:
            self._current2 = None
        if job is not None and not job.done.is_set():
            job.result = JobResult(job.job_id, job.payload, False, error="worker thread died")
            job.done.set()
        self.restarts += 1
        if first:
            self._thread = self._spawn(self._loop, "")
        else:
            self._thread2 = self._spawn(self._finish_loop, "-finish")
        during = f" during job {job.job_id}" if job else ""
        stage = "" if first else "finish stage "
        note = f"{stage}thread died{during}; restarted ({self.restarts})"
        self._deaths.append(note)
        return note

    def take_deaths(self) -> list[str]:
        """Deaths noticed since the last call (the executive reports each one)."""
        notes, self._deaths = self._deaths, []
        return notes

    def deliver(self, now_ns: int, lockstep: bool) -> list[JobResult]:
        """Hand finished jobs to the owner, in order (see the module docstring for lockstep)."""
        delivered = []
        while self._inflight:
            job = self._inflight[0]
            if lockstep:
                if job.ready_ns > now_ns:
                    break
                self._wait(job)
            elif not job.done.is_set():
                break
            self._inflight.popleft()
            result = job.result or JobResult(job.job_id, job.payload, False, error="no result")
            if not result.ok:
                self.failures += 1
            delivered.append(result)
            self.on_result(result)
        return delivered

    def _wait(self, job: _Job) -> None:
        waited = 0.0
        while not job.done.wait(0.05):
            waited += 0.05
            if not self.alive:
                self.check_alive()
            if waited >= self.job_timeout_s and not job.done.is_set():
                job.result = JobResult(job.job_id, job.payload, False, error="job timed out")
                job.done.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Finish queued jobs, then stop the thread (bounded wait)."""
        self._stopping = True
        if self._thread is None:
            return
        try:
            self._q.put(None, timeout=timeout_s)
        except queue.Full:
            log.warning("worker %s: queue full at stop", self.name)
        self._thread.join(timeout_s)
        if self._thread2 is not None:
            # behind every job the first stage has passed on (or after it died)
            self._q2.put(None)
            self._thread2.join(timeout_s)
        if self._thread.is_alive() or self._alive2:
            log.warning("worker %s did not stop within %.1f s", self.name, timeout_s)

    @property
    def depth(self) -> int:
        return len(self._inflight)
