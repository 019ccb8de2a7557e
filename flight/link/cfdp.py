"""CFDP (CCSDS 727.0-B) class 2 file delivery for products and files, on the mission clock.

The protocol is cfdp-py's: its source handler (Put.request, Metadata, File Data and EOF PDUs,
retransmission of what a NAK asks for, the EOF positive-ACK procedure) and destination handler
(lost-segment detection, NAKs, the CRC-32 check of the whole file, Finished and its ACK). This
module is the Magpie side of it, in one screen per concern:

**Carriage.** Downlink PDUs are the user data of TM space packets on APID 0x032
(:func:`pdu_packet`); uplink PDUs are the body of an authenticated TC command packet that starts
with :data:`TC_PREFIX` (:func:`tc_body`, :func:`from_tc_body`), so they share the uplink's
HMAC and anti-replay and never reach the command dispatcher.

**Time.** cfdp-py's timers are ``spacepackets.countdown.Countdown`` objects, which read wall time
through ``spacepackets.countdown.time_ms``. This module routes that read through a context
variable (:func:`on_clock`): inside it, timers run on the clock given (the simulated clock in
lockstep, so tests step time instead of sleeping); outside it, on wall time as before. Each
entity runs its handlers on its *link time*, the mission clock less the time the link was down:
during a blackout no ACK, NAK or inactivity timer runs out, so a transaction simply waits for
the next pass (cfdp-py 0.7 does not implement CFDP's suspend/resume; this stands in for it).

**Entity.** :class:`CfdpEntity` holds one source handler for the transaction being sent (puts
wait in a queue, persisted) and one destination handler per transaction being received,
routed by transaction id (a handler given another transaction's PDUs would mix them). A
transaction that hears nothing for ``inactivity_s`` of link time is abandoned; a put that did
not finish with its file delivered and checksum verified is sent again as a new transaction, up
to ``max_attempts``. Finished transactions received are journaled, so an EOF repeated after a
restart is answered with the same Finished instead of a second copy of the file.

Bad input (any bytes) is refused and counted by reason in :attr:`CfdpEntity.rejects`, never
raised: a PDU that does not parse, is for another entity, names a path outside the entity's
directory, or that the library refuses.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import spacepackets.countdown as _countdown
from cfdppy import (
    CfdpState,
    CfdpUserBase,
    IndicationConfig,
    LocalEntityConfig,
    PutRequest,
    RemoteEntityConfig,
    RemoteEntityConfigTable,
    RestrictedFilestore,
)
from cfdppy.exceptions import PduIgnoredForDest, PduIgnoredForSource
from cfdppy.handler.common import PacketDestination, get_packet_destination
from cfdppy.handler.dest import DestHandler, LostSegmentTracker
from cfdppy.handler.dest import TransactionStep as DestStep
from cfdppy.handler.source import SourceHandler
from cfdppy.handler.source import TransactionStep as SourceStep
from cfdppy.mib import CheckTimerProvider, DefaultFaultHandlerBase, EntityType
from spacepackets.cfdp import ChecksumType, ConditionCode, Direction, PduType, TransmissionMode
from spacepackets.cfdp.pdu import AckPdu, DirectiveType, MetadataPdu, NakPdu, PduFactory, TransactionStatus
from spacepackets.cfdp.pdu.finished import DeliveryCode
from spacepackets.cfdp.tlv import MessageToUserTlv
from spacepackets.countdown import Countdown
from spacepackets.seqcount import ProvidesSeqCount
from spacepackets.util import UnsignedByteField

from flight.link.packets import PacketError, Packetizer, encode_packet
from flight.logcount import worth_a_line
from flight.persist import CorruptFileError, move_aside, read_checked_json, write_checked_json

log = logging.getLogger(__name__)

#: downlink CFDP PDUs: the user data of a TM space packet on this APID
APID_CFDP = 0x032
#: uplink CFDP PDUs: the body of an authenticated TC command packet starting with these bytes
#: (as an opcode, 0xFF43 is beyond every component's id base)
TC_PREFIX = b"\xffCFDP"
ENTITY_ID_BYTES = 2
SEQ_BITS = 32
META_TAG = b"MGPM"  # messages to user carrying a product's metadata (JSON, in pieces)
_META_PIECE = 240
STATE_FORMAT = "magpie-cfdp/1"
#: the ground's CFDP entity id unless configured (vehicles use their spacecraft id)
GROUND_ENTITY = 0xFFFE
_JOURNAL = 256  # finished received transactions remembered (and persisted)


#: the destination handler's steps in which it handles an EOF PDU itself (and acknowledges it)
_TAKES_EOF = frozenset({DestStep.IDLE, DestStep.RECEIVING_FILE_DATA, DestStep.RECV_FILE_DATA_WITH_CHECK_LIMIT_HANDLING,
                        DestStep.WAITING_FOR_METADATA})


class CfdpError(ValueError):
    """Bytes that are not a CFDP PDU in a Magpie packet or TC body."""


# -- time ---------------------------------------------------------------------------------------

_CLOCK: contextvars.ContextVar[Callable[[], float] | None] = contextvars.ContextVar("magpie_cfdp_clock",
                                                                                   default=None)
_wall_ms = _countdown.time_ms


def _time_ms() -> int:
    clock = _CLOCK.get()
    return _wall_ms() if clock is None else round(clock() * 1000)


_countdown.time_ms = _time_ms  # Countdown reads this module global on every check


@contextmanager
def on_clock(clock: Callable[[], float]) -> Iterator[None]:
    """Run cfdp-py's timers (created or checked inside) on ``clock`` (seconds) instead of wall time."""
    token = _CLOCK.set(clock)
    try:
        yield
    finally:
        _CLOCK.reset(token)


# -- carriage -----------------------------------------------------------------------------------

def pdu_packet(packetizer: Packetizer, time_s: float, pdu: bytes) -> tuple[int, bytes]:
    """(seq, TM packet) carrying one PDU on APID 0x032; the sequence count is spent only if it fits."""
    if not pdu:
        raise PacketError("empty CFDP PDU")
    encode_packet(APID_CFDP, 0, time_s, pdu)  # raises PacketError before a count is spent
    seq = packetizer.counters.next(APID_CFDP)
    return seq, encode_packet(APID_CFDP, seq, time_s, pdu)


def tc_body(pdu: bytes) -> bytes:
    """The authenticated TC body carrying one uplink PDU."""
    return TC_PREFIX + bytes(pdu)


def from_tc_body(body: bytes) -> bytes | None:
    """The PDU inside a TC body, or None when the body is not a CFDP one (an ordinary command)."""
    if len(body) > len(TC_PREFIX) and body.startswith(TC_PREFIX):
        return bytes(body[len(TC_PREFIX):])
    return None


def parse_pdu(data: bytes) -> Any:
    """A spacepackets PDU object from raw bytes; raises CfdpError for anything else."""
    try:
        pdu = PduFactory.from_raw(bytes(data))
    except Exception as exc:  # spacepackets raises several unrelated types on garbage
        raise CfdpError(f"not a CFDP PDU: {type(exc).__name__}: {exc}"[:200]) from None
    if pdu is None:
        raise CfdpError("not a CFDP PDU: empty")
    return pdu


def meta_messages(meta: dict[str, Any] | None) -> list[MessageToUserTlv]:
    """A product's metadata as messages to user in the Metadata PDU (JSON cut in pieces)."""
    if not meta:
        return []
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), default=str).encode()
    return [MessageToUserTlv(META_TAG + text[i : i + _META_PIECE]) for i in range(0, len(text), _META_PIECE)]


def meta_from_messages(msgs: list[Any] | None) -> dict[str, Any] | None:
    """The metadata :func:`meta_messages` wrote, or None when absent or not readable."""
    pieces = [bytes(m.value)[len(META_TAG):] for m in msgs or () if bytes(m.value).startswith(META_TAG)]
    if not pieces:
        return None
    try:
        meta = json.loads(b"".join(pieces))
    except ValueError:
        return None
    return meta if isinstance(meta, dict) else None


def safe_name(name: str) -> bool:
    """A destination name the entity accepts: relative, without ``..``, at most 200 bytes."""
    if not name or len(name.encode()) > 200 or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and ".." not in p.parts and p.parts != ()


# -- the entity ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class CfdpConfig:
    """Timers (seconds of link time) and limits; choose timers above the round trip."""

    max_pdu_len: int = 1024
    ack_interval_s: float = 30.0  # EOF / Finished positive-ACK timer
    ack_limit: int = 10
    nak_interval_s: float = 30.0  # deferred NAK timer
    nak_limit: int = 10
    check_interval_s: float = 30.0
    inactivity_s: float = 600.0
    max_attempts: int = 5
    bytes_per_s: float = 16_000.0  # pacing of outgoing PDUs (link time)
    max_rx: int = 8  # transactions received at once
    max_file_bytes: int = 64 * 1024 * 1024  # a Metadata PDU announcing more is refused
    #: a range NAKed (receiver) or retransmitted (sender) less than this ago is not asked for or sent
    #: again: below the NAK interval, about the round trip (see _Recent)
    holdoff_s: float = 5.0

    def __post_init__(self) -> None:
        if not 0 <= self.holdoff_s < self.nak_interval_s:
            raise ValueError(f"holdoff_s {self.holdoff_s} must be below nak_interval_s {self.nak_interval_s}")


@dataclass(slots=True)
class Put:
    """A file waiting to be sent (persisted with the entity's state)."""

    dest: int
    source: str  # relative to the entity's directory
    name: str  # destination name at the remote entity
    meta: dict[str, Any] | None = None
    tag: str = ""
    attempts: int = 0
    priority: int = 3  # queue order: lower first (thumbnails 2 before full frames 3), then age


@dataclass(frozen=True, slots=True)
class FilePut:
    """An outbound item asking Comm to send a file by CFDP (``source`` relative to the state dir)."""

    time_ns: int
    source: str
    name: str
    meta: dict[str, Any] | None = None
    priority: int = 3
    kind = "file"

    def to_json(self, names: dict[int, str] | None = None) -> dict[str, Any]:
        return {"t": self.time_ns / 1e9, "kind": "file", "source": self.source, "name": self.name,
                "priority": self.priority}


@dataclass(frozen=True, slots=True)
class Delivery:
    """A file received whole, its checksum verified by cfdp-py."""

    source_id: int
    seq: int
    name: str
    path: Path
    meta: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Sent:
    """The end of an outgoing file: delivered (Finished, data complete, no error) or given up."""

    put: Put
    seq: int
    ok: bool
    condition: str


class _Recent:
    """File ranges asked for (receiver) or retransmitted (sender) lately, to trim repeats.

    cfdp-py's destination handler, while the Metadata PDU is missing, NAKs the Metadata and the
    whole file so far for every File Data PDU that arrives: over a round trip of many PDUs that
    asks for the file again and again (quadratic in the PDUs in flight). A NAK is therefore cut
    to what was not asked for (or, at the sender, retransmitted) within the hold-off; the
    deferred NAK procedure asks again after its interval for whatever is still missing.
    """

    def __init__(self) -> None:
        self.items: deque[tuple[int, int, float]] = deque(maxlen=512)

    def trim(self, reqs: list[tuple[int, int]], now: float, holdoff: float) -> list[tuple[int, int]]:
        live = [(a, b) for a, b, t in self.items if now - t < holdoff]
        out: list[tuple[int, int]] = []
        for a, b in reqs:
            if a == b:  # (0, 0): the Metadata PDU
                if (a, b) not in live and (a, b) not in out:
                    out.append((a, b))
                continue
            pieces = [(a, b)]
            for x, y in live:
                if x == y:
                    continue
                nxt = []
                for p, q in pieces:
                    if y <= p or x >= q:
                        nxt.append((p, q))
                        continue
                    if p < x:
                        nxt.append((p, x))
                    if y < q:
                        nxt.append((y, q))
                pieces = nxt
            out.extend(pieces)
        for a, b in out:
            self.items.append((a, b, now))
        return out


def _trimmed_nak(pdu: Any, recent: _Recent, now: float, holdoff: float) -> Any | None:
    """The NAK cut by ``recent`` (None when nothing is left to ask for)."""
    reqs = [tuple(r) for r in pdu.segment_requests]
    keep = recent.trim(reqs, now, holdoff)  # type: ignore[arg-type]
    if not keep:
        return None
    if keep == reqs:
        return pdu
    return NakPdu(pdu.pdu_header.pdu_conf, pdu.start_of_scope, pdu.end_of_scope, keep)


@dataclass
class _Rx:
    handler: DestHandler
    last_rx_s: float
    name: str = ""
    meta: dict[str, Any] | None = None
    delivered: bool = False
    asked: _Recent = field(default_factory=_Recent)
    checksum_type: ChecksumType | None = None
    eof: tuple[bytes, int] | None = None  # (file checksum, file size) of the EOF (no error) PDU


@dataclass
class _Tx:
    handler: SourceHandler
    put: Put
    started_s: float
    last_rx_s: float
    finished: Any = None
    seq: int = -1
    resent: _Recent = field(default_factory=_Recent)


class _DestHandler(DestHandler):
    """cfdp-py's destination handler, mended where cfdp-py 0.7 loses a class 2 transaction.

    - A lost-segment tracker of its own per transaction: every ``_AckedModeParams`` shares one
      default ``LostSegmentTracker``, so two handlers (or two transactions in turn) would see
      each other's lost segments.
    - The EOF before the Metadata PDU (the Metadata lost on the way): cfdp-py acknowledges the
      EOF and starts the deferred NAK procedure, but when the Metadata then comes it goes back to
      receiving file data as if no EOF had come, where that procedure never runs. The sender,
      its EOF acknowledged, waits for Finished; we waited for an EOF: nothing moves until the
      inactivity limit. The Metadata now resumes the procedure (waiting for the missing data),
      and the EOF's checksum, which cfdp-py does not keep on that path, is kept for the check.
    - File Data after that EOF, still without Metadata: cfdp-py winds its progress and its
      last-received offsets back to that PDU, so once the Metadata came a re-sent segment below
      the EOF's size counted as new data, not as a missing one found, and was NAKed again to
      the NAK limit. After the EOF those stay at the file size (every segment is a re-sent
      one), and the lost segments are kept merged (overlapping ones make cfdp-py refuse a
      segment that covers only part of them).
    """

    def _handle_eof_without_previous_metadata(self, eof_pdu: Any) -> None:
        self._params.fp.crc32 = eof_pdu.file_checksum
        super()._handle_eof_without_previous_metadata(eof_pdu)

    def _handle_file_data_without_previous_metadata(self, fd_pdu: Any) -> None:
        acked, fp = self._params.acked_params, self._params.fp
        if not acked.deferred_lost_segment_detection_active:
            super()._handle_file_data_without_previous_metadata(fd_pdu)
            return
        kept = fp.progress, acked.last_start_offset, acked.last_end_offset
        super()._handle_file_data_without_previous_metadata(fd_pdu)  # for its NAK of the Metadata
        fp.progress, acked.last_start_offset, acked.last_end_offset = kept
        acked.lost_seg_tracker.coalesce_lost_segments()

    def _handle_metadata_packet(self, metadata_pdu: MetadataPdu) -> None:
        super()._handle_metadata_packet(metadata_pdu)
        acked = self._params.acked_params
        if acked.deferred_lost_segment_detection_active and not self._params.fp.metadata_only:
            acked.lost_seg_tracker.coalesce_lost_segments()
            self.states.step = DestStep.WAITING_FOR_MISSING_DATA

    @property  # type: ignore[override]
    def _params(self) -> Any:
        return self.__dict__["_magpie_params"]

    @_params.setter
    def _params(self, params: Any) -> None:
        params.acked_params.lost_seg_tracker = LostSegmentTracker()
        self.__dict__["_magpie_params"] = params


class _Faults(DefaultFaultHandlerBase):
    def __init__(self, entity: CfdpEntity) -> None:
        super().__init__()
        self.entity = entity

    def _note(self, what: str, cond: ConditionCode) -> None:
        self.entity.faults[cond.name.lower()] += 1
        log.info("cfdp %d: %s (%s)", self.entity.entity_id, what, cond.name)

    def notice_of_suspension_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self._note("suspension", cond)

    def notice_of_cancellation_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self._note("cancellation", cond)

    def abandoned_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self._note("abandoned", cond)

    def ignore_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self._note("ignored", cond)


class _CheckTimers(CheckTimerProvider):
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s

    def provide_check_timer(self, local_entity_id: UnsignedByteField, remote_entity_id: UnsignedByteField,
                            entity_type: EntityType) -> Countdown:
        return Countdown.from_seconds(self.interval_s)


class _SeqCount(ProvidesSeqCount):
    """Transaction sequence numbers that never repeat across restarts (persisted before use)."""

    def __init__(self, entity: CfdpEntity) -> None:
        self.entity = entity

    @property
    def max_bit_width(self) -> int:
        return SEQ_BITS

    @max_bit_width.setter
    def max_bit_width(self, width: int) -> None:
        raise ValueError("the transaction sequence number width is fixed")

    def get_and_increment(self) -> int:
        seq = self.entity.next_seq
        self.entity.next_seq = (seq + 1) % (1 << SEQ_BITS)
        self.entity.save()
        return seq


class _User(CfdpUserBase):
    """Indications from the handlers, recorded on the entity (cfdp-py's defaults print)."""

    def __init__(self, entity: CfdpEntity) -> None:
        super().__init__(RestrictedFilestore(entity.root))
        self.entity = entity

    def transaction_indication(self, transaction_indication_params: Any) -> None:
        pass

    def eof_sent_indication(self, transaction_id: Any) -> None:
        pass

    def transaction_finished_indication(self, params: Any) -> None:
        self.entity._finished(params)

    def metadata_recv_indication(self, params: Any) -> None:
        self.entity._metadata(params)

    def file_segment_recv_indication(self, params: Any) -> None:
        pass

    def report_indication(self, transaction_id: Any, status_report: Any) -> None:
        pass

    def suspended_indication(self, transaction_id: Any, cond_code: ConditionCode) -> None:
        pass

    def resumed_indication(self, transaction_id: Any, progress: int) -> None:
        pass

    def fault_indication(self, transaction_id: Any, cond_code: ConditionCode, progress: int) -> None:
        pass

    def abandoned_indication(self, transaction_id: Any, cond_code: ConditionCode, progress: int) -> None:
        pass

    def eof_recv_indication(self, transaction_id: Any) -> None:
        pass


def _key(tid: Any) -> tuple[int, int]:
    return int(tid.source_id.value), int(tid.seq_num.value)


@dataclass
class CfdpStats:
    pdus_in: int = 0
    pdus_out: int = 0
    sent_ok: int = 0
    sent_failed: int = 0
    received_ok: int = 0
    received_failed: int = 0
    retries: int = 0
    abandoned: int = 0
    answered_from_journal: int = 0
    implicit_eof_acks: int = 0  # Finished PDUs taken as the acknowledgement of our EOF (its ACK was lost)
    ignored: int = 0  # PDUs cfdp-py ignores in the transaction's state (repeats, late arrivals)
    nak_trimmed: int = 0  # NAKs (ours or the remote's) cut because the ranges were asked or sent lately


class CfdpEntity:
    """One CFDP entity: see the module docstring.

    ``send`` is called with each outgoing PDU (bytes) and the remote entity id it is for;
    ``on_file`` with each :class:`Delivery`, ``on_sent`` with each :class:`Sent`. ``root`` is the
    directory every source and destination name is relative to. ``state_file`` (optional) keeps
    the queue, the next transaction sequence number and the journal across restarts.
    """

    def __init__(self, entity_id: int, remotes: list[int], root: str | Path, clock: Callable[[], float],
                 send: Callable[[int, bytes], None], config: CfdpConfig | None = None,
                 state_file: str | Path | None = None,
                 on_file: Callable[[Delivery], None] | None = None,
                 on_sent: Callable[[Sent], None] | None = None, inbox: str = "") -> None:
        self.entity_id = int(entity_id)
        #: received files must be named under this subdirectory of the root ("" for anywhere below it)
        self.inbox = inbox.strip("/")
        self.config = cfg = config or CfdpConfig()
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.send = send
        self.on_file = on_file
        self.on_sent = on_sent
        self.state_file = Path(state_file) if state_file is not None else None
        self.stats = CfdpStats()
        self.rejects: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.next_seq = 0
        self.queue: deque[Put] = deque()
        self.journal: dict[tuple[int, int], bytes] = {}  # finished received transaction -> Finished PDU
        #: what went wrong reading the state file, if anything (the owner reports it)
        self.problem = ""
        self._load()
        self._local = UnsignedByteField(self.entity_id, ENTITY_ID_BYTES)
        self._mib = LocalEntityConfig(self._local, IndicationConfig(), _Faults(self))
        self.remotes = {int(r) for r in remotes}
        self._table = RemoteEntityConfigTable([
            RemoteEntityConfig(
                entity_id=UnsignedByteField(int(r), ENTITY_ID_BYTES), max_file_segment_len=None,
                max_packet_len=cfg.max_pdu_len, closure_requested=True, crc_on_transmission=False,
                default_transmission_mode=TransmissionMode.ACKNOWLEDGED, crc_type=ChecksumType.CRC_32,
                positive_ack_timer_interval_seconds=cfg.ack_interval_s,
                positive_ack_timer_expiration_limit=cfg.ack_limit, check_limit=2,
                nak_timer_interval_seconds=cfg.nak_interval_s, nak_timer_expiration_limit=cfg.nak_limit)
            for r in self.remotes])
        self._user = _User(self)
        self._checks = _CheckTimers(cfg.check_interval_s)
        self._seqs = _SeqCount(self)
        self.tx: _Tx | None = None
        self.rx: dict[tuple[int, int], _Rx] = {}
        self._link_s = 0.0
        self._last_now: float | None = None
        self._budget = float(cfg.max_pdu_len)
        self._rx_current: _Rx | None = None
        self._last_finished: bytes | None = None
        self._refused: dict[tuple[int, int], None] = {}  # transactions refused at their Metadata PDU

    # -- persistence --------------------------------------------------------------------------

    def _load(self) -> None:
        if self.state_file is None:
            return
        try:
            body = read_checked_json(self.state_file, STATE_FORMAT)
            if body is None:
                return
            self.next_seq = int(body.get("next_seq", 0)) % (1 << SEQ_BITS)
            self.queue = deque(Put(**p) for p in body.get("queue", []))
            self.journal = {(int(s), int(q)): bytes.fromhex(f) for s, q, f in body.get("journal", [])}
        except (CorruptFileError, TypeError, ValueError, AttributeError) as exc:
            self.next_seq, self.queue, self.journal = 0, deque(), {}
            moved = move_aside(self.state_file)
            self.problem = f"state unreadable ({exc}); queue and journal lost" + (
                f", kept as {moved.name}" if moved is not None else "")
            log.error("cfdp %s: %s", self.state_file, self.problem)
            self.rejects["state_lost"] += 1

    def save(self) -> None:
        """Write the queue, the next sequence number and the journal (atomic); no-op without a file."""
        if self.state_file is None:
            return
        puts = list(self.queue)
        if self.tx is not None and self.tx.put not in puts:
            puts.insert(0, self.tx.put)
        body = {"next_seq": self.next_seq,
                "queue": [{"dest": p.dest, "source": p.source, "name": p.name, "meta": p.meta, "tag": p.tag,
                           "attempts": p.attempts, "priority": p.priority} for p in puts],
                "journal": [[s, q, f.hex()] for (s, q), f in self.journal.items()]}
        write_checked_json(self.state_file, STATE_FORMAT, body)

    # -- requests -----------------------------------------------------------------------------

    def put(self, dest: int, source: str, name: str, meta: dict[str, Any] | None = None, tag: str = "",
            priority: int = 3) -> Put:
        """Queue a file (``source`` relative to the root) for ``dest`` as ``name``; persisted at once."""
        if int(dest) not in self.remotes:
            raise ValueError(f"entity {dest} is not a known remote ({sorted(self.remotes)})")
        if not safe_name(source):
            raise ValueError(f"source names are relative to the entity's directory, without '..': {source!r}")
        if not 0 < len(name.encode()) <= 255:  # the remote judges its own names; the PDU holds 255 bytes
            raise ValueError(f"destination name {name!r} is empty or longer than 255 bytes")
        if not (self.root / source).is_file():
            raise ValueError(f"{source!r} is not a file under {self.root}")
        p = Put(int(dest), source, name, meta, tag, priority=int(priority))
        later = [i for i, q in enumerate(self.queue) if q.priority > p.priority and (i or self.tx is None)]
        if later:
            self.queue.insert(later[0], p)
        else:
            self.queue.append(p)
        self.save()
        return p

    @property
    def busy(self) -> bool:
        return self.tx is not None or bool(self.queue) or bool(self.rx)

    def link_time(self) -> float:
        """Seconds of link time: the mission clock less the time the link was down."""
        return self._link_s

    # -- inbound ------------------------------------------------------------------------------

    def receive(self, data: bytes, remote: int | None = None) -> bool:
        """Take one PDU (any bytes); True when a handler took it. ``remote``: the entity the link
        says it came from (a PDU naming another one is refused)."""
        try:
            pdu = parse_pdu(data)
        except CfdpError as exc:
            return self._reject("bad_pdu", exc)
        self.stats.pdus_in += 1
        try:
            with on_clock(self.link_time):
                return self._route(pdu, remote)
        except (PduIgnoredForSource, PduIgnoredForDest) as exc:  # a duplicate or late PDU: normal on a lossy link
            self.stats.ignored += 1
            log.debug("cfdp %d: %s", self.entity_id, exc)
            return False
        except Exception as exc:  # a library refusal (or bug) costs this PDU only
            return self._reject(type(exc).__name__, exc)

    def _reject(self, reason: str, detail: Any) -> bool:
        self.rejects[reason] += 1
        n = self.rejects[reason]
        if worth_a_line(n):
            log.warning("cfdp %d: PDU refused (%s): %s (%d so far)", self.entity_id, reason, detail, n)
        return False

    def _route(self, pdu: Any, remote: int | None) -> bool:
        src, dst = int(pdu.source_entity_id.value), int(pdu.dest_entity_id.value)
        where = get_packet_destination(pdu)
        if where == PacketDestination.DEST_HANDLER:
            if dst != self.entity_id or src not in self.remotes:
                return self._reject("wrong_entity", f"{src} -> {dst}")
            if remote is not None and src != remote:
                return self._reject("wrong_entity", f"from {src} on the link of {remote}")
            return self._to_dest(pdu, (src, int(pdu.transaction_seq_num.value)))
        if src != self.entity_id or dst not in self.remotes:
            return self._reject("wrong_entity", f"{src} -> {dst}")
        if remote is not None and dst != remote:
            return self._reject("wrong_entity", f"for {dst} on the link of {remote}")
        tx = self.tx
        seq = int(pdu.transaction_seq_num.value)
        if tx is None or tx.seq != seq or tx.put.dest != dst:
            if getattr(pdu, "directive_type", None) == DirectiveType.FINISHED_PDU:
                # a Finished for a transaction we no longer hold (restart, given up): acknowledge it so
                # the receiver stops repeating it
                conf = pdu.pdu_header.pdu_conf
                conf.direction = Direction.TOWARDS_RECEIVER
                self._emit(dst, AckPdu(conf, DirectiveType.FINISHED_PDU, pdu.condition_code,
                                       TransactionStatus.UNRECOGNIZED).pack())
            self.stats.ignored += 1  # late for a transaction that ended (or from before a restart)
            log.debug("cfdp %d: PDU for transaction %d, which is not being sent", self.entity_id, seq)
            return False
        tx.last_rx_s = self._link_s
        if getattr(pdu, "directive_type", None) == DirectiveType.NAK_PDU:
            cut = _trimmed_nak(pdu, tx.resent, self._link_s, self.config.holdoff_s)
            if cut is not pdu:
                self.stats.nak_trimmed += 1
            if cut is None:
                return True
            pdu = cut
        if getattr(pdu, "directive_type", None) == DirectiveType.FINISHED_PDU \
                and tx.handler.step == SourceStep.WAITING_FOR_EOF_ACK:
            # the receiver sends Finished only after it took our EOF, so its ACK of the EOF was lost
            # (or never sent: cfdp-py's receiver does not acknowledge a repeated EOF). cfdp-py would
            # ignore the Finished until an ACK comes; take the Finished as that acknowledgement.
            self.stats.implicit_eof_acks += 1
            tx.handler.state_machine(AckPdu(pdu.pdu_header.pdu_conf, DirectiveType.EOF_PDU, ConditionCode.NO_ERROR,
                                            TransactionStatus.ACTIVE))
            self._drain(tx.handler, dst)
        tx.handler.state_machine(pdu)
        self._drain(tx.handler, dst)
        self._settle_tx()
        return True

    def _to_dest(self, pdu: Any, key: tuple[int, int]) -> bool:
        if key in self._refused:
            return self._reject("refused_transaction", key)
        rx = self.rx.get(key)
        done = self.journal.get(key) if rx is None else None
        directive = getattr(pdu, "directive_type", None)
        if done is not None:
            if directive == DirectiveType.EOF_PDU:  # the sender did not hear our ACK or Finished
                self._ack_eof(key[0], pdu, TransactionStatus.TERMINATED)
                self._emit(key[0], done)
                self.stats.answered_from_journal += 1
            return True
        if rx is not None and directive == DirectiveType.EOF_PDU and rx.handler.step not in _TAKES_EOF:
            # an EOF again after the handler took one: our ACK was lost. cfdp-py ignores it in these
            # steps, but every EOF must be acknowledged (CCSDS 727.0-B 4.7.2), or the sender never
            # stops repeating it and never takes our Finished
            rx.last_rx_s = self._link_s
            self._ack_eof(key[0], pdu, TransactionStatus.ACTIVE)
            return True
        if rx is None:
            if isinstance(pdu, MetadataPdu) or directive != DirectiveType.ACK_PDU:
                if len(self.rx) >= self.config.max_rx:
                    return self._reject("too_many_transactions", key)
            else:  # an ACK of a Finished for a transaction no longer held: late, nothing to do
                self.stats.ignored += 1
                return False
            rx = self.rx[key] = _Rx(_DestHandler(self._mib, self._user, self._table, self._checks), self._link_s)
        if directive == DirectiveType.EOF_PDU and pdu.condition_code == ConditionCode.NO_ERROR:
            rx.eof = (bytes(pdu.file_checksum), int(pdu.file_size))
        if isinstance(pdu, MetadataPdu):
            rx.checksum_type = pdu.checksum_type
            name = pdu.dest_file_name
            why = ""
            if name is not None and (not safe_name(name) or (self.inbox and not name.startswith(self.inbox + "/"))):
                why = "unsafe_name"
            elif pdu.file_size > self.config.max_file_bytes:
                why = "file_too_large"
            if why:  # the whole transaction is refused: its other PDUs are dropped as they come
                self._refused[key] = None
                while len(self._refused) > _JOURNAL:
                    del self._refused[next(iter(self._refused))]
                self.rx.pop(key, None)
                return self._reject(why, f"{name!r} ({pdu.file_size} B)"[:120])
            if name is not None:
                (self.root / name).parent.mkdir(parents=True, exist_ok=True)
        rx.last_rx_s = self._link_s
        self._rx_current = rx
        self._last_finished = None
        try:
            rx.handler.state_machine(pdu)
            self._drain(rx.handler, key[0], rx)
        finally:
            self._rx_current = None
        self._settle_rx(key, rx)
        return True

    def _ack_eof(self, remote: int, eof: Any, status: TransactionStatus) -> None:
        conf = eof.pdu_header.pdu_conf
        conf.direction = Direction.TOWARDS_SENDER
        self._emit(remote, AckPdu(conf, DirectiveType.EOF_PDU, eof.condition_code, status).pack())

    # -- indications --------------------------------------------------------------------------

    def _metadata(self, params: Any) -> None:
        rx = self._rx_current
        if rx is not None:
            rx.name = str(params.dest_file_name or "")
            rx.meta = meta_from_messages(params.msgs_to_user)

    def _finished(self, params: Any) -> None:
        key = _key(params.transaction_id)
        if key[0] == self.entity_id:
            if self.tx is not None:
                self.tx.finished = params.finished_params
            return
        rx = self.rx.get(key) or self._rx_current
        if rx is None or rx.delivered:
            return
        fp = params.finished_params
        if fp.delivery_code == DeliveryCode.DATA_COMPLETE and fp.condition_code == ConditionCode.NO_ERROR \
                and not self._checksum_good(rx):
            # cfdp-py 0.7 checks the file checksum in acknowledged mode only when a segment had been
            # lost (its deferred procedure); this is the check for every transaction. The indication
            # hands us the handler's own Finished parameters, so the Finished PDU it sends next says so.
            fp.condition_code = ConditionCode.FILE_CHECKSUM_FAILURE
            fp.delivery_code = DeliveryCode.DATA_INCOMPLETE
            self.faults["file_checksum_failure"] += 1
        if fp.delivery_code == DeliveryCode.DATA_COMPLETE and fp.condition_code == ConditionCode.NO_ERROR:
            rx.delivered = True
            self.stats.received_ok += 1
            if self.on_file is not None and rx.name:
                self.on_file(Delivery(key[0], key[1], rx.name, self.root / rx.name, rx.meta))
        else:
            rx.delivered = True
            self.stats.received_failed += 1
            log.warning("cfdp %d: transaction %s ended %s, %s", self.entity_id, key, fp.condition_code.name,
                        fp.delivery_code.name)

    def _checksum_good(self, rx: _Rx) -> bool:
        if rx.eof is None or rx.checksum_type is None or not rx.name:
            return True  # metadata-only, or completed without an EOF (no error) we saw: nothing to check
        if rx.checksum_type == ChecksumType.NULL_CHECKSUM:
            return True
        checksum, size = rx.eof
        try:
            got = self._user.vfs.calculate_checksum(rx.checksum_type, Path(rx.name), size)
        except Exception as exc:  # an unsupported type, or the file is gone
            log.warning("cfdp %d: checksum of %s not computed: %s", self.entity_id, rx.name, exc)
            return False
        return bytes(got) == checksum

    # -- driving ------------------------------------------------------------------------------

    def _emit(self, remote: int, pdu: bytes) -> None:
        self.stats.pdus_out += 1
        self._budget -= len(pdu)
        self.send(remote, bytes(pdu))

    def _drain(self, handler: Any, remote: int, rx: _Rx | None = None) -> int:
        """Send what the handler made; returns how many were Metadata or File Data PDUs (progress)."""
        progress = 0
        while True:
            holder = handler.get_next_packet()
            if holder is None:
                return progress
            directive = holder.pdu_directive_type if holder.pdu_type == PduType.FILE_DIRECTIVE else None
            obj = holder.pdu
            if rx is not None and directive == DirectiveType.NAK_PDU:
                cut = _trimmed_nak(obj, rx.asked, self._link_s, self.config.holdoff_s)
                if cut is not obj:
                    self.stats.nak_trimmed += 1
                if cut is None:
                    continue
                obj = cut
            pdu = obj.pack()
            if directive is None or directive == DirectiveType.METADATA_PDU:
                progress += 1
            if rx is not None and directive == DirectiveType.FINISHED_PDU:
                self._last_finished = bytes(pdu)
            self._emit(remote, pdu)

    def step(self, now_s: float, link_up: bool = True) -> None:
        """Advance link time (only while ``link_up``), run every handler's timers, send within the rate."""
        if self._last_now is not None and link_up:
            dt = max(0.0, now_s - self._last_now)
            self._link_s += dt
            self._budget = min(self._budget + dt * self.config.bytes_per_s,
                               max(self.config.bytes_per_s, float(self.config.max_pdu_len)))
        self._last_now = now_s
        if not link_up or not (self.rx or self.tx is not None or self.queue):
            return  # the link down, or no transaction either way: no timer to run, nothing to send
        try:
            with on_clock(self.link_time):
                self._step_rx()
                self._step_tx()
        except Exception as exc:  # never the vehicle: drop the transaction that failed
            self._reject("handler_error", exc)
            log.debug("cfdp handler failed", exc_info=True)
            if self.tx is not None:
                self._end_tx(False, f"handler error: {exc}")

    def _step_rx(self) -> None:
        for key, rx in list(self.rx.items()):
            try:
                self._step_one_rx(key, rx)
            except Exception as exc:  # that transaction is dropped, the others go on
                self._reject("handler_error", exc)
                self.stats.abandoned += 1
                self.rx.pop(key, None)

    def _step_one_rx(self, key: tuple[int, int], rx: _Rx) -> None:
        h = rx.handler
        if self._link_s - rx.last_rx_s > self.config.inactivity_s:
            h.reset()
            self.stats.abandoned += 1
            self.faults["inactivity"] += 1
            del self.rx[key]
            if not rx.delivered and rx.name:
                (self.root / rx.name).unlink(missing_ok=True)
            return
        if h.state != CfdpState.IDLE:
            self._last_finished = None
            self._rx_current = rx
            try:
                h.state_machine()
                self._drain(h, key[0], rx)
            finally:
                self._rx_current = None
        self._settle_rx(key, rx)

    def _settle_rx(self, key: tuple[int, int], rx: _Rx) -> None:
        fin = getattr(self, "_last_finished", None)
        if fin is not None and rx.delivered:
            self.journal[key] = fin
            while len(self.journal) > _JOURNAL:
                del self.journal[next(iter(self.journal))]
            self.save()
        self._last_finished = None
        if rx.handler.state == CfdpState.IDLE:
            del self.rx[key]

    def _step_tx(self) -> None:
        if self.tx is None and self.queue:
            self._start(self.queue[0])
        tx = self.tx
        if tx is None:
            return
        if self._link_s - tx.last_rx_s > self.config.inactivity_s:
            self.faults["inactivity"] += 1
            self._end_tx(False, "inactivity")
            return
        while self._budget > 0:
            before = self.stats.pdus_out
            tx.handler.state_machine()
            if self._drain(tx.handler, tx.put.dest):
                tx.last_rx_s = self._link_s  # sending the file is activity; only waiting counts
            if self._settle_tx() or self.stats.pdus_out == before:
                break

    def _start(self, put: Put) -> None:
        h = SourceHandler(self._mib, self._user, self._table, self._checks, self._seqs)
        put.attempts += 1
        req = PutRequest(destination_id=UnsignedByteField(put.dest, ENTITY_ID_BYTES), source_file=Path(put.source),
                         dest_file=Path(put.name), trans_mode=TransmissionMode.ACKNOWLEDGED, closure_requested=True,
                         msgs_to_user=meta_messages(put.meta) or None)
        self.tx = _Tx(h, put, self._link_s, self._link_s)
        try:
            h.put_request(req)
            h.state_machine()  # transaction start: takes the sequence number, makes the Metadata PDU
        except Exception as exc:
            self._reject("put_refused", exc)
            self._end_tx(False, f"refused: {exc}", retry=False)
            return
        self.tx.seq = int(h.transaction_seq_num.value)
        self._drain(h, put.dest)

    def _settle_tx(self) -> bool:
        """True when the transaction being sent has ended (and was settled)."""
        tx = self.tx
        if tx is None or tx.handler.state != CfdpState.IDLE:
            return False
        fp = tx.finished
        ok = (fp is not None and fp.delivery_code == DeliveryCode.DATA_COMPLETE
              and fp.condition_code == ConditionCode.NO_ERROR)
        self._end_tx(ok, "delivered" if ok else (fp.condition_code.name if fp is not None else "abandoned"))
        return True

    def _end_tx(self, ok: bool, condition: str, retry: bool = True) -> None:
        tx = self.tx
        assert tx is not None
        self.tx = None
        if tx.handler.state != CfdpState.IDLE:
            tx.handler.reset()
        put = tx.put
        if ok or not retry or put.attempts >= self.config.max_attempts:
            if self.queue and self.queue[0] is put:
                self.queue.popleft()
            if ok:
                self.stats.sent_ok += 1
            else:
                self.stats.sent_failed += 1
                log.warning("cfdp %d: %s to %d not delivered after %d attempt(s): %s", self.entity_id,
                            put.source, put.dest, put.attempts, condition)
            self.save()
            if self.on_sent is not None:
                self.on_sent(Sent(put, tx.seq, ok, condition))
        else:
            self.stats.retries += 1
            self.save()

    def summary(self) -> dict[str, Any]:
        return {"entity": self.entity_id, "queue": len(self.queue), "rx": len(self.rx),
                "sending": self.tx.put.source if self.tx else None, "link_s": round(self._link_s, 3),
                "stats": vars(self.stats).copy(), "rejects": dict(self.rejects), "faults": dict(self.faults)}


__all__ = ["APID_CFDP", "GROUND_ENTITY", "TC_PREFIX", "CfdpConfig", "CfdpEntity", "CfdpError", "Delivery", "FilePut",
           "Put", "Sent",
           "from_tc_body", "meta_from_messages", "meta_messages", "on_clock", "parse_pdu", "pdu_packet",
           "safe_name", "tc_body"]
