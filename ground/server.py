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
msgpack maps: ``{"op": "send", "scid", "name", "args", "timeout_s"}`` answers
``{"ok": true, "command": {...}}``; ``{"op": "status", "id"}`` answers the command's record;
errors answer ``{"ok": false, "error": reason}``.
"""

from __future__ import annotations

import logging
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from flight.cmdcodec import CommandCodecError
from flight.link.auth import Signer, load_key
from ground.archive import Archive
from ground.commander import Commander
from ground.dictionary import Dictionary
from ground.station import Station, Vehicle

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """The ground configuration is missing a key or holds a bad value (the message names it)."""


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
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
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
        self.rep = self.ctx.socket(zmq.REP)
        self.rep.setsockopt(zmq.LINGER, 0)
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

    def _request(self, req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            return {"ok": False, "error": "request must be a map"}
        op = req.get("op")
        try:
            if op == "send":
                rec = self.commander.send(
                    int(req["scid"]),
                    str(req["name"]),
                    dict(req.get("args") or {}),
                    self.now(),
                    timeout_s=req.get("timeout_s"),
                )
                return {"ok": True, "command": rec.as_dict()}
            if op == "status":
                rec = self.commander.commands.get(int(req["id"]))
                if rec is None:
                    return {"ok": False, "error": f"no command {req['id']}"}
                return {"ok": True, "command": rec.as_dict()}
        except (CommandCodecError, KeyError, TypeError, ValueError, RuntimeError) as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def _serve_request(self) -> None:
        try:
            data = self.rep.recv(zmq.NOBLOCK)
        except zmq.Again:
            return
        try:
            req = msgpack.unpackb(data, raw=False)
        except Exception:  # msgpack raises several types on garbage
            req = None
        self.rep.send(msgpack.packb(self._request(req), use_bin_type=True))

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
