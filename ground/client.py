"""The Python client API for operators' scripts and system tests.

:class:`GroundClient` talks to a running ground process (``magpie ground``): live telemetry from
its PUB socket, commands through its command socket, history from its archive file. Timeouts are
real seconds, bounded by short polls.

:class:`LocalClient` offers the same waits and commands against an in-process station and
commander on a simulated clock: instead of waiting it calls ``step()`` (which advances the
simulation and returns the new time) until the condition holds or the simulated timeout passes.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgpack
import zmq

from ground.archive import Archive, EventRecord
from ground.commander import TERMINAL, Commander, CommandRecord
from ground.station import Station


class ClientTimeout(TimeoutError):
    """A wait ran past its timeout; the message says what was awaited."""


class CommandError(RuntimeError):
    """The ground refused a command (dictionary check, unknown spacecraft) before sending it."""


Predicate = Callable[[Any], bool]


def _match_event(
    rec: Mapping[str, Any],
    name: str | None,
    severity: str | None,
    predicate: Callable[[Mapping[str, Any]], bool] | None,
) -> bool:
    return (
        (name is None or rec.get("name") == name)
        and (severity is None or rec.get("severity") == severity)
        and (predicate is None or predicate(rec))
    )


class GroundClient:
    """Client of a ground process. See the module docstring.

    By default it subscribes to everything when created, and a wait returns the first matching
    item received since then that no earlier wait consumed (items seen while waiting for something
    else are kept in a bounded backlog), so an event that arrives before its wait is not missed.
    """

    def __init__(
        self,
        pub_endpoint: str | None = None,
        command_endpoint: str | None = None,
        archive_path: str | Path | None = None,
        subscribe_all: bool = True,
        backlog: int = 10_000,
        token: str | None = None,
    ) -> None:
        """``token``: the ground's command token (``ground.server.read_token(state_dir)``)."""
        self.token = token
        self.ctx = zmq.Context.instance()
        self._sub = None
        self._req = None
        self.command_endpoint = command_endpoint
        self._archive = None
        self.archive_path = archive_path
        self._backlog: deque[tuple[str, dict[str, Any]]] = deque(maxlen=backlog)
        if pub_endpoint:
            self._sub = self.ctx.socket(zmq.SUB)
            self._sub.setsockopt(zmq.LINGER, 0)
            self._sub.setsockopt(zmq.RCVHWM, 100_000)
            self._sub.connect(pub_endpoint)
            if subscribe_all:
                self._sub.setsockopt(zmq.SUBSCRIBE, b"")

    # -- live ------------------------------------------------------------------------------

    def subscribe(self, *prefixes: str) -> None:
        """Receive topics starting with these prefixes (``tlm.66.``, ``evt.``, ``""`` for all).

        ZeroMQ matches prefixes only, and a client made with ``subscribe_all=True`` (the default)
        already receives everything: a live view that wants a subset creates the client with
        ``subscribe_all=False`` and still checks each topic it receives (see ground.web.filters).
        """
        if self._sub is None:
            raise RuntimeError("client has no telemetry endpoint")
        for p in prefixes or ("",):
            self._sub.setsockopt(zmq.SUBSCRIBE, p.encode())

    def next(self, timeout_s: float = 1.0) -> tuple[str, dict[str, Any]] | None:
        """The next published (topic, record), or None within the timeout."""
        if self._sub is None:
            raise RuntimeError("client has no telemetry endpoint")
        if not self._sub.poll(max(0, int(timeout_s * 1000))):
            return None
        topic, body = self._sub.recv_multipart()
        return topic.decode(), msgpack.unpackb(body, raw=False)

    def _wait(
        self, prefix: str, match: Callable[[dict[str, Any]], bool], timeout_s: float, what: str
    ) -> dict[str, Any]:
        self.subscribe(prefix)
        for i, (topic, rec) in enumerate(self._backlog):
            if topic.startswith(prefix) and match(rec):
                del self._backlog[i]
                return rec
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            msg = self.next(min(left, 0.1))
            if msg is None:
                continue
            if msg[0].startswith(prefix) and match(msg[1]):
                return msg[1]
            self._backlog.append(msg)
        raise ClientTimeout(f"no {what} within {timeout_s} s")

    def wait_channel(
        self, scid: int, name: str, predicate: Predicate | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        """The next sample of a channel whose value satisfies ``predicate``."""
        return self._wait(
            f"tlm.{scid}.{name}",
            lambda r: r["name"] == name and (predicate is None or predicate(r["value"])),
            timeout_s,
            f"{name} sample of spacecraft {scid} matching",
        )

    def wait_event(
        self,
        scid: int,
        name: str | None = None,
        severity: str | None = None,
        predicate: Callable[[Mapping[str, Any]], bool] | None = None,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        return self._wait(
            f"evt.{scid}",
            # "evt.6" is a prefix of "evt.66" too: the record's scid decides
            lambda r: r.get("scid") == scid and _match_event(r, name, severity, predicate),
            timeout_s,
            f"event {name or ''} from spacecraft {scid}",
        )

    # -- commands --------------------------------------------------------------------------

    def _call(self, req: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        if not self.command_endpoint:
            raise RuntimeError("client has no command endpoint")
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.command_endpoint)
            sock.send(msgpack.packb({**req, "token": self.token}, use_bin_type=True))
            if not sock.poll(int(timeout_s * 1000)):
                raise ClientTimeout(f"ground did not answer {req.get('op')} within {timeout_s} s")
            reply = msgpack.unpackb(sock.recv(), raw=False)
        finally:
            sock.close()
        if not reply.get("ok"):
            raise CommandError(reply.get("error", "refused"))
        return reply["command"]

    def send_command(
        self,
        scid: int,
        name: str,
        args: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Send a command through the ground; returns its record (``id``, ``stage`` ...)."""
        return self._call(
            {
                "op": "send",
                "scid": scid,
                "name": name,
                "args": dict(args or {}),
                "timeout_s": timeout_s,
            }
        )

    def put_file(self, scid: int, path: str | Path, name: str | None = None) -> dict[str, Any]:
        """Send a file to a vehicle by CFDP (it lands in the vehicle's ``uplink/``); returns what was queued."""
        p = Path(path)
        return self._call({"op": "put_file", "scid": scid, "name": name or p.name, "data": p.read_bytes()},
                          timeout_s=30.0)

    def command_status(self, cmd_id: int) -> dict[str, Any]:
        return self._call({"op": "status", "id": cmd_id})

    def wait_command(self, cmd_id: int, timeout_s: float = 30.0, stages: Iterable[str] = TERMINAL) -> dict[str, Any]:
        """Poll a command's stage until it reaches one of ``stages`` (default: a final one)."""
        want = {str(s) for s in stages}
        deadline = time.monotonic() + timeout_s
        while True:
            rec = self.command_status(cmd_id)
            if rec["stage"] in want:
                return rec
            if time.monotonic() >= deadline:
                raise ClientTimeout(f"command {cmd_id} still {rec['stage']} after {timeout_s} s")
            time.sleep(0.05)  # polling a real process; nothing to step

    def run_command(
        self, scid: int, name: str, args: Mapping[str, Any] | None = None, timeout_s: float = 30.0
    ) -> dict[str, Any]:
        """Send a command and await its final stage."""
        rec = self.send_command(scid, name, args, timeout_s=timeout_s)
        return self.wait_command(rec["id"], timeout_s)

    # -- archive ---------------------------------------------------------------------------

    @property
    def archive(self) -> Archive:
        if self._archive is None:
            if self.archive_path is None:
                raise RuntimeError("client has no archive path")
            self._archive = Archive(self.archive_path, readonly=True)
        return self._archive

    def channel(
        self,
        scid: int,
        name_or_id: str | int,
        since: float = float("-inf"),
        until: float = float("inf"),
    ) -> list[tuple[float, Any]]:
        cid = self.archive.channel_id(scid, name_or_id)
        if cid is None:
            raise KeyError(f"no channel {name_or_id!r} archived for spacecraft {scid}")
        return self.archive.channel(scid, cid, since, until)

    def events(
        self, scid: int | None = None, since: float = float("-inf"), until: float = float("inf")
    ) -> list[EventRecord]:
        return self.archive.events(scid, since, until)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close(0)
        if self._archive is not None:
            self._archive.close()

    def __enter__(self) -> GroundClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalClient:
    """The client API over an in-process station on a simulated clock (see module docstring)."""

    def __init__(self, station: Station, commander: Commander, step: Callable[[], float]) -> None:
        self.station = station
        self.commander = commander
        self.step = step
        self.now = step()
        self._inbox: deque[tuple[str, int, dict[str, Any]]] = deque(maxlen=100_000)
        station.listeners.append(lambda kind, scid, rec: self._inbox.append((kind, scid, rec)))

    def _wait(self, match: Callable[[str, int, dict[str, Any]], bool], timeout_s: float, what: str) -> dict[str, Any]:
        deadline = self.now + timeout_s
        while True:
            while self._inbox:
                kind, scid, rec = self._inbox.popleft()
                if match(kind, scid, rec):
                    return rec
            if self.now >= deadline:
                raise ClientTimeout(f"no {what} within {timeout_s} simulated s")
            self.now = self.step()

    def wait_channel(
        self, scid: int, name: str, predicate: Predicate | None = None, timeout_s: float = 10.0
    ) -> dict[str, Any]:
        return self._wait(
            lambda k, s, r: (
                k == "tlm" and s == scid and r["name"] == name and (predicate is None or predicate(r["value"]))
            ),
            timeout_s,
            f"{name} sample",
        )

    def wait_event(
        self,
        scid: int,
        name: str | None = None,
        severity: str | None = None,
        predicate: Callable[[Mapping[str, Any]], bool] | None = None,
        timeout_s: float = 10.0,
    ) -> dict[str, Any]:
        return self._wait(
            lambda k, s, r: k == "evt" and s == scid and _match_event(r, name, severity, predicate),
            timeout_s,
            "event",
        )

    def send_command(
        self,
        scid: int,
        name: str,
        args: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> CommandRecord:
        return self.commander.send(scid, name, dict(args or {}), self.now, timeout_s=timeout_s)

    def wait_command(
        self, rec: CommandRecord, timeout_s: float = 60.0, stages: Iterable[str] = TERMINAL
    ) -> CommandRecord:
        want = {str(s) for s in stages}
        deadline = self.now + timeout_s
        while str(rec.stage) not in want:
            if self.now >= deadline:
                raise ClientTimeout(f"command {rec.id} still {rec.stage} after {timeout_s} s")
            self.now = self.step()
        return rec

    def run_command(
        self, scid: int, name: str, args: Mapping[str, Any] | None = None, timeout_s: float = 60.0
    ) -> CommandRecord:
        return self.wait_command(self.send_command(scid, name, args, timeout_s), timeout_s)

    def channel(
        self,
        scid: int,
        name_or_id: str | int,
        since: float = float("-inf"),
        until: float = float("inf"),
    ) -> list[tuple[float, Any]]:
        cid = self.station.archive.channel_id(scid, name_or_id)
        if cid is None:
            raise KeyError(f"no channel {name_or_id!r} for spacecraft {scid}")
        self.station.flush(self.now)
        return self.station.archive.channel(scid, cid, since, until)

    def events(
        self, scid: int | None = None, since: float = float("-inf"), until: float = float("inf")
    ) -> list[EventRecord]:
        self.station.flush(self.now)
        return self.station.archive.events(scid, since, until)
