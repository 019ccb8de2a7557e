"""Command dispatch: decode, validate, respond, execute.

Commands arrive as bytes (the uplink) or as a name and arguments (sequences, the console) and
are queued, thread-safely, for the dispatcher's next cycle. Validation happens before execution:
a command that fails to decode or check is REJECTED with the reason, counted, reported in a
throttled event, and nothing else changes. An accepted command gets ACCEPTED, then COMPLETED or
FAILED (with the reason) when its handler returns, raises, or, for a handler that returned
:data:`PENDING`, when its component calls :meth:`Dispatcher.complete` later.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flight.cmdcodec import CommandCodecError, check_args, decode_command
from flight.component import Component
from flight.model import Arg, Channel, Event, Severity, command
from flight.outbound import CommandResponse

log = logging.getLogger(__name__)


class CommandFailed(Exception):
    """Raised by a handler: the command was valid but could not be carried out (the reason)."""


class _Pending:
    def __repr__(self) -> str:
        return "PENDING"


#: Returned by a handler whose command completes later (see Dispatcher.complete).
PENDING: Any = _Pending()


@dataclass(frozen=True, slots=True)
class _Request:
    source: str
    seq: int
    data: bytes | None = None
    name: str | None = None
    args: Mapping[str, Any] | None = None


@dataclass(slots=True)
class _Entry:
    dict: Mapping[str, Any]
    handler: Callable[..., Any]
    component: str


class Dispatcher(Component):
    """The command dispatcher (instance name ``cmd``); also serves NOOP and PING."""

    OPTIONS = {"queue_size": 256}
    CHANNELS = (
        Channel("accepted", "u32", doc="commands accepted", update="on_change"),
        Channel("rejected", "u32", doc="commands rejected before execution", update="on_change"),
        Channel("completed", "u32", doc="commands completed", update="on_change"),
        Channel("failed", "u32", doc="commands that failed in execution", update="on_change"),
        Channel("pending", "u16", doc="accepted commands still executing", update="on_change"),
        Channel("last_opcode", "u16", doc="opcode of the last accepted command", update="on_change"),
    )
    EVENTS = (
        Event("CmdAccepted", Severity.COMMAND, "{name} accepted from {source} (seq {seq})",
              (Arg("name", "str"), Arg("source", "str"), Arg("seq", "u32"))),
        Event("CmdCompleted", Severity.COMMAND, "{name} completed (seq {seq})",
              (Arg("name", "str"), Arg("seq", "u32"))),
        Event("CmdRejected", Severity.WARNING_LO, "command from {source} rejected: {reason}",
              (Arg("source", "str"), Arg("reason", "str")), throttle=10, throttle_window_s=60.0),
        Event("CmdFailed", Severity.WARNING_HI, "{name} failed: {reason}",
              (Arg("name", "str"), Arg("reason", "str")), throttle=20, throttle_window_s=60.0),
        Event("NoOp", Severity.ACTIVITY_HI, "no-op received"),
        Event("Pong", Severity.ACTIVITY_HI, "ping {key}", (Arg("key", "u32"),)),
    )

    def __init__(self, name: str = "cmd", **options: Any) -> None:
        super().__init__(name, **options)
        self._inbox: queue.Queue[_Request] = queue.Queue(maxsize=int(self.options["queue_size"]))
        self._by_opcode: dict[int, _Entry] = {}
        self._by_name: dict[str, _Entry] = {}
        self._pending: dict[str, deque[_Request]] = {}
        self.counts = {"accepted": 0, "rejected": 0, "completed": 0, "failed": 0}
        self.listeners: list[Callable[[CommandResponse], None]] = []
        self._overflow = 0
        self._overflow_lock = threading.Lock()
        # Admission checks run after a command decodes and before it is accepted: each returns
        # None to admit it or the reason it is refused (fault protection refuses by mode).
        self.admission: list[Callable[[str], str | None]] = []

    # -- table ------------------------------------------------------------------------------

    def register(self, entry: Mapping[str, Any], handler: Callable[..., Any], component: str) -> None:
        e = _Entry(entry, handler, component)
        if entry["opcode"] in self._by_opcode or entry["name"] in self._by_name:
            raise ValueError(f"command {entry['name']} (0x{entry['opcode']:04x}) registered twice")
        self._by_opcode[entry["opcode"]] = e
        self._by_name[entry["name"]] = e

    def entry(self, name: str) -> Mapping[str, Any] | None:
        e = self._by_name.get(name)
        return e.dict if e else None

    # -- intake (any thread) ----------------------------------------------------------------

    def submit_bytes(self, data: bytes, source: str = "uplink", seq: int = 0) -> bool:
        """Queue an encoded command. Returns False (and counts a rejection) when the queue is full."""
        return self._offer(_Request(source, seq, data=bytes(data)))

    def submit(self, name: str, args: Mapping[str, Any] | None = None, source: str = "local",
               seq: int = 0) -> bool:
        """Queue a command by name with argument values (strings are parsed by type)."""
        return self._offer(_Request(source, seq, name=name, args=dict(args or {})))

    def _offer(self, req: _Request) -> bool:
        try:
            self._inbox.put_nowait(req)
            return True
        except queue.Full:
            # Counted here; the event is raised from the executive thread at the next step.
            with self._overflow_lock:
                self._overflow += 1
            return False

    # -- execution (executive thread) -------------------------------------------------------

    def step(self) -> None:
        with self._overflow_lock:
            overflow, self._overflow = self._overflow, 0
        if overflow:
            self.counts["rejected"] += overflow
            self.event("CmdRejected", source="any", reason=f"command queue full, {overflow} dropped")
        while True:
            try:
                req = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._process(req)
        self._publish_counts()

    def _publish_counts(self) -> None:
        for key, value in self.counts.items():
            self.tlm(key, value)
        self.tlm("pending", sum(len(q) for q in self._pending.values()))

    def _respond(self, req: _Request, opcode: int, name: str, stage: str, reason: str = "") -> None:
        resp = CommandResponse(self.fw.clock.now_ns(), opcode, name, req.seq, req.source, stage, reason)
        self.fw.outbound.put(resp)
        for listener in self.listeners:
            listener(resp)

    def _reject(self, req: _Request, reason: str, opcode: int = 0, name: str = "?") -> None:
        self.counts["rejected"] += 1
        self.event("CmdRejected", source=req.source, reason=reason)
        self._respond(req, opcode, name, "REJECTED", reason)

    def _process(self, req: _Request) -> None:
        try:
            if req.data is not None:
                table = {op: e.dict for op, e in self._by_opcode.items()}
                entry_dict, values = decode_command(table, req.data)
                entry = self._by_opcode[entry_dict["opcode"]]
            else:
                found = self._by_name.get(req.name or "")
                if found is None:
                    raise CommandCodecError(f"unknown command {req.name!r}")
                entry = found
                values = check_args(entry.dict, req.args or {})
        except CommandCodecError as exc:
            opcode = struct.unpack_from(">H", req.data)[0] if req.data and len(req.data) >= 2 else 0
            self._reject(req, str(exc), opcode, req.name or "?")
            return
        opcode, name = entry.dict["opcode"], entry.dict["name"]
        for admit in self.admission:
            refusal = admit(name)
            if refusal:
                self._reject(req, refusal, opcode, name)
                return
        self.counts["accepted"] += 1
        self.tlm("last_opcode", opcode)
        self.event("CmdAccepted", name=name, source=req.source, seq=req.seq)
        self._respond(req, opcode, name, "ACCEPTED")
        try:
            result = entry.handler(**values)
        except CommandFailed as exc:
            self._finish(req, opcode, name, False, str(exc))
            return
        except Exception as exc:  # a handler bug must not take the dispatcher down
            log.exception("handler of %s raised", name)
            self._finish(req, opcode, name, False, f"internal error: {type(exc).__name__}: {exc}")
            return
        if result is PENDING:
            self._pending.setdefault(name, deque()).append(req)
            return
        self._finish(req, opcode, name, True)

    def _finish(self, req: _Request, opcode: int, name: str, ok: bool, reason: str = "") -> None:
        if ok:
            self.counts["completed"] += 1
            self.event("CmdCompleted", name=name, seq=req.seq)
            self._respond(req, opcode, name, "COMPLETED")
        else:
            self.counts["failed"] += 1
            self.event("CmdFailed", name=name, reason=reason)
            self._respond(req, opcode, name, "FAILED", reason)

    def complete(self, name: str, ok: bool = True, reason: str = "") -> bool:
        """Finish the oldest pending execution of command ``name``. False if none was pending."""
        waiting = self._pending.get(name)
        if not waiting:
            return False
        req = waiting.popleft()
        self._finish(req, self._by_name[name].dict["opcode"], name, ok, reason)
        self._publish_counts()
        return True

    def pending(self, name: str) -> int:
        return len(self._pending.get(name, ()))

    # -- built-in commands ------------------------------------------------------------------

    @command("CMD_NOOP")
    def cmd_noop(self) -> None:
        """Do nothing; proves the command path end to end."""
        self.event("NoOp")

    @command("CMD_PING", Arg("key", "u32", doc="echoed in the Pong event"))
    def cmd_ping(self, key: int) -> None:
        """Answer with a Pong event carrying the key."""
        self.event("Pong", key=key)
