"""The relay link: a pure model of the space link's physics, and the ``magpie relay`` process.

:class:`SharedRelay` is a model on a clock it is given (no threads, no sleeping) of one relay
serving several vehicles: frames submitted at ``now_s`` come out of
:meth:`SharedRelay.deliver_due` after the relay hop, the serialization time at the shared
transponder's rate and the one-way light time, unless a leg was out of view when the frame
reached it (blocked at the sender; stored at the relay until the leg is up), the transmit
queue or the store was full (dropped), the frame was lost at random, or arrives with bits
flipped at the bit error rate (corrupted: the frame's error control field must catch it). It knows
nothing of the frames' contents and needs no frame boundaries: each frame is one item (one ZeroMQ
message in the process). Directions are ``"down"`` (vehicle to ground) and ``"up"``.
:class:`RelayLink` is the same model serving one vehicle.

:class:`RelayServer` runs the same model on the real clock between ZeroMQ sockets: vehicles
connect a DEALER with identity ``scid:<n>`` to the vehicle endpoint; ground stations connect a
DEALER to the ground endpoint and exchange ``[scid (ascii), frame]`` messages. One
:class:`SharedRelay` serves every spacecraft: each has its own hop, all share the transponder.
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import logging
import math
import random
import sys
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

    def _period(self, t: float) -> int:
        """The index ``k`` of the period holding ``t``: ``start(k) <= t < start(k + 1)``.

        Every edge is computed one way (:meth:`_start`, plus ``up_s`` for a closing edge), and
        visibility is decided by comparing ``t`` with those same numbers, never through
        ``(t - phase) % period``: an opening edge handed out by :meth:`next_change` must read as
        in view when it is asked back. (With the modulo, rounding put some openings at
        ``period - 1e-11`` into their period, out of view, and the next change after them was
        the pass's close, so frames waiting for a pass were scheduled at its last instant.)
        """
        k = math.floor((t - self.phase_s) / self.period_s)
        if self._start(k + 1) <= t:
            return k + 1
        if self._start(k) > t:
            return k - 1
        return k

    def _start(self, k: int) -> float:
        return self.phase_s + k * self.period_s

    def visible(self, t: float) -> bool:
        if self.intervals:
            return any(a <= t < b for a, b in self.intervals)
        if self.period_s <= 0 or self.up_s >= self.period_s:
            return True
        return t < self._start(self._period(t)) + self.up_s

    def next_change(self, t: float) -> float | None:
        """The first time after ``t`` at which visibility changes (None if it never does)."""
        if self.intervals:
            edges = [e for a, b in self.intervals for e in (a, b) if e > t]
            return min(edges) if edges else None
        if self.period_s <= 0 or self.up_s >= self.period_s:
            return None
        k = self._period(t)
        for edge in (self._start(k) + self.up_s, self._start(k + 1), self._start(k + 1) + self.up_s):
            if edge > t:
                return edge
        return None

    def window_end(self, t: float) -> float | None:
        """When the window holding ``t`` closes (None if ``t`` is out of view or it never closes)."""
        if not self.visible(t):
            return None
        return self.next_change(t)


@dataclass
class RelayParams:
    """The link's physics. ``windows`` is when the surface-to-relay hop is in view,
    ``earth_windows`` when the relay-to-Earth leg is (always, by default); ``rate_bps`` and
    ``queue_limit_bytes`` are the relay transponder's, shared by every vehicle it serves;
    ``store_limit_bytes`` bounds what the relay holds for a leg that is down (0: unbounded)."""

    light_time_s: float = 1.28
    hop_delay_s: float = 0.0
    rate_bps: dict[str, float] = field(default_factory=lambda: {"down": 0.0, "up": 0.0})
    queue_limit_bytes: int = 0  # 0: unbounded
    loss: float = 0.0
    ber: float = 0.0
    windows: Schedule = field(default_factory=Schedule)
    earth_windows: Schedule = field(default_factory=Schedule)
    store_limit_bytes: int = 0

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
            rate_bps={"down": float(rate.get("down", 0.0)), "up": float(rate.get("up", 0.0))},
            queue_limit_bytes=int(spec["queue_limit_bytes"]),
            loss=float(spec["loss"]),
            ber=float(spec["ber"]),
            windows=Schedule.from_spec(spec["windows"]),
            earth_windows=Schedule.from_spec(spec.get("earth_windows")),
            store_limit_bytes=int(spec.get("store_limit_bytes", 0)),
        )


@dataclass
class DirectionStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    corrupted: int = 0
    dropped: int = 0  # tail drop at a full transmit queue
    blocked: int = 0  # submitted while the first leg was out of view
    queued: int = 0  # in the model now, not yet delivered
    stored: int = 0  # held at the relay for a leg that was down, forwarded later
    store_dropped: int = 0  # refused by a full store at the relay
    bytes_delivered: int = 0


@dataclass(frozen=True)
class Hop:
    """One vehicle's hop to the relay: its delay and when it is in view."""

    hop_delay_s: float
    windows: Schedule


def _next_visible(schedule: Schedule, t: float, limit: int = 64) -> float | None:
    """The first time at or after ``t`` when ``schedule`` is in view (None if never)."""
    for _ in range(limit):
        if schedule.visible(t):
            return t
        nxt = schedule.next_change(t)
        if nxt is None:
            return None
        t = nxt
    return None


class SharedRelay:
    """One relay serving several vehicles (see the module docstring): per-vehicle hops, one
    transponder (rate and queue) per direction shared by all, store-and-forward for a leg that
    is down, and an Earth leg with the light time.

    A frame is carried on a leg only if that leg is in view when the frame reaches it: a
    downlink frame meets the vehicle's hop when it is sent (out of view: ``blocked``, the
    recorder will resend it) and the Earth leg when it reaches the relay; an uplink frame meets
    the Earth leg when it is sent and the vehicle's hop when it reaches the relay after the
    light time. A frame that reaches the relay while its next leg is down is stored there
    (bounded by ``store_limit_bytes``, counted as ``stored`` / ``store_dropped``) and goes out
    when the leg comes up, so uplink sent ahead of a pass waits at the relay for the pass.
    """

    def __init__(self, params: RelayParams | str = "moon-farside", seed: int = 0) -> None:
        self.params = RelayParams.preset(params) if isinstance(params, str) else params
        self.rng = random.Random(seed)
        self.stats = {d: DirectionStats() for d in DIRECTIONS}
        self.vehicle_stats: dict[int, dict[str, DirectionStats]] = {}
        self.hops: dict[int, Hop] = {}
        self._tx_free_at = dict.fromkeys(DIRECTIONS, -math.inf)
        self._backlog: dict[str, deque[tuple[float, int]]] = {d: deque() for d in DIRECTIONS}
        self._backlog_bytes = dict.fromkeys(DIRECTIONS, 0)
        self._store: list[tuple[float, int]] = []  # (release time, bytes) of frames held at the relay
        self._store_bytes = 0
        self.store_peak_bytes = 0
        self._heaps: dict[int, list[tuple[float, int, str, bytes]]] = {}
        self._order = 0
        #: (start, finish, scid, direction, bytes) of the last transmissions through the transponder
        self.tx_log: deque[tuple[float, float, int, str, int]] = deque(maxlen=200_000)

    # -- configuration ----------------------------------------------------------------------------

    def add_vehicle(self, scid: int, hop_delay_s: float | None = None, windows: Schedule | Any = None) -> None:
        """Serve ``scid`` with its own hop (defaults: the params' hop delay and windows)."""
        sched = self.params.windows if windows is None else Schedule.from_spec(windows)
        delay = self.params.hop_delay_s if hop_delay_s is None else float(hop_delay_s)
        self.hops[scid] = Hop(delay, sched)
        self.vehicle_stats.setdefault(scid, {d: DirectionStats() for d in DIRECTIONS})
        self._heaps.setdefault(scid, [])

    def hop(self, scid: int) -> Hop:
        if scid not in self.hops:
            self.add_vehicle(scid)
        return self.hops[scid]

    def port(self, scid: int) -> RelayPort:
        """The link model as one vehicle's loop radio sees it (``submit`` / ``deliver_due``)."""
        self.hop(scid)
        return RelayPort(self, scid)

    def visible(self, now_s: float, scid: int = 0) -> bool:
        """Is the whole path (the vehicle's hop and the Earth leg) in view now?"""
        return self.hop(scid).windows.visible(now_s) and self.params.earth_windows.visible(now_s)

    def next_due(self, scid: int | None = None) -> float | None:
        """Arrival time of the next frame in transit, for stepping a simulated clock."""
        heaps = self._heaps.values() if scid is None else [self._heaps.get(scid, [])]
        due = [h[0][0] for h in heaps if h]
        return min(due) if due else None

    def next_pass(self, now_s: float, scid: int = 0) -> float | None:
        """When the vehicle's hop is next in view (``now_s`` if it is now)."""
        return _next_visible(self.hop(scid).windows, now_s)

    # -- the model --------------------------------------------------------------------------------

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

    def _count(self, scid: int, direction: str, name: str, n: int = 1) -> None:
        for st in (self.stats[direction], self.vehicle_stats[scid][direction]):
            setattr(st, name, getattr(st, name) + n)

    def _hold(self, reach_s: float, release_s: float, size: int) -> bool:
        """Keep a frame at the relay from ``reach_s`` to ``release_s``; False if the store is full."""
        if release_s <= reach_s:
            return True
        if self._store:
            kept = [(r, b) for r, b in self._store if r > reach_s]
            self._store_bytes = sum(b for _, b in kept)
            self._store = kept
        limit = self.params.store_limit_bytes
        if limit and self._store_bytes + size > limit:
            return False
        self._store.append((release_s, size))
        self._store_bytes += size
        self.store_peak_bytes = max(self.store_peak_bytes, self._store_bytes)
        return True

    def submit(self, direction: str, frame: bytes, now_s: float, scid: int = 0) -> bool:
        """Offer one frame at ``now_s``. False if it was blocked, tail-dropped or refused by a
        full store (the sender cannot tell a frame lost on the way)."""
        if direction not in self.stats:
            raise ValueError(f"direction must be 'down' or 'up', not {direction!r}")
        hop = self.hop(scid)
        self._count(scid, direction, "sent")
        p = self.params
        if direction == "down":
            first, second = hop.windows, p.earth_windows
            reach = now_s + hop.hop_delay_s  # at the relay
            tail = p.light_time_s
        else:
            first, second = p.earth_windows, hop.windows
            reach = now_s + p.light_time_s
            tail = hop.hop_delay_s
        if not first.visible(now_s):
            self._count(scid, direction, "blocked")
            return False
        rate = p.rate_bps.get(direction, 0.0)
        tx_s = len(frame) * 8 / rate if rate > 0 else 0.0
        # the second leg: wait at the relay until it is in view, also when the queue ahead of
        # this frame would push its transmission past the end of the window; a frame goes out
        # only if all of it is sent before the window closes (else it waits for the next one)
        t = reach
        start = None
        held = False  # waits at the relay for the leg, not only for the transponder queue
        for _ in range(64):
            nxt = _next_visible(second, t)
            if nxt is None:
                break
            held = held or nxt > t + 1e-9
            start = max(nxt, self._tx_free_at[direction])
            end = second.window_end(start)
            if second.visible(start) and (end is None or start + tx_s <= end):
                break
            t, start, held = (start if end is None else end), None, True
        if start is None:
            self._count(scid, direction, "store_dropped")
            return False
        if held:
            if not self._hold(reach, start, len(frame)):
                self._count(scid, direction, "store_dropped")
                return False
            self._count(scid, direction, "stored")
        backlog = self._backlog[direction]
        while backlog and backlog[0][0] <= reach:
            self._backlog_bytes[direction] -= backlog.popleft()[1]
        limit = p.queue_limit_bytes
        if limit and self._backlog_bytes[direction] + len(frame) > limit:
            self._count(scid, direction, "dropped")
            return False
        finish = start + tx_s
        self._tx_free_at[direction] = finish
        backlog.append((finish, len(frame)))
        self._backlog_bytes[direction] += len(frame)
        self.tx_log.append((start, finish, scid, direction, len(frame)))
        if p.loss > 0 and self.rng.random() < p.loss:
            self._count(scid, direction, "lost")
            return True
        out = self._flip_bits(frame)
        if out is not frame:
            self._count(scid, direction, "corrupted")
        heapq.heappush(self._heaps[scid], (finish + tail, self._order, direction, out))
        self._order += 1
        self._count(scid, direction, "queued")
        return True

    def deliver_due(self, now_s: float, scid: int | None = None) -> list[tuple[str, bytes]]:
        """Frames (of one vehicle, or all) whose arrival time is at or before ``now_s``."""
        heaps = self._heaps
        if scid is not None:
            first = heaps.get(scid)
            if not first or first[0][0] > now_s:
                return []  # most radio reads: nothing has arrived
        elif not any(h and h[0][0] <= now_s for h in heaps.values()):
            return []
        out: list[tuple[float, int, str, bytes]] = []
        for key in ([scid] if scid is not None else list(self._heaps)):
            heap = self._heaps.get(key, [])
            while heap and heap[0][0] <= now_s:
                item = heapq.heappop(heap)
                self._count(key, item[2], "queued", -1)
                self._count(key, item[2], "delivered")
                self._count(key, item[2], "bytes_delivered", len(item[3]))
                out.append(item)
        if scid is None and len(self._heaps) > 1:
            out.sort(key=lambda it: (it[0], it[1]))
        return [(d, f) for _, _, d, f in out]

    def stats_dict(self, scid: int | None = None) -> dict[str, dict[str, int]]:
        src = self.stats if scid is None else self.vehicle_stats.get(scid, {})
        return {d: dict(vars(s)) for d, s in src.items()}

    def report_lines(self) -> list[str]:
        """Per-vehicle traffic and the relay store, for a run's summary."""
        lines = []
        for scid, st in sorted(self.vehicle_stats.items()):
            d, u = st["down"], st["up"]
            lines.append(f"scid {scid}: down sent {d.sent} delivered {d.delivered} blocked {d.blocked} "
                         f"stored {d.stored} lost {d.lost}; up sent {u.sent} delivered {u.delivered} "
                         f"stored {u.stored} blocked {u.blocked}")
        s = self.stats
        lines.append(f"relay store: {s['down'].stored + s['up'].stored} frames held for a leg that was down, "
                     f"{s['down'].store_dropped + s['up'].store_dropped} refused, peak {self.store_peak_bytes} bytes")
        return lines


class RelayPort:
    """One vehicle's face of a :class:`SharedRelay`: what a ``radio+loop://`` pair needs."""

    def __init__(self, relay: SharedRelay, scid: int) -> None:
        self.relay = relay
        self.scid = scid

    def submit(self, direction: str, frame: bytes, now_s: float) -> bool:
        return self.relay.submit(direction, frame, now_s, self.scid)

    def deliver_due(self, now_s: float) -> list[tuple[str, bytes]]:
        return self.relay.deliver_due(now_s, self.scid)

    def next_due(self) -> float | None:
        return self.relay.next_due(self.scid)

    def visible(self, now_s: float) -> bool:
        """Whether this vehicle's hop to the relay is in view (what its radio can lock onto)."""
        return self.relay.hop(self.scid).windows.visible(now_s)


class RelayLink(SharedRelay):
    """The relay serving one vehicle (scid 0 unless a port is asked for): the model of a
    single link, with the same per-leg semantics as :class:`SharedRelay`."""

    def __init__(self, params: RelayParams | str = "moon-farside", seed: int = 0) -> None:
        super().__init__(params, seed)
        self.add_vehicle(0)


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
        self.relay = SharedRelay(self.params, seed=seed)
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

    def link(self, scid: int) -> RelayPort:
        """The shared relay as vehicle ``scid`` sees it (one transponder for all vehicles)."""
        return self.relay.port(scid)

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
        for scid in list(self.relay.hops):
            link = self.relay.port(scid)
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
        for scid in sorted(self.relay.hops):
            for d, s in self.relay.stats_dict(scid).items():
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
    p.add_argument(
        "--scenario",
        default=None,
        metavar="NAME",
        help="take the link from a mission scenario (its [relay] table and each vehicle's hop and "
        "windows) instead of --preset",
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


def params_from_args(args: argparse.Namespace, base: RelayParams | None = None) -> RelayParams:
    overrides: dict[str, Any] = {}
    if args.light_time is not None:
        overrides["light_time_s"] = args.light_time
    if args.loss is not None:
        overrides["loss"] = args.loss
    if args.ber is not None:
        overrides["ber"] = args.ber
    if args.always_visible:
        overrides["windows"] = None
    if base is not None:
        if "windows" in overrides:
            overrides["windows"] = Schedule()
        return dataclasses.replace(base, **overrides)
    return RelayParams.preset(args.preset, **overrides)


def _run(args: argparse.Namespace) -> int:
    mission = None
    if getattr(args, "scenario", None):
        from mission.scenario import ScenarioError, load

        try:
            mission = load(args.scenario)
        except ScenarioError as exc:
            print(f"magpie relay: {exc}", file=sys.stderr)
            return 2
    server = RelayServer(
        args.vehicle_endpoint,
        args.ground_endpoint,
        params_from_args(args, None if mission is None else mission.relay),
        seed=args.seed,
        stats_interval_s=args.stats_interval,
        report=lambda text: print(text, flush=True),
    )
    if mission is not None:
        for plan in mission.vehicles:
            windows = None if args.always_visible else plan.windows
            server.relay.add_vehicle(plan.scid, plan.hop_delay_s, windows)
        print(f"relay: scenario {mission.name}: {mission.roster()}", flush=True)
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
