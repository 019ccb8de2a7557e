"""Comm: the vehicle's end of the space link, between the outbound queue and the radio.

Downlink: every item the vehicle sends home (events, command responses, housekeeping) becomes a
numbered space packet (:class:`~flight.link.packets.Packetizer`; housekeeping and events in the
fixed layouts of the vehicle's dictionary, :mod:`flight.link.layouts`) and is stored in the onboard
:class:`~flight.link.recorder.Recorder` (a SQLite file in the state directory and its change log:
a batch is in the log, safe from kill -9, before the call returns, and in the database within its
checkpoint interval) before anything else happens to it; the :class:`LinkEndpoint` sends from the
recorder within the downlink byte rate and releases only what the ground acknowledged. Sequence
counts resume from the recorder after a restart: exactly after a crash of the process, past each
APID's reserved window after a reboot without a clean close (a gap the ground NAKs, then
gives up on).

Data products (:class:`~flight.link.products.ProductChunk` items the imaging task queues) become
packets on APID 0x030 (thumbnails) or 0x031 (full products), sent on the bulk virtual channel
after events and housekeeping, thumbnails ahead of full frames (the recorder's priorities).

Products and files by CFDP class 2 (``downlink = "cfdp"`` on the imaging component): Comm's
CFDP entity (:mod:`flight.components.comm_cfdp`) takes ``FilePut`` items, stores its PDUs as
packets on APID 0x032, and takes the authenticated TCs whose body starts with the CFDP prefix.

Uplink: each cycle the endpoint reads the radio, applies authenticated ACK/NAK link control to
the recorder and hands back verified commands, which go to the dispatcher with
``source="uplink"`` and ``seq`` = the authentication counter (the ground's commander matches
responses by it). Rejected uplink (bad tag, replay, unknown key...) is counted by reason in
telemetry, persisted across reboots, and reported in a throttled event.

Exactly once: every accepted command is noted in a :class:`~flight.link.once.CommandLog`
before it runs. The ground re-sends an unanswered command as the same TC; the verifier refuses
the copy as a replay, and Comm answers it from the log: the responses already given (nothing runs
again), or REJECTED "not executed" when that TC never ran, so the ground may sign it afresh. The
highest accepted counters go down as ``uplink_counter_cmd`` / ``uplink_counter_link`` so the
ground can resynchronise its signer; a copy is kept in the recorder, which stands in if both
copies of the counter file are lost. Stores found unreadable at boot (recorder, counter files,
command log) are moved aside and reported by a ``StoreRecovered`` event.

How items reach the recorder: Comm is a vehicle *sink* (``write``/``close``); the assembly
hands it every drained batch. :func:`attach` registers the vehicle's Comm components as sinks.
A Comm that nobody attached drains the outbound queue itself in its step, so nothing is lost
either way (other sinks then see nothing). On a clean stop the vehicle flushes its last items
into the sinks, so the shutdown event is stored too, and ``close`` closes the recorder.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flight.component import Component
from flight.components import comm_cfdp
from flight.config import ConfigError
from flight.link.auth import KeyFileError, Reject, Verified, Verifier, load_key
from flight.link.cfdp import GROUND_ENTITY, from_tc_body
from flight.link.endpoint import LinkEndpoint
from flight.link.frames import OVERHEAD as FRAME_OVERHEAD
from flight.link.layouts import HK_APIDS, Layouts
from flight.link.once import CommandLog
from flight.link.packets import (
    HEADER_LEN,
    Apid,
    PacketError,
    Packetizer,
    SequenceCounter,
    apid_of,
    encode_packet,
    pack_payload,
)
from flight.link.products import ProductChunk
from flight.link.recorder import Priority, Recorder
from flight.link.sdls import LinkSecurity
from flight.logcount import worth_a_line
from flight.model import Arg, Channel, Event, Limits, Severity, command
from flight.outbound import CommandResponse, EventRecord, TlmPacket
from flight.persist import CorruptFileError, move_aside, read_checked_json, write_checked_json
from hal.contracts import Radio

if TYPE_CHECKING:
    from flight.vehicle import Vehicle

log = logging.getLogger(__name__)

COUNTERS_FORMAT = "magpie-comm-counters/1"
_CLASS_NAMES = {Priority.REALTIME: "realtime", Priority.HOUSEKEEPING: "hk",
                Priority.THUMBNAIL: "thumb", Priority.PRODUCT: "product"}
_MAX_TEXT = 512  # event text and command reasons are cut to this many characters on the link
_MSGPACK_INT = (-(2**63), 2**64 - 1)  # what a msgpack integer can hold


def _packable(value: Any) -> bool:
    return not isinstance(value, int) or _MSGPACK_INT[0] <= value <= _MSGPACK_INT[1]


class Comm(Component):
    """Onboard recorder, packetizer, uplink verifier and link endpoint on one radio."""

    DEVICES = {"radio": Radio}
    OPTIONS = {
        "key_file": "",  # uplink HMAC key (hex or raw, mode 0600); relative: to the state dir's parent
        "key_id": 1,
        # downlink frame key (SDLS); empty: derived from the uplink key (a key per direction either way)
        "downlink_key_file": "",
        "downlink_key_id": 1,
        "recorder_file": "recorder.db",  # in the state directory
        "recorder_capacity_bytes": 64 * 1024 * 1024,
        "resend_timeout_s": 30.0,  # above the round trip: 2 x (light time + hop) + ack interval
        "downlink_bytes_per_s": 32_000.0,
        "max_burst_bytes": 64_000,
        "max_frame_len": 4096,
        "stats_every_s": 1.0,  # telemetry sampling of recorder and link counters
        "link_report_every_s": 600.0,  # LinkReport event period; 0 disables
        # CFDP (flight/components/comm_cfdp.py): the ground's entity id, PDU rate (0: 3/4 of the
        # downlink rate) and the ACK/NAK timers, in seconds of link time (above the round trip)
        "cfdp_ground_entity": GROUND_ENTITY,
        "cfdp_bytes_per_s": 0.0,
        "cfdp_timer_s": 60.0,
        "cfdp_link_silence_s": 30.0,  # no authenticated uplink for this long: the link is down for CFDP
    }
    CHANNELS = (
        Channel("rec_packets", "u32", doc="packets held by the onboard recorder"),
        Channel("rec_bytes", "u64", "B", doc="bytes held by the onboard recorder"),
        Channel("rec_fill_pct", "f32", "%", doc="recorder fill", limits=Limits(yellow=(0.0, 80.0), red=(0.0, 95.0))),
        Channel("rec_queued", "u32", doc="held packets waiting to be sent"),
        Channel("rec_in_flight", "u32", doc="held packets sent and not yet acknowledged"),
        Channel("rec_stored", "u32", doc="packets stored since boot", update="on_change"),
        Channel("rec_acked", "u32", doc="packets released by ground acknowledgement (persisted)",
                update="on_change"),
        Channel("rec_naks", "u32", doc="packets requeued by ground NAK (persisted)", update="on_change"),
        Channel("rec_resent", "u32", doc="packets sent more than once (persisted)", update="on_change"),
        Channel("drop_realtime", "u32", doc="events/responses dropped by the recorder (persisted)",
                update="on_change"),
        Channel("drop_hk", "u32", doc="housekeeping packets dropped by the recorder (persisted)",
                update="on_change"),
        Channel("drop_thumb", "u32", doc="thumbnail chunks dropped by the recorder (persisted)",
                update="on_change"),
        Channel("drop_product", "u32", doc="product chunks dropped by the recorder (persisted)",
                update="on_change"),
        Channel("frames_sent", "u32", doc="downlink frames sent since boot", update="on_change"),
        Channel("packets_sent", "u32", doc="downlink packets sent (with resends) since boot",
                update="on_change"),
        Channel("send_failures", "u32", doc="radio send failures since boot", update="on_change"),
        Channel("downlink_Bps", "f32", "B/s", doc="downlink byte rate", update="on_change"),
        Channel("frames_received", "u32", doc="uplink frames accepted (FECF, header, authentication) since boot",
                update="on_change"),
        Channel("frame_crc_errors", "u32", doc="uplink frames failing the FECF since boot", update="on_change"),
        Channel("frame_malformed", "u32", doc="uplink frames not holding whole packets since boot",
                update="on_change"),
        Channel("frame_wrong_scid", "u32", doc="uplink frames for another spacecraft since boot",
                update="on_change"),
        Channel("frame_bad_mac", "u32", doc="uplink frames failing SDLS authentication (MAC or SPI) since boot",
                update="on_change"),
        Channel("frame_replay", "u32", doc="uplink frames refused by the SDLS anti-replay window since boot",
                update="on_change"),
        # sampled every housekeeping cycle: the ground's frame SA jumps past it after a restart
        Channel("uplink_frame_sn", "u64", doc="highest uplink frame sequence number accepted or reserved"),
        Channel("uplink_accepted", "u32", doc="authenticated uplink packets since boot", update="on_change"),
        Channel("uplink_commands", "u32", doc="commands passed to the dispatcher since boot",
                update="on_change"),
        Channel("uplink_link_control", "u32", doc="ACK/NAK packets applied since boot", update="on_change"),
        Channel("uplink_rejected", "u32", doc="uplink packets rejected, all reasons (persisted)",
                update="on_change"),
    ) + tuple(
        Channel(f"rej_{r.value}", "u32", doc=f"uplink packets rejected: {r.value} (persisted)",
                update="on_change")
        for r in Reject
    ) + (
        Channel("uplink_silence_s", "f32", "s", doc="seconds since the last authenticated uplink "
                "(since boot when none)"),
        # sampled every housekeeping cycle, not on change: a ground that lost its counters must
        # hear them although nothing it sends is accepted (so they do not change)
        Channel("uplink_counter_cmd", "u64", doc="highest command counter accepted (the ground's signer "
                "resynchronises from it)"),
        Channel("uplink_counter_link", "u64", doc="highest link-control counter accepted or reserved"),
        Channel("uplink_retries", "u32", doc="re-sent commands answered from the command log, not run again",
                update="on_change"),
        Channel("uplink_not_executed", "u32", doc="re-sent commands answered 'not executed' (never ran here)",
                update="on_change"),
        Channel("hk_samples_dropped", "u32", doc="housekeeping samples that could not be encoded",
                update="on_change"),
    ) + comm_cfdp.CHANNELS
    EVENTS = (
        Event("CommUp", Severity.ACTIVITY_HI,
              "link up: scid {scid}, recorder holds {packets} packets, uplink key {key_id}",
              (Arg("scid", "u16"), Arg("packets", "u32"), Arg("key_id", "u16"))),
        Event("RecorderDrop", Severity.WARNING_HI,
              "recorder full: dropped {realtime} realtime, {hk} housekeeping, {thumb} thumbnail, "
              "{product} product packets",
              (Arg("realtime", "u32"), Arg("hk", "u32"), Arg("thumb", "u32"), Arg("product", "u32")),
              throttle=1, throttle_window_s=60.0,
              doc="the drop policy refused or evicted packets; counts since the last report"),
        Event("UplinkRejected", Severity.WARNING_HI, "uplink rejected ({reason}): {count} more, {total} in all",
              (Arg("reason", "str"), Arg("count", "u32"), Arg("total", "u32")),
              throttle=5, throttle_window_s=60.0,
              doc="uplink packets refused by authentication; counts since the last report"),
        Event("UplinkFrameRejected", Severity.WARNING_HI, "uplink frames rejected ({reason}): {count} more, {total} "
              "since boot", (Arg("reason", "str"), Arg("count", "u32"), Arg("total", "u32")),
              throttle=5, throttle_window_s=60.0,
              doc="uplink frames refused by frame authentication (SDLS: bad_mac, unknown_spi, replay)"),
        Event("RecorderFailed", Severity.WARNING_HI, "recorder write failed ({error}); {items} items kept for retry",
              (Arg("error", "str"), Arg("items", "u32")), throttle=5, throttle_window_s=60.0),
        Event("BadLinkControl", Severity.WARNING_LO, "authenticated link control was malformed ({count})",
              (Arg("count", "u32"),), throttle=5, throttle_window_s=60.0),
        Event("RadioSendFailed", Severity.WARNING_LO, "radio send failed {count} time(s); data stays on board",
              (Arg("count", "u32"),), throttle=5, throttle_window_s=60.0),
        Event("DownlinkUnencodable", Severity.WARNING_LO, "{kind} item could not be packed: {detail}",
              (Arg("kind", "str"), Arg("detail", "str")), throttle=5, throttle_window_s=60.0),
        Event("LinkReport", Severity.ACTIVITY_LO,
              "link: {frames_sent} frames sent, {frames_received} received, {acked} acked, {naks} NAKed, "
              "{resent} resent, {rejected} uplink rejected, {held} held",
              (Arg("frames_sent", "u32"), Arg("frames_received", "u32"), Arg("acked", "u32"),
               Arg("naks", "u32"), Arg("resent", "u32"), Arg("rejected", "u32"), Arg("held", "u32"))),
        Event("DownlinkRateSet", Severity.ACTIVITY_HI, "downlink rate now {bytes_per_s} B/s",
              (Arg("bytes_per_s", "u32"),)),
        Event("StoreRecovered", Severity.WARNING_HI, "{store}: {problem}",
              (Arg("store", "str"), Arg("problem", "str")),
              doc="a persistent store was unreadable at boot: moved aside, started afresh; says what was lost"),
        Event("CommandRetried", Severity.ACTIVITY_LO, "command counter {counter} re-sent: {answer}",
              (Arg("counter", "u64"), Arg("answer", "str")), throttle=5, throttle_window_s=60.0),
    ) + comm_cfdp.EVENTS

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.recorder: Recorder | None = None
        self.endpoint: LinkEndpoint | None = None
        self.verifier: Verifier | None = None
        self.packetizer: Packetizer | None = None
        self.cfdp: comm_cfdp.CommCfdp | None = None
        self.attached = False  # True once the vehicle hands us its drained items (see attach)
        self.stored = 0
        self.unencodable = 0
        self.store_failures = 0
        #: called with each stored batch's packet bytes (tests, mission bookkeeping)
        self.store_listeners: list[Callable[[list[bytes]], None]] = []

    # -- life cycle -------------------------------------------------------------------------------

    def _key_path(self, option: str = "key_file") -> Path:
        raw = str(self.options[option] or "")
        if not raw:
            raise ConfigError(f"components.{self.name}.key_file: required (the uplink HMAC key, mode 0600)")
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.fw.state_dir.parent / p

    def setup(self) -> None:
        fw = self.fw
        opts = self.options
        try:
            key = load_key(self._key_path(), int(opts["key_id"]))
        except (KeyFileError, ValueError) as exc:
            raise ConfigError(f"components.{self.name}.key_file: {exc}") from None
        down_key = None
        if opts["downlink_key_file"]:
            try:
                down_key = load_key(self._key_path("downlink_key_file"), int(opts["downlink_key_id"]))
            except (KeyFileError, ValueError) as exc:
                raise ConfigError(f"components.{self.name}.downlink_key_file: {exc}") from None
        max_frame = int(opts["max_frame_len"])
        self._max_packet = max_frame - FRAME_OVERHEAD
        self._key_id = key.key_id
        self.recorder = Recorder(fw.state_dir / str(opts["recorder_file"]),
                                 capacity_bytes=int(opts["recorder_capacity_bytes"]),
                                 clock=fw.clock.now, resend_timeout_s=float(opts["resend_timeout_s"]))
        self.verifier = Verifier([key], fw.state_dir / f"{self.name}-uplink.json",
                                 floors=self.recorder.uplink_floors())
        self.cmdlog = CommandLog(fw.state_dir / f"{self.name}-commands.json",
                                 since={key.key_id: self.verifier.high(key.key_id, Apid.TC_COMMAND)})
        self.retries_answered = 0
        self.not_executed = 0
        self.hk_dropped = 0
        #: fixed housekeeping layouts from the vehicle's dictionary (None: msgpack sample lists)
        self.layouts = Layouts.from_dictionary(fw.store.get("vehicle.dictionary"))
        self._answered: set[tuple[int, int]] = set()
        try:
            self.packetizer = Packetizer(SequenceCounter(self.recorder.last_seqs()))
            self.endpoint = LinkEndpoint(fw.spacecraft_id, self.recorder, self.verifier, self.devices["radio"],
                                         downlink_bytes_per_s=float(opts["downlink_bytes_per_s"]),
                                         max_burst_bytes=int(opts["max_burst_bytes"]), max_frame_len=max_frame,
                                         security=LinkSecurity.for_vehicle(
                                             key, down_key, fw.state_dir / f"{self.name}-sdls.json",
                                             fallback={k[5:]: v for k, v in self.recorder.remembered().items()
                                                       if k.startswith("sdls.")}))
        except ValueError as exc:
            self.recorder.close()
            raise ConfigError(f"components.{self.name}: {exc}") from None
        self.cfdp = comm_cfdp.CommCfdp(self)
        self._counters_path = fw.state_dir / f"{self.name}-counters.json"
        self._rejected_base = self._load_counters()
        self._rejected_seen = {r: 0 for r in Reject}  # this boot, already reported
        self._rejected_clean: tuple[int, ...] | None = None  # the counts when all was reported
        self._drops_pending: dict[int, int] = {}
        self._reported = {"bad_link_control": 0, "send_failures": 0, "bad_mac": 0, "unknown_spi": 0, "replay": 0}
        self._boot_s = fw.clock.now()
        self._last_uplink_s: float | None = None
        self._accepted_seen = 0
        self._next_stats_s = self._boot_s
        self._remembered_mark: tuple[int, int] | None = None  # see _remember
        self._remembered_sa: dict[str, int] = {}
        every = float(opts["link_report_every_s"])
        self._next_report_s = self._boot_s + every if every > 0 else None
        self.tlm("downlink_Bps", self.endpoint.rate)
        held = self.recorder.stats().packets
        self.event("CommUp", scid=fw.spacecraft_id, packets=held, key_id=key.key_id)
        for store, problems in (("recorder", self.recorder.problems), ("uplink counters", self.verifier.problems),
                                ("command log", self.cmdlog.problems), ("link counters", self._counter_problems),
                                ("frame security", self.endpoint.security.store.problems)):
            for problem in problems:
                self.event("StoreRecovered", store=store, problem=problem[:_MAX_TEXT])
        log.info("comm %s: recorder %s holds %d packets; sequence counts resume at %s", self.name,
                 self.recorder.path, held, self.recorder.last_seqs())

    def _load_counters(self) -> dict[Reject, int]:
        self._counter_problems: list[str] = []
        try:
            body = read_checked_json(self._counters_path, COUNTERS_FORMAT) or {}
            rej = body.get("rejected", {})
            return {r: max(0, int(rej.get(r.value, 0))) for r in Reject}
        except (CorruptFileError, TypeError, ValueError, AttributeError) as exc:
            moved = move_aside(self._counters_path)
            msg = f"rejection counters unusable ({exc}); restarted from 0"
            if moved is not None:
                msg += f", kept as {moved.name}"
            log.warning("comm: %s", msg)
            self._counter_problems.append(msg)
            return {r: 0 for r in Reject}

    def _save_counters(self) -> None:
        total = {r.value: self._rejected_base[r] + self._verifier.rejected[r] for r in Reject}
        write_checked_json(self._counters_path, COUNTERS_FORMAT, {"rejected": total})

    @property
    def _verifier(self) -> Verifier:
        assert self.verifier is not None, "comm used before setup"
        return self.verifier

    def step(self) -> None:
        if not self.attached:
            self.write(self.fw.outbound.drain())
        self.pump(self.fw.clock.now())
        self._report()

    def pump(self, now_s: float) -> int:
        """Move the link one step: uplink in (commands to the dispatcher), downlink out.

        Split from :meth:`step` so a mission can keep draining the recorder after the executive
        has stopped. Returns the number of commands handed to the dispatcher.
        """
        assert self.endpoint is not None, "comm used before setup"
        before = dict(self._verifier.rejected)
        commands = self.endpoint.step(now_s)
        for verified in commands:
            if self.cfdp is not None and self.cfdp.uplink(verified.body):
                continue  # a CFDP PDU, not a command
            self.cmdlog.accepted(verified)  # persisted before it can run
            if not self.fw.cmd.submit_bytes(verified.body, source="uplink", seq=verified.counter):
                self.cmdlog.forget(verified)
        for replay in self._verifier.take_replays():
            if replay.apid == Apid.TC_COMMAND:
                self._answer_retry(replay)
        if self.recorder is not None:
            self._remember()
        if self._verifier.accepted != self._accepted_seen:
            self._accepted_seen = self._verifier.accepted
            self._last_uplink_s = now_s
        if self.cfdp is not None:
            self.cfdp.step(now_s, self._last_uplink_s)
        if self._verifier.rejected != before:
            self._save_counters()
        return len(commands)

    def _remember(self) -> None:
        """Hand the recorder a copy of the uplink counters and the frame SAs' sequence numbers
        (written with its next stored batch) when they changed since the last copy, or when a
        store failed since (a rolled-back batch may have taken the copy with it)."""
        assert self.recorder is not None and self.endpoint is not None
        verifier, sa = self._verifier, self.endpoint.security.store
        failures = self.store_failures + (self.cfdp.store_failures if self.cfdp is not None else 0)
        mark = (verifier.accepted, failures)
        if mark != self._remembered_mark:  # the verifier's counters move only when it accepts
            self.recorder.remember_uplink(verifier.highs())
        if mark != self._remembered_mark or sa.values != self._remembered_sa:
            self.recorder.remember({f"sdls.{k}": v for k, v in sa.values.items()})
            self._remembered_sa = dict(sa.values)
        self._remembered_mark = mark

    def _answer_retry(self, v: Verified) -> None:
        """A command TC that came again: answer it from the log, never run it twice."""
        if from_tc_body(v.body) is not None:
            return  # a repeated CFDP PDU: the protocol copes with duplicates; nothing to answer
        if (v.key_id, v.counter) in self._answered:
            return  # answered once this boot; a further copy gets nothing (bounds the work)
        if len(self._answered) < 4096:
            self._answered.add((v.key_id, v.counter))
        given = self.cmdlog.lookup(v)
        now_ns = self.fw.clock.now_ns()
        if given is not None:
            self.retries_answered += 1
            for opcode, name, stage, reason in given:
                self.fw.outbound.put(CommandResponse(now_ns, opcode, name, v.counter, "uplink", stage, reason))
            self.event("CommandRetried", counter=v.counter, answer=f"ran once; {len(given)} response(s) re-sent")
            return
        opcode = int.from_bytes(v.body[:2], "big") if len(v.body) >= 2 else 0
        if self.cmdlog.can_tell(v):
            self.not_executed += 1
            reason = f"not executed: counter {v.counter} was already used by another command"
        else:
            reason = f"replay: counter {v.counter} is older than the command log; cannot tell whether it ran"
        self.fw.outbound.put(CommandResponse(now_ns, opcode, "", v.counter, "uplink", "REJECTED", reason))
        self.event("CommandRetried", counter=v.counter, answer=reason)

    def send_now(self) -> int:
        """Send what the recorder holds at once, without reading the uplink: the vehicle's last
        word before it goes silent (see :meth:`flight.vehicle.Vehicle.downlink_now`). At least
        one frame goes even when this cycle's byte budget is spent. Returns packets sent."""
        if self.endpoint is None:
            return 0
        if not self.attached:
            self.write(self.fw.outbound.drain())
        return self.endpoint.transmit(self.fw.clock.now(), min_budget=self.endpoint.framer.max_frame_len)

    def shutdown(self) -> None:
        if not self.attached:
            self.write(self.fw.outbound.drain())
            self.close()

    # -- downlink: the vehicle's sink -------------------------------------------------------------

    def write(self, items: list[Any]) -> None:
        """Packetize a drained batch and store it in the recorder with one transaction."""
        if not items or self.recorder is None or self.packetizer is None:
            return
        if self.cfdp is not None:
            items = self.cfdp.take(items)
        batch: list[tuple[bytes, int, int, int | None, float | None]] = []
        for item in items:
            for seq, data in self._packets(item):
                apid = apid_of(data)
                prio = Priority.HOUSEKEEPING if apid in HK_APIDS else None
                batch.append((data, apid, seq, prio, item.time_ns / 1e9))
        if not batch:
            return
        try:
            flags = self.recorder.put_many(batch)
        except sqlite3.Error as exc:
            # Nothing of the batch was stored (one transaction). Give the items back to the
            # outbound queue for the next flush and rewind the sequence counts to what is stored,
            # so the ground sees no gap; other sinks may see these items twice.
            self.store_failures += 1
            log.error("comm: recorder write failed (%s); %d items requeued", exc, len(items))
            self.packetizer = Packetizer(SequenceCounter(self.recorder.last_seqs()))
            for item in items:
                self.fw.outbound.put(item)
            self.event("RecorderFailed", error=str(exc)[:200], items=len(items))
            return
        self.stored += sum(flags)
        for item in items:
            if isinstance(item, CommandResponse) and item.source == "uplink":
                self.cmdlog.respond(item.seq, item.opcode, item.name, item.stage, item.reason[:_MAX_TEXT])
        self.cmdlog.flush()
        if self.store_listeners:
            kept = [b[0] for b, ok in zip(batch, flags, strict=True) if ok]
            for listener in self.store_listeners:
                listener(kept)

    def _packets(self, item: Any) -> list[tuple[int, bytes]]:
        pk = self.packetizer
        assert pk is not None
        t = item.time_ns / 1e9
        try:
            if isinstance(item, TlmPacket):
                return self._housekeeping(t, list(item.samples))
            if isinstance(item, EventRecord) and self.layouts is not None:  # the event id's fixed layout
                payload = self.layouts.encode_event(item.id, item.args, item.text[:_MAX_TEXT])
                seq = pk.counters.next(Apid.EVENT)
                return [(seq, encode_packet(Apid.EVENT, seq, t, payload))]
            if isinstance(item, EventRecord):
                args = [a if (isinstance(a, int | float | str | bool | bytes) or a is None) and _packable(a)
                        else str(a) for a in item.args]
                return [pk.event(t, item.id, item.severity.name, item.text[:_MAX_TEXT], args)]
            if isinstance(item, CommandResponse):
                return [pk.response(t, item.opcode, item.name, item.seq, item.stage, item.reason[:_MAX_TEXT])]
            if isinstance(item, ProductChunk):
                # checked before a sequence count is spent, so a refused chunk leaves no gap
                need = HEADER_LEN + 48 + len(item.data) + len(pack_payload(item.meta))
                if need > self._max_packet:
                    raise PacketError(f"product {item.pid} chunk {item.idx} needs {need} bytes; "
                                      f"a frame holds {self._max_packet}")
                if item.apid is not None:  # a hosted payload's product, on its own APID
                    return [pk.packet(item.apid, t, {"pid": item.pid, "idx": item.idx, "n": item.n,
                                                     "data": item.data, "meta": item.meta})]
                return [pk.chunk(t, item.pid, item.idx, item.n, item.data, item.meta, item.thumbnail)]
        except PacketError as exc:
            self._unencodable(type(item).__name__, str(exc))
            return []
        self._unencodable(type(item).__name__, "no packet kind for this item")
        return []

    def _fixed_housekeeping(self, t: float, samples: list[tuple[int, Any]]) -> list[tuple[int, bytes]]:
        """One packet per layout with a sample due (``flight.link.layouts``)."""
        assert self.packetizer is not None and self.layouts is not None
        payloads, bad = self.layouts.encode(samples)
        if bad:  # one value that does not fit its field costs its sample, never the packet
            self.hk_dropped += len(bad)
            self._unencodable("TlmSample", f"channel {bad[0]} value does not fit its field "
                              f"({len(bad)} sample(s) dropped)")
        out = []
        for apid, payload in payloads:
            if HEADER_LEN + len(payload) > self._max_packet:  # checked before a count is spent
                self._unencodable("TlmPacket", f"housekeeping APID 0x{apid:03x} needs "
                                  f"{HEADER_LEN + len(payload)} bytes; a frame holds {self._max_packet}")
                continue
            seq = self.packetizer.counters.next(apid)
            out.append((seq, encode_packet(apid, seq, t, payload)))
        return out

    def _housekeeping(self, t: float, samples: list[tuple[int, Any]]) -> list[tuple[int, bytes]]:
        """One packet, or several when the samples do not fit one frame (split in halves)."""
        assert self.packetizer is not None
        if self.layouts is not None:
            return self._fixed_housekeeping(t, samples)
        bad = [s for s in samples if not _packable(s[1])]
        if bad:  # one out-of-range value costs its sample, never the packet (nor every later one)
            self.hk_dropped += len(bad)
            self._unencodable("TlmSample", f"channel {bad[0][0]} value out of the link's range "
                              f"({len(bad)} sample(s) dropped)")
            samples = [s for s in samples if _packable(s[1])]
            if not samples:
                return []
        if len(samples) > 1 and HEADER_LEN + len(pack_payload({"s": [list(s) for s in samples]})) > self._max_packet:
            half = len(samples) // 2
            return self._housekeeping(t, samples[:half]) + self._housekeeping(t, samples[half:])
        seq, data = self.packetizer.housekeeping(t, samples)
        if len(data) > self._max_packet:
            raise PacketError(f"one sample needs {len(data)} bytes; a frame holds {self._max_packet}")
        return [(seq, data)]

    def _unencodable(self, kind: str, detail: str) -> None:
        self.unencodable += 1
        if worth_a_line(self.unencodable):
            log.warning("comm: %s item not packed: %s (%d so far)", kind, detail, self.unencodable)
        self.event("DownlinkUnencodable", kind=kind, detail=detail[:200])

    def close(self) -> None:
        """Sink close (after the vehicle's last flush): close the recorder."""
        if self.recorder is not None:
            self.recorder.close()
            self.recorder = None

    # -- reporting ---------------------------------------------------------------------------------

    def _report(self) -> None:
        rec, ep = self.recorder, self.endpoint
        if rec is None or ep is None:
            return
        now = self.fw.clock.now()
        events = self.fw.events
        for prio, n in rec.take_drops().items():
            self._drops_pending[prio] = self._drops_pending.get(prio, 0) + n
        if self._drops_pending:
            counts = {name: self._drops_pending.get(int(p), 0) for p, name in _CLASS_NAMES.items()}
            if events.emit(self.name, "RecorderDrop", counts) is not None:
                self._drops_pending = {}
        rejected = self._verifier.rejected
        rej_counts = tuple(rejected.values())
        if rej_counts != self._rejected_clean:  # something was rejected since all was reported
            pending = False
            for reason, n in rejected.items():
                delta = n - self._rejected_seen[reason]
                if delta > 0:
                    total = self._rejected_base[reason] + n
                    args = {"reason": reason.value, "count": delta, "total": total}
                    if events.emit(self.name, "UplinkRejected", args) is not None:
                        self._rejected_seen[reason] = n
                    else:
                        pending = True  # throttled: reported again next step
            self._rejected_clean = None if pending else rej_counts
        df, st, rep = ep.deframer.stats, ep.stats, self._reported
        if (df.bad_mac > rep["bad_mac"] or df.unknown_spi > rep["unknown_spi"] or df.replay > rep["replay"]
                or st.bad_link_control > rep["bad_link_control"] or st.send_failures > rep["send_failures"]):
            self._report_link_errors()
        since = self._last_uplink_s if self._last_uplink_s is not None else self._boot_s
        self.tlm("uplink_silence_s", now - since)
        if now < self._next_stats_s:
            return
        self._next_stats_s = now + float(self.options["stats_every_s"])
        self.sample_telemetry()
        if self._next_report_s is not None and now >= self._next_report_s:
            self._next_report_s = now + float(self.options["link_report_every_s"])
            st = rec.stats()
            self.event("LinkReport", frames_sent=ep.stats.frames_sent,
                       frames_received=ep.deframer.stats.frames_ok, acked=st.acked, naks=st.naks,
                       resent=st.resent, rejected=self.rejected_total(), held=st.packets)

    def _report_link_errors(self) -> None:
        """Events for frames and link control refused, and radio sends failed, since reported."""
        ep = self.endpoint
        assert ep is not None
        events = self.fw.events
        df = ep.deframer.stats
        for reason in ("bad_mac", "unknown_spi", "replay"):
            n = getattr(df, reason)
            args = {"reason": reason, "count": n - self._reported[reason], "total": n}
            if n > self._reported[reason] and events.emit(self.name, "UplinkFrameRejected", args) is not None:
                self._reported[reason] = n
        for key, event in (("bad_link_control", "BadLinkControl"), ("send_failures", "RadioSendFailed")):
            n = getattr(ep.stats, key)
            if n > self._reported[key] and events.emit(self.name, event, {"count": n - self._reported[key]}):
                self._reported[key] = n

    def rejected_total(self) -> int:
        return sum(self._rejected_base.values()) + sum(self._verifier.rejected.values())

    def sample_telemetry(self) -> None:
        """Write the recorder and link counters to their channels."""
        rec, ep = self.recorder, self.endpoint
        if rec is None or ep is None:
            return
        st = rec.stats()
        self.tlm("rec_packets", st.packets)
        self.tlm("rec_bytes", st.bytes)
        self.tlm("rec_fill_pct", 100.0 * st.bytes / max(1, st.capacity_bytes))
        self.tlm("rec_queued", st.packets - st.in_flight)
        self.tlm("rec_in_flight", st.in_flight)
        self.tlm("rec_stored", self.stored)
        self.tlm("rec_acked", st.acked)
        self.tlm("rec_naks", st.naks)
        self.tlm("rec_resent", st.resent)
        for prio, name in _CLASS_NAMES.items():
            self.tlm(f"drop_{name}", st.dropped.get(int(prio), 0))
        self.tlm("frames_sent", ep.stats.frames_sent)
        self.tlm("packets_sent", ep.stats.packets_sent)
        self.tlm("send_failures", ep.stats.send_failures)
        df = ep.deframer.stats
        self.tlm("frames_received", df.frames_ok)
        self.tlm("frame_crc_errors", df.crc_errors)
        self.tlm("frame_malformed", df.malformed)
        self.tlm("frame_wrong_scid", df.wrong_scid)
        self.tlm("frame_bad_mac", df.bad_mac + df.unknown_spi)
        self.tlm("frame_replay", df.replay)
        self.tlm("uplink_frame_sn", ep.security.rx.floor)
        self.tlm("uplink_accepted", self._verifier.accepted)
        self.tlm("uplink_commands", ep.stats.commands)
        self.tlm("uplink_link_control", ep.stats.link_control)
        for reason in Reject:
            self.tlm(f"rej_{reason.value}", self._rejected_base[reason] + self._verifier.rejected[reason])
        self.tlm("uplink_rejected", self.rejected_total())
        self.tlm("uplink_counter_cmd", self._verifier.high(self._key_id, Apid.TC_COMMAND))
        self.tlm("uplink_counter_link", self._verifier.high(self._key_id, Apid.TC_LINK))
        self.tlm("uplink_retries", self.retries_answered)
        self.tlm("uplink_not_executed", self.not_executed)
        self.tlm("hk_samples_dropped", self.hk_dropped)
        if self.cfdp is not None:
            self.cfdp.telemetry()

    # -- commands ------------------------------------------------------------------------------------

    @command("COMM_DOWNLINK_RATE", Arg("bytes_per_s", "u32", "B/s", min=100, max=10_000_000,
                                          doc="new downlink byte rate"))
    def comm_downlink_rate(self, bytes_per_s: int) -> None:
        """Set the downlink byte rate the endpoint spends from the recorder (not persisted)."""
        assert self.endpoint is not None
        self.endpoint.rate = float(bytes_per_s)
        self.tlm("downlink_Bps", float(bytes_per_s))
        self.event("DownlinkRateSet", bytes_per_s=bytes_per_s)

    @command("COMM_REPORT")
    def comm_report(self) -> None:
        """Sample the link counters into telemetry now and raise a LinkReport event."""
        self.sample_telemetry()
        assert self.recorder is not None and self.endpoint is not None
        st = self.recorder.stats()
        ep = self.endpoint
        self.event("LinkReport", frames_sent=ep.stats.frames_sent, frames_received=ep.deframer.stats.frames_ok,
                   acked=st.acked, naks=st.naks, resent=st.resent, rejected=self.rejected_total(),
                   held=st.packets)


def attach(vehicle: Vehicle) -> list[Comm]:
    """Register the vehicle's Comm components as its sinks; returns them.

    Call once after assembling the vehicle (the mission and ``magpie flight`` do). Sinks added
    later still see every item: the outbound queue is drained only by ``vehicle.flush``.
    """
    comms = [c for c in vehicle.components if isinstance(c, Comm)]
    for c in comms:
        if not c.attached:
            vehicle.add_sink(c)
            c.attached = True
    return comms
