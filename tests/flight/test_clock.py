import time

import pytest

from flight.clock import NS, RealClock, SimClock

pytestmark = pytest.mark.timeout(10)


def test_sim_clock_moves_only_when_stepped_and_tells_listeners():
    clock = SimClock(start_s=100.0)
    seen = []
    clock.on_advance(seen.append)
    assert clock.now() == 100.0
    clock.sleep_until(101 * NS)
    clock.advance(0.5)
    clock.advance_to(50 * NS)  # never backwards
    assert clock.now_ns() == 101_500_000_000
    assert seen == [101 * NS, 101_500_000_000]
    assert clock.simulated


def test_sim_clock_consume_models_execution_time():
    clock = SimClock()
    t0 = clock.cpu_ns()
    clock.consume(0.003)
    assert clock.cpu_ns() - t0 == 3_000_000


def test_real_clock_sleeps_to_absolute_deadline_without_drift():
    clock = RealClock(start_s=1000.0)
    start = clock.now_ns()
    assert abs(start / NS - 1000.0) < 0.5
    deadline = start
    for _ in range(5):
        deadline += 10_000_000  # 10 ms periods to absolute deadlines
        clock.sleep_until(deadline)
        assert clock.now_ns() >= deadline
    # deadlines are absolute: one already behind us (a loaded machine overslept) costs no sleep
    # and does not push the next deadline back; a 5 s margin keeps this true on any load
    t0 = time.monotonic()
    clock.sleep_until(deadline - 5 * NS)
    assert time.monotonic() - t0 < 5.0
    assert clock.now_ns() >= deadline


def test_real_clock_interrupt_cuts_a_sleep_short():
    clock = RealClock()
    clock.interrupt()
    t0 = time.monotonic()
    clock.sleep_until(clock.now_ns() + 5 * NS)
    assert time.monotonic() - t0 < 1.0
