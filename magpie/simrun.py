"""``magpie sim``: a whole mission on one machine, on the simulated clock by default.

The flight software runs unchanged against the simulated world: the world is stepped in
lockstep by the simulated clock, devices are ``sim://`` devices (or, with ``--mcu pty``, the real
serial driver talking to the MCU emulator on a pseudo-terminal, on the real clock). Output goes to
``--out`` (default ``./magpie-run``): ``archive.db`` (the ground archive), ``telemetry.jsonl``
(every packet, event and command response as the vehicle produced it), ``dictionary.json`` and
the vehicle's state directory. With the same configuration,
seed and duration the telemetry file is identical byte for byte.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import logging
import shutil
import signal
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from flight.clock import NS, RealClock, SimClock
from flight.config import ConfigError, VehicleConfig
from flight.config import load as load_config
from flight.model import Severity
from flight.outbound import ConsoleSink, EventRecord, JsonLinesSink, TlmPacket
from flight.vehicle import Vehicle
from magpie import sitlrun
from magpie.durations import format_duration, parse_duration
from mission.solo import FAST_FLUSH_S, FAST_WORLD, _world_for, assemble, fast_config, fly, reboot

__all__ = ["FAST_FLUSH_S", "FAST_WORLD", "assemble", "cmd_sim", "fast_config", "fly", "reboot", "register"]

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "sim_mission.toml"


def default_config_path() -> Path:
    return Path(str(resources.files("magpie.configs").joinpath(DEFAULT_CONFIG)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim", help="run a mission in the emulator (simulated world, lockstep by default)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", default="10m",
                   help="simulated time to run: 90, 90s, 15m, 1h30m, 2d (default 10m)")
    p.add_argument("--seed", type=_seed, default=None,
                   help="seed for the world and all noise (default 1; a scenario's own seed with --scenario)")
    p.add_argument("--config", type=Path, default=None,
                   help="vehicle TOML (default: the built-in simulated rover)")
    p.add_argument("--out", type=Path, default=Path("magpie-run"),
                   help="output directory (default ./magpie-run; its previous state is replaced)")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the state directory from a previous run (boot count, parameters)")
    p.add_argument("--mcu", choices=("sim", "pty"), default="sim",
                   help="sim: in-process devices in lockstep (default); pty: the real serial "
                        "driver and the MCU emulator on a pseudo-terminal, on the real clock")
    p.add_argument("--preset", default="moon-farside", choices=("moon-farside", "mars-relay", "ideal"),
                   help="relay link between vehicle and ground (default moon-farside: 1.3 s light time "
                        "plus the relay hop, station-keeping gaps)")
    p.add_argument("--archive", type=Path, default=None,
                   help="ground archive (SQLite) to write (default OUT/archive.db); query it afterwards "
                        "with magpie tlm / magpie events")
    p.add_argument("--realtime", action="store_true",
                   help="run relay, ground and flight as separate processes on 127.0.0.1 in real time "
                        "(the world-less core vehicle unless --config names another without sim:// devices)")
    p.add_argument("--fast", action="store_true",
                   help="fast mode for long runs (a lunar day and night): the world moves power and "
                        "heat in 60 s steps and fault protection slows every rate group while the "
                        "vehicle is idle or hibernating (needs a fault component)")
    p.add_argument("--seq", type=Path, default=None, metavar="FILE",
                   help="the plan: a sequence file sent up at the start (default: the built-in demo, a "
                        "short drive, a turn, a stop and a ping; magpie/configs/imaging_demo.seq images)")
    p.add_argument("--scenario", default=None, metavar="NAME|FILE",
                   help="fly a scenario: several vehicles on one world through one relay (built-in: "
                        "change4-farside, zhurong-utopia, ilrs-southpole, lunar-day, imaging-demo; or a "
                        "scenario TOML file; 'list' lists them). --duration, --seed, --out, --fast and "
                        "--archive apply; with --realtime every vehicle flies as its own process on the real clock")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
    sitlrun.add_arguments(p)  # --world, --speed, --web-port: live operations in the world
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.set_defaults(func=cmd_sim)


def _load(config: Path | None) -> VehicleConfig:
    return load_config(config or default_config_path())


class _Tally:
    """A sink that keeps what the summary shows."""

    def __init__(self) -> None:
        self.events: collections.Counter[str] = collections.Counter()
        self.notable: list[EventRecord] = []
        self.responses: collections.Counter[str] = collections.Counter()
        self.packets = 0

    def write(self, items: list[Any]) -> None:
        for item in items:
            if isinstance(item, EventRecord):
                self.events[item.severity.name] += 1
                if item.severity <= Severity.WARNING_HI and len(self.notable) < 200:
                    self.notable.append(item)
            elif isinstance(item, TlmPacket):
                self.packets += 1
            elif getattr(item, "kind", "") == "response":  # product chunks are counted by comm
                self.responses[item.stage] += 1

    def close(self) -> None:
        pass


def dictionary_only(config_path: Path | None) -> dict:
    config = _load(config_path)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="magpie-dict-") as tmp:
        config = VehicleConfig(**{**config.__dict__, "state_dir": Path(tmp) / "state"})
        # a comm component needs its uplink key to assemble; the dictionary does not depend on
        # it, so a throwaway key stands in (relative key paths resolve beside the state dir)
        from mission.lockstep import ensure_key

        for cc in config.components:
            key_file = str(cc.options.get("key_file") or "") if cc.type == "comm" else ""
            if key_file and not Path(key_file).expanduser().is_absolute():
                ensure_key(Path(tmp) / key_file)
        vehicle, _ = assemble(config, seed=0)
        try:
            return vehicle.dictionary
        finally:
            vehicle.close_devices()


def _summary(vehicle: Vehicle, tally: _Tally, world: Any, wall_s: float, sim_s: float, out: Path,
             mission_lines: list[str] | None = None) -> str:
    tlm = vehicle.fw.tlm
    lines = ["", "=" * 72, f"Magpie sim: {format_duration(sim_s)} simulated in {wall_s:.1f} s wall "
             f"({sim_s / max(wall_s, 1e-9):.0f}x real time)"]
    ex = vehicle.executive
    groups = ", ".join(f"{g.name} {g.hz:g} Hz: {g.cycles} cycles, {g.slips} slips" for g in ex.groups)
    lines.append(f"Rate groups   {groups}")
    faulted = [m.component.name for g in ex.groups for m in g.members if m.faulted]
    if faulted:
        lines.append(f"Faulted       {', '.join(faulted)}")
    known = set(tlm.names())
    mode = tlm.get("fault.mode_name") if "fault.mode_name" in known else None
    if mode is not None:
        trips = tlm.get("fault.trips") if "fault.trips" in known else None
        lines.append(f"Mode          {mode}" + ("" if trips is None else f"; monitor trips {trips}"))
    c = vehicle.dispatcher.counts
    lines.append(f"Commands      accepted {c['accepted']}, rejected {c['rejected']}, "
                 f"completed {c['completed']}, failed {c['failed']}")
    sev = ", ".join(f"{s.name} {tally.events[s.name]}" for s in Severity if tally.events[s.name])
    lines.append(f"Events        {sum(tally.events.values())} ({sev or 'none'})")
    lines.append(f"Housekeeping  {tally.packets} packets; outbound dropped {vehicle.fw.outbound.total_dropped}")
    shown = [n for n in tlm.names() if n.split(".")[0] in ("sys", "drive", "power", "thermal", "imu",
                                                           "nav", "seq")]
    if shown:
        lines.append("Final telemetry")
        for name in shown:
            value = tlm.get(name)
            if value is None:
                continue
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            state = tlm.limit_state(name)
            flag = "" if state == "ok" else f"  [{state.upper()}]"
            lines.append(f"  {name:<28} {text}{flag}")
    if world is not None and hasattr(world, "summary"):
        lines.append("World (truth)  " + world.summary())
    if tally.notable:
        lines.append("Warnings")
        for ev in tally.notable[-10:]:
            lines.append(f"  [{ev.time_ns / NS:10.1f}] {ev.severity.name:<10} {ev.component}.{ev.name}: {ev.text}")
    lines += mission_lines or []
    lines.append(f"Output        {out}/telemetry.jsonl, {out}/dictionary.json, {out}/state/")
    if mission_lines:
        lines.append(f"Query         magpie tlm --config {out}/ground.toml --since 0 power.soc; "
                     f"magpie events --config {out}/ground.toml --since 0")
    lines.append("=" * 72)
    return "\n".join(lines)


def _progress(args: argparse.Namespace, t_start: float, duration: float) -> Any:
    wall0 = time.monotonic()
    last = [wall0]

    def report(now_s: float) -> None:
        wall = time.monotonic()
        if args.quiet or wall - last[0] < 2.0:
            return
        last[0] = wall
        done = now_s - t_start
        print(f"  sim {format_duration(done)} / {format_duration(duration)} ({100 * done / duration:3.0f}%), "
              f"{done / max(wall - wall0, 1e-9):.0f}x real time", file=sys.stderr, flush=True)

    return report


def _realtime(args: argparse.Namespace, duration: float) -> int:
    from mission.lockstep import run_realtime_mission

    if sitlrun.selected(args):
        return sitlrun.run(args, duration)

    config = args.config or Path(str(resources.files("magpie.configs").joinpath("core_mission.toml")))
    if not args.quiet:
        print(f"magpie sim --realtime: relay, ground and flight as processes on 127.0.0.1 for "
              f"{format_duration(duration)} of real time ({args.preset}), output {args.out}/", file=sys.stderr)
    try:
        result = run_realtime_mission(config, args.out, duration_s=duration, preset=args.preset, seed=args.seed)
    except ConfigError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    print("\n".join(result.lines()))
    return 0 if all(code == 0 for code in result.returncodes.values()) else 1


def _scenario(args: argparse.Namespace, duration: float) -> int:
    """``magpie sim --scenario``: the fleet mission of :mod:`mission.fleet`, summarised per vehicle."""
    from mission.fleet import FleetMission
    from mission.scenario import ScenarioError, describe_builtins, load

    if args.scenario == "list":
        print("\n".join(describe_builtins()))
        return 0
    try:
        scenario = load(args.scenario)
    except ScenarioError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    if not args.keep_state and out.exists():
        for v in scenario.vehicles:
            shutil.rmtree(out / v.name, ignore_errors=True)
        shutil.rmtree(out / "ground-state", ignore_errors=True)
        archive = args.archive or out / "archive.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{archive}{suffix}").unlink(missing_ok=True)
    fast = args.fast or scenario.fast
    try:
        mission = FleetMission(scenario, out, seed=args.seed if args.seed_given else None, fast=fast,
                               archive_path=args.archive)
    except (ConfigError, ValueError) as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"magpie sim: scenario {scenario.name} ({scenario.roster()}), {format_duration(duration)} of "
              f"simulated time{' in fast mode' if fast else ''}, seed {mission.seed}, output {out}/",
              file=sys.stderr, flush=True)
    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        for craft in mission.crafts.values():
            craft.vehicle.executive.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    report = _progress(args, mission.now, duration)
    try:
        mission.advance(mission.start_s + duration, lambda t: None if stop["signal"] else report(t))
        if stop["signal"] is None:
            if not args.quiet:
                print("  run complete; downlinking what is still on board ...", file=sys.stderr, flush=True)
            mission.drain()
        summary = mission.summary()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        mission.close()
    print("\n".join(["", "=" * 72, *summary.lines(),
                     f"Query         magpie tlm --config {out}/ground.toml --scid N --since 0 power.soc; "
                     f"magpie images list --archive {summary.archive_path}", "=" * 72]))
    if stop["signal"] is not None:
        return 130 if stop["signal"] == signal.SIGINT else 143
    return 0


def _write_ground_toml(out: Path, mission: Any, config: VehicleConfig) -> None:
    """A ground configuration beside the archive, so `magpie tlm/events --config` can query it."""
    from mission.lockstep import KEY_ID

    archive = Path(mission.archive_path).resolve()
    (out / "ground.toml").write_text(
        "# Written by magpie sim: the ground side of this run, for magpie tlm / events / cmd.\n"
        f'archive = "{archive}"\nstate_dir = "ground-state"\n'
        f'[[vehicle]]\nscid = {config.spacecraft_id}\nname = "{config.name}"\n'
        f'dictionary = "dictionary.json"\nkey_file = "keys/uplink.key"\nkey_id = {KEY_ID}\n',
        encoding="utf-8")


def _seed(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def cmd_sim(args: argparse.Namespace) -> int:
    args.seed_given = args.seed is not None
    if args.seed is None:
        args.seed = 1
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        print(f"magpie sim: --duration: {exc}", file=sys.stderr)
        return 2
    if args.scenario is not None:
        if args.realtime and args.scenario != "list":
            return sitlrun.run(args, duration)
        return _scenario(args, duration)
    if args.realtime:
        return _realtime(args, duration)
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    state_dir = out / "state"
    if not args.keep_state:
        for stale in (state_dir, out / "ground-state"):
            if stale.exists():
                shutil.rmtree(stale)
        archive = args.archive or out / "archive.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{archive}{suffix}").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    config = VehicleConfig(**{**config.__dict__, "state_dir": state_dir})
    if args.fast:
        try:
            config = fast_config(config)
        except ConfigError as exc:
            print(f"magpie sim: {exc}", file=sys.stderr)
            return 2
    has_link = any(c.type == "comm" for c in config.components)
    if args.mcu == "pty":
        devices = {name: url.replace("sim://mcu", "mcu+pty://") for name, url in config.devices.items()}
        config = VehicleConfig(**{**config.__dict__, "devices": devices})
        if has_link:
            print("magpie sim: --mcu pty runs on the real clock; the lockstep link is left out "
                  "(use --realtime for the link on real time)", file=sys.stderr)
            comm_names = {c.name for c in config.components if c.type == "comm"}
            radios = {d for c in config.components if c.type == "comm" for d in c.devices.values()}
            config = dataclasses.replace(
                config,
                components=tuple(c for c in config.components if c.name not in comm_names),
                devices={k: v for k, v in config.devices.items() if k not in radios},
                rate_groups=tuple(dataclasses.replace(g, members=tuple(m for m in g.members if m not in comm_names))
                                  for g in config.rate_groups))
            has_link = False
    seq_dir = state_dir / "sequences"
    seq_dir.mkdir(parents=True, exist_ok=True)
    if args.seq is not None:
        try:
            plan_text = args.seq.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            print(f"magpie sim: --seq {args.seq}: {exc}", file=sys.stderr)
            return 2
        plan_name = args.seq.name
    else:
        plan_text = resources.files("magpie.configs").joinpath("demo.seq").read_text(encoding="utf-8")
        plan_name = "demo.seq"
    (seq_dir / plan_name).write_text(plan_text, encoding="utf-8")
    if args.seq is not None:
        from flight.timeline import plan_files

        for f in plan_files(args.seq)[1:]:  # the contingencies the plan names go on board with it
            if not (seq_dir / f.name).exists():
                (seq_dir / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")

    mission = None
    try:
        if has_link:
            from mission.lockstep import LockstepMission

            world = _world_for(config, args.seed, args.fast)
            clock = SimClock(start_s=world.time_s if world is not None else 0.0)
            if world is not None:
                clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
            # the plan goes up from the ground like any command, through the relay
            pace = {"tick_s": 5.0, "flush_every_s": 5.0} if args.fast else {}
            mission = LockstepMission(config, out, preset=args.preset, seed=args.seed,
                                      device_context={"world": world} if world is not None else {},
                                      clock=clock, plan=[(5.0, "SEQ_RUN", {"file": plan_name})],
                                      archive_path=args.archive, **pace)
            vehicle = mission.vehicle
        else:
            vehicle, world = assemble(config, args.seed, RealClock() if args.mcu == "pty" else None,
                                      fast=args.fast)
            vehicle.dispatcher.submit("SEQ_RUN", {"file": plan_name}, source="sim")
    except ConfigError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    tally = _Tally()
    vehicle.add_sink(JsonLinesSink(str(out / "telemetry.jsonl"), vehicle.fw.tlm.id_to_name()))
    vehicle.add_sink(ConsoleSink(sys.stderr, Severity.WARNING_HI if not args.verbose else Severity.ACTIVITY_HI))
    vehicle.add_sink(tally)
    from flight.dictionary import to_json

    (out / "dictionary.json").write_text(to_json(vehicle.dictionary), encoding="utf-8")
    if mission is not None:
        _write_ground_toml(out, mission, config)

    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        (mission.vehicle if mission is not None else current[0]).executive.request_stop()

    current = [vehicle]

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t_start = vehicle.clock.now()
    until = t_start + duration
    wall0 = time.monotonic()
    report = _progress(args, t_start, duration)
    if not args.quiet:
        link = f", link {args.preset} to the ground archive" if mission else ""
        print(f"magpie sim: {format_duration(duration)} of simulated time, seed {args.seed}{link}, "
              f"config {config.source}, output {out}/", file=sys.stderr, flush=True)
    mission_lines: list[str] = []
    try:
        if mission is not None:
            mission.advance(until, report)
            if stop["signal"] is None:
                if not args.quiet:
                    print("  run complete; downlinking what is still on board ...", file=sys.stderr, flush=True)
                mission.drain()
        else:
            context = {"world": world} if world is not None else {}
            chunk, flush = (FAST_FLUSH_S, FAST_FLUSH_S) if args.fast else (10.0, 1.0)

            def track(now_s: float) -> None:
                report(now_s)

            vehicle = current[0] = fly(vehicle, until, context, chunk, flush, track)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if mission is not None:
            vehicle = mission.vehicle
            mission_lines = mission.summary().lines()
            mission.close()
        else:
            vehicle = current[0]
            vehicle.shutdown()
    wall_s = time.monotonic() - wall0
    sim_s = min(vehicle.clock.now(), until) - t_start
    print(_summary(vehicle, tally, world, wall_s, sim_s, out, mission_lines))
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']}; state persisted", file=sys.stderr)
        return 130 if stop["signal"] == signal.SIGINT else 143
    return 0
