"""The relay link: a pure model of the space link's physics, and the ``magpie relay`` process.

:class:`RelayLink` is a model on a clock it is given (no threads, no sleeping): frames submitted
at ``now_s`` come out of :meth:`RelayLink.deliver_due` after the serialization time at the data
rate, the relay hop and the one-way light time, unless the link was out of view (blocked), the
transmit queue was full (tail drop), the frame was lost at random, or arrives with bits flipped
at the bit error rate (corrupted: the frame CRC must catch it). It knows nothing of the frames'
contents. Directions are ``"down"`` (vehicle to ground) and ``"up"``.

:class:`RelayServer` runs the same model on the real clock between ZeroMQ sockets: vehicles
connect a DEALER with identity ``scid:<n>`` to the vehicle endpoint; ground stations connect a
DEALER to the ground endpoint and exchange ``[scid (ascii), frame]`` messages. Each spacecraft
gets its own model (seeded from the seed and its id), so one relay serves several vehicles.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sim_hw.relay_presets import PRESETS

log = logging.getLogger(__name__)

DIRECTIONS = ("down", "up")


@dataclass(frozen=True)
class Schedule:
    """When the link is in view: always (no arguments), periodic windows, or explicit intervals."""

    period_s: float = 0.0
    up_s: float = 0.0
    phase_s: float = 0.0
    intervals: tuple[tuple[float, float], ...] = ()

    @classmethod
    def from_spec(cls, spec: Any) -> Schedule:
        if spec is None:
            return cls()
        if isinstance(spec, Schedule):
            return spec
        if isinstance(spec, dict):
            return cls(
                float(spec["period_s"]), float(spec["up_s"]), float(spec.get("phase_s", 0.0))
            )
        return cls(intervals=tuple((float(a), float(b)) for a, b in spec))

    def visible(self, t: float) -> bool:
        if self.intervals:
            return any(a <= t < b for a, b in self.intervals)
        if self.period_s <= 0:
            return True
        return (t - self.phase_s) % self.period_s < self.up_s

    def next_change(self, t: float) -> float | None:
        """The first time after ``t`` at which visibility changes (None if it never does)."""
        if self.intervals:
            edges = [e for a, b in self.intervals for e in (a, b) if e > t]
            return min(edges) if edges else None
        if self.period_s <= 0 or self.up_s >= self.period_s:
            return None
        k = math.floor((t - self.phase_s) / self.period_s)
        base = self.phase_s + k * self.period_s
        for edge in (base + self.up_s, base + self.period_s, base + self.period_s + self.up_s):
            if edge > t:
                return edge
        return None


@dataclass
class RelayParams:
    light_time_s: float = 1.28
    hop_delay_s: float = 0.0
    rate_bps: dict[str, float] = field(default_factory=lambda: {"down": 0.0, "up": 0.0})
    queue_limit_bytes: int = 0  # 0: unbounded
    loss: float = 0.0
    ber: float = 0.0
    windows: Schedule = field(default_factory=Schedule)

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> RelayParams:
        if name not in PRESETS:
            raise ValueError(f"unknown relay preset {name!r}; known: {', '.join(sorted(PRESETS))}")
        spec = {**PRESETS[name], **overrides}
        rate = spec["rate_bps"]
        if not isinstance(rate, dict):
            rate = {"down": float(rate), "up": float(rate)}
        return cls(
            light_time_s=float(spec["light_time_s"]),
            hop_delay_s=float(spec["hop_delay_s"]),
            rate_bps=dict(rate),
            queue_limit_bytes=int(spec["queue_limit_bytes"]),
            loss=float(spec["loss"]),
            ber=float(spec["ber"]),
            windows=Schedule.from_spec(spec["windows"]),
        )


@dataclass
class DirectionStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    corrupted: int = 0
    dropped: int = 0  # tail drop at a full transmit queue
    blocked: int = 0  # submitted while out of view
    queued: int = 0  # in the model now, not yet delivered


class RelayLink:
    """Deterministic (for a seed) model of one vehicle's link. See the module docstring."""

    def __init__(self, params: RelayParams | str = "moon-farside", seed: int = 0) -> None:
        self.params = RelayParams.preset(params) if isinstance(params, str) else params
        self.rng = random.Random(seed)
        self.stats = {d: DirectionStats() for d in DIRECTIONS}
        self._tx_free_at = dict.fromkeys(DIRECTIONS, -math.inf)
        self._backlog: dict[str, deque[tuple[float, int]]] = {d: deque() for d in DIRECTIONS}
        self._backlog_bytes = dict.fromkeys(DIRECTIONS, 0)
        self._heap: list[tuple[float, int, str, bytes]] = []
        self._order = 0

    def visible(self, now_s: float) -> bool:
        return self.params.windows.visible(now_s)

    def next_due(self) -> float | None:
        """Arrival time of the next frame in transit, for stepping a simulated clock."""
        return self._heap[0][0] if self._heap else None

    def _flip_bits(self, frame: bytes) -> bytes:
        ber = self.params.ber
        if ber <= 0:
            return frame
        nbits = len(frame) * 8
        log1p = math.log1p(-ber)
        pos = int(math.log(1.0 - self.rng.random()) / log1p)
        if pos >= nbits:
            return frame
        buf = bytearray(frame)
        while pos < nbits:
            buf[pos >> 3] ^= 1 << (pos & 7)
            pos += 1 + int(math.log(1.0 - self.rng.random()) / log1p)
        return bytes(buf)

    def submit(self, direction: str, frame: bytes, now_s: float) -> bool:
        """Offer one frame to the link at ``now_s``. False if it was blocked or tail-dropped."""
        if direction not in self.stats:
            raise ValueError(f"direction must be 'down' or 'up', not {direction!r}")
        st = self.stats[direction]
        st.sent += 1
        if not self.visible(now_s):
            st.blocked += 1
            return False
        backlog = self._backlog[direction]
        while backlog and backlog[0][0] <= now_s:
            self._backlog_bytes[direction] -= backlog.popleft()[1]
        limit = self.params.queue_limit_bytes
        if limit and self._backlog_bytes[direction] + len(frame) > limit:
            st.dropped += 1
            return False
        rate = self.params.rate_bps.get(direction, 0.0)
        start = max(now_s, self._tx_free_at[direction])
        finish = start + (len(frame) * 8 / rate if rate > 0 else 0.0)
        self._tx_free_at[direction] = finish
        backlog.append((finish, len(frame)))
        self._backlog_bytes[direction] += len(frame)
        if self.params.loss > 0 and self.rng.random() < self.params.loss:
            st.lost += 1
            return True  # the sender cannot tell
        out = self._flip_bits(frame)
        if out is not frame:
            st.corrupted += 1
        arrival = finish + self.params.hop_delay_s + self.params.light_time_s
        heapq.heappush(self._heap, (arrival, self._order, direction, out))
        self._order += 1
        st.queued += 1
        return True

    def deliver_due(self, now_s: float) -> list[tuple[str, bytes]]:
        """Frames whose arrival time is at or before ``now_s``, in arrival order."""
        out: list[tuple[str, bytes]] = []
        while self._heap and self._heap[0][0] <= now_s:
            _, _, direction, frame = heapq.heappop(self._heap)
            st = self.stats[direction]
            st.queued -= 1
            st.delivered += 1
            out.append((direction, frame))
        return out

    def stats_dict(self) -> dict[str, dict[str, int]]:
        return {d: dict(vars(s)) for d, s in self.stats.items()}


# --------------------------------------------------------------------------------------------
# The relay process.


def _scid_from_identity(identity: bytes) -> int | None:
    try:
        text = identity.decode("ascii")
        return int(text.split(":", 1)[1]) if text.startswith("scid:") else None
    except (UnicodeDecodeError, ValueError):
        return None


class RelayServer:
    """Forwards opaque frames between vehicles and ground stations through per-vehicle models."""

    def __init__(
        self,
        vehicle_endpoint: str,
        ground_endpoint: str,
        params: RelayParams | str = "moon-farside",
        seed: int = 0,
        stats_interval_s: float = 10.0,
        report: Any = None,
    ) -> None:
        import zmq

        self._zmq = zmq
        self.params = RelayParams.preset(params) if isinstance(params, str) else params
        self.seed = seed
        self.stats_interval_s = stats_interval_s
        self.report = report or (lambda text: log.info("%s", text))
        self.links: dict[int, RelayLink] = {}
        self.grounds: set[bytes] = set()
        self.ctx = zmq.Context.instance()
        self.vehicles = self.ctx.socket(zmq.ROUTER)
        self.ground = self.ctx.socket(zmq.ROUTER)
        for sock in (self.vehicles, self.ground):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        self.vehicles.bind(vehicle_endpoint)
        self.ground.bind(ground_endpoint)
        self.vehicle_endpoint = self.vehicles.getsockopt_string(zmq.LAST_ENDPOINT)
        self.ground_endpoint = self.ground.getsockopt_string(zmq.LAST_ENDPOINT)
        self.ready = threading.Event()

    def link(self, scid: int) -> RelayLink:
        if scid not in self.links:
            self.links[scid] = RelayLink(self.params, seed=self.seed * 100_003 + scid)
        return self.links[scid]

    def _on_vehicle(self, parts: list[bytes], now: float) -> None:
        if len(parts) < 2:
            return
        scid = _scid_from_identity(parts[0])
        if scid is None:
            log.warning("vehicle peer with identity %r ignored (expected scid:<n>)", parts[0][:20])
            return
        link = self.link(scid)
        for frame in parts[1:]:
            if frame:  # an empty frame is the radio's hello
                link.submit("down", frame, now)

    def _on_ground(self, parts: list[bytes], now: float) -> None:
        if not parts:
            return
        self.grounds.add(parts[0])
        if len(parts) < 3 or not parts[2]:
            return  # a hello
        try:
            scid = int(parts[1])
        except ValueError:
            return
        self.link(scid).submit("up", parts[2], now)

    def _deliver(self, now: float) -> float | None:
        zmq = self._zmq
        nxt: float | None = None
        for scid, link in self.links.items():
            for direction, frame in link.deliver_due(now):
                if direction == "down":
                    for g in self.grounds:
                        self.ground.send_multipart([g, str(scid).encode(), frame], zmq.NOBLOCK)
                else:
                    self.vehicles.send_multipart([f"scid:{scid}".encode(), frame], zmq.NOBLOCK)
            due = link.next_due()
            if due is not None:
                nxt = due if nxt is None else min(nxt, due)
        return nxt

    def stats_text(self) -> str:
        lines = []
        for scid, link in sorted(self.links.items()):
            for d, s in link.stats_dict().items():
                lines.append(f"scid {scid} {d:>4}: " + " ".join(f"{k}={v}" for k, v in s.items()))
        return "\n".join(lines) or "no traffic yet"

    def serve(self, stop: threading.Event, duration_s: float | None = None) -> None:
        """Run on the real clock until ``stop`` is set (or ``duration_s`` passes)."""
        zmq = self._zmq
        poller = zmq.Poller()
        poller.register(self.vehicles, zmq.POLLIN)
        poller.register(self.ground, zmq.POLLIN)
        t0 = time.monotonic()
        next_report = self.stats_interval_s
        self.ready.set()
        try:
            while not stop.is_set():
                now = time.monotonic() - t0
                if duration_s is not None and now >= duration_s:
                    break
                nxt = self._deliver(now)
                wait = 0.05 if nxt is None else min(0.05, max(0.0, nxt - now))
                events = dict(poller.poll(wait * 1000))
                now = time.monotonic() - t0
                for sock, handler in (
                    (self.vehicles, self._on_vehicle),
                    (self.ground, self._on_ground),
                ):
                    if sock in events:
                        for _ in range(1000):
                            try:
                                parts = sock.recv_multipart(zmq.NOBLOCK)
                            except zmq.Again:
                                break
                            handler(parts, now)
                if self.stats_interval_s > 0 and now >= next_report:
                    self.report(self.stats_text())
                    next_report = now + self.stats_interval_s
        finally:
            self.close()

    def close(self) -> None:
        self.vehicles.close(0)
        self.ground.close(0)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="magpie relay")
    p.description = (
        "Run the relay link between vehicles and ground stations over ZeroMQ, imposing light "
        "time, the relay hop, data rate, loss, bit errors and visibility windows."
    )
    p.add_argument(
        "--vehicle-endpoint",
        default="tcp://127.0.0.1:5557",
        help="ZeroMQ endpoint vehicles connect to (default %(default)s)",
    )
    p.add_argument(
        "--ground-endpoint",
        default="tcp://127.0.0.1:5558",
        help="ZeroMQ endpoint ground stations connect to (default %(default)s)",
    )
    p.add_argument(
        "--preset",
        default="moon-farside",
        choices=sorted(PRESETS),
        help="link geometry (default %(default)s)",
    )
    p.add_argument(
        "--light-time",
        type=float,
        default=None,
        help="one-way light time in seconds, overriding the preset",
    )
    p.add_argument("--loss", type=float, default=None, help="frame loss probability 0..1")
    p.add_argument("--ber", type=float, default=None, help="bit error rate")
    p.add_argument("--always-visible", action="store_true", help="ignore the preset's windows")
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument(
        "--stats-interval",
        type=float,
        default=10.0,
        help="seconds between printed link statistics; 0 disables (default %(default)s)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: run until interrupted)",
    )
    p.set_defaults(func=_run)
    return p


def params_from_args(args: argparse.Namespace) -> RelayParams:
    overrides: dict[str, Any] = {}
    if args.light_time is not None:
        overrides["light_time_s"] = args.light_time
    if args.loss is not None:
        overrides["loss"] = args.loss
    if args.ber is not None:
        overrides["ber"] = args.ber
    if args.always_visible:
        overrides["windows"] = None
    return RelayParams.preset(args.preset, **overrides)


def _run(args: argparse.Namespace) -> int:
    server = RelayServer(
        args.vehicle_endpoint,
        args.ground_endpoint,
        params_from_args(args),
        seed=args.seed,
        stats_interval_s=args.stats_interval,
        report=lambda text: print(text, flush=True),
    )
    print(
        f"relay: vehicles at {server.vehicle_endpoint}, ground at {server.ground_endpoint}",
        flush=True,
    )
    stop = threading.Event()
    try:
        server.serve(stop, duration_s=args.duration)
    except KeyboardInterrupt:
        pass
    print(server.stats_text(), flush=True)
    return 0


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``relay`` to the ``magpie`` command line."""
    return build_parser(subparsers.add_parser("relay", help="run the relay link process"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
