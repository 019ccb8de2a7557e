"""The sampling components on a simulated lander, on the simulated clock; and over the MCU pty.

Drill to depth, the jam and overheat monitors with their handling, the scoop-seal-ascent chain,
and bad commands refused with a reason while nothing else changes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from flight.clock import NS, RealClock, SimClock
from flight.config import parse
from flight.vehicle import Vehicle
from sim_hw.plant import SimplePlant
from sim_hw.sampling import ContainerConfig, Regolith, SamplingConfig, SamplingSystem
from sim_hw.world import World
from tests.recorder import Recorder

pytestmark = pytest.mark.timeout(60)

COMPONENTS = {
    "drill": {"type": "drill", "devices": {"drill": "sampler"}},
    "arm": {"type": "sample_arm", "devices": {"arm": "sampler"}},
    "container": {"type": "sample_container", "devices": {"container": "sampler"}},
    "ascent": {"type": "ascent", "devices": {"ascent": "sampler"}},
    "fault": {"type": "fault", "boot_mode": "STANDBY",
              "monitors": {"drill_jam": {"channel": "event:drill.DrillJammed", "condition": "delta > 0",
                                         "response": "report"}}},
}
GROUPS = [
    {"name": "control", "hz": 10, "members": ["cmd", "seq"]},
    {"name": "sampling", "hz": 2, "members": ["drill", "arm", "container", "ascent"]},
    {"name": "hk", "hz": 1, "members": ["fault", "sys", "health", "tlm"]},
]


def lander(tmp_path: Path, world: World, url: str = "sim://sampling") -> tuple[Vehicle, Recorder]:
    cfg = parse({"vehicle": {"state_dir": str(tmp_path / "state"), "epoch": "2026-01-01T00:00:00Z"},
                 "devices": {"sampler": url}, "components": COMPONENTS, "rate_groups": GROUPS})
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    v = Vehicle(cfg, clock, device_context={"world": world})
    rec = Recorder()
    v.add_sink(rec)
    return v, rec


def run(v: Vehicle, seconds: float) -> None:
    v.run(until_s=v.clock.now() + seconds)


def cmd(v: Vehicle, name: str, **args: Any) -> None:
    v.dispatcher.submit(name, args)
    run(v, 0.5)


def test_drill_reaches_two_metres_and_hands_its_core_over(tmp_path: Path) -> None:
    world = World(kind="lander", seed=7)
    v, rec = lander(tmp_path, world)
    try:
        cmd(v, "DRILL_START", depth_m=2.0, rate_mm_s=10.0)
        assert v.fw.tlm.get("drill.state_name") == "DRILLING"
        run(v, 210.0)
        tlm = v.fw.tlm
        assert tlm.get("drill.done") is True and tlm.get("drill.depth_m") == pytest.approx(2.0, abs=1e-3)
        assert tlm.get("drill.torque_nm") == 0.0 and tlm.get("drill.jams") == 0
        cmd(v, "DRILL_RETRACT")
        run(v, 90.0)
        v.flush()
        assert rec.stages("DRILL_START") == ["ACCEPTED", "COMPLETED"]
        assert [e.name for e in rec.events() if e.name.startswith("Drill")] == [
            "DrillStarted", "DrillDepthReached", "DrillRetracted"]
        assert tlm.get("container.mass_kg") == pytest.approx(0.26, abs=0.01)
    finally:
        v.shutdown()


def test_a_jam_is_detected_evented_and_handled_without_safe(tmp_path: Path) -> None:
    world = World(kind="lander", seed=7)
    world.add_sampling().inject("drill-jam", depth_m=0.5)
    v, rec = lander(tmp_path, world)
    try:
        cmd(v, "DRILL_START", depth_m=2.0, rate_mm_s=10.0)
        run(v, 80.0)
        v.flush()
        jam = rec.events("DrillJammed")
        assert len(jam) == 1 and "0.5" in jam[0].text and "retracting" in jam[0].text
        run(v, 40.0)
        v.flush()
        tlm = v.fw.tlm
        assert rec.events("DrillRetracted") and tlm.get("drill.state_name") == "IDLE"
        assert tlm.get("drill.jams") == 1 and tlm.get("drill.done") is False and tlm.get("drill.depth_m") == 0.0
        assert tlm.get("container.mass_kg") == pytest.approx(0.5 * 0.13, abs=0.005)  # the partial core
        assert rec.events("MonitorTripped") and tlm.get("fault.mode_name") == "STANDBY"
        # a second start on the same rock jams again (still reported, still handled)
        cmd(v, "DRILL_START", depth_m=2.0, rate_mm_s=10.0)
        run(v, 80.0)
        assert v.fw.tlm.get("drill.jams") == 2
    finally:
        v.shutdown()


def test_an_overheat_stops_the_drill_until_it_cools_then_it_resumes(tmp_path: Path) -> None:
    world = World(kind="lander", seed=7)
    sampling = world.add_sampling()
    sampling.regolith.strength = 1.8  # hard ground: the motor heats faster than it cools
    sampling.regolith.layers = ()  # and even: no layer hard enough to jam it
    v, rec = lander(tmp_path, world)
    try:
        v.dispatcher.submit("PRM_SET", {"name": "drill.overheat_c", "value": "50"})
        v.dispatcher.submit("PRM_SET", {"name": "drill.resume_c", "value": "35"})
        cmd(v, "DRILL_START", depth_m=2.0, rate_mm_s=12.0)
        run(v, 1500.0)
        v.flush()
        over, cooled = rec.events("DrillOverheat"), rec.events("DrillCooled")
        assert over and cooled and len(over) == len(cooled) == v.fw.tlm.get("drill.overheats")
        assert all("resuming" in c.text for c in cooled)
        assert over[0].time_ns < cooled[0].time_ns
        assert rec.events("DrillDepthReached") and v.fw.tlm.get("drill.done") is True
        assert sampling.drill.overheats == 0  # the flight limit acted before the motor's own cut-out
    finally:
        v.shutdown()


def test_scoop_seal_and_ascent_in_order_with_refusals_on_the_way(tmp_path: Path) -> None:
    world = World(kind="lander", seed=7)
    v, rec = lander(tmp_path, world)
    try:
        cmd(v, "ASCENT_ARM")
        cmd(v, "CONTAINER_SEAL")
        cmd(v, "DRILL_START", depth_m=9.0, rate_mm_s=10.0)
        cmd(v, "ARM_MOVE", shoulder_deg=-10.0, elbow_deg=-40.0)
        cmd(v, "ARM_DEPOSIT")  # not over the container
        run(v, 15.0)
        cmd(v, "ARM_SCOOP")
        run(v, 16.0)
        cmd(v, "ARM_STOW")
        run(v, 15.0)
        cmd(v, "ARM_DEPOSIT")
        cmd(v, "CONTAINER_SEAL")
        run(v, 25.0)
        cmd(v, "ASCENT_ARM")
        v.flush()
        assert rec.stages("ASCENT_ARM") == ["ACCEPTED", "FAILED", "ACCEPTED", "COMPLETED"]
        assert "not ready" in rec.responses("ASCENT_ARM")[1].reason
        assert rec.stages("CONTAINER_SEAL") == ["ACCEPTED", "FAILED", "ACCEPTED", "COMPLETED"]
        assert "empty" in rec.responses("CONTAINER_SEAL")[1].reason
        assert rec.stages("DRILL_START") == ["REJECTED"]
        assert rec.stages("ARM_DEPOSIT") == ["ACCEPTED", "FAILED", "ACCEPTED", "COMPLETED"]
        names = [e.name for e in rec.events() if e.component in ("arm", "container", "ascent")]
        for a, b in [("ArmArrived", "ArmScooped"), ("ArmScooped", "ArmDeposited"),
                     ("ArmDeposited", "ContainerSealed"), ("ContainerSealed", "AscentReady"),
                     ("AscentReady", "AscentArmed")]:
            assert names.index(a) < names.index(b), (a, b, names)
        tlm = v.fw.tlm
        scooped = 0.4 * min(1.0, 1.0 / world.sampling.regolith.resistance(0.0))  # less in stronger ground
        assert tlm.get("container.sealed") is True and tlm.get("container.mass_kg") == pytest.approx(scooped)
        assert tlm.get("ascent.ready") is True and tlm.get("ascent.armed") is True
        assert tlm.get("fault.mode_name") == "STANDBY"
    finally:
        v.shutdown()


def test_the_components_over_the_mcu_protocol_on_a_pty(tmp_path: Path) -> None:
    plant = SimplePlant(seed=2, sampling=SamplingSystem(SamplingConfig(container=ContainerConfig(seal_s=0.3)),
                                                        Regolith()))
    cfg = parse({"vehicle": {"state_dir": str(tmp_path / "state")}, "devices": {"sampler": "mcu+pty://?stream_hz=50"},
                 "components": {k: c for k, c in COMPONENTS.items() if k != "fault"},
                 "rate_groups": [{"name": "control", "hz": 20, "members": ["cmd", "drill", "container", "ascent",
                                                                            "arm"]}]})
    v = Vehicle(cfg, RealClock(), device_context={"plant": plant})
    rec = Recorder()
    v.add_sink(rec)
    try:
        v.dispatcher.submit("CONTAINER_SEAL")
        v.dispatcher.submit("DRILL_START", {"depth_m": 0.02, "rate_mm_s": 20.0})
        deadline = time.monotonic() + 15
        while not v.fw.tlm.get("drill.done") and time.monotonic() < deadline:
            v.run(until_s=v.clock.now() + 0.2, flush_every_s=0.2)
        v.flush()
        assert v.fw.tlm.get("drill.done") is True and rec.events("DrillDepthReached")
        assert rec.stages("CONTAINER_SEAL") == ["ACCEPTED", "FAILED"]
        assert "REFUSED" in rec.responses("CONTAINER_SEAL")[1].reason
    finally:
        v.shutdown()


def test_a_rover_mcu_without_a_sampling_board_is_counted_never_a_crash(tmp_path: Path) -> None:
    cfg = parse({"vehicle": {"state_dir": str(tmp_path / "state")}, "devices": {"sampler": "mcu+pty://?stream_hz=50"},
                 "components": {"drill": COMPONENTS["drill"]},
                 "rate_groups": [{"name": "control", "hz": 20, "members": ["cmd", "drill"]}]})
    v = Vehicle(cfg, RealClock(), device_context={"plant": SimplePlant(seed=2)})
    rec = Recorder()
    v.add_sink(rec)
    try:
        v.dispatcher.submit("DRILL_START", {"depth_m": 1.0, "rate_mm_s": 10.0})
        v.run(until_s=v.clock.now() + 1.0, flush_every_s=0.25)
        v.flush()
        assert rec.stages("DRILL_START") == ["ACCEPTED", "FAILED"]
        assert "reports no DRILL" in rec.responses("DRILL_START")[1].reason
        errors = v.fw.tlm.get("drill.device_errors")
        assert errors >= 10  # every read of the 20 Hz group, and the command
        assert 1 <= len(rec.events("DeviceError")) <= 5  # throttled
        assert v.devices["sampler"].counters.unsupported == errors
        assert not any(m.faulted for g in v.executive.groups for m in g.members)
    finally:
        v.shutdown()


def test_two_device_names_with_one_url_are_one_device_opened_once(tmp_path: Path) -> None:
    world = World(kind="lander", seed=7)
    cfg = parse({"vehicle": {"state_dir": str(tmp_path / "state")},
                 "devices": {"mcu": "sim://sampling", "sampler": "sim://sampling"},
                 "components": {"drill": {"type": "drill", "devices": {"drill": "mcu"}},
                                "container": {"type": "sample_container", "devices": {"container": "sampler"}}},
                 "rate_groups": [{"name": "control", "hz": 2, "members": ["cmd", "drill", "container"]}]})
    v = Vehicle(cfg, SimClock(start_s=world.time_s), device_context={"world": world})
    try:
        assert v.devices["mcu"] is v.devices["sampler"]
    finally:
        v.shutdown()
    assert v.devices["mcu"].closed


def test_the_real_time_launcher_puts_the_sampling_board_on_the_mcu() -> None:
    from importlib import resources

    from flight.config import load as load_config
    from magpie.sitlrun import device_overrides

    cfg = load_config(Path(str(resources.files("magpie.configs").joinpath("change5_lander.toml"))))
    sitl = {"mcu": "mcu+serial:///tmp/ttyMCU", "camera.pancam": "camera+sitl://x", "watchdog": "watchdog+null://"}
    out = device_overrides(cfg, sitl, "radio+zmq://tcp://127.0.0.1:1")
    assert out["sampler"] == out["mcu"] == "mcu+serial:///tmp/ttyMCU"


def test_the_motors_own_cut_out_is_seen_and_ridden_out_too(tmp_path: Path) -> None:
    from sim_hw.sampling import DrillConfig

    world = World(kind="lander", seed=7, sampling=SamplingConfig(drill=DrillConfig(cutout_c=60.0, restart_c=40.0)))
    assert world.sampling is not None
    world.sampling.regolith.strength, world.sampling.regolith.layers = 1.8, ()
    v, rec = lander(tmp_path, world)
    try:
        v.dispatcher.submit("PRM_SET", {"name": "drill.overheat_c", "value": "200"})  # above the motor's own
        v.dispatcher.submit("PRM_SET", {"name": "drill.resume_c", "value": "35"})
        cmd(v, "DRILL_START", depth_m=2.0, rate_mm_s=12.0)
        run(v, 1500.0)
        v.flush()
        assert world.sampling.drill.overheats >= 1  # the motor tripped its cut-out
        assert len(rec.events("DrillOverheat")) == world.sampling.drill.overheats == v.fw.tlm.get("drill.overheats")
        assert all("resuming" in c.text for c in rec.events("DrillCooled"))
        assert rec.events("DrillDepthReached") and v.fw.tlm.get("drill.done") is True
    finally:
        v.shutdown()
