"""`magpie flight` and fault protection's restart response: the process exits with status 75 so
a service manager (systemd's Restart=on-failure) starts it again, and the reboot-loop limit,
kept in the state directory, holds across those processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from magpie.flightrun import EXIT_RESTART

CONFIG = """
[vehicle]
name = "restarter"
spacecraft_id = 9

[components.t0]
type = "ticker"

[components.fault]
type = "fault"
boot_mode = "STANDBY"
builtins = false

[components.fault.monitors.always]
channel = "sys.uptime_s"
condition = "> 0.3"
persistence = 1
response = "restart"

[[rate_groups]]
name = "control"
hz = 20
members = ["t0", "cmd", "seq"]

[[rate_groups]]
name = "hk"
hz = 5
members = ["sys", "fault", "health", "tlm"]
"""


def _fly(config: Path, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "magpie.cli", "flight", "--config", str(config), "--state-dir", str(state),
         "--duration", "2.5", "--verbose"],
        capture_output=True, text=True, timeout=40)


@pytest.mark.timeout(120)
def test_restart_exits_75_until_the_reboot_loop_limit(tmp_path: Path) -> None:
    config = tmp_path / "restarter.toml"
    config.write_text(CONFIG)
    state = tmp_path / "state"
    codes = []
    for _ in range(4):
        run = _fly(config, state)
        codes.append(run.returncode)
        if run.returncode == EXIT_RESTART:
            assert "asked for a restart" in run.stderr and "always" in run.stderr, run.stderr
    # three restarts are allowed in the window; the fourth request is refused and the vehicle
    # stays up (in SAFE) until its duration ends
    assert codes == [EXIT_RESTART, EXIT_RESTART, EXIT_RESTART, 0], codes
    assert "RestartLimited" in run.stderr or "restart limit" in run.stderr.lower(), run.stderr
