"""``magpie sim``: a whole mission on one machine, on the simulated clock by default.

The flight software runs unchanged against the simulated world: the world is stepped in
lockstep by the simulated clock, devices are ``sim://`` devices (or, with ``--mcu pty``, the real
serial driver talking to the MCU emulator on a pseudo-terminal, on the real clock). Output goes to
``--out`` (default ``./magpie-run``): ``telemetry.jsonl`` (every packet, event and command
response), ``dictionary.json`` and the vehicle's state directory. With the same configuration,
seed and duration the telemetry file is identical byte for byte.
"""

from __future__ import annotations

import argparse
import collections
import logging
import shutil
import signal
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

from flight.clock import NS, Clock, RealClock, SimClock
from flight.config import ConfigError, VehicleConfig
from flight.config import load as load_config
from flight.model import Severity
from flight.outbound import ConsoleSink, EventRecord, JsonLinesSink, TlmPacket
from flight.vehicle import Vehicle
from magpie.durations import format_duration, parse_duration

log = logging.getLogger(__name__)

DEFAULT_CONFIG = "sim_rover.toml"


def default_config_path() -> Path:
    return Path(str(resources.files("magpie.configs").joinpath(DEFAULT_CONFIG)))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sim", help="run a mission in the emulator (simulated world, lockstep by default)",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", default="10m",
                   help="simulated time to run: 90, 90s, 15m, 1h30m, 2d (default 10m)")
    p.add_argument("--seed", type=int, default=1, help="seed for the world and all noise (default 1)")
    p.add_argument("--config", type=Path, default=None,
                   help="vehicle TOML (default: the built-in simulated rover)")
    p.add_argument("--out", type=Path, default=Path("magpie-run"),
                   help="output directory (default ./magpie-run; its previous state is replaced)")
    p.add_argument("--keep-state", action="store_true",
                   help="keep the state directory from a previous run (boot count, parameters)")
    p.add_argument("--mcu", choices=("sim", "pty"), default="sim",
                   help="sim: in-process devices in lockstep (default); pty: the real serial "
                        "driver and the MCU emulator on a pseudo-terminal, on the real clock")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the summary")
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
            else:
                self.responses[item.stage] += 1

    def close(self) -> None:
        pass


def _world_for(config: VehicleConfig, seed: int) -> Any | None:
    """The simulated world, when the configuration uses sim:// devices."""
    if not any(url.startswith(("sim://", "mcu+pty://")) for url in config.devices.values()):
        return None
    from sim_hw.world import World

    return World.for_mission(seed=seed)


def assemble(config: VehicleConfig, seed: int, clock: Clock | None = None) -> tuple[Vehicle, Any]:
    world = _world_for(config, seed)
    if clock is None:
        start = world.time_s if world is not None else 0.0
        clock = SimClock(start_s=start)
    if world is not None and isinstance(clock, SimClock):
        clock.on_advance(lambda t_ns: world.step_to(t_ns / NS))
    context = {"world": world} if world is not None else {}
    return Vehicle(config, clock, device_context=context), world


def dictionary_only(config_path: Path | None) -> dict:
    config = _load(config_path)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="magpie-dict-") as tmp:
        config = VehicleConfig(**{**config.__dict__, "state_dir": Path(tmp)})
        vehicle, _ = assemble(config, seed=0)
        try:
            return vehicle.dictionary
        finally:
            vehicle.close_devices()


def _summary(vehicle: Vehicle, tally: _Tally, world: Any, wall_s: float, sim_s: float, out: Path) -> str:
    tlm = vehicle.fw.tlm
    lines = ["", "=" * 72, f"Magpie sim: {format_duration(sim_s)} simulated in {wall_s:.1f} s wall "
             f"({sim_s / max(wall_s, 1e-9):.0f}x real time)"]
    ex = vehicle.executive
    groups = ", ".join(f"{g.name} {g.hz:g} Hz: {g.cycles} cycles, {g.slips} slips" for g in ex.groups)
    lines.append(f"Rate groups   {groups}")
    faulted = [m.component.name for g in ex.groups for m in g.members if m.faulted]
    if faulted:
        lines.append(f"Faulted       {', '.join(faulted)}")
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
    lines.append(f"Output        {out}/telemetry.jsonl, {out}/dictionary.json, {out}/state/")
    lines.append("=" * 72)
    return "\n".join(lines)


def cmd_sim(args: argparse.Namespace) -> int:
    try:
        duration = parse_duration(args.duration)
    except ValueError as exc:
        print(f"magpie sim: --duration: {exc}", file=sys.stderr)
        return 2
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    out: Path = args.out
    state_dir = out / "state"
    if state_dir.exists() and not args.keep_state:
        shutil.rmtree(state_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = VehicleConfig(**{**config.__dict__, "state_dir": state_dir})
    if args.mcu == "pty":
        devices = {name: url.replace("sim://mcu", "mcu+pty://") for name, url in config.devices.items()}
        config = VehicleConfig(**{**config.__dict__, "devices": devices})
    plan = resources.files("magpie.configs").joinpath("demo.seq")
    seq_dir = state_dir / "sequences"
    seq_dir.mkdir(parents=True, exist_ok=True)
    (seq_dir / "demo.seq").write_text(plan.read_text(encoding="utf-8"), encoding="utf-8")

    clock: Clock | None = RealClock() if args.mcu == "pty" else None
    try:
        vehicle, world = assemble(config, args.seed, clock)
    except ConfigError as exc:
        print(f"magpie sim: {exc}", file=sys.stderr)
        return 2
    tally = _Tally()
    vehicle.add_sink(JsonLinesSink(str(out / "telemetry.jsonl"), vehicle.fw.tlm.id_to_name()))
    vehicle.add_sink(ConsoleSink(sys.stderr, Severity.WARNING_HI if not args.verbose else Severity.ACTIVITY_HI))
    vehicle.add_sink(tally)
    from flight.dictionary import to_json

    (out / "dictionary.json").write_text(to_json(vehicle.dictionary), encoding="utf-8")
    vehicle.dispatcher.submit("SEQ_RUN", {"file": "demo.seq"}, source="sim")

    stop = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        vehicle.executive.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t_start = vehicle.clock.now()
    until = t_start + duration
    wall0 = time.monotonic()
    last_report = wall0
    if not args.quiet:
        print(f"magpie sim: {format_duration(duration)} of simulated time, seed {args.seed}, "
              f"config {config.source}, output {out}/", file=sys.stderr)
    try:
        while vehicle.clock.now() < until and not vehicle.executive.stopping:
            vehicle.run(until_s=min(until, vehicle.clock.now() + 10.0))
            wall = time.monotonic()
            if not args.quiet and (wall - last_report >= 2.0):
                last_report = wall
                done = vehicle.clock.now() - t_start
                print(f"  sim {format_duration(done)} / {format_duration(duration)} "
                      f"({100 * done / duration:3.0f}%), {done / max(wall - wall0, 1e-9):.0f}x real time",
                      file=sys.stderr)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        vehicle.shutdown()
    wall_s = time.monotonic() - wall0
    sim_s = vehicle.clock.now() - t_start
    print(_summary(vehicle, tally, world, wall_s, sim_s, out))
    if stop["signal"] is not None:
        print(f"stopped by signal {stop['signal']}; state persisted", file=sys.stderr)
        return 130 if stop["signal"] == signal.SIGINT else 143
    return 0
