"""Timing limits hold on emulated rigs too: a regression fails where it shows.

The emulated rig runs on the same loaded machine as everything else, so it is held to looser
limits than a board (:class:`hil.checks.TimingLimit`); these tests show that those limits still
bite: an emulator made slow fails them, and the limit applied is the one the report shows.
"""

from __future__ import annotations

import pytest

from hil import mcu
from hil.checks import CheckResult, Report, TimingLimit, at_least, at_most, within
from hil.rig import EmulatorRig
from hil.trace import WireTrace

pytestmark = pytest.mark.timeout(60)


def test_a_timing_limit_is_the_rigs_on_hardware_and_looser_on_an_emulator() -> None:
    limit = TimingLimit(50.0, 250.0)
    hard = at_most("ack latency p99", 120.0, limit, "ms")
    emu = at_most("ack latency p99", 120.0, limit, "ms", emulated_rig=True)
    assert not hard.ok and hard.timing and not hard.emulated and hard.limit == "<= 50"
    assert emu.ok and emu.timing and emu.emulated and emu.limit == "<= 250"
    assert "(timing, emulated-rig limit)" in emu.line() and "(timing)" in hard.line()
    assert not at_most("late", 300.0, limit, "ms", emulated_rig=True).ok
    assert not at_least("goodput", 0.4, TimingLimit(0.85, 0.5), "ratio", emulated_rig=True).ok
    assert within("rate", 120.0, 100.0, TimingLimit(0.15, 0.35), "Hz", True).ok
    assert not within("rate", 120.0, 100.0, TimingLimit(0.15, 0.35), "Hz", False).ok


def test_an_emulated_rig_check_fails_on_a_missed_timing_limit() -> None:
    report = Report("mcu", "/dev/pts/9", "emulated mcu rig", True, [115200])
    report.results = [CheckResult("ack latency", [at_most("ack latency p50", 400.0, TimingLimit(20, 50), "ms",
                                                          emulated_rig=True)])]
    assert not report.passed
    assert "FAIL ack latency" in report.text() and "FAILED: 0 of 1" in report.text()


def test_a_slow_mcu_fails_the_ack_latency_limit_on_the_emulator() -> None:
    """The emulator answering 120 ms late: the driver still works, the latency limit fails."""
    rig = EmulatorRig()
    try:
        with mcu.McuSession(rig, 115200, WireTrace()) as session:
            quick = mcu.ack_latency(session, n=20)
            rig.emulator.set_faults(delay_s=0.12)
            slow = mcu.ack_latency(session, n=20)
    finally:
        rig.close()
    by_name = {m.name: m for m in slow}
    assert by_name["timeouts in 20 commands"].ok  # answered, just late
    p50 = by_name["ack latency p50"]
    assert p50.emulated and not p50.ok and p50.value >= 100.0, p50.line()
    assert by_name["ack latency p99"].limit == "<= 250"  # the emulated rig's, shown as applied
    assert {m.name: m for m in quick}["ack latency p50"].value < p50.value
