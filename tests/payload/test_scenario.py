"""The partner spectrometer flies in a scenario on the lander, and its products arrive on the ground.

``change8-payloads`` is flown through ``magpie sim --scenario`` on the simulated clock for a few
minutes; everything below is read from the ground archive alone, as an operator would: the
spectra on the payload's own APID, whole and decodable, the commissioning commands of the plan,
the payload's use against its budgets, and the vehicle's rate groups without a slip.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from magpie_spectrometer import decode_product

from flight.link.products import Reassembly
from ground.archive import Archive
from magpie.cli import main
from mission.fleet import _payload_name
from mission.scenario import load

SCENARIO = "change8-payloads"
SPEC_APID = 0x040  # slot 0 of the payload range


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("flight.events").setLevel(logging.ERROR)


def test_change8_is_listed_and_hosts_the_spectrometer_on_the_lander(capsys) -> None:
    assert main(["sim", "--scenario", "list"]) == 0
    listing = capsys.readouterr().out
    assert any(line.startswith(f"{SCENARIO}: ") for line in listing.splitlines())
    sc = load(SCENARIO)
    lander = sc.vehicle("change8")
    assert lander.kind == "lander" and lander.plan is not None
    host = next(c for c in lander.config.components if c.type == "payload_host")
    assert host.options["payload"]["spec"]["kind"] == "spectrometer"
    assert "loads=payload.spec:" in lander.config.devices["mcu"]  # the switched rail it is powered from


@pytest.mark.timeout(90)
def test_spectra_fly_on_the_lander_and_arrive_whole_on_the_ground(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["sim", "--scenario", SCENARIO, "--duration", "3m", "--out", str(out), "--quiet"]) == 0
    summary = capsys.readouterr().out
    assert "link drained" in summary
    line = next(ln for ln in summary.splitlines() if ln.strip().startswith("payload "))
    assert "spec (APID 0x040):" in line and line.endswith(" products complete, 0 partial on the ground")
    scid = load(SCENARIO).vehicle("change8").scid
    with Archive(out / "archive.db", readonly=True) as archive:
        # the spectra: every chunk of every product on the payload's APID, reassembled and decoded
        chunks = [r for r in archive.product_chunks(scid) if r[1] == SPEC_APID]
        products: dict[int, Reassembly] = {}
        got: dict[int, set[int]] = defaultdict(set)
        for _scid, _apid, pid, idx, n, data, meta, _t in chunks:
            products.setdefault(pid, Reassembly(n)).add(idx, n, data, json.loads(meta))
            got[pid].add(idx)
        assert len(products) >= 5
        sizes: dict[int, int] = {}
        for pid, r in products.items():
            assert got[pid] == set(range(r.n)), f"product {pid} incomplete: {sorted(got[pid])} of {r.n}"
            data = r.data()
            head, spectra = decode_product(data)
            assert r.meta["payload"] == "spec" and r.meta["kind"] == "spectrometer"
            assert head["bins"] == 128 and len(spectra) == r.meta["readings"] >= 1
            assert all(len(row) == 128 for row in spectra)
            sizes[pid] = len(data)
        # what the host announced on board is exactly what the ground holds, byte counts included
        events = archive.events(scid)
        announced = {int(e.args[1]): int(e.args[2]) for e in events if e.name == "PayloadProduct"}
        assert announced == sizes
        # the plan commissioned the instrument: its commands ran, its dark frame was taken
        completed = {e.args[0] for e in events if e.name == "CmdCompleted"}
        assert {"SEQ_RUN", "SPEC_DARK", "SPEC_TAKE", "SPEC_FLUSH", "IMG_CAPTURE", "IMG_DOWNLINK_PRIO"} <= completed
        names = [e.name for e in events]
        assert "DarkTaken" in names and names.count("PayloadStarted") == 1
        assert not {"PayloadHung", "PayloadCrashed", "PayloadThrottled", "PayloadSwitchedOff"} & set(names)
        # the lander's own downlink (the context thumbnail) shared the link with the payload's
        assert any(r[1] != SPEC_APID for r in archive.product_chunks(scid))

        def series(name: str) -> list[float]:
            cid = archive.channel_id(scid, name)
            assert cid is not None, name
            return [float(v) for _t, v in archive.channel(scid, cid)]

        # the payload's use against its budgets, in telemetry on the ground
        energy = series("payloads.spec.energy_wh")
        assert energy and 0 < energy[-1] < 60.0 and energy == sorted(energy)  # 2.5 W on its rail
        assert 0 < series("payloads.spec.energy_frac")[-1] < 0.9
        assert max(series("payloads.spec.data_bytes")) == sum(sizes.values())
        assert 0 < series("payloads.spec.data_frac")[-1] < 1.0
        for budget in ("cpu_frac", "events_frac"):
            values = series(f"payloads.spec.{budget}")
            assert values and max(values) < 1.0, budget
        assert series("payloads.spec.power_on")[-1] == 1
        # and the vehicle never slipped for hosting it
        for group in ("control", "imaging", "payload", "hk"):
            assert series(f"exec.{group}.slips")[-1] == 0, group
        first = [r[1:6] for r in archive.product_chunks(scid)]
    # the same seed flies the same spectra, chunk for chunk (the payload process included)
    assert main(["sim", "--scenario", SCENARIO, "--duration", "3m", "--out", str(tmp_path / "again"), "--quiet"]) == 0
    with Archive(tmp_path / "again" / "archive.db", readonly=True) as archive:
        assert [r[1:6] for r in archive.product_chunks(scid)] == first


@given(st.one_of(st.none(), st.text(max_size=60), st.binary(max_size=60),
                 st.dictionaries(st.text(max_size=8), st.text(max_size=8)).map(json.dumps)))
def test_the_fleet_summary_reads_any_archived_chunk_metadata_without_raising(meta) -> None:
    name = _payload_name(meta)
    assert name is None or (isinstance(name, str) and name)
    assert _payload_name(json.dumps({"payload": "spec", "kind": "spectrometer"})) == "spec"
