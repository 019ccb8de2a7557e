"""The filter's plain-arithmetic matrix helpers agree with numpy's (BLAS and LAPACK) results."""

import numpy as np
import pytest

from flight.nav.ekf import PoseFilter, inv_small, mm

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
