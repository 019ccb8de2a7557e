"""Scenarios: a small, validated description of a world to build.

A scenario names the body, the seed, the terrain's size and roughness, the site's latitude and
the time of day to start at, the vehicle's start pose and any overrides of the vehicle, battery,
panel, IMU and cameras. It comes from a dictionary (a TOML table, a test's literal) and is
checked once, with errors that name the offending key, before any world is built.

Named scenarios:

* ``moon-farside``: the Chang'e-4 / Yutu-2 site in Von Karman crater (45.44 S, 177.60 E), one
  Earth day after local sunrise, lunar gravity and lighting;
* ``mars-jezero``: the Perseverance site in Jezero crater (18.44 N, 77.45 E), three hours after
  sunrise, a rockier Martian surface and a dusty atmosphere.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from sim_hw.environment import PRESETS
from sim_hw.power import BatteryConfig, PowerConfig, SolarConfig
from sim_hw.sensors import ImuConfig
from sim_hw.terrain import TerrainConfig
from sim_hw.thermal import HeaterConfig, ThermalConfig
from sim_hw.vehicle import VehicleConfig

if TYPE_CHECKING:
    from sim_hw.world import World

log = logging.getLogger(__name__)


class ScenarioError(ValueError):
    """A scenario key is unknown, of the wrong type or out of range; the message names it."""


_NUMBER = (int, float)


@dataclass(frozen=True)
class Scenario:
    """Everything needed to build a :class:`~sim_hw.world.World` (see the module docstring)."""

    name: str = "custom"
    preset: str = "moon"
    seed: int = 0
    terrain_size_m: float = 100.0
    terrain_resolution_m: float = 0.1
    relief_rms_m: float = 0.25
    crater_density: float | None = None  # None: the body preset's
    rock_abundance: float | None = None  # Golombek k; None: the body preset's
    clear_radius_m: float = 2.0  # rock-free disc around the start
    latitude_deg: float = 0.0
    longitude_deg: float = 0.0
    season_deg: float = 0.0
    start_hours_after_sunrise: float | None = 3.0
    start_time_s: float | None = None  # local solar time; overrides start_hours_after_sunrise
    start_x: float | None = None  # None: the map centre
    start_y: float | None = None
    start_yaw_deg: float = 0.0
    physics_dt_s: float = 0.02
    slow_dt_s: float = 10.0
    shadows: bool = True
    heaters_enabled: bool = True
    initial_temp_c: float | None = None
    vehicle: dict = field(default_factory=dict)
    battery: dict = field(default_factory=dict)
    solar: dict = field(default_factory=dict)
    power: dict = field(default_factory=dict)
    imu: dict = field(default_factory=dict)
    cameras: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ validation

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        """Build and validate from a dictionary; unknown keys and bad values raise ScenarioError."""
        if not isinstance(data, dict):
            raise ScenarioError(f"scenario must be a table/dict, got {type(data).__name__}")
        base: dict[str, Any] = {}
        if "scenario" in data:  # start from a named scenario and override
            base = dataclasses.asdict(get_scenario(str(data["scenario"])))
        known = {f.name for f in fields(cls)}
        for key in data:
            if key != "scenario" and key not in known:
                raise ScenarioError(f"{key}: unknown scenario key (known: {', '.join(sorted(known))})")
        merged = {**base, **{k: v for k, v in data.items() if k != "scenario"}}
        sc = cls(**merged)
        sc.validate()
        return sc

    def validate(self) -> None:
        """Check every key once; raise ScenarioError naming the first bad one."""
        for f in fields(self):
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if value is None:
                if default is None and f.name not in ("name",):
                    continue
                raise ScenarioError(f"{f.name}: must not be empty")
            if f.name in ("name", "preset") and not isinstance(value, str):
                raise ScenarioError(f"{f.name}: must be a string, got {value!r}")
            elif f.name in ("shadows", "heaters_enabled") and not isinstance(value, bool):
                raise ScenarioError(f"{f.name}: must be true or false, got {value!r}")
            elif f.name == "seed" and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ScenarioError(f"seed: must be a non-negative integer, got {value!r}")
            elif f.name in ("vehicle", "battery", "solar", "power", "imu", "cameras"):
                if not isinstance(value, dict):
                    raise ScenarioError(f"{f.name}: must be a table/dict, got {value!r}")
            elif isinstance(default, float) or f.type in ("float", "float | None"):
                if not isinstance(value, _NUMBER) or isinstance(value, bool):
                    raise ScenarioError(f"{f.name}: must be a number, got {value!r}")
        if self.preset.lower() not in PRESETS:
            raise ScenarioError(f"preset: unknown body {self.preset!r} (known: {', '.join(sorted(PRESETS))})")
        positive = ("terrain_size_m", "terrain_resolution_m", "physics_dt_s", "slow_dt_s")
        for key in positive:
            if getattr(self, key) <= 0:
                raise ScenarioError(f"{key}: must be positive, got {getattr(self, key)}")
        if self.terrain_resolution_m > self.terrain_size_m / 4:
            raise ScenarioError("terrain_resolution_m: too coarse for terrain_size_m (need at least 4 cells)")
        if self.slow_dt_s < self.physics_dt_s:
            raise ScenarioError("slow_dt_s: must be at least physics_dt_s")
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise ScenarioError(f"latitude_deg: must be within [-90, 90], got {self.latitude_deg}")
        for key in ("relief_rms_m", "clear_radius_m"):
            if getattr(self, key) < 0:
                raise ScenarioError(f"{key}: must not be negative")
        for key in ("crater_density", "rock_abundance"):
            v = getattr(self, key)
            if v is not None and v < 0:
                raise ScenarioError(f"{key}: must not be negative")
        if self.rock_abundance is not None and self.rock_abundance > 0.5:
            raise ScenarioError("rock_abundance: Golombek k above 0.5 is not a planetary surface")
        for key in ("start_x", "start_y"):
            v = getattr(self, key)
            if v is not None and not 0.0 <= v <= self.terrain_size_m:
                raise ScenarioError(f"{key}: {v} is off the {self.terrain_size_m} m map")
        _check_table("vehicle", self.vehicle, VehicleConfig)
        _check_table("battery", self.battery, BatteryConfig)
        _check_table("solar", self.solar, SolarConfig)
        _check_table("power", self.power, PowerConfig)
        _check_table("imu", self.imu, ImuConfig)
        from sim_hw.world import CameraSpec

        for name, spec in self.cameras.items():
            if not isinstance(spec, dict):
                raise ScenarioError(f"cameras.{name}: must be a table/dict")
            _check_table(f"cameras.{name}", {**spec, "name": name}, CameraSpec)

    # ------------------------------------------------------------------ building

    def terrain_config(self) -> TerrainConfig:
        body = PRESETS[self.preset.lower()]
        centre = self.terrain_size_m / 2
        return TerrainConfig(
            size_m=self.terrain_size_m,
            resolution_m=self.terrain_resolution_m,
            relief_rms_m=self.relief_rms_m,
            crater_density=body.crater_density if self.crater_density is None else self.crater_density,
            rock_abundance=body.rock_abundance if self.rock_abundance is None else self.rock_abundance,
            albedo=body.albedo,
            clear_radius_m=self.clear_radius_m,
            clear_center=(centre if self.start_x is None else self.start_x,
                          centre if self.start_y is None else self.start_y),
        )

    def build(self, seed: int | None = None, **kw: Any) -> World:
        """A fresh world for this scenario (``seed`` overrides the scenario's); ``kw`` goes to
        :class:`~sim_hw.world.World` over the scenario's own arguments (a shared ``terrain``,
        another start pose, ``kind="lander"`` and ``lander=``, ``name=``)."""
        from sim_hw.world import CameraSpec, World

        cameras = None
        if self.cameras:
            cameras = {name: CameraSpec(**{**spec, "name": name}) for name, spec in self.cameras.items()}
        thermal = ThermalConfig(heaters=(HeaterConfig(enabled=self.heaters_enabled),))
        start_time = self.start_time_s
        hours = None if start_time is not None else self.start_hours_after_sunrise
        args: dict[str, Any] = dict(
            terrain_config=self.terrain_config(),
            latitude_deg=self.latitude_deg,
            longitude_deg=self.longitude_deg,
            season_deg=self.season_deg,
            start_time_s=start_time,
            start_hours_after_sunrise=hours,
            start_x=self.start_x,
            start_y=self.start_y,
            start_yaw_deg=self.start_yaw_deg,
            vehicle=VehicleConfig(**self.vehicle),
            imu=ImuConfig(**self.imu),
            battery=BatteryConfig(**self.battery),
            solar=SolarConfig(**self.solar),
            power=PowerConfig(**self.power),
            thermal=thermal,
            initial_temp_c=self.initial_temp_c,
            cameras=cameras,
            physics_dt_s=self.physics_dt_s,
            slow_dt_s=self.slow_dt_s,
            shadows=self.shadows,
        )
        args.update(kw)
        if args.get("terrain") is not None:
            args.pop("terrain_config")
        world = World(self.preset, self.seed if seed is None else seed, **args)
        log.info("built scenario %s (seed %d)", self.name, world.seed)
        return world


def _check_table(prefix: str, table: dict[str, Any], cls: type) -> None:
    """Unknown keys and values the config class refuses become errors naming prefix.key."""
    known = {f.name for f in fields(cls)}
    for key in table:
        if key not in known:
            raise ScenarioError(f"{prefix}.{key}: unknown key (known: {', '.join(sorted(known))})")
    try:
        cls(**table)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{prefix}: {exc}") from exc


SCENARIOS: dict[str, Scenario] = {
    "moon-farside": Scenario(
        name="moon-farside",
        preset="moon",
        seed=2019,
        latitude_deg=-45.4446,
        longitude_deg=177.5991,
        start_hours_after_sunrise=24.0,
        rock_abundance=0.01,
    ),
    "mars-jezero": Scenario(
        name="mars-jezero",
        preset="mars",
        seed=2021,
        latitude_deg=18.4447,
        longitude_deg=77.4508,
        season_deg=5.0,  # Ls at landing, northern spring
        start_hours_after_sunrise=3.0,
        rock_abundance=0.06,
    ),
}


def get_scenario(name: str) -> Scenario:
    """A named scenario; unknown names raise ScenarioError listing the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(f"scenario: unknown name {name!r} (known: {', '.join(sorted(SCENARIOS))})") from None
