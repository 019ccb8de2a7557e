"""systemd's notify protocol by hand: READY, STATUS, WATCHDOG and STOPPING datagrams.

Under a unit with ``Type=notify`` systemd puts a socket path in ``NOTIFY_SOCKET`` (a leading
``@`` means the Linux abstract namespace) and, with ``WatchdogSec=``, the interval in
``WATCHDOG_USEC``. Each notification is one ``AF_UNIX`` datagram of ``KEY=value`` lines. Outside
systemd every call is a no-op. A failed send is counted and logged once; it never stops flight.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Tells systemd how the service is doing, if systemd is listening."""

    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self.clock = clock
        self.failures = 0
        self.sent = 0
        raw = env.get("NOTIFY_SOCKET", "")
        self.address = ("\0" + raw[1:]) if raw.startswith("@") else raw
        self.watchdog_s: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6
        self._last_ping = float("-inf")
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, **fields: object) -> bool:
        """One datagram of ``KEY=value`` lines; False if systemd is absent or the send failed."""
        if self._sock is None:
            return False
        text = "\n".join(f"{k}={v}" for k, v in fields.items())
        try:
            self._sock.sendto(text.encode(), self.address)
        except OSError as exc:
            self.failures += 1
            if self.failures == 1:
                log.warning("sd_notify to %r failed: %s (further failures are only counted)",
                            self.address, exc)
            return False
        self.sent += 1
        return True

    def ready(self, status: str = "") -> bool:
        fields: dict[str, object] = {"READY": 1, "MAINPID": os.getpid()}
        if status:
            fields["STATUS"] = status
        return self.send(**fields)

    def status(self, text: str) -> bool:
        return self.send(STATUS=text)

    def stopping(self, status: str = "") -> bool:
        return self.send(STOPPING=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        """Ping the watchdog, at most twice per interval (call it as often as convenient)."""
        if self.watchdog_s is None:
            return False
        now = self.clock()
        if now - self._last_ping < self.watchdog_s / 2:
            return False
        self._last_ping = now
        return self.send(WATCHDOG=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
