"""Open devices by URL through a lazy table of schemes.

``open_device("mcu+serial:///dev/ttyACM0?baud=921600")`` looks the scheme up, imports only the
module that implements it, and calls its opener with the URL. The table holds hal's own drivers;
other packages (the simulated world, third-party drivers) join through the ``magpie.devices``
entry-point group or :func:`register_scheme`, so no central list is edited. A module path is
never taken from the URL itself.

An opener is ``opener(url: str, **context) -> Device``. ``context`` carries what a URL cannot
(for ``sim://``, the in-process world).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hal.contracts import Device
from hal.errors import DeviceUrlError

log = logging.getLogger(__name__)

Opener = Callable[..., Device]

# scheme -> "module:function". Imported on first use only.
_BUILTIN: dict[str, str] = {
    "mcu+serial": "hal.mcu.driver:open_serial_mcu",
    "camera+opencv": "hal.camera:open_opencv_camera",
    "camera+opencv-stereo": "hal.camera:open_opencv_stereo",
    "radio+zmq": "hal.radio:open_zmq_radio",
    "radio+loop": "hal.radio:open_loop_radio",
    "watchdog+linux": "hal.watchdog:open_linux_watchdog",
    "watchdog+null": "hal.watchdog:open_null_watchdog",
}

# "mcu+<pyserial scheme>" reaches the MCU driver through any pyserial URL handler.
_PYSERIAL_SCHEMES = ("loop", "socket", "rfc2217", "spy", "alt", "hwgrep", "cp2110")

_registered: dict[str, Opener] = {}


def register_scheme(scheme: str, opener: Opener) -> None:
    """Add or replace the opener for a scheme at run time (tests, plug-ins)."""
    _registered[scheme.lower()] = opener


def _load(target: str) -> Opener:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def _entry_point_targets() -> dict[str, Any]:
    return {ep.name.lower(): ep for ep in entry_points(group="magpie.devices")}


def known_schemes() -> list[str]:
    names = set(_BUILTIN) | set(_registered) | set(_entry_point_targets())
    names |= {f"mcu+{s}" for s in _PYSERIAL_SCHEMES}
    return sorted(names)


def resolve(scheme: str) -> Opener:
    scheme = scheme.lower()
    if scheme in _registered:
        return _registered[scheme]
    if scheme in _BUILTIN:
        return _load(_BUILTIN[scheme])
    if scheme.startswith("mcu+") and scheme[4:] in _PYSERIAL_SCHEMES:
        return _load(_BUILTIN["mcu+serial"])
    eps = _entry_point_targets()
    if scheme in eps:
        return eps[scheme].load()
    raise DeviceUrlError(
        f"unknown device scheme {scheme!r}; known schemes: {', '.join(known_schemes())}"
    )


def open_device(url: str, **context: Any) -> Device:
    """Open the device a URL names. Raises DeviceUrlError for a URL no driver accepts."""
    if not isinstance(url, str) or "://" not in url:
        raise DeviceUrlError(f"device URL {url!r} has no scheme; expected e.g. 'mcu+serial:///dev/ttyACM0'")
    scheme = url.split("://", 1)[0]
    opener = resolve(scheme)
    log.debug("opening %s with %s", url, getattr(opener, "__qualname__", opener))
    return opener(url, **context)


def parse_bool(raw: str) -> bool:
    """A URL flag: 1/true/yes/on or 0/false/no/off (any case)."""
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def parse_options(url: str, allowed: dict[str, Callable[[str], Any]], form: str) -> dict[str, Any]:
    """Parse a URL's query into typed options; unknown or malformed ones raise, repeating the form.

    ``allowed`` maps option name to a converter (int, float, str, a custom parser).
    """
    try:
        query = urlsplit(url).query
    except ValueError as exc:  # e.g. an unbalanced '[' is taken for an IPv6 address
        raise DeviceUrlError(f"{url!r} is not a URL ({exc}); accepted form: {form}") from None
    out: dict[str, Any] = {}
    for key, raw in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise DeviceUrlError(
                f"unknown option {key!r} in {url!r}; accepted form: {form} "
                f"(options: {', '.join(sorted(allowed)) or 'none'})"
            )
        try:
            out[key] = allowed[key](raw)
        except (TypeError, ValueError) as exc:
            raise DeviceUrlError(f"bad value {raw!r} for option {key!r} in {url!r}; form: {form}") from exc
    return out
