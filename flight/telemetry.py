"""Telemetry: the latest value of every channel, limit checking, and housekeeping sampling.

Every declared channel has one preallocated :class:`TlmSlot`. A component puts values into its
slots whenever it likes (``self.tlm(name, value)``, or ``slot.put(value)`` on a handle from
``self.tlm_slot(name)`` in a fast loop); a put only stores the value (cast to the channel's kind)
and, on a channel with red/yellow limits, checks them, so no excursion is missed between samples.
A channel may instead be *provided*: a callable read when the channel is sampled or read, which
keeps values that change every cycle but are looked at once a second off the hot path. The
housekeeping member samples the slots at its rate group's rate into
:class:`~flight.outbound.TlmPacket` items. Channels declared ``update="on_change"`` are only
sampled when their value changed since the last sample, which keeps counters and modes from
filling the downlink.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flight import types
from flight.clock import Clock
from flight.component import Component
from flight.model import Arg, Channel, Event, Limits, Param, Severity
from flight.outbound import OutboundQueue, TlmPacket

_CAST: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


class TlmSlot:
    """The latest value of one channel. ``value`` is None until the first put."""

    __slots__ = ("id", "name", "channel", "cast", "on_change", "value", "sampled", "limit", "provider")
    checks_limits = False

    def __init__(self, cid: int, name: str, channel: Channel, cast: type) -> None:
        self.id = cid
        self.name = name
        self.channel = channel
        self.cast = cast
        self.on_change = channel.update == "on_change"
        self.value: Any = None
        self.sampled: Any = None
        self.limit = "ok"
        self.provider: Callable[[], Any] | None = None

    def put(self, value: Any) -> None:
        """Store a new value (cast to the channel's kind, as the archive will see it)."""
        if type(value) is not self.cast:
            value = self.cast(value)
        self.value = value

    def refresh(self) -> None:
        """Take a provided channel's value now (a provider returning None leaves it as it is)."""
        if self.provider is not None:
            value = self.provider()
            if value is not None:
                self.put(value)


class _LimitSlot(TlmSlot):
    """A slot whose channel has limits: every put is checked, a change of state is reported."""

    __slots__ = ("limits", "report", "_numeric", "_red", "_yellow")
    checks_limits = True

    def __init__(self, cid: int, name: str, channel: Channel, cast: type,
                 report: Callable[[TlmSlot, str, Any], None]) -> None:
        super().__init__(cid, name, channel, cast)
        self.limits: Limits = channel.limits
        self.report = report
        # Limits.state, unrolled: after the cast a value is exactly of the channel's kind, and
        # only numbers (not bools or strings) are ever outside their limits
        self._numeric = cast is float or cast is int
        self._red = self.limits.red or None
        self._yellow = self.limits.yellow or None

    def put(self, value: Any) -> None:
        if type(value) is not self.cast:
            value = self.cast(value)
        self.value = value
        if not self._numeric:
            return
        red, yellow = self._red, self._yellow
        if red is not None and not red[0] <= value <= red[1]:
            state = "red"
        elif yellow is not None and not yellow[0] <= value <= yellow[1]:
            state = "yellow"
        else:
            state = "ok"
        if state != self.limit:
            self.report(self, state, value)


class TlmDb:
    """The slots of every declared channel, by full name (``component.channel``).

    A channel is either put by its component or *provided*: a callable read at housekeeping
    time (``provide``), which keeps statistics such as per-member execution times off the
    executive's hot path.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._slots: dict[str, TlmSlot] = {}
        self._order: list[TlmSlot] = []
        #: called as fn(name, old_state, new_state, value) when a limit state changes
        self.on_limit: Callable[[str, str, str, Any], None] | None = None

    def declare(self, cid: int, name: str, channel: Channel) -> None:
        if name in self._slots:
            raise ValueError(f"channel {name!r} declared twice")
        lim = channel.limits
        cast = _CAST[types.spec(channel.type).kind]
        if lim.red or lim.yellow:
            slot: TlmSlot = _LimitSlot(cid, name, channel, cast, self._limit_changed)
        else:
            slot = TlmSlot(cid, name, channel, cast)
        self._slots[name] = slot
        self._order.append(slot)

    def slot(self, name: str) -> TlmSlot:
        """The slot of a declared channel (KeyError naming the channel if there is none)."""
        try:
            return self._slots[name]
        except KeyError:
            raise KeyError(f"no telemetry channel {name!r}") from None

    def provide(self, name: str, fn: Callable[[], Any]) -> None:
        """Make a channel's value come from ``fn()`` whenever it is read or sampled."""
        self.slot(name).provider = fn

    def write(self, name: str, value: Any) -> None:
        self.slot(name).put(value)

    def _limit_changed(self, slot: TlmSlot, state: str, value: Any) -> None:
        old, slot.limit = slot.limit, state
        if self.on_limit is not None:
            self.on_limit(slot.name, old, state, value)

    def get(self, name: str, default: Any = None) -> Any:
        slot = self._slots.get(name)
        if slot is None:
            return default
        slot.refresh()
        return default if slot.value is None else slot.value

    def names(self) -> list[str]:
        return [s.name for s in self._order]

    def id_to_name(self) -> dict[int, str]:
        return {s.id: s.name for s in self._order}

    def limit_state(self, name: str) -> str:
        return self._slots[name].limit

    def sample(self) -> tuple[tuple[int, Any], ...]:
        """Values due in a housekeeping sample; marks them sampled."""
        out = []
        for slot in self._order:
            provider = slot.provider
            if provider is not None:  # TlmSlot.refresh, inlined: this runs for every slot
                value = provider()
                if value is not None:
                    slot.put(value)
            value = slot.value
            if value is None:
                continue
            if slot.on_change and value == slot.sampled:
                continue
            out.append((slot.id, value))
            slot.sampled = value
        return tuple(out)


class Housekeeping(Component):
    """Samples the telemetry database into packets at its rate group's rate (or a divisor of it)."""

    CHANNELS = (
        Channel("packets", "u32", doc="housekeeping packets produced", update="on_change"),
        Channel("outbound_depth", "u32", doc="items waiting in the outbound queue"),
        Channel("outbound_dropped", "u32", doc="items dropped by the outbound queue when full",
                update="on_change"),
    )
    EVENTS = (
        Event("LimitCrossed", Severity.WARNING_LO, "{channel} is {state} at {value}",
              (Arg("channel", "str"), Arg("state", "str"), Arg("value", "str")),
              throttle=10, throttle_window_s=60.0,
              doc="a channel entered or left its yellow or red limits"),
        Event("OutboundDropping", Severity.WARNING_HI, "outbound queue full: {dropped} dropped",
              (Arg("dropped", "u32"),), throttle=1, throttle_window_s=60.0),
    )
    PARAMS = (Param("divider", "u16", 1, min=1, max=1000,
                    doc="sample every Nth cycle of the rate group"),)

    def setup(self) -> None:
        self._cycle = 0
        self._packets = 0
        self._last_dropped = 0
        self.fw.tlm.on_limit = self._limit

    def _limit(self, name: str, old: str, new: str, value: Any) -> None:
        self.event("LimitCrossed", channel=name, state=new, value=f"{value:.6g}"
                   if isinstance(value, float) else str(value))

    def step(self) -> None:
        self._cycle += 1
        if self._cycle % self.param("divider"):
            return
        out: OutboundQueue = self.fw.outbound
        dropped = out.total_dropped
        if dropped != self._last_dropped:
            self.event("OutboundDropping", dropped=dropped)
            self._last_dropped = dropped
        self.tlm("outbound_depth", len(out))
        self.tlm("outbound_dropped", dropped)
        self._packets += 1
        self.tlm("packets", self._packets)
        samples = self.fw.tlm.sample()
        if samples:
            out.put(TlmPacket(self.fw.clock.now_ns(), samples))
