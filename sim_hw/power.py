"""Electrical power: a battery, a solar panel and the loads on the bus.

**Energy balance.** Over a step of ``dt`` seconds the bus needs ``P_load`` (avionics, motors,
heaters) and the panel offers ``P_solar``. The battery's terminals supply the difference,
``P_net = P_load - P_solar`` (positive = discharging). With open-circuit voltage ``E(SOC)`` and
internal resistance ``R`` the battery current solves ``(E - I R) I = P_net``, and the chemical
store changes by ``dW = -E * I * dt``: for discharge that is the delivered energy plus the
``I^2 R`` loss; for charge it is the accepted energy minus that loss. So after any run

    W_end - W_start = E_solar_used - E_load - E_loss        (all in Wh)

and the books kept here (``solar_wh``, ``load_wh``, ``loss_wh``) let a test check it exactly.
A full battery stops charging (the surplus is shunted and counted in ``shunted_wh``); an empty
one browns out (the unmet energy is counted in ``unmet_wh``).

**Solar output** is ``irradiance * area * efficiency * max(0, n . s) * dust``: ``n`` is the
panel normal carried through the vehicle's attitude, ``s`` the unit vector to the sun, and the
dust factor comes from the body preset and decays with time.
"""

from __future__ import annotations

import bisect
import logging
import math
from dataclasses import dataclass

import numpy as np

from sim_hw.environment import Environment

log = logging.getLogger(__name__)

# Open-circuit voltage of one Li-ion cell versus state of charge.
_SOC_POINTS = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
_CELL_OCV = np.array([3.0, 3.3, 3.45, 3.55, 3.62, 3.68, 3.73, 3.79, 3.87, 3.95, 4.05, 4.18])
_SOC_LIST = _SOC_POINTS.tolist()
_OCV_LIST = _CELL_OCV.tolist()


@dataclass(frozen=True)
class BatteryConfig:
    capacity_wh: float = 200.0
    cells_in_series: int = 4
    internal_resistance_ohm: float = 0.08
    initial_soc: float = 0.9

    def __post_init__(self) -> None:
        if self.capacity_wh <= 0:
            raise ValueError("battery.capacity_wh must be positive")
        if self.cells_in_series <= 0:
            raise ValueError("battery.cells_in_series must be positive")
        if self.internal_resistance_ohm < 0:
            raise ValueError("battery.internal_resistance_ohm must not be negative")
        if not 0.0 <= self.initial_soc <= 1.0:
            raise ValueError("battery.initial_soc must be within [0, 1]")


class Battery:
    """A Li-ion pack: stored energy, OCV curve, internal resistance."""

    def __init__(self, config: BatteryConfig | None = None) -> None:
        self.config = config or BatteryConfig()
        self.energy_wh = self.config.capacity_wh * self.config.initial_soc

    @property
    def soc(self) -> float:
        return self.energy_wh / self.config.capacity_wh

    def ocv(self, soc: float | None = None) -> float:
        """Open-circuit voltage of the pack at a state of charge (default: the present one)."""
        s = min(1.0, max(0.0, self.soc if soc is None else soc))
        k = min(bisect.bisect_right(_SOC_LIST, s), len(_SOC_LIST) - 1)
        s0, s1 = _SOC_LIST[k - 1], _SOC_LIST[k]
        v0, v1 = _OCV_LIST[k - 1], _OCV_LIST[k]
        return (v0 + (v1 - v0) * (s - s0) / (s1 - s0)) * self.config.cells_in_series

    def current_for(self, p_net_w: float) -> float:
        """Battery current (A, + discharging) that delivers p_net_w at the terminals."""
        e = self.ocv()
        r = self.config.internal_resistance_ohm
        if r == 0.0:
            return p_net_w / e
        disc = e * e - 4.0 * r * p_net_w
        if disc < 0.0:  # more than the pack can deliver: it sits at its maximum-power point
            return e / (2.0 * r)
        return (e - math.sqrt(disc)) / (2.0 * r)

    def terminal_v(self, current_a: float) -> float:
        return self.ocv() - current_a * self.config.internal_resistance_ohm


@dataclass(frozen=True)
class SolarConfig:
    area_m2: float = 0.6
    efficiency: float = 0.28
    # panel normal in the body frame (default: flat on the deck, facing up)
    normal_body: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if self.area_m2 < 0 or not 0.0 <= self.efficiency <= 1.0:
            raise ValueError("solar.area_m2 must be >= 0 and solar.efficiency within [0, 1]")


class SolarPanel:
    def __init__(self, config: SolarConfig | None = None) -> None:
        self.config = config or SolarConfig()
        n = np.asarray(self.config.normal_body, dtype=float)
        self._normal_body = n / np.linalg.norm(n)

    def output_w(self, env: Environment, t_s: float, body_to_world: np.ndarray) -> float:
        """Electrical output now: irradiance on the tilted panel times efficiency and dust."""
        irr = env.direct_irradiance_w_m2(t_s)
        if irr <= 0.0:
            return 0.0
        nx, ny, nz = (body_to_world @ self._normal_body).tolist()
        sx, sy, sz = env.sun_tuple(float(t_s))
        cos_i = nx * sx + ny * sy + nz * sz
        if cos_i <= 0.0:
            return 0.0
        c = self.config
        return irr * c.area_m2 * c.efficiency * cos_i * env.dust_factor(t_s)


@dataclass(frozen=True)
class PowerConfig:
    avionics_w: float = 8.0  # flight computer, MCU, radio idle: always on unless hibernating
    hibernate_w: float = 0.2  # what stays on while hibernating: the power board's wake circuit

    def __post_init__(self) -> None:
        if self.avionics_w < 0 or self.hibernate_w < 0:
            raise ValueError("power.avionics_w and power.hibernate_w must not be negative")


class PowerSystem:
    """Battery plus panel plus ledger. The world calls :meth:`step` with the mean loads."""

    def __init__(self, battery: Battery, panel: SolarPanel, config: PowerConfig | None = None) -> None:
        self.battery = battery
        self.panel = panel
        self.config = config or PowerConfig()
        self.solar_wh = 0.0
        self.load_wh = 0.0
        self.loss_wh = 0.0
        self.shunted_wh = 0.0
        self.unmet_wh = 0.0
        self.brownout = False
        self.last_current_a = 0.0

    def step(self, dt_s: float, load_w: float, solar_w: float) -> None:
        """Move energy for dt seconds at constant mean load and solar power."""
        b = self.battery
        cap = b.config.capacity_wh
        net = load_w - solar_w
        solar_used = solar_w
        if net < 0.0 and b.energy_wh >= cap:
            self.shunted_wh += -net * dt_s / 3600.0
            solar_used = load_w
            net = 0.0
        i = b.current_for(net)
        e = b.ocv()
        dw = -e * i * dt_s / 3600.0
        loss = i * i * b.config.internal_resistance_ohm * dt_s / 3600.0
        new = b.energy_wh + dw
        if new > cap:  # charge regulator tops out: the rest of the input is shunted
            over = new - cap
            self.shunted_wh += over
            solar_used -= over * 3600.0 / dt_s
            new = cap
        if new < 0.0:
            if not self.brownout:
                log.warning("power: battery empty, bus browned out")
            self.unmet_wh += -new
            new = 0.0
            self.brownout = True
        else:
            self.brownout = False
        b.energy_wh = new
        self.solar_wh += solar_used * dt_s / 3600.0
        self.load_wh += load_w * dt_s / 3600.0
        self.loss_wh += loss
        self.last_current_a = i

    def bus(self, load_w: float, solar_w: float) -> tuple[float, float]:
        """Instantaneous (bus volts, battery amps + discharging) for the present loads."""
        b = self.battery
        net = load_w - solar_w
        if net < 0.0 and b.soc >= 1.0:
            net = 0.0
        if b.energy_wh <= 0.0 and net > 0.0:
            return 0.0, 0.0
        i = b.current_for(net)
        return b.terminal_v(i), i
