"""The payload host: partner payloads in their own processes, with enforced budgets.

One :class:`PayloadHost` component (``type = "payload_host"``) serves every payload configured
under it (see :mod:`flight.payload.config`). Each payload runs as a separate OS process
(:mod:`flight.payload.child`) joined to the host by a socket pair carrying the small message
protocol of :mod:`flight.payload.protocol`. What the host guarantees:

* **The vehicle never waits on a payload in real time.** Each cycle the host reads, without
  blocking, the answer to the step it sent the cycle before, then sends the next step. An answer
  that has not arrived is a *miss*: the payload is declared hung within one cycle of its rate
  group, killed, and restarted with exponential backoff, at most ``restarts_per_hour`` times in
  any hour of spacecraft time; past that it is switched off until ``PAY_ON``. A process that
  exits or closes its socket is a crash, handled the same way.
* **Lockstep on the simulated clock.** With a simulated clock the host waits a bounded real time
  (``lockstep_wait_s``) for each step's answer and handles it in the same cycle, so a run is
  reproducible; no answer in that time counts as a miss, exactly as in real time. Spacecraft
  time does not move while it waits, so no rate group slips. CPU use is telemetered in quarters
  of the budget in lockstep (enforcement uses the measured figure), so a payload within a
  quarter of its budget gives byte-identical telemetry.
* **Budgets** per payload: energy per sol from its switched rail's draw, CPU time per step, data
  bytes per sol on its own APID, events per minute. The first step over a budget throttles the
  payload (stepped every ``throttle_div``-th cycle; the excess events or products are refused);
  ``strikes`` more steps over budget while throttled switch it off; ``recover_steps`` clean steps
  lift the throttle. Energy throttles at 90 % and switches off at 100 % until the next sol, as
  does the data budget. Every transition is an event; every use is telemetry beside its budget.
* **Least privilege.** A payload gets its own commands (prefixed with its name), the channels
  the configuration grants it, its parameters, its power state, the time, and its product
  directory. There is no message by which it can command the vehicle or read another channel;
  trying, or writing a channel or event it did not declare, is a counted, reported violation,
  and ``max_violations`` of them switch it off.
* **Ids** come from :mod:`flight.payload.ids`: each payload's declarations enter the vehicle
  dictionary as a component of its own (:class:`PayloadProxy`) in the reserved range.

Wall-clock time (``time.monotonic``) is used only to bound real waits on another process; all
accounting and every decision that shapes telemetry run on spacecraft time.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import select
import socket
import subprocess
import sys
import time
import weakref
from collections import deque
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from flight import types
from flight.clock import NS
from flight.commands import PENDING, CommandFailed
from flight.component import Component
from flight.config import ConfigError
from flight.link.products import ProductError, product_chunks
from flight.model import Arg, Channel, CommandDef, Event, Severity, command
from flight.payload import protocol
from flight.payload.config import PayloadConfig, parse_payloads
from flight.payload.ids import Allocation, allocate
from flight.payload.sdk import Payload
from flight.persist import CorruptFileError, read_checked_json, write_checked_json
from hal.contracts import PowerMonitor

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "magpie.payloads"
PID_FORMAT = "magpie-payload-pids/1"
HOUR_NS = 3600 * NS
EVENT_WINDOW_NS = 60 * NS
#: what the host reads from one payload in one cycle at most, and the largest answer it takes
READ_BUDGET = 512 * 1024
MAX_ANSWER = 256 * 1024
#: products handled from one answer at most (the rest are refused)
MAX_PRODUCTS_PER_STEP = 4


class State(enum.IntEnum):
    OFF = 0  # stopped by command (or never started)
    STARTING = 1
    RUNNING = 2
    THROTTLED = 3
    BACKOFF = 4  # waiting to be restarted after a hang or crash
    SWITCHED_OFF = 5  # by the host: a budget, violations or too many restarts


def resolve_kind(kind: str, extra: Mapping[str, str] | None = None) -> tuple[str, type[Payload]]:
    """("module:Class", class) of a payload kind, from ``extra`` or the ``magpie.payloads`` group."""
    import importlib

    target = (extra or {}).get(kind)
    if target is None:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == kind:
                target = ep.value
                break
    if target is None:
        known = sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(extra or {}))
        raise KeyError(f"unknown payload kind {kind!r}; installed: {', '.join(known) or 'none'}")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Payload)):
        raise TypeError(f"payload kind {kind!r} ({target}) is not a flight.payload.sdk.Payload")
    return target, cls


class PayloadProxy(Component):
    """A hosted payload's declarations in the vehicle dictionary; its commands go to the host."""

    def __init__(self, host: PayloadHost, session: Session) -> None:
        super().__init__(session.cfg.name)
        self._host = host
        self._session = session
        self.id_base = session.alloc.id_base
        cls = session.cls
        self._commands = [
            (CommandDef(session.alloc.prefix + cdef.name, cdef.args, cdef.doc),
             lambda _short=cdef.name, _full=session.alloc.prefix + cdef.name, **args:
                 host._queue_command(session, _short, _full, args))
            for _, cdef in cls.declared_commands()
        ]

    def channels(self) -> tuple[Channel, ...]:
        return self._session.cls.CHANNELS

    def events(self) -> tuple[Event, ...]:
        return self._session.cls.EVENTS

    def params(self) -> tuple[Any, ...]:
        return self._session.cls.PARAMS

    def commands(self) -> list[tuple[CommandDef, Any]]:
        return list(self._commands)

    def on_param(self, name: str, value: Any) -> None:
        self._session.prm_changes[name] = value


@dataclass
class Session:
    """Everything the host keeps about one payload."""

    cfg: PayloadConfig
    alloc: Allocation
    target: str
    cls: type[Payload]
    state: State = State.OFF
    proc: subprocess.Popen[bytes] | None = None
    launch: Future[subprocess.Popen[bytes]] | None = None
    sock: socket.socket | None = None
    reader: protocol.FrameReader = field(default_factory=lambda: protocol.FrameReader(MAX_ANSWER))
    started_ns: int = 0
    started_real: float = 0.0
    hello: bool = False
    seq: int = 0
    awaiting: int | None = None
    cycle: int = 0
    cmds: list[list[Any]] = field(default_factory=list)
    inflight: dict[int, str] = field(default_factory=dict)
    prm_changes: dict[str, Any] = field(default_factory=dict)
    restart_times: deque[int] = field(default_factory=deque)
    failures: int = 0
    next_start_ns: int = 0
    strikes: int = 0
    clean: int = 0
    steps_since_start: int = 0
    off_reason: str = ""
    off_until_next_sol: bool = False
    # use against budgets
    power_on: bool = False
    energy_wh: float = 0.0
    sol: int = 0
    last_account_ns: int = -1
    cpu_ms: float = 0.0
    data_bytes: int = 0
    events_window_start: int = -1
    events_in_window: int = 0
    events_dropped: int = 0
    products: int = 0
    products_refused: int = 0
    violations: int = 0
    misses: int = 0
    crashes: int = 0
    restarts: int = 0
    steps: int = 0
    errors: int = 0
    next_pid: int = 1
    over: list[tuple[str, str]] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.state in (State.STARTING, State.RUNNING, State.THROTTLED)


_USE_CHANNELS = (
    ("state", "u8", "", "0 off, 1 starting, 2 running, 3 throttled, 4 restarting, 5 switched off"),
    ("power_on", "bool", "", "the payload's switched rail"),
    ("steps", "u64", "", "steps answered"),
    ("misses", "u32", "", "steps not answered in time (hangs)"),
    ("crashes", "u32", "", "process exits and broken channels"),
    ("restarts", "u32", "", "restarts by the host"),
    ("violations", "u32", "", "messages refused: commands, ungranted reads, undeclared items"),
    ("cpu_ms", "f32", "ms", "CPU time of the last step"),
    ("cpu_frac", "f32", "", "last step's CPU time against the per-step budget"),
    ("energy_wh", "f64", "Wh", "rail energy used this sol"),
    ("energy_frac", "f32", "", "energy used against the per-sol budget (0 when unbudgeted)"),
    ("data_bytes", "u64", "B", "product bytes queued on the payload's APID this sol"),
    ("data_frac", "f32", "", "data volume against the per-sol budget"),
    ("events_min", "u32", "", "events accepted in the current minute"),
    ("events_frac", "f32", "", "events this minute against the per-minute budget"),
    ("events_dropped", "u32", "", "events refused over the rate budget"),
    ("products_refused", "u32", "", "products refused (budget, size or path)"),
)


class PayloadHost(Component):
    """Runs partner payloads in their own processes and enforces their budgets."""

    OPTIONS = {"payload": {}, "lockstep_wait_s": 1.0, "startup_timeout_s": 10.0, "nice": 10}
    OPTIONAL_DEVICES = {"power": PowerMonitor}
    EVENTS = (
        Event("PayloadStarted", Severity.ACTIVITY_HI, "payload {payload} running (start {start})",
              (Arg("payload", "str"), Arg("start", "u32")),
              doc="the OS process id is in the flight log, not here: it would differ between identical runs"),
        Event("PayloadStopped", Severity.ACTIVITY_HI, "payload {payload} stopped: {reason}",
              (Arg("payload", "str"), Arg("reason", "str"))),
        Event("PayloadHung", Severity.WARNING_HI, "payload {payload} hung: {detail}; killed",
              (Arg("payload", "str"), Arg("detail", "str")), throttle=10, throttle_window_s=60.0),
        Event("PayloadCrashed", Severity.WARNING_HI, "payload {payload} crashed: {detail}",
              (Arg("payload", "str"), Arg("detail", "str")), throttle=10, throttle_window_s=60.0),
        Event("PayloadRestartScheduled", Severity.WARNING_LO,
              "payload {payload} restarts in {delay_s} s ({count} in the last hour)",
              (Arg("payload", "str"), Arg("delay_s", "f32", "s"), Arg("count", "u32")),
              throttle=10, throttle_window_s=60.0),
        Event("PayloadThrottled", Severity.WARNING_LO, "payload {payload} throttled: {budget} budget, {detail}",
              (Arg("payload", "str"), Arg("budget", "str"), Arg("detail", "str")),
              throttle=10, throttle_window_s=60.0),
        Event("PayloadUnthrottled", Severity.ACTIVITY_LO, "payload {payload} back within its budgets",
              (Arg("payload", "str"),), throttle=10, throttle_window_s=60.0),
        Event("PayloadSwitchedOff", Severity.WARNING_HI, "payload {payload} switched off: {reason}",
              (Arg("payload", "str"), Arg("reason", "str"))),
        Event("PayloadViolation", Severity.WARNING_HI, "payload {payload} refused ({kind}): {detail}",
              (Arg("payload", "str"), Arg("kind", "str"), Arg("detail", "str")),
              throttle=10, throttle_window_s=60.0),
        Event("PayloadError", Severity.WARNING_LO, "payload {payload}: {error}",
              (Arg("payload", "str"), Arg("error", "str")), throttle=5, throttle_window_s=60.0),
        Event("PayloadPower", Severity.ACTIVITY_LO, "payload {payload} rail {state}",
              (Arg("payload", "str"), Arg("state", "str")), throttle=20, throttle_window_s=60.0),
        Event("PayloadPowerFault", Severity.WARNING_HI, "payload {payload} rail: {error}",
              (Arg("payload", "str"), Arg("error", "str")), throttle=5, throttle_window_s=60.0),
        Event("PayloadProduct", Severity.ACTIVITY_LO, "payload {payload} product {pid}: {size} bytes",
              (Arg("payload", "str"), Arg("pid", "u32"), Arg("size", "u32")), throttle=30, throttle_window_s=60.0),
        Event("PayloadNewSol", Severity.ACTIVITY_LO, "payload budgets renewed for sol {sol}",
              (Arg("sol", "u32"),)),
    )

    def __init__(self, name: str, *, kinds: Mapping[str, str] | None = None, **options: Any) -> None:
        """``kinds`` adds payload kinds to the entry-point table (tests, benchmarks)."""
        super().__init__(name, **options)
        configs = parse_payloads(self.options["payload"])
        self.lockstep_wait_s = float(self.options["lockstep_wait_s"])
        self.startup_timeout_s = float(self.options["startup_timeout_s"])
        self.nice = int(self.options["nice"])  # payload processes run this much below the flight process
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice: {self.nice} is outside 0..19")
        self.sessions: list[Session] = []
        for cfg in configs:
            try:
                target, cls = resolve_kind(cfg.kind, kinds)
            except (KeyError, TypeError, ImportError, AttributeError) as exc:
                raise ValueError(f"payload.{cfg.name}.kind: {exc.args[0] if exc.args else exc}") from None
            unknown = sorted(set(cfg.options) - set(cls.OPTIONS))
            if unknown:
                raise ValueError(f"payload.{cfg.name}.options.{unknown[0]}: unknown option; accepted: "
                                 f"{', '.join(sorted(cls.OPTIONS)) or 'none'}")
            self.sessions.append(Session(cfg, allocate(cfg.name, cfg.slot), target, cls))
        self.proxies = [PayloadProxy(self, s) for s in self.sessions]
        self._zombies: list[tuple[subprocess.Popen[bytes], float]] = []
        self._power: PowerMonitor | None = None
        self._token = 0
        self._launcher: ThreadPoolExecutor | None = None
        self._orphans: list[Future[subprocess.Popen[bytes]]] = []
        # every process not yet reaped; killed if the host goes away without a shutdown
        self._live: set[subprocess.Popen[bytes]] = set()
        weakref.finalize(self, _kill_all, self._live)

    # -- declarations -------------------------------------------------------------------------

    def children(self) -> list[Component]:
        """The payloads' own dictionary components, placed by the vehicle beside the host."""
        return list(self.proxies)

    def channels(self) -> tuple[Channel, ...]:
        return tuple(Channel(f"{s.cfg.name}.{n}", t, u, doc=d, update="always" if n.endswith(("frac", "ms")) or
                             n in ("energy_wh", "events_min") else "on_change")
                     for s in self.sessions for n, t, u, d in _USE_CHANNELS)

    def session(self, name: str) -> Session:
        for s in self.sessions:
            if s.cfg.name == name:
                return s
        raise KeyError(name)

    # -- life cycle ---------------------------------------------------------------------------

    def setup(self) -> None:
        self._power = self.devices.get("power")
        known = set(self.fw.tlm.names())
        for s in self.sessions:
            for g in s.cfg.grants:
                if g not in known:
                    raise ConfigError(f"components.{self.name}.payload.{s.cfg.name}.grants: no channel {g!r}")
            self._dir(s).mkdir(parents=True, exist_ok=True)
            try:
                body = read_checked_json(self._dir(s).parent / "pids.json", PID_FORMAT) or {}
                s.next_pid = int(body.get("next_pid", 1))
            except (CorruptFileError, ValueError, TypeError):
                s.next_pid = 1 + (self.fw.clock.now_ns() // NS) % 1_000_000 * 1000  # away from old ids
            for n, *_ in _USE_CHANNELS:
                self.fw.tlm.provide(f"{self.name}.{s.cfg.name}.{n}", lambda s=s, n=n: self._use(s, n))
            s.state = State.BACKOFF  # start at the first step
            s.next_start_ns = self.fw.clock.now_ns()

    def _dir(self, s: Session) -> Path:
        return self.fw.state_dir / "payloads" / s.cfg.name / "products"

    def _use(self, s: Session, what: str) -> Any:
        cfg = s.cfg
        if what == "state":
            return int(s.state)
        if what == "cpu_frac":
            return s.cpu_ms / cfg.cpu_ms_per_step
        if what == "energy_frac":
            return s.energy_wh / cfg.energy_wh_per_sol if cfg.energy_wh_per_sol else 0.0
        if what == "data_frac":
            return s.data_bytes / cfg.data_bytes_per_sol if cfg.data_bytes_per_sol else 0.0
        if what == "events_min":
            return s.events_in_window
        if what == "events_frac":
            return s.events_in_window / cfg.events_per_min if cfg.events_per_min else 0.0
        return getattr(s, what)

    def step(self) -> None:
        now = self.fw.clock.now_ns()
        lockstep = self.fw.clock.simulated
        self._reap()
        for s in self.sessions:
            self._service(s, now, lockstep)

    def shutdown(self) -> None:
        for s in self.sessions:
            if s.alive:
                self._stop(s, "vehicle shutdown", State.OFF)
        if self._launcher is not None:
            self._launcher.shutdown(wait=True)
            self._launcher = None
        deadline = time.monotonic() + 1.0
        self._reap()
        while self._zombies and time.monotonic() < deadline:
            self._reap()
            if self._zombies:
                time.sleep(0.01)
        self._zombies.clear()
        _kill_all(self._live)

    # -- one payload, one cycle ---------------------------------------------------------------

    def _service(self, s: Session, now: int, lockstep: bool) -> None:
        self._account(s, now)
        if s.state == State.BACKOFF and now >= s.next_start_ns:
            self._start(s, now, lockstep)
        if s.state == State.STARTING:
            if not self._launched(s, now):
                if s.alive and time.monotonic() - s.started_real > self.startup_timeout_s:
                    self._fail(s, now, hung=True, detail=f"not started within {self.startup_timeout_s:g} s")
                return
            self._pump(s, self.startup_timeout_s if lockstep else 0.0, until_ready=True)
            if s.state == State.STARTING and (lockstep or time.monotonic() - s.started_real > self.startup_timeout_s):
                self._fail(s, now, hung=True, detail=f"not ready within {self.startup_timeout_s:g} s")
            return
        if s.state not in (State.RUNNING, State.THROTTLED):
            return
        if s.awaiting is not None:  # real time: the answer to last cycle's step
            self._pump(s, 0.0)
            if s.state not in (State.RUNNING, State.THROTTLED):
                return
            if s.awaiting is not None:
                self._fail(s, now, hung=True, detail=f"step {s.awaiting} unanswered after one cycle")
                return
        s.cycle += 1
        div = s.cfg.divider * (s.cfg.throttle_div if s.state == State.THROTTLED else 1)
        if s.cycle % div:
            return
        self._send_step(s, now)
        if lockstep and s.awaiting is not None and s.alive:
            self._pump(s, self.lockstep_wait_s)
            if s.alive and s.awaiting is not None:
                self._fail(s, now, hung=True, detail=f"step {s.awaiting} unanswered in {self.lockstep_wait_s:g} s")

    def _send_step(self, s: Session, now: int) -> None:
        s.seq += 1
        cmds = [[tok, short, args] for tok, short, _full, args in s.cmds]
        for tok, _short, full, _args in s.cmds:
            s.inflight[tok] = full
        s.cmds.clear()
        tlm = self.fw.tlm
        msg = {"t": "step", "n": s.seq, "time_ns": now, "ch": {g: tlm.get(g) for g in s.cfg.grants},
               "power": {"on": s.power_on, "energy_wh": s.energy_wh, "budget_wh": s.cfg.energy_wh_per_sol},
               "cmds": cmds, "prm": dict(s.prm_changes)}
        s.prm_changes.clear()
        s.awaiting = s.seq
        self._send(s, msg)

    def _send(self, s: Session, msg: dict[str, Any]) -> None:
        assert s.sock is not None
        data = protocol.encode(msg)
        try:
            sent = s.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._fail(s, self.fw.clock.now_ns(), hung=False, detail=f"channel broken: {exc.strerror or exc}")
            return
        if sent != len(data):  # the payload is not reading: as good as hung
            self._fail(s, self.fw.clock.now_ns(), hung=True, detail="not reading its channel")

    def _pump(self, s: Session, wait_s: float, until_ready: bool = False) -> None:
        """Read and handle what the payload sent, waiting up to ``wait_s`` for the awaited answer.

        At most :data:`READ_BUDGET` bytes a call: a payload that streams junk cannot hold the
        rate group; what it has not been read by then waits for the next cycle.
        """
        deadline = time.monotonic() + wait_s
        budget = READ_BUDGET
        while s.sock is not None and s.alive and budget > 0:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([s.sock], [], [], max(0.0, remaining))
            if not ready:
                return
            try:
                data = s.sock.recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError as exc:
                data = b""
                log.debug("payload %s recv: %s", s.cfg.name, exc)
            budget -= len(data)
            if not data:
                code = s.proc.poll() if s.proc is not None else None
                self._fail(s, self.fw.clock.now_ns(), hung=False,
                           detail=f"exited with status {code}" if code is not None else "closed its channel")
                return
            try:
                msgs = s.reader.feed(data)
            except protocol.ProtocolError as exc:
                self._violation(s, "message", str(exc))
                s.reader = protocol.FrameReader(MAX_ANSWER)
                continue
            for msg in msgs:
                self._handle(s, msg)
                if not s.alive:
                    return
            if until_ready and s.state != State.STARTING:
                return
            if not until_ready and s.awaiting is None:
                return

    # -- messages from the payload ------------------------------------------------------------

    def _handle(self, s: Session, msg: dict[str, Any]) -> None:
        kind = msg["t"]
        if kind == "hello" and s.state == State.STARTING and not s.hello:
            if msg.get("sdk") != protocol.SDK_VERSION:
                self._fail(s, self.fw.clock.now_ns(), hung=False, detail=f"SDK version {msg.get('sdk')!r}")
                return
            s.hello = True
            params = {p.name: self.fw.params.get(f"{s.cfg.name}.{p.name}") for p in s.cls.PARAMS}
            self._send(s, {"t": "init", "name": s.cfg.name, "kind": s.cfg.kind, "grants": list(s.cfg.grants),
                           "product_dir": str(self._dir(s)), "options": s.cfg.options, "params": params,
                           "time_ns": self.fw.clock.now_ns()})
        elif kind == "ready" and s.state == State.STARTING and s.hello:
            s.state = State.RUNNING
            s.awaiting, s.cycle, s.steps_since_start, s.strikes, s.clean = None, 0, 0, 0, 0
            log.info("payload %s: process %s", s.cfg.name, s.proc.pid if s.proc else "?")
            self.event("PayloadStarted", payload=s.cfg.name, start=s.restarts + 1)
        elif kind == "done" and s.awaiting is not None and msg.get("n") == s.awaiting:
            self._done(s, msg)
        elif kind in ("cmd", "command", "send", "submit"):
            self._violation(s, "command", f"tried to command the vehicle: {str(msg.get('name', msg))[:80]}")
        elif kind in ("read", "get", "subscribe"):
            self._violation(s, "channel", f"asked for a channel it is not granted: {str(msg.get('ch', msg))[:80]}")
        else:
            self._violation(s, "message", f"unexpected {kind!r} message")

    def _done(self, s: Session, msg: dict[str, Any]) -> None:
        now = self.fw.clock.now_ns()
        cfg = s.cfg
        s.awaiting = None
        s.steps += 1
        s.steps_since_start += 1
        if s.steps_since_start == cfg.recover_steps:
            s.failures = 0  # it has run cleanly for a while: the backoff starts again from the base
        s.over = []
        cpu_ms = int(msg.get("cpu_ns", 0)) / 1e6 if isinstance(msg.get("cpu_ns"), int) else 0.0
        if self.fw.clock.simulated:  # quarters of the budget: the same telemetry run after run
            s.cpu_ms = math.floor(4 * cpu_ms / cfg.cpu_ms_per_step) / 4 * cfg.cpu_ms_per_step
        else:
            s.cpu_ms = round(cpu_ms, 3)
        if cpu_ms > cfg.cpu_ms_per_step:
            s.over.append(("cpu", f"{cpu_ms:.1f} ms in a step, budget {cfg.cpu_ms_per_step:g} ms"))
        if msg.get("error") is not None:
            s.errors += 1
            self.event("PayloadError", payload=cfg.name, error=str(msg["error"])[:200])
        results = msg.get("res") or []
        if not isinstance(results, list):
            results = [None]
        for res in results:
            try:
                tok, ok, reason = res
                full = s.inflight.pop(tok)
            except (ValueError, TypeError, KeyError):
                self._violation(s, "message", "a result for no command it was given")
                continue
            self.fw.cmd.complete(full, bool(ok), str(reason)[:200])
        self._telemetry(s, msg.get("tlm"))
        self._events(s, msg.get("ev"), now)
        self._products(s, msg.get("prod"), now)
        if not s.alive:
            return
        if s.over:
            budget, detail = s.over[0]
            self._over_budget(s, budget, detail)
        elif s.state == State.THROTTLED:
            s.clean += 1
            if s.clean >= cfg.recover_steps:
                s.state, s.strikes = State.RUNNING, 0
                self.event("PayloadUnthrottled", payload=cfg.name)

    def _telemetry(self, s: Session, tlm: Any) -> None:
        if not tlm:
            return
        if not isinstance(tlm, dict):
            self._violation(s, "message", "telemetry is not a map")
            return
        own = {c.name: c for c in s.cls.CHANNELS}
        foreign = [str(k)[:40] for k in tlm if k not in own]
        if foreign:  # one violation per answer, however many
            self._violation(s, "channel", f"wrote {len(foreign)} channel(s) not its own: {', '.join(foreign[:3])}")
        for ch, value in tlm.items():
            if ch not in own:
                continue
            try:
                self.fw.tlm.write(f"{s.cfg.name}.{ch}", types.coerce(own[ch].type, value))
            except (TypeError, ValueError, OverflowError):
                self._violation(s, "message", f"bad value for {ch}: {str(value)[:40]}")

    def _events(self, s: Session, events: Any, now: int) -> None:
        if not events:
            return
        cfg = s.cfg
        if not isinstance(events, list):
            self._violation(s, "message", "events are not a list")
            return
        if s.events_window_start < 0 or now - s.events_window_start >= EVENT_WINDOW_NS:
            s.events_window_start, s.events_in_window = now, 0
        declared = {e.name: e for e in s.cls.EVENTS}
        room = max(0, cfg.events_per_min - s.events_in_window)
        dropped = max(0, len(events) - room)  # the excess is counted, never looked at
        for item in events[:room]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)):
                self._violation(s, "message", "an event is not [name, args]")
                continue
            name, args = item
            ev = declared.get(name) if isinstance(name, str) else None
            if ev is None:
                self._violation(s, "event", f"event {str(name)[:60]!r} is not one of its own")
                continue
            s.events_in_window += 1
            clean = {a.name: _arg(a.type, args.get(a.name)) for a in ev.args}
            self.fw.events.emit(cfg.name, name, clean)
        if dropped:
            s.events_dropped += dropped
            s.over.append(("event", f"{dropped} events over {cfg.events_per_min} a minute refused"))

    def _products(self, s: Session, products: Any, now: int) -> None:
        if not products:
            return
        cfg = s.cfg
        if not isinstance(products, list):
            self._violation(s, "message", "products are not a list")
            return
        base = self._dir(s)
        if len(products) > MAX_PRODUCTS_PER_STEP:
            s.products_refused += len(products) - MAX_PRODUCTS_PER_STEP
            s.over.append(("data", f"{len(products)} products in one step; at most {MAX_PRODUCTS_PER_STEP}"))
        for item in products[:MAX_PRODUCTS_PER_STEP]:
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                    and isinstance(item[1], dict)):
                self._violation(s, "message", "a product is not [file name, meta]")
                continue
            fname, meta = item
            if not fname or "/" in fname or "\\" in fname or fname in (".", ".."):
                s.products_refused += 1
                self._violation(s, "path", f"product {fname[:60]!r} is outside its product directory")
                continue
            path = base / fname
            try:
                st = path.lstat()
            except OSError:
                s.products_refused += 1
                self.event("PayloadError", payload=cfg.name, error=f"product {fname[:60]} not found")
                continue
            if not path.is_file() or path.is_symlink():
                s.products_refused += 1
                self._violation(s, "path", f"product {fname[:60]!r} is not a plain file")
                continue
            size = st.st_size
            if size > cfg.max_product_bytes or s.data_bytes + size > cfg.data_bytes_per_sol:
                s.products_refused += 1
                path.unlink(missing_ok=True)
                s.over.append(("data", f"{size} B product refused, {s.data_bytes} of {cfg.data_bytes_per_sol} B "
                                       f"used this sol (largest {cfg.max_product_bytes} B)"))
                continue
            data = path.read_bytes()[: cfg.max_product_bytes]
            pid = s.next_pid
            head = {str(k)[:32]: _scalar(v) for k, v in list(meta.items())[:32]}
            head |= {"payload": cfg.name, "kind": cfg.kind, "file": fname}
            try:
                chunks = product_chunks(now, pid, data, head, cfg.chunk_bytes, thumbnail=False)
            except ProductError as exc:
                s.products_refused += 1
                self.event("PayloadError", payload=cfg.name, error=f"product {fname[:60]}: {exc}")
                continue
            for c in chunks:
                self.fw.outbound.put(dataclasses.replace(c, apid=s.alloc.apid))
            s.next_pid = pid + 1
            write_checked_json(base.parent / "pids.json", PID_FORMAT, {"next_pid": s.next_pid})
            s.data_bytes += len(data)
            s.products += 1
            path.unlink(missing_ok=True)
            self.event("PayloadProduct", payload=cfg.name, pid=pid, size=len(data))

    def _violation(self, s: Session, kind: str, detail: str) -> None:
        s.violations += 1
        self.event("PayloadViolation", payload=s.cfg.name, kind=kind, detail=detail)
        if s.violations >= s.cfg.max_violations and s.alive:
            self._switch_off(s, f"{s.violations} violations")

    # -- budgets --------------------------------------------------------------------------------

    def _account(self, s: Session, now: int) -> None:
        """Energy on the rail since the last cycle; a new sol renews the energy and data budgets."""
        cfg = s.cfg
        if s.last_account_ns >= 0 and s.power_on:
            s.energy_wh += cfg.power_w * (now - s.last_account_ns) / NS / 3600.0
        s.last_account_ns = now
        sol = int(now // int(cfg.sol_s * NS))
        if sol != s.sol:
            s.sol, s.energy_wh, s.data_bytes = sol, 0.0, 0
            self.event("PayloadNewSol", sol=sol)
            if s.state == State.SWITCHED_OFF and s.off_until_next_sol:
                s.state, s.next_start_ns, s.off_until_next_sol = State.BACKOFF, now, False
        budget = cfg.energy_wh_per_sol
        if not budget or not s.alive:
            return
        if s.energy_wh >= budget * (1 - 1e-9):  # the tolerance absorbs the sum's rounding
            self._switch_off(s, f"energy budget: {s.energy_wh:.2f} of {budget:g} Wh this sol", until_next_sol=True)
        elif s.energy_wh >= 0.9 * budget * (1 - 1e-9) and s.state == State.RUNNING:
            s.state, s.strikes, s.clean = State.THROTTLED, 0, 0
            self.event("PayloadThrottled", payload=cfg.name, budget="energy",
                       detail=f"{s.energy_wh:.2f} of {budget:g} Wh this sol")

    def _over_budget(self, s: Session, budget: str, detail: str) -> None:
        s.clean = 0
        if s.state == State.RUNNING:
            s.state, s.strikes = State.THROTTLED, 0
            self.event("PayloadThrottled", payload=s.cfg.name, budget=budget, detail=detail[:160])
            return
        s.strikes += 1
        if s.strikes >= s.cfg.strikes:
            self._switch_off(s, f"{budget} budget: {detail}"[:200], until_next_sol=budget == "data")

    def _switch_off(self, s: Session, reason: str, until_next_sol: bool = False) -> None:
        self._stop(s, reason, State.SWITCHED_OFF)
        s.off_reason, s.off_until_next_sol = reason, until_next_sol
        self.event("PayloadSwitchedOff", payload=s.cfg.name, reason=reason[:200])

    # -- processes ------------------------------------------------------------------------------

    def _start(self, s: Session, now: int, lockstep: bool) -> None:
        """Start the payload's process: inline in lockstep, on the launcher thread in real time.

        Creating a process waits until the child has exec'd, which on a busy machine takes
        milliseconds; in real time that wait is the launcher thread's, never the rate group's.
        """
        s.reader = protocol.FrameReader(MAX_ANSWER)
        s.hello, s.awaiting = False, None
        host_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        host_end.setblocking(False)
        s.sock = host_end
        s.state = State.STARTING
        s.started_ns, s.started_real = now, time.monotonic()
        self._rail(s, True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        env["PYTHONHASHSEED"] = "0"
        argv = [sys.executable, "-m", "flight.payload.child", "--fd", str(child_end.fileno()), "--target", s.target,
                "--nice", str(self.nice)]
        cwd, log_path = self._dir(s), self._dir(s).parent / "process.log"

        def spawn() -> subprocess.Popen[bytes]:
            try:
                with open(log_path, "ab") as err:
                    return subprocess.Popen(argv, pass_fds=(child_end.fileno(),), cwd=cwd, env=env,
                                            stdin=subprocess.DEVNULL, stdout=err, stderr=err)
            finally:
                child_end.close()

        if not lockstep:
            if self._launcher is None:
                self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="payload-launch")
            s.launch = self._launcher.submit(spawn)
            return
        try:
            s.proc = spawn()
            self._live.add(s.proc)
        except OSError as exc:
            self._fail(s, now, hung=False, detail=f"cannot start: {exc}")

    def _launched(self, s: Session, now: int) -> bool:
        """True once the payload's process exists (False while the launcher is still at it)."""
        if s.launch is None:
            return s.proc is not None
        if not s.launch.done():
            return False
        fut, s.launch = s.launch, None
        try:
            s.proc = fut.result()
            self._live.add(s.proc)
        except OSError as exc:
            self._fail(s, now, hung=False, detail=f"cannot start: {exc}")
            return False
        return True

    def _fail(self, s: Session, now: int, hung: bool, detail: str) -> None:
        if not s.alive:
            return
        if hung:
            s.misses += 1
        else:
            s.crashes += 1
        self.event("PayloadHung" if hung else "PayloadCrashed", payload=s.cfg.name, detail=detail[:200])
        self._kill(s, f"{'hung' if hung else 'crashed'}: {detail}")
        while s.restart_times and now - s.restart_times[0] >= HOUR_NS:
            s.restart_times.popleft()
        if len(s.restart_times) >= s.cfg.restarts_per_hour:
            s.state = State.SWITCHED_OFF
            s.off_reason = f"{len(s.restart_times)} restarts within an hour"
            self.event("PayloadSwitchedOff", payload=s.cfg.name, reason=s.off_reason)
            return
        s.failures += 1
        delay = min(s.cfg.backoff_max_s, s.cfg.backoff_s * 2 ** (s.failures - 1))
        s.restart_times.append(now)
        s.restarts += 1
        s.state = State.BACKOFF
        s.next_start_ns = now + int(delay * NS)
        self.event("PayloadRestartScheduled", payload=s.cfg.name, delay_s=delay, count=len(s.restart_times))

    def _kill(self, s: Session, reason: str) -> None:
        if s.launch is not None:  # still being started: killed when the launcher hands it over
            self._orphans.append(s.launch)
            s.launch = None
        if s.proc is not None:
            if s.proc.poll() is None:
                s.proc.kill()
            self._zombies.append((s.proc, 0.0))
            s.proc = None
        self._close(s, reason)

    def _stop(self, s: Session, reason: str, state: State) -> None:
        """Ask the payload to stop; it is killed if it has not exited a second later."""
        if s.launch is not None:
            self._orphans.append(s.launch)
            s.launch = None
        if s.sock is not None and s.proc is not None and s.proc.poll() is None:
            try:
                s.sock.send(protocol.encode({"t": "stop"}))
            except OSError:
                pass
            self._zombies.append((s.proc, time.monotonic() + 1.0))
            s.proc = None
        elif s.proc is not None:
            self._zombies.append((s.proc, 0.0))
            s.proc = None
        self._close(s, reason)
        s.state = state
        self.event("PayloadStopped", payload=s.cfg.name, reason=reason[:200])

    def _close(self, s: Session, reason: str) -> None:
        if s.sock is not None:
            s.sock.close()
            s.sock = None
        for full in list(s.inflight.values()) + [c[2] for c in s.cmds]:
            self.fw.cmd.complete(full, False, f"payload {s.cfg.name} {reason}"[:200])
        s.inflight.clear()
        s.cmds.clear()
        s.awaiting = None
        self._rail(s, False)

    def _reap(self) -> None:
        """Collect exited payload processes; kill the ones past their grace."""
        pending = []
        for fut in self._orphans:
            if not fut.done():
                pending.append(fut)
            elif fut.exception() is None:
                proc = fut.result()
                self._live.add(proc)
                proc.kill()
                self._zombies.append((proc, 0.0))
        self._orphans = pending
        keep = []
        for proc, kill_at in self._zombies:
            if proc.poll() is not None:
                self._live.discard(proc)
                continue
            if time.monotonic() >= kill_at:
                proc.kill()
            keep.append((proc, kill_at))
        self._zombies = keep

    def _rail(self, s: Session, on: bool) -> None:
        if s.power_on == on:
            return
        s.power_on = on
        self.event("PayloadPower", payload=s.cfg.name, state="on" if on else "off")
        rail = f"payload.{s.cfg.name}"
        if self._power is None or s.cfg.power_w <= 0:
            return
        try:
            self._power.switch_load(rail, on)
        except Exception as exc:  # a board without the rail, a failed switch: reported, not fatal
            self.event("PayloadPowerFault", payload=s.cfg.name, error=f"{type(exc).__name__}: {exc}"[:200])

    # -- commands -------------------------------------------------------------------------------

    def _queue_command(self, s: Session, short: str, full: str, args: dict[str, Any]) -> Any:
        if s.state not in (State.RUNNING, State.THROTTLED):
            raise CommandFailed(f"payload {s.cfg.name} is {s.state.name.lower()}")
        self._token += 1  # commands ride on the payload's next step
        token = self._token
        s.cmds.append([token, short, full, dict(args)])
        return PENDING

    @command("PAY_ON", Arg("payload", "str", doc="payload instance name"))
    def pay_on(self, payload: str) -> None:
        """Start a payload that is off or switched off; clears its restart count and strikes."""
        s = self._named(payload)
        if s.alive or s.state == State.BACKOFF:
            raise CommandFailed(f"payload {payload} is already {s.state.name.lower()}")
        s.restart_times.clear()
        s.failures = s.violations = 0
        s.off_reason, s.off_until_next_sol = "", False
        s.state, s.next_start_ns = State.BACKOFF, self.fw.clock.now_ns()

    @command("PAY_OFF", Arg("payload", "str", doc="payload instance name"))
    def pay_off(self, payload: str) -> None:
        """Stop a payload and switch its rail off until PAY_ON."""
        s = self._named(payload)
        if s.state in (State.OFF, State.SWITCHED_OFF):
            raise CommandFailed(f"payload {payload} is already off")
        self._stop(s, "commanded off", State.OFF)

    def _named(self, payload: str) -> Session:
        try:
            return self.session(payload)
        except KeyError:
            raise CommandFailed(f"no payload {payload!r}; payloads: "
                                f"{', '.join(s.cfg.name for s in self.sessions) or 'none'}") from None


def _kill_all(procs: set[subprocess.Popen[bytes]]) -> None:
    for proc in list(procs):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                log.warning("payload process %d did not exit after SIGKILL", proc.pid)
    procs.clear()


def _arg(type_name: str, v: Any) -> Any:
    """An event argument as declared, or its text when it does not fit (the event still goes)."""
    try:
        return types.coerce(type_name, v)
    except (TypeError, ValueError, OverflowError):
        return _scalar(v) if isinstance(v, str) else str(v)[:200]


def _scalar(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v if not isinstance(v, str) else v[:200]
    return str(v)[:200]
