"""Vehicle configuration: one TOML file, validated once at start-up.

Every error names the key it is about (``rate_groups[1].hz: expected a number``), so a team
editing ``rover.toml`` on a Raspberry Pi knows what to fix. See ``flight/sim_rover.toml`` for a
complete example.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The configuration is wrong; the message names the key."""


@dataclass(frozen=True)
class RateGroupConfig:
    name: str
    hz: float
    members: tuple[str, ...]
    budget_frac: float = 0.5


@dataclass(frozen=True)
class ComponentConfig:
    name: str
    type: str
    devices: dict[str, str] = field(default_factory=dict)  # role -> device name
    id_base: int | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VehicleConfig:
    name: str = "magpie"
    spacecraft_id: int = 66
    state_dir: Path = Path("state")
    epoch: datetime | None = None
    outbound_capacity: int = 10_000
    devices: dict[str, str] = field(default_factory=dict)
    components: tuple[ComponentConfig, ...] = ()
    rate_groups: tuple[RateGroupConfig, ...] = ()
    source: str = "<defaults>"
    #: Named sequence engines (``[vehicle] sequences``); empty: one engine, ``main``.
    sequences: tuple[str, ...] = ()


def _get(table: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}{key}: required")
        return default
    value = table[key]
    if isinstance(value, bool) and kind is not bool and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ConfigError(f"{where}{key}: expected {_kind_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{where}{key}: expected {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", dict: "a table", list: "a list", bool: "true/false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise ConfigError(f"{where}{extra[0]}: unknown key; accepted: {', '.join(sorted(allowed))}")


def parse(doc: dict[str, Any], source: str = "<config>", base_dir: Path | None = None) -> VehicleConfig:
    """Validate a configuration document (already read from TOML)."""
    _unknown(doc, {"vehicle", "outbound", "devices", "components", "rate_groups"}, "")
    veh = _get(doc, "vehicle", "", dict, {})
    _unknown(veh, {"name", "spacecraft_id", "state_dir", "epoch", "sequences"}, "vehicle.")
    sequences = _get(veh, "sequences", "vehicle.", list, [])
    for i, eng in enumerate(sequences):
        if not isinstance(eng, str) or not eng.isidentifier() or not eng.islower() or len(eng) > 20:
            raise ConfigError(f"vehicle.sequences[{i}]: expected an engine name (lower case letters, digits, _; "
                              f"at most 20), got {eng!r}")
    if len(set(sequences)) != len(sequences):
        raise ConfigError("vehicle.sequences: engine names must be unique")
    name = _get(veh, "name", "vehicle.", str, "magpie")
    scid = _get(veh, "spacecraft_id", "vehicle.", int, 66)
    if not 0 <= scid <= 1023:
        raise ConfigError(f"vehicle.spacecraft_id: {scid} is outside 0..1023")
    state_dir = Path(_get(veh, "state_dir", "vehicle.", str, "state"))
    if base_dir is not None and not state_dir.is_absolute():
        state_dir = base_dir / state_dir
    epoch = None
    raw_epoch = _get(veh, "epoch", "vehicle.", (str, datetime), None)
    if isinstance(raw_epoch, datetime):
        epoch = raw_epoch if raw_epoch.tzinfo else raw_epoch.replace(tzinfo=UTC)
    elif raw_epoch is not None:
        try:
            epoch = datetime.fromisoformat(raw_epoch.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"vehicle.epoch: {raw_epoch!r} is not an ISO-8601 time") from None
        if epoch.tzinfo is None:
            epoch = epoch.replace(tzinfo=UTC)

    out = _get(doc, "outbound", "", dict, {})
    _unknown(out, {"capacity"}, "outbound.")
    capacity = _get(out, "capacity", "outbound.", int, 10_000)
    if capacity < 1:
        raise ConfigError("outbound.capacity: must be at least 1")

    devices = _get(doc, "devices", "", dict, {})
    for dname, url in devices.items():
        if not isinstance(url, str) or "://" not in url:
            raise ConfigError(f"devices.{dname}: expected a device URL like 'mcu+serial:///dev/ttyACM0', got {url!r}")

    comps = []
    for cname, table in _get(doc, "components", "", dict, {}).items():
        where = f"components.{cname}."
        if not isinstance(table, dict):
            raise ConfigError(f"components.{cname}: expected a table")
        ctype = _get(table, "type", where, str)
        cdevs = _get(table, "devices", where, dict, {})
        for role, dname in cdevs.items():
            if dname not in devices:
                raise ConfigError(f"{where}devices.{role}: no device named {dname!r} in [devices] "
                                  f"(have: {', '.join(devices) or 'none'})")
        id_base = _get(table, "id_base", where, int, None)
        options = {k: v for k, v in table.items() if k not in ("type", "devices", "id_base")}
        comps.append(ComponentConfig(cname, ctype, dict(cdevs), id_base, options))

    groups = []
    raw_groups = _get(doc, "rate_groups", "", list, [])
    for i, g in enumerate(raw_groups):
        where = f"rate_groups[{i}]."
        if not isinstance(g, dict):
            raise ConfigError(f"rate_groups[{i}]: expected a table")
        _unknown(g, {"name", "hz", "members", "budget"}, where)
        hz = _get(g, "hz", where, (int, float))
        if not 0 < hz <= 1000:
            raise ConfigError(f"{where}hz: {hz} is outside (0, 1000]")
        members = _get(g, "members", where, list, [])
        for j, m in enumerate(members):
            if not isinstance(m, str):
                raise ConfigError(f"{where}members[{j}]: expected a component name")
        budget = _get(g, "budget", where, (int, float), 0.5)
        if not 0 < budget <= 1:
            raise ConfigError(f"{where}budget: fraction of the period, in (0, 1]")
        groups.append(RateGroupConfig(_get(g, "name", where, str), float(hz), tuple(members), float(budget)))
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise ConfigError("rate_groups: group names must be unique")
    placed = [m for g in groups for m in g.members]
    dup = {m for m in placed if placed.count(m) > 1}
    if dup:
        raise ConfigError(f"rate_groups: {sorted(dup)[0]} is a member of more than one group")
    return VehicleConfig(name, scid, state_dir, epoch, capacity, dict(devices), tuple(comps),
                         tuple(groups), source, tuple(sequences))


def load(path: str | Path) -> VehicleConfig:
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(doc, str(path), path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
