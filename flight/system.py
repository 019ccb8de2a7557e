"""The vehicle's own bookkeeping: boot count, software version, uptime, the boot event."""

from __future__ import annotations

from flight import __version__
from flight.component import Component
from flight.model import Arg, Channel, Event, Severity
from flight.persist import CorruptFileError, read_checked_json, write_checked_json

BOOT_FORMAT = "magpie-boot/1"


class System(Component):
    CHANNELS = (
        Channel("boot_count", "u32", doc="boots of this vehicle, persisted", update="on_change"),
        Channel("uptime_s", "f64", "s", doc="spacecraft seconds since this boot"),
        Channel("version", "str", doc="flight software version", update="on_change"),
    )
    EVENTS = (
        Event("Boot", Severity.ACTIVITY_HI,
              "Magpie {version} boot {count}, dictionary {dict_hash}",
              (Arg("version", "str"), Arg("count", "u32"), Arg("dict_hash", "str"))),
        Event("BootRecordProblem", Severity.WARNING_HI, "boot record unusable ({problem}); count restarted",
              (Arg("problem", "str"),)),
        Event("Shutdown", Severity.ACTIVITY_HI, "clean shutdown after {uptime_s} s", (Arg("uptime_s", "f64"),)),
    )

    def setup(self) -> None:
        path = self.fw.state_dir / "boot.json"
        problem = ""
        try:
            body = read_checked_json(path, BOOT_FORMAT) or {}
            count = int(body.get("count", 0))
        except (CorruptFileError, ValueError, TypeError) as exc:
            problem, count = str(exc), 0
        self.boot_count = count + 1
        write_checked_json(path, BOOT_FORMAT, {"count": self.boot_count})
        self._t0 = self.fw.clock.now_ns()
        if problem:
            self.event("BootRecordProblem", problem=problem)
        self.tlm("boot_count", self.boot_count)
        self.tlm("version", __version__)
        self.tlm("uptime_s", 0.0)

    def announce(self, dict_hash: str) -> None:
        self.event("Boot", version=__version__, count=self.boot_count, dict_hash=dict_hash)

    def step(self) -> None:
        self.tlm("uptime_s", (self.fw.clock.now_ns() - self._t0) / 1e9)

    def shutdown(self) -> None:
        self.event("Shutdown", uptime_s=round((self.fw.clock.now_ns() - self._t0) / 1e9, 3))
