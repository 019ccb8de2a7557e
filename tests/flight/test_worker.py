"""The worker's two stages (``finish``): overlapped, in order, failures isolated, deaths restarted.

The overlap is shown by the threads themselves, not by timing: the second stage of one job waits
(bounded) for the first stage of the next job to start, which can only happen if the two run at
the same time.
"""

import threading

import pytest

from flight.clock import NS
from flight.worker import Worker

WAIT_S = 5.0  # bounded waits for another thread; never reached when the code is right


def _worker(handler, finish, results, **kw) -> Worker:
    w = Worker("w", handler, results.append, finish=finish, **kw)
    w.start()
    return w


def _drain(w: Worker, n: int) -> None:
    """Deliver on the real clock until ``n`` results have come back (bounded)."""
    got = 0
    for _ in range(int(WAIT_S / 0.01)):
        got += len(w.deliver(0, lockstep=False))
        if got >= n:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"only {got} of {n} results came back")


def test_the_second_stage_of_a_job_overlaps_the_first_stage_of_the_next():
    started: dict[int, threading.Event] = {n: threading.Event() for n in range(4)}
    saw_next_start: list[bool] = []

    def encode(n):
        started[n].set()
        return n * 10

    def sync(v):
        n = v // 10
        if n + 1 in started:
            saw_next_start.append(started[n + 1].wait(WAIT_S))
        return v + 1

    results = []
    w = _worker(encode, sync, results, queue_size=4)
    try:
        for n in range(4):
            assert w.submit(n, 0)
        _drain(w, 4)
    finally:
        w.stop()
    assert [(r.payload, r.ok, r.value) for r in results] == [(0, True, 1), (1, True, 11), (2, True, 21),
                                                             (3, True, 31)]
    assert saw_next_start == [True, True, True]


def test_a_single_stage_worker_runs_its_jobs_one_after_another():
    # the same probe on a worker without a second stage: the next job cannot start while this
    # one runs, so the bounded wait runs out (kept short)
    started = {n: threading.Event() for n in range(2)}
    saw = []

    def work(n):
        started[n].set()
        if n == 0:
            saw.append(started[1].wait(0.2))
        return n

    results = []
    w = _worker(work, None, results)
    try:
        w.submit(0, 0)
        w.submit(1, 0)
        _drain(w, 2)
    finally:
        w.stop()
    assert saw == [False] and [r.value for r in results] == [0, 1]


def test_a_failure_in_either_stage_fails_that_job_only():
    def encode(n):
        if n == 1:
            raise ValueError("encoder refused")
        return n

    def sync(n):
        if n == 2:
            raise OSError(5, "disk error")
        return -n

    results = []
    w = _worker(encode, sync, results)
    try:
        for n in range(4):
            w.submit(n, 0)
        _drain(w, 4)
    finally:
        w.stop()
    assert [(r.payload, r.ok) for r in results] == [(0, True), (1, False), (2, False), (3, True)]
    assert results[1].error == "ValueError: encoder refused"
    assert results[2].error.startswith("OSError") and "disk error" in results[2].error
    assert results[3].value == -3 and w.failures == 2


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_second_stage_is_noticed_its_job_failed_and_the_thread_restarted():
    def sync(n):
        if n == 1:
            raise SystemExit  # kills the finish thread
        return n

    results = []
    w = _worker(lambda n: n, sync, results)
    try:
        w.submit(0, 0)
        w.submit(1, 0)
        _drain(w, 1)
        for _ in range(int(WAIT_S / 0.01)):
            if not w.alive:
                break
            threading.Event().wait(0.01)
        assert not w.alive
        note = w.check_alive()
        assert note is not None and "finish stage" in note and "job 2" in note
        assert w.alive and w.restarts == 1
        w.submit(2, 0)
        _drain(w, 2)
    finally:
        w.stop()
    assert [(r.payload, r.ok) for r in results] == [(0, True), (1, False), (2, True)]
    assert "died" in results[1].error


def test_a_ping_is_answered_only_when_both_stages_serve():
    release = threading.Event()
    results = []
    w = _worker(lambda n: n, lambda n: release.wait(WAIT_S) and n, results)
    try:
        assert w.ping_wait(1, WAIT_S)
        w.submit(7, 0)  # holds the second stage
        assert not w.ping_wait(2, 0.2)  # passes the first stage, waits behind the job
        release.set()
        _drain(w, 1)
        assert w.pongs() == [2] or w.ping_wait(3, WAIT_S)
    finally:
        w.stop()
    assert [r.value for r in results] == [7]


def test_on_the_simulated_clock_results_come_at_their_modelled_time():
    results = []
    w = _worker(lambda n: n, lambda n: n * n, results, sim_cost_s=0.5)
    try:
        w.submit(3, 0)
        w.submit(4, 0)
        assert w.deliver(int(0.49 * NS), lockstep=True) == []
        assert [r.value for r in w.deliver(int(0.5 * NS), lockstep=True)] == [9, 16]
    finally:
        w.stop()


def test_stop_finishes_the_jobs_in_both_stages():
    results = []
    w = _worker(lambda n: n + 1, lambda n: n * 2, results, queue_size=8)
    for n in range(6):
        w.submit(n, 0)
    w.stop()
    assert not w.alive
    assert [r.value for r in w.deliver(0, lockstep=False)] == [2, 4, 6, 8, 10, 12]


def test_jobs_that_raise_are_each_a_failed_result_but_logged_rate_limited(caplog):
    """A planner that cannot find a path raises every job: each is a failed result with its
    reason (the component reports it), the log says so on the 1st, 2nd, 4th, 8th... with the count."""

    def plan(n):
        raise ValueError(f"no path {n}")

    results = []
    w = _worker(plan, None, results, queue_size=20)
    try:
        with caplog.at_level("WARNING", logger="flight.worker"):
            for n in range(12):
                assert w.submit(n, 0)
            _drain(w, 12)
    finally:
        w.stop()
    assert [(r.payload, r.ok, r.error) for r in results] == [(n, False, f"ValueError: no path {n}") for n in range(12)]
    assert w.failures == 12
    lines = [r.getMessage() for r in caplog.records if "raised" in r.getMessage()]
    assert [line.rsplit("(", 1)[1] for line in lines] == [f"{n} jobs raised so far)" for n in (1, 2, 4, 8)]
