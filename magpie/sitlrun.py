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

With ``--scenario NAME`` (``magpie sim --realtime --scenario change4-farside``) the world process
holds the scenario's whole site (``python -m sim_hw.sitl --mission NAME``: one terrain, each
vehicle with its own MCU emulator, cameras and watchdog, each drawn in the others' cameras),
every vehicle flies in its own flight process (``magpie flight --scenario NAME --vehicle V``,
named ``flight-V``, state in ``OUT/V/``), the relay carries the scenario's link (its light time,
hops, windows and one shared transponder: ``magpie relay --scenario NAME``), and one ground and
one web ground serve them all. Each vehicle's plan is on board; the launcher starts it
(``SEQ_RUN`` through the ground) at the scenario's ``plan_at_s`` unless ``--manual`` leaves that
to the operator.

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

from flight.config import ConfigError, VehicleConfig
from flight.config import load as load_config
from sim_hw.sitl import camera_options

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "sitl_rover.toml"


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
    return camera_options(config.devices)


def device_overrides(config: VehicleConfig, sitl: dict[str, str], radio: str) -> dict[str, str]:
    """The ``--device NAME=URL`` replacements that put the vehicle on the world and the relay."""
    out = {}
    for name, url in config.devices.items():
        if url.startswith(("sim://mcu", "mcu+", "sim://sampling")):
            # a sample-return lander's sampling board is its MCU on the real-time world: the
            # emulator drives the world's drill, arm and container over the same serial link
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
class Craft:
    """One vehicle of a live mission: its flight process's name, identity and configuration."""

    process: str  # "flight" alone, "flight-<name>" in a scenario
    name: str
    scid: int
    config: VehicleConfig
    home: Path  # its state/, keys/ and dictionary.json live here
    plan: Path | None = None
    plan_at_s: float = 5.0
    sequences: tuple[Path, ...] = ()  # stored on board beside the plan (its contingencies)


@dataclass
class LiveMission:
    """The processes (see the module docstring); :meth:`start`, :meth:`progress`, :meth:`stop`.

    ``mission`` names a mission scenario (``mission/scenarios`` or a TOML file): then every
    vehicle of it flies, each in its own flight process against its own devices of one world
    site, through one relay (the scenario's link, one transponder) to one ground; ``config``,
    ``preset`` and ``scenario`` are then unused. Each vehicle's plan is put on board; with
    ``plans`` the launcher starts them through the ground as the scenario says."""

    config_path: Path | None
    out: Path
    preset: str = "ideal"
    seed: int | None = 1
    speed: float = 1.0
    scenario: str = "moon-farside"
    web_port: int | None = 8080
    ack_interval_s: float = 0.5
    mission: str | None = None
    plans: bool = False
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.out = Path(self.out).resolve()
        self.crafts: list[Craft] = []
        self.scenario_plan: Any = None
        if self.mission is not None:
            from mission.scenario import ScenarioError, load

            try:
                self.scenario_plan = load(self.mission)
            except ScenarioError as exc:
                raise ConfigError(str(exc)) from None
            for v in self.scenario_plan.vehicles:
                if not wants_world(v.config):
                    raise ConfigError(f"{self.mission}: vehicle {v.name}: no MCU or camera device")
                self.crafts.append(Craft(f"flight-{v.name}", v.name, v.scid, v.config, self.out / v.name,
                                         v.plan, v.plan_at_s, v.sequences))
            self.config_path = None
        else:
            if self.config_path is None:
                raise ConfigError("a live mission needs a vehicle configuration or a scenario")
            self.config_path = Path(self.config_path).resolve()
            config = load_config(self.config_path)
            if not wants_world(config):
                raise ConfigError(f"{self.config_path}: no MCU or camera device; nothing to fly in the world")
            self.crafts.append(Craft("flight", config.name, config.spacecraft_id, config, self.out))
        self.config = self.crafts[0].config
        self.scid = self.crafts[0].scid
        self.ports = {k: free_port() for k in ("vehicle", "ground", "pub", "commands")}
        if self.web_port == 0:
            self.web_port = None
        self.plans_sent: list[tuple[str, int]] = []

    @property
    def flights(self) -> list[str]:
        return [c.process for c in self.crafts]

    # -- processes ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with open(self.out / f"{name}.log", "wb") as fh:
            proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=self.out, start_new_session=True)
        self.procs[name] = proc
        return proc

    def _wait_file(self, path: Path, proc: subprocess.Popen[bytes], what: str, timeout_s: float) -> None:
        from mission.lockstep import wait_started

        wait_started(proc, what, path.exists, f"write {path.name}", self.out / f"{what}.log", timeout_s)

    def _link_params(self) -> Any:
        from sim_hw.relay import RelayParams

        return self.scenario_plan.relay if self.scenario_plan is not None else RelayParams.preset(self.preset)

    def start(self, startup_timeout_s: float = 60.0) -> None:
        from flight.link.auth import write_key_file

        self.out.mkdir(parents=True, exist_ok=True)
        keys = self.out / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        if not (keys / "uplink.key").exists():
            write_key_file(keys / "uplink.key")
        for stale in ["sitl.json"] + [str((c.home / "dictionary.json").relative_to(self.out)) for c in self.crafts]:
            (self.out / stale).unlink(missing_ok=True)
        py = sys.executable
        world = [py, "-m", "sim_hw.sitl", "--out", str(self.out), "--speed", str(self.speed)]
        if self.seed is not None:
            world += ["--seed", str(self.seed)]
        if self.scenario_plan is not None:
            world += ["--mission", str(self.mission)]
        else:
            world += ["--scenario", self.scenario]
            for name, opts in world_cameras(self.config).items():
                world += ["--camera", f"{name}={opts}"]
        wproc = self._spawn("world", world)
        self._wait_file(self.out / "sitl.json", wproc, "world", startup_timeout_s)
        sitl = json.loads((self.out / "sitl.json").read_text(encoding="utf-8"))
        for c in self.crafts:
            self._start_flight(c, sitl["vehicles"][c.name] if self.scenario_plan is not None else sitl)
        for c in self.crafts:
            self._wait_file(c.home / "dictionary.json", self.procs[c.process], c.process, startup_timeout_s)
        params = self._link_params()
        (self.out / "link.json").write_text(json.dumps({
            "preset": self.scenario_plan.name if self.scenario_plan is not None else self.preset,
            "light_time_s": params.light_time_s, "hop_delay_s": params.hop_delay_s,
            "windows": _windows(params), "t0_unix": time.time(), "landmarks": self.landmarks()}), encoding="utf-8")
        relay = [py, "-m", "magpie.cli", "relay", "--vehicle-endpoint", f"tcp://127.0.0.1:{self.ports['vehicle']}",
                 "--ground-endpoint", f"tcp://127.0.0.1:{self.ports['ground']}", "--seed", str(self.seed or 0),
                 "--stats-interval", "0"]
        relay += ["--scenario", str(self.mission)] if self.scenario_plan is not None else ["--preset", self.preset]
        self._spawn("relay", relay)
        text = (f'archive = "archive.db"\nrelay = "tcp://127.0.0.1:{self.ports["ground"]}"\n'
                f'pub = "tcp://127.0.0.1:{self.ports["pub"]}"\ncommands = "tcp://127.0.0.1:{self.ports["commands"]}"\n'
                f'state_dir = "ground-state"\nack_interval_s = {self.ack_interval_s}\nretry_interval_s = 30.0\n')
        for c in self.crafts:
            text += (f'[[vehicle]]\nscid = {c.scid}\nname = "{c.name}"\n'
                     f'dictionary = "{(c.home / "dictionary.json").relative_to(self.out)}"\n'
                     'key_file = "keys/uplink.key"\nkey_id = 1\n')
        self.ground_toml.write_text(text, encoding="utf-8")
        from ground.server import TOKEN_FILE

        (self.out / "ground-state" / TOKEN_FILE).unlink(missing_ok=True)
        self._wait_file(self.out / "ground-state" / TOKEN_FILE, self.start_ground(), "ground", startup_timeout_s)
        if self.web_port is not None:
            self.wait_port(self.start_web(), "web", self.web_port, startup_timeout_s)
        self.t0 = time.monotonic()

    def landmarks(self) -> list[dict[str, Any]]:
        """A scenario's landers, where they stand, for the web ground's map (rovers report their own)."""
        if self.scenario_plan is None:
            return []
        return [{"name": v.name, "kind": v.kind, "x": v.x, "y": v.y}
                for v in self.scenario_plan.vehicles if v.kind == "lander"]

    def _start_flight(self, c: Craft, sitl: dict[str, str]) -> None:
        """One vehicle's flight process on its world devices, its radio on the relay."""
        import shutil

        if c.home != self.out:
            (c.home / "keys").mkdir(parents=True, mode=0o700, exist_ok=True)
            shutil.copy2(self.out / "keys" / "uplink.key", c.home / "keys" / "uplink.key")
        # the plan and its contingencies are on board, as they were uplinked before the run
        for stored in ([c.plan] if c.plan is not None else []) + list(c.sequences):
            seqs = c.home / "state" / "sequences"
            seqs.mkdir(parents=True, exist_ok=True)
            (seqs / stored.name).write_text(stored.read_text(encoding="utf-8"), encoding="utf-8")
        radio = f"radio+zmq://tcp://127.0.0.1:{self.ports['vehicle']}?scid={c.scid}"
        argv = [sys.executable, "-m", "magpie.flightrun"]
        if self.scenario_plan is not None:
            argv += ["--scenario", str(self.mission), "--vehicle", c.name]
        else:
            argv += ["--config", str(self.config_path)]
        argv += ["--state-dir", str(c.home / "state"), "--dict-out", str(c.home / "dictionary.json")]
        for name, url in device_overrides(c.config, sitl, radio).items():
            argv += ["--device", f"{name}={url}"]
        self._spawn(c.process, argv)

    def due_plans(self) -> list[Craft]:
        """Vehicles whose scenario plan is due now and not yet started (with ``plans``)."""
        if not self.plans or not hasattr(self, "t0"):
            return []
        now = time.monotonic() - self.t0
        sent = {n for n, _ in self.plans_sent}
        return [c for c in self.crafts if c.plan is not None and c.name not in sent and now >= c.plan_at_s]

    def start_plans(self, timeout_s: float = 5.0) -> list[str]:
        """Send ``SEQ_RUN`` for each plan that is due, through the ground with its token."""
        from ground.client import GroundClient
        from ground.server import read_token

        lines = []
        for c in self.due_plans():
            with GroundClient(command_endpoint=f"tcp://127.0.0.1:{self.ports['commands']}",
                              token=read_token(self.out / "ground-state")) as client:
                rec = client.send_command(c.scid, "SEQ_RUN", {"file": c.plan.name}, timeout_s=600.0)
            self.plans_sent.append((c.name, int(rec["id"])))
            lines.append(f"{c.name}: SEQ_RUN {c.plan.name} sent (command {rec['id']})")
        return lines

    def wait_port(self, proc: subprocess.Popen[bytes], what: str, port: int, timeout_s: float) -> None:
        """Until a process listens on ``port`` on 127.0.0.1 (it may import for seconds first)."""
        from mission.lockstep import wait_started

        def listening() -> bool:
            with socket.socket() as s:
                s.settimeout(0.5)
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_started(proc, what, listening, f"listen on port {port}", self.out / f"{what}.log", timeout_s)

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

    @property
    def stop_order(self) -> list[str]:
        return [*self.flights, "web", "ground", "relay", "world"]

    def stop(self) -> dict[str, int | None]:
        """Flights first (their last packets go down), then web, ground, relay and the world."""
        return {name: self.stop_one(name) for name in self.stop_order if name in self.procs}

    def dead(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is not None]

    # -- progress ----------------------------------------------------------------------------

    def progress(self) -> str:
        from ground.archive import Archive, ArchiveError

        db = self.out / "archive.db"
        if not db.exists():
            return "waiting for the first packets"
        try:
            # the archive's own readers: samples packed in blocks are read by channel, not
            # unpacked row by row through the samples view
            with Archive(db, readonly=True) as archive:
                packets = archive.count("packets")
                where = []
                for c in self.crafts:
                    pos = []
                    for name in ("nav.x_m", "nav.y_m"):
                        cid = archive.channel_id(c.scid, name)
                        last = archive.latest(c.scid, cid) if cid is not None else None
                        pos.append(None if last is None else last[1])
                    if None not in pos:
                        who = "rover" if len(self.crafts) == 1 else c.name
                        where.append(f"{who} at ({float(pos[0]):.2f}, {float(pos[1]):.2f}) m")
                ev = archive._query("SELECT name, text FROM events ORDER BY time DESC, id DESC LIMIT 1")
        except (ArchiveError, sqlite3.Error) as exc:
            return f"archive not readable yet ({exc})"
        pos_text = "".join(f", {w}" for w in where)
        last_ev = "" if not ev else f", last event {ev[0][0]}: {ev[0][1]}"
        return f"{packets} packets archived{pos_text}{last_ev}"


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
    p.add_argument("--manual", action="store_true",
                   help="with --realtime --scenario: put each vehicle's plan on board but leave starting it "
                        "(SEQ_RUN) to the operator; by default the launcher starts it as the scenario says")


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

    mission = getattr(args, "scenario", None)
    if mission is not None and (args.world is not None or args.config is not None):
        print("magpie sim: --realtime --scenario: the scenario names its world and vehicles; "
              "drop --world and --config", file=sys.stderr)
        return 2
    config = args.config or default_config()
    if args.world is not None and args.world not in SCENARIOS:
        print(f"magpie sim: --world {args.world!r}: no such world; worlds: {', '.join(sorted(SCENARIOS))}",
              file=sys.stderr)
        return 2
    if not getattr(args, "speed", 1.0) > 0:
        print("magpie sim: --speed: must be positive", file=sys.stderr)
        return 2
    seed = args.seed if getattr(args, "seed_given", True) or mission is None else None
    try:
        m = LiveMission(None if mission else config, args.out, preset=args.preset, seed=seed,
                        speed=getattr(args, "speed", 1.0), web_port=getattr(args, "web_port", 8080),
                        scenario=args.world or "moon-farside", mission=mission,
                        plans=not getattr(args, "manual", False))
    except ConfigError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    stop = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if m.scenario_plan is not None:
            print(f"magpie sim --realtime --scenario {m.scenario_plan.name}: world ({m.speed:g}x), "
                  f"{len(m.crafts)} flight processes ({m.scenario_plan.roster()}), relay, ground"
                  f"{' and web ground' if m.web_port else ''} on 127.0.0.1; output in {m.out}", flush=True)
        else:
            print(f"magpie sim --realtime: world ({m.speed:g}x), flight, relay ({m.preset}), ground"
                  f"{' and web ground' if m.web_port else ''} on 127.0.0.1; output in {m.out}", flush=True)
        try:
            m.start()
        except (RuntimeError, ConfigError, OSError) as exc:
            print(f"magpie sim: {exc}", file=sys.stderr)
            m.stop()
            return 1
        except BaseException:
            m.stop()
            raise
        if m.web_url:
            print(f"web ground: {m.web_url}   (Ctrl-C stops everything)", flush=True)
        try:
            _watch(m, args, duration_s, stop)
        finally:
            print(f"stopping: {', '.join(n for n in m.stop_order if n in m.procs)}", flush=True)
            codes = m.stop()
        print(f"stopped ({', '.join(f'{k} exit {v}' for k, v in codes.items())}); {m.progress()}", flush=True)
        bad = {k: v for k, v in codes.items() if v not in (0, 130, -signal.SIGINT)}
        return 1 if bad else 0
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _watch(m: LiveMission, args: argparse.Namespace, duration_s: float, stop: dict[str, Any]) -> None:
    """Watch the children, start due plans and print progress until the end or a signal."""
    t0 = time.monotonic()
    next_report = t0 + 5.0
    while stop["signal"] is None and time.monotonic() - t0 < duration_s:
        time.sleep(0.2)  # the launcher only watches its children and prints progress
        if m.dead():
            print(f"magpie sim: {', '.join(m.dead())} stopped unexpectedly; see the logs in {m.out}",
                  file=sys.stderr)
            break
        try:
            for line in m.start_plans():
                print(line, flush=True)
        except (OSError, RuntimeError, TimeoutError, ConfigError) as exc:
            print(f"magpie sim: could not start a plan: {exc}", file=sys.stderr)
            m.plans = False
        if not args.quiet and time.monotonic() >= next_report:
            print(f"[{time.monotonic() - t0:6.0f} s] {m.progress()}", flush=True)
            next_report += 5.0

