"""Planner properties: valid paths, optimal cost, smoothing that never crosses a hazard."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.nav.planner import (
    PlanningError,
    astar,
    coarse_grid,
    corridor,
    cost_to_go,
    cost_to_go_sweeps,
    extract_path,
    masked_search,
    path_cost,
    plan,
    plan_corridor,
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


def terrain(n: int, seed: int) -> np.ndarray:
    """Terrain-like costs: a smooth field 1..4 with round hazards, the corners clear."""
    rng = np.random.default_rng(seed)
    base = rng.random((n // 8 + 2, n // 8 + 2))
    # smooth by bilinear upsampling of a coarse random field (no image library needed)
    y = np.linspace(0, base.shape[0] - 1.001, n)
    x = np.linspace(0, base.shape[1] - 1.001, n)
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    smooth = (base[y0][:, x0] * (1 - fy) * (1 - fx) + base[y0 + 1][:, x0] * fy * (1 - fx)
              + base[y0][:, x0 + 1] * (1 - fy) * fx + base[y0 + 1][:, x0 + 1] * fy * fx)
    c = 1.0 + 3.0 * smooth
    rr, cc = np.ogrid[:n, :n]
    for r, q in rng.integers(0, n, size=(n * n // 400, 2)):
        c[(rr - r) ** 2 + (cc - q) ** 2 <= 16] = np.inf
    c[:6, :6] = 1.0
    c[-6:, -6:] = 1.0
    return c


@pytest.mark.parametrize("n,seed", [(120, 1), (120, 2), (160, 3), (200, 4), (200, 5), (240, 6)])
def test_coarse_to_fine_is_within_two_percent_of_the_optimum(n, seed):
    """The corridor search on terrain costs: a valid path, no cheaper than the exact optimum
    (Dijkstra's field, the reference) and at most 2 % dearer."""
    c = terrain(n, seed)
    start, goal = (1, 1), (n - 2, n - 2)
    optimum = float(cost_to_go(c, goal)[start])
    assert math.isfinite(optimum)
    path, cost = plan(c, start, goal, corridor_above=0)
    assert path[0] == start and path[-1] == goal
    assert path_cost(c, path) == pytest.approx(cost, rel=1e-9)
    assert optimum * (1 - 1e-9) <= cost <= 1.02 * optimum


@settings(max_examples=40, deadline=None)
@given(grids(48), st.integers(2, 8), st.floats(0.0, 0.1))
def test_coarse_to_fine_paths_are_valid(spec, block, slack):
    """Whatever the grid, block and slack: a valid path exactly when the optimum exists, never
    cheaper than it, and the corridor's own search is optimal inside the corridor."""
    n, seed, blocked = spec
    c = make(n, seed, blocked)
    start, goal = (0, 0), (n - 1, n - 1)
    optimum = float(cost_to_go(c, goal)[start])
    if optimum >= 1e8:
        with pytest.raises(PlanningError):
            plan_corridor(c, start, goal, block=block, slack=slack)
        return
    path, cost = plan_corridor(c, start, goal, block=block, slack=slack)
    assert path[0] == start and path[-1] == goal
    assert path_cost(c, path) == pytest.approx(cost, rel=1e-9)
    assert cost >= optimum * (1 - 1e-9)
    mask = corridor(c, start, goal, block=block, slack=slack)
    inside = masked_search(c, mask, start, goal)
    if inside is not None:
        walled = np.where(mask, c, np.inf)
        assert inside[1] == pytest.approx(float(cost_to_go(walled, goal)[start]), rel=1e-9)


def test_coarse_grid_closes_only_blocks_with_no_passable_cell():
    c = np.ones((8, 8))
    c[:4, :4] = np.inf  # one block wholly blocked
    c[4:, :4] = np.inf
    c[7, 0] = 2.0  # one passable cell left in a block
    cc = coarse_grid(c, 4)
    assert cc.shape == (2, 2)
    assert cc[0, 0] >= 1e9
    assert cc[1, 0] == pytest.approx(2.0 * 4.0)  # mean 2 over a sixteenth of the block
    assert cc[0, 1] == cc[1, 1] == pytest.approx(1.0)
    ragged = coarse_grid(np.ones((5, 7)), 4)  # partial blocks at the edges
    assert ragged.shape == (2, 2) and np.all(ragged < 1e9)


def test_large_grids_go_coarse_to_fine_and_agree_with_the_exact_planner():
    c = terrain(240, 9)
    start, goal = (2, 3), (230, 200)
    fast = plan(c, start, goal, corridor_above=0)
    exact = plan(c, start, goal, corridor_above=10**9)
    assert fast[0][0] == start and fast[0][-1] == goal
    assert exact[1] <= fast[1] * (1 + 1e-9) <= exact[1] * 1.02 * (1 + 1e-9)


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
    with pytest.raises(PlanningError, match="cannot be reached"):
        plan(c, (0, 0), (9, 9), field_above=0, corridor_above=0)
