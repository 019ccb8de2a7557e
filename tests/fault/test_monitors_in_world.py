"""Each built-in monitor triggers its response, in the simulated world on the simulated clock."""

from __future__ import annotations

import pytest

from flight.clock import SimClock
from flight.component import Component
from flight.config import ConfigError
from hal import open_device
from sim_hw.terrain import Terrain
from sim_hw.world import World
from tests.fault.conftest import RigFactory

pytestmark = pytest.mark.timeout(60)


def plane_world(slope_deg: float = 0.0, start_x: float = 14.0, **kw: object) -> tuple[World, Terrain]:
    t = Terrain.plane(size_m=40, slope_deg=slope_deg, uphill_azimuth_deg=90.0, seed=1)
    return World("moon", 1, terrain=t, start_x=start_x, start_y=20.0, **kw), t  # type: ignore[arg-type]


def test_battery_drained_by_driving_at_dusk_goes_safe_then_hibernates(make_rig: RigFactory) -> None:
    from sim_hw.scenario import Scenario, get_scenario

    env = get_scenario("moon-farside").build(seed=3).env
    sunset = env.next_sunset(0.0, horizon_days=1.0)
    assert sunset is not None
    sc = Scenario.from_dict({"scenario": "moon-farside", "start_time_s": sunset - 1800.0,
                             "battery": {"capacity_wh": 10.0, "initial_soc": 0.305}})
    world = sc.build(seed=3)
    rig = make_rig(world, fault={"monitors": {"dusk": {"persistence": 5}}})
    rig.cmd("DRIVE_SET_WHEELS", left=0.15, right=0.15)
    rig.run(5)
    assert not rig.world.vehicle.quiescent
    for _ in range(60):
        rig.run(5)
        if rig.mode == "SAFE":
            break
    assert rig.mode == "SAFE"
    assert any("battery_low" in t for t in rig.sink.texts("ModeChanged"))
    rig.run(3)
    assert rig.world.vehicle.quiescent and rig.tlm("drive.left_cmd_mps") == 0.0
    # the sun is down: the idle vehicle hibernates, sheds its avionics and stops its groups
    rig.run(20)
    assert rig.mode == "HIBERNATE" and not rig.world.avionics_on
    assert rig.vehicle.executive.group("control").suspended


def test_steep_crater_wall_trips_tilt_and_stops(make_rig: RigFactory) -> None:
    t = Terrain.plane(size_m=40, seed=1)
    t._stamp_crater(27, 20, 10.0, 3.0, 1.0)  # a 10 m crater, 3 m deep: walls steeper than 45 deg
    world = World("moon", 1, terrain=t, start_x=16.0, start_y=20.0)
    rig = make_rig(world)
    rig.cmd("DRIVE_SET_WHEELS", left=0.15, right=0.15)
    for _ in range(60):
        rig.run(1)
        if rig.mode == "SAFE":
            break
    assert rig.mode == "SAFE"
    trip = rig.sink.texts("MonitorTripped")
    assert trip and "tilt" in trip[0]
    rig.run(3)
    assert rig.world.vehicle.quiescent
    assert rig.tlm("fault.mon.tilt") == 3 and rig.tlm("fault.mon.tilt.trips") == 1


def test_stalled_wheel_stops_the_drive_and_stays_in_drive(make_rig: RigFactory) -> None:
    world, terrain = plane_world()
    terrain.add_rock(17.0, 20.0, 0.4, 0.5)
    rig = make_rig(world)
    rig.cmd("DRIVE_SET_WHEELS", left=0.15, right=0.15)
    rig.run(30)
    assert "WheelStall" in [e.name for e in rig.sink.events()]
    taken = rig.sink.texts("ResponseTaken")
    assert taken and taken[0].startswith("stop_drive: wheel_stall")
    assert rig.mode == "DRIVE"  # a stop, not a mode change
    assert rig.world.vehicle.quiescent


def test_motor_overcurrent_stops_the_drive(make_rig: RigFactory) -> None:
    world, _ = plane_world(slope_deg=20.0)
    rig = make_rig(world, fault={"monitors": {"motor_overcurrent": {"condition": "outside -0.6 0.6"}}})
    rig.cmd("DRIVE_SET_WHEELS", left=0.15, right=0.15)
    rig.run(10)
    assert any(t.startswith("stop_drive: motor_overcurrent") for t in rig.sink.texts("ResponseTaken"))
    assert rig.world.vehicle.quiescent


def test_temperature_out_of_limits_goes_safe(make_rig: RigFactory) -> None:
    world, _ = plane_world(initial_temp_c=70.0)
    rig = make_rig(world)
    rig.run(5)
    assert rig.mode == "SAFE" and "temperature" in rig.sink.texts("ModeChanged")[-1]


def test_bus_undervoltage_goes_safe(make_rig: RigFactory) -> None:
    world, _ = plane_world()
    rig = make_rig(world, fault={"monitors": {"bus_undervoltage": {"condition": "< 20"}}})
    rig.run(5)
    assert rig.mode == "SAFE" and "bus_undervoltage" in rig.sink.texts("ModeChanged")[-1]


class Slow(Component):
    """Consumes 30 ms of simulated time in a 20 ms cycle once armed: the control group slips."""

    def setup(self) -> None:
        self.armed = False

    def step(self) -> None:
        if self.armed:
            clock = self.fw.clock
            assert isinstance(clock, SimClock)
            clock.consume(0.03)


class Bomb(Component):
    def step(self) -> None:
        raise RuntimeError("boom")


def test_sustained_cycle_slips_go_safe(make_rig: RigFactory) -> None:
    slow = Slow("slow")
    world, _ = plane_world()
    rig = make_rig(world, extra=[slow])
    rig.run(3)
    assert rig.mode == "DRIVE"
    slow.armed = True
    rig.run(10)
    assert rig.mode == "SAFE" and "cycle_slips" in rig.sink.texts("ModeChanged")[-1]


def test_faulted_member_goes_safe_and_critical_member_stops_the_watchdog(make_rig: RigFactory) -> None:
    world, _ = plane_world()
    rig = make_rig(world, extra=[Bomb("bomb")], fault={"critical_members": ["bomb"]})
    rig.run(15)
    assert rig.mode == "SAFE" and "member_faulted" in rig.sink.texts("ModeChanged")[-1]
    wd = rig.vehicle.devices["wdog"]
    assert rig.tlm("fault.wdog_kicks") == 0 and rig.tlm("fault.wdog_withheld") >= 10
    assert wd.would_bite and wd.bites()  # the hardware would have reset the vehicle
    assert "critical member bomb isolated" in rig.sink.texts("WatchdogWithheld")[0]


def test_watchdog_is_kicked_while_healthy(make_rig: RigFactory) -> None:
    world, _ = plane_world()
    rig = make_rig(world)
    rig.run(30)
    wd = rig.vehicle.devices["wdog"]
    assert rig.tlm("fault.wdog_kicks") >= 29 and wd.bites() == [] and not wd.would_bite


def test_silenced_uplink_goes_safe(tmp_path) -> None:
    from importlib import resources
    from pathlib import Path

    from flight.clock import NS
    from flight.config import load
    from magpie.mission import LockstepMission
    from sim_hw.relay import Schedule

    cfg = load(Path(str(resources.files("magpie.configs").joinpath("sim_mission.toml"))))
    world = World.for_mission(seed=1)
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t: world.step_to(t / NS))
    comps = tuple(c if c.type != "fault" else
                  type(c)(**{**c.__dict__, "options": {**c.options, "monitors": {
                      "comm_loss": {"condition": "> 120"}}}}) for c in cfg.components)
    cfg = type(cfg)(**{**cfg.__dict__, "components": comps})
    m = LockstepMission(cfg, tmp_path, preset="ideal", seed=1, device_context={"world": world}, clock=clock,
                        relay_overrides={"windows": Schedule(intervals=((0, 30),))},
                        plan=[(5.0, "CMD_NOOP", {})])
    try:
        m.advance(m.start_s + 100)
        tlm = m.vehicle.fw.tlm
        assert tlm.get("fault.mode_name") == "DRIVE" and tlm.get("comm.uplink_silence_s") > 60
        m.advance(m.start_s + 200)
        assert tlm.get("fault.mode_name") == "SAFE"
        assert tlm.get("fault.mon.comm_loss") == 3
    finally:
        m.close()


def test_recorder_nearly_full_leaves_drive(make_rig: RigFactory, tmp_path) -> None:
    from flight.components.comm import attach
    from magpie.mission import ensure_key

    key = ensure_key(tmp_path / "keys" / "uplink.key")
    world, _ = plane_world()
    rig = make_rig(world, devices={"radio": "radio+loop://fault-test?side=vehicle"},
                   components={"comm": {"type": "comm", "devices": {"radio": "radio"}, "key_file": str(key),
                                        "recorder_capacity_bytes": 20000}}, nav_members=["comm"])
    attach(rig.vehicle)  # nobody listens on the far side of the radio: nothing is ever acknowledged
    rig.run(60)
    assert rig.mode == "STANDBY" and "recorder_full" in rig.sink.texts("ModeChanged")[-1]
    rig.vehicle.shutdown()


def test_mcu_link_down_goes_safe(make_rig: RigFactory) -> None:
    import threading
    import time

    world, _ = plane_world()
    mcu = open_device("mcu+pty://?stream_hz=50")
    try:
        rig = make_rig(world, devices={}, components={})
        assert rig.mode == "DRIVE"
        from flight.config import parse
        from flight.vehicle import Vehicle

        doc = dict(rig.doc)
        doc["devices"] = {**doc["devices"], "link": "sim://mcu"}
        doc["components"] = {**doc["components"], "link": {"type": "link", "devices": {"device": "link"}}}
        doc["rate_groups"] = [*doc["rate_groups"][:2],
                              {**doc["rate_groups"][2], "members": ["link", *doc["rate_groups"][2]["members"]]}]
        doc["vehicle"] = {**doc["vehicle"], "state_dir": doc["vehicle"]["state_dir"] + "-link"}
        v = Vehicle(parse(doc), rig.clock, devices={"link": mcu}, device_context={"world": world})
        rig.vehicle = v
        rig.run(3)
        assert v.fw.tlm.get("link.up") is True
        mcu.emulator.vanish()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10.0
        while mcu.link_up:  # type: ignore[attr-defined]
            assert time.monotonic() < deadline, "the driver never noticed the port vanish"
            threading.Event().wait(0.01)
        rig.run(8)
        assert v.fw.tlm.get("link.up") is False
        assert v.fw.tlm.get("fault.mode_name") == "SAFE"
        assert v.fw.tlm.get("fault.mon.mcu_link_down") == 3
    finally:
        mcu.close()


def test_bad_config_is_a_config_error_naming_the_key(make_rig: RigFactory) -> None:
    with pytest.raises(ConfigError, match=r"components\.fault: monitors\.tilt\.condition"):
        make_rig(fault={"monitors": {"tilt": {"condition": "steep"}}})
    with pytest.raises(ConfigError, match=r"components\.fault: boot_mode"):
        make_rig(fault={"boot_mode": "NAPPING"})
