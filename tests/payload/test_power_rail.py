"""A payload's rail on the simulated power board: a real load on the bus while the host has it on."""

from __future__ import annotations

import pytest

from hal import open_device
from hal.errors import DeviceUrlError
from sim_hw.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World.for_mission(seed=2)


def test_the_rail_loads_the_bus_while_on(world):
    mcu = open_device("sim://mcu?loads=payload.spec:12.5", world=world)
    base = mcu.read_power().current_a
    mcu.switch_load("payload.spec", True)
    on = mcu.read_power().current_a
    assert on - base == pytest.approx(12.5 / mcu.read_power().bus_v, rel=0.05)
    mcu.switch_load("payload.spec", False)
    assert mcu.read_power().current_a == pytest.approx(base)
    wh = world.power.load_wh
    mcu.switch_load("payload.spec", True)
    world.step(120.0)
    mcu.switch_load("payload.spec", False)
    assert world.power.load_wh - wh > 12.5 * 110 / 3600  # the rail's energy is in the world's books


def test_unknown_rails_and_bad_loads_are_refused(world):
    mcu = open_device("sim://mcu?loads=payload.a:1", world=world)
    with pytest.raises(Exception, match="no load 'payload.b'"):
        mcu.switch_load("payload.b", True)
    with pytest.raises(DeviceUrlError, match="loads"):
        open_device("sim://mcu?loads=payload.a:lots", world=world)


def test_the_host_switches_the_payload_rail_on_the_simulated_board(tmp_path):
    from flight.clock import NS, SimClock
    from flight.config import parse
    from flight.payload.host import PayloadHost
    from flight.vehicle import Vehicle
    from tests.payload.conftest import BAD

    world = World.for_mission(seed=4)
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t: world.step_to(t / NS))
    host = PayloadHost("payhost", kinds=BAD, payload={"good": {"kind": "Good", "power_w": 30.0}})
    host.devices["power"] = open_device("sim://mcu?loads=payload.good:30", world=world)
    doc = {"vehicle": {"state_dir": str(tmp_path)},
           "rate_groups": [{"name": "g", "hz": 10, "members": ["payhost", "cmd"]},
                           {"name": "hk", "hz": 1, "members": ["sys", "tlm"]}]}
    v = Vehicle(parse(doc), clock, extra_components=[host])
    try:
        v.run(until_s=clock.now() + 1.0)
        assert world.switched_on == {"payload.good"}
        v.fw.cmd.submit("PAY_OFF", {"payload": "good"})
        v.run(until_s=clock.now() + 1.0)
        assert world.switched_on == set()
    finally:
        v.shutdown()
