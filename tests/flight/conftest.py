"""Fixtures for flight-core tests: a vehicle assembled from a small configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flight.clock import SimClock
from flight.component import Component
from flight.config import parse
from flight.vehicle import Vehicle
from tests.recorder import Recorder

VehicleFactory = Callable[..., tuple[Vehicle, Recorder]]


@pytest.fixture
def make_vehicle(tmp_path: Path) -> VehicleFactory:
    made: list[Vehicle] = []

    def factory(extra: list[Component] | None = None, groups: list[dict] | None = None,
                components: dict | None = None, state_dir: Path | None = None,
                clock: Any = None, **vehicle: Any) -> tuple[Vehicle, Recorder]:
        doc = {
            "vehicle": {"state_dir": str(state_dir or tmp_path / "state"), "epoch": "2026-01-01T00:00:00Z",
                        **vehicle},
            "components": components or {},
            "rate_groups": groups or [
                {"name": "control", "hz": 50, "members": [c.name for c in extra or []]},
                {"name": "nav", "hz": 10, "members": ["cmd", "seq"]},
                {"name": "hk", "hz": 1, "members": ["sys", "health", "tlm"]},
            ],
        }
        v = Vehicle(parse(doc), clock or SimClock(), extra_components=extra)
        rec = Recorder()
        v.add_sink(rec)
        made.append(v)
        return v, rec

    yield factory
    for v in made:
        v.executive.stop_workers()
