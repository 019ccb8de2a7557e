"""CFDP class 2 against a stock cfdp-py entity as the independent peer, on the simulated clock.

The peer is cfdp-py's own source and destination handlers with its native filestore, driven by
this test (one destination handler per transaction, as the library's documentation says to do);
Magpie's :class:`~flight.link.cfdp.CfdpEntity` is the other side. Between them a link with
light time and 20 % PDU loss each way (seeded), and blackouts. Timers of both sides run on the
simulated clock through :func:`~flight.link.cfdp.on_clock`; nothing sleeps.
"""

from __future__ import annotations

import heapq
import os
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cfdppy import (
    CfdpState,
    CfdpUserBase,
    IndicationConfig,
    LocalEntityConfig,
    PutRequest,
    RemoteEntityConfig,
    RemoteEntityConfigTable,
)
from cfdppy.exceptions import PduIgnoredForDest, PduIgnoredForSource
from cfdppy.handler.common import PacketDestination, get_packet_destination
from cfdppy.handler.dest import DestHandler
from cfdppy.handler.source import SourceHandler
from cfdppy.mib import CheckTimerProvider, DefaultFaultHandlerBase
from spacepackets.cfdp import ChecksumType, ConditionCode, PduType, TransmissionMode
from spacepackets.cfdp.pdu import DirectiveType, PduFactory
from spacepackets.cfdp.pdu.finished import DeliveryCode
from spacepackets.countdown import Countdown
from spacepackets.seqcount import SeqCountProvider
from spacepackets.util import UnsignedByteField

from flight.clock import SimClock
from flight.link.cfdp import STATE_FORMAT, CfdpConfig, CfdpEntity, Delivery, Sent, on_clock
from flight.persist import write_checked_json

pytestmark = pytest.mark.timeout(60)

VEHICLE, PEER = 66, 7
LIGHT_S = 1.3
STEP_S = 0.25


class _Faults(DefaultFaultHandlerBase):
    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[str] = Counter()

    def notice_of_suspension_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self.seen[cond.name] += 1

    def notice_of_cancellation_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self.seen[cond.name] += 1

    def abandoned_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self.seen[cond.name] += 1

    def ignore_cb(self, transaction_id: Any, cond: ConditionCode, progress: int) -> None:
        self.seen[cond.name] += 1


class _Checks(CheckTimerProvider):
    def provide_check_timer(self, local_entity_id: Any, remote_entity_id: Any, entity_type: Any) -> Countdown:
        return Countdown.from_seconds(30.0)


class _PeerUser(CfdpUserBase):
    def __init__(self) -> None:
        super().__init__()
        self.finished: list[Any] = []

    def transaction_indication(self, transaction_indication_params: Any) -> None:
        pass

    def eof_sent_indication(self, transaction_id: Any) -> None:
        pass

    def transaction_finished_indication(self, params: Any) -> None:
        self.finished.append(params)

    def metadata_recv_indication(self, params: Any) -> None:
        pass

    def file_segment_recv_indication(self, params: Any) -> None:
        pass

    def report_indication(self, transaction_id: Any, status_report: Any) -> None:
        pass

    def suspended_indication(self, transaction_id: Any, cond_code: Any) -> None:
        pass

    def resumed_indication(self, transaction_id: Any, progress: int) -> None:
        pass

    def fault_indication(self, transaction_id: Any, cond_code: Any, progress: int) -> None:
        pass

    def abandoned_indication(self, transaction_id: Any, cond_code: Any, progress: int) -> None:
        pass

    def eof_recv_indication(self, transaction_id: Any) -> None:
        pass


class StockPeer:
    """A stock cfdp-py entity: its SourceHandler and DestHandlers, nothing of Magpie's."""

    def __init__(self, clock: SimClock, send: Callable[[bytes], None]) -> None:
        self.clock = clock
        self.send = send
        self.faults = _Faults()
        self.user = _PeerUser()
        self.cfg = LocalEntityConfig(UnsignedByteField(PEER, 2), IndicationConfig(), self.faults)
        self.table = RemoteEntityConfigTable([RemoteEntityConfig(
            entity_id=UnsignedByteField(VEHICLE, 2), max_file_segment_len=None, max_packet_len=1024,
            closure_requested=True, crc_on_transmission=False,
            default_transmission_mode=TransmissionMode.ACKNOWLEDGED, crc_type=ChecksumType.CRC_32,
            positive_ack_timer_interval_seconds=20.0, positive_ack_timer_expiration_limit=200,
            nak_timer_interval_seconds=20.0, nak_timer_expiration_limit=200)])
        self.source = SourceHandler(self.cfg, self.user, self.table, _Checks(), SeqCountProvider(32))
        self.dests: dict[int, DestHandler] = {}
        self.sent: Counter[str] = Counter()
        self.ignored = 0

    def put(self, src: Path, dest_name: str) -> None:
        with on_clock(self.clock.now):
            assert self.source.put_request(PutRequest(
                destination_id=UnsignedByteField(VEHICLE, 2), source_file=src, dest_file=Path(dest_name),
                trans_mode=TransmissionMode.ACKNOWLEDGED, closure_requested=True))

    def _drain(self, handler: Any) -> None:
        while (holder := handler.get_next_packet()) is not None:
            if holder.pdu_type == PduType.FILE_DATA:
                self.sent["file_data"] += 1
            else:
                self.sent[DirectiveType(holder.pdu_directive_type).name] += 1
            self.send(bytes(holder.pdu.pack()))

    def receive(self, raw: bytes) -> None:
        try:
            self._receive(raw)
        except (PduIgnoredForSource, PduIgnoredForDest):  # the library's "ignored in this state"
            self.ignored += 1

    def _receive(self, raw: bytes) -> None:
        pdu = PduFactory.from_raw(raw)
        with on_clock(self.clock.now):
            if get_packet_destination(pdu) == PacketDestination.SOURCE_HANDLER:
                if self.source.state == CfdpState.IDLE or \
                        pdu.transaction_seq_num.value != self.source.transaction_seq_num.value:
                    return
                self.source.state_machine(pdu)
                self._drain(self.source)
                return
            seq = pdu.transaction_seq_num.value
            handler = self.dests.get(seq)
            if handler is None:
                handler = self.dests[seq] = DestHandler(self.cfg, self.user, self.table, _Checks())
            handler.state_machine(pdu)
            self._drain(handler)

    def step(self) -> None:
        with on_clock(self.clock.now):
            if self.source.state != CfdpState.IDLE:
                for _ in range(8):  # a few PDUs a step: the peer's own pacing
                    self.source.state_machine()
                    if not self.source.packets_ready:
                        break
                    self._drain(self.source)
            for handler in self.dests.values():
                if handler.state != CfdpState.IDLE:
                    handler.state_machine()
                    self._drain(handler)


class Link:
    """Light time, seeded loss each way, and blackout windows; PDUs as opaque bytes."""

    def __init__(self, clock: SimClock, loss: float, seed: int) -> None:
        self.clock = clock
        self.loss = loss
        self.rng = random.Random(seed)
        self.queue: list[tuple[float, int, str, bytes]] = []
        self.n = 0
        self.blackouts: list[tuple[float, float]] = []
        self.dropped: Counter[str] = Counter()
        self.carried: Counter[str] = Counter()
        self.drop_if: Callable[[str, bytes], bool] | None = None
        self.kinds: dict[str, Counter[str]] = {"up": Counter(), "down": Counter()}
        self.mangle: Callable[[str, bytes], bytes] | None = None

    def up(self, t: float | None = None) -> bool:
        t = self.clock.now() if t is None else t
        return not any(a <= t < b for a, b in self.blackouts)

    def submit(self, way: str, pdu: bytes) -> None:
        now = self.clock.now()
        self.kinds[way][kind(pdu)] += 1
        if not self.up(now) or self.rng.random() < self.loss or (self.drop_if is not None and self.drop_if(way, pdu)):
            self.dropped[way] += 1
            return
        self.n += 1
        if self.mangle is not None:
            pdu = self.mangle(way, pdu)
        heapq.heappush(self.queue, (now + LIGHT_S, self.n, way, pdu))

    def due(self) -> list[tuple[str, bytes]]:
        out = []
        while self.queue and self.queue[0][0] <= self.clock.now():
            _, _, way, pdu = heapq.heappop(self.queue)
            self.carried[way] += 1
            out.append((way, pdu))
        return out


def kind(pdu: bytes) -> str:
    p = PduFactory.from_raw(pdu)
    return "file_data" if p.pdu_type == PduType.FILE_DATA else DirectiveType(p.directive_type).name


class Rig:
    """Magpie's entity (the vehicle) and the stock peer on one simulated clock and lossy link."""

    def __init__(self, tmp: Path, loss: float = 0.2, seed: int = 15, config: CfdpConfig | None = None) -> None:
        self.tmp = tmp
        self.clock = SimClock(start_s=1000.0)
        self.link = Link(self.clock, loss, seed)
        self.delivered: list[Delivery] = []
        self.sent: list[Sent] = []
        self.config = config or CfdpConfig(ack_interval_s=10.0, nak_interval_s=10.0, bytes_per_s=20_000.0)
        self.vehicle = self.new_vehicle()
        self.peer = StockPeer(self.clock, lambda pdu: self.link.submit("up", pdu))
        self.peer_out = tmp / "peer"
        self.peer_out.mkdir()

    def new_vehicle(self) -> CfdpEntity:
        return CfdpEntity(VEHICLE, [PEER], self.tmp / "vehicle", self.clock.now,
                          lambda remote, pdu: self.link.submit("down", pdu), self.config,
                          state_file=self.tmp / "cfdp-state.json",
                          on_file=self.delivered.append, on_sent=self.sent.append)

    def run(self, until_s: float, done: Callable[[], bool]) -> bool:
        end = self.clock.now() + until_s
        while self.clock.now() < end:
            for way, pdu in self.link.due():
                if way == "down":
                    self.peer.receive(pdu)
                else:
                    self.vehicle.receive(pdu, remote=PEER)
            self.vehicle.step(self.clock.now(), link_up=self.link.up())
            self.peer.step()
            if done():
                return True
            self.clock.advance(STEP_S)
        return done()


def product(tmp: Path, name: str, size: int, seed: int) -> bytes:
    data = random.Random(seed).randbytes(size)
    p = tmp / "vehicle" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return data


def peer_finished_ok(peer: StockPeer) -> list[Any]:
    return [f for f in peer.user.finished
            if f.finished_params.delivery_code == DeliveryCode.DATA_COMPLETE
            and f.finished_params.condition_code == ConditionCode.NO_ERROR]


def test_vehicle_to_peer_product_with_loss_naks_and_retransmission(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    data = product(tmp_path, "img/00000001.full.png", 60_000, seed=1)
    rig.vehicle.put(PEER, "img/00000001.full.png", str(rig.peer_out / "00000001.full.png"),
                    meta={"pid": 1, "kind": "full", "format": "png"})
    assert rig.run(900.0, lambda: bool(rig.sent) and bool(peer_finished_ok(rig.peer)))
    assert (rig.peer_out / "00000001.full.png").read_bytes() == data  # bit-identical
    assert rig.sent[0].ok and rig.sent[0].condition == "delivered"
    assert rig.link.dropped["down"] > 0 and rig.link.dropped["up"] > 0
    assert rig.peer.sent["NAK_PDU"] > 0  # the peer asked for what was lost ...
    segments = -(-60_000 // rig.vehicle.config.max_pdu_len)
    assert rig.link.kinds["down"]["file_data"] > segments  # ... and the vehicle sent it again
    assert rig.vehicle.stats.sent_ok == 1 and not rig.vehicle.busy


def test_peer_to_vehicle_file_with_loss(tmp_path: Path) -> None:
    rig = Rig(tmp_path, seed=16)
    src = tmp_path / "peer-files" / "seq.txt"
    src.parent.mkdir()
    data = random.Random(2).randbytes(45_000)
    src.write_bytes(data)
    rig.peer.put(src, "up/seq.txt")
    assert rig.run(900.0, lambda: bool(rig.delivered) and bool(peer_finished_ok(rig.peer)))
    d = rig.delivered[0]
    assert d.name == "up/seq.txt" and d.source_id == PEER
    assert d.path.read_bytes() == data
    assert rig.link.dropped["down"] > 0 and rig.link.dropped["up"] > 0
    assert rig.link.kinds["down"]["NAK_PDU"] > 0  # the vehicle asked for what was lost
    assert rig.vehicle.stats.received_ok == 1
    assert rig.peer.sent["file_data"] > 45_000 // 1000 + 1  # retransmitted on the vehicle's NAKs


def test_blackout_mid_transfer_suspends_timers_and_completes_after(tmp_path: Path) -> None:
    rig = Rig(tmp_path, seed=17)
    data = product(tmp_path, "img/2.jpg", 40_000, seed=3)
    rig.vehicle.put(PEER, "img/2.jpg", str(rig.peer_out / "2.jpg"))
    t0 = rig.clock.now()
    rig.link.blackouts.append((t0 + 1.0, t0 + 1.0 + 1800.0))  # 30 minutes, far longer than any timer
    assert rig.run(2400.0, lambda: bool(rig.sent))
    assert rig.clock.now() > t0 + 1800.0
    assert rig.sent[0].ok, rig.vehicle.summary()
    assert rig.vehicle.stats.retries == 0  # the same transaction, not a new one after the blackout
    assert (rig.peer_out / "2.jpg").read_bytes() == data
    assert rig.vehicle.link_time() < rig.clock.now() - t0 - 1700.0


def test_receiver_restart_mid_transfer_rerequests_and_completes(tmp_path: Path) -> None:
    rig = Rig(tmp_path, seed=18)
    src = tmp_path / "peer-files" / "table.bin"
    src.parent.mkdir()
    data = os.urandom(50_000)
    src.write_bytes(data)
    rig.peer.put(src, "up/table.bin")
    assert not rig.run(6.0, lambda: bool(rig.delivered))
    assert rig.vehicle.rx, "a transfer is under way"
    rig.vehicle = rig.new_vehicle()  # the vehicle restarts: its handlers' state is gone
    assert not rig.vehicle.rx
    assert rig.run(900.0, lambda: bool(rig.delivered) and bool(peer_finished_ok(rig.peer)))
    assert rig.delivered[0].path.read_bytes() == data


def test_sender_restart_sends_again_as_a_new_transaction(tmp_path: Path) -> None:
    rig = Rig(tmp_path, seed=19)
    data = product(tmp_path, "img/3.png", 50_000, seed=4)
    rig.vehicle.put(PEER, "img/3.png", str(rig.peer_out / "3.png"))
    assert not rig.run(2.0, lambda: bool(rig.sent))
    first = rig.vehicle.tx.seq
    rig.vehicle = rig.new_vehicle()  # the queue and the sequence number survive, the handler does not
    assert len(rig.vehicle.queue) == 1
    assert rig.run(1800.0, lambda: bool(rig.sent))
    assert rig.sent[0].ok and rig.sent[0].seq > first
    assert (rig.peer_out / "3.png").read_bytes() == data


def test_journal_answers_a_repeated_eof_after_a_receiver_restart(tmp_path: Path) -> None:
    rig = Rig(tmp_path, loss=0.0)
    src = tmp_path / "peer-files" / "plan.seq"
    src.parent.mkdir()
    src.write_bytes(b"NAV_GOTO 1 2\n" * 300)
    # the vehicle's ACK of the EOF and its Finished are lost until the vehicle restarts
    rig.link.drop_if = lambda way, pdu: way == "down" and kind(pdu) in ("ACK_PDU", "FINISHED_PDU")
    rig.peer.put(src, "up/plan.seq")
    assert rig.run(60.0, lambda: bool(rig.delivered))
    assert not peer_finished_ok(rig.peer)
    rig.vehicle = rig.new_vehicle()
    rig.link.drop_if = None
    assert rig.run(300.0, lambda: bool(peer_finished_ok(rig.peer)))
    assert rig.vehicle.stats.answered_from_journal >= 1
    assert len(rig.delivered) == 1  # delivered once, not again after the restart


def test_bad_pdus_are_counted_never_raised(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for junk in (b"", b"\x00", b"\xff" * 40, os.urandom(300)):
        assert rig.vehicle.receive(junk) is False
    assert sum(rig.vehicle.rejects.values()) == 4


def test_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not a speed test: what one 60 kB product costs on the wire at 20 % loss (printed with -s)."""
    rig = Rig(tmp_path, seed=21)
    product(tmp_path, "img/9.png", 60_000, seed=9)
    rig.vehicle.put(PEER, "img/9.png", str(rig.peer_out / "9.png"))
    t0 = rig.clock.now()
    assert rig.run(900.0, lambda: bool(rig.sent))
    print(f"\\n60 kB at 20 % loss: {rig.clock.now() - t0:.1f} s simulated, down {dict(rig.link.kinds['down'])}, "
          f"up {dict(rig.link.kinds['up'])}; vehicle {rig.vehicle.summary()}; peer faults {dict(rig.peer.faults.seen)}")
    assert rig.sent[0].ok


def test_a_repeated_eof_is_acknowledged_again(tmp_path: Path) -> None:
    """cfdp-py's receiver ignores an EOF repeated after it took one; Magpie's acknowledges it."""
    rig = Rig(tmp_path, loss=0.0)
    src = tmp_path / "peer-files" / "t.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(8000))
    lost: list[str] = []

    def first_eof_ack(way: str, pdu: bytes) -> bool:
        if way == "down" and kind(pdu) == "ACK_PDU" and not lost:
            lost.append("ack")
            return True
        return False

    rig.link.drop_if = first_eof_ack
    rig.peer.put(src, "up/t.bin")
    assert rig.run(300.0, lambda: bool(peer_finished_ok(rig.peer)))
    assert lost and rig.peer.sent["EOF_PDU"] >= 2
    assert len(rig.peer.user.finished) == 1 and rig.delivered[0].path.read_bytes() == src.read_bytes()


def corrupt_first_file_data(way_wanted: str) -> Callable[[str, bytes], bytes]:
    """Flip the last byte of the first File Data PDU going ``way_wanted`` (no PDU CRC: only the
    file checksum can tell)."""
    done: list[bool] = []

    def mangle(way: str, pdu: bytes) -> bytes:
        if way == way_wanted and not done and kind(pdu) == "file_data":
            done.append(True)
            return pdu[:-1] + bytes([pdu[-1] ^ 0xFF])
        return pdu
    return mangle


def test_a_corrupted_segment_fails_the_checksum_and_the_vehicle_sends_again(tmp_path: Path) -> None:
    """Magpie's entity on both ends: the receiver's CRC-32 check (which cfdp-py 0.7 skips in
    acknowledged mode when nothing was lost) answers FILE_CHECKSUM_FAILURE, the sender sends again."""
    clock = SimClock(start_s=10.0)
    link = Link(clock, 0.0, seed=1)
    link.mangle = corrupt_first_file_data("down")
    got: list[Delivery] = []
    sent: list[Sent] = []
    cfg = CfdpConfig(ack_interval_s=10.0, nak_interval_s=10.0)
    vehicle = CfdpEntity(VEHICLE, [PEER], tmp_path / "v", clock.now, lambda r, p: link.submit("down", p), cfg,
                         on_sent=sent.append)
    ground = CfdpEntity(PEER, [VEHICLE], tmp_path / "g", clock.now, lambda r, p: link.submit("up", p), cfg,
                        on_file=got.append, inbox="products")
    data = random.Random(5).randbytes(20_000)
    (tmp_path / "v" / "img").mkdir(parents=True)
    (tmp_path / "v" / "img" / "5.png").write_bytes(data)
    vehicle.put(PEER, "img/5.png", "products/5.png")
    for _ in range(2400):
        for way, pdu in link.due():
            (ground if way == "down" else vehicle).receive(pdu)
        vehicle.step(clock.now())
        ground.step(clock.now())
        if sent:
            break
        clock.advance(STEP_S)
    assert ground.faults["file_checksum_failure"] == 1 and ground.stats.received_failed == 1
    assert sent and sent[0].ok and vehicle.stats.retries == 1  # sent again as a new transaction
    assert len(got) == 1 and got[0].path.read_bytes() == data


def test_a_corrupted_segment_from_the_peer_is_not_delivered(tmp_path: Path) -> None:
    rig = Rig(tmp_path, loss=0.0)
    src = tmp_path / "peer-files" / "bad.bin"
    src.parent.mkdir()
    src.write_bytes(os.urandom(20_000))
    rig.link.mangle = corrupt_first_file_data("up")
    rig.peer.put(src, "up/bad.bin")
    assert rig.run(300.0, lambda: bool(rig.peer.user.finished))
    assert rig.peer.user.finished[0].finished_params.condition_code == ConditionCode.FILE_CHECKSUM_FAILURE
    assert not rig.delivered and rig.vehicle.stats.received_failed == 1


def test_an_unreadable_state_file_is_moved_aside_never_a_crash(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    product(tmp_path, "img/7.png", 3000, seed=7)
    rig.vehicle.put(PEER, "img/7.png", "7.png")
    state = tmp_path / "cfdp-state.json"
    for bad in ("torn", "ill-typed"):
        if bad == "torn":
            state.write_text("{not json")
        else:  # checksum good, contents not a queue
            write_checked_json(state, STATE_FORMAT, {"next_seq": 3, "queue": [{"bogus": 1}], "journal": []})
        e = rig.new_vehicle()
        assert e.problem and e.rejects["state_lost"] == 1 and not e.queue
        assert list(tmp_path.glob("cfdp-state.json.corrupt*")) or list(tmp_path.glob("cfdp-state.json.*"))


def test_a_file_named_outside_the_inbox_is_refused_whole(tmp_path: Path) -> None:
    rig = Rig(tmp_path, loss=0.0)
    rig.vehicle.inbox = "up"
    src = tmp_path / "peer-files" / "evil.bin"
    src.parent.mkdir()
    src.write_bytes(b"x" * 5000)
    rig.peer.put(src, "../../etc/evil.bin")
    rig.run(60.0, lambda: False)
    assert rig.vehicle.rejects["unsafe_name"] == 1 and rig.vehicle.rejects["refused_transaction"] > 0
    assert not rig.delivered and not rig.vehicle.rx
    assert [p for p in tmp_path.rglob("evil.bin") if p != src] == []  # nothing written anywhere
