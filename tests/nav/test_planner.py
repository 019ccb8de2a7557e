"""Planner properties: valid paths, optimal cost, smoothing that never crosses a hazard."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.nav.planner import (
    PlanningError,
    astar,
    cost_to_go,
    cost_to_go_sweeps,
    extract_path,
    path_cost,
    plan,
    smooth_path,
)

pytestmark = pytest.mark.timeout(120)


def grids(max_side: int = 24):
    return st.integers(4, max_side).flatmap(lambda n: st.tuples(
        st.just(n), st.integers(0, 2**32 - 1), st.floats(0.0, 0.35)))


def make(n: int, seed: int, blocked: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = 1.0 + 4.0 * rng.random((n, n))
    c[rng.random((n, n)) < blocked] = np.inf
    c[0, 0] = c[-1, -1] = 1.0
    return c


@settings(max_examples=60, deadline=None)
@given(grids())
def test_paths_are_valid_and_optimal(spec):
    n, seed, blocked = spec
    c = make(n, seed, blocked)
    try:
        pa, ca = astar(c, (0, 0), (n - 1, n - 1))
    except PlanningError:
        field = cost_to_go(c, (n - 1, n - 1))
        assert field[0, 0] >= 1e8  # both agree there is no path
        return
    # valid: starts and ends right, 8-connected steps, only passable cells
    assert pa[0] == (0, 0) and pa[-1] == (n - 1, n - 1)
    assert math.isfinite(path_cost(c, pa))
    assert path_cost(c, pa) == pytest.approx(ca, rel=1e-9)
    # the field planner reaches the same optimum, and no path is cheaper than it
    pf, cf = plan(c, (0, 0), (n - 1, n - 1), field_above=0)
    assert cf == pytest.approx(ca, rel=1e-6)
    assert path_cost(c, pf) >= ca * (1 - 1e-6)
    assert path_cost(c, extract_path(cost_to_go(c, (n - 1, n - 1)), c, (0, 0))) == pytest.approx(ca, rel=1e-6)


@settings(max_examples=40, deadline=None)
@given(grids(30), st.data())
def test_compiled_field_matches_the_sweep_reference(spec, data):
    """Dijkstra's field and the numpy sweeps' field agree cell for cell, reachable or not."""
    n, seed, blocked = spec
    c = make(n, seed, blocked)
    # a rectangular grid too, so rows and columns cannot be confused
    c = c[:, : data.draw(st.integers(2, n))]
    goal = (n - 1, 0)
    c[goal] = 1.0
    fast = cost_to_go(c, goal)
    ref = cost_to_go_sweeps(c, goal)
    reach = ref < 1e8
    assert np.array_equal(reach, fast < 1e8)
    assert np.allclose(fast[reach], ref[reach], rtol=1e-6, atol=1e-6)  # the sweeps carry prefix-sum rounding
    assert fast[goal] == 0.0


@settings(max_examples=40, deadline=None)
@given(grids(30))
def test_smoothing_keeps_off_hazards(spec):
    n, seed, blocked = spec
    c = make(n, seed, blocked)
    try:
        path, cost = astar(c, (0, 0), (n - 1, n - 1))
    except PlanningError:
        return
    smooth = smooth_path(c, path)
    assert smooth[0] == path[0] and smooth[-1] == path[-1]
    assert len(smooth) <= len(path)
    for a, b in zip(smooth, smooth[1:], strict=False):
        assert math.isfinite(c[a]) and math.isfinite(c[b])
        if max(abs(b[0] - a[0]), abs(b[1] - a[1])) <= 1:
            continue  # one move of the 8-connected graph: its own cells only
        steps = max(2, int(math.hypot(b[0] - a[0], b[1] - a[1]) * 3) + 1)
        for t in np.linspace(0, 1, steps):
            r = int(np.rint(a[0] + (b[0] - a[0]) * t))
            q = int(np.rint(a[1] + (b[1] - a[1]) * t))
            assert math.isfinite(c[r, q])


def test_bad_requests_raise_planning_errors():
    c = np.ones((10, 10))
    c[5, :] = np.inf
    with pytest.raises(PlanningError, match="off the"):
        plan(c, (0, 0), (20, 20))
    with pytest.raises(PlanningError, match="impassable"):
        plan(c, (0, 0), (5, 5))
    with pytest.raises(PlanningError, match="no path"):
        astar(c, (0, 0), (9, 9))
    with pytest.raises(PlanningError, match="cannot be reached"):
        plan(c, (0, 0), (9, 9), field_above=0)
