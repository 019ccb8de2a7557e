"""Modes by command, bad input, restarts (asked for, unclean, SIGKILL) and what survives them."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest

from flight.clock import NS, SimClock
from flight.config import load
from flight.link.recorder import Recorder
from magpie.mission import LockstepMission
from sim_hw.world import World
from tests.fault.conftest import RigFactory

pytestmark = pytest.mark.timeout(60)


def mission_config():
    return load(Path(str(resources.files("magpie.configs").joinpath("sim_mission.toml"))))


def test_mode_commands_and_bad_input_are_refused_counted_and_rate_limited(make_rig: RigFactory) -> None:
    rig = make_rig(fault={"boot_mode": "STANDBY"})
    rig.run(1)
    rig.cmd("DRIVE_SET_WHEELS", left=0.1, right=0.1)  # gated: STANDBY
    rig.cmd("MODE_SET", mode="NAPPING")  # not a mode: rejected before execution
    for _ in range(10):
        rig.cmd("MODE_SET", mode="STANDBY")  # already there
    rig.cmd("MODE_SET", mode="SAFE")
    rig.cmd("MODE_SET", mode="DRIVE")  # SAFE -> DRIVE is not allowed
    rig.cmd("FP_DISABLE", monitor="no_such_monitor")
    rig.cmd("MODE_SET", mode="HIBERNATE")
    rig.run(2)
    d = rig.vehicle.dispatcher.counts
    assert d["rejected"] == 2  # the unknown mode and the drive command gated by mode
    gated = [r for r in rig.sink.items
             if getattr(r, "name", "") == "DRIVE_SET_WHEELS" and hasattr(r, "stage")]
    assert [r.stage for r in gated] == ["REJECTED"] and "not allowed in STANDBY" in gated[0].reason
    assert rig.mode == "HIBERNATE"
    assert not rig.world.avionics_on and rig.world.vehicle.quiescent
    stages = [r for r in rig.sink.items if getattr(r, "name", "") == "MODE_SET" and hasattr(r, "stage")]
    failed = [r.reason for r in stages if r.stage == "FAILED"]
    assert len(failed) == 11 and all("not allowed" in f or "already in" in f for f in failed)
    assert rig.tlm("fault.rejected") == 1 + 11 + 1  # gated drive + illegal modes + unknown monitor
    assert len(rig.sink.events("ModeRejected")) == 5  # throttled: 5 a minute
    assert len(rig.sink.events("CommandGated")) == 1
    # the ground wakes it: HIBERNATE -> SAFE -> STANDBY -> DRIVE, and then the drive command runs
    rig.cmd("MODE_SET", mode="SAFE")
    rig.run(700)
    assert rig.mode == "SAFE" and rig.world.avionics_on
    for mode in ("STANDBY", "DRIVE"):
        rig.cmd("MODE_SET", mode=mode)
    rig.run(2)
    rig.cmd("DRIVE_SET_WHEELS", left=0.1, right=0.1)
    rig.run(2)
    assert rig.mode == "DRIVE" and not rig.world.vehicle.quiescent
    causes = [e.args[2] for e in rig.sink.events("ModeChanged")]
    assert causes[0] == "first boot" and causes[-1] == "commanded"


def test_battery_critical_hibernates_and_wakes_on_the_sun(make_rig: RigFactory) -> None:
    from sim_hw.scenario import Scenario

    world = Scenario.from_dict({"scenario": "moon-farside", "start_hours_after_sunrise": 100.0,
                                "battery": {"initial_soc": 0.14}}).build(seed=1)
    rig = make_rig(world, fault={"fast": True})
    rig.run(10)
    assert rig.mode == "HIBERNATE" and not world.avionics_on
    assert "battery_critical" in rig.sink.texts("Hibernating")[0]
    rig.run(6 * 3600)
    assert rig.mode == "SAFE" and world.avionics_on
    woke = rig.sink.events("Woke")
    assert len(woke) == 1 and "solar input" in woke[0].text and woke[0].args[2] >= 0.35
    assert rig.vehicle.devices["wdog"].bites() == []  # suspended while asleep


def test_commanded_hibernation_wakes_at_its_time(make_rig: RigFactory) -> None:
    rig = make_rig(fault={"boot_mode": "STANDBY"})
    rig.cmd("FP_DISABLE", monitor="dusk")
    rig.cmd("MODE_HIBERNATE", wake_after_s=3000)
    rig.run(2)
    t0 = rig.clock.now()
    assert rig.mode == "HIBERNATE"
    assert rig.vehicle.executive.group("hk").current_hz == pytest.approx(1 / 600)
    rig.run(3700)
    woke = rig.sink.events("Woke")
    assert rig.mode == "SAFE" and len(woke) == 1 and "wake time" in woke[0].text
    assert woke[0].time_ns / NS - t0 <= 3000 + 601
    assert rig.vehicle.executive.group("control").current_hz == 50


def test_restart_loop_is_limited(make_rig: RigFactory) -> None:
    rig = make_rig(fault={"monitors": {"bad_boot": {"channel": "sys.uptime_s", "condition": "> 3",
                                                    "response": "restart"}}})
    rig.run(60)
    v = rig.vehicle
    assert v.fw.tlm.get("sys.boot_count") == 4  # three restarts, then the limit
    assert len(rig.sink.events("RestartRequested")) == 3
    limited = rig.sink.events("RestartLimited")
    assert len(limited) == 1 and rig.mode == "SAFE"
    assert v.fw.tlm.get("fault.restarts") == 3
    causes = [e.args[2] for e in rig.sink.events("ModeChanged")]
    assert causes[0] == "first boot" and causes[1].startswith("restarted by fault protection: bad_boot")
    # the ground clears the count; the next trip restarts again
    rig.cmd("FP_RESTART_CLEAR")
    rig.cmd("FP_DISABLE", monitor="bad_boot")
    rig.run(5)
    assert rig.tlm("fault.restarts") == 0


def test_state_survives_an_unclean_restart(make_rig: RigFactory) -> None:
    rig = make_rig()
    rig.cmd("PRM_SET", name="drive.max_speed_mps", value="0.18")
    rig.cmd("PRM_SAVE")
    rig.cmd("FP_DISABLE", monitor="recorder_full")
    rig.cmd("DRIVE_SET_WHEELS", left=0.15, right=0.15)
    rig.run(20)
    assert rig.mode == "DRIVE" and not rig.world.vehicle.quiescent
    # power loss mid-drive: no shutdown; the MCU stops the motors when its host goes quiet
    rig.vehicle.close_devices()
    rig.world.vehicle.stop()
    v = rig.reboot()
    assert v.fw.tlm.get("sys.boot_count") == 2
    assert rig.mode == "SAFE"
    assert rig.sink.events("ModeChanged")[-1].args[2] == "unclean restart (was DRIVE)"
    assert v.fw.params.get("drive.max_speed_mps") == pytest.approx(0.18)
    assert v.fw.tlm.get("fault.mon.recorder_full") in (0, 4)  # disabled (or unavailable: no comm)
    assert not v.by_name["fault"].monitors["recorder_full"].enabled
    rig.cmd("DRIVE_SET_WHEELS", left=0.1, right=0.1)
    rig.run(2)
    assert rig.world.vehicle.quiescent  # SAFE refuses motion until the ground says otherwise


def test_restart_mid_drive_resumes_in_safe_with_the_recorder_intact(tmp_path: Path) -> None:
    world = World.for_mission(seed=4)
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t: world.step_to(t / NS))
    m = LockstepMission(mission_config(), tmp_path, preset="moon-farside", seed=4,
                        device_context={"world": world}, clock=clock,
                        plan=[(5.0, "DRIVE_SET_WHEELS", {"left": 0.15, "right": 0.15})])
    try:
        m.advance(m.start_s + 40)
        assert m.vehicle.fw.tlm.get("fault.mode_name") == "DRIVE" and not world.vehicle.quiescent
        rec = m.comm.recorder
        assert rec is not None
        held, seqs = rec.stats().packets, rec.last_seqs()
        stored = len(m.stored_packets)
        assert held > 0
        pose = (world.truth()["x"], world.truth()["y"])
        m.crash_vehicle()
        world.vehicle.stop()  # the MCU's own watchdog stops the motors when the host dies
        m.idle(5.0)
        v = m.restart_vehicle()
        assert v.fw.tlm.get("fault.mode_name") == "SAFE" and v.fw.tlm.get("sys.boot_count") == 2
        rec2 = m.comm.recorder
        assert rec2 is not None and rec2.stats().packets >= held - 5 and rec2.last_seqs() == seqs
        assert stored == len(m.stored_packets)
        nav = [n for n in v.fw.tlm.names() if n.startswith("nav.") and n.endswith(("x_m", "y_m"))]
        if nav:  # a navigation component keeps a pose: it must have come back too
            assert abs(v.fw.tlm.get(nav[0]) - pose[0 if nav[0].endswith("x_m") else 1]) < 1.0
        m.advance(m.start_s + 120)
        assert m.drain(1200.0)
        rows = m.archive.packets(m.config.spacecraft_id)
        assert len(rows) == len({(r[1], r[2], r[3]) for r in rows}) == len(m.stored_packets)
        names = [e.name for e in m.archive.events(m.config.spacecraft_id)]
        assert names.count("Boot") == 2 and "ModeChanged" in names
    finally:
        m.close()


def test_sigkill_mid_run_comes_back_safe(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "magpie.cli", "sim", "--duration", "30m", "--seed", "2",
                             "--out", str(out), "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 40.0
        tlm = out / "telemetry.jsonl"
        while not (tlm.exists() and tlm.stat().st_size > 200_000):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run produced no telemetry"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    state = json.loads((out / "state" / "fault.json").read_text())
    assert state["body"]["clean"] is False and state["body"]["mode"] == "DRIVE"
    with Recorder(out / "state" / "recorder.db") as rec:
        held, seqs = rec.stats().packets, rec.last_seqs()
    assert seqs
    world = World.for_mission(seed=2)
    clock = SimClock(start_s=world.time_s)
    clock.on_advance(lambda t: world.step_to(t / NS))
    cfg = dataclasses.replace(mission_config())
    m = LockstepMission(cfg, out, preset="ideal", seed=2, device_context={"world": world}, clock=clock)
    try:
        v = m.vehicle
        assert v.fw.tlm.get("sys.boot_count") == 2 and v.fw.tlm.get("fault.mode_name") == "SAFE"
        assert m.carried_over >= held and m.comm.recorder.last_seqs() == seqs  # type: ignore[union-attr]
        m.advance(m.start_s + 30)
        assert m.drain(600.0)
    finally:
        m.close()
