"""Component types by name, through a lazy table (the vehicle TOML says ``type = "drive"``).

Our own types are listed here as "module:Class" strings and imported on first use; other
packages add types through the ``magpie.components`` entry-point group. A module path is never
taken from the configuration itself.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from flight.component import Component

_BUILTIN = {
    "drive": "flight.components.drive:Drive",
    "power": "flight.components.power:Power",
    "thermal": "flight.components.thermal:Thermal",
    "imu": "flight.components.imu:ImuMonitor",
    "ticker": "flight.components.ticker:Ticker",
    "link": "flight.components.link:DeviceLink",
    "comm": "flight.components.comm:Comm",
    "nav": "flight.nav.component:Navigator",
    "nav_odometry": "flight.nav.component:OdometryNavigator",
    "imaging": "flight.imaging.component:Imaging",
    "fault": "flight.fault.protection:FaultProtection",
    "payload_host": "flight.payload.host:PayloadHost",
    "drill": "flight.components.sampling:DrillControl",
    "sample_arm": "flight.components.sampling:ArmControl",
    "sample_container": "flight.components.sampling:ContainerControl",
    "ascent": "flight.components.sampling:AscentControl",
}


def known_types() -> list[str]:
    return sorted(set(_BUILTIN) | {ep.name for ep in entry_points(group="magpie.components")})


def resolve(type_name: str) -> type[Component]:
    target = _BUILTIN.get(type_name)
    if target is not None:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    for ep in entry_points(group="magpie.components"):
        if ep.name == type_name:
            return ep.load()
    raise KeyError(f"unknown component type {type_name!r}; known: {', '.join(known_types())}")
