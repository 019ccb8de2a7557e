"""The spectrometer flies on the lander through ``magpie sim``; its spectra reach the ground archive."""

from __future__ import annotations

import json
import sqlite3
from importlib import resources
from pathlib import Path

from magpie_spectrometer import decode_product

from flight.link.products import Reassembly
from magpie.cli import main

CONFIGS = resources.files("magpie.configs")
LANDER = str(CONFIGS.joinpath("sim_lander_payload.toml"))
PLAN = str(CONFIGS.joinpath("payload_demo.seq"))


def fly(out: Path, duration: str = "60s") -> None:
    assert main(["sim", "--config", LANDER, "--seq", PLAN, "--duration", duration, "--out", str(out),
                 "--quiet"]) == 0


def test_spectra_arrive_in_the_ground_archive_and_runs_repeat(tmp_path, capsys):
    fly(tmp_path / "a")
    summary = capsys.readouterr().out
    assert "0x40 " in summary  # the payload's APID, archived
    db = sqlite3.connect(tmp_path / "a" / "archive.db")
    rows = db.execute("SELECT apid, pid, idx, n, data, meta FROM product_chunks ORDER BY pid, idx").fetchall()
    assert rows and {r[0] for r in rows} == {0x040}
    products: dict[int, Reassembly] = {}
    for _apid, pid, idx, n, data, meta in rows:
        products.setdefault(pid, Reassembly(n)).add(idx, n, data, json.loads(meta))
    assert len(products) >= 5
    for r in products.values():
        head, spectra = decode_product(r.data())
        assert r.meta["payload"] == "spec" and r.meta["kind"] == "spectrometer"
        assert head["bins"] == 128 and len(spectra) == head["readings"] >= 1
    # the commanded dark frame, and the payload's use against its budgets, reached the ground too
    events = {name for (name,) in db.execute("SELECT name FROM events")}
    assert {"DarkTaken", "PayloadStarted", "PayloadProduct"} <= events
    ids = {c["name"]: c["id"] for c in json.loads((tmp_path / "a" / "dictionary.json").read_text())["channels"]}
    energy = [v for (v,) in db.execute("SELECT value FROM samples WHERE channel=? ORDER BY time",
                                       (ids["payloads.spec.energy_wh"],))]
    assert energy and 0 < energy[-1] < 40.0 and energy == sorted(energy)  # 2.5 W on its rail, within budget
    stages = db.execute("SELECT name, stage FROM responses WHERE name LIKE 'SPEC_%'").fetchall()
    assert ("SPEC_DARK", "COMPLETED") in stages and ("SPEC_TAKE", "COMPLETED") in stages
    # the operator's view: listed and exported as the files the payload wrote
    capsys.readouterr()
    assert main(["payloads", "list", "--archive", str(tmp_path / "a" / "archive.db")]) == 0
    listing = capsys.readouterr().out
    assert listing.count(" whole ") == len(products) and "spectrum-00001.bin" in listing
    assert main(["payloads", "export", "--archive", str(tmp_path / "a" / "archive.db"), "--out",
                 str(tmp_path / "exp")]) == 0
    exported = sorted((tmp_path / "exp" / "spec").glob("spectrum-*.bin"))
    assert len(exported) == len(products)
    assert decode_product(exported[0].read_bytes())[0]["bins"] == 128
    assert json.loads(exported[0].with_name(exported[0].name + ".json").read_text())["apid"] == 0x040
    # the same seed flies the same mission, byte for byte
    fly(tmp_path / "b")
    assert (tmp_path / "a" / "telemetry.jsonl").read_bytes() == (tmp_path / "b" / "telemetry.jsonl").read_bytes()


def test_payload_declarations_are_in_the_vehicle_dictionary(capsys):
    assert main(["dict", "--config", LANDER]) == 0
    d = json.loads(capsys.readouterr().out)
    spec = [c for c in d["components"] if c["name"] == "spec"]
    assert spec and spec[0]["id_base"] == 0x8000
    cmds = {c["name"]: c["opcode"] for c in d["commands"] if c["component"] == "spec"}
    assert cmds == {"SPEC_TAKE": 0x8000, "SPEC_DARK": 0x8001, "SPEC_FLUSH": 0x8002}
    chans = [c for c in d["channels"] if c["name"].startswith("spec.")]
    assert all(0x8000 <= c["id"] <= 0x80FF for c in chans) and len(chans) == 6
    use = {c["name"] for c in d["channels"] if c["name"].startswith("payloads.spec.")}
    assert {"payloads.spec.cpu_frac", "payloads.spec.energy_frac", "payloads.spec.data_frac",
            "payloads.spec.events_frac"} <= use


def test_payload_configuration_errors_are_one_line_and_exit_2(tmp_path, capsys):
    text = Path(LANDER).read_text(encoding="utf-8")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('kind = "spectrometer"', 'kind = "telescope"'), encoding="utf-8")
    assert main(["dict", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "payload.spec.kind: unknown payload kind 'telescope'" in err
    bad.write_text(text.replace("cpu_ms_per_step = 50.0", 'cpu_ms_per_step = "fast"'), encoding="utf-8")
    assert main(["dict", "--config", str(bad)]) == 2
    assert "payload.spec.cpu_ms_per_step: expected a number" in capsys.readouterr().err
