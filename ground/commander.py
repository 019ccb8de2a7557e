"""The commander: builds, signs and sends commands, and tracks their stages to the end.

A command is checked and packed by :mod:`flight.cmdcodec` against the vehicle's dictionary (a
bad argument never leaves the ground), signed by the station, and recorded in the archive's
command history. The vehicle answers on the command-response APID with stages ACCEPTED or
REJECTED, then COMPLETED or FAILED; a response names the command by ``seq``, the uplink counter
of the TC that carried it (the full counter or its low 14 bits; both are matched).

Exactly once: until a first response arrives the command is re-sent every ``retry_interval_s``
up to ``max_attempts`` as the *same* signed TC (same counter, same bytes), so the vehicle can
recognise it. If the first copy was lost, the retry is the first the vehicle sees and it runs; if
the first copy ran and only its response is late, the vehicle refuses the copy as a replay, runs
nothing, and answers with the responses it already gave. Only when the vehicle answers REJECTED
with a reason starting ``not executed`` (that counter never ran there: its counter state was
reset, or another signer used the counter) is the command signed afresh with a new counter. Past
its deadline a command is TIMED_OUT.

A vehicle about to stop listening by itself (hibernation, a restart) says so first with a
``GoingSilent`` event ("hibernating until ..."). The commander then ends every command still
waiting on that vehicle as UNREACHABLE with that reason, and a command sent while the vehicle is
silent is sent (it is read when the vehicle listens again) and ends UNREACHABLE at once, so an
operator is told why instead of waiting out a timeout. A real response arriving later still
updates the record. A newer ``ModeChanged`` or ``Woke`` event from the vehicle ends the silence.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flight.cmdcodec import CommandCodecError, encode_command
from flight.link.packets import SEQ_MODULO, Apid
from ground.station import Station

log = logging.getLogger(__name__)


class Stage(enum.StrEnum):
    SENT = "SENT"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    UNREACHABLE = "UNREACHABLE"  # the vehicle said it went silent (see the module docstring)


TERMINAL = frozenset({Stage.REJECTED, Stage.COMPLETED, Stage.FAILED, Stage.TIMED_OUT, Stage.UNREACHABLE})
SILENCE_EVENT = "GoingSilent"
#: Events that say a silent vehicle is back: its mode changed after it went silent (it woke, or
#: the restarted process booted). Telemetry flushed just after the last word does not count.
BACK_EVENTS = frozenset({"ModeChanged", "Woke"})
_RANK = {
    Stage.SENT: 0,
    Stage.ACCEPTED: 1,
    Stage.REJECTED: 2,
    Stage.COMPLETED: 2,
    Stage.FAILED: 2,
    Stage.TIMED_OUT: 2,
    Stage.UNREACHABLE: 2,
}


@dataclass
class CommandRecord:
    id: int
    scid: int
    name: str
    opcode: int
    args: dict[str, Any]
    data: bytes
    stage: Stage = Stage.SENT
    reason: str = ""
    attempts: int = 0
    counters: list[int] = field(default_factory=list)
    last_sent_s: float = 0.0
    deadline_s: float = float("inf")
    tc: bytes | None = None  # the signed TC, re-sent unchanged on retry
    resigned: int = 0

    @property
    def done(self) -> bool:
        return self.stage in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scid": self.scid,
            "name": self.name,
            "opcode": self.opcode,
            "args": self.args,
            "stage": str(self.stage),
            "reason": self.reason,
            "attempts": self.attempts,
            "counters": list(self.counters),
        }


class Commander:
    """See the module docstring. Driven by :meth:`poll` on whichever clock the station uses."""

    def __init__(
        self,
        station: Station,
        retry_interval_s: float = 60.0,
        default_timeout_s: float = 3600.0,
        max_attempts: int = 5,
    ) -> None:
        self.station = station
        self.archive = station.archive
        self.retry_interval_s = retry_interval_s
        self.default_timeout_s = default_timeout_s
        self.max_attempts = max_attempts
        self.commands: dict[int, CommandRecord] = {}
        self._by_seq: dict[tuple[int, int], int] = {}  # (scid, counter or its low bits) -> id
        self.on_stage: list[Callable[[CommandRecord], None]] = []
        self._now = 0.0  # the station clock at the last send or poll
        #: scid -> (spacecraft time of its GoingSilent event, what it said) while it is silent
        self.silent: dict[int, tuple[float, str]] = {}
        #: called with (scid, text) when a vehicle goes silent, and (scid, "") when it is back
        self.on_silence: list[Callable[[int, str], None]] = []
        self._back_s: dict[int, float] = {}  # scid -> time of the newest BACK_EVENTS event seen
        self._frame_jumps: dict[int, int] = {}  # scid -> the station's frame SA jumps already seen
        station.listeners.append(self._on_item)

    def build(self, scid: int, name: str, args: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Check a command against the vehicle's dictionary; raises CommandCodecError."""
        vehicle = self.station.vehicles.get(scid)
        if vehicle is None:
            raise CommandCodecError(f"no spacecraft {scid} at this station")
        entry = vehicle.dictionary.commands_by_name.get(name)
        if entry is None:
            raise CommandCodecError(f"no command {name!r} in spacecraft {scid}'s dictionary")
        return entry, encode_command(entry, args)

    def send(
        self,
        scid: int,
        name: str,
        args: Mapping[str, Any],
        now_s: float,
        timeout_s: float | None = None,
    ) -> CommandRecord:
        """Check, record, sign and send a command; returns its record (stage SENT)."""
        self._now = now_s
        entry, data = self.build(scid, name, args)
        cmd_id = self.archive.add_command(scid, name, entry["opcode"], dict(args), now_s)
        rec = CommandRecord(
            cmd_id,
            scid,
            name,
            entry["opcode"],
            dict(args),
            data,
            deadline_s=now_s + (timeout_s or self.default_timeout_s),
        )
        self.commands[cmd_id] = rec
        self._transmit(rec, now_s)
        silent = self.silent.get(scid)
        if silent is not None:
            self._unreachable(rec, f"{silent[1]} (sent; it runs when the vehicle listens again)", now_s)
        return rec

    def _unreachable(self, rec: CommandRecord, reason: str, now_s: float) -> None:
        rec.stage, rec.reason = Stage.UNREACHABLE, reason
        self._save(rec, now_s)
        for cb in self.on_stage:
            cb(rec)

    def _silence(self, scid: int, item: dict[str, Any]) -> None:
        """Track GoingSilent events and the first newer item after one (see the docstring)."""
        t = float(item.get("time", 0.0))
        silent = self.silent.get(scid)
        if item.get("name") in BACK_EVENTS:
            self._back_s[scid] = max(t, self._back_s.get(scid, float("-inf")))
        # a last word the recorder resends after the vehicle is back is old news: not newer than
        # the newest mode change, it changes nothing
        if (item.get("name") == SILENCE_EVENT and (silent is None or t > silent[0])
                and t >= self._back_s.get(scid, float("-inf"))):
            vehicle = self.station.vehicles.get(scid)
            who = f"{vehicle.name} ({scid})" if vehicle is not None and vehicle.name else f"spacecraft {scid}"
            text = f"{who} {item.get('text', 'went silent')}"
            self.silent[scid] = (t, text)
            log.warning("%s", text)
            for rec in self.commands.values():
                if rec.scid == scid and not rec.done:
                    self._unreachable(rec, text, t)
            for cb in self.on_silence:
                cb(scid, text)
        elif silent is not None and t > silent[0] and item.get("name") in BACK_EVENTS:
            del self.silent[scid]
            log.warning("spacecraft %d is back (t=%.3f)", scid, t)
            for cb in self.on_silence:
                cb(scid, "")

    def _transmit(self, rec: CommandRecord, now_s: float, fresh: bool = False) -> None:
        if rec.tc is None or fresh:
            counter, rec.tc = self.station.sign_tc(rec.scid, Apid.TC_COMMAND, rec.data, now_s)
            rec.counters.append(counter)
            self._by_seq[(rec.scid, counter)] = rec.id
            self._by_seq[(rec.scid, counter % SEQ_MODULO)] = rec.id
        self.station.send_signed(rec.scid, rec.tc)
        rec.attempts += 1
        rec.last_sent_s = now_s
        self._save(rec, now_s)
        log.info("command %d %s to %d sent (attempt %d)", rec.id, rec.name, rec.scid, rec.attempts)

    def _save(self, rec: CommandRecord, now_s: float) -> None:
        self.archive.update_command(rec.id, str(rec.stage), rec.reason, rec.attempts, rec.counters, now_s)

    def _on_item(self, kind: str, scid: int, item: dict[str, Any]) -> None:
        if kind == "evt":
            self._silence(scid, item)
        if kind != "cmd":
            return
        seq = item.get("seq")
        cmd_id = self._by_seq.get((scid, seq)) if isinstance(seq, int) else None
        rec = self.commands.get(cmd_id) if cmd_id is not None else None
        if rec is None or rec.opcode != item.get("op"):
            log.info("response %s for a command not sent from here", item)
            return
        try:
            stage = Stage(item.get("stage"))
        except ValueError:
            log.warning("response with unknown stage %r", item.get("stage"))
            return
        reason = str(item.get("reason", ""))
        if stage == Stage.REJECTED and reason.startswith("not executed") and not rec.done:
            # that TC never ran on board: sign it afresh (once per counter), so it runs once
            if rec.counters and seq in (rec.counters[-1], rec.counters[-1] % SEQ_MODULO):
                if rec.resigned < self.max_attempts:
                    rec.resigned += 1
                    log.info("command %d: vehicle says counter %s never ran; signing afresh", rec.id, seq)
                    self._transmit(rec, self._now, fresh=True)
            return
        if _RANK[stage] <= _RANK[rec.stage] and rec.stage not in (Stage.TIMED_OUT, Stage.UNREACHABLE):
            return  # a late ACCEPTED after COMPLETED, or a repeat
        rec.stage = stage
        rec.reason = str(item.get("reason", ""))
        self._save(rec, float(item.get("time", 0.0)))
        for cb in self.on_stage:
            cb(rec)

    def poll(self, now_s: float) -> None:
        """Retry unanswered commands and time out the overdue."""
        self._now = now_s
        # frames sent before the station's frame SA jumped past the vehicle's floor were refused
        # by its window: unanswered commands go again at once (the same TC, so they run once)
        jumped = set()
        for scid, v in self.station.vehicles.items():
            if v.frame_jumps != self._frame_jumps.setdefault(scid, v.frame_jumps):
                self._frame_jumps[scid] = v.frame_jumps
                jumped.add(scid)
        for rec in self.commands.values():
            if rec.done:
                continue
            if rec.scid in jumped and rec.stage == Stage.SENT and rec.attempts < self.max_attempts:
                self._transmit(rec, now_s)
                continue
            if now_s >= rec.deadline_s:
                rec.stage, rec.reason = Stage.TIMED_OUT, "no final response before the deadline"
                self._save(rec, now_s)
                for cb in self.on_stage:
                    cb(rec)
            elif (
                rec.stage == Stage.SENT
                and rec.attempts < self.max_attempts
                and now_s - rec.last_sent_s >= self.retry_interval_s
            ):
                self._transmit(rec, now_s)

    def pending(self) -> list[CommandRecord]:
        return [r for r in self.commands.values() if not r.done]
