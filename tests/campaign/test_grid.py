"""The campaign grid: seed lists, names, keys and the replay command."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaign.grid import Grid, GridError, RunSpec, parse_seeds
from magpie.cli import build_parser

pytestmark = pytest.mark.timeout(60)


def test_seed_lists_ranges_and_order() -> None:
    assert parse_seeds("1-4") == (1, 2, 3, 4)
    assert parse_seeds("7, 1-3,2") == (7, 1, 2, 3)
    assert parse_seeds("0") == (0,)


@pytest.mark.parametrize("text", ["", "a", "1-", "-3", "4-1", "1,,2", "1-2-3", "0-100000", "1.5"])
def test_bad_seed_lists_are_grid_errors(text: str) -> None:
    with pytest.raises(GridError, match="seeds"):
        parse_seeds(text)


@given(st.text(max_size=20))
def test_any_seed_text_parses_or_is_a_grid_error(text: str) -> None:
    try:
        seeds = parse_seeds(text)
    except GridError:
        return
    assert seeds and all(isinstance(s, int) and s >= 0 for s in seeds)
    assert len(set(seeds)) == len(seeds)


@given(st.lists(st.tuples(st.integers(0, 500), st.integers(0, 20)), min_size=1, max_size=6))
def test_ranges_written_out_give_back_their_seeds(parts: list[tuple[int, int]]) -> None:
    text = ",".join(f"{lo}-{lo + n}" if n else str(lo) for lo, n in parts)
    want = list(dict.fromkeys(s for lo, n in parts for s in range(lo, lo + n + 1)))
    assert list(parse_seeds(text)) == want


@pytest.mark.parametrize(("kw", "match"), [
    ({"levels": "easy,medium"}, "unknown level 'medium'"),
    ({"modes": "fast"}, "unknown mode 'fast'"),
    ({"faults": "meteor"}, "unknown fault 'meteor'"),
    ({"goals": 0}, "goals"),
    ({"goal_distance_m": 100.0}, "goal distance"),
    ({"timeout_per_goal_s": 0.0}, "timeout"),
])
def test_bad_grids_name_what_is_wrong(kw: dict, match: str) -> None:
    args = {"levels": "easy", "seeds": "1", **kw}
    with pytest.raises(GridError, match=match):
        Grid.parse(**args)


def test_every_run_has_its_own_key_and_grid_order() -> None:
    grid = Grid.parse("easy,hard", "1-3", modes="autonav,guarded", faults="none,slip")
    runs = [r for r in grid.runs() if r.fault == "none"]
    assert len(grid.runs()) == 24 and len({r.key for r in grid.runs()}) == 24
    assert [(r.level, r.mode, r.seed) for r in runs[:4]] == [
        ("easy", "autonav", 1), ("easy", "autonav", 2), ("easy", "autonav", 3), ("easy", "guarded", 1)]
    assert RunSpec("easy", 1).key != RunSpec("easy", 1, goal_distance_m=8.5).key
    assert RunSpec.from_dict(runs[5].to_dict()) == runs[5]


def test_the_replay_command_flies_exactly_that_run() -> None:
    spec = RunSpec("hard", 17, goals=2, goal_distance_m=6.5, timeout_per_goal_s=90.0, mode="guarded", fault="slip")
    argv = shlex.split(spec.replay_command("out dir"))
    assert argv[:2] == ["magpie", "campaign"]
    args = build_parser().parse_args(argv[1:])
    grid = Grid.parse(args.levels, args.seeds, args.goals, args.goal_distance, args.timeout_per_goal, args.modes,
                      args.faults)
    assert grid.runs() == [spec] and args.serial and str(args.out) == "out dir"
    plain = RunSpec("easy", 1)
    assert "--faults" not in plain.replay_command() and "fault" not in plain.key  # keys of older results hold


@given(st.floats(-1e4, 1e4), st.floats(1e-3, 1e4))
def test_axis_ticks_are_round_and_cover_the_range(lo: float, width: float) -> None:
    from campaign.report import nice_ticks

    ticks = nice_ticks(lo, lo + width)
    assert ticks[0] <= lo + 1e-9 and ticks[-1] >= lo + width - 1e-6 * max(1.0, abs(lo) + width)
    assert 2 <= len(ticks) <= 12
    steps = {round(b - a, 6) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
