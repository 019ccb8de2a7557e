"""Fixtures for flight-core tests: a vehicle assembled from a small configuration."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flight.clock import SimClock
from flight.component import Component
from flight.config import parse
from flight.outbound import CommandResponse, EventRecord
from flight.vehicle import Vehicle


class Recorder:
    """A sink keeping everything the vehicle sent, for assertions."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def write(self, items: list[Any]) -> None:
        self.items.extend(items)

    def close(self) -> None:
        pass

    def events(self, name: str | None = None) -> list[EventRecord]:
        return [i for i in self.items if isinstance(i, EventRecord) and (name is None or i.name == name)]

    def responses(self, name: str | None = None) -> list[CommandResponse]:
        return [i for i in self.items if isinstance(i, CommandResponse) and (name is None or i.name == name)]

    def stages(self, name: str) -> list[str]:
        return [r.stage for r in self.responses(name)]


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
