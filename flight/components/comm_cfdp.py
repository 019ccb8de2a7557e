"""Comm's CFDP side: products and files as CFDP class 2 transactions on the space link.

Comm owns one :class:`~flight.link.cfdp.CfdpEntity` (entity id = the spacecraft id, the ground's
is ``cfdp_ground_entity``), rooted at the state directory:

- a :class:`~flight.link.cfdp.FilePut` outbound item (the imaging task queues one per product
  when ``[components.<img>] downlink = "cfdp"``) is put to the entity instead of being packed;
- the PDUs the entity makes become TM packets on APID 0x032 stored in the recorder like every
  other packet (priority: thumbnails 2, full frames 3, the receiver's NAK/ACK/Finished 2);
- an authenticated TC whose body starts with :data:`~flight.link.cfdp.TC_PREFIX` is a PDU for
  the entity, never a command; files from the ground land in ``<state dir>/uplink/``;
- the entity's link time runs only while the radio has carrier (the relay sees the vehicle) and
  an authenticated uplink came within ``cfdp_link_silence_s`` (the station acknowledges every
  second while it hears the vehicle), so its timers do not run out in a blackout.

Comm calls :meth:`CommCfdp.take`, :meth:`uplink` and :meth:`step`; the rest is here.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

from flight.config import ConfigError
from flight.link.cfdp import (
    APID_CFDP,
    CfdpConfig,
    CfdpEntity,
    Delivery,
    FilePut,
    Sent,
    from_tc_body,
    pdu_packet,
)
from flight.link.packets import PacketError
from flight.link.recorder import Priority
from flight.model import Arg, Channel, Event, Severity
from flight.persist import ensure_private_dir

if TYPE_CHECKING:
    from flight.components.comm import Comm

log = logging.getLogger(__name__)

INBOX = "uplink"
_TOWARDS_SENDER = 0x08  # direction bit of the PDU header's first octet

CHANNELS = (
    Channel("cfdp_queued", "u16", doc="files waiting to be sent by CFDP (the one being sent included)",
            update="on_change"),
    Channel("cfdp_sent", "u32", doc="files delivered by CFDP (Finished: complete, checksum good) since boot",
            update="on_change"),
    Channel("cfdp_failed", "u32", doc="files CFDP gave up sending since boot", update="on_change"),
    Channel("cfdp_received", "u32", doc="files received whole by CFDP since boot", update="on_change"),
    Channel("cfdp_retries", "u32", doc="CFDP transactions started again since boot", update="on_change"),
    Channel("cfdp_rejected", "u32", doc="CFDP PDUs refused since boot (all reasons)", update="on_change"),
)
EVENTS = (
    Event("FileSent", Severity.ACTIVITY_HI, "CFDP: {name} delivered to entity {dest} (transaction {seq})",
          (Arg("name", "str"), Arg("dest", "u16"), Arg("seq", "u32"))),
    Event("FileNotSent", Severity.WARNING_HI, "CFDP: {name} not delivered after {attempts} attempt(s): {why}",
          (Arg("name", "str"), Arg("attempts", "u8"), Arg("why", "str")), throttle=5, throttle_window_s=60.0),
    Event("FileReceived", Severity.ACTIVITY_HI, "CFDP: {name} received from entity {source} ({bytes} B)",
          (Arg("name", "str"), Arg("source", "u16"), Arg("bytes", "u32", "B"))),
)


class CommCfdp:
    """See the module docstring."""

    def __init__(self, comm: Comm) -> None:
        self.comm = comm
        fw = comm.fw
        opts = comm.options
        where = f"components.{comm.name}"
        self.ground = int(opts["cfdp_ground_entity"])
        if not 0 <= self.ground <= 0xFFFF or self.ground == fw.spacecraft_id:
            raise ConfigError(f"{where}.cfdp_ground_entity: {self.ground} must be 0..65535 and not the spacecraft id")
        rate = float(opts["cfdp_bytes_per_s"]) or 0.75 * float(opts["downlink_bytes_per_s"])
        timer = float(opts["cfdp_timer_s"])
        if rate <= 0 or timer <= 0:
            raise ConfigError(f"{where}.cfdp_bytes_per_s and cfdp_timer_s: must be positive")
        max_pdu = min(1024, int(opts["max_frame_len"]) - 64)
        self.config = CfdpConfig(max_pdu_len=max_pdu, bytes_per_s=rate, ack_interval_s=timer, nak_interval_s=timer,
                                 check_interval_s=timer, holdoff_s=timer / 4)
        self._out: list[bytes] = []
        self.store_failures = 0
        ensure_private_dir(fw.state_dir / INBOX)
        self.entity = CfdpEntity(fw.spacecraft_id, [self.ground], fw.state_dir, fw.clock.now, self._send,
                                 self.config, state_file=fw.state_dir / f"{comm.name}-cfdp.json",
                                 on_file=self._received, on_sent=self._sent, inbox=INBOX)
        if self.entity.problem:
            comm.event("StoreRecovered", store="cfdp queue", problem=self.entity.problem[:400])

    # -- hooks Comm calls ------------------------------------------------------------------------

    def take(self, items: list[Any]) -> list[Any]:
        """Put the FilePut items to the entity; returns the other items (to be packed as usual)."""
        rest = []
        for item in items:
            if not isinstance(item, FilePut):
                rest.append(item)
                continue
            try:
                self.entity.put(self.ground, item.source, item.name, item.meta, priority=item.priority)
            except ValueError as exc:
                self.comm._unencodable("FilePut", str(exc))
        return rest

    def uplink(self, body: bytes) -> bool:
        """True when an authenticated TC body was a CFDP PDU (taken here, not a command)."""
        pdu = from_tc_body(body)
        if pdu is None:
            return False
        self.entity.receive(pdu, remote=self.ground)
        self._store()
        return True

    def step(self, now_s: float, last_uplink_s: float | None) -> None:
        """Run the entity; its link time runs while the radio has carrier and the ground is heard."""
        carrier = bool(getattr(self.comm.devices["radio"], "carrier", True))
        heard = last_uplink_s is not None and now_s - last_uplink_s <= float(self.comm.options["cfdp_link_silence_s"])
        self.entity.step(now_s, link_up=carrier and heard)
        self._store()

    # -- the entity's side -----------------------------------------------------------------------

    def _send(self, remote: int, pdu: bytes) -> None:
        self._out.append(pdu)

    def _store(self) -> None:
        if not self._out or self.comm.recorder is None or self.comm.packetizer is None:
            self._out.clear()
            return
        out, self._out = self._out, []
        t = self.comm.fw.clock.now()
        tx = self.entity.tx
        sending = Priority.THUMBNAIL if tx is not None and tx.put.priority <= Priority.THUMBNAIL else Priority.PRODUCT
        rows: list[tuple[bytes, int, int, int | None, float | None]] = []
        for pdu in out:
            try:
                seq, data = pdu_packet(self.comm.packetizer, t, pdu)
            except PacketError as exc:
                self.comm._unencodable("CfdpPdu", str(exc))
                continue
            prio = Priority.THUMBNAIL if pdu[0] & _TOWARDS_SENDER else sending
            rows.append((data, APID_CFDP, seq, int(prio), t))
        try:
            self.comm.recorder.put_many(rows)
        except sqlite3.Error as exc:  # CFDP asks again for what never went: drop, count, go on
            self.store_failures += 1
            log.warning("comm: %d CFDP PDUs not stored (%s); the protocol recovers them", len(rows), exc)

    def _sent(self, s: Sent) -> None:
        if s.ok:
            self.comm.event("FileSent", name=s.put.name[:200], dest=s.put.dest, seq=max(0, s.seq))
        else:
            self.comm.event("FileNotSent", name=s.put.name[:200], attempts=min(255, s.put.attempts),
                            why=s.condition[:200])

    def _received(self, d: Delivery) -> None:
        try:
            size = d.path.stat().st_size
            d.path.chmod(0o600)  # like every file in the state directory
        except OSError:
            size = 0
        self.comm.event("FileReceived", name=d.name[:200], source=d.source_id, bytes=min(size, 2**32 - 1))

    def telemetry(self) -> None:
        e = self.entity
        st = e.stats
        self.comm.tlm("cfdp_queued", min(0xFFFF, len(e.queue)))
        self.comm.tlm("cfdp_sent", st.sent_ok)
        self.comm.tlm("cfdp_failed", st.sent_failed)
        self.comm.tlm("cfdp_received", st.received_ok)
        self.comm.tlm("cfdp_retries", st.retries)
        self.comm.tlm("cfdp_rejected", sum(e.rejects.values()))
