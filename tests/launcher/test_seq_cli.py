"""magpie seq: timelines checked against the dictionary, refused with FILE:LINE and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from magpie.cli import main

pytestmark = pytest.mark.timeout(60)
CORE = str(resources.files("magpie.configs").joinpath("core.toml"))


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_a_good_timeline_with_its_contingency_checks(tmp_path, capsys):
    write(tmp_path, "rescue.seq", "+0 CMD_PING key=9\n")
    good = write(tmp_path, "main.seq", "critical\ndeadline +600 contingency rescue\n@0..10 CMD_NOOP late=abort\n"
                 "wait:\n+0 until seq.late >= 0 within 60s else goto wait\n+1 CMD_PING key=1\n")
    assert main(["seq", "--config", CORE, str(good)]) == 0
    out = capsys.readouterr().out
    assert f"{good}: ok, 3 command(s) (deadline +600, contingency rescue, critical)" in out


@pytest.mark.parametrize(("text", "line", "message"), [
    ("+0 CMD_NOOP\n@20..10 CMD_NOOP\n", 2, "window '@20..10' ends before it starts"),
    ("+0 until drill.depth_m >= 2.0 within 600s\n", 1, "unknown channel drill.depth_m"),
    ("deadline @100 contingency rescue\n@200 CMD_NOOP\n", 1, "deadline @100 is before line 2 may start"),
    ("+0 until seq.late > 0 within 5 else goto away\n", 1, "unknown label 'away'"),
    ("contingency nowhere\n+0 CMD_NOOP\n", 1, "contingency nowhere: no file nowhere.seq or nowhere"),
    ("+0 CMD_NOOP\n+0 CMD_PING key=-1\n", 2, "argument 'key'"),
])
def test_a_bad_timeline_is_refused_with_file_and_line(tmp_path, capsys, text, line, message):
    write(tmp_path, "rescue.seq", "+0 CMD_NOOP\n")
    bad = write(tmp_path, "bad.seq", text)
    assert main(["seq", "--config", CORE, str(bad)]) == 2
    out, err = capsys.readouterr()
    assert not out and "Traceback" not in err
    (only,) = err.splitlines()
    assert only.startswith(f"{bad}:{line}: ") and message in only, err


def test_the_console_script_refuses_in_one_line(tmp_path):
    bad = write(tmp_path, "bad.seq", "@5..1 CMD_NOOP\n")
    proc = subprocess.run([sys.executable, "-m", "magpie.cli", "seq", "--config", CORE, str(bad)],
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 2 and proc.stderr.strip() == f"{bad}:1: window '@5..1' ends before it starts"
