"""The web ground station: a Starlette (ASGI) application beside a running ``magpie ground``.

It reads what the ground process makes available and nothing else, so it can start, stop and
restart independently of the station (and survive the station restarting under it):

- the live PUB feed (``tlm.<scid>.<name>``, ``evt.<scid>``, ``cmd.<scid>``), coalesced per channel
  and pushed to every open page over a websocket every ``flush_s`` (a page that falls behind gets
  the newest value of each channel, never an unbounded queue);
- the archive (SQLite, read-only) for history: channel ranges for the plots, events, command
  history and image products (reassembled by :mod:`ground.images`);
- the command socket (REQ) to send commands; the stages of each command sent from a page are
  polled until final and pushed to the pages.

Why Starlette and uvicorn: Starlette is the small, well-kept ASGI toolkit with routing, static
files and websockets and nothing else; uvicorn (with its ``standard`` extra: the ``websockets``
implementation) is the reference ASGI server. Both are pure pip installs, need no build step and
no network at run time. The page is plain HTML/JS/CSS in ``static/``.

Security: it binds 127.0.0.1 unless told otherwise. Reading is open to whoever can reach it;
commanding from an address other than loopback needs the token (``X-Magpie-Token`` header).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq
import zmq.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from flight.cmdcodec import CommandCodecError, check_args
from flight.timeline import SequenceError, Timeline
from flight.timeline import check as check_timeline
from flight.timeline import parse_collect as parse_timeline
from ground.archive import Archive
from ground.dictionary import Dictionary, DictionaryError
from ground.images import collect, resend_commands
from ground.server import ConfigError, GroundConfig, read_token
from ground.web.filters import EventFilter, FilterError

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
TERMINAL = {"REJECTED", "COMPLETED", "FAILED", "TIMED_OUT"}
LOOPBACK = {"127.0.0.1", "::1", "localhost", "testclient"}


@dataclass
class LinkInfo:
    """What the operator knows of the link ahead of time (``link.json``): light time and passes.

    ``windows`` is the relay's periodic schedule (``period_s``, ``up_s``, ``phase_s``) counted from
    ``t0_unix``, the wall time the relay started; None means always in view.
    """

    light_time_s: float | None = None
    hop_delay_s: float = 0.0
    windows: dict[str, float] | None = None
    t0_unix: float | None = None
    #: fixed things on the site map (``name``, ``kind``, ``x``, ``y`` in the navigation frame), e.g. a lander
    landmarks: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path | None) -> LinkInfo:
        if path is None:
            return cls()
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("expected a JSON object")
            windows = raw.get("windows")
            if windows is not None:
                if not isinstance(windows, dict):
                    raise ValueError("windows must be an object or null")
                windows = {k: float(windows[k]) if k in windows else 0.0 for k in ("period_s", "up_s", "phase_s")}
                if not all(math.isfinite(v) for v in windows.values()) or windows["period_s"] <= 0:
                    raise ValueError("windows need a finite period_s above 0 and finite up_s, phase_s")
            info = cls(
                light_time_s=None if raw.get("light_time_s") is None else float(raw["light_time_s"]),
                hop_delay_s=float(raw.get("hop_delay_s", 0.0)),
                windows=windows,
                t0_unix=None if raw.get("t0_unix") is None else float(raw["t0_unix"]),
            )
            if not all(math.isfinite(v) for v in (info.light_time_s or 0.0, info.hop_delay_s, info.t0_unix or 0.0)):
                raise ValueError("times must be finite")
            marks = raw.get("landmarks", [])
            if not isinstance(marks, list):
                raise ValueError("landmarks must be a list")
            for m in marks:
                if not isinstance(m, dict) or not isinstance(m.get("name"), str):
                    raise ValueError("each landmark needs a name, x and y")
                x, y = float(m["x"]), float(m["y"])
                if not (math.isfinite(x) and math.isfinite(y)):
                    raise ValueError(f"landmark {m['name']}: x and y must be finite")
                info.landmarks.append({"name": m["name"][:40], "kind": str(m.get("kind", ""))[:20], "x": x, "y": y})
            return info
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            raise ValueError(f"link description {path}: {exc}") from None

    def state(self, now_unix: float) -> dict[str, Any]:
        """Light time, whether the relay is in view now and when the next pass starts and ends."""
        out: dict[str, Any] = {
            "light_time_s": self.light_time_s,
            "one_way_s": None if self.light_time_s is None else self.light_time_s + self.hop_delay_s,
            "in_view": None,
            "next_pass_in_s": None,
            "pass_left_s": None,
        }
        w = self.windows
        if not w:
            out["in_view"] = True if self.light_time_s is not None else None
            return out
        period, up, phase = float(w["period_s"]), float(w["up_s"]), float(w.get("phase_s", 0.0))
        t = now_unix - (self.t0_unix or now_unix)
        into = (t - phase) % period
        out["in_view"] = into < up
        if into < up:
            out["pass_left_s"] = up - into
            out["next_pass_in_s"] = period - into
        else:
            out["next_pass_in_s"] = period - into
        return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def decimate(rows: list[tuple[float, Any]], max_points: int) -> list[tuple[float, Any]]:
    """At most about ``max_points`` samples: each bucket's first, min and max keep the shape."""
    if len(rows) <= max_points or max_points < 3:
        return rows
    per = math.ceil(len(rows) / (max_points / 3))
    out: list[tuple[float, Any]] = []
    for i in range(0, len(rows), per):
        chunk = rows[i : i + per]
        nums = [r for r in chunk if isinstance(r[1], int | float) and not isinstance(r[1], bool)]
        picks = {0: chunk[0]}
        if nums:
            lo, hi = min(nums, key=lambda r: r[1]), max(nums, key=lambda r: r[1])
            picks[chunk.index(lo)] = lo
            picks[chunk.index(hi)] = hi
        out.extend(picks[k] for k in sorted(picks))
    return out


@dataclass(eq=False)
class Page:
    """One open page: what to send it at the next flush."""

    ws: WebSocket
    tlm: dict[tuple[int, str], list[Any]] = field(default_factory=dict)
    other: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0


class WebGround:
    """State shared by the routes: dictionaries, live pump, open pages, tracked commands."""

    def __init__(self, cfg: GroundConfig, token: str | None = None, link: LinkInfo | None = None,
                 flush_s: float = 0.05, images_poll_s: float = 1.0, request_timeout_s: float = 3.0) -> None:
        self.cfg = cfg
        self.token = token
        self.link = link or LinkInfo()
        self.flush_s = flush_s
        self.images_poll_s = images_poll_s
        self.request_timeout_s = request_timeout_s
        self.dicts: dict[int, Dictionary] = {}
        self.names: dict[int, str] = {}
        for v in cfg.vehicles:
            self.dicts[v.scid] = Dictionary.load(v.dictionary)
            self.names[v.scid] = v.name
        self.pages: set[Page] = set()
        self.latest: dict[tuple[int, str], list[Any]] = {}
        self.commands: dict[int, dict[str, Any]] = {}
        self.last_rx_unix: float | None = None
        self.received = 0
        self.bad_messages = 0
        self._archive: Archive | None = None
        self._images_key: dict[int, Any] = {}
        self.images: dict[int, list[dict[str, Any]]] = {}
        self.ctx = zmq.asyncio.Context.instance()
        self._tasks: list[asyncio.Task[Any]] = []

    # -- archive -----------------------------------------------------------------------------

    def archive(self) -> Archive | None:
        """The archive read-only, or None while the ground has not created it yet."""
        if self._archive is None:
            if not Path(self.cfg.archive).exists():
                return None
            try:
                self._archive = Archive(self.cfg.archive, readonly=True)
            except sqlite3.Error as exc:
                log.info("archive not readable yet: %s", exc)
                return None
        return self._archive

    # -- live pump ---------------------------------------------------------------------------

    async def pump(self) -> None:
        """Receive the ground's PUB feed forever; ZeroMQ reconnects by itself if the ground restarts."""
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.RCVHWM, 200_000)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        sub.connect(self.cfg.pub)
        try:
            while True:
                batch = [await sub.recv_multipart()]
                # drain what is already queued, then yield: awaiting a socket that always has a
                # message ready never returns control to the event loop, which would starve the
                # pages, the HTTP routes and shutdown
                for _ in range(2000):
                    try:
                        batch.append(sub.recv_multipart(zmq.NOBLOCK).result())
                    except zmq.Again:
                        break
                for parts in batch:
                    self._take_raw(parts)
                await asyncio.sleep(0)
        finally:
            sub.close(0)

    def _take_raw(self, parts: list[bytes]) -> None:
        try:
            topic = parts[0].decode()
            rec = msgpack.unpackb(parts[1], raw=False)
            self._take(topic, rec)
        except (IndexError, UnicodeDecodeError, ValueError, TypeError, KeyError,
                msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
            self.bad_messages += 1
            if self.bad_messages in (1, 10, 100) or self.bad_messages % 1000 == 0:
                log.warning("%d malformed live messages ignored", self.bad_messages)

    def _take(self, topic: str, rec: dict[str, Any]) -> None:
        self.last_rx_unix = time.time()
        self.received += 1
        kind = topic.split(".", 1)[0]
        scid = int(rec["scid"])
        if kind == "tlm":
            # wall_ms: when the web received it from the ground, for the page's latency figure
            sample = [scid, str(rec["name"]), rec["time"], _jsonable(rec["value"]), self.last_rx_unix * 1000.0]
            key = (scid, sample[1])
            self.latest[key] = sample
            for page in self.pages:
                page.tlm[key] = sample
        elif kind in ("evt", "cmd"):
            msg = {"t": kind, "scid": scid, "rec": _jsonable(rec)}
            for page in self.pages:
                if len(page.other) < 5000:
                    page.other.append(msg)
                else:
                    page.dropped += 1

    def broadcast(self, msg: dict[str, Any]) -> None:
        for page in self.pages:
            page.other.append(msg)

    async def flusher(self) -> None:
        """Every ``flush_s``: send each page what accumulated for it (one JSON text frame)."""
        while True:
            await asyncio.sleep(self.flush_s)  # the page's update period
            for page in list(self.pages):
                if not page.tlm and not page.other:
                    continue
                tlm, other = list(page.tlm.values()), page.other
                page.tlm, page.other = {}, []
                msg: dict[str, Any] = {"t": "batch", "tlm": tlm, "items": other}
                if page.dropped:
                    msg["dropped"] = page.dropped
                    page.dropped = 0
                try:
                    await asyncio.wait_for(page.ws.send_text(json.dumps(msg)), timeout=5.0)
                except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
                    self.pages.discard(page)

    def status(self) -> dict[str, Any]:
        now = time.time()
        silent = None if self.last_rx_unix is None else now - self.last_rx_unix
        return {
            "t": "status",
            "ground_silent_s": silent,
            "received": self.received,
            "bad_messages": self.bad_messages,
            "link": self.link.state(now),
            "unix": now,
        }

    async def status_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)  # the status line's refresh period
            self.broadcast(self.status())

    async def images_loop(self) -> None:
        """Look for new product chunks in the archive; push each spacecraft's list when it changes."""
        while True:
            await asyncio.sleep(self.images_poll_s)  # archive polling period
            try:
                self.refresh_images()
            except sqlite3.Error as exc:
                log.debug("image poll: %s", exc)

    def refresh_images(self) -> None:
        archive = self.archive()
        if archive is None:
            return
        try:
            n = archive.count("product_chunks")
        except sqlite3.OperationalError:
            return
        if self._images_key.get(-1) == n:
            return
        self._images_key[-1] = n
        for scid in self.dicts:
            views = collect(archive, scid)
            summaries = [_jsonable(v.summary()) for v in views]
            if summaries != self.images.get(scid):
                self.images[scid] = summaries
                self.broadcast({"t": "images", "scid": scid, "list": summaries})

    # -- commands ----------------------------------------------------------------------------

    async def request(self, req: dict[str, Any]) -> dict[str, Any]:
        """One request to the ground's command socket; a ground that does not answer is an error."""
        try:
            # the ground's own command token (ground/server.py), read each time: a ground started
            # after this page makes it when it starts
            ground_token = read_token(self.cfg.state_dir)
        except ConfigError as exc:
            return {"ok": False, "error": str(exc)}
        sock = self.ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            sock.connect(self.cfg.commands)
            await sock.send(msgpack.packb({**req, "token": ground_token}, use_bin_type=True))
            if not await sock.poll(int(self.request_timeout_s * 1000)):
                return {"ok": False, "error": f"the ground did not answer within {self.request_timeout_s:.0f} s "
                        "(is magpie ground running?)"}
            return msgpack.unpackb(await sock.recv(), raw=False)
        finally:
            sock.close(0)

    async def track(self) -> None:
        """Poll the stage of every command sent from a page until it is final; push changes."""
        while True:
            await asyncio.sleep(0.25)  # stage polling period
            for cid, rec in list(self.commands.items()):
                if rec.get("stage") in TERMINAL:
                    continue
                reply = await self.request({"op": "status", "id": cid})
                if not reply.get("ok"):
                    continue
                new = reply["command"]
                if new.get("stage") != rec.get("stage"):
                    new["sent_unix"] = rec.get("sent_unix")
                    new["history"] = [*rec.get("history", []), [new["stage"], time.time()]]
                    self.commands[cid] = new
                    self.broadcast({"t": "command", "rec": _jsonable(new)})

    def check_command(self, body: Any) -> tuple[int, str, dict[str, Any]]:
        """The (scid, name, checked args) of a command form, or ValueError saying what is wrong."""
        if not isinstance(body, dict):
            raise ValueError("the command form must be a JSON object")
        try:
            scid = int(body.get("scid"))
        except (TypeError, ValueError):
            raise ValueError(f"bad spacecraft id {body.get('scid')!r}") from None
        d = self.dicts.get(scid)
        if d is None:
            raise ValueError(f"no spacecraft {scid} at this ground (have {sorted(self.dicts)})")
        name = body.get("name")
        if not isinstance(name, str):
            raise ValueError("missing command name")
        args = body.get("args") or {}
        if not isinstance(args, dict):
            raise ValueError("arguments must be a JSON object")
        try:
            entry = d.command(name)
            checked = check_args(entry, args)
        except (DictionaryError, CommandCodecError) as exc:
            raise ValueError(str(exc)) from None
        return scid, name, checked

    def may_command(self, request: Request) -> str | None:
        """None if this client may command, else why not."""
        host = request.client.host if request.client else ""
        if host in LOOPBACK:
            return None
        if not self.token:
            return f"commanding from {host} is refused: the web ground has no token (start it with --token)"
        given = request.headers.get("x-magpie-token", "")
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return f"commanding from {host} needs the token"
        return None

    async def send(self, scid: int, name: str, args: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        reply = await self.request({"op": "send", "scid": scid, "name": name, "args": args,
                                    "timeout_s": timeout_s})
        if not reply.get("ok"):
            raise RuntimeError(str(reply.get("error", "refused")))
        rec = reply["command"]
        rec["sent_unix"] = time.time()
        rec["history"] = [[rec["stage"], rec["sent_unix"]]]
        self.commands[int(rec["id"])] = rec
        self.broadcast({"t": "command", "rec": _jsonable(rec)})
        return rec

    # -- lifecycle ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        for coro in (self.pump(), self.flusher(), self.status_loop(), self.images_loop(), self.track()):
            self._tasks.append(asyncio.create_task(coro))
        try:
            yield
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            if self._archive is not None:
                self._archive.close()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _refusal(status: int, errors: list[tuple[int, str]], why: str = "") -> JSONResponse:
    """A sequence refused: every (line, message), and one readable line for the page."""
    first = "; ".join(f"line {n}: {m}" for n, m in errors[:3]) + (" ..." if len(errors) > 3 else "")
    return JSONResponse({"ok": False, "errors": [[n, m] for n, m in errors],
                         "error": f"{why}: {first}" if why else first}, status_code=status)


def _onboard_only(tl: Timeline) -> list[tuple[int, str]]:
    """The lines of a timeline that only the vehicle's engine can run, with what each needs."""
    out: list[tuple[int, str]] = []
    if tl.deadline is not None:
        out.append((tl.deadline_line, "a deadline"))
    if tl.contingency and tl.contingency_line != tl.deadline_line:
        out.append((tl.contingency_line, "a contingency"))
    if tl.critical:
        out.append((tl.critical_line, "a critical sequence (fault protection guards it on board)"))
    for s in tl.steps:
        if not s.relative:
            out.append((s.line, "an absolute time tag"))
        elif s.kind == "until":
            out.append((s.line, f"a wait (until {s.cond})"))
        elif s.latest_s is not None:
            out.append((s.line, "a window"))
        elif s.late != "run":
            out.append((s.line, f"late={s.late}"))
    return sorted(out)


def build_app(web: WebGround) -> Starlette:
    """The ASGI application: the page, its static files, the JSON API and the websocket."""

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def config(request: Request) -> Response:
        return JSONResponse({
            "vehicles": [{"scid": s, "name": web.names[s], "dictionary": d.raw} for s, d in web.dicts.items()],
            "may_command": web.may_command(request) is None,
            "token_required": web.may_command(request) is not None,
            "status": web.status(),
            "landmarks": web.link.landmarks,
        })

    def _scid(request: Request) -> int:
        try:
            scid = int(request.path_params["scid"])
        except ValueError:
            raise KeyError(f"bad spacecraft id {request.path_params['scid']!r}") from None
        if scid not in web.dicts:
            raise KeyError(f"no spacecraft {scid} at this ground")
        return scid

    def _float(request: Request, key: str, default: float) -> float:
        text = request.query_params.get(key)
        if text in (None, ""):
            return default
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{key}={text!r} is not a number") from None

    async def latest(request: Request) -> Response:
        try:
            scid = _scid(request)
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        live = {n: v for (s, n), v in web.latest.items() if s == scid}
        archive = web.archive()
        if archive is not None:
            try:
                for cid, name in archive.channel_names(scid).items():
                    if name not in live:
                        row = archive.latest(scid, cid)
                        if row is not None:
                            live[name] = [scid, name, row[0], _jsonable(row[1]), None]
            except sqlite3.Error as exc:
                log.debug("latest: %s", exc)
        return JSONResponse({"samples": list(live.values())})

    async def history(request: Request) -> Response:
        try:
            scid = _scid(request)
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        name = request.path_params["name"]
        if name not in web.dicts[scid].channels_by_name:
            return _error(404, f"no channel {name!r} in spacecraft {scid}'s dictionary")
        try:
            since = _float(request, "since", float("-inf"))
            until = _float(request, "until", float("inf"))
            max_points = int(_float(request, "max", 2000))
        except ValueError as exc:
            return _error(400, str(exc))
        archive = web.archive()
        if archive is None:
            return JSONResponse({"name": name, "points": [], "note": "the archive does not exist yet"})
        try:
            cid = archive.channel_id(scid, name)
            rows = [] if cid is None else archive.channel(scid, cid, since, until)
        except sqlite3.Error as exc:
            return _error(503, f"archive not readable: {exc}")
        ch = web.dicts[scid].channels_by_name[name]
        pts = [[t, _jsonable(v)] for t, v in decimate(rows, max(3, min(max_points, 20000)))]
        return JSONResponse({"name": name, "units": ch.get("units", ""), "total": len(rows), "points": pts})

    async def events(request: Request) -> Response:
        try:
            scid = _scid(request)
            filt = EventFilter.from_query(request.query_params.getlist("severity"),
                                          request.query_params.get("name"), request.query_params.get("search"))
            since = _float(request, "since", float("-inf"))
            until = _float(request, "until", float("inf"))
            limit = int(_float(request, "limit", 500))
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        except (FilterError, ValueError) as exc:
            return _error(400, str(exc))
        archive = web.archive()
        out: list[dict[str, Any]] = []
        if archive is not None:
            try:
                rows = archive.events(scid, since, until)
            except sqlite3.Error as exc:
                return _error(503, f"archive not readable: {exc}")
            for e in rows:
                rec = {"scid": e.scid, "id": e.event_id, "name": e.name, "severity": e.severity,
                       "text": e.text, "args": _jsonable(e.args), "time": e.time}
                if filt.match(rec):
                    out.append(rec)
        return JSONResponse({"events": out[-limit:]})

    async def command(request: Request) -> Response:
        why = web.may_command(request)
        if why is not None:
            return _error(403, why)
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the command form is not JSON")
        try:
            scid, name, checked = web.check_command(body)
            timeout_s = float(body.get("timeout_s") or 120.0)
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc))
        try:
            rec = await web.send(scid, name, checked, timeout_s)
        except RuntimeError as exc:
            return _error(502, str(exc))
        return JSONResponse({"command": _jsonable(rec)})

    async def commands(_request: Request) -> Response:
        return JSONResponse({"commands": [_jsonable(c) for c in web.commands.values()]})

    async def sequence_of(request: Request, error_status: int) -> tuple[int, Timeline] | Response:
        """The (scid, checked timeline) a request's ``{scid, text}`` names, or the response saying why not.

        The same parser and checks as the vehicle and ``magpie seq``: commands, arguments and the
        channels ``until`` waits read, against this spacecraft's dictionary."""
        try:
            body = await request.json()
            scid = int(body["scid"])
            text = str(body["text"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            return _error(400, "expected {scid, text}")
        d = web.dicts.get(scid)
        if d is None:
            return _error(404, f"no spacecraft {scid} at this ground")
        try:
            tl, errors = parse_timeline(text)
        except SequenceError as exc:  # parse_collect reports instead of raising; this is belt and braces
            tl, errors = Timeline(()), exc.errors
        errors = sorted(errors + check_timeline(tl, d.commands_by_name.get, d.channels_by_name))
        if errors:
            return _refusal(error_status, errors)
        return scid, tl

    async def seq_check(request: Request) -> Response:
        got = await sequence_of(request, 200)
        if isinstance(got, Response):
            return got
        _, tl = got
        return JSONResponse({
            "ok": True,
            "commands": [{"line": s.line, "kind": s.kind, "relative": s.relative, "time": s.time_s,
                          "latest": s.latest_s, "late": s.late, "name": s.name or s.what, "args": s.args}
                         for s in tl.steps],
            "deadline": None if tl.deadline is None else {"relative": tl.deadline[0], "time": tl.deadline[1]},
            "contingency": tl.contingency or None, "critical": tl.critical,
            "onboard_only": [[n, m] for n, m in _onboard_only(tl)]})

    async def seq_run(request: Request) -> Response:
        """Check a sequence, then send its relative-time commands from the ground at their offsets.

        Only plain relative commands run from the ground; windows, late policies, waits, labels,
        deadlines, contingencies and absolute tags need the vehicle's engine, so a sequence with any
        of them is refused with the lines that need it (upload it and SEQ_RUN it on board)."""
        why = web.may_command(request)
        if why is not None:
            return _error(403, why)
        got = await sequence_of(request, 400)
        if isinstance(got, Response):
            return got
        scid, tl = got
        d = web.dicts[scid]
        onboard = _onboard_only(tl)
        if onboard:
            return _refusal(400, onboard, "runs on board only (SEQ_RUN); the ground runs plain relative tags")
        lines = tl.steps

        async def run() -> None:
            for ln in lines:
                await asyncio.sleep(max(0.0, ln.time_s))  # the sequence's own relative time tags
                try:
                    await web.send(scid, ln.name, check_args(d.command(ln.name), ln.args), 120.0)
                except (RuntimeError, CommandCodecError) as exc:
                    web.broadcast({"t": "notice", "level": "error", "text": f"sequence line {ln.line}: {exc}"})
                    return

        web._tasks.append(asyncio.create_task(run()))
        return JSONResponse({"ok": True, "commands": len(lines)})

    async def images(request: Request) -> Response:
        try:
            scid = _scid(request)
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        try:
            web.refresh_images()
        except sqlite3.Error as exc:
            return _error(503, f"archive not readable: {exc}")
        return JSONResponse({"images": web.images.get(scid, [])})

    def _view(request: Request) -> Any:
        scid = _scid(request)
        try:
            pid = int(request.path_params["pid"])
        except ValueError:
            raise KeyError(f"bad product id {request.path_params['pid']!r}") from None
        kind = request.path_params["kind"]
        archive = web.archive()
        views = [] if archive is None else collect(archive, scid, pid)
        for v in views:
            if v.kind == kind:
                return v
        raise KeyError(f"no {kind} product {pid} from spacecraft {scid}")

    async def image(request: Request) -> Response:
        try:
            v = _view(request)
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        data = v.data
        if data is None:
            return _error(409, f"product {v.pid} {v.kind} is {v.status}; missing segments {v.summary()['missing']}")
        media = {"jpg": "image/jpeg", "png": "image/png"}.get(v.ext, "application/octet-stream")
        return Response(data, media_type=media, headers={"Cache-Control": "max-age=3600"})

    async def image_resend(request: Request) -> Response:
        why = web.may_command(request)
        if why is not None:
            return _error(403, why)
        try:
            v = _view(request)
        except KeyError as exc:
            return _error(404, str(exc.args[0]))
        cmds = resend_commands([v])
        if not cmds:
            return _error(409, f"product {v.pid} {v.kind} is not missing segments")
        sent = []
        for name, args in cmds:
            try:
                scid, name, checked = web.check_command({"scid": v.scid, "name": name, "args": args})
                sent.append(await web.send(scid, name, checked, 300.0))
            except (ValueError, RuntimeError) as exc:
                return _error(502, str(exc))
        return JSONResponse({"commands": [_jsonable(c) for c in sent]})

    async def ws_endpoint(ws: WebSocket) -> None:
        await ws.accept()
        page = Page(ws)
        web.pages.add(page)
        page.other.append(web.status())
        for scid, lst in web.images.items():
            page.other.append({"t": "images", "scid": scid, "list": lst})
        try:
            while True:
                msg = await ws.receive()  # the page only pings; whatever it sends is ignored
                if msg.get("type") == "websocket.disconnect":
                    break
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            web.pages.discard(page)

    async def not_found(request: Request, _exc: Exception) -> Response:
        return _error(404, f"nothing at {request.url.path}")

    routes = [
        Route("/", index),
        Route("/api/config", config),
        Route("/api/latest/{scid}", latest),
        Route("/api/tlm/{scid}/{name:path}", history),
        Route("/api/events/{scid}", events),
        Route("/api/command", command, methods=["POST"]),
        Route("/api/commands", commands),
        Route("/api/seq/check", seq_check, methods=["POST"]),
        Route("/api/seq/run", seq_run, methods=["POST"]),
        Route("/api/images/{scid}", images),
        Route("/api/images/{scid}/{pid}/{kind}", image),
        Route("/api/images/{scid}/{pid}/{kind}/resend", image_resend, methods=["POST"]),
        WebSocketRoute("/ws", ws_endpoint),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, lifespan=web.lifespan, exception_handlers={404: not_found})
