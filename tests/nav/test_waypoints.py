"""NAV_WAYPOINTS argument parsing: round trip and clear rejection of anything else."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.nav.waypoints import MAX_WAYPOINTS, format_waypoints, parse_waypoints

pytestmark = pytest.mark.timeout(60)

coord = st.floats(-9999.0, 9999.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(coord, coord), min_size=1, max_size=MAX_WAYPOINTS))
def test_round_trip(points):
    text = format_waypoints(points)
    back = parse_waypoints(text)
    assert len(back) == len(points)
    for (x, y), (bx, by) in zip(points, back, strict=True):
        assert bx == pytest.approx(x, abs=6e-4) and by == pytest.approx(y, abs=6e-4)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_arbitrary_text_parses_or_says_why(text):
    try:
        pts = parse_waypoints(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert 1 <= len(pts) <= MAX_WAYPOINTS


@pytest.mark.parametrize("text, why", [
    ("", "no waypoints"), (";;", "no waypoints"), ("1,2;3", "is not 'x,y'"), ("a,b", "two numbers"),
    ("nan,1", "outside"), ("1e9,0", "outside"), (";".join(["1,1"] * (MAX_WAYPOINTS + 1)), "at most"),
])
def test_rejections(text, why):
    with pytest.raises(ValueError, match=why):
        parse_waypoints(text)
