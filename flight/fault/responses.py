"""Fault responses, ordered by severity, and how simultaneous requests are arbitrated.

A response is what fault protection does when a monitor trips. They are totally ordered::

    REPORT < STOP_DRIVE < STANDBY < SAFE < RESTART < HIBERNATE

and each one includes every lighter one that still makes sense (SAFE stops the drive; HIBERNATE
stops the drive and leaves any active mode). Arbitration rules, so responses never fight:

1. Of the responses requested in one evaluation, only the most severe is carried out; the others
   are reported as subsumed by it.
2. A response never makes the vehicle less protected: a mode response whose mode is lower on the
   safety ladder (:data:`flight.fault.modes.SAFETY`) than the present mode changes nothing but
   the drive stop it implies. So STANDBY in SAFE is a drive stop, SAFE in HIBERNATE is nothing.
3. While the vehicle hibernates only HIBERNATE-class decisions exist: monitors do not run and a
   RESTART request is refused (restarting would spend the energy hibernation is saving).
4. RESTART is limited: past ``max_restarts`` within ``restart_window_s`` (a persisted count), it
   degrades to SAFE and says so, so a fault that survives a reboot cannot reboot-loop the vehicle.
5. A tripped monitor acts once and stays latched until its condition clears, so a ground command
   that overrides an autonomous action is not immediately undone by the same trip.

HIBERNATE outranks RESTART because it is the answer to running out of energy, and a reboot
loop on an empty battery would end the mission.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flight.fault.modes import SAFETY, Mode


class Response(enum.IntEnum):
    REPORT = 0
    STOP_DRIVE = 1
    STANDBY = 2
    SAFE = 3
    RESTART = 4
    HIBERNATE = 5


def parse_response(text: str) -> Response:
    key = str(text).strip().upper()
    if key in Response.__members__:
        return Response[key]
    raise ValueError(f"unknown response {text!r}; responses: "
                     f"{', '.join(r.name.lower() for r in Response)}")


#: The mode a response moves the vehicle to (None: no mode change).
TARGET_MODE: dict[Response, Mode | None] = {
    Response.REPORT: None,
    Response.STOP_DRIVE: None,
    Response.STANDBY: Mode.STANDBY,
    Response.SAFE: Mode.SAFE,
    Response.RESTART: Mode.SAFE,  # the restarted vehicle comes up in SAFE
    Response.HIBERNATE: Mode.HIBERNATE,
}


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do about one evaluation's requests."""

    response: Response | None  # None: nothing requested
    cause: str = ""
    subsumed: tuple[str, ...] = ()
    stop_drive: bool = False
    mode: Mode | None = None  # the mode to enter, when it is a step up the safety ladder
    restart: bool = False


def arbitrate(requests: list[tuple[Response, str]], mode: Mode, restart_allowed: bool = True,
              safety: Mapping[Any, int] = SAFETY, modes: Any = Mode) -> Decision:
    """Pick the action for ``requests`` (response, cause) given the present mode (see the rules);
    ``safety`` and ``modes`` are the vehicle's mode table (the rover's by default)."""
    if not requests:
        return Decision(None)
    ranked = sorted(requests, key=lambda rc: -int(rc[0]))
    response, cause = ranked[0]
    subsumed = tuple(f"{r.name.lower()} ({c})" for r, c in ranked[1:])
    if mode == Mode.HIBERNATE:
        # rule 3: asleep, only a deeper sleep could matter and there is none
        return Decision(response, cause, subsumed)
    if response == Response.RESTART and not restart_allowed:
        response, cause = Response.SAFE, f"{cause}; restart limit reached"
    stop = response >= Response.STOP_DRIVE
    target = TARGET_MODE[response]
    if target is not None:
        target = modes[target.name]
    new_mode = None
    if response == Response.RESTART:
        return Decision(response, cause, subsumed, stop_drive=True, restart=True)
    if target is not None and safety[target] > safety[mode]:
        new_mode = target
    return Decision(response, cause, subsumed, stop_drive=stop, mode=new_mode)
