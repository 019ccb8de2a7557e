"""A site holding several vehicles: one terrain, one sun, one world per vehicle.

Each vehicle (a rover or a static lander) gets its own :class:`~sim_hw.world.World` on the shared
terrain, with the body's gravity, day length, sun and terrain style, and its own seeded sensors,
power and heat. Each world lists the others as ``neighbours``, so a vehicle's cameras see the
other vehicles where they stand now. Worlds keep their own physics clocks: in a lockstep
mission each vehicle's simulated clock steps its own world, and :meth:`Site.step_to` steps them
all together (the world alone, as the benchmarks fly it).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim_hw.lander import LanderConfig
from sim_hw.power import BatteryConfig, SolarConfig
from sim_hw.sampling import SamplingConfig
from sim_hw.scenario import Scenario
from sim_hw.terrain import Terrain
from sim_hw.world import World

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SiteVehicle:
    """Where one vehicle stands on the site and what kind of body it is."""

    name: str
    kind: str = "rover"
    x: float | None = None  # None: the map centre
    y: float | None = None
    yaw_deg: float = 0.0
    lander: LanderConfig | None = None
    battery: dict[str, Any] = field(default_factory=dict)
    solar: dict[str, Any] = field(default_factory=dict)
    sampling: SamplingConfig | None = None  # a sample-return lander's drill, arm and container


class Site:
    """Several vehicles' worlds on one terrain (see the module docstring)."""

    def __init__(self, scenario: Scenario, vehicles: Sequence[SiteVehicle], seed: int | None = None,
                 **world_overrides: Any) -> None:
        if not vehicles:
            raise ValueError("a site needs at least one vehicle")
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else int(seed)
        size = scenario.terrain_size_m
        centre = size / 2.0
        spots = []
        for v in vehicles:
            x = centre if v.x is None else float(v.x)
            y = centre if v.y is None else float(v.y)
            if not (0.0 <= x <= size and 0.0 <= y <= size):
                raise ValueError(f"vehicle {v.name}: start pose ({x:g}, {y:g}) is off the {size:g} m map")
            spots.append((x, y))
        tc = dataclasses.replace(scenario.terrain_config(), clear_center=spots[0], also_clear=tuple(spots[1:]))
        seeds = np.random.SeedSequence(self.seed).spawn(len(vehicles) + 1)
        self.terrain = Terrain.generate(tc, seed=int(seeds[0].generate_state(1)[0]))
        self.worlds: dict[str, World] = {}
        for v, (x, y), ss in zip(vehicles, spots, seeds[1:], strict=True):
            if v.name in self.worlds:
                raise ValueError(f"vehicle {v.name}: two vehicles with one name")
            kw: dict[str, Any] = dict(terrain=self.terrain, start_x=x, start_y=y, start_yaw_deg=v.yaw_deg,
                                      kind=v.kind, lander=v.lander, name=v.name)
            if v.sampling is not None:
                kw["sampling"] = v.sampling
            if v.battery:
                kw["battery"] = BatteryConfig(**{**dataclasses.asdict(BatteryConfig()), **scenario.battery,
                                                 **v.battery})
            if v.solar:
                kw["solar"] = SolarConfig(**{**dataclasses.asdict(SolarConfig()), **scenario.solar, **v.solar})
            kw.update(world_overrides)
            self.worlds[v.name] = scenario.build(seed=int(ss.generate_state(1)[0]), **kw)
        for name, world in self.worlds.items():
            world.neighbours = [w for n, w in self.worlds.items() if n != name]
        log.info("site %s: %s", scenario.name, ", ".join(f"{w.name} ({w.kind})" for w in self.worlds.values()))

    def __getitem__(self, name: str) -> World:
        try:
            return self.worlds[name]
        except KeyError:
            raise KeyError(f"no vehicle {name!r} on the site; vehicles: {', '.join(self.worlds)}") from None

    @property
    def time_s(self) -> float:
        return min(w.time_s for w in self.worlds.values())

    def step_to(self, t_s: float) -> None:
        """Step every vehicle's world to ``t_s``."""
        for w in self.worlds.values():
            w.step_to(t_s)

    def summary_lines(self) -> list[str]:
        return [f"{name:<12} {w.kind:<6} {w.summary()}" for name, w in self.worlds.items()]
