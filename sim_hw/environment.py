"""Planetary bodies and the sun's path across a local sky.

A :class:`BodyPreset` holds what the rest of the world needs to know about the Moon or Mars:
gravity, solar irradiance, the length of a solar day, obliquity, dust, and the ground
temperatures the thermal model sees. :class:`Environment` places a vehicle at a latitude on
that body and answers where the sun is at a simulated time.

The sun model is the classic hour-angle model, good to a fraction of a degree for a vehicle's
power and lighting needs (it ignores orbital eccentricity, refraction, the equation of time and
the sun's angular size):

* the hour angle ``H`` grows uniformly through one solar day (synodic month on the Moon,
  a sol on Mars) and is zero at local noon;
* the declination ``delta = asin(sin(obliquity) * sin(Ls))`` follows the season angle ``Ls``
  (solar longitude), which advances once per year of the body around the sun;
* elevation and azimuth follow from spherical trigonometry at latitude ``phi``.

Simulated time ``t`` is in seconds; ``t = 0`` is local midnight at the season given, so local
noon of the first day is at half a solar day. The world may start anywhere in that day.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

EARTH_DAY_S = 86400.0
SIGMA_SB = 5.670374419e-8  # Stefan-Boltzmann constant, W m^-2 K^-4


@dataclass(frozen=True, slots=True)
class BodyPreset:
    """Physical constants of a planetary body as the simulated world uses them."""

    name: str
    gravity_mps2: float
    solar_irradiance_w_m2: float  # at the top of any atmosphere, mean distance
    day_length_s: float  # one solar day: noon to noon
    year_length_s: float  # one orbit around the sun, for the season angle
    obliquity_deg: float
    # Fraction of solar panel output left by dust at the start, and its loss per solar day.
    dust_factor: float
    dust_loss_per_day: float
    # Vertical optical depth of the atmosphere (Beer-Lambert on the direct beam); 0 on the Moon.
    atmosphere_tau: float
    # Surface: mean albedo, ground temperature at night and under an overhead sun, sky temperature.
    albedo: float
    ground_night_k: float
    ground_noon_k: float
    sky_k: float
    # Air temperature and convection on bodies with an atmosphere (h = 0 means vacuum).
    air_night_k: float = 0.0
    air_day_k: float = 0.0
    convection_w_m2k: float = 0.0
    # Terrain defaults: crater density coefficient and Golombek rock abundance k.
    crater_density: float = 0.02
    rock_abundance: float = 0.01

    @property
    def day_length_earth_days(self) -> float:
        return self.day_length_s / EARTH_DAY_S


MOON = BodyPreset(
    name="moon",
    gravity_mps2=1.62,
    solar_irradiance_w_m2=1361.0,
    day_length_s=29.530589 * EARTH_DAY_S,  # synodic month
    year_length_s=346.62 * EARTH_DAY_S,  # eclipse year: the sun's return to the Moon's node
    obliquity_deg=1.54,
    dust_factor=1.0,
    dust_loss_per_day=0.0,
    atmosphere_tau=0.0,
    albedo=0.12,
    ground_night_k=95.0,
    ground_noon_k=390.0,
    sky_k=3.0,
    crater_density=0.02,
    rock_abundance=0.01,
)

MARS = BodyPreset(
    name="mars",
    gravity_mps2=3.71,
    solar_irradiance_w_m2=590.0,
    day_length_s=88775.244,  # one sol
    year_length_s=668.6 * 88775.244,
    obliquity_deg=25.19,
    dust_factor=0.95,
    dust_loss_per_day=0.002,  # about 0.2 % a sol, as the MER arrays saw between cleanings
    atmosphere_tau=0.5,
    albedo=0.22,
    ground_night_k=190.0,
    ground_noon_k=290.0,
    sky_k=150.0,
    air_night_k=195.0,
    air_day_k=250.0,
    convection_w_m2k=0.8,
    crater_density=0.005,
    rock_abundance=0.05,
)

PRESETS: dict[str, BodyPreset] = {"moon": MOON, "mars": MARS}


def preset(name: str | BodyPreset) -> BodyPreset:
    """Look a body preset up by name ("moon", "mars"); a BodyPreset passes through."""
    if isinstance(name, BodyPreset):
        return name
    try:
        return PRESETS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown body preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


class Environment:
    """The sun over one place on a body, as a function of simulated time.

    ``latitude_deg`` is planetocentric (south negative), ``season_deg`` is the solar longitude
    Ls at ``t = 0`` (0 = northern spring equinox, 90 = northern summer solstice), and
    ``longitude_deg`` is kept for the record: times here are local solar times, so it only
    matters when several sites share one clock.
    """

    def __init__(
        self,
        body: str | BodyPreset = "moon",
        latitude_deg: float = 0.0,
        longitude_deg: float = 0.0,
        season_deg: float = 0.0,
    ) -> None:
        if not -90.0 <= latitude_deg <= 90.0:
            raise ValueError(f"latitude_deg must be within [-90, 90], got {latitude_deg}")
        self.body = preset(body)
        self.latitude_deg = float(latitude_deg)
        self.longitude_deg = float(longitude_deg)
        self.season_deg = float(season_deg)
        self._phi = math.radians(self.latitude_deg)
        self._ls0 = math.radians(self.season_deg)
        self._sin_obl = math.sin(math.radians(self.body.obliquity_deg))
        self._cache_t = math.nan
        self._cache_v = (0.0, 0.0, 0.0)

    def __repr__(self) -> str:
        return (
            f"Environment({self.body.name!r}, latitude_deg={self.latitude_deg}, "
            f"season_deg={self.season_deg})"
        )

    # ------------------------------------------------------------------ sun geometry

    def hour_angle_rad(self, t_s: float | np.ndarray) -> float | np.ndarray:
        """Hour angle in radians: 0 at local noon, growing westward, -pi at t = 0 (midnight)."""
        return 2.0 * np.pi * (np.asarray(t_s, dtype=float) / self.body.day_length_s) - np.pi

    def declination_rad(self, t_s: float | np.ndarray) -> float | np.ndarray:
        """Sun's declination: the season angle advances once per body year."""
        ls = np.radians(self.season_deg) + 2.0 * np.pi * np.asarray(t_s, dtype=float) / (
            self.body.year_length_s
        )
        return np.arcsin(np.sin(np.radians(self.body.obliquity_deg)) * np.sin(ls))

    def sun_tuple(self, t_s: float) -> tuple[float, float, float]:
        """The sun vector for one time in plain floats (the world asks for it every slow step)."""
        if t_s == self._cache_t:
            return self._cache_v
        b = self.body
        h = 2.0 * math.pi * (t_s / b.day_length_s) - math.pi
        ls = self._ls0 + 2.0 * math.pi * t_s / b.year_length_s
        d = math.asin(self._sin_obl * math.sin(ls))
        sp, cp = math.sin(self._phi), math.cos(self._phi)
        sd, cd = math.sin(d), math.cos(d)
        ch = math.cos(h)
        v = (-cd * math.sin(h), sd * cp - cd * ch * sp, sd * sp + cd * ch * cp)
        self._cache_t, self._cache_v = t_s, v
        return v

    def sun_vector(self, t_s: float | np.ndarray) -> np.ndarray:
        """Unit vector toward the sun in the local frame (x east, y north, z up); shape (..., 3)."""
        if isinstance(t_s, (int, float)):
            return np.array(self.sun_tuple(float(t_s)))
        h = self.hour_angle_rad(t_s)
        d = self.declination_rad(t_s)
        phi = self._phi
        east = -np.cos(d) * np.sin(h)
        north = np.sin(d) * np.cos(phi) - np.cos(d) * np.cos(h) * np.sin(phi)
        up = np.sin(d) * np.sin(phi) + np.cos(d) * np.cos(h) * np.cos(phi)
        return np.stack(np.broadcast_arrays(east, north, up), axis=-1)

    def sun_elevation_deg(self, t_s: float | np.ndarray) -> float | np.ndarray:
        """Elevation of the sun's centre above the horizon, degrees (negative at night)."""
        if isinstance(t_s, (int, float)):
            return math.degrees(math.asin(max(-1.0, min(1.0, self.sun_tuple(float(t_s))[2]))))
        v = self.sun_vector(t_s)
        out = np.degrees(np.arcsin(np.clip(v[..., 2], -1.0, 1.0)))
        return float(out) if np.ndim(out) == 0 else out

    def sun_azimuth_deg(self, t_s: float | np.ndarray) -> float | np.ndarray:
        """Azimuth of the sun, degrees clockwise from north in [0, 360)."""
        v = self.sun_vector(t_s)
        out = np.degrees(np.arctan2(v[..., 0], v[..., 1])) % 360.0
        return float(out) if np.ndim(out) == 0 else out

    def is_day(self, t_s: float) -> bool:
        return self.sun_elevation_deg(t_s) > 0.0

    def noon_elevation_deg(self, t_s: float = 0.0) -> float:
        """Elevation at the local noon nearest t: 90 - |latitude - declination|."""
        d = math.degrees(float(self.declination_rad(t_s)))
        return 90.0 - abs(self.latitude_deg - d)

    # ------------------------------------------------------------------ sunrise / sunset

    def _next_crossing(self, t_s: float, rising: bool, horizon_days: float) -> float | None:
        period = self.body.day_length_s
        n = 720
        step = period / n
        count = int(math.ceil(horizon_days * n)) + 1
        ts = t_s + step * np.arange(count + 1)
        el = np.asarray(self.sun_elevation_deg(ts))
        above = el > 0.0
        edges = np.flatnonzero(~above[:-1] & above[1:]) if rising else np.flatnonzero(
            above[:-1] & ~above[1:]
        )
        if edges.size == 0:
            return None
        lo, hi = float(ts[edges[0]]), float(ts[edges[0] + 1])
        for _ in range(60):  # bisection to well under a millisecond
            mid = 0.5 * (lo + hi)
            up = float(self.sun_elevation_deg(mid)) > 0.0
            if up == rising:
                hi = mid
            else:
                lo = mid
            if hi - lo < 1e-4:
                break
        return hi

    def next_sunrise(self, t_s: float = 0.0, horizon_days: float = 2.0) -> float | None:
        """First time after ``t_s`` when the sun's centre rises; None if it does not (polar)."""
        return self._next_crossing(t_s, rising=True, horizon_days=horizon_days)

    def next_sunset(self, t_s: float = 0.0, horizon_days: float = 2.0) -> float | None:
        """First time after ``t_s`` when the sun's centre sets; None if it does not (polar)."""
        return self._next_crossing(t_s, rising=False, horizon_days=horizon_days)

    # ------------------------------------------------------------------ light and heat

    def direct_irradiance_w_m2(self, t_s: float) -> float:
        """Direct-beam irradiance on a surface facing the sun, after the atmosphere (if any)."""
        sin_el = self.sun_tuple(float(t_s))[2]
        if sin_el <= 0.0:
            return 0.0
        s = self.body.solar_irradiance_w_m2
        if self.body.atmosphere_tau > 0.0:
            airmass = 1.0 / max(sin_el, 0.05)
            s *= math.exp(-self.body.atmosphere_tau * airmass)
        return s

    def ground_temp_k(self, t_s: float) -> float:
        """Surface temperature under the vehicle: night floor rising with the sun (~cos^1/4 law)."""
        b = self.body
        sin_el = max(0.0, self.sun_tuple(float(t_s))[2])
        return b.ground_night_k + (b.ground_noon_k - b.ground_night_k) * sin_el**0.25

    def air_temp_k(self, t_s: float) -> float:
        """Near-surface air temperature (bodies with an atmosphere); the sky value otherwise."""
        b = self.body
        if b.convection_w_m2k <= 0.0:
            return b.sky_k
        sin_el = max(0.0, self.sun_tuple(float(t_s))[2])
        return b.air_night_k + (b.air_day_k - b.air_night_k) * sin_el**0.5

    def dust_factor(self, t_s: float) -> float:
        """Fraction of clean-panel output left after dust has settled for ``t_s`` seconds."""
        days = max(0.0, t_s) / self.body.day_length_s
        return self.body.dust_factor * (1.0 - self.body.dust_loss_per_day) ** days
