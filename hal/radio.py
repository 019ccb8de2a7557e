"""Radio devices: link frames over ZeroMQ to the relay, or an in-process loop pair.

``radio+zmq://tcp://HOST:PORT?scid=N[&hwm=N][&linger_ms=N]`` connects a DEALER socket with
identity ``scid:N`` to the relay's vehicle endpoint (``magpie relay``); the first message is an
empty hello so the relay can route uplink frames before the vehicle has sent anything. Any
ZeroMQ transport after ``radio+zmq://`` works (``ipc://``, ``inproc://`` with a shared context).

``radio+loop://NAME?side=vehicle|ground[&carrier=1]`` opens one end of an in-process pair named
NAME; ``carrier=1`` lets the vehicle's end sense when the link model has it out of view. With
``relay=`` (an object with ``submit(direction, frame, now_s)`` and ``deliver_due(now_s)``, such
as the simulated relay model) and ``clock=`` (a callable returning seconds) in the opener's
context, frames pass through the model in lockstep; without them they cross at once.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import zmq

from hal.contracts import Radio
from hal.errors import DeviceUrlError, HalError, LinkDownError
from hal.registry import parse_bool, parse_options

log = logging.getLogger(__name__)

ZMQ_FORM = "radio+zmq://tcp://HOST:PORT?scid=N[&hwm=N][&linger_ms=N]"
LOOP_FORM = "radio+loop://NAME?side=vehicle|ground[&carrier=1]"


class ZmqRadio(Radio):
    """Frames to and from the relay over a ZeroMQ DEALER socket."""

    def __init__(
        self,
        url: str,
        endpoint: str,
        scid: int,
        hwm: int = 10_000,
        linger_ms: int = 0,
        context: zmq.Context | None = None,
    ) -> None:
        super().__init__(url)
        self.scid = scid
        self.endpoint = endpoint
        self.dropped = 0
        try:
            self._ctx = context or zmq.Context.instance()
            self._sock = self._ctx.socket(zmq.DEALER)
            self._sock.setsockopt(zmq.IDENTITY, f"scid:{scid}".encode())
            self._sock.setsockopt(zmq.SNDHWM, hwm)
            self._sock.setsockopt(zmq.RCVHWM, hwm)
            self._sock.setsockopt(zmq.LINGER, linger_ms)
            self._sock.connect(endpoint)
            self._sock.send(b"", zmq.NOBLOCK)  # hello: lets the relay route uplink to us
        except zmq.ZMQError as exc:
            raise LinkDownError(f"radio {url}: {exc}") from exc

    def send(self, frame: bytes) -> None:
        self._check_open("send")
        if not frame:
            raise ValueError("an empty frame cannot be sent (it is the relay hello)")
        try:
            self._sock.send(frame, zmq.NOBLOCK)
        except zmq.Again as exc:
            self.dropped += 1
            raise LinkDownError(f"radio {self.url}: transmit queue full") from exc
        except zmq.ZMQError as exc:
            raise LinkDownError(f"radio {self.url}: {exc}") from exc

    def recv(self, timeout_s: float = 0.0) -> bytes | None:
        self._check_open("recv")
        try:
            if not self._sock.poll(max(0, int(timeout_s * 1000)), zmq.POLLIN):
                return None
            return self._sock.recv(zmq.NOBLOCK)
        except zmq.Again:
            return None
        except zmq.ZMQError as exc:
            raise LinkDownError(f"radio {self.url}: {exc}") from exc

    def _close(self) -> None:
        try:
            self._sock.close()
        except zmq.ZMQError as exc:  # pragma: no cover - close seldom fails
            raise HalError(f"radio {self.url}: {exc}") from exc


def parse_zmq_url(url: str) -> tuple[str, dict[str, int]]:
    """``radio+zmq://...`` -> (ZeroMQ endpoint, options); DeviceUrlError naming the form.

    Checks a configuration without opening anything (``magpie flight --check``).
    """
    if not url.startswith("radio+zmq://"):
        raise DeviceUrlError(f"{url!r} is not a radio+zmq URL; form: {ZMQ_FORM}")
    rest = url[len("radio+zmq://") :]
    parts = urlsplit(rest)
    if not parts.scheme or not (parts.netloc or parts.path):
        raise DeviceUrlError(f"{url!r} names no ZeroMQ endpoint; form: {ZMQ_FORM}")
    opts = parse_options(url, {"scid": int, "hwm": int, "linger_ms": int}, ZMQ_FORM)
    if "scid" not in opts:
        raise DeviceUrlError(f"{url!r} has no scid option; form: {ZMQ_FORM}")
    if not 0 <= opts["scid"] <= 0xFFFF:
        raise DeviceUrlError(f"scid {opts['scid']} in {url!r} does not fit 16 bits")
    return rest.split("?", 1)[0], opts


def open_zmq_radio(url: str, **context: Any) -> ZmqRadio:
    """Opener for ``radio+zmq://``; ``context`` may carry ``zmq_context``."""
    endpoint, opts = parse_zmq_url(url)
    return ZmqRadio(
        url,
        endpoint,
        opts["scid"],
        hwm=opts.get("hwm", 10_000),
        linger_ms=opts.get("linger_ms", 0),
        context=context.get("zmq_context"),
    )


class LinkModel(Protocol):
    def submit(self, direction: str, frame: bytes, now_s: float) -> Any: ...
    def deliver_due(self, now_s: float) -> list[tuple[str, bytes]]: ...


class _LoopChannel:
    """Shared state of one named loop pair."""

    def __init__(self, relay: LinkModel | None, clock: Callable[[], float] | None) -> None:
        self.relay = relay
        self.clock = clock
        self.inbox: dict[str, deque[bytes]] = {"vehicle": deque(), "ground": deque()}
        self.cond = threading.Condition()

    def pump(self) -> None:
        if self.relay is None or self.clock is None:
            return
        for direction, frame in self.relay.deliver_due(self.clock()):
            self.inbox["ground" if direction == "down" else "vehicle"].append(frame)


_channels: dict[str, _LoopChannel] = {}
_channels_lock = threading.Lock()


class LoopRadio(Radio):
    """One end of an in-process radio pair (see the module docstring)."""

    def __init__(self, url: str, channel: _LoopChannel, side: str, carrier_sense: bool = False) -> None:
        super().__init__(url)
        self.carrier_sense = carrier_sense
        self.channel = channel
        self.side = side
        self.peer = "ground" if side == "vehicle" else "vehicle"

    def send(self, frame: bytes) -> None:
        self._check_open("send")
        ch = self.channel
        with ch.cond:
            if ch.relay is not None and ch.clock is not None:
                ch.relay.submit(
                    "down" if self.side == "vehicle" else "up", bytes(frame), ch.clock()
                )
            else:
                ch.inbox[self.peer].append(bytes(frame))
            ch.cond.notify_all()

    @property
    def carrier(self) -> bool:
        """Whether the far end is in view now, as a proximity radio knows from its lock on the
        relay: with ``carrier=1`` in the URL, the link model's ``visible(now)`` for the vehicle's
        end; otherwise (and without a model) always True."""
        ch = self.channel
        visible = getattr(ch.relay, "visible", None)
        if not self.carrier_sense or self.side != "vehicle" or visible is None or ch.clock is None:
            return True
        return bool(visible(ch.clock()))

    def recv(self, timeout_s: float = 0.0) -> bytes | None:
        self._check_open("recv")
        ch = self.channel
        with ch.cond:
            ch.pump()
            box = ch.inbox[self.side]
            if not box and timeout_s > 0 and ch.relay is None:
                ch.cond.wait_for(lambda: bool(box), timeout_s)
            return box.popleft() if box else None


def open_loop_radio(url: str, **context: Any) -> LoopRadio:
    """Opener for ``radio+loop://NAME?side=vehicle|ground``; context: ``relay``, ``clock``."""
    if not url.startswith("radio+loop://"):
        raise DeviceUrlError(f"{url!r} is not a radio+loop URL; form: {LOOP_FORM}")
    opts = parse_options(url, {"side": str, "carrier": parse_bool}, LOOP_FORM)
    side = opts.get("side", "vehicle")
    if side not in ("vehicle", "ground"):
        raise DeviceUrlError(
            f"side {side!r} in {url!r} must be vehicle or ground; form: {LOOP_FORM}"
        )
    name = urlsplit(url).netloc or "default"
    with _channels_lock:
        ch = _channels.get(name)
        if ch is None or ("relay" in context and context["relay"] is not ch.relay):
            ch = _LoopChannel(context.get("relay"), context.get("clock"))
            _channels[name] = ch
    return LoopRadio(url, ch, side, bool(opts.get("carrier", False)))
