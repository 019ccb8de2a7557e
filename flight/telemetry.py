"""Telemetry: the latest value of every channel, limit checking, and housekeeping sampling.

Components write channels whenever they like; the housekeeping member samples the database at
its rate group's rate into :class:`~flight.outbound.TlmPacket` items. Channels declared
``update="on_change"`` are only sampled when their value changed since the last sample, which
keeps counters and modes from filling the downlink.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flight import types
from flight.clock import Clock
from flight.component import Component
from flight.model import Arg, Channel, Event, Param, Severity
from flight.outbound import OutboundQueue, TlmPacket

_CAST: dict[str, type] = {"float": float, "int": int, "bool": bool, "str": str}


@dataclass(slots=True)
class _Slot:
    id: int
    name: str
    channel: Channel
    cast: type
    checks_limits: bool
    value: Any = None
    time_ns: int = -1
    sampled: Any = None
    has_value: bool = False
    limit: str = "ok"
    provider: Callable[[], Any] | None = None


class TlmDb:
    """Latest value and spacecraft time of every declared channel.

    A channel is either written by its component (``write``) or *provided*: a callable read at
    housekeeping time (``provide``), which keeps statistics such as per-member execution times
    off the executive's hot path.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._slots: dict[str, _Slot] = {}
        self._order: list[_Slot] = []
        #: called as fn(name, old_state, new_state, value) when a limit state changes
        self.on_limit: Callable[[str, str, str, Any], None] | None = None

    def declare(self, cid: int, name: str, channel: Channel) -> None:
        if name in self._slots:
            raise ValueError(f"channel {name!r} declared twice")
        lim = channel.limits
        slot = _Slot(cid, name, channel, _CAST[types.spec(channel.type).kind], bool(lim.red or lim.yellow))
        self._slots[name] = slot
        self._order.append(slot)

    def provide(self, name: str, fn: Callable[[], Any]) -> None:
        """Make a channel's value come from ``fn()`` whenever it is read or sampled."""
        self._slots[name].provider = fn

    def write(self, name: str, value: Any) -> None:
        try:
            slot = self._slots[name]
        except KeyError:
            raise KeyError(f"no telemetry channel {name!r}") from None
        if type(value) is not slot.cast:
            value = slot.cast(value)
        slot.value = value
        slot.time_ns = self.clock.now_ns()
        slot.has_value = True
        if slot.checks_limits:
            self._check(slot, value)

    def _check(self, slot: _Slot, value: Any) -> None:
        state = slot.channel.limits.state(value)
        if state != slot.limit:
            old, slot.limit = slot.limit, state
            if self.on_limit is not None:
                self.on_limit(slot.name, old, state, value)

    def _refresh(self, slot: _Slot) -> None:
        if slot.provider is not None:
            self.write(slot.name, slot.provider())

    def get(self, name: str, default: Any = None) -> Any:
        slot = self._slots.get(name)
        if slot is None:
            return default
        self._refresh(slot)
        return slot.value if slot.has_value else default

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
            if slot.provider is not None:
                self._refresh(slot)
            if not slot.has_value:
                continue
            if slot.channel.update == "on_change" and slot.value == slot.sampled:
                continue
            out.append((slot.id, slot.value))
            slot.sampled = slot.value
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
