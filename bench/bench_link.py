"""Space link and ground archive benchmarks.

* End to end: housekeeping packets through the onboard recorder, frames, the relay model with no
  delay and the station into the ground archive, beside raw pyzmq PUB/SUB carrying the same
  msgpack messages in the same run. Target: >= 100,000 channel samples/s, nothing lost.
* Archive ingest rate, beside raw SQLite ``executemany`` of the same rows.
* Time to query one channel from an archive of 1 million samples (target < 200 ms).
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import msgpack
import zmq

from bench.common import Row
from flight.link.auth import Key, Signer
from flight.link.frames import Framer
from flight.link.packets import Apid, Packetizer, peek
from flight.link.recorder import Recorder
from flight.link.sdls import LinkSecurity
from ground.archive import Archive, Ingest
from ground.dictionary import Dictionary
from ground.station import Station, Vehicle
from sim_hw.relay import RelayLink, RelayParams

SCID = 66
N_CHANNELS = 50
DICT = {
    "format": "magpie-dict/1",
    "software_version": "bench",
    "hash": "sha256:00",
    "spacecraft": {"name": "bench", "id": SCID},
    "commands": [],
    "events": [],
    "params": [],
    "channels": [
        {
            "id": i,
            "name": f"bench.ch{i}",
            "type": "f64",
            "units": "",
            "doc": "",
            "limits": {"yellow": None, "red": None},
            "update": "always",
        }
        for i in range(N_CHANNELS)
    ],
}


def _hk_items(n_packets: int) -> list[tuple[float, list[tuple[int, float]]]]:
    return [(i * 0.01, [(c, float(i + c)) for c in range(N_CHANNELS)]) for i in range(n_packets)]


def bench_end_to_end(tmp: Path, n_packets: int) -> tuple[float, float, int]:
    """(packets/s, samples/s, packets archived) through recorder, relay model, station, archive."""
    items = _hk_items(n_packets)
    recorder = Recorder(tmp / "rec.db", capacity_bytes=10**9, clock=lambda: 0.0)
    archive = Archive(tmp / "e2e.db")
    relay = RelayLink(RelayParams.preset("ideal"))
    station = Station(
        archive,
        [Vehicle(SCID, Dictionary.from_obj(DICT), Signer(Key(1, bytes(32)), tmp / "s.json"))],
        uplink=lambda scid, f: None,
        batch=2000,
    )
    # frames as the vehicle sends them, authenticated with the downlink key the station checks
    framer = Framer(SCID, security=LinkSecurity.for_vehicle(Key(1, bytes(32)), None, None).tx)
    pk = Packetizer()
    batch = 200
    t0 = time.perf_counter()
    for start in range(0, n_packets, batch):
        puts = []
        for t, samples in items[start : start + batch]:
            seq, data = pk.housekeeping(t, samples)
            puts.append((data, Apid.HOUSEKEEPING, seq, None, t))
        recorder.put_many(puts)
        sent = recorder.next_to_send(10**8, now_s=0.0)
        for frame in framer.pack_by_apid([s.data for s in sent]):
            relay.submit("down", frame, 0.0)
        for _, frame in relay.deliver_due(0.0):
            station.receive(frame, 0.0)
        station.flush(0.0)
        recorder.ack([(Apid.HOUSEKEEPING, peek(puts[0][0])[1], peek(puts[-1][0])[1])])
    elapsed = time.perf_counter() - t0
    stored = archive.count("packets")
    recorder.close()
    archive.close()
    return n_packets / elapsed, n_packets * N_CHANNELS / elapsed, stored


def bench_raw_zmq(n_packets: int) -> float:
    """Packets/s of the same msgpack housekeeping maps over raw pyzmq PUB/SUB (inproc)."""
    items = _hk_items(n_packets)
    ctx = zmq.Context.instance()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    pub.bind("inproc://bench-link")
    sub.connect("inproc://bench-link")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    while True:  # the slow-joiner handshake, bounded by polls
        pub.send(b"hello")
        if sub.poll(10):
            sub.recv()
            break
    while sub.poll(0):
        sub.recv()
    t0 = time.perf_counter()
    for t, samples in items:
        pub.send(msgpack.packb({"t": t, "s": [list(s) for s in samples]}))
        msgpack.unpackb(sub.recv())
    elapsed = time.perf_counter() - t0
    pub.close(0)
    sub.close(0)
    return n_packets / elapsed


def _ingests(n_samples: int, per_packet: int = N_CHANNELS) -> list[Ingest]:
    out = []
    for i in range(n_samples // per_packet):
        t = i * 0.01
        out.append(
            Ingest(
                SCID,
                Apid.HOUSEKEEPING,
                i % 16384,
                t,
                b"x" * 64,
                samples=[(c, float(i + c)) for c in range(per_packet)],
            )
        )
    return out


def bench_ingest(tmp: Path, n_samples: int) -> tuple[float, float]:
    """(archive samples/s, raw SQLite executemany rows/s) for the same samples."""
    items = _ingests(n_samples)
    archive = Archive(tmp / "ingest.db")
    t0 = time.perf_counter()
    for i in range(0, len(items), 500):
        archive.ingest(items[i : i + 500], received_at=0.0)
    rate = n_samples / (time.perf_counter() - t0)
    archive.close()
    db = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE s (scid INTEGER, channel INTEGER, time REAL, value)")
    rows = [(SCID, c, it.time, v) for it in items for c, v in it.samples]
    t0 = time.perf_counter()
    for i in range(0, len(rows), 25_000):
        db.execute("BEGIN")
        db.executemany("INSERT INTO s VALUES (?,?,?,?)", rows[i : i + 25_000])
        db.execute("COMMIT")
    raw = len(rows) / (time.perf_counter() - t0)
    db.close()
    return rate, raw


def bench_query(tmp: Path, n_samples: int, n_channels: int = 10) -> tuple[float, int]:
    """Seconds to read one channel's full history from an archive of ``n_samples`` samples."""
    archive = Archive(tmp / "query.db")
    items = _ingests(n_samples, per_packet=n_channels)
    for i in range(0, len(items), 2000):
        archive.ingest(items[i : i + 2000], received_at=0.0)
    best = float("inf")
    rows = 0
    for _ in range(5):
        t0 = time.perf_counter()
        rows = len(archive.channel(SCID, 3))
        best = min(best, time.perf_counter() - t0)
    archive.close()
    return best, rows


def run(quick: bool) -> list[Row]:
    n_packets = 2_000 if quick else 20_000
    n_ingest = 200_000 if quick else 1_000_000
    n_query = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="magpie-bench-link-") as d:
        tmp = Path(d)
        pps, sps, stored = bench_end_to_end(tmp, n_packets)
        zmq_pps = bench_raw_zmq(n_packets)
        ingest, raw_ingest = bench_ingest(tmp, n_ingest)
        query_s, rows = bench_query(tmp, n_query)
    lost = n_packets - stored
    return [
        Row(
            "link e2e packets/s (recorder->relay->archive)",
            pps,
            "pkt/s",
            zmq_pps,
            "raw pyzmq PUB/SUB + msgpack",
            better="higher",
        ),
        Row(
            f"link e2e channel samples/s ({N_CHANNELS}/packet)",
            sps,
            "samples/s",
            zmq_pps * N_CHANNELS,
            "raw pyzmq PUB/SUB + msgpack",
            target=">= 100000",
            better="higher",
        ),
        Row("link e2e packets lost", float(lost), "packets", target="0"),
        Row(
            "archive ingest",
            ingest,
            "samples/s",
            raw_ingest,
            "raw sqlite executemany",
            better="higher",
        ),
        Row(
            f"query one channel ({rows} rows) of {n_query} samples",
            query_s * 1e3,
            "ms",
            target="< 200 ms",
        ),
    ]


if __name__ == "__main__":
    for row in run(quick=True):
        ratio = f"  x{row.ratio:.2f} of {row.baseline_name}" if row.ratio else ""
        print(f"{row.name}: {row.value:,.1f} {row.unit}{ratio}  {row.target}")
