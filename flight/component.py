"""The component: the unit flight software is built from.

A component declares its commands (methods marked with :func:`flight.model.command`), telemetry
channels (``CHANNELS``), events (``EVENTS``), parameters (``PARAMS``) and the devices it needs
(``DEVICES``: role name -> hal contract class) on its class, next to the code that uses them.
The dictionary is generated from these declarations alone.

Life of a component: constructed with its instance name and options from the vehicle's TOML,
bound to the framework (clock, telemetry, events, parameters, data store) by the vehicle
assembly, ``setup()`` once, ``step()`` every cycle of its rate group, ``shutdown()`` once.
Components talk through the latest-value data store (``self.publish``/``self.read``) or typed
messages, never through each other's fields.

Telemetry is sampled, not streamed: ``self.tlm(name, value)`` (or ``put`` on a slot from
``self.tlm_slot``) only stores the latest value and checks limits, and a value that changes every
cycle but is downlinked once a second can be provided instead (``self.provide``), read only when
housekeeping samples it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from flight.model import COMMAND_ATTR, Channel, CommandDef, Event, Param

if TYPE_CHECKING:
    from flight.framework import Framework
    from flight.telemetry import TlmSlot


class Component:
    CHANNELS: ClassVar[tuple[Channel, ...]] = ()
    EVENTS: ClassVar[tuple[Event, ...]] = ()
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    DEVICES: ClassVar[dict[str, type]] = {}
    #: Options accepted from the vehicle configuration, name -> default.
    OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self, name: str, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise ValueError(
                f"component {name!r} ({type(self).__name__}): unknown option(s) {', '.join(unknown)}; "
                f"accepted: {', '.join(sorted(self.OPTIONS)) or 'none'}"
            )
        for key, value in options.items():
            _check_option(name, type(self).__name__, key, self.OPTIONS[key], value)
        self.name = name
        self.options = {**self.OPTIONS, **options}
        self.id_base: int | None = None
        self.devices: dict[str, Any] = {}
        self._fw: Framework | None = None
        # short name -> telemetry slot, full data-store key, full parameter name; filled on use
        self._tlm_slots: dict[str, TlmSlot] = {}
        self._store_keys: dict[str, str] = {}
        self._param_keys: dict[str, str] = {}
        # the framework's data store and parameter lookup, taken at bind (None before)
        self._datastore: dict[str, Any] | None = None
        self._param_lookup: Callable[[str], Any] | None = None

    # -- declarations (instances may extend these, e.g. per configured member) --------------

    def channels(self) -> tuple[Channel, ...]:
        return self.CHANNELS

    def events(self) -> tuple[Event, ...]:
        return self.EVENTS

    def params(self) -> tuple[Param, ...]:
        return self.PARAMS

    def commands(self) -> list[tuple[CommandDef, Callable[..., Any]]]:
        """Command declarations with their bound handlers, in definition order (base first).

        A class with several instances names its commands with ``{NAME}``, replaced by the
        instance name in capitals (``{NAME}_RESET`` becomes ``T0_RESET``).
        """
        seen: dict[str, tuple[CommandDef, Callable[..., Any]]] = {}
        for klass in reversed(type(self).__mro__):
            for attr, fn in vars(klass).items():
                cdef = getattr(fn, COMMAND_ATTR, None)
                if cdef is not None:
                    if "{NAME}" in cdef.name:
                        cdef = replace(cdef, name=cdef.name.replace("{NAME}", self.name.upper()))
                    seen[attr] = (cdef, getattr(self, attr))
        return list(seen.values())

    # -- life cycle ---------------------------------------------------------------------------

    def bind(self, fw: Framework) -> None:
        self._fw = fw
        self._tlm_slots = {}
        self._store_keys = {}
        self._param_keys = {}
        self._datastore = fw.store
        self._param_lookup = fw.params.get

    @property
    def fw(self) -> Framework:
        if self._fw is None:
            raise RuntimeError(f"component {self.name!r} is not bound to a vehicle yet")
        return self._fw

    def setup(self) -> None:
        """Called once after every component is bound and parameters are loaded."""

    def step(self) -> None:
        """Called every cycle of the component's rate group."""

    def shutdown(self) -> None:
        """Called once at a clean stop: flush and persist what must survive."""

    def on_param(self, name: str, value: Any) -> None:
        """Called when one of this component's parameters changes (short name)."""

    # -- helpers --------------------------------------------------------------------------------

    def now(self) -> float:
        return self.fw.clock.now()

    def tlm(self, channel: str, value: Any) -> None:
        """Put a value in a channel of this component (short name); limits are checked now."""
        try:
            slot = self._tlm_slots[channel]
        except KeyError:
            slot = self.tlm_slot(channel)
        slot.put(value)

    def tlm_slot(self, channel: str) -> TlmSlot:
        """The slot of one of this component's channels: ``slot.put(value)`` is :meth:`tlm`
        without the name lookup, for members that run every cycle."""
        slot = self._tlm_slots.get(channel)
        if slot is None:
            slot = self._tlm_slots[channel] = self.fw.tlm.slot(f"{self.name}.{channel}")
        return slot

    def provide(self, channel: str, fn: Callable[[], Any]) -> None:
        """Have a channel of this component sampled from ``fn()`` (None: no value yet) instead
        of put every cycle; for values that change each cycle but are downlinked once a second.
        A channel with limits must still be put, so that every value is checked."""
        slot = self.tlm_slot(channel)
        if slot.checks_limits:
            raise ValueError(f"channel {slot.name!r} has limits: put it, so every value is checked")
        slot.provider = fn

    def event(self, event_name: str, /, **args: Any) -> None:
        """Emit one of this component's events with its arguments."""
        self.fw.events.emit(self.name, event_name, args)

    def param(self, name: str) -> Any:
        """The value in force of one of this component's parameters (short name)."""
        key = self._param_keys.get(name)
        if key is None:
            params = self.fw.params  # raises when not bound yet
            key = self._param_keys[name] = f"{self.name}.{name}"
            return params.get(key)
        return self._param_lookup(key)  # type: ignore[misc]  # set at bind, with the first key

    def publish(self, key: str, value: Any) -> None:
        """Put a value in the latest-value data store under ``<component>.<key>``."""
        full = self._store_keys.get(key)
        if full is None:
            store = self.fw.store  # raises when not bound yet
            full = self._store_keys[key] = f"{self.name}.{key}"
            store[full] = value
            return
        self._datastore[full] = value  # type: ignore[index]  # set at bind, with the first key

    def read(self, key: str, default: Any = None) -> Any:
        """Latest value another component published (full key ``component.key``)."""
        store = self._datastore
        if store is None:
            store = self.fw.store
        return store.get(key, default)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _check_option(component: str, cls: str, key: str, default: Any, value: Any) -> None:
    """An option must have its default's type (an int will do for a float), else ValueError."""
    if default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(default, list | tuple):
        ok = isinstance(value, list | tuple)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        want = "number" if isinstance(default, float) else type(default).__name__
        raise ValueError(
            f"component {component!r} ({cls}): option {key} must be {want}, not {type(value).__name__} {value!r}"
        )
