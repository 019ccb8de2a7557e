"""Exactly-once commanding on the vehicle: which uplink commands ran, and what they answered.

The ground re-sends a command it has no response for as the *same* authenticated TC (same key,
counter and bytes). The verifier refuses the second copy as a replay; :class:`CommandLog` then
tells the two cases apart:

- the counter is in the log with the same body digest: the command already ran here, so the
  vehicle answers again with the responses it already gave (or nothing yet, if it is still
  running) and executes nothing;
- the counter is not in the log (or the log holds it for other bytes) and is no older than the
  log's oldest entry: that TC never ran, and the vehicle says so (REJECTED, reason starting
  ``not executed``), so the ground may sign it afresh without the risk of running it twice.

An entry is written (checked JSON, atomic) when the command is accepted, before it is handed to
the dispatcher, and again when its responses are stored, so the log survives kill -9 and a
reboot. A missing or unreadable log (moved aside) starts from the verifier's highest command
counter: retries of commands older than that are answered "cannot tell" rather than guessed.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path

from flight.link.auth import Verified
from flight.persist import CorruptFileError, move_aside, read_checked_json, write_checked_json

log = logging.getLogger(__name__)

FORMAT = "magpie-command-log/1"
Response = tuple[int, str, str, str]  # opcode, name, stage, reason


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


class CommandLog:
    """See the module docstring. ``size`` entries are kept (the newest)."""

    def __init__(self, path: Path | None, since: dict[int, int] | None = None, size: int = 256) -> None:
        """``since``: per key id, the highest command counter already used before this log
        existed (the verifier's); the log cannot speak for those."""
        self.path = path
        self._since: dict[int, int] = dict(since or {})
        self.size = max(1, size)
        self.problems: list[str] = []
        self._entries: OrderedDict[tuple[int, int], tuple[str, list[Response]]] = OrderedDict()
        self._dirty = False
        self.writes = 0
        if path is None:
            return
        try:
            body = read_checked_json(path, FORMAT)
            if body is None:
                body = {}
                self._dirty = True  # write the starting point now
            else:
                self._since = {int(k): int(v) for k, v in body.get("since", {}).items()}
            for kid, counter, dig, responses in body.get("entries", []):
                rs = [(int(o), str(n), str(s), str(r)) for o, n, s, r in responses]
                self._entries[(int(kid), int(counter))] = (str(dig), rs)
        except (CorruptFileError, TypeError, ValueError) as exc:
            moved = move_aside(path)
            self._entries.clear()
            self._since = dict(since or {})
            self._dirty = True
            self.problems.append(
                f"command log unusable ({exc}){'; kept as ' + moved.name if moved else ''}; "
                "retries of older commands are refused"
            )
            log.warning("%s", self.problems[-1])
        self.flush()

    def accepted(self, v: Verified) -> None:
        """Note a command about to run (persisted before it runs)."""
        self._entries[(v.key_id, v.counter)] = (digest(v.body), [])
        while len(self._entries) > self.size:
            (kid, counter), _ = self._entries.popitem(last=False)
            self._since[kid] = max(self._since.get(kid, 0), counter)
        self._dirty = True
        self.flush()

    def forget(self, v: Verified) -> None:
        """The command was never handed on (queue full): it did not run."""
        if self._entries.pop((v.key_id, v.counter), None) is not None:
            self._dirty = True
            self.flush()

    def respond(self, counter: int, opcode: int, name: str, stage: str, reason: str) -> None:
        """Record a response the vehicle stored for the command with this counter (if logged)."""
        for (_kid, c), (_dig, responses) in self._entries.items():
            if c == counter:
                responses.append((opcode, name, stage, reason))
                del responses[:-4]  # ACCEPTED and a final stage are what matters
                self._dirty = True
                return

    def flush(self) -> None:
        if not self._dirty or self.path is None:
            return
        entries = [[k, c, d, [list(r) for r in rs]] for (k, c), (d, rs) in self._entries.items()]
        since = {str(k): v for k, v in self._since.items()}
        write_checked_json(self.path, FORMAT, {"since": since, "entries": entries})
        self._dirty = False
        self.writes += 1

    def lookup(self, v: Verified) -> list[Response] | None:
        """Responses already given if this TC's command ran here; None if it did not."""
        entry = self._entries.get((v.key_id, v.counter))
        if entry is None or entry[0] != digest(v.body):
            return None
        return list(entry[1])

    def can_tell(self, v: Verified) -> bool:
        """True when absence from the log proves the TC never ran here."""
        return v.counter > self._since.get(v.key_id, 0)
