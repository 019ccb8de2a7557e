"""The sun over the Moon and Mars: elevation, day length, sunrise and sunset."""

from __future__ import annotations

import numpy as np
import pytest

from sim_hw.environment import EARTH_DAY_S, MARS, MOON, Environment, preset

pytestmark = pytest.mark.timeout(60)

CHANGE4_LAT = -45.4446


def test_presets() -> None:
    assert MOON.gravity_mps2 == pytest.approx(1.62)
    assert MARS.gravity_mps2 == pytest.approx(3.71)
    assert MOON.solar_irradiance_w_m2 == pytest.approx(1361.0)
    assert 580.0 < MARS.solar_irradiance_w_m2 < 600.0
    assert MOON.day_length_earth_days == pytest.approx(29.53, abs=0.01)
    assert MARS.day_length_s == pytest.approx(88775.0, abs=1.0)
    assert preset("Mars") is MARS
    with pytest.raises(ValueError, match="venus"):
        preset("venus")


@pytest.mark.parametrize("lat", [0.0, CHANGE4_LAT, 30.0])
def test_moon_midnight_below_noon_peak(lat: float) -> None:
    env = Environment("moon", latitude_deg=lat)
    day = MOON.day_length_s
    assert env.sun_elevation_deg(0.0) < 0.0  # local midnight
    ts = np.linspace(0.0, day, 20001)
    el = env.sun_elevation_deg(ts)
    peak = ts[int(np.argmax(el))]
    assert abs(peak - day / 2) < day / 500  # noon is half a solar day after midnight
    assert el.max() == pytest.approx(90.0 - abs(lat), abs=1.6)  # obliquity 1.54 deg
    assert el.max() == pytest.approx(env.noon_elevation_deg(day / 2), abs=0.05)


def test_lunar_day_and_night_lengths() -> None:
    env = Environment("moon", latitude_deg=CHANGE4_LAT)
    rise = env.next_sunrise(0.0)
    assert rise is not None
    sset = env.next_sunset(rise)
    assert sset is not None
    rise2 = env.next_sunrise(sset)
    assert rise2 is not None
    # the declination drifts a little over a month, which moves sunrise at 45 deg by ~0.1 day
    assert (rise2 - rise) / EARTH_DAY_S == pytest.approx(29.53, abs=0.1)
    eq = Environment("moon", latitude_deg=0.0)
    r0 = eq.next_sunrise(0.0)
    assert (eq.next_sunrise(r0 + 1.0) - r0) / EARTH_DAY_S == pytest.approx(29.53, abs=0.01)
    assert (sset - rise) / EARTH_DAY_S == pytest.approx(14.77, abs=0.3)
    assert env.is_day(rise + 3600.0) and not env.is_day(rise - 3600.0)
    # morning sun in the east, evening sun in the west
    assert 45.0 < env.sun_azimuth_deg(rise + 86400.0) < 135.0
    assert 225.0 < env.sun_azimuth_deg(sset - 86400.0) < 315.0


def test_south_pole_sun_grazes_the_horizon() -> None:
    env = Environment("moon", latitude_deg=-89.9)
    el = env.sun_elevation_deg(np.linspace(0.0, 2 * MOON.day_length_s, 2000))
    assert np.all(np.abs(el) < 1.7)


def test_polar_night_has_no_sunrise() -> None:
    env = Environment("mars", latitude_deg=80.0, season_deg=270.0)  # northern winter
    assert env.next_sunrise(0.0) is None
    assert env.sun_elevation_deg(MARS.day_length_s / 2) < 0.0


def test_mars_sol_and_season() -> None:
    env = Environment("mars", latitude_deg=18.4447, season_deg=90.0)  # northern summer solstice
    rise = env.next_sunrise(0.0)
    rise2 = env.next_sunrise(rise + 1.0)
    assert rise2 - rise == pytest.approx(MARS.day_length_s, rel=1e-3)
    noon = MARS.day_length_s / 2
    assert env.sun_elevation_deg(noon) == pytest.approx(90.0 - abs(18.4447 - 25.19), abs=0.2)
    winter = Environment("mars", latitude_deg=18.4447, season_deg=270.0)
    assert winter.sun_elevation_deg(noon) == pytest.approx(90.0 - (18.4447 + 25.19), abs=0.2)
    # summer days are longer than winter days in the north
    w_rise = winter.next_sunrise(0.0)
    assert (env.next_sunset(rise) - rise) > (winter.next_sunset(w_rise) - w_rise)


def test_mars_atmosphere_and_dust_reduce_light() -> None:
    env = Environment("mars", latitude_deg=0.0)
    noon = MARS.day_length_s / 2
    assert env.direct_irradiance_w_m2(noon) < MARS.solar_irradiance_w_m2 * 0.7
    assert env.direct_irradiance_w_m2(0.0) == 0.0
    assert env.dust_factor(100 * MARS.day_length_s) < env.dust_factor(0.0)
    moon = Environment("moon")
    assert moon.direct_irradiance_w_m2(MOON.day_length_s / 2) == pytest.approx(1361.0)


def test_ground_is_hot_at_noon_and_cold_at_night() -> None:
    env = Environment("moon")
    assert env.ground_temp_k(MOON.day_length_s / 2) == pytest.approx(390.0, abs=1.0)
    assert env.ground_temp_k(0.0) == pytest.approx(95.0)
