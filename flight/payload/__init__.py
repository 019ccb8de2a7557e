"""Hosted partner payloads: the host component, its protocol, budgets and id allocation.

Partners write payloads against :mod:`flight.payload.sdk` (see ``PAYLOADS.md`` in this package).
The host is imported lazily so a payload process loads only the SDK and the protocol.
"""

from typing import Any

from flight.payload.sdk import Payload

__all__ = ["ENTRY_POINT_GROUP", "Payload", "PayloadHost", "State"]


def __getattr__(name: str) -> Any:
    if name in ("ENTRY_POINT_GROUP", "PayloadHost", "State"):
        from flight.payload import host

        return getattr(host, name)
    raise AttributeError(name)
