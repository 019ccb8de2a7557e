"""The partner SDK: the base class a hosted payload derives from.

A payload declares, on its class and exactly as a flight component does, its telemetry channels
(``CHANNELS``), events (``EVENTS``), parameters (``PARAMS``), options it accepts from the vehicle
configuration (``OPTIONS``) and its commands (methods marked with :func:`command`). The host reads
these declarations to allocate the payload's ids and put them in the vehicle dictionary; it never
imports the payload's code into the flight process for anything else. The payload runs in a
process of its own (see :mod:`flight.payload.child`) and sees only what the host hands it each
step: the spacecraft time, the channels the configuration grants it, its power state, its
parameters, its commands, and a directory for its data products. There is no way to command the
vehicle from here. See ``flight/payload/PAYLOADS.md`` for the whole contract.

Command names are written without a prefix (``@command("READ")``); the host publishes them as
``<INSTANCE>_READ`` (``SPEC_READ`` for a payload instance called ``spec``), so two partners'
dictionaries never collide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from flight.model import COMMAND_ATTR, Arg, Channel, CommandDef, Event, Limits, Param, Severity, command

__all__ = ["Arg", "Channel", "CommandFailed", "Event", "Limits", "Param", "Payload", "Severity", "command"]


class CommandFailed(Exception):
    """Raised by a payload command handler: the command was valid but could not be carried out."""


class Payload:
    """Base of every hosted payload. Override :meth:`setup`, :meth:`step`, :meth:`shutdown`."""

    CHANNELS: ClassVar[tuple[Channel, ...]] = ()
    EVENTS: ClassVar[tuple[Event, ...]] = ()
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self) -> None:
        self.name = ""
        self.options: dict[str, Any] = {}
        self.product_dir = Path(".")
        self.grants: frozenset[str] = frozenset()
        self._sdk_time_ns = 0
        self._sdk_channels: dict[str, Any] = {}
        self._sdk_power: dict[str, Any] = {"on": True}
        self._sdk_params: dict[str, Any] = {p.name: p.default for p in self.PARAMS}
        self._sdk_tlm: dict[str, Any] = {}
        self._sdk_events: list[tuple[str, dict[str, Any]]] = []
        self._sdk_products: list[tuple[str, dict[str, Any]]] = []

    # -- declarations (read by the host) -----------------------------------------------------

    @classmethod
    def declared_commands(cls) -> list[tuple[str, CommandDef]]:
        """(method name, declaration) of every command, base classes first."""
        seen: dict[str, CommandDef] = {}
        for klass in reversed(cls.__mro__):
            for attr, fn in vars(klass).items():
                cdef = getattr(fn, COMMAND_ATTR, None)
                if cdef is not None:
                    seen[attr] = cdef
        return list(seen.items())

    # -- life cycle ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Called once in the payload process, after the host's init."""

    def step(self) -> None:
        """Called every step the host grants (its rate group's rate, or less when throttled)."""

    def shutdown(self) -> None:
        """Called when the host stops the payload cleanly."""

    def on_param(self, name: str, value: Any) -> None:
        """Called when the ground changes one of this payload's parameters."""

    # -- the host's services -----------------------------------------------------------------

    def now(self) -> float:
        """Spacecraft time of the current step, in seconds."""
        return self._sdk_time_ns / 1e9

    def now_ns(self) -> int:
        return self._sdk_time_ns

    def channel(self, name: str) -> Any:
        """Latest value of a vehicle channel the configuration grants this payload.

        Raises PermissionError for a channel that is not granted: the host never sends it.
        """
        if name not in self.grants:
            raise PermissionError(f"channel {name!r} is not granted to payload {self.name!r}")
        return self._sdk_channels.get(name)

    @property
    def power(self) -> dict[str, Any]:
        """The payload's rail as the host sees it: ``on``, ``energy_wh`` used this sol, ``budget_wh``."""
        return dict(self._sdk_power)

    def param(self, name: str) -> Any:
        return self._sdk_params[name]

    def tlm(self, channel: str, value: Any) -> None:
        """Write one of this payload's own channels (short name)."""
        self._sdk_tlm[channel] = value

    def event(self, event_name: str, /, **args: Any) -> None:
        """Emit one of this payload's own events."""
        self._sdk_events.append((event_name, args))

    def product(self, file_name: str, meta: dict[str, Any] | None = None) -> None:
        """Hand a finished data product (a file written in :attr:`product_dir`) to the host.

        The host downlinks it on the payload's own APID, counts it against the data budget, and
        removes the file once it is queued.
        """
        self._sdk_products.append((file_name, dict(meta or {})))

    # -- used by the runner ---------------------------------------------------------------------

    def _take_outputs(self) -> tuple[dict[str, Any], list[Any], list[Any]]:
        tlm, ev, prod = self._sdk_tlm, self._sdk_events, self._sdk_products
        self._sdk_tlm, self._sdk_events, self._sdk_products = {}, [], []
        return tlm, [list(e) for e in ev], [list(p) for p in prod]

    def _handler(self, method: str) -> Callable[..., Any]:
        return getattr(self, method)
