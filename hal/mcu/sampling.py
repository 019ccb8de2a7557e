"""The sampling board behind the MCU link: drill, scoop arm, sample container, ascent interface.

A sample-return lander's microcontroller drives its mechanisms with the same protocol that drives
a rover's wheels (``PROTOCOL.md``, messages 0x31 and 0x40-0x47). The serial driver
(:class:`hal.mcu.driver.McuSerial`) carries this mixin, so one MCU device is the lander's drive,
IMU, power, thermal and sampling devices at once, and a flight component binds it by contract.

Whether the mechanisms exist is the firmware's word: VERSION's capability bits (DRILL,
SAMPLE_ARM, SAMPLE_CONTAINER, ASCENT). A call for one the firmware did not report, or one the
MCU answers NACK UNSUPPORTED, raises :class:`~hal.errors.UnsupportedError`, counted in
``counters.unsupported`` and reported once per ability as an ``Unsupported`` event; nothing is
sent for it. A command the mechanism refuses now (NACK REFUSED or OUT_OF_RANGE) raises
:class:`~hal.errors.CommandRejectedError` with the reason, like any refused command.
Readings come from the latest SAMPLING_REPORT, streamed beside each SENSOR_REPORT.
"""

from __future__ import annotations

import threading
from typing import Any

from hal.contracts import (
    ArmStatus,
    AscentInterface,
    AscentStatus,
    ContainerStatus,
    Drill,
    DrillStatus,
    SampleArm,
    SampleContainer,
)
from hal.errors import DeviceTimeoutError, UnsupportedError
from hal.mcu import protocol as p

F = p.SamplingFlags


class McuSampling(Drill, SampleArm, SampleContainer, AscentInterface):
    """The sampling half of the MCU driver (see the module docstring).

    The host class provides ``_check_open``, ``_command``, ``_emit``, ``_version``,
    ``_counters`` (with an ``unsupported`` field), ``_time_wraps`` and ``timeout``.
    """

    _sampling: p.SamplingReport | None = None
    _sampling_time_s: float = 0.0
    _sampling_seen: threading.Event
    _unsupported_told: set[str]

    def _init_sampling(self) -> None:
        self._sampling = None
        self._sampling_seen = threading.Event()
        self._unsupported_told = set()

    # -- the firmware's abilities -----------------------------------------------------------

    def has_capability(self, cap: p.Capability) -> bool:
        version: p.Version | None = getattr(self, "_version", None)
        return version is not None and bool(version.capabilities & cap)

    def _unsupported(self, method: str, cap: p.Capability | str) -> UnsupportedError:
        name = cap if isinstance(cap, str) else (cap.name or str(int(cap)))
        self._counters.unsupported += 1  # type: ignore[attr-defined]
        version: p.Version | None = getattr(self, "_version", None)
        fw = version.firmware if version is not None else "?"
        if name not in self._unsupported_told:
            self._unsupported_told.add(name)
            self._emit("Unsupported", method=method, ability=name, firmware=fw)  # type: ignore[attr-defined]
        return UnsupportedError(f"{method}: the MCU firmware {fw} on {self.url} reports no {name}")

    def _need(self, method: str, cap: p.Capability) -> None:
        self._check_open(method)
        if not self.has_capability(cap):
            raise self._unsupported(method, cap)

    def _sampling_command(self, method: str, cap: p.Capability, msg: p.Message) -> None:
        self._need(method, cap)
        self._command(msg)  # type: ignore[attr-defined]

    def _take_sampling(self, r: p.SamplingReport) -> None:
        """The reader thread hands each SAMPLING_REPORT here."""
        wraps = int(getattr(self, "_time_wraps", 0))
        self._sampling_time_s = (r.mcu_time_ms + (wraps << 32)) / 1000.0
        self._sampling = r
        self._sampling_seen.set()

    def _latest_sampling(self, method: str, cap: p.Capability) -> tuple[p.SamplingReport, float]:
        self._need(method, cap)
        timeout = float(getattr(self, "timeout", 1.0))
        if self._sampling is None and not self._sampling_seen.wait(timeout):
            raise DeviceTimeoutError(f"{method}: no SAMPLING_REPORT from {self.url} within {timeout} s")
        report, t = self._sampling, self._sampling_time_s
        assert report is not None
        return report, t

    @property
    def latest_sampling(self) -> p.SamplingReport | None:
        return self._sampling

    # -- drill --------------------------------------------------------------------------------

    def start_drill(self, target_depth_m: float, rate_mm_s: float) -> None:
        self._sampling_command("start_drill", p.Capability.DRILL, p.DrillStart.from_si(target_depth_m, rate_mm_s))

    def stop_drill(self) -> None:
        self._sampling_command("stop_drill", p.Capability.DRILL, p.DrillStop())

    def retract_drill(self) -> None:
        self._sampling_command("retract_drill", p.Capability.DRILL, p.DrillRetract())

    def read_drill(self) -> DrillStatus:
        r, t = self._latest_sampling("read_drill", p.Capability.DRILL)
        return DrillStatus(t, r.drill_depth_m, r.drill_rate_mm_s, r.drill_torque_nm, r.drill_temp_c, r.drill_state,
                           r.drill_core_kg, r.drill_target_m)

    # -- arm ----------------------------------------------------------------------------------

    def move_arm(self, shoulder_deg: float, elbow_deg: float) -> None:
        self._sampling_command("move_arm", p.Capability.SAMPLE_ARM, p.ArmMove.from_deg(shoulder_deg, elbow_deg))

    def scoop(self) -> None:
        self._sampling_command("scoop", p.Capability.SAMPLE_ARM, p.ArmScoop())

    def deposit(self) -> None:
        self._sampling_command("deposit", p.Capability.SAMPLE_ARM, p.ArmDeposit())

    def read_arm(self) -> ArmStatus:
        r, t = self._latest_sampling("read_arm", p.Capability.SAMPLE_ARM)
        return ArmStatus(t, r.arm_shoulder_deg, r.arm_elbow_deg, r.arm_force_n, r.arm_reach_m,
                         bool(r.flags & F.ARM_MOVING), bool(r.flags & F.ARM_SCOOPING), r.arm_holding_kg)

    # -- container and ascent -----------------------------------------------------------------

    def seal_container(self) -> None:
        self._sampling_command("seal_container", p.Capability.SAMPLE_CONTAINER, p.ContainerSeal())

    def read_container(self) -> ContainerStatus:
        r, t = self._latest_sampling("read_container", p.Capability.SAMPLE_CONTAINER)
        return ContainerStatus(t, r.container_mass_kg, bool(r.flags & F.CONTAINER_SEALED),
                               bool(r.flags & F.CONTAINER_SEALING))

    def arm_ascent(self, armed: bool) -> None:
        self._sampling_command("arm_ascent", p.Capability.ASCENT, p.AscentArm(1 if armed else 0))

    def read_ascent(self) -> AscentStatus:
        r, t = self._latest_sampling("read_ascent", p.Capability.ASCENT)
        return AscentStatus(t, bool(r.flags & F.ASCENT_READY), bool(r.flags & F.ASCENT_ARMED))


def report_from(system: Any, mcu_time_ms: int) -> p.SamplingReport:
    """A SAMPLING_REPORT of a sampling system's readings (the emulator's, and a firmware's model)."""
    d, a, c, x = system.read_drill(), system.read_arm(), system.read_container(), system.read_ascent()
    flags = ((F.ARM_MOVING if a.moving else 0) | (F.ARM_SCOOPING if a.scooping else 0)
             | (F.CONTAINER_SEALED if c.sealed else 0) | (F.CONTAINER_SEALING if c.sealing else 0)
             | (F.ASCENT_READY if x.ready else 0) | (F.ASCENT_ARMED if x.armed else 0))
    return p.SamplingReport(mcu_time_ms, d.depth_m, d.rate_mm_s, d.torque_nm, d.temp_c, int(d.state), d.core_kg,
                            d.target_m, a.shoulder_deg, a.elbow_deg, a.force_n, a.reach_m, a.holding_kg,
                            c.mass_kg, int(flags))
