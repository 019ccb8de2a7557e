"""Navigation: localization, hazard mapping, planning, path following and safe driving.

``Navigator`` (type ``nav``) runs every cycle of its rate group (50 Hz in the shipped
configurations): it propagates the pose filter from the drive's encoder counts and the IMU's
rates, checks the safety limits, and steers the wheels toward the active goal through the data
store (``<nav>.wheel_cmd``, applied by the drive component). Thinking happens while driving:
stereo pairs are taken every ``image_period_s`` and processed on the ``<nav>-vision`` worker
(disparity, terrain points, visual odometry); the result updates the filter and the elevation
map, and a new plan is asked of the ``<nav>-plan`` worker. The rover keeps following the old
path until the new one arrives; it holds only when the map shows a hazard on the path ahead.

Drive modes (``NAV_MODE``): ``blind`` drives straight to the goal and ignores the map;
``guarded`` drives straight but stops on a hazard ahead; ``autonav`` plans around hazards and
replans as the map grows. ``DRIVE_ARC`` is always blind. In every mode the drive stops, with a
``SafetyStop`` event saying why, on tilt beyond ``tilt_limit_deg``, a wheel stall, the drive
device (MCU link) failing, or position uncertainty beyond ``pos_sigma_limit_m``.

**Recovery** (autonav): a wheel stall or a tilt within ``tilt_margin_deg`` of the limit need not
end the goal. The ground ahead of
the leading wheels is marked a hazard in the map (what stopped the rover is there, whatever
stereo made of it), the rover backs off ``backoff_m`` the way it came, looks again and plans
around the mark, up to ``recoveries`` times a goal; a stall while backing off marks the ground
behind as well and plans from where the rover stands. A plan from inside a hazard margin may
leave it through the margin, but never closer to a solid hazard (a rock, a mark) than the rover
stands. A plan that finds no way is retried over the
whole map window and then through the outer part of the hazard margin before the goal fails
with "no path": a goal is called unreachable only when no search finds a way to it.

``OdometryNavigator`` (type ``nav_odometry``) is the same without a camera: blind and guarded
driving on wheel odometry and the IMU.

The pose is persisted (atomically) every ``persist_period_s`` and at shutdown, and restored at
setup, so it survives a restart.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from scipy.ndimage import distance_transform_edt

from flight.commands import PENDING, CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Param, Severity, command
from flight.nav.costmap import ElevationMap
from flight.nav.ekf import PoseFilter
from flight.nav.follower import PurePursuit, WheelCommand, arc_wheels
from flight.nav.geometry import attitude_from_gravity, wrap, yaw_rate_from_body
from flight.nav.planner import plan, smooth_path
from flight.nav.stereo import Capture, Mount, StereoVision, VisionResult
from flight.nav.waypoints import parse_waypoints
from flight.persist import CorruptFileError, read_checked_json, write_checked_json
from flight.worker import JobResult
from hal.contracts import Camera
from hal.errors import HalError

log = logging.getLogger(__name__)
#: cycles longer than this (s) with the wheels still hold the heading instead of integrating
#: the gyro (see :meth:`Navigator._propagate`)
HOLD_AFTER_S = 1.0
#: the periodic pose write is skipped while x, y (m), yaw (rad), z, sigma and distance (m) are
#: all this close to what is on disk (1 cm, 0.2 degrees): a parked rover's heading wanders with
#: the gyro's noise, and a restart a few tenths of a degree off is well inside its own sigma
_PERSIST_TOL = (0.01, 0.01, math.radians(0.2), 0.01, 0.01, 0.01)

#: how far (m) a rover drives after a recovery before a tilt within the margin backs it off
#: again (see :meth:`Navigator._check_safety`)
_MARGIN_REARM_M = 0.1

MODES = {"blind": 0, "guarded": 1, "autonav": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
POSE_FORMAT = "magpie-nav-pose-1"


class Navigator(Component):
    DEVICES: dict[str, type] = {"camera": Camera}
    #: cells about the start a plan may cross a hazard's core in, and the path check passes over
    _START_CLEAR = 2
    OPTIONS = {
        "drive": "drive", "imu": "imu", "link": "",
        "map_size_m": 40.0, "map_resolution_m": 0.1, "max_goal_m": 1000.0,
        "mast_forward_m": 0.1, "mast_height_m": 1.2, "cam_pan_deg": 0.0, "cam_tilt_deg": -20.0,
        "vision_cost_s": 0.3, "plan_cost_s": 0.2, "max_range_m": 5.0,
        "wheelbase_m": 0.4,
    }
    CHANNELS = (
        Channel("x_m", "f64", "m", doc="estimated position east"),
        Channel("y_m", "f64", "m", doc="estimated position north"),
        Channel("yaw_deg", "f32", "deg", doc="estimated heading (0 east, counter-clockwise)"),
        Channel("sigma_x_m", "f32", "m"), Channel("sigma_y_m", "f32", "m"),
        Channel("sigma_yaw_deg", "f32", "deg"),
        Channel("pos_sigma_m", "f32", "m", doc="largest 1-sigma position uncertainty",
                limits=Limits(yellow=(0.0, 0.5), red=(0.0, 1.0))),
        Channel("gyro_bias_rads", "f32", "rad/s"), Channel("odo_scale", "f32", doc="ground/wheel distance"),
        Channel("mode", "u8", doc="0 blind, 1 guarded, 2 autonav", update="on_change"),
        Channel("active", "bool", doc="a goal or arc is being driven", update="on_change"),
        Channel("goal_x_m", "f64", "m", update="on_change"), Channel("goal_y_m", "f64", "m", update="on_change"),
        Channel("waypoints_left", "u16", update="on_change"),
        Channel("progress", "f32", doc="fraction of the present path behind the rover"),
        Channel("remaining_m", "f32", "m", doc="path length still to drive"),
        Channel("distance_m", "f64", "m", doc="distance driven, as estimated"),
        Channel("hazard_cells", "u32", doc="hazard cells in the map window", update="on_change"),
        Channel("map_scrolls", "u32", doc="times the map window moved with the rover", update="on_change"),
        Channel("map_tiles_stored", "u32", doc="map tiles remembered outside the window", update="on_change"),
        Channel("hazards_seen", "u32", doc="hazards found on the path ahead", update="on_change"),
        Channel("stops", "u32", doc="safety stops", update="on_change"),
        Channel("last_stop", "str", doc="why the last safety stop happened", update="on_change"),
        Channel("vo_updates", "u32", update="on_change"), Channel("vo_rejects", "u32", update="on_change"),
        Channel("plans", "u32", update="on_change"), Channel("plan_failures", "u32", update="on_change"),
        Channel("rejects", "u32", doc="navigation commands refused", update="on_change"),
        Channel("recoveries", "u32", doc="back-offs after a stall or a tilt stop", update="on_change"),
    )
    EVENTS = (
        Event("GoalStarted", Severity.ACTIVITY_HI, "driving to ({x}, {y}) in {mode} mode",
              (Arg("x", "f32"), Arg("y", "f32"), Arg("mode", "str"))),
        Event("WaypointReached", Severity.ACTIVITY_LO, "waypoint ({x}, {y}) reached",
              (Arg("x", "f32"), Arg("y", "f32"))),
        Event("GoalReached", Severity.ACTIVITY_HI, "goal ({x}, {y}) reached, {error} m from it",
              (Arg("x", "f32"), Arg("y", "f32"), Arg("error", "f32"))),
        Event("GoalFailed", Severity.WARNING_LO, "goal failed: {why}", (Arg("why", "str"),)),
        Event("SafetyStop", Severity.WARNING_HI, "drive stopped: {why}", (Arg("why", "str"),), throttle=20),
        Event("HazardAhead", Severity.ACTIVITY_HI, "hazard on the path at ({x}, {y})",
              (Arg("x", "f32"), Arg("y", "f32")), throttle=10),
        Event("Replanned", Severity.DIAGNOSTIC, "new path: {points} points, {length} m",
              (Arg("points", "u16"), Arg("length", "f32")), throttle=10),
        Event("ArcDone", Severity.ACTIVITY_HI, "arc of {distance} m done", (Arg("distance", "f32"),)),
        Event("PoseReset", Severity.ACTIVITY_HI, "pose reset to ({x}, {y}, {yaw} deg)",
              (Arg("x", "f32"), Arg("y", "f32"), Arg("yaw", "f32"))),
        Event("PoseRestored", Severity.ACTIVITY_HI, "pose restored at ({x}, {y}, {yaw} deg)",
              (Arg("x", "f32"), Arg("y", "f32"), Arg("yaw", "f32"))),
        Event("PoseNotRestored", Severity.WARNING_LO, "saved pose not used: {why}", (Arg("why", "str"),)),
        Event("ModeChanged", Severity.ACTIVITY_HI, "drive mode {mode}", (Arg("mode", "str"),)),
        Event("NavCommandRejected", Severity.WARNING_LO, "{command} refused: {why}",
              (Arg("command", "str"), Arg("why", "str")), throttle=5, throttle_window_s=60.0),
        Event("VisionTrouble", Severity.WARNING_LO, "vision: {why}", (Arg("why", "str"),), throttle=5),
        Event("Recovering", Severity.WARNING_LO, "{why}: backing off {distance} m to re-map and re-plan ({left} left)",
              (Arg("why", "str"), Arg("distance", "f32"), Arg("left", "u8")), throttle=10),
    )
    PARAMS = (
        Param("max_speed_mps", "f32", 0.2, "m/s", 0.01, 2.0, doc="outer wheel speed on benign terrain"),
        Param("lookahead_m", "f32", 0.8, "m", 0.2, 5.0),
        Param("tilt_limit_deg", "f32", 20.0, "deg", 1.0, 60.0),
        Param("tilt_margin_deg", "f32", 2.0, "deg", 0.0, 30.0,
              doc="a goal backs away from a tilt this close to the limit (autonav), before passing it"),
        Param("pos_sigma_limit_m", "f32", 1.5, "m", 0.05, 100.0),
        Param("hazard_check_m", "f32", 1.0, "m", 0.2, 5.0, doc="how far ahead the path is checked"),
        Param("image_period_s", "f32", 1.0, "s", 0.2, 60.0),
        Param("slope_limit_deg", "f32", 18.0, "deg", 1.0, 45.0),
        Param("step_limit_m", "f32", 0.08, "m", 0.01, 1.0),
        Param("roughness_limit_m", "f32", 0.05, "m", 0.005, 1.0),
        Param("vo_enabled", "bool", True),
        Param("persist_period_s", "f32", 30.0, "s", 1.0, 3600.0),
        Param("recoveries", "u8", 8, "", 0, 20,
              doc="times one goal may back off, re-map and re-plan after a wheel stall or a tilt stop"),
        Param("backoff_m", "f32", 0.4, "m", 0.1, 3.0, doc="how far a recovery backs off"),
    )

    # -- life cycle ----------------------------------------------------------------------------

    def bind(self, fw: Any) -> None:
        super().bind(fw)
        ex = fw.executive
        self._vision_worker = None
        if "camera" in self.DEVICES:
            self._vision_worker = ex.add_worker(f"{self.name}-vision", self._vision_job, self._on_vision,
                                                queue_size=1, sim_cost_s=float(self.options["vision_cost_s"]))
        self._plan_worker = ex.add_worker(f"{self.name}-plan", self._plan_job, self._on_plan,
                                          queue_size=1, sim_cost_s=float(self.options["plan_cost_s"]))

    def setup(self) -> None:
        o = self.options
        self._camera: Camera | None = self.devices.get("camera")
        self.ekf = PoseFilter()
        self._z = 0.0
        self._mode = MODES["autonav"] if self._camera is not None else MODES["guarded"]
        self._g: list[float] | None = None
        self._pitch = self._roll = 0.0
        self._wheel_speed = 0.0
        self._last_ticks: tuple[float, int, int] | None = None
        self._last_rate = 0.0
        self._tilt_rate = 0.0
        self._geometry = (0.1, 0.5, 4096)
        self._cmd = (0.0, 0.0)
        self._cmd_seq = 0
        self._epoch = 0
        self._task: str | None = None  # "goto" or "arc"
        self._pending_cmd = ""
        self._waypoints: list[tuple[float, float]] = []
        self._tolerance = 0.3
        self._follower: PurePursuit | None = None
        self._arc: tuple[float, float, float] | None = None  # start distance, target distance, curvature
        self._hold = False
        self._hold_since = 0.0
        self._blocked_s = -math.inf  # when the path ahead was last found blocked
        self._plan_fail_streak = 0
        # how hard the planner looks (see _request_plan): 0 near the straight line with the full
        # hazard margin, 1 over the whole window, 2 also through the margin's outer part
        self._plan_level = 0
        self._plan_level_ok = 0
        # a recovery in progress: (distance at its start, signed distance to back off, start time)
        self._recovery: tuple[float, float, float] | None = None
        self._recoveries_left = 0
        self._margin_rearm_m = 0.0  # distance driven from which a tilt warning backs off again
        self._counts = {"hazards_seen": 0, "stops": 0, "vo_updates": 0, "vo_rejects": 0, "plans": 0,
                        "plan_failures": 0, "rejects": 0, "recoveries": 0}
        self._last_stop = ""
        self._frame_id = 0
        self._last_capture = -math.inf
        self._vision_reset = True
        self._plan_request = 0
        self._goal_id = 0
        self._last_tlm = -math.inf
        self._last_persist = self.now()
        self._persisted: tuple[float, ...] | None = None  # the pose last written to disk
        self._vision = StereoVision(Mount(o["mast_forward_m"], o["mast_height_m"], o["cam_pan_deg"],
                                          o["cam_tilt_deg"]), max_range_m=float(o["max_range_m"]))
        self._restore()
        self._new_map()
        self._telemetry(force=True)

    def shutdown(self) -> None:
        self._persist()

    def on_param(self, name: str, value: Any) -> None:
        if name in ("slope_limit_deg", "step_limit_m", "roughness_limit_m"):
            self._apply_limits()

    def _apply_limits(self) -> None:
        from dataclasses import replace

        self.map.limits = replace(self.map.limits, slope_deg=self.param("slope_limit_deg"),
                                  step_m=self.param("step_limit_m"), roughness_m=self.param("roughness_limit_m"))

    def _new_map(self) -> None:
        x, y, _ = self.ekf.pose
        self.map = ElevationMap((x, y), float(self.options["map_size_m"]), float(self.options["map_resolution_m"]))
        self._apply_limits()

    # -- persistence ---------------------------------------------------------------------------

    @property
    def _pose_path(self) -> Any:
        return self.fw.state_dir / f"{self.name}_pose.json"

    def _persist(self, periodic: bool = False) -> None:
        """Write the pose file (atomically, synced). ``periodic``: the persist period's write,
        skipped while the pose is within :data:`_PERSIST_TOL` of the one already on disk (a
        parked rover writes and syncs nothing each idle cycle)."""
        x, y, yaw = self.ekf.pose
        pose = (x, y, yaw, self._z, self.ekf.pos_sigma(), self.ekf.distance_m)
        self._last_persist = self.now()
        last = self._persisted
        if periodic and last is not None and all(
            abs(a - b) < tol for a, b, tol in zip(pose, last, _PERSIST_TOL, strict=True)
        ):
            return
        body = {"x": x, "y": y, "yaw": yaw, "z": self._z, "pos_sigma_m": pose[4],
                "distance_m": self.ekf.distance_m, "time_s": self.now()}
        try:
            write_checked_json(self._pose_path, POSE_FORMAT, body)
        except OSError as exc:
            log.warning("%s: cannot persist the pose: %s", self.name, exc)
            return
        self._persisted = pose

    def _restore(self) -> None:
        try:
            body = read_checked_json(self._pose_path, POSE_FORMAT)
        except CorruptFileError as exc:
            self.event("PoseNotRestored", why=str(exc))
            return
        if body is None:
            return
        try:
            x, y, yaw = float(body["x"]), float(body["y"]), float(body["yaw"])
            sigma = max(0.01, float(body.get("pos_sigma_m", 0.01)))
        except (KeyError, TypeError, ValueError) as exc:
            self.event("PoseNotRestored", why=f"bad content: {exc}")
            return
        self.ekf.reset(x, y, yaw, pos_sigma_m=sigma)
        self.ekf.distance_m = float(body.get("distance_m", 0.0))
        self._z = float(body.get("z", 0.0))
        self.event("PoseRestored", x=x, y=y, yaw=math.degrees(yaw))

    # -- the cycle -----------------------------------------------------------------------------

    def step(self) -> None:
        self._propagate()
        x, y, _ = self.ekf.pose
        if self.map.follow(x, y) and self._task == "goto" and self._mode == MODES["autonav"]:
            self._request_plan()
        if self._task is not None:
            self._check_safety()
        if self._task == "goto" and self._recovery is not None:
            self._drive_recovery()
        elif self._task == "goto":
            self._drive_goto()
        elif self._task == "arc":
            self._drive_arc()
        self._maybe_capture()
        now = self.now()
        if now - self._last_persist >= self.param("persist_period_s"):
            self._persist(periodic=True)
        self._telemetry()

    def _propagate(self) -> None:
        geo = self.read(f"{self.options['drive']}.geometry")
        if geo is not None:
            self._geometry = geo
        ticks = self.read(f"{self.options['drive']}.ticks")
        reading = self.read(f"{self.options['imu']}.reading")
        if ticks is None:
            return
        last = self._last_ticks
        self._last_ticks = ticks
        dt = ticks[0] - last[0] if last is not None else 0.0
        radius, track, tpr = self._geometry
        k = 2.0 * math.pi * radius / tpr
        dl = dr = 0.0
        if last is not None and dt > 0:
            dl, dr = (ticks[1] - last[1]) * k, (ticks[2] - last[2]) * k
        rate = self._last_rate
        if reading is not None:
            # gravity = specific force less the body's own acceleration (wheel speed change and
            # the centripetal term), low-passed; lunar gravity is small enough that an
            # uncorrected start would fake degrees of pitch
            v = 0.5 * (dl + dr) / dt if dt > 0 else 0.0
            acc = (v - self._wheel_speed) / dt if dt > 0 else 0.0
            self._wheel_speed = v
            w = np.asarray(reading.gyro_rads)
            f = reading.accel_mps2
            a = (f[0] - acc, f[1] - v * float(w[2]), f[2])
            if self._g is None:
                self._g = list(a)
            else:
                # between samples the body turns under gravity, so the estimate is first turned
                # by the gyro (a world-fixed vector seen from the body turns by -w x g), then
                # pulled toward the measurement: a low pass alone lags the rocking by degrees,
                # and the heading rate below is only as good as this attitude
                wx, wy, wz = float(w[0]), float(w[1]), float(w[2])
                gx, gy, gz = self._g
                h = dt if dt > 0 else 0.0
                turned = (gx - h * (wy * gz - wz * gy), gy - h * (wz * gx - wx * gz), gz - h * (wx * gy - wy * gx))
                self._g = [g + 0.02 * (x - g) for g, x in zip(turned, a, strict=True)]
            self._pitch, self._roll = attitude_from_gravity(tuple(self._g))  # type: ignore[arg-type]
            # the heading's rate (Euler yaw, about world z then pitch then roll), not the world-z
            # component of the body rate: the two differ by a term in the pitch and roll rates
            # that does not integrate away on rough ground (degrees over a few metres)
            rate = yaw_rate_from_body(w, self._pitch, self._roll)
            self._tilt_rate = float(math.hypot(w[0], w[1]))
        if last is None or dt <= 0:
            self._last_rate = rate
            return
        ds = 0.5 * (dl + dr)
        parked = dl == 0 and dr == 0 and self._cmd == (0.0, 0.0)
        if parked and dt > HOLD_AFTER_S:
            # a long cycle with the wheels still and none commanded (a fast-mode idle cycle is a
            # minute): one gyro reading cannot stand for the whole span (integrated, it swung a
            # parked heading by a degree a cycle), and a rover that cannot turn holds its heading
            # (the gyro still tells its bias, below). At the nav rate the gyro is integrated, so
            # a parked rover settling on a slope is followed.
            self.ekf.hold(dt)
        else:
            self.ekf.predict(ds * math.cos(self._pitch), self._last_rate, rate, dt,
                             tilt_rate=self._tilt_rate, grade_rad=self._pitch)
        self._z += ds * math.sin(self._pitch)
        if parked:
            self.ekf.update_zero_rate(rate)
        elif abs(ds) > 1e-4:
            self.ekf.update_wheel_rate((dr - dl) / track / dt, 0.5 * (rate + self._last_rate))
        self._last_rate = rate

    # -- wheels ----------------------------------------------------------------------------------

    def _wheels(self, left: float, right: float) -> None:
        if (left, right) == self._cmd:
            return
        self._cmd = (left, right)
        self._cmd_seq += 1
        self.publish("wheel_cmd", (self._epoch, self._cmd_seq, left, right))

    def _end_task(self, ok: bool, why: str = "") -> None:
        self._wheels(0.0, 0.0)
        if self._pending_cmd:
            self.fw.cmd.complete(self._pending_cmd, ok, why)
        self._pending_cmd = ""
        self._task = None
        self._follower = None
        self._arc = None
        self._recovery = None
        self._hold = False
        self._waypoints = []
        self._goal_id += 1

    def _safety_stop(self, why: str) -> None:
        self._counts["stops"] += 1
        self._last_stop = why
        self.event("SafetyStop", why=why)
        self._end_task(False, why)

    def _check_safety(self) -> None:
        drive = self.options["drive"]
        epoch = self.read(f"{drive}.stop_epoch", 0)
        if epoch != self._epoch:
            self._epoch = epoch
            why = self.read(f"{drive}.stop_reason", "") or "no reason given"
            if why == "wheel stall" and self._recover("wheel stall"):
                return
            self._safety_stop(f"drive stopped ({why})")
            return
        tilt = self.read(f"{self.options['imu']}.tilt_deg")
        limit = self.param("tilt_limit_deg")
        over = tilt is not None and tilt > limit
        # the attitude the heading rate is taken through (gyro-propagated gravity) follows the
        # body into a dip without the lag of a low-passed tilt: it is what warns of the limit
        own = math.degrees(math.acos(max(-1.0, min(1.0, math.cos(self._pitch) * math.cos(self._roll)))))
        margin = self.param("tilt_margin_deg")
        # a warning within the margin is heeded once the rover has driven a little since the
        # last recovery ended: stopped where a back-off left it, still tilted within the margin
        # (it backed into a dip, or stalled backing off), it would otherwise back off again at
        # once, and again, and spend every recovery of the goal in a fraction of a second
        # standing still; beyond the limit nothing waits
        warned = own > limit - margin and self.ekf.distance_m >= self._margin_rearm_m
        if (over or warned) and self._recovery is None:
            # the map's slopes are planes over a rover-sized disc and a crater's rim can tip the
            # wheels further: a goal backs away from ground that tilts it close to the limit,
            # marking it, before it passes the limit; beyond the limit the drive stops
            if over:
                why = f"tilt {tilt:.1f} deg beyond the {limit:.0f} deg limit"
            else:
                why = f"tilt {own:.1f} deg within {margin:.0f} deg of the {limit:.0f} deg limit"
            if self._recover(why):
                return
            if over:
                self._safety_stop(why)
                return
        if self.read(f"{drive}.stalled", False) and self._recovery is None:
            self._safety_stop("wheel stall")
            return
        link = self.options["link"]
        link_up = self.fw.tlm.get(f"{link}.up") if link else True
        if not self.read(f"{drive}.device_ok", True) or link_up is False:
            self._safety_stop("MCU link down")
            return
        sigma = self.ekf.pos_sigma()
        if sigma > self.param("pos_sigma_limit_m"):
            self._safety_stop(f"position uncertainty {sigma:.2f} m beyond "
                              f"{self.param('pos_sigma_limit_m'):.2f} m")

    # -- goals -----------------------------------------------------------------------------------

    def _speed(self) -> float:
        vmax = self.param("max_speed_mps")
        if self._mode == MODES["blind"] or self._follower is None:
            return vmax
        x, y, _ = self.ekf.pose
        tx, ty = self._follower.lookahead_point(x, y)
        cost = max(self.map.cost_at(x, y), self.map.cost_at(tx, ty))
        if not math.isfinite(cost):
            return 0.5 * vmax
        # full speed while every hazard measure is within two thirds of its limit (cost 3);
        # slow linearly to 60% at the limit (cost 4) and beside hazards (which add 1)
        return vmax * max(0.6, min(1.0, 1.0 - 0.4 * (cost - 3.0) / 1.5))

    def _start_leg(self) -> None:
        x, y, _ = self.ekf.pose
        gx, gy = self._waypoints[0]
        self._goal_id += 1
        self._follower = PurePursuit([(x, y), (gx, gy)], self._tolerance, self._geometry[1],
                                     self.param("lookahead_m"))
        self._hold = False
        if self._mode == MODES["autonav"]:
            self._request_plan()

    def _drive_goto(self) -> None:
        f = self._follower
        if f is None:
            return
        x, y, yaw = self.ekf.pose
        if self._mode != MODES["blind"] and self._hazard_ahead(f, x, y):
            return
        if self._hold:
            self._wheels(0.0, 0.0)
            if self.now() - self._hold_since > 30.0:
                self._safety_stop("held for 30 s without a usable path")
            return
        cmd: WheelCommand = f.step(x, y, yaw, self._speed())
        if cmd.done:
            gx, gy = self._waypoints.pop(0)
            err = math.hypot(gx - x, gy - y)
            if self._waypoints:
                self.event("WaypointReached", x=gx, y=gy)
                self._start_leg()
                return
            self.event("GoalReached", x=gx, y=gy, error=err)
            self._end_task(True)
            return
        self._wheels(cmd.left, cmd.right)

    def _hazard_ahead(self, f: PurePursuit, x: float, y: float) -> bool:
        i0 = f.index
        n = int(self.param("hazard_check_m") / 0.05)
        ahead = f.path[i0 : i0 + n]
        if len(ahead):
            # the cells about the rover the planner may cross a hazard's core in (it must be able
            # to leave where it stands) are not checked: a path the plan allows is one it drives
            m = self.map
            r0, c0 = m.cell(x, y)
            rr = np.floor((ahead[:, 1] - m.origin[1]) / m.resolution_m) - r0
            cc = np.floor((ahead[:, 0] - m.origin[0]) / m.resolution_m) - c0
            far = np.hypot(ahead[:, 0] - x, ahead[:, 1] - y) > 0.2
            ahead = ahead[(rr * rr + cc * cc > self._START_CLEAR**2) & far]
        hit = self.map.blocked_along(ahead, core=True) if len(ahead) else None
        if hit is None:
            if self._hold and self._mode == MODES["autonav"]:
                self._hold = False
            return False
        now = self.now()
        if not self._hold and now - self._blocked_s > 5.0:
            # a new hazard, not the same one again after a replan: the 20 s allowance to find a
            # way around runs from the first time the path was found blocked
            self._counts["hazards_seen"] += 1
            self._hold_since = now
            self.event("HazardAhead", x=hit[0], y=hit[1])
        self._blocked_s = now
        if now - self._hold_since > 20.0:
            self._safety_stop(f"hazard ahead at ({hit[0]:.2f}, {hit[1]:.2f}) and no way around it found")
            return True
        if self._mode == MODES["guarded"]:
            self._safety_stop(f"hazard ahead at ({hit[0]:.2f}, {hit[1]:.2f})")
            return True
        self._hold = True
        self._wheels(0.0, 0.0)
        self._request_plan()
        return True

    # -- recovery --------------------------------------------------------------------------------

    def _recover(self, why: str) -> bool:
        """Begin a recovery from a stop the rover can back away from; False if none is allowed.

        The ground that stopped the rover is marked as a hazard in the map (a rock the stereo
        map missed, a ledge, a slope steeper than it looked), the rover backs off ``backoff_m``
        the way it came, and then holds for a fresh look and a new plan around the mark.
        """
        if self._task != "goto" or self._mode != MODES["autonav"]:
            return False
        backing = self._recovery is not None
        if (backing and why != "wheel stall") or self._recoveries_left <= 0:
            return False
        self._recoveries_left -= 1
        self._counts["recoveries"] += 1
        left, right = self._cmd
        ahead = 1.0 if left + right >= 0.0 else -1.0
        if abs(left + right) > 0.2 * max(abs(left), abs(right), 1e-9):
            # the wheels were rolling (not turning on the spot): what stopped them lies just
            # beyond the leading wheels
            x, y, yaw = self.ekf.pose
            half = 0.5 * float(self.options["wheelbase_m"]) + 0.15
            c, s = math.cos(yaw), math.sin(yaw)
            # a stall's rock is of unknown size and solid: a wide mark; ground that tipped the
            # rover is only steep, and wide marks of it would soon fence the rover in
            stall = why.startswith("wheel stall")
            for lat in (-0.5 * self._geometry[1], 0.0, 0.5 * self._geometry[1]):
                self.map.mark(x + ahead * half * c - lat * s, y + ahead * half * s + lat * c,
                              0.2 if stall else 0.12, solid=stall)
        if backing:
            # stalled again while backing off: the ground behind is marked too, and the rover
            # plans from where it stands (between two marks, it can still turn on the spot)
            self.event("Recovering", why=f"{why} while backing off", distance=0.0, left=self._recoveries_left)
            self._end_backoff()
            return True
        dist = float(self.param("backoff_m"))
        self._recovery = (self.ekf.distance_m, -ahead * dist, self.now())
        self._follower = None
        self.event("Recovering", why=why, distance=dist, left=self._recoveries_left)
        return True

    def _drive_recovery(self) -> None:
        assert self._recovery is not None
        start, target, t0 = self._recovery
        vmax = max(self.param("max_speed_mps"), 1e-3)
        if self.ekf.distance_m - start < abs(target) and self.now() - t0 < 4.0 * abs(target) / vmax:
            speed = 0.6 * vmax * (1.0 if target >= 0 else -1.0)
            self._wheels(speed, speed)
            return
        self._end_backoff()

    def _end_backoff(self) -> None:
        """Backed off: stop, look again and plan from here."""
        self._recovery = None
        self._margin_rearm_m = self.ekf.distance_m + _MARGIN_REARM_M
        self._wheels(0.0, 0.0)
        x, y, _ = self.ekf.pose
        gx, gy = self._waypoints[0]
        self._follower = PurePursuit([(x, y), (gx, gy)], self._tolerance, self._geometry[1],
                                     self.param("lookahead_m"))
        self._hold = True
        self._hold_since = self.now()
        self._last_capture = -math.inf
        self._request_plan()

    def _drive_arc(self) -> None:
        assert self._arc is not None
        start, target, curvature = self._arc
        done = self.ekf.distance_m - start
        if done >= abs(target) - 0.01:
            self.event("ArcDone", distance=target)
            self._end_task(True)
            return
        speed = self.param("max_speed_mps") * (1.0 if target >= 0 else -1.0)
        self._wheels(*arc_wheels(speed, curvature, self._geometry[1]))

    # -- planning --------------------------------------------------------------------------------

    def _request_plan(self) -> None:
        if not self._waypoints or self._plan_worker.depth:
            return
        m = self.map
        x, y, _ = self.ekf.pose
        goal = self._waypoints[0]
        # a goal beyond the map window: plan to the last point on the way to it inside the
        # window; the path goes on to the goal straight, and the window scrolls as the rover
        # drives, so the plan reaches farther with every replan
        gx, gy = m.toward(x, y, goal[0], goal[1], margin_m=1.0)
        beyond = None if (gx, gy) == goal else goal
        s, g = m.cell(x, y), m.cell(gx, gy)
        # the search window: around the start and the goal, the whole map window when a plan
        # there found no way
        margin = 40 if self._plan_level == 0 else m.n
        r0 = max(0, min(s[0], g[0]) - margin)
        r1 = min(m.n, max(s[0], g[0]) + margin + 1)
        c0 = max(0, min(s[1], g[1]) - margin)
        c1 = min(m.n, max(s[1], g[1]) + margin + 1)
        window = m.cost[r0:r1, c0:c1].copy()
        core = m.core[r0:r1, c0:c1].copy()
        solid = m.solid[r0:r1, c0:c1].copy()
        self._plan_request += 1
        grow = int(math.ceil(m.limits.inflate_m / m.resolution_m))  # the hazards' growth, in cells
        payload = (self._goal_id, window, (s[0] - r0, s[1] - c0), (g[0] - r0, g[1] - c0), (r0, c0),
                   m.origin, m.resolution_m, grow + 1, beyond, core, self._tolerance, self._plan_level, solid,
                   grow)
        self._plan_worker.submit(payload, self.fw.clock.now_ns())

    @staticmethod
    def _plan_job(payload: tuple) -> tuple[list[tuple[float, float]], float]:
        (goal_id, cost, start, goal, (r0, c0), origin, res, goal_clear, beyond, core, tolerance, level, solid,
         grow) = payload
        if level >= 2:
            # the last resort before "no path": the outer part of the hazard margin (beyond the
            # core the check on the path ahead refuses) is passable, at a price that keeps
            # the path in it only where there is no other way
            cost = np.where(~np.isfinite(cost) & ~core, 25.0, cost)
        # the rover stands where it stands: clear a disc around it so it can leave a hazard margin,
        # but not through a hazard's core beyond the few centimetres the check on the path ahead
        # passes over (a path it would refuse to drive at once: hold, replan the same, hold again)
        # -- and no closer to a rock than it stands: a disc cleared whatever the rock let each
        # plan, made a little farther on, creep the rover on toward a rock beside it until the
        # corners of the body met it (ground merely steep or rough may be crept through)
        rr, cc = np.ogrid[: cost.shape[0], : cost.shape[1]]
        d2 = (rr - start[0]) ** 2 + (cc - start[1]) ** 2
        if solid.any() and not np.isfinite(cost[start]):
            clear = distance_transform_edt(~solid)
            away = clear >= min(float(clear[start]), float(grow)) - 1e-9
        else:
            away = np.ones(cost.shape, bool)
        near = away & ((d2 <= Navigator._START_CLEAR**2) | ((d2 <= 4**2) & ~core))
        # and the goal, by the hazard growth and a cell: a goal beside a steep patch lies in the
        # grown margin; again not its core, which the check on the path ahead would refuse
        g2 = (rr - goal[0]) ** 2 + (cc - goal[1]) ** 2
        near |= (g2 <= goal_clear ** 2) & ~core
        cost = np.where(near & ~np.isfinite(cost), 3.0, cost)
        if not np.isfinite(cost[goal]):
            # the goal itself is within a hazard's core: aim at the nearest drivable cell close
            # enough that arriving there (within half the tolerance) is within the tolerance
            close = (g2 <= (0.5 * tolerance / res) ** 2) & np.isfinite(cost)
            if not close.any():
                raise ValueError(f"the goal lies in a hazard (no drivable ground within {0.5 * tolerance:.2f} m)")
            goal = tuple(int(i) for i in np.unravel_index(np.argmin(np.where(close, g2, np.inf)), cost.shape))
            tol_scale = 0.5
        else:
            tol_scale = 1.0
        path, _ = plan(cost, start, goal)
        cells = smooth_path(cost, path)
        pts = [(origin[0] + (c + c0 + 0.5) * res, origin[1] + (r + r0 + 0.5) * res) for r, c in cells]
        return (pts + [beyond] if beyond is not None else pts), tol_scale

    def _on_plan(self, result: JobResult) -> None:
        goal_id = result.payload[0]
        if goal_id != self._goal_id or self._task != "goto":
            return
        if not result.ok:
            # first look harder (the whole window, then through the hazard margin's outer
            # part); the map may be wrong for a moment (a false hazard): hold, look again and
            # replan, and give up only when several plans in a row find no way at all
            self._counts["plan_failures"] += 1
            self._plan_level_ok = 0
            if self._plan_level < 2:
                self._plan_level += 1
                self._request_plan()
                return
            self._plan_fail_streak += 1
            why = result.error.split(": ", 1)[-1]
            if self._plan_fail_streak >= 5:
                self.event("GoalFailed", why=f"no path: {why}")
                self._end_task(False, f"no path: {why}")
                return
            self._hold = True
            self._hold_since = self.now()
            self._wheels(0.0, 0.0)
            return
        self._plan_fail_streak = 0
        self._counts["plans"] += 1
        if self._plan_level > 0:
            # back to the plain search once the harder one has served for a while
            self._plan_level_ok += 1
            if self._plan_level_ok >= 10:
                self._plan_level, self._plan_level_ok = 0, 0
        pts, tol_scale = result.value
        x, y, _ = self.ekf.pose
        # from where the rover is to the middle of the cell the plan began in (a few centimetres,
        # inside the disc the plan may cross a hazard's core in), then the plan: starting the
        # plan's first leg at the pose instead would bend it into cells the plan never allowed
        pts.insert(0, (x, y))
        self._follower = PurePursuit(pts, self._tolerance * tol_scale, self._geometry[1], self.param("lookahead_m"))
        self.event("Replanned", points=len(pts), length=self._follower.length_m)
        self._hold = False

    # -- vision ----------------------------------------------------------------------------------

    def _maybe_capture(self) -> None:
        w = self._vision_worker
        if w is None or self._camera is None or w.depth or self._task != "goto":
            return
        if self._mode == MODES["blind"]:
            return
        now = self.now()
        if now - self._last_capture < self.param("image_period_s"):
            return
        self._last_capture = now
        try:
            pair = self._camera.capture_stereo()
        except (HalError, NotImplementedError) as exc:
            self.event("VisionTrouble", why=f"capture failed: {exc}")
            return
        model = pair.left.model
        if model is None:
            self.event("VisionTrouble", why="frames carry no camera model")
            return
        self._frame_id += 1
        x, y, yaw = self.ekf.pose
        cap = Capture(pair.left.image, pair.right.image, model, pair.baseline_m, self._frame_id,
                      (x, y, self._z, yaw, self._pitch, self._roll))
        self.ekf.clone(self._frame_id)
        reset = self._vision_reset or not self.param("vo_enabled")
        self._vision_reset = False
        w.submit((cap, reset), self.fw.clock.now_ns())

    def _vision_job(self, payload: tuple[Capture, bool]) -> VisionResult:
        cap, reset = payload
        if reset:
            self._vision.reset()
        return self._vision.process(cap)

    def _on_vision(self, result: JobResult) -> None:
        cap: Capture = result.payload[0]
        stale = [c for c in self.ekf.clones if c < cap.frame_id]
        if not result.ok:
            self.event("VisionTrouble", why=result.error)
            for c in stale + [cap.frame_id]:
                self.ekf.drop_clone(c)
            return
        res: VisionResult = result.value
        if res.motion is not None and self.ekf.has_clone(res.motion[0]) and self.ekf.has_clone(cap.frame_id):
            pid, dx, dy, dyaw, _ = res.motion
            m2 = self.ekf.update_motion(pid, cap.frame_id, dx, dy, dyaw)
            if m2 > 16.0:
                self._counts["vo_rejects"] += 1
            else:
                self._counts["vo_updates"] += 1
        for c in stale:
            self.ekf.drop_clone(c)
        # place the terrain with the corrected pose of the moment the pair was taken
        if self.ekf.has_clone(cap.frame_id):
            cx, cy, cyaw = self.ekf.clone_pose(cap.frame_id)
            ox, oy, _, oyaw, _, _ = cap.pose
            pts = res.points
            if pts.size:
                d = wrap(cyaw - oyaw)
                c, s = math.cos(d), math.sin(d)
                rel = pts[:, :2] - (ox, oy)
                pts = np.column_stack([cx + c * rel[:, 0] - s * rel[:, 1], cy + s * rel[:, 0] + c * rel[:, 1],
                                       pts[:, 2]])
            box = self.map.fuse(pts, viewpoint=(cx, cy))
            if box is not None:
                self.map.update_cost(box)
        if self._task == "goto" and self._mode == MODES["autonav"]:
            self._request_plan()

    # -- telemetry -------------------------------------------------------------------------------

    def _telemetry(self, force: bool = False) -> None:
        now = self.now()
        if not force and now - self._last_tlm < 0.5:
            return
        self._last_tlm = now
        x, y, yaw = self.ekf.pose
        P = self.ekf.P
        self.publish("pose", (x, y, yaw))
        self.tlm("x_m", x)
        self.tlm("y_m", y)
        self.tlm("yaw_deg", math.degrees(yaw))
        self.tlm("sigma_x_m", math.sqrt(max(0.0, P[0, 0])))
        self.tlm("sigma_y_m", math.sqrt(max(0.0, P[1, 1])))
        self.tlm("sigma_yaw_deg", math.degrees(math.sqrt(max(0.0, P[2, 2]))))
        self.tlm("pos_sigma_m", self.ekf.pos_sigma())
        self.tlm("gyro_bias_rads", float(self.ekf.x[3]))
        self.tlm("odo_scale", float(self.ekf.x[4]))
        self.tlm("mode", self._mode)
        self.tlm("active", self._task is not None)
        f = self._follower
        self.tlm("progress", f.progress() if f else 0.0)
        self.tlm("remaining_m", f.remaining_m() if f else 0.0)
        self.tlm("waypoints_left", len(self._waypoints))
        self.tlm("distance_m", self.ekf.distance_m)
        self.tlm("hazard_cells", int(self.map.hazard.sum()) if force or self._task else int(self._hazard_total()))
        for k, v in self._counts.items():
            self.tlm(k, v)
        self.tlm("map_scrolls", self.map.scrolls)
        self.tlm("map_tiles_stored", self.map.stored_tiles)
        self.tlm("last_stop", self._last_stop)

    def _hazard_total(self) -> int:
        return int(self.map.hazard.sum())

    # -- commands --------------------------------------------------------------------------------

    def _reject(self, cmd: str, why: str) -> None:
        self._counts["rejects"] += 1
        self.event("NavCommandRejected", command=cmd, why=why)
        raise CommandFailed(why)

    def _begin_goto(self, cmd: str, points: list[tuple[float, float]], tolerance: float) -> Any:
        x, y, _ = self.ekf.pose
        reach = float(self.options["max_goal_m"])
        for px, py in points:
            if math.hypot(px - x, py - y) > reach:
                self._reject(cmd, f"goal ({px:.2f}, {py:.2f}) is {math.hypot(px - x, py - y):.0f} m away, "
                                  f"beyond the {reach:.0f} m a goal may be (option max_goal_m)")
        if self._task is not None:
            self._end_task(False, f"superseded by {cmd}")
        self._epoch = self.read(f"{self.options['drive']}.stop_epoch", 0)
        self._task = "goto"
        self._pending_cmd = cmd
        self._waypoints = list(points)
        self._tolerance = tolerance
        self._plan_level = self._plan_level_ok = 0
        self._recoveries_left = int(self.param("recoveries"))
        self._vision_reset = True
        self._last_capture = -math.inf
        gx, gy = points[-1]
        self.tlm("goal_x_m", gx)
        self.tlm("goal_y_m", gy)
        self.event("GoalStarted", x=gx, y=gy, mode=MODE_NAMES[self._mode])
        self._start_leg()
        return PENDING

    @command("NAV_GOTO", Arg("x", "f64", "m", -1e4, 1e4), Arg("y", "f64", "m", -1e4, 1e4),
             Arg("tolerance", "f32", "m", 0.05, 5.0))
    def nav_goto(self, x: float, y: float, tolerance: float) -> Any:
        """Drive to (x, y) in the present drive mode; completes on arrival within the tolerance."""
        return self._begin_goto("NAV_GOTO", [(x, y)], tolerance)

    @command("NAV_WAYPOINTS", Arg("points", "str", doc="'x1,y1;x2,y2;...' in metres"),
             Arg("tolerance", "f32", "m", 0.05, 5.0))
    def nav_waypoints(self, points: str, tolerance: float) -> Any:
        """Drive through waypoints in order; completes at the last."""
        try:
            pts = parse_waypoints(points)
        except ValueError as exc:
            self._reject("NAV_WAYPOINTS", str(exc))
        return self._begin_goto("NAV_WAYPOINTS", pts, tolerance)

    @command("NAV_STOP")
    def nav_stop(self) -> None:
        """Stop driving now; an active goal or arc fails with 'stopped by NAV_STOP'."""
        self._wheels(0.0, 0.0)
        if self._task is not None:
            self._end_task(False, "stopped by NAV_STOP")

    @command("DRIVE_ARC", Arg("distance", "f32", "m", -50.0, 50.0), Arg("curvature", "f32", "1/m", -10.0, 10.0))
    def drive_arc(self, distance: float, curvature: float) -> Any:
        """Drive blind along an arc (curvature + to the left) for a distance (negative: reverse)."""
        if abs(distance) < 0.01:
            self._reject("DRIVE_ARC", "distance too short")
        if self._task is not None:
            self._end_task(False, "superseded by DRIVE_ARC")
        self._epoch = self.read(f"{self.options['drive']}.stop_epoch", 0)
        self._task = "arc"
        self._pending_cmd = "DRIVE_ARC"
        self._arc = (self.ekf.distance_m, distance, curvature)
        return PENDING

    @command("NAV_MODE", Arg("mode", "enum", enum=MODES))
    def nav_mode(self, mode: int) -> None:
        """Choose the drive mode: blind, guarded or autonav."""
        if mode == MODES["autonav"] and self._camera is None:
            self._reject("NAV_MODE", "autonav needs a stereo camera")
        self._mode = int(mode)
        self.event("ModeChanged", mode=MODE_NAMES[self._mode])
        self.tlm("mode", self._mode)

    @command("NAV_RESET_POSE", Arg("x", "f64", "m", -1e5, 1e5), Arg("y", "f64", "m", -1e5, 1e5),
             Arg("yaw_deg", "f32", "deg", -360.0, 360.0))
    def nav_reset_pose(self, x: float, y: float, yaw_deg: float) -> None:
        """Set the pose (for example from orbital imagery); the map restarts around it when idle."""
        if self._task is not None:
            self._reject("NAV_RESET_POSE", "not while driving (NAV_STOP first)")
        self.ekf.reset(x, y, math.radians(yaw_deg))
        self._margin_rearm_m = 0.0  # the distance driven starts again
        self._z = 0.0
        self._new_map()
        self._vision_reset = True
        self.event("PoseReset", x=x, y=y, yaw=yaw_deg)
        self._persist()
        self._telemetry(force=True)


class OdometryNavigator(Navigator):
    """Navigation without a camera: blind and guarded driving on odometry and the IMU."""

    DEVICES: dict[str, type] = {}
