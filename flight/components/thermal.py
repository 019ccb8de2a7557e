"""Thermal: named temperatures as channels (the names come from the configuration)."""

from __future__ import annotations

from typing import Any

from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Severity
from hal.contracts import ThermalSensors
from hal.errors import HalError


class Thermal(Component):
    DEVICES = {"thermal": ThermalSensors}
    OPTIONS = {"sensors": ["board", "battery"], "yellow_c": [-30.0, 50.0], "red_c": [-40.0, 60.0]}
    EVENTS = (
        Event("ThermalReadError", Severity.WARNING_HI, "thermal sensors: {error}", (Arg("error", "str"),),
              throttle=5, throttle_window_s=60.0),
        Event("SensorMissing", Severity.WARNING_LO, "no reading for {sensor}", (Arg("sensor", "str"),),
              throttle=5, throttle_window_s=3600.0),
    )

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.sensors = [str(s) for s in self.options["sensors"]]
        y, r = self.options["yellow_c"], self.options["red_c"]
        self._channels = tuple(
            Channel(f"{s}_c", "f32", "degC", doc=f"{s} temperature",
                    limits=Limits(yellow=(float(y[0]), float(y[1])), red=(float(r[0]), float(r[1]))))
            for s in self.sensors
        )

    def channels(self) -> tuple[Channel, ...]:
        return self._channels

    def setup(self) -> None:
        self._dev: ThermalSensors = self.devices["thermal"]

    def step(self) -> None:
        try:
            reading = self._dev.read_thermal()
        except HalError as exc:
            self.event("ThermalReadError", error=str(exc))
            return
        self.publish("reading", reading)
        for s in self.sensors:
            value = reading.temps_c.get(s)
            if value is None:
                self.event("SensorMissing", sensor=s)
                continue
            self.tlm(f"{s}_c", value)
