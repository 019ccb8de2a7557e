"""Device link monitor: a serial microcontroller's link state and counters as telemetry.

Drivers that keep a link (the MCU serial driver) report LinkUp, LinkDown, Reconnected and
command trouble through an ``on_event(name, **fields)`` callback from their own reader thread.
This component queues those thread-safely and turns them into events in its own cycle, and
samples the driver's counters into channels, so a link dropping at 3 a.m. is in the downlink
with its reason.
"""

from __future__ import annotations

import queue
from dataclasses import asdict, is_dataclass
from typing import Any

from flight.component import Component
from flight.model import Arg, Channel, Event, Severity
from hal.contracts import Device

_COUNTERS = ("frames_rx", "frames_tx", "crc_errors", "decode_errors", "nacks", "retries", "timeouts",
             "link_downs", "reconnects")


class DeviceLink(Component):
    DEVICES = {"device": Device}
    CHANNELS = (Channel("up", "bool", doc="link to the device is up", update="on_change"),) + tuple(
        Channel(c, "u32", doc=f"driver counter {c}", update="on_change") for c in _COUNTERS
    )
    EVENTS = (
        Event("LinkUp", Severity.ACTIVITY_HI, "link up on {port} ({detail})",
              (Arg("port", "str"), Arg("detail", "str"))),
        Event("LinkDown", Severity.WARNING_HI, "link down on {port}: {reason}",
              (Arg("port", "str"), Arg("reason", "str")), throttle=10, throttle_window_s=60.0),
        Event("Reconnected", Severity.ACTIVITY_HI, "reconnected to {port} after {down_s} s",
              (Arg("port", "str"), Arg("down_s", "f32"))),
        Event("DeviceCommandTrouble", Severity.WARNING_LO, "{what}: {detail}",
              (Arg("what", "str"), Arg("detail", "str")), throttle=10, throttle_window_s=60.0),
        Event("DeviceFaultFlags", Severity.WARNING_HI, "device fault flags now {flags}",
              (Arg("flags", "str"),), throttle=10, throttle_window_s=60.0),
    )

    def setup(self) -> None:
        self._dev = self.devices["device"]
        self._inbox: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        if hasattr(self._dev, "on_event"):
            self._dev.on_event = lambda name, **fields: self._inbox.put((name, fields))
        if getattr(self._dev, "link_up", None):
            self.event("LinkUp", port=str(getattr(self._dev, "url", "")), detail="at boot")

    def step(self) -> None:
        while True:
            try:
                name, f = self._inbox.get_nowait()
            except queue.Empty:
                break
            port = str(f.get("port", ""))
            if name == "LinkUp":
                self.event("LinkUp", port=port, detail=f"firmware {f.get('firmware', '?')}, "
                                                       f"board {f.get('board_id', '?')}")
            elif name == "LinkDown":
                self.event("LinkDown", port=port, reason=str(f.get("reason", "")))
            elif name == "Reconnected":
                self.event("Reconnected", port=port, down_s=float(f.get("down_s", 0.0)))
            elif name == "FaultFlags":
                self.event("DeviceFaultFlags", flags=str(f.get("flags", "")))
            else:
                detail = ", ".join(f"{k}={v}" for k, v in f.items())
                self.event("DeviceCommandTrouble", what=name, detail=detail)
        up = getattr(self._dev, "link_up", None)
        if up is not None:
            self.tlm("up", bool(up))
        counters = getattr(self._dev, "counters", None)
        if counters is not None and is_dataclass(counters):
            values = asdict(counters)
            for c in _COUNTERS:
                if c in values:
                    self.tlm(c, values[c])
