"""The real serial driver against the MCU emulator over a real pseudo-terminal."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hal import open_device
from hal.errors import (
    CommandRejectedError,
    DeviceClosedError,
    DeviceTimeoutError,
    DeviceUrlError,
    LinkDownError,
)
from hal.mcu import protocol as p
from hal.mcu.driver import McuSerial, find_usb_port, parse_usb_id
from sim_hw.mcu_emulator import PtyMcu
from sim_hw.plant import McuPlant, SimplePlant

pytestmark = pytest.mark.timeout(60)


def wait_for(pred: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``pred`` until true; fail naming ``what`` past the deadline."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(0.005)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []
        self.reports: list[p.SensorReport] = []

    def on_event(self, name: str, **fields: object) -> None:
        self.events.append((name, fields))

    def on_report(self, report: p.SensorReport) -> None:
        self.reports.append(report)

    def names(self) -> list[str]:
        return [n for n, _ in self.events]


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def mcu(rec: Recorder) -> Iterator[PtyMcu]:
    dev = open_device("mcu+pty://?stream_hz=50", on_event=rec.on_event, on_report=rec.on_report)
    assert isinstance(dev, PtyMcu)
    yield dev
    dev.close()


def test_handshake_reports_version_and_link_up(mcu: PtyMcu, rec: Recorder) -> None:
    assert mcu.link_up
    assert mcu.version is not None and mcu.version.firmware == "1.0.0"
    assert mcu.version.protocol_version == p.PROTOCOL_VERSION
    assert rec.names()[0] == "LinkUp"
    assert isinstance(mcu.emulator.plant, McuPlant)


def test_wheel_commands_are_acked_and_applied(mcu: PtyMcu) -> None:
    plant = mcu.emulator.plant
    assert isinstance(plant, SimplePlant)
    mcu.set_wheels(0.5, -0.3)
    assert plant.command == [0.5, -0.3]
    wait_for(lambda: abs(plant.speed[0] - 0.5) < 0.05, 5.0, "left wheel to reach speed")
    wait_for(lambda: mcu.read_drive().left_ticks > 500, 5.0, "encoder ticks in the reports")
    drive = mcu.read_drive()
    assert drive.left_ticks > 0 > drive.right_ticks
    mcu.stop()
    assert plant.command == [0.0, 0.0]
    mcu.reset_encoders()
    wait_for(lambda: abs(mcu.read_drive().left_ticks) < 200, 5.0, "encoders reset")
    assert mcu.counters.frames_tx >= 4 and mcu.counters.timeouts == 0


def test_readings_come_from_the_latest_report(mcu: PtyMcu) -> None:
    wait_for(lambda: mcu.latest_report is not None, 5.0, "first report")
    imu, power, thermal = mcu.read_imu(), mcu.read_power(), mcu.read_thermal()
    assert abs(imu.accel_mps2[2] - 9.81) < 0.5
    assert 10.0 < power.bus_v < 13.0 and 0.9 < power.soc <= 1.0
    assert thermal.temps_c == {"motor_left": 30.0, "motor_right": 30.0, "battery": 20.0,
                               "board": 35.0}
    assert thermal.time_s >= 0.0 and mcu.report_age_s < 5.0


def test_out_of_range_command_is_rejected(mcu: PtyMcu, rec: Recorder) -> None:
    with pytest.raises(CommandRejectedError, match="OUT_OF_RANGE"):
        mcu.set_wheels(3.0, 0.0)
    assert mcu.counters.nacks == 1
    assert "CommandRejected" in rec.names()
    with pytest.raises(ValueError):
        mcu.set_wheels(float("nan"), 0.0)


def test_sensor_stream_arrives_at_its_rate(mcu: PtyMcu, rec: Recorder) -> None:
    mcu.set_stream_rate(100)
    wait_for(lambda: len(rec.reports) > 5, 5.0, "stream to start")
    start_n, t0 = len(rec.reports), time.monotonic()
    window = 1.0
    wait_for(lambda: time.monotonic() - t0 >= window, 5.0, "the counting window")
    rate = (len(rec.reports) - start_n) / (time.monotonic() - t0)
    assert 70 <= rate <= 130, rate
    times = [r.mcu_time_ms for r in rec.reports]
    assert times == sorted(times)


def test_unacked_command_times_out_after_bounded_retries(mcu: PtyMcu, rec: Recorder) -> None:
    mcu.emulator.set_faults(drop=1.0)
    with pytest.raises(DeviceTimeoutError):
        mcu.set_wheels(0.1, 0.1)
    c = mcu.counters
    assert c.retries == mcu.retries and c.timeouts == 1
    assert rec.names().count("CommandRetry") == mcu.retries


def test_corrupted_bytes_never_yield_a_bad_frame(rec: Recorder) -> None:
    url = "mcu+pty://?stream_hz=200&corrupt=0.001&seed=7&retries=6"
    with open_device(url, on_event=rec.on_event, on_report=rec.on_report) as dev:
        assert isinstance(dev, PtyMcu)
        dev.set_wheels(0.2, 0.2)

        def enough() -> bool:
            c = dev.counters
            return len(rec.reports) >= 400 and c.crc_errors + c.decode_errors >= 3

        wait_for(enough, 20.0, "400 reports and some corrupted frames")
        sent = set(dev.emulator.sent_reports)
        for report in rec.reports:
            assert report.pack() in sent  # byte-identical to something the emulator sent
        times = [r.mcu_time_ms for r in rec.reports]
        assert times == sorted(times)
        assert dev.emulator.counters.corrupted_bytes > 0
        assert dev.counters.crc_errors + dev.counters.decode_errors > 0
        dev.set_wheels(0.0, 0.0)  # commands still get through (with retries if needed)


def test_port_vanishes_then_returns(mcu: PtyMcu, rec: Recorder) -> None:
    emu, plant = mcu.emulator, mcu.emulator.plant
    assert isinstance(plant, SimplePlant)
    mcu.set_wheels(0.4, 0.4)
    emu.vanish()
    assert not os.path.exists(emu.path)
    wait_for(lambda: "LinkDown" in rec.names(), 5.0, "LinkDown event")
    assert not mcu.link_up and mcu.counters.link_downs == 1
    with pytest.raises(LinkDownError):
        mcu.set_wheels(0.1, 0.1)
    # the emulator's watchdog stops the motors within its silence timeout
    wait_for(lambda: plant.command == [0.0, 0.0], 3.0, "watchdog stop")
    assert emu.faults & p.FaultFlags.WATCHDOG_STOP and emu.counters.watchdog_trips == 1
    emu.reappear()
    wait_for(lambda: mcu.link_up, 5.0, "reconnect")
    assert "Reconnected" in rec.names() and mcu.counters.reconnects == 1
    mcu.set_wheels(0.2, 0.2)
    assert plant.command == [0.2, 0.2]
    wait_for(lambda: not mcu.read_drive().fault_flags & p.FaultFlags.WATCHDOG_STOP, 5.0,
             "watchdog fault to clear")


def test_close_is_idempotent_prompt_and_final(rec: Recorder) -> None:
    dev = open_device("mcu+pty://?stream_hz=20", on_event=rec.on_event)
    thread = dev._thread  # type: ignore[attr-defined]
    dev.close()
    dev.close()
    assert not thread.is_alive()
    with pytest.raises(DeviceClosedError, match=r"read_power\(\)"):
        dev.read_power()  # type: ignore[attr-defined]
    with pytest.raises(DeviceClosedError, match=r"set_wheels\(\)"):
        dev.set_wheels(0.0, 0.0)  # type: ignore[attr-defined]


def test_silent_port_fails_the_handshake_in_time() -> None:
    master, slave = os.openpty()
    try:
        with pytest.raises(DeviceTimeoutError, match="VERSION"):
            McuSerial(os.ttyname(slave), timeout=0.3)
    finally:
        os.close(master)
        os.close(slave)


def test_pyserial_urls_pass_through() -> None:
    # loop:// echoes our HELLO back: a peer that never answers VERSION
    with pytest.raises(DeviceTimeoutError):
        open_device("mcu+loop://?timeout=0.3")


def test_usb_ids() -> None:
    assert parse_usb_id("2e8a:000a") == (0x2E8A, 0x000A, None)
    assert parse_usb_id("2E8A:000A:E661") == (0x2E8A, 0x000A, "E661")
    with pytest.raises(ValueError):
        parse_usb_id("2e8a")
    with pytest.raises(LinkDownError, match="no USB serial port"):
        find_usb_port(0xFFFE, 0xFFFE, "nope")
    with pytest.raises(DeviceUrlError, match="VID:PID"):
        open_device("mcu+serial://?usb=zz")
    with pytest.raises(LinkDownError):
        open_device("mcu+serial://?usb=fffe:fffe")
