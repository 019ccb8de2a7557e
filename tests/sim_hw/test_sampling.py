"""The sampling models on the simulated clock: drill depth, torque, jam and overheat; arm, container, ascent."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal import open_device
from hal.contracts import DrillState
from hal.errors import CommandRejectedError, DeviceUrlError
from sim_hw.sampling import DrillConfig, Regolith, SamplingConfig, SamplingRefused, SamplingSystem
from sim_hw.world import World

pytestmark = pytest.mark.timeout(30)


def system(**drill: float) -> SamplingSystem:
    return SamplingSystem(SamplingConfig(drill=DrillConfig(**drill)), Regolith())


def test_drill_reaches_its_target_with_torque_growing_with_depth() -> None:
    s = system()
    s.drill.start(2.0, 10.0)
    s.step_to(50.0)
    shallow = s.read_drill()
    s.step_to(150.0)
    deep = s.read_drill()
    assert shallow.state == deep.state == DrillState.DRILLING
    assert shallow.depth_m == pytest.approx(0.5, abs=1e-6) and deep.depth_m == pytest.approx(1.5, abs=1e-6)
    assert deep.torque_nm > shallow.torque_nm > DrillConfig().free_torque_nm
    s.step_to(210.0)
    done = s.read_drill()
    assert done.state == DrillState.IDLE and done.depth_m == pytest.approx(2.0)
    assert done.core_kg == pytest.approx(2.0 * DrillConfig().core_kg_per_m)
    # a full retract hands the core to the container
    s.drill.retract()
    s.step_to(300.0)
    assert s.read_drill().depth_m == 0.0 and s.read_drill().core_kg == 0.0
    assert s.read_container().mass_kg == pytest.approx(done.core_kg)


def test_a_faster_feed_needs_more_torque() -> None:
    slow, fast = system(), system()
    slow.drill.start(1.0, 5.0)
    fast.drill.start(1.0, 15.0)
    slow.step_to(40.0)  # 0.2 m
    fast.step_to(40.0 / 3)  # 0.2 m
    assert fast.read_drill().torque_nm > slow.read_drill().torque_nm


def test_stronger_regolith_from_the_site_resists_more() -> None:
    moon = Regolith.for_site("moon", seed=5, x=10.0, y=10.0, rock_abundance=0.0)
    mars = Regolith.for_site("mars", seed=5, x=10.0, y=10.0, rock_abundance=0.0)
    assert moon.resistance(1.0) > mars.resistance(1.0) > 0
    assert moon.resistance(2.0) > moon.resistance(0.0)
    again = Regolith.for_site("moon", seed=5, x=10.0, y=10.0, rock_abundance=0.0)
    assert again.layers == moon.layers  # seeded by the site: the same column every run


def test_a_buried_rock_jams_the_drill_and_a_retract_frees_it() -> None:
    s = system()
    s.inject("drill-jam", depth_m=0.6)
    s.drill.start(2.0, 10.0)
    s.step_to(70.0)
    st = s.read_drill()
    assert st.state == DrillState.JAMMED and st.depth_m == pytest.approx(0.6, abs=0.002)
    assert st.torque_nm == DrillConfig().stall_torque_nm and st.rate_mm_s == 0.0
    assert s.drill.jams == 1
    with pytest.raises(SamplingRefused, match="jammed"):
        s.drill.start(2.0, 10.0)
    s.drill.retract()
    s.step_to(110.0)
    st = s.read_drill()
    assert st.state == DrillState.IDLE and st.depth_m == 0.0
    assert s.read_container().mass_kg == pytest.approx(0.6 * DrillConfig().core_kg_per_m, rel=0.01)


def test_a_jam_left_pressing_overheats_the_motor_which_cuts_out_and_cools() -> None:
    s = system()
    s.inject("drill-jam", depth_m=0.3)
    s.drill.start(2.0, 10.0)
    t = 0.0
    while s.read_drill().state != DrillState.OVERHEATED and t < 2000:
        t += 10.0
        s.step_to(t)
    st = s.read_drill()
    assert st.state == DrillState.OVERHEATED and st.temp_c > DrillConfig().restart_c
    assert st.torque_nm == 0.0 and s.drill.overheats == 1
    with pytest.raises(SamplingRefused, match="temperature"):
        s.drill.start(2.0, 10.0)
    while s.read_drill().state == DrillState.OVERHEATED and t < 6000:
        t += 10.0
        s.step_to(t)
    assert s.read_drill().state == DrillState.IDLE
    assert s.read_drill().temp_c <= DrillConfig().restart_c


def test_hard_regolith_overheats_a_drill_fed_fast_where_soft_regolith_does_not() -> None:
    cfg = SamplingConfig(drill=DrillConfig(cutout_c=60.0, restart_c=40.0))  # a motor with a low cut-out
    soft = SamplingSystem(cfg, Regolith(strength=1.0))
    soft.drill.start(2.0, 12.0)
    soft.step_to(400.0)
    assert soft.drill.overheats == 0 and soft.read_drill().depth_m == pytest.approx(2.0)
    s = SamplingSystem(cfg, Regolith(strength=1.8))
    s.drill.start(2.0, 12.0)
    t = 0.0
    while s.drill.overheats == 0 and t < 400:
        t += 5.0
        s.step_to(t)
    assert s.drill.overheats == 1 and s.drill.jams == 0
    assert 0.3 < s.read_drill().depth_m < 2.0


def test_arm_reaches_the_surface_scoops_and_deposits_from_the_stow_pose() -> None:
    s = system()
    stow = s.config.arm.stow_deg
    assert s.arm.stowed and s.read_arm().reach_m == pytest.approx(0.6)
    with pytest.raises(SamplingRefused, match="above the surface"):
        s.arm.scoop()
    s.arm.move(-10.0, -40.0)
    s.step_to(5.0)
    assert s.read_arm().moving
    s.step_to(12.0)
    arm = s.read_arm()
    assert not arm.moving and (arm.shoulder_deg, arm.elbow_deg) == (-10.0, -40.0) and arm.reach_m > 1.8
    with pytest.raises(SamplingRefused, match="stow"):
        s.deposit()
    s.arm.scoop()
    s.step_to(20.0)
    assert s.read_arm().scooping and s.read_arm().force_n > 0
    s.step_to(30.0)
    assert s.read_arm().holding_kg == pytest.approx(0.4)
    s.arm.move(*stow)
    s.step_to(45.0)
    s.deposit()
    assert s.read_container().mass_kg == pytest.approx(0.4) and s.read_arm().holding_kg == 0.0


def test_pressing_the_scoop_into_the_ground_stops_the_arm_at_its_force_limit() -> None:
    s = system()
    s.arm.move(-40.0, -40.0)  # the scoop would be 1.5 m underground
    s.step_to(30.0)
    arm = s.read_arm()
    assert not arm.moving and (arm.shoulder_deg, arm.elbow_deg) != (-40.0, -40.0)
    assert 0 < arm.force_n <= s.config.arm.max_force_n


def test_container_seals_and_ascent_arms_only_when_ready() -> None:
    s = system()
    with pytest.raises(SamplingRefused, match="empty"):
        s.seal()
    s.container.add(0.5)
    with pytest.raises(SamplingRefused, match="not ready"):
        s.arm_ascent(True)
    s.seal()
    s.step_to(10.0)
    assert s.read_container().sealing and not s.read_container().sealed
    s.step_to(25.0)
    assert s.read_container().sealed and s.read_ascent().ready
    assert s.container.add(0.1) == 0.1  # a sealed container takes nothing more
    s.arm_ascent(True)
    assert s.read_ascent().armed


def test_world_steps_the_sampling_and_draws_its_power() -> None:
    busy, idle = World(kind="lander", seed=2), World(kind="lander", seed=2)
    busy.add_sampling().drill.start(2.0, 10.0)
    idle.add_sampling()
    busy.step_to(120.0)
    idle.step_to(120.0)
    assert busy.sampling is not None and busy.sampling.read_drill().depth_m == pytest.approx(1.2, abs=0.01)
    assert busy.power.battery.energy_wh < idle.power.battery.energy_wh


def test_sim_device_rejects_what_the_mechanism_refuses_and_unknown_options() -> None:
    world = World(kind="lander", seed=1)
    with open_device("sim://sampling", world=world) as dev:
        with pytest.raises(CommandRejectedError, match="outside"):
            dev.start_drill(9.0, 10.0)
    with pytest.raises(DeviceUrlError, match="sim://sampling"):
        open_device("sim://sampling?depth=3", world=world)


_ACTIONS = st.one_of(
    st.tuples(st.just("start"), st.floats(-1.0, 3.0), st.floats(-5.0, 30.0)),
    st.tuples(st.just("stop")), st.tuples(st.just("retract")),
    st.tuples(st.just("move"), st.floats(-90.0, 120.0), st.floats(-200.0, 30.0)),
    st.tuples(st.just("scoop")), st.tuples(st.just("deposit")), st.tuples(st.just("seal")),
    st.tuples(st.just("ascent"), st.booleans()), st.tuples(st.just("wait"), st.floats(0.0, 120.0)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_ACTIONS, max_size=25), st.booleans())
def test_any_command_sequence_keeps_the_mechanisms_consistent(actions: list[tuple], jam: bool) -> None:
    s = system()
    if jam:
        s.inject("drill-jam", depth_m=0.4)
    t = 0.0
    mass = 0.0
    sealed = False
    for act in actions:
        try:
            if act[0] == "start":
                s.drill.start(act[1], act[2])
            elif act[0] == "stop":
                s.drill.stop()
            elif act[0] == "retract":
                s.drill.retract()
            elif act[0] == "move":
                s.arm.move(act[1], act[2])
            elif act[0] == "scoop":
                s.arm.scoop()
            elif act[0] == "deposit":
                s.deposit()
            elif act[0] == "seal":
                s.seal()
            elif act[0] == "ascent":
                s.arm_ascent(act[1])
            else:
                t += act[1]
                s.step_to(t)
        except SamplingRefused as exc:
            assert str(exc) and exc.kind in ("range", "state")
        d, c = s.read_drill(), s.read_container()
        assert 0.0 <= d.depth_m <= s.config.drill.max_depth_m
        assert d.temp_c < s.config.drill.cutout_c + 5.0 and d.torque_nm <= s.config.drill.stall_torque_nm
        assert c.mass_kg >= mass - 1e-12 and c.mass_kg <= s.config.container.capacity_kg
        assert c.sealed or not sealed  # a seal is final
        assert not s.read_ascent().armed or s.read_ascent().ready
        if jam:
            assert d.depth_m <= 0.4 + 1e-9  # nobody drills through the buried rock
        mass, sealed = c.mass_kg, c.sealed
