"""The plugin's fixtures: the rig, an opened and handshaken link, a wire trace, and assertions
on measurements."""

from __future__ import annotations

import contextlib
import fcntl
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hil.checks import Measurement
from hil.loopback import open_loopback
from hil.mcu import McuSession
from hil.pytestplugin.hooks import OPTIONS_KEY, TRACE_KEY, HilOptions
from hil.rig import LoopbackRig, McuRig, make_rig
from hil.trace import TracedPort, WireTrace

MCU_DEFAULT_BAUD = 115200


@pytest.fixture
def hil_options(request: pytest.FixtureRequest) -> HilOptions:
    """The configured rig (port, target, baud, soak, trace directory)."""
    return request.config.stash[OPTIONS_KEY]


@pytest.fixture
def hil_backend(request: pytest.FixtureRequest) -> str:
    """``port`` for real hardware, else the emulated backend this test instance runs on."""
    return str(request.param)


@pytest.fixture
def hil_baud(hil_options: HilOptions) -> int:
    """The MCU link's baud rate (``--hil-baud``, default 115200)."""
    return hil_options.baud or MCU_DEFAULT_BAUD


@pytest.fixture
def hil_trace(request: pytest.FixtureRequest) -> WireTrace:
    """A wire trace for this test; saved beside the test report if the test fails."""
    trace = WireTrace()
    request.node.stash[TRACE_KEY] = trace
    return trace


def rig_lock_path(port: str) -> Path:
    """The lock file the tests on the rig at ``port`` take turns on."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", port).strip("_")
    return Path(tempfile.gettempdir()) / f"magpie-hil-{name}.lock"


@contextlib.contextmanager
def rig_lock(port: str | None) -> Iterator[None]:
    """Hold the rig at ``port`` for one test: the suite's workers (pytest -n) and any other
    pytest on this machine take turns on a real port instead of failing on "in use". Emulated
    rigs (``port`` None) are each their own and need no turn."""
    if port is None:
        yield
        return
    with open(rig_lock_path(port), "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes, also if the process dies
        yield


def _rig(kind: str, hil_options: HilOptions, hil_backend: str) -> Iterator[LoopbackRig | McuRig]:
    with rig_lock(hil_options.port if hil_backend == "port" else None):
        rig = make_rig(kind, hil_backend, hil_options.port)
        try:
            yield rig
        finally:
            rig.close()


@pytest.fixture
def hil_loopback_rig(hil_options: HilOptions, hil_backend: str) -> Iterator[LoopbackRig]:
    for rig in _rig("loopback", hil_options, hil_backend):
        assert isinstance(rig, LoopbackRig)
        yield rig


@pytest.fixture
def hil_loopback_port(hil_loopback_rig: LoopbackRig, hil_trace: WireTrace,
                      hil_options: HilOptions) -> Iterator[TracedPort]:
    """The loopback's port, opened exclusively and traced."""
    port = open_loopback(hil_loopback_rig, hil_options.baud or 115200, hil_trace)
    try:
        yield port
    finally:
        port.close()


@pytest.fixture
def hil_mcu_rig(hil_options: HilOptions, hil_backend: str) -> Iterator[McuRig]:
    for rig in _rig("mcu", hil_options, hil_backend):
        assert isinstance(rig, McuRig)
        yield rig


@pytest.fixture
def hil_mcu(hil_mcu_rig: McuRig, hil_baud: int, hil_trace: WireTrace) -> Iterator[McuSession]:
    """The real driver on the rig's port, handshaken, watchdog and stream set; closed after."""
    session = McuSession(hil_mcu_rig, hil_baud, hil_trace)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def hil_expect(hil_options: HilOptions,
               record_property: Callable[[str, object], None]) -> Callable[[list[Measurement]], None]:
    """Assert measurements against their limits and record each one in the test report.

    Every limit is enforced: a timing figure on an emulated rig against the emulated rig's
    (looser) limit, which the measurement carries (see :mod:`hil.checks`); a figure measured on
    hardware against the rig's. A timing figure held to the emulated limit on a hardware run
    would be a check's mistake, and fails too.
    """

    def check(measurements: list[Measurement]) -> None:
        assert measurements, "a check returned no measurements"
        for m in measurements:
            record_property(m.name, f"{m.value} {m.unit} (limit {m.limit})")
        failed = [m for m in measurements if not m.ok or (hil_options.hardware and m.emulated)]
        assert not failed, "limits not met:\n" + "\n".join(m.line() for m in failed)

    return check
