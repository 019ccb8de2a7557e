"""Magpie's pytest plugin for hardware-in-the-loop tests (entry point ``pytest11: magpie_hil``).

Options (command line, or the environment where noted):

- ``--hil-port URL`` (``MAGPIE_HIL_PORT``): the rig's serial port, a device path or a pyserial
  URL. Without it the HIL tests run against emulated rigs on pseudo-terminals (and socat pty
  pairs where socat is installed): the same test code, no hardware.
- ``--hil-target loopback|mcu`` (``MAGPIE_HIL_TARGET``, default loopback): what is on the port.
- ``--hil-baud N`` (``MAGPIE_HIL_BAUD``): the MCU's baud rate; for a loopback, test only this rate.
- ``--hil-soak S``: seconds of the loopback soak (default 1).
- ``--hil-trace-dir DIR``: where a failed test's wire trace goes (default: beside the JUnit XML
  report if ``--junitxml`` is given, else ``./hil-traces``).

Markers: ``hil_loopback`` (needs TX wired to RX) and ``hil_mcu`` (needs a microcontroller).
Against a real port, a test the rig cannot run is skipped and the reason names the rig.

Hooks live in :mod:`hil.pytestplugin.hooks`, fixtures in :mod:`hil.pytestplugin.fixtures`.
"""

from hil.pytestplugin.fixtures import (
    hil_backend,
    hil_baud,
    hil_expect,
    hil_loopback_port,
    hil_loopback_rig,
    hil_mcu,
    hil_mcu_rig,
    hil_options,
    hil_trace,
)
from hil.pytestplugin.hooks import (
    pytest_addoption,
    pytest_configure,
    pytest_generate_tests,
    pytest_report_header,
    pytest_runtest_makereport,
    pytest_runtest_setup,
)

__all__ = [
    "hil_backend", "hil_baud", "hil_expect", "hil_loopback_port", "hil_loopback_rig", "hil_mcu",
    "hil_mcu_rig", "hil_options", "hil_trace",
    "pytest_addoption", "pytest_configure", "pytest_generate_tests", "pytest_report_header",
    "pytest_runtest_makereport", "pytest_runtest_setup",
]
