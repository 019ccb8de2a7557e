"""Localization: an extended Kalman filter on wheel odometry, gyro rates and visual odometry.

**State.** ``[x, y, yaw, gyro_bias, odo_scale]`` in the world frame, plus up to two *clones* of
``[x, y, yaw]`` (stochastic cloning): the pose at the instant a stereo pair was taken is copied
into the state so a visual-odometry result that arrives later, as the motion between two such
instants, is an honest measurement of two states whose correlation the filter keeps.

**Prediction** (every navigation step): the wheels give the distance travelled (horizontal, by
the pitch), times the odometry scale (which absorbs the slip visual odometry sees), less sure on a
grade, where the wheels slip most; the gyro,
turned into the heading's rate through the attitude and less its estimated bias, gives the
heading change (trapezoidal). Noise grows with distance (slip), with time (gyro noise, bias
walk), turning, and pitch and roll motion (the attitude behind the heading rate is least sure
then, and visual odometry carries the heading change).

**Updates.** Zero-velocity (wheels still and not commanded): the gyro must read zero, which
estimates its bias. Wheel yaw rate: a weak measurement of the gyro's corrected rate (wheels on a
skid-steer rover scrub and slip). Visual odometry: the body-frame motion between two clones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flight.nav.geometry import wrap

X, Y, YAW, BIAS, SCALE = range(5)
CORE = 5


def mm(*factors: np.ndarray) -> np.ndarray:
    """Matrix product (left to right) in a fixed order of operations.

    ``@`` hands matrices to BLAS, whose kernels (and so the rounding of the last bit) differ with
    the CPU and the threading; the filter's pose feeds every driving decision, so a bit there
    would make the same seed drive differently on another machine. Elementwise products and a
    sum over one axis round the same way everywhere.
    """
    out = factors[0]
    for b in factors[1:]:
        if b.ndim == 1:
            out = (out * b[None, :]).sum(axis=1) if out.ndim == 2 else (out * b).sum()
        elif out.ndim == 1:
            out = (out[:, None] * b).sum(axis=0)
        else:
            out = (out[:, :, None] * b[None, :, :]).sum(axis=1)
    return out


def inv_small(S: np.ndarray) -> np.ndarray:
    """Inverse of a 1x1, 2x2 or 3x3 matrix by cofactors (plain arithmetic, see :func:`mm`)."""
    n = S.shape[0]
    if n == 1:
        return np.array([[1.0 / S[0, 0]]])
    if n == 2:
        a, b, c, d = S[0, 0], S[0, 1], S[1, 0], S[1, 1]
        return np.array([[d, -b], [-c, a]]) / (a * d - b * c)
    if n != 3:
        raise ValueError(f"inv_small takes matrices up to 3x3, not {n}x{n}")
    a, b, c = S[0]
    d, e, f = S[1]
    g, h, i = S[2]
    cof = np.array([[e * i - f * h, c * h - b * i, b * f - c * e],
                    [f * g - d * i, a * i - c * g, c * d - a * f],
                    [d * h - e * g, b * g - a * h, a * e - b * d]])
    return cof / (a * cof[0, 0] + b * cof[1, 0] + c * cof[2, 0])


@dataclass(frozen=True, slots=True)
class FilterNoise:
    odo_frac: float = 0.03  # 1-sigma distance error per metre of wheel travel (slip)
    gyro_rads: float = 0.0005  # white noise of one gyro sample
    bias_walk: float = 2e-6  # gyro bias random walk, rad/s per sqrt(s)
    scale_walk: float = 0.01  # odometry scale random walk per sqrt(m)
    wheel_yaw_rads: float = 0.05  # wheel yaw rate as a gyro check
    vo_trans_m: float = 0.01  # visual odometry, per frame pair
    vo_trans_frac: float = 0.03
    vo_yaw_rad: float = 0.0015
    # heading error per radian of pitch and roll motion: the attitude behind the gyro's heading
    # rate is a low-passed gravity estimate (a degree or two off while driving over rough
    # ground) and the rate kinematics are only as good as that attitude, so the heading is
    # least certain while the rover rocks; visual odometry then carries the heading change
    yaw_per_tilt: float = 0.2
    # wheel slip grows with the grade (in loose soil about a third at 15 deg): the distance the
    # wheels turned is least trustworthy on a slope, so the odometry's noise per metre grows by
    # ``slip_on_grade`` times the square of the grade over ``slip_grade_deg`` (saturating at
    # that grade), and visual odometry carries the distance there
    slip_on_grade: float = 0.3
    slip_grade_deg: float = 15.0


class PoseFilter:
    """The navigation filter (see the module docstring)."""

    def __init__(self, x: float = 0.0, y: float = 0.0, yaw: float = 0.0, noise: FilterNoise | None = None,
                 pos_sigma_m: float = 0.01, yaw_sigma_rad: float = 0.005,
                 bias_sigma: float = 0.001, scale_sigma: float = 0.02) -> None:
        self.noise = noise or FilterNoise()
        self.x = np.array([x, y, yaw, 0.0, 1.0])
        self.P = np.diag([pos_sigma_m**2, pos_sigma_m**2, yaw_sigma_rad**2, bias_sigma**2, scale_sigma**2])
        self.clones: list[int] = []  # ids of clones, in state order after the core
        self.distance_m = 0.0

    # -- accessors -----------------------------------------------------------------------------

    @property
    def pose(self) -> tuple[float, float, float]:
        return float(self.x[X]), float(self.x[Y]), float(self.x[YAW])

    def pos_sigma(self) -> float:
        """Square root of the largest eigenvalue of the position covariance (m)."""
        a, b, d = float(self.P[0, 0]), float(self.P[0, 1]), float(self.P[1, 1])
        top = 0.5 * (a + d) + math.sqrt(0.25 * (a - d) ** 2 + b * b)  # larger eigenvalue, closed form
        return math.sqrt(max(0.0, top))

    def reset(self, x: float, y: float, yaw: float, pos_sigma_m: float = 0.01, yaw_sigma_rad: float = 0.005) -> None:
        """Put the pose here (keeping bias and scale); clones are dropped."""
        keep = self.P[3:5, 3:5].copy()
        self.x = np.array([x, y, wrap(yaw), self.x[BIAS], self.x[SCALE]])
        self.P = np.zeros((CORE, CORE))
        self.P[:3, :3] = np.diag([pos_sigma_m**2, pos_sigma_m**2, yaw_sigma_rad**2])
        self.P[3:5, 3:5] = keep
        self.clones = []

    # -- prediction ----------------------------------------------------------------------------

    def predict(self, ds_wheel: float, yaw_rate_prev: float, yaw_rate_now: float, dt: float,
                tilt_rate: float = 0.0, grade_rad: float = 0.0) -> None:
        """Move by ``ds_wheel`` metres (horizontal, signed) while the gyro's heading rate went
        from ``yaw_rate_prev`` to ``yaw_rate_now`` over ``dt`` seconds, the body pitching and
        rolling at ``tilt_rate`` rad/s on a grade (the pitch) of ``grade_rad``."""
        self._predict(ds_wheel, yaw_rate_prev, yaw_rate_now, dt, tilt_rate, grade_rad, False)

    def hold(self, dt: float) -> None:
        """``dt`` seconds parked (wheels still, none commanded): the heading cannot change, so
        it is not integrated from the gyro and does not depend on the bias over this span; only
        the bias walks."""
        self._predict(0.0, 0.0, 0.0, dt, 0.0, 0.0, True)

    def _predict(self, ds_wheel: float, yaw_rate_prev: float, yaw_rate_now: float, dt: float,
                 tilt_rate: float, grade_rad: float, held: bool) -> None:
        nz = self.noise
        yaw, bias, k = self.x[YAW], self.x[BIAS], self.x[SCALE]
        dyaw = 0.0 if held else 0.5 * (yaw_rate_prev + yaw_rate_now) * dt - bias * dt
        dtb = 0.0 if held else dt  # how the heading's change depends on the bias
        mid = yaw + 0.5 * dyaw
        c, s = math.cos(mid), math.sin(mid)
        self.x[X] += k * ds_wheel * c
        self.x[Y] += k * ds_wheel * s
        self.x[YAW] = wrap(yaw + dyaw)
        self.distance_m += abs(k * ds_wheel)
        # P <- F P F^T + G q G^T. The Jacobian F is the identity but for the position's
        # dependence on heading, bias and scale and the heading's on the bias, so the product is
        # written out on those rows and columns (plain arithmetic, see :func:`mm`)
        fxt, fyt = -k * ds_wheel * s, k * ds_wheel * c
        fxb, fyb = k * ds_wheel * s * 0.5 * dt, -k * ds_wheel * c * 0.5 * dt
        fxk, fyk = ds_wheel * c, ds_wheel * s
        P = self.P
        a = P.copy()
        a[X] = P[X] + fxt * P[YAW] + fxb * P[BIAS] + fxk * P[SCALE]
        a[Y] = P[Y] + fyt * P[YAW] + fyb * P[BIAS] + fyk * P[SCALE]
        a[YAW] = P[YAW] - dtb * P[BIAS]
        b = a.copy()
        b[:, X] = a[:, X] + fxt * a[:, YAW] + fxb * a[:, BIAS] + fxk * a[:, SCALE]
        b[:, Y] = a[:, Y] + fyt * a[:, YAW] + fyb * a[:, BIAS] + fyk * a[:, SCALE]
        b[:, YAW] = a[:, YAW] - dtb * a[:, BIAS]
        # noise: distance (slip) along the heading, heading (gyro white noise, which also
        # swings the step sideways), bias walk, scale walk
        slip = nz.slip_on_grade * min(1.0, abs(grade_rad) / math.radians(nz.slip_grade_deg)) ** 2
        q_ds = (nz.odo_frac + slip) ** 2 * abs(ds_wheel) + 1e-12
        q_yaw = (nz.gyro_rads * dtb) ** 2 + (1e-3 * abs(dyaw)) ** 2 + (nz.yaw_per_tilt * tilt_rate * dtb) ** 2
        gx0, gy0 = k * c, k * s
        gx1, gy1 = -0.5 * k * ds_wheel * s, 0.5 * k * ds_wheel * c
        b[X, X] += q_ds * gx0 * gx0 + q_yaw * gx1 * gx1
        b[Y, Y] += q_ds * gy0 * gy0 + q_yaw * gy1 * gy1
        xy = q_ds * gx0 * gy0 + q_yaw * gx1 * gy1
        b[X, Y] += xy
        b[Y, X] += xy
        b[X, YAW] += q_yaw * gx1
        b[YAW, X] += q_yaw * gx1
        b[Y, YAW] += q_yaw * gy1
        b[YAW, Y] += q_yaw * gy1
        b[YAW, YAW] += q_yaw
        b[BIAS, BIAS] += nz.bias_walk**2 * dt
        b[SCALE, SCALE] += nz.scale_walk**2 * abs(ds_wheel)
        self.P = 0.5 * (b + b.T)

    # -- updates -------------------------------------------------------------------------------

    def _update(self, z: np.ndarray, h: np.ndarray, H: np.ndarray, R: np.ndarray,
                angle_rows: tuple[int, ...] = ()) -> float:
        innov = z - h
        for i in angle_rows:
            innov[i] = wrap(innov[i])
        S = mm(H, self.P, H.T) + R
        S_inv = inv_small(S)
        K = mm(self.P, H.T, S_inv)
        self.x = self.x + mm(K, innov)
        self.x[YAW] = wrap(self.x[YAW])
        for i in range(len(self.clones)):
            j = CORE + 3 * i + 2
            self.x[j] = wrap(self.x[j])
        ikh = np.eye(self.x.size) - mm(K, H)
        self.P = mm(ikh, self.P, ikh.T) + mm(K, R, K.T)  # Joseph form
        self.P = 0.5 * (self.P + self.P.T)
        return float(mm(innov, S_inv, innov))

    def _update_one(self, j: int, h: float, innov: float, r: float) -> float:
        """A scalar measurement of ``h`` times state ``j`` with variance ``r``: the update of
        :meth:`_update` (Joseph form) written out for ``H = h e_j``, as outer products."""
        P = self.P
        s = h * h * P[j, j] + r
        K = P[:, j] * (h / s)
        self.x = self.x + K * innov
        self.x[YAW] = wrap(self.x[YAW])
        for i in range(len(self.clones)):
            c = CORE + 3 * i + 2
            self.x[c] = wrap(self.x[c])
        m = P - h * (K[:, None] * P[j][None, :])
        m = m - h * (m[:, j][:, None] * K[None, :])
        P = m + r * (K[:, None] * K[None, :])
        self.P = 0.5 * (P + P.T)
        return innov * innov / s

    def update_zero_rate(self, gyro_yaw_rate: float) -> None:
        """Wheels still: the true yaw rate is zero, so the gyro reads its bias."""
        self._update_one(BIAS, 1.0, gyro_yaw_rate - self.x[BIAS], self.noise.gyro_rads**2)

    def update_wheel_rate(self, wheel_yaw_rate: float, gyro_yaw_rate: float) -> None:
        """The wheels' yaw rate against the gyro's corrected rate (a weak check of the bias)."""
        self._update_one(BIAS, -1.0, wheel_yaw_rate - (gyro_yaw_rate - self.x[BIAS]), self.noise.wheel_yaw_rads**2)

    # -- clones and visual odometry ------------------------------------------------------------

    def clone(self, clone_id: int) -> None:
        """Copy the present pose into the state under ``clone_id``."""
        n = self.x.size
        J = np.zeros((n + 3, n))
        J[:n, :n] = np.eye(n)
        J[n:, :3] = np.eye(3)
        self.x = np.concatenate([self.x, self.x[:3]])
        self.P = mm(J, self.P, J.T)
        self.clones.append(clone_id)

    def _slot(self, clone_id: int) -> int:
        return CORE + 3 * self.clones.index(clone_id)

    def has_clone(self, clone_id: int) -> bool:
        return clone_id in self.clones

    def clone_pose(self, clone_id: int) -> tuple[float, float, float]:
        i = self._slot(clone_id)
        return float(self.x[i]), float(self.x[i + 1]), float(self.x[i + 2])

    def drop_clone(self, clone_id: int) -> None:
        if clone_id not in self.clones:
            return
        i = self._slot(clone_id)
        keep = [k for k in range(self.x.size) if not i <= k < i + 3]
        self.x = self.x[keep]
        self.P = self.P[np.ix_(keep, keep)]
        self.clones.remove(clone_id)

    def update_motion(self, a_id: int, b_id: int, dx: float, dy: float, dyaw: float) -> float:
        """Visual odometry: clone ``b``'s pose seen from clone ``a``'s body frame is (dx, dy, dyaw).

        Returns the Mahalanobis distance of the innovation (the caller may gate on it).
        """
        ia, ib = self._slot(a_id), self._slot(b_id)
        xa, ya, ta = self.x[ia : ia + 3]
        xb, yb, tb = self.x[ib : ib + 3]
        c, s = math.cos(ta), math.sin(ta)
        ex, ey = xb - xa, yb - ya
        h = np.array([c * ex + s * ey, -s * ex + c * ey, wrap(tb - ta)])
        H = np.zeros((3, self.x.size))
        H[0, ia : ia + 3] = [-c, -s, -s * ex + c * ey]
        H[1, ia : ia + 3] = [s, -c, -c * ex - s * ey]
        H[2, ia + 2] = -1.0
        H[0, ib], H[0, ib + 1] = c, s
        H[1, ib], H[1, ib + 1] = -s, c
        H[2, ib + 2] = 1.0
        nz = self.noise
        dist = math.hypot(dx, dy)
        st = nz.vo_trans_m + nz.vo_trans_frac * dist
        R = np.diag([st**2, st**2, nz.vo_yaw_rad**2])
        z = np.array([dx, dy, dyaw])
        innov = z - h
        innov[2] = wrap(innov[2])
        S = mm(H, self.P, H.T) + R
        m2 = float(mm(innov, inv_small(S), innov))
        if m2 > 16.0:  # gate: a VO blunder must not corrupt the pose
            return m2
        return self._update(z, h, H, R, angle_rows=(2,))
