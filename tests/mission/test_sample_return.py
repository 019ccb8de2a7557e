"""change5-sample-return on the simulated clock, judged from the ground archive alone.

The nominal run drills 2 m, scoops, seals and arms the ascent before the timeline's deadline; a
seeded drill jam switches the timeline to its contingency, which still seals before the
deadline, and fault protection never goes to SAFE. Each run is about a second of wall time.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mission.fleet import FleetMission, fly_scenario
from mission.scenario import load
from tests.mission.archive_checks import gaps, open_archive

pytestmark = pytest.mark.timeout(120)

DEADLINE_S = 900.0  # change5_sample.seq: deadline +900 from its start


@pytest.fixture(autouse=True)
def _quiet() -> None:
    logging.getLogger("flight.events").setLevel(logging.ERROR)


def outcome(path: Path, scid: int) -> dict[str, list[tuple[float, str]]]:
    """Event name -> [(time, text)] of every archived event of one vehicle."""
    out: dict[str, list[tuple[float, str]]] = {}
    with open_archive(path) as archive:
        assert gaps(archive, scid) == {}
        for e in archive.events(scid):
            out.setdefault(e.name, []).append((float(e.time), e.text))
        mass_id = archive.channel_id(scid, "container.mass_kg")
        out["mass"] = [(float(t), str(v)) for t, v in archive.channel(scid, mass_id)]
    return out


def kg(text: str, after: str) -> float:
    """The number after ``after`` in an event's text ("container sealed with 0.66 kg")."""
    return float(text.split(after)[1].split()[0])


def never_safe(ev: dict[str, list[tuple[float, str]]]) -> bool:
    return not any("-> SAFE" in text for _, text in ev.get("ModeChanged", []))


def test_the_nominal_run_drills_scoops_and_seals_before_the_deadline(tmp_path: Path) -> None:
    sc = load("change5-sample-return")
    lander = sc.vehicle("change5")
    summary = fly_scenario(sc, tmp_path, 700.0)
    assert summary.drained
    ev = outcome(tmp_path, lander.scid)
    (start, _), = ev["SeqStarted"]
    (reached, text), = ev["DrillDepthReached"]
    assert "2.0 m" in text
    (sealed, text), = ev["ContainerSealed"]
    assert start < reached < sealed < start + DEADLINE_S
    core = kg(ev["DrillDepthReached"][0][1], "core ")
    scooped = kg(ev["ArmScooped"][0][1], "holds ")
    assert core == pytest.approx(2.0 * 0.13, abs=0.001) and 0.2 < scooped <= 0.4
    assert kg(text, " with ") == pytest.approx(core + scooped, abs=0.002)
    assert ev["AscentReady"] and ev["AscentArmed"][0][0] > sealed
    assert "SeqContingency" not in ev and "DrillJammed" not in ev
    assert [n for n in ev if n == "SeqCompleted"] and never_safe(ev)
    modes = [text.split(":")[0] for _, text in ev["ModeChanged"]]
    assert modes[-2:] == ["mode STANDBY -> SAMPLING", "mode SAMPLING -> ASCENT_PREP"]
    assert float(ev["mass"][-1][1]) > 0.5
    assert [line for line in summary.lines() if "ContainerSealed" in line]


def test_a_drill_jam_switches_to_the_scoop_and_still_seals_before_the_deadline_without_safe(tmp_path: Path) -> None:
    sc = load("change5-sample-return")
    lander = sc.vehicle("change5")
    summary = fly_scenario(sc, tmp_path, 700.0, faults=("drill-jam",))
    assert summary.drained
    ev = outcome(tmp_path, lander.scid)
    (start, _) = ev["SeqStarted"][0]
    (jammed, text), = ev["DrillJammed"]
    assert re.search(r"jammed at 0\.(89|90)\d* m", text) and "retracting" in text
    (switched, text), = ev["SeqContingency"]
    assert "change5_scoop_only" in text and jammed <= switched
    (sealed, text), = ev["ContainerSealed"]
    assert switched < sealed < start + DEADLINE_S
    # the partial core (0.9 m at 0.13 kg/m) and one scoop
    assert kg(text, " with ") == pytest.approx(0.9 * 0.13 + kg(ev["ArmScooped"][0][1], "holds "), abs=0.002)
    assert ev["AscentArmed"][0][0] > sealed and "DrillDepthReached" not in ev
    # fault protection saw the jam in a critical sequence: to the contingency, not to SAFE
    assert "drill_jam" in ev["MonitorTripped"][0][1] and "critical sequence" in ev["FaultToContingency"][0][1]
    assert "drill_jam" in ev["SeqContingency"][0][1] and never_safe(ev)


def test_the_change4_lander_is_the_same_kind_without_sampling() -> None:
    far, sample = load("change4-farside").vehicle("change4"), load("change5-sample-return").vehicle("change5")
    assert far.kind == sample.kind == "lander"
    assert far.sampling is None and sample.sampling is not None
    assert not any(url.startswith("sim://sampling") for url in far.config.devices.values())
    assert [p.name for p in sample.sequences] == ["change5_scoop_only.seq"]


def test_a_fault_the_scenario_cannot_take_is_refused_before_anything_flies(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no vehicle of change4-farside has a drill"):
        FleetMission(load("change4-farside"), tmp_path, faults=("drill-jam",))
    with pytest.raises(ValueError, match="unknown fault"):
        FleetMission(load("change5-sample-return"), tmp_path, faults=("wheel-off",))


def _sim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "magpie.cli", "sim", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=100)


def test_magpie_sim_fault_drill_jam_from_the_command_line(tmp_path: Path) -> None:
    r = _sim("--scenario", "change5-sample-return", "--duration", "10m", "--fault", "drill-jam", "--quiet",
             "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "DrillJammed" in r.stdout and "SeqContingency" in r.stdout and "ContainerSealed" in r.stdout
    r = _sim("--scenario", "change4-farside", "--fault", "drill-jam", "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "has a drill" in r.stderr
    r = _sim("--fault", "drill-jam", "--out", str(tmp_path / "y"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--scenario" in r.stderr
    r = _sim("--scenario", "change5-sample-return", "--fault", "bogus", cwd=tmp_path)
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("extra, expect", [
    ('kind = "rover"\nsampling = { container = { seal_s = 5 } }\n', "only a vehicle of kind lander"),
    ('kind = "lander"\nsampling = { shovel = {} }\n', "sampling.shovel: unknown key"),
    ('kind = "lander"\nsampling = { drill = { cutout_c = 50, restart_c = 60 } }\n', "restart_c must be below"),
    ('kind = "lander"\nsequences = ["no-such.seq"]\n', "sequences: sequence 'no-such.seq' does not exist"),
])
def test_bad_sampling_tables_are_refused_naming_the_key(tmp_path: Path, extra: str, expect: str) -> None:
    from mission.scenario import ScenarioError

    path = tmp_path / "bad.toml"
    path.write_text('[scenario]\nname = "bad"\nterrain_size_m = 40.0\n[relay]\npreset = "ideal"\n'
                    '[[vehicle]]\nname = "a"\nscid = 5\nconfig = "change5_lander.toml"\n' + extra, encoding="utf-8")
    with pytest.raises(ScenarioError, match=expect) as err:
        load(path)
    assert "\n" not in str(err.value)


def test_a_jam_outside_a_critical_timeline_puts_the_lander_in_safe(tmp_path: Path) -> None:
    import dataclasses

    sc = load("change5-sample-return")
    plain = tmp_path / "plain.seq"  # the same start, not marked critical and without a contingency
    plain.write_text("+0 MODE_SET mode=SAMPLING\n+0 DRILL_START depth_m=2.0 rate_mm_s=10\n", encoding="utf-8")
    lander = dataclasses.replace(sc.vehicle("change5"), plan=plain, sequences=())
    fly_scenario(dataclasses.replace(sc, vehicles=(lander,)), tmp_path / "run", 300.0, faults=("drill-jam",))
    ev = outcome(tmp_path / "run", lander.scid)
    (jammed, _), = ev["DrillJammed"]
    safe = [(t, text) for t, text in ev["ModeChanged"] if "-> SAFE" in text]
    assert len(safe) == 1 and "drill_jam" in safe[0][1] and jammed < safe[0][0] < jammed + 2.0
    assert "FaultToContingency" not in ev and "ContainerSealed" not in ev
    assert ev["DrillRetracted"]  # the drill still freed its bit by itself
