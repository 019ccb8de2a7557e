"""The navigation component on the simulated world: driving, stops, bad input, persistence."""

import math

import pytest

from sim_hw.terrain import Terrain

pytestmark = pytest.mark.timeout(120)


def test_blind_arc_and_goto_reach_their_targets(make_rover):
    r = make_rover()
    r.cmd("NAV_MODE", mode="blind")
    t0 = r.world.truth()
    r.cmd("DRIVE_ARC", distance=1.0, curvature=0.0)
    resp = r.run_until_done("DRIVE_ARC", 20.0)
    assert resp is not None and resp.stage == "COMPLETED"
    r.run(1.0)
    t1 = r.world.truth()
    assert math.hypot(t1["x"] - t0["x"], t1["y"] - t0["y"]) == pytest.approx(1.0, abs=0.1)
    gx, gy = t1["x"] + 2.0, t1["y"] + 1.5
    r.cmd("NAV_GOTO", x=gx, y=gy, tolerance=0.2)
    resp = r.run_until_done("NAV_GOTO", 60.0)
    assert resp is not None and resp.stage == "COMPLETED", resp
    t2 = r.world.truth()
    assert math.hypot(t2["x"] - gx, t2["y"] - gy) < 0.35
    # the estimate follows the truth and reports its covariance
    assert math.hypot(r.tlm("nav.x_m") - t2["x"], r.tlm("nav.y_m") - t2["y"]) < 0.1
    assert 0.0 < r.tlm("nav.pos_sigma_m") < 0.5
    assert r.tlm("nav.distance_m") > 3.0
    assert r.events("GoalReached")


def test_tilt_beyond_the_limit_stops_the_drive(make_rover):
    r = make_rover(Terrain.plane(size_m=30.0, slope_deg=25.0, uphill_azimuth_deg=90.0, seed=3))
    r.cmd("NAV_MODE", mode="blind")
    r.cmd("DRIVE_ARC", distance=2.0, curvature=0.0)
    resp = r.run_until_done("DRIVE_ARC", 20.0)
    assert resp is not None and resp.stage == "FAILED" and "tilt" in resp.reason
    assert any("tilt" in e.text for e in r.events("SafetyStop"))
    r.run(1.0)
    assert r.tlm("nav.stops") >= 1 and "tilt" in r.tlm("nav.last_stop")


def test_wheel_stall_and_link_loss_stop_with_a_reason(make_rover):
    ter = Terrain.plane(size_m=30.0, seed=3)
    ter.add_rock(16.2, 15.0, radius=0.4, height=0.3)
    r = make_rover(ter)
    r.cmd("NAV_MODE", mode="blind")
    r.cmd("DRIVE_ARC", distance=3.0, curvature=0.0)
    resp = r.run_until_done("DRIVE_ARC", 30.0)
    assert resp is not None and resp.stage == "FAILED" and "stall" in resp.reason
    assert r.events("WheelStall") and any("stall" in e.text for e in r.events("SafetyStop"))
    # now the MCU goes away in the middle of a drive
    r.cmd("DRIVE_ARC", distance=-2.0, curvature=0.0)
    r.run(1.0)
    r.vehicle.devices["mcu"].close()
    resp = r.run_until_done("DRIVE_ARC", 5.0)
    assert resp is not None and resp.stage == "FAILED" and "link down" in resp.reason


def test_uncertainty_limit_and_stop_commands(make_rover):
    r = make_rover()
    r.cmd("NAV_MODE", mode="blind")
    r.cmd("PRM_SET", name="nav.pos_sigma_limit_m", value="0.05")
    r.cmd("DRIVE_ARC", distance=10.0, curvature=0.0)
    resp = r.run_until_done("DRIVE_ARC", 60.0)
    assert resp is not None and resp.stage == "FAILED" and "uncertainty" in resp.reason
    r.cmd("PRM_SET", name="nav.pos_sigma_limit_m", value="5")
    for stop in ("NAV_STOP", "DRIVE_STOP"):
        r.cmd("DRIVE_ARC", distance=5.0, curvature=0.5)
        r.run(1.0)
        r.cmd(stop)
        resp = r.run_until_done("DRIVE_ARC", 5.0)
        assert resp is not None and resp.stage == "FAILED", stop
        r.run(1.0)
        assert abs(r.world.truth()["speed"]) < 1e-3


def test_bad_goals_are_refused_counted_and_explained(make_rover):
    r = make_rover()
    x, y = r.tlm("nav.x_m"), r.tlm("nav.y_m")
    r.cmd("NAV_GOTO", x=x + 5000.0, y=y, tolerance=0.3)
    r.cmd("NAV_WAYPOINTS", points="", tolerance=0.3)
    r.cmd("NAV_WAYPOINTS", points="1,2;a,b", tolerance=0.3)
    r.cmd("NAV_GOTO", x=x, y=y, tolerance=50.0)  # out of the declared range: rejected before running
    r.run(1.0)
    goto = r.responses("NAV_GOTO")  # the rejects counter is sampled every half second
    assert [g.stage for g in goto] == ["ACCEPTED", "FAILED", "REJECTED"]
    assert "5000 m away, beyond the 1000 m" in goto[1].reason
    wp = [w for w in r.responses("NAV_WAYPOINTS") if w.stage == "FAILED"]
    assert "no waypoints" in wp[0].reason and "two numbers" in wp[1].reason
    assert r.tlm("nav.rejects") == 3
    assert len(r.events("NavCommandRejected")) == 3
    assert abs(r.world.truth()["speed"]) < 1e-6


def test_guarded_mode_stops_before_a_rock(make_rover):
    ter = Terrain.plane(size_m=30.0, seed=3)
    ter.add_rock(18.0, 15.0, radius=0.35, height=0.3)
    r = make_rover(ter)
    r.cmd("NAV_MODE", mode="guarded")
    r.cmd("NAV_GOTO", x=20.0, y=15.0, tolerance=0.3)
    resp = r.run_until_done("NAV_GOTO", 60.0)
    assert resp is not None and resp.stage == "FAILED" and "hazard ahead" in resp.reason
    t = r.world.truth()
    assert t["x"] < 18.0 - 0.35 - 0.2 and not t["stalled"]
    r.run(1.0)
    assert r.tlm("nav.hazards_seen") >= 1 and r.events("HazardAhead")


def test_autonav_goes_around_a_rock(make_rover):
    ter = Terrain.plane(size_m=30.0, seed=3)
    ter.add_rock(18.0, 15.0, radius=0.35, height=0.3)
    r = make_rover(ter)
    r.cmd("NAV_GOTO", x=21.0, y=15.0, tolerance=0.3)
    collided = False
    for _ in range(300):
        r.run(0.2)
        t = r.world.truth()
        collided |= math.hypot(t["x"] - 18.0, t["y"] - 15.0) < 0.35 + 0.25
        if any(x.stage in ("COMPLETED", "FAILED") for x in r.responses("NAV_GOTO")):
            break
    assert r.responses("NAV_GOTO")[-1].stage == "COMPLETED", r.responses("NAV_GOTO")[-1]
    assert not collided
    assert r.tlm("nav.plans") >= 1 and r.tlm("nav.vo_updates") >= 1


def test_pose_survives_a_restart(make_rover, tmp_path):
    state = tmp_path / "persist"
    r = make_rover(state_dir=state)
    r.cmd("NAV_MODE", mode="blind")
    r.cmd("DRIVE_ARC", distance=1.5, curvature=0.3)
    assert r.run_until_done("DRIVE_ARC", 30.0).stage == "COMPLETED"
    x, y, yaw = r.vehicle.by_name["nav"].ekf.pose
    pose = (x, y, math.degrees(yaw))
    r.vehicle.shutdown()
    again = make_rover(state_dir=state, reset=False)
    assert again.events("PoseRestored")
    assert again.tlm("nav.x_m") == pytest.approx(pose[0], abs=1e-3)
    assert again.tlm("nav.y_m") == pytest.approx(pose[1], abs=1e-3)
    assert again.tlm("nav.yaw_deg") == pytest.approx(pose[2], abs=0.05)
    assert pose[0] != pytest.approx(15.0, abs=0.5)  # it did move before the restart


def test_a_parked_rover_rewrites_its_pose_only_after_it_moves(make_rover, tmp_path):
    """The periodic pose write is skipped while the pose is the one on disk (an idle rover in a
    long fast-mode sol would otherwise sync a file a cycle); a move is written within a period."""
    state = tmp_path / "persist"
    r = make_rover(state_dir=state)
    nav = r.vehicle.by_name["nav"]
    path = nav._pose_path
    r.run(1.0)
    nav._persist()  # what is on disk is this pose
    first = path.stat()
    r.run(3 * nav.param("persist_period_s"))
    parked = path.stat()
    assert (parked.st_ino, parked.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)
    r.cmd("NAV_MODE", mode="blind")
    r.cmd("DRIVE_ARC", distance=1.0, curvature=0.0)
    assert r.run_until_done("DRIVE_ARC", 30.0).stage == "COMPLETED"
    r.run(nav.param("persist_period_s") + 1.0)
    assert path.stat().st_ino != first.st_ino  # replaced by the moved pose
    import json

    assert json.loads(path.read_text())["body"]["x"] != pytest.approx(15.0, abs=0.5)


@pytest.mark.timeout(240)
def test_a_goal_beyond_the_map_window_is_reached_as_the_window_scrolls(make_rover):
    """The map window (here 6 m square) scrolls with the rover and remembers what it saw, so a
    goal farther than the window reaches is planned toward and reached, around a rock beyond
    the first window's edge."""
    ter = Terrain.plane(size_m=30.0, seed=3)
    ter.add_rock(18.6, 15.1, radius=0.3, height=0.25)
    r = make_rover(ter, nav_options={"map_size_m": 6.0})
    t = r.world.truth()
    gx, gy = t["x"] + 6.5, t["y"]
    r.cmd("NAV_GOTO", x=gx, y=gy, tolerance=0.3)
    resp = r.run_until_done("NAV_GOTO", 90.0)
    assert resp is not None and resp.stage == "COMPLETED", resp
    t = r.world.truth()
    assert math.hypot(t["x"] - gx, t["y"] - gy) < 0.45
    assert r.events("GoalReached")
    r.run(1.0)
    assert r.tlm("nav.map_scrolls") >= 1


def _toward_an_unseen_rock(make_rover, **params):
    """A rover sent to (24, 15) past a rock at (21, 15) that lies beyond stereo range at the
    start, with one stereo pair a minute (and ``params`` as nav parameters): its terrain and rover."""
    ter = Terrain.plane(size_m=30.0, seed=3)
    ter.add_rock(21.0, 15.0, radius=0.35, height=0.3)
    r = make_rover(ter)
    for name, value in {"image_period_s": 60, **params}.items():
        r.cmd("PRM_SET", name=f"nav.{name}", value=str(value))
    r.run(0.5)
    r.cmd("NAV_GOTO", x=24.0, y=15.0, tolerance=0.3)
    return ter, r


def test_a_stall_on_an_unseen_rock_is_recovered_from(make_rover):
    """The rock lies beyond stereo range at the start and no second look comes before the rover
    reaches it (one pair a minute): the wheels stall on it, the rover marks it, backs off, looks
    again and drives around it to the goal."""
    _, r = _toward_an_unseen_rock(make_rover)
    resp = r.run_until_done("NAV_GOTO", 120.0)
    assert r.events("WheelStall") and r.events("Recovering")
    assert resp is not None and resp.stage == "COMPLETED", resp
    r.run(1.0)
    assert r.tlm("nav.recoveries") >= 1
    assert not r.events("SafetyStop")


def test_recoveries_are_bounded_and_a_stall_ends_the_goal_when_none_is_left(make_rover):
    _, r = _toward_an_unseen_rock(make_rover, recoveries=0)
    resp = r.run_until_done("NAV_GOTO", 120.0)
    assert resp is not None and resp.stage == "FAILED" and "stall" in resp.reason
    assert not r.events("Recovering")


def test_a_stall_while_backing_off_is_a_recovery_too_and_a_wedged_rover_gives_up_in_bounds(make_rover):
    """The wheels stall on an unseen rock; while the rover backs off, a rear wheel meets another
    (set down behind the left wheel then): that stall does not end the goal, the ground behind is
    marked as well and the rover plans on from where it stands. Wedged between the two (the
    left wheels cannot roll either way, so it cannot even turn), it spends its recoveries and
    the goal fails with the stall once none is left."""
    ter, r = _toward_an_unseen_rock(make_rover)
    end = r.clock.now() + 60.0
    while not r.events("Recovering") and r.clock.now() < end:
        r.run(0.1)
    assert r.events("Recovering")
    t = r.world.truth()
    ter.add_rock(t["x"] - 0.85, t["y"] + 0.25, radius=0.12, height=0.2)  # behind the left wheel
    resp = r.run_until_done("NAV_GOTO", 120.0)
    whys = [e.text for e in r.events("Recovering")]
    assert any("while backing off" in w for w in whys), whys
    assert resp is not None and resp.stage == "FAILED" and "stall" in resp.reason, resp
    r.run(1.0)
    assert r.tlm("nav.recoveries") == 8


def test_a_rover_left_tilted_by_a_back_off_drives_before_it_backs_off_again(make_rover):
    """Uphill on ground that tilts the rover within the margin of the limit, with rocks right
    behind its rear wheels: the tilt warning backs it off, the back-off stalls at once, and the
    rover stands tilted as before. It plans on from there; another tilt back-off waits until it
    has driven (before, one came within a tenth of a second, then another, and the goal's
    recoveries were spent standing still)."""
    ter = Terrain.plane(size_m=30.0, slope_deg=17.0, uphill_azimuth_deg=90.0, seed=3)
    for dy in (-0.25, 0.25):
        ter.add_rock(14.66, 15.0 + dy, radius=0.12, height=0.2)
    r = make_rover(ter)
    r.cmd("PRM_SET", name="nav.tilt_limit_deg", value="18.5")  # warns from 16.5 degrees
    r.run(0.2)
    t = r.world.truth()
    r.cmd("NAV_GOTO", x=t["x"] + 2.0, y=t["y"], tolerance=0.3)
    seen = 0
    tilts: list[float] = []  # distance driven at each tilt back-off
    stalls = 0
    end = r.clock.now() + 30.0
    while r.clock.now() < end and not [x for x in r.responses("NAV_GOTO") if x.stage in ("COMPLETED", "FAILED")]:
        r.run(0.1)
        for e in r.events("Recovering")[seen:]:
            if e.text.startswith("tilt"):
                tilts.append(r.world.truth()["distance_m"])
            stalls += "stall while backing off" in e.text
        seen = len(r.events("Recovering"))
    assert tilts and stalls >= 1
    assert all(b - a >= 0.1 for a, b in zip(tilts, tilts[1:], strict=False)), tilts
