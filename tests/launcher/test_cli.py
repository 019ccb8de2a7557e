"""The magpie command: help, dict, seq, sim (progress, summary, files, signals)."""

import json
import os
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from magpie.cli import main
from magpie.durations import parse_duration

CORE = str(resources.files("magpie.configs").joinpath("core.toml"))
pytestmark = pytest.mark.timeout(60)


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for name in ("sim", "dict", "seq"):
        assert f"    {name} " in out or f"    {name}\n" in out


@pytest.mark.parametrize("sub", ["sim", "dict", "seq"])
def test_each_subcommand_has_help(capsys, sub):
    with pytest.raises(SystemExit) as info:
        main([sub, "--help"])
    assert info.value.code == 0
    assert "usage: magpie " + sub in capsys.readouterr().out


def test_dict_prints_json(capsys):
    assert main(["dict", "--config", CORE]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "magpie-dict/1" and doc["hash"].startswith("sha256:")
    assert {"T0_RESET", "CMD_NOOP", "SEQ_RUN", "PRM_SAVE", "EXEC_ENABLE"} <= {c["name"] for c in doc["commands"]}


def test_seq_check_reports_lines(tmp_path, capsys):
    good = tmp_path / "good.seq"
    good.write_text("+1 CMD_NOOP\n+2 CMD_PING key=1\n")
    bad = tmp_path / "bad.seq"
    bad.write_text("+1 CMD_NOOP\n+x CMD_NOOP\n+1 CMD_PING key=-4\n")
    assert main(["seq", "--config", CORE, str(good), str(bad)]) == 2
    out, err = capsys.readouterr()
    assert f"{good}: ok, 2 command(s)" in out
    assert f"{bad}:2: bad time tag" in err and f"{bad}:3: argument 'key'" in err


def test_durations():
    assert parse_duration("90") == 90 and parse_duration("1h30m") == 5400 and parse_duration("29.5d") == 29.5 * 86400
    for bad in ("", "abc", "5x", "-3", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_sim_bad_duration_is_a_clear_error(capsys, tmp_path):
    assert main(["sim", "--duration", "soon", "--out", str(tmp_path)]) == 2
    assert "--duration: bad duration 'soon'" in capsys.readouterr().err


def test_sim_bad_config_names_the_key(capsys, tmp_path):
    cfg = tmp_path / "v.toml"
    cfg.write_text('[vehicle]\nspacecraft_id = "x"\n')
    assert main(["sim", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    assert "vehicle.spacecraft_id: expected an integer" in capsys.readouterr().err


def test_sim_core_writes_outputs_and_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["sim", "--config", CORE, "--duration", "2m", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Magpie sim: 00:02:00 simulated" in captured.out
    assert "control 50 Hz: 6000 cycles, 0 slips" in captured.out
    lines = (out / "telemetry.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["kind"] == "event"
    assert json.loads((out / "dictionary.json").read_text())["format"] == "magpie-dict/1"
    assert (out / "state" / "boot.json").exists()


def test_sim_stops_cleanly_on_sigterm(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "magpie.cli", "sim", "--config", CORE, "--duration", "30d", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        first = proc.stderr.readline()  # the start line: the mission is running
        assert "magpie sim:" in first
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143
    assert "stopped by signal" in stderr
    assert "Magpie sim:" in stdout
    last = [json.loads(x) for x in Path(out / "telemetry.jsonl").read_text().splitlines()][-3:]
    assert any(x.get("name") == "Shutdown" for x in last) or any(x.get("name") == "ExecStopped" for x in last)


def test_default_sim_flies_world_and_link_deterministically(tmp_path, capsys):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        assert main(["sim", "--duration", "2m", "--seed", "3", "--out", str(out), "--quiet"]) == 0
        runs.append((out / "telemetry.jsonl").read_bytes())
    assert runs[0] == runs[1]
    text = capsys.readouterr().out
    assert "Downlink" in text and "0 duplicates discarded" in text
    assert "World (truth)" in text and "Mode          DRIVE; monitor trips 0" in text
    # the archive left behind answers the query commands
    assert main(["tlm", "--config", str(tmp_path / "a" / "ground.toml"), "--since", "0", "--until", "3",
                 "power.soc"]) == 0
    tlm_out = capsys.readouterr().out.splitlines()
    assert len(tlm_out) == 4 and all(" power.soc " in line for line in tlm_out)
    assert main(["events", "--config", str(tmp_path / "a" / "ground.toml"), "--since", "0"]) == 0
    events = capsys.readouterr().out
    assert "Boot:" in events and "SeqStarted" in events and "DRIVE_SET_WHEELS" in events


def test_sim_through_the_serial_driver_on_a_pty(tmp_path, capsys):
    out = tmp_path / "pty"
    assert main(["sim", "--mcu", "pty", "--duration", "5s", "--out", str(out), "--quiet"]) == 0
    items = [json.loads(x) for x in (out / "telemetry.jsonl").read_text().splitlines()]
    done = [i["name"] for i in items if i["kind"] == "response" and i["stage"] == "COMPLETED"]
    assert "DRIVE_SET_WHEELS" in done
    ticks = [i["samples"].get("drive.left_ticks") for i in items if i["kind"] == "tlm"]
    assert max(t for t in ticks if t is not None) > 0


def test_sim_realtime_runs_three_processes(tmp_path, capsys):
    out = tmp_path / "rt"
    assert main(["sim", "--realtime", "--duration", "3s", "--preset", "ideal", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "relay exit 0, ground exit 0, flight exit 0" in text
    assert "0 duplicate keys" in text and (out / "archive.db").exists()


def test_sim_with_an_imaging_plan_then_magpie_images(tmp_path, capsys):
    """The imaging rover flies the imaging plan (--seq); the products arrive whole and export."""
    configs = resources.files("magpie.configs")
    out = tmp_path / "img"
    assert main(["sim", "--config", str(configs.joinpath("sim_imaging.toml")),
                 "--seq", str(configs.joinpath("imaging_demo.seq")),
                 "--duration", "2m", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    archive = str(out / "archive.db")
    assert main(["images", "list", "--archive", archive]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    full = [r for r in rows if r[2] == "full"]
    # one PNG and a three-frame panorama, all asked for in full by the plan
    assert len(full) == 4 and all(r[3] == "complete" for r in full), rows
    assert main(["images", "export", "--archive", archive, "--out", str(tmp_path / "export")]) == 0
    capsys.readouterr()
    pngs = sorted((tmp_path / "export").rglob("*.png"))
    sidecars = sorted((tmp_path / "export").rglob("*.json"))
    assert pngs and len(sidecars) >= 4
    assert main(["sim", "--seq", str(tmp_path / "nowhere.seq"), "--duration", "1s", "--out",
                 str(tmp_path / "x"), "--quiet"]) == 2
    assert "nowhere.seq" in capsys.readouterr().err
