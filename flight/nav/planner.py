"""Global path planning on a traversability cost grid.

**Graph.** Cells are nodes, joined to their eight neighbours; a move between neighbouring cells
``a`` and ``b`` costs ``(cost[a] + cost[b]) / 2`` times the step length (1 or sqrt 2 cells).
This is the graph scikit-image's ``MCP_Geometric`` searches, so the two can be compared cost for
cost. Cells with an infinite, NaN or non-positive cost are impassable.

**Search.** :func:`cost_to_go` computes the exact cost-to-go of every cell to the goal with
Dijkstra's algorithm from the goal, compiled: the grid is handed to ``scipy.sparse.csgraph`` as
a compressed sparse row graph built without sorting (every cell has eight edge slots in a fixed
order; a slot that leaves the grid points back at its own cell with an infinite weight, which
the search never relaxes). scipy ships aarch64 wheels, so the flight side still installs on a
Raspberry Pi. The older numpy formulation, Gauss-Seidel sweeps of whole lines with closed-form
in-line relaxation by cumulative minima, stays as :func:`cost_to_go_sweeps`; it reaches the
same fixed point and the tests hold the two to each other.

The field answers for every start at once, which is what a rover that keeps moving wants: the
path from wherever it is now is a descent of the field (:func:`extract_path`), and a new field
is only needed when the map changes. :func:`astar` is the classic single-query A* on the same
graph (octile heuristic scaled by the cheapest cell), in pure Python, for tiny grids.

**Coarse to fine.** On a large grid most cells are nowhere near the best path, yet the field
settles every one. :func:`plan_corridor` first searches a grid pooled 4 x 4 (:func:`coarse_grid`,
a sixteenth of the cells) from both ends, keeps the blocks whose best route through them is
within a few per cent of the coarse optimum, and runs the compiled Dijkstra on those blocks'
cells alone (:func:`masked_search`): a fifth to two fifths of the grid on terrain. The result is
near-optimal rather than exact (the tests hold it within 2 % of the field's optimum, the
benchmark has measured 1.000); a corridor that fails to join start and goal hands over to the
exact field, and a coarse grid that cannot join them proves no path exists. :func:`plan`
picks among the three by the grid's size.

**Smoothing.** 8-connected paths zig-zag; :func:`smooth_path` replaces runs of cells by straight
segments when the segment crosses no impassable cell and costs no more than ``1 + tolerance``
times the cells it replaces, which suits a skid-steer vehicle (it can turn on the spot, so only
needless heading changes matter; the follower rounds the remaining corners).
"""

from __future__ import annotations

import heapq
import logging
import math

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

log = logging.getLogger(__name__)

SQRT2 = math.sqrt(2.0)
#: Stand-in cost of an impassable cell inside the sweeps (keeps the arithmetic finite).
BLOCKED = 1e9
#: Cost-to-go at or above this is unreachable.
UNREACHABLE = BLOCKED / 2.0

_NEIGHBOURS = ((-1, -1, SQRT2), (-1, 0, 1.0), (-1, 1, SQRT2), (0, -1, 1.0), (0, 1, 1.0),
               (1, -1, SQRT2), (1, 0, 1.0), (1, 1, SQRT2))


class PlanningError(ValueError):
    """No path: the start or goal is off the grid or impassable, or they are not connected."""


def _sanitise(cost: np.ndarray) -> np.ndarray:
    c = np.asarray(cost, dtype=np.float64)
    if c.ndim != 2 or min(c.shape) < 1:
        raise PlanningError("the cost grid must be a non-empty 2-D array")
    ok = np.isfinite(c) & (c > 0) & (c < BLOCKED)
    return np.where(ok, np.minimum(c, BLOCKED / 10.0), BLOCKED)


def _check_cell(c: np.ndarray, cell: tuple[int, int], what: str) -> None:
    r, col = cell
    if not (0 <= r < c.shape[0] and 0 <= col < c.shape[1]):
        raise PlanningError(f"the {what} {cell} is off the {c.shape[0]}x{c.shape[1]} grid")
    if c[r, col] >= BLOCKED:
        raise PlanningError(f"the {what} {cell} is an impassable cell")


def _sweep_lines(d: np.ndarray, c: np.ndarray, order: range) -> None:
    """One Gauss-Seidel sweep over the rows of ``d`` in ``order`` (rows are views; in place)."""
    nx = d.shape[1]
    step = order.step
    for r in order:
        row = d[r]
        cr = c[r]
        p = r - step
        if 0 <= p < d.shape[0]:
            prev = d[p]
            cp = c[p]
            np.minimum(row, prev + (cp + cr) * 0.5, out=row)
            if nx > 1:
                np.minimum(row[1:], prev[:-1] + (cp[:-1] + cr[1:]) * (0.5 * SQRT2), out=row[1:])
                np.minimum(row[:-1], prev[1:] + (cp[1:] + cr[:-1]) * (0.5 * SQRT2), out=row[:-1])
        if nx > 1:
            w = np.empty(nx)
            w[0] = 0.0
            np.cumsum((cr[:-1] + cr[1:]) * 0.5, out=w[1:])
            np.minimum(row, np.minimum.accumulate(row - w) + w, out=row)
            np.minimum(row, np.minimum.accumulate((row + w)[::-1])[::-1] - w, out=row)


_STRUCTURE: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _structure(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """Index array and row pointer of the grid graph; they depend on the shape alone, so a rover
    replanning on its fixed-size map builds them once (read-only, shared by every call)."""
    key = (ny, nx)
    got = _STRUCTURE.get(key)
    if got is not None:
        return got
    n = ny * nx
    idx = np.empty((ny, nx, 8), np.int32)
    base = np.arange(n, dtype=np.int32).reshape(ny, nx)
    for k, (dr, dq, _) in enumerate(_NEIGHBOURS):
        np.add(base, np.int32(dr * nx + dq), out=idx[:, :, k])
        # slots that leave the grid point at their own cell (their weight is infinite)
        if dr:
            edge = 0 if dr < 0 else ny - 1
            idx[edge, :, k] = base[edge, :]
        if dq:
            edge = 0 if dq < 0 else nx - 1
            idx[:, edge, k] = base[:, edge]
    indptr = np.arange(0, 8 * n + 1, 8, dtype=np.int32)
    idx = idx.reshape(-1)
    idx.flags.writeable = False
    indptr.flags.writeable = False
    if len(_STRUCTURE) >= 4:
        _STRUCTURE.clear()
    _STRUCTURE[key] = (idx, indptr)
    return idx, indptr


def grid_graph(c: np.ndarray) -> csr_matrix:
    """The planning graph of a sanitised cost grid as a CSR matrix (cell ``r * nx + q``).

    Eight slots a cell, in ascending neighbour order, so the index array is already sorted and
    the row pointer is a plain range: building it is a few whole-array operations, and only the
    weights change from one call to the next on a grid of the same shape.
    """
    ny, nx = c.shape
    n = ny * nx
    w = np.where(c < BLOCKED, c, np.inf)
    pad = np.full((ny + 2, nx + 2), np.inf)
    pad[1:-1, 1:-1] = w
    val = np.empty((ny, nx, 8))
    for k, (dr, dq, length) in enumerate(_NEIGHBOURS):
        out = val[:, :, k]
        np.add(w, pad[1 + dr:ny + 1 + dr, 1 + dq:nx + 1 + dq], out=out)
        out *= 0.5 * length
    idx, indptr = _structure(ny, nx)
    graph = csr_matrix((val.reshape(-1), idx, indptr), shape=(n, n), copy=False)
    graph.has_sorted_indices = True
    return graph


def cost_to_go(cost: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """Exact cost from every cell to ``goal`` (row, col); >= :data:`UNREACHABLE` where none.

    Dijkstra from the goal on :func:`grid_graph` (the graph is symmetric, so distance from the
    goal is cost to it).
    """
    c = _sanitise(cost)
    _check_cell(c, goal, "goal")
    ny, nx = c.shape
    d = dijkstra(grid_graph(c), directed=True, indices=goal[0] * nx + goal[1])
    return np.asarray(d, dtype=np.float64).reshape(ny, nx)


def cost_to_go_sweeps(cost: np.ndarray, goal: tuple[int, int], max_rounds: int = 500,
                      tol: float = 1e-7) -> np.ndarray:
    """The same field as :func:`cost_to_go` by Gauss-Seidel line sweeps in numpy (reference)."""
    c = _sanitise(cost)
    _check_cell(c, goal, "goal")
    d = np.full(c.shape, np.inf)
    d[goal] = 0.0
    ct = np.ascontiguousarray(c.T)
    ny, nx = c.shape
    for _ in range(max_rounds):
        before = d.copy()
        _sweep_lines(d, c, range(0, ny, 1))
        _sweep_lines(d, c, range(ny - 1, -1, -1))
        dt = np.ascontiguousarray(d.T)
        _sweep_lines(dt, ct, range(0, nx, 1))
        _sweep_lines(dt, ct, range(nx - 1, -1, -1))
        d = np.ascontiguousarray(dt.T)
        # converged once a round changes nothing beyond rounding (the prefix sums carry ~1e-5)
        live = before < UNREACHABLE
        if np.any((d < UNREACHABLE) & ~live):
            continue
        if float(np.max(before[live] - d[live])) <= tol * max(1.0, float(d[live].max())):
            break
    else:
        log.warning("cost_to_go: no convergence in %d rounds", max_rounds)
    return d


def extract_path(field: np.ndarray, cost: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """The descent of a cost-to-go field from ``start`` to its zero (the goal), as cells."""
    c = _sanitise(cost)
    _check_cell(c, start, "start")
    if field[start] >= UNREACHABLE:
        raise PlanningError(f"no path from {start}: the goal cannot be reached")
    ny, nx = c.shape
    path = [start]
    r, q = start
    for _ in range(ny * nx):
        here = field[r, q]
        if here <= 0.0:
            return path
        best = math.inf
        nxt = None
        for dr, dq, length in _NEIGHBOURS:
            rr, qq = r + dr, q + dq
            if 0 <= rr < ny and 0 <= qq < nx:
                v = field[rr, qq] + (c[r, q] + c[rr, qq]) * 0.5 * length
                if v < best and field[rr, qq] < here:
                    best, nxt = v, (rr, qq)
        if nxt is None:
            raise PlanningError(f"the field has no descent at {(r, q)}")
        r, q = nxt
        path.append(nxt)
    raise PlanningError("path extraction did not terminate")


def path_cost(cost: np.ndarray, path: list[tuple[int, int]]) -> float:
    """Cost of a cell path on the planning graph (inf if it leaves the grid or jumps)."""
    c = _sanitise(cost)
    total = 0.0
    for (r0, q0), (r1, q1) in zip(path, path[1:], strict=False):
        dr, dq = abs(r1 - r0), abs(q1 - q0)
        if max(dr, dq) != 1:
            return math.inf
        if c[r0, q0] >= BLOCKED or c[r1, q1] >= BLOCKED:
            return math.inf
        total += (c[r0, q0] + c[r1, q1]) * 0.5 * (SQRT2 if dr and dq else 1.0)
    return total


def plan_field(cost: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> tuple[list[tuple[int, int]], float]:
    """Optimal cell path and its cost from ``start`` to ``goal`` by the cost-to-go field."""
    field = cost_to_go(cost, goal)
    path = extract_path(field, cost, start)
    return path, float(field[start])


def plan(cost: np.ndarray, start: tuple[int, int], goal: tuple[int, int], *,
         field_above: int = 256, corridor_above: int = 40_000) -> tuple[list[tuple[int, int]], float]:
    """A cell path and its cost from ``start`` to ``goal`` (both row, col).

    Grids up to ``field_above`` cells are searched with :func:`astar` and up to
    ``corridor_above`` cells with the compiled Dijkstra field, both exact on the same graph (the
    field measured faster than A* from about 16 x 16 up). Larger grids go coarse to fine
    (:func:`plan_corridor`): near-optimal, and a fraction of the field's work.
    """
    c = _sanitise(cost)
    _check_cell(c, start, "start")
    _check_cell(c, goal, "goal")
    if c.size <= field_above:
        return astar(c, start, goal)
    if c.size <= corridor_above:
        return plan_field(c, start, goal)
    return plan_corridor(c, start, goal)


def astar(cost: np.ndarray, start: tuple[int, int], goal: tuple[int, int]) -> tuple[list[tuple[int, int]], float]:
    """A* on the same graph (exact: the octile heuristic times the cheapest cell is admissible)."""
    c = _sanitise(cost)
    _check_cell(c, start, "start")
    _check_cell(c, goal, "goal")
    ny, nx = c.shape
    flat = c.ravel().tolist()
    cmin = float(c[c < BLOCKED].min())
    gr, gq = goal
    g = {start[0] * nx + start[1]: 0.0}
    parent: dict[int, int] = {}
    closed = bytearray(ny * nx)
    goal_i = gr * nx + gq

    def h(i: int) -> float:
        dr, dq = abs(i // nx - gr), abs(i % nx - gq)
        return cmin * (max(dr, dq) + (SQRT2 - 1.0) * min(dr, dq))

    s = start[0] * nx + start[1]
    heap = [(h(s), 0.0, s)]
    while heap:
        _, gs, i = heapq.heappop(heap)
        if closed[i]:
            continue
        closed[i] = 1
        if i == goal_i:
            out = [i]
            while out[-1] in parent:
                out.append(parent[out[-1]])
            return [(k // nx, k % nx) for k in reversed(out)], gs
        r, q = divmod(i, nx)
        ci = flat[i]
        for dr, dq, length in _NEIGHBOURS:
            rr, qq = r + dr, q + dq
            if 0 <= rr < ny and 0 <= qq < nx:
                j = rr * nx + qq
                cj = flat[j]
                if closed[j] or cj >= BLOCKED:
                    continue
                ng = gs + (ci + cj) * 0.5 * length
                if ng < g.get(j, math.inf):
                    g[j] = ng
                    parent[j] = i
                    heapq.heappush(heap, (ng + h(j), ng, j))
    raise PlanningError(f"no path from {start} to {goal}")


#: Coarse to fine: cells a side of a coarse block, and how far above the coarse optimum (as a
#: fraction) a block may lie and still be searched at full resolution.
COARSE_BLOCK = 4
CORRIDOR_SLACK = 0.03


def coarse_grid(c: np.ndarray, block: int = COARSE_BLOCK) -> np.ndarray:
    """A sanitised grid pooled into ``block`` x ``block`` blocks, for the coarse search.

    A block costs the mean of its passable cells divided by the square root of their share, so
    a block that is mostly hazard costs more without closing a gap a path can squeeze through;
    only a block with no passable cell is impassable. Any full-resolution path therefore has a
    coarse one through the blocks it visits.
    """
    ny, nx = c.shape
    by, bx = -(-ny // block), -(-nx // block)
    pad = np.full((by * block, bx * block), BLOCKED)
    pad[:ny, :nx] = c
    free = pad < BLOCKED
    total = np.where(free, pad, 0.0).reshape(by, block, bx, block).sum(axis=(1, 3))
    count = free.reshape(by, block, bx, block).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = total / count * np.sqrt(block * block / count)
    return np.where(count > 0, pooled, BLOCKED)


def _grow(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every cell's eight neighbours set too."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    row = out.copy()
    out[:, 1:] |= row[:, :-1]
    out[:, :-1] |= row[:, 1:]
    return out


def corridor(c: np.ndarray, start: tuple[int, int], goal: tuple[int, int], *,
             block: int = COARSE_BLOCK, slack: float = CORRIDOR_SLACK) -> np.ndarray:
    """The cells worth a full-resolution search between ``start`` and ``goal`` (a mask).

    Dijkstra from both ends on :func:`coarse_grid` gives every block the cost of the best
    coarse path through it; the blocks within ``slack`` of the coarse optimum, grown by one
    block, hold the near-optimal routes (more than one where the coarse costs cannot tell
    them apart), and their passable cells are the corridor.
    """
    ny, nx = c.shape
    cc = coarse_grid(c, block)
    bx = cc.shape[1]
    s = (start[0] // block) * bx + start[1] // block
    g = (goal[0] // block) * bx + goal[1] // block
    d = dijkstra(grid_graph(cc), directed=True, indices=[s, g])
    through = d[0] + d[1]
    best = through[s]
    if not math.isfinite(best):
        # every full-resolution path has a coarse one, so none joins the two cells
        raise PlanningError(f"no path from {start} to {goal}: the goal cannot be reached")
    # the summation order differs along the optimum: a relative hair keeps its blocks in
    keep = (through <= best * (1.0 + slack + 1e-9)).reshape(cc.shape)
    keep = _grow(keep)
    mask = np.repeat(np.repeat(keep, block, axis=0), block, axis=1)[:ny, :nx] & (c < BLOCKED)
    mask[start] = mask[goal] = True
    return mask


def masked_search(c: np.ndarray, mask: np.ndarray, start: tuple[int, int],
                  goal: tuple[int, int]) -> tuple[list[tuple[int, int]], float] | None:
    """The optimal path between two cells of ``mask`` through its cells only (None if none).

    The masked cells are numbered in row-major order and joined to their masked neighbours in
    the same eight-slot CSR layout as :func:`grid_graph`; the search is scipy's Dijkstra from
    the goal with predecessors, and the path is read back along them.
    """
    ny, nx = c.shape
    cells = np.flatnonzero(mask.ravel()).astype(np.int32)
    m = cells.size
    number = np.full(ny * nx, -1, np.int32)
    number[cells] = np.arange(m, dtype=np.int32)
    rows, cols = np.divmod(cells, np.int32(nx))
    flat = c.ravel()
    here = flat[cells]
    own = np.arange(m, dtype=np.int32)
    idx = np.empty((m, 8), np.int32)
    val = np.empty((m, 8))
    for k, (dr, dq, length) in enumerate(_NEIGHBOURS):
        inside = (rows >= -dr) & (rows < ny - dr) & (cols >= -dq) & (cols < nx - dq)
        j = np.where(inside, cells + np.int32(dr * nx + dq), 0)
        to = np.where(inside, number[j], -1)
        ok = to >= 0
        idx[:, k] = np.where(ok, to, own)
        val[:, k] = np.where(ok, (here + flat[j]) * (0.5 * length), np.inf)
    graph = csr_matrix((val.reshape(-1), idx.reshape(-1), np.arange(0, 8 * m + 1, 8, dtype=np.int32)),
                       shape=(m, m), copy=False)
    s = int(number[start[0] * nx + start[1]])
    g = int(number[goal[0] * nx + goal[1]])
    d, pred = dijkstra(graph, directed=True, indices=g, return_predecessors=True)
    if not math.isfinite(d[s]):
        return None
    path = []
    i = s
    while i >= 0:
        path.append(divmod(int(cells[i]), nx))
        i = int(pred[i])
    return path, float(d[s])


def plan_corridor(cost: np.ndarray, start: tuple[int, int], goal: tuple[int, int], *,
                  block: int = COARSE_BLOCK, slack: float = CORRIDOR_SLACK) -> tuple[list[tuple[int, int]], float]:
    """Coarse to fine: the optimal path inside :func:`corridor`, near the global optimum.

    Not exact (the optimum may leave the corridor where the pooled costs mislead), but on the
    bench's terrain grids it has matched the optimum; if the corridor does not join the two
    cells (a gap the pooling let through), the exact field decides, so a path is found
    whenever one exists.
    """
    c = _sanitise(cost)
    _check_cell(c, start, "start")
    _check_cell(c, goal, "goal")
    found = masked_search(c, corridor(c, start, goal, block=block, slack=slack), start, goal)
    if found is not None:
        return found
    log.debug("plan_corridor: the corridor does not join %s to %s; searching the whole grid", start, goal)
    return plan_field(c, start, goal)


def segment_cost(cost: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> float:
    """Approximate cost of the straight segment between two cell centres (inf if it is blocked).

    The segment is checked as a strip 0.6 cells wide, so it never slips between two hazards
    that touch at a corner.
    """
    c = cost
    length = math.hypot(b[0] - a[0], b[1] - a[1])
    n = max(2, int(math.ceil(length * 3)) + 1)
    t = np.linspace(0.0, 1.0, n)
    fr = a[0] + (b[0] - a[0]) * t
    fq = a[1] + (b[1] - a[1]) * t
    ny, nx = c.shape
    for dr in (-0.3, 0.3):
        for dq in (-0.3, 0.3):
            rr = np.clip(np.rint(fr + dr), 0, ny - 1).astype(np.intp)
            qq = np.clip(np.rint(fq + dq), 0, nx - 1).astype(np.intp)
            v = c[rr, qq]
            if not np.all(np.isfinite(v) & (v > 0) & (v < BLOCKED)):
                return math.inf
    vals = c[np.rint(fr).astype(np.intp), np.rint(fq).astype(np.intp)]
    return float(np.mean(vals)) * length


def smooth_path(cost: np.ndarray, path: list[tuple[int, int]], tolerance: float = 0.03,
                max_span: int = 80) -> list[tuple[int, int]]:
    """Shortcut a cell path into fewer straight segments (see the module docstring)."""
    if len(path) <= 2:
        return list(path)
    c = np.asarray(cost, dtype=np.float64)
    # cumulative cost along the original path, to compare a shortcut with the cells it replaces
    cum = [0.0]
    for (r0, q0), (r1, q1) in zip(path, path[1:], strict=False):
        length = SQRT2 if (r0 != r1 and q0 != q1) else 1.0
        cum.append(cum[-1] + (c[r0, q0] + c[r1, q1]) * 0.5 * length)

    def ok(i: int, j: int) -> bool:
        return segment_cost(c, path[i], path[j]) <= (cum[j] - cum[i]) * (1.0 + tolerance) + 1e-9

    out = [path[0]]
    i = 0
    last = len(path) - 1
    while i < last:
        step = 1
        good = i + 1
        while True:  # grow exponentially, then bisect back
            j = min(last, i + step, i + max_span)
            if ok(i, j):
                good = j
                if j == last or j == i + max_span:
                    break
                step *= 2
            else:
                lo, hi = good, j
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if ok(i, mid):
                        lo = mid
                    else:
                        hi = mid
                good = lo
                break
        out.append(path[good])
        i = good
    return out
