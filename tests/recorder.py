"""A vehicle sink that keeps everything the vehicle sent, for assertions in any test suite."""

from __future__ import annotations

from typing import Any

from flight.outbound import CommandResponse, EventRecord


class Recorder:
    """Keeps every outbound item; picks out events and command responses by name."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def write(self, items: list[Any]) -> None:
        self.items.extend(items)

    def close(self) -> None:
        pass

    def events(self, name: str | None = None) -> list[EventRecord]:
        return [i for i in self.items if isinstance(i, EventRecord) and (name is None or i.name == name)]

    def texts(self, name: str) -> list[str]:
        return [e.text for e in self.events(name)]

    def responses(self, name: str | None = None) -> list[CommandResponse]:
        return [i for i in self.items if isinstance(i, CommandResponse) and (name is None or i.name == name)]

    def stages(self, name: str) -> list[str]:
        return [r.stage for r in self.responses(name)]
