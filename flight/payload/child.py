"""The payload process: ``python -m flight.payload.child --fd N --target module:Class``.

It wraps the socket it inherited from the host, says hello, and then serves the host's messages
one at a time: ``init`` builds the payload and runs its ``setup()``, each ``step`` runs the
commands that came with it and then ``step()``, and answers with a ``done`` carrying the step's
CPU time (this process's, all threads), telemetry, events, products and command results. An
exception in a handler is reported in the answer, not fatal; an exception in ``setup()`` ends the
process with status 3 (the host counts a crash). End of the socket ends the process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from flight.payload import protocol
from flight.payload.sdk import CommandFailed, Payload

log = logging.getLogger("flight.payload.child")


class Channel:
    """The payload's end of the transport: blocking reads and whole-frame writes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = protocol.FrameReader()
        self._queue: list[dict[str, Any]] = []

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(protocol.encode(msg))

    def recv(self) -> dict[str, Any] | None:
        while not self._queue:
            data = self.sock.recv(65536)
            if not data:
                return None
            self._queue.extend(self.reader.feed(data))
        return self._queue.pop(0)


def load_target(target: str) -> type[Payload]:
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Payload)):
        raise TypeError(f"{target} is not a Payload subclass")
    return cls


def serve(chan: Channel, cls: type[Payload]) -> int:
    chan.send({"t": "hello", "kind": cls.__name__, "sdk": protocol.SDK_VERSION})
    payload: Payload | None = None
    methods = {cdef.name: attr for attr, cdef in cls.declared_commands()}
    while True:
        msg = chan.recv()
        if msg is None:
            return 0
        kind = msg["t"]
        if kind == "init":
            payload = cls()
            payload.name = str(msg["name"])
            payload.options = {**cls.OPTIONS, **dict(msg.get("options") or {})}
            payload.product_dir = Path(msg["product_dir"])
            payload.grants = frozenset(msg.get("grants") or ())
            payload._sdk_time_ns = int(msg.get("time_ns", 0))
            payload._sdk_params.update(msg.get("params") or {})
            payload.setup()
            chan.send({"t": "ready"})
        elif kind == "step" and payload is not None:
            chan.send(run_step(payload, methods, msg))
        elif kind == "stop":
            if payload is not None:
                payload.shutdown()
            return 0


def run_step(payload: Payload, methods: dict[str, str], msg: dict[str, Any]) -> dict[str, Any]:
    t0 = time.process_time_ns()
    payload._sdk_time_ns = int(msg["time_ns"])
    payload._sdk_channels = dict(msg.get("ch") or {})
    payload._sdk_power = dict(msg.get("power") or {})
    error = None
    for name, value in (msg.get("prm") or {}).items():
        payload._sdk_params[name] = value
        try:
            payload.on_param(name, value)
        except Exception as exc:
            error = f"on_param {name}: {type(exc).__name__}: {exc}"
    results = []
    for token, name, args in msg.get("cmds") or ():
        try:
            payload._handler(methods[name])(**args)
            results.append([token, True, ""])
        except CommandFailed as exc:
            results.append([token, False, str(exc)])
        except Exception as exc:
            results.append([token, False, f"internal error: {type(exc).__name__}: {exc}"])
    try:
        payload.step()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    tlm, ev, prod = payload._take_outputs()
    return {"t": "done", "n": msg["n"], "cpu_ns": time.process_time_ns() - t0, "tlm": tlm, "ev": ev,
            "prod": prod, "res": results, "error": error}


def die_with_parent() -> None:
    """Ask Linux to kill this process when the flight process dies, hung payload code or not."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the end of the socket still ends a payload that is not hung


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="flight.payload.child")
    ap.add_argument("--fd", type=int, required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N")
    args = ap.parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)  # a payload that hogs the CPU must not starve the flight process
    logging.basicConfig(level=logging.WARNING, format="payload %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host stops its payloads; Ctrl-C is for the host
    die_with_parent()
    sock = socket.socket(fileno=args.fd)
    chan = Channel(sock)
    try:
        cls = load_target(args.target)
        return serve(chan, cls)
    except (BrokenPipeError, ConnectionResetError):
        return 0
    except Exception:
        log.exception("payload %s failed", args.target)
        return 3
    finally:
        sock.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
