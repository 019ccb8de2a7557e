"""Vehicles with a payload host, on the simulated clock (lockstep) or the real clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flight.clock import SimClock
from flight.config import parse
from flight.payload.host import PayloadHost
from flight.vehicle import Vehicle
from tests.recorder import Recorder

BAD = {name: f"tests.payload.bad_payloads:{name}" for name in (
    "Good", "Hang", "CrashLoop", "CpuHog", "EventFlood", "DataFlood", "VehicleCommander", "ChannelSnoop",
    "PathEscape")}

Factory = Callable[..., tuple[Vehicle, Recorder, PayloadHost]]


@pytest.fixture
def payload_vehicle(tmp_path: Path) -> Iterator[Factory]:
    made: list[Vehicle] = []

    def factory(payloads: dict[str, dict[str, Any]], clock: Any = None, hz: float = 10.0, fast_hz: float = 20.0,
                host_options: dict[str, Any] | None = None) -> tuple[Vehicle, Recorder, PayloadHost]:
        opts = {"lockstep_wait_s": 2.0, **(host_options or {})}
        host = PayloadHost("payhost", kinds=BAD, payload=payloads, **opts)
        doc = {
            "vehicle": {"state_dir": str(tmp_path / "state"), "epoch": "2026-01-01T00:00:00Z"},
            "rate_groups": [
                {"name": "fast", "hz": fast_hz, "members": ["cmd", "seq"]},
                {"name": "payload", "hz": hz, "members": ["payhost"]},
                {"name": "hk", "hz": 1, "members": ["sys", "health", "tlm"]},
            ],
        }
        v = Vehicle(parse(doc), clock or SimClock(), extra_components=[host])
        rec = Recorder()
        v.add_sink(rec)
        made.append(v)
        return v, rec, host

    yield factory
    for v in made:
        v.shutdown()
