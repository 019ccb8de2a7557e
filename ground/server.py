"""The ground station as a process on real time: relay link, archive, live PUB, command socket.

Configuration is TOML::

    archive = "ground.db"                      # SQLite archive file
    relay = "tcp://127.0.0.1:5558"             # the relay's ground endpoint
    pub = "tcp://127.0.0.1:5560"               # live telemetry (PUB)
    commands = "tcp://127.0.0.1:5561"          # command requests (REP), used by the client
    state_dir = "ground-state"                 # uplink counter files
    ack_interval_s = 1.0
    retry_interval_s = 60.0

    [[vehicle]]
    scid = 66
    name = "magpie-1"
    dictionary = "magpie-dict.json"
    key_file = "keys/66.key"                   # mode 0600
    key_id = 1

Relative paths are taken from the configuration file's directory. The command socket speaks
msgpack maps: ``{"op": "send", "scid", "name", "args", "timeout_s", "token"}`` answers
``{"ok": true, "command": {...}}``; ``{"op": "status", "id", "token"}`` answers the command's
record; ``{"op": "put_file", "scid", "name", "data", "token"}`` queues a file (at most 16 MiB) for
the vehicle by CFDP (:mod:`ground.files`; it lands in the vehicle's ``uplink/<name>``); errors
answer ``{"ok": false, "error": reason}``.

Only authorised local clients may command: every request must carry the token the server keeps
in ``<state_dir>/command.token`` (32 random bytes as hex, mode 0600 in a 0700 directory, made at
first start), so only a process that can read the ground's state directory can have it sign a
command. Bind ``commands`` to ``ipc://`` (a Unix socket; the server puts it in a 0700 directory)
or to 127.0.0.1, never to another interface. Every request is checked field by field
(:func:`check_request`) before anything acts on it; a bad one gets an error answer and the
server carries on. The counts are in :attr:`GroundServer.request_errors`.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import threading
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from flight.cmdcodec import CommandCodecError
from flight.link.auth import Signer, load_key
from flight.link.cfdp import safe_name
from flight.persist import ensure_private_dir, write_atomic
from ground.archive import Archive
from ground.commander import Commander
from ground.dictionary import Dictionary
from ground.files import GroundFiles
from ground.station import Station, Vehicle

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The ground configuration is missing a key or holds a bad value (the message names it)."""


class RequestError(ValueError):
    """A command-socket request that is not well formed or not authorised."""


TOKEN_FILE = "command.token"
_MAX_REQUEST = 64 * 1024
_ARG_TYPES = (bool, int, float, str)
MAX_PUT_BYTES = 16 * 1024 * 1024  # a file sent up through the command socket (op "put_file")


def load_or_make_token(state_dir: Path) -> str:
    """The command socket's token, made (0600, in a 0700 directory) if there is none yet."""
    ensure_private_dir(state_dir)
    path = state_dir / TOKEN_FILE
    try:
        text = path.read_text().strip()
        if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
            return text
        log.warning("command token %s unusable; making a new one", path)
    except FileNotFoundError:
        pass
    token = secrets.token_hex(32)
    write_atomic(path, (token + "\n").encode())
    return token


def read_token(state_dir: Path) -> str:
    """The token a client presents, read from the ground's state directory."""
    path = state_dir / TOKEN_FILE
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"command token {path}: {exc.strerror}; is the ground running, and may this user read its state_dir?"
        ) from None


def _int_field(req: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = req.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise RequestError(f"{key!r} must be an integer in [{lo}, {hi}]")
    return v


def check_request(req: Any, token: str) -> dict[str, Any]:
    """A request's fields, checked (types, ranges, the token); raises RequestError saying why."""
    if not isinstance(req, dict):
        raise RequestError("request must be a map")
    given = req.get("token")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        raise RequestError("not authorised: missing or wrong token")
    op = req.get("op")
    if op == "status":
        return {"op": op, "id": _int_field(req, "id", 1, 2**63 - 1)}
    if op == "put_file":  # a file for a vehicle, by CFDP (ground.files); it lands in its uplink/
        fname, data = req.get("name"), req.get("data")
        if not isinstance(fname, str) or not safe_name(fname):
            raise RequestError("'name' must be a relative file name without '..'")
        if not isinstance(data, bytes) or len(data) > MAX_PUT_BYTES:
            raise RequestError(f"'data' must be the file's bytes, at most {MAX_PUT_BYTES}")
        return {"op": op, "scid": _int_field(req, "scid", 0, 0xFFFF), "name": fname, "data": data}
    if op != "send":
        raise RequestError(f"unknown op {op!r}" if isinstance(op, str) else "'op' must be a string")
    name = req.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise RequestError("'name' must be a command name")
    args = req.get("args")
    args = {} if args is None else args
    if not isinstance(args, dict) or len(args) > 64:
        raise RequestError("'args' must be a map of at most 64 arguments")
    for k, v in args.items():
        if not isinstance(k, str) or not isinstance(v, _ARG_TYPES):
            raise RequestError("each argument must be a name and a number, a boolean or a string")
        if isinstance(v, float) and not math.isfinite(v):
            raise RequestError(f"argument {k!r} is not finite")
    timeout = req.get("timeout_s")
    if timeout is not None:
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            math.isfinite(timeout) and 0 < timeout <= 1e9
        ):
            raise RequestError("'timeout_s' must be a positive number of seconds")
        timeout = float(timeout)
    return {"op": op, "scid": _int_field(req, "scid", 0, 0xFFFF), "name": name, "args": dict(args),
            "timeout_s": timeout}


@dataclass
class VehicleConfig:
    scid: int
    name: str
    dictionary: Path
    key_file: Path | None
    key_id: int = 1


@dataclass
class GroundConfig:
    archive: Path
    relay: str = "tcp://127.0.0.1:5558"
    pub: str = "tcp://127.0.0.1:5560"
    commands: str = "tcp://127.0.0.1:5561"
    state_dir: Path = Path("ground-state")
    ack_interval_s: float = 1.0
    retry_interval_s: float = 60.0
    vehicles: list[VehicleConfig] = field(default_factory=list)


def load_config(path: str | Path) -> GroundConfig:
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"ground config {p}: {exc}") from exc
    base = p.parent

    def rel(v: str) -> Path:
        q = Path(v)
        return q if q.is_absolute() else base / q

    known = {
        "archive",
        "relay",
        "pub",
        "commands",
        "state_dir",
        "ack_interval_s",
        "retry_interval_s",
        "vehicle",
    }
    for key in raw:
        if key not in known:
            raise ConfigError(f"ground config {p}: unknown key {key!r}")
    if "archive" not in raw:
        raise ConfigError(f"ground config {p}: missing key 'archive'")
    vehicles = []
    for i, v in enumerate(raw.get("vehicle", [])):
        for key in ("scid", "dictionary"):
            if key not in v:
                raise ConfigError(f"ground config {p}: vehicle[{i}] is missing {key!r}")
        vehicles.append(
            VehicleConfig(
                scid=int(v["scid"]),
                name=str(v.get("name", f"scid-{v['scid']}")),
                dictionary=rel(v["dictionary"]),
                key_file=rel(v["key_file"]) if "key_file" in v else None,
                key_id=int(v.get("key_id", 1)),
            )
        )
    return GroundConfig(
        archive=rel(raw["archive"]),
        relay=raw.get("relay", GroundConfig.relay),
        pub=raw.get("pub", GroundConfig.pub),
        commands=raw.get("commands", GroundConfig.commands),
        state_dir=rel(raw.get("state_dir", "ground-state")),
        ack_interval_s=float(raw.get("ack_interval_s", 1.0)),
        retry_interval_s=float(raw.get("retry_interval_s", 60.0)),
        vehicles=vehicles,
    )


def build_vehicles(cfg: GroundConfig) -> list[Vehicle]:
    ensure_private_dir(cfg.state_dir)
    out = []
    for v in cfg.vehicles:
        signer = None
        if v.key_file is not None:
            signer = Signer(load_key(v.key_file, v.key_id), cfg.state_dir / f"uplink-{v.scid}.json")
        out.append(Vehicle(v.scid, Dictionary.load(v.dictionary), signer, v.name))
    return out


class GroundServer:
    """Station + commander between the relay (DEALER) and operators (PUB, REP)."""

    def __init__(self, cfg: GroundConfig) -> None:
        self.cfg = cfg
        self.ctx = zmq.Context.instance()
        self.relay = self.ctx.socket(zmq.DEALER)
        self.relay.setsockopt(zmq.LINGER, 0)
        self.relay.connect(cfg.relay)
        self.relay.send_multipart([b"", b""])  # hello: the relay starts forwarding to us
        self.token = load_or_make_token(cfg.state_dir)
        self.request_errors: Counter[str] = Counter()
        self.rep = self.ctx.socket(zmq.REP)
        self.rep.setsockopt(zmq.LINGER, 0)
        self.rep.setsockopt(zmq.MAXMSGSIZE, _MAX_REQUEST)
        if cfg.commands.startswith("ipc://"):
            ensure_private_dir(Path(cfg.commands[len("ipc://") :]).parent)
        self.rep.bind(cfg.commands)
        self.command_endpoint = self.rep.getsockopt_string(zmq.LAST_ENDPOINT)
        self.archive = Archive(cfg.archive)
        self.station = Station(
            self.archive,
            build_vehicles(cfg),
            uplink=self._uplink,
            pub_endpoint=cfg.pub,
            ack_interval_s=cfg.ack_interval_s,
        )
        self.pub_endpoint = self.station.pub_endpoint
        #: CFDP: products received into the archive, files up (ground.files), state in state_dir
        self.files = GroundFiles(self.station, self.archive, cfg.state_dir / "cfdp", cfg.state_dir)
        self.commander = Commander(self.station, retry_interval_s=cfg.retry_interval_s)
        self._t0 = time.monotonic()
        self.ready = threading.Event()

    def now(self) -> float:
        return time.monotonic() - self._t0

    def _uplink(self, scid: int, frame: bytes) -> None:
        try:
            self.relay.send_multipart([str(scid).encode(), frame], zmq.NOBLOCK)
        except zmq.Again:
            log.warning("uplink to the relay is full; frame for %d dropped", scid)

    def handle(self, data: bytes) -> dict[str, Any]:
        """One raw request in, its answer out; never raises (the socket loop depends on it)."""
        try:
            try:
                raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
            except Exception:  # msgpack raises several types on garbage
                raise RequestError("request is not msgpack") from None
            req = check_request(raw, self.token)
            if req["op"] == "put_file":
                put = self.files.send_bytes(req["scid"], req["name"], req["data"])
                queued = len(self.files.entities[req["scid"]].queue)
                return {"ok": True, "command": {"op": "put_file", "scid": req["scid"], "name": put.name,
                                                "bytes": len(req["data"]), "queued": queued}}
            if req["op"] == "send":
                rec = self.commander.send(
                    req["scid"], req["name"], req["args"], self.now(), timeout_s=req["timeout_s"]
                )
                return {"ok": True, "command": rec.as_dict()}
            rec = self.commander.commands.get(req["id"])
            if rec is None:
                return {"ok": False, "error": f"no command {req['id']}"}
            return {"ok": True, "command": rec.as_dict()}
        except RequestError as exc:
            self.request_errors["bad_request" if "token" not in str(exc) else "unauthorised"] += 1
            log.info("command request refused: %s", exc)
            return {"ok": False, "error": str(exc)}
        except (CommandCodecError, KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
            self.request_errors["refused"] += 1
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug must cost one answer, never the ground
            self.request_errors["internal_error"] += 1
            log.exception("command request failed")
            return {"ok": False, "error": f"internal error: {type(exc).__name__}"}

    def _serve_request(self) -> None:
        try:
            parts = self.rep.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        answer = self.handle(parts[0]) if len(parts) == 1 else {"ok": False, "error": "one frame per request"}
        self.rep.send(msgpack.packb(answer, use_bin_type=True))

    def serve(self, stop: threading.Event, duration_s: float | None = None) -> None:
        poller = zmq.Poller()
        poller.register(self.relay, zmq.POLLIN)
        poller.register(self.rep, zmq.POLLIN)
        self.ready.set()
        try:
            while not stop.is_set():
                if duration_s is not None and self.now() >= duration_s:
                    break
                events = dict(poller.poll(50))
                now = self.now()
                if self.relay in events:
                    for _ in range(10_000):
                        try:
                            parts = self.relay.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if len(parts) == 2:
                            self.station.receive(parts[1], now)
                if self.rep in events:
                    self._serve_request()
                self.station.poll(now)
                self.commander.poll(now)
        finally:
            self.close()

    def close(self) -> None:
        self.station.flush(self.now())
        self.station.close()
        self.relay.close(0)
        self.rep.close(0)
        self.archive.close()
