"""The services every component of one vehicle shares, handed to each at bind time."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flight.clock import Clock
from flight.events import EventLog
from flight.outbound import OutboundQueue
from flight.params import ParamStore
from flight.telemetry import TlmDb

if TYPE_CHECKING:
    from flight.commands import Dispatcher
    from flight.executive import Executive


@dataclass
class Framework:
    clock: Clock
    outbound: OutboundQueue
    tlm: TlmDb
    events: EventLog
    params: ParamStore
    state_dir: Path
    epoch: datetime | None
    spacecraft: str = "magpie"
    spacecraft_id: int = 0
    #: the latest-value data store components publish to and read from
    store: dict[str, Any] = field(default_factory=dict)
    cmd: Dispatcher = None  # type: ignore[assignment]
    executive: Executive = None  # type: ignore[assignment]
