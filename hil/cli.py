"""``magpie hil check``: a rig self-test a technician can run and read.

    magpie hil check --port /dev/ttyUSB0                  a USB-serial adapter with TX wired to RX
    magpie hil check --port /dev/ttyACM0 --target mcu     the reference firmware on a Pico
    magpie hil check --target mcu                         no hardware: the emulator on a pty

It runs the loopback or MCU suite, prints each measurement beside its limit, writes the same
as JSON (``--json``, default ``hil-check-<target>.json``) and exits 0 when every check passed,
1 when one failed, 2 when the rig could not be used at all (no such port, port in use,
permission denied, a baud rate the port refuses, nothing answering).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from hil import loopback, mcu
from hil.checks import Report
from hil.ports import STANDARD_BAUDS, RigError
from hil.rig import LOOPBACK_BACKENDS, MCU_BACKENDS, LoopbackRig, McuRig, make_rig
from hil.trace import WireTrace

log = logging.getLogger(__name__)

EXIT_PASS, EXIT_FAIL, EXIT_RIG = 0, 1, 2


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{raw} is not a positive baud rate")
    return value


def _say(text: str) -> None:
    print(text, flush=True)


def cmd_check(args: argparse.Namespace) -> int:
    target = args.target
    json_path = args.json or Path(f"hil-check-{target}.json")
    backend = args.emulator or ("pty" if target == "loopback" else "emulator-pty")
    if target == "loopback":
        bauds = [args.baud] if args.baud else list(STANDARD_BAUDS)
    else:
        bauds = [args.baud or 115200]
    trace = WireTrace()
    try:
        rig = make_rig(target, backend, args.port)
    except (ValueError, OSError) as exc:
        print(f"magpie hil check: error: {exc}", file=sys.stderr)
        return EXIT_RIG
    report = Report(target, rig.path, rig.description, rig.emulated, bauds)
    try:
        if rig.emulated:
            _say(f"no --port given: checking an emulated {target} rig ({backend}), not hardware")
        _say(f"checking {rig.description} at {', '.join(map(str, bauds))} baud ...")
        if isinstance(rig, LoopbackRig):
            report.results = loopback.run(rig, bauds, args.soak, trace)
        else:
            assert isinstance(rig, McuRig)
            report.results = mcu.run(rig, bauds[0], trace, interactive=args.replug, ask=_say)
    except RigError as exc:
        print(f"magpie hil check: error: {exc}", file=sys.stderr)
        _write_error(json_path, report, exc)
        return EXIT_RIG
    finally:
        rig.close()
    _say(report.text())
    report.write_json(json_path)
    _say(f"report written to {json_path}")
    if not report.passed and args.trace:
        trace.save(args.trace)
        _say(f"wire trace written to {args.trace}")
    return EXIT_PASS if report.passed else EXIT_FAIL


def _write_error(path: Path, report: Report, exc: RigError) -> None:
    import json

    doc = report.to_dict()
    doc["passed"] = False
    doc["error"] = {"kind": exc.kind, "message": str(exc)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``hil`` (with ``hil check``) to the ``magpie`` command line."""
    hil = subparsers.add_parser("hil", help="hardware-in-the-loop: check a rig",
                                description="Hardware-in-the-loop tools. The pytest suites run "
                                            "with `python -m pytest tests/hil --hil-port PORT`.")
    sub = hil.add_subparsers(dest="hil_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("check", help="run the rig's suite and report pass/fail",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", default=None,
                   help="serial port path or pyserial URL (default: an emulated rig, said so)")
    p.add_argument("--target", choices=("loopback", "mcu"), default="loopback",
                   help="what is on the port (default %(default)s)")
    p.add_argument("--baud", type=_positive_int, default=None,
                   help="baud rate (loopback default: 115200, 460800 and 921600; mcu default "
                        "115200, use the firmware's rate)")
    p.add_argument("--json", type=Path, default=None,
                   help="write the report as JSON here (default hil-check-TARGET.json)")
    p.add_argument("--soak", type=float, default=10.0, help="loopback soak seconds (default %(default)s)")
    p.add_argument("--replug", action="store_true",
                   help="mcu: include the reconnect check, asking you to unplug and replug the board")
    p.add_argument("--trace", type=Path, default=None,
                   help="on failure, write the wire trace (hex dump both ways) here")
    p.add_argument("--emulator", choices=LOOPBACK_BACKENDS + MCU_BACKENDS, default=None,
                   help="without --port: which emulated rig (loopback: pty, socat; mcu: "
                        "emulator-pty, emulator-socat, firmware-pty)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.set_defaults(func=cmd_check)
    from hil import fwhost

    fwhost.build_parser(sub.add_parser(
        "firmware", help="run the reference firmware on a pseudo-terminal, standing in for a Pico"))
    return hil
