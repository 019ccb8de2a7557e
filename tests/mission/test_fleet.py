"""The fleet mission's own behaviour: idle skipping, the ground's vehicle roster, the site."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from flight.link.layouts import HK_APIDS
from mission.fleet import FleetMission
from mission.scenario import parse
from tests.mission.archive_checks import gaps, open_archive

PASSES = """
[scenario]
name = "passes"
body = "moon"
seed = 7
terrain_size_m = 30.0
start_hours_after_sunrise = 30.0
[relay]
preset = "ideal"
light_time_s = 30.0
hop_delay_s = 0.1
rate_bps = { down = 64000, up = 16000 }
windows = { period_s = 2000.0, up_s = 400.0, phase_s = 500.0 }
[[vehicle]]
name = "lander"
scid = 40
kind = "lander"
config = "surface_lander.toml"
start = { x = 15.0, y = 15.0 }
"""


def _fly(out: Path, skip: bool) -> tuple[dict[str, list[tuple[float, float]]], int, float]:
    sc = parse(__import__("tomllib").loads(PASSES), "passes.toml", out)
    m = FleetMission(sc, out, fast=True, skip_idle=skip)
    try:
        m.advance(m.start_s + 5000.0)
        assert m.drain(2100.0)
        skipped = m.skipped_s
    finally:
        m.close()
    with open_archive(out) as archive:
        series = {}
        for name in ("power.soc", "thermal.board_c", "imu.tilt_deg"):
            cid = archive.channel_id(40, name)
            assert cid is not None
            series[name] = [(t, v) for t, v in archive.channel(40, cid)]
        assert gaps(archive, 40) == {}
        # housekeeping counted by cycle: which on_change packets a cycle carries depends on which
        # counters moved, and the link's own counters move less while idle spans are skipped
        rows = archive.packets(40)
        cycles = {t for _, apid, _, t, *_ in rows if apid in HK_APIDS}
        return series, len(cycles) + sum(1 for _, apid, *_ in rows if apid not in HK_APIDS), skipped


@pytest.mark.timeout(120)
def test_fast_mode_skips_idle_spans_with_the_same_results(tmp_path: Path) -> None:
    logging.getLogger("flight.events").setLevel(logging.ERROR)
    stepped, n_stepped, none_skipped = _fly(tmp_path / "stepped", skip=False)
    skipped, n_skipped, skipped_s = _fly(tmp_path / "skipped", skip=True)
    assert none_skipped == 0 and skipped_s > 2000.0  # most of the time between passes
    assert n_skipped == n_stepped
    for name in stepped:
        assert skipped[name] == stepped[name], name
    assert len(stepped["power.soc"]) > 100


def test_ground_cli_names_the_vehicles_when_scid_is_missing_or_wrong(tmp_path: Path) -> None:
    doc = __import__("tomllib").loads(PASSES.replace('preset = "ideal"', 'preset = "ideal"\n') + """
[[vehicle]]
name = "rover"
scid = 41
kind = "rover"
config = "surface_rover.toml"
start = { x = 20.0, y = 15.0 }
""")
    m = FleetMission(parse(doc, "two.toml", tmp_path), tmp_path)
    m.close()
    for extra, expect in (([], "choose one with --scid: 40 (lander), 41 (rover)"),
                          (["--scid", "9"], "--scid 9: no such vehicle; vehicles: 40 (lander), 41 (rover)")):
        r = subprocess.run([sys.executable, "-m", "magpie.cli", "tlm", "--config", str(tmp_path / "ground.toml"),
                            "--since", "0", *extra, "power.soc"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and expect in r.stderr and r.stderr.count("\n") == 1, r.stderr
    r = subprocess.run([sys.executable, "-m", "magpie.cli", "tlm", "--config", str(tmp_path / "ground.toml"),
                        "--since", "0", "--scid", "41", "power.soc"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
