"""Ground side: malformed chunks are refused at the station; ``magpie images`` over an archive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flight.link.frames import VC, Framer
from flight.link.packets import Apid, Packetizer
from flight.link.products import product_chunks
from ground.archive import Archive
from ground.station import Station, Vehicle
from magpie.cli import main
from tests.link.fixtures import SCID, dictionary

pytestmark = pytest.mark.timeout(60)


def feed(station: Station, chunks: list, pk: Packetizer, framer: Framer, now: float = 1.0) -> None:
    for c in chunks:
        _, raw = pk.chunk(now, c.pid, c.idx, c.n, c.data, c.meta, c.thumbnail)
        for frame in framer.pack(VC.BULK, [raw]):
            station.receive(frame, now)
    station.flush(now)


def test_station_refuses_malformed_chunks_and_cli_shows_partial_products(tmp_path: Path, capsys) -> None:
    archive = Archive(tmp_path / "a.db")
    station = Station(archive, [Vehicle(SCID, dictionary())])
    pk, framer = Packetizer(), Framer(SCID)
    data = bytes(range(256)) * 40
    whole = product_chunks(0, 5, data, {"format": "png", "width": 8, "height": 8}, 1000, thumbnail=False)
    feed(station, whole, pk, framer)
    part = product_chunks(0, 6, data, {"format": "jpeg"}, 1000, thumbnail=False)
    feed(station, [c for c in part if c.idx not in (2, 3, 7)], pk, framer)
    for bad in ({"pid": 7, "idx": 5, "n": 2, "data": b"x", "meta": None},
                {"pid": -1, "idx": 0, "n": 1, "data": b"x", "meta": None},
                {"pid": 8, "idx": 0, "n": 1, "data": "not bytes", "meta": None},
                {"pid": 9, "idx": 0, "n": 1, "data": b"x", "meta": [1, 2]}):
        _, raw = pk.packet(Apid.PRODUCT, 1.0, bad)
        station.receive(framer.pack(VC.BULK, [raw])[0], 1.0)
    station.flush(1.0)
    assert station.stats.bad_packets == 4
    assert {row[2] for row in archive.product_chunks(SCID)} == {5, 6}
    archive.close()

    db = str(tmp_path / "a.db")
    assert main(["images", "list", "--archive", db]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "partial" in out and "2-3,7" in out
    assert main(["images", "missing", "--archive", db]) == 0
    assert 'IMG_RESEND pid=6 what=FULL segments="2-3,7"' in capsys.readouterr().out
    assert main(["images", "export", "--archive", db, "--out", str(tmp_path / "x")]) == 0
    assert "wrote 1 image(s) and 2 sidecar(s)" in capsys.readouterr().out
    assert (tmp_path / "x" / f"{SCID}-00000005-full.png").read_bytes() == data
    side = json.loads((tmp_path / "x" / f"{SCID}-00000006-full.json").read_text())
    assert side["status"] == "partial" and side["missing"] == "2-3,7" and side["file"] is None
    assert main(["images", "show", "5", "--archive", db]) == 0
    assert json.loads(capsys.readouterr().out)[0]["status"] == "complete"
