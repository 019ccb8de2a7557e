"""Watchdog drivers: a regular file stands in for /dev/watchdog."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hal import open_device
from hal.errors import DeviceClosedError, DeviceUrlError, HalError
from hal.watchdog import LinuxWatchdog, NullWatchdog

pytestmark = pytest.mark.timeout(60)


def test_kicks_and_magic_close_on_a_stand_in_file(tmp_path: Path) -> None:
    stand_in = tmp_path / "watchdog"
    stand_in.write_bytes(b"")
    wd = open_device(f"watchdog+linux://?path={stand_in}&timeout=15")
    assert isinstance(wd, LinuxWatchdog) and wd.timeout_s == 15.0
    for _ in range(3):
        wd.kick()
    assert wd.kicks == 3
    wd.close()
    wd.close()
    assert stand_in.read_bytes() == b"\x00\x00\x00V"
    with pytest.raises(DeviceClosedError, match=r"LinuxWatchdog\.kick\(\)"):
        wd.kick()


def test_magic_close_can_be_disabled(tmp_path: Path) -> None:
    stand_in = tmp_path / "wd"
    stand_in.write_bytes(b"")
    with open_device(f"watchdog+linux://{stand_in}?magic_close=0") as wd:
        wd.kick()  # type: ignore[attr-defined]
    assert stand_in.read_bytes() == b"\x00"


def test_missing_device_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HalError, match="does not exist"):
        open_device(f"watchdog+linux://?path={tmp_path}/none")


def _unwritable(tmp_path: Path) -> str:
    if os.geteuid() != 0:
        path = tmp_path / "locked"
        path.write_bytes(b"")
        path.chmod(0o400)
        return str(path)
    # root ignores file modes; read-only sysfs attributes still refuse writers
    for candidate in ("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size",
                      "/sys/kernel/notes", "/sys/power/wakeup_count_ro"):
        if os.path.exists(candidate) and not os.access(candidate, os.W_OK):
            return candidate
        if os.path.exists(candidate):
            try:
                os.close(os.open(candidate, os.O_WRONLY))
            except PermissionError:
                return candidate
    pytest.skip("no unwritable file available to a root user here")


def test_permission_denied_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HalError, match="no permission"):
        LinuxWatchdog(_unwritable(tmp_path))


def test_null_watchdog_counts_kicks() -> None:
    wd = open_device("watchdog+null://?timeout=3")
    assert isinstance(wd, NullWatchdog) and wd.timeout_s == 3.0
    wd.kick()
    wd.kick()
    assert wd.kicks == 2
    with pytest.raises(DeviceUrlError, match="watchdog\\+null://"):
        open_device("watchdog+null://?bark=1")
