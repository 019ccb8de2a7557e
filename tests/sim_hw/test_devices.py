"""sim:// devices through hal.open_device, the MCU plant, and scenarios."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hal
from hal.contracts import Camera, DriveTrain, Imu, PowerMonitor, ThermalSensors, Watchdog
from hal.errors import DeviceClosedError, DeviceUrlError, HalError
from sim_hw.scenario import SCENARIOS, Scenario, ScenarioError, get_scenario
from sim_hw.terrain import Terrain
from sim_hw.world import World

pytestmark = pytest.mark.timeout(60)

PLANT_KEYS = {
    "time_s", "left_ticks", "right_ticks", "left_current_a", "right_current_a", "accel", "gyro",
    "imu_temp_c", "bus_v", "current_a", "soc", "solar_w", "temps_c", "stalled",
}


@pytest.fixture
def world() -> World:
    return World("moon", 5, terrain=Terrain.plane(size_m=30.0, resolution_m=0.05), start_hours_after_sunrise=48.0)


def test_mcu_is_all_four_contracts_and_drives_the_vehicle(world: World) -> None:
    mcu = hal.open_device("sim://mcu", world=world)
    assert isinstance(mcu, DriveTrain) and isinstance(mcu, Imu)
    assert isinstance(mcu, PowerMonitor) and isinstance(mcu, ThermalSensors)
    assert mcu.wheel_radius_m == world.vehicle.config.wheel_radius_m
    mcu.set_wheels(0.1, 0.1)
    world.step_to(10.0)
    d = mcu.read_drive()
    assert d.time_s == pytest.approx(10.0)
    travelled = mcu.ticks_to_m(d.left_ticks)
    truth = world.truth()["distance_m"]
    assert truth == pytest.approx(travelled * (1 - world.vehicle.slip_model(0.0)), rel=0.05)
    assert d.left_current_a > 0.0
    imu = mcu.read_imu()
    assert imu.accel_mps2[2] == pytest.approx(1.62, abs=0.05)
    p = mcu.read_power()
    assert 12.0 < p.bus_v < 17.0 and 0.0 < p.soc <= 1.0 and p.solar_w > 0.0
    assert set(mcu.read_thermal().temps_c) >= {"board", "battery", "chassis", "motor_left", "motor_right"}
    mcu.reset_encoders()
    assert mcu.read_drive().left_ticks == 0


def test_closing_the_mcu_stops_the_motors_and_refuses_calls(world: World) -> None:
    with hal.open_device("sim://mcu", world=world) as mcu:
        mcu.set_wheels(0.1, -0.1)
    assert mcu.closed
    mcu.close()  # idempotent
    assert world.vehicle.state.cmd_left == 0.0
    with pytest.raises(DeviceClosedError, match="read_drive"):
        mcu.read_drive()


def test_camera_frames_and_stereo_pairs(world: World) -> None:
    url = "sim://camera?name=hazcam&width=320&height=240&fov_deg=90&stereo=1&baseline=0.15&tilt=-40"
    cam = hal.open_device(url, world=world)
    assert isinstance(cam, Camera) and cam.has_stereo and cam.name == "hazcam"
    f = cam.capture()
    assert f.image.shape == (240, 320) and f.image.dtype == np.uint8
    assert f.model is not None and f.model.fx == pytest.approx(160.0)
    assert f.meta["pose"]["position"][2] == pytest.approx(1.2, abs=0.01)
    assert f.image[120:].mean() > 10  # looking down at lit ground
    pair = cam.capture_stereo()
    assert pair.baseline_m == pytest.approx(0.15)
    assert pair.left.image.shape == pair.right.image.shape == (240, 320)
    assert not np.array_equal(pair.left.image, pair.right.image)
    assert pair.left.time_s == pair.right.time_s == world.time_s
    mono = hal.open_device("sim://camera?name=pancam&width=64&height=48&stereo=0", world=world)
    assert not mono.has_stereo
    with pytest.raises(NotImplementedError):
        mono.capture_stereo()


def test_watchdog_bites_on_world_time(world: World) -> None:
    wd = hal.open_device("sim://watchdog?timeout=5", world=world)
    assert isinstance(wd, Watchdog) and wd.timeout_s == 5.0
    for t in (1.0, 4.0, 8.0):
        world.step_to(t)
        wd.kick()
    assert not wd.would_bite and wd.bites() == []
    world.step_to(20.0)
    assert wd.would_bite
    assert wd.bites() == [pytest.approx(13.0)]


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sim://mcu?speed=2", "sim://mcu"),
        ("sim://toaster", "sim://camera"),
        ("sim://camera?width=0", "sim://camera"),
        ("sim://camera?zoom=2", "sim://camera"),
        ("sim://camera?stereo=maybe", "sim://camera"),
        ("sim://watchdog?timeout=-1", "sim://watchdog"),
    ],
)
def test_bad_urls_repeat_the_form(world: World, url: str, match: str) -> None:
    with pytest.raises(DeviceUrlError, match=match):
        hal.open_device(url, world=world)


def test_sim_devices_need_a_world() -> None:
    with pytest.raises(HalError, match="world"):
        hal.open_device("sim://mcu")


def test_mcu_plant_steps_the_world_and_reports_everything(world: World) -> None:
    plant = world.mcu_plant()
    for name in ("set_wheels", "stop", "step", "sensors", "reset_encoders"):
        assert callable(getattr(plant, name))
        assert callable(getattr(world.vehicle, name))
    plant.set_wheels(0.1, 0.1)
    for _ in range(100):
        plant.step(0.013)  # fractions of a physics step add up
    assert world.time_s == pytest.approx(1.3, abs=0.02)
    s = plant.sensors()
    assert set(s) == PLANT_KEYS
    assert isinstance(s["stalled"], bool) and len(s["accel"]) == 3 and len(s["gyro"]) == 3
    assert s["left_ticks"] > 0 and s["left_current_a"] > 0
    plant.stop()
    plant.step(1.0)
    plant.reset_encoders()
    assert plant.sensors()["left_ticks"] == 0
    assert set(world.vehicle.sensors()) == PLANT_KEYS


def test_world_step_to_is_idempotent_and_deterministic() -> None:
    def run() -> tuple:
        w = World("moon", 9, terrain=Terrain.plane(size_m=20.0, slope_deg=8.0), cameras={})
        w.vehicle.set_wheels(0.12, 0.1)
        w.step_to(7.5)
        before = w.truth()
        w.step_to(3.0)  # in the past: nothing happens
        assert w.truth() == before
        w.vehicle.stop()
        w.step_to(600.0)
        t = w.truth()
        return t["x"], t["y"], t["yaw"], t["soc"], t["temps_c"]["chassis"], w.read_imu().accel_mps2

    assert run() == run()


def test_named_scenarios_build_and_validate() -> None:
    assert set(SCENARIOS) >= {"moon-farside", "mars-jezero"}
    far = get_scenario("moon-farside")
    assert far.latitude_deg == pytest.approx(-45.44, abs=0.01)
    w = Scenario.from_dict({"scenario": "moon-farside", "terrain_size_m": 30.0}).build()
    assert w.body.name == "moon" and w.env.latitude_deg == pytest.approx(-45.4446)
    el = w.truth()["sun_elevation_deg"]
    assert 0.0 < el < 20.0  # one Earth day after sunrise at 45 S
    mars = World.from_config({"scenario": "mars-jezero", "terrain_size_m": 30.0}, seed=4)
    assert mars.body.gravity_mps2 == pytest.approx(3.71) and mars.seed == 4
    assert len(mars.terrain.rocks) > len(w.terrain.rocks)
    start = mars.truth()
    assert math.hypot(start["x"] - 15.0, start["y"] - 15.0) < 1e-9


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"colour": "red"}, "colour"),
        ({"latitude_deg": 91.0}, "latitude_deg"),
        ({"preset": "venus"}, "preset"),
        ({"seed": -1}, "seed"),
        ({"terrain_size_m": "big"}, "terrain_size_m"),
        ({"vehicle": {"mass_kg": -3.0}}, "vehicle"),
        ({"vehicle": {"wings": 2}}, "vehicle.wings"),
        ({"cameras": {"navcam": {"fov_deg": 400.0}}}, "cameras.navcam"),
        ({"start_x": 500.0}, "start_x"),
        ({"scenario": "venus-lowlands"}, "scenario"),
    ],
)
def test_scenario_errors_name_the_key(config: dict, key: str) -> None:
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        Scenario.from_dict(config)


def test_world_plant_behind_the_mcu_emulator_on_a_pty(world: World) -> None:
    """The real serial driver, the emulator on a pty, and the world as its plant (real time)."""
    import time

    world.cameras.clear()
    with hal.open_device("mcu+pty://?stream_hz=50", plant=world.mcu_plant()) as mcu:
        mcu.set_wheels(0.1, 0.1)
        deadline = time.monotonic() + 10.0
        while mcu.read_drive().left_ticks < 500 and time.monotonic() < deadline:
            time.sleep(0.02)  # the emulator runs on the wall clock by design
        d = mcu.read_drive()
        assert d.left_ticks >= 500 and d.left_current_a > 0.0
        assert set(mcu.read_thermal().temps_c) >= {"board", "battery", "motor_left", "motor_right"}
        assert 0.0 < mcu.read_power().soc <= 1.0
    assert world.time_s > 0.5 and world.truth()["distance_m"] > 0.05


def test_drive_and_imu_components_in_lockstep_with_the_world(tmp_path) -> None:
    """The rover's drive and IMU members on the sim MCU: what they publish and put, and what
    the IMU's sampled channels report, on a slope, then with the device gone."""
    from flight.clock import NS, SimClock
    from flight.config import parse
    from flight.vehicle import Vehicle
    from tests.recorder import Recorder

    w = World("moon", 3, terrain=Terrain.plane(size_m=30.0, slope_deg=6.0), cameras={})
    clock = SimClock(start_s=w.time_s)
    clock.on_advance(lambda t_ns: w.step_to(t_ns / NS))
    cfg = parse({
        "vehicle": {"state_dir": str(tmp_path / "state")},
        "devices": {"mcu": "sim://mcu"},
        "components": {"drive": {"type": "drive", "devices": {"drive": "mcu"}},
                       "imu": {"type": "imu", "devices": {"imu": "mcu"}}},
        "rate_groups": [{"name": "control", "hz": 50, "members": ["drive", "imu"]},
                        {"name": "hk", "hz": 1, "members": ["cmd", "seq", "sys", "health", "tlm"]}],
    })
    v = Vehicle(cfg, clock, device_context={"world": w})
    rec = Recorder()
    v.add_sink(rec)
    store, tlm = v.fw.store, v.fw.tlm
    assert tlm.get("imu.roll_deg") is None and tlm.get("drive.left_ticks") is None  # nothing read yet
    v.dispatcher.submit("DRIVE_SET_WHEELS", {"left": 0.1, "right": 0.1})
    v.run(until_s=clock.now() + 4.0)
    imu = v.by_name["imu"]
    gx, gy, gz = imu._g
    assert tlm.get("imu.roll_deg") == pytest.approx(math.degrees(math.atan2(gy, gz)), abs=1e-4)
    assert tlm.get("imu.pitch_deg") == pytest.approx(math.degrees(math.atan2(-gx, math.hypot(gy, gz))), abs=1e-4)
    assert tlm.get("imu.tilt_deg") == pytest.approx(store["imu.tilt_deg"], abs=1e-4)
    assert 3.0 < store["imu.tilt_deg"] < 9.0  # the 6 degree slope, seen through the filter
    assert store["imu.reading"].time_s == pytest.approx(w.time_s, abs=0.021)
    t, left, right = store["drive.ticks"]
    assert left > 0 and (left, right) == (tlm.get("drive.left_ticks"), tlm.get("drive.right_ticks"))
    assert store["drive.device_ok"] is True and store["drive.stalled"] is False
    assert tlm.get("drive.odometer_m") == pytest.approx(v.devices["mcu"].ticks_to_m(left), rel=0.05)
    v.devices["mcu"].close()
    v.run(until_s=clock.now() + 0.5)
    v.flush()
    assert store["drive.device_ok"] is False
    assert rec.events("DriveDeviceError") and rec.events("ImuReadError")
    assert tlm.get("drive.device_errors") == 25
    v.shutdown()
