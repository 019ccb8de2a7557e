"""Nothing from the link or a file brings the ground down: station, archive and their stores."""

from __future__ import annotations

import math
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight.link.frames import VC, Framer
from flight.link.packets import Apid, encode_packet, encode_tm
from ground.archive import Archive, ArchiveError, Ingest
from ground.dictionary import Dictionary
from ground.station import Station, Vehicle
from tests.link.fixtures import DICT, SCID, ground_signer, vehicle_framer

pytestmark = pytest.mark.timeout(60)

U64_DICT: dict[str, Any] = {
    **DICT,
    "channels": [
        *DICT["channels"],
        {"id": 4, "name": "t0.count", "type": "u64", "units": "", "doc": "",
         "limits": {"yellow": None, "red": None}, "update": "always"},
        {"id": 5, "name": "sys.mode", "type": "str", "units": "", "doc": "",
         "limits": {"yellow": None, "red": None}, "update": "always"},
        {"id": 6, "name": "comm.uplink_counter_cmd", "type": "u64", "units": "", "doc": "",
         "limits": {"yellow": None, "red": None}, "update": "on_change"},
    ],
}


def make_station(tmp: Path) -> tuple[Station, Archive, list[bytes]]:
    up: list[bytes] = []
    archive = Archive(tmp / "g.db")
    station = Station(archive, [Vehicle(SCID, Dictionary.from_obj(U64_DICT), ground_signer(tmp))],
                      uplink=lambda scid, f: up.append(f))
    return station, archive, up


def hk(seq: int, t: float, samples: Any) -> bytes:
    return encode_tm(Apid.HOUSEKEEPING, seq, t, {"s": samples})


def send(station: Station, framer: Framer, packets: list[bytes], t: float) -> None:
    for frame in framer.pack(VC.HOUSEKEEPING, packets):
        station.receive(frame, t)
    station.poll(t)


def test_u64_beyond_int64_is_stored_and_read_back_losslessly(tmp_path: Path) -> None:
    station, archive, _ = make_station(tmp_path)
    framer = vehicle_framer()
    big = [2**63, 2**64 - 1, 2**63 + 12345]
    send(station, framer, [hk(i, 10.0 + i, [[4, v], [1, 12.0]]) for i, v in enumerate(big)], 20.0)
    send(station, framer, [hk(5, 30.0, [[4, 7]])], 31.0)  # later housekeeping still flows
    assert [v for _, v in archive.channel(SCID, 4)] == [*big, 7]
    assert archive.latest(SCID, 4) == (30.0, 7)
    assert station.rejects.total() == 0 and archive.count("samples") == 7
    # and through a fresh read-only connection, as the CLI reads it
    with Archive(tmp_path / "g.db", readonly=True) as ro:
        assert [v for _, v in ro.channel(SCID, 4)] == [*big, 7]
        assert [r[3] for r in ro.iter_samples(SCID) if r[1] == 4] == [*big, 7]
    archive.close()


def test_infinity_list_and_map_where_a_channel_id_belongs_are_refused_and_counted(tmp_path: Path) -> None:
    station, archive, _ = make_station(tmp_path)
    framer = vehicle_framer()
    bad = [
        hk(0, 1.0, [[math.inf, 1.0], [1, 12.5]]),  # the good sample beside it is kept
        hk(1, 2.0, [[[1, 2], 1.0]]),
        hk(2, 3.0, [[{"a": 1}, 1.0]]),
        hk(3, 4.0, [[99, 1.0]]),  # no such channel
        hk(4, 5.0, [[4, -1], [4, -(2**63)], [3, 2**32], [4, 1.5], [1, "volts"], [5, 3]]),  # out of range / wrong type
        hk(5, 6.0, "not a list"),
        encode_tm(Apid.EVENT, 0, 7.0, {"id": math.inf, "sev": "WARNING_HI", "text": "x", "args": []}),
        encode_tm(Apid.EVENT, 1, 8.0, {"id": [1], "sev": 3, "text": None, "args": {}}),
        encode_tm(Apid.CMD_RESPONSE, 0, 9.0, {"op": math.inf, "name": "X", "seq": 1, "stage": "ACCEPTED"}),
        encode_tm(Apid.CMD_RESPONSE, 1, 9.5, {"op": 1, "name": "X", "seq": 2**64 - 1, "stage": "DONE"}),
        encode_tm(Apid.THUMBNAIL, 0, 10.0, {"pid": math.inf, "idx": [0], "n": {}, "data": 1}),
        encode_tm(0x05, 0, 11.0, [1, 2, 3]),  # an APID the link does not use
        encode_packet(Apid.HOUSEKEEPING, 6, 12.0, b"\xc1\xff not msgpack"),
        encode_tm(Apid.HOUSEKEEPING, 7, 12.5, {"s": [[1, msgpack.ExtType(5, b"x")], [1, 12.0]]}),
    ]
    send(station, framer, bad, 20.0)
    send(station, framer, [hk(8, 30.0, [[1, 13.0]])], 31.0)
    r = station.rejects
    assert r["channel_id_type"] == 3 and r["unknown_channel"] == 1
    assert r["sample_range"] == 3 and r["sample_type"] == 4
    assert r["bad_housekeeping"] == 1 and r["bad_event"] == 2 and r["bad_response"] == 2
    assert r["bad_payload"] == 2 and r["unknown_apid"] == 1 and r["internal_error"] == 0
    assert [v for _, v in archive.channel(SCID, 1)] == [12.5, 12.0, 13.0]
    assert archive.count("packets") == len(bad) + 1  # every raw packet kept, so each is ACKed once
    assert archive.count("events") == 0 and archive.count("responses") == 0
    archive.close()


_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=True),
    st.text(max_size=8), st.binary(max_size=8),
)
_value = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(_leaf.filter(
    lambda k: isinstance(k, str | int)), c, max_size=3), max_leaves=8)


def fuzz_packets(draw: st.DrawFn) -> list[bytes]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        apid = draw(st.sampled_from([Apid.HOUSEKEEPING, Apid.EVENT, Apid.CMD_RESPONSE, Apid.THUMBNAIL,
                                     Apid.PRODUCT, 0x12]))
        if apid == Apid.HOUSEKEEPING:
            obj: Any = {"s": draw(st.lists(st.lists(_value, min_size=0, max_size=3) | _value, max_size=4))}
        elif apid == Apid.EVENT:
            obj = {"id": draw(_value), "sev": draw(st.sampled_from(["WARNING_HI", "X"]) | _value),
                   "text": draw(_value), "args": draw(_value)}
        elif apid == Apid.CMD_RESPONSE:
            obj = {"op": draw(_value), "name": draw(_value), "seq": draw(_value), "stage": draw(_value)}
        else:
            obj = draw(_value)
        seq = draw(st.integers(0, 16383))
        t = draw(st.floats(0, 2**32 - 1))
        payload = msgpack.packb(obj, use_bin_type=True) if draw(st.booleans()) else draw(st.binary(max_size=40))
        out.append(encode_packet(apid, seq, t, payload))
    return out


@st.composite
def inbound(draw: st.DrawFn) -> bytes:
    """A frame for our spacecraft (CRC good) with fuzzed packets, or arbitrary bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=200))
    return _FUZZ_FRAMER.pack(VC.HOUSEKEEPING, fuzz_packets(draw))[0]


_FUZZ_FRAMER = vehicle_framer()  # one sender for every example: its sequence numbers only grow


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(inbound(), min_size=1, max_size=4))
def test_station_takes_any_input_without_raising(tmp_path_factory: pytest.TempPathFactory,
                                                 frames: list[bytes]) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    station, archive, _ = make_station(tmp)
    try:
        for i, frame in enumerate(frames):
            station.receive(frame, float(i))
            station.poll(float(i) + 0.5)
        assert station.rejects["internal_error"] == 0
        assert station.rejects["archive_write_failed"] == 0
        for cid in (1, 4, 5):  # whatever was stored reads back
            archive.channel(SCID, cid)
    finally:
        archive.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(samples=st.lists(st.tuples(st.integers(-(2**70), 2**70) | _value, _value), max_size=6),
       seq=st.integers(-5, 20000).filter(lambda s: s != 1), t=st.floats(allow_nan=True) | st.integers())
def test_archive_ingest_takes_any_item(tmp_path_factory: pytest.TempPathFactory, samples: list,
                                       seq: int, t: float) -> None:
    archive = Archive(tmp_path_factory.mktemp("ingest") / "a.db")
    try:
        flags = archive.ingest([Ingest(SCID, 0x20, seq, t, b"raw", samples=samples),
                                Ingest(SCID, 0x20, 1, 1.0, b"ok", samples=[(1, 2**64 - 1)])])
        assert flags[1] is True and (1.0, 2**64 - 1) in [tuple(r) for r in archive.channel(SCID, 1)]
    finally:
        archive.close()


def test_resync_jumps_the_signer_past_the_vehicles_counter(tmp_path: Path) -> None:
    station, archive, _ = make_station(tmp_path)
    signer = station.vehicles[SCID].signer
    assert signer is not None and signer.next_counter == 1
    framer = vehicle_framer()
    send(station, framer, [hk(0, 1.0, [[6, 5000]])], 2.0)
    assert signer.next_counter == 5001 and station.stats.resyncs == 1
    send(station, framer, [hk(1, 3.0, [[6, 10]])], 4.0)  # lower: no jump back
    assert signer.next_counter == 5001
    archive.close()


def test_corrupt_archive_is_moved_aside_and_a_fresh_one_starts(tmp_path: Path) -> None:
    path = tmp_path / "archive.db"
    a = Archive(path)
    a.ingest([Ingest(SCID, 0x20, s, float(s), b"x", samples=[(1, 1.0)]) for s in range(200)])
    a.close()
    size = path.stat().st_size
    with open(path, "r+b") as f:  # half-truncated
        f.truncate(size // 2)
    b = Archive(path)
    assert b.problems and "unreadable" in b.problems[0]
    assert [e.name for e in b.events()] == ["ArchiveRecovered"]
    assert b.count("packets") == 0 and list(tmp_path.glob("archive.db.corrupt-*"))
    b.close()
    path.write_bytes(os.urandom(5000))  # garbled
    c = Archive(path)
    assert c.problems and c.count("packets") == 0
    c.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_read_only_archive_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no archive at"):
        Archive(tmp_path / "none.db", readonly=True)
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(ArchiveError, match="is empty"):
        Archive(tmp_path / "empty.db", readonly=True)
    (tmp_path / "junk.db").write_bytes(os.urandom(3000))
    with pytest.raises(ArchiveError, match="unreadable"):
        Archive(tmp_path / "junk.db", readonly=True)
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE x (a)")
    with pytest.raises(ArchiveError, match="not a Magpie archive"):
        Archive(tmp_path / "other.db", readonly=True)


_plainish = st.one_of(st.floats(allow_nan=True), st.integers(-(2**64), 2**64), st.text(max_size=4),
                      st.booleans(), st.none(), st.binary(max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(packets=st.lists(st.lists(st.tuples(st.integers(-(2**64), 2**64) | st.booleans(), _plainish),
                                 max_size=6), min_size=1, max_size=5),
       dup=st.booleans())
def test_a_batch_stores_the_rows_it_would_store_item_by_item(tmp_path_factory: pytest.TempPathFactory,
                                                             packets: list, dup: bool) -> None:
    """The whole-batch path (one executemany, samples taken whole) and the item-by-item path
    store the same packet ids and the same sample rows, duplicates and odd values included."""
    tmp = tmp_path_factory.mktemp("same")

    def items() -> list[Ingest]:
        out = [Ingest(SCID, 0x20, i, 1.0 + i, b"p%d" % i, samples=[list(p) for p in s])
               for i, s in enumerate(packets)]
        return out + out[:1] if dup else out

    batched, single = Archive(tmp / "batch.db"), Archive(tmp / "single.db")
    try:
        flags = batched.ingest(items(), received_at=0.0)
        one_by_one = [f for it in items() for f in single.ingest([it], received_at=0.0)]
        assert flags == one_by_one and flags.count(True) == len(packets)
        for table in ("packets", "samples"):
            query = f"SELECT * FROM {table} ORDER BY 1, 2, 3, 4"
            assert batched._query(query) == single._query(query)
    finally:
        batched.close()
        single.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(st.sampled_from([1, 2, 3, 4, 5, 6, 99]),
                                st.floats(allow_nan=True) | st.integers(-(2**65), 2**65) | st.booleans()
                                | st.text(max_size=3)), max_size=8))
def test_station_takes_a_sample_list_as_it_checks_each_pair(tmp_path_factory: pytest.TempPathFactory,
                                                            pairs: list) -> None:
    """A housekeeping list taken whole gives exactly the samples the pair-by-pair check keeps."""
    from flight.types import TYPES
    from ground.station import Refused, check_value

    station, archive, _ = make_station(tmp_path_factory.mktemp("plan"))
    try:
        v = station.vehicles[SCID]
        expected = []
        for cid, value in pairs:
            ch = v.dictionary.channels_by_id.get(cid)
            if ch is None:
                continue
            try:
                expected.append((cid, check_value(str(ch["type"]), value)))
            except Refused:
                pass
        for _ in range(2):  # the second time through the plan cached for this channel list
            got, _resync = station._samples(v, {"s": [list(p) for p in pairs]})
            assert got == expected
            assert [type(x) for _, x in got] == [type(x) for _, x in expected]
        assert all(TYPES.get(str(v.dictionary.channels_by_id[c]["type"])) for c, _ in got)
    finally:
        archive.close()
