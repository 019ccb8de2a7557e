"""The ground station: frames in, archive and live telemetry out, ACKs and NAKs back.

One station serves several vehicles; each (:class:`Vehicle`) has its own dictionary, signing key
and counters, gap trackers and place in the archive (rows carry the spacecraft id).

The station is driven by calls, so it runs the same in lockstep on a simulated clock and as a
process on real time: :meth:`Station.receive` takes one frame at ``now_s``; :meth:`Station.poll`
commits what was received to the archive, then sends (authenticated) link control when the link
is up: an ACK of every packet archived since the last one (duplicates too, so a lost ACK is
repaired by the retransmission it causes) and a NAK of sequence counts missing from each APID's
count sequence. Acknowledgement follows the archive commit, never precedes it.

Decoded telemetry is handed to listeners and, when ``pub_endpoint`` is given, published on a
ZeroMQ PUB socket: topic ``tlm.<scid>.<channel name>``, ``evt.<scid>``, ``cmd.<scid>`` (command
responses), each followed by a msgpack map.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from flight.link.auth import Signer
from flight.link.frames import VC, Deframer, Framer
from flight.link.packets import (
    PAYLOAD_APIDS,
    Apid,
    PacketError,
    decode_packet,
    encode_link_control,
    seq_add,
    seq_diff,
    seqs_to_ranges,
)
from flight.link.products import check_chunk
from ground.archive import Archive, EventRecord, Ingest, ResponseRecord
from ground.dictionary import Dictionary

log = logging.getLogger(__name__)

Uplink = Callable[[int, bytes], None]  # (scid, frame)
Listener = Callable[[str, int, Any], None]  # (kind "tlm"|"evt"|"cmd"|"chunk", scid, record)


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
            for k in range(1, d):
                self.missing[seq_add(self.high, k)] = (None, 0)
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
    framer: Framer = field(init=False)
    gaps: dict[int, GapTracker] = field(default_factory=dict)
    to_ack: dict[int, list[int]] = field(default_factory=dict)
    last_frame_s: float | None = None
    last_ack_s: float = float("-inf")

    def __post_init__(self) -> None:
        self.framer = Framer(self.scid)


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
    ) -> None:
        self.archive = archive
        self.vehicles = {v.scid: v for v in vehicles}
        self.uplink = uplink
        self.ack_interval_s = ack_interval_s
        self.link_timeout_s = link_timeout_s
        self.nak_retry_s = nak_retry_s
        self.max_naks = max_naks
        self.batch = batch
        self.deframer = Deframer(accept_scids=self.vehicles)
        for v in vehicles:
            names = [(cid, ch["name"]) for cid, ch in v.dictionary.channels_by_id.items()]
            archive.register_channels(v.scid, names)
        self.stats = StationStats()
        self.listeners: list[Listener] = []
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

    def receive(self, frame: bytes, now_s: float) -> int:
        """Take one frame; returns how many packets it carried (0 if dropped)."""
        fr = self.deframer.accept_frame(frame)
        if fr is None:
            return 0
        vehicle = self.vehicles[fr.scid]
        vehicle.last_frame_s = now_s
        for raw in fr.packets:
            self.stats.packets += 1
            try:
                pkt = decode_packet(raw)
            except PacketError as exc:
                self.stats.bad_packets += 1
                log.debug("bad packet from scid %d: %s", fr.scid, exc)
                continue
            item = Ingest(fr.scid, pkt.apid, pkt.seq, pkt.time_s, raw)
            try:
                self._decode(vehicle, item, pkt.value())
            except (PacketError, TypeError, ValueError, KeyError, AttributeError) as exc:
                self.stats.bad_packets += 1  # archived raw, decoded content refused
                log.debug("undecodable payload on APID 0x%03x: %s", pkt.apid, exc)
            self._pending.append(item)
        if len(self._pending) >= self.batch:
            self.flush(now_s)
        return len(fr.packets)

    def _decode(self, v: Vehicle, item: Ingest, obj: Any) -> None:
        apid, t = item.apid, item.time
        if apid == Apid.HOUSEKEEPING:
            samples = obj["s"]
            if not isinstance(samples, list):
                raise TypeError("housekeeping 's' is not a list")
            item.samples = samples  # pairs are unpacked (and ill-shaped ones skipped) on ingest
        elif apid == Apid.EVENT:
            ev = v.dictionary.events_by_id.get(int(obj["id"]), {})
            item.event = EventRecord(
                v.scid,
                int(obj["id"]),
                ev.get("name", f"event_{obj['id']}"),
                str(obj["sev"]),
                str(obj["text"]),
                list(obj["args"]),
                t,
            )
        elif apid == Apid.CMD_RESPONSE:
            item.response = ResponseRecord(
                v.scid,
                int(obj["op"]),
                str(obj["name"]),
                int(obj["seq"]),
                str(obj["stage"]),
                str(obj.get("reason", "")),
                t,
            )
        elif apid in (Apid.THUMBNAIL, Apid.PRODUCT) or apid in PAYLOAD_APIDS:
            pid, idx, n, data, meta = check_chunk(obj)  # ProductError (a ValueError) is counted
            item.chunk = {"pid": pid, "idx": idx, "n": n, "data": data, "meta": meta}

    def flush(self, now_s: float) -> int:
        """Commit received packets to the archive, then note them for ACK and publish."""
        if not self._pending:
            return 0
        items, self._pending = self._pending, []
        flags = self.archive.ingest(items)
        for item, new in zip(items, flags, strict=True):
            v = self.vehicles[item.scid]
            v.to_ack.setdefault(item.apid, []).append(item.seq)
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
        for pair in item.samples:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                continue
            cid, value = pair
            name = v.dictionary.channel_name(cid)
            rec = {"scid": v.scid, "id": cid, "name": name, "time": item.time, "value": value}
            self._emit("tlm", v.scid, rec, f"tlm.{v.scid}.{name}")
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
        v = self.vehicles[scid]
        if v.signer is None:
            raise RuntimeError(f"no signing key for spacecraft {scid}")
        if self.uplink is None:
            raise RuntimeError("station has no uplink")
        counter = v.signer.next_counter
        tc = v.signer.sign(apid, body, time_s=max(0.0, now_s))
        for frame in v.framer.pack(VC.UPLINK, [tc]):
            self.uplink(scid, frame)
        return counter

    def poll(self, now_s: float) -> None:
        """Archive what arrived, then ACK and NAK each vehicle whose link is up."""
        self.flush(now_s)
        for v in self.vehicles.values():
            if v.signer is None or self.uplink is None or not self.link_up(v.scid, now_s):
                continue
            if now_s - v.last_ack_s < self.ack_interval_s:
                continue
            acks = [(apid, a, b) for apid, seqs in v.to_ack.items() for a, b in seqs_to_ranges(seqs)]
            naks = []
            for apid, tracker in v.gaps.items():
                seqs = tracker.due(now_s, limit=512)
                if seqs:
                    naks.append((apid, seqs))
                self.stats.gaps_given_up += tracker.given_up
                tracker.given_up = 0
            if not acks and not naks:
                continue
            # keep each link-control TC well inside one frame
            for i in range(0, max(len(acks), 1), 200):
                part_naks = naks if i == 0 else []
                body = encode_link_control(acks[i : i + 200], part_naks)
                self.send_tc(v.scid, Apid.TC_LINK, body, now_s)
            v.to_ack.clear()
            v.last_ack_s = now_s
            self.stats.acks_sent += 1 if acks else 0
            self.stats.naks_sent += 1 if naks else 0
            self.stats.nak_seqs += sum(len(s) for _, s in naks)

    def close(self) -> None:
        if self._pub is not None:
            self._pub.close(0)
            self._pub = None
