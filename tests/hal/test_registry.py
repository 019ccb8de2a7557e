"""Opening devices by URL: schemes, option checking and the closed-device contract."""

from __future__ import annotations

import pytest

from hal import known_schemes, open_device
from hal.errors import DeviceClosedError, DeviceUrlError
from hal.mcu.driver import split_url

pytestmark = pytest.mark.timeout(60)


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(DeviceUrlError, match="unknown device scheme 'lidar\\+usb'") as err:
        open_device("lidar+usb://0")
    assert "mcu+serial" in str(err.value)
    with pytest.raises(DeviceUrlError, match="no scheme"):
        open_device("/dev/ttyACM0")


def test_builtin_and_entry_point_schemes_are_known() -> None:
    schemes = known_schemes()
    for name in ("mcu+serial", "mcu+socket", "camera+opencv", "watchdog+linux", "mcu+pty"):
        assert name in schemes


@pytest.mark.parametrize("url, form", [
    ("mcu+serial:///dev/ttyACM0?baud=9600&parity=E", "mcu+serial:///dev/PORT?baud="),
    ("mcu+pty://?stream_hz=10&colour=red", "mcu+pty://?stream_hz="),
    ("camera+opencv://0?zoom=3", "camera+opencv://INDEX?"),
    ("watchdog+linux:///dev/watchdog?bark=1", "watchdog+linux:///dev/watchdog?timeout="),
])
def test_unknown_option_repeats_the_form(url: str, form: str) -> None:
    with pytest.raises(DeviceUrlError) as err:
        open_device(url)
    assert "unknown option" in str(err.value) and form in str(err.value)


def test_bad_option_values_are_rejected() -> None:
    with pytest.raises(DeviceUrlError, match="bad value 'fast' for option 'baud'"):
        open_device("mcu+serial:///dev/ttyACM0?baud=fast")
    with pytest.raises(DeviceUrlError, match="corrupt"):
        open_device("mcu+pty://?corrupt=2")
    with pytest.raises(DeviceUrlError, match="no port path"):
        open_device("mcu+serial://")


def test_mcu_urls_map_to_pyserial_ports() -> None:
    assert split_url("mcu+serial:///dev/ttyACM0?baud=921600") == ("/dev/ttyACM0",
                                                                   {"baud": 921600})
    assert split_url("mcu+socket://rig:7777?retries=1&exclusive=0") == (
        "socket://rig:7777", {"retries": 1, "exclusive": False})
    assert split_url("mcu+serial://?usb=2e8a:000a")[0] is None


def test_closed_devices_name_the_method() -> None:
    wd = open_device("watchdog+null://")
    wd.close()
    with pytest.raises(DeviceClosedError, match=r"NullWatchdog\.kick\(\) called on a closed"):
        wd.kick()  # type: ignore[attr-defined]
    mcu = open_device("mcu+pty://?stream_hz=10")
    mcu.close()
    for method in ("read_drive", "read_imu", "read_power", "read_thermal", "stop"):
        with pytest.raises(DeviceClosedError, match=rf"{method}\(\)"):
            getattr(mcu, method)()
