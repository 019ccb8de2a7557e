"""Modelled blocking time of simulated devices, kept per thread.

A simulated device answers at once, but the real one it stands for holds its caller: a camera's
readout and image pipeline take a good part of a second for a megapixel frame. Each simulated
device adds what its real counterpart would have cost to the calling thread's total here, so a
lockstep run can charge it to the thread that paid it: the executive's measured-time hook
(:attr:`flight.executive.Executive.measured_ns`) reads the executive thread's total, and work a
worker thread does is charged to the worker, never to the control loop. The totals are modelled,
not measured, so the timeline they produce is the same on any machine.
"""

from __future__ import annotations

import threading

_local = threading.local()


def charge(seconds: float) -> None:
    """Add ``seconds`` of modelled blocking time to the calling thread."""
    _local.ns = getattr(_local, "ns", 0) + int(round(seconds * 1e9))


def thread_ns() -> int:
    """The calling thread's modelled blocking time so far, in nanoseconds."""
    return int(getattr(_local, "ns", 0))
