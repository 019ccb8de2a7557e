"""Counted, rate-limited log lines for a failure that can repeat many times (a refused batch, a
job that raised, a PDU refused): every occurrence is counted, and the log gets a line, with the
count so far, at the 1st, 2nd, 4th, 8th occurrence and so on, so a flood costs a few lines."""

from __future__ import annotations


def worth_a_line(count: int) -> bool:
    """True for the counts that get a log line: 1, 2, 4, 8 and every further power of two."""
    return count > 0 and count & (count - 1) == 0
