"""The MCU suite: the real driver against the firmware core, the emulator, or a board."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hil import mcu
from hil.checks import Measurement
from hil.rig import FirmwareRig, McuRig
from hil.trace import WireTrace

pytestmark = [pytest.mark.hil_mcu, pytest.mark.timeout(60)]

Expect = Callable[[list[Measurement]], None]


def test_handshake_and_version(hil_mcu: mcu.McuSession, hil_expect: Expect) -> None:
    assert hil_mcu.driver.link_up
    assert hil_mcu.event_names()[0] == "LinkUp"
    hil_expect(mcu.handshake(hil_mcu))


def test_wheel_command_ack_latency(hil_mcu: mcu.McuSession, hil_expect: Expect) -> None:
    hil_expect(mcu.ack_latency(hil_mcu, n=100))


def test_sensor_stream_rate(hil_mcu: mcu.McuSession, hil_expect: Expect) -> None:
    hil_expect(mcu.stream_rate(hil_mcu, hz=100, window_s=0.5))


def test_motors_stop_when_the_link_goes_silent(hil_mcu_rig: McuRig, hil_baud: int,
                                               hil_trace: WireTrace, hil_expect: Expect) -> None:
    hil_expect(mcu.watchdog(hil_mcu_rig, hil_baud, hil_trace, timeout_ms=100))
    if isinstance(hil_mcu_rig, FirmwareRig):
        assert hil_mcu_rig.host.firmware.counters["watchdog_trips"] >= 1
        assert hil_mcu_rig.host.errors == 0


def test_driver_reconnects_after_the_port_vanishes(hil_mcu: mcu.McuSession, hil_mcu_rig: McuRig,
                                                   hil_expect: Expect) -> None:
    if not hil_mcu_rig.can_unplug:
        pytest.skip(f"{hil_mcu_rig.description}: a USB unplug needs a person; run "
                    "`magpie hil check --target mcu --replug` and unplug when asked")
    hil_expect(mcu.reconnect(hil_mcu))
    assert hil_mcu.driver.counters.reconnects == 1
