"""``magpie flight``: the flight process on real time, talking to the relay through its radio.

This is what runs on the vehicle (a Raspberry Pi) and what the real-time mission starts as a
subprocess. It assembles the vehicle a TOML file describes, registers the comm component as the
sink of everything the vehicle sends home (the onboard recorder), and runs the executive on the
real clock until ``--duration`` passes or SIGINT/SIGTERM asks for a clean stop. Spacecraft time
continues across restarts: the clock starts at the seconds elapsed since the configured epoch.

Configurations with ``sim://`` devices belong to the lockstep mission (``magpie sim``): the
simulated world advances only with the simulated clock.

``--check`` validates the configuration without opening any device: every key, every component
type and option, every device URL against its driver's grammar. Errors name the key. Under
systemd (``Type=notify``) the process reports READY once the vehicle is assembled, pings the
watchdog (``WatchdogSec=``) from the main loop while the executive runs, and reports STOPPING.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flight.clock import RealClock
from flight.components.comm import attach
from flight.config import ConfigError, VehicleConfig
from flight.config import load as load_config
from flight.model import Severity
from flight.outbound import ConsoleSink
from flight.vehicle import Vehicle
from hil.sdnotify import Notifier

log = logging.getLogger(__name__)


def _start_s(config: VehicleConfig) -> float:
    """Spacecraft seconds now: time since the epoch (0 without one, or before it)."""
    if config.epoch is None:
        return 0.0
    elapsed = (datetime.now(UTC) - config.epoch).total_seconds()
    if elapsed < 0:
        log.warning("the mission epoch %s is in the future; spacecraft time starts at 0", config.epoch)
        return 0.0
    return elapsed


def scenario_vehicle(scenario: str, vehicle: str) -> VehicleConfig:
    """The configuration of one vehicle of a mission scenario, with the scenario's name and scid."""
    from mission.scenario import ScenarioError, load

    try:
        mission = load(scenario)
        return mission.vehicle(vehicle).config
    except ScenarioError as exc:
        raise ConfigError(str(exc)) from None
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def prepare(config_path: Path | VehicleConfig, state_dir: Path | None, devices: Sequence[str]) -> VehicleConfig:
    """Load the configuration and apply ``--state-dir`` and ``--device NAME=URL`` overrides."""
    config = config_path if isinstance(config_path, VehicleConfig) else load_config(config_path)
    config_path = Path(config.source) if isinstance(config_path, VehicleConfig) else config_path
    overrides = dict(config.devices)
    for item in devices:
        name, sep, url = item.partition("=")
        if not sep or "://" not in url:
            raise ConfigError(f"--device {item!r}: expected NAME=URL")
        if name not in overrides:
            raise ConfigError(f"--device {name}: the configuration has no device {name!r} "
                              f"(have: {', '.join(overrides) or 'none'})")
        overrides[name] = url
    if any(url.startswith("sim://") for url in overrides.values()):
        raise ConfigError(f"{config_path}: sim:// devices run only in lockstep with the simulated world "
                          "(use magpie sim)")
    return dataclasses.replace(config, devices=overrides,
                               state_dir=state_dir if state_dir is not None else config.state_dir)


def _check_url(source: str, name: str, url: str) -> None:
    """Validate a device URL against its driver's grammar without opening it."""
    from hal import registry
    from hal.errors import DeviceUrlError

    scheme = url.split("://", 1)[0].lower()
    try:
        registry.resolve(scheme)
        if scheme.startswith("mcu+") and scheme != "mcu+pty":
            from hal.mcu.driver import split_url

            split_url(url)
        elif scheme == "camera+opencv":
            from hal.camera import parse_url

            parse_url(url)
        elif scheme == "camera+opencv-stereo":
            from hal.camera import parse_stereo_url

            parse_stereo_url(url)
        elif scheme == "radio+zmq":
            from hal.radio import parse_zmq_url

            parse_zmq_url(url)
    except DeviceUrlError as exc:
        raise ConfigError(f"{source}: devices.{name}: {exc}") from None


def check_config(config: VehicleConfig) -> None:
    """Everything assembly would check except opening devices; raises ConfigError naming the key."""
    from flight import registry

    for name, url in config.devices.items():
        _check_url(config.source, name, url)
    names = set(CORE_COMPONENTS)
    for cc in config.components:
        where = f"{config.source}: components.{cc.name}"
        try:
            cls = registry.resolve(cc.type)
        except KeyError as exc:
            raise ConfigError(f"{where}.type: {exc.args[0]}") from None
        try:
            cls(cc.name, **cc.options)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        optional = dict(getattr(cls, "OPTIONAL_DEVICES", {}))
        roles = {**cls.DEVICES, **optional}
        for role in cc.devices:
            if role not in roles:
                raise ConfigError(f"{where}.devices.{role}: {cls.__name__} takes no such role "
                                  f"(roles: {', '.join(roles) or 'none'})")
        for role in roles:
            if role in optional and role not in cc.devices:
                continue
            if cc.devices.get(role, role) not in config.devices:
                raise ConfigError(f"{where}.devices.{role}: no device named "
                                  f"{cc.devices.get(role, role)!r} in [devices]")
        names.add(cc.name)
    for i, group in enumerate(config.rate_groups):
        for j, member in enumerate(group.members):
            if member not in names:
                raise ConfigError(f"{config.source}: rate_groups[{i}].members[{j}]: {member!r} is "
                                  f"not a component")


#: Exit status when fault protection asked for a restart: non-zero, so systemd's
#: ``Restart=on-failure`` starts the process again (the reboot-loop limit is fault protection's).
EXIT_RESTART = 75

#: Components every vehicle has (flight.vehicle assembles them); rate groups may name them.
CORE_COMPONENTS = ("sys", "exec", "cmd", "prm", "tlm", "health", "seq")


def _fly(vehicle: Vehicle, clock: RealClock, until_s: float | None, flush_every_s: float,
         notifier: Notifier) -> None:
    """Vehicle.run's loop, with a systemd watchdog ping each time the executive hands back."""
    ex = vehicle.executive
    while not ex.stopping and (until_s is None or clock.now() < until_s):
        end = clock.now() + flush_every_s
        ex.run(until_s=end if until_s is None else min(until_s, end))
        vehicle.flush()
        notifier.watchdog()


def _source(args: argparse.Namespace) -> Path | VehicleConfig:
    """``--config FILE``, or ``--scenario NAME --vehicle NAME``: exactly one of them."""
    scenario, vehicle = getattr(args, "scenario", None), getattr(args, "vehicle", None)
    if args.config is not None:
        if scenario or vehicle:
            raise ConfigError("give --config, or --scenario with --vehicle, not both")
        return Path(args.config)
    if not scenario or not vehicle:
        raise ConfigError("give the vehicle: --config FILE, or --scenario NAME --vehicle NAME")
    return scenario_vehicle(scenario, vehicle)


def cmd_flight(args: argparse.Namespace) -> int:
    try:
        args.config = _source(args)
    except ConfigError as exc:
        print(f"magpie flight: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "check", False):
        try:
            config = prepare(args.config, args.state_dir, args.device or [])
            check_config(config)
        except ConfigError as exc:
            print(f"magpie flight: {exc}", file=sys.stderr)
            return 2
        print(f"{config.source}: configuration OK ({len(config.devices)} devices, "
              f"{len(config.components)} components)")
        return 0
    try:
        config = prepare(args.config, args.state_dir, args.device or [])
        check_config(config)
        clock = RealClock(start_s=_start_s(config))
        vehicle = Vehicle(config, clock)
    except ConfigError as exc:
        print(f"magpie flight: {exc}", file=sys.stderr)
        return 2
    if args.dict_out is not None:
        from flight.dictionary import to_json

        args.dict_out.write_text(to_json(vehicle.dictionary), encoding="utf-8")
    comms = attach(vehicle)
    if not comms:
        log.warning("no comm component: nothing the vehicle produces leaves it")
    vehicle.add_sink(ConsoleSink(sys.stderr, Severity.WARNING_HI if not args.verbose else Severity.ACTIVITY_HI))
    stop: dict[str, int | None] = {"signal": None}

    def on_signal(signum: int, _frame: Any) -> None:
        stop["signal"] = signum
        vehicle.executive.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    t0 = clock.now()
    print(f"flight: {config.name} (scid {config.spacecraft_id}) up at spacecraft time {t0:.3f} s, "
          f"state {config.state_dir}", file=sys.stderr, flush=True)
    notifier = Notifier()
    notifier.ready(f"{config.name} flying, scid {config.spacecraft_id}")
    try:
        _fly(vehicle, clock, None if args.duration is None else t0 + args.duration, args.flush_every,
             notifier)
    finally:
        notifier.stopping(f"{config.name} stopping")
        for s, h in old.items():
            signal.signal(s, h)
        vehicle.shutdown()
        notifier.close()
    c = comms[0] if comms else None
    held = ""
    if c is not None and c.endpoint is not None:
        held = f", {c.stored} packets stored, {c.endpoint.stats.frames_sent} frames sent"
    print(f"flight: stopped after {clock.now() - t0:.1f} s{held}", file=sys.stderr, flush=True)
    restart = vehicle.restart_requested
    if restart:
        print(f"flight: fault protection asked for a restart ({restart}); exiting with status "
              f"{EXIT_RESTART} so the service manager starts the flight process again",
              file=sys.stderr, flush=True)
        return EXIT_RESTART
    if stop["signal"] is not None:
        return 0 if stop["signal"] == signal.SIGTERM else 130
    return 0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="magpie flight")
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--config", type=Path, default=None, help="vehicle TOML (or --scenario with --vehicle)")
    p.add_argument("--scenario", default=None, metavar="NAME",
                   help="fly a vehicle of a mission scenario (its configuration, name and scid); with --vehicle")
    p.add_argument("--vehicle", default=None, metavar="NAME", help="with --scenario: which vehicle")
    p.add_argument("--state-dir", type=Path, default=None, help="state directory (default: the configuration's)")
    p.add_argument("--device", action="append", metavar="NAME=URL",
                   help="replace a configured device's URL, e.g. radio=radio+zmq://tcp://relay:5557?scid=66")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run on)")
    p.add_argument("--check", action="store_true",
                   help="validate the configuration (keys, components, device URLs) without "
                        "opening any device, then exit (0 ok, 2 error)")
    p.add_argument("--dict-out", type=Path, default=None, metavar="PATH",
                   help="write the flight dictionary (JSON) here once the vehicle is assembled; "
                        "the ground station needs it")
    p.add_argument("--flush-every", type=float, default=0.5,
                   help="seconds between moves of outbound items into the recorder (default %(default)s)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.set_defaults(func=cmd_flight)
    return p


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``flight`` to the ``magpie`` command line."""
    return build_parser(subparsers.add_parser("flight", help="run the flight process on real time"))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.WARNING if args.verbose <= 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    if args.verbose <= 0:
        logging.getLogger("flight.events").setLevel(logging.ERROR)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
