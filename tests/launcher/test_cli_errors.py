"""Ordinary mistakes at the command line: one clear line on stderr, exit status 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from ground.archive import Archive
from magpie.cli import main

pytestmark = pytest.mark.timeout(60)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error:") or err.startswith("magpie flight:"), err
    assert expect in err, err


def test_bare_events_without_a_ground_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    one_line_error(capsys, ["events"], "no ground.toml here; give --config")
    one_line_error(capsys, ["tlm", "--since", "0"], "no ground.toml here")
    one_line_error(capsys, ["events", "--config", "elsewhere.toml"], "elsewhere.toml")


@pytest.fixture
def ground_toml(tmp_path: Path) -> Path:
    cfg = tmp_path / "ground.toml"
    cfg.write_text('archive = "archive.db"\n')
    return cfg


@pytest.mark.parametrize("state", ["missing", "empty", "corrupt"])
def test_missing_empty_or_corrupt_archive(ground_toml: Path, capsys: pytest.CaptureFixture[str],
                                          state: str) -> None:
    archive = ground_toml.parent / "archive.db"
    if state == "empty":
        archive.write_bytes(b"")
    elif state == "corrupt":
        archive.write_bytes(os.urandom(4096))
    expect = {"missing": "no archive at", "empty": "is empty", "corrupt": "is unreadable"}[state]
    for argv in (["events", "--since", "0"], ["tlm", "--since", "0"], ["archive", "export", "--csv"]):
        one_line_error(capsys, [*argv, "--config", str(ground_toml), "--scid", "7"], expect)
    one_line_error(capsys, ["images", "list", "--archive", str(archive)], "archive")
    assert state != "corrupt" or archive.read_bytes()  # a reader never moves the file aside


def test_unwritable_out(ground_toml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Archive(tmp_path / "archive.db").close()
    one_line_error(capsys, ["archive", "export", "--csv", "--config", str(ground_toml),
                            "--out", str(tmp_path / "no" / "such" / "dir.csv")], "--out")
    one_line_error(capsys, ["images", "export", "--archive", str(tmp_path / "archive.db"),
                            "--out", "/proc/magpie-images"], "/proc/magpie-images")


def test_flight_check_builds_components_and_catches_a_wrong_option_type(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = Path(str(resources.files("magpie.configs").joinpath("core_mission.toml"))).read_text()
    cfg = tmp_path / "v.toml"
    cfg.write_text(text.replace('key_id = 1', 'key_id = "one"'))
    one_line_error(capsys, ["flight", "--check", "--config", str(cfg)], "option key_id must be int, not str")
    cfg.write_text(text.replace('type = "ticker"\n', 'type = "ticker"\nwork = 2.5\n', 1))
    one_line_error(capsys, ["flight", "--check", "--config", str(cfg)], "option work must be int, not float")
    cfg.write_text(text)
    assert main(["flight", "--check", "--config", str(cfg)]) == 0


def test_no_traceback_from_the_installed_command(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "magpie.cli", "events"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]


@pytest.mark.parametrize(("argv", "expect"), [
    (["sim", "--realtime", "--scenario", "change4-farside", "--world", "mars-jezero", "--duration", "1s"],
     "the scenario names its world and vehicles"),
    (["sim", "--realtime", "--scenario", "no-such-mission", "--duration", "1s"], "no-such-mission"),
    (["sim", "--realtime", "--scenario", "change4-farside", "--speed", "0", "--duration", "1s"],
     "--speed: must be positive"),
    (["flight", "--scenario", "change4-farside", "--vehicle", "chang-e", "--check"], "no vehicle 'chang-e'"),
    (["flight", "--scenario", "change4-farside", "--check"], "--scenario NAME --vehicle NAME"),
    (["sim", "--realtime", "--world", "nowhere", "--duration", "1s"],
     "no such world; worlds: mars-jezero, moon-farside"),
])
def test_realtime_world_choices_are_checked(capsys: pytest.CaptureFixture[str], argv: list[str], expect: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"magpie {argv[0]}:") and expect in err, err
