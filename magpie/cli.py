"""``magpie``: one command with subcommands for every part of the mission.

Each subcommand's ``--help`` says what it does and what it writes. Subcommands whose packages
are optional register themselves through a ``register(subparsers)`` function.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from flight import __version__

# module -> function adding its subcommands; imported lazily so one broken part never hides
# the others (its subcommands are simply missing, with a log line saying why).
_PLUGINS = (
    "magpie.flightrun",
    "ground.cli",
    "ground.images_cli",
    "ground.web.cli",
    "sim_hw.relay",
    "hil.cli",
    "magpie.payload_products",
    "campaign.cli",
)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="more log output (-v info, -vv debug)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="magpie",
        description="Magpie: flight software for small planetary rovers and landers, with its "
                    "ground station, simulated world and hardware-in-the-loop harness.",
    )
    parser.add_argument("--version", action="version", version=f"magpie {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    from magpie import simrun

    simrun.register(sub)

    p = sub.add_parser("dict", help="print the flight dictionary as JSON",
                       description="Assemble the vehicle a configuration describes (devices are "
                                   "not opened for real: simulated ones are) and print its "
                                   "dictionary: commands, channels, events and parameters with "
                                   "their ids, and the content hash the boot event carries.")
    p.add_argument("--config", type=Path, default=None,
                   help="vehicle TOML (default: the simulated rover magpie sim runs)")
    p.add_argument("-o", "--out", type=Path, default=None, help="write to this file instead of stdout")
    p.add_argument("--xtce", type=Path, default=None, metavar="FILE",
                   help="also write the dictionary as an XTCE 1.2 document (every packet, parameter, "
                        "command and argument) to FILE")
    p.add_argument("--dict", dest="dict_path", type=Path, default=None,
                   help="use this dictionary JSON instead of assembling a vehicle (with --xtce)")
    _add_common(p)
    p.set_defaults(func=cmd_dict)

    p = sub.add_parser("seq", help="check stored sequence files against the dictionary",
                       description="Parse and check sequence files without running them; every "
                                   "error is printed as FILE:LINE: message (commands, arguments, "
                                   "condition channels, windows, deadlines, labels, contingencies). "
                                   "Exit status 2 when any file has an error.")
    p.add_argument("files", nargs="+", type=Path, help="sequence files")
    p.add_argument("--config", type=Path, default=None, help="vehicle TOML (default: the simulated rover)")
    p.add_argument("--dict", dest="dict_path", type=Path, default=None,
                   help="check against this dictionary JSON instead of assembling a vehicle")
    _add_common(p)
    p.set_defaults(func=cmd_seq)

    for module_name in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                logging.getLogger(__name__).warning("subcommands of %s unavailable: %s", module_name, exc)
            continue
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


class _NoDictionary(Exception):
    """The configuration could not be assembled into a dictionary; the message names the key."""


def _dictionary_for(config: Path | None) -> dict:
    from flight.config import ConfigError
    from magpie import simrun

    try:
        return simrun.dictionary_only(config)
    except ConfigError as exc:
        raise _NoDictionary(str(exc)) from None


def cmd_dict(args: argparse.Namespace) -> int:
    try:
        doc = _read_dictionary(args.dict_path) if args.dict_path else _dictionary_for(args.config)
    except _NoDictionary as exc:
        print(f"magpie dict: {exc}", file=sys.stderr)
        return 2
    if args.xtce:
        from ground.xtce import XtceError, to_xtce

        try:
            args.xtce.write_text(to_xtce(doc), encoding="utf-8")
        except XtceError as exc:
            print(f"magpie dict: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"magpie dict: cannot write {args.xtce}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.xtce} (XTCE 1.2: {len(doc.get('packets', []))} housekeeping packets, "
              f"{len(doc.get('channels', []))} channels, {len(doc.get('events', []))} events, "
              f"{len(doc.get('commands', []))} commands)",
              file=sys.stderr)
        if args.dict_path and not args.out:
            return 0
    from flight.dictionary import to_json

    text = to_json(doc)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"wrote {args.out} ({len(doc['commands'])} commands, {len(doc['channels'])} channels, "
              f"{len(doc['events'])} events, {len(doc['params'])} parameters; {doc['hash']})",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _read_dictionary(path: Path) -> dict:
    from flight.dictionary import FORMAT

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _NoDictionary(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _NoDictionary(f"{path} is not a {FORMAT} dictionary")
    return doc


def cmd_seq(args: argparse.Namespace) -> int:
    """Check each file (commands, arguments, condition channels, windows, deadlines, labels and
    contingencies); errors go to stderr as ``FILE:LINE: message``, exit status 2 when any."""
    from flight import timeline

    epoch = None
    if args.dict_path:
        doc = json.loads(args.dict_path.read_text(encoding="utf-8"))
    else:
        try:
            doc = _dictionary_for(args.config)
        except _NoDictionary as exc:
            print(f"magpie seq: {exc}", file=sys.stderr)
            return 2
        from magpie import simrun

        epoch = simrun._load(args.config).epoch
    by_name = {c["name"]: c for c in doc["commands"]}
    channels = {c["name"] for c in doc["channels"]}
    bad = 0
    for path in args.files:
        try:
            tl = timeline.load_file(path, by_name.get, channels, epoch)
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{path}: cannot read: {exc}", file=sys.stderr)
            bad += 1
            continue
        except timeline.SequenceError as exc:
            bad += 1
            for n, msg in exc.errors:
                print(f"{path}:{n}: {msg}", file=sys.stderr)
            continue
        extras = [f"deadline {'+' if tl.deadline[0] else '@'}{tl.deadline[1]:g}"] if tl.deadline else []
        extras += [f"contingency {tl.contingency}"] if tl.contingency else []
        extras += ["critical"] if tl.critical else []
        print(f"{path}: ok, {len(tl.steps)} command(s)" + (f" ({', '.join(extras)})" if extras else ""))
    return 2 if bad else 0


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                        stream=sys.stderr)
    if verbose <= 0:
        # Events reach the person through the console sink; keep the log for real problems.
        logging.getLogger("flight.events").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(getattr(args, "verbose", 0))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # an operator's mistake (or our bug) is one line and exit 2, never a traceback
        return _error_line(exc)


def _error_line(exc: Exception) -> int:
    """Print one line for an error that escaped a subcommand; exit status 2."""
    import sqlite3

    logging.getLogger("magpie").debug("command failed", exc_info=exc)
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, ValueError | OSError | sqlite3.Error | LookupError):
        text = str(exc) or type(exc).__name__
    else:
        text = f"internal error ({type(exc).__name__}: {exc}); run with -v for details"
    print(f"error: {text}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
