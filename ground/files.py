"""The ground's CFDP entities: products received into the archive's images, files sent up.

One :class:`~flight.link.cfdp.CfdpEntity` per vehicle (entity id :data:`GROUND_ENTITY` unless
configured; the vehicle's is its spacecraft id), rooted at ``<root>/<scid>/``, hooked into the
:class:`~ground.station.Station`:

- downlink packets on APID 0x032 are archived raw and acknowledged like every packet, and their
  user data (one PDU each) goes to the vehicle's entity; a PDU naming another entity than the
  spacecraft whose frame carried it is refused and counted;
- uplink PDUs go as authenticated TC command packets whose body starts with
  :data:`~flight.link.cfdp.TC_PREFIX` (:meth:`Station.send_tc`);
- the entity's timers run on the station's time (``now_s`` of its calls: the simulated clock in
  lockstep) and only while the station hears the vehicle (:meth:`Station.link_up`).

A received product (its Metadata PDU carries the product's metadata: ``pid``, ``kind``...)
goes into the archive as the chunk rows :mod:`ground.images` reads, so ``magpie images`` lists and
exports it like a product of the chunk transfer (the received file is then removed); a file
without product metadata stays in ``<root>/<scid>/products/``.

Across a ground restart, each entity's state file (``<state_dir>/cfdp-<scid>.json``) keeps the
files waiting to go up, the next transaction sequence number and the journal of transactions
received, so an EOF the vehicle repeats after the restart is answered with the same Finished and
the product is not taken twice. A transaction that was half received when the ground stopped is
asked for again from the start by cfdp-py (its destination handler keeps no state on disk).
"""

from __future__ import annotations

import logging
import uuid
from collections import deque
from pathlib import Path, PurePosixPath
from typing import Any

from flight.link.cfdp import (
    APID_CFDP,
    GROUND_ENTITY,
    CfdpConfig,
    CfdpEntity,
    Delivery,
    Put,
    Sent,
    safe_name,
    tc_body,
)
from flight.link.packets import Apid
from flight.link.products import MAX_PID, PRIO_PRODUCT, ProductError, product_chunks
from ground.archive import Archive
from ground.station import Station

log = logging.getLogger(__name__)

APID_FOR_KIND = {"thumb": int(Apid.THUMBNAIL), "full": int(Apid.PRODUCT)}
CHUNK_BYTES = 3000  # rows in the archive, as the chunk transfer stores them
OUTBOX = "outbox"


class GroundFiles:
    """See the module docstring."""

    def __init__(self, station: Station, archive: Archive, root: str | Path, state_dir: str | Path,
                 entity_id: int = GROUND_ENTITY, config: CfdpConfig | None = None) -> None:
        self.station = station
        self.archive = archive
        self.root = Path(root)
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._now = 0.0
        #: the latest files received and sent (scid, what), for views and tests
        self.delivered: deque[tuple[int, Delivery]] = deque(maxlen=1000)
        self.sent: deque[tuple[int, Sent]] = deque(maxlen=1000)
        self.products = 0
        self.entities: dict[int, CfdpEntity] = {}
        for scid in station.vehicles:
            self.entities[scid] = CfdpEntity(
                entity_id, [scid], self.root / str(scid), self.time, self._sender(scid),
                config or CfdpConfig(), state_file=self.state_dir / f"cfdp-{scid}.json",
                on_file=lambda d, s=scid: self._received(s, d), on_sent=lambda x, s=scid: self._sent(s, x),
                inbox="products")
        station.packet_sinks[APID_CFDP] = self.receive
        station.pollers.append(self.poll)

    def close(self) -> None:
        """Unhook from the station (a ground restart builds a new GroundFiles over the same state)."""
        if self.station.packet_sinks.get(APID_CFDP) == self.receive:
            del self.station.packet_sinks[APID_CFDP]
        if self.poll in self.station.pollers:
            self.station.pollers.remove(self.poll)

    def time(self) -> float:
        return self._now

    def _sender(self, scid: int) -> Any:
        def send(remote: int, pdu: bytes) -> None:
            v = self.station.vehicles[scid]
            if self.station.uplink is None or v.signer is None:
                self.entities[scid].rejects["no_uplink"] += 1
                return
            self.station.send_tc(scid, Apid.TC_COMMAND, tc_body(pdu), self._now)
        return send

    # -- the station's hooks ---------------------------------------------------------------------

    def receive(self, scid: int, pdu: bytes, now_s: float) -> None:
        self._now = max(self._now, now_s)
        entity = self.entities.get(scid)
        if entity is not None:
            entity.receive(pdu, remote=scid)

    def poll(self, now_s: float) -> None:
        self._now = max(self._now, now_s)
        for scid, entity in self.entities.items():
            entity.step(now_s, link_up=self.station.link_up(scid, now_s))

    # -- requests --------------------------------------------------------------------------------

    def send_file(self, scid: int, path: str | Path, name: str | None = None) -> Put:
        """Send a file to a vehicle; it lands in the vehicle's ``uplink/`` (``name`` below it)."""
        src = Path(path)
        return self.send_bytes(scid, name or src.name, src.read_bytes())

    def send_bytes(self, scid: int, name: str, data: bytes) -> Put:
        """Send ``data`` to a vehicle as ``uplink/<name>``: staged in the outbox (removed once sent)."""
        entity = self.entities[scid]
        if not safe_name(name):
            raise ValueError(f"file name {name!r} must be relative and without '..'")
        staged = f"{OUTBOX}/{uuid.uuid4().hex[:12]}-{PurePosixPath(name).name}"
        path = entity.root / staged
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return entity.put(scid, staged, f"uplink/{name}", priority=PRIO_PRODUCT)

    def _sent(self, scid: int, s: Sent) -> None:
        self.sent.append((scid, s))
        if s.put.source.startswith(OUTBOX + "/"):
            (self.entities[scid].root / s.put.source).unlink(missing_ok=True)

    # -- received --------------------------------------------------------------------------------

    def _received(self, scid: int, d: Delivery) -> None:
        self.delivered.append((scid, d))
        meta = d.meta or {}
        kind, pid = meta.get("kind"), meta.get("pid")
        apid = APID_FOR_KIND.get(kind) if isinstance(kind, str) else None
        if apid is None or not isinstance(pid, int) or isinstance(pid, bool) or not 0 <= pid <= MAX_PID:
            log.info("cfdp: file %s from %d kept at %s", d.name, scid, d.path)
            return
        try:
            data = d.path.read_bytes()
            chunks = product_chunks(0, pid, data, meta, CHUNK_BYTES, thumbnail=kind == "thumb")
        except (OSError, ProductError) as exc:
            self.entities[scid].rejects["product_unusable"] += 1
            log.warning("cfdp: product %s from %d not archived: %s", d.name, scid, exc)
            return
        t = float(meta.get("frame_time_s", self._now)) if isinstance(meta.get("frame_time_s"), int | float) \
            else self._now
        rows = [(c.pid, c.idx, c.n, c.data, c.meta, t) for c in chunks]
        try:
            self.products += 1 if self.archive.add_product_chunks(scid, apid, rows) else 0
        except Exception as exc:  # the disk, not the data: the file stays where it is
            self.entities[scid].rejects["archive_write_failed"] += 1
            log.warning("cfdp: product %s from %d kept at %s, not archived: %s", d.name, scid, d.path, exc)
            return
        d.path.unlink(missing_ok=True)  # the archive holds it now

    def summary(self) -> dict[int, dict[str, Any]]:
        return {scid: e.summary() for scid, e in self.entities.items()}
