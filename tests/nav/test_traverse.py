"""Traverse harness on easy terrain: goals reached, no rock contact, no tilt over the limit."""

import logging

import pytest

from bench.traverse import run_traverse

pytestmark = pytest.mark.timeout(240)


def test_easy_traverse(tmp_path):
    rep = run_traverse("easy", 1, tmp_path, goals=2, goal_distance_m=8.0)
    logging.getLogger(__name__).info("%s", rep.line())
    assert rep.reached == rep.goals, rep.failures
    assert rep.collisions == 0
    assert rep.tilt_over == 0
    assert rep.loc_error_frac < 0.02
    assert rep.mean_speed_frac > 0.5
    assert rep.vo_updates > 10
