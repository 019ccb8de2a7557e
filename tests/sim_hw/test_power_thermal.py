"""Energy and heat: the battery drains at night and charges in sun as the energy balance says;
the vehicle bakes in sunlight and freezes through the lunar night unless heated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim_hw.environment import MOON
from sim_hw.power import Battery, BatteryConfig, PowerSystem, SolarConfig, SolarPanel
from sim_hw.terrain import Terrain
from sim_hw.thermal import HeaterConfig, ThermalConfig
from sim_hw.world import World

pytestmark = pytest.mark.timeout(60)

HOUR = 3600.0
NO_HEATERS = ThermalConfig(heaters=(HeaterConfig(enabled=False),))


def flat_world(start_time_s: float, **kw) -> World:
    ground = Terrain.plane(size_m=10.0, resolution_m=0.1)
    kw.setdefault("slow_dt_s", 60.0)
    return World("moon", 1, terrain=ground, start_time_s=start_time_s, cameras={}, **kw)


def assert_books_balance(world: World, wh_start: float) -> None:
    p = world.power
    change = p.battery.energy_wh - wh_start
    assert change == pytest.approx(p.solar_wh - p.load_wh - p.loss_wh + p.unmet_wh, abs=1e-6)


def test_battery_drains_at_night_by_the_load_times_the_hours() -> None:
    w = flat_world(0.0, thermal=NO_HEATERS, battery=BatteryConfig(capacity_wh=200.0, initial_soc=0.9))
    start = w.power.battery.energy_wh
    w.step_to(12 * HOUR)
    assert w.truth()["sun_elevation_deg"] < 0.0
    drained = start - w.power.battery.energy_wh
    expected = w.power.config.avionics_w * 12.0  # 8 W for 12 h
    assert w.power.solar_wh == 0.0
    assert w.power.load_wh == pytest.approx(expected, rel=1e-9)
    # I^2 R losses are the only difference, and they are small
    assert drained == pytest.approx(expected + w.power.loss_wh, rel=1e-9)
    assert 0.0 < w.power.loss_wh < 0.01 * expected
    assert_books_balance(w, start)
    r = w.read_power()
    assert r.current_a > 0.0 and r.solar_w == 0.0
    assert r.bus_v < w.power.battery.ocv()


def test_battery_charges_in_sun_as_the_solar_integral_says() -> None:
    noon = MOON.day_length_s / 2
    battery = BatteryConfig(capacity_wh=2000.0, initial_soc=0.3)
    w = flat_world(noon - 2 * HOUR, battery=battery, thermal=NO_HEATERS)
    start = w.power.battery.energy_wh
    w.step_to(4 * HOUR)
    # independent integral of the panel's output over the same four hours (flat panel: cos = sun z)
    ts = np.linspace(noon - 2 * HOUR, noon + 2 * HOUR, 14401)
    sun_z = np.clip(w.env.sun_vector(ts)[:, 2], 0.0, None)
    cfg = SolarConfig()
    watts = MOON.solar_irradiance_w_m2 * cfg.area_m2 * cfg.efficiency * sun_z
    solar_wh = float(np.sum(0.5 * (watts[1:] + watts[:-1]) * np.diff(ts))) / HOUR
    assert w.power.solar_wh == pytest.approx(solar_wh, rel=1e-3)
    expected_gain = solar_wh - w.power.config.avionics_w * 4.0
    gained = w.power.battery.energy_wh - start
    assert gained == pytest.approx(expected_gain - w.power.loss_wh, rel=1e-3)
    assert 0.0 < w.power.loss_wh < 0.1 * gained  # ~15 A through 80 mOhm
    assert_books_balance(w, start)
    r = w.read_power()
    assert r.current_a < 0.0  # charging
    assert r.soc > 0.3


def test_full_battery_shunts_the_surplus() -> None:
    noon = MOON.day_length_s / 2
    w = flat_world(noon, battery=BatteryConfig(capacity_wh=100.0, initial_soc=0.99), thermal=NO_HEATERS)
    start = w.power.battery.energy_wh
    w.step_to(HOUR)
    assert w.power.battery.soc == pytest.approx(1.0)
    assert w.power.shunted_wh > 100.0
    change = w.power.battery.energy_wh - start
    assert change == pytest.approx(w.power.solar_wh - w.power.load_wh - w.power.loss_wh, abs=1e-6)


def test_tilted_panel_and_dust_lower_the_output() -> None:
    env = flat_world(MOON.day_length_s / 2).env
    panel = SolarPanel()
    noon = MOON.day_length_s / 2
    flat = panel.output_w(env, noon, np.eye(3))
    c, s = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
    tilted = panel.output_w(env, noon, np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]]))
    assert tilted == pytest.approx(flat * c, rel=0.01)
    mars = World("mars", 1, terrain=Terrain.plane(size_m=10.0), start_time_s=88775.0 / 2, cameras={})
    assert 0.0 < mars.truth()["solar_w"] < 0.5 * flat


def test_brownout_and_recovery() -> None:
    system = PowerSystem(Battery(BatteryConfig(capacity_wh=1.0, initial_soc=0.5)), SolarPanel())
    system.step(3600.0, load_w=10.0, solar_w=0.0)
    assert system.brownout and system.battery.energy_wh == 0.0 and system.unmet_wh > 9.0
    system.step(3600.0, load_w=0.0, solar_w=5.0)
    assert not system.brownout and system.battery.soc > 0.9


def test_unheated_vehicle_freezes_through_the_lunar_night() -> None:
    w = flat_world(0.0, thermal=NO_HEATERS)
    w.avionics_on = False  # hibernating
    w.step_to(3 * 24 * HOUR)
    temps = w.read_thermal().temps_c
    assert temps["chassis"] < -150.0
    assert temps["board"] < -100.0
    assert temps["motor_left"] < -150.0 and temps["motor_right"] < -150.0


def test_heater_holds_the_electronics_through_the_night() -> None:
    w = flat_world(0.0, battery=BatteryConfig(capacity_wh=3000.0, initial_soc=1.0))
    lowest = math.inf
    for hour in range(1, 37):
        w.step_to(hour * HOUR)
        lowest = min(lowest, w.read_thermal().temps_c["board"])
    assert lowest > -15.0
    assert w.read_thermal().temps_c["chassis"] < -120.0
    assert w.thermal.heater_wh > 50.0
    # the heater's energy is part of the load the battery paid for
    assert w.power.load_wh == pytest.approx(w.power.config.avionics_w * 36 + w.thermal.heater_wh, rel=1e-6)


def test_sunlight_warms_a_cold_vehicle() -> None:
    w = flat_world(0.0, initial_temp_c=-150.0, thermal=NO_HEATERS)
    rise = w.env.next_sunrise(0.0)
    w2 = flat_world(rise + 2 * HOUR, initial_temp_c=-150.0, thermal=NO_HEATERS)
    w2.step_to(4 * 24 * HOUR)
    temps = w2.read_thermal().temps_c
    assert temps["chassis"] > 0.0
    assert temps["board"] > -20.0
    assert w2.truth()["sun_elevation_deg"] > 40.0
