"""The plugin's hooks: options, markers, rig parametrization, skips and wire traces on failure."""

from __future__ import annotations

import os
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil.ports import STANDARD_BAUDS
from hil.rig import available_backends
from hil.trace import WireTrace

TRACE_KEY = pytest.StashKey[WireTrace]()
TARGETS = ("loopback", "mcu")


@dataclass(frozen=True)
class HilOptions:
    """The configured rig, as the options and environment give it."""

    port: str | None
    target: str
    baud: int | None
    soak_s: float
    trace_dir: Path

    @property
    def hardware(self) -> bool:
        return self.port is not None

    def describe(self) -> str:
        if self.port is None:
            return "no --hil-port: HIL tests run against emulated rigs on pseudo-terminals"
        return f"{self.target} rig at {self.port}" + (f", {self.baud} baud" if self.baud else "")


OPTIONS_KEY = pytest.StashKey[HilOptions]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("magpie-hil", "Magpie hardware-in-the-loop")
    group.addoption("--hil-port", default=os.environ.get("MAGPIE_HIL_PORT") or None, metavar="URL",
                    help="rig serial port, a path or pyserial URL (env MAGPIE_HIL_PORT); "
                         "default: emulated rigs")
    group.addoption("--hil-target", default=os.environ.get("MAGPIE_HIL_TARGET") or "loopback",
                    choices=TARGETS, help="what is on the port: loopback (TX wired to RX) or mcu")
    group.addoption("--hil-baud", type=int, default=_env_int("MAGPIE_HIL_BAUD"), metavar="N",
                    help="the MCU's baud rate; for a loopback, the one rate to test")
    group.addoption("--hil-soak", type=float, default=1.0, metavar="S",
                    help="seconds of loopback soak (default %(default)s)")
    group.addoption("--hil-trace-dir", default=None, metavar="DIR",
                    help="where failed tests' wire traces go (default: beside --junitxml, "
                         "else ./hil-traces)")


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    try:
        return int(raw) if raw else None
    except ValueError:
        raise pytest.UsageError(f"{name}={raw!r} is not a baud rate") from None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "hil_loopback: needs a serial loopback (TX wired to RX)")
    config.addinivalue_line("markers", "hil_mcu: needs a microcontroller speaking the MCU protocol")
    trace_dir = config.getoption("hil_trace_dir", None)
    if trace_dir is None:
        xml = getattr(config.option, "xmlpath", None)
        trace_dir = Path(xml).resolve().parent / "hil-traces" if xml else Path.cwd() / "hil-traces"
    baud = config.getoption("hil_baud", None)
    if baud is not None and baud <= 0:
        raise pytest.UsageError(f"--hil-baud {baud}: a baud rate is positive")
    config.stash[OPTIONS_KEY] = HilOptions(
        port=config.getoption("hil_port", None), target=config.getoption("hil_target", "loopback"),
        baud=baud, soak_s=config.getoption("hil_soak", 1.0), trace_dir=Path(trace_dir))


def pytest_report_header(config: pytest.Config) -> str | None:
    opts = config.stash.get(OPTIONS_KEY, None)
    return f"magpie hil: {opts.describe()}" if opts is not None else None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    opts = metafunc.config.stash[OPTIONS_KEY]
    names = metafunc.fixturenames
    if "hil_backend" in names:
        target = "mcu" if "hil_mcu_rig" in names else "loopback"
        if opts.hardware:
            params = [pytest.param("port", id="port")]
        else:
            params = [pytest.param(name, id=name,
                                   marks=[pytest.mark.skip(reason=why)] if why else [])
                      for name, why in available_backends(target)]
        metafunc.parametrize("hil_backend", params, indirect=True)
    if "hil_line_baud" in names:
        bauds = [opts.baud] if opts.baud else list(STANDARD_BAUDS)
        metafunc.parametrize("hil_line_baud", bauds, ids=[str(b) for b in bauds])


def pytest_runtest_setup(item: pytest.Item) -> None:
    opts = item.config.stash[OPTIONS_KEY]
    if not opts.hardware:
        return
    if item.get_closest_marker("hil_mcu") and opts.target != "mcu":
        pytest.skip(f"needs a microcontroller; the rig at {opts.port} is a {opts.target} "
                    "(--hil-target mcu)")
    if item.get_closest_marker("hil_loopback") and opts.target != "loopback":
        pytest.skip(f"needs a loopback (TX wired to RX); the rig at {opts.port} is an "
                    f"{opts.target} (--hil-target loopback)")


def _trace_name(nodeid: str, when: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_") + f".{when}.trace.txt"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    trace = item.stash.get(TRACE_KEY, None)
    if trace is None or not report.failed:
        return
    opts = item.config.stash[OPTIONS_KEY]
    path = trace.save(opts.trace_dir / _trace_name(item.nodeid, report.when))
    tail = trace.dump().splitlines()[-40:]
    report.sections.append(("wire trace", f"full trace saved to {path}\n(last lines)\n"
                            + "\n".join(tail)))
    item.user_properties.append(("hil_wire_trace", str(path)))
