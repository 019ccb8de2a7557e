"""The ground station: frames in, archive and live telemetry out, ACKs and NAKs back.

One station serves several vehicles; each (:class:`Vehicle`) has its own dictionary, signing key
and counters, gap trackers and place in the archive (rows carry the spacecraft id).

The station is driven by calls, so it runs the same in lockstep on a simulated clock and as a
process on real time: :meth:`Station.receive` takes one frame at ``now_s``; :meth:`Station.poll`
commits what was received to the archive (one transaction per poll, or per ``commit_every_s``),
then sends (authenticated) link control when the link is up: an ACK of every packet archived
since the last one (duplicates too, so a lost ACK is repaired by the retransmission it causes)
and a NAK of sequence counts missing from each APID's count sequence. Acknowledgement follows
the archive commit and its fsync (:meth:`Archive.sync`), never precedes them: a commit lost to a
power cut was never acknowledged, so the vehicle still holds it.

Frames from a vehicle the station signs for are authenticated (SDLS, ``flight/link/sdls.py``):
a forged frame (bad MAC), a replayed one (sequence number already seen) or one under an unknown
SPI is dropped and counted (``deframer.stats``, ``Station.rejects["frame_<reason>"]``) before any
packet of it is archived, so nothing is acknowledged that the station did not authenticate.
The vehicle also reports its uplink frame floor (``*.uplink_frame_sn``); the station's frame SA
jumps past it, as the signer does for the counters.

Any bytes may arrive (a plain frame passes a CRC as easily as a real one): every decoded value
is checked against the vehicle's dictionary before it is stored or published. A channel id must
be an integer the dictionary knows, a value must fit its channel's type; events and command
responses must have the declared field types and ranges. What fails is refused and counted by
reason in :attr:`Station.rejects` (the raw packet is still archived and acknowledged, so the
vehicle does not resend it forever), and logged at most once per reason every ``log_every_s``.
One bad sample costs only itself, never the rest of its packet.

The vehicle reports its highest accepted uplink counters (``*.uplink_counter_cmd`` and
``*.uplink_counter_link``); when they pass the station's signer (its state was lost, or another
signer used the key) the signer jumps past them, so commanding resumes by itself.

Packets on an APID in :attr:`Station.packet_sinks` carry another protocol's data units, not
msgpack (CFDP PDUs on 0x032, :mod:`ground.files`): they are archived raw and acknowledged, and
their user data goes to the sink; :attr:`Station.pollers` run at the start of every poll.

Decoded telemetry is handed to listeners and, when ``pub_endpoint`` is given, published on a
ZeroMQ PUB socket: topic ``tlm.<scid>.<channel name>``, ``evt.<scid>``, ``cmd.<scid>`` (command
responses), each followed by a msgpack map (the records are written down in flight/link/LINK.md).
Housekeeping and events are decoded by the fixed layouts of the vehicle's dictionary
(:mod:`flight.link.layouts`); a dictionary without packet definitions means msgpack maps.
"""

from __future__ import annotations

import logging
import math
import operator
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from flight.link.auth import Key, Signer
from flight.link.frames import VC, Deframer, Framer
from flight.link.layouts import HK_APIDS, Layouts
from flight.link.packets import (
    PAYLOAD_APIDS,
    SEQ_MODULO,
    TM_APIDS,
    Apid,
    PacketError,
    decode_packet,
    encode_link_control,
    seq_diff,
    seqs_to_ranges,
)
from flight.link.products import check_chunk
from flight.link.sdls import LinkSecurity
from flight.types import TYPES
from ground.archive import Archive, EventRecord, Ingest, ResponseRecord
from ground.dictionary import Dictionary

log = logging.getLogger(__name__)

Uplink = Callable[[int, bytes], None]  # (scid, frame)
Listener = Callable[[str, int, Any], None]  # (kind "tlm"|"evt"|"cmd"|"chunk", scid, record)
PacketSink = Callable[[int, bytes, float], None]  # (scid, packet user data, now): CFDP PDUs (ground.files)

U64_MAX = 2**64 - 1
_STAGES = frozenset({"ACCEPTED", "REJECTED", "COMPLETED", "FAILED"})
_SEVERITIES = frozenset(
    {"FATAL", "WARNING_HI", "WARNING_LO", "COMMAND", "ACTIVITY_HI", "ACTIVITY_LO", "DIAGNOSTIC"}
)
_RESYNC = {"uplink_counter_cmd": Apid.TC_COMMAND, "uplink_counter_link": Apid.TC_LINK}
_PAIRS = (list, tuple)
_PAIRS_SET = frozenset(_PAIRS)
_INT_ONLY = {int}
_KIND_TYPE = {"float": float, "int": int, "str": str, "bool": bool}
_MISSING = operator.attrgetter("missing")  # a gap tracker's open counts (empty: nothing to NAK)
_PLANS_MAX = 512  # sample plans kept per vehicle (a forged packet's channel list costs one slot)


@dataclass(frozen=True, slots=True)
class SamplePlan:
    """How a sample list with one sequence of channel ids is checked in a few C-level passes: the
    exact type of each value, then min/max of the values that have a range (``bounded``: a getter
    of those values, the kind, and the range), and whether any of them resynchronises."""

    types: tuple[type, ...]
    bounded: tuple[tuple[Callable[[tuple[Any, ...]], tuple[Any, ...]], str, float, float], ...]
    resync: bool

    @staticmethod
    def build(v: Vehicle, chans: tuple[int, ...]) -> SamplePlan | None:
        """None when a channel is not one the dictionary types (the pair-by-pair path says why)."""
        types: list[type] = []
        groups: dict[tuple[str, float, float], list[int]] = {}
        for i, cid in enumerate(chans):
            spec = v.channel_types.get(cid)
            if spec is None or spec.kind not in _KIND_TYPE:
                return None
            types.append(_KIND_TYPE[spec.kind])
            if spec.kind == "int" or (spec.kind == "float" and spec.hi is not None):
                groups.setdefault((spec.kind, spec.lo, spec.hi), []).append(i)
        bounded = []
        for (kind, lo, hi), idxs in groups.items():
            get = operator.itemgetter(*idxs) if len(idxs) > 1 else (lambda vals, i=idxs[0]: (vals[i],))
            bounded.append((get, kind, lo, hi))
        resync = not v.resync_channels.keys().isdisjoint(chans)
        return SamplePlan(tuple(types), tuple(bounded), resync)

    def fits(self, values: tuple[Any, ...]) -> bool:
        """True if every value is of its channel's type and inside its range. A NaN or an
        infinity in a ranged float channel fails here and is judged pair by pair."""
        if tuple(map(type, values)) != self.types:
            return False
        for get, kind, lo, hi in self.bounded:
            part = get(values)
            if kind == "int":
                if min(part) < lo or max(part) > hi:
                    return False
            elif not max(map(abs, part)) <= hi:
                return False
        return True


class Refused(ValueError):
    """A decoded item that does not fit the dictionary; ``reason`` is its counting key."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_value(type_name: str, value: Any) -> Any:
    """``value`` if it fits a channel of ``type_name``, else raise Refused (why in the reason)."""
    spec = TYPES.get(type_name)
    if spec is None:
        return value  # a type this ground does not know: stored as it came, raw kept
    if spec.kind == "int":
        if not _is_int(value):
            raise Refused("sample_type", f"{type_name} channel got {type(value).__name__}")
        if not spec.lo <= value <= spec.hi:  # type: ignore[operator]
            raise Refused("sample_range", f"{value} outside {type_name}")
        return value
    if spec.kind == "float":
        if _is_int(value) and abs(value) <= 2**53:
            return float(value)
        if not isinstance(value, float):
            raise Refused("sample_type", f"{type_name} channel got {type(value).__name__}")
        if math.isfinite(value) and spec.hi is not None and abs(value) > spec.hi:
            raise Refused("sample_range", f"{value} outside {type_name}")
        return value
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        if _is_int(value) and value in (0, 1):
            return bool(value)
        raise Refused("sample_type", f"bool channel got {type(value).__name__}")
    if not isinstance(value, str):
        raise Refused("sample_type", f"str channel got {type(value).__name__}")
    return value


class RateLimitedLog:
    """One log line per reason at most every ``every_s`` seconds, with the count in between."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0) -> None:
        self.logger = logger
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._held: Counter[str] = Counter()

    def __call__(self, reason: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last = self._last.get(reason)
        if last is not None and now - last < self.every_s:
            self._held[reason] += 1
            return
        held = self._held.pop(reason, 0)
        self._last[reason] = now
        suffix = f" ({held} more since the last report)" if held else ""
        self.logger.warning(message + suffix, *args)


class GapTracker:
    """Missing sequence counts of one APID, from the counts that arrived (14-bit, wrapping)."""

    def __init__(self, nak_retry_s: float, max_naks: int) -> None:
        self.high: int | None = None
        self.missing: dict[int, tuple[float | None, int]] = {}  # seq -> (last nak time, naks)
        self.nak_retry_s = nak_retry_s
        self.max_naks = max_naks
        self.given_up = 0

    def saw(self, seq: int) -> None:
        if self.high is None:
            self.high = seq
            return
        d = seq_diff(seq, self.high)
        if d > 0:
            if d > 1:  # one C-level update: a forged jump of thousands costs microseconds, not ms
                first, end = self.high + 1, self.high + d  # missing: first .. end-1, maybe wrapping
                fresh = (None, 0)
                self.missing.update(dict.fromkeys(range(first, min(end, SEQ_MODULO)), fresh))
                if end > SEQ_MODULO:
                    self.missing.update(dict.fromkeys(range(max(0, first - SEQ_MODULO), end - SEQ_MODULO), fresh))
            self.high = seq
        else:
            self.missing.pop(seq, None)

    def due(self, now_s: float, limit: int) -> list[int]:
        out: list[int] = []
        for seq, (last, n) in list(self.missing.items()):
            if len(out) >= limit:
                break
            if last is not None and now_s - last < self.nak_retry_s:
                continue
            if n >= self.max_naks:
                del self.missing[seq]  # dropped on board or beyond recovery; counted
                self.given_up += 1
                continue
            self.missing[seq] = (now_s, n + 1)
            out.append(seq)
        return out


@dataclass
class Vehicle:
    """What the station keeps per spacecraft."""

    scid: int
    dictionary: Dictionary
    signer: Signer | None = None
    name: str = ""
    #: the frame SAs (uplink out, downlink in); derived from the signer's key when not given
    security: LinkSecurity | None = None
    #: a separate downlink key (``downlink_key_file``); the uplink key's derivation when None
    downlink_key: Key | None = None
    framer: Framer = field(init=False)
    gaps: dict[int, GapTracker] = field(default_factory=dict)
    to_ack: dict[int, list[int]] = field(default_factory=dict)
    #: what the last ACKs carried, acknowledged again in the next ones (``Station.ack_repeats``)
    acked_recently: deque[dict[int, list[int]]] = field(default_factory=deque)
    last_frame_s: float | None = None
    last_ack_s: float = float("-inf")
    #: times the uplink frame SA jumped past the vehicle's reported floor (the commander re-sends)
    frame_jumps: int = 0
    #: the fixed housekeeping layouts of the dictionary (None: it has none, samples are msgpack)
    layouts: Layouts | None = field(init=False)
    #: channel id -> its type, for the common case of a sample that fits (checked in one step)
    channel_types: dict[int, Any] = field(init=False)
    #: channel id -> what a sample of it resynchronises ("frame" or the counter's TC APID)
    resync_channels: dict[int, Any] = field(init=False)
    #: sample lists seen, by their channel ids in order -> how they are checked (SamplePlan)
    sample_plans: dict[tuple[int, ...], SamplePlan | None] = field(init=False)

    def __post_init__(self) -> None:
        self.channel_types = {}
        self.resync_channels = {}
        self.sample_plans = {}
        for cid, ch in self.dictionary.channels_by_id.items():
            spec = TYPES.get(str(ch.get("type", "")))
            if spec is not None and _is_int(cid):
                self.channel_types[cid] = spec
            name = str(ch.get("name", ""))
            if name.endswith(".uplink_frame_sn"):
                self.resync_channels[cid] = "frame"
            elif name.rsplit(".", 1)[-1] in _RESYNC:
                self.resync_channels[cid] = _RESYNC[name.rsplit(".", 1)[-1]]
        if self.security is None and self.signer is not None:
            path = self.signer.state_path.with_name(f"sdls-{self.scid}.json")
            self.security = LinkSecurity.for_ground(self.signer.key, self.downlink_key, path)
        tx = self.security.tx if self.security is not None else None
        self.framer = Framer(self.scid, uplink=True, security=tx)
        self.layouts = Layouts.from_dictionary(self.dictionary.raw)


@dataclass
class StationStats:
    packets: int = 0
    stored: int = 0
    duplicates: int = 0
    bad_packets: int = 0
    unknown_scid: int = 0
    acks_sent: int = 0
    naks_sent: int = 0
    nak_seqs: int = 0
    gaps_given_up: int = 0
    refused: int = 0  # decoded items or samples refused (by reason in Station.rejects)
    resyncs: int = 0


class Station:
    """See the module docstring."""

    def __init__(
        self,
        archive: Archive,
        vehicles: list[Vehicle],
        uplink: Uplink | None = None,
        pub_endpoint: str | None = None,
        ack_interval_s: float = 1.0,
        link_timeout_s: float = 10.0,
        nak_retry_s: float = 10.0,
        max_naks: int = 20,
        batch: int = 5000,
        received_on_clock: bool = False,
        ack_repeats: int = 1,
        commit_every_s: float = 0.0,
    ) -> None:
        """``commit_every_s``: received housekeeping and products wait for a commit at most this
        long (0: every poll commits what came; events and command responses never wait); fewer
        commits write fewer pages, and ACKs wait for them."""
        self.archive = archive
        self.commit_every_s = commit_every_s
        self._committed_at = float("-inf")
        self._last_now = 0.0
        self._urgent = False  # an event or command response is pending
        #: archive ``received_at`` as the station's own time (the ``now_s`` it is driven with, for a
        #: station on a simulated clock) instead of the wall clock
        self.received_on_clock = received_on_clock
        #: how many successive ACKs acknowledge each packet: above 1, losing one link-control
        #: frame on the uplink costs nothing, where otherwise the packet waits on board for its
        #: resend timeout (on a pass-limited link, passes later) and goes down again
        self.ack_repeats = max(1, int(ack_repeats))
        self.vehicles = {v.scid: v for v in vehicles}
        self.uplink = uplink
        self.ack_interval_s = ack_interval_s
        self.link_timeout_s = link_timeout_s
        self.nak_retry_s = nak_retry_s
        self.max_naks = max_naks
        self.batch = batch
        self.deframer = Deframer(accept_scids=self.vehicles,
                                 security={v.scid: v.security.rx for v in vehicles if v.security is not None})
        for v in vehicles:
            names = [(cid, ch["name"]) for cid, ch in v.dictionary.channels_by_id.items()]
            archive.register_channels(v.scid, names)
        self.stats = StationStats()
        #: refusals by reason (bad packets, bad samples, bad fields, internal errors)
        self.rejects: Counter[str] = Counter()
        self._warn = RateLimitedLog(log)
        self.listeners: list[Listener] = []
        #: APIDs whose packets are not msgpack but another protocol's data units (CFDP on 0x032,
        #: :mod:`ground.files`): archived raw and acknowledged, their user data handed to the sink
        self.packet_sinks: dict[int, PacketSink] = {}
        #: called with ``now_s`` at the start of every poll (the CFDP entities' timers)
        self.pollers: list[Callable[[float], None]] = []
        self._pending: list[Ingest] = []
        self._pub = None
        if pub_endpoint:
            import zmq

            self._pub = zmq.Context.instance().socket(zmq.PUB)
            self._pub.setsockopt(zmq.LINGER, 0)
            self._pub.setsockopt(zmq.SNDHWM, 100_000)
            self._pub.bind(pub_endpoint)
            self.pub_endpoint = self._pub.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- downlink --------------------------------------------------------------------------

    def link_up(self, scid: int, now_s: float) -> bool:
        v = self.vehicles[scid]
        return v.last_frame_s is not None and now_s - v.last_frame_s <= self.link_timeout_s

    def _refuse(self, reason: str, scid: int, detail: Any) -> None:
        self.rejects[reason] += 1
        self.stats.refused += 1
        self._warn(reason, "scid %s: refused (%s): %s", scid, reason, detail)

    def receive(self, frame: bytes, now_s: float) -> int:
        """Take one frame (any bytes at all); returns how many packets it carried (0 if dropped)."""
        try:
            return self._receive(bytes(frame), now_s)
        except Exception as exc:  # a bug here must cost one frame, never the station
            self.rejects["internal_error"] += 1
            self._warn("internal_error", "frame handling failed: %r", exc)
            log.debug("frame handling failed", exc_info=True)
            return 0

    def _receive(self, frame: bytes, now_s: float) -> int:
        st = self.deframer.stats
        before = (st.unknown_spi, st.bad_mac, st.replay)
        fr = self.deframer.accept_frame(frame)
        if fr is None:
            for reason, was, now in zip(("unknown_spi", "bad_mac", "replay"), before,
                                        (st.unknown_spi, st.bad_mac, st.replay), strict=True):
                if now != was:
                    scid = (int.from_bytes(frame[:3], "big") >> 4) & 0xFFFF
                    self._refuse(f"frame_{reason}", scid, "frame dropped before any packet was read")
            return 0
        if fr.uplink:
            self._refuse("frame_uplink_on_downlink", fr.scid, "frame has the uplink direction bit")
            return 0
        vehicle = self.vehicles[fr.scid]
        vehicle.last_frame_s = now_s
        for raw in fr.packets:
            self.stats.packets += 1
            try:
                pkt = decode_packet(raw)
            except PacketError as exc:
                self.stats.bad_packets += 1
                self._refuse("bad_packet", fr.scid, exc)
                continue
            if pkt.telecommand:
                self.stats.bad_packets += 1
                self._refuse("telecommand_on_downlink", fr.scid, f"APID 0x{pkt.apid:03x}")
                continue
            item = Ingest(fr.scid, pkt.apid, pkt.seq, pkt.time_s, raw)
            sink = self.packet_sinks.get(pkt.apid)
            if sink is not None:
                sink(fr.scid, pkt.payload, now_s)  # the sink counts what it refuses, never raises
                self._pending.append(item)
                continue
            try:
                if pkt.apid in HK_APIDS and vehicle.layouts is not None:
                    obj: Any = vehicle.layouts.decode_columns(pkt.payload, pkt.apid)[1:]
                elif pkt.apid == Apid.EVENT and vehicle.layouts is not None:  # the event id's fixed layout
                    eid, _, args, text = vehicle.layouts.decode_event(pkt.payload)
                    sev = vehicle.dictionary.events_by_id.get(eid, {}).get("severity")
                    obj = {"id": eid, "sev": sev, "text": text, "args": args}
                else:
                    obj = pkt.value()
                self._decode(vehicle, item, obj)
            except Refused as exc:
                self.stats.bad_packets += 1  # archived raw, decoded content refused
                self._refuse(exc.reason, fr.scid, exc)
            except (PacketError, TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
                self.stats.bad_packets += 1
                self._refuse("bad_payload", fr.scid, f"APID 0x{pkt.apid:03x}: {exc}")
            self._pending.append(item)
            if item.event is not None or item.response is not None:
                self._urgent = True
        if len(self._pending) >= self.batch:
            self.flush(now_s)
        return len(fr.packets)

    @staticmethod
    def _plain_samples(v: Vehicle, pairs: list[Any]) -> tuple[tuple[int, ...], tuple[Any, ...], bool] | None:
        """The whole list at once when every pair is [known channel id, value that fits] (a
        housekeeping packet's usual case): (channel ids, values, may resynchronise), no pairs
        built. None: check pair by pair."""
        if not pairs or not set(map(type, pairs)) <= _PAIRS_SET:
            return None
        try:
            chans, values = zip(*pairs, strict=True)
        except ValueError:  # a pair that is not a pair
            return None
        return Station._plain_columns(v, chans, values)

    @staticmethod
    def _plain_columns(v: Vehicle, chans: tuple[Any, ...], values: tuple[Any, ...]
                       ) -> tuple[tuple[int, ...], tuple[Any, ...], bool] | None:
        """:meth:`_plain_samples` for samples already in columns (a fixed layout's)."""
        if not chans or set(map(type, chans)) != _INT_ONLY:
            return None
        plans = v.sample_plans
        plan = plans.get(chans, False)
        if plan is False:
            plan = SamplePlan.build(v, chans)
            if len(plans) < _PLANS_MAX:
                plans[chans] = plan
        if plan is None or not plan.fits(values):
            return None
        return chans, values, plan.resync

    def _samples(self, v: Vehicle, obj: Any) -> tuple[list[tuple[int, Any]], bool]:
        """(checked samples, whether any may resynchronise a counter), pair by pair."""
        out: list[tuple[int, Any]] = []
        channels = v.dictionary.channels_by_id
        types = v.channel_types
        for pair in obj["s"]:
            # the common case in one step: a [known channel id, value that fits its type] pair
            if type(pair) in _PAIRS and len(pair) == 2 and type(pair[0]) is int:
                spec = types.get(pair[0])
                if spec is not None:
                    value, kind = pair[1], spec.kind
                    if (kind == "float" and type(value) is float and (spec.hi is None or abs(value) <= spec.hi)) or (
                        kind == "int" and type(value) is int and spec.lo <= value <= spec.hi
                    ) or (kind == "str" and type(value) is str) or (kind == "bool" and type(value) is bool):
                        out.append((pair[0], value))
                        continue
            try:
                if not isinstance(pair, list | tuple) or len(pair) != 2:
                    raise Refused("sample_shape", "not a [channel id, value] pair")
                cid, value = pair
                if not _is_int(cid):
                    raise Refused("channel_id_type", f"channel id is {type(cid).__name__}")
                ch = channels.get(cid)
                if ch is None:
                    raise Refused("unknown_channel", f"channel id {cid}")
                out.append((cid, check_value(str(ch.get("type", "")), value)))
            except Refused as exc:
                self._refuse(exc.reason, v.scid, exc)
        return out, True

    def _decode(self, v: Vehicle, item: Ingest, obj: Any) -> None:
        apid, t = item.apid, item.time
        if apid == Apid.HOUSEKEEPING or (apid in HK_APIDS and v.layouts is not None):
            if type(obj) is tuple:  # a fixed layout's (channel ids, values)
                plain = self._plain_columns(v, *obj)
                if plain is None:
                    obj = {"s": list(zip(*obj, strict=True))}
            elif not isinstance(obj, dict) or not isinstance(obj.get("s"), list):
                raise Refused("bad_housekeeping", "not a map with a sample list 's'")
            else:
                plain = self._plain_samples(v, obj["s"])
            if plain is not None:  # checked whole: handed on as columns
                chans, values, may_resync = plain
                item.columns = (chans, values)
                samples: Iterable[tuple[int, Any]] = zip(chans, values, strict=True)
            else:
                item.samples, may_resync = self._samples(v, obj)
                samples = item.samples
            if may_resync and (v.signer is not None or v.security is not None):
                self._resync(v, samples)
        elif apid == Apid.EVENT:
            if not isinstance(obj, dict):
                raise Refused("bad_event", "not a map")
            eid, sev, text, args = obj.get("id"), obj.get("sev"), obj.get("text"), obj.get("args")
            if not _is_int(eid) or not 0 <= eid <= 0xFFFF:
                raise Refused("bad_event", f"event id {eid!r}")
            if sev not in _SEVERITIES or not isinstance(text, str) or not isinstance(args, list):
                raise Refused("bad_event", f"event {eid}: severity, text or args ill-typed")
            ev = v.dictionary.events_by_id.get(eid, {})
            item.event = EventRecord(v.scid, eid, str(ev.get("name", f"event_{eid}")), sev, text, args, t)
        elif apid == Apid.CMD_RESPONSE:
            if not isinstance(obj, dict):
                raise Refused("bad_response", "not a map")
            op, name, seq, stage = obj.get("op"), obj.get("name"), obj.get("seq"), obj.get("stage")
            reason = obj.get("reason", "")
            if not _is_int(op) or not 0 <= op <= 0xFFFF or not _is_int(seq) or not 0 <= seq < 2**63:
                raise Refused("bad_response", f"opcode {op!r} or seq {seq!r}")
            if not isinstance(name, str) or stage not in _STAGES or not isinstance(reason, str):
                raise Refused("bad_response", "name, stage or reason ill-typed")
            item.response = ResponseRecord(v.scid, op, name, seq, stage, reason, t)
        elif apid in (Apid.THUMBNAIL, Apid.PRODUCT) or apid in PAYLOAD_APIDS:
            pid, idx, n, data, meta = check_chunk(obj)  # ProductError (a ValueError) is counted
            item.chunk = {"pid": pid, "idx": idx, "n": n, "data": data, "meta": meta}
        else:
            raise Refused("unknown_apid", f"APID 0x{apid:03x}")

    def _resync(self, v: Vehicle, samples: Iterable[tuple[int, Any]]) -> None:
        which = v.resync_channels
        for cid, value in samples:
            what = which.get(cid)
            if what is None:
                continue
            if what == "frame":
                if v.security is not None and _is_int(value) and v.security.tx.resync(value):
                    self.stats.resyncs += 1
                    v.frame_jumps += 1
                continue
            if v.signer is not None and _is_int(value) and v.signer.resync(what, value):
                self.stats.resyncs += 1

    def flush(self, now_s: float) -> int:
        """Commit received packets to the archive, then note them for ACK and publish."""
        if not self._pending:
            return 0
        items, self._pending = self._pending, []
        self._urgent = False
        try:
            flags = self.archive.ingest(items, received_at=now_s if self.received_on_clock else None)
        except sqlite3.Error as exc:  # the disk, not the data: keep them, acknowledge nothing yet
            self._pending = items + self._pending
            self.rejects["archive_write_failed"] += 1
            self._warn("archive_write_failed", "archive write failed (%s); %d packets kept for retry", exc, len(items))
            if len(self._pending) > 20 * self.batch:  # unacknowledged: the vehicle still holds them
                del self._pending[: len(self._pending) - 20 * self.batch]
            return 0
        for item, new in zip(items, flags, strict=True):
            v = self.vehicles[item.scid]
            v.to_ack.setdefault(item.apid, []).append(item.seq)
            if item.apid in TM_APIDS or item.apid in PAYLOAD_APIDS or item.apid in HK_APIDS:  # not unused APIDs
                tracker = v.gaps.get(item.apid)
                if tracker is None:
                    tracker = v.gaps[item.apid] = GapTracker(self.nak_retry_s, self.max_naks)
                tracker.saw(item.seq)
            if new:
                self.stats.stored += 1
                self._publish(v, item)
            else:
                self.stats.duplicates += 1
        return len(items)

    def _publish(self, v: Vehicle, item: Ingest) -> None:
        if not self.listeners and self._pub is None:
            return
        if item.samples or item.columns is not None:
            scid, t, channel_name = v.scid, item.time, v.dictionary.channel_name
            pub = self._pub is not None  # the topic is only built for the PUB socket
            for cid, value in item.sample_pairs():
                name = channel_name(cid)
                rec = {"scid": scid, "id": cid, "name": name, "time": t, "value": value}
                self._emit("tlm", scid, rec, f"tlm.{scid}.{name}" if pub else None)
        if item.event is not None:
            e = item.event
            rec = {
                "scid": v.scid,
                "id": e.event_id,
                "name": e.name,
                "severity": e.severity,
                "text": e.text,
                "args": e.args,
                "time": e.time,
            }
            self._emit("evt", v.scid, rec, f"evt.{v.scid}")
        if item.response is not None:
            r = item.response
            rec = {
                "scid": v.scid,
                "op": r.opcode,
                "name": r.name,
                "seq": r.seq,
                "stage": r.stage,
                "reason": r.reason,
                "time": r.time,
            }
            self._emit("cmd", v.scid, rec, f"cmd.{v.scid}")
        if item.chunk is not None:
            self._emit("chunk", v.scid, item.chunk | {"apid": item.apid}, None)

    def _emit(self, kind: str, scid: int, rec: dict[str, Any], topic: str | None) -> None:
        for listener in self.listeners:
            try:
                listener(kind, scid, rec)
            except Exception:  # a broken view must not stop the station
                log.exception("telemetry listener failed")
        if self._pub is not None and topic is not None:
            self._pub.send_multipart([topic.encode(), msgpack.packb(rec, use_bin_type=True)])

    # -- uplink ----------------------------------------------------------------------------

    def send_tc(self, scid: int, apid: int, body: bytes, now_s: float) -> int:
        """Sign ``body`` for ``scid`` and send it on the uplink VC; returns the auth counter."""
        if self.uplink is None:
            raise RuntimeError("station has no uplink")
        counter, tc = self.sign_tc(scid, apid, body, now_s)
        self.send_signed(scid, tc)
        return counter

    def sign_tc(self, scid: int, apid: int, body: bytes, now_s: float) -> tuple[int, bytes]:
        """(counter, signed TC) for ``scid``, not sent: the commander re-sends the same bytes."""
        v = self.vehicles[scid]
        if v.signer is None:
            raise RuntimeError(f"no signing key for spacecraft {scid}")
        return v.signer.sign_counted(apid, body, time_s=min(max(0.0, now_s), 2.0**32 - 1))

    def send_signed(self, scid: int, tc: bytes) -> None:
        """Frame and send an already signed TC on the uplink VC."""
        if self.uplink is None:
            raise RuntimeError("station has no uplink")
        for frame in self.vehicles[scid].framer.pack(VC.UPLINK, [tc]):
            self.uplink(scid, frame)

    def poll(self, now_s: float) -> None:
        """Archive what arrived, then ACK and NAK each vehicle whose link is up."""
        self._last_now = now_s
        for poller in self.pollers:
            try:
                poller(now_s)
            except Exception as exc:  # a broken poller must not stop the station
                self.rejects["internal_error"] += 1
                self._warn("internal_error", "poller failed: %r", exc)
        due = now_s - self._committed_at >= self.commit_every_s or now_s < self._committed_at
        if due or self._urgent:  # events and command responses do not wait: operators and the commander do
            if self.flush(now_s):
                self._committed_at = now_s
        synced = False
        for v in self.vehicles.values():
            if v.signer is None or self.uplink is None or not self.link_up(v.scid, now_s):
                continue
            if now_s - v.last_ack_s < self.ack_interval_s:
                continue
            fresh = v.to_ack
            if not fresh and not v.acked_recently and not any(map(_MISSING, v.gaps.values())):
                continue  # most polls: nothing archived since the last ACK and no gap open
            every: dict[int, set[int]] = {}
            for batch in (*v.acked_recently, fresh):
                for apid, seqs in batch.items():
                    every.setdefault(apid, set()).update(seqs)
            acks = [(apid, a, b) for apid, seqs in every.items() for a, b in seqs_to_ranges(sorted(seqs))]
            naks = []
            budget = 512  # NAKed counts per poll, all APIDs together: one link-control TC fits a frame
            for apid, tracker in v.gaps.items():
                if not tracker.missing:
                    continue  # nothing to NAK and nothing to give up (given_up only grows in due)
                seqs = tracker.due(now_s, limit=budget)
                budget -= len(seqs)
                if seqs:
                    naks.append((apid, seqs))
                self.stats.gaps_given_up += tracker.given_up
                tracker.given_up = 0
            if not acks and not naks:
                continue
            if acks and not synced:
                try:
                    self.archive.sync()  # what the ACK releases on board must survive a power cut here
                except OSError as exc:  # the disk: acknowledge nothing until it syncs
                    self.rejects["archive_sync_failed"] += 1
                    self._warn("archive_sync_failed", "archive sync failed (%s); no ACK sent", exc)
                    return
                synced = True
            # keep each link-control TC well inside one frame
            for i in range(0, max(len(acks), 1), 200):
                part_naks = naks if i == 0 else []
                body = encode_link_control(acks[i : i + 200], part_naks)
                self.send_tc(v.scid, Apid.TC_LINK, body, now_s)
            v.to_ack = {}
            if self.ack_repeats > 1:
                v.acked_recently.append(fresh)
                while len(v.acked_recently) > self.ack_repeats - 1:
                    v.acked_recently.popleft()
            v.last_ack_s = now_s
            self.stats.acks_sent += 1 if acks else 0
            self.stats.naks_sent += 1 if naks else 0
            self.stats.nak_seqs += sum(len(s) for _, s in naks)

    def close(self) -> None:
        """Commit what is still pending (a clean stop keeps everything received), then close."""
        self.flush(self._last_now)
        if self._pub is not None:
            self._pub.close(0)
            self._pub = None
