"""Traverse harness against the issue's targets: every goal reached, no rock contact, no tilt over
the limit, localization error under 1% of distance, mean speed at least 80% of the wheel limit on
easy and moderate terrain and 60% on hard.

The seeds are the first of each level, fixed before the navigation was tuned (not chosen for
passing): easy 1, moderate 1 and 2, hard 1 and 2, two goals 8 m apart each. They are a sample,
not the whole claim: ``magpie campaign`` flies many seeds per level and prints the same figures,
and on hard terrain not every seed meets them yet.
"""

import logging

import pytest

from campaign.traverse import TraverseReport, run_traverse

log = logging.getLogger(__name__)

#: level -> (seeds, least mean speed as a fraction of the wheel limit)
TARGETS = {"easy": ((1,), 0.8), "moderate": ((1, 2), 0.8), "hard": ((1, 2), 0.6)}
CASES = [(level, seed) for level, (seeds, _) in TARGETS.items() for seed in seeds]


def _assert_targets(rep: TraverseReport, min_speed: float) -> None:
    log.info("%s", rep.line())
    assert rep.reached == rep.goals, rep.failures
    assert rep.collisions == 0, rep.line()
    assert rep.tilt_over == 0, rep.line()
    assert rep.loc_error_frac < 0.01, rep.line()
    assert rep.mean_speed_frac >= min_speed, rep.line()
    assert rep.vo_updates > 10


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("level", "seed"), CASES, ids=[f"{lv}-{s}" for lv, s in CASES])
def test_traverse_meets_the_targets(tmp_path, level, seed):
    rep = run_traverse(level, seed, tmp_path, goals=2, goal_distance_m=8.0)
    _assert_targets(rep, TARGETS[level][1])
