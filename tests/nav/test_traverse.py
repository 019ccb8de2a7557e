"""Traverse harness against the issue's targets: every goal reached, no rock contact, no tilt over
the limit, localization error under 2% of distance, mean speed at least 70% of the maximum.

Easy seed 1 and moderate seeds 1 and 2 (the first seeds, not chosen for passing), two goals
8 m apart each; the bench runs three goals on more seeds, and the hard level, and prints the
figures.
"""

import logging

import pytest

from campaign.traverse import TraverseReport, run_traverse

log = logging.getLogger(__name__)


def _assert_targets(rep: TraverseReport) -> None:
    log.info("%s", rep.line())
    assert rep.reached == rep.goals, rep.failures
    assert rep.collisions == 0
    assert rep.tilt_over == 0
    assert rep.loc_error_frac < 0.02
    assert rep.mean_speed_frac >= 0.70
    assert rep.vo_updates > 10


@pytest.mark.timeout(120)
def test_easy_traverse_meets_the_targets(tmp_path):
    _assert_targets(run_traverse("easy", 1, tmp_path, goals=2, goal_distance_m=8.0))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", [1, 2])
def test_moderate_traverse_meets_the_targets(tmp_path, seed):
    _assert_targets(run_traverse("moderate", seed, tmp_path, goals=2, goal_distance_m=8.0))
