"""``magpie ground | cmd | tlm | events | archive``: the ground segment's command line.

:func:`register` adds the subcommands to the ``magpie`` parser. Every subcommand reads the
ground configuration (``--config``, default ``ground.toml``; see :mod:`ground.server`).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import sys
import threading
from typing import Any

from flight.cmdcodec import CommandCodecError, check_args
from ground.archive import Archive
from ground.client import ClientTimeout, CommandError, GroundClient
from ground.dictionary import Dictionary, DictionaryError
from ground.server import ConfigError, GroundConfig, GroundServer, load_config, read_token
from ground.web.filters import ChannelFilter, EventFilter, FilterError


def _config(args: argparse.Namespace) -> GroundConfig:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        if args.config == "ground.toml" and isinstance(exc.__cause__, FileNotFoundError):
            raise ConfigError(
                "no ground.toml here; give --config (after `magpie sim`: --config magpie-run/ground.toml)"
            ) from None
        raise


def _scid(cfg: GroundConfig, scid: int | None) -> int:
    roster = ", ".join(f"{v.scid} ({v.name})" for v in cfg.vehicles)
    if scid is not None:
        if cfg.vehicles and scid not in {v.scid for v in cfg.vehicles}:
            raise ConfigError(f"--scid {scid}: no such vehicle; vehicles: {roster}")
        return scid
    if len(cfg.vehicles) == 1:
        return cfg.vehicles[0].scid
    if not cfg.vehicles:
        raise ConfigError("no [[vehicle]] in the ground config; choose a spacecraft with --scid")
    raise ConfigError(f"several vehicles are configured; choose one with --scid: {roster}")


def _parse_value(text: str) -> Any:
    """``3``, ``2.5``, ``true``, a quoted string or an enum label, as the operator typed it."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_ground(args: argparse.Namespace) -> int:
    server = GroundServer(_config(args))
    server.commander.on_silence.append(
        lambda scid, text: print(f"ground: {text or f'spacecraft {scid} is back'}", flush=True))
    print(
        f"ground: telemetry on {server.pub_endpoint}, commands on {server.command_endpoint}, "
        f"archive {server.cfg.archive}",
        flush=True,
    )
    try:
        server.serve(threading.Event(), duration_s=args.duration)
    except KeyboardInterrupt:
        pass
    st = server.station.stats
    print(
        f"ground: {st.stored} packets stored, {st.duplicates} duplicates, "
        f"{server.station.deframer.stats.crc_errors} bad frames",
        flush=True,
    )
    return 0


def cmd_send(args: argparse.Namespace) -> int:
    cfg = _config(args)
    scid = _scid(cfg, args.scid)
    vcfg = next((v for v in cfg.vehicles if v.scid == scid), None)
    if vcfg is None:
        print(f"error: no spacecraft {scid} in {args.config}", file=sys.stderr)
        return 2
    values: dict[str, Any] = {}
    for item in args.args:
        name, sep, text = item.partition("=")
        if not sep:
            print(f"error: argument {item!r} is not NAME=VALUE", file=sys.stderr)
            return 2
        values[name] = _parse_value(text)
    try:
        entry = Dictionary.load(vcfg.dictionary).command(args.name)
        check_args(entry, values)
    except (DictionaryError, CommandCodecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with GroundClient(command_endpoint=cfg.commands, token=read_token(cfg.state_dir)) as client:
        try:
            rec = client.send_command(scid, args.name, values, timeout_s=args.timeout)
            print(f"command {rec['id']} {args.name} sent to {scid}", flush=True)
            if rec["stage"] == "UNREACHABLE":  # the vehicle said it went silent
                print(f"command {rec['id']} UNREACHABLE {rec['reason']}", flush=True)
                return 1
            if args.wait:
                rec = client.wait_command(rec["id"], timeout_s=args.timeout)
                print(f"command {rec['id']} {rec['stage']} {rec['reason']}".rstrip(), flush=True)
                return 0 if rec["stage"] == "COMPLETED" else 1
        except (CommandError, ClientTimeout) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    cfg = _config(args)
    scid = _scid(cfg, args.scid)
    try:
        with GroundClient(command_endpoint=cfg.commands, token=read_token(cfg.state_dir)) as client:
            got = client.put_file(scid, args.path, args.name)
    except (CommandError, ClientTimeout, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.path}: {got['bytes']} B queued by CFDP for {scid} as {got['name']} ({got['queued']} waiting)")
    return 0


def _fmt_time(t: float) -> str:
    return f"{t:.3f}"


def _time_range(args: argparse.Namespace) -> tuple[float, float]:
    """--since/--until as a closed range; a missing end is open."""
    since = args.since if args.since is not None else float("-inf")
    until = args.until if args.until is not None else float("inf")
    return since, until


def cmd_tlm(args: argparse.Namespace) -> int:
    cfg = _config(args)
    scid = _scid(cfg, args.scid)
    chans = ChannelFilter(tuple(args.channels))
    if args.since is not None or args.until is not None:
        since, until = _time_range(args)
        with Archive(cfg.archive, readonly=True) as archive:
            names = archive.channel_names(scid)
            for name in args.channels:
                if "*" not in name and "?" not in name and "[" not in name and archive.channel_id(scid, name) is None:
                    print(f"error: no channel {name!r} for spacecraft {scid}", file=sys.stderr)
                    return 2
            for cid, name in names.items():
                if not chans.match(name):
                    continue
                for t, v in archive.channel(scid, cid, since, until):
                    print(f"{_fmt_time(t)} {name} {v}")
        return 0
    # Subscribe to what we want only (the client's default is everything), then match exactly:
    # ZeroMQ matches prefixes, so tlm.66.power.soc would also deliver tlm.66.power.soc_min.
    with GroundClient(pub_endpoint=cfg.pub, subscribe_all=False) as client:
        client.subscribe(*chans.topics(scid))
        return _tail(
            client,
            args.count,
            lambda topic, r: topic.startswith(f"tlm.{scid}.") and chans.match(str(r.get("name"))),
            lambda r: f"{_fmt_time(r['time'])} {r['name']} {r['value']}",
        )


def _tail(client: GroundClient, count: int | None, want: Any, fmt: Any) -> int:
    """Print live items that ``want(topic, record)`` until ``count`` were shown or Ctrl-C."""
    shown = 0
    try:
        while count is None or shown < count:
            msg = client.next(1.0)
            if msg is not None and want(*msg):
                print(fmt(msg[1]), flush=True)
                shown += 1
    except KeyboardInterrupt:
        pass
    return 0


def _event_line(e: Any) -> str:
    get = e.get if isinstance(e, dict) else lambda k: getattr(e, k)
    return f"{_fmt_time(get('time'))} {get('severity'):<11} {get('name')}: {get('text')}"


def cmd_events(args: argparse.Namespace) -> int:
    cfg = _config(args)
    scid = _scid(cfg, args.scid)
    try:
        filt = EventFilter.from_query(args.severity, args.name, args.search)
    except FilterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.since is not None or args.until is not None:
        since, until = _time_range(args)
        with Archive(cfg.archive, readonly=True) as archive:
            for e in archive.events(scid, since, until):
                if filt.match({"severity": e.severity, "name": e.name, "text": e.text}):
                    print(_event_line(e))
        return 0
    topic = f"evt.{scid}"
    with GroundClient(pub_endpoint=cfg.pub, subscribe_all=False) as client:
        client.subscribe(topic)
        # "evt.6" is also a prefix of "evt.66": compare the whole topic
        return _tail(client, args.count, lambda t, r: t == topic and filt.match(r), _event_line)


def cmd_timeline(args: argparse.Namespace) -> int:
    from ground.timeline import format_rows, rows_from_events

    if args.archive is not None:
        path, scid = args.archive, args.scid
    else:
        cfg = _config(args)
        path, scid = cfg.archive, _scid(cfg, args.scid)
    since, until = _time_range(args)
    with Archive(path, readonly=True) as archive:
        rows = rows_from_events(archive.events(scid, since, until), args.engine)
    if not rows:
        print(f"no sequence steps in the archive{f' for engine {args.engine}' if args.engine else ''}",
              file=sys.stderr)
        return 1
    for line in format_rows(rows):
        print(line)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    cfg = _config(args)
    archive = Archive(cfg.archive, readonly=True)  # a missing or bad archive fails before --out is made
    try:
        out = open(args.out, "w", newline="") if args.out else sys.stdout  # noqa: SIM115
    except OSError as exc:
        archive.close()
        raise OSError(f"--out {args.out}: {exc.strerror}") from None
    try:
        with archive:
            names = {v.scid: archive.channel_names(v.scid) for v in cfg.vehicles}
            writer = csv.writer(out)
            writer.writerow(["scid", "channel_id", "channel", "time_s", "value"])
            for scid, cid, t, v in archive.iter_samples(args.scid):
                if args.channel and names.get(scid, {}).get(cid) not in args.channel:
                    continue
                writer.writerow([scid, cid, names.get(scid, {}).get(cid, ""), t, v])
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def _time_arg(text: str) -> float:
    """Spacecraft seconds, or an ISO date taken as seconds since the Unix epoch."""
    try:
        return float(text)
    except ValueError:
        return _dt.datetime.fromisoformat(text).timestamp()


def _guarded(func: Any) -> Any:
    """A subcommand whose configuration errors are one line and exit 2 (under ``magpie`` too)."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(func(args) or 0)
        except (ConfigError, DictionaryError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2

    return run


def _common(p: argparse.ArgumentParser, scid: bool = True) -> None:
    p.add_argument("--config", default="ground.toml", help="ground configuration TOML (default %(default)s)")
    if scid:
        p.add_argument(
            "--scid",
            type=int,
            default=None,
            help="spacecraft id (required when several vehicles are configured)",
        )


def register(subparsers: Any) -> None:
    """Add ``ground``, ``cmd``, ``upload``, ``tlm``, ``events`` and ``archive`` to the ``magpie`` CLI."""
    p = subparsers.add_parser(
        "ground",
        help="run the ground station process",
        description="Run the ground station: receive frames from the relay, "
        "archive and publish telemetry, acknowledge, and serve commands.",
    )
    _common(p, scid=False)
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: until interrupted)",
    )
    p.set_defaults(func=cmd_ground)

    p = subparsers.add_parser(
        "cmd",
        help="send a command",
        description="Check a command against the vehicle's dictionary, then "
        "send it through the running ground process.",
    )
    p.add_argument("name", help="command name, e.g. NAV_GOTO")
    p.add_argument(
        "args",
        nargs="*",
        metavar="NAME=VALUE",
        help='arguments; values are JSON (3, 2.5, true, "text") or enum labels',
    )
    _common(p)
    p.add_argument("--wait", action="store_true", help="wait for the final stage and print it")
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds before the command times out (default %(default)s)",
    )
    p.set_defaults(func=_guarded(cmd_send))

    p = subparsers.add_parser(
        "upload",
        help="send a file to a vehicle by CFDP",
        description="Queue a file for a vehicle through the running ground process; it goes as a CFDP "
        "class 2 transaction and lands in the vehicle's state directory under uplink/.",
    )
    p.add_argument("path", help="the file to send")
    p.add_argument("--name", default=None, help="name under the vehicle's uplink/ (default: the file's name)")
    _common(p)
    p.set_defaults(func=_guarded(cmd_upload))

    for name, func, what in (("tlm", cmd_tlm, "channel samples"), ("events", cmd_events, "events")):
        p = subparsers.add_parser(
            name,
            help=f"show {what} (live, or from the archive)",
            description=f"Tail live {what} from the ground process, or with "
            f"--since/--until print archived {what} in that time range "
            "(spacecraft seconds).",
        )
        if name == "tlm":
            p.add_argument("channels", nargs="*", help="channel names or globs such as 'nav.*' (default: all)")
        else:
            p.add_argument("--severity", action="append", default=None, metavar="SEV",
                           help="only these severities (repeatable or comma-separated; >=WARNING_LO means "
                                "that one and every more severe)")
            p.add_argument("--name", default=None, help="only events of this name")
            p.add_argument("--search", default=None, help="only events whose name or text contains this")
        _common(p)
        p.add_argument("--since", type=_time_arg, default=None, help="start of the time range")
        p.add_argument("--until", type=_time_arg, default=None, help="end of the time range")
        p.add_argument("--count", type=int, default=None, help="stop a live tail after N items")
        p.set_defaults(func=_guarded(func))

    # ``timeline``: the sequence steps of the archive, planned against actual (ground.timeline)
    p = subparsers.add_parser(
        "timeline",
        help="print the sequence timeline from the archive: planned vs actual per step",
        description="Read the SeqStep and sequence events of a vehicle from the archive and print, "
        "engine by engine, each step's planned start, window end, actual start and end, slip and "
        "outcome, with the starts, contingency switches and stops between them.",
    )
    _common(p)
    p.add_argument("--archive", default=None, help="read this archive file instead of the ground config's")
    p.add_argument("--engine", default=None, help="only this sequence engine")
    p.add_argument("--since", type=_time_arg, default=None, help="start of the time range")
    p.add_argument("--until", type=_time_arg, default=None, help="end of the time range")
    p.set_defaults(func=_guarded(cmd_timeline))

    p = subparsers.add_parser("archive", help="work with the ground archive")
    sub = p.add_subparsers(dest="archive_cmd", required=True)
    e = sub.add_parser(
        "export",
        help="export channel samples",
        description="Write archived channel samples as CSV (scid, channel_id, channel, time_s, value).",
    )
    e.add_argument("--csv", action="store_true", required=True, help="CSV output (the only format)")
    e.add_argument("--out", default=None, help="output file (default: standard output)")
    e.add_argument("--channel", action="append", default=None, help="only this channel (repeatable)")
    _common(e)
    e.set_defaults(func=_guarded(cmd_export))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="magpie")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DictionaryError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
