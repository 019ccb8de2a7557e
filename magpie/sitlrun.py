"""``magpie sim --realtime``: live operations against the simulated world on the real clock.

Five processes on 127.0.0.1, started in this order and stopped in the reverse one:

1. the world (``python -m sim_hw.sitl``): physics on the wall clock times ``--speed``, the MCU
   emulator on a pseudo-terminal, the cameras served over ZeroMQ;
2. the flight process (``magpie flight``) with the vehicle TOML unchanged except its device URLs:
   the MCU device becomes the emulator's pty (``mcu+serial://...``, the real serial protocol),
   each camera ``camera+sitl://...``, the radio ``radio+zmq://`` to the relay;
3. the relay (``magpie relay``) with the chosen preset's light time, loss and windows;
4. the ground station (``magpie ground``) with its archive;
5. the web ground (``magpie web``) on http://127.0.0.1:8080/ unless ``--web-port 0`` turns it off.

It prints progress (archive size, the rover's position, the last event) every few seconds and
stops everything cleanly on Ctrl-C, SIGTERM or at the end of ``--duration``. Logs are
``OUT/<process>.log``. The children run in their own sessions, so a Ctrl-C reaches this process
only, and it stops the flight first (so its last packets leave the recorder in order).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flight.config import ConfigError, VehicleConfig
from flight.config import load as load_config

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "sitl_rover.toml"
_CAMERA_KEYS = ("width", "height", "fov_deg", "stereo", "baseline", "pan", "tilt", "noise", "bgr")


def default_config() -> Path:
    return Path(str(resources.files("magpie.configs").joinpath(DEFAULT_CONFIG)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wants_world(config: VehicleConfig) -> bool:
    """A vehicle with an MCU or a camera flies against the world; a world-less core does not."""
    return any(url.startswith(("sim://mcu", "sim://camera", "mcu+", "camera+")) for url in config.devices.values())


def world_cameras(config: VehicleConfig) -> dict[str, str]:
    """Camera device name -> the world camera options (``sim://camera`` form) it stands for."""
    out = {}
    for name, url in config.devices.items():
        if url.startswith("sim://camera") or url.startswith("camera+"):
            q = dict(parse_qsl(urlsplit(url).query))
            opts = {k: v for k, v in q.items() if k in _CAMERA_KEYS}
            opts.setdefault("stereo", "0")
            opts.setdefault("tilt", "-25")
            out[name] = "&".join(f"{k}={v}" for k, v in opts.items())
    return out


def device_overrides(config: VehicleConfig, sitl: dict[str, str], radio: str) -> dict[str, str]:
    """The ``--device NAME=URL`` replacements that put the vehicle on the world and the relay."""
    out = {}
    for name, url in config.devices.items():
        if url.startswith(("sim://mcu", "mcu+")):
            out[name] = sitl["mcu"]
        elif url.startswith(("sim://camera", "camera+")):
            out[name] = sitl[f"camera.{name}"]
        elif url.startswith(("sim://watchdog", "watchdog+")):
            out[name] = sitl["watchdog"]
        elif url.startswith("radio+"):
            out[name] = radio
        elif url.startswith("sim://"):
            raise ConfigError(f"{config.source}: devices.{name}: {url} has no real-time transport yet "
                              "(the real-time world serves the MCU, cameras and the watchdog)")
    return out


@dataclass
class LiveMission:
    """The five processes (see the module docstring); :meth:`start`, :meth:`progress`, :meth:`stop`."""

    config_path: Path
    out: Path
    preset: str = "ideal"
    seed: int = 1
    speed: float = 1.0
    scenario: str = "moon-farside"
    web_port: int | None = 8080
    ack_interval_s: float = 0.5
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config_path = Path(self.config_path).resolve()
        self.out = Path(self.out).resolve()
        self.config = load_config(self.config_path)
        if not wants_world(self.config):
            raise ConfigError(f"{self.config_path}: no MCU or camera device; nothing to fly in the world")
        self.scid = self.config.spacecraft_id
        self.ports = {k: free_port() for k in ("vehicle", "ground", "pub", "commands")}
        if self.web_port == 0:
            self.web_port = None

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.out / f"{name}.log", "wb") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=self.out, start_new_session=True)
        self.procs[name] = proc
        return proc

    def _wait_file(self, path: Path, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not path.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; see {self.out}/{what}.log:\n"
                                   + (self.out / f"{what}.log").read_text(errors="replace")[-2000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not write {path.name} within {timeout_s} s")
            time.sleep(0.1)  # polling another process's start-up

    def start(self, startup_timeout_s: float = 60.0) -> None:
        from flight.link.auth import write_key_file
        from sim_hw.relay import RelayParams

        self.out.mkdir(parents=True, exist_ok=True)
        keys = self.out / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        if not (keys / "uplink.key").exists():
            write_key_file(keys / "uplink.key")
        for stale in ("sitl.json", "dictionary.json"):
            (self.out / stale).unlink(missing_ok=True)
        py = sys.executable
        world = [py, "-m", "sim_hw.sitl", "--out", str(self.out), "--seed", str(self.seed), "--speed", str(self.speed),
                 "--scenario", self.scenario]
        for name, opts in world_cameras(self.config).items():
            world += ["--camera", f"{name}={opts}"]
        wproc = self._spawn("world", world)
        self._wait_file(self.out / "sitl.json", wproc, "world", startup_timeout_s)
        sitl = json.loads((self.out / "sitl.json").read_text(encoding="utf-8"))
        radio = f"radio+zmq://tcp://127.0.0.1:{self.ports['vehicle']}?scid={self.scid}"
        devices = device_overrides(self.config, sitl, radio)
        flight = [py, "-m", "magpie.flightrun", "--config", str(self.config_path), "--state-dir",
                  str(self.out / "state"), "--dict-out", str(self.out / "dictionary.json")]
        for name, url in devices.items():
            flight += ["--device", f"{name}={url}"]
        fproc = self._spawn("flight", flight)
        self._wait_file(self.out / "dictionary.json", fproc, "flight", startup_timeout_s)
        params = RelayParams.preset(self.preset)
        (self.out / "link.json").write_text(json.dumps({
            "preset": self.preset, "light_time_s": params.light_time_s, "hop_delay_s": params.hop_delay_s,
            "windows": _windows(params), "t0_unix": time.time()}), encoding="utf-8")
        self._spawn("relay", [py, "-m", "magpie.cli", "relay", "--vehicle-endpoint",
                              f"tcp://127.0.0.1:{self.ports['vehicle']}", "--ground-endpoint",
                              f"tcp://127.0.0.1:{self.ports['ground']}", "--preset", self.preset,
                              "--seed", str(self.seed), "--stats-interval", "0"])
        self.ground_toml.write_text(
            f'archive = "archive.db"\nrelay = "tcp://127.0.0.1:{self.ports["ground"]}"\n'
            f'pub = "tcp://127.0.0.1:{self.ports["pub"]}"\ncommands = "tcp://127.0.0.1:{self.ports["commands"]}"\n'
            f'state_dir = "ground-state"\nack_interval_s = {self.ack_interval_s}\nretry_interval_s = 30.0\n'
            f'[[vehicle]]\nscid = {self.scid}\nname = "{self.config.name}"\ndictionary = "dictionary.json"\n'
            'key_file = "keys/uplink.key"\nkey_id = 1\n', encoding="utf-8")
        self.start_ground()
        if self.web_port is not None:
            self.wait_port(self.start_web(), "web", self.web_port, startup_timeout_s)

    def wait_port(self, proc: subprocess.Popen[bytes], what: str, port: int, timeout_s: float) -> None:
        """Until a process listens on ``port`` on 127.0.0.1 (it may import for seconds first)."""
        deadline = time.monotonic() + timeout_s
        while True:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited with {proc.returncode}; see {self.out}/{what}.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not listen on port {port} within {timeout_s:.0f} s")
            time.sleep(0.1)  # polling another process's start-up

    @property
    def ground_toml(self) -> Path:
        return self.out / "ground.toml"

    @property
    def web_url(self) -> str | None:
        return None if self.web_port is None else f"http://127.0.0.1:{self.web_port}/"

    def start_ground(self) -> subprocess.Popen[bytes]:
        """Start (or restart) the ground station over the same archive."""
        return self._spawn("ground", [sys.executable, "-m", "magpie.cli", "ground", "--config", str(self.ground_toml)])

    def start_web(self) -> subprocess.Popen[bytes]:
        """Start (or restart) the web ground on its port."""
        return self._spawn("web", [sys.executable, "-m", "magpie.cli", "web", "--config", str(self.ground_toml),
                                   "--port", str(self.web_port), "--link", str(self.out / "link.json")])

    def stop_one(self, name: str, timeout_s: float = 10.0) -> int | None:
        """SIGINT (a clean stop), then SIGKILL if it does not stop in time; returns the exit code."""
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop on SIGINT; killed", name)
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def stop(self) -> dict[str, int | None]:
        """Flight first (its last packets go down), then web, ground, relay and the world."""
        return {name: self.stop_one(name) for name in ("flight", "web", "ground", "relay", "world")
                if name in self.procs}

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    # -- progress ----------------------------------------------------------------------------

    def progress(self) -> str:
        db = self.out / "archive.db"
        if not db.exists():
            return "waiting for the first packets"
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as con:
                packets = con.execute("SELECT COUNT(*) FROM packets").fetchone()[0]

                def latest(name: str) -> Any:
                    row = con.execute(
                        "SELECT s.value FROM samples s JOIN channel_names c ON c.scid=s.scid AND c.id=s.channel "
                        "WHERE c.name=? ORDER BY s.time DESC LIMIT 1", (name,)).fetchone()
                    return None if row is None else row[0]

                x, y = latest("nav.x_m"), latest("nav.y_m")
                ev = con.execute("SELECT name, text FROM events ORDER BY time DESC, id DESC LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            return f"archive not readable yet ({exc})"
        pos = "" if x is None or y is None else f", rover at ({float(x):.2f}, {float(y):.2f}) m"
        last = "" if ev is None else f", last event {ev[0]}: {ev[1]}"
        return f"{packets} packets archived{pos}{last}"


def _windows(params: Any) -> dict[str, float] | None:
    w = getattr(params, "windows", None)
    if w is None or not getattr(w, "period_s", 0):
        return None
    return {"period_s": w.period_s, "up_s": w.up_s, "phase_s": w.phase_s}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options ``magpie sim --realtime`` takes beyond ``magpie sim``'s own."""
    p.add_argument("--world", default=None, metavar="NAME",
                   help="with --realtime: fly the rover (default magpie/configs/sitl_rover.toml, or --config) "
                        "in this simulated world on the real clock (moon-farside or mars-jezero), with the "
                        "web ground; see magpie.sitlrun")
    p.add_argument("--speed", type=float, default=1.0,
                   help="with --realtime: world seconds per wall second (default 1)")
    p.add_argument("--web-port", type=int, default=8080,
                   help="with --realtime: port of the web ground on 127.0.0.1 (default 8080; 0: no web ground)")


def selected(args: argparse.Namespace) -> bool:
    """``--realtime`` flies in the world when a scenario is named or the vehicle has world devices."""
    if getattr(args, "world", None):
        return True
    if args.config is None:
        return False
    try:
        return wants_world(load_config(args.config))
    except ConfigError:
        return False  # the caller reports the configuration error


def run(args: argparse.Namespace, duration_s: float) -> int:
    """``magpie sim --realtime`` with a vehicle that flies in the world (see the module docstring)."""
    from sim_hw.scenario import SCENARIOS

    config = args.config or default_config()
    if args.world is not None and args.world not in SCENARIOS:
        print(f"magpie sim: --world {args.world!r}: no such world; worlds: {', '.join(sorted(SCENARIOS))}",
              file=sys.stderr)
        return 2
    try:
        m = LiveMission(config, args.out, preset=args.preset, seed=args.seed, speed=getattr(args, "speed", 1.0),
                        web_port=getattr(args, "web_port", 8080), scenario=args.world or "moon-farside")
    except ConfigError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    stop = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        print(f"magpie sim --realtime: world ({m.speed:g}x), flight, relay ({m.preset}), ground"
              f"{' and web ground' if m.web_port else ''} on 127.0.0.1; output in {m.out}", flush=True)
        try:
            m.start()
        except (RuntimeError, ConfigError, OSError) as exc:
            print(f"magpie sim: {exc}", file=sys.stderr)
            m.stop()
            return 1
        if m.web_url:
            print(f"web ground: {m.web_url}   (Ctrl-C stops everything)", flush=True)
        t0 = time.monotonic()
        next_report = t0 + 5.0
        while stop["signal"] is None and time.monotonic() - t0 < duration_s:
            time.sleep(0.2)  # the launcher only watches its children and prints progress
            if m.dead():
                print(f"magpie sim: {', '.join(m.dead())} stopped unexpectedly; see the logs in {m.out}",
                      file=sys.stderr)
                break
            if not args.quiet and time.monotonic() >= next_report:
                print(f"[{time.monotonic() - t0:6.0f} s] {m.progress()}", flush=True)
                next_report += 5.0
        print("stopping: flight, web, ground, relay, world", flush=True)
        codes = m.stop()
        print(f"stopped ({', '.join(f'{k} exit {v}' for k, v in codes.items())}); {m.progress()}", flush=True)
        bad = {k: v for k, v in codes.items() if v not in (0, 130, -signal.SIGINT)}
        return 1 if bad else 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)

