"""A skid-steer rover on the heightmap: wheel dynamics, slip, tilt, stall and motor current.

Frames: the world is x east, y north, z up. The body frame is x forward, y left, z up.
``yaw`` is measured counter-clockwise from east; ``pitch`` is positive nose up; ``roll`` is
positive left side up. The body-to-world rotation is ``Rz(yaw) @ Ry(-pitch) @ Rx(roll)``, so an
accelerometer at rest reads ``f = R^T (0, 0, g)``, i.e. ``pitch = atan2(fx, hypot(fy, fz))`` and
``roll = atan2(fy, fz)``.

**Wheels.** Each side's rim speed follows its command with a first-order lag (time constant
``wheel_tau_s``), limited to ``max_wheel_mps``. The encoders count wheel rotation, not ground
motion, which is how slip becomes visible to odometry.

**Slip.** The longitudinal slip ratio of a side is ``i = (r*omega - v) / (r*omega)``: 0 means the
ground moves with the rim, 1 means the wheel spins in place. It is the sum of

* a slope term that grows with the grade along the direction of travel,
  ``i = i0 + (1 - i0) * (grade / grade_limit)^n`` uphill (n = 2 and a 27 deg limit follow the
  shape MER saw in loose soil: ~14 % at 10 deg, ~31 % at 15 deg, 100 % near 27 deg), and a small
  negative slip (the vehicle runs ahead of its wheels) downhill;
* a seeded random term, an Ornstein-Uhlenbeck process in distance travelled (so it does not
  change while the vehicle stands still), common to both sides plus a small differential part
  that makes the heading drift.

Ground speed of a side is ``v = r*omega * (1 - i)``; the body moves at the mean of the sides and
turns at ``(v_r - v_l) / (track * steer_factor)`` (``steer_factor`` > 1 models skid-steer scrub).

**Tilt.** Height is sampled under the four wheels; pitch and roll come from the front/rear and
left/right height differences, so a wheel climbing a small rock tilts the vehicle.

**Stall.** Before each step the leading wheel of each moving side looks ahead along its path;
if the ground rises by more than ``max_step_m`` above the local grade within one wheel radius (a
rock face or a ledge), the drive stalls: the wheels stop, ``stalled`` is set and the motor
current goes to the stall current until the command is zeroed or reversed.

**Current.** Each side draws ``I = I0 + F * amps_per_newton`` with the tractive force
``F = m/2 * (g (Crr cos(pitch) + sin(grade)) + a)`` plus skid-steer scrub while turning, capped
at the stall current.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from hal.geometry import body_to_world
from sim_hw.terrain import Terrain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VehicleConfig:
    """Geometry, mass and drive parameters of a small skid-steer rover."""

    mass_kg: float = 30.0
    wheel_radius_m: float = 0.1
    track_width_m: float = 0.5
    wheelbase_m: float = 0.4
    max_wheel_mps: float = 0.2
    wheel_tau_s: float = 0.15
    mast_height_m: float = 1.2  # camera head above the body origin (ground contact plane)
    mast_forward_m: float = 0.1
    ticks_per_rev: int = 4096
    # slip model
    slip_base: float = 0.02
    slip_grade_limit_deg: float = 27.0
    slip_exponent: float = 2.0
    skid_downhill: float = 0.3
    slip_noise_sigma: float = 0.02
    slip_noise_length_m: float = 1.0
    slip_diff_sigma: float = 0.005
    steer_factor: float = 1.0
    # obstacles
    max_step_m: float = 0.08
    # motors
    rolling_resistance: float = 0.1
    scrub_coefficient: float = 0.3
    amps_per_newton: float = 0.05
    no_load_current_a: float = 0.2
    stall_current_a: float = 3.0
    motor_efficiency: float = 0.6

    def __post_init__(self) -> None:
        for name in ("mass_kg", "wheel_radius_m", "track_width_m", "wheelbase_m", "max_wheel_mps",
                     "wheel_tau_s", "slip_grade_limit_deg", "max_step_m", "stall_current_a"):
            if getattr(self, name) <= 0:
                raise ValueError(f"vehicle.{name} must be positive, got {getattr(self, name)}")
        if self.ticks_per_rev <= 0:
            raise ValueError("vehicle.ticks_per_rev must be positive")


@dataclass(slots=True)
class VehicleState:
    x: float
    y: float
    z: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    cmd_left: float = 0.0
    cmd_right: float = 0.0
    wheel_left: float = 0.0  # rim speeds, m/s
    wheel_right: float = 0.0
    angle_left: float = 0.0  # cumulative wheel rotation, rad (the encoder's view)
    angle_right: float = 0.0
    speed: float = 0.0  # ground speed along body x, m/s
    yaw_rate: float = 0.0
    pitch_rate: float = 0.0
    roll_rate: float = 0.0
    accel: float = 0.0  # body-x acceleration, m/s^2
    slip_left: float = 0.0
    slip_right: float = 0.0
    slip_noise: float = 0.0
    slip_diff: float = 0.0
    current_left: float = 0.0
    current_right: float = 0.0
    stalled: bool = False
    distance_m: float = 0.0  # ground distance travelled along the surface
    extra: dict = field(default_factory=dict)


class Vehicle:
    """Physics of one rover. ``step(dt)`` advances it; the world calls this at a fixed step.

    It also offers the MCU plant method names (``set_wheels``, ``stop``, ``step``,
    ``sensors``, ``reset_encoders``) so an MCU emulator can drive it directly; ``sensors()`` here
    is noise-free and knows nothing of power or heat (the world's plant adds those).
    """

    def __init__(
        self,
        terrain: Terrain,
        config: VehicleConfig | None = None,
        x: float | None = None,
        y: float | None = None,
        yaw_deg: float = 0.0,
        gravity_mps2: float = 1.62,
        seed: int = 0,
    ) -> None:
        self.terrain = terrain
        self.config = config or VehicleConfig()
        self.gravity = float(gravity_mps2)
        cx, cy = terrain.center
        self.state = VehicleState(x=cx if x is None else float(x), y=cy if y is None else float(y),
                                  yaw=math.radians(yaw_deg))
        self._rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5117]))
        self.time_s = 0.0
        self._rot_key: tuple[float, float, float] | None = None
        self._rot = np.eye(3)
        # the slip noise's normals, drawn in blocks (the same numbers in the same order as one
        # draw per use), and the wheel heights under the pose the attitude was last taken at
        self._normals: list[float] = []
        self._next_normal = 0
        self._contacts_key: tuple[float, float, float, int] | None = None
        self._alpha_dt, self._alpha = -1.0, 0.0
        self._contacts_at: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
        self._settle()

    # ------------------------------------------------------------------ commands

    def set_wheels(self, left_mps: float, right_mps: float) -> None:
        """Command rim speeds (m/s), clipped to the motors' limit."""
        vmax = self.config.max_wheel_mps
        self.state.cmd_left = max(-vmax, min(vmax, float(left_mps)))
        self.state.cmd_right = max(-vmax, min(vmax, float(right_mps)))

    def stop(self) -> None:
        """Zero both commands; the wheels spin down with their time constant."""
        self.state.cmd_left = 0.0
        self.state.cmd_right = 0.0

    def reset_encoders(self) -> None:
        """Zero the wheel rotation counters the encoders read."""
        self.state.angle_left = 0.0
        self.state.angle_right = 0.0

    @property
    def quiescent(self) -> bool:
        """True when nothing moves or is commanded: stepping would change nothing but time."""
        s = self.state
        return s.cmd_left == 0.0 and s.cmd_right == 0.0 and s.wheel_left == 0.0 and s.wheel_right == 0.0

    # ------------------------------------------------------------------ models

    def slip_model(self, grade_rad: float) -> float:
        """Deterministic slip ratio for a grade along the direction of travel (+ uphill)."""
        c = self.config
        frac = min(1.0, abs(grade_rad) / math.radians(c.slip_grade_limit_deg))
        if grade_rad >= 0.0:
            return c.slip_base + (1.0 - c.slip_base) * frac**c.slip_exponent
        return c.slip_base - c.skid_downhill * frac**c.slip_exponent

    def _contacts(self, x: float, y: float, yaw: float) -> tuple[float, float, float, float]:
        c = self.config
        cy, sy = math.cos(yaw), math.sin(yaw)
        hl, hw = c.wheelbase_m / 2.0, c.track_width_m / 2.0
        h = self.terrain.height_at_fast
        fl = h(x + cy * hl - sy * hw, y + sy * hl + cy * hw)
        fr = h(x + cy * hl + sy * hw, y + sy * hl - cy * hw)
        rl = h(x - cy * hl - sy * hw, y - sy * hl + cy * hw)
        rr = h(x - cy * hl + sy * hw, y - sy * hl - cy * hw)
        return fl, fr, rl, rr

    def _attitude(self, x: float, y: float, yaw: float) -> tuple[float, float, float]:
        c = self.config
        fl, fr, rl, rr = self._contacts_at = self._contacts(x, y, yaw)
        self._contacts_key = (x, y, yaw, self.terrain.version)
        pitch = math.atan2(0.5 * (fl + fr) - 0.5 * (rl + rr), c.wheelbase_m)
        roll = math.atan2(0.5 * (fl + rl) - 0.5 * (fr + rr), c.track_width_m)
        return 0.25 * (fl + fr + rl + rr), pitch, roll

    def _settle(self) -> None:
        s = self.state
        s.z, s.pitch, s.roll = self._attitude(s.x, s.y, s.yaw)

    def _blocked(self, side: int, direction: float, cy: float | None = None, sy: float | None = None,
                 at_contacts: bool | None = None) -> bool:
        """Does the leading wheel of a side (+1 left, -1 right) face a step it cannot climb?
        ``cy``, ``sy``: cos and sin of the present yaw, when the caller has them already;
        ``at_contacts``: whether the pose is still the one the wheel heights were last taken at."""
        c = self.config
        s = self.state
        if cy is None or sy is None:
            cy, sy = math.cos(s.yaw), math.sin(s.yaw)
        hw = side * c.track_width_m / 2.0
        lead = direction * c.wheelbase_m / 2.0
        h = self.terrain.height_at_fast
        x0 = s.x + cy * lead - sy * hw
        y0 = s.y + sy * lead + cy * hw
        if at_contacts is None:
            at_contacts = self._contacts_key == (s.x, s.y, s.yaw, self.terrain.version)
        if at_contacts:
            # the leading wheel stands where the last attitude sampled it: same point, same height
            h0 = self._contacts_at[(0 if direction > 0 else 2) + (0 if side > 0 else 1)]
        else:
            h0 = h(x0, y0)
        grade = math.tan(s.pitch) * direction
        r = c.wheel_radius_m
        max_step = c.max_step_m
        d = 0.5 * r  # half a wheel radius ahead, then a whole one
        if h(x0 + cy * d * direction, y0 + sy * d * direction) - h0 - d * grade > max_step:
            return True
        d = 1.0 * r
        return h(x0 + cy * d * direction, y0 + sy * d * direction) - h0 - d * grade > max_step

    def _normal(self) -> float:
        """The next of the seeded slip-noise normals (drawn in blocks of 256)."""
        i = self._next_normal
        if i >= len(self._normals):
            self._normals = self._rng.standard_normal(256).tolist()
            i = 0
        self._next_normal = i + 1
        return self._normals[i]

    # ------------------------------------------------------------------ integration

    def step(self, dt_s: float) -> None:
        """Advance the vehicle by dt seconds (the world calls this at its fixed physics step)."""
        c = self.config
        s = self.state
        self.time_s += dt_s
        if s.cmd_left == 0.0 and s.cmd_right == 0.0 and s.wheel_left == 0.0 and s.wheel_right == 0.0:  # quiescent
            s.speed = s.yaw_rate = s.pitch_rate = s.roll_rate = s.accel = 0.0
            s.current_left = s.current_right = 0.0
            s.stalled = False
            return
        if dt_s != self._alpha_dt:  # the world steps at one fixed dt: the lag factor is taken once
            self._alpha_dt, self._alpha = dt_s, 1.0 - math.exp(-dt_s / c.wheel_tau_s)
        alpha = self._alpha
        wl_prev, wr_prev = s.wheel_left, s.wheel_right
        wl = wl_prev + (s.cmd_left - wl_prev) * alpha
        wr = wr_prev + (s.cmd_right - wr_prev) * alpha
        if s.cmd_left == 0.0 and abs(wl) < 1e-5:
            wl = 0.0
        if s.cmd_right == 0.0 and abs(wr) < 1e-5:
            wr = 0.0

        dir_l = math.copysign(1.0, s.cmd_left if s.cmd_left != 0.0 else wl) if (s.cmd_left or wl) else 0.0
        dir_r = math.copysign(1.0, s.cmd_right if s.cmd_right != 0.0 else wr) if (s.cmd_right or wr) else 0.0
        cy, sy = math.cos(s.yaw), math.sin(s.yaw)
        at_contacts = self._contacts_key == (s.x, s.y, s.yaw, self.terrain.version)
        blocked = ((dir_l != 0.0 and self._blocked(+1, dir_l, cy, sy, at_contacts))
                   or (dir_r != 0.0 and self._blocked(-1, dir_r, cy, sy, at_contacts)))
        if blocked:
            if not s.stalled:
                log.info("vehicle stalled at (%.2f, %.2f) t=%.2f", s.x, s.y, self.time_s)
            wl = wr = 0.0
        s.stalled = blocked

        # slip: slope term along each side's travel direction, plus the seeded random term
        travel = 0.5 * (abs(wl) + abs(wr)) * dt_s
        # both terms are one Ornstein-Uhlenbeck step in distance travelled, with the same decay;
        # each draws its normal only when it moves
        sig_n, sig_d = c.slip_noise_sigma, c.slip_diff_sigma
        if not travel <= 0.0 and not (sig_n <= 0.0 and sig_d <= 0.0):
            a = math.exp(-travel / c.slip_noise_length_m)
            b = math.sqrt(1.0 - a * a)
            if not sig_n <= 0.0:
                s.slip_noise = s.slip_noise * a + sig_n * b * self._normal()
            if not sig_d <= 0.0:
                s.slip_diff = s.slip_diff * a + sig_d * b * self._normal()
        pitch = s.pitch
        noise, diff = s.slip_noise, s.slip_diff
        slip_l = s.slip_left = min(1.0, max(-0.5, self.slip_model(pitch * (dir_l or 1.0)) + noise + diff))
        slip_r = s.slip_right = min(1.0, max(-0.5, self.slip_model(pitch * (dir_r or 1.0)) + noise - diff))
        vl = wl * (1.0 - slip_l)
        vr = wr * (1.0 - slip_r)
        v = 0.5 * (vl + vr)
        yaw_rate = (vr - vl) / (c.track_width_m * c.steer_factor)

        yaw = s.yaw
        yaw_mid = yaw + 0.5 * yaw_rate * dt_s
        horiz = v * math.cos(pitch) * dt_s
        x = s.x = s.x + horiz * math.cos(yaw_mid)
        y = s.y = s.y + horiz * math.sin(yaw_mid)
        yaw = s.yaw = (yaw + yaw_rate * dt_s + math.pi) % (2.0 * math.pi) - math.pi
        pitch_prev, roll_prev = pitch, s.roll
        s.z, pitch, roll = self._attitude(x, y, yaw)
        s.pitch, s.roll = pitch, roll
        s.pitch_rate = (pitch - pitch_prev) / dt_s
        s.roll_rate = (roll - roll_prev) / dt_s
        s.accel = (v - s.speed) / dt_s
        s.speed = v
        s.yaw_rate = yaw_rate
        s.distance_m += abs(v) * dt_s

        r = c.wheel_radius_m
        s.angle_left += wl * dt_s / r
        s.angle_right += wr * dt_s / r
        s.wheel_left, s.wheel_right = wl, wr

        # motor current from the tractive force each side must deliver
        if blocked:
            s.current_left = c.stall_current_a if s.cmd_left else 0.0
            s.current_right = c.stall_current_a if s.cmd_right else 0.0
            return
        half_m = 0.5 * c.mass_kg
        g = self.gravity
        scrub = c.scrub_coefficient * half_m * g * abs(vr - vl) / (abs(vr) + abs(vl) + 1e-9)
        rolling = c.rolling_resistance * math.cos(pitch)  # the same for both sides
        s.current_left = self._side_current(wl, wl_prev, dir_l, dt_s, pitch, rolling, half_m, g, scrub)
        s.current_right = self._side_current(wr, wr_prev, dir_r, dt_s, pitch, rolling, half_m, g, scrub)

    def _side_current(self, w: float, w_prev: float, direction: float, dt_s: float, pitch: float,
                      rolling: float, half_m: float, g: float, scrub: float) -> float:
        """One side's motor current: no-load current plus the tractive force's, capped at stall."""
        if w == 0.0 and direction == 0.0:
            return 0.0
        c = self.config
        grade = pitch * direction
        a = (w - w_prev) / dt_s * direction
        force = half_m * (g * (rolling + math.sin(grade)) + a) + scrub
        i = c.no_load_current_a + max(0.0, force) * c.amps_per_newton
        return min(c.stall_current_a, i)

    # ------------------------------------------------------------------ what sensors see

    def rotation(self) -> np.ndarray:
        """Body-to-world rotation now (cached while the attitude does not change)."""
        s = self.state
        key = (s.yaw, s.pitch, s.roll)
        if key != self._rot_key:
            self._rot_key = key
            self._rot = body_to_world(*key)
        return self._rot

    def specific_force_body(self) -> np.ndarray:
        """What an ideal accelerometer at the body origin reads: R^T (a_world + (0, 0, g))."""
        return np.array(self.specific_force_xyz())

    def specific_force_xyz(self) -> tuple[float, float, float]:
        """:meth:`specific_force_body` in plain floats (what the IMU model reads every cycle).

        The vehicle's own acceleration is along body x and the centripetal term of turning
        while moving (``v * yaw_rate``) along body y, so ``R^T`` only acts on gravity:
        ``R^T (0, 0, g) = g * (sin(pitch), cos(pitch) sin(roll), cos(pitch) cos(roll))``,
        the bottom row of ``Rz(yaw) Ry(-pitch) Rx(roll)``.
        """
        s = self.state
        g = self.gravity
        cp = math.cos(s.pitch)
        return (s.accel + g * math.sin(s.pitch), s.speed * s.yaw_rate + g * cp * math.sin(s.roll),
                g * cp * math.cos(s.roll))

    def angular_rate_body(self) -> np.ndarray:
        """Ideal gyro: the body's angular velocity in the body frame, from the attitude's rates.

        With ``R = Rz(yaw) Ry(-pitch) Rx(roll)`` the body rate is the yaw rate about world z
        seen in the body, plus the pitch rate about the once-rolled y axis (``-pitch'`` about
        ``Rx(roll)^T y``: it has a body-z part whenever the rover is rolled), plus the roll
        rate about body x. Leaving the pitch rate on body y alone would make the gyro's heading
        rate wrong by ``pitch' sin(roll) / cos(pitch)`` whenever the rover pitches while rolled.
        """
        return np.array(self.angular_rate_xyz())

    def angular_rate_xyz(self) -> tuple[float, float, float]:
        """:meth:`angular_rate_body` in plain floats; world z seen in the body is the bottom row
        of ``R``, ``(sin(pitch), cos(pitch) sin(roll), cos(pitch) cos(roll))``."""
        s = self.state
        cp = math.cos(s.pitch)
        cr, sr = math.cos(s.roll), math.sin(s.roll)
        wz = s.yaw_rate
        return (wz * math.sin(s.pitch) + s.roll_rate, wz * cp * sr - s.pitch_rate * cr,
                wz * cp * cr + s.pitch_rate * sr)

    def camera_mount(self) -> tuple[np.ndarray, np.ndarray]:
        """Mast head position in the world and the body-to-world rotation."""
        c = self.config
        s = self.state
        rot = self.rotation()
        pos = np.array([s.x, s.y, s.z]) + rot @ np.array([c.mast_forward_m, 0.0, c.mast_height_m])
        return pos, rot

    def wheel_ticks(self) -> tuple[int, int]:
        """Encoder counts implied by wheel rotation (floor to whole ticks)."""
        k = self.config.ticks_per_rev / (2.0 * math.pi)
        return math.floor(self.state.angle_left * k), math.floor(self.state.angle_right * k)

    def truth(self) -> dict[str, float | bool]:
        """Ground truth for test harnesses; the flight software never sees this."""
        s = self.state
        return {
            "x": s.x, "y": s.y, "z": s.z,
            "yaw": s.yaw, "pitch": s.pitch, "roll": s.roll,
            "speed": s.speed, "yaw_rate": s.yaw_rate,
            "wheel_left": s.wheel_left, "wheel_right": s.wheel_right,
            "slip_left": s.slip_left, "slip_right": s.slip_right,
            "distance_m": s.distance_m, "stalled": s.stalled,
            "on_map": self.terrain.contains(s.x, s.y),
        }

    def sensors(self) -> dict:
        """Noise-free plant readings: drive and attitude only (no power or thermal model here)."""
        s = self.state
        lt, rt = self.wheel_ticks()
        f = self.specific_force_xyz()
        w = self.angular_rate_xyz()
        return {
            "time_s": self.time_s, "left_ticks": lt, "right_ticks": rt,
            "left_current_a": s.current_left, "right_current_a": s.current_right,
            "accel": (float(f[0]), float(f[1]), float(f[2])),
            "gyro": (float(w[0]), float(w[1]), float(w[2])),
            "imu_temp_c": 20.0, "bus_v": 0.0, "current_a": 0.0, "soc": 0.0, "solar_w": 0.0,
            "temps_c": {}, "stalled": s.stalled,
        }
