"""The sampling contracts (Drill, SampleArm, SampleContainer, AscentInterface) against the in-process
sim device on the simulated clock and against the MCU emulator over a real pseudo-terminal.

One suite, two peers: the sim device's time moves when the test steps the world; the emulator's
moves with the wall clock, so there the suite waits on readings (with a deadline), never sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from hal import open_device
from hal.contracts import AscentInterface, Drill, DrillState, SampleArm, SampleContainer
from hal.errors import CommandRejectedError, DeviceClosedError, UnsupportedError
from hal.mcu import protocol as p
from sim_hw.mcu_emulator import PtyMcu
from sim_hw.plant import SimplePlant
from sim_hw.sampling import ContainerConfig, Regolith, SamplingConfig, SamplingSystem
from sim_hw.world import World

pytestmark = pytest.mark.timeout(60)

#: a quick seal, so the suite stays short on the wall clock too
CONFIG = SamplingConfig(container=ContainerConfig(seal_s=0.5))

Settle = Callable[[Callable[[], bool], str], None]


def check_contract(dev: object, settle: Settle) -> None:
    """What every sampling device must do, whatever carries it."""
    assert isinstance(dev, Drill) and isinstance(dev, SampleArm)
    assert isinstance(dev, SampleContainer) and isinstance(dev, AscentInterface)
    d = dev.read_drill()
    assert d.depth_m == 0.0 and d.state == DrillState.IDLE
    arm = dev.read_arm()
    assert (arm.shoulder_deg, arm.elbow_deg) == (60.0, -150.0) and arm.reach_m == pytest.approx(0.6, abs=1e-4)
    assert dev.read_container().mass_kg == 0.0 and not dev.read_container().sealed
    assert not dev.read_ascent().ready and not dev.read_ascent().armed
    # refusals carry the reason and change nothing
    with pytest.raises(CommandRejectedError):
        dev.start_drill(9.0, 10.0)
    with pytest.raises(CommandRejectedError):
        dev.seal_container()
    with pytest.raises(CommandRejectedError):
        dev.arm_ascent(True)
    with pytest.raises(CommandRejectedError):
        dev.move_arm(120.0, 0.0)
    # a short core, brought up into the container
    dev.start_drill(0.02, 20.0)
    settle(lambda: dev.read_drill().depth_m >= 0.0199 and dev.read_drill().state == DrillState.IDLE,
           "the drill at 20 mm")
    assert dev.read_drill().core_kg > 0 and dev.read_drill().target_m == pytest.approx(0.02, abs=1e-6)
    dev.retract_drill()
    settle(lambda: dev.read_drill().depth_m == 0.0, "the drill back at the surface")
    assert dev.read_container().mass_kg > 0
    # the arm moves and comes back to stow; a deposit from there is accepted
    dev.move_arm(70.0, -150.0)
    settle(lambda: dev.read_arm().shoulder_deg == pytest.approx(70.0, abs=0.01) and not dev.read_arm().moving,
           "the arm at 70 deg")
    dev.move_arm(60.0, -150.0)
    settle(lambda: dev.read_arm().shoulder_deg == pytest.approx(60.0, abs=0.01) and not dev.read_arm().moving,
           "the arm stowed")
    dev.deposit()
    dev.seal_container()
    settle(lambda: dev.read_container().sealed, "the container sealed")
    settle(lambda: dev.read_ascent().ready, "ready for ascent")
    dev.arm_ascent(True)
    settle(lambda: dev.read_ascent().armed, "the ascent armed")
    dev.arm_ascent(False)
    settle(lambda: not dev.read_ascent().armed, "the ascent safed")


def test_contract_against_the_sim_device_on_the_simulated_clock() -> None:
    world = World(kind="lander", seed=4, sampling=CONFIG)

    def settle(pred: Callable[[], bool], what: str) -> None:
        for _ in range(600):  # at most 60 s of simulated time
            if pred():
                return
            world.step(0.1)
        pytest.fail(f"not reached in 60 s of simulated time: {what}")

    dev = open_device("sim://sampling", world=world)
    check_contract(dev, settle)
    dev.close()
    dev.close()
    with pytest.raises(DeviceClosedError, match="read_drill"):
        dev.read_drill()


def wait_for(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        threading.Event().wait(0.01)


@pytest.fixture
def lander_mcu() -> Iterator[PtyMcu]:
    plant = SimplePlant(seed=3, sampling=SamplingSystem(CONFIG, Regolith()))
    dev = open_device("mcu+pty://?stream_hz=50", plant=plant)
    assert isinstance(dev, PtyMcu)
    try:
        yield dev
    finally:
        dev.close()


def test_contract_against_the_mcu_emulator_over_a_pty(lander_mcu: PtyMcu) -> None:
    assert lander_mcu.has_capability(p.Capability.sampling())
    check_contract(lander_mcu, wait_for)
    emu = lander_mcu.emulator
    assert emu.counters.sampling_reports > 0 and emu.counters.unsupported == 0
    assert lander_mcu.counters.unsupported == 0 and lander_mcu.counters.nacks == 4  # the four refusals


def test_firmware_without_a_sampling_board_reports_it_unsupported_counted_and_told_once() -> None:
    events: list[tuple[str, dict]] = []
    dev = open_device("mcu+pty://?stream_hz=50", plant=SimplePlant(seed=1),
                      on_event=lambda name, **f: events.append((name, f)))
    try:
        assert not dev.has_capability(p.Capability.DRILL)
        with pytest.raises(UnsupportedError, match="reports no DRILL"):
            dev.start_drill(1.0, 10.0)
        with pytest.raises(UnsupportedError, match="DRILL"):
            dev.read_drill()
        with pytest.raises(UnsupportedError, match="SAMPLE_CONTAINER"):
            dev.seal_container()
        # the host did not send them; a firmware asked anyway answers NACK UNSUPPORTED
        assert dev.emulator.counters.unsupported == 0
        with pytest.raises(UnsupportedError, match="DrillStop"):
            dev._command(p.DrillStop())
        assert dev.emulator.counters.unsupported == 1
        assert dev.counters.unsupported == 4
        told = [f["ability"] for n, f in events if n == "Unsupported"]
        assert told == ["DRILL", "SAMPLE_CONTAINER", "DrillStop"]
        dev.read_drive()  # the rest of the MCU is unaffected
    finally:
        dev.close()


def test_a_lander_world_behind_the_emulator_is_a_lander_mcu_with_its_sampling_board() -> None:
    world = World(kind="lander", seed=6, sampling=CONFIG)
    dev = open_device("mcu+pty://?stream_hz=50", plant=world.mcu_plant())
    try:
        assert dev.has_capability(p.Capability.sampling())
        dev.start_drill(0.01, 20.0)
        wait_for(lambda: dev.read_drill().depth_m >= 0.0099, "the world's drill at 10 mm")
        assert world.sampling is not None and world.sampling.read_drill().depth_m >= 0.0099
        assert dev.read_drive().left_ticks == 0  # the same MCU is still the lander's (still) drive
    finally:
        dev.close()


def test_the_real_time_world_serves_the_sampling_board_through_its_mcu_under_the_world_lock() -> None:
    from sim_hw.sitl import ScaledPlant

    world = World(kind="lander", seed=6, sampling=CONFIG)
    lock = threading.Lock()
    dev = open_device("mcu+pty://?stream_hz=50", plant=ScaledPlant(world.mcu_plant(), lock, 4.0))
    try:
        assert dev.has_capability(p.Capability.sampling())
        dev.move_arm(62.0, -150.0)
        wait_for(lambda: dev.read_arm().shoulder_deg == pytest.approx(62.0, abs=0.01), "the arm at 62 deg")
        with lock:  # the world's own view agrees, read under the same lock
            assert world.sampling is not None and world.sampling.read_arm().shoulder_deg == pytest.approx(62.0)
    finally:
        dev.close()
