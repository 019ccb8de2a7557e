"""The XTCE export: valid against the XTCE 1.2 schema, and enough for an independent decoder.

``space-packet-parser`` reads only the exported XTCE and decodes every housekeeping packet the
ground archived in a lockstep mission; each fresh value must equal Magpie's archived sample of
that packet, and nothing else may be archived from it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import xmlschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from space_packet_parser import xtce as spp_xtce
from space_packet_parser.xtce.definitions import XtcePacketDefinition

from flight.config import load as load_config
from flight.link.cfdp import APID_CFDP
from flight.link.frames import VC, Framer
from flight.link.layouts import HK_APIDS, Layouts, legal_name
from flight.link.packets import PAYLOAD_APIDS, Apid, encode_packet, encode_tm
from ground.archive import Archive, from_sql
from ground.dictionary import Dictionary
from ground.station import Station, Vehicle
from ground.xtce import NAMESPACE, ROOT, to_xtce
from magpie.mission import LockstepMission

pytestmark = pytest.mark.timeout(120)

SCHEMA = Path(spp_xtce.__file__).parent / "schemas" / "SpaceSystem.xsd"
XTCE = "{http://www.omg.org/spec/XTCE/20180204}"


@pytest.fixture(scope="module")
def mission_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A short lockstep mission on the simulated clock: its archive file and dictionary."""
    out = tmp_path_factory.mktemp("xtce-mission")
    cfg = load_config(Path(str(resources.files("magpie.configs").joinpath("core_mission.toml"))))
    m = LockstepMission(cfg, out, preset="moon-farside", seed=5,
                        plan=[(5.0, "CMD_PING", {"key": 7}), (20.0, "CMD_NOOP", {})])
    try:
        m.advance(90.0)
        assert m.drain(600.0)
        doc = m.vehicle.dictionary
    finally:
        m.close()
    return out / "archive.db", doc


def test_export_validates_against_the_xtce_schema(mission_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    _, doc = mission_run
    path = tmp_path / "vehicle.xml"
    path.write_text(to_xtce(doc), encoding="utf-8")
    schema = xmlschema.XMLSchema(str(SCHEMA))
    errors = [str(e)[:300] for e in schema.iter_errors(str(path))]
    assert errors == []
    # every channel, packet and command is in it, under a legal name, the original as an alias
    root = xmlschema.XMLResource(str(path)).root
    params = {p.get("name"): p for p in root.iter(f"{XTCE}Parameter")}
    aliases = {a.get("alias") for a in root.iter(f"{XTCE}Alias") if a.get("nameSpace") == NAMESPACE}
    for ch in doc["channels"]:
        assert ch["name"] in aliases
        assert any(n == legal_name(ch["name"]) or n.startswith(legal_name(ch["name"]) + "_") for n in params)
    assert all("." not in n for n in params)
    containers = {c.get("name") for c in root.iter(f"{XTCE}SequenceContainer")}
    assert {f"hk_{d['name']}" for d in doc["packets"]} | {ROOT} <= containers
    commands = {c.get("name"): c for c in root.iter(f"{XTCE}MetaCommand")}
    for c in doc["commands"]:
        cmd = commands[legal_name(c["name"])]
        args = {a.get("name") for a in cmd.iter(f"{XTCE}Argument")}
        assert {legal_name(a["name"]) for a in c["args"]} | {"auth_tag"} == args


def test_an_independent_decoder_reads_the_archive_value_for_value(mission_run: tuple[Path, dict[str, Any]],
                                                                  tmp_path: Path) -> None:
    archive_path, doc = mission_run
    path = tmp_path / "vehicle.xml"
    path.write_text(to_xtce(doc), encoding="utf-8")
    definition = XtcePacketDefinition.from_xtce(path, root_container_name=ROOT)
    by_name = {legal_name(ch["name"]): ch for ch in doc["channels"]}
    name_of = {ch["id"]: name for name, ch in by_name.items()}
    assert len(by_name) == len(doc["channels"])  # no two names clash in this dictionary
    packets = {int(d["id"]): d for d in doc["packets"]}
    with sqlite3.connect(archive_path) as db:
        rows = db.execute("SELECT id, apid, bytes FROM packets WHERE apid BETWEEN ? AND ? ORDER BY id",
                          (HK_APIDS.start, HK_APIDS.stop - 1)).fetchall()
        archived: dict[int, dict[int, Any]] = {}
        for packet, cid, value in db.execute("SELECT packet, channel, value FROM samples"):
            archived.setdefault(packet, {})[cid] = from_sql(value) if type(value) is bytes else value
    assert len(rows) > 50
    compared = 0
    types_seen: set[str] = set()
    for row_id, apid, raw in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a packet longer or shorter than its layout fails here
            pkt = definition.parse_bytes(raw)
        assert pkt["ccsds_apid"] == apid and pkt["ccsds_secondary_header"] == 1
        layout = packets[pkt["hk_packet_id"]]
        decoded = {}
        for cid in layout["channels"]:
            name = name_of[cid]
            ch = by_name[name]
            if pkt[f"{name}_fresh"]:
                value = pkt[name]
                decoded[cid] = bool(value) if ch["type"] == "bool" else str(value) if ch["type"] == "str" else value
                types_seen.add(ch["type"])
        mine = archived.get(row_id, {})
        assert decoded == mine, f"packet {row_id} ({layout['name']})"
        compared += len(mine)
    assert compared > 1000
    assert {"f32", "u32", "str", "u64"} <= types_seen


def test_the_independent_decoder_reads_events_and_frames_every_other_packet(
        mission_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    archive_path, doc = mission_run
    path = tmp_path / "vehicle.xml"
    path.write_text(to_xtce(doc), encoding="utf-8")
    definition = XtcePacketDefinition.from_xtce(path, root_container_name=ROOT)
    events = {int(e["id"]): e for e in doc["events"]}
    with sqlite3.connect(archive_path) as db:
        rows = db.execute("SELECT id, apid, bytes FROM packets WHERE apid NOT BETWEEN ? AND ? ORDER BY id",
                          (HK_APIDS.start, HK_APIDS.stop - 1)).fetchall()
        archived = {packet: (eid, json.loads(args), text) for packet, eid, args, text in
                    db.execute("SELECT packet, event_id, args, text FROM events")}
    kinds: dict[int, int] = {}
    for row_id, apid, raw in rows:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pkt = definition.parse_bytes(raw)
        kinds[apid] = kinds.get(apid, 0) + 1
        if apid != Apid.EVENT:  # msgpack maps, framed as opaque octets to the packet's end
            payload = next(v for k, v in pkt.items() if k.endswith("_payload"))
            assert bytes(payload) == raw[12:]
            continue
        ev = events[pkt["event_id"]]
        prefix = legal_name(f"{ev['component']}_{ev['name']}")
        args = []
        for a in ev["args"]:
            name = f"{prefix}__{legal_name(a['name'])}"
            args.append((str(pkt[name]) if a["type"] == "str" else pkt[name]) if pkt[f"{name}_valid"] else None)
        assert archived[row_id] == (pkt["event_id"], args, str(pkt["event_text"])), ev["name"]
    assert kinds.get(Apid.EVENT, 0) > 5 and kinds.get(Apid.CMD_RESPONSE, 0) >= 2


def test_dict_cli_writes_xtce_and_refuses_a_bad_path(mission_run: tuple[Path, dict[str, Any]],
                                                     tmp_path: Path) -> None:
    _, doc = mission_run
    src = tmp_path / "dictionary.json"
    src.write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "vehicle.xml"
    run = subprocess.run([sys.executable, "-m", "magpie.cli", "dict", "--dict", str(src), "--xtce", str(out)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert out.read_text(encoding="utf-8") == to_xtce(doc)
    assert f"{len(doc['packets'])} housekeeping packets" in run.stderr
    # from an assembled vehicle (the default simulated rover), beside its dictionary JSON
    run = subprocess.run([sys.executable, "-m", "magpie.cli", "dict", "--xtce", str(tmp_path / "rover.xml"),
                          "-o", str(tmp_path / "rover.json")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    rover = json.loads((tmp_path / "rover.json").read_text(encoding="utf-8"))
    assert (tmp_path / "rover.xml").read_text(encoding="utf-8") == to_xtce(rover)
    for argv in (["--dict", str(src), "--xtce", str(tmp_path / "no" / "such" / "dir.xml")],
                 ["--xtce", str(tmp_path / "no" / "such" / "dir.xml")],
                 ["--dict", str(tmp_path / "missing.json"), "--xtce", str(out)]):
        bad = subprocess.run([sys.executable, "-m", "magpie.cli", "dict", *argv], capture_output=True, text=True,
                             timeout=60)
        assert bad.returncode == 2
        assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr and bad.stderr.startswith("magpie dict:")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from([Apid.EVENT, *HK_APIDS[:25]]), st.binary(max_size=80)), min_size=1,
                max_size=6))
def test_a_station_with_fixed_layouts_survives_any_payload(mission_run: tuple[Path, dict[str, Any]],
                                                            tmp_path_factory: pytest.TempPathFactory,
                                                            garbage: list[tuple[int, bytes]]) -> None:
    """Forged or garbled payloads on the layout APIDs cost their packet, never the station."""
    _, doc = mission_run
    scid = doc["spacecraft"]["id"]
    layouts = Layouts.from_dictionary(doc)
    assert layouts is not None
    with Archive(tmp_path_factory.mktemp("garbage") / "g.db") as archive:
        station = Station(archive, [Vehicle(scid, Dictionary.from_obj(doc))])
        packets = [encode_packet(apid, i, 1.0 + i, body) for i, (apid, body) in enumerate(garbage)]
        good_apid, good = layouts.encode([(doc["packets"][0]["channels"][0], 1)])[0][0]
        packets.append(encode_packet(good_apid, 99, 50.0, good))
        for frame in Framer(scid).pack(VC.HOUSEKEEPING, packets):
            station.receive(frame, 60.0)
        station.poll(60.0)
        assert station.rejects["internal_error"] == 0
        assert archive.count("packets") == len(packets)  # every raw packet kept (and so ACKed)
        assert archive.latest(scid, doc["packets"][0]["channels"][0]) == (50.0, 1)


def test_every_other_packet_kind_is_framed_to_its_end(mission_run: tuple[Path, dict[str, Any]],
                                                      tmp_path: Path) -> None:
    """Command responses, product chunks, hosted payloads' chunks and CFDP PDUs: opaque octets."""
    _, doc = mission_run
    path = tmp_path / "vehicle.xml"
    path.write_text(to_xtce(doc), encoding="utf-8")
    definition = XtcePacketDefinition.from_xtce(path, root_container_name=ROOT)
    chunk = {"pid": 3, "idx": 0, "n": 1, "data": b"\x00\xff" * 20, "meta": None}
    for apid in (Apid.CMD_RESPONSE, Apid.THUMBNAIL, Apid.PRODUCT, APID_CFDP, PAYLOAD_APIDS.start,
                 PAYLOAD_APIDS.stop - 1):
        raw = encode_tm(int(apid), 5, 12.5, chunk)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            pkt = definition.parse_bytes(raw)
        payloads = [bytes(v) for k, v in pkt.items() if k.endswith("_payload")]
        assert payloads == [raw[12:]] and pkt["time_coarse"] == 12 and pkt["time_fine"] == 0x8000, hex(apid)
