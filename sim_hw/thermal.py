"""Lumped-capacitance thermal model of the vehicle.

Each node has a heat capacity ``C`` and a temperature ``T``; its balance is

    C dT/dt = Q_sun + Q_internal + Q_heater
              - eps * sigma * A * (T^4 - T_env^4)     (radiation, exterior nodes and radiators)
              + h * A * (T_air - T)                    (convection, where there is air)
              + sum_j G_ij (T_j - T)                   (conduction between nodes)

``T_env`` mixes the sky and the ground the surfaces see: ``T_env^4 = f_sky T_sky^4 +
(1 - f_sky) T_ground^4``. On the Moon the sky is ~3 K and the ground swings between ~95 K at
night and ~390 K under a high sun, so an unheated vehicle bakes at noon and freezes far below
zero through the 14.75-day night; a thermostatic heater on the electronics box holds it at a
survival temperature while the battery lasts.

The default vehicle has five nodes, named like the MCU's temperature channels where it has
one: ``board`` (the warm electronics box, where the avionics dissipate and the heater sits),
``battery`` (inside the box; it takes the battery's I^2 R loss), ``chassis`` (deck, panel and
structure: the exterior that sees the sun, sky and ground) and ``motor_left`` / ``motor_right``
(outside, warmed by their motor's losses).

The model is stepped with explicit Euler, sub-divided so each sub-step stays well inside the
fastest node's time constant ``C / (sum G + 4 eps sigma A T^3 + h A)``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sim_hw.environment import SIGMA_SB, Environment

log = logging.getLogger(__name__)

KELVIN = 273.15


@dataclass(frozen=True)
class NodeConfig:
    name: str
    heat_capacity_j_k: float
    radiating_area_m2: float = 0.0
    emissivity: float = 0.85
    sky_view: float = 0.5  # fraction of the radiating surface that sees the sky
    sun_area_m2: float = 0.0  # projected area facing the sun
    absorptivity: float = 0.3
    convective_area_m2: float = 0.0
    initial_c: float = 20.0


@dataclass(frozen=True)
class HeaterConfig:
    node: str = "board"
    power_w: float = 20.0
    on_below_c: float = -10.0
    off_above_c: float = 0.0
    enabled: bool = True


def _default_nodes() -> tuple[NodeConfig, ...]:
    # names match the MCU's temperature channels (board, battery, motor_left, motor_right)
    motor = {"radiating_area_m2": 0.05, "emissivity": 0.8, "sky_view": 0.3, "sun_area_m2": 0.015,
             "absorptivity": 0.6, "convective_area_m2": 0.05}
    return (
        # warm electronics box: inside the insulation, with a small sky-facing radiator
        NodeConfig("board", 3000.0, radiating_area_m2=0.04, emissivity=0.8, sky_view=1.0),
        NodeConfig("battery", 1500.0),
        # chassis, deck and panel: the exterior
        NodeConfig("chassis", 4000.0, radiating_area_m2=1.2, emissivity=0.85, sky_view=0.5,
                   sun_area_m2=0.4, absorptivity=0.35, convective_area_m2=1.2),
        NodeConfig("motor_left", 300.0, **motor),
        NodeConfig("motor_right", 300.0, **motor),
    )


@dataclass(frozen=True)
class ThermalConfig:
    nodes: tuple[NodeConfig, ...] = field(default_factory=_default_nodes)
    # conductive links (node a, node b, W/K)
    links: tuple[tuple[str, str, float], ...] = (
        ("board", "chassis", 0.08),
        ("battery", "board", 0.5),
        ("battery", "chassis", 0.03),
        ("motor_left", "chassis", 0.25),
        ("motor_right", "chassis", 0.25),
    )
    heaters: tuple[HeaterConfig, ...] = (HeaterConfig(),)
    # where internal dissipation lands
    avionics_node: str = "board"
    battery_node: str = "battery"
    motor_nodes: tuple[str, str] = ("motor_left", "motor_right")

    def __post_init__(self) -> None:
        names = {n.name for n in self.nodes}
        if len(names) != len(self.nodes):
            raise ValueError("thermal.nodes: node names must be unique")
        for n in self.nodes:
            if n.heat_capacity_j_k <= 0:
                raise ValueError(f"thermal.nodes[{n.name}].heat_capacity_j_k must be positive")
        for a, b, g in self.links:
            if a not in names or b not in names or g < 0:
                raise ValueError(f"thermal.links: bad link ({a}, {b}, {g})")
        for h in self.heaters:
            if h.node not in names:
                raise ValueError(f"thermal.heaters: unknown node {h.node!r}")
        for key in ("avionics_node", "battery_node"):
            if getattr(self, key) not in names:
                raise ValueError(f"thermal.{key}: unknown node {getattr(self, key)!r}")
        if len(self.motor_nodes) != 2 or any(m not in names for m in self.motor_nodes):
            raise ValueError(f"thermal.motor_nodes: need two known nodes, got {self.motor_nodes!r}")


class ThermalModel:
    """Node temperatures, heater states and the heat each step puts in."""

    def __init__(self, config: ThermalConfig | None = None, initial_c: float | None = None) -> None:
        self.config = config or ThermalConfig()
        self.nodes = {n.name: n for n in self.config.nodes}
        self.temps_k = {
            n.name: (initial_c if initial_c is not None else n.initial_c) + KELVIN
            for n in self.config.nodes
        }
        self.heater_on = [False] * len(self.config.heaters)
        self.heater_wh = 0.0
        self.inhibit = False  # no bus power (brownout): every heater is off
        self.switched_off = False  # the flight software switched the heater rail off
        self.setpoint: tuple[float, float] | None = None  # flight-set (on below, off above), degC

    def set_setpoint(self, on_below_c: float | None, off_above_c: float | None) -> None:
        """Override every heater's thermostat (both None: back to the configured thresholds)."""
        if on_below_c is None or off_above_c is None:
            self.setpoint = None
        else:
            if off_above_c < on_below_c:
                raise ValueError("heater setpoint: off_above_c must not be below on_below_c")
            self.setpoint = (float(on_below_c), float(off_above_c))
        self.update_heaters()

    @property
    def temps_c(self) -> dict[str, float]:
        return {k: v - KELVIN for k, v in self.temps_k.items()}

    def temp_c(self, node: str) -> float:
        """One node's temperature (C), without building the whole table."""
        return self.temps_k[node] - KELVIN

    def heater_power_w(self) -> float:
        """Electrical power the heaters draw in their present state."""
        return sum(h.power_w for h, on in zip(self.config.heaters, self.heater_on, strict=True) if on)

    def update_heaters(self) -> None:
        """Thermostat with hysteresis: on below one threshold, off above another."""
        for k, h in enumerate(self.config.heaters):
            t = self.temps_k[h.node] - KELVIN
            on_below, off_above = self.setpoint or (h.on_below_c, h.off_above_c)
            if not h.enabled or self.inhibit or self.switched_off:
                self.heater_on[k] = False
            elif t < on_below:
                self.heater_on[k] = True
            elif t > off_above:
                self.heater_on[k] = False

    def step(
        self, dt_s: float, env: Environment, t_s: float, internal_w: dict[str, float] | None = None
    ) -> None:
        """Integrate dt seconds with constant inputs: sun and ground at t, internal dissipation."""
        q_int = dict.fromkeys(self.temps_k, 0.0)
        for name, w in (internal_w or {}).items():
            q_int[name] += w
        for h, on in zip(self.config.heaters, self.heater_on, strict=True):
            if on:
                q_int[h.node] += h.power_w
        self.heater_wh += self.heater_power_w() * dt_s / 3600.0
        irr = env.direct_irradiance_w_m2(t_s)
        t_ground4 = env.ground_temp_k(t_s) ** 4
        t_sky4 = env.body.sky_k**4
        t_air = env.air_temp_k(t_s)
        h_conv = env.body.convection_w_m2k
        nodes = self.config.nodes
        names = [n.name for n in nodes]
        cap = [n.heat_capacity_j_k for n in nodes]
        rad = [n.emissivity * SIGMA_SB * n.radiating_area_m2 for n in nodes]
        conv = [h_conv * n.convective_area_m2 for n in nodes]
        env4 = [n.sky_view * t_sky4 + (1.0 - n.sky_view) * t_ground4 for n in nodes]
        fixed = [n.absorptivity * n.sun_area_m2 * irr + q_int[n.name] + c * t_air
                 for n, c in zip(nodes, conv, strict=True)]
        pos = {name: k for k, name in enumerate(names)}
        links = [(pos[a], pos[b], g) for a, b, g in self.config.links]
        g_sum = [0.0] * len(nodes)
        for a, b, g in links:
            g_sum[a] += g
            g_sum[b] += g
        temps = [self.temps_k[name] for name in names]
        count = range(len(nodes))

        remaining = dt_s
        while remaining > 1e-12:
            # the fastest node's time constant decides the sub-step
            tau = min(cap[k] / (4.0 * rad[k] * temps[k] ** 3 + conv[k] + g_sum[k] + 1e-12) for k in count)
            h = min(remaining, 0.2 * tau)
            dq = [fixed[k] - rad[k] * (temps[k] ** 4 - env4[k]) - conv[k] * temps[k] for k in count]
            for a, b, g in links:
                flow = g * (temps[b] - temps[a])
                dq[a] += flow
                dq[b] -= flow
            temps = [max(1.0, temps[k] + dq[k] * h / cap[k]) for k in count]
            remaining -= h
        for k, name in enumerate(names):
            self.temps_k[name] = temps[k]
        self.update_heaters()
