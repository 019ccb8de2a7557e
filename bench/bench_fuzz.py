"""Adversarial input benchmark: the ground's three doors driven with generated inputs.

* The station's inbound path: frames that pass the CRC (so they reach decoding) carrying packets
  whose payloads are built from hostile values (infinity, NaN, u64 above 2**63, lists and maps
  where ids belong, wrong types, truncated msgpack), and raw mutated bytes.
* The archive's ingest: batches of items with the same hostile samples and key fields.
* The command socket: requests (checked by ``GroundServer.handle``, the function the socket loop
  calls for every message) with and without the token, hostile field values and raw garbage.

Each figure is the number of inputs driven and the number of exceptions that escaped (target 0),
plus the number a last-resort handler had to catch (also target 0: every input is refused by a
check, not by luck). The rate of each is shown beside a baseline measured in the same run: the
same inputs through ``msgpack.unpackb`` alone. Inputs come from a seeded generator, so a run is
repeatable; the suite's property tests (hypothesis) cover the same doors with fewer inputs.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from bench.common import Row
from flight.link.auth import write_key_file
from flight.link.frames import VC, Framer
from flight.link.packets import Apid, encode_packet
from ground.archive import Archive, Ingest
from ground.dictionary import Dictionary
from ground.server import GroundServer, load_config
from ground.station import Station, Vehicle

SCID = 66
DICT: dict[str, Any] = {
    "format": "magpie-dict/1", "software_version": "bench", "hash": "sha256:00",
    "spacecraft": {"name": "bench", "id": SCID},
    "commands": [
        {"opcode": 0x0101, "name": "NAV_GOTO", "component": "nav", "doc": "", "args": [
            {"name": "x_m", "type": "f32", "units": "m", "min": -100, "max": 100, "enum": None, "doc": ""},
            {"name": "y_m", "type": "f32", "units": "m", "min": -100, "max": 100, "enum": None, "doc": ""}]},
        {"opcode": 0x0102, "name": "T0_RESET", "component": "t0", "doc": "", "args": [
            {"name": "value", "type": "u64", "units": "", "min": None, "max": None, "enum": None, "doc": ""}]},
    ],
    "channels": [{"id": i, "name": f"c.ch{i}", "type": t, "units": "", "doc": "",
                  "limits": {"yellow": None, "red": None}, "update": "always"}
                 for i, t in enumerate(["f32", "f64", "u8", "u32", "u64", "i64", "bool", "str", "enum"], start=1)],
    "events": [{"id": 10, "name": "Ev", "severity": "WARNING_LO", "format": "", "args": [], "doc": ""}],
    "params": [],
}
SECRET = bytes(range(100, 132))

HOSTILE: list[Any] = [
    math.inf, -math.inf, math.nan, 2**63, 2**64 - 1, -(2**63), 2**31, -1, 0, 1, 255, 256, 1.5, -0.0, 3.5e38,
    True, False, None, "", "x" * 300, "ünï", b"", b"\x00\xff", [], [1], [[1, 2]], {}, {"a": 1}, {1: 2},
    msgpack.ExtType(5, b"x"), [math.inf, 1.0], {"s": []},
]


def hostile(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth < 2 and r < 0.1:
        return [hostile(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if depth < 2 and r < 0.15:
        return {rng.choice(["id", "s", "op", 1, "seq"]): hostile(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    if r < 0.35:
        return rng.randint(-(2**63), 2**64 - 1)
    if r < 0.45:
        return rng.uniform(-1e40, 1e40)
    return rng.choice(HOSTILE)


def payload(rng: random.Random, apid: int) -> Any:
    h = lambda: hostile(rng)  # noqa: E731
    if apid == Apid.HOUSEKEEPING:
        return {"s": [[rng.choice([rng.randint(0, 12), h()]), h()] if rng.random() < 0.8 else h()
                      for _ in range(rng.randint(0, 6))]}
    if apid == Apid.EVENT:
        return {"id": rng.choice([10, h()]), "sev": rng.choice(["WARNING_LO", h()]), "text": rng.choice(["t", h()]),
                "args": rng.choice([[], h()])}
    if apid == Apid.CMD_RESPONSE:
        return {"op": rng.choice([0x0101, h()]), "name": rng.choice(["NAV_GOTO", h()]),
                "seq": rng.choice([1, h()]), "stage": rng.choice(["COMPLETED", h()]), "reason": h()}
    if apid in (Apid.THUMBNAIL, Apid.PRODUCT):
        return {"pid": rng.choice([1, h()]), "idx": rng.choice([0, h()]), "n": rng.choice([1, h()]),
                "data": rng.choice([b"abc", h()]), "meta": rng.choice([None, h()])}
    return h()


def packet(rng: random.Random) -> bytes:
    apid = rng.choice([Apid.HOUSEKEEPING] * 4 + [Apid.EVENT, Apid.CMD_RESPONSE, Apid.THUMBNAIL, Apid.PRODUCT,
                                                 Apid.TC_COMMAND, 0x07])
    try:
        body = msgpack.packb(payload(rng, apid), use_bin_type=True)
    except (OverflowError, TypeError, ValueError):
        body = b"\xc1"
    if rng.random() < 0.1:  # truncated or flipped msgpack
        body = bytes(b ^ (1 << rng.randrange(8)) if rng.random() < 0.05 else b for b in body[: rng.randint(0, 40)])
    return encode_packet(apid, rng.randrange(16384), rng.uniform(0, 2**32 - 1), body,
                         telecommand=apid == Apid.TC_COMMAND)


def frame(rng: random.Random, framer: Framer) -> bytes:
    if rng.random() < 0.2:  # raw mutated bytes: most fail the CRC, a few are plain garbage
        good = framer.pack(VC.HOUSEKEEPING, [packet(rng)])[0]
        data = bytearray(good if rng.random() < 0.5 else rng.randbytes(rng.randint(0, 80)))
        for _ in range(rng.randint(0, 4)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    return framer.pack(rng.choice([VC.REALTIME, VC.HOUSEKEEPING, VC.BULK]),
                       [packet(rng) for _ in range(rng.randint(1, 3))])[0]


def _drive(fn: Any, inputs: list[Any]) -> tuple[int, float]:
    escaped = 0
    t0 = time.perf_counter()
    for x in inputs:
        try:
            fn(x)
        except Exception:  # what the benchmark counts: an exception that got out
            escaped += 1
    return escaped, time.perf_counter() - t0


def _baseline(blobs: list[bytes]) -> float:
    t0 = time.perf_counter()
    for b in blobs:
        try:
            msgpack.unpackb(b, raw=False, strict_map_key=False)
        except Exception:  # garbage is expected here
            pass
    return time.perf_counter() - t0


def bench_station(n: int, tmp: Path) -> list[Row]:
    rng = random.Random(14)
    framer = Framer(SCID)
    frames = [frame(rng, framer) for _ in range(n)]
    archive = Archive(tmp / "station.db")
    station = Station(archive, [Vehicle(SCID, Dictionary.from_obj(DICT))], batch=500)
    clock = iter(range(10**9))

    def one(f: bytes) -> None:
        t = float(next(clock))
        station.receive(f, t)
        if int(t) % 200 == 0:
            station.poll(t)

    escaped, dt = _drive(one, frames)
    station.poll(float(n))
    base = _baseline([f[10:-4] for f in frames])
    refused = station.rejects.total()
    last_resort = station.rejects["internal_error"]
    archive.close()
    return [
        Row("station inputs (frames)", n, "inputs", target=">= 100,000 in a full run"),
        Row("station uncaught exceptions", escaped, "count", target="0"),
        Row("station last-resort catches", last_resort, "count", target="0"),
        Row("station refusals counted", refused, "count", target="> 0, by reason"),
        Row("station input rate", n / dt, "inputs/s", n / base, "msgpack.unpackb of the same bytes",
            better="higher"),
    ]


def bench_archive(n: int, tmp: Path) -> list[Row]:
    rng = random.Random(15)
    items = []
    for _ in range(n):
        key_ok = rng.random() < 0.9
        items.append(Ingest(
            SCID if key_ok else hostile(rng), 0x20 if key_ok else hostile(rng),
            rng.randrange(16384) if key_ok else hostile(rng), rng.uniform(0, 1e6) if key_ok else hostile(rng),
            rng.randbytes(8) if key_ok else hostile(rng),
            samples=[(rng.choice([rng.randint(0, 12), hostile(rng)]), hostile(rng)) for _ in range(rng.randint(0, 4))],
        ))
    archive = Archive(tmp / "ingest.db")
    batches = [items[i : i + 100] for i in range(0, n, 100)]
    escaped, dt = _drive(archive.ingest, batches)
    for cid in range(13):
        archive.channel(SCID, cid)  # everything stored reads back
    stored, refused = archive.stored, archive.refused
    archive.close()
    base = _baseline([msgpack.packb([it.seq, it.time], use_bin_type=True) if isinstance(it.seq, int)
                      and abs(it.seq) < 2**63 else b"\xc1" for it in items])
    return [
        Row("archive ingest items", n, "inputs", target=">= 100,000 in a full run"),
        Row("archive uncaught exceptions", escaped, "count", target="0"),
        Row("archive items stored / refused", stored, "items", refused, "refused (ill-typed keys)"),
        Row("archive ingest rate", n / dt, "items/s", n / base, "msgpack.unpackb of the keys", better="higher"),
    ]


def bench_socket(n: int, tmp: Path) -> list[Row]:
    (tmp / "dict.json").write_text(json.dumps(DICT))
    write_key_file(tmp / "66.key", SECRET)
    (tmp / "ground.toml").write_text(
        f'archive = "ground.db"\nrelay = "ipc://{tmp}/relay.sock"\npub = "ipc://{tmp}/pub.sock"\n'
        f'commands = "ipc://{tmp}/cmd/c.sock"\nstate_dir = "state"\n'
        '[[vehicle]]\nscid = 66\ndictionary = "dict.json"\nkey_file = "66.key"\n'
    )
    server = GroundServer(load_config(tmp / "ground.toml"))
    server.station.uplink = lambda scid, f: None  # no relay peer: signed commands go nowhere
    rng = random.Random(16)
    blobs = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            blobs.append(rng.randbytes(rng.randint(0, 40)))
            continue
        req: Any = {k: hostile(rng) for k in rng.sample(["op", "id", "scid", "name", "args", "timeout_s"],
                                                         rng.randint(0, 6))}
        if rng.random() < 0.6:
            req["op"] = rng.choice(["send", "status"])
        if rng.random() < 0.3:
            req.update(scid=66, name=rng.choice(["NAV_GOTO", "T0_RESET", "NOPE"]),
                       args=rng.choice([{"x_m": hostile(rng), "y_m": 0.0}, {"value": hostile(rng)}, hostile(rng)]))
        if rng.random() < 0.8:
            req["token"] = server.token if rng.random() < 0.9 else hostile(rng)
        if r > 0.95:
            req = hostile(rng)
        try:
            blobs.append(msgpack.packb(req, use_bin_type=True))
        except (OverflowError, TypeError, ValueError):
            blobs.append(b"\xc1")
    escaped, dt = _drive(server.handle, blobs)
    base = _baseline(blobs)
    last_resort = server.request_errors["internal_error"]
    sent = len(server.commander.commands)
    server.close()
    return [
        Row("command socket requests", n, "inputs", target=">= 100,000 in a full run"),
        Row("command socket uncaught exceptions", escaped, "count", target="0"),
        Row("command socket last-resort catches", last_resort, "count", target="0"),
        Row("command socket commands signed", sent, "count", target="only well-formed, with the token"),
        Row("command socket request rate", n / dt, "req/s", n / base, "msgpack.unpackb of the same bytes",
            better="higher"),
    ]


def run(quick: bool) -> list[Row]:
    n = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        rows = bench_station(n, tmp)
        rows += bench_archive(n, tmp)
        (tmp / "sock").mkdir()
        rows += bench_socket(n, tmp / "sock")
    total = n * 3
    escaped = sum(int(r.value) for r in rows if "uncaught" in r.name)
    rows.append(Row("all generated inputs / uncaught", total, "inputs", escaped, "uncaught exceptions"))
    return rows
