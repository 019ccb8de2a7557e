"""A small real campaign: serial and on a local Dask cluster alike, resumable, reported.

The runs are real traverses (the same harness ``magpie campaign`` flies), kept short: one goal
1.5 m away, so each takes a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import xml.etree.ElementTree as ET
from pathlib import Path

import dask
import pytest

from campaign.grid import Grid, RunSpec
from campaign.report import write_report
from campaign.runner import RESULTS_NAME, RunsLost, comparable, execute, run_campaign
from magpie.cli import main

pytestmark = pytest.mark.timeout(90)

GRID = Grid.parse("easy,hard", "3", goals=1, goal_distance_m=1.5, timeout_per_goal_s=30.0)
SHORT = ["--goals", "1", "--goal-distance", "1.5", "--timeout-per-goal", "30"]


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("serial")
    return out, run_campaign(GRID, out, serial=True)


def test_serial_runs_are_real_traverses(serial: tuple[Path, list[dict]]) -> None:
    _, records = serial
    assert [r["spec"]["level"] for r in records] == ["easy", "hard"]
    for rec in records:
        assert rec["error"] is None
        res = rec["result"]
        assert res["goals"] == 1 and res["distance_m"] > 0.5 and res["drive_time_s"] > 0
        assert len(res["loc_errors"]) == 1 and res["vo_updates"] > 0


@pytest.mark.timeout(180)  # starts a cluster of worker processes; generous for a loaded machine
def test_a_local_dask_cluster_gives_the_serial_result(serial: tuple[Path, list[dict]], tmp_path: Path) -> None:
    _, want = serial
    seen: list[int] = []
    got = run_campaign(GRID, tmp_path, n_workers=2, progress=lambda done, total, rec: seen.append(done))
    assert seen == [1, 2]
    assert comparable(got) == comparable(want)
    assert got[0]["result"]["loc_errors"] == want[0]["result"]["loc_errors"]  # bit for bit, not approximately


def test_an_interrupted_campaign_resumes_where_it_stopped(serial: tuple[Path, list[dict]], tmp_path: Path) -> None:
    src, want = serial
    lines = (src / RESULTS_NAME).read_text().splitlines()
    # the first run finished; the process died while writing the second
    (tmp_path / RESULTS_NAME).write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    flown: list[str] = []

    def counting(spec: RunSpec) -> dict:
        flown.append(spec.key)
        return execute(spec)

    got = run_campaign(GRID, tmp_path, serial=True, run=counting)
    assert flown == [GRID.runs()[1].key]
    assert comparable(got) == comparable(want)
    again = run_campaign(GRID, tmp_path, serial=True, run=counting)  # nothing left to fly
    assert flown == [GRID.runs()[1].key] and comparable(again) == comparable(want)
    kept = [json.loads(x) for x in (tmp_path / RESULTS_NAME).read_text().splitlines()[2:]]
    assert [k["key"] for k in kept] == [GRID.runs()[1].key]  # the torn line stays apart, unread


def test_the_report_has_the_table_plots_and_replay_commands(serial: tuple[Path, list[dict]],
                                                            tmp_path: Path) -> None:
    _, records = serial
    bad = json.loads(json.dumps(records[1]))
    bad["result"]["collisions"] = 2  # make one run miss a target, so it is listed as a worst run
    paths = write_report([records[0], bad], tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "| terrain | mode | fault | runs |" in md
    assert "| easy | autonav | none | 1 | 1/1 (1/1 goals) | 0/1 | 0 |" in md
    assert "| hard | autonav | none | 1 |" in md and "| 1/1 | 2 |" in md
    assert "replay: `magpie campaign --levels hard --seeds 3 --goals 1 --goal-distance 1.5" in md
    page = (tmp_path / "report.html").read_text()
    assert "<table>" in page and page.count("<svg") == 4 and "hard seed 3" in page
    for p in paths:
        assert p.exists() and p.stat().st_size > 0
    for name in ("loc-error", "speed", "goals", "collisions"):
        root = ET.parse(tmp_path / f"fig-{name}.svg").getroot()
        assert len(root.findall("{http://www.w3.org/2000/svg}circle")) == 2  # one dot per run


def test_the_cli_resumes_and_prints_the_table(serial: tuple[Path, list[dict]], tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    src, _ = serial
    shutil.copy(src / RESULTS_NAME, tmp_path / RESULTS_NAME)
    rc = main(["campaign", "--levels", "easy,hard", "--seeds", "3", *SHORT, "--serial", "--out", str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "| easy | autonav | none | 1 |" in out and "| hard | autonav | none | 1 |" in out
    assert "resuming: 2 of 2 runs" in err and "[1/" not in err  # nothing was flown again
    assert (tmp_path / "report.html").exists()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("argv", "match"), [
    (["--levels", "medium"], "unknown level 'medium'"),
    (["--seeds", "4-1"], "seeds '4-1'"),
    (["--seeds", "x"], "seeds 'x'"),
    (["--modes", "warp"], "unknown mode 'warp'"),
    (["--faults", "meteor"], "unknown fault 'meteor'"),
    (["--goal-distance", "-1"], "goal distance"),
    (["--workers", "0"], "--workers"),
    (["--serial", "--scheduler", "tcp://127.0.0.1:1"], "exclude"),
    (["--scheduler", "CLOSED", "--connect-timeout", "1"], "cannot reach the Dask scheduler"),
    (["--scheduler", "no-port-here", "--connect-timeout", "1"], "cannot reach the Dask scheduler"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], match: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    argv = [a.replace("CLOSED", f"tcp://127.0.0.1:{_closed_port()}") for a in argv]
    rc = main(["campaign", "--levels", "easy", "--seeds", "1", *SHORT, "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and match in err and "Traceback" not in err


def test_an_unwritable_output_directory_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rc = main(["campaign", "--levels", "easy", "--seeds", "1", *SHORT, "--serial", "--out", str(blocker / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "not writable" in err


def test_a_fault_injection_reaches_the_run(serial: tuple[Path, list[dict]]) -> None:
    _, records = serial
    plain = RunSpec.from_dict(records[0]["spec"])
    slipping = RunSpec(plain.level, plain.seed, plain.goals, plain.goal_distance_m, plain.timeout_per_goal_s,
                       plain.mode, fault="slip")
    res = execute(slipping)
    assert res["goals"] == 1
    assert res["loc_errors"] != records[0]["result"]["loc_errors"]  # the wheels now slip under the same rover


def _dies_on_seed_4(spec: RunSpec) -> dict:
    """The real run, except that seed 4's worker process dies under it (a lost machine)."""
    if spec.seed == 4:
        os._exit(3)
    return execute(spec)


@pytest.mark.timeout(180)
def test_a_run_lost_with_its_worker_is_reported_and_flown_on_rerun(serial: tuple[Path, list[dict]],
                                                                   tmp_path: Path) -> None:
    _, want = serial
    grid = Grid.parse("easy", "3-4", goals=1, goal_distance_m=1.5, timeout_per_goal_s=30.0)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(RunsLost, match="of 2 runs lost by the engine") as lost:
            run_campaign(grid, tmp_path, n_workers=1, run=_dies_on_seed_4)
    kept = lost.value.records
    # seed 3 normally finishes; on a machine loaded enough for the scheduler to give up on the
    # worker it may be lost too; whatever was kept is the serial result
    assert [r["spec"]["seed"] for r in kept] in ([3], [])
    assert comparable(kept) == comparable(want[: len(kept)])
    flown: list[int] = []
    again = run_campaign(grid, tmp_path, serial=True, run=lambda spec: flown.append(spec.seed) or execute(spec))
    assert flown == [4] if kept else flown == [3, 4]
    assert [r["spec"]["seed"] for r in again] == [3, 4]
    assert comparable(again[:1]) == comparable(want[:1])
