"""Scenarios as data: one TOML file names the body, the site, the vehicles, the relay and the plans.

Format (every key is checked once; an error is one line naming the file and the key)::

    [scenario]
    name = "change4-farside"
    description = "..."             # one line, shown by `magpie sim --scenario list`
    body = "moon"                   # moon | mars: gravity, day length, sun and terrain style
    site = "Von Karman crater"      # a label for people
    fast = true                     # fly in fast mode by default (idle spans skipped)
    seed = 2019
    # any key of the world description (sim_hw.scenario.Scenario): latitude_deg, longitude_deg,
    # season_deg, start_hours_after_sunrise, terrain_size_m, rock_abundance, relief_rms_m, ...

    [relay]
    preset = "moon-farside"         # the base geometry (sim_hw.relay_presets); the keys below override it
    light_time_s = 1.28             # one-way Earth light time, or
    date = "2020-10-13"             # Mars: the light time for that date (circular-orbit ephemeris)
    hop_delay_s = 0.27              # default hop from a vehicle to the relay
    rate_bps = { down = 256000, up = 64000 }  # the transponder, shared by every vehicle
    queue_limit_bytes = 2000000     # the transponder queue, shared
    store_limit_bytes = 4000000     # what the relay may hold for a leg that is down
    loss = 0.001
    ber = 1e-7
    windows = { period_s = 21600, up_s = 20400, phase_s = 0 }  # default hop visibility
    earth_windows = { ... }         # relay-to-Earth visibility (default: always)

    [[vehicle]]
    name = "yutu-2"
    scid = 67                       # replaces the vehicle config's spacecraft_id; unique
    kind = "rover"                  # rover | lander
    config = "change4_rover.toml"   # beside the scenario file, else a built-in vehicle config
    start = { x = 36.0, y = 30.0, yaw_deg = 180.0 }
    plan = "change4_rover.seq"      # a sequence sent up (SEQ_RUN) from the ground at plan_at_s
    plan_at_s = 5.0
    sequences = ["scoop_only.seq"]  # more sequences stored on board (a plan's contingencies)
    hop_delay_s = 0.27              # this vehicle's hop (default: the relay's)
    windows = { ... }               # this vehicle's visibility (default: the relay's)
    lander = { tilt_pitch_deg = 1.5 }  # landers: body and landing tilt (sim_hw.lander.LanderConfig)
    sampling = { drill = { cutout_c = 120 }, container = { seal_s = 20 } }
                                    # sample-return landers: drill, arm and container (sim_hw.sampling)
    battery = { capacity_wh = 1000 }   # overrides of the world's battery / solar panel for this vehicle
    solar = { area_m2 = 2.0 }

Built-in scenarios live in ``mission/scenarios/NAME.toml``, each with a header comment saying
what it flies; :func:`load` takes a name or a path.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tomllib
from dataclasses import dataclass, field
from datetime import date as Date
from importlib import resources
from pathlib import Path
from typing import Any

from flight.config import ConfigError, VehicleConfig
from flight.config import load as load_config
from sim_hw.lander import LanderConfig
from sim_hw.power import BatteryConfig, SolarConfig
from sim_hw.relay import RelayParams, Schedule
from sim_hw.relay_presets import PRESETS as RELAY_PRESETS
from sim_hw.sampling import ArmConfig, ContainerConfig, DrillConfig, SamplingConfig
from sim_hw.scenario import Scenario as WorldScenario
from sim_hw.scenario import ScenarioError as WorldScenarioError
from sim_hw.site import SiteVehicle

log = logging.getLogger(__name__)

KINDS = ("rover", "lander")
_SCENARIO_KEYS = {"name", "description", "body", "site", "seed", "fast"}
_RELAY_KEYS = {"preset", "light_time_s", "date", "hop_delay_s", "rate_bps", "queue_limit_bytes",
               "store_limit_bytes", "loss", "ber", "windows", "earth_windows"}
_VEHICLE_KEYS = {"name", "scid", "kind", "config", "start", "plan", "plan_at_s", "hop_delay_s", "windows",
                 "lander", "battery", "solar", "sampling", "sequences"}
AU_LIGHT_S = 499.004784  # light time over one astronomical unit


class ScenarioError(ValueError):
    """A scenario cannot be flown; the message is one line naming the file and the key."""


@dataclass(frozen=True)
class VehiclePlan:
    """One vehicle of a scenario: its identity, body, flight configuration, pose, hop and plan."""

    name: str
    scid: int
    kind: str
    config: VehicleConfig
    config_path: Path
    x: float
    y: float
    yaw_deg: float = 0.0
    plan: Path | None = None
    plan_at_s: float = 5.0
    sequences: tuple[Path, ...] = ()  # stored on board beside the plan (its contingencies)
    hop_delay_s: float | None = None
    windows: Schedule | None = None
    lander: LanderConfig | None = None
    battery: dict[str, Any] = field(default_factory=dict)
    solar: dict[str, Any] = field(default_factory=dict)
    sampling: SamplingConfig | None = None

    def site_vehicle(self) -> SiteVehicle:
        return SiteVehicle(self.name, self.kind, self.x, self.y, self.yaw_deg, self.lander, self.battery, self.solar,
                           self.sampling)


@dataclass(frozen=True)
class MissionScenario:
    """A whole scenario, checked: the world, the relay and the vehicles."""

    name: str
    description: str
    body: str
    site: str
    world: WorldScenario
    relay: RelayParams
    vehicles: tuple[VehiclePlan, ...]
    source: str = "<scenario>"
    fast: bool = False  # flown in fast mode unless asked otherwise

    def vehicle(self, key: str | int) -> VehiclePlan:
        for v in self.vehicles:
            if v.name == key or v.scid == key:
                return v
        raise KeyError(f"no vehicle {key!r} in {self.name}; vehicles: {self.roster()}")

    def roster(self) -> str:
        return ", ".join(f"{v.name} (scid {v.scid}, {v.kind})" for v in self.vehicles)


def scenario_dir() -> Path:
    return Path(str(resources.files("mission").joinpath("scenarios")))


def builtin_names() -> list[str]:
    return sorted(p.stem for p in scenario_dir().glob("*.toml"))


def describe_builtins() -> list[str]:
    """``name: description`` for each built-in scenario."""
    out = []
    for name in builtin_names():
        try:
            doc = tomllib.loads((scenario_dir() / f"{name}.toml").read_text(encoding="utf-8"))
            out.append(f"{name}: {doc.get('scenario', {}).get('description', '')}")
        except (OSError, tomllib.TOMLDecodeError) as exc:
            out.append(f"{name}: unreadable ({exc})")
    return out


def _vehicle_search_path(base: Path) -> list[Path]:
    return [base, scenario_dir() / "vehicles", Path(str(resources.files("magpie").joinpath("configs")))]


def resolve(name_or_path: str | Path) -> Path:
    """A built-in scenario's file, or the path given; ScenarioError listing the built-ins."""
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".toml" or "/" in text:
        if not path.is_file():
            raise ScenarioError(f"scenario {text}: no such file")
        return path
    builtin = scenario_dir() / f"{text}.toml"
    if not builtin.is_file():
        raise ScenarioError(f"unknown scenario {text!r} (built-in: {', '.join(builtin_names())}; or give a .toml file)")
    return builtin


def mars_light_time_s(day: Date) -> float:
    """One-way Earth-Mars light time on ``day``: circular coplanar orbits from J2000 mean longitudes.

    Good to about a minute; enough to set a link's delay from the date of a scenario."""
    days = (day - Date(2000, 1, 1)).days - 0.5
    le = math.radians(100.464 + 0.9856474 * days)
    lm = math.radians(355.453 + 0.5240208 * days)
    a_e, a_m = 1.000, 1.5237
    d = math.sqrt(a_e * a_e + a_m * a_m - 2 * a_e * a_m * math.cos(lm - le))
    return d * AU_LIGHT_S


def _table(doc: dict[str, Any], key: str, where: str, required: bool = False) -> dict[str, Any]:
    value = doc.get(key, None)
    if value is None:
        if required:
            raise ScenarioError(f"{where}{key}: required")
        return {}
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}{key}: expected a table")
    return value


def _unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise ScenarioError(f"{where}{key}: unknown key (known: {', '.join(sorted(known))})")


def _number(table: dict[str, Any], key: str, where: str, default: float | None = None,
            minimum: float | None = None) -> float | None:
    if key not in table:
        return default
    v = table[key]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise ScenarioError(f"{where}{key}: expected a number, got {v!r}")
    if minimum is not None and v < minimum:
        raise ScenarioError(f"{where}{key}: must be at least {minimum:g}, got {v!r}")
    return float(v)


def _schedule(spec: Any, where: str) -> Schedule:
    try:
        sched = Schedule.from_spec(spec)
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{where}: a window is {{period_s, up_s, phase_s}} or a list of [start, end] "
                            f"pairs ({exc})") from None
    if sched.period_s < 0 or sched.up_s < 0 or (sched.period_s > 0 and sched.up_s <= 0):
        raise ScenarioError(f"{where}: period_s and up_s must be positive")
    return sched


def _relay(doc: dict[str, Any], where: str) -> RelayParams:
    _unknown(doc, _RELAY_KEYS, where)
    preset = doc.get("preset", "moon-farside")
    if preset not in RELAY_PRESETS:
        known = ", ".join(sorted(RELAY_PRESETS))
        raise ScenarioError(f"{where}preset: unknown relay preset {preset!r} (known: {known})")
    over: dict[str, Any] = {}
    if "date" in doc and "light_time_s" in doc:
        raise ScenarioError(f"{where}date: give date or light_time_s, not both")
    if "date" in doc:
        raw = doc["date"]
        try:
            day = raw if isinstance(raw, Date) else Date.fromisoformat(str(raw))
        except ValueError:
            raise ScenarioError(f"{where}date: {raw!r} is not a date like 2021-05-22") from None
        over["light_time_s"] = mars_light_time_s(day)
    for key in ("light_time_s", "hop_delay_s", "loss", "ber"):
        v = _number(doc, key, where, minimum=0.0)
        if v is not None:
            over[key] = v
    for key in ("loss", "ber"):
        if over.get(key, 0.0) > 1.0:
            raise ScenarioError(f"{where}{key}: a probability, within [0, 1]")
    for key in ("queue_limit_bytes", "store_limit_bytes"):
        v = _number(doc, key, where, minimum=0.0)
        if v is not None:
            over[key] = int(v)
    if "rate_bps" in doc:
        rate = doc["rate_bps"]
        if isinstance(rate, dict):
            _unknown(rate, {"down", "up"}, f"{where}rate_bps.")
            over["rate_bps"] = {k: _number(rate, k, f"{where}rate_bps.", 0.0, 0.0) for k in ("down", "up")}
        else:
            over["rate_bps"] = _number(doc, "rate_bps", where, minimum=0.0)
    params = RelayParams.preset(preset, **over)
    if "windows" in doc:
        params = dataclasses.replace(params, windows=_schedule(doc["windows"], f"{where}windows"))
    if "earth_windows" in doc:
        params = dataclasses.replace(params, earth_windows=_schedule(doc["earth_windows"], f"{where}earth_windows"))
    return params


def _config_table(cls: type, table: dict[str, Any], where: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    _unknown(table, known, where)
    try:
        return cls(**table)
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"{where.rstrip('.')}: {exc}") from None


def _vehicle(doc: dict[str, Any], i: int, base: Path, world: WorldScenario) -> VehiclePlan:
    where = f"vehicle[{i}]."
    if not isinstance(doc, dict):
        raise ScenarioError(f"vehicle[{i}]: expected a table")
    _unknown(doc, _VEHICLE_KEYS, where)
    name = doc.get("name")
    if not isinstance(name, str) or not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ScenarioError(f"{where}name: required, letters, digits, - and _ only")
    where = f"vehicle {name}: "
    kind = doc.get("kind", "rover")
    if kind not in KINDS:
        raise ScenarioError(f"{where}kind: {kind!r} is not one of {', '.join(KINDS)}")
    scid = doc.get("scid")
    if isinstance(scid, bool) or not isinstance(scid, int) or not 0 <= scid <= 1023:
        raise ScenarioError(f"{where}scid: required, an integer within 0..1023")
    cfg_name = doc.get("config")
    if not isinstance(cfg_name, str) or not cfg_name:
        raise ScenarioError(f"{where}config: required, a vehicle configuration file")
    candidates = [Path(cfg_name)] if Path(cfg_name).is_absolute() else [d / cfg_name for d in
                                                                         _vehicle_search_path(base)]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise ScenarioError(f"{where}config: vehicle config {cfg_name!r} does not exist "
                            f"(looked in {', '.join(str(c.parent) for c in candidates)})")
    try:
        config = load_config(found)
    except ConfigError as exc:
        raise ScenarioError(f"{where}config: {exc}") from None
    config = dataclasses.replace(config, spacecraft_id=scid, name=name)
    start = _table(doc, "start", where)
    _unknown(start, {"x", "y", "yaw_deg"}, f"{where}start.")
    size = world.terrain_size_m
    x = _number(start, "x", f"{where}start.", size / 2)
    y = _number(start, "y", f"{where}start.", size / 2)
    yaw = _number(start, "yaw_deg", f"{where}start.", 0.0)
    assert x is not None and y is not None and yaw is not None
    if not (0.0 <= x <= size and 0.0 <= y <= size):
        raise ScenarioError(f"{where}start: ({x:g}, {y:g}) is off the {size:g} m map (0..{size:g} in x and y)")
    plan = None
    if "plan" in doc:
        if not isinstance(doc["plan"], str):
            raise ScenarioError(f"{where}plan: expected a sequence file name")
        cands = [d / doc["plan"] for d in _vehicle_search_path(base)]
        plan = next((p for p in cands if p.is_file()), None)
        if plan is None:
            raise ScenarioError(f"{where}plan: sequence {doc['plan']!r} does not exist beside the scenario")
    extra = doc.get("sequences", [])
    if not isinstance(extra, list) or not all(isinstance(x, str) and x for x in extra):
        raise ScenarioError(f"{where}sequences: expected a list of sequence file names")
    sequences = []
    for name_ in extra:
        found_seq = next((d / name_ for d in _vehicle_search_path(base) if (d / name_).is_file()), None)
        if found_seq is None:
            raise ScenarioError(f"{where}sequences: sequence {name_!r} does not exist beside the scenario")
        sequences.append(found_seq)
    lander = None
    if kind == "lander":
        lander = _config_table(LanderConfig, _table(doc, "lander", where), f"{where}lander.")
    elif "lander" in doc:
        raise ScenarioError(f"{where}lander: only a vehicle of kind lander has a lander table")
    sampling = None
    if "sampling" in doc:
        if kind != "lander":
            raise ScenarioError(f"{where}sampling: only a vehicle of kind lander carries a drill and a scoop")
        table = _table(doc, "sampling", where)
        parts = {"drill": DrillConfig, "arm": ArmConfig, "container": ContainerConfig}
        _unknown(table, set(parts), f"{where}sampling.")
        sampling = SamplingConfig(**{key: _config_table(cls, _table(table, key, f"{where}sampling."),
                                                        f"{where}sampling.{key}.")
                                     for key, cls in parts.items()})
    battery = _table(doc, "battery", where)
    _config_table(BatteryConfig, battery, f"{where}battery.")
    solar = _table(doc, "solar", where)
    _config_table(SolarConfig, solar, f"{where}solar.")
    windows = _schedule(doc["windows"], f"{where}windows") if "windows" in doc else None
    return VehiclePlan(name=name, scid=scid, kind=kind, config=config, config_path=found, x=x, y=y, yaw_deg=yaw,
                       plan=plan, sequences=tuple(sequences),
                       plan_at_s=_number(doc, "plan_at_s", where, 5.0, 0.0) or 0.0,
                       hop_delay_s=_number(doc, "hop_delay_s", where, None, 0.0), windows=windows, lander=lander,
                       battery=dict(battery), solar=dict(solar), sampling=sampling)


def parse(doc: dict[str, Any], source: str = "<scenario>", base: Path | None = None) -> MissionScenario:
    """Check a scenario document (already read from TOML); ScenarioError names the key."""
    base = base or Path.cwd()
    _unknown(doc, {"scenario", "relay", "vehicle"}, "")
    head = dict(_table(doc, "scenario", "", required=True))
    name = head.pop("name", Path(source).stem)
    description = str(head.pop("description", ""))
    site = str(head.pop("site", ""))
    fast = head.pop("fast", False)
    if not isinstance(fast, bool):
        raise ScenarioError(f"scenario.fast: expected true or false, got {fast!r}")
    body = head.pop("body", "moon")
    if body not in ("moon", "mars"):
        raise ScenarioError(f"scenario.body: {body!r} is not moon or mars")
    world_keys = {f.name for f in dataclasses.fields(WorldScenario)} - {"name", "preset", "start_x", "start_y",
                                                                        "start_yaw_deg"}
    _unknown(head, world_keys | _SCENARIO_KEYS, "scenario.")
    try:
        world = WorldScenario.from_dict({**head, "name": str(name), "preset": body})
    except WorldScenarioError as exc:
        raise ScenarioError(f"scenario.{exc}") from None
    relay = _relay(_table(doc, "relay", ""), "relay.")
    raw = doc.get("vehicle")
    if not isinstance(raw, list) or not raw:
        raise ScenarioError("vehicle: at least one [[vehicle]] table is required")
    vehicles = [_vehicle(v, i, base, world) for i, v in enumerate(raw)]
    seen: dict[int, str] = {}
    names: set[str] = set()
    for v in vehicles:
        if v.scid in seen:
            raise ScenarioError(f"vehicle {v.name}: spacecraft id {v.scid} is already vehicle {seen[v.scid]}'s")
        if v.name in names:
            raise ScenarioError(f"vehicle {v.name}: two vehicles with this name")
        seen[v.scid] = v.name
        names.add(v.name)
    return MissionScenario(str(name), description, body, site, world, relay, tuple(vehicles), source, fast)


def load(name_or_path: str | Path) -> MissionScenario:
    """A built-in scenario by name, or a scenario file; ScenarioError (one line) if it cannot be flown."""
    path = resolve(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(doc, str(path), path.parent)
    except ScenarioError as exc:
        raise ScenarioError(f"{path.name}: {exc}") from None
