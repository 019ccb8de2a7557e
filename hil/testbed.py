"""The Raspberry Pi testbed on one machine: firmware, relay, flight and ground as processes.

:class:`Testbed` lays out a deployment the way ``hil/deploy/INSTALL.md`` does, under one root
directory instead of a Pi and a laptop, and starts each part as its own process on 127.0.0.1:

- ``python -m hil.fwhost`` (the reference firmware core on a pty behind a stable path, standing
  in for the Pico on ``/dev/magpie-mcu``);
- ``magpie relay`` (``--preset ideal``, as the guide starts it);
- ``magpie flight --config rover.toml`` with the devices the guide edits replaced on the command
  line (``--device``): the MCU's path, the camera (a video file), the radio's address, and a
  watchdog that does nothing (there is no ``/dev/watchdog`` to arm);
- ``magpie ground --config ground.toml`` with the dictionary and the uplink key copied into the
  ground's own directory, outside any source tree, as the guide's section 5 does.

Operators' commands (``magpie cmd``, ``magpie events``, ``magpie images export``) run through
:meth:`Testbed.magpie`. Everything listens on ports chosen free at start. :meth:`close` stops
every process it started (SIGTERM, then SIGKILL after a grace period) and keeps their output in
``root/logs`` for a failing test to show.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from flight.link.auth import write_key_file
from ground.archive import Archive
from ground.client import GroundClient
from ground.images import collect
from ground.server import read_token

log = logging.getLogger(__name__)

DEPLOY = Path(__file__).resolve().parent / "deploy"
MCU_OPTIONS = "baud=921600&stream_hz=50&watchdog_ms=500"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Testbed:
    """See the module docstring. ``config`` is the vehicle TOML (default: the shipped rover)."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, root: Path, config: Path = DEPLOY / "rover.toml", board: str = "pico",
                 firmware_args: Sequence[str] = (), video: Path | None = None,
                 relay_args: Sequence[str] = ("--preset", "ideal")) -> None:
        self.root = root
        self.config = config
        self.board = board
        self.firmware_args = list(firmware_args)
        self.video = video
        self.relay_args = list(relay_args)
        self.var = root / "var" / "lib" / "magpie"  # the Pi's /var/lib/magpie
        self.state_dir = self.var / "state"
        self.ground_dir = root / "home" / "magpie-ground"  # the laptop's ground directory
        self.logs = root / "logs"
        self.mcu_path = str(root / "dev-magpie-mcu")
        self.ports = {k: free_port() for k in ("vehicle", "ground", "pub", "commands")}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._outs: dict[str, IO[bytes]] = {}
        for d in (self.var, self.ground_dir, self.logs):
            d.mkdir(parents=True, exist_ok=True)

    # -- processes -------------------------------------------------------------------------------

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 (closed in close())
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.root, env=env)
        self.procs[name] = proc
        self._outs[name] = out
        log.info("testbed: started %s (pid %d)", name, proc.pid)
        return proc

    def log_text(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float, poll_s: float = 0.1) -> None:
        """Poll ``check`` until it holds; on timeout raise with every process's log tail."""
        deadline = time.monotonic() + timeout_s
        while not check():
            for name, proc in self.procs.items():
                if proc.poll() is not None and name != "cli":
                    raise RuntimeError(f"{name} exited with {proc.returncode} while waiting for {what}\n"
                                       + self.tails())
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} within {timeout_s} s\n" + self.tails())
            time.sleep(poll_s)

    def tails(self, lines: int = 25) -> str:
        out = []
        for name in self.procs:
            text = self.log_text(name).splitlines()[-lines:]
            out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    def start_firmware(self) -> None:
        self._start("firmware", [sys.executable, "-m", "hil.fwhost", "--link", self.mcu_path,
                                 "--board", self.board, *self.firmware_args])
        self.wait_for("firmware port", lambda: os.path.exists(self.mcu_path), 20.0)

    def start_relay(self) -> None:
        self._start("relay", [sys.executable, "-m", "magpie.cli", "relay",
                              "--vehicle-endpoint", f"tcp://127.0.0.1:{self.ports['vehicle']}",
                              "--ground-endpoint", f"tcp://127.0.0.1:{self.ports['ground']}",
                              "--stats-interval", "0", *self.relay_args])

    def flight_devices(self) -> list[str]:
        devices = [f"mcu=mcu+serial://{self.mcu_path}?{MCU_OPTIONS}",
                   f"radio=radio+zmq://tcp://127.0.0.1:{self.ports['vehicle']}?scid=66",
                   "watchdog=watchdog+null://?timeout=15"]
        if self.video is not None:
            devices.append(f"camera=camera+opencv://{self.video}?loop=1&name=navcam")
        return devices

    def start_flight(self) -> None:
        """The service's command line, with the devices of this bench; waits for the dictionary."""
        keys = self.var / "keys"
        if not (keys / "uplink.key").exists():
            keys.mkdir(parents=True, exist_ok=True)
            write_key_file(keys / "uplink.key")
        dict_path = self.var / "dictionary.json"
        argv = [sys.executable, "-m", "magpie.cli", "flight", "--config", str(self.config),
                "--state-dir", str(self.state_dir), "--dict-out", str(dict_path), "-v"]
        for d in self.flight_devices():
            argv += ["--device", d]
        self._start("flight", argv)
        self.wait_for("flight dictionary", lambda: dict_path.exists() and dict_path.stat().st_size > 0, 40.0)

    def prepare_dictionary(self) -> None:
        """Write the dictionary with a flight process that assembles the vehicle and stops at
        once (on a scratch state directory), so the ground can be up before the rover flies."""
        keys = self.var / "keys"
        keys.mkdir(parents=True, exist_ok=True)
        if not (keys / "uplink.key").exists():
            write_key_file(keys / "uplink.key")
        argv = [sys.executable, "-m", "magpie.cli", "flight", "--config", str(self.config),
                "--state-dir", str(self.root / "scratch" / "state"), "--duration", "0",
                "--dict-out", str(self.var / "dictionary.json")]
        for d in self.flight_devices():
            argv += ["--device", d]
        (self.root / "scratch" / "keys").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(keys / "uplink.key", self.root / "scratch" / "keys" / "uplink.key")
        os.chmod(self.root / "scratch" / "keys" / "uplink.key", 0o600)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=self.root)
        if proc.returncode != 0:
            raise RuntimeError(f"flight could not write the dictionary: {proc.stderr[-2000:]}")

    def write_ground_config(self) -> Path:
        """INSTALL.md section 5: the dictionary and key copied to the ground's own directory."""
        g = self.ground_dir
        (g / "keys").mkdir(exist_ok=True)
        shutil.copyfile(self.var / "dictionary.json", g / "dictionary.json")
        shutil.copyfile(self.var / "keys" / "uplink.key", g / "keys" / "uplink.key")
        os.chmod(g / "keys" / "uplink.key", 0o600)
        cfg = g / "ground.toml"
        cfg.write_text(
            'archive = "archive.db"\n'
            f'relay = "tcp://127.0.0.1:{self.ports["ground"]}"\n'
            f'pub = "tcp://127.0.0.1:{self.ports["pub"]}"\n'
            f'commands = "tcp://127.0.0.1:{self.ports["commands"]}"\n'
            'state_dir = "ground-state"\n'
            "ack_interval_s = 1.0\n"
            "retry_interval_s = 10.0\n\n"
            "[[vehicle]]\nscid = 66\nname = \"pirover\"\ndictionary = \"dictionary.json\"\n"
            'key_file = "keys/uplink.key"\nkey_id = 1\n')
        return cfg

    def start_ground(self) -> None:
        cfg = self.write_ground_config()
        self._start("ground", [sys.executable, "-m", "magpie.cli", "ground", "--config", str(cfg)])
        self.wait_for("ground station", lambda: "ground: telemetry on" in self.log_text("ground"), 30.0)

    def start(self, ground_first: bool = False) -> None:
        """Everything, in the guide's order: board, relay, flight, ground. ``ground_first``
        starts the ground before the flight process, for a rover that may go silent soon."""
        self.start_firmware()
        self.start_relay()
        if ground_first:
            self.prepare_dictionary()
            self.start_ground()
            self.start_flight()
        else:
            self.start_flight()
            self.start_ground()

    # -- operators -------------------------------------------------------------------------------

    def client(self) -> GroundClient:
        """A client of the ground's command socket, with the ground's command token."""
        return GroundClient(command_endpoint=f"tcp://127.0.0.1:{self.ports['commands']}",
                            token=read_token(self.ground_dir / "ground-state"))

    def magpie(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``magpie ARGS --config ground.toml`` as an operator on the laptop runs it."""
        argv = [sys.executable, "-m", "magpie.cli", *args, "--config", str(self.ground_dir / "ground.toml")]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, cwd=self.ground_dir)

    def events(self) -> str:
        """Every archived event so far, one line each (``magpie events --since 0``)."""
        return self.magpie("events", "--since", "0").stdout

    # The archive read in this process (what the CLI would print, without starting a process
    # each time: on a loaded machine that costs seconds a call).

    def _archive(self) -> Archive | None:
        path = self.ground_dir / "archive.db"
        return Archive(path, readonly=True) if path.exists() else None

    def archived_events(self, scid: int = 66) -> list[str]:
        """``NAME: text`` of every archived event of ``scid``, oldest first."""
        archive = self._archive()
        if archive is None:
            return []
        with archive:
            return [f"{e.name}: {e.text}" for e in archive.events(scid)]

    def archived_channel(self, name: str, scid: int = 66) -> list[tuple[float, object]]:
        archive = self._archive()
        if archive is None:
            return []
        with archive:
            cid = archive.channel_id(scid, name)
            return [] if cid is None else archive.channel(scid, cid)

    def products(self, scid: int = 66) -> dict[tuple[int, str], str]:
        """(pid, kind) -> status ("complete", "partial") of the products the ground holds."""
        archive = self._archive()
        if archive is None:
            return {}
        with archive:
            return {(v.pid, v.kind): v.status for v in collect(archive, scid)}

    # -- the end ---------------------------------------------------------------------------------

    def close(self, grace_s: float = 10.0) -> None:
        """Stop the flight process first (a clean stop with its board still there), then the rest."""
        for name in ("flight", "ground", "relay", "firmware"):
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("testbed: %s ignored SIGTERM; killing it", name)
                proc.kill()
                proc.wait(5.0)
        for out in self._outs.values():
            out.close()
        self._outs.clear()


def with_power_sensing(text: str) -> str:
    """The shipped rover.toml changed as its "With power and IMU sensing" section says: the IMU
    and power components, and the power device for fault protection (ValueError if the text no
    longer has the lines that section names)."""
    edits = [
        ('[components.thermal]', '[components.imu]\ntype = "imu"\ndevices = { imu = "mcu" }\n\n'
                                 '[components.power]\ntype = "power"\ndevices = { power = "mcu" }\n\n'
                                 '[components.thermal]'),
        ('members = ["drive", "nav"]', 'members = ["drive", "imu", "nav"]'),
        ('members = ["thermal", "fault",', 'members = ["power", "thermal", "fault",'),
        ('devices = { watchdog = "watchdog" }', 'devices = { watchdog = "watchdog", power = "mcu" }'),
    ]
    for old, new in edits:
        if text.count(old) != 1:
            raise ValueError(f"rover.toml: expected one {old!r}")
        text = text.replace(old, new)
    return text
