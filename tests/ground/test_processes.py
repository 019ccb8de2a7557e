"""The ground and relay as processes on real time over ZeroMQ loopback, and the CLI.

Threads stand in for processes; every wait is a bounded poll, nothing sleeps to let time pass.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from flight.cmdcodec import CommandCodecError, decode_command
from flight.link.auth import Key, Verifier, write_key_file
from flight.link.endpoint import LinkEndpoint
from flight.link.packets import Packetizer, peek
from flight.link.recorder import Recorder
from ground.cli import main as cli_main
from ground.client import CommandError, GroundClient
from ground.server import GroundServer, load_config
from hal.registry import open_device
from sim_hw.relay import RelayParams, RelayServer
from tests.link.fixtures import DICT, SECRET

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VehicleThread(threading.Thread):
    """A minimal flight side on the real clock: housekeeping at 20 Hz, commands answered."""

    def __init__(self, tmp: Path, radio_url: str) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.recorder = Recorder(tmp / "veh.db", clock=self.now, resend_timeout_s=2.0)
        self.radio = open_device(radio_url)
        self.endpoint = LinkEndpoint(
            66,
            self.recorder,
            Verifier([Key(1, SECRET)], tmp / "v.json"),
            self.radio,
            downlink_bytes_per_s=1e6,
            max_burst_bytes=10**6,
        )
        self.pk = Packetizer()
        self.by_opcode = {c["opcode"]: c for c in DICT["commands"]}

    def now(self) -> float:
        return time.monotonic() - self.t0

    def put(self, seq_data: tuple[int, bytes], t: float) -> None:
        seq, data = seq_data
        self.recorder.put(data, peek(data)[0], seq, time_s=t)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            t = self.now()
            self.put(self.pk.housekeeping(t, [(1, 12.0 + n % 3), (2, float(n))]), t)
            for cmd in self.endpoint.step(t):
                try:
                    entry, _ = decode_command(self.by_opcode, cmd.body)
                except CommandCodecError as exc:
                    self.put(self.pk.response(t, 0, "?", cmd.counter, "REJECTED", str(exc)), t)
                    continue
                for stage in ("ACCEPTED", "COMPLETED"):
                    self.put(self.pk.response(t, entry["opcode"], entry["name"], cmd.counter, stage, ""), t)
                self.put(self.pk.event(t, 11, "WARNING_HI", f"ran {entry['name']}", []), t)
            n += 1
            self.stop.wait(0.05)  # the rate group period of this stand-in flight loop
        self.radio.close()
        self.recorder.close()


@pytest.fixture
def mission(tmp_path: Path):
    vport, gport, pport, cport = (free_port() for _ in range(4))
    (tmp_path / "dict.json").write_text(json.dumps(DICT))
    write_key_file(tmp_path / "66.key", SECRET)
    (tmp_path / "ground.toml").write_text(
        f'archive = "ground.db"\nrelay = "tcp://127.0.0.1:{gport}"\n'
        f'pub = "tcp://127.0.0.1:{pport}"\ncommands = "tcp://127.0.0.1:{cport}"\n'
        'state_dir = "state"\nack_interval_s = 0.2\nretry_interval_s = 3.0\n'
        '[[vehicle]]\nscid = 66\nname = "magpie-1"\ndictionary = "dict.json"\n'
        'key_file = "66.key"\nkey_id = 1\n'
    )
    relay = RelayServer(
        f"tcp://127.0.0.1:{vport}",
        f"tcp://127.0.0.1:{gport}",
        RelayParams(light_time_s=0.05, loss=0.05),
        stats_interval_s=0,
    )
    ground = GroundServer(load_config(tmp_path / "ground.toml"))
    stop = threading.Event()
    threads = [threading.Thread(target=s.serve, args=(stop,), daemon=True) for s in (relay, ground)]
    for th in threads:
        th.start()
    vehicle = VehicleThread(tmp_path, f"radio+zmq://tcp://127.0.0.1:{vport}?scid=66")
    vehicle.start()
    yield tmp_path, ground
    vehicle.stop.set()
    vehicle.join(5)
    stop.set()
    for th in threads:
        th.join(5)


def test_live_telemetry_commands_and_cli(mission, capsys: pytest.CaptureFixture[str]) -> None:
    tmp, ground = mission
    cfg = str(tmp / "ground.toml")
    with GroundClient(ground.pub_endpoint, ground.command_endpoint, tmp / "ground.db", token=ground.token) as client:
        sample = client.wait_channel(66, "nav.heading_deg", lambda v: v >= 5, timeout_s=20)
        assert sample["scid"] == 66 and sample["value"] >= 5
        rec = client.run_command(66, "NAV_GOTO", {"x_m": 1, "y_m": 2}, timeout_s=20)
        assert rec["stage"] == "COMPLETED"
        ev = client.wait_event(66, name="LinkDown", timeout_s=20)
        assert "NAV_GOTO" in ev["text"]
        with pytest.raises(CommandError, match="above the maximum"):
            client.send_command(66, "NAV_GOTO", {"x_m": 500, "y_m": 0})
        assert client.channel(66, "nav.heading_deg")
    # the CLI against the same running ground
    assert cli_main(["cmd", "NAV_GOTO", "x_m=1000", "y_m=0", "--config", cfg]) == 2
    assert "above the maximum" in capsys.readouterr().err
    assert cli_main(["cmd", "CAM_MODE", "mode=MONO", "--config", cfg, "--wait", "--timeout", "20"]) == 0
    assert "COMPLETED" in capsys.readouterr().out
    assert cli_main(["tlm", "power.bus_v", "--since", "0", "--config", cfg]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(" power.bus_v " in line for line in lines)
    assert cli_main(["events", "--since", "0", "--config", cfg]) == 0
    assert "LinkDown" in capsys.readouterr().out
    assert cli_main(["tlm", "--config", cfg, "--count", "2"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    out = tmp / "export.csv"
    assert (
        cli_main(["archive", "export", "--csv", "--out", str(out), "--config", cfg, "--channel", "nav.heading_deg"])
        == 0
    )
    rows = out.read_text().splitlines()
    assert rows[0] == "scid,channel_id,channel,time_s,value" and len(rows) > 5
    assert all(",nav.heading_deg," in r for r in rows[1:])


def test_cli_help_is_truthful(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["ground", "-h"], ["cmd", "-h"], ["tlm", "-h"], ["events", "-h"], ["archive", "export", "-h"]):
        with pytest.raises(SystemExit) as exc:
            cli_main(argv)
        assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "NAME=VALUE" in text and "--since" in text and "CSV" in text
