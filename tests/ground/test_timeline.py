"""The ground's sequence timeline: planned vs actual per step per engine, from a real archive."""

from __future__ import annotations

from pathlib import Path

import pytest

from flight.sequencer import Sequencer
from ground.timeline import STEP_ARGS, format_rows, rows_from_events
from magpie.cli import main

pytestmark = pytest.mark.timeout(60)

PLAN = """# a timeline on the default rover
deadline +30 contingency rescue
+1        CMD_NOOP
@3..6     CMD_PING key=1
+0        until power.soc > 2 within 5s else goto late
late:
@20       CMD_PING key=2
+0        until power.soc > 2 within 30s
"""


def test_step_arguments_match_the_flight_declaration():
    (decl,) = [e for e in Sequencer.EVENTS if e.name == "SeqStep"]
    assert tuple(a.name for a in decl.args) == STEP_ARGS


def test_a_flown_timeline_prints_planned_against_actual(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    (tmp_path / "plan.seq").write_text(PLAN)
    (tmp_path / "rescue.seq").write_text("+0 CMD_PING key=9\n")
    out = tmp_path / "run"
    assert main(["sim", "--seq", str(tmp_path / "plan.seq"), "--duration", "45s", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    ground = str(out / "ground.toml")
    assert main(["timeline", "--config", ground]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["engine", "file:line", "step", "planned"]
    steps = {ln.split()[1]: ln for ln in lines[1:] if ln.split()[1].startswith(("plan.seq:", "rescue.seq:"))}
    assert steps["plan.seq:4"].endswith("skipped (late)")  # the SEQ_RUN arrives after the window
    assert steps["plan.seq:5"].endswith("timed out (goto late)")
    assert steps["plan.seq:7"].split()[3] == "20.0" and steps["plan.seq:7"].endswith("completed")
    assert "interrupted: deadline t=" in steps["plan.seq:8"]  # the deadline came first
    assert steps["rescue.seq:1"].endswith("completed")
    assert any("SeqContingency" in ln and "deadline" in ln and "missed" in ln for ln in lines)
    # the same steps in magpie events and straight from the archive file, one engine
    assert main(["events", "--config", ground, "--since", "0", "--name", "SeqStep"]) == 0
    events = capsys.readouterr().out.splitlines()
    assert len(events) == len(steps) and "planned 20.0 s" in events[3]
    assert main(["timeline", "--archive", str(out / "archive.db"), "--engine", "main", "--scid", "66"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(lines)
    assert main(["timeline", "--archive", str(out / "archive.db"), "--engine", "thermal", "--scid", "66"]) == 1


def test_rows_from_events_keep_markers_and_tolerate_odd_records():
    class E:
        def __init__(self, name, args, time=1.0, text="t"):
            self.name, self.args, self.time, self.text = name, args, time, text

    rows = rows_from_events([E("SeqStep", ["comm", "c.seq", 2, "CMD_NOOP", 1.0, -1.0, 1.5, 1.6, "completed"]),
                             E("SeqStep", ["short"]), E("SeqContingency", ["comm", "c.seq", "r", "why"]),
                             E("Pong", [1]), E("SeqStep", "not a list")])
    assert [r.engine for r in rows] == ["comm", "comm"]
    assert rows[0].latest_s is None and rows[0].slip_s == pytest.approx(0.5)
    text = format_rows(rows)
    assert "c.seq:2" in text[1] and "+0.5" in text[1] and "SeqContingency" in text[2]


def test_timeline_without_an_archive_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["timeline", "--archive", str(tmp_path / "none.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no archive at") and len(err.splitlines()) == 1


def test_engines_are_printed_one_after_the_other():
    class E:
        def __init__(self, engine, t):
            self.name, self.time, self.text = "SeqStep", t, ""
            self.args = [engine, "x.seq", 1, "CMD_NOOP", t, -1.0, t, t, "completed"]

    lines = format_rows(rows_from_events([E("comm", 1.0), E("sampling", 2.0), E("comm", 3.0)]))
    assert [ln.split()[0] if ln else "" for ln in lines[1:]] == ["comm", "comm", "", "sampling"]
