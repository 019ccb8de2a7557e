"""Power: battery and solar telemetry from the power monitor, with limits."""

from __future__ import annotations

from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Severity
from hal.contracts import PowerMonitor
from hal.errors import HalError


class Power(Component):
    DEVICES = {"power": PowerMonitor}
    CHANNELS = (
        Channel("bus_v", "f32", "V", doc="battery bus (4-cell lithium-ion, 12.0 to 16.8 V)",
                limits=Limits(yellow=(13.2, 17.0), red=(12.4, 17.4))),
        Channel("current_a", "f32", "A", doc="battery current, positive discharging"),
        Channel("soc", "f32", doc="battery state of charge, 0..1", limits=Limits(yellow=(0.3, 1.0), red=(0.15, 1.0))),
        Channel("solar_w", "f32", "W", doc="solar array output"),
        Channel("energy_in_wh", "f64", "Wh", doc="solar energy collected since boot"),
    )
    EVENTS = (
        Event("PowerReadError", Severity.WARNING_HI, "power monitor: {error}", (Arg("error", "str"),),
              throttle=5, throttle_window_s=60.0),
    )

    def setup(self) -> None:
        self._dev: PowerMonitor = self.devices["power"]
        self._energy = 0.0
        self._last_t: float | None = None

    def step(self) -> None:
        try:
            p = self._dev.read_power()
        except HalError as exc:
            self.event("PowerReadError", error=str(exc))
            return
        if self._last_t is not None:
            self._energy += p.solar_w * max(0.0, p.time_s - self._last_t) / 3600.0
        self._last_t = p.time_s
        self.publish("reading", p)
        self.tlm("bus_v", p.bus_v)
        self.tlm("current_a", p.current_a)
        self.tlm("soc", p.soc)
        self.tlm("solar_w", p.solar_w)
        self.tlm("energy_in_wh", self._energy)
