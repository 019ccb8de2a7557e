"""``magpie flight``: the flight process on real time, talking to the relay through its radio.

This is what runs on the vehicle (a Raspberry Pi) and what the real-time mission starts as a
subprocess. It assembles the vehicle a TOML file describes, registers the comm component as the
sink of everything the vehicle sends home (the onboard recorder), and runs the executive on the
real clock until ``--duration`` passes or SIGINT/SIGTERM asks for a clean stop. Spacecraft time
continues across restarts: the clock starts at the seconds elapsed since the configured epoch.

Configurations with ``sim://`` devices belong to the lockstep mission (``magpie sim``): the
simulated world advances only with the simulated clock.
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


def prepare(config_path: Path, state_dir: Path | None, devices: Sequence[str]) -> VehicleConfig:
    """Load the configuration and apply ``--state-dir`` and ``--device NAME=URL`` overrides."""
    config = load_config(config_path)
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


def cmd_flight(args: argparse.Namespace) -> int:
    try:
        config = prepare(args.config, args.state_dir, args.device or [])
        clock = RealClock(start_s=_start_s(config))
        vehicle = Vehicle(config, clock)
    except ConfigError as exc:
        print(f"magpie flight: {exc}", file=sys.stderr)
        return 2
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
    try:
        vehicle.run(until_s=None if args.duration is None else t0 + args.duration, flush_every_s=args.flush_every)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        vehicle.shutdown()
    c = comms[0] if comms else None
    held = ""
    if c is not None and c.endpoint is not None:
        held = f", {c.stored} packets stored, {c.endpoint.stats.frames_sent} frames sent"
    print(f"flight: stopped after {clock.now() - t0:.1f} s{held}", file=sys.stderr, flush=True)
    if stop["signal"] is not None:
        return 0 if stop["signal"] == signal.SIGTERM else 130
    return 0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(prog="magpie flight")
    p.description = __doc__
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--config", type=Path, required=True, help="vehicle TOML")
    p.add_argument("--state-dir", type=Path, default=None, help="state directory (default: the configuration's)")
    p.add_argument("--device", action="append", metavar="NAME=URL",
                   help="replace a configured device's URL, e.g. radio=radio+zmq://tcp://relay:5557?scid=66")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run on)")
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
