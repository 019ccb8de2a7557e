"""The vehicle dictionary (``magpie-dict/1`` JSON) indexed the ways the ground looks things up."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "magpie-dict/1"


class DictionaryError(ValueError):
    """A dictionary file is not usable, or a name or id is not in it."""


@dataclass
class Dictionary:
    raw: dict[str, Any]
    commands_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    commands_by_opcode: dict[int, dict[str, Any]] = field(default_factory=dict)
    channels_by_id: dict[int, dict[str, Any]] = field(default_factory=dict)
    channels_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_by_id: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_obj(cls, obj: dict[str, Any]) -> Dictionary:
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise DictionaryError(f"not a {FORMAT} dictionary")
        d = cls(obj)
        for c in obj.get("commands", []):
            d.commands_by_name[c["name"]] = c
            d.commands_by_opcode[int(c["opcode"])] = c
        for ch in obj.get("channels", []):
            d.channels_by_id[int(ch["id"])] = ch
            d.channels_by_name[ch["name"]] = ch
        for ev in obj.get("events", []):
            d.events_by_id[int(ev["id"])] = ev
        return d

    @classmethod
    def load(cls, path: str | Path) -> Dictionary:
        try:
            return cls.from_obj(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DictionaryError(f"dictionary {path}: {exc}") from exc

    @property
    def spacecraft_id(self) -> int | None:
        sc = self.raw.get("spacecraft") or {}
        return sc.get("id")

    def command(self, name: str) -> dict[str, Any]:
        try:
            return self.commands_by_name[name]
        except KeyError:
            raise DictionaryError(f"no command {name!r} in the dictionary") from None

    def channel_id(self, name_or_id: str | int) -> int:
        if isinstance(name_or_id, int):
            return name_or_id
        ch = self.channels_by_name.get(name_or_id)
        if ch is None:
            raise DictionaryError(f"no channel {name_or_id!r} in the dictionary")
        return int(ch["id"])

    def channel_name(self, cid: int) -> str:
        ch = self.channels_by_id.get(cid)
        return ch["name"] if ch else f"channel_{cid}"
