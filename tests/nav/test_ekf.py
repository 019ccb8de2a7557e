"""The filter: its plain-arithmetic matrix helpers agree with numpy's (BLAS and LAPACK) results, and its
written-out prediction and scalar updates are the matrix forms they stand for."""

import numpy as np
import pytest

from flight.nav.ekf import BIAS, SCALE, YAW, PoseFilter, X, Y, inv_small, mm

pytestmark = pytest.mark.timeout(30)


def test_products_and_inverses_agree_with_numpy():
    rng = np.random.default_rng(7)
    a, b, c = rng.normal(size=(8, 5)), rng.normal(size=(5, 8)), rng.normal(size=(8, 8))
    v = rng.normal(size=8)
    assert np.allclose(mm(a, b, c), a @ b @ c, rtol=0, atol=1e-12)
    assert np.allclose(mm(c, v), c @ v, rtol=0, atol=1e-12)
    assert mm(v, c, v) == pytest.approx(float(v @ c @ v), abs=1e-12)
    for n in (1, 2, 3):
        s = rng.normal(size=(n, n)) + 3.0 * np.eye(n)
        assert np.allclose(inv_small(s), np.linalg.inv(s), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="up to 3x3"):
        inv_small(np.eye(4))


def test_position_sigma_is_the_larger_axis_of_the_covariance():
    f = PoseFilter()
    f.P[:2, :2] = [[0.04, 0.01], [0.01, 0.01]]
    assert f.pos_sigma() == pytest.approx(float(np.sqrt(np.linalg.eigvalsh(f.P[:2, :2]).max())), rel=1e-12)


def _filter_with_clones(seed: int) -> PoseFilter:
    rng = np.random.default_rng(seed)
    f = PoseFilter(1.0, 2.0, 0.3)
    f.clone(1)
    f.clone(2)
    a = rng.normal(size=(f.x.size, f.x.size))
    f.P = 1e-3 * (a @ a.T) + 1e-4 * np.eye(f.x.size)
    f.x[BIAS], f.x[SCALE] = 0.001, 1.02
    return f


def test_the_written_out_prediction_is_the_jacobian_product():
    f = _filter_with_clones(3)
    x0, p0 = f.x.copy(), f.P.copy()
    ds, r0, r1, dt, tilt, grade = 0.01, 0.05, 0.07, 0.02, 0.3, 0.2
    f.predict(ds, r0, r1, dt, tilt_rate=tilt, grade_rad=grade)
    n, nz = x0.size, f.noise
    yaw, bias, k = x0[YAW], x0[BIAS], x0[SCALE]
    dyaw = 0.5 * (r0 + r1) * dt - bias * dt
    c, s = np.cos(yaw + 0.5 * dyaw), np.sin(yaw + 0.5 * dyaw)
    F = np.eye(n)
    F[X, YAW], F[Y, YAW] = -k * ds * s, k * ds * c
    F[X, BIAS], F[Y, BIAS] = k * ds * s * 0.5 * dt, -k * ds * c * 0.5 * dt
    F[X, SCALE], F[Y, SCALE] = ds * c, ds * s
    F[YAW, BIAS] = -dt
    G = np.zeros((n, 4))
    G[X, 0], G[Y, 0] = k * c, k * s
    G[X, 1], G[Y, 1], G[YAW, 1] = -0.5 * k * ds * s, 0.5 * k * ds * c, 1.0
    G[BIAS, 2] = G[SCALE, 3] = 1.0
    slip = nz.slip_on_grade * min(1.0, grade / np.radians(nz.slip_grade_deg)) ** 2
    q = np.diag([(nz.odo_frac + slip) ** 2 * ds + 1e-12,
                 (nz.gyro_rads * dt) ** 2 + (1e-3 * dyaw) ** 2 + (nz.yaw_per_tilt * tilt * dt) ** 2,
                 nz.bias_walk**2 * dt, nz.scale_walk**2 * ds])
    assert np.allclose(f.P, F @ p0 @ F.T + G @ q @ G.T, rtol=0, atol=1e-15)
    assert f.x[X] == pytest.approx(x0[X] + k * ds * c, abs=1e-15)


def test_a_parked_heading_holds_through_long_cycles_and_bias_updates():
    """Parked (wheels still, none commanded), the filter holds the heading rather than
    integrating the gyro: minute-long idle cycles and their zero-rate updates leave it where it
    was (once the bias is learnt), while the gyro's noisy readings still train the bias."""
    f = PoseFilter(1.0, 2.0, 0.3)
    for _ in range(50):  # driving first, so heading and bias are correlated
        f.predict(0.004, 0.01, 0.012, 0.02)
    bias0 = f.x[BIAS]
    rng = np.random.default_rng(4)
    for _ in range(10):  # the first cycles still correct the heading for what the bias did
        f.hold(60.0)  # while driving (the two are correlated), less as the bias is learnt
        f.update_zero_rate(float(rng.normal(0.002, f.noise.gyro_rads)))
    yaw0 = f.x[YAW]
    for _ in range(20):
        f.hold(60.0)
        f.update_zero_rate(float(rng.normal(0.002, f.noise.gyro_rads)))
    assert abs(f.x[YAW] - yaw0) < np.radians(0.01)
    assert f.x[BIAS] != bias0
    assert f.P[BIAS, BIAS] > 0 and np.all(np.linalg.eigvalsh(f.P) > -1e-12)
    # integrating the same readings as a turn swings the heading ten times as far
    g = PoseFilter(1.0, 2.0, 0.3)
    for _ in range(50):
        g.predict(0.004, 0.01, 0.012, 0.02)
    rng = np.random.default_rng(4)
    swing = 0.0
    for i in range(30):
        r = float(rng.normal(0.002, g.noise.gyro_rads))
        g.predict(0.0, r, r, 60.0)
        g.update_zero_rate(r)
        if i == 9:
            yaw0 = g.x[YAW]
        elif i > 9:
            swing = max(swing, abs(g.x[YAW] - yaw0))
    assert swing > np.radians(0.1)


def test_on_a_grade_the_odometry_is_trusted_less():
    flat, steep = PoseFilter(), PoseFilter()
    for _ in range(100):
        flat.predict(0.004, 0.0, 0.0, 0.02)
        steep.predict(0.004, 0.0, 0.0, 0.02, grade_rad=np.radians(15.0))
    assert steep.P[X, X] > 10.0 * flat.P[X, X]


@pytest.mark.parametrize("which", ["zero_rate", "wheel_rate"])
def test_the_scalar_updates_are_the_general_update(which):
    a, b = _filter_with_clones(5), _filter_with_clones(5)
    H = np.zeros((1, a.x.size))
    if which == "zero_rate":
        a.update_zero_rate(0.004)
        H[0, BIAS] = 1.0
        b._update(np.array([0.004]), np.array([b.x[BIAS]]), H, np.array([[b.noise.gyro_rads**2]]))
    else:
        a.update_wheel_rate(0.05, 0.047)
        H[0, BIAS] = -1.0
        b._update(np.array([0.05]), np.array([0.047 - b.x[BIAS]]), H, np.array([[b.noise.wheel_yaw_rads**2]]))
    assert np.allclose(a.x, b.x, rtol=0, atol=1e-14)
    assert np.allclose(a.P, b.P, rtol=0, atol=1e-15)
