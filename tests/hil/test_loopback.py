"""The loopback suite: TX wired to RX on a real adapter, or an emulated loopback on a pty/socat."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hil import loopback
from hil.checks import Measurement
from hil.pytestplugin.hooks import HilOptions
from hil.rig import LoopbackRig
from hil.trace import TracedPort

pytestmark = [pytest.mark.hil_loopback, pytest.mark.timeout(60)]

Expect = Callable[[list[Measurement]], None]


def test_frame_integrity(hil_loopback_port: TracedPort, hil_loopback_rig: LoopbackRig,
                         hil_line_baud: int, hil_expect: Expect) -> None:
    hil_expect(loopback.frame_integrity(hil_loopback_port, hil_loopback_rig, hil_line_baud))


def test_goodput_against_line_rate(hil_loopback_port: TracedPort, hil_loopback_rig: LoopbackRig,
                                   hil_line_baud: int, hil_expect: Expect) -> None:
    hil_expect(loopback.goodput(hil_loopback_port, hil_loopback_rig, hil_line_baud, seconds=0.15))


def test_recovery_after_garbage_and_partial_frames(hil_loopback_port: TracedPort,
                                                   hil_loopback_rig: LoopbackRig,
                                                   hil_expect: Expect) -> None:
    hil_expect(loopback.garbage_recovery(hil_loopback_port, hil_loopback_rig, 921600))


def test_break_condition(hil_loopback_port: TracedPort, hil_loopback_rig: LoopbackRig,
                         hil_expect: Expect) -> None:
    hil_expect(loopback.break_condition(hil_loopback_port, hil_loopback_rig, 115200))


def test_bounded_soak(hil_loopback_port: TracedPort, hil_loopback_rig: LoopbackRig,
                      hil_options: HilOptions, hil_expect: Expect) -> None:
    hil_expect(loopback.soak(hil_loopback_port, hil_loopback_rig, 921600, hil_options.soak_s))


def test_frame_reader_survives_any_split() -> None:
    """The reader the suite trusts: the same frames whatever the chunking of the byte stream."""
    import random

    from hal.mcu import protocol as p

    rng = random.Random(3)
    frames = [p.encode_frame(loopback.TEST_ID, i, bytes(rng.randrange(256) for _ in range(i * 7 % 251)))
              for i in range(40)]
    stream = b"".join(frames)
    reader = loopback.FrameReader()
    got = []
    i = 0
    while i < len(stream):
        step = rng.randrange(1, 300)
        got += reader.feed(stream[i:i + step])
        i += step
    assert [pk.seq for pk in got] == list(range(40))
    assert reader.bad == reader.oversize == 0
