"""The vehicle's components on the real MCU driver, talking to the emulator over a real pty."""

import time

import pytest

from flight.clock import RealClock
from flight.config import parse
from flight.vehicle import Vehicle
from tests.flight.conftest import Recorder

pytestmark = pytest.mark.timeout(60)


def rover_config(state_dir, url="mcu+pty://?stream_hz=50"):
    return parse({
        "vehicle": {"state_dir": str(state_dir)},
        "devices": {"mcu": url},
        "components": {
            "drive": {"type": "drive", "devices": {"drive": "mcu"}},
            "imu": {"type": "imu", "devices": {"imu": "mcu"}},
            "power": {"type": "power", "devices": {"power": "mcu"}},
            "thermal": {"type": "thermal", "devices": {"thermal": "mcu"},
                        "sensors": ["battery", "motor_left"]},
            "mculink": {"type": "link", "devices": {"device": "mcu"}},
        },
        "rate_groups": [
            {"name": "control", "hz": 50, "members": ["drive", "imu", "mculink"]},
            {"name": "nav", "hz": 10, "members": ["cmd", "seq"]},
            {"name": "hk", "hz": 2, "members": ["power", "thermal", "sys", "health", "tlm"]},
        ],
    })


def test_rover_components_over_the_serial_driver(tmp_path):
    v = Vehicle(rover_config(tmp_path), RealClock())
    rec = Recorder()
    v.add_sink(rec)
    try:
        v.dispatcher.submit("DRIVE_SET_WHEELS", {"left": 0.1, "right": 0.1})
        v.dispatcher.submit("DRIVE_SET_WHEELS", {"left": 1.5, "right": 0.1})  # above the limit
        v.run(until_s=v.clock.now() + 1.5, flush_every_s=0.5)
        plant = v.devices["mcu"].emulator.plant
        assert plant.command == pytest.approx((0.1, 0.1), abs=1e-3)
        assert v.fw.tlm.get("drive.left_ticks") > 0
        assert v.fw.tlm.get("drive.odometer_m") > 0.01
        assert 0.0 < v.fw.tlm.get("power.soc") <= 1.0
        assert v.fw.tlm.get("imu.tilt_deg") < 10
        assert v.fw.tlm.get("thermal.battery_c") is not None
        assert v.fw.tlm.get("mculink.up") is True
        assert v.fw.tlm.get("mculink.frames_rx") > 30
        v.flush()
        assert rec.stages("DRIVE_SET_WHEELS") == ["ACCEPTED", "COMPLETED", "ACCEPTED", "FAILED"]
        assert "limit" in rec.responses("DRIVE_SET_WHEELS")[-1].reason
        assert rec.events("LinkUp")
    finally:
        v.shutdown()


def test_link_loss_is_reported_and_recovered(tmp_path):
    v = Vehicle(rover_config(tmp_path), RealClock())
    rec = Recorder()
    v.add_sink(rec)
    try:
        v.run(until_s=v.clock.now() + 0.5, flush_every_s=0.25)
        emu = v.devices["mcu"].emulator
        emu.vanish()
        v.run(until_s=v.clock.now() + 0.8, flush_every_s=0.2)
        assert v.fw.tlm.get("mculink.up") is False
        emu.reappear()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not v.fw.tlm.get("mculink.up"):
            v.run(until_s=v.clock.now() + 0.2, flush_every_s=0.2)
        v.flush()
        assert v.fw.tlm.get("mculink.up") is True
        assert rec.events("LinkDown") and rec.events("Reconnected")
        assert v.fw.tlm.get("mculink.link_downs") >= 1
    finally:
        v.shutdown()
