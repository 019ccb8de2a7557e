"""The flight dictionary: generated from component declarations and nothing else.

``build`` walks the assembled vehicle's components in order and lists every command, channel,
event and parameter with its id, and the fixed layouts of the housekeeping packets (``packets``,
from the channels and the rate groups). The content hash (SHA-256 over the canonical JSON of everything
but the hash itself) identifies a dictionary: the boot event carries it, and the ground refuses
to decode with a dictionary whose hash differs from the vehicle's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from flight import __version__
from flight.component import Component
from flight.link.layouts import Group, packet_definitions
from flight.model import Limits

FORMAT = "magpie-dict/1"
KIND_STRIDE = 0x100  # ids per component of each kind


def _limits(lim: Limits) -> dict[str, Any]:
    return {"yellow": list(lim.yellow) if lim.yellow else None, "red": list(lim.red) if lim.red else None}


def build(components: Iterable[Component], spacecraft: str, spacecraft_id: int,
          groups: Iterable[Group] = ()) -> dict[str, Any]:
    """The dictionary of ``components``; ``groups`` (the rate groups) place the channels in the
    housekeeping packet definitions (``packets``, :mod:`flight.link.layouts`)."""
    commands, channels, events, params = [], [], [], []
    comps = []
    for comp in components:
        base = comp.id_base
        if base is None:
            raise ValueError(f"component {comp.name!r} has no id base")
        decl_counts = {
            "command": len(comp.commands()), "channel": len(comp.channels()),
            "event": len(comp.events()), "param": len(comp.params()),
        }
        for kind, n in decl_counts.items():
            if n > KIND_STRIDE:
                raise ValueError(f"component {comp.name!r} declares {n} {kind}s; at most {KIND_STRIDE}")
        comps.append({"name": comp.name, "type": type(comp).__name__, "id_base": base,
                      "doc": (type(comp).__doc__ or "").strip().splitlines()[0] if type(comp).__doc__ else ""})
        for i, (cdef, _) in enumerate(comp.commands()):
            commands.append({"opcode": base + i, "name": cdef.name, "component": comp.name,
                             "doc": cdef.doc, "args": [a.to_dict() for a in cdef.args]})
        for i, ch in enumerate(comp.channels()):
            channels.append({"id": base + i, "name": f"{comp.name}.{ch.name}", "type": ch.type,
                             "units": ch.units, "doc": ch.doc, "limits": _limits(ch.limits),
                             "update": ch.update})
        for i, ev in enumerate(comp.events()):
            events.append({"id": base + i, "name": ev.name, "component": comp.name,
                           "severity": ev.severity.name, "format": ev.format,
                           "args": [{"name": a.name, "type": a.type} for a in ev.args], "doc": ev.doc,
                           "throttle": ev.throttle})
        for i, p in enumerate(comp.params()):
            params.append({"id": base + i, "name": f"{comp.name}.{p.name}", "type": p.type,
                           "default": p.default, "units": p.units, "min": p.min, "max": p.max,
                           "doc": p.doc})
    for kind, items, key in (("command", commands, "name"), ("command", commands, "opcode"),
                             ("channel", channels, "id"), ("event", events, "id"), ("param", params, "id")):
        seen: set[Any] = set()
        for item in items:
            if item[key] in seen:
                raise ValueError(f"duplicate {kind} {key} {item[key]!r} in the dictionary")
            seen.add(item[key])
    doc = {
        "format": FORMAT,
        "software_version": __version__,
        "spacecraft": {"name": spacecraft, "id": spacecraft_id},
        "components": comps,
        "commands": commands,
        "channels": channels,
        "events": events,
        "params": params,
        "packets": packet_definitions(channels, list(groups)),
    }
    doc["hash"] = content_hash(doc)
    return doc


def content_hash(doc: dict[str, Any]) -> str:
    body = {k: v for k, v in doc.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def verify(doc: dict[str, Any]) -> None:
    """Raise ValueError when a dictionary is not ours or has been altered."""
    if doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} dictionary (format {doc.get('format')!r})")
    if doc.get("hash") != content_hash(doc):
        raise ValueError("dictionary hash does not match its content")


def to_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"
