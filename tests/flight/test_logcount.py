"""The counts a repeated failure gets a log line at."""

from __future__ import annotations

import pytest

from flight.logcount import worth_a_line

pytestmark = pytest.mark.timeout(10)


def test_a_line_at_each_doubling_of_the_count() -> None:
    assert [n for n in range(0, 1100) if worth_a_line(n)] == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
