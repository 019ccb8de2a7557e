"""Parameters: typed values with defaults in code and overrides persisted atomically.

At boot the store reads ``params.json`` from the state directory. A missing file means all
defaults. A corrupt or truncated file, or a value that no longer fits its declaration, gives the
defaults for what cannot be trusted and a WARNING_HI event, never a crash; an unreadable file
is moved aside (``params.json.corrupt-<time>``) so the next save starts clean and the old one
can still be examined. ``PRM_SET`` changes a
value in memory (the owning component is told); ``PRM_SAVE`` writes every non-default value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flight.commands import CommandFailed
from flight.component import Component
from flight.model import Arg, Channel, Event, Param, Severity, command
from flight.persist import CorruptFileError, move_aside, read_checked_json, write_checked_json

log = logging.getLogger(__name__)

FORMAT = "magpie-params/1"


class ParamStore:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._decls: dict[str, tuple[int, Param]] = {}
        self._values: dict[str, Any] = {}
        self._owners: dict[str, Callable[[str, Any], None]] = {}
        self.load_problems: list[str] = []

    def declare(self, pid: int, full_name: str, param: Param, on_change: Callable[[str, Any], None]) -> None:
        if full_name in self._decls:
            raise ValueError(f"parameter {full_name!r} declared twice")
        self._decls[full_name] = (pid, param)
        self._values[full_name] = param.default
        self._owners[full_name] = on_change

    def get(self, full_name: str) -> Any:
        return self._values[full_name]

    def names(self) -> list[str]:
        return list(self._decls)

    def set(self, full_name: str, value: Any, notify: bool = True) -> Any:
        """Check and set a value; raises KeyError or ValueError with the reason.

        The owning component is told through ``on_param`` unless ``notify`` is false (at boot,
        stored values are in place before any component's ``setup``).
        """
        if full_name not in self._decls:
            raise KeyError(f"no parameter {full_name!r}")
        _, param = self._decls[full_name]
        value = param.check(value)
        self._values[full_name] = value
        if notify:
            self._owners[full_name](full_name.split(".", 1)[1], value)
        return value

    def overrides(self) -> dict[str, Any]:
        return {n: v for n, v in self._values.items() if v != self._decls[n][1].default}

    def load(self) -> list[str]:
        """Apply stored overrides; returns the problems found (empty when all was well)."""
        problems: list[str] = []
        if self.path is None:
            return problems
        try:
            body = read_checked_json(self.path, FORMAT)
        except CorruptFileError as exc:
            moved = move_aside(self.path)
            where = f"; kept as {moved.name}" if moved is not None else ""
            problems.append(f"parameter file unusable, defaults in force: {exc}{where}")
            body = None
        if body:
            values = body.get("values", {})
            if not isinstance(values, dict):
                problems.append("parameter file has no value table; defaults in force")
                values = {}
            for name, raw in values.items():
                try:
                    self.set(name, raw, notify=False)
                except (KeyError, ValueError) as exc:
                    problems.append(f"stored {name}: {exc}; default kept")
        self.load_problems = problems
        return problems

    def save(self) -> int:
        if self.path is None:
            raise OSError("no state directory configured; parameters cannot be saved")
        values = self.overrides()
        write_checked_json(self.path, FORMAT, {"values": values})
        return len(values)


class Params(Component):
    """Ground access to parameters: set one, save all."""

    CHANNELS = (
        Channel("overrides", "u16", doc="parameters differing from their defaults", update="on_change"),
        Channel("saves", "u32", doc="successful PRM_SAVE count", update="on_change"),
    )
    EVENTS = (
        Event("ParamSet", Severity.ACTIVITY_HI, "{name} = {value}", (Arg("name", "str"), Arg("value", "str"))),
        Event("ParamsSaved", Severity.ACTIVITY_HI, "{count} parameter override(s) saved",
              (Arg("count", "u16"),)),
        Event("ParamFileProblem", Severity.WARNING_HI, "{problem}", (Arg("problem", "str"),),
              doc="the stored parameter file was corrupt, truncated or held bad values"),
    )

    def setup(self) -> None:
        self._saves = 0
        for problem in self.fw.params.load_problems:
            self.event("ParamFileProblem", problem=problem)
        self.tlm("overrides", len(self.fw.params.overrides()))
        self.tlm("saves", 0)

    @command("PRM_SET", Arg("name", "str", doc="full name, component.param"),
             Arg("value", "str", doc="new value, parsed by the parameter's type"))
    def prm_set(self, name: str, value: str) -> None:
        """Set a parameter in memory (PRM_SAVE makes it survive a reboot)."""
        try:
            typed = self.fw.params.set(name, value)
        except KeyError:
            raise CommandFailed(f"no parameter {name!r}") from None
        except ValueError as exc:
            raise CommandFailed(f"{name}: {exc}") from None
        self.event("ParamSet", name=name, value=str(typed))
        self.tlm("overrides", len(self.fw.params.overrides()))

    @command("PRM_SAVE")
    def prm_save(self) -> None:
        """Write every parameter override to the state directory atomically."""
        try:
            count = self.fw.params.save()
        except OSError as exc:
            raise CommandFailed(f"cannot save parameters: {exc}") from None
        self._saves += 1
        self.tlm("saves", self._saves)
        self.event("ParamsSaved", count=count)
